//! Darkroom's load benchmarks (issue 7): what a poll costs and how many tasks
//! one machine carries. Starts `target/release/darkroom` (built by
//! `make build`) as a child with a temporary data directory and the built-in
//! simulator, drives it over loopback only, and writes the figures into
//! `BENCHMARKS.md`.
//!
//! `cargo bench --bench load --features ssr [-- --only 1,3] [--skip-minimal]
//! [--postgres postgres://user@host:port]` (or `make bench`, `make
//! bench-postgres`). With `--postgres`, every server runs on a fresh
//! database there and the results go into a block of their own.
//! Sections: 1 polls vs references, 2 in-flight scale, 3 completion lag,
//! 4 peak RSS while finalizing large outputs, 5 bundle size and `/history`,
//! 6 pages under load (counts of what went wrong), 7 a burst of
//! generations at the provider's published limits, 8 images in (50 large
//! uploads at once beside polling), 9 memory under a sustained mixed load.

#[path = "load/api.rs"]
mod api;
#[path = "load/bundle.rs"]
mod bundle;
#[path = "load/burst.rs"]
mod burst;
#[path = "load/http.rs"]
mod http;
#[path = "load/lag.rs"]
mod lag;
#[path = "load/loadgen.rs"]
mod loadgen;
#[path = "load/pages.rs"]
mod pages;
#[path = "load/polls.rs"]
mod polls;
#[path = "load/procs.rs"]
mod procs;
#[path = "load/report.rs"]
mod report;
#[path = "load/rss.rs"]
mod rss;
#[path = "load/scale.rs"]
mod scale;
#[path = "load/sustained.rs"]
mod sustained;
#[path = "load/uploads.rs"]
mod uploads;

use std::time::Instant;

use report::Report;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--floor") {
        let port = args.get(at + 1).and_then(|p| p.parse().ok()).expect("--floor PORT");
        polls::serve_floor(port);
        return;
    }
    let only: Option<Vec<u32>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|at| args.get(at + 1))
        .map(|list| list.split(',').filter_map(|s| s.trim().parse().ok()).collect());
    let build_minimal = !args.iter().any(|a| a == "--skip-minimal");
    let postgres = args.iter().position(|a| a == "--postgres").and_then(|at| args.get(at + 1));
    if let Some(server) = postgres {
        procs::use_postgres(server);
    }
    let wanted = |n: u32| only.as_ref().is_none_or(|o| o.contains(&n));

    let bin = procs::server_bin();
    assert!(bin.exists(), "{} is missing: run `make build` first", bin.display());
    // Children die with us on Ctrl-C and SIGTERM too (Drop covers normal
    // exits and panics).
    ctrlc_kills_children();

    let dir = tempfile::Builder::new().prefix("darkroom-bench-").tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let started = Instant::now();
    let mut report = if postgres.is_some() { Report::postgres() } else { Report::default() };
    report.line(&machine());
    rt.block_on(async {
        if wanted(1) {
            let t = begin("1 polls");
            polls::bench(dir.path(), &mut report).await;
            end("1 polls", t, &mut report);
        }
        if wanted(2) {
            let t = begin("2 scale");
            scale::bench(dir.path(), &mut report).await;
            end("2 scale", t, &mut report);
        }
        if wanted(3) {
            let t = begin("3 lag");
            lag::bench(dir.path(), &mut report).await;
            lag::bench_in_flight(dir.path(), &mut report).await;
            end("3 lag", t, &mut report);
        }
        if wanted(4) {
            let t = begin("4 rss");
            rss::bench(dir.path(), &mut report).await;
            end("4 rss", t, &mut report);
        }
        if wanted(5) {
            let t = begin("5 bundle");
            bundle::bench(dir.path(), &mut report, build_minimal).await;
            end("5 bundle", t, &mut report);
        }
        if wanted(6) {
            let t = begin("6 pages");
            pages::bench(dir.path(), &mut report).await;
            end("6 pages", t, &mut report);
        }
        if wanted(7) {
            let t = begin("7 burst");
            burst::bench(dir.path(), &mut report).await;
            end("7 burst", t, &mut report);
        }
        if wanted(8) {
            let t = begin("8 uploads");
            uploads::bench(dir.path(), &mut report).await;
            end("8 uploads", t, &mut report);
        }
        if wanted(9) {
            let t = begin("9 sustained");
            sustained::bench(dir.path(), &mut report).await;
            end("9 sustained", t, &mut report);
        }
    });
    report.line(&format!("_Whole run: {:.0} s._", started.elapsed().as_secs_f64()));
    let out = procs::repo_root().join("BENCHMARKS.md");
    report.write_into(&out).expect("write BENCHMARKS.md");
    eprintln!("results written into {}", out.display());
}

/// Starts a section: its clock and the load average before it.
fn begin(name: &str) -> (Instant, String) {
    eprintln!("== {name}");
    (Instant::now(), loadavg())
}

/// Ends a section: how long it took, and the load average around it (the
/// machine is shared; the figures are only as quiet as it was).
fn end(name: &str, (t, before): (Instant, String), report: &mut Report) {
    eprintln!("== {name}: {:.0} s", t.elapsed().as_secs_f64());
    report.line(&format!("_Load average (1 min) before / after this section: {before} / {}._", loadavg()));
    report.line("");
}

fn ctrlc_kills_children() {
    std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("signal runtime");
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            procs::kill_all();
            std::process::exit(130);
        });
    });
}

/// The 1-minute load average.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next().map(str::to_owned))
        .unwrap_or_default()
}

/// The machine line: date, nproc, CPU model, memory, command.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|v| v.trim_start_matches([' ', '\t', ':']));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let commit = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(procs::repo_root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let (heading, command, database) = if procs::on_postgres() {
        ("Last run on PostgreSQL", "make bench-postgres", "PostgreSQL on 127.0.0.1 (a fresh database per server)")
    } else {
        ("Last run", "make bench", "SQLite in a temp dir")
    };
    format!(
        "## {heading}\n\n- command: `{command}` (`cargo bench --bench load --features ssr`)\n- date: {date}\n\
         - machine: {nproc} cores ({}), {:.1} GiB memory\n- server: `target/release/darkroom` \
         of commit `{commit}` (as of the bench run), {database}, local objects in a temp dir, built-in simulator\n",
        cpu.unwrap_or("unknown CPU"),
        mem_kib as f64 / 1024.0 / 1024.0
    )
}
