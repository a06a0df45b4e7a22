//! Images in: a create's `input.image` read once, when the prediction is
//! created (its file must be live, and a PNG, JPEG or WebP the image
//! library decodes within its limits; a data URL becomes a file of the
//! store once it proved to be one), its colour grid for image-to-image,
//! and an upscale's output, resized from the stored file when asked for.
//!
//! Decodes and upscales hold tens of MiB each, so at most
//! [`AT_ONCE`] run at a time, off the async threads.

use std::{fmt, io::Cursor, sync::Arc};

use axum::body::Bytes;
use image::{
    DynamicImage, ImageFormat, ImageReader, Limits,
    imageops::{self, FilterType},
};
use serde_json::json;
use tokio::sync::Semaphore;

use super::{
    Sim,
    inputs::{Image, Invalid, MAX_IMAGE_SIDE, MAX_UPSCALED_SIDE, Number, Source, file_not_found, upscaled_size},
    render::{self, GRID, GRID_BYTES, Grid},
    uploads::NewUpload,
};

/// Images decoded, upscaled or rendered at once.
pub(super) const AT_ONCE: usize = 2;
/// Most memory one decode may allocate.
const MAX_ALLOC: u64 = 64 * 1024 * 1024;
/// The name a data URL's file is kept under.
const DATA_URL_NAME: &str = "data-url";

/// The permits for image work.
pub(super) fn work_permits() -> Semaphore {
    Semaphore::new(AT_ONCE)
}

/// Reads a create's image: the file it names must be live, and an image;
/// with `scale` (an upscale) the output must fit in
/// [`MAX_UPSCALED_SIDE`] a side, else it is read for its colour grid.
pub(super) async fn open(sim: &Arc<Sim>, source: Source, scale: Option<Number>) -> Result<Image, Invalid> {
    let (bytes, origin) = match source {
        Source::File(id) => {
            let file = sim.uploads.get(&id, sim.now_ms()).ok_or_else(file_not_found)?;
            (file.bytes.clone(), Origin::Kept(id))
        }
        Source::Data { content_type, bytes } => (Bytes::from(bytes), Origin::DataUrl { content_type }),
    };
    let want_grid = scale.is_none();
    let read = {
        let _permit = sim.image_work.acquire().await.ok();
        let bytes = bytes.clone();
        crate::server::background::run("sim-decode", move || read(&bytes, want_grid)).await
    };
    let (width, height, grid) = match read {
        Ok(Some(read)) => read,
        Ok(None) => return Err(unidentified()),
        Err(e) => {
            tracing::error!(error = %e, "simulator image decode task failed");
            return Err(unidentified());
        }
    };
    if let Some(scale) = scale {
        let (to_width, to_height) = upscaled_size((width, height), scale.get());
        if to_width > MAX_UPSCALED_SIDE || to_height > MAX_UPSCALED_SIDE {
            let description = format!(
                "Upscaling {width}x{height} by {} makes {to_width}x{to_height}; \
                 sides of at most {MAX_UPSCALED_SIDE} pixels are supported",
                scale.get()
            );
            return Err(Invalid { field: "input.scale", kind: "number_lte", description });
        }
    }
    let file = match origin {
        Origin::Kept(id) => id,
        Origin::DataUrl { content_type } => {
            let new = NewUpload { name: DATA_URL_NAME.into(), content_type, bytes, metadata: json!({}) };
            sim.uploads.add(new, sim.now_ms()).id.clone()
        }
    };
    Ok(Image { file, width, height, grid })
}

/// Where an input image's bytes came from.
enum Origin {
    /// A file of the store, by id.
    Kept(String),
    /// A data URL, kept as a file once it proved to be an image.
    DataUrl { content_type: String },
}

/// Upscales the stored input `bytes` to `width`×`height` (Catmull-Rom) and
/// encodes a PNG, with alpha when the input has it. CPU-bound: made
/// through `files::serve_png` (a permit of [`work_permits`], a thread of
/// lower priority).
pub(super) fn upscale_png(bytes: &[u8], width: u32, height: u32) -> Result<Vec<u8>, UpscaleError> {
    let input = decode(bytes).ok_or(UpscaleError::Undecodable)?;
    let png = if input.color().has_alpha() {
        let output = imageops::resize(&input.to_rgba8(), width, height, FilterType::CatmullRom);
        render::encode_png(width, height, png::ColorType::Rgba, output.as_raw())
    } else {
        let output = imageops::resize(&input.to_rgb8(), width, height, FilterType::CatmullRom);
        render::encode_png(width, height, png::ColorType::Rgb, output.as_raw())
    };
    png.map_err(UpscaleError::Encode)
}

/// Why an upscale's output could not be made.
#[derive(Debug)]
pub(super) enum UpscaleError {
    /// The stored input no longer decodes (it did when the prediction was
    /// created).
    Undecodable,
    Encode(png::EncodingError),
}

impl fmt::Display for UpscaleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Undecodable => f.write_str("the input image does not decode"),
            Self::Encode(e) => write!(f, "could not encode the PNG: {e}"),
        }
    }
}

/// The answer for a file that is no image the simulator reads.
fn unidentified() -> Invalid {
    Invalid { field: "input.image", kind: "invalid_image", description: "cannot identify image file".into() }
}

/// The image's size and, when wanted, its colour grid; `None` for bytes
/// that are no image the simulator reads.
fn read(bytes: &[u8], want_grid: bool) -> Option<(u32, u32, Option<Grid>)> {
    let image = decode(bytes)?;
    let grid = want_grid.then(|| grid_of(&image));
    Some((image.width(), image.height(), grid))
}

/// Decodes a PNG, JPEG or WebP (by its content, whatever its name or
/// type) within the limits: [`MAX_IMAGE_SIDE`] a side, [`MAX_ALLOC`] bytes.
fn decode(bytes: &[u8]) -> Option<DynamicImage> {
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().ok()?;
    if !matches!(reader.format(), Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) {
        return None;
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    reader.decode().ok().filter(|image| image.width() > 0 && image.height() > 0)
}

/// The image's average colours, [`GRID`]×[`GRID`] cells (transparency
/// shown over white, as a viewer would).
fn grid_of(image: &DynamicImage) -> Grid {
    let side = GRID as u32;
    let small = imageops::resize(image, side, side, FilterType::Triangle);
    let mut cells = [0; GRID_BYTES];
    for (cell, pixel) in cells.chunks_exact_mut(3).zip(small.pixels()) {
        let [r, g, b, a] = pixel.0;
        let alpha = u32::from(a);
        for (out, channel) in cell.iter_mut().zip([r, g, b]) {
            // At most (255 × 255 + 255 × 255 + 127) / 255: fits a byte.
            *out = ((u32::from(channel) * alpha + 255 * (255 - alpha) + 127) / 255) as u8;
        }
    }
    Grid(cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    fn png_of(image: DynamicImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).unwrap_or_else(|e| panic!("encode: {e}"));
        bytes
    }

    /// A 16×8 image: red on the left, blue on the right.
    fn red_blue() -> RgbImage {
        RgbImage::from_fn(16, 8, |x, _| if x < 8 { Rgb([230, 20, 20]) } else { Rgb([20, 20, 230]) })
    }

    #[test]
    fn images_are_read_with_their_size_and_grid() {
        let got = read(&png_of(red_blue().into()), true);
        let Some((16, 8, Some(grid))) = &got else { panic!("read as {got:?}") };
        let cell = |x: usize, y: usize| &grid.0[(y * GRID + x) * 3..(y * GRID + x) * 3 + 3];
        assert!(cell(0, 0)[0] > 200 && cell(0, 0)[2] < 40, "red on the left: {:?}", cell(0, 0));
        assert!(cell(GRID - 1, GRID - 1)[2] > 200 && cell(GRID - 1, GRID - 1)[0] < 40, "blue on the right");
        assert_eq!(read_size(&png_of(red_blue().into())), Some((16, 8)), "no grid for an upscale");
    }

    fn read_size(bytes: &[u8]) -> Option<(u32, u32)> {
        read(bytes, false).map(|(width, height, grid)| {
            assert!(grid.is_none());
            (width, height)
        })
    }

    #[test]
    fn transparency_is_shown_over_white() {
        let clear = RgbaImage::from_pixel(4, 4, Rgba([0, 0, 0, 0]));
        let got = read(&png_of(clear.into()), true);
        let Some((4, 4, Some(grid))) = &got else { panic!("read as {got:?}") };
        assert!(grid.0.iter().all(|&c| c == 255));
    }

    #[test]
    fn what_is_no_image_is_refused() {
        let png = png_of(red_blue().into());
        let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec();
        let html = b"<!doctype html><svg></svg>".to_vec();
        for bad in [Vec::new(), html, gif, png[..png.len() / 2].to_vec()] {
            assert_eq!(read_size(&bad), None, "{:?}", &bad[..bad.len().min(8)]);
        }
        // A valid header claiming more than 8192 pixels a side.
        let wide = RgbImage::new(MAX_IMAGE_SIDE + 1, 1);
        assert_eq!(read_size(&png_of(wide.into())), None);
        let widest = RgbImage::new(MAX_IMAGE_SIDE, 1);
        assert_eq!(read_size(&png_of(widest.into())), Some((MAX_IMAGE_SIDE, 1)));
    }

    #[test]
    fn an_upscale_resizes_the_input_and_follows_its_pixels() {
        let png = upscale_png(&png_of(red_blue().into()), 32, 16).unwrap_or_else(|e| panic!("{e}"));
        let output = decode(&png).map(|image| image.to_rgb8()).unwrap_or_else(|| panic!("decodes"));
        assert_eq!(output.dimensions(), (32, 16));
        for y in 0..16 {
            for (x, expected) in [(0, [230, 20, 20]), (12, [230, 20, 20]), (19, [20, 20, 230]), (31, [20, 20, 230])] {
                let got = output.get_pixel(x, y).0;
                let near = got.iter().zip(expected).all(|(g, e)| g.abs_diff(e) <= 4);
                assert!(near, "({x}, {y}) is {got:?}, not near {expected:?}");
            }
        }
        let clear = RgbaImage::from_fn(4, 4, |x, _| Rgba([0, 200, 0, if x < 2 { 0 } else { 255 }]));
        let png = upscale_png(&png_of(clear.into()), 8, 8).unwrap_or_else(|e| panic!("{e}"));
        let output = decode(&png).map(|image| image.to_rgba8()).unwrap_or_else(|| panic!("decodes"));
        assert_eq!((output.get_pixel(0, 0).0[3], output.get_pixel(7, 7).0[3]), (0, 255), "alpha kept");
        assert!(matches!(upscale_png(b"nope", 8, 8), Err(UpscaleError::Undecodable)));
    }
}
