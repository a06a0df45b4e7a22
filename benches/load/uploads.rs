//! Benchmark 8: images in. 50 people upload a ~10 MB JPEG photo each at
//! once (24 megapixels: what a camera makes) while 8 others poll their
//! processing tasks every 3 s; the server's peak RSS, how long the uploads
//! took, and the other people's poll latency while they ran.

use std::{sync::Arc, time::Duration};

use super::{api, http, loadgen, procs, report::Report};

const UPLOADS: usize = 50;
const POLLERS: usize = 8;
const POLLED_TASKS: usize = 400;
const RUNS: usize = 3;

/// A JPEG of `width` × `height` whose size is near 10 MB: a smooth scene
/// with grain, the grain's strength chosen to land there.
fn photo(width: u32, height: u32) -> Vec<u8> {
    let encode = |grain: u32| {
        let picture = image::RgbImage::from_fn(width, height, |x, y| {
            let noise = (x.wrapping_mul(374_761_393) ^ y.wrapping_mul(668_265_263)).wrapping_mul(1_274_126_177) >> 24;
            let g = (noise * grain / 255) as u8;
            image::Rgb([(x * 255 / width) as u8 ^ g, (y * 255 / height) as u8 ^ g, ((x + y) % 256) as u8 ^ g])
        });
        let mut bytes = Vec::new();
        let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 88);
        encoder.encode_image(&picture).expect("encode the photo");
        bytes
    };
    let (mut low, mut high) = (0u32, 255u32);
    let mut best = encode(high);
    while high - low > 4 {
        let mid = (low + high) / 2;
        let bytes = encode(mid);
        if bytes.len() > 10_000_000 {
            high = mid;
        } else {
            low = mid;
            best = bytes;
        }
    }
    best
}

struct Run {
    peak_mib: f64,
    before_mib: f64,
    upload_secs: f64,
    p50: f64,
    p99: f64,
    polls: u64,
    poll_errors: u64,
    refused: usize,
}

pub async fn bench(dir: &std::path::Path, report: &mut Report) {
    let photo = Arc::new(tokio::task::spawn_blocking(|| photo(6000, 4000)).await.expect("photo"));
    eprintln!("  the photo: {:.1} MB, 6000 × 4000", photo.len() as f64 / 1e6);
    let mut runs = Vec::new();
    for run in 0..RUNS {
        runs.push(one_run(dir, run, &photo).await);
    }
    let med = |f: &dyn Fn(&Run) -> f64| loadgen::median(&runs.iter().map(f).collect::<Vec<_>>());
    report.line("### 8. Images in: 50 uploads of a 10 MB photo at once");
    report.line(&format!(
        "50 accounts each upload the same {:.1} MB JPEG (6000 × 4000, 24 megapixels) to `/api/upload_image` at \
         once, while 8 other accounts poll {POLLED_TASKS} processing tasks (`#ms=600000`) through \
         `/api/check_image_status`, each once per 3 s, evenly spread (latency from when a poll was due). The \
         server checks, decodes (at most 32 megapixels at once), shrinks to 2048 a side and re-encodes each. \
         `VmHWM` from `/proc/PID/status`, fresh server per run, median of {RUNS} runs.",
        photo.len() as f64 / 1e6
    ));
    report.line("");
    report.line("| peak RSS (VmHWM) MiB | before the uploads MiB | all 50 stored in | polls | poll p50 ms | poll p99 ms | poll errors | uploads refused | target |");
    report.line("|---|---|---|---|---|---|---|---|---|");
    report.line(&format!(
        "| **{:.1}** | {:.1} | {:.1} s | {:.0} | {:.2} | **{:.2}** | {:.0} | {:.0} | peak < 250 MiB, p99 < 50 ms |",
        med(&|r| r.peak_mib),
        med(&|r| r.before_mib),
        med(&|r| r.upload_secs),
        med(&|r| r.polls as f64),
        med(&|r| r.p50),
        med(&|r| r.p99),
        med(&|r| r.poll_errors as f64),
        med(&|r| r.refused as f64),
    ));
    report.line("");
}

async fn one_run(dir: &std::path::Path, run: usize, photo: &Arc<Vec<u8>>) -> Run {
    let data = dir.join(format!("uploads-{run}"));
    std::fs::create_dir_all(&data).expect("data dir");
    let app = procs::darkroom(
        &data,
        &[
            ("DARKROOM_SIM_RATE_LIMITS", "create=600000/min".into()),
            ("DARKROOM_PROVIDER_LIMITS", "create=600000/min".into()),
        ],
    );
    let addr = app.addr;
    let pollers = futures::future::join_all(
        (0..POLLERS).map(|i| async move { api::sign_up(addr, &format!("p{run}-{i}@bench.test")).await }),
    )
    .await;
    let mut tasks = Vec::new();
    for n in 0..POLLED_TASKS {
        let session = &pollers[n % POLLERS];
        tasks.push((n % POLLERS, session.generate(&format!("waiting {n} #ms=600000")).await));
    }
    let uploaders = futures::future::join_all(
        (0..UPLOADS).map(|i| async move { api::sign_up(addr, &format!("u{run}-{i}@bench.test")).await }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (before, _) = app.memory_kib();
    let requests: Vec<Arc<Vec<u8>>> = tasks
        .iter()
        .map(|(u, id)| {
            Arc::new(http::post_form("/api/check_image_status", &pollers[*u].cookie, &format!("task_id={id}")))
        })
        .collect();
    let polls = tokio::spawn({
        let addr = app.addr;
        async move {
            loadgen::paced(
                addr,
                32,
                requests.len(),
                Duration::from_secs(3),
                12.0,
                Arc::new(move |j| Arc::clone(&requests[j as usize])),
            )
            .await
        }
    });
    // The uploads start a second into the polls and overlap them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = std::time::Instant::now();
    let answers = futures::future::join_all(uploaders.iter().map(|s| s.upload(photo.as_ref().clone()))).await;
    let upload_secs = started.elapsed().as_secs_f64();
    let stats = polls.await.expect("polls");
    let (peak, _) = app.memory_kib();
    let refused = answers.iter().filter(|a| a.is_err()).count();
    if let Some(Err(e)) = answers.iter().find(|a| a.is_err()) {
        eprintln!("  an upload was refused: {e}");
    }
    eprintln!(
        "  run {run}: VmHWM {:.1} MiB (before {:.1}); 50 uploads in {upload_secs:.1} s; polls {} p50 {:.2} ms p99 {:.2} ms errors {}",
        peak as f64 / 1024.0,
        before as f64 / 1024.0,
        stats.requests,
        stats.pct_ms(0.5),
        stats.pct_ms(0.99),
        stats.errors
    );
    drop(app);
    let _ = std::fs::remove_dir_all(&data);
    Run {
        peak_mib: peak as f64 / 1024.0,
        before_mib: before as f64 / 1024.0,
        upload_secs,
        p50: stats.pct_ms(0.5),
        p99: stats.pct_ms(0.99),
        polls: stats.requests,
        poll_errors: stats.errors,
        refused,
    }
}
