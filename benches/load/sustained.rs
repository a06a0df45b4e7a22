//! Benchmark 9: memory under a sustained mixed load. Eight people generate
//! as fast as the app answers them — a seventh of the prompts forcing each
//! fault the simulator knows (`#fail`, `#error`, `#ratelimit`, `#notimage`)
//! — while their pages poll their last tasks and their history pages poll
//! batches of twenty, for minutes. The server's RSS over time (its level,
//! not only its peak), generations per minute and the polls' latency.

use std::{
    collections::{HashSet, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::{api, loadgen::median, procs, report::Report};

const PEOPLE: usize = 8;
/// Generators each person keeps busy (tabs): each submits, watches its
/// task for at most [`WATCH`] and submits again; a task still running then
/// is left to the history page's batch polls, as a person moves on.
const TABS: usize = 16;
const WATCH: Duration = Duration::from_secs(3);
/// How long the load runs; the level is read over its second half.
const SECS: u64 = 300;
/// Each generation's own time at the simulator.
const TASK_MS: u64 = 500;
/// Every prompt carries one of these: four faults and three plain ones.
const FAULTS: [&str; 7] = ["#fail", "#error", "#ratelimit", "#notimage", "", "", ""];
/// Provider limits raised in the app and the simulator: this section
/// measures the server at throughput, not the queue (section 7 does).
const LIMITS: &str = "create=600000/min,other=6000000/min";
/// The engine checks a task at the provider at most this often: at the
/// default 2 s a tab would wait on its task more than on the server.
const CHECK_MS: u64 = 250;

#[derive(Default)]
struct Tally {
    generated: AtomicU64,
    refused: AtomicU64,
    poll_errors: AtomicU64,
    /// Tasks seen finished, by id: (completed, failed or canceled).
    finished: Mutex<(HashSet<String>, HashSet<String>)>,
}

impl Tally {
    fn finished(&self, view: &serde_json::Value) {
        let id = view["id"].as_str().unwrap_or_default().to_owned();
        let mut f = self.finished.lock().expect("finished");
        let seen = if view["status"] == "completed" { &mut f.0 } else { &mut f.1 };
        seen.insert(id);
    }
}

pub async fn bench(dir: &std::path::Path, report: &mut Report) {
    report.line("### 9. Memory under a sustained mixed load");
    report.line(&format!(
        "{PEOPLE} people, {TABS} tabs each, generate as fast as the app answers (`#ms={TASK_MS}`; a seventh of the \
         prompts each force `#fail`, `#error`, `#ratelimit` and `#notimage`); each tab polls its task following \
         `poll_after_ms` (0.1–3 s) until it ends, for at most {} s, and then generates again, and each person's history page polls \
         `/api/check_image_statuses` for their last 20 tasks every second. {SECS} s on a fresh server; provider \
         limits raised in the app and the simulator (`{LIMITS}`) and tasks checked at the provider every \
         {CHECK_MS} ms (`DARKROOM_PROVIDER_CHECK_MS`), so that the server, not the queue, sets the pace. \
         `VmRSS` sampled every second: the level is the median over the second half, with its min and max; \
         generations per minute over the whole run; poll latency over every single and batch poll; tasks seen \
         finished by either.",
        WATCH.as_secs()
    ));
    report.line("");
    let env = [
        ("DARKROOM_PROVIDER_LIMITS", LIMITS.to_owned()),
        ("DARKROOM_SIM_RATE_LIMITS", LIMITS.to_owned()),
        ("DARKROOM_PROVIDER_CHECK_MS", CHECK_MS.to_string()),
    ];
    let app = procs::darkroom(&dir.join("sustained"), &env);
    let mut people = Vec::new();
    for p in 0..PEOPLE {
        people.push(api::sign_up(app.addr, &format!("sustained{p}@bench.test")).await);
    }
    let (_, rss_start) = app.memory_kib();

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new((Vec::<f64>::new(), Vec::<f64>::new())));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(SECS);
    let mut workers = Vec::new();
    for (p, person) in people.iter().enumerate() {
        let recent = Arc::new(Mutex::new(VecDeque::<String>::new()));
        for tab in 0..TABS {
            let (s, tally, recent, latencies) =
                (person.clone(), Arc::clone(&tally), Arc::clone(&recent), Arc::clone(&latencies));
            workers.push(tokio::spawn(async move {
                let mut n = p * TABS + tab;
                while Instant::now() < deadline {
                    n += PEOPLE * TABS;
                    let prompt = format!("sustained {n} {} #ms={TASK_MS}", FAULTS[n % FAULTS.len()]);
                    let id = match s.try_generate(&prompt).await {
                        Ok(id) => id,
                        Err(_) => {
                            tally.refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    };
                    tally.generated.fetch_add(1, Ordering::Relaxed);
                    {
                        let mut r = recent.lock().expect("recent");
                        r.push_front(id.clone());
                        r.truncate(20);
                    }
                    // Polls until the task ends, for at most `WATCH`.
                    let watched = Instant::now();
                    while Instant::now() < deadline && watched.elapsed() < WATCH {
                        let t = Instant::now();
                        let answer = s.check(&id).await;
                        latencies.lock().expect("latencies").0.push(t.elapsed().as_secs_f64() * 1000.0);
                        let wait = match answer {
                            Ok(v) if !api::unfinished(&v) => {
                                tally.finished(&v);
                                break;
                            }
                            Ok(v) => v["poll_after_ms"].as_u64().unwrap_or(3_000).clamp(100, 3_000),
                            Err(_) => {
                                tally.poll_errors.fetch_add(1, Ordering::Relaxed);
                                1_000
                            }
                        };
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                }
            }));
        }
        let (s, tally, latencies, stop) =
            (person.clone(), Arc::clone(&tally), Arc::clone(&latencies), Arc::clone(&stop));
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ids: Vec<String> = recent.lock().expect("recent").iter().cloned().collect();
                if !ids.is_empty() {
                    let t = Instant::now();
                    match s.check_many(&ids).await {
                        Ok(serde_json::Value::Array(views)) => {
                            views.iter().filter(|v| !api::unfinished(v)).for_each(|v| tally.finished(v))
                        }
                        _ => {
                            tally.poll_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    latencies.lock().expect("latencies").1.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }

    // RSS every second, and the generations by then.
    let mut samples: Vec<(f64, f64, u64)> = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (_, rss) = app.memory_kib();
        samples.push((started.elapsed().as_secs_f64(), rss as f64 / 1024.0, tally.generated.load(Ordering::Relaxed)));
        if samples.len().is_multiple_of(30) {
            eprintln!(
                "  {:.0} s: RSS {:.1} MiB, {} generated",
                started.elapsed().as_secs_f64(),
                rss as f64 / 1024.0,
                tally.generated.load(Ordering::Relaxed)
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let (peak, _) = app.memory_kib();

    let second_half: Vec<f64> = samples.iter().filter(|(t, ..)| *t >= SECS as f64 / 2.0).map(|(_, r, _)| *r).collect();
    let level = median(&second_half);
    let (lo, hi) = second_half.iter().fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    let generated = tally.generated.load(Ordering::Relaxed);
    let per_minute = generated as f64 * 60.0 / secs;
    let (mut single, mut batch) = std::mem::take(&mut *latencies.lock().expect("latencies"));
    single.sort_by(f64::total_cmp);
    batch.sort_by(f64::total_cmp);
    let pct = |v: &[f64], p: f64| if v.is_empty() { f64::NAN } else { v[((v.len() - 1) as f64 * p).round() as usize] };
    // The level minute by minute: it should be flat.
    let minutes: Vec<String> = (0..SECS.div_ceil(60))
        .map(|m| {
            let within: Vec<f64> = samples
                .iter()
                .filter(|(t, ..)| *t >= (m * 60) as f64 && *t < ((m + 1) * 60) as f64)
                .map(|(_, r, _)| *r)
                .collect();
            format!("{:.0}", median(&within))
        })
        .collect();

    let (completed, failed) = {
        let f = tally.finished.lock().expect("finished");
        (f.0.len(), f.1.len())
    };
    report.line(
        "| RSS level MiB (min–max) | RSS by minute MiB | peak (VmHWM) MiB | at the start MiB | generations | per \
         minute | completed / failed | refused | poll p50 / p99 ms | batch p50 / p99 ms | poll errors | target |",
    );
    report.line("|---|---|---|---|---|---|---|---|---|---|---|---|");
    report.line(&format!(
        "| **{level:.1}** ({lo:.1}–{hi:.1}) | {} | {:.1} | {:.1} | {generated} | {per_minute:.0} | {} / {} | {} | \
         {:.2} / {:.2} | {:.2} / {:.2} | {} | level < 150 MiB |",
        minutes.join(", "),
        peak as f64 / 1024.0,
        rss_start as f64 / 1024.0,
        completed,
        failed,
        tally.refused.load(Ordering::Relaxed),
        pct(&single, 0.5),
        pct(&single, 0.99),
        pct(&batch, 0.5),
        pct(&batch, 0.99),
        tally.poll_errors.load(Ordering::Relaxed),
    ));
    report.line("");
}
