//! Provider webhooks against the built-in simulator: with checks rare and
//! the reconciler off, tasks finish from their signed events alone; lost,
//! late and duplicated events end right; forged ones change nothing.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{client, generate, poll_until_done_within as wait_done, spawn_app_with};

const SIM_TOKEN: &str = "r8_webhook_test_token";

fn rare_checks(check_ms: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("DARKROOM_PUBLIC_URL", "self"),
        ("DARKROOM_PROVIDER_CHECK_MS", check_ms),
        ("DARKROOM_RECONCILE_INTERVAL_SECS", "86400"),
        ("DARKROOM_SIM_DURATION_MS", "400"),
    ]
}

#[tokio::test]
async fn tasks_complete_from_their_events_with_no_provider_gets() {
    let app = spawn_app_with(&rare_checks("600000")).await;
    let c = client();
    app.sign_up(&c).await;
    let ids = [generate(&app, &c, "a hooked fox").await, generate(&app, &c, "a hooked hare #hook-dup").await];
    for id in &ids {
        assert_eq!(wait_done(&app, &c, id, Duration::from_secs(15)).await["status"], "completed");
        let image = c.get(format!("{}/images/{id}", app.base)).send().await.unwrap();
        assert_eq!(image.status(), 200);
    }
    assert_eq!(app.state.metrics.provider_gets(), 0, "events replaced every provider GET");
    assert!(app.state.metrics.webhooks() >= 4, "{}", app.state.metrics.webhooks());
    // The duplicate (and the stale event after it) changed nothing.
    assert_eq!(app.state.metrics.object_writes(), 2);
    assert_eq!(app.state.metrics.completions(), 2);
    assert_eq!(app.balance(&c).await, 80);
}

#[tokio::test]
async fn a_failed_prediction_is_refunded_from_its_event() {
    let app = spawn_app_with(&rare_checks("600000")).await;
    let c = client();
    app.sign_up(&c).await;
    let id = generate(&app, &c, "a doomed fox #fail").await;
    let view = wait_done(&app, &c, &id, Duration::from_secs(15)).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["refunded"], true);
    assert_eq!(app.balance(&c).await, 100);
    assert_eq!(app.count("SELECT COUNT(*) FROM credit_ledger WHERE kind = 'refund'").await, 1);
    assert_eq!(app.state.metrics.provider_gets(), 0);
}

/// A lost `completed` event and one that comes 10 s late: polls (checks
/// every second) finish both, and the late event, when it comes, changes
/// nothing. On a clock the test moves, so the late event is 10 s late by
/// the app's and the simulator's clock, not the test's.
#[tokio::test]
async fn lost_and_late_events_leave_polls_as_the_safety_net() {
    let clock = crate::helpers::manual_clock();
    let app = crate::helpers::spawn_app_on(&rare_checks("1000"), clock.clone()).await;
    let c = client();
    app.sign_up(&c).await;
    let lost = generate(&app, &c, "a lost fox #hook-lost").await;
    let late = generate(&app, &c, "a late fox #hook-late").await;
    // The `start` event (no progress yet) defers checks 4 s: after that, a
    // poll checks and finds each done.
    for _ in 0..45 {
        clock.advance(Duration::from_millis(100));
        for id in [&lost, &late] {
            assert_eq!(app.call(&c, "check_image_status", &[("task_id", id)]).await.0, 200);
        }
    }
    for id in [&lost, &late] {
        let (_, view) = app.call(&c, "check_image_status", &[("task_id", id)]).await;
        assert_eq!(view["status"], "completed", "{view}");
    }
    assert!(app.state.metrics.provider_gets() >= 2);
    // The late completed event (10 s after) arrives and changes nothing.
    let writes = app.state.metrics.object_writes();
    let received = app.state.metrics.webhooks();
    clock.advance(Duration::from_secs(10));
    let start = Instant::now();
    while app.state.metrics.webhooks() == received {
        assert!(start.elapsed() < Duration::from_secs(15), "the late event never came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.state.metrics.object_writes(), writes);
    assert_eq!(app.state.metrics.completions(), 2);
    assert_eq!(app.balance(&c).await, 80);
}

#[tokio::test]
async fn forged_stale_unsigned_and_malformed_events_change_nothing() {
    use darkroom::standard_webhooks::{Secret, sign};

    let mut settings = rare_checks("600000");
    settings.push(("DARKROOM_SIM_TOKEN", SIM_TOKEN));
    let app = spawn_app_with(&settings).await;
    let c = client();
    app.sign_up(&c).await;
    let id = generate(&app, &c, "a guarded fox #hook-lost #slow").await;
    let prediction: String = {
        use sqlx::Row;
        sqlx::query("SELECT prediction_id FROM tasks WHERE id = $1")
            .bind(&id)
            .fetch_one(&app.state.db)
            .await
            .unwrap()
            .get("prediction_id")
    };
    let body = serde_json::json!({
        "id": prediction, "status": "failed", "error": "forged", "output": null, "logs": ""
    })
    .to_string();
    let key = reqwest::Client::new()
        .get(format!("{}/sim/v1/webhooks/default/secret", app.base))
        .bearer_auth(SIM_TOKEN)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = Secret::parse(&key).unwrap();
    let now = (darkroom::server::clock::Clock::system().now_ms() / 1000) as u64;
    let wrong = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let post = |headers: Vec<(&'static str, String)>, body: String| {
        let mut r = reqwest::Client::new().post(format!("{}/webhooks/replicate", app.base)).body(body);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    // Each message its own id, as the provider sends them.
    let next_id = std::sync::atomic::AtomicU32::new(0);
    let signed = |secret: &Secret, ts: u64, body: &str| {
        let id = format!("msg_test_{}", next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        vec![
            ("webhook-id", id.clone()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sign(secret, &id, ts, body.as_bytes())),
        ]
    };
    assert_eq!(post(signed(&wrong, now, &body), body.clone()).await, 401, "forged");
    assert_eq!(post(signed(&secret, now - 3600, &body), body.clone()).await, 401, "stale");
    assert_eq!(post(signed(&secret, now + 3600, &body), body.clone()).await, 401, "from the future");
    assert_eq!(post(vec![], body.clone()).await, 401, "unsigned");
    let mut empty = signed(&secret, now, &body);
    empty[2].1 = "v1,".to_owned();
    assert_eq!(post(empty, body.clone()).await, 401, "empty signature");
    let mut short = signed(&secret, now, &body);
    short[2].1 = "v1,AAAA".to_owned();
    assert_eq!(post(short, body.clone()).await, 401, "wrong length");
    // Signed, but the body is tampered with after signing.
    let tampered = body.replace("forged", "forgeD");
    assert_eq!(post(signed(&secret, now, &body), tampered).await, 401, "tampered");
    assert_eq!(post(signed(&secret, now, "not json"), "not json".to_owned()).await, 400, "malformed");
    let unknown = body.replace(&prediction, "someoneelsesprediction");
    assert_eq!(post(signed(&secret, now, &unknown), unknown).await, 200, "unknown prediction: ignored");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, view) = app.call(&c, "check_image_status", &[("task_id", &id)]).await;
    assert_eq!(view["status"], "processing", "{view}");
    assert_eq!(app.balance(&c).await, 90);

    // The genuine article does move it.
    assert_eq!(post(signed(&secret, now, &body), body.clone()).await, 200);
    let view = wait_done(&app, &c, &id, Duration::from_secs(5)).await;
    assert_eq!(view["status"], "failed");
    assert_eq!(app.balance(&c).await, 100);
}

/// The simulator's webhook signing key, as the provider's API gives it.
async fn signing_key(app: &crate::helpers::TestApp) -> darkroom::standard_webhooks::Secret {
    let key = reqwest::Client::new()
        .get(format!("{}/sim/v1/webhooks/default/secret", app.base))
        .bearer_auth(SIM_TOKEN)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    darkroom::standard_webhooks::Secret::parse(&key).unwrap()
}

/// Posts `body` signed with `secret` as message `id`; the status.
async fn deliver(
    app: &crate::helpers::TestApp,
    secret: &darkroom::standard_webhooks::Secret,
    id: &str,
    body: &str,
) -> u16 {
    let ts = (darkroom::server::clock::Clock::system().now_ms() / 1000) as u64;
    reqwest::Client::new()
        .post(format!("{}/webhooks/replicate", app.base))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", darkroom::standard_webhooks::sign(secret, id, ts, body.as_bytes()))
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A task's (prediction id, next check, creation) as stored.
async fn check_plan(app: &crate::helpers::TestApp, task: &str) -> (String, i64, i64) {
    use sqlx::Row;
    let row = sqlx::query("SELECT prediction_id, next_check_at, created_at FROM tasks WHERE id = $1")
        .bind(task)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    (row.get("prediction_id"), row.get("next_check_at"), row.get("created_at"))
}

/// A `logs` event of a prediction that started `ago` ms before now and is
/// at `percent`.
fn progress_event(prediction: &str, percent: u8, ago: i64) -> String {
    let started =
        std::time::UNIX_EPOCH + Duration::from_millis((darkroom::server::clock::Clock::system().now_ms() - ago) as u64);
    serde_json::json!({
        "id": prediction, "status": "processing", "output": null,
        "started_at": humantime::format_rfc3339_millis(started).to_string(),
        "logs": format!("{percent}%|█ | {percent}/100"),
    })
    .to_string()
}

/// A captured event replayed (same id, same body, still within the
/// signature's tolerance) is dropped: it does not defer the next provider
/// check again. Distinct events defer checks only up to a minute after the
/// last check (here, the task's creation): events alone never keep the
/// provider from being asked.
#[tokio::test]
async fn replayed_events_are_dropped_and_events_defer_checks_only_so_far() {
    let mut settings = rare_checks("1000");
    settings.push(("DARKROOM_SIM_TOKEN", SIM_TOKEN));
    let app = spawn_app_with(&settings).await;
    let c = client();
    app.sign_up(&c).await;
    let id = generate(&app, &c, "a patient fox #hook-lost #slow").await;
    let secret = signing_key(&app).await;
    let (prediction, _, created) = check_plan(&app, &id).await;
    // The simulator's own `start` event (no progress: the check moves a
    // few intervals on) is applied in the background; it settles first,
    // or it could land after this test's events and move the check.
    applied_until(|| {
        let (app, id) = (&app, &id);
        async move { check_plan(app, id).await.1 > created + 2_000 }
    })
    .await;

    // 1 % after a second: the end is far, so the check moves a minute on.
    let event = progress_event(&prediction, 1, 1_000);
    assert_eq!(deliver(&app, &secret, "msg_capture", &event).await, 200);
    let progress_is = |n: i64| {
        let (app, id) = (&app, &id);
        async move { app.count(&format!("SELECT COALESCE(progress, -1) FROM tasks WHERE id = '{id}'")).await == n }
    };
    // The progress is written before the deferral: wait for the deferral.
    applied_until(|| {
        let (app, id) = (&app, &id);
        async move { check_plan(app, id).await.1 > created + 30_000 }
    })
    .await;
    let (_, deferred, _) = check_plan(&app, &id).await;
    assert!(deferred > created + 30_000, "the event deferred the check: {}", deferred - created);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(deliver(&app, &secret, "msg_capture", &event).await, 200);
    }
    // Each replay is found already recorded (counted as a duplicate, so
    // not applied) by the batch that takes it, after the answer.
    applied_until(|| async { app.state.metrics.webhook_duplicates() >= 3 }).await;
    assert_eq!(app.state.metrics.webhook_duplicates(), 3);
    let (_, after_replays, _) = check_plan(&app, &id).await;
    assert_eq!(after_replays, deferred, "replays moved the check");

    // Fresh events (each its own id) later on: never past a minute after
    // the creation, the last time anything was settled with the provider.
    for n in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let fresh = progress_event(&prediction, 2 + n, 2_000);
        assert_eq!(deliver(&app, &secret, &format!("msg_fresh_{n}"), &fresh).await, 200);
    }
    applied_until(|| progress_is(4)).await;
    let (_, bounded, _) = check_plan(&app, &id).await;
    assert!(bounded <= created + 60_000, "checks deferred {} ms past the creation", bounded - created);
}

/// Waits (up to 10 s) until `done`: an event is applied after its answer.
async fn applied_until<F: Future<Output = bool>>(done: impl Fn() -> F) {
    let started = std::time::Instant::now();
    while !done().await {
        assert!(started.elapsed() < Duration::from_secs(10), "the events were not applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The route reads at most an event's worth from anyone (an oversized body
/// is refused, not read and checked), and an address that keeps sending
/// refused events is refused unread for a minute.
#[tokio::test]
async fn the_route_bounds_what_a_stranger_can_make_it_read() {
    use darkroom::server::engine::webhook::{MAX_EVENT_BYTES, REFUSALS_PER_MINUTE};
    let app = spawn_app_with(&rare_checks("600000")).await;
    let ts = (darkroom::server::clock::Clock::system().now_ms() / 1000) as u64;
    let forged = |body: Vec<u8>| {
        reqwest::Client::new()
            .post(format!("{}/webhooks/replicate", app.base))
            .header("webhook-id", "msg_stranger")
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", "v1,bm90IGEgc2lnbmF0dXJlIGF0IGFsbCwgbm90IGF0IGFsbCE=")
            .body(body)
            .send()
    };
    let big = forged(vec![b'x'; MAX_EVENT_BYTES + 1]).await.unwrap();
    assert_eq!(big.status(), 413, "an oversized event is not read");
    // Refusals past the limit bar the address.
    for _ in 0..REFUSALS_PER_MINUTE {
        assert_eq!(forged(b"{}".to_vec()).await.unwrap().status(), 401);
    }
    let barred = forged(b"{}".to_vec()).await.unwrap();
    assert_eq!(barred.status(), 429);
    assert_eq!(barred.headers()["retry-after"], "60");
}

/// Webhooks first, at the default check interval: twenty tasks, each
/// polled every 300 ms by its page until done, make almost no provider
/// GETs — the events defer every check to the expected end. A lost
/// `completed` is found by the check at the expected end: within 1 s plus
/// a check interval of it (the bound `schedule::after_event` sets).
#[tokio::test]
async fn with_events_flowing_polling_pages_make_almost_no_provider_gets() {
    let clock = crate::helpers::manual_clock();
    let settings = [
        ("DARKROOM_PUBLIC_URL", "self"),
        ("DARKROOM_PROVIDER_CHECK_MS", "2000"),
        ("DARKROOM_SIM_DURATION_MS", "3000"),
        ("DARKROOM_SIGNUP_CREDITS", "200"),
    ];
    let app = crate::helpers::spawn_app_on(&settings, clock.clone()).await;
    let c = client();
    app.sign_up(&c).await;
    let started = clock.now_ms();
    let mut ids = Vec::new();
    for n in 0..19 {
        ids.push(generate(&app, &c, &format!("a hooked heron {n}")).await);
    }
    let lost = generate(&app, &c, "a heron whose completed is lost #hook-lost").await;
    ids.push(lost.clone());
    let mut finished = std::collections::HashMap::new();
    let mut polls = 0;
    while finished.len() < ids.len() {
        assert!(clock.now_ms() - started < 30_000, "{} of 20 finished", finished.len());
        clock.advance(Duration::from_millis(300));
        // Events travel in real time, on the simulator's clock.
        tokio::time::sleep(Duration::from_millis(30)).await;
        for id in &ids {
            if finished.contains_key(id) {
                continue;
            }
            polls += 1;
            let (_, view) = app.call(&c, "check_image_status", &[("task_id", id)]).await;
            if view["status"] == "completed" {
                finished.insert(id.clone(), clock.now_ms() - started);
            }
        }
    }
    let gets = app.state.metrics.provider_gets();
    assert!(polls >= 150, "{polls} polls");
    assert!(gets <= 4, "{gets} provider GETs for {polls} polls of 20 tasks");
    // 3 s to run, then the check a second after the expected end, on the
    // poll that follows it.
    assert!(finished[&lost] <= 3_000 + 1_000 + 2_000 + 300, "the lost one took {} ms", finished[&lost]);
}

/// A page watching a task whose events brought its progress is told to
/// come back when the provider's own start time and steps say the image is
/// ready, not at an end extrapolated from the task's creation (which
/// counts the prediction's start-up as if it were progress: later by
/// seconds for a long one).
#[tokio::test]
async fn the_poll_advice_follows_the_end_the_provider_points_to() {
    let clock = crate::helpers::manual_clock();
    let settings = [
        ("DARKROOM_PUBLIC_URL", "self"),
        ("DARKROOM_PROVIDER_CHECK_MS", "600000"),
        ("DARKROOM_RECONCILE_INTERVAL_SECS", "86400"),
        ("DARKROOM_POLL_INTERVAL_MS", "10000"),
    ];
    let app = crate::helpers::spawn_app_on(&settings, clock.clone()).await;
    let c = client();
    app.sign_up(&c).await;
    // The simulator starts it in 1 s, then runs 30 steps of 300 ms: it
    // ends 10 s after it was created, on the manual clock (which stands
    // still while it is created).
    let id = generate(&app, &c, "an owl timed by its steps #ms=10000").await;
    let view = loop {
        clock.advance(Duration::from_millis(250));
        // Events travel in real time, on the simulator's clock: each is
        // received before the clock moves on.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, view) = app.call(&c, "check_image_status", &[("task_id", &id)]).await;
        assert_eq!(view["status"], "processing", "{view}");
        if view["progress"].as_i64().unwrap_or(0) >= 40 {
            break view;
        }
    };
    let end = view["created_ms"].as_i64().unwrap() + 10_000;
    let advice = view["poll_after_ms"].as_i64().expect("advice");
    // Extrapolated from the creation, 40 % after 1 s + 12 × 300 ms would
    // point 1.5 s past the end.
    let wanted = end - clock.now_ms() + 400;
    assert!((advice - wanted).abs() <= 50, "told to come back in {advice} ms; the image is due in {wanted} ms");
    assert_eq!(app.state.metrics.provider_gets(), 0, "the events alone told the end");
}
