//! Benchmark 2: in-flight scale. 1k, 5k and 10k tasks kept `processing`
//! (`#ms=600000`), each polled every 3 s as an open generator page does
//! (paced, latency from when the poll was due); the provider calls those
//! polls cost, counted at the simulator (which enforces Replicate's
//! published limits), against the engine's budget. With webhooks on, also
//! how soon pages see short tasks completed among the 10k.

use std::{
    net::SocketAddr,
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
/// The engine's budget for calls other than creates: 80 % of Replicate's
/// published 3,000 a minute.
pub const BUDGET_PER_S: f64 = 40.0;
/// Only creates are raised, to set up thousands of tasks in a minute or
/// two; every other call stays under Replicate's published limits.
pub const SETUP_LIMITS: &str = "create=600000/min";
/// Short tasks whose completion the pages watch among the 10k (webhooks).
const PROBES: usize = 30;
/// How long a probe's prediction runs at the simulator (`#ms=`).
const PROBE_MS: u64 = 8_000;
/// The simulator's API token in this section, so the harness can read when
/// the probes' predictions ended.
const SIM_TOKEN: &str = "bench-scale-token";
const USERS: usize = 8;
const POLL_EVERY: Duration = Duration::from_secs(3);
const CHECK_MS: u64 = 2_000;
const RUNS: usize = 3;
const RUN_SECS: f64 = 6.0;
/// With webhooks, runs are long enough for the probes to end inside them.
const PROBE_RUN_SECS: f64 = 15.0;
const CONNS: usize = 256;
/// Creating tasks stops here even if a level was not reached.
const CREATE_BUDGET: Duration = Duration::from_secs(150);

/// One run: polls/s, p50 and p99 ms, errors, provider calls/s, 429s.
type Row = (f64, f64, f64, f64, f64, f64);

pub async fn bench(dir: &std::path::Path, report: &mut Report) {
    run(dir, report, false, &LEVELS).await;
    run(dir, report, true, &[10_000]).await;
}

/// One table: without webhooks (every poll may be due for a provider GET),
/// or with them (`DARKROOM_PUBLIC_URL` set: the simulator's events keep
/// the tasks' checks deferred).
async fn run(dir: &std::path::Path, report: &mut Report, webhooks: bool, levels: &[usize]) {
    let mut env = vec![
        ("DARKROOM_PROVIDER_CHECK_MS", CHECK_MS.to_string()),
        ("DARKROOM_PROVIDER_LIMITS", SETUP_LIMITS.to_owned()),
        ("DARKROOM_SIM_RATE_LIMITS", SETUP_LIMITS.to_owned()),
        ("DARKROOM_SIM_TOKEN", SIM_TOKEN.to_owned()),
    ];
    if webhooks {
        env.push(("DARKROOM_PUBLIC_URL", "self".to_owned()));
    }
    let app = procs::darkroom(&dir.join(format!("scale-{webhooks}")), &env);
    // On PostgreSQL, two instances share the database and the load: half
    // the tasks are created through each (so each receives its own tasks'
    // events), and every poll goes to either.
    let second = procs::on_postgres().then(|| procs::darkroom_beside(&app, &env));
    let addrs: Vec<_> = std::iter::once(app.addr).chain(second.as_ref().map(|b| b.addr)).collect();
    let mut sessions = Vec::new();
    for u in 0..USERS {
        sessions.push(api::sign_up(app.addr, &format!("scale{u}-{webhooks}@bench.test")).await);
    }
    if let Some(b) = &second {
        for u in 0..USERS {
            let mut on_b = sessions[u].clone();
            on_b.base = format!("http://{}", b.addr);
            sessions.push(on_b);
        }
    }
    let instances =
        if second.is_some() { " Two instances share one PostgreSQL database, each half the load." } else { "" };
    if webhooks {
        report.line("### 2b. In-flight scale with webhooks on");
        report.line(&format!(
            "The same, with `DARKROOM_PUBLIC_URL` set: the simulator posts each task's signed `start` and `logs` \
             events to the app, which defers the task's provider checks to its expected end (or by 4 check \
             intervals while no progress is known). Runs of {PROBE_RUN_SECS} s; during each, {PROBES} short tasks (`#ms=8000`) are \
             started among the 10k and polled by pages that follow `poll_after_ms`: the lag is from the \
             prediction's end (its `completed_at` at the simulator, read from its list of predictions once the \
             probes are seen: one call per run, counted in the whole stretch's calls) to the poll that saw \
             `completed`, and to when the server had stored the image (`finished_ms`). Events are counted at \
             the simulator.{instances}"
        ));
        report.line("");
    } else {
        report.line("### 2. In-flight scale: processing tasks, each polled every 3 s");
        report.line(&format!(
            "Tasks stay processing (`#ms=600000`), {USERS} accounts; each task is polled through \
         `/api/check_image_status` once per 3 s, evenly spread, from {CONNS} connections; latency counts from when \
         the poll was due. `DARKROOM_PROVIDER_CHECK_MS={CHECK_MS}`, reconciler at its default 15 s. One 3 s warm-up \
         cycle, then {RUNS} runs of {RUN_SECS} s, median of runs. The simulator enforces Replicate's published \
         limits; only creates are raised (`{SETUP_LIMITS}`, app and simulator) to set the tasks up. Provider \
         calls are counted at the simulator (gets, lists and cancels: what Replicate's 3,000 a minute counts), \
         and its 429s.{instances}"
        ));
        report.line("");
    }
    if webhooks {
        report.line(
            "| tasks | polls/s due | polls/s done | p50 ms | p99 ms | errors | provider calls/s | provider 429s | \
             budget calls/s | events/s delivered (attempts retried, given up) | image stored, median / max ms \
             after the end | completion seen, median / max ms after the end |",
        );
        report.line("|---|---|---|---|---|---|---|---|---|---|---|---|");
    } else {
        report.line(
            "| tasks | polls/s due | polls/s done | p50 ms | p99 ms | errors | provider calls/s | provider 429s | \
             budget calls/s |",
        );
        report.line("|---|---|---|---|---|---|---|---|---|");
    }

    let mut tasks: Vec<(usize, String)> = Vec::new();
    let mut set_up = Vec::new();
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
        // A generation answers once stored (`queued`); the level is in
        // flight once the dispatchers have submitted every one.
        if !all_submitted(&addrs, create_started + CREATE_BUDGET).await {
            report.line(&format!(
                "| {level} | not reached: tasks still queued after the {} s creation budget | | | | | | |",
                CREATE_BUDGET.as_secs()
            ));
            break;
        }
        let secs = t.elapsed().as_secs_f64();
        eprintln!("  all {level} at the provider {secs:.1} s after the level's first create");
        set_up.push(format!("{secs:.0} s for {level}"));
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
        loadgen::paced_over(&addrs, CONNS, level, POLL_EVERY, POLL_EVERY.as_secs_f64(), Arc::clone(&request)).await;
        let mut rows = Vec::new();
        let mut lags = Vec::new();
        let whole_before = api::sim_stats_of(&addrs).await;
        let whole_started = Instant::now();
        for run in 0..RUNS {
            let before = api::sim_stats_of(&addrs).await;
            // With webhooks, pages also watch short tasks end among the load.
            let probes = webhooks.then(|| {
                let sessions = sessions.clone();
                tokio::spawn(async move { watch_probes(&sessions, run).await })
            });
            let secs = if webhooks { PROBE_RUN_SECS } else { RUN_SECS };
            let s = loadgen::paced_over(&addrs, CONNS, level, POLL_EVERY, secs, Arc::clone(&request)).await;
            let spent = api::sim_stats_of(&addrs).await - before;
            if let Some(probes) = probes {
                let seen = probes.await.expect("probes");
                let ends = api::prediction_ends(&addrs, SIM_TOKEN).await;
                lags.extend(lags_after_end(&seen, &ends));
            }
            let calls = spent.others / s.secs;
            eprintln!(
                "  {level:>6} tasks: {:>6.0} polls/s  p50 {:>7.2} ms  p99 {:>8.2} ms  errors {}  provider calls/s \
                 {calls:.1}  429s {}  events/s {:.0} (retried {}, given up {})",
                s.rps(),
                s.pct_ms(0.5),
                s.pct_ms(0.99),
                s.errors,
                spent.throttled,
                spent.hooks / s.secs,
                spent.hook_retries,
                spent.hooks_given_up
            );
            rows.push((s.rps(), s.pct_ms(0.5), s.pct_ms(0.99), s.errors as f64, calls, spent.throttled));
        }
        // Over the whole measured stretch, probes' waits included.
        let whole = api::sim_stats_of(&addrs).await - whole_before;
        let whole_rate = whole.others / whole_started.elapsed().as_secs_f64();
        let pick = |f: fn(&Row) -> f64| median(&rows.iter().map(f).collect::<Vec<_>>());
        let throttled: f64 = rows.iter().map(|r| r.5).sum();
        let lag = if webhooks {
            let (seen, stored): (Vec<f64>, Vec<f64>) = lags.iter().copied().unzip();
            let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
            let events = whole.hooks / whole_started.elapsed().as_secs_f64();
            format!(
                " {events:.0} ({:.0}, {:.0}) | {:.0} / {:.0} | {:.0} / {:.0} ({} tasks) |",
                whole.hook_retries,
                whole.hooks_given_up,
                median(&stored),
                max(&stored),
                median(&seen),
                max(&seen),
                lags.len()
            )
        } else {
            String::new()
        };
        report.line(&format!(
            "| {level} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} (all runs: {:.0}) | {:.1} (whole stretch: {whole_rate:.1}) | \
             {throttled:.0} | {BUDGET_PER_S:.0} |{lag}",
            level as f64 / POLL_EVERY.as_secs_f64(),
            pick(|r| r.0),
            pick(|r| r.1),
            pick(|r| r.2),
            pick(|r| r.3),
            rows.iter().map(|r| r.3).sum::<f64>(),
            pick(|r| r.4),
        ));
    }
    report.line("");
    if !set_up.is_empty() {
        report.line(&format!(
            "Set-up: each level's new tasks created and all at the provider (none `queued`) within {} of its first \
             create; the runs start after.",
            set_up.join(", ")
        ));
        report.line("");
    }
    report.line(
        "Targets: 10,000 in flight with p99 < 50 ms and no errors; provider calls ≤ 40/s (80 % of Replicate's \
         3,000 a minute) and no 429s; with webhooks, completion seen at a median ≤ 1 s after the end.",
    );
    report.line("");
}

/// Waits until no task is queued on any of `addrs` (every one created at
/// the provider); false if some still are at `deadline`.
pub async fn all_submitted(addrs: &[SocketAddr], deadline: Instant) -> bool {
    loop {
        let mut queued = 0.0;
        for addr in addrs {
            queued += api::queue_length(*addr).await;
        }
        if queued == 0.0 {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Creates `count` processing tasks round-robin over the accounts, 16 at a
/// time, until `deadline`.
pub async fn create(sessions: &[api::Session], first: usize, count: usize, deadline: Instant) -> Vec<(usize, String)> {
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

/// A probe seen completed by its page.
struct Seen {
    prompt: String,
    /// When the page saw it, epoch ms.
    seen_at: f64,
    /// When the server stored its image (`finished_ms`).
    finished: f64,
    /// When it was created (`created_ms`): its prediction was created
    /// after, once submitted.
    created: f64,
}

/// Starts [`PROBES`] short tasks and polls each as a page does (following
/// `poll_after_ms`, bounded to 0.5–3 s) until it is seen completed.
async fn watch_probes(sessions: &[api::Session], run: usize) -> Vec<Seen> {
    let probes = (0..PROBES).map(|i| {
        let s = sessions[(run * PROBES + i) % sessions.len()].clone();
        async move {
            let prompt = format!("probe {run}.{i} #ms={PROBE_MS}");
            let id = s.generate(&prompt).await;
            loop {
                let v = s.check(&id).await.expect("probe poll");
                if !api::unfinished(&v) {
                    assert_eq!(v["status"], "completed", "{v}");
                    let created = v["created_ms"].as_f64().expect("created_ms");
                    let finished = v["finished_ms"].as_f64().expect("finished_ms");
                    return Seen { prompt, seen_at: now_ms(), finished, created };
                }
                let wait = v["poll_after_ms"].as_u64().unwrap_or(3_000).clamp(500, 3_000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
        }
    });
    futures::future::join_all(probes).await
}

/// Each probe's lags in ms after its prediction ended (`ends`, by prompt):
/// as seen by the page, and as stored by the server (which tells a slow
/// event from a late poll).
fn lags_after_end(seen: &[Seen], ends: &std::collections::HashMap<String, f64>) -> Vec<(f64, f64)> {
    let lags: Vec<(f64, f64)> = seen
        .iter()
        .map(|p| {
            let end = ends.get(&p.prompt).unwrap_or_else(|| panic!("no finished prediction for {:?}", p.prompt));
            (p.seen_at - end, p.finished - end)
        })
        .collect();
    let submitted: Vec<f64> =
        seen.iter().map(|p| ends.get(&p.prompt).map_or(f64::NAN, |end| end - PROBE_MS as f64 - p.created)).collect();
    eprintln!("    probes' predictions ended a median {:.0} ms after created_ms + {PROBE_MS} ms", median(&submitted));
    lags
}

fn now_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as f64).unwrap_or(0.0)
}
