//! Images in: `POST /api/upload_image` (multipart, field `file`), an image
//! a person starts a generation from. Everything is checked before
//! anything is charged or kept:
//!
//! 1. the size, while the body streams in (to a spool file, not memory);
//! 2. the bytes are a PNG, a JPEG or a WebP by their signature (an SVG, an
//!    HTML page or anything else is refused, whatever it claims to be);
//! 3. the dimensions, read from the header before any pixel is decoded
//!    (a 20-byte PNG that claims 50,000 × 50,000 is refused unread);
//! 4. the decode, under the image library's allocation limits (a damaged
//!    file is refused), with at most [`DECODE_MEGAPIXELS`] decoding at
//!    once (the others wait, spooled on disk), so many uploads at once
//!    hold no more memory than a few decodes, each on a thread of lower
//!    priority than the requests' ([`background`]);
//! 5. then made at most [`STORED_SIDE`] pixels a side (image models work
//!    at about a megapixel: more costs bytes and nothing else), turned
//!    upright by its EXIF orientation and re-encoded as PNG, so no
//!    metadata (GPS position, camera, comments) leaves the server, and
//!    stored under its owner (`uploads/<user>/<id>`).
//!
//! A task that uses an upload gets its own copy (`inputs/<task>`, removed
//! with the task's images); uploads are removed after
//! [`UPLOAD_TTL_MS`]. A form posted without JavaScript is answered with a
//! redirect back to the generator, the upload chosen (`/?image=<id>`) or
//! the refusal's kind named (`/?upload_error=<kind>`, shown in the site's
//! own words).

use std::io::Write as _;
use std::sync::Arc;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use sqlx::Row;

use super::auth::AuthSession;
use super::background;
use super::ids::{TaskId, UserId};
use super::state::AppState;
use crate::error::{AppError, ErrorKind, Result};
use crate::model::Upload;

/// Longest side of an image to start from.
pub const MAX_SIDE: u32 = 8192;
/// Most pixels of an image to start from: 25 megapixels (a 24-megapixel
/// camera's photo; at most 100 MB decoded).
pub const MAX_PIXELS: u64 = 25_000_000;
/// Megapixels decoded at once; an upload waits (spooled on disk) for its
/// share. Two phone photos decode together, a large photo alone.
pub const DECODE_MEGAPIXELS: u32 = 32;
/// Longest side an image to start from is kept at.
pub const STORED_SIDE: u32 = 2048;
/// An upload no task used is removed after a day.
pub const UPLOAD_TTL_MS: i64 = 24 * 3600 * 1000;
/// Uploads a person may make a minute.
pub const UPLOADS_PER_MINUTE: u32 = 30;
/// Room for the multipart framing around the file.
pub const FORM_OVERHEAD: u64 = 64 * 1024;

/// The formats taken, by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
    Webp,
}

impl Format {
    /// What the bytes start with, if it is one of ours.
    pub fn sniff(head: &[u8]) -> Option<Self> {
        if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
            Some(Self::Webp)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Png => "a PNG image",
            Self::Jpeg => "a JPEG image",
            Self::Webp => "a WebP image",
        }
    }

    /// Whether a declared content type names this format.
    fn is_named_by(self, content_type: &str) -> bool {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        match self {
            Self::Png => essence == "image/png",
            Self::Jpeg => matches!(essence, "image/jpeg" | "image/jpg" | "image/pjpeg"),
            Self::Webp => essence == "image/webp",
        }
    }

    fn image_format(self) -> image::ImageFormat {
        match self {
            Self::Png => image::ImageFormat::Png,
            Self::Jpeg => image::ImageFormat::Jpeg,
            Self::Webp => image::ImageFormat::WebP,
        }
    }
}

/// Where uploads wait for their decode, and how many megapixels decode.
pub struct Spool {
    dir: std::path::PathBuf,
    decodes: tokio::sync::Semaphore,
}

impl Spool {
    /// The spool in `dir`; files an earlier process left there (it stopped
    /// mid-upload) go once they are an hour old, so an instance sharing the
    /// folder keeps its uploads in flight.
    pub fn new(dir: std::path::PathBuf) -> Self {
        let hour = std::time::Duration::from_secs(3600);
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let old =
                entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|age| age > hour));
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Self { dir, decodes: tokio::sync::Semaphore::new(DECODE_MEGAPIXELS as usize) }
    }
}

/// `POST /api/upload_image`: the upload's id and size as JSON, or for a
/// form posted without JavaScript a redirect back to the generator.
pub async fn receive(
    State(state): State<AppState>,
    auth: AuthSession,
    headers: HeaderMap,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Response {
    let answer = async {
        let account = auth.user.ok_or_else(AppError::unauthorized)?;
        let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > state.config.max_input_bytes + FORM_OVERHEAD) {
            return Err(too_large(state.config.max_input_bytes));
        }
        let multipart =
            multipart.map_err(|_| AppError::invalid("send the image as multipart/form-data, in the field `file`"))?;
        state.upload_attempts.check_as(account.id.clone(), "uploads")?;
        upload(&state, &account.user_id(), multipart).await
    }
    .await;
    let from_form = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/html"));
    match (answer, from_form) {
        (Ok(upload), false) => (StatusCode::OK, axum::Json(upload)).into_response(),
        (Err(e), false) => {
            (StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST), axum::Json(e)).into_response()
        }
        (Ok(upload), true) => see_other(&format!("/?image={}", upload.upload_id)),
        (Err(e), true) => {
            let kind = serde_json::to_value(e.kind).ok().and_then(|v| v.as_str().map(str::to_owned));
            see_other(&format!("/?upload_error={}", kind.unwrap_or_default()))
        }
    }
}

fn see_other(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn too_large(cap: u64) -> AppError {
    AppError::new(ErrorKind::TooLarge, format!("the image is too large (at most {} MB)", cap.div_ceil(1024 * 1024)))
}

/// A spooled file, removed when dropped.
struct Spooled(std::path::PathBuf);

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn upload(state: &AppState, user: &UserId, mut multipart: Multipart) -> Result<Upload> {
    let cap = state.config.max_input_bytes;
    let mut field = loop {
        match multipart.next_field().await {
            Ok(Some(field)) if field.name() == Some("file") => break field,
            Ok(Some(_)) => continue,
            Ok(None) => return Err(AppError::invalid("no file: send the image in the form field `file`")),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large(cap)),
            Err(_) => return Err(AppError::invalid("the upload could not be read")),
        }
    };
    let claimed = field.content_type().map(str::to_ascii_lowercase);
    // Spooled to disk while it streams in, counted against the cap.
    let spool = &state.spool;
    tokio::fs::create_dir_all(&spool.dir).await.map_err(AppError::internal)?;
    let spooled = Spooled(spool.dir.join(uuid::Uuid::new_v4().to_string()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&spooled.0).map_err(AppError::internal)?);
    let mut size = 0u64;
    let mut head = Vec::with_capacity(64);
    loop {
        let chunk = match field.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large(cap)),
            Err(_) => return Err(AppError::invalid("the upload was cut short")),
        };
        size += chunk.len() as u64;
        if size > cap {
            return Err(too_large(cap));
        }
        if head.len() < 64 {
            head.extend_from_slice(&chunk[..chunk.len().min(64 - head.len())]);
        }
        file.write_all(&chunk).map_err(AppError::internal)?;
    }
    file.flush().map_err(AppError::internal)?;
    drop(file);
    if size == 0 {
        return Err(AppError::invalid("the file is empty: choose an image"));
    }
    let format = Format::sniff(&head)
        .ok_or_else(|| AppError::invalid("only PNG, JPEG and WebP images can be used (this file is none of them)"))?;
    if let Some(claimed) = claimed.filter(|c| c != "application/octet-stream")
        && !format.is_named_by(&claimed)
    {
        return Err(AppError::invalid(format!(
            "the file says it is {} but its bytes are {}",
            crate::text::clip(&claimed, 40),
            format.name()
        )));
    }
    // The header's dimensions, before a single pixel is decoded.
    let (width, height) = header_size(&spooled.0)?;
    check_size(width, height)?;
    // A share by the full size, though a large JPEG decodes scaled: with a
    // share by the scaled size five such decodes ran at once, and the peak
    // rose (make bench section 8: 441 MiB against 278).
    let megapixels = (u64::from(width) * u64::from(height)).div_ceil(1_000_000).clamp(1, DECODE_MEGAPIXELS.into());
    let _share = spool.decodes.acquire_many(megapixels as u32).await.map_err(AppError::internal)?;
    let path = spooled.0.clone();
    let png = background::run("image-decode", move || reencode(&path, format)).await??;
    drop(_share);
    let id = uuid::Uuid::new_v4().to_string();
    let key = ObjectPath::from(format!("uploads/{user}/{id}"));
    let (width, height, bytes) = (png.width, png.height, png.bytes.len() as i64);
    state.objects.put(&key, png.bytes.into()).await.map_err(AppError::internal)?;
    let recorded = sqlx::query(
        "INSERT INTO uploads (id, user_id, object_key, width, height, byte_size, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(user.as_str())
    .bind(key.as_ref())
    .bind(i64::from(width))
    .bind(i64::from(height))
    .bind(bytes)
    .bind(state.clock.now_ms())
    .execute(&state.db)
    .await;
    if let Err(e) = recorded {
        remove(state, &key).await;
        return Err(e.into());
    }
    Ok(Upload { upload_id: id, width, height })
}

/// `GET /uploads/{id}`: an upload, to its owner only (anyone else gets the
/// same 404 as for a missing one).
pub async fn serve(State(state): State<AppState>, auth: AuthSession, Path(id): Path<String>) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "not found").into_response();
    let Some(account) = auth.user else { return not_found() };
    let Ok(Some(key)) = upload_key(&state, &account.user_id(), &id).await else { return not_found() };
    match state.objects.get(&key).await {
        Ok(object) => match object.bytes().await {
            Ok(bytes) => {
                ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "private, max-age=3600")], bytes)
                    .into_response()
            }
            Err(_) => not_found(),
        },
        Err(_) => not_found(),
    }
}

/// Where `user`'s upload `id` is stored, if it is theirs and still kept.
async fn upload_key(state: &AppState, user: &UserId, id: &str) -> Result<Option<ObjectPath>> {
    if id.len() > 64 {
        return Ok(None);
    }
    let row = sqlx::query("SELECT object_key FROM uploads WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user.as_str())
        .fetch_optional(&state.db)
        .await?;
    row.map(|r| r.try_get::<String, _>("object_key").map(ObjectPath::from)).transpose().map_err(Into::into)
}

/// Removes a stored object, logging (not failing) when it cannot.
pub async fn remove(state: &AppState, key: &ObjectPath) {
    match state.objects.delete(key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => tracing::warn!(%key, "cannot remove a stored image: {e}"),
    }
}

/// The dimensions a file's header claims.
fn header_size(path: &std::path::Path) -> Result<(u32, u32)> {
    let size =
        imagesize::size(path).map_err(|_| AppError::invalid("the image cannot be read (damaged, or not an image)"))?;
    let side = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Ok((side(size.width), side(size.height)))
}

/// Refuses an image too large to decode: more than [`MAX_SIDE`] a side or
/// [`MAX_PIXELS`] in all.
pub fn check_size(width: u32, height: u32) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(AppError::invalid("the image has no pixels"));
    }
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(AppError::invalid(format!(
            "the image is too large ({width} × {height}; at most {MAX_SIDE} a side and {} megapixels)",
            MAX_PIXELS / 1_000_000
        )));
    }
    Ok(())
}

/// A re-encoded image.
pub struct Png {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// Decodes the file as `format` under the library's limits, makes it at
/// most [`STORED_SIDE`] a side, turns it upright by its EXIF orientation
/// and encodes it again as PNG: pixels only, no metadata.
pub fn reencode(path: &std::path::Path, format: Format) -> Result<Png> {
    let file = std::fs::File::open(path).map_err(AppError::internal)?;
    decode_to_png(std::io::BufReader::new(file), format)
}

/// The size a `width` × `height` image of `format` is decoded at: a JPEG
/// at the smallest of 1/1, 1/2, 1/4 and 1/8 (scaled in its DCT) still at
/// least the size it is kept at; the others at full size.
pub fn decoded_size(format: Format, width: u32, height: u32) -> (u32, u32) {
    if format != Format::Jpeg {
        return (width, height);
    }
    let (keep_w, keep_h) = kept_size(width, height);
    let scaled = |by: u32| (width.div_ceil(by), height.div_ceil(by));
    [8, 4, 2].into_iter().map(scaled).find(|&(w, h)| w >= keep_w && h >= keep_h).unwrap_or((width, height))
}

/// The size an image is kept at: at most [`STORED_SIDE`] a side, its shape
/// unchanged.
fn kept_size(width: u32, height: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= STORED_SIDE {
        return (width, height);
    }
    let shrink = |side: u32| (u64::from(side) * u64::from(STORED_SIDE)).div_ceil(u64::from(longest)) as u32;
    (shrink(width), shrink(height))
}

fn damaged() -> AppError {
    AppError::invalid("the image cannot be read (damaged, or not what it claims to be)")
}

/// A JPEG decoded at [`decoded_size`] (a 24-megapixel photo decodes to
/// 6 megapixels, a quarter of the memory and of the work), with its EXIF
/// orientation.
fn decode_jpeg<R: std::io::BufRead>(reader: R) -> Result<(image::DynamicImage, image::metadata::Orientation)> {
    use jpeg_decoder::PixelFormat;
    let mut decoder = jpeg_decoder::Decoder::new(reader);
    decoder.set_max_decoding_buffer_size((MAX_PIXELS * 4) as usize);
    decoder.read_info().map_err(|_| damaged())?;
    let info = decoder.info().ok_or_else(damaged)?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_size(width, height)?;
    let (want_w, want_h) = decoded_size(Format::Jpeg, width, height);
    let (w, h) = decoder.scale(want_w as u16, want_h as u16).map_err(|_| damaged())?;
    let orientation = decoder
        .exif_data()
        .and_then(image::metadata::Orientation::from_exif_chunk)
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let pixels = decoder.decode().map_err(|_| damaged())?;
    let (w, h) = (u32::from(w), u32::from(h));
    let picture = match info.pixel_format {
        PixelFormat::RGB24 => image::RgbImage::from_raw(w, h, pixels).map(image::DynamicImage::ImageRgb8),
        PixelFormat::L8 => image::GrayImage::from_raw(w, h, pixels).map(image::DynamicImage::ImageLuma8),
        PixelFormat::L16 => {
            let wide = pixels.chunks_exact(2).map(|b| u16::from_be_bytes([b[0], b[1]])).collect();
            image::ImageBuffer::from_raw(w, h, wide).map(image::DynamicImage::ImageLuma16)
        }
        PixelFormat::CMYK32 => {
            // Ink to light: each channel is (1 − ink) × (1 − black).
            let rgb = pixels
                .chunks_exact(4)
                .flat_map(|p| {
                    let k = 255 - u16::from(p[3]);
                    [0, 1, 2].map(|c| ((255 - u16::from(p[c])) * k / 255) as u8)
                })
                .collect();
            image::RgbImage::from_raw(w, h, rgb).map(image::DynamicImage::ImageRgb8)
        }
    };
    Ok((picture.ok_or_else(damaged)?, orientation))
}

/// [`reencode`] from any reader.
pub fn decode_to_png<R: std::io::BufRead + std::io::Seek>(reader: R, format: Format) -> Result<Png> {
    use image::ImageDecoder as _;
    if format == Format::Jpeg {
        let (picture, orientation) = decode_jpeg(reader)?;
        return finish(picture, orientation);
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_PIXELS * 4 + 16 * 1024 * 1024);
    let mut reader = image::ImageReader::with_format(reader, format.image_format());
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|_| damaged())?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let (w, h) = decoder.dimensions();
    check_size(w, h)?;
    let picture = image::DynamicImage::from_decoder(decoder).map_err(|_| damaged())?;
    finish(picture, orientation)
}

/// Makes a decoded image at most [`STORED_SIDE`] a side, turns it upright
/// and encodes it as PNG.
fn finish(mut picture: image::DynamicImage, orientation: image::metadata::Orientation) -> Result<Png> {
    if picture.width() > STORED_SIDE || picture.height() > STORED_SIDE {
        // An area average, into the smaller image only: no large buffer
        // beside the decoded one.
        picture = picture.thumbnail(STORED_SIDE, STORED_SIDE);
    }
    picture.apply_orientation(orientation);
    let picture = if picture.color().has_alpha() {
        image::DynamicImage::ImageRgba8(picture.into_rgba8())
    } else {
        image::DynamicImage::ImageRgb8(picture.into_rgb8())
    };
    let mut bytes = Vec::new();
    picture.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).map_err(AppError::internal)?;
    Ok(Png { bytes, width: picture.width(), height: picture.height() })
}

/// Where a task keeps the image it starts from (removed with its images,
/// see `owned::purge`).
pub fn input_key(task: &TaskId) -> ObjectPath {
    ObjectPath::from(format!("inputs/{task}"))
}

/// Copies `user`'s upload `id` to be `task`'s input; its key. Not found
/// (another person's, expired, unknown) is an error in words.
pub async fn use_upload(state: &AppState, user: &UserId, id: &str, task: &TaskId) -> Result<ObjectPath> {
    let gone = || AppError::invalid("the image to start from is gone (uploaded over a day ago?); upload it again");
    let from = upload_key(state, user, id).await?.ok_or_else(gone)?;
    let to = input_key(task);
    state.objects.copy(&from, &to).await.map_err(|_| gone())?;
    Ok(to)
}

/// Copies a task's stored output `n` to be `task`'s input (an upscale).
pub async fn use_output(objects: &Arc<dyn ObjectStore>, source: &TaskId, n: u8, task: &TaskId) -> Result<ObjectPath> {
    let to = input_key(task);
    objects.copy(&super::engine::finalize::output_key(source, n), &to).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => AppError::not_found(),
        e => AppError::internal(e),
    })?;
    Ok(to)
}

/// Removes uploads older than a day (rows and objects); how many.
pub async fn expire(state: &AppState) -> Result<usize> {
    let before = state.clock.now_ms() - UPLOAD_TTL_MS;
    let rows = sqlx::query("SELECT id, object_key FROM uploads WHERE created_at < $1 LIMIT 500")
        .bind(before)
        .fetch_all(&state.db)
        .await?;
    for row in &rows {
        let (id, key): (String, String) = (row.try_get("id")?, row.try_get("object_key")?);
        match state.objects.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(upload = %id, "cannot remove an expired upload: {e}");
                continue;
            }
        }
        sqlx::query("DELETE FROM uploads WHERE id = $1").bind(&id).execute(&state.db).await?;
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_jpeg_is_decoded_scaled_to_about_the_size_kept() {
        assert_eq!(decoded_size(Format::Jpeg, 6000, 4000), (3000, 2000), "1/2: 1/4 would be under 2048 wide");
        assert_eq!(decoded_size(Format::Jpeg, 8192, 1024), (2048, 256), "1/4");
        assert_eq!(decoded_size(Format::Jpeg, 1600, 1200), (1600, 1200), "kept whole");
        assert_eq!(decoded_size(Format::Png, 6000, 4000), (6000, 4000), "only JPEG scales in decoding");

        // 4200 × 2800, red on the left and blue on the right, decodes at
        // 1/2 and is kept at 2048 × 1365 with its colours where they were.
        let picture = image::RgbImage::from_fn(4200, 2800, |x, _| {
            if x < 2100 { image::Rgb([220, 30, 30]) } else { image::Rgb([30, 30, 220]) }
        });
        let mut jpeg = Vec::new();
        image::DynamicImage::ImageRgb8(picture)
            .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        let png = decode_to_png(std::io::Cursor::new(jpeg), Format::Jpeg).unwrap();
        assert_eq!((png.width, png.height), (2048, 1365));
        let kept = image::load_from_memory(&png.bytes).unwrap().into_rgb8();
        let near = |a: [u8; 3], b: [u8; 3]| a.iter().zip(b).all(|(x, y)| x.abs_diff(y) < 24);
        assert!(near(kept.get_pixel(300, 700).0, [220, 30, 30]), "{:?}", kept.get_pixel(300, 700));
        assert!(near(kept.get_pixel(1700, 700).0, [30, 30, 220]), "{:?}", kept.get_pixel(1700, 700));
        assert!(decode_to_png(std::io::Cursor::new(b"\xFF\xD8\xFF\xE0 not a jpeg".to_vec()), Format::Jpeg).is_err());
    }

    #[test]
    fn formats_are_told_by_their_bytes_alone() {
        assert_eq!(Format::sniff(b"\x89PNG\r\n\x1a\n...."), Some(Format::Png));
        assert_eq!(Format::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(Format::Jpeg));
        assert_eq!(Format::sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 "), Some(Format::Webp));
        for other in [&b"<svg xmlns"[..], b"<!DOCTYPE html>", b"GIF89a", b"RIFF\x00\x00\x00\x00WAVE", b""] {
            assert_eq!(Format::sniff(other), None, "{other:?}");
        }
    }

    #[test]
    fn sizes_past_the_caps_are_refused_before_decoding() {
        assert!(check_size(6000, 4000).is_ok(), "a 24-megapixel photo");
        assert!(check_size(8192, 100).is_ok());
        assert!(check_size(6000, 4200).is_err(), "over the pixel cap");
        assert!(check_size(8193, 1).is_err(), "over the side cap");
        assert!(check_size(50_000, 50_000).unwrap_err().message.contains("50000 × 50000"));
        assert!(check_size(0, 10).is_err());
    }

    #[test]
    fn a_png_claiming_fifty_thousand_pixels_a_side_is_refused_from_its_header() {
        // A valid signature and IHDR, and nothing else: 33 bytes.
        let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        png.extend_from_slice(&50_000u32.to_be_bytes());
        png.extend_from_slice(&50_000u32.to_be_bytes());
        png.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        let size = imagesize::blob_size(&png).unwrap();
        assert_eq!((size.width, size.height), (50_000, 50_000));
        assert!(decode_to_png(std::io::Cursor::new(png), Format::Png).is_err(), "and the decoder refuses it too");
    }
}
