//! Benchmark 1: completed-task status polls at 64 connections against the
//! app, the bare-axum floor and the lean Node server, rounds interleaved so
//! each sees the same machine state; the median of the rounds.

use std::{process::Command, sync::Arc, time::Duration};

use super::{
    api, http,
    loadgen::{self, RunStats, median},
    procs::{self, Proc},
    report::Report,
};

const CONNS: usize = 64;
const SECS: f64 = 5.0;
const ROUNDS: usize = 3;
const MAX_REQUESTS: u64 = 2_000_000;

/// A completed task view's worth of JSON, as the floor's answer.
const FLOOR_BODY: &str = r#"{"id":"0b6c5a4e-6f1e-4f7e-9a57-4d1f2f0a9b11","status":"completed","prompt":"a lighthouse at dusk, oil on canvas","model":"darkroom/sim","created_at":"2026-01-01T00:00:00Z","created_ms":1767225600000,"finished_ms":1767225612000,"image_url":"/images/0b6c5a4e-6f1e-4f7e-9a57-4d1f2f0a9b11","error":null,"refunded":false,"progress":100,"cost":10}"#;

/// `load --floor PORT`: the bare axum handler, run as its own process.
pub fn serve_floor(port: u16) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let app = axum::Router::new().route(
            "/api/check_image_status",
            axum::routing::post(|| async { ([(axum::http::header::CONTENT_TYPE, "application/json")], FLOOR_BODY) }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind floor");
        axum::serve(listener, app).await.expect("floor server");
    });
}

fn floor(dir: &std::path::Path) -> Proc {
    let port = procs::free_port();
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.arg("--floor").arg(port.to_string());
    procs::start("bare axum", cmd, ([127, 0, 0, 1], port).into(), &dir.join("floor.log"))
}

fn node(dir: &std::path::Path) -> Proc {
    let port = procs::free_port();
    let mut cmd = Command::new("node");
    cmd.arg(procs::repo_root().join("benches/node/server.js"))
        .env("PORT", port.to_string())
        .env("DB", dir.join("node.db"));
    procs::start("node", cmd, ([127, 0, 0, 1], port).into(), &dir.join("node.log"))
}

async fn run(target: &Proc, request: &Arc<Vec<u8>>, secs: f64) -> RunStats {
    let request = Arc::clone(request);
    loadgen::closed_loop(target.addr, CONNS, secs, MAX_REQUESTS, Arc::new(move |_| Arc::clone(&request))).await
}

pub async fn bench(dir: &std::path::Path, report: &mut Report) {
    let app = procs::darkroom(&dir.join("polls"), &[("DARKROOM_SIM_DURATION_MS", "200".into())]);
    let session = api::sign_up(app.addr, "polls@bench.test").await;
    let task = session.generate("a lighthouse at dusk, oil on canvas").await;
    let view = session.wait_finished(&task, Duration::from_millis(200), 50).await;
    assert_eq!(view["status"], "completed", "the poll target must be a completed task: {view}");
    let floor = floor(dir);
    let node = node(dir);

    let targets: [(&Proc, Arc<Vec<u8>>); 3] = [
        (&app, Arc::new(http::post_form("/api/check_image_status", &session.cookie, &format!("task_id={task}")))),
        (&floor, Arc::new(http::post_form("/api/check_image_status", "x=y", "task_id=x"))),
        (
            &node,
            Arc::new(http::post_form(
                "/api/check_image_status",
                "darkroom_session=bench-session",
                "task_id=bench-task",
            )),
        ),
    ];
    let mut runs: Vec<Vec<RunStats>> = vec![Vec::new(); targets.len()];
    for (target, request) in &targets {
        let warm = run(target, request, 1.0).await;
        assert!(warm.errors == 0, "{} answered errors while warming up", target.name);
    }
    for _ in 0..ROUNDS {
        for (i, (target, request)) in targets.iter().enumerate() {
            let stats = run(target, request, SECS).await;
            eprintln!(
                "  {:<10} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}",
                target.name,
                stats.rps(),
                stats.pct_ms(0.5),
                stats.pct_ms(0.99),
                stats.errors
            );
            runs[i].push(stats);
        }
    }
    let summary: Vec<_> = runs
        .iter()
        .map(|r| {
            let pick = |f: &dyn Fn(&RunStats) -> f64| median(&r.iter().map(f).collect::<Vec<_>>());
            (
                pick(&|s| s.rps()),
                pick(&|s| s.pct_ms(0.5)),
                pick(&|s| s.pct_ms(0.99)),
                r.iter().map(|s| s.errors).sum::<u64>(),
            )
        })
        .collect();
    report.line("### 1. Completed-task status polls, 64 connections");
    report.line(&format!(
        "Closed loop, {CONNS} keep-alive connections, {ROUNDS} rounds of {SECS} s per server (interleaved), \
         median of rounds; the load generator runs on the same 2 cores."
    ));
    report.line("");
    report.line("| server | req/s | p50 ms | p99 ms | errors |");
    report.line("|---|---|---|---|---|");
    for ((target, _), (rps, p50, p99, errors)) in targets.iter().zip(&summary) {
        report.line(&format!("| {} | {rps:.0} | {p50:.2} | {p99:.2} | {errors} |", target.name));
    }
    let (app_rps, floor_rps, node_rps) = (summary[0].0, summary[1].0, summary[2].0);
    report.line("");
    report.line(&format!(
        "- darkroom / bare axum = **{:.1} %** (target ≥ 25 %); darkroom / node = **{:.2} ×** (target ≥ 2 ×); \
         darkroom p99 = **{:.2} ms** (target < 10 ms)",
        100.0 * app_rps / floor_rps,
        app_rps / node_rps,
        summary[0].2
    ));
    report.line("");
}
