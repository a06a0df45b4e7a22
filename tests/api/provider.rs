//! The Replicate adapter against Replicate's documented JSON (kept in
//! `tests/fixtures/`), served over real HTTP by a tiny axum server: every
//! shape parses, every failure maps to its typed error.
#![cfg(feature = "ssr")]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use darkroom::provider::{Api, Prediction, PredictionStatus, Provider, ProviderConfig, ProviderError};

const TOKEN: &str = "r8_test_token";

/// One request the fake API received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    cancel_after: Option<String>,
    body: serde_json::Value,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn fixture(name: &str) -> &'static str {
    match name {
        "string-output" => include_str!("../fixtures/prediction_succeeded_string_output.json"),
        "list-output" => include_str!("../fixtures/prediction_succeeded_list_output.json"),
        "starting" => include_str!("../fixtures/prediction_starting_null_output.json"),
        "processing" => include_str!("../fixtures/prediction_processing.json"),
        "aborted" => include_str!("../fixtures/prediction_aborted.json"),
        "data-removed" => include_str!("../fixtures/prediction_data_removed.json"),
        "failed-object" => include_str!("../fixtures/prediction_failed_error_object.json"),
        "canceled" => include_str!("../fixtures/prediction_canceled.json"),
        "unauthorized" => include_str!("../fixtures/error_401.json"),
        "missing" => include_str!("../fixtures/error_404.json"),
        "invalid" => include_str!("../fixtures/error_422.json"),
        "throttled" => include_str!("../fixtures/error_429.json"),
        "throttled-header" => include_str!("../fixtures/error_429_no_retry_after.json"),
        _ => "{}",
    }
}

fn json(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn get_prediction(Path(id): Path<String>) -> Response {
    match id.as_str() {
        "unauthorized" => json(StatusCode::UNAUTHORIZED, fixture(&id)),
        "forbidden" => json(StatusCode::FORBIDDEN, fixture("unauthorized")),
        "missing" => json(StatusCode::NOT_FOUND, fixture(&id)),
        "invalid" => json(StatusCode::UNPROCESSABLE_ENTITY, fixture(&id)),
        // The body's hint (1 s) wins over the header's.
        "throttled" => (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "9")], fixture(&id)).into_response(),
        "throttled-header" => {
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "3")], fixture(&id)).into_response()
        }
        "boom" => (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response(),
        "bad-gateway" => (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response(),
        "garbage" => json(StatusCode::OK, "<html>this is not JSON</html>"),
        "weird-status" => json(StatusCode::OK, r#"{"id":"w","status":"exploded"}"#),
        "moved" => (StatusCode::FOUND, [(header::LOCATION, "/v1/predictions/starting")]).into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            json(StatusCode::OK, fixture("starting"))
        }
        known => json(StatusCode::OK, fixture(known)),
    }
}

async fn record(log: &Log, path: String, headers: &HeaderMap, body: &[u8]) {
    let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let seen = Seen {
        path,
        authorization: header_text("authorization"),
        cancel_after: header_text("cancel-after"),
        body: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
    };
    log.lock().unwrap_or_else(|e| e.into_inner()).push(seen);
}

/// The fake Replicate: the API under `/v1`, output files under `/files`.
fn fake_replicate(log: Log) -> Router {
    let create_model = |State(log): State<Log>,
                        Path((owner, name)): Path<(String, String)>,
                        headers: HeaderMap,
                        body: Bytes| async move {
        let path = format!("/v1/models/{owner}/{name}/predictions");
        record(&log, path, &headers, &body).await;
        json(StatusCode::CREATED, fixture("starting"))
    };
    let create_version = |State(log): State<Log>, headers: HeaderMap, body: Bytes| async move {
        record(&log, "/v1/predictions".into(), &headers, &body).await;
        json(StatusCode::CREATED, fixture("starting"))
    };
    let cancel = |State(log): State<Log>, Path(id): Path<String>, headers: HeaderMap| async move {
        record(&log, format!("/v1/predictions/{id}/cancel"), &headers, b"").await;
        json(StatusCode::OK, fixture("canceled"))
    };
    Router::new()
        .route("/v1/models/{owner}/{name}/predictions", post(create_model))
        .route("/v1/predictions", post(create_version))
        .route("/v1/predictions/{id}", get(get_prediction))
        .route("/v1/predictions/{id}/cancel", post(cancel))
        .route("/files/{name}", get(file))
        .with_state(log)
}

/// Output files are public: a request that carries the API token (or any
/// credentials) is refused, so every test here shows it is never sent.
async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    if headers.contains_key(header::AUTHORIZATION) {
        return (StatusCode::BAD_REQUEST, "the API token must not reach an output host").into_response();
    }
    match name.as_str() {
        "ok.png" => ([(header::CONTENT_TYPE, "image/png")], &b"\x89PNG\r\n\x1a\nfake"[..]).into_response(),
        "gone.png" => StatusCode::GONE.into_response(),
        "redirect-in" => (StatusCode::FOUND, [(header::LOCATION, "/files/ok.png")]).into_response(),
        "redirect-out" => (StatusCode::FOUND, [(header::LOCATION, "http://disallowed.invalid/x.png")]).into_response(),
        "redirect-loop" => (StatusCode::FOUND, [(header::LOCATION, "/files/redirect-loop")]).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("addr: {e}"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn provider_at(addr: SocketAddr, request_timeout: Duration) -> Provider {
    let cfg = ProviderConfig {
        api: Api::Replicate,
        base_url: format!("http://{addr}/v1").parse().unwrap_or_else(|e| panic!("{e}")),
        token: TOKEN.into(),
        output_hosts: vec![format!("http://127.0.0.1:{}", addr.port())],
        connect_timeout: Duration::from_secs(2),
        request_timeout,
    };
    Provider::new(cfg).unwrap_or_else(|e| panic!("provider: {e}"))
}

async fn spawn_fake() -> (Provider, Log, SocketAddr) {
    let log = Log::default();
    let addr = serve(fake_replicate(log.clone())).await;
    (provider_at(addr, Duration::from_secs(5)), log, addr)
}

async fn fetch(provider: &Provider, id: &str) -> Prediction {
    provider.get(id).await.unwrap_or_else(|e| panic!("get {id}: {e:?}"))
}

#[tokio::test]
async fn a_string_output_becomes_a_one_url_list_with_metrics_and_progress() {
    let (provider, _, _) = spawn_fake().await;
    let p = fetch(&provider, "string-output").await;
    assert_eq!(p.id, "gm3qorzdhgbfurvjtvhg6dckhu");
    assert_eq!(p.status, PredictionStatus::Succeeded);
    assert_eq!(p.output, vec!["https://replicate.delivery/xezq/7f2a9b/out-0.webp"]);
    assert_eq!(p.model.as_deref(), Some("black-forest-labs/flux-schnell"));
    assert_eq!(p.version.as_deref(), Some("dp-4d0bcc010b3049749a251855f12800be"));
    assert_eq!(p.predict_time, Some(0.888889));
    assert_eq!(p.progress, Some(100));
    assert_eq!(p.created_at.as_deref(), Some("2024-09-18T10:01:02.123456Z"));
    assert_eq!(p.completed_at.as_deref(), Some("2024-09-18T10:01:03.345678Z"));
    assert!(!p.data_removed && p.error.is_none());
}

#[tokio::test]
async fn a_list_output_keeps_every_url() {
    let (provider, _, _) = spawn_fake().await;
    let p = fetch(&provider, "list-output").await;
    assert_eq!(
        p.output,
        vec!["https://replicate.delivery/pbxt/A1b2C3/out-0.png", "https://replicate.delivery/pbxt/D4e5F6/out-1.png"]
    );
    assert!(p.status.is_success() && p.status.is_terminal());
}

#[tokio::test]
async fn starting_and_processing_predictions_report_no_output_and_their_progress() {
    let (provider, _, _) = spawn_fake().await;
    let starting = fetch(&provider, "starting").await;
    assert_eq!(starting.status, PredictionStatus::Starting);
    assert!(starting.output.is_empty());
    assert_eq!((starting.progress, starting.predict_time), (None, None));
    let processing = fetch(&provider, "processing").await;
    assert_eq!(processing.status, PredictionStatus::Processing);
    assert!(!processing.status.is_terminal());
    assert_eq!(processing.progress, Some(47));
}

#[tokio::test]
async fn aborted_failed_canceled_and_removed_predictions_parse_as_terminal() {
    let (provider, _, _) = spawn_fake().await;
    let aborted = fetch(&provider, "aborted").await;
    assert_eq!(aborted.status, PredictionStatus::Aborted);
    assert!(aborted.status.is_terminal() && !aborted.status.is_success());
    let failed = fetch(&provider, "failed-object").await;
    assert_eq!(failed.status, PredictionStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("CUDA out of memory. Tried to allocate 2.00 GiB"));
    assert_eq!(failed.progress, Some(10));
    let canceled = fetch(&provider, "canceled").await;
    assert_eq!(canceled.status, PredictionStatus::Canceled);
    let removed = fetch(&provider, "data-removed").await;
    assert!(removed.data_removed && removed.output.is_empty());
}

#[tokio::test]
async fn api_failures_become_typed_errors() {
    let (provider, _, _) = spawn_fake().await;
    let err = |id: &'static str| {
        let provider = provider.clone();
        async move { provider.get(id).await.err().unwrap_or_else(|| panic!("{id} succeeded")) }
    };
    assert!(matches!(err("unauthorized").await, ProviderError::Unauthorized { status: 401 }));
    assert!(matches!(err("forbidden").await, ProviderError::Unauthorized { status: 403 }));
    assert!(matches!(err("missing").await, ProviderError::NotFound));
    assert!(matches!(err("boom").await, ProviderError::Server { status: 500 }));
    assert!(matches!(err("bad-gateway").await, ProviderError::Server { status: 502 }));
    assert!(matches!(err("garbage").await, ProviderError::Malformed(_)));
    assert!(matches!(err("weird-status").await, ProviderError::Malformed(_)));
    assert!(matches!(err("moved").await, ProviderError::Malformed(_)), "API redirects are not followed");
    match err("invalid").await {
        ProviderError::Invalid { detail } => {
            assert_eq!(detail, "- input.prompt: Invalid type. Expected: string, given: integer");
        }
        other => panic!("unexpected {other:?}"),
    }
    for (id, transient) in [("unauthorized", false), ("missing", false), ("invalid", false)] {
        assert_eq!(err(id).await.is_transient(), transient, "{id}");
    }
    for id in ["boom", "garbage", "throttled"] {
        assert!(err(id).await.is_transient(), "{id}");
    }
}

#[tokio::test]
async fn a_429_carries_the_body_hint_or_else_the_header() {
    let (provider, _, _) = spawn_fake().await;
    let body_hint = provider.get("throttled").await.err();
    assert!(matches!(body_hint, Some(ProviderError::RateLimited { .. })), "{body_hint:?}");
    assert_eq!(body_hint.and_then(|e| e.retry_after()), Some(Duration::from_secs(1)));
    let header_hint = provider.get("throttled-header").await.err();
    assert_eq!(header_hint.and_then(|e| e.retry_after()), Some(Duration::from_secs(3)));
}

#[tokio::test]
async fn a_slow_answer_times_out_and_a_closed_port_is_a_transport_error() {
    let (_, _, addr) = spawn_fake().await;
    let impatient = provider_at(addr, Duration::from_millis(300));
    let started = std::time::Instant::now();
    let timed_out = impatient.get("slow").await.err();
    assert!(matches!(timed_out, Some(ProviderError::Timeout)), "{timed_out:?}");
    assert!(started.elapsed() < Duration::from_secs(2));

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    let unreachable = provider_at(closed, Duration::from_secs(2)).get("starting").await.err();
    assert!(matches!(unreachable, Some(ProviderError::Transport(_))), "{unreachable:?}");
}

#[tokio::test]
async fn create_picks_the_endpoint_sends_the_prompt_token_and_cancel_after() {
    let (provider, log, _) = spawn_fake().await;
    let created = provider
        .create("black-forest-labs/flux-schnell", "a red fox", Some(Duration::from_secs(600)))
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(created.status, PredictionStatus::Starting);
    provider.create("stability-ai/sdxl:39ed52f2a78e", "a blue fox", None).await.unwrap_or_else(|e| panic!("{e:?}"));
    provider
        .create("39ed52f2a78e", "a green fox", Some(Duration::from_millis(1)))
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let bad = provider.create("not a model", "a fox", None).await.err();
    assert!(matches!(bad, Some(ProviderError::Invalid { .. })), "{bad:?}");
    provider.cancel("rrr4z55ocneqzikepnug6xezpe").await.unwrap_or_else(|e| panic!("{e:?}"));

    let seen = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(seen.len(), 4, "the unparsable model sent nothing: {seen:?}");
    assert_eq!(seen[0].path, "/v1/models/black-forest-labs/flux-schnell/predictions");
    assert_eq!(seen[0].body, serde_json::json!({"input": {"prompt": "a red fox"}}));
    assert_eq!(seen[0].cancel_after.as_deref(), Some("600s"));
    assert_eq!(seen[1].path, "/v1/predictions");
    assert_eq!(seen[1].body, serde_json::json!({"version": "39ed52f2a78e", "input": {"prompt": "a blue fox"}}));
    assert_eq!(seen[1].cancel_after, None);
    assert_eq!(seen[2].body["version"], "39ed52f2a78e");
    assert_eq!(seen[2].cancel_after.as_deref(), Some("5s"), "raised to the API's minimum");
    assert_eq!(seen[3].path, "/v1/predictions/rrr4z55ocneqzikepnug6xezpe/cancel");
    let bearer = format!("Bearer {TOKEN}");
    assert!(seen.iter().all(|s| s.authorization.as_deref() == Some(bearer.as_str())));
}

/// The request bodies Replicate documents for a model's inputs: the
/// catalogue's fixed inputs and the person's choices side by side under
/// `input`, numbers as numbers.
#[tokio::test]
async fn create_with_sends_the_models_inputs_as_replicate_expects() {
    use darkroom::server::catalogue::{RawInputs, from_toml};
    let (provider, log, _) = spawn_fake().await;
    let catalogue = from_toml(
        "[[models]]\nid = \"black-forest-labs/flux-schnell\"\naspect_ratios = [\"1:1\", \"16:9\"]\n\
         max_outputs = 4\nseed = true\n[models.fixed_inputs]\noutput_format = \"png\"\ngo_fast = true\n\
         [[models]]\nid = \"stability-ai/sdxl:39ed52f2a78e\"\nnegative_prompt = true\n",
        10,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (flux, sdxl) = (&catalogue[0], &catalogue[1]);
    let chosen = RawInputs {
        aspect_ratio: Some("16:9"),
        num_outputs: Some("2"),
        seed: Some("42"),
        negative_prompt: None,
        image: None,
    };
    let inputs = flux.check(&chosen).unwrap_or_else(|e| panic!("{e:?}"));
    provider
        .create_with(&flux.id, flux.provider_input("a red fox", &inputs, None), None)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let chosen = RawInputs { negative_prompt: Some("blurry, low quality"), ..RawInputs::default() };
    let inputs = sdxl.check(&chosen).unwrap_or_else(|e| panic!("{e:?}"));
    provider
        .create_with(&sdxl.id, sdxl.provider_input("a blue fox", &inputs, None), None)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));

    let seen = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let fixture = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(seen[0].path, "/v1/models/black-forest-labs/flux-schnell/predictions");
    assert_eq!(seen[0].body, fixture(include_str!("../fixtures/create_flux_with_inputs.json")));
    assert_eq!(seen[1].path, "/v1/predictions");
    assert_eq!(seen[1].body, fixture(include_str!("../fixtures/create_sdxl_version_with_inputs.json")));
}

#[tokio::test]
async fn open_output_fetches_allowed_hosts_and_refuses_everything_else() {
    let (provider, _, addr) = spawn_fake().await;
    let ok = provider.open_output(&format!("http://{addr}/files/ok.png")).await.unwrap_or_else(|e| panic!("{e:?}"));
    let bytes = ok.bytes().await.unwrap_or_else(|e| panic!("{e}"));
    // The fake output host refuses any request with an Authorization header.
    assert!(bytes.starts_with(b"\x89PNG"), "the API token was sent to an output host");

    let followed = provider.open_output(&format!("http://{addr}/files/redirect-in")).await;
    assert!(followed.is_ok_and(|r| r.status().is_success()), "same-host redirect followed");

    let outside = provider.open_output(&format!("http://{addr}/files/redirect-out")).await.err();
    assert!(matches!(outside, Some(ProviderError::Disallowed(_))), "{outside:?}");
    let looping = provider.open_output(&format!("http://{addr}/files/redirect-loop")).await.err();
    assert!(matches!(looping, Some(ProviderError::Transport(_))), "{looping:?}");

    let gone = provider.open_output(&format!("http://{addr}/files/gone.png")).await.err();
    assert!(matches!(gone, Some(ProviderError::NotFound)), "{gone:?}");
    let missing = provider.open_output(&format!("http://{addr}/files/nope.png")).await.err();
    assert!(matches!(missing, Some(ProviderError::NotFound)), "{missing:?}");

    let port = addr.port();
    for url in [
        format!("http://localhost:{port}/files/ok.png"),
        format!("https://127.0.0.1:{port}/files/ok.png"),
        format!("http://127.0.0.1:{}/files/ok.png", port.wrapping_add(1)),
        "ftp://127.0.0.1/files/ok.png".to_owned(),
        "not a url".to_owned(),
    ] {
        let refused = provider.open_output(&url).await.err();
        assert!(matches!(refused, Some(ProviderError::Disallowed(_))), "{url}: {refused:?}");
    }
}

#[tokio::test]
async fn a_bad_configuration_is_refused_up_front() {
    let cfg = |base: &str, hosts: &[&str]| ProviderConfig {
        api: Api::Replicate,
        base_url: base.parse().unwrap_or_else(|e| panic!("{e}")),
        token: TOKEN.into(),
        output_hosts: hosts.iter().map(|h| h.to_string()).collect(),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
    };
    assert!(Provider::new(cfg("ftp://example.com/v1", &[])).is_err());
    assert!(Provider::new(cfg("https://api.replicate.com/v1", &["exa mple.com"])).is_err());
    assert!(Provider::new(cfg("https://api.replicate.com/v1", &[".replicate.delivery"])).is_ok());
    let debug = format!("{:?}", cfg("https://api.replicate.com/v1", &[]));
    assert!(!debug.contains(TOKEN), "the token never reaches logs: {debug}");
}

#[tokio::test]
async fn with_a_webhook_every_create_asks_for_start_logs_and_completed_events() {
    let (provider, log, _) = spawn_fake().await;
    let hooked = provider.with_webhook("https://darkroom.example/webhooks/replicate".parse().unwrap());
    hooked.create("black-forest-labs/flux-schnell", "a hooked fox", None).await.unwrap_or_else(|e| panic!("{e:?}"));
    let seen = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(
        seen[0].body,
        serde_json::json!({
            "input": {"prompt": "a hooked fox"},
            "webhook": "https://darkroom.example/webhooks/replicate",
            "webhook_events_filter": ["start", "logs", "completed"]
        })
    );
}
