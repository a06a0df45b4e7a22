//! fal.ai's queue API, simulated under `/sim/fal/` with fal's paths and
//! JSON, on the same stateless predictions as the Replicate simulator
//! (the request id is a prediction id: any instance sharing the secret
//! answers it, and the prompt directives force the same paths).
//!
//! - `POST /{owner}/{app}[/path]`, the input as the body (`image_size`,
//!   `num_images`, `seed`, `negative_prompt`, `prompt`) → `request_id` and
//!   the status, response and cancel URLs (under `owner/app`);
//! - `GET /{owner}/{app}/requests/{id}/status` → `IN_QUEUE` with
//!   `queue_position` (one place a second of the prediction's start),
//!   `IN_PROGRESS` with logs, or `COMPLETED` (with `error` when it failed
//!   or was canceled);
//! - `GET /{owner}/{app}/requests/{id}` → the images and the seed;
//! - `PUT /{owner}/{app}/requests/{id}/cancel` → 202
//!   `CANCELLATION_REQUESTED`, 400 `ALREADY_COMPLETED` or 404 `NOT_FOUND`;
//! - with `?fal_webhook=URL` on the submit, the completion is posted there
//!   (`{request_id, gateway_request_id, status: OK|ERROR, payload, error}`)
//!   signed with ED25519 (`fal_webhooks`), by a key derived from the
//!   simulator's secret and served at `GET /.well-known/jwks.json`; the
//!   `#hook-lost`, `#hook-late` and `#hook-dup` directives act on it as on
//!   Replicate's `completed` event.
//!
//! Every call but the key set needs `Authorization: Key <token>` (the
//! simulator's token).

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, RawQuery, Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

use super::{
    Sim,
    api::{self, Problem},
    id::Ticket,
    timeline::{self, FAIL_MESSAGE, Status, state_at},
    webhooks,
};

/// What a canceled request's status says.
const CANCELED_MESSAGE: &str = "Request was cancelled.";
/// How long a place in the simulated queue lasts.
const QUEUE_PLACE_MS: u64 = 1_000;

/// Accepts `Authorization: Key <token>`.
pub(super) async fn require_key(State(sim): State<Arc<Sim>>, request: Request, next: Next) -> Response {
    if api::presents_token(&sim, request.headers(), &["key"]) {
        next.run(request).await
    } else {
        (StatusCode::UNAUTHORIZED, Json(json!({"detail": "Invalid key."}))).into_response()
    }
}

/// `POST /{owner}/{app}`: a submit to an endpoint without a sub-path.
pub(super) async fn submit_to_app(
    State(sim): State<Arc<Sim>>,
    Path((owner, app)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    submit(&sim, format!("{owner}/{app}"), query.as_deref(), &body).await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /.well-known/jwks.json`: the key webhooks are signed with.
pub(super) async fn jwks(State(sim): State<Arc<Sim>>) -> Response {
    Json(crate::fal_webhooks::jwks(&webhook_key(&sim.cfg.secret).verifying_key())).into_response()
}

/// The user id webhooks name.
pub(super) const USER_ID: &str = "darkroom-sim";

/// The key webhooks are signed with: derived from the secret, so every
/// instance sharing it signs alike.
pub fn webhook_key(secret: &[u8]) -> ed25519_dalek::SigningKey {
    use sha2::{Digest, Sha256};
    let seed: [u8; 32] = Sha256::new().chain_update(b"darkroom fal webhooks\0").chain_update(secret).finalize().into();
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

/// Everything under `/{owner}/{app}/…`: a submit to a sub-path, or a
/// request's status, result or cancel.
pub(super) async fn under_app(
    State(sim): State<Arc<Sim>>,
    method: Method,
    Path((owner, app, rest)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let app_id = format!("{owner}/{app}");
    let parts: Vec<&str> = rest.split('/').collect();
    match (method, parts.as_slice()) {
        (Method::GET, ["requests", id, "status"]) => with_request_id(status(&sim, &app_id, id), id),
        (Method::GET, ["requests", id]) => with_request_id(result(&sim, &app_id, id), id),
        (Method::PUT, ["requests", id, "cancel"]) => with_request_id(cancel(&sim, &app_id, id), id),
        (Method::POST, _) if parts[0] != "requests" => {
            let endpoint = format!("{app_id}/{rest}");
            submit(&sim, endpoint, query.as_deref(), &body).await.unwrap_or_else(IntoResponse::into_response)
        }
        _ => not_found(),
    }
}

/// Starts a request of `endpoint` on the JSON input in `body`; its
/// completion is posted to `fal_webhook` when the query names one.
async fn submit(sim: &Arc<Sim>, endpoint: String, query: Option<&str>, body: &[u8]) -> Result<Response, Problem> {
    let Ok(Value::Object(input)) = serde_json::from_slice::<Value>(body) else {
        return Ok(unprocessable("The request body must be a JSON object."));
    };
    if crate::provider::fal::Endpoint::parse(&endpoint).is_err() {
        return Ok(not_found());
    }
    let hook = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(name, _)| name == "fal_webhook")
        .map(|(_, url)| webhooks::parse_url(&url, "fal_webhook"))
        .transpose()
        .map_err(|e| api::invalid(e.field, e.kind, &e.description))?;
    let input = replicate_input(input);
    let (id, ticket, tag) = api::start(sim, endpoint.clone(), String::new(), &HeaderMap::new(), &input).await?;
    if let Some(url) = hook {
        let hook = webhooks::Webhook { url, events: webhooks::Events::COMPLETED, dialect: webhooks::Dialect::Fal };
        webhooks::spawn(sim, id.clone(), ticket, tag, hook);
    }
    let app_id = app_of(&endpoint);
    let mut answer = urls(sim, &app_id, &id);
    answer["request_id"] = id.as_str().into();
    answer["status"] = "IN_QUEUE".into();
    answer["queue_position"] = 0.into();
    Ok(with_request_id(Json(answer).into_response(), &id))
}

/// fal names the request of every answer about one in `x-fal-request-id`
/// (its client reads a result's id there).
fn with_request_id(mut response: Response, id: &str) -> Response {
    if let Ok(value) = header::HeaderValue::from_str(id) {
        response.headers_mut().insert("x-fal-request-id", value);
    }
    response
}

/// fal's inputs as the shared simulator reads them: `image_size` becomes
/// `aspect_ratio`, `num_images` becomes `num_outputs`.
fn replicate_input(mut input: Map<String, Value>) -> Map<String, Value> {
    if let Some(size) = input.remove("image_size") {
        let ratio = match &size {
            Value::String(name) => match name.as_str() {
                "square_hd" | "square" => Some("1:1".to_owned()),
                "landscape_4_3" => Some("4:3".to_owned()),
                "landscape_16_9" => Some("16:9".to_owned()),
                "portrait_4_3" => Some("3:4".to_owned()),
                "portrait_16_9" => Some("9:16".to_owned()),
                _ => None,
            },
            Value::Object(dims) => {
                let side = |k: &str| dims.get(k).and_then(Value::as_u64).filter(|&n| (1..=14_142).contains(&n));
                side("width").zip(side("height")).map(|(w, h)| {
                    let g = gcd(w, h);
                    format!("{}:{}", w / g, h / g)
                })
            }
            _ => None,
        };
        // An unknown size is passed on as it came, for the checks to name.
        input.insert("aspect_ratio".into(), ratio.map_or(size, Value::from));
    }
    if let Some(n) = input.remove("num_images") {
        input.insert("num_outputs".into(), n);
    }
    input
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

/// `owner/app` of an endpoint id.
fn app_of(endpoint: &str) -> String {
    endpoint.splitn(3, '/').take(2).collect::<Vec<_>>().join("/")
}

/// The request `id` of `app_id`, when it is one.
fn open(sim: &Sim, app_id: &str, id: &str) -> Option<(Ticket, super::id::Tag)> {
    Ticket::open(id, &sim.cfg.secret).filter(|(ticket, _)| app_of(&ticket.model) == app_id)
}

/// A request's URLs, as every answer about it carries them.
fn urls(sim: &Sim, app_id: &str, id: &str) -> Value {
    let base = format!("{}/fal/{app_id}/requests/{id}", sim.base);
    json!({
        "response_url": base,
        "status_url": format!("{base}/status"),
        "cancel_url": format!("{base}/cancel"),
    })
}

/// `GET …/requests/{id}/status`
fn status(sim: &Sim, app_id: &str, id: &str) -> Response {
    let Some((ticket, tag)) = open(sim, app_id, id) else { return not_found() };
    if let Some(failure) = api::forced_failure(sim, &ticket, tag) {
        return failure;
    }
    let now = sim.now_ms();
    let state = state_at(&ticket, sim.soft.canceled_at(&tag), now);
    let mut answer = urls(sim, app_id, id);
    match state.status {
        Status::Starting => {
            let start = ticket.created_ms + u64::from(ticket.duration_ms) / 10;
            answer["status"] = "IN_QUEUE".into();
            answer["queue_position"] = (start.saturating_sub(now) / QUEUE_PLACE_MS).into();
        }
        Status::Processing => answer["status"] = "IN_PROGRESS".into(),
        Status::Succeeded => answer["status"] = "COMPLETED".into(),
        Status::Failed | Status::Canceled => {
            answer["status"] = "COMPLETED".into();
            let canceled = state.status == Status::Canceled;
            answer["error"] = if canceled { CANCELED_MESSAGE } else { FAIL_MESSAGE }.into();
            answer["error_type"] = if canceled { "request_cancelled" } else { "runner_error" }.into();
        }
    }
    answer["logs"] = logs(&ticket, &state, now);
    Json(answer).into_response()
}

/// The model's log lines, as fal's status carries them (a progress bar's
/// last drawing only).
fn logs(ticket: &Ticket, state: &timeline::State, now: u64) -> Value {
    let text = timeline::logs(&format!("Using seed: {}\n", ticket.inputs.seed.value()), state);
    let timestamp = timeline::rfc3339(now);
    let lines = text.lines().map(|line| line.rsplit('\r').next().unwrap_or(line)).filter(|l| !l.is_empty());
    Value::Array(
        lines
            .map(|message| json!({"message": message, "level": "INFO", "source": "user", "timestamp": timestamp}))
            .collect(),
    )
}

/// `GET …/requests/{id}`: a completed request's images; 400 before then,
/// the error of a failed one.
fn result(sim: &Sim, app_id: &str, id: &str) -> Response {
    let Some((ticket, tag)) = open(sim, app_id, id) else { return not_found() };
    let state = state_at(&ticket, sim.soft.canceled_at(&tag), sim.now_ms());
    match state.status {
        Status::Starting | Status::Processing => {
            (StatusCode::BAD_REQUEST, Json(json!({"detail": "Request is still in progress"}))).into_response()
        }
        Status::Failed => unprocessable(FAIL_MESSAGE),
        Status::Canceled => unprocessable(CANCELED_MESSAGE),
        Status::Succeeded => Json(output_json(sim, id, &ticket, &state)).into_response(),
    }
}

/// A succeeded request's result: its images and seed.
fn output_json(sim: &Sim, id: &str, ticket: &Ticket, state: &timeline::State) -> Value {
    let (width, height) = ticket.inputs.size();
    let images: Vec<Value> = (0..ticket.inputs.outputs())
        .map(|n| json!({"url": sim.file_url(id, n), "width": width, "height": height, "content_type": "image/png"}))
        .collect();
    let nsfw: Vec<bool> = images.iter().map(|_| false).collect();
    json!({
        "images": images,
        "seed": ticket.inputs.seed.value(),
        "has_nsfw_concepts": nsfw,
        "prompt": ticket.prompt,
        "timings": {"inference": state.ran_ms as f64 / 1000.0},
    })
}

/// The webhook fal posts once a request completed: `OK` with the result as
/// `payload`, or `ERROR` with the error.
pub(super) fn event_json(sim: &Sim, id: &str, ticket: &Ticket, state: &timeline::State) -> Value {
    let error = match state.status {
        Status::Succeeded => None,
        Status::Canceled => Some(CANCELED_MESSAGE),
        _ => Some(FAIL_MESSAGE),
    };
    match error {
        None => json!({
            "request_id": id,
            "gateway_request_id": id,
            "status": "OK",
            "payload": output_json(sim, id, ticket, state),
            "error": null,
        }),
        Some(message) => json!({
            "request_id": id,
            "gateway_request_id": id,
            "status": "ERROR",
            "payload": {"detail": [{"loc": ["body"], "msg": message, "type": "value_error"}]},
            "error": "Invalid status code: 422",
        }),
    }
}

/// `PUT …/requests/{id}/cancel`
fn cancel(sim: &Sim, app_id: &str, id: &str) -> Response {
    let Some((ticket, tag)) = open(sim, app_id, id) else {
        return (StatusCode::NOT_FOUND, Json(json!({"status": "NOT_FOUND"}))).into_response();
    };
    let now = sim.now_ms();
    if state_at(&ticket, sim.soft.canceled_at(&tag), now).status.is_terminal() {
        return (StatusCode::BAD_REQUEST, Json(json!({"status": "ALREADY_COMPLETED"}))).into_response();
    }
    sim.soft.cancel(tag, ticket.created_ms, now);
    (StatusCode::ACCEPTED, Json(json!({"status": "CANCELLATION_REQUESTED"}))).into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"detail": "Request not found"}))).into_response()
}

/// A 422 about the request's body in fal's (FastAPI's) shape.
fn unprocessable(message: &str) -> Response {
    let detail = json!([{"loc": ["body"], "msg": message, "type": "value_error"}]);
    (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "detail": detail }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fal_inputs_read_as_the_shared_simulator_reads_them() {
        let input = json!({"prompt": "a fox", "image_size": "landscape_16_9", "num_images": 2, "seed": 7});
        let Value::Object(input) = input else { unreachable!() };
        let read = replicate_input(input);
        assert_eq!(read["aspect_ratio"], "16:9");
        assert_eq!(read["num_outputs"], 2);
        assert_eq!(read["seed"], 7);
        assert!(!read.contains_key("image_size") && !read.contains_key("num_images"));
        let Value::Object(sized) = json!({"image_size": {"width": 1024, "height": 768}}) else { unreachable!() };
        assert_eq!(replicate_input(sized)["aspect_ratio"], "4:3");
        let Value::Object(odd) = json!({"image_size": "huge"}) else { unreachable!() };
        assert_eq!(replicate_input(odd)["aspect_ratio"], "huge", "passed on for the checks to refuse");
    }

    #[test]
    fn requests_are_found_under_their_app() {
        assert_eq!(app_of("fal-ai/flux/dev"), "fal-ai/flux");
        assert_eq!(app_of("fal-ai/fast-sdxl"), "fal-ai/fast-sdxl");
    }
}
