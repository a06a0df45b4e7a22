//! The simulator's output: a PNG landscape rendered from the prompt, the
//! seed and the output's index, 512×512 or any other width and height.
//! Deterministic (the three together seed everything), different for every
//! prompt, seed and index (palette, sun, hills, trees, clouds), and made to
//! be looked at: it is the first image every new user sees.
//!
//! The scene is laid out in a frame 512 units tall: vertical positions
//! follow the height, horizontal ones the width, and sizes (sun, trees,
//! noise scales) the height, so a wide image shows a wider view rather than
//! stretched hills. At 512×512 every unit is one pixel, which keeps the
//! images of ids minted before sizes existed byte for byte.
//!
//! An image-to-image output is the same landscape blended with its input's
//! colour grid (see `guide.rs`), so it visibly follows the input.

mod guide;
mod noise;
mod palette;

use sha2::{Digest, Sha256};

use noise::{Rng, fbm1, fbm2, hash2};
use palette::{PALETTES, Palette, Rgb, mix};

pub(super) use guide::{GRID, GRID_BYTES, Grid, Guide};

/// Width and height of an image without an aspect ratio, and the height of
/// the frame scenes are designed in.
pub(super) const SIZE: u32 = 512;
/// Ridge samples per pixel column, for smooth hill and tree edges.
const SUB: usize = 3;
/// Most bands of hills in one image.
const MAX_LAYERS: usize = 6;
/// Largest width or height rendered (the simulator asks for 768 at most).
const MAX_SIDE: u32 = 4096;

/// What to render: one output of one prediction.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Picture {
    pub prompt: String,
    pub seed: u32,
    /// Which of the prediction's outputs (0 for the first).
    pub index: u8,
    pub width: u32,
    pub height: u32,
    /// The input image an image-to-image output follows.
    pub guide: Option<Guide>,
}

/// The seed of an id minted before seeds could be asked for: the first four
/// bytes of the prompt's SHA-256, as those predictions' logs printed it.
pub(super) fn seed_of(prompt: &str) -> u32 {
    let digest = Sha256::digest(prompt.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The 64-bit seed of a scene: the seed in the high half, and in the low
/// half the next four bytes of the prompt's SHA-256, mixed with the index.
/// So a different seed or index always gives a different scene, and with
/// the seed [`seed_of`] picks, index 0 is seeded exactly as before seeds
/// existed (by the first eight bytes of the digest).
fn scene_seed(prompt: &str, seed: u32, index: u8) -> u64 {
    let digest = Sha256::digest(prompt.as_bytes());
    let word = u32::from_be_bytes([digest[4], digest[5], digest[6], digest[7]]);
    // An odd multiplier: distinct indexes give distinct words.
    let low = word ^ u32::from(index).wrapping_mul(0x9E37_79B9);
    (u64::from(seed) << 32) | u64::from(low)
}

/// Lower-case hex SHA-256, for made-up but stable version ids.
pub(super) fn hex_digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Renders the picture's landscape (blended with its guide, if any) and
/// encodes it as an RGB PNG. CPU-bound (tens of ms): made through
/// `files::serve_png` (a permit, a thread of lower priority). Sides are
/// clamped to 1..=4096.
pub(super) fn render_png(picture: &Picture) -> Result<Vec<u8>, png::EncodingError> {
    let (width, height) = (picture.width.clamp(1, MAX_SIDE), picture.height.clamp(1, MAX_SIDE));
    let scene = Scene::new(scene_seed(&picture.prompt, picture.seed, picture.index), width, height);
    let mut pixels = scene.paint();
    if let Some(guide) = &picture.guide {
        guide.blend(&mut pixels, scene.frame.width, scene.frame.height);
    }
    encode_png(width, height, png::ColorType::Rgb, &pixels)
}

/// Encodes 8-bit pixels of `color` (RGB or RGBA, row by row) as a PNG.
pub(super) fn encode_png(
    width: u32,
    height: u32,
    color: png::ColorType,
    pixels: &[u8],
) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::with_capacity(pixels.len() / 3);
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(pixels)?;
    writer.finish()?;
    Ok(out)
}

/// One band of hills, far (depth 0) to near (depth 1).
struct Layer {
    /// Top edge, `SUB` samples per column.
    ridge: Vec<f32>,
    /// The same edge without trees, for shading that must not streak.
    ground: Vec<f32>,
    /// Highest and lowest ridge sample of each column (a quick coverage test).
    span: Vec<(f32, f32)>,
    color: Rgb,
    depth: f32,
}

struct Scene {
    frame: Frame,
    palette: &'static Palette,
    horizon: f32,
    sun: (f32, f32, f32),
    cloudiness: f32,
    seeds: [u32; 4],
    layers: Vec<Layer>,
    /// What depends on the column only, computed once per column.
    columns: Vec<Column>,
}

struct Column {
    /// Warmth of hills on the sun's side, 0..1.
    toward_sun: f32,
    /// Height of the aurora's lower edge.
    aurora_line: f32,
    /// Brightness of the aurora's ray in this column.
    aurora_rays: f32,
}

impl Scene {
    fn new(seed: u64, width: u32, height: u32) -> Self {
        let frame = Frame::new(width, height);
        let (w, h, unit) = (frame.w, frame.h, frame.unit);
        let mut rng = Rng::new(seed);
        let palette = &PALETTES[rng.below(PALETTES.len())];
        let horizon = h * rng.range(0.52, 0.66);
        let radius = unit * if palette.night { rng.range(16.0, 28.0) } else { rng.range(24.0, 44.0) };
        let sun = (w * rng.range(0.18, 0.82), horizon * rng.range(0.3, 0.85), radius);
        let cloudiness = rng.range(0.0, 1.0);
        let seeds = [rng.seed32(), rng.seed32(), rng.seed32(), rng.seed32()];
        let count = 4 + rng.below(MAX_LAYERS - 3);
        let layers =
            (0..count).map(|i| layer(&mut rng, palette, &frame, horizon, i as f32 / (count - 1) as f32)).collect();
        let columns = (0..frame.width)
            .map(|x| {
                let fx = x as f32 + 0.5;
                Column {
                    toward_sun: (-(fx - sun.0).abs() / (w * 0.6)).exp(),
                    aurora_line: horizon * (0.38 + 0.22 * (fbm1(fx / (170.0 * unit), seeds[2], 3) - 0.5)),
                    aurora_rays: 0.55 + 0.45 * fbm1(fx / (9.0 * unit), seeds[1], 2),
                }
            })
            .collect();
        Self { frame, palette, horizon, sun, cloudiness, seeds, layers, columns }
    }

    fn paint(&self) -> Vec<u8> {
        let mut pixels = Vec::with_capacity(self.frame.width * self.frame.height * 3);
        for y in 0..self.frame.height {
            for x in 0..self.frame.width {
                let color = self.vignette(self.pixel(x, y), x, y);
                let grain = hash2(x as i32, y as i32, self.seeds[3]) - 0.5;
                // Clamped to 0..=255.5 first, so the cast rounds to nearest.
                pixels.extend(color.map(|c| (c * 255.0 + grain + 0.5).clamp(0.0, 255.5) as u8));
            }
        }
        pixels
    }

    /// The nearest layer that covers the pixel fully hides everything
    /// behind it, so only it and the partly covering ones nearer are shaded.
    fn pixel(&self, x: usize, y: usize) -> Rgb {
        let fy = y as f32 + 0.5;
        let mut coverage = [0.0f32; MAX_LAYERS];
        for (cov, layer) in coverage.iter_mut().zip(&self.layers) {
            *cov = layer.coverage(x, fy);
        }
        let front = coverage[..self.layers.len()].iter().rposition(|&c| c >= 1.0);
        let (mut color, first) = match front {
            Some(i) => (self.shade(&self.layers[i], x, fy), i + 1),
            None => (self.sky(x, y), 0),
        };
        for (layer, &cov) in self.layers.iter().zip(&coverage).skip(first) {
            if cov > 0.0 {
                color = mix(color, self.shade(layer, x, fy), cov);
            }
        }
        color
    }

    fn sky(&self, x: usize, y: usize) -> Rgb {
        let p = self.palette;
        let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
        let t = (fy / self.horizon).clamp(0.0, 1.0);
        let mut color = if t < 0.6 {
            mix(p.sky_top, p.sky_mid, smoothstep(0.0, 0.6, t))
        } else {
            mix(p.sky_mid, p.horizon, smoothstep(0.6, 1.0, t))
        };
        let (sx, sy, r) = self.sun;
        let d = ((fx - sx).powi(2) + (fy - sy).powi(2)).sqrt();
        let (near_glow, wide_glow) = if p.night { (0.3, 0.12) } else { (0.55, 0.3) };
        let glow = near_glow * (-d / (r * 2.2)).exp() + wide_glow * (-d / (r * 7.0)).exp();
        if p.night {
            let h = hash2(x as i32, y as i32, self.seeds[0]);
            if h > 0.9965 {
                let twinkle = 0.35 + 0.65 * (h - 0.9965) / 0.0035;
                color = mix(color, [1.0; 3], twinkle * (1.0 - t).powf(1.4) * (1.0 - glow));
            }
        }
        if p.aurora {
            color = self.aurora(color, &self.columns[x], fy);
        }
        color = mix(color, p.sun, glow.min(1.0));
        let cover = (r - d + 0.5).clamp(0.0, 1.0);
        if cover > 0.0 {
            let disc = if p.night {
                let maria = fbm2(fx / (7.0 * self.frame.unit), fy / (7.0 * self.frame.unit), self.seeds[1], 3);
                p.sun.map(|c| c * (0.86 + 0.14 * maria))
            } else {
                p.sun
            };
            color = mix(color, disc, cover);
        }
        if !p.night {
            color = self.clouds(color, fx, fy, t, glow);
        }
        color
    }

    /// Soft, wind-stretched clouds, lit from the sun's side.
    fn clouds(&self, color: Rgb, fx: f32, fy: f32, t: f32, glow: f32) -> Rgb {
        let band = smoothstep(0.05, 0.35, t) * (1.0 - smoothstep(0.75, 1.0, t));
        if band <= 0.0 || self.cloudiness < 0.15 {
            return color;
        }
        let density = fbm2(fx / (150.0 * self.frame.unit), fy / (26.0 * self.frame.unit), self.seeds[2], 4);
        let alpha = smoothstep(0.62 - 0.14 * self.cloudiness, 0.82, density) * band * 0.7;
        let lit = mix(mix(self.palette.sky_mid, self.palette.sun, 0.55), self.palette.sun, glow);
        mix(color, lit, alpha)
    }

    /// Curtains of green fading to violet, with vertical rays.
    fn aurora(&self, color: Rgb, column: &Column, fy: f32) -> Rgb {
        let (h, line) = (self.horizon, column.aurora_line);
        let falloff =
            if fy < line { (-(line - fy) / (h * 0.2)).exp() } else { (-((fy - line) / (h * 0.035)).powi(2)).exp() };
        let tint = mix([0.36, 0.95, 0.70], [0.61, 0.48, 1.0], ((line - fy) / (h * 0.3)).clamp(0.0, 1.0));
        let strength = falloff * column.aurora_rays * 0.6;
        [0, 1, 2].map(|i| (color[i] + tint[i] * strength).min(1.0))
    }

    /// A hill's colour: hazier in its valleys, warmed on the sun's side.
    fn shade(&self, layer: &Layer, x: usize, fy: f32) -> Rgb {
        let sample = x * SUB + SUB / 2;
        let below_ground = (fy - layer.ground[sample]).max(0.0);
        let below = (fy - layer.ridge[sample]).max(0.0);
        let mist = (below_ground / (self.frame.h * 0.22)).min(1.0) * 0.55 * (1.0 - 0.75 * layer.depth);
        let color = mix(layer.color, self.palette.horizon, mist);
        // The crest catches the light; 20 units down it has faded to nothing.
        let crest = if below < 20.0 * self.frame.unit { (-below / (3.0 * self.frame.unit)).exp() * 0.12 } else { 0.0 };
        let rim = crest + self.columns[x].toward_sun * 0.06;
        mix(color, self.palette.sun, rim * (1.0 - 0.6 * layer.depth))
    }

    /// Darkens towards the corners, following the frame's shape.
    fn vignette(&self, color: Rgb, x: usize, y: usize) -> Rgb {
        let (dx, dy) = (x as f32 / self.frame.w - 0.5, y as f32 / self.frame.h - 0.5);
        let v = 1.0 - 0.4 * (dx * dx + dy * dy);
        color.map(|c| c * v)
    }
}

/// The image's size, in pixels and as floats, and its design unit.
struct Frame {
    width: usize,
    height: usize,
    w: f32,
    h: f32,
    /// Pixels per unit of the 512-tall design frame (exactly 1 at 512).
    unit: f32,
}

impl Frame {
    fn new(width: u32, height: u32) -> Self {
        let (w, h) = (width as f32, height as f32);
        Self { width: width as usize, height: height as usize, w, h, unit: h / SIZE as f32 }
    }
}

impl Layer {
    /// How much of pixel row `fy` (its centre) this layer covers in column `x`.
    fn coverage(&self, x: usize, fy: f32) -> f32 {
        let (top, bottom) = self.span[x];
        if fy + 0.5 <= top {
            return 0.0;
        }
        if fy - 0.5 >= bottom {
            return 1.0;
        }
        let samples = &self.ridge[x * SUB..(x + 1) * SUB];
        samples.iter().map(|r| (fy + 0.5 - r).clamp(0.0, 1.0)).sum::<f32>() / SUB as f32
    }
}

/// A band of hills: far ones tall, jagged and hazy; near ones low, rounded,
/// dark, and sometimes wooded. A hill's width follows the height, like its
/// amplitude, so wide images show more hills rather than wider ones.
fn layer(rng: &mut Rng, palette: &Palette, frame: &Frame, horizon: f32, depth: f32) -> Layer {
    let h = frame.h;
    let base = horizon + (h - horizon) * (0.03 + 0.72 * depth.powf(1.3));
    let amplitude = h * (0.2 * (1.0 - depth) + 0.05) * rng.range(0.7, 1.15);
    let bumps = rng.range(1.5, 3.0) * (1.0 + 1.6 * (1.0 - depth));
    let (seed, offset) = (rng.seed32(), rng.range(0.0, 100.0));
    let (octaves, contrast) = if depth < 0.5 { (6, 1.6) } else { (4, 1.9) };
    let ground: Vec<f32> = (0..frame.width * SUB)
        .map(|i| {
            let x = (i as f32 + 0.5) / SUB as f32;
            let n = fbm1(offset + x / h * bumps, seed, octaves);
            let n = ((n - 0.5) * contrast + 0.5).clamp(0.0, 1.0);
            let shape = if depth < 0.5 { n.powf(1.4) } else { n };
            base - amplitude * shape
        })
        .collect();
    let mut ridge = ground.clone();
    if depth > 0.6 && rng.range(0.0, 1.0) < 0.65 {
        add_trees(&mut ridge, &ground, rng, frame, depth);
    }
    let body = mix(palette.far, palette.near, depth);
    let color = mix(palette.horizon, body, 0.4 + 0.6 * depth);
    let span =
        ridge.chunks(SUB).map(|c| c.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)))).collect();
    Layer { ridge, ground, span, color, depth }
}

/// A stand of pines along part of the ridge: triangles rising from it.
fn add_trees(ridge: &mut [f32], ground: &[f32], rng: &mut Rng, frame: &Frame, depth: f32) {
    let scale = (0.6 + 0.8 * depth) * frame.unit;
    let start = frame.w * rng.range(-0.2, 0.5);
    let end = start + frame.w * rng.range(0.35, 0.9);
    let mut cx = start.max(0.0) + rng.range(0.0, 6.0) * frame.unit;
    while cx < end.min(frame.w) {
        let height = rng.range(9.0, 24.0) * scale;
        let half_width = height * rng.range(0.2, 0.3);
        let centre = ((cx * SUB as f32) as usize).min(ground.len() - 1);
        let lo = ((cx - half_width).max(0.0) * SUB as f32) as usize;
        let hi = (((cx + half_width) * SUB as f32) as usize).min(ridge.len());
        for (i, top) in ridge.iter_mut().enumerate().take(hi).skip(lo) {
            let x = (i as f32 + 0.5) / SUB as f32;
            let peak = 1.0 - (x - cx).abs() / half_width;
            if peak > 0.0 {
                *top = top.min(ground[centre] + 2.0 - height * peak);
            }
        }
        cx += rng.range(2.5, 8.0) * scale;
    }
}

fn smoothstep(edge0: f32, edge1: f32, x: f32) -> f32 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

#[cfg(test)]
mod tests;
