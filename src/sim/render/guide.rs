//! Image-to-image: a landscape that follows its input image's colours and
//! layout, by blending in a small grid of the input's average colours,
//! upsampled bilinearly to the output's size.

/// Cells on each side of an input's colour grid.
pub(in crate::sim) const GRID: usize = 12;
/// Bytes of a grid: RGB per cell, row by row from the top left.
pub(in crate::sim) const GRID_BYTES: usize = GRID * GRID * 3;
/// The input's weight at a prompt strength of 1: even then it clearly shows.
const LEAST_WEIGHT: f32 = 0.35;
/// The input's weight at a prompt strength of 0: the landscape still shows
/// through a little.
const MOST_WEIGHT: f32 = 0.9;

/// The average colours of an input image, [`GRID`]×[`GRID`] cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::sim) struct Grid(pub [u8; GRID_BYTES]);

/// What an image-to-image output follows.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::sim) struct Guide {
    pub grid: Grid,
    /// `prompt_strength`: how far the output moves away from the input, 0 to 1.
    pub strength: f32,
}

impl Guide {
    /// The input's share of each output pixel.
    fn weight(&self) -> f32 {
        let keep = 1.0 - self.strength.clamp(0.0, 1.0);
        LEAST_WEIGHT + (MOST_WEIGHT - LEAST_WEIGHT) * keep
    }

    /// Blends the grid into `pixels` (RGB, `width` a row).
    pub(super) fn blend(&self, pixels: &mut [u8], width: usize, height: usize) {
        let weight = self.weight();
        let columns: Vec<Axis> = (0..width).map(|x| Axis::at(x, width)).collect();
        for (y, row) in pixels.chunks_exact_mut(width * 3).enumerate().take(height) {
            let rows = Axis::at(y, height);
            for (pixel, column) in row.chunks_exact_mut(3).zip(&columns) {
                for (channel, value) in pixel.iter_mut().enumerate() {
                    let cell = |gx: usize, gy: usize| f32::from(self.grid.0[(gy * GRID + gx) * 3 + channel]);
                    let top = column.lerp(cell(column.low, rows.low), cell(column.high, rows.low));
                    let bottom = column.lerp(cell(column.low, rows.high), cell(column.high, rows.high));
                    let input = rows.lerp(top, bottom);
                    // Clamped to 0..=255.5 first, so the cast rounds to nearest.
                    *value = (f32::from(*value) * (1.0 - weight) + input * weight + 0.5).clamp(0.0, 255.5) as u8;
                }
            }
        }
    }
}

/// Where a pixel row or column falls between two grid cells' centres.
struct Axis {
    low: usize,
    high: usize,
    /// How far towards `high`, 0 to 1.
    t: f32,
}

impl Axis {
    fn at(i: usize, len: usize) -> Self {
        let g = ((i as f32 + 0.5) * GRID as f32 / len.max(1) as f32 - 0.5).clamp(0.0, (GRID - 1) as f32);
        let low = g.floor() as usize;
        Self { low, high: (low + 1).min(GRID - 1), t: g - low as f32 }
    }

    fn lerp(&self, a: f32, b: f32) -> f32 {
        a + (b - a) * self.t
    }
}
