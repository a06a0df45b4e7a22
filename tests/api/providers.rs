//! The task lifecycle through each provider the engine speaks: the same
//! suite on a Replicate model and on a fal model of the built-in catalogue,
//! each served by its simulator over HTTP (fal's under `/sim/fal/`).

use serde_json::Value;

use crate::helpers::{TestApp, client, poll_until_done, spawn_app_with};

/// (provider, a model of the built-in catalogue it serves).
const PROVIDERS: [(&str, &str); 2] = [("replicate", "black-forest-labs/flux-schnell"), ("fal", "fal-ai/flux/dev")];

async fn generate_on(app: &TestApp, c: &reqwest::Client, model: &str, prompt: &str) -> String {
    let (status, body) = app.call(c, "generate_image", &[("prompt", prompt), ("model", model)]).await;
    assert_eq!(status, 200, "{model}: {body}");
    body["task_id"].as_str().expect("task_id").to_owned()
}

async fn view(app: &TestApp, c: &reqwest::Client, id: &str) -> Value {
    app.call(c, "check_image_status", &[("task_id", id)]).await.1
}

#[tokio::test]
async fn each_provider_takes_a_task_from_submit_to_stored_image() {
    let app = spawn_app_with(&[]).await;
    let c = client();
    app.sign_up(&c).await;
    for (provider, model) in PROVIDERS {
        let (status, body) = app
            .call(
                &c,
                "generate_image",
                &[
                    ("prompt", "a harbour at dawn"),
                    ("model", model),
                    ("num_outputs", "2"),
                    ("aspect_ratio", "16:9"),
                    ("seed", "42"),
                ],
            )
            .await;
        assert_eq!(status, 200, "{provider}: {body}");
        let id = body["task_id"].as_str().unwrap().to_owned();
        let done = poll_until_done(&app, &c, &id).await;
        assert_eq!(done["status"], "completed", "{provider}: {done}");
        assert_eq!(done["seed"], 42, "{provider}: the seed the images were made with");
        for n in 0..2 {
            let url = format!("{}/images/{id}/{n}", app.base);
            let image = c.get(&url).send().await.unwrap();
            assert_eq!(image.status(), 200, "{provider}: {url}");
            let bytes = image.bytes().await.unwrap();
            assert!(bytes.starts_with(b"\x89PNG"), "{provider}: a PNG");
            let size = imagesize::blob_size(&bytes).unwrap();
            assert!(size.width > size.height, "{provider}: 16:9 ({size:?})");
        }
    }
    assert_eq!(app.balance(&c).await, 100 - 2 * 2 * 10);
}

#[tokio::test]
async fn each_provider_ends_every_fault_as_the_design_says() {
    let app = spawn_app_with(&[("DARKROOM_MAX_IMAGE_BYTES", "2000000")]).await;
    let c = client();
    app.sign_up(&c).await;
    let cases = [
        ("flaky #error", "completed", ""),
        ("busy #ratelimit", "completed", ""),
        ("broken #fail", "failed", "The model failed"),
        ("enormous #huge", "failed", "larger than"),
        ("html #notimage", "failed", "not an image"),
        ("gone #expire", "failed", "expired"),
    ];
    for (provider, model) in PROVIDERS {
        let mut ids = Vec::new();
        for (prompt, _, _) in cases {
            ids.push(generate_on(&app, &c, model, prompt).await);
        }
        for ((prompt, status, message), id) in cases.iter().zip(&ids) {
            let done = poll_until_done(&app, &c, id).await;
            assert_eq!(done["status"], *status, "{provider} {prompt}: {done}");
            if *status == "failed" {
                assert!(done["error"].as_str().unwrap().contains(message), "{provider} {prompt}: {done}");
                assert_eq!(done["refunded"], true);
            }
        }
    }
    assert_eq!(app.balance(&c).await, 100 - 2 * 2 * 10);
    assert_eq!(app.count("SELECT COUNT(*) FROM credit_ledger WHERE kind = 'refund'").await, 8);
}

#[tokio::test]
async fn each_provider_cancels_in_its_queue_and_while_running() {
    // 20 s predictions: the first 2 s in the provider's queue.
    let app = spawn_app_with(&[("DARKROOM_SIM_DURATION_MS", "20000")]).await;
    let c = client();
    app.sign_up(&c).await;
    for (provider, model) in PROVIDERS {
        let queued = generate_on(&app, &c, model, "a regretted fox").await;
        let (status, canceled) = app.call(&c, "cancel_image", &[("task_id", &queued)]).await;
        assert_eq!(status, 200, "{provider}: {canceled}");
        assert_eq!((canceled["status"].as_str(), canceled["refunded"].as_bool()), (Some("canceled"), Some(true)));

        let running = generate_on(&app, &c, model, "a later regret").await;
        tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
        assert_eq!(view(&app, &c, &running).await["status"], "processing", "{provider}");
        let (status, canceled) = app.call(&c, "cancel_image", &[("task_id", &running)]).await;
        assert_eq!(status, 200, "{provider}: {canceled}");
        assert_eq!(canceled["status"], "canceled", "{provider}: {canceled}");
        // The provider stopped it too.
        let row: (String,) = sqlx::query_as("SELECT prediction_id FROM tasks WHERE id = $1")
            .bind(&running)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
        let at_provider = app.state.provider_for(model).get_for(model, &row.0).await.unwrap();
        assert!(at_provider.status.is_terminal() && !at_provider.status.is_success(), "{provider}: {at_provider:?}");
    }
    assert_eq!(app.balance(&c).await, 100);
}

#[tokio::test]
async fn fal_models_go_to_fal_and_the_others_to_replicate() {
    let app = spawn_app_with(&[]).await;
    let fal = app.state.provider_for("fal-ai/flux/dev");
    assert_eq!(fal.api_kind(), darkroom::provider::Api::Fal);
    assert_eq!(app.state.provider_for("black-forest-labs/flux-schnell").api_kind(), darkroom::provider::Api::Replicate);
    // fal's simulator wants fal's credentials: `Key`, not a bearer token.
    let submit = format!("{}/sim/fal/fal-ai/flux/dev", app.base);
    let r = reqwest::Client::new().post(&submit).json(&serde_json::json!({"prompt": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // An id of another app, or none at all, is not found.
    let c = client();
    app.sign_up(&c).await;
    let id = generate_on(&app, &c, "fal-ai/flux/dev", "a fox").await;
    let row: (String,) = sqlx::query_as("SELECT prediction_id FROM tasks WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    let elsewhere = fal.get_for("fal-ai/fast-sdxl", &row.0).await.err();
    assert!(matches!(elsewhere, Some(darkroom::provider::ProviderError::NotFound)), "{elsewhere:?}");
    assert!(matches!(fal.get_for("fal-ai/flux/dev", "nope").await, Err(darkroom::provider::ProviderError::NotFound)));
}

/// Webhooks on, provider checks ten minutes apart and the reconciler off:
/// what finishes a task is its event.
fn events_only(secret: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("DARKROOM_PUBLIC_URL", "self"),
        ("DARKROOM_PROVIDER_CHECK_MS", "600000"),
        ("DARKROOM_SIM_DURATION_MS", "400"),
        ("DARKROOM_SIM_SECRET", secret),
    ]
}

const FAL: &str = "fal-ai/flux/dev";

async fn prediction_of(app: &TestApp, task: &str) -> String {
    let row: (String,) = sqlx::query_as("SELECT prediction_id FROM tasks WHERE id = $1")
        .bind(task)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    row.0
}

#[tokio::test]
async fn fal_tasks_finish_from_their_signed_events_with_no_provider_gets() {
    let app = spawn_app_with(&events_only("fal-events-secret-0123456789abcdef")).await;
    let c = client();
    app.sign_up(&c).await;
    let done = generate_on(&app, &c, FAL, "a hooked fox").await;
    let twice = generate_on(&app, &c, FAL, "a hooked hare #hook-dup").await;
    let failed = generate_on(&app, &c, FAL, "a doomed owl #fail").await;
    let within = std::time::Duration::from_secs(15);
    for (id, status) in [(&done, "completed"), (&twice, "completed"), (&failed, "failed")] {
        let view = crate::helpers::poll_until_done_within(&app, &c, id, within).await;
        assert_eq!(view["status"], status, "{view}");
    }
    let image = c.get(format!("{}/images/{done}", app.base)).send().await.unwrap();
    assert_eq!(image.status(), 200);
    assert_eq!(app.state.metrics.provider_gets(), 0, "events replaced every check");
    assert_eq!(app.state.metrics.webhooks(), 3);
    assert_eq!(app.state.metrics.webhook_duplicates(), 1, "#hook-dup's second delivery changed nothing");
    assert_eq!(app.state.metrics.object_writes(), 2);
    assert_eq!(app.balance(&c).await, 100 - 2 * 10);
    // fal's key set is public.
    let keys: Value =
        reqwest::get(format!("{}/sim/fal/.well-known/jwks.json", app.base)).await.unwrap().json().await.unwrap();
    assert_eq!(keys["keys"][0]["crv"], "Ed25519");
}

#[tokio::test]
async fn forged_stale_misdirected_and_replayed_fal_events_change_nothing() {
    use darkroom::fal_webhooks::{REQUEST_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, USER_ID_HEADER, sign};

    const SECRET: &str = "fal-forgery-secret-0123456789abcdef";
    let app = spawn_app_with(&events_only(SECRET)).await;
    let c = client();
    app.sign_up(&c).await;
    let id = generate_on(&app, &c, FAL, "a guarded fox #hook-lost #slow").await;
    let request = prediction_of(&app, &id).await;
    let key = darkroom::sim::fal_webhook_key(SECRET.as_bytes());
    let wrong = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let now = (darkroom::server::clock::Clock::system().now_ms() / 1000) as u64;
    let event = |request_id: &str| {
        serde_json::json!({
            "request_id": request_id, "gateway_request_id": request_id, "status": "ERROR",
            "payload": {"detail": [{"msg": "forged", "type": "value_error"}]}, "error": "forged",
        })
        .to_string()
    };
    let post = |key: &ed25519_dalek::SigningKey, header_id: &str, timestamp: u64, body: String| {
        let signature = sign(key, header_id, "someone", timestamp, body.as_bytes());
        let r = reqwest::Client::new()
            .post(format!("{}/webhooks/fal", app.base))
            .header(REQUEST_ID_HEADER, header_id)
            .header(USER_ID_HEADER, "someone")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body);
        async move { r.send().await.unwrap().status().as_u16() }
    };
    // Unsigned, signed by another key, too old, or about another request
    // than the one signed: refused, and nothing changes.
    let unsigned = reqwest::Client::new().post(format!("{}/webhooks/fal", app.base)).body(event(&request)).send().await;
    assert_eq!(unsigned.unwrap().status(), 401);
    assert_eq!(post(&wrong, &request, now, event(&request)).await, 401);
    assert_eq!(post(&key, &request, now - 600, event(&request)).await, 401);
    assert_eq!(post(&key, "another-request", now, event(&request)).await, 400);
    let view = view(&app, &c, &id).await;
    assert_eq!((view["status"].as_str(), app.balance(&c).await), (Some("processing"), 90), "{view}");
    // A genuine event (signed with the simulator's key) ends the task once;
    // the same event again, freshly signed (a retry, or a replay), is a
    // duplicate.
    assert_eq!(post(&key, &request, now, event(&request)).await, 200);
    let ended = crate::helpers::poll_until_done(&app, &c, &id).await;
    assert_eq!((ended["status"].as_str(), ended["error"].as_str()), (Some("failed"), Some("The model failed: forged")));
    assert_eq!(post(&key, &request, now + 1, event(&request)).await, 200);
    assert_eq!(app.state.metrics.webhook_duplicates(), 1);
    assert_eq!(app.balance(&c).await, 100);
    assert_eq!(app.count("SELECT COUNT(*) FROM credit_ledger WHERE kind = 'refund'").await, 1);
}

#[tokio::test]
async fn a_lost_fal_event_leaves_polls_as_the_safety_net() {
    let mut settings = events_only("fal-lost-secret-0123456789abcdef");
    settings.retain(|(k, _)| *k != "DARKROOM_PROVIDER_CHECK_MS");
    settings.push(("DARKROOM_PROVIDER_CHECK_MS", "300"));
    let app = spawn_app_with(&settings).await;
    let c = client();
    app.sign_up(&c).await;
    let id = generate_on(&app, &c, FAL, "a lost fox #hook-lost").await;
    let view = crate::helpers::poll_until_done_within(&app, &c, &id, std::time::Duration::from_secs(30)).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert!(app.state.metrics.provider_gets() >= 1);
    assert_eq!(app.state.metrics.webhooks(), 0);
}

#[tokio::test]
async fn a_task_waiting_in_fals_queue_shows_its_place() {
    // 60 s predictions: the first 6 s in fal's queue, a place a second.
    let app = spawn_app_with(&[("DARKROOM_SIM_DURATION_MS", "60000"), ("DARKROOM_PROVIDER_CHECK_MS", "200")]).await;
    let c = client();
    app.sign_up(&c).await;
    let id = generate_on(&app, &c, FAL, "a patient fox").await;
    let mut places = Vec::new();
    for _ in 0..40 {
        let v = view(&app, &c, &id).await;
        assert_eq!(v["status"], "processing", "{v}");
        places.push(v["queue_position"].as_u64());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Counted down from the place fal gave (1 = next), then gone once it
    // runs.
    let seen: Vec<u64> = places.iter().flatten().copied().collect();
    assert!(seen.len() >= 5 && seen.windows(2).all(|w| w[0] >= w[1]) && seen[0] >= 4, "{places:?}");
    assert_eq!(places.last(), Some(&None), "running: no place in a queue, {places:?}");
    // A Replicate task never has one while processing.
    let other = generate_on(&app, &c, "black-forest-labs/flux-schnell", "a fox elsewhere").await;
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    assert!(view(&app, &c, &other).await.get("queue_position").is_none());
}

/// One budget per provider token: Replicate's (here 6 creates and 60
/// other calls a minute, less the margin) holds Replicate's tasks back,
/// never fal's. fal's has no limits (fal publishes none a minute and
/// queues requests past an account's concurrency itself).
#[tokio::test]
async fn fal_spends_a_budget_of_its_own() {
    let clock = crate::helpers::manual_clock();
    let app = crate::helpers::spawn_app_on(
        &[("DARKROOM_PROVIDER_LIMITS", "create=6/min,other=60/min"), ("DARKROOM_SIM_DURATION_MS", "3000")],
        clock.clone(),
    )
    .await;
    let c = client();
    app.sign_up(&c).await;
    let replicate = "black-forest-labs/flux-schnell";
    let first = generate_on(&app, &c, replicate, "one").await;
    let second = generate_on(&app, &c, replicate, "two").await;
    assert_eq!(view(&app, &c, &first).await["status"], "processing");
    assert_eq!(view(&app, &c, &second).await["status"], "queued", "Replicate's budget has no create left");
    // A fal generation is not queued behind Replicate's.
    let fal = generate_on(&app, &c, FAL, "a fox on fal").await;
    assert_eq!(view(&app, &c, &fal).await["status"], "processing");
    // Polled every 100 ms of the clock for 2 s (checks every 100 ms), the
    // fal task is checked as often as it is due: far more than Replicate's
    // 48 other calls a minute would allow, with none denied.
    let gets = || app.state.metrics.provider_calls("get", "ok");
    let before = gets();
    for _ in 0..20 {
        clock.advance(std::time::Duration::from_millis(100));
        assert_eq!(view(&app, &c, &fal).await["status"], "processing");
    }
    assert!(gets() - before >= 15, "fal checks: {}", gets() - before);
    // And it completes when fal is done.
    clock.advance(std::time::Duration::from_millis(1_500));
    let mut done = view(&app, &c, &fal).await;
    for _ in 0..50 {
        if done["status"] != "processing" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        done = view(&app, &c, &fal).await;
    }
    assert_eq!(done["status"], "completed", "{done}");
}

/// Replicate's checks are spread over the tasks at Replicate only: fal's
/// tasks in flight spend fal's budget, not Replicate's.
#[tokio::test]
async fn replicates_check_spacing_counts_replicates_tasks_only() {
    use darkroom::server::engine::schedule::spacing_ms;
    // 60 other calls a minute: 48 with the margin, 36 of them (0.6 a
    // second) for regular checks, so one task is checked every 1,667 ms.
    let clock = crate::helpers::manual_clock();
    let app = crate::helpers::spawn_app_on(
        &[("DARKROOM_PROVIDER_LIMITS", "other=60/min"), ("DARKROOM_SIM_DURATION_MS", "600000")],
        clock.clone(),
    )
    .await;
    let c = client();
    app.sign_up(&c).await;
    for n in 0..5 {
        generate_on(&app, &c, FAL, &format!("a long fox {n}")).await;
    }
    generate_on(&app, &c, "black-forest-labs/flux-schnell", "a long hare").await;
    // The tasks in flight are counted at most once a second.
    clock.advance(std::time::Duration::from_secs(2));
    assert_eq!(spacing_ms(&app.state).await, 1_667, "one task at Replicate, not six");
}
