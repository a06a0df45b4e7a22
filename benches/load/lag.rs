//! Benchmark 3: completion lag — from the simulator's completion (task
//! `created_ms` + the `#ms=` duration; the simulator's own clock starts a
//! few ms later, so this is an upper bound) to when a page's poll sees the
//! task completed (or, where nobody polls, its `finished_ms`). Pages
//! polling every 3 s, pages following `poll_after_ms`, webhooks with nobody
//! polling, and the reconciler alone.

use std::time::Duration;

use rand::Rng;
use serde_json::Value;

use super::{api, loadgen::median, procs, report::Report};

const RUNS: usize = 3;
const TASKS: usize = 20;
const POLL_EVERY: Duration = Duration::from_secs(3);
const RECONCILE_SECS: u64 = 5;

pub async fn bench(dir: &std::path::Path, report: &mut Report) {
    report.line("### 3. Completion lag (simulator done → the page sees it completed)");
    report.line(&format!(
        "{RUNS} runs of {TASKS} tasks with random `#ms=` durations (3–7 s); per run the median (and max) over its \
         tasks, then the median of runs. Lag = when a poll first answered `completed` (or, without polls, the \
         task's `finished_ms`) − (`created_ms` + the duration); the simulator's clock starts a few ms after \
         `created_ms`, so this is an upper bound. Polled: one page per task from a random phase, \
         `DARKROOM_RECONCILE_INTERVAL_SECS=3600` so only polls (and the re-checks they schedule) finish tasks; \
         either every 3 s (a page that ignores the advice) or after each answer's `poll_after_ms` (bounded to \
         0.5–3 s, what the pages do). Webhooks: `DARKROOM_PUBLIC_URL` set, nobody polls, reconciler off; lags \
         and provider GETs read afterwards. Reconciler alone: nobody polls, \
         `DARKROOM_RECONCILE_INTERVAL_SECS={RECONCILE_SECS}`."
    ));
    report.line("");
    report.line(
        "| mode | median lag ms | max lag ms (median of runs) | polls per task | provider GETs per task | target |",
    );
    report.line("|---|---|---|---|---|---|");

    let mut polls_fixed = 0.0;
    for (mode, advised) in [("polled every 3 s", false), ("polled following `poll_after_ms`", true)] {
        let polled = procs::darkroom(
            &dir.join(format!("lag-{advised}")),
            &[("DARKROOM_RECONCILE_INTERVAL_SECS", "3600".into())],
        );
        let (mut medians, mut maxes, mut per_task) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..RUNS {
            let s = api::sign_up(polled.addr, &format!("lag-{advised}{run}@bench.test")).await;
            let tasks = start(&s, 3_000, 7_000).await;
            let polls = tasks.iter().map(|(id, ms)| {
                let s = s.clone();
                async move {
                    let phase = rand::thread_rng().gen_range(0..POLL_EVERY.as_millis() as u64);
                    tokio::time::sleep(Duration::from_millis(phase)).await;
                    let (view, seen_ms, polls) = poll_until_seen(&s, id, advised).await;
                    (seen_lag(&view, seen_ms, *ms), polls)
                }
            });
            let results = futures::future::join_all(polls).await;
            let lags: Vec<f64> = results.iter().map(|(l, _)| *l).collect();
            per_task.push(results.iter().map(|(_, n)| *n as f64).sum::<f64>() / results.len() as f64);
            record(&lags, &mut medians, &mut maxes, mode);
        }
        let gets = api::provider_gets(polled.addr).await / (RUNS * TASKS) as f64;
        drop(polled);
        let polls = median(&per_task);
        let target = if advised {
            format!("median ≤ 500, polls ≤ 1.5 × fixed ({:.1})", 1.5 * polls_fixed)
        } else {
            polls_fixed = polls;
            "—".to_owned()
        };
        report.line(&format!(
            "| {mode} | {:.0} | {:.0} | {polls:.1} | {gets:.1} | {target} |",
            median(&medians),
            median(&maxes)
        ));
    }

    let hooked = procs::darkroom(
        &dir.join("lag-webhooks"),
        &[("DARKROOM_PUBLIC_URL", "self".into()), ("DARKROOM_RECONCILE_INTERVAL_SECS", "3600".into())],
    );
    let (mut medians, mut maxes) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        let s = api::sign_up(hooked.addr, &format!("lag-hooks{run}@bench.test")).await;
        let tasks = start(&s, 3_000, 7_000).await;
        tokio::time::sleep(Duration::from_millis(7_000 + 2_000)).await;
        let lags = from_history(&s, &tasks).await;
        record(&lags, &mut medians, &mut maxes, "webhooks");
    }
    let gets = api::provider_gets(hooked.addr).await / (RUNS * TASKS) as f64;
    drop(hooked);
    report.line(&format!(
        "| webhooks, nobody polls | {:.0} | {:.0} | 0 | {gets:.1} | median ≤ 300, GETs ≈ 0 |",
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
        let lags = from_history(&s, &tasks).await;
        record(&lags, &mut medians, &mut maxes, "reconciler");
    }
    report.line(&format!(
        "| reconciler alone (every {RECONCILE_SECS} s) | {:.0} | {:.0} | 0 | — | ≤ {} (the reconcile interval) |",
        median(&medians),
        median(&maxes),
        RECONCILE_SECS * 1000
    ));
    report.line("");
}

/// Polls like a page until it sees the task finished: every 3 s, or after
/// each answer's `poll_after_ms` (bounded like the pages bound it). The
/// view, when it was seen (ms since the epoch) and how many polls it took.
async fn poll_until_seen(s: &api::Session, id: &str, advised: bool) -> (Value, f64, u32) {
    let mut polls = 0;
    for _ in 0..200 {
        polls += 1;
        if let Ok(v) = s.check(id).await {
            if !api::unfinished(&v) {
                return (v, now_ms(), polls);
            }
            let wait = if advised {
                v["poll_after_ms"].as_u64().unwrap_or(3_000).clamp(500, 3_000)
            } else {
                POLL_EVERY.as_millis() as u64
            };
            tokio::time::sleep(Duration::from_millis(wait)).await;
        } else {
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
    panic!("task {id} still processing after 200 polls");
}

fn now_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as f64).unwrap_or(0.0)
}

/// Lags of `tasks` as the server recorded them (`finished_ms`), read from
/// the history (which advances nothing).
async fn from_history(s: &api::Session, tasks: &[(String, u64)]) -> Vec<f64> {
    let history = s.history().await;
    let items = history["items"].as_array().cloned().unwrap_or_default();
    tasks
        .iter()
        .map(|(id, ms)| {
            let v = items.iter().find(|v| v["id"] == id.as_str()).expect("task in history");
            assert_eq!(v["status"], "completed", "a task was left unfinished: {v}");
            lag(v, *ms)
        })
        .collect()
}

fn seen_lag(view: &Value, seen_ms: f64, duration_ms: u64) -> f64 {
    assert_eq!(view["status"], "completed", "{view}");
    let created = view["created_ms"].as_f64().expect("created_ms");
    seen_ms - (created + duration_ms as f64)
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

/// Tasks in flight (long ones, polled every 3 s by their pages) around the
/// probes of [`bench_in_flight`].
const IN_FLIGHT: [usize; 3] = [100, 1_000, 10_000];

/// Benchmark 3b: completion lag without webhooks while `IN_FLIGHT` tasks
/// share the provider budget: the long tasks are polled every 3 s (paced,
/// in the background) and [`TASKS`] short ones by pages that follow
/// `poll_after_ms`; provider calls and 429s counted at the simulator.
pub async fn bench_in_flight(dir: &std::path::Path, report: &mut Report) {
    use super::scale::{BUDGET_PER_S, SETUP_LIMITS};
    report.line("### 3b. Completion lag without webhooks, with the budget shared by many tasks");
    report.line(&format!(
        "Tasks in flight: long ones (`#ms=600000`) polled every 3 s by their pages (paced, in the background), \
         and {TASKS} short ones (`#ms=` 3–7 s) polled by pages that follow `poll_after_ms` (0.5–3 s); lag as in \
         section 3. The budget spreads regular checks over the tasks: one per task every \
         tasks × 1000 / (0.75 × {BUDGET_PER_S:.0}) ms (at least 2 s) — 3.3 s at 100, 33 s at 1,000, 333 s at \
         10,000 — while the check at a task's expected end (known from its progress) is taken first. Only \
         creates are raised (`{SETUP_LIMITS}`) to set the long tasks up."
    ));
    report.line("");
    report.line(
        "| tasks in flight | spacing of regular checks s | median lag ms | max lag ms | provider calls/s | \
         provider 429s | budget calls/s |",
    );
    report.line("|---|---|---|---|---|---|---|");
    let app = procs::darkroom(
        &dir.join("lag-in-flight"),
        &[("DARKROOM_PROVIDER_LIMITS", SETUP_LIMITS.to_owned()), ("DARKROOM_SIM_RATE_LIMITS", SETUP_LIMITS.to_owned())],
    );
    let mut sessions = Vec::new();
    for u in 0..8 {
        sessions.push(api::sign_up(app.addr, &format!("lag-flight{u}@bench.test")).await);
    }
    let mut long: Vec<(usize, String)> = Vec::new();
    for level in IN_FLIGHT {
        let need = level.saturating_sub(TASKS).saturating_sub(long.len());
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        long.extend(super::scale::create(&sessions, long.len(), need, deadline).await);
        // Every one at the provider (none `queued`) before the pages start.
        assert!(super::scale::all_submitted(&[app.addr], deadline).await, "{level}: tasks still queued");
        let requests: std::sync::Arc<Vec<std::sync::Arc<Vec<u8>>>> = std::sync::Arc::new(
            long.iter()
                .map(|(u, id)| {
                    std::sync::Arc::new(super::http::post_form(
                        "/api/check_image_status",
                        &sessions[*u].cookie,
                        &format!("task_id={id}"),
                    ))
                })
                .collect(),
        );
        let request = {
            let requests = std::sync::Arc::clone(&requests);
            std::sync::Arc::new(move |i: u64| std::sync::Arc::clone(&requests[i as usize]))
                as std::sync::Arc<dyn Fn(u64) -> std::sync::Arc<Vec<u8>> + Send + Sync>
        };
        // One cycle of the pages first, so the checks are spread.
        let n = long.len();
        super::loadgen::paced(app.addr, 256, n, POLL_EVERY, 3.0, std::sync::Arc::clone(&request)).await;
        let before = api::sim_stats(app.addr).await;
        let started = std::time::Instant::now();
        let background = tokio::spawn(super::loadgen::paced(app.addr, 256, n, POLL_EVERY, 12.0, request));
        let s = sessions[0].clone();
        let tasks = start(&s, 3_000, 7_000).await;
        let polls = tasks.iter().map(|(id, ms)| {
            let s = s.clone();
            async move {
                let (view, seen_ms, _) = poll_until_seen(&s, id, true).await;
                seen_lag(&view, seen_ms, *ms)
            }
        });
        let lags = futures::future::join_all(polls).await;
        let _ = background.await;
        let spent = api::sim_stats(app.addr).await - before;
        let rate = spent.others / started.elapsed().as_secs_f64();
        let max = lags.iter().copied().fold(f64::MIN, f64::max);
        let spacing = (level as f64 * 1000.0 / (0.75 * BUDGET_PER_S)).max(2_000.0) / 1000.0;
        eprintln!("  {level} in flight: median lag {:.0} ms, max {max:.0} ms, {rate:.1} calls/s", median(&lags));
        report.line(&format!(
            "| {level} | {spacing:.1} | {:.0} | {max:.0} | {rate:.1} | {:.0} | {BUDGET_PER_S:.0} |",
            median(&lags),
            spent.throttled
        ));
    }
    report.line("");
    report
        .line("Target: provider calls never above the budget (0 provider 429s); at 100 in flight, a median lag ≤ 2 s.");
    report.line("");
}
