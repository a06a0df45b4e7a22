//! Benchmark 3: completion lag — from the simulator's completion (task
//! `created_ms` + the `#ms=` duration; the simulator's own clock starts a
//! few ms later, so this is an upper bound) to the task's `finished_ms`.
//! Once with pages polling every 3 s (reconciler out of the way), once with
//! the reconciler alone (nobody polls).

use std::time::Duration;

use rand::Rng;
use serde_json::Value;

use super::{api, loadgen::median, procs, report::Report};

const RUNS: usize = 3;
const TASKS: usize = 20;
const POLL_EVERY: Duration = Duration::from_secs(3);
const RECONCILE_SECS: u64 = 5;

pub async fn bench(dir: &std::path::Path, report: &mut Report) {
    report.line("### 3. Completion lag (simulator done → task completed)");
    report.line(&format!(
        "{RUNS} runs of {TASKS} tasks with random `#ms=` durations; per run the median (and max) over its tasks, \
         then the median of runs. Polled: each task polled every 3 s from a random phase, \
         `DARKROOM_RECONCILE_INTERVAL_SECS=3600` so only polls finish tasks. Reconciler alone: nobody polls, \
         `DARKROOM_RECONCILE_INTERVAL_SECS={RECONCILE_SECS}`; lags read afterwards from `/api/list_history` \
         (which advances nothing)."
    ));
    report.line("");
    report.line("| mode | median lag ms | max lag ms (median of runs) | target |");
    report.line("|---|---|---|---|");

    let polled = procs::darkroom(&dir.join("lag-polled"), &[("DARKROOM_RECONCILE_INTERVAL_SECS", "3600".into())]);
    let (mut medians, mut maxes) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        let s = api::sign_up(polled.addr, &format!("lag-polled{run}@bench.test")).await;
        let tasks = start(&s, 3_000, 7_000).await;
        let polls = tasks.iter().map(|(id, ms)| {
            let s = s.clone();
            async move {
                let phase = rand::thread_rng().gen_range(0..POLL_EVERY.as_millis() as u64);
                tokio::time::sleep(Duration::from_millis(phase)).await;
                (s.wait_finished(id, POLL_EVERY, 10).await, *ms)
            }
        });
        let lags: Vec<f64> = futures::future::join_all(polls).await.iter().map(|(v, ms)| lag(v, *ms)).collect();
        record(&lags, &mut medians, &mut maxes, "polled");
    }
    drop(polled);
    report.line(&format!(
        "| polled every 3 s | {:.0} | {:.0} | median ≤ 1500 (half the poll interval) |",
        median(&medians),
        median(&maxes)
    ));

    let alone = procs::darkroom(
        &dir.join("lag-reconciler"),
        &[("DARKROOM_RECONCILE_INTERVAL_SECS", RECONCILE_SECS.to_string())],
    );
    let (mut medians, mut maxes) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        let s = api::sign_up(alone.addr, &format!("lag-alone{run}@bench.test")).await;
        let tasks = start(&s, 2_000, 6_000).await;
        tokio::time::sleep(Duration::from_millis(6_000 + 2 * RECONCILE_SECS * 1000 + 1_000)).await;
        let history = s.history().await;
        let items = history["items"].as_array().cloned().unwrap_or_default();
        let lags: Vec<f64> = tasks
            .iter()
            .map(|(id, ms)| {
                let v = items.iter().find(|v| v["id"] == id.as_str()).expect("task in history");
                assert_eq!(v["status"], "completed", "the reconciler left a task unfinished: {v}");
                lag(v, *ms)
            })
            .collect();
        record(&lags, &mut medians, &mut maxes, "reconciler");
    }
    report.line(&format!(
        "| reconciler alone (every {RECONCILE_SECS} s) | {:.0} | {:.0} | ≤ {} (the reconcile interval) |",
        median(&medians),
        median(&maxes),
        RECONCILE_SECS * 1000
    ));
    report.line("");
}

/// Starts `TASKS` tasks with durations in `low..high` ms.
async fn start(s: &api::Session, low: u64, high: u64) -> Vec<(String, u64)> {
    let starts = (0..TASKS).map(|i| {
        let ms = rand::thread_rng().gen_range(low..high);
        async move { (s.generate(&format!("lag {i} #ms={ms}")).await, ms) }
    });
    futures::future::join_all(starts).await
}

fn lag(view: &Value, duration_ms: u64) -> f64 {
    assert_eq!(view["status"], "completed", "{view}");
    let created = view["created_ms"].as_f64().expect("created_ms");
    let finished = view["finished_ms"].as_f64().expect("finished_ms");
    finished - (created + duration_ms as f64)
}

fn record(lags: &[f64], medians: &mut Vec<f64>, maxes: &mut Vec<f64>, mode: &str) {
    let max = lags.iter().copied().fold(f64::MIN, f64::max);
    eprintln!("  {mode}: median {:.0} ms, max {max:.0} ms", median(lags));
    medians.push(median(lags));
    maxes.push(max);
}
