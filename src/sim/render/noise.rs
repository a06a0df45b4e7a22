//! Deterministic randomness for the renderer: a small seeded generator and
//! smooth value noise. Self-contained so the same prompt renders the same
//! bytes whatever version of `rand` the build resolves.

/// SplitMix64: tiny, fast, and good enough to place hills and suns.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[low, high)`.
    pub(super) fn range(&mut self, low: f32, high: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        low + (high - low) * unit
    }

    /// Uniform in `0..n` (n > 0).
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub(super) fn seed32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}

/// A hash of a lattice point to `[0, 1)`.
pub(super) fn hash2(x: i32, y: i32, seed: u32) -> f32 {
    let mut h =
        (x as u32).wrapping_mul(0x27D4_EB2D) ^ (y as u32).wrapping_mul(0x1656_67B1) ^ seed.wrapping_mul(0x9E37_79B9);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297A_2D39);
    h ^= h >> 15;
    (h >> 8) as f32 / (1u32 << 24) as f32
}

/// `floor` without a libm call (the default x86-64 target has no SSE4.1).
fn fast_floor(v: f32) -> i32 {
    let truncated = v as i32;
    if v < truncated as f32 { truncated - 1 } else { truncated }
}

fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Value noise in `[0, 1)`, smooth between lattice points.
pub(super) fn value2(x: f32, y: f32, seed: u32) -> f32 {
    let (ix, iy) = (fast_floor(x), fast_floor(y));
    let (tx, ty) = (smooth(x - ix as f32), smooth(y - iy as f32));
    let a = hash2(ix, iy, seed);
    let b = hash2(ix + 1, iy, seed);
    let c = hash2(ix, iy + 1, seed);
    let d = hash2(ix + 1, iy + 1, seed);
    let top = a + (b - a) * tx;
    let bottom = c + (d - c) * tx;
    top + (bottom - top) * ty
}

/// Fractal sum of `octaves` layers of value noise, normalised to `[0, 1)`.
pub(super) fn fbm2(x: f32, y: f32, seed: u32, octaves: u32) -> f32 {
    let (mut sum, mut norm, mut amp, mut freq) = (0.0, 0.0, 1.0, 1.0);
    for octave in 0..octaves {
        sum += amp * value2(x * freq, y * freq, seed.wrapping_add(octave * 1013));
        norm += amp;
        amp *= 0.5;
        freq *= 2.03;
    }
    sum / norm
}

/// One-dimensional fractal noise, for ridge lines.
pub(super) fn fbm1(x: f32, seed: u32, octaves: u32) -> f32 {
    fbm2(x, 0.5, seed, octaves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_stays_in_range_and_is_deterministic() {
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let (x, y) = (rng.range(-50.0, 50.0), rng.range(-50.0, 50.0));
            let v = fbm2(x, y, 3, 4);
            assert!((0.0..1.0).contains(&v), "{v}");
            assert_eq!(v, fbm2(x, y, 3, 4));
        }
        assert_eq!(Rng::new(1).next_u64(), Rng::new(1).next_u64());
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }
}
