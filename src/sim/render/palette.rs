//! Hand-picked colour schemes for the simulator's landscapes: a sky in
//! three stops, a sun (or moon), and hills from hazy-far to dark-near.

/// An RGB colour with channels in `0.0..=1.0`.
pub(super) type Rgb = [f32; 3];

/// One scheme.
pub(super) struct Palette {
    pub sky_top: Rgb,
    pub sky_mid: Rgb,
    pub horizon: Rgb,
    pub sun: Rgb,
    pub far: Rgb,
    pub near: Rgb,
    /// A moon and stars instead of a sun and clouds.
    pub night: bool,
    /// Northern lights across the sky.
    pub aurora: bool,
}

const fn hex(rgb: u32) -> Rgb {
    [((rgb >> 16) & 0xff) as f32 / 255.0, ((rgb >> 8) & 0xff) as f32 / 255.0, (rgb & 0xff) as f32 / 255.0]
}

const fn day(colors: [u32; 6]) -> Palette {
    Palette {
        sky_top: hex(colors[0]),
        sky_mid: hex(colors[1]),
        horizon: hex(colors[2]),
        sun: hex(colors[3]),
        far: hex(colors[4]),
        near: hex(colors[5]),
        night: false,
        aurora: false,
    }
}

const fn night(colors: [u32; 6], aurora: bool) -> Palette {
    let mut palette = day(colors);
    palette.night = true;
    palette.aurora = aurora;
    palette
}

/// Every scheme; the prompt's hash picks one.
pub(super) static PALETTES: [Palette; 10] = [
    // ember dusk
    day([0x1b1f4b, 0x6b3a78, 0xf59e72, 0xffe3a3, 0x9a5b8a, 0x1e1633]),
    // peach dawn
    day([0x6fa3d8, 0xc9b6d9, 0xffd3b0, 0xfff6e0, 0x8fa6c8, 0x2f3e5f]),
    // desert gold
    day([0xd9894f, 0xf4c58a, 0xfde6c0, 0xfffaf0, 0xd98b5f, 0x6e2f28]),
    // mint morning
    day([0x7cc4c4, 0xc8e6c9, 0xf6f1c7, 0xfffde8, 0x86b59a, 0x1d3b34]),
    // moonlit valley
    night([0x070b1f, 0x1a2350, 0x3d4f86, 0xeef2ff, 0x34406e, 0x0a0d20], false),
    // aurora
    night([0x03141f, 0x0b3b4a, 0x2a7d7f, 0xe8fff8, 0x1d4e57, 0x04161b], true),
    // lavender haze
    day([0x4b3f8f, 0x9c7fc0, 0xf2c1d9, 0xfff0f6, 0xa07bbd, 0x33244f]),
    // autumn evening
    day([0x2e4a7d, 0xc86f5a, 0xf7b267, 0xfff1c9, 0xb5533c, 0x3b1a17]),
    // ocean teal
    day([0x0f4c75, 0x3282b8, 0xbbe1d3, 0xfffbe6, 0x3f7f99, 0x0b2f3f]),
    // rose gold
    day([0x3a2c5f, 0xd4708f, 0xffc59e, 0xfff2d0, 0xc06c84, 0x3e1f3a]),
];

/// Linear blend of two colours.
pub(super) fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}
