//! The real adapter against the real simulator over HTTP on a random port:
//! the timeline, every directive, cancel, expiry, auth, validation, and
//! stateless ids that any instance sharing the secret answers the same way,
//! and webhooks delivered to a receiver on loopback and verified the
//! Standard Webhooks way.
#![cfg(feature = "ssr")]

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    body::Bytes,
    http::{HeaderMap, StatusCode},
};
use darkroom::{
    provider::{Api, Prediction, PredictionStatus, Provider, ProviderConfig, ProviderError},
    server::clock::Clock,
    sim::{self, SimConfig},
    standard_webhooks::{self, Secret},
};
use futures::StreamExt;
use serde_json::{Value, json};

const TOKEN: &str = "sim-token";
const SECRET: &[u8] = b"shared simulator secret";
const MODEL: &str = "darkroom/landscape";

/// A running simulator and an adapter pointed at it.
struct Running {
    provider: Provider,
    addr: SocketAddr,
    public_base: url::Url,
    clock: Clock,
}

struct Options {
    duration_ms: u64,
    output_ttl: Duration,
    huge_bytes: u64,
    secret: &'static [u8],
    /// Answer as if reachable at another instance's address (a load balancer).
    public_base: Option<url::Url>,
    clock: Clock,
    /// Replicate's published limits unless a test says otherwise.
    limits: darkroom::rate::Limits,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            duration_ms: 400,
            output_ttl: Duration::from_secs(60),
            huge_bytes: 300_000,
            secret: SECRET,
            public_base: None,
            clock: Clock::system(),
            limits: sim::default_rate_limits(),
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
        clock: opts.clock.clone(),
        rate_limits: opts.limits,
    };
    let app = axum::Router::new().nest("/sim", sim::router(cfg));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Running { provider: adapter(addr, TOKEN), addr, public_base, clock: opts.clock }
}

fn url(s: &str) -> url::Url {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn adapter(addr: SocketAddr, token: &str) -> Provider {
    Provider::new(ProviderConfig {
        api: Api::Replicate,
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

/// A simulator on a clock the test moves.
async fn spawn_manual_sim(opts: Options) -> Running {
    spawn_sim(Options { clock: Clock::manual(Clock::system().now_ms()), ..opts }).await
}

/// Moves the simulator's clock on in `step`s, reading the prediction after
/// each, until it ends; every state seen, the last one terminal.
async fn step_through(sim: &Running, id: &str, step: Duration) -> Vec<Prediction> {
    let mut seen = Vec::new();
    for _ in 0..1000 {
        let p = sim.provider.get(id).await.unwrap_or_else(|e| panic!("get: {e:?}"));
        let done = p.status.is_terminal();
        seen.push(p);
        if done {
            return seen;
        }
        sim.clock.advance(step);
    }
    panic!("prediction {id} never finished: {:?}", seen.last());
}

#[tokio::test]
async fn a_prediction_starts_processes_succeeds_and_its_png_downloads() {
    let sim = spawn_manual_sim(Options { duration_ms: 1000, ..Options::default() }).await;
    let created = create(&sim, "a lighthouse at dusk").await;
    assert_eq!(created.status, PredictionStatus::Starting);
    assert_eq!(created.model.as_deref(), Some(MODEL));
    assert!(created.output.is_empty() && created.created_at.is_some());

    let seen = step_through(&sim, &created.id, Duration::from_millis(100)).await;
    let statuses: Vec<_> = seen.iter().map(|p| p.status).collect();
    assert!(statuses.contains(&PredictionStatus::Processing), "{statuses:?}");
    assert_eq!(seen.len(), 11, "done exactly at its 1,000 ms: {statuses:?}");
    let progress: Vec<u8> = seen.iter().filter_map(|p| p.progress).collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "progress only grows: {progress:?}");
    let done = seen.last().unwrap_or_else(|| unreachable!());
    assert_eq!(done.status, PredictionStatus::Succeeded);
    assert_eq!(done.progress, Some(100));
    assert!(done.predict_time.is_some_and(|t| t > 0.5 && t <= 1.0), "{:?}", done.predict_time);
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

/// `#notimage` serves HTML in place of the image, sandboxed: on the app's
/// origin it runs nothing and is not sniffed as anything else.
#[tokio::test]
async fn notimage_serves_html_in_a_sandbox() {
    let sim = spawn_sim(Options::default()).await;
    let done = finished(&sim, "a portrait #notimage").await;
    let response = sim.provider.open_output(&done.output[0]).await.unwrap();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert!(header("content-type").is_some_and(|t| t.starts_with("text/html")));
    assert_eq!(header("content-security-policy").as_deref(), Some("sandbox"));
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    assert!(String::from_utf8_lossy(&response.bytes().await.unwrap()).contains("<html"));
    // Every file answer, an image or an error, is sandboxed the same way.
    let png = finished(&sim, "a portrait").await;
    let image = sim.provider.open_output(&png.output[0]).await.unwrap();
    assert_eq!(image.headers()["content-security-policy"], "sandbox");
    let missing = reqwest::get(format!("http://{}/sim/files/nope/out-0.png", sim.addr)).await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["content-security-policy"], "sandbox");
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
    let ttl = Duration::from_secs(3600);
    let sim = spawn_manual_sim(Options { output_ttl: ttl, ..Options::default() }).await;
    let created = create(&sim, "an old photograph").await;
    let done = step_through(&sim, &created.id, Duration::from_millis(100)).await.pop().unwrap();
    assert!(sim.provider.open_output(&done.output[0]).await.is_ok());
    sim.clock.advance(ttl - Duration::from_millis(1));
    assert!(sim.provider.open_output(&done.output[0]).await.is_ok(), "a millisecond before it expires");
    sim.clock.advance(Duration::from_millis(1));
    let err = sim.provider.open_output(&done.output[0]).await.err();
    assert!(matches!(err, Some(ProviderError::NotFound)), "{err:?}");
    let later = sim.provider.get(&done.id).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(later.data_removed && later.status.is_success());
}

#[tokio::test]
async fn slow_outlasts_the_configured_duration_and_cancel_stops_it_for_good() {
    let sim = spawn_manual_sim(Options { duration_ms: 300, ..Options::default() }).await;
    let created = create(&sim, "a long exposure #slow").await;
    sim.clock.advance(Duration::from_secs(59));
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
    let sim = spawn_manual_sim(Options { duration_ms: 1500, ..Options::default() }).await;
    let created = create(&sim, "a harbour").await;
    let canceled = sim.provider.cancel(&created.id).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(canceled.status, PredictionStatus::Canceled);
    sim.clock.advance(Duration::from_millis(1700));
    let later = sim.provider.get(&created.id).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(later.status, PredictionStatus::Canceled, "past its duration, still canceled");

    let meadow = create(&sim, "a meadow").await;
    let done = step_through(&sim, &meadow.id, Duration::from_millis(500)).await.pop().unwrap();
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

// ---- Webhooks ----

/// One webhook request as the receiver saw it, and how it answered.
#[derive(Debug, Clone)]
struct Hook {
    headers: HeaderMap,
    body: Bytes,
    json: Value,
    answered: StatusCode,
    at: Instant,
}

impl Hook {
    fn id(&self) -> &str {
        self.headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn status(&self) -> &str {
        self.json["status"].as_str().unwrap_or("")
    }

    fn is_terminal(&self) -> bool {
        matches!(self.status(), "succeeded" | "failed" | "canceled")
    }
}

/// A webhook receiver on 127.0.0.1:0 that records every request and
/// answers 500 to the first `fail_first` of them.
struct Receiver {
    url: String,
    hooks: Arc<Mutex<Vec<Hook>>>,
}

impl Receiver {
    async fn spawn(fail_first: usize) -> Self {
        let hooks: Arc<Mutex<Vec<Hook>>> = Arc::default();
        let failures = Arc::new(AtomicUsize::new(fail_first));
        let record = Arc::clone(&hooks);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (record, failures) = (Arc::clone(&record), Arc::clone(&failures));
                async move {
                    let fail = failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                    let answered = if fail { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::NO_CONTENT };
                    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let hook = Hook { headers, body, json, answered, at: Instant::now() };
                    record.lock().unwrap_or_else(|e| e.into_inner()).push(hook);
                    answered
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("addr: {e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url: format!("http://{addr}/hook"), hooks }
    }

    fn hooks(&self) -> Vec<Hook> {
        self.hooks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until `done` holds for what was received (panics after 20 s).
    async fn wait_until(&self, what: &str, done: impl Fn(&[Hook]) -> bool) -> Vec<Hook> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let hooks = self.hooks();
            if done(&hooks) {
                return hooks;
            }
            assert!(Instant::now() < deadline, "never got {what}: {:#?}", summary(&hooks));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn summary(hooks: &[Hook]) -> Vec<(String, String, u16)> {
    hooks.iter().map(|h| (h.id().to_owned(), h.status().to_owned(), h.answered.as_u16())).collect()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The signing key, as `GET /v1/webhooks/default/secret` answers it.
async fn webhook_key(sim: &Running) -> Secret {
    let body: Value = reqwest::Client::new()
        .get(format!("http://{}/sim/v1/webhooks/default/secret", sim.addr))
        .bearer_auth(TOKEN)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let key = body["key"].as_str().unwrap_or_else(|| panic!("no key in {body}"));
    Secret::parse(key).unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// Every hook verifies under `key` and is JSON.
fn assert_signed(key: &Secret, hooks: &[Hook]) {
    for hook in hooks {
        let verified = standard_webhooks::verify_headers(key, &hook.headers, &hook.body, now_secs());
        assert_eq!(verified, Ok(()), "{:?}", hook.headers);
        let content_type = hook.headers.get("content-type").and_then(|v| v.to_str().ok());
        assert_eq!(content_type, Some("application/json"));
        assert!(hook.json.is_object(), "{:?}", hook.body);
    }
}

/// Creates a prediction with `extra` merged into the body; the raw answer.
async fn create_raw(sim: &Running, prompt: &str, extra: Value) -> reqwest::Response {
    let mut body = json!({"input": {"prompt": prompt}});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    reqwest::Client::new()
        .post(format!("http://{}/sim/v1/models/{MODEL}/predictions", sim.addr))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Creates a prediction whose webhooks go to `receiver`; returns its id.
async fn create_hooked(sim: &Running, receiver: &Receiver, prompt: &str, extra: Value) -> String {
    let mut hook = json!({"webhook": receiver.url});
    if let (Some(hook), Some(extra)) = (hook.as_object_mut(), extra.as_object()) {
        hook.extend(extra.clone());
    }
    let response = create_raw(sim, prompt, hook).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
    body["id"].as_str().unwrap_or_else(|| panic!("no id in {body}")).to_owned()
}

async fn get_json(sim: &Running, id: &str) -> Value {
    reqwest::Client::new()
        .get(format!("http://{}/sim/v1/predictions/{id}", sim.addr))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_webhook_gets_start_logs_and_one_completed_all_signed() {
    let sim = spawn_sim(Options { duration_ms: 2000, ..Options::default() }).await;
    let receiver = Receiver::spawn(0).await;
    let id = create_hooked(&sim, &receiver, "a lighthouse with webhooks", json!({})).await;
    receiver.wait_until("a completed event", |hooks| hooks.iter().any(Hook::is_terminal)).await;
    // Anything more (a second completed) would arrive within this pause.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let hooks = receiver.hooks();
    assert_signed(&webhook_key(&sim).await, &hooks);

    let statuses: Vec<&str> = hooks.iter().map(Hook::status).collect();
    assert_eq!(statuses.first(), Some(&"starting"), "start comes first: {statuses:?}");
    assert_eq!(statuses.last(), Some(&"succeeded"), "{statuses:?}");
    assert_eq!(hooks.iter().filter(|h| h.is_terminal()).count(), 1, "{statuses:?}");
    let logs: Vec<&Hook> = hooks.iter().filter(|h| h.status() == "processing").collect();
    assert!(logs.len() >= 2, "logs events while processing: {statuses:?}");
    let texts: Vec<&str> = logs.iter().map(|h| h.json["logs"].as_str().unwrap_or("")).collect();
    assert!(texts.windows(2).all(|w| w[0] != w[1] && w[1].starts_with(w[0])), "progress grows: {texts:?}");
    for pair in logs.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(gap >= Duration::from_millis(400), "logs at most every 500 ms, got {gap:?}");
    }
    let mut ids: Vec<&str> = hooks.iter().map(Hook::id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), hooks.len(), "one webhook-id per event");
    assert!(hooks.iter().all(|h| h.json["id"] == id.as_str()));
    let completed = hooks.iter().find(|h| h.is_terminal()).map(|h| h.json.clone());
    assert_eq!(completed, Some(get_json(&sim, &id).await), "the body is the prediction as GET answers it");
}

#[tokio::test]
async fn the_webhook_secret_needs_the_token() {
    let sim = spawn_sim(Options::default()).await;
    let response = reqwest::Client::new()
        .get(format!("http://{}/sim/v1/webhooks/default/secret", sim.addr))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 401);
    let key = webhook_key(&sim).await;
    assert_eq!(key, Secret::from_bytes(b"simulator webhook signing key"));
}

#[tokio::test]
async fn hook_dup_delivers_completed_twice_then_a_stale_one() {
    let sim = spawn_sim(Options::default()).await;
    let receiver = Receiver::spawn(0).await;
    let filter = json!({"webhook_events_filter": ["completed"]});
    create_hooked(&sim, &receiver, "a mirror #hook-dup", filter).await;
    let hooks = receiver.wait_until("two completed and a stale one", |hooks| hooks.len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hooks_after = receiver.hooks();
    assert_eq!(hooks_after.len(), 3, "nothing more: {:?}", summary(&hooks_after));
    assert_signed(&webhook_key(&sim).await, &hooks);
    assert!(hooks[0].is_terminal() && hooks[1].is_terminal(), "{:?}", summary(&hooks));
    assert_eq!(hooks[0].id(), hooks[1].id(), "the same event, delivered twice");
    assert_eq!(hooks[0].json, hooks[1].json);
    assert_eq!(hooks[2].status(), "processing", "then a stale one: {:?}", summary(&hooks));
    assert_ne!(hooks[2].id(), hooks[0].id());
}

#[tokio::test]
async fn hook_lost_sends_start_and_logs_but_no_completed() {
    let sim = spawn_sim(Options { duration_ms: 1200, ..Options::default() }).await;
    let receiver = Receiver::spawn(0).await;
    let id = create_hooked(&sim, &receiver, "a message in a bottle #hook-lost", json!({})).await;
    let done = follow(&sim, &id).await;
    assert_eq!(done.last().map(|p| p.status), Some(PredictionStatus::Succeeded));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let hooks = receiver.hooks();
    assert_signed(&webhook_key(&sim).await, &hooks);
    assert_eq!(hooks.first().map(Hook::status), Some("starting"), "{:?}", summary(&hooks));
    assert!(hooks.iter().any(|h| h.status() == "processing"), "{:?}", summary(&hooks));
    assert!(!hooks.iter().any(Hook::is_terminal), "no completed event: {:?}", summary(&hooks));
}

#[tokio::test]
async fn hook_late_sends_completed_ten_seconds_after_completion() {
    let sim = spawn_sim(Options { duration_ms: 300, ..Options::default() }).await;
    let receiver = Receiver::spawn(0).await;
    let filter = json!({"webhook_events_filter": ["completed"]});
    let id = create_hooked(&sim, &receiver, "a delayed train #hook-late", filter).await;
    follow(&sim, &id).await;
    let finished_at = Instant::now();
    let hooks = receiver.wait_until("a late completed event", |hooks| !hooks.is_empty()).await;
    assert!(hooks[0].is_terminal());
    let late = hooks[0].at.duration_since(finished_at);
    assert!(late >= Duration::from_millis(9_500), "only {late:?} late");
}

#[tokio::test]
async fn a_refused_delivery_is_retried_with_the_same_webhook_id() {
    let sim = spawn_sim(Options::default()).await;
    let receiver = Receiver::spawn(1).await;
    let filter = json!({"webhook_events_filter": ["completed"]});
    create_hooked(&sim, &receiver, "a second chance", filter).await;
    let hooks = receiver.wait_until("a retry", |hooks| hooks.len() >= 2).await;
    assert_signed(&webhook_key(&sim).await, &hooks);
    assert_eq!(hooks[0].answered, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(hooks[1].answered, StatusCode::NO_CONTENT);
    assert_eq!(hooks[0].id(), hooks[1].id(), "{:?}", summary(&hooks));
    assert_eq!(hooks[0].body, hooks[1].body);
    assert!(hooks[1].at.duration_since(hooks[0].at) >= Duration::from_millis(200), "with a back-off");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.hooks().len(), 2, "delivered, so no more attempts");
}

#[tokio::test]
async fn the_events_filter_completed_gives_only_completed() {
    let sim = spawn_sim(Options { duration_ms: 1500, ..Options::default() }).await;
    let receiver = Receiver::spawn(0).await;
    let filter = json!({"webhook_events_filter": ["completed"]});
    let id = create_hooked(&sim, &receiver, "a filtered view", filter).await;
    follow(&sim, &id).await;
    let hooks = receiver.wait_until("a completed event", |hooks| !hooks.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hooks_after = receiver.hooks();
    assert_eq!(hooks_after.len(), 1, "{:?}", summary(&hooks_after));
    assert_eq!(hooks[0].status(), "succeeded");
}

#[tokio::test]
async fn a_canceled_prediction_sends_completed_and_its_deliveries_stop() {
    let sim = spawn_sim(Options::default()).await;
    let receiver = Receiver::spawn(0).await;
    let id = create_hooked(&sim, &receiver, "a long exposure #slow", json!({})).await;
    receiver.wait_until("start", |hooks| !hooks.is_empty()).await;
    sim.provider.cancel(&id).await.unwrap_or_else(|e| panic!("{e:?}"));
    let hooks = receiver.wait_until("a canceled event", |hooks| hooks.iter().any(Hook::is_terminal)).await;
    assert_eq!(hooks.last().map(Hook::status), Some("canceled"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(receiver.hooks().len(), hooks.len(), "nothing after the cancel");
}

#[tokio::test]
async fn a_webhook_must_be_an_http_url() {
    let sim = spawn_sim(Options::default()).await;
    for extra in [
        json!({"webhook": "ftp://127.0.0.1/hook"}),
        json!({"webhook": "not a url"}),
        json!({"webhook": "https://example.com/", "webhook_events_filter": ["finished"]}),
    ] {
        let response = create_raw(&sim, "a cat", extra.clone()).await;
        assert_eq!(response.status(), 422, "{extra}");
        let problem: Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
        let field = problem["invalid_fields"][0]["field"].as_str().unwrap_or("");
        assert!(field.starts_with("webhook"), "{problem}");
        assert_eq!(problem["status"], 422);
    }
    let by_version = reqwest::Client::new()
        .post(format!("http://{}/sim/v1/predictions", sim.addr))
        .bearer_auth(TOKEN)
        .json(&json!({"version": "a/b:c", "input": {"prompt": "x"}, "webhook": "ftp://h/"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(by_version.status(), 422);
}

#[tokio::test]
async fn the_app_uses_the_configured_sim_token_and_webhook_secret() {
    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let app = crate::helpers::spawn_app_with(&[
        ("DARKROOM_SIM_TOKEN", "r8_my_own_token"),
        ("DARKROOM_WEBHOOK_SECRET", WHSEC),
    ])
    .await;
    let secret = |token: &'static str| {
        reqwest::Client::new().get(format!("{}/sim/v1/webhooks/default/secret", app.base)).bearer_auth(token).send()
    };
    let answer = secret("r8_my_own_token").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["key"], WHSEC);
    let refused = secret("r8_guess").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refused.status(), 401);

    // The app's own adapter uses the configured token too: a generation completes.
    let c = crate::helpers::client();
    app.sign_up(&c).await;
    let (status, body) = app.call(&c, "generate_image", &[("prompt", "a token of trust")]).await;
    assert_eq!(status, 200, "{body}");
    let task_id = body["task_id"].as_str().unwrap_or_else(|| panic!("no task_id in {body}")).to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, view) = app.call(&c, "check_image_status", &[("task_id", &task_id)]).await;
        if !crate::helpers::unfinished(&view) {
            assert_eq!(view["status"], "completed", "{view}");
            break;
        }
        assert!(Instant::now() < deadline, "still processing: {view}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

// ---- Model inputs ----

/// Adds the keys of object `from` to object `into`.
fn merge(into: &mut Value, from: &Value) {
    if let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) {
        into.extend(from.clone());
    }
}

/// Creates a prediction of `prompt` with `inputs` merged into its `input`
/// and `extra` into the body; the raw answer.
async fn create_with_inputs(sim: &Running, prompt: &str, inputs: Value, extra: Value) -> reqwest::Response {
    let mut input = json!({"prompt": prompt});
    merge(&mut input, &inputs);
    let mut body = json!({"input": input});
    merge(&mut body, &extra);
    create_raw(sim, prompt, body).await
}

/// Creates a prediction with `inputs` (must be accepted); its JSON.
async fn created_with(sim: &Running, prompt: &str, inputs: Value) -> Value {
    let response = create_with_inputs(sim, prompt, inputs.clone(), json!({})).await;
    assert_eq!(response.status(), 201, "{inputs}");
    response.json().await.unwrap_or_else(|e| panic!("{e}"))
}

/// Creates a prediction with `inputs` and waits until it is done.
async fn finished_with(sim: &Running, prompt: &str, inputs: Value) -> Prediction {
    let created = created_with(sim, prompt, inputs).await;
    let id = created["id"].as_str().unwrap_or_else(|| panic!("no id in {created}"));
    let mut seen = follow(sim, id).await;
    seen.pop().unwrap_or_else(|| unreachable!())
}

/// Downloads a PNG output; its bytes and size (from the decoded header).
async fn png_at(sim: &Running, url: &str) -> (Vec<u8>, (u32, u32)) {
    let (content_type, _, bytes) = download(sim, url).await;
    assert_eq!(content_type.as_deref(), Some("image/png"), "{url}");
    let info = png::Decoder::new(bytes.as_slice()).read_info().unwrap_or_else(|e| panic!("{url}: not a PNG: {e}"));
    let size = (info.info().width, info.info().height);
    (bytes, size)
}

/// The seed of a `Using seed: N` first line of the logs.
fn logged_seed(logs: Option<&str>) -> Option<u32> {
    logs?.lines().next()?.strip_prefix("Using seed: ")?.parse().ok()
}

#[tokio::test]
async fn every_invalid_input_is_a_422_naming_its_field_and_starts_nothing() {
    let sim = spawn_sim(Options::default()).await;
    let receiver = Receiver::spawn(0).await;
    let cases = [
        (json!({"aspect_ratio": "7:3"}), "aspect_ratio"),
        (json!({"aspect_ratio": "16x9"}), "aspect_ratio"),
        (json!({"aspect_ratio": 1.78}), "aspect_ratio"),
        (json!({"num_outputs": 0}), "num_outputs"),
        (json!({"num_outputs": 5}), "num_outputs"),
        (json!({"num_outputs": "2"}), "num_outputs"),
        (json!({"num_outputs": 2.5}), "num_outputs"),
        (json!({"seed": -1}), "seed"),
        (json!({"seed": 4_294_967_296u64}), "seed"),
        (json!({"seed": 1.5}), "seed"),
        (json!({"seed": "42"}), "seed"),
        (json!({"negative_prompt": "x".repeat(2001)}), "negative_prompt"),
        (json!({"negative_prompt": ["blurry"]}), "negative_prompt"),
        (json!({"output_format": "gif"}), "output_format"),
        (json!({"output_format": true}), "output_format"),
    ];
    let hooked = json!({"webhook": receiver.url});
    for (inputs, key) in &cases {
        let response = create_with_inputs(&sim, "a refused fox", inputs.clone(), hooked.clone()).await;
        assert_eq!(response.status(), 422, "{inputs}");
        let problem: Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
        let field = format!("input.{key}");
        assert_eq!(problem["status"], 422);
        assert_eq!(problem["title"], "Input validation failed");
        assert_eq!(problem["invalid_fields"][0]["field"], field.as_str(), "{inputs}: {problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.starts_with(&format!("- {field}: ")), "{inputs}: {detail}");
        let description = problem["invalid_fields"][0]["description"].as_str().unwrap_or_default();
        assert!(!description.is_empty() && detail.contains(description), "{problem}");
    }
    // The same requests with a good value are accepted: each 422 was the field's.
    let accepted = [
        json!({"aspect_ratio": "21:9"}),
        json!({"num_outputs": 4}),
        json!({"seed": 4_294_967_295u64}),
        json!({"seed": 0}),
        json!({"negative_prompt": "x".repeat(2000)}),
        json!({"output_format": "jpg", "seed": null, "unknown": {"nested": 1}}),
    ];
    for inputs in accepted {
        created_with(&sim, "an accepted fox", inputs).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let hooks = receiver.hooks();
    assert!(hooks.is_empty(), "a refused create sent webhooks: {:?}", summary(&hooks));
}

#[tokio::test]
async fn an_aspect_ratio_shapes_the_png_with_a_long_side_of_768() {
    let sim = spawn_sim(Options::default()).await;
    for (ratio, size) in [("16:9", (768, 432)), ("9:16", (432, 768)), ("1:1", (768, 768)), ("4:5", (614, 768))] {
        let done = finished_with(&sim, "a wide valley", json!({"aspect_ratio": ratio})).await;
        assert_eq!(done.status, PredictionStatus::Succeeded);
        assert_eq!(png_at(&sim, &done.output[0]).await.1, size, "{ratio}");
    }
    let square = finished(&sim, "a wide valley").await;
    assert_eq!(png_at(&sim, &square.output[0]).await.1, (512, 512), "no aspect ratio: as before");
}

#[tokio::test]
async fn num_outputs_gives_that_many_urls_each_a_different_image() {
    let sim = spawn_sim(Options::default()).await;
    let done = finished_with(&sim, "three foxes", json!({"num_outputs": 3, "aspect_ratio": "16:9"})).await;
    assert_eq!(done.status, PredictionStatus::Succeeded);
    let expected: Vec<String> = (0..3).map(|n| format!("{}/files/{}/out-{n}.png", sim.public_base, done.id)).collect();
    assert_eq!(done.output, expected);
    let mut images = Vec::new();
    for url in &done.output {
        let (bytes, size) = png_at(&sim, url).await;
        assert_eq!(size, (768, 432));
        images.push(bytes);
    }
    assert!(images[0] != images[1] && images[1] != images[2] && images[0] != images[2], "three different images");
    assert_eq!(png_at(&sim, &done.output[1]).await.0, images[1], "each is the same on a second download");
    for file in ["out-3.png", "out-01.png", "out-x.png", "out-1.jpg"] {
        let url = format!("{}/files/{}/{file}", sim.public_base, done.id);
        let err = sim.provider.open_output(&url).await.err();
        assert!(matches!(err, Some(ProviderError::NotFound)), "{file}: {err:?}");
    }
    let one = finished_with(&sim, "one fox", json!({"num_outputs": 1})).await;
    assert_eq!(one.output, vec![format!("{}/files/{}/out-0.png", sim.public_base, one.id)], "still a list");
}

#[tokio::test]
async fn the_same_seed_gives_the_same_bytes_and_another_seed_others() {
    let sim = spawn_sim(Options::default()).await;
    let mut firsts = Vec::new();
    for seed in [42u32, 42, 43] {
        let done = finished_with(&sim, "a seeded fox", json!({"seed": seed, "num_outputs": 2})).await;
        assert_eq!(logged_seed(done.logs.as_deref()), Some(seed), "{:?}", done.logs);
        let first = png_at(&sim, &done.output[0]).await.0;
        assert_ne!(first, png_at(&sim, &done.output[1]).await.0, "index 1 differs from index 0");
        firsts.push(first);
    }
    assert_eq!(firsts[0], firsts[1], "same seed, prompt and index: the same bytes");
    assert_ne!(firsts[0], firsts[2], "another seed: another image");
    let other_prompt = finished_with(&sim, "a seeded hen", json!({"seed": 42})).await;
    assert_ne!(png_at(&sim, &other_prompt.output[0]).await.0, firsts[0], "another prompt: another image");
}

#[tokio::test]
async fn without_a_seed_a_random_one_is_picked_logged_and_reproducible() {
    let sim = spawn_sim(Options::default()).await;
    let a = finished_with(&sim, "an unseeded fox", json!({})).await;
    let b = finished_with(&sim, "an unseeded fox", json!({})).await;
    let seed_a = logged_seed(a.logs.as_deref()).unwrap_or_else(|| panic!("no seed in {:?}", a.logs));
    let seed_b = logged_seed(b.logs.as_deref()).unwrap_or_else(|| panic!("no seed in {:?}", b.logs));
    assert_ne!(seed_a, seed_b, "picked at random for each prediction");
    let image_a = png_at(&sim, &a.output[0]).await.0;
    assert_ne!(image_a, png_at(&sim, &b.output[0]).await.0);
    // The logged seed is the one the image was made with.
    let again = finished_with(&sim, "an unseeded fox", json!({"seed": seed_a})).await;
    assert_eq!(png_at(&sim, &again.output[0]).await.0, image_a);
    // A picked seed is not an input: it is not echoed.
    assert_eq!(get_json(&sim, &a.id).await["input"], json!({"prompt": "an unseeded fox"}));
}

#[tokio::test]
async fn bad_output_makes_only_the_last_output_answer_404() {
    let sim = spawn_sim(Options::default()).await;
    let done = finished_with(&sim, "three foxes, one lost #bad-output", json!({"num_outputs": 3})).await;
    assert_eq!((done.status, done.output.len()), (PredictionStatus::Succeeded, 3));
    for url in &done.output[..2] {
        assert_eq!(png_at(&sim, url).await.1, (512, 512));
    }
    let err = sim.provider.open_output(&done.output[2]).await.err();
    assert!(matches!(err, Some(ProviderError::NotFound)), "{err:?}");
    let single = finished(&sim, "a lost fox #BAD-OUTPUT").await;
    let err = sim.provider.open_output(&single.output[0]).await.err();
    assert!(matches!(err, Some(ProviderError::NotFound)), "one output is also the last: {err:?}");
}

#[tokio::test]
async fn the_input_is_echoed_by_create_get_cancel_and_webhooks() {
    let sim = spawn_sim(Options::default()).await;
    let receiver = Receiver::spawn(0).await;
    let inputs = json!({
        "aspect_ratio": "3:2", "num_outputs": 2, "seed": 7, "negative_prompt": "", "output_format": "webp",
        "guidance": 3.5,
    });
    let expected = json!({
        "prompt": "an echoing fox", "aspect_ratio": "3:2", "num_outputs": 2, "seed": 7,
        "negative_prompt": "", "output_format": "webp",
    });
    let filter = json!({"webhook": receiver.url, "webhook_events_filter": ["completed"]});
    let response = create_with_inputs(&sim, "an echoing fox", inputs, filter).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(created["input"], expected, "create");
    let id = created["id"].as_str().unwrap_or_else(|| panic!("no id in {created}")).to_owned();
    follow(&sim, &id).await;
    let got = get_json(&sim, &id).await;
    assert_eq!(got["input"], expected, "get");
    let hooks = receiver.wait_until("a completed event", |hooks| !hooks.is_empty()).await;
    assert_eq!(hooks[0].json["input"], expected, "webhook");
    assert_eq!(hooks[0].json["output"], got["output"], "the webhook carries the output list");
    let outputs = got["output"].as_array().map(Vec::len);
    assert_eq!(outputs, Some(2));
    // `output_format` is accepted, but the file is a PNG all the same.
    let url = got["output"][1].as_str().unwrap_or_default();
    assert_eq!(png_at(&sim, url).await.1, (768, 512));

    let slow = created_with(&sim, "a slow fox #slow", json!({"aspect_ratio": "9:21"})).await;
    let slow_id = slow["id"].as_str().unwrap_or_default();
    let canceled: Value = reqwest::Client::new()
        .post(format!("http://{}/sim/v1/predictions/{slow_id}/cancel", sim.addr))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["input"], json!({"prompt": "a slow fox #slow", "aspect_ratio": "9:21"}), "cancel");
}

/// The id the simulator minted before model inputs existed (format 1),
/// sealed by hand: format, created, duration, cancel-after, nonce, model,
/// version, prompt, then the HMAC-SHA256 tag truncated to 16 bytes.
fn v1_id(created_ms: u64, duration_ms: u32, model: &str, prompt: &str) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use hmac::{Hmac, Mac};
    let mut payload = vec![1u8];
    payload.extend_from_slice(&created_ms.to_be_bytes());
    payload.extend_from_slice(&duration_ms.to_be_bytes());
    payload.extend_from_slice(&0u32.to_be_bytes());
    payload.extend_from_slice(&[5, 6, 7, 8]);
    payload.push(u8::try_from(model.len()).unwrap_or(u8::MAX));
    payload.extend_from_slice(model.as_bytes());
    payload.push(0);
    payload.extend_from_slice(prompt.as_bytes());
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(SECRET).unwrap_or_else(|e| panic!("{e}"));
    mac.update(&payload);
    payload.extend_from_slice(&mac.finalize().into_bytes()[..16]);
    URL_SAFE_NO_PAD.encode(payload)
}

#[tokio::test]
async fn a_prediction_from_before_inputs_answers_and_renders_as_it_did() {
    use sha2::Digest;
    let sim = spawn_sim(Options::default()).await;
    let prompt = "a lighthouse on a cliff at dusk";
    let created_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0) - 2_000;
    let id = v1_id(created_ms, 400, MODEL, prompt);
    let body = get_json(&sim, &id).await;
    assert_eq!(body["status"], "succeeded", "{body}");
    assert_eq!(body["input"], json!({"prompt": prompt}));
    let outputs = body["output"].as_array().cloned().unwrap_or_default();
    assert_eq!(outputs, vec![json!(format!("{}/files/{id}/out-0.png", sim.public_base))]);
    // The seed its logs always printed: the first four bytes of the prompt's SHA-256.
    assert_eq!(logged_seed(body["logs"].as_str()), Some(553_500_617));
    let (png, size) = png_at(&sim, outputs[0].as_str().unwrap_or_default()).await;
    assert_eq!(size, (512, 512));
    let digest: String = sha2::Sha256::digest(&png).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(digest, "fb68e4ffd71e0771480df14ce4d681148afdad6f04b82e5de5ffd5fbacd0d2a7", "the same bytes as before");
}

/// What `GET /sim/_stats` answers.
async fn stats(sim: &Running) -> Value {
    let r = reqwest::get(format!("http://{}/sim/_stats", sim.addr)).await.unwrap_or_else(|e| panic!("{e}"));
    r.json().await.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn the_token_is_held_to_its_limits_with_replicates_429() {
    let limits = darkroom::rate::Limits::parse("create=6/min,other=60/min", darkroom::rate::Limits::OFF, 10)
        .unwrap_or_else(|e| panic!("{e}"));
    let sim = spawn_manual_sim(Options { limits, ..Options::default() }).await;
    // A burst of 10 s' worth: one create, ten other calls.
    let first = create(&sim, "a quiet bay").await;
    let refused = create_raw(&sim, "a quiet bay", json!({})).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("10"));
    let body: Value = refused.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["detail"], "Request was throttled. Your rate limit resets in ~10s.");
    assert_eq!(body["status"], 429);
    // Other calls have a limit of their own, and the adapter reads the wait.
    for _ in 0..10 {
        sim.provider.get(&first.id).await.unwrap_or_else(|e| panic!("get: {e:?}"));
    }
    match sim.provider.get(&first.id).await {
        Err(ProviderError::RateLimited { retry_after }) => assert_eq!(retry_after, Some(Duration::from_secs(1))),
        other => panic!("expected a 429, got {other:?}"),
    }
    match sim.provider.create(MODEL, "another", None).await {
        Err(ProviderError::RateLimited { retry_after }) => assert!(retry_after.is_some()),
        other => panic!("expected a 429, got {other:?}"),
    }
    let counted = stats(&sim).await;
    assert_eq!(
        (&counted["creates"], &counted["gets"], &counted["throttled"], &counted["lists"], &counted["cancels"]),
        (&json!(1), &json!(10), &json!(3), &json!(0), &json!(0)),
        "{counted}"
    );
    // Room comes back at the published rate.
    sim.clock.advance(Duration::from_secs(10));
    create(&sim, "a quiet bay, later").await;
    sim.provider.get(&first.id).await.unwrap_or_else(|e| panic!("get: {e:?}"));
    sim.provider.cancel(&first.id).await.unwrap_or_else(|e| panic!("cancel: {e:?}"));
    let counted = stats(&sim).await;
    assert_eq!((&counted["creates"], &counted["gets"], &counted["cancels"]), (&json!(2), &json!(11), &json!(1)));
    // A refused token is not counted against the limit, nor served.
    let stranger = adapter(sim.addr, "not-the-token");
    assert!(matches!(stranger.get(&first.id).await, Err(ProviderError::Unauthorized { status: 401 })));
    assert_eq!(stats(&sim).await["gets"], json!(11));
}

#[tokio::test]
async fn the_default_limits_are_replicates_published_ones() {
    let sim = spawn_manual_sim(Options::default()).await;
    assert_eq!(stats(&sim).await["limits"], "create=600/min,other=3000/min");
    // Ten seconds' worth at once, then the steady rate.
    let mut created = 0;
    while create_raw(&sim, "a burst", json!({})).await.status() == StatusCode::CREATED {
        created += 1;
        assert!(created <= 100, "more than the burst went through");
    }
    assert_eq!(created, 100);
    sim.clock.advance(Duration::from_millis(100));
    assert_eq!(create_raw(&sim, "a burst", json!({})).await.status(), StatusCode::CREATED, "600 a minute");
}

#[tokio::test]
async fn the_list_gives_the_tokens_predictions_newest_first_a_page_at_a_time() {
    let sim = spawn_manual_sim(Options::default()).await;
    let mut ids = Vec::new();
    for n in 0..105 {
        ids.push(create(&sim, &format!("picture {n}")).await.id);
        sim.clock.advance(Duration::from_millis(10));
    }
    let list = |url: String| async move {
        let r = reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap_or_else(|e| panic!("{e}"))
    };
    let first = list(format!("http://{}/sim/v1/predictions", sim.addr)).await;
    let results = first["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 100);
    assert_eq!(results[0]["id"], json!(ids[104]), "newest first");
    assert_eq!(results[99]["id"], json!(ids[5]));
    assert!(results[0].get("logs").is_none(), "a listing leaves the logs out");
    assert_eq!(results[0]["status"], "starting");
    let done = Prediction::from_json(results[104 - 5 - 5].to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.id, ids[10]);
    let next = first["next"].as_str().unwrap_or_else(|| panic!("a next link: {first}")).to_owned();
    assert!(next.starts_with(&format!("{}/v1/predictions?cursor=", sim.public_base)), "{next}");
    let second = list(next).await;
    let rest: Vec<Value> = second["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        rest.iter().map(|p| p["id"].clone()).collect::<Vec<_>>(),
        ids[..5].iter().rev().map(|i| json!(i)).collect::<Vec<_>>()
    );
    assert_eq!(second["next"], Value::Null);
    assert_eq!(stats(&sim).await["lists"], json!(2));
    let unauthorized =
        reqwest::get(format!("http://{}/sim/v1/predictions", sim.addr)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
}
