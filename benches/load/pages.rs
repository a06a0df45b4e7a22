//! Benchmark 6: pages under load. 20,000 signed-in loads of `/`,
//! `/history`, `/account` and a share page, 16 at a time, while two threads
//! keep the CPU busy beside the server. Every load must answer 200 with its
//! data in place and a policy that names its inline scripts' nonce, and the
//! server's log must hold no line of a server function run without its
//! request's context (`AppState missing`) or of a page without its policy.
//! Counts, not timings: the figures are how many went wrong.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use super::{api, http, procs, report::Report};

const LOADS: usize = 20_000;
const CONCURRENCY: usize = 16;

/// What went wrong in one run, by kind.
#[derive(Default)]
struct Wrong {
    status: usize,
    error_in_place: usize,
    policy: usize,
    failed_requests: usize,
}

pub async fn bench(dir: &Path, report: &mut Report) {
    report.line("### 6. Pages under load");
    report.line("");
    let data = dir.join("pages");
    let app = procs::darkroom(&data, &[("DARKROOM_SIM_DURATION_MS", "300-600".into())]);
    let s = api::sign_up(app.addr, "pages@bench.test").await;
    // What the pages show: a finished task with two images, a failed one,
    // one still processing, and a share link.
    let two = s.generate_with("two lighthouses at dusk", &[("num_outputs", "2")]).await;
    let failed = s.generate("a storm at sea #fail").await;
    for id in [&two, &failed] {
        s.wait_finished(id, Duration::from_millis(100), 200).await;
    }
    s.generate("a slow tide #slow").await;
    let share = s.share(&two).await;
    let pages: Vec<Arc<Vec<u8>>> =
        ["/", "/history", "/account", share.as_str()].iter().map(|p| Arc::new(http::get(p, &s.cookie))).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let burners: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (next, pages, addr) = (next.clone(), pages.clone(), app.addr);
            tokio::spawn(async move {
                let mut conn = http::Conn::new(addr);
                let mut wrong = Wrong::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= LOADS {
                        return wrong;
                    }
                    let share_page = i % pages.len() == 3;
                    match conn.send(&pages[i % pages.len()]).await {
                        Err(_) => wrong.failed_requests += 1,
                        Ok(a) if a.status != 200 => wrong.status += 1,
                        Ok(a) => {
                            let body = String::from_utf8_lossy(&a.body);
                            if body.contains("form-error") {
                                wrong.error_in_place += 1;
                            }
                            if !share_page && !nonce_matches(a.policy.as_deref(), &body) {
                                wrong.policy += 1;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let mut wrong = Wrong::default();
    for w in workers {
        let w = w.await.expect("worker");
        wrong.status += w.status;
        wrong.error_in_place += w.error_in_place;
        wrong.policy += w.policy;
        wrong.failed_requests += w.failed_requests;
    }
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for b in burners {
        let _ = b.join();
    }
    // The log (RUST_LOG=warn) names both defects.
    let log = std::fs::read_to_string(data.join("server.log")).unwrap_or_default();
    let lost_context = log.lines().filter(|l| l.contains("AppState missing")).count();
    let no_policy = log
        .lines()
        .filter(|l| l.contains("came without its policy") || l.contains("rendered outside security::headers"))
        .count();
    eprintln!(
        "  {LOADS} loads in {secs:.1} s: {} error statuses, {} errors in place, {} without the policy, {} failed, \
         log: {lost_context} lost contexts, {no_policy} missing policies",
        wrong.status, wrong.error_in_place, wrong.policy, wrong.failed_requests
    );
    report.line(&format!(
        "{LOADS} signed-in loads of `/`, `/history`, `/account` and a share page (the account has a finished \
         two-image task, a failed one and one processing), {CONCURRENCY} at a time, two CPU-busy threads beside \
         the server, {secs:.0} s ({:.0} pages/s):",
        LOADS as f64 / secs
    ));
    report.line("");
    report.line("| went wrong | count | target |");
    report.line("|---|---|---|");
    report.line(&format!("| error statuses (or no answer) | {} | 0 |", wrong.status + wrong.failed_requests));
    report.line(&format!("| pages with an error in place | {} | 0 |", wrong.error_in_place));
    report.line(&format!("| pages whose policy does not name their scripts' nonce | {} | 0 |", wrong.policy));
    report.line(&format!("| log lines: a server function without its request's context | {lost_context} | 0 |"));
    report.line(&format!("| log lines: a page without its policy | {no_policy} | 0 |"));
    report.line("");
}

/// Whether the policy names a nonce that every inline script carries.
fn nonce_matches(policy: Option<&str>, body: &str) -> bool {
    let Some(nonce) = policy.and_then(|p| p.split("'nonce-").nth(1)).and_then(|s| s.split('\'').next()) else {
        return false;
    };
    let tagged = format!("nonce=\"{nonce}\"");
    let mut scripts = body.split("<script").skip(1).peekable();
    scripts.peek().is_some() && scripts.all(|rest| rest.split('>').next().is_some_and(|tag| tag.contains(&tagged)))
}
