//! Benchmark 2: in-flight scale. 1k, 5k and 10k tasks kept `processing`
//! (`#ms=600000`), each polled every 3 s as an open generator page does
//! (paced, latency from when the poll was due); provider GETs per second
//! from `/metrics` against the limit of one per task per check interval.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;

use super::{
    api, http,
    loadgen::{self, median},
    procs::{self},
    report::Report,
};

const LEVELS: [usize; 3] = [1_000, 5_000, 10_000];
const USERS: usize = 8;
const POLL_EVERY: Duration = Duration::from_secs(3);
const CHECK_MS: u64 = 2_000;
const RUNS: usize = 3;
const RUN_SECS: f64 = 6.0;
const CONNS: usize = 256;
/// Creating tasks stops here even if a level was not reached.
const CREATE_BUDGET: Duration = Duration::from_secs(150);

pub async fn bench(dir: &std::path::Path, report: &mut Report) {
    run(dir, report, false, &LEVELS).await;
    run(dir, report, true, &[10_000]).await;
}

/// One table: without webhooks (every poll may be due for a provider GET),
/// or with them (`DARKROOM_PUBLIC_URL` set: the simulator's events keep
/// the tasks' checks deferred).
async fn run(dir: &std::path::Path, report: &mut Report, webhooks: bool, levels: &[usize]) {
    let mut env = vec![("DARKROOM_PROVIDER_CHECK_MS", CHECK_MS.to_string())];
    if webhooks {
        env.push(("DARKROOM_PUBLIC_URL", "self".to_owned()));
    }
    let app = procs::darkroom(&dir.join(format!("scale-{webhooks}")), &env);
    let mut sessions = Vec::new();
    for u in 0..USERS {
        sessions.push(api::sign_up(app.addr, &format!("scale{u}-{webhooks}@bench.test")).await);
    }
    if webhooks {
        report.line("### 2b. In-flight scale with webhooks on");
        report.line(
            "The same, with `DARKROOM_PUBLIC_URL` set: the simulator posts each task's signed `start` and `logs` \
             events to the app, which defers the task's provider checks: to its expected end (at most a minute \
             ahead) once progress is known, by 4 check intervals before that.",
        );
        report.line("");
    } else {
        report.line("### 2. In-flight scale: processing tasks, each polled every 3 s");
        report.line(&format!(
            "Tasks stay processing (`#ms=600000`), {USERS} accounts; each task is polled through \
         `/api/check_image_status` once per 3 s, evenly spread, from {CONNS} connections; latency counts from when \
         the poll was due. `DARKROOM_PROVIDER_CHECK_MS={CHECK_MS}`, reconciler at its default 15 s. One 3 s warm-up \
         cycle, then {RUNS} runs of {RUN_SECS} s, median of runs."
        ));
        report.line("");
    }
    report.line(
        "| tasks | polls/s due | polls/s done | p50 ms | p99 ms | errors | provider GETs/s | limit (tasks / 2 s) |",
    );
    report.line("|---|---|---|---|---|---|---|---|");

    let mut tasks: Vec<(usize, String)> = Vec::new();
    let create_started = Instant::now();
    for &level in levels {
        let need = level.saturating_sub(tasks.len());
        let t = Instant::now();
        let created = create(&sessions, tasks.len(), need, create_started + CREATE_BUDGET).await;
        let made = created.len();
        tasks.extend(created);
        eprintln!("  created {made} tasks in {:.1} s", t.elapsed().as_secs_f64());
        if tasks.len() < level {
            report.line(&format!(
                "| {level} | not reached: only {} tasks created within the {} s creation budget | | | | | | |",
                tasks.len(),
                CREATE_BUDGET.as_secs()
            ));
            break;
        }
        let requests: Arc<Vec<Arc<Vec<u8>>>> = Arc::new(
            tasks[..level]
                .iter()
                .map(|(u, id)| {
                    Arc::new(http::post_form("/api/check_image_status", &sessions[*u].cookie, &format!("task_id={id}")))
                })
                .collect(),
        );
        let request = {
            let requests = Arc::clone(&requests);
            Arc::new(move |i: u64| Arc::clone(&requests[i as usize])) as Arc<dyn Fn(u64) -> Arc<Vec<u8>> + Send + Sync>
        };
        loadgen::paced(app.addr, CONNS, level, POLL_EVERY, POLL_EVERY.as_secs_f64(), Arc::clone(&request)).await;
        let mut rows = Vec::new();
        for _ in 0..RUNS {
            let gets_before = api::provider_gets(app.addr).await;
            let s = loadgen::paced(app.addr, CONNS, level, POLL_EVERY, RUN_SECS, Arc::clone(&request)).await;
            let gets = (api::provider_gets(app.addr).await - gets_before) / s.secs;
            eprintln!(
                "  {level:>6} tasks: {:>6.0} polls/s  p50 {:>7.2} ms  p99 {:>8.2} ms  errors {}  provider GETs/s {gets:.0}",
                s.rps(),
                s.pct_ms(0.5),
                s.pct_ms(0.99),
                s.errors
            );
            rows.push((s.rps(), s.pct_ms(0.5), s.pct_ms(0.99), s.errors as f64, gets));
        }
        let pick = |f: fn(&(f64, f64, f64, f64, f64)) -> f64| median(&rows.iter().map(f).collect::<Vec<_>>());
        report.line(&format!(
            "| {level} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} (all runs: {:.0}) | {:.0} | {:.0} |",
            level as f64 / POLL_EVERY.as_secs_f64(),
            pick(|r| r.0),
            pick(|r| r.1),
            pick(|r| r.2),
            pick(|r| r.3),
            rows.iter().map(|r| r.3).sum::<f64>(),
            pick(|r| r.4),
            level as f64 * 1000.0 / CHECK_MS as f64,
        ));
    }
    report.line("");
    report.line("Targets: 10,000 in flight with p99 < 50 ms and no errors; provider GETs/s ≤ tasks / check interval.");
    report.line("");
}

/// Creates `count` processing tasks round-robin over the accounts, 16 at a
/// time, until `deadline`.
async fn create(sessions: &[api::Session], first: usize, count: usize, deadline: Instant) -> Vec<(usize, String)> {
    futures::stream::iter(first..first + count)
        .map(|i| async move {
            if Instant::now() > deadline {
                return None;
            }
            let u = i % sessions.len();
            Some((u, sessions[u].generate(&format!("in flight {i} #ms=600000")).await))
        })
        .buffer_unordered(16)
        .filter_map(|x| async move { x })
        .collect()
        .await
}
