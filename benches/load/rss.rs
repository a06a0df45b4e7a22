//! Benchmark 4: the server's peak RSS (`VmHWM`) while 100 tasks finalize
//! 8 MiB outputs at once, one image per task and then four. The simulator's PNGs are ~230 KB, so this section
//! points the app's real Replicate adapter (configuration only:
//! `DARKROOM_PROVIDER=replicate`, `REPLICATE_BASE_URL`,
//! `DARKROOM_OUTPUT_HOSTS`) at a small Replicate stand-in inside the harness
//! whose outputs are 8 MiB bodies that start with the PNG signature.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Path, State},
    http::{StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};
use serde_json::json;

use super::{api, loadgen::median, procs, report::Report};

const TASKS: usize = 100;
const OUTPUT_BYTES: usize = 8 * 1024 * 1024;
const OUTPUT_BYTES_TEXT: &str = "8388608";
const CHUNK: usize = 64 * 1024;
const RUNS: usize = 3;

struct Mock {
    base: String,
    /// Outputs per prediction.
    outputs: usize,
    next: AtomicU64,
    released: AtomicBool,
    chunk: Bytes,
}

async fn create(State(m): State<Arc<Mock>>) -> impl IntoResponse {
    let id = format!("p{}", m.next.fetch_add(1, Ordering::Relaxed));
    (StatusCode::CREATED, Json(json!({ "id": id, "status": "starting", "output": null })))
}

async fn prediction(State(m): State<Arc<Mock>>, Path(id): Path<String>) -> impl IntoResponse {
    if m.released.load(Ordering::Relaxed) {
        let urls: Vec<String> = (0..m.outputs).map(|n| format!("{}/out/{id}/out-{n}.png", m.base)).collect();
        Json(json!({ "id": id, "status": "succeeded", "output": urls }))
    } else {
        Json(json!({ "id": id, "status": "processing", "output": null, "logs": "10%|█ | 3/30" }))
    }
}

async fn output(State(m): State<Arc<Mock>>) -> impl IntoResponse {
    let chunk = m.chunk.clone();
    let body = futures::stream::iter((0..OUTPUT_BYTES / CHUNK).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    ([(header::CONTENT_TYPE, "image/png"), (header::CONTENT_LENGTH, OUTPUT_BYTES_TEXT)], Body::from_stream(body))
}

async fn start_mock(outputs: usize) -> (Arc<Mock>, u16) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
    let port = listener.local_addr().expect("mock addr").port();
    let mut chunk = vec![0u8; CHUNK];
    chunk[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
    let mock = Arc::new(Mock {
        base: format!("http://127.0.0.1:{port}"),
        outputs,
        next: AtomicU64::new(0),
        released: AtomicBool::new(false),
        chunk: Bytes::from(chunk),
    });
    let app = Router::new()
        .route("/v1/models/{owner}/{name}/predictions", post(create))
        .route("/v1/predictions/{id}", get(prediction))
        .route("/out/{id}/{file}", get(output))
        .with_state(Arc::clone(&mock));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (mock, port)
}

/// One scenario's medians: peak RSS, RSS before the finalize (MiB), and
/// seconds to finalize all.
struct Medians {
    peak: f64,
    before: f64,
    secs: f64,
}

pub async fn bench(dir: &std::path::Path, report: &mut Report) {
    let one = scenario(dir, 1).await;
    let four = scenario(dir, 4).await;
    report.line("### 4. Peak RSS while 100 tasks finalize 8 MiB outputs at once");
    report.line(
        "The simulator's outputs are ~230 KB and `#huge` outputs fail by design, so this section runs the app's \
         real Replicate adapter (configured by environment only, the model from a `DARKROOM_MODELS_FILE` \
         catalogue) against a Replicate stand-in in the harness that serves 8 MiB outputs (PNG signature + filler, \
         streamed in 64 KiB chunks) from 127.0.0.1. 100 tasks are created (one image each, then four: \
         `num_outputs=4`), then the stand-in reports them all succeeded and 100 concurrent polls finalize them; the \
         800 MiB (3.2 GiB) landing in the local object store is checked. `VmHWM` from `/proc/PID/status`, fresh \
         server per run, median of 3 runs.",
    );
    report.line("");
    report.line(
        "| images per task | peak RSS (VmHWM) MiB | VmHWM before the finalize MiB | time to finalize all | target |",
    );
    report.line("|---|---|---|---|---|");
    for (images, m) in [(1, one), (4, four)] {
        report.line(&format!("| {images} | **{:.1}** | {:.1} | {:.1} s | < 150 MiB |", m.peak, m.before, m.secs));
    }
    report.line("");
}

async fn scenario(dir: &std::path::Path, outputs: usize) -> Medians {
    let (mut peaks, mut befores, mut secs) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        let (mock, port) = start_mock(outputs).await;
        let data = dir.join(format!("rss{outputs}-{run}"));
        std::fs::create_dir_all(&data).expect("data dir");
        let catalogue = data.join("models.toml");
        std::fs::write(&catalogue, "[[models]]\nid = \"bench/big\"\nmax_outputs = 4\n").expect("catalogue");
        let app = procs::darkroom(
            &data,
            &[
                ("DARKROOM_PROVIDER", "replicate".into()),
                ("REPLICATE_API_TOKEN", "r8_bench".into()),
                ("REPLICATE_BASE_URL", format!("http://127.0.0.1:{port}/v1")),
                ("DARKROOM_MODELS_FILE", catalogue.display().to_string()),
                ("DARKROOM_OUTPUT_HOSTS", format!("http://127.0.0.1:{port}")),
                ("DARKROOM_PROVIDER_CHECK_MS", "200".into()),
                ("DARKROOM_RECONCILE_INTERVAL_SECS", "3600".into()),
            ],
        );
        let s = api::sign_up(app.addr, &format!("rss{outputs}-{run}@bench.test")).await;
        let count = outputs.to_string();
        let ids = futures::future::join_all((0..TASKS).map(|i| {
            let (s, count) = (&s, &count);
            async move { s.generate_with(&format!("large output {i}"), &[("num_outputs", count)]).await }
        }))
        .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (hwm_before, rss_before) = app.memory_kib();
        mock.released.store(true, Ordering::Relaxed);
        let t = Instant::now();
        let views = futures::future::join_all(ids.iter().map(|id| s.check(id))).await;
        let mut left: Vec<&String> = ids
            .iter()
            .zip(&views)
            .filter(|(_, v)| v.as_ref().map_or(true, |v| v["status"] != "completed"))
            .map(|(id, _)| id)
            .collect();
        for _ in 0..200 {
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            let views = futures::future::join_all(left.iter().map(|id| s.check(id))).await;
            left = left
                .into_iter()
                .zip(&views)
                .filter(|(_, v)| v.as_ref().map_or(true, |v| v["status"] != "completed"))
                .map(|(id, _)| id)
                .collect();
        }
        let took = t.elapsed().as_secs_f64();
        let (hwm, _) = app.memory_kib();
        assert!(left.is_empty(), "{} of {TASKS} large-output tasks did not complete", left.len());
        let stored = dir_bytes(&data.join("objects"));
        eprintln!(
            "  {outputs} per task, run {run}: VmHWM {:.1} MiB (before release: VmHWM {:.1}, VmRSS {:.1}); \
             {TASKS} × {outputs} × 8 MiB finalized in {took:.1} s; {:.0} MiB stored",
            kib_mib(hwm),
            kib_mib(hwm_before),
            kib_mib(rss_before),
            stored as f64 / 1048576.0
        );
        assert!(
            stored >= (TASKS * outputs * OUTPUT_BYTES) as u64,
            "expected {TASKS} × {outputs} outputs of 8 MiB in storage, found {stored} bytes"
        );
        peaks.push(kib_mib(hwm));
        befores.push(kib_mib(hwm_before));
        secs.push(took);
        drop(app);
        let _ = std::fs::remove_dir_all(&data);
    }
    Medians { peak: median(&peaks), before: median(&befores), secs: median(&secs) }
}

fn kib_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
