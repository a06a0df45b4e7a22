//! Darkroom on the open internet, tried as an attacker would: invented HTTP
//! methods against the metrics, `/metrics` from afar, cross-site posts,
//! forged `X-Forwarded-For`, greedy generation loops, planted and revived
//! sessions, and the headers every page carries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::helpers::{
    TestApp, client, fresh_postgres_database, generate, no_redirects, poll_until_done, spawn_app, spawn_app_with,
    uuid_like,
};

/// POSTs a server function with extra request headers; (status, headers, JSON).
async fn call_with(
    app: &TestApp,
    c: &reqwest::Client,
    endpoint: &str,
    form: &[(&str, &str)],
    headers: &[(&'static str, &str)],
) -> (u16, HeaderMap, Value) {
    let mut request = c.post(format!("{}/api/{endpoint}", app.base)).form(form);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn metrics_text(app: &TestApp) -> String {
    reqwest::get(format!("{}/metrics", app.base)).await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn invented_methods_do_not_grow_the_metrics() {
    let app = spawn_app().await;
    let c = reqwest::Client::new();
    // Warm the label set with one junk request, so what follows can only
    // add series if each new method gets one.
    let junk = |n: usize| reqwest::Method::from_bytes(format!("X{n:04}{}", "Y".repeat(1000)).as_bytes()).unwrap();
    c.request(junk(0), format!("{}/healthz", app.base)).send().await.unwrap();
    metrics_text(&app).await;
    let before = metrics_text(&app).await;
    for n in 1..=300 {
        let r = c.request(junk(n), format!("{}/healthz", app.base)).send().await.unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    let after = metrics_text(&app).await;
    assert!(!after.contains("YYYY"), "a client's method became a label");
    assert!(after.contains(r#"method="other""#), "{after}");
    // Counters moved, no series was added.
    assert_eq!(after.lines().count(), before.lines().count(), "{after}");
    assert!(after.len() < before.len() + 200, "metrics grew from {} to {} bytes", before.len(), after.len());
}

#[tokio::test]
async fn metrics_answer_loopback_and_the_token_only() {
    let app =
        spawn_app_with(&[("DARKROOM_TRUSTED_PROXIES", "127.0.0.1"), ("DARKROOM_METRICS_TOKEN", "s3cret-metrics")])
            .await;
    let c = reqwest::Client::new();
    let get = |xff: Option<&'static str>, auth: Option<&'static str>| {
        let mut r = c.get(format!("{}/metrics", app.base));
        if let Some(xff) = xff {
            r = r.header("x-forwarded-for", xff);
        }
        if let Some(auth) = auth {
            r = r.header("authorization", auth);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(None, None).await, 200, "loopback");
    assert_eq!(get(Some("127.0.0.1"), None).await, 200, "loopback through the proxy");
    assert_eq!(get(Some("203.0.113.7"), None).await, 404, "a client beyond the proxy");
    assert_eq!(get(Some("203.0.113.7"), Some("Bearer wrong")).await, 404);
    assert_eq!(get(Some("203.0.113.7"), Some("Bearer s3cret-metrics")).await, 200);

    // Without a token, only loopback; a forged header from an untrusted
    // peer cannot pretend either way.
    let app = spawn_app_with(&[("DARKROOM_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let status = |xff: &'static str| {
        let r = c.get(format!("{}/metrics", app.base)).header("x-forwarded-for", xff);
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("203.0.113.7").await, 404);
    // A local proxy we were not told to trust makes every visitor look like
    // loopback: forwarded requests from it are not believed to be local.
    for trusted in ["10.0.0.1", ""] {
        let untrusted = spawn_app_with(&[("DARKROOM_TRUSTED_PROXIES", trusted)]).await;
        let r = c.get(format!("{}/metrics", untrusted.base)).header("x-forwarded-for", "127.0.0.1").send().await;
        assert_eq!(r.unwrap().status(), 404, "trusted proxies: {trusted:?}");
        let r = c.get(format!("{}/metrics", untrusted.base)).send().await;
        assert_eq!(r.unwrap().status(), 200, "a direct loopback client");
    }
}

#[tokio::test]
async fn cross_site_sign_in_is_refused_without_a_cookie() {
    let app = spawn_app().await;
    let attacker = client();
    let email = app.sign_up(&attacker).await;
    let victim = client();
    for headers in [
        &[("origin", "https://evil.example")][..],
        &[("origin", "null")],
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
    ] {
        let (status, response_headers, body) =
            call_with(&app, &victim, "sign_in", &[("email", &email), ("password", "correct horse")], headers).await;
        assert_eq!(status, 403, "{headers:?}: {body}");
        assert!(body.as_str().is_some_and(|b| b.contains("another site")), "{body}");
        assert!(response_headers.get("set-cookie").is_none(), "{headers:?} set a cookie");
        assert_eq!(app.call(&victim, "me", &[]).await.0, 401, "{headers:?} signed the visitor in");
    }
}

#[tokio::test]
async fn cross_site_generations_are_refused_and_same_origin_ones_pass() {
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    for headers in [&[("origin", "https://evil.example")][..], &[("sec-fetch-site", "same-site")]] {
        let (status, _, body) = call_with(&app, &c, "generate_image", &[("prompt", "a forged fox")], headers).await;
        assert_eq!(status, 403, "{headers:?}: {body}");
    }
    assert_eq!(app.balance(&c).await, 100);
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 0);

    // The site's own pages (scheme and host of the request) and clients
    // that send neither header pass.
    let own = app.base.clone();
    for headers in [&[("origin", own.as_str())][..], &[("sec-fetch-site", "same-origin")], &[]] {
        let (status, _, body) = call_with(&app, &c, "generate_image", &[("prompt", "a real fox")], headers).await;
        assert_eq!(status, 200, "{headers:?}: {body}");
    }
    assert_eq!(app.balance(&c).await, 70);
}

#[tokio::test]
async fn the_public_url_is_the_only_origin_when_set() {
    let app =
        spawn_app_with(&[("DARKROOM_PUBLIC_URL", "https://darkroom.example"), ("DARKROOM_SIM_ON_PUBLIC_SITE", "true")])
            .await;
    let c = client();
    let email = format!("{}@example.com", uuid_like());
    let form = [("email", email.as_str()), ("password", "correct horse")];
    let (status, _, _) = call_with(&app, &c, "sign_up", &form, &[("origin", &app.base)]).await;
    assert_eq!(status, 403, "the address it happens to be reached at is not the site");
    let (status, headers, body) =
        call_with(&app, &c, "sign_up", &form, &[("origin", "https://darkroom.example")]).await;
    assert_eq!(status, 200, "{body}");
    // An https public URL makes the cookie Secure.
    let cookie = headers.get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn webhooks_are_not_subject_to_the_cross_site_check() {
    let app = spawn_app().await;
    let r = reqwest::Client::new()
        .post(format!("{}/webhooks/replicate", app.base))
        .header("origin", "https://api.replicate.com")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 403, "a provider's POST is authenticated by its signature, not its origin");
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_sign_in_limit() {
    let app =
        spawn_app_with(&[("DARKROOM_TRUSTED_PROXIES", "127.0.0.1"), ("DARKROOM_AUTH_ATTEMPTS_PER_MINUTE", "3")]).await;
    let c = reqwest::Client::new();
    // A new address each time: the per-account limit is another test's.
    let attempt = |xff: &'static str| {
        let (app, c) = (&app, &c);
        async move {
            let email = format!("nobody-{}@example.com", crate::helpers::uuid_like());
            let wrong = [("email", email.as_str()), ("password", "wrong horse")];
            call_with(app, c, "sign_in", &wrong, &[("x-forwarded-for", xff)]).await
        }
    };
    for _ in 0..3 {
        assert_eq!(attempt("198.51.100.1").await.0, 401);
    }
    let (status, _, body) = attempt("198.51.100.1").await;
    assert_eq!(status, 429, "{body}");
    // Another client behind the same proxy is not locked out.
    assert_eq!(attempt("198.51.100.2").await.0, 401);
    // A client's own (forged) entries left of the proxy's change nothing.
    assert_eq!(attempt("203.0.113.9, 198.51.100.1").await.0, 429);
    // IPv6: one /64 is one client.
    for _ in 0..3 {
        assert_eq!(attempt("2001:db8:1:2::1").await.0, 401);
    }
    assert_eq!(attempt("2001:db8:1:2::ffff").await.0, 429);
    assert_eq!(attempt("2001:db8:1:3::1").await.0, 401);
}

/// Free credits cannot be farmed: sign-ups from one network (an IPv6
/// client's /64) are a few an hour, the site's are capped in total, and
/// one mailbox gets the sign-up credits once, `+tags` or not.
#[tokio::test]
async fn sign_ups_from_one_network_are_limited_and_a_mailbox_is_granted_once() {
    let app = spawn_app_with(&[
        ("DARKROOM_TRUSTED_PROXIES", "127.0.0.1"),
        ("DARKROOM_SIGNUPS_PER_ADDRESS_PER_HOUR", "5"),
        ("DARKROOM_SIGNUPS_PER_HOUR", "100000"),
    ])
    .await;
    let sign_up = |email: String, xff: String| {
        let app = &app;
        async move {
            let form = [("email", email.as_str()), ("password", "correct horse")];
            let (status, _, body) =
                call_with(app, &reqwest::Client::new(), "sign_up", &form, &[("x-forwarded-for", &xff)]).await;
            (status, body)
        }
    };
    let mut statuses = Vec::new();
    for n in 0..50 {
        statuses.push(sign_up(format!("farm{n}@example.com"), format!("2001:db8:7:7::{n:x}")).await.0);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 5);
    let (status, body) = sign_up("neighbour@example.com".into(), "2001:db8:7:8::1".into()).await;
    assert_eq!(status, 200, "another /64 is another client: {body}");

    // One mailbox, one grant: +tags, case and Gmail's dots change nothing.
    let mut granted = Vec::new();
    for (n, email) in
        ["ada@example.com", "ada+1@example.com", "ADA+free@example.com", "a.da@gmail.com", "ada@gmail.com"]
            .into_iter()
            .enumerate()
    {
        let (status, body) = sign_up(email.into(), format!("198.51.100.{n}")).await;
        assert_eq!(status, 200, "{email}: {body}");
        granted.push(body["credits"].as_i64().expect("credits"));
    }
    assert_eq!(granted, [100, 0, 0, 100, 0]);
    let total =
        app.count("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM credit_ledger WHERE kind = 'grant'").await;
    assert_eq!(total, 100 * 8, "the 5 farms, the neighbour, and ada twice (two mailboxes)");
}

#[tokio::test]
async fn the_sites_sign_ups_are_capped_in_total() {
    let app = spawn_app_with(&[("DARKROOM_TRUSTED_PROXIES", "127.0.0.1"), ("DARKROOM_SIGNUPS_PER_HOUR", "3")]).await;
    let mut statuses = Vec::new();
    for n in 0..4 {
        let form = [("email", format!("cap{n}@example.com")), ("password", "correct horse".into())];
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let xff = format!("198.51.100.{n}");
        statuses.push(call_with(&app, &reqwest::Client::new(), "sign_up", &form, &[("x-forwarded-for", &xff)]).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 429], "every address is new, the site's hour is full");
}

#[tokio::test]
async fn an_untrusted_peer_cannot_choose_its_address() {
    let app = spawn_app_with(&[("DARKROOM_AUTH_ATTEMPTS_PER_MINUTE", "3")]).await;
    let c = reqwest::Client::new();
    let wrong = [("email", "nobody@example.com"), ("password", "wrong horse")];
    let mut statuses = Vec::new();
    for n in 0..5 {
        let xff = format!("198.51.100.{n}");
        statuses.push(call_with(&app, &c, "sign_in", &wrong, &[("x-forwarded-for", &xff)]).await.0);
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
}

/// A prompt the simulator takes a minute over.
const SLOW: &str = "a very slow fox #slow";

#[tokio::test]
async fn generations_running_at_once_are_capped() {
    let app = spawn_app_with(&[("DARKROOM_MAX_ACTIVE_TASKS", "2")]).await;
    let c = client();
    app.sign_up(&c).await;
    for _ in 0..2 {
        assert_eq!(app.call(&c, "generate_image", &[("prompt", SLOW)]).await.0, 200);
    }
    let (status, body) = app.call(&c, "generate_image", &[("prompt", SLOW)]).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["message"], "You have 2 generations running; wait for one to finish.");
    assert_eq!(app.balance(&c).await, 80, "the refused one charged nothing");
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 2, "and created no task");

    // Another person is not affected.
    let other = client();
    app.sign_up(&other).await;
    assert_eq!(app.call(&other, "generate_image", &[("prompt", SLOW)]).await.0, 200);
}

#[tokio::test]
async fn the_cap_holds_for_concurrent_requests() {
    let app = spawn_app_with(&[("DARKROOM_MAX_ACTIVE_TASKS", "3")]).await;
    let c = client();
    app.sign_up(&c).await;
    let statuses = futures::future::join_all(
        (0..10).map(|_| async { app.call(&c, "generate_image", &[("prompt", SLOW)]).await.0 }),
    )
    .await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 7, "{statuses:?}");
    assert_eq!(app.balance(&c).await, 70);
}

#[tokio::test]
async fn generations_per_minute_are_capped_even_when_they_fail() {
    let app = spawn_app_with(&[("DARKROOM_GENERATIONS_PER_MINUTE", "3"), ("DARKROOM_SIM_DURATION_MS", "50")]).await;
    let c = client();
    app.sign_up(&c).await;
    for _ in 0..3 {
        let (status, body) = app.call(&c, "generate_image", &[("prompt", "a failing fox #fail")]).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = app.call(&c, "generate_image", &[("prompt", "a fourth fox")]).await;
    assert_eq!(status, 429, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("You have started 3 generations in the last minute; try again in "), "{message}");
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 3);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: make test runs it with DARKROOM_TEST_POSTGRES"]
async fn the_cap_holds_across_two_instances_on_postgres() {
    let database_url = fresh_postgres_database().await.expect("DARKROOM_TEST_POSTGRES names a PostgreSQL server");
    let settings = |url: &str| {
        vec![
            ("DATABASE_URL", url.to_owned()),
            ("DARKROOM_MAX_ACTIVE_TASKS", "3".to_owned()),
            ("DARKROOM_SIM_SECRET", "shared-secret-for-both".to_owned()),
        ]
    };
    let (a, b) = {
        let sa = settings(&database_url);
        let sb = settings(&database_url);
        let sa: Vec<(&str, &str)> = sa.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let sb: Vec<(&str, &str)> = sb.iter().map(|(k, v)| (*k, v.as_str())).collect();
        tokio::join!(spawn_app_with(&sa), spawn_app_with(&sb))
    };
    let c = client();
    a.sign_up(&c).await;
    let statuses = futures::future::join_all((0..12).map(|n| {
        let app = if n % 2 == 0 { &a } else { &b };
        let c = &c;
        async move { app.call(c, "generate_image", &[("prompt", SLOW)]).await.0 }
    }))
    .await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 9, "{statuses:?}");
    assert_eq!(b.balance(&c).await, 70);
}

/// The value of the session cookie a response set.
fn session_cookie(headers: &HeaderMap) -> String {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("darkroom_session="))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

/// A client whose cookie jar holds `session` for the app.
fn client_with_session(app: &TestApp, session: &str) -> reqwest::Client {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    jar.add_cookie_str(&format!("darkroom_session={session}; Path=/"), &app.base.parse().unwrap());
    reqwest::Client::builder().cookie_provider(jar).build().unwrap()
}

#[tokio::test]
async fn a_planted_session_id_is_not_the_victims_after_sign_in() {
    let app = spawn_app().await;
    // The attacker signs in and learns their own session id.
    let plain = reqwest::Client::new();
    let attacker_email = format!("{}@example.com", uuid_like());
    let (status, headers, _) =
        call_with(&app, &plain, "sign_up", &[("email", &attacker_email), ("password", "correct horse")], &[]).await;
    assert_eq!(status, 200);
    let planted = session_cookie(&headers);
    // The victim has an account, and a browser with the attacker's id in it.
    let victim_email = app.sign_up(&client()).await;
    let victim = client_with_session(&app, &planted);
    let (status, _) = app.call(&victim, "sign_in", &[("email", &victim_email), ("password", "correct horse")]).await;
    assert_eq!(status, 200);
    assert_eq!(app.call(&victim, "me", &[]).await.1["email"], victim_email.as_str());
    // The attacker's copy of the id is worth nothing now.
    let attacker = client_with_session(&app, &planted);
    let (status, me) = app.call(&attacker, "me", &[]).await;
    assert_eq!(status, 401, "the planted id became the victim's session: {me}");
}

#[tokio::test]
async fn a_late_save_does_not_bring_a_signed_out_session_back() {
    use axum_login::tower_sessions::SessionStore;
    use axum_login::tower_sessions::session::Id;

    let app = spawn_app().await;
    let plain = reqwest::Client::new();
    let email = format!("{}@example.com", uuid_like());
    let (_, headers, _) =
        call_with(&app, &plain, "sign_up", &[("email", &email), ("password", "correct horse")], &[]).await;
    let id_text = session_cookie(&headers);
    let id: Id = id_text.parse().unwrap();
    let store = darkroom::server::sessions::Sessions::new(app.state.db.clone());
    // A request loaded the session (a poll, about to refresh it)…
    let record = store.load(&id).await.unwrap().expect("the session");
    // …meanwhile the person signed out in another tab…
    let signed_in = client_with_session(&app, &id_text);
    assert_eq!(app.call(&signed_in, "sign_out", &[]).await.0, 200);
    // …and then the first request's save lands.
    store.save(&record).await.unwrap();
    assert!(store.load(&id).await.unwrap().is_none());
    assert_eq!(app.call(&client_with_session(&app, &id_text), "me", &[]).await.0, 401);
}

#[tokio::test]
async fn a_finalize_waiting_for_an_upload_slot_holds_no_lease() {
    let clock = crate::helpers::manual_clock();
    let app = crate::helpers::spawn_app_on(&[("DARKROOM_SIM_DURATION_MS", "100")], clock.clone()).await;
    let c = client();
    app.sign_up(&c).await;
    // Every upload slot of this instance is busy (from before the server's
    // own first check, which may see the prediction done and wait too).
    let mut held = Vec::new();
    while let Some(Ok(permit)) = futures::FutureExt::now_or_never(app.state.uploads.admit()) {
        held.push(permit);
    }
    assert!(!held.is_empty());
    let (status, body) = app.call(&c, "generate_image", &[("prompt", "a queued fox")]).await;
    assert_eq!(status, 200, "{body}");
    let id = body["task_id"].as_str().unwrap().to_owned();
    let next_check = || async {
        use sqlx::Row;
        sqlx::query("SELECT next_check_at FROM tasks WHERE id = $1")
            .bind(&id)
            .fetch_one(&app.state.db)
            .await
            .unwrap()
            .get::<i64, _>("next_check_at")
    };
    // The prediction is done; the server's own first check (due at 100 ms)
    // finds it so, claims the next 100 ms and waits for a slot.
    clock.advance(Duration::from_millis(400));
    let claimed = clock.now_ms() + 100;
    let start = Instant::now();
    while next_check().await != claimed {
        assert!(start.elapsed() < Duration::from_secs(10), "the first check never claimed the task");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A poll once that claim has run out: it claims the task in turn, and
    // waits for a slot too.
    clock.advance(Duration::from_millis(100));
    let poll = {
        let (base, c, id) = (app.base.clone(), c.clone(), id.clone());
        tokio::spawn(async move {
            c.post(format!("{base}/api/check_image_status")).form(&[("task_id", id)]).send().await.unwrap().status()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "the poll waits for a slot");
    // The claim it made is the ordinary, short one (100 ms here), not a
    // two-minute download lease taken before it could download.
    let next_check: i64 = {
        use sqlx::Row;
        sqlx::query("SELECT next_check_at FROM tasks WHERE id = $1")
            .bind(&id)
            .fetch_one(&app.state.db)
            .await
            .unwrap()
            .get("next_check_at")
    };
    assert_eq!(
        next_check,
        clock.now_ms() + 100,
        "a lease of {} ms was taken while waiting",
        next_check - clock.now_ms()
    );
    drop(held);

    assert_eq!(poll.await.unwrap(), 200);
    let start = Instant::now();
    loop {
        let (_, view) = app.call(&c, "check_image_status", &[("task_id", &id)]).await;
        if view["status"] == "completed" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.state.metrics.object_writes(), 1);
}

/// Deleting a generation does not give its place in the per-minute cap
/// back: the cap counts charges, which deletion leaves in the ledger. A
/// generate-then-delete loop is refused at the cap, and no more
/// predictions were started than the cap allows.
#[tokio::test]
async fn deleting_does_not_reopen_the_per_minute_cap() {
    let app = spawn_app_with(&[("DARKROOM_GENERATIONS_PER_MINUTE", "5")]).await;
    let c = client();
    app.sign_up(&c).await;
    let mut refused = None;
    for round in 1..=8 {
        let (status, body) = app.call(&c, "generate_image", &[("prompt", SLOW)]).await;
        if status == 429 {
            refused = Some((round, body["message"].as_str().unwrap_or_default().to_owned()));
            break;
        }
        assert_eq!(status, 200, "{body}");
        let id = body["task_id"].as_str().unwrap().to_owned();
        let (status, body) = app.call(&c, "delete_image", &[("task_id", &id)]).await;
        assert_eq!(status, 200, "{body}");
    }
    let (round, message) = refused.expect("the loop is refused at the cap");
    assert_eq!(round, 6, "refused at the 6th generation");
    assert!(message.starts_with("You have started 5 generations in the last minute"), "{message}");
    assert_eq!(app.count("SELECT COUNT(*) FROM credit_ledger WHERE kind = 'charge'").await, 5);
    assert_eq!(app.balance(&c).await, 100, "each deleted generation was refunded");
}

/// Cancels and deletions are limited per person, whatever they name.
#[tokio::test]
async fn cancels_and_deletions_are_limited_per_person() {
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    let unknown = "00000000-0000-4000-8000-000000000000";
    for n in 0..darkroom::server::state::CANCELS_AND_DELETES_PER_MINUTE {
        let endpoint = if n % 2 == 0 { "cancel_image" } else { "delete_image" };
        assert_eq!(app.call(&c, endpoint, &[("task_id", unknown)]).await.0, 404);
    }
    for endpoint in ["cancel_image", "delete_image"] {
        let (status, body) = app.call(&c, endpoint, &[("task_id", unknown)]).await;
        assert_eq!(status, 429, "{body}");
        assert!(body["message"].as_str().unwrap().starts_with("too many cancels and deletions"), "{body}");
    }
    // Another person is not affected.
    let other = client();
    app.sign_up(&other).await;
    assert_eq!(app.call(&other, "cancel_image", &[("task_id", unknown)]).await.0, 404);
}

/// A password change issues a new session id: a stolen copy of the old
/// cookie is refused afterwards, while the browser that changed it stays
/// signed in on the new one.
#[tokio::test]
async fn a_password_change_issues_a_new_session_id() {
    let app = spawn_app().await;
    let plain = reqwest::Client::new();
    let email = format!("{}@example.com", uuid_like());
    let (status, headers, _) =
        call_with(&app, &plain, "sign_up", &[("email", &email), ("password", "correct horse")], &[]).await;
    assert_eq!(status, 200);
    let old = session_cookie(&headers);
    let browser = client_with_session(&app, &old);
    let stolen = client_with_session(&app, &old);
    let (status, headers, body) = call_with(
        &app,
        &browser,
        "change_password",
        &[("current_password", "correct horse"), ("new_password", "battery staple")],
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let new = session_cookie(&headers);
    assert_ne!(new, old, "a new session id");
    assert_eq!(app.call(&stolen, "me", &[]).await.0, 401, "the old cookie is refused");
    assert_eq!(app.call(&client_with_session(&app, &new), "me", &[]).await.0, 200, "the new one works");
}

/// "Sign out everywhere" ends every session of the account, the asking one
/// too, and a form post from the account page goes on to sign in.
#[tokio::test]
async fn signing_out_everywhere_ends_every_session() {
    let app = spawn_app().await;
    let (phone, laptop) = (client(), no_redirects());
    let email = app.sign_up(&phone).await;
    let (status, _) = app.call(&laptop, "sign_in", &[("email", &email), ("password", "correct horse")]).await;
    assert_eq!(status, 200);
    let response = app.page_post(&laptop, "sign_out_everywhere", "/account", &[]).send().await.unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(response.headers()["location"], "/login");
    assert_eq!(app.call(&laptop, "me", &[]).await.0, 401);
    assert_eq!(app.call(&phone, "me", &[]).await.0, 401);
    // The password still signs in.
    assert_eq!(app.call(&phone, "sign_in", &[("email", &email), ("password", "correct horse")]).await.0, 200);
}

/// A request that carries the session cookie twice (a sibling subdomain
/// planted one for the whole domain) is refused, whichever would win.
#[tokio::test]
async fn a_request_with_two_session_cookies_is_refused() {
    let app = spawn_app().await;
    let plain = reqwest::Client::new();
    let email = format!("{}@example.com", uuid_like());
    let (status, headers, _) =
        call_with(&app, &plain, "sign_up", &[("email", &email), ("password", "correct horse")], &[]).await;
    assert_eq!(status, 200);
    let mine = session_cookie(&headers);
    let (_, headers, _) = call_with(
        &app,
        &plain,
        "sign_up",
        &[("email", &format!("{}@example.com", uuid_like())), ("password", "correct horse")],
        &[],
    )
    .await;
    let planted = session_cookie(&headers);
    let both = format!("darkroom_session={planted}; darkroom_session={mine}");
    let (status, _, body) = call_with(&app, &plain, "me", &[], &[("cookie", &both)]).await;
    assert_eq!(status, 400, "{body}");
    let page = plain.get(format!("{}/", app.base)).header("cookie", &both).send().await.unwrap();
    assert_eq!(page.status(), 400);
    // One is fine.
    let one = format!("darkroom_session={mine}");
    assert_eq!(call_with(&app, &plain, "me", &[], &[("cookie", &one)]).await.0, 200);
}

/// On an https site the session cookie is `__Host-` prefixed: Secure,
/// `Path=/` and no `Domain`, so no sibling subdomain can set one.
#[tokio::test]
async fn on_https_the_session_cookie_is_host_only() {
    let app =
        spawn_app_with(&[("DARKROOM_PUBLIC_URL", "https://darkroom.example"), ("DARKROOM_SIM_ON_PUBLIC_SITE", "true")])
            .await;
    let plain = reqwest::Client::new();
    let email = format!("{}@example.com", uuid_like());
    let (status, headers, body) =
        call_with(&app, &plain, "sign_up", &[("email", &email), ("password", "correct horse")], &[]).await;
    assert_eq!(status, 200, "{body}");
    let cookie = headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("darkroom_session="))
        .expect("a session cookie")
        .to_owned();
    assert!(cookie.starts_with("__Host-darkroom_session="), "{cookie}");
    assert!(cookie.contains("Secure") && cookie.contains("Path=/") && !cookie.contains("Domain"), "{cookie}");
}

/// Without a public URL the server answers only at addresses and
/// `localhost`: a page, the share card and `/metrics` addressed to a name
/// nobody configured (a rebinding page on another site) are refused, and
/// with a public URL, only its host is a name the server answers to.
#[tokio::test]
async fn requests_to_an_unknown_host_are_refused() {
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    let id = generate(&app, &c, "a hosted fox").await;
    poll_until_done(&app, &c, &id).await;
    let (_, shared) = app.call(&c, "share_image", &[("task_id", &id)]).await;
    let share = shared["url"].as_str().unwrap().to_owned();
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    for path in ["/login", share.as_str(), "/metrics", "/healthz"] {
        let evil = reqwest::Client::new()
            .get(format!("{}{path}", app.base))
            .header("host", format!("evil.example:{port}"))
            .send()
            .await
            .unwrap();
        assert_eq!(evil.status(), 400, "{path}");
        let body = evil.text().await.unwrap();
        assert!(!body.contains("evil.example"), "{path}: {body}");
        let local = reqwest::Client::new()
            .get(format!("{}{path}", app.base))
            .header("host", format!("localhost:{port}"))
            .send()
            .await
            .unwrap();
        assert_eq!(local.status(), 200, "{path}");
    }

    let public =
        spawn_app_with(&[("DARKROOM_PUBLIC_URL", "https://darkroom.example"), ("DARKROOM_SIM_ON_PUBLIC_SITE", "true")])
            .await;
    let host =
        |h: &str| reqwest::Client::new().get(format!("{}/login", public.base)).header("host", h.to_owned()).send();
    assert_eq!(host("darkroom.example").await.unwrap().status(), 200);
    assert_eq!(host("evil.example").await.unwrap().status(), 400);
}
