//! Pages as a browser loads them: each page's data is loaded once per
//! load, every HTML answer carries the policy that names its scripts'
//! nonce, and pages stay whole under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use darkroom::server::metrics::LOST_CONTEXT;
use futures::StreamExt;

use crate::helpers::*;

/// A signed-in account with a processing, a finished (two images) and a
/// failed task, and a share link: what the pages under test show.
async fn account_with_tasks(app: &TestApp) -> (reqwest::Client, String) {
    let c = client();
    app.sign_up(&c).await;
    let (status, body) = app.call(&c, "generate_image", &[("prompt", "two lighthouses"), ("num_outputs", "2")]).await;
    assert_eq!(status, 200, "{body}");
    let finished = body["task_id"].as_str().unwrap().to_owned();
    let failed = generate(app, &c, "a storm #fail").await;
    poll_until_done(app, &c, &finished).await;
    poll_until_done(app, &c, &failed).await;
    generate(app, &c, "a slow tide #slow").await;
    let (status, shared) = app.call(&c, "share_image", &[("task_id", &finished)]).await;
    assert_eq!(status, 200, "{shared}");
    (c, shared["url"].as_str().unwrap().to_owned())
}

/// The page's policy's nonce, after checking that every inline script
/// carries it.
fn checked_nonce(page: &str, policy: &str, body: &str) -> Result<String, String> {
    let nonce = policy
        .split("'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .ok_or_else(|| format!("{page}: no nonce in the policy {policy:?}"))?;
    let tags: Vec<&str> = body.split("<script").skip(1).map(|rest| rest.split('>').next().unwrap_or("")).collect();
    if tags.is_empty() {
        return Err(format!("{page}: no script"));
    }
    match tags.iter().find(|tag| !tag.contains(&format!("nonce=\"{nonce}\""))) {
        Some(tag) => Err(format!("{page}: <script{tag}> lacks the policy's nonce {nonce}")),
        None => Ok(nonce.to_owned()),
    }
}

/// Each page starts each of its server functions once per load. Leptos 0.8's
/// `<Suspense>` calls its children several times per render; a page that
/// created its resources inside ran its server functions two or three times
/// per load, and the surplus runs, awaited by nobody, could start after the
/// response had ended and find no request context.
#[tokio::test]
async fn each_page_loads_its_data_once() {
    let app = spawn_app().await;
    let (c, _) = account_with_tasks(&app).await;
    let loads = 5;
    let runs = |f: &'static str| app.state.metrics.page_server_fn_runs(f);
    let before: Vec<u64> =
        ["/api/current_user", "/api/generator_setup", "/api/list_history", "/api/list_ledger"].map(runs).into();
    for page in ["/", "/history", "/account"] {
        for _ in 0..loads {
            let r = c.get(format!("{}{page}", app.base)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{page}");
        }
    }
    let after: Vec<u64> =
        ["/api/current_user", "/api/generator_setup", "/api/list_history", "/api/list_ledger"].map(runs).into();
    let ran: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    // current_user: every page; generator_setup: / and /history;
    // list_history: /history; list_ledger: /account.
    assert_eq!(
        ran,
        vec![3 * loads, 2 * loads, loads, loads],
        "runs of current_user, generator_setup, list_history, list_ledger"
    );
}

/// Every kind of HTML answer carries the security headers, and a page's
/// policy names the nonce on each of its inline scripts (set in one place,
/// `security::headers`, before the page renders): the pages signed in and
/// out, the sign-in page a signed-out visitor is sent to, a 404, the share
/// page and the page of a revoked share link.
#[tokio::test]
async fn every_html_answer_carries_its_policy() {
    let app = spawn_app().await;
    let (c, share) = account_with_tasks(&app).await;
    let stranger = client();
    let mut answers: Vec<(reqwest::Client, String, u16, bool)> = vec![
        (stranger.clone(), "/login".into(), 200, true),
        (stranger.clone(), "/signup".into(), 200, true),
        (stranger.clone(), "/forgot".into(), 200, true),
        (stranger.clone(), "/reset?token=abc".into(), 200, true),
        (stranger.clone(), "/history".into(), 200, true), // followed to /login?next=/history
        (stranger.clone(), "/no-such-page".into(), 404, true),
        (c.clone(), "/".into(), 200, true),
        (c.clone(), "/history".into(), 200, true),
        (c.clone(), "/account".into(), 200, true),
        (c.clone(), "/no-such-page".into(), 404, true),
        (stranger.clone(), share.clone(), 200, false),
    ];
    let revoked = format!("{share}-revoked");
    answers.push((stranger.clone(), revoked, 404, false));
    for (client, page, status, scripts) in answers {
        let r = client.get(format!("{}{page}", app.base)).send().await.unwrap();
        assert_eq!(r.status(), status, "{page}");
        let h = r.headers().clone();
        let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert!(header("content-type").starts_with("text/html"), "{page}");
        assert_eq!(header("x-frame-options"), "DENY", "{page}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{page}");
        assert_eq!(header("referrer-policy"), "strict-origin-when-cross-origin", "{page}");
        let policy = header("content-security-policy");
        assert!(policy.contains("frame-ancestors 'none'"), "{page}: {policy}");
        let body = r.text().await.unwrap();
        if scripts {
            assert!(policy.contains("default-src 'self'"), "{page}: {policy}");
            checked_nonce(&page, &policy, &body).unwrap();
        } else {
            // The share pages run nothing.
            assert!(policy.starts_with("default-src 'none'"), "{page}: {policy}");
            assert!(!body.contains("<script"), "{page}");
        }
    }
    // A nonce is fresh per response.
    let nonce = |r: reqwest::Response| r.headers().get("content-security-policy").cloned();
    let first = nonce(stranger.get(format!("{}/login", app.base)).send().await.unwrap());
    let second = nonce(stranger.get(format!("{}/login", app.base)).send().await.unwrap());
    assert_ne!(first, second);
}

/// Spins on `n` threads until dropped: the CPU-busy neighbours that made
/// lost contexts show.
struct Burners(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl Burners {
    fn start(n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
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
        Self(stop, threads)
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

/// `n` signed-in loads of `/`, `/history`, `/account` and the share page,
/// 16 at a time: what went wrong with each (no answer within 30 s, an
/// error status, an error shown in place, a policy that does not name the
/// nonce of every inline script, a share page without its image).
async fn load_pages(app: &TestApp, c: &reqwest::Client, share: &str, n: usize) -> Vec<String> {
    let pages = ["/", "/history", "/account", share];
    futures::stream::iter(0..n)
        .map(|i| {
            let (c, page, base) = (c.clone(), pages[i % pages.len()].to_owned(), app.base.clone());
            async move {
                // A stalled page is a failure, not a hung test.
                let load =
                    tokio::time::timeout(std::time::Duration::from_secs(30), c.get(format!("{base}{page}")).send());
                let r = match load.await {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => return Some(format!("{page}: {e}")),
                    Err(_) => return Some(format!("{page}: no answer within 30 s")),
                };
                let status = r.status();
                let policy = r
                    .headers()
                    .get("content-security-policy")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let body = match tokio::time::timeout(std::time::Duration::from_secs(30), r.text()).await {
                    Ok(body) => body.unwrap_or_default(),
                    Err(_) => return Some(format!("{page}: the body stalled")),
                };
                if status != 200 {
                    return Some(format!("{page}: {status}"));
                }
                if body.contains("form-error") {
                    return Some(format!("{page}: an error in place"));
                }
                if page.starts_with("/s/") {
                    return (!body.contains("<img")).then(|| format!("{page}: no image"));
                }
                checked_nonce(&page, &policy, &body).err()
            }
        })
        .buffer_unordered(16)
        .filter_map(|p| async move { p })
        .collect()
        .await
}

/// 2,000 signed-in loads of `/`, `/history`, `/account` and a share page,
/// 16 at a time, with two CPU-busy threads beside the server: every one
/// answers 200 with its data in place (no error shown), its policy naming
/// its scripts' nonce, and no server function runs without its request's
/// context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_stay_whole_under_load() {
    let app = spawn_app().await;
    let (c, share) = account_with_tasks(&app).await;
    let lost_before = LOST_CONTEXT.get();
    let burners = Burners::start(2);
    let problems = load_pages(&app, &c, &share, 2_000).await;
    drop(burners);
    assert!(
        problems.is_empty(),
        "{} of 2,000 loads went wrong: {:?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
    assert_eq!(LOST_CONTEXT.get() - lost_before, 0, "server functions ran without their request's context");
}

/// Pages answer while other apps start in the same process, as the API
/// tests start theirs: an app that listed its routes at start switched
/// resource loading off for the whole process meanwhile, and a page
/// rendered then on another thread never answered (see
/// `server::page_routes`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_answer_while_other_apps_start() {
    let app = spawn_app().await;
    let (c, share) = account_with_tasks(&app).await;
    let stop = Arc::new(AtomicBool::new(false));
    let starting = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut started = 0;
            while !stop.load(Ordering::Relaxed) {
                spawn_app().await;
                started += 1;
            }
            started
        })
    };
    let problems = load_pages(&app, &c, &share, 1_500).await;
    stop.store(true, Ordering::Relaxed);
    let started = starting.await.expect("apps");
    assert!(started >= 3, "only {started} apps started during the loads");
    assert!(
        problems.is_empty(),
        "{} of 1,500 loads went wrong while {started} apps started: {:?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
}

/// A crafted link cannot write the error text of a page: the address a
/// refused form post comes back to carries the error, and a page shows only
/// this site's sentence for the error's kind, never the address's words.
#[tokio::test]
async fn a_crafted_link_cannot_write_a_pages_error_text() {
    use base64::Engine;
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    let stranger = client();
    let forged = serde_json::json!({
        "kind": "unauthorized",
        "message": "Your account was suspended. Call +1-555-0100 to restore it."
    });
    let err = base64::engine::general_purpose::URL_SAFE.encode(forged.to_string());
    for (client, page, endpoint, ours) in [
        (&stranger, "/login", "sign_in", "Wrong email or password."),
        (&stranger, "/signup", "sign_up", "The account could not be created; please try again."),
        (&stranger, "/forgot", "request_password_reset", "The link could not be sent; please try again."),
        (&stranger, "/reset", "reset_password", "The password was not set; please try again."),
        (&c, "/", "generate_image", "Please sign in."),
        (&c, "/account", "change_password", "The password was not changed; please try again."),
    ] {
        let url = format!("{}{page}?__path=/api/{endpoint}&__err={err}", app.base);
        let body = client.get(url).send().await.unwrap().text().await.unwrap();
        assert!(!body.contains("+1-555") && !body.contains("suspended"), "{page} shows the link's words");
        assert!(body.contains(&format!(r#"class="form-error">{ours}</p>"#)), "{page}: {ours:?} missing");
    }
}

/// Every kind of answer carries the headers every response needs, and
/// caching fit for what it holds: pages and API answers (a person's data)
/// `no-store`, an owner's image kept a short while (a deleted one must not
/// linger), the share page revalidated; the simulator's answers too, and a
/// body over the limit is a 413 with the app's error, not a 500.
#[tokio::test]
async fn every_kind_of_answer_carries_the_security_headers() {
    let app = spawn_app_with(&[("DARKROOM_SIM_TOKEN", "r8_headers_test")]).await;
    let (c, share) = account_with_tasks(&app).await;
    let (_, history) = app.call(&c, "list_history", &[]).await;
    let completed = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["status"] == "completed")
        .expect("a completed task")
        .clone();
    let image = completed["image_url"].as_str().unwrap().to_owned();
    let prediction: String = {
        use sqlx::Row;
        sqlx::query("SELECT prediction_id FROM tasks WHERE id = $1")
            .bind(completed["id"].as_str().unwrap())
            .fetch_one(&app.state.db)
            .await
            .unwrap()
            .get("prediction_id")
    };
    let sim_json = reqwest::Client::new()
        .get(format!("{}/sim/v1/predictions/{prediction}", app.base))
        .bearer_auth("r8_headers_test")
        .send()
        .await
        .unwrap();
    let sim_file = sim_json.json::<serde_json::Value>().await.unwrap()["output"][0].as_str().unwrap().to_owned();
    let big = "x".repeat(70 * 1024);
    let balance = app.balance(&c).await;
    let stranger = client();
    let answers: Vec<(&str, reqwest::Response, u16, Option<&str>)> = vec![
        ("the sign-in page", stranger.get(format!("{}/login", app.base)).send().await.unwrap(), 200, Some("no-store")),
        ("the generator", c.get(format!("{}/", app.base)).send().await.unwrap(), 200, Some("no-store")),
        ("the account page", c.get(format!("{}/account", app.base)).send().await.unwrap(), 200, Some("no-store")),
        ("a 404 page", c.get(format!("{}/nothing-here", app.base)).send().await.unwrap(), 404, Some("no-store")),
        ("the share page", stranger.get(format!("{}{share}", app.base)).send().await.unwrap(), 200, Some("no-cache")),
        (
            "a revoked share page",
            stranger.get(format!("{}{share}x", app.base)).send().await.unwrap(),
            404,
            Some("no-store"),
        ),
        ("JSON", c.post(format!("{}/api/me", app.base)).send().await.unwrap(), 200, Some("no-store")),
        ("a JSON error", stranger.post(format!("{}/api/me", app.base)).send().await.unwrap(), 401, Some("no-store")),
        ("an image", c.get(format!("{}{image}", app.base)).send().await.unwrap(), 200, Some("private, max-age=600")),
        (
            "a body over the limit",
            c.post(format!("{}/api/generate_image", app.base)).form(&[("prompt", &big)]).send().await.unwrap(),
            413,
            Some("no-store"),
        ),
        (
            "the simulator's API",
            reqwest::Client::new()
                .get(format!("{}/sim/v1/predictions/{prediction}", app.base))
                .bearer_auth("r8_headers_test")
                .send()
                .await
                .unwrap(),
            200,
            None,
        ),
        ("a simulator file", reqwest::get(&sim_file).await.unwrap(), 200, None),
    ];
    for (what, r, status, cache) in answers {
        assert_eq!(r.status(), status, "{what}");
        let h = r.headers().clone();
        let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(header("x-frame-options"), "DENY", "{what}");
        assert_eq!(header("referrer-policy"), "strict-origin-when-cross-origin", "{what}");
        assert!(!header("cache-control").contains("immutable"), "{what}");
        if let Some(cache) = cache {
            assert_eq!(header("cache-control"), cache, "{what}");
        }
        if header("content-type").starts_with("text/html") {
            assert!(header("content-security-policy").contains("frame-ancestors 'none'"), "{what}");
        }
        assert!(h.get("strict-transport-security").is_none(), "{what}: no HSTS on plain http");
        if what == "a body over the limit" {
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["kind"], "too_large", "{body}");
            assert_eq!(body["message"], "the request is too large (at most 64 KiB)");
        }
    }
    assert_eq!(app.balance(&c).await, balance, "the refused body charged nothing");

    // With an https public URL, browsers are told to keep to https.
    let https =
        spawn_app_with(&[("DARKROOM_PUBLIC_URL", "https://darkroom.example"), ("DARKROOM_SIM_ON_PUBLIC_SITE", "true")])
            .await;
    let login = reqwest::Client::new().get(format!("{}/login", https.base)).send().await.unwrap();
    assert_eq!(login.headers()["strict-transport-security"], "max-age=31536000");
}
