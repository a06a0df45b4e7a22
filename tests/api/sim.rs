//! The real adapter against the real simulator over HTTP on a random port:
//! the timeline, every directive, cancel, expiry, auth, validation, and
//! stateless ids that any instance sharing the secret answers the same way.
#![cfg(feature = "ssr")]

use std::{net::SocketAddr, time::Duration};

use darkroom::{
    provider::{Prediction, PredictionStatus, Provider, ProviderConfig, ProviderError},
    sim::{self, SimConfig},
};
use futures::StreamExt;

const TOKEN: &str = "sim-token";
const SECRET: &[u8] = b"shared simulator secret";
const MODEL: &str = "darkroom/landscape";

/// A running simulator and an adapter pointed at it.
struct Running {
    provider: Provider,
    addr: SocketAddr,
    public_base: url::Url,
}

struct Options {
    duration_ms: u64,
    output_ttl: Duration,
    huge_bytes: u64,
    secret: &'static [u8],
    /// Answer as if reachable at another instance's address (a load balancer).
    public_base: Option<url::Url>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            duration_ms: 400,
            output_ttl: Duration::from_secs(60),
            huge_bytes: 300_000,
            secret: SECRET,
            public_base: None,
        }
    }
}

async fn spawn_sim(opts: Options) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("addr: {e}"));
    let own_base = url(&format!("http://{addr}/sim"));
    let public_base = opts.public_base.unwrap_or(own_base);
    let cfg = SimConfig {
        public_base: public_base.clone(),
        api_token: TOKEN.into(),
        secret: opts.secret.to_vec(),
        duration_ms: (opts.duration_ms, opts.duration_ms),
        output_ttl: opts.output_ttl,
        huge_bytes: opts.huge_bytes,
        webhook_secret: darkroom::standard_webhooks::Secret::from_bytes(b"simulator webhook signing key"),
    };
    let app = axum::Router::new().nest("/sim", sim::router(cfg));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Running { provider: adapter(addr, TOKEN), addr, public_base }
}

fn url(s: &str) -> url::Url {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn adapter(addr: SocketAddr, token: &str) -> Provider {
    Provider::new(ProviderConfig {
        base_url: url(&format!("http://{addr}/sim/v1")),
        token: token.into(),
        output_hosts: vec![format!("http://127.0.0.1:{}", addr.port())],
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
    })
    .unwrap_or_else(|e| panic!("provider: {e}"))
}

async fn create(sim: &Running, prompt: &str) -> Prediction {
    sim.provider.create(MODEL, prompt, None).await.unwrap_or_else(|e| panic!("create {prompt:?}: {e:?}"))
}

/// Polls until terminal; returns every state seen, the last one terminal.
async fn follow(sim: &Running, id: &str) -> Vec<Prediction> {
    let mut seen = Vec::new();
    for _ in 0..400 {
        let p = sim.provider.get(id).await.unwrap_or_else(|e| panic!("get: {e:?}"));
        let done = p.status.is_terminal();
        seen.push(p);
        if done {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("prediction {id} never finished: {:?}", seen.last());
}

async fn finished(sim: &Running, prompt: &str) -> Prediction {
    let created = create(sim, prompt).await;
    let mut seen = follow(sim, &created.id).await;
    seen.pop().unwrap_or_else(|| unreachable!())
}

async fn download(sim: &Running, url: &str) -> (Option<String>, Option<u64>, Vec<u8>) {
    let response = sim.provider.open_output(url).await.unwrap_or_else(|e| panic!("{e:?}"));
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let length = response.content_length();
    let body = response.bytes().await.unwrap_or_else(|e| panic!("{e}"));
    (content_type, length, body.to_vec())
}

fn tamper(id: &str) -> String {
    let mut chars: Vec<char> = id.chars().collect();
    let at = chars.len() / 2;
    chars[at] = if chars[at] == 'x' { 'y' } else { 'x' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn a_prediction_starts_processes_succeeds_and_its_png_downloads() {
    // Long enough that polling sees `processing` even on a loaded machine.
    let sim = spawn_sim(Options { duration_ms: 1000, ..Options::default() }).await;
    let created = create(&sim, "a lighthouse at dusk").await;
    assert_eq!(created.status, PredictionStatus::Starting);
    assert_eq!(created.model.as_deref(), Some(MODEL));
    assert!(created.output.is_empty() && created.created_at.is_some());

    let seen = follow(&sim, &created.id).await;
    let statuses: Vec<_> = seen.iter().map(|p| p.status).collect();
    assert!(statuses.contains(&PredictionStatus::Processing), "{statuses:?}");
    let progress: Vec<u8> = seen.iter().filter_map(|p| p.progress).collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "progress only grows: {progress:?}");
    let done = seen.last().unwrap_or_else(|| unreachable!());
    assert_eq!(done.status, PredictionStatus::Succeeded);
    assert_eq!(done.progress, Some(100));
    assert!(done.predict_time.is_some_and(|t| t > 0.5 && t < 1.2), "{:?}", done.predict_time);
    assert!(done.completed_at.is_some() && done.error.is_none() && !done.data_removed);
    assert_eq!(done.output.len(), 1);
    assert!(done.output[0].starts_with(&format!("{}/files/", sim.public_base)));

    let (content_type, length, png) = download(&sim, &done.output[0]).await;
    assert_eq!(content_type.as_deref(), Some("image/png"));
    assert_eq!(length, Some(png.len() as u64));
    let decoder = png::Decoder::new(png.as_slice());
    let mut reader = decoder.read_info().unwrap_or_else(|e| panic!("not a PNG: {e}"));
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap_or_else(|e| panic!("bad PNG: {e}"));
    assert_eq!((info.width, info.height), (512, 512));
    assert_eq!(download(&sim, &done.output[0]).await.2, png, "same prompt, same bytes");
}

#[tokio::test]
async fn fail_ends_in_a_failed_prediction_with_an_error() {
    let sim = spawn_sim(Options::default()).await;
    let done = finished(&sim, "a storm #FAIL").await;
    assert_eq!(done.status, PredictionStatus::Failed);
    assert!(done.error.as_deref().is_some_and(|e| e.contains("#fail")), "{:?}", done.error);
    assert!(done.output.is_empty());
}

#[tokio::test]
async fn error_answers_the_first_three_gets_with_500() {
    let sim = spawn_sim(Options::default()).await;
    let created = create(&sim, "a volcano #error").await;
    for n in 1..=3 {
        let err = sim.provider.get(&created.id).await.err();
        assert!(matches!(err, Some(ProviderError::Server { status: 500 })), "get {n}: {err:?}");
        assert!(err.is_some_and(|e| e.is_transient() && e.retry_after().is_none()));
    }
    let fourth = sim.provider.get(&created.id).await;
    assert!(fourth.is_ok_and(|p| p.id == created.id));
}

#[tokio::test]
async fn ratelimit_answers_the_first_three_gets_with_429_and_a_one_second_hint() {
    let sim = spawn_sim(Options::default()).await;
    let created = create(&sim, "a glacier #ratelimit").await;
    for n in 1..=3 {
        let err = sim.provider.get(&created.id).await.err();
        assert!(matches!(err, Some(ProviderError::RateLimited { .. })), "get {n}: {err:?}");
        assert_eq!(err.and_then(|e| e.retry_after()), Some(Duration::from_secs(1)));
    }
    assert!(sim.provider.get(&created.id).await.is_ok());
    let raw = reqwest::Client::new()
        .get(format!("http://{}/sim/v1/predictions/{}", sim.addr, create(&sim, "#ratelimit").await.id))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(raw.status(), 429);
    assert_eq!(raw.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let body: serde_json::Value = raw.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["retry_after"], 1);
}

#[tokio::test]
async fn huge_streams_a_png_signature_and_more_than_the_limit() {
    let sim = spawn_sim(Options { huge_bytes: 300_000, ..Options::default() }).await;
    let done = finished(&sim, "a mountain range #huge").await;
    assert_eq!(done.status, PredictionStatus::Succeeded);
    let response = sim.provider.open_output(&done.output[0]).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(response.content_length(), None, "no Content-Length to trust");
    let mut stream = response.bytes_stream();
    let mut total = 0usize;
    let mut head = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("{e}"));
        if head.len() < 8 {
            head.extend_from_slice(&chunk[..chunk.len().min(8 - head.len())]);
        }
        total += chunk.len();
    }
    assert_eq!(head, b"\x89PNG\r\n\x1a\n");
    assert!(total > 300_000, "only {total} bytes");
}

#[tokio::test]
async fn notimage_serves_html() {
    let sim = spawn_sim(Options::default()).await;
    let done = finished(&sim, "a portrait #notimage").await;
    let (content_type, _, body) = download(&sim, &done.output[0]).await;
    assert!(content_type.is_some_and(|t| t.starts_with("text/html")));
    assert!(String::from_utf8_lossy(&body).contains("<html"));
}

#[tokio::test]
async fn expire_reports_an_output_url_that_is_already_gone() {
    let sim = spawn_sim(Options::default()).await;
    let done = finished(&sim, "a ruin #expire").await;
    assert_eq!(done.status, PredictionStatus::Succeeded);
    assert_eq!(done.output.len(), 1);
    let err = sim.provider.open_output(&done.output[0]).await.err();
    assert!(matches!(err, Some(ProviderError::NotFound)), "{err:?}");
}

#[tokio::test]
async fn outputs_expire_after_their_ttl_and_are_then_marked_removed() {
    let ttl = Duration::from_millis(1500);
    let sim = spawn_sim(Options { output_ttl: ttl, ..Options::default() }).await;
    let done = finished(&sim, "an old photograph").await;
    assert!(sim.provider.open_output(&done.output[0]).await.is_ok());
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let err = sim.provider.open_output(&done.output[0]).await.err();
    assert!(matches!(err, Some(ProviderError::NotFound)), "{err:?}");
    let later = sim.provider.get(&done.id).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(later.data_removed && later.status.is_success());
}

#[tokio::test]
async fn slow_outlasts_the_configured_duration_and_cancel_stops_it_for_good() {
    let sim = spawn_sim(Options { duration_ms: 300, ..Options::default() }).await;
    let created = create(&sim, "a long exposure #slow").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let running = sim.provider.get(&created.id).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!running.status.is_terminal(), "{:?}", running.status);

    let canceled = sim.provider.cancel(&created.id).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(canceled.status, PredictionStatus::Canceled);
    assert!(canceled.completed_at.is_some() && canceled.output.is_empty());
    let again = sim.provider.cancel(&created.id).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(again, canceled, "a second cancel changes nothing");
    let later = sim.provider.get(&created.id).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(later.status, PredictionStatus::Canceled);
}

#[tokio::test]
async fn a_canceled_prediction_stays_canceled_and_a_finished_one_is_unchanged() {
    let sim = spawn_sim(Options { duration_ms: 1500, ..Options::default() }).await;
    let created = create(&sim, "a harbour").await;
    let canceled = sim.provider.cancel(&created.id).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(canceled.status, PredictionStatus::Canceled);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let later = sim.provider.get(&created.id).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(later.status, PredictionStatus::Canceled, "past its duration, still canceled");

    let done = finished(&sim, "a meadow").await;
    let after = sim.provider.cancel(&done.id).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(after, done, "cancel answers a finished prediction unchanged");
}

#[tokio::test]
async fn cancel_after_lets_the_simulator_cancel_by_itself() {
    let sim = spawn_sim(Options::default()).await;
    let response = reqwest::Client::new()
        .post(format!("http://{}/sim/v1/models/{MODEL}/predictions", sim.addr))
        .bearer_auth(TOKEN)
        .header("Cancel-After", "300ms")
        .json(&serde_json::json!({"input": {"prompt": "a comet #slow"}}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
    let id = body["id"].as_str().unwrap_or_else(|| panic!("no id in {body}"));
    let done = follow(&sim, id).await;
    assert_eq!(done.last().map(|p| p.status), Some(PredictionStatus::Canceled));
}

#[tokio::test]
async fn predictions_have_replicates_json_shape() {
    let sim = spawn_sim(Options::default()).await;
    let done = finished(&sim, "a quiet lake").await;
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/sim/v1/predictions/{}", sim.addr, done.id))
        .header("Authorization", format!("Token {TOKEN}"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["input"]["prompt"], "a quiet lake");
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["data_removed"], false);
    assert!(body["error"].is_null() && body["output"].is_array());
    assert!(body["metrics"]["predict_time"].is_f64());
    assert!(body["logs"].as_str().is_some_and(|l| l.starts_with("Using seed: ") && l.contains('\r')));
    let get_url = format!("{}/v1/predictions/{}", sim.public_base, done.id);
    assert_eq!(body["urls"]["get"], get_url.as_str());
    assert_eq!(body["urls"]["cancel"], format!("{get_url}/cancel").as_str());
    for key in ["created_at", "started_at", "completed_at"] {
        let stamp = body[key].as_str().unwrap_or_else(|| panic!("{key} missing"));
        assert!(stamp.len() == 27 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "{stamp}");
    }
}

#[tokio::test]
async fn a_bad_token_is_unauthorized() {
    let sim = spawn_sim(Options::default()).await;
    let intruder = adapter(sim.addr, "wrong-token");
    let err = intruder.create(MODEL, "a cat", None).await.err();
    assert!(matches!(err, Some(ProviderError::Unauthorized { status: 401 })), "{err:?}");
    let raw = reqwest::Client::new()
        .get(format!("http://{}/sim/v1/predictions/anything", sim.addr))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(raw.status(), 401);
    let body: serde_json::Value = raw.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body, serde_json::json!({"detail": "Invalid token.", "status": 401, "title": "Unauthenticated"}));
}

#[tokio::test]
async fn invalid_input_is_a_422_in_replicates_shape() {
    let sim = spawn_sim(Options::default()).await;
    for prompt in ["", "   "] {
        match sim.provider.create(MODEL, prompt, None).await {
            Err(ProviderError::Invalid { detail }) => {
                assert!(detail.contains("input.prompt"), "{detail}")
            }
            other => panic!("{prompt:?}: {other:?}"),
        }
    }
    let client = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        client.post(format!("http://{}/sim/v1/{path}", sim.addr)).bearer_auth(TOKEN).json(&body).send()
    };
    let cases = [
        ("models/a/b/predictions", serde_json::json!({"input": {"prompt": 7}}), "input.prompt"),
        ("models/a/b/predictions", serde_json::json!({"input": {}}), "input"),
        ("models/a/b/predictions", serde_json::json!({}), "input"),
        ("models/a%20b/c/predictions", serde_json::json!({"input": {"prompt": "x"}}), "model"),
        ("predictions", serde_json::json!({"input": {"prompt": "x"}}), "version"),
        ("predictions", serde_json::json!({"version": "a/b/c", "input": {"prompt": "x"}}), "version"),
    ];
    for (path, body, field) in cases {
        let response = post(path, body.clone()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), 422, "{path} {body}");
        let problem: serde_json::Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(problem["status"], 422);
        assert_eq!(problem["invalid_fields"][0]["field"], field, "{problem}");
        assert!(problem["detail"].is_string() && problem["title"].is_string());
    }
}

#[tokio::test]
async fn versions_are_accepted_through_the_predictions_endpoint() {
    let sim = spawn_sim(Options::default()).await;
    let created =
        sim.provider.create("stability-ai/sdxl:39ed52f2a78e", "a fox", None).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(created.version.as_deref(), Some("39ed52f2a78e"));
    let by_model = create(&sim, "a fox").await;
    assert!(by_model.version.is_some_and(|v| v.len() == 64), "a stable made-up version id");
}

#[tokio::test]
async fn another_instance_with_the_same_secret_answers_the_same_id_identically() {
    let first = spawn_sim(Options::default()).await;
    let second = spawn_sim(Options { public_base: Some(first.public_base.clone()), ..Options::default() }).await;
    let done = finished(&first, "a shared sunrise").await;
    let elsewhere = second.provider.get(&done.id).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(elsewhere, done);
    let (_, _, png_first) = download(&first, &done.output[0]).await;
    let other_url = done.output[0].replace(&first.addr.to_string(), &second.addr.to_string());
    assert_eq!(download(&second, &other_url).await.2, png_first);

    let stranger = spawn_sim(Options { secret: b"another secret", ..Options::default() }).await;
    let err = stranger.provider.get(&done.id).await.err();
    assert!(matches!(err, Some(ProviderError::NotFound)), "{err:?}");
}

#[tokio::test]
async fn a_tampered_id_is_not_found() {
    let sim = spawn_sim(Options::default()).await;
    let done = finished(&sim, "a forged signature").await;
    let forged = tamper(&done.id);
    for err in [
        sim.provider.get(&forged).await.err(),
        sim.provider.cancel(&forged).await.err(),
        sim.provider.open_output(&done.output[0].replace(&done.id, &forged)).await.err(),
    ] {
        assert!(matches!(err, Some(ProviderError::NotFound)), "{err:?}");
    }
}
