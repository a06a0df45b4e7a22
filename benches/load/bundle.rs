//! Benchmark 5: the release hydrate bundle (raw and gzip -9 of
//! `target/site/pkg/darkroom.wasm`) against a minimal Leptos 0.8 app built
//! the same way (`cargo leptos build --release`, same wasm profile and
//! wasm-opt, generated under `target/bench-minimal/` and built once), the
//! generator page's first load in headless Chromium (bytes and time to an
//! interactive Generate button, `benches/first_load.mjs`), and the server
//! render time of `/history` for an account with 500 tasks.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;

use super::{
    api, http,
    loadgen::{self, median},
    procs,
    report::Report,
};

const HISTORY_TASKS: usize = 500;
const RUNS: usize = 3;
const REQUESTS: u64 = 200;

pub async fn bench(dir: &Path, report: &mut Report, build_minimal: bool) {
    report.line("### 5. Hydrate bundle and `/history` render");
    // The main bundle and the lazily loaded islands' files beside it
    // (`--split`): the ratio counts them all.
    let pkg = procs::site_root().join("pkg");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&pkg)
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let each: Vec<(String, (u64, u64))> =
        files.iter().filter_map(|f| Some((f.file_name()?.to_string_lossy().into_owned(), sizes(f)?))).collect();
    let ours = (!each.is_empty()).then(|| each.iter().fold((0, 0), |(r, g), (_, (fr, fg))| (r + fr, g + fg)));
    let minimal_wasm = minimal_dir().join("target/site/pkg/minimal.wasm");
    if build_minimal && !minimal_wasm.exists() {
        build_minimal_app();
    }
    let minimal = minimal_wasm.exists().then(|| sizes(&minimal_wasm)).flatten();
    report.line("");
    report.line("| bundle | raw bytes | gzip -9 bytes |");
    report.line("|---|---|---|");
    for (name, (raw, gz)) in &each {
        report.line(&format!("| `{name}` | {raw} | {gz} |"));
    }
    if let Some((raw, gz)) = ours {
        report.line(&format!("| darkroom, all WebAssembly files (release, as built by `make build`) | {raw} | {gz} |"));
    }
    match (ours, minimal) {
        (Some((raw, gz)), Some((mraw, mgz))) => {
            report.line(&format!("| minimal Leptos 0.8 app, same build | {mraw} | {mgz} |"));
            report.line("");
            report.line(&format!(
                "- darkroom / minimal = **{:.2} ×** raw, **{:.2} ×** gzip, all files (target ≤ 1.5 ×)",
                raw as f64 / mraw as f64,
                gz as f64 / mgz as f64
            ));
            if let Some((_, (main_raw, main_gz))) = each.iter().find(|(name, _)| name == "darkroom.wasm") {
                report.line(&format!(
                    "- main bundle (`darkroom.wasm`, the one file the generator's page loads) / minimal = **{:.2} ×** raw, **{:.2} ×** gzip",
                    *main_raw as f64 / mraw as f64,
                    *main_gz as f64 / mgz as f64
                ));
            }
        }
        _ => {
            report.line("");
            report.line(
                "- the minimal app was not built in this run (`--skip-minimal`, or its build failed): no ratio measured",
            );
        }
    }
    report.line("");
    first_load(dir, report).await;
    history(dir, report).await;
}

const FIRST_LOAD_RUNS: usize = 10;

/// The generator page opened cold by a signed-in person, in Chromium.
async fn first_load(dir: &Path, report: &mut Report) {
    let app = procs::darkroom(&dir.join("first-load"), &[]);
    let s = api::sign_up(app.addr, "first-load@bench.test").await;
    let script = procs::repo_root().join("benches/first_load.mjs");
    let out = Command::new("node")
        .arg(&script)
        .arg(format!("http://{}", app.addr))
        .arg(&s.cookie)
        .arg(FIRST_LOAD_RUNS.to_string())
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o.stdout,
        other => {
            eprintln!("  first load: {} failed: {other:?}", script.display());
            report.line("- first load: not measured (the Chromium run failed; see the bench's output)");
            report.line("");
            return;
        }
    };
    let result: serde_json::Value = serde_json::from_slice(&out).expect("first_load.mjs prints JSON");
    let mut times: Vec<f64> = result["times"].as_array().into_iter().flatten().filter_map(|t| t.as_f64()).collect();
    times.sort_by(f64::total_cmp);
    let resources = result["resources"].as_array().cloned().unwrap_or_default();
    report.line("First load of `/` (signed in, fresh browser context each run: cold cache), headless Chromium:");
    report.line("");
    report.line("| resource | over the wire (bytes) | body | body gzip -9 |");
    report.line("|---|---|---|---|");
    let (mut wire, mut body, mut gz) = (0, 0, 0);
    for r in &resources {
        let url = r["url"].as_str().unwrap_or("?");
        let path = url.split_once("//").and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..])).unwrap_or(url);
        let (t, d, g) =
            (r["transfer"].as_u64().unwrap_or(0), r["decoded"].as_u64().unwrap_or(0), r["gzip"].as_u64().unwrap_or(0));
        wire += t;
        body += d;
        gz += g;
        report.line(&format!("| `{path}` | {t} | {d} | {g} |"));
    }
    report.line(&format!("| **total** | **{wire}** | **{body}** | **{gz}** |"));
    report.line("");
    report.line(&format!("- transferred, gzip -9: **{:.1} KB** (target ≤ 250 KB)", gz as f64 / 1000.0));
    if !times.is_empty() {
        report.line(&format!(
            "- navigation start → Generate enabled and interactive: median **{:.0} ms** of {} runs (min {:.0}, max {:.0})",
            median(&times),
            times.len(),
            times[0],
            times[times.len() - 1]
        ));
    }
    report.line("");
}

fn sizes(wasm: &Path) -> Option<(u64, u64)> {
    let raw = std::fs::metadata(wasm).ok()?.len();
    let gz = Command::new("gzip").arg("-9").arg("-c").arg(wasm).output().ok()?.stdout.len() as u64;
    Some((raw, gz))
}

async fn history(dir: &Path, report: &mut Report) {
    let app = procs::darkroom(&dir.join("history"), &[("DARKROOM_RECONCILE_INTERVAL_SECS", "3600".into())]);
    let s = api::sign_up(app.addr, "history@bench.test").await;
    let ids: Vec<String> = futures::stream::iter(0..HISTORY_TASKS)
        .map(|i| {
            let s = &s;
            async move { s.generate(&format!("history item {i}: a quiet harbour at dawn #ms=10")).await }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    // Finish them all (the poll that sees the simulator done stores the PNG).
    futures::stream::iter(&ids)
        .for_each_concurrent(4, |id| {
            let s = &s;
            async move {
                s.wait_finished(id, Duration::from_millis(200), 100).await;
            }
        })
        .await;
    let request = Arc::new(http::get("/history", &s.cookie));
    let mut check = http::Conn::new(app.addr);
    let page = check.send(&request).await.expect("GET /history");
    assert_eq!(page.status, 200, "GET /history");
    assert!(String::from_utf8_lossy(&page.body).contains("History"), "the history page renders");
    let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let request = Arc::clone(&request);
        let stats = loadgen::closed_loop(app.addr, 1, 30.0, REQUESTS, Arc::new(move |_| Arc::clone(&request))).await;
        assert_eq!(stats.errors, 0, "GET /history answered errors");
        eprintln!(
            "  /history: p50 {:.2} ms  p99 {:.2} ms  ({} requests)",
            stats.pct_ms(0.5),
            stats.pct_ms(0.99),
            stats.requests
        );
        p50s.push(stats.pct_ms(0.5));
        p99s.push(stats.pct_ms(0.99));
    }
    report.line(&format!(
        "`GET /history` (server-rendered, `SsrMode::Async`, first page of the account's {HISTORY_TASKS} completed \
         tasks), one connection, {RUNS} runs of {REQUESTS} requests: p50 **{:.2} ms**, p99 **{:.2} ms** \
         (median of runs; target p99 < 20 ms).",
        median(&p50s),
        median(&p99s)
    ));
    report.line("");
}

fn minimal_dir() -> PathBuf {
    procs::repo_root().join("target/bench-minimal")
}

/// Writes the minimal app (the start-axum shape: a router, a meta title, a
/// counter) and builds it with cargo-leptos in its own target directory.
fn build_minimal_app() {
    let root = procs::repo_root();
    let dir = minimal_dir();
    std::fs::create_dir_all(dir.join("src")).expect("minimal dir");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let wasm_profile = manifest
        .split("[profile.wasm-release]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("our [profile.wasm-release]");
    let files = [
        ("Cargo.toml", MINIMAL_MANIFEST.replace("@WASM_PROFILE@", wasm_profile.trim())),
        ("src/lib.rs", MINIMAL_LIB.to_owned()),
        ("src/main.rs", MINIMAL_MAIN.to_owned()),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write minimal app");
    }
    // Same crate versions as ours.
    let _ = std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock"));
    let path =
        format!("{}:{}", root.join("end2end/node_modules/.bin").display(), std::env::var("PATH").unwrap_or_default());
    eprintln!("  building the minimal Leptos app (cargo leptos build --release; minutes on 2 cores)…");
    let status = Command::new("cargo")
        .args(["leptos", "build", "--release"])
        .current_dir(&dir)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env_remove("CARGO_PRIMARY_PACKAGE")
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("  the minimal app did not build: {status:?}");
    }
}

const MINIMAL_MANIFEST: &str = r#"[package]
name = "minimal"
version = "0.1.0"
edition = "2024"
publish = false

[workspace]

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
leptos = "0.8"
leptos_router = "0.8"
leptos_meta = "0.8"
wasm-bindgen = "=0.2.130"
console_error_panic_hook = { version = "0.1", optional = true }
leptos_axum = { version = "0.8", optional = true }
axum = { version = "0.8", optional = true }
tokio = { version = "1", optional = true, features = ["rt-multi-thread", "macros"] }

[features]
hydrate = ["leptos/hydrate", "dep:console_error_panic_hook"]
ssr = ["dep:leptos_axum", "dep:axum", "dep:tokio", "leptos/ssr", "leptos_meta/ssr", "leptos_router/ssr"]

[profile.wasm-release]
@WASM_PROFILE@

[package.metadata.leptos]
output-name = "minimal"
site-root = "target/site"
site-pkg-dir = "pkg"
site-addr = "127.0.0.1:3000"
reload-port = 3001
bin-features = ["ssr"]
bin-default-features = false
lib-features = ["hydrate"]
lib-default-features = false
lib-profile-release = "wasm-release"
"#;

const MINIMAL_LIB: &str = r#"use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::{components::{Route, Router, Routes}, path};

pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body><App/></body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Title text="Minimal"/>
        <Router>
            <main>
                <Routes fallback=|| "Not found.">
                    <Route path=path!("") view=HomePage/>
                </Routes>
            </main>
        </Router>
    }
}

#[component]
fn HomePage() -> impl IntoView {
    let count = RwSignal::new(0);
    view! {
        <h1>"Welcome to Leptos!"</h1>
        <button on:click=move |_| *count.write() += 1>"Click Me: " {count}</button>
    }
}

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
"#;

const MINIMAL_MAIN: &str = r#"#[cfg(feature = "ssr")]
#[tokio::main]
async fn main() {
    use axum::Router;
    use leptos::prelude::*;
    use leptos_axum::{generate_route_list, LeptosRoutes};
    use minimal::{shell, App};

    let conf = get_configuration(None).unwrap();
    let options = conf.leptos_options;
    let addr = options.site_addr;
    let routes = generate_route_list(App);
    let app = Router::new()
        .leptos_routes(&options, routes, {
            let options = options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler(shell))
        .with_state(options);
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    axum::serve(listener, app.into_make_service()).await.unwrap();
}

#[cfg(not(feature = "ssr"))]
pub fn main() {}
"#;
