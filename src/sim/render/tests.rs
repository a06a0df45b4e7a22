//! Tests of the renderer: real PNGs, the same bytes for the same prompt,
//! visibly different images for different prompts.

use super::*;

fn render(prompt: &str) -> Vec<u8> {
    render_png(prompt).unwrap_or_else(|e| panic!("render {prompt:?}: {e}"))
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
    assert_eq!((width, height), (SIZE as u32, SIZE as u32));
    assert_eq!(pixels.len(), SIZE * SIZE * 3);
    let mut colours: Vec<[u8; 3]> = pixels.chunks(3).map(|p| [p[0], p[1], p[2]]).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 2_000, "only {} colours", colours.len());
    // The sky (top rows) and the ground (bottom rows) differ.
    let row = |y: usize| &pixels[y * SIZE * 3..(y + 1) * SIZE * 3];
    assert!(share_different(row(4), row(SIZE - 4)) > 0.5);
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
        let scene = Scene::new(&format!("prompt {n}"));
        if let Some(i) = PALETTES.iter().position(|p| std::ptr::eq(p, scene.palette)) {
            seen[i] = true;
        }
    }
    assert!(seen.iter().all(|&s| s), "{seen:?}");
}
