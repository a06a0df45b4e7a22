//! Tests of the renderer: real PNGs of the asked size, the same bytes for
//! the same prompt, seed and index, visibly different images otherwise, and
//! the bytes of ids from before seeds and sizes existed, and image-to-image
//! outputs that follow their input.

use super::*;

/// A picture as an id from before seeds existed asked for it.
fn square(prompt: &str) -> Picture {
    Picture { prompt: prompt.into(), seed: seed_of(prompt), index: 0, width: SIZE, height: SIZE, guide: None }
}

fn render_picture(picture: &Picture) -> Vec<u8> {
    render_png(picture).unwrap_or_else(|e| panic!("render {picture:?}: {e}"))
}

fn render(prompt: &str) -> Vec<u8> {
    render_picture(&square(prompt))
}

/// Decodes a PNG into (width, height, RGB pixels).
fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(bytes);
    let mut reader = decoder.read_info().unwrap_or_else(|e| panic!("PNG header: {e}"));
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap_or_else(|e| panic!("PNG data: {e}"));
    assert_eq!(info.color_type, png::ColorType::Rgb);
    pixels.truncate(info.buffer_size());
    (info.width, info.height, pixels)
}

/// Share of pixels whose colour differs by more than 24 levels in a channel.
fn share_different(a: &[u8], b: &[u8]) -> f64 {
    let differing =
        a.chunks(3).zip(b.chunks(3)).filter(|(p, q)| p.iter().zip(q.iter()).any(|(x, y)| x.abs_diff(*y) > 24)).count();
    differing as f64 / (a.len() / 3) as f64
}

#[test]
fn the_same_prompt_renders_the_same_bytes() {
    let first = render("a lighthouse on a cliff at dusk");
    assert_eq!(first, render("a lighthouse on a cliff at dusk"));
    assert!(first.starts_with(b"\x89PNG\r\n\x1a\n"));
}

#[test]
fn images_are_full_size_and_not_flat() {
    let (width, height, pixels) = decode(&render("a quiet valley"));
    assert_eq!((width, height), (SIZE, SIZE));
    let size = SIZE as usize;
    assert_eq!(pixels.len(), size * size * 3);
    let mut colours: Vec<[u8; 3]> = pixels.chunks(3).map(|p| [p[0], p[1], p[2]]).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 2_000, "only {} colours", colours.len());
    // The sky (top rows) and the ground (bottom rows) differ.
    let row = |y: usize| &pixels[y * size * 3..(y + 1) * size * 3];
    assert!(share_different(row(4), row(size - 4)) > 0.5);
}

#[test]
fn pictures_from_before_seeds_and_sizes_keep_their_bytes() {
    // SHA-256 of the PNGs the renderer made before it took a seed, an
    // index and a size (seeded by the prompt alone, 512×512).
    for (prompt, expected) in [
        ("a lighthouse on a cliff at dusk", "fb68e4ffd71e0771480df14ce4d681148afdad6f04b82e5de5ffd5fbacd0d2a7"),
        ("a quiet valley", "9003a234c27efa75ce1c7a5b99b3a66ab6c82cea1eb27403aed10d2720e33832"),
        ("a cat", "e91472e65b287f4238b45823cfcec4285ea2059ac87ae6ef331b2a1fba184e4c"),
    ] {
        assert_eq!(hex_digest(&render(prompt)), expected, "{prompt:?}");
    }
}

#[test]
fn pictures_have_the_asked_size_whatever_the_shape() {
    for (width, height) in [(768, 432), (432, 768), (768, 329), (768, 768)] {
        let picture = Picture { width, height, ..square("a wide valley") };
        let (w, h, pixels) = decode(&render_picture(&picture));
        assert_eq!((w, h), (width, height));
        // Sky above, ground below, whatever the shape.
        let row = |y: u32| &pixels[(y * width * 3) as usize..((y + 1) * width * 3) as usize];
        assert!(share_different(row(4), row(height - 4)) > 0.5, "{width}×{height}");
    }
}

#[test]
fn the_seed_and_the_index_each_change_the_image() {
    let base = Picture { seed: 42, index: 0, width: 96, height: 64, ..square("a seeded fox") };
    let image = |picture: &Picture| decode(&render_picture(picture)).2;
    let first = image(&base);
    assert_eq!(first, image(&base.clone()), "same seed, prompt and index");
    for other in [
        Picture { seed: 43, ..base.clone() },
        Picture { index: 1, ..base.clone() },
        Picture { index: 3, ..base.clone() },
        Picture { prompt: "a seeded fox.".into(), ..base.clone() },
    ] {
        assert!(share_different(&first, &image(&other)) > 0.02, "{other:?}");
    }
    assert_ne!(scene_seed("a", 1, 0), scene_seed("a", 1, 1));
    assert_ne!(scene_seed("a", 1, 0), scene_seed("a", 2, 0));
}

#[test]
fn different_prompts_render_visibly_different_images() {
    let prompts = ["a cat", "a dog", "a castle in the clouds", "a cat.", "neon city #slow"];
    let images: Vec<Vec<u8>> = prompts.iter().map(|p| decode(&render(p)).2).collect();
    for (i, a) in images.iter().enumerate() {
        for (j, b) in images.iter().enumerate().skip(i + 1) {
            let share = share_different(a, b);
            // Two prompts on the same dark palette differ least: ~8% of
            // pixels by more than 24 levels; identical scenes would give 0.
            assert!(
                share > 0.05,
                "{:?} and {:?} differ in only {:.1}% of pixels",
                prompts[i],
                prompts[j],
                share * 100.0
            );
        }
    }
}

#[test]
fn every_palette_is_reachable_from_some_prompt() {
    let mut seen = [false; PALETTES.len()];
    for n in 0..200 {
        let prompt = format!("prompt {n}");
        let scene = Scene::new(scene_seed(&prompt, seed_of(&prompt), 0), SIZE, SIZE);
        if let Some(i) = PALETTES.iter().position(|p| std::ptr::eq(p, scene.palette)) {
            seen[i] = true;
        }
    }
    assert!(seen.iter().all(|&s| s), "{seen:?}");
}

/// A grid whose left half is `left` and right half `right`.
fn halves(left: [u8; 3], right: [u8; 3]) -> Grid {
    let mut cells = [0; GRID_BYTES];
    for (n, cell) in cells.chunks_exact_mut(3).enumerate() {
        cell.copy_from_slice(if n % GRID < GRID / 2 { &left } else { &right });
    }
    Grid(cells)
}

/// Mean of red minus blue over the pixels of columns `from..to`.
fn redness(width: u32, pixels: &[u8], from: u32, to: u32) -> f64 {
    let (mut sum, mut count) = (0.0, 0.0);
    for (n, pixel) in pixels.chunks(3).enumerate() {
        let x = n as u32 % width;
        if (from..to).contains(&x) {
            sum += f64::from(pixel[0]) - f64::from(pixel[2]);
            count += 1.0;
        }
    }
    sum / count
}

#[test]
fn an_image_to_image_output_follows_its_input() {
    const RED: [u8; 3] = [230, 20, 20];
    const BLUE: [u8; 3] = [20, 20, 230];
    let (width, height) = (96, 64);
    let guided = |grid: Grid, strength: f32| Picture {
        width,
        height,
        guide: Some(Guide { grid, strength }),
        ..square("a guided valley")
    };
    let image = |picture: &Picture| decode(&render_picture(picture)).2;
    for strength in [0.0, 0.8, 1.0] {
        let red_blue = image(&guided(halves(RED, BLUE), strength));
        let blue_red = image(&guided(halves(BLUE, RED), strength));
        let (left, right) = (0..width / 2, width / 2..width);
        let tilt = |pixels: &[u8]| {
            redness(width, pixels, left.start, left.end) - redness(width, pixels, right.start, right.end)
        };
        assert!(tilt(&red_blue) > 100.0, "strength {strength}: left is redder by only {:.0}", tilt(&red_blue));
        assert!(tilt(&blue_red) < -100.0, "strength {strength}: right is redder by only {:.0}", -tilt(&blue_red));
        assert!(share_different(&red_blue, &blue_red) > 0.5, "strength {strength}");
    }
    let plain = image(&Picture { width, height, ..square("a guided valley") });
    let guided_once = image(&guided(halves(RED, BLUE), 0.8));
    assert!(share_different(&plain, &guided_once) > 0.5, "the input changes the landscape");
    assert_eq!(guided_once, image(&guided(halves(RED, BLUE), 0.8)), "deterministic");
}

#[test]
fn a_lower_prompt_strength_keeps_more_of_the_input() {
    let grey = Grid([128; GRID_BYTES]);
    let spread = |strength: f32| {
        let picture = Picture { guide: Some(Guide { grid: grey.clone(), strength }), ..square("a bright dawn") };
        let pixels = decode(&render_picture(&Picture { width: 64, height: 64, ..picture })).2;
        pixels.iter().map(|&c| (f64::from(c) - 128.0).abs()).sum::<f64>() / pixels.len() as f64
    };
    assert!(spread(0.1) < spread(0.9), "closer to the flat grey input at a low strength");
}
