//! Benchmark 7: a burst of 2,000 generations from 200 accounts within
//! 10 s, at Replicate's published limits (the simulator enforces them, the
//! engine's budget spends 80 % of them): nothing is refused for the
//! provider, the creates the provider sees stay under its limit over every
//! 30 s, the queue empties at the budget's pace, every task completes and
//! every account is charged exactly.

use std::time::{Duration, Instant};

use futures::StreamExt;

use super::{api, loadgen::median, procs, report::Report};

const ACCOUNTS: usize = 200;
const PER_ACCOUNT: usize = 10;
/// Each generation's own time at the provider.
const TASK_MS: u64 = 3_000;
/// The engine's budget for creates: 80 % of Replicate's 600 a minute.
const CREATES_PER_S: f64 = 8.0;

pub async fn bench(dir: &std::path::Path, report: &mut Report) {
    let total = ACCOUNTS * PER_ACCOUNT;
    report.line(&format!("### 7. A burst of {total} generations from {ACCOUNTS} accounts"));
    report.line(&format!(
        "{ACCOUNTS} accounts start {PER_ACCOUNT} generations each (`#ms={TASK_MS}`), all within about 10 s, at \
         the default limits: the simulator enforces Replicate's 600 creates and 3,000 other calls a minute, the \
         engine's budget spends 80 % of them ({CREATES_PER_S:.0} creates a second, bursts of 16). Every task is \
         then polled by a page that follows `poll_after_ms` (0.5–3 s). The simulator's counters are read every \
         second: creates per second over every 30 s window, and the time the last create came after the burst \
         (the last task's queue wait; {total} / {CREATES_PER_S:.0} a second = {:.0} s).",
        total as f64 / CREATES_PER_S
    ));
    report.line("");
    let app = procs::darkroom(&dir.join("burst"), &[]);
    let mut sessions = Vec::new();
    for a in 0..ACCOUNTS {
        sessions.push(api::sign_up(app.addr, &format!("burst{a}@bench.test")).await);
    }
    let credits = sessions[0].credits().await;

    // The simulator's counters, every second, from the burst on.
    let sampling = tokio::spawn(async move {
        let mut samples = Vec::new();
        let started = Instant::now();
        loop {
            let s = api::sim_stats(app.addr).await;
            samples.push((started.elapsed().as_secs_f64(), s));
            if s.creates as usize >= total || started.elapsed() > Duration::from_secs(900) {
                return samples;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let burst_started = Instant::now();
    let answers: Vec<(usize, Result<String, String>, f64)> = futures::stream::iter(0..total)
        .map(|i| {
            let s = sessions[i % ACCOUNTS].clone();
            async move {
                let t = Instant::now();
                let answer = s.try_generate(&format!("burst {i} #ms={TASK_MS}")).await;
                (i % ACCOUNTS, answer, t.elapsed().as_secs_f64() * 1000.0)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let burst_secs = burst_started.elapsed().as_secs_f64();
    let refused: Vec<&String> = answers.iter().filter_map(|(_, a, _)| a.as_ref().err()).collect();
    let latencies: Vec<f64> = answers.iter().map(|(_, _, ms)| *ms).collect();
    eprintln!("  {total} generations started in {burst_secs:.1} s, {} refused", refused.len());

    // Pages poll every task until it ends.
    let polls =
        answers.iter().filter_map(|(a, answer, _)| answer.as_ref().ok().map(|id| (*a, id.clone()))).map(|(a, id)| {
            let s = sessions[a].clone();
            async move {
                loop {
                    let wait = match s.check(&id).await {
                        Ok(v) if !api::unfinished(&v) => return v["status"].as_str().unwrap_or_default().to_owned(),
                        Ok(v) => v["poll_after_ms"].as_u64().unwrap_or(3_000).clamp(500, 3_000),
                        Err(_) => 3_000,
                    };
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            }
        });
    let statuses: Vec<String> = futures::stream::iter(polls).buffer_unordered(total).collect().await;
    let completed = statuses.iter().filter(|s| *s == "completed").count();
    let samples = sampling.await.expect("sampling");
    let all_done = burst_started.elapsed().as_secs_f64();

    // Creates per second over every 30 s window, and when the last came.
    let window = |secs: f64| {
        samples
            .iter()
            .filter_map(|(t, s)| {
                let end = samples.iter().find(|(u, _)| *u >= t + secs)?;
                Some((end.1.creates - s.creates) / (end.0 - t))
            })
            .fold(0.0, f64::max)
    };
    let (max_30, max_5) = (window(30.0), window(5.0));
    let last_create = samples.iter().find(|(_, s)| s.creates as usize >= total).map(|(t, _)| *t);
    let last = samples.last().map(|(_, s)| *s).unwrap_or_default();
    let mut exact = 0;
    for s in &sessions {
        if s.credits().await == credits - (PER_ACCOUNT as i64) * 10 {
            exact += 1;
        }
    }
    eprintln!("  creates/s: max over 30 s {max_30:.2}, over 5 s {max_5:.2}; last create at {last_create:?} s");
    report.line(
        "| started within s | refused | generate p50 / max ms | completed | creates/s, max over any 30 s (5 s) | \
         provider 429s | the last create after the burst's start s | everything done s | accounts charged exactly |",
    );
    report.line("|---|---|---|---|---|---|---|---|---|");
    report.line(&format!(
        "| {burst_secs:.1} | {} | {:.0} / {:.0} | {completed} of {total} | {max_30:.2} ({max_5:.2}) | {:.0} | {} | {all_done:.0} | \
         {exact} of {ACCOUNTS} |",
        refused.len(),
        median(&latencies),
        latencies.iter().copied().fold(0.0, f64::max),
        last.throttled,
        last_create.map_or_else(|| "never".to_owned(), |t| format!("{t:.0}")),
    ));
    if let Some(first) = refused.first() {
        report.line(&format!("A refusal: `{first}`."));
    }
    report.line("");
    report.line(&format!(
        "Targets: 0 refused; creates ≤ 10 a second over every 30 s (Replicate allows 600 a minute); every task \
         completes and every account is charged exactly; the last create about {:.0} s after the burst.",
        total as f64 / CREATES_PER_S
    ));
    report.line("");
}
