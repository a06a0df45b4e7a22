//! The simulator's API: create, get and cancel predictions with Replicate's
//! JSON shapes, status codes and bearer-token auth. A create's inputs are
//! all checked (422 naming the field) before anything happens; an input
//! image is read last, being the costliest check.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use rand::Rng;
use serde_json::{Map, Value, json};

use super::{
    SLOW_DURATION_MS, Sim,
    directive::Directives,
    id::Ticket,
    images,
    inputs::{self, Inputs, type_name},
    timeline::{prediction_json, state_at},
    webhooks,
};

/// Prompts are carried inside ids, so they are capped (far above any
/// prompt the app accepts).
const MAX_PROMPT_BYTES: usize = 8 * 1024;
/// The first GETs of a `#error` / `#ratelimit` prediction that fail.
const FAILING_GETS: u32 = 3;
/// The model reported for a prediction created from a bare version id.
const UNKNOWN_MODEL: &str = "sim/by-version";

/// Accepts `Authorization: Bearer <token>` (or Replicate's older `Token`).
pub(super) async fn require_token(State(sim): State<Arc<Sim>>, request: Request, next: Next) -> Response {
    if presents_token(&sim, request.headers(), &["bearer", "token"]) {
        return next.run(request).await;
    }
    problem(StatusCode::UNAUTHORIZED, json!({"detail": "Invalid token.", "status": 401, "title": "Unauthenticated"}))
        .into_response()
}

/// Whether `headers` carry `Authorization: <scheme> <the simulator's
/// token>` with one of `schemes` (any case).
pub(super) fn presents_token(sim: &Sim, headers: &HeaderMap, schemes: &[&str]) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        .filter(|(scheme, _)| schemes.iter().any(|s| scheme.eq_ignore_ascii_case(s)))
        .map(|(_, token)| token.trim())
        .is_some_and(|token| !token.is_empty() && same_secret(token, &sim.cfg.api_token))
}

/// `POST /v1/models/{owner}/{name}/predictions`
pub(super) async fn create_for_model(
    State(sim): State<Arc<Sim>>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    if !is_name(&owner) || !is_name(&name) {
        let description = format!("{owner}/{name} is not a valid model name");
        return Err(invalid("model", "invalid_format", &description));
    }
    let json = parse_json(&body)?;
    create(&sim, format!("{owner}/{name}"), String::new(), &headers, &json).await
}

/// `POST /v1/predictions` with `version`: `owner/name:version`,
/// `owner/name` or a bare version id, as the API accepts.
pub(super) async fn create_for_version(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let json = parse_json(&body)?;
    let Some(version) = json.get("version").and_then(Value::as_str).map(str::to_owned) else {
        return Err(invalid("version", "required", "version is required"));
    };
    let (model, version) = match version.split_once(':') {
        Some((model, version)) => (model.to_owned(), version.to_owned()),
        None if version.contains('/') => (version.clone(), String::new()),
        None => (UNKNOWN_MODEL.to_owned(), version.clone()),
    };
    let model_ok = model.split_once('/').is_some_and(|(o, n)| is_name(o) && is_name(n));
    if !model_ok || !(version.is_empty() || is_name(&version)) {
        return Err(invalid("version", "invalid_format", "version is not a valid model version"));
    }
    create(&sim, model, version, &headers, &json).await
}

async fn create(
    sim: &Arc<Sim>,
    model: String,
    version: String,
    headers: &HeaderMap,
    json: &Value,
) -> Result<Response, Problem> {
    let webhook = webhooks::parse(json).map_err(|e| invalid(e.field, e.kind, &e.description))?;
    let (id, ticket, tag) = start(sim, model, version, headers, input_of(json)?).await?;
    sim.recent.created(&id);
    let now = sim.now_ms();
    let state = state_at(&ticket, None, now);
    let body = Json(prediction_json(sim, &id, &ticket, &state, now));
    if let Some(webhook) = webhook {
        webhooks::spawn(sim, id, ticket, tag, webhook);
    }
    Ok((StatusCode::CREATED, body).into_response())
}

/// Checks a prediction's `input` (and `Cancel-After`) and starts it: its
/// id, what the id carries, and its tag. Fal's simulator starts its
/// requests here too.
pub(super) async fn start(
    sim: &Arc<Sim>,
    model: String,
    version: String,
    headers: &HeaderMap,
    input: &Map<String, Value>,
) -> Result<(String, Ticket, super::id::Tag), Problem> {
    let image_given = input.get("image").is_some_and(|v| !v.is_null());
    let prompt = prompt_of(input, image_given)?;
    let image = inputs::image_source(input, &sim.upload_url("")).map_err(rejected)?;
    let mut inputs = Inputs::parse(input, rand::random).map_err(rejected)?;
    let cancel_after_ms = match headers.get("cancel-after") {
        None => 0,
        Some(value) => match value.to_str().ok().and_then(parse_go_duration_ms) {
            Some(ms) => u32::try_from(ms.max(1)).unwrap_or(u32::MAX),
            None => {
                let description = "Cancel-After must be a duration like 30s, 5m or 1h30m";
                return Err(invalid("Cancel-After", "invalid_format", description));
            }
        },
    };
    if let Some(source) = image {
        inputs.image = Some(images::open(sim, source, inputs.scale).await.map_err(rejected)?);
    }
    let directives = Directives::parse(&prompt);
    let duration_ms = if let Some(ms) = directives.duration_ms {
        ms
    } else if directives.slow {
        SLOW_DURATION_MS
    } else {
        let (low, high) = sim.cfg.duration_ms;
        rand::thread_rng().gen_range(low.min(high)..=high.max(low))
    };
    let now = sim.now_ms();
    let ticket = Ticket {
        created_ms: now,
        duration_ms: u32::try_from(duration_ms).unwrap_or(u32::MAX),
        cancel_after_ms,
        nonce: rand::random(),
        model,
        version,
        prompt,
        inputs,
    };
    let (id, tag) = ticket.seal(&sim.cfg.secret);
    tracing::debug!(%id, duration_ms, "simulated prediction created");
    Ok((id, ticket, tag))
}

/// `GET /v1/webhooks/default/secret`: the key webhooks are signed with.
pub(super) async fn webhook_secret(State(sim): State<Arc<Sim>>) -> Response {
    Json(json!({ "key": sim.cfg.webhook_secret.expose_whsec() })).into_response()
}

/// `GET /v1/predictions/{id}`
pub(super) async fn get(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    let Some((ticket, tag)) = Ticket::open(&id, &sim.cfg.secret) else {
        return not_found();
    };
    if let Some(failure) = forced_failure(&sim, &ticket, tag) {
        return failure;
    }
    let now = sim.now_ms();
    let state = state_at(&ticket, sim.soft.canceled_at(&tag), now);
    Json(prediction_json(&sim, &id, &ticket, &state, now)).into_response()
}

/// The answer to one of the first GETs of a `#error` (a 500) or
/// `#ratelimit` (a 429) prediction; `None` for every other GET.
pub(super) fn forced_failure(sim: &Sim, ticket: &Ticket, tag: super::id::Tag) -> Option<Response> {
    let directives = Directives::parse(&ticket.prompt);
    if !(directives.error || directives.ratelimit) || sim.soft.count_get(tag, ticket.created_ms) > FAILING_GETS {
        return None;
    }
    Some(if directives.error {
        problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"detail": "Internal server error (simulated by #error).", "status": 500}),
        )
        .into_response()
    } else {
        throttled()
    })
}

/// `POST /v1/predictions/{id}/cancel`: a running prediction becomes (and
/// stays) `canceled`; a finished one is answered unchanged.
pub(super) async fn cancel(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    let Some((ticket, tag)) = Ticket::open(&id, &sim.cfg.secret) else {
        return not_found();
    };
    let now = sim.now_ms();
    let mut state = state_at(&ticket, sim.soft.canceled_at(&tag), now);
    if !state.status.is_terminal() {
        let at = sim.soft.cancel(tag, ticket.created_ms, now);
        state = state_at(&ticket, Some(at), now);
    }
    Json(prediction_json(&sim, &id, &ticket, &state, now)).into_response()
}

/// The request body, which must be JSON (400 otherwise).
fn parse_json(body: &[u8]) -> Result<Value, Problem> {
    serde_json::from_slice(body).map_err(|e| {
        problem(
            StatusCode::BAD_REQUEST,
            json!({"detail": format!("Invalid JSON: {e}"), "status": 400, "title": "Bad request"}),
        )
    })
}

/// The body's `input` object.
fn input_of(json: &Value) -> Result<&Map<String, Value>, Problem> {
    json.get("input").and_then(Value::as_object).ok_or_else(|| invalid("input", "required", "input is required"))
}

/// `input.prompt`, which must be a non-blank string of bounded length; with
/// an `image` it may be left out (an upscaler takes none), and is then
/// empty.
fn prompt_of(input: &Map<String, Value>, image_given: bool) -> Result<String, Problem> {
    match input.get("prompt") {
        None | Some(Value::Null) if image_given => Ok(String::new()),
        None | Some(Value::Null) => Err(invalid("input", "required", "prompt is required")),
        Some(Value::String(p)) if p.trim().is_empty() => {
            Err(invalid("input.prompt", "string_too_short", "String length must be greater than or equal to 1"))
        }
        Some(Value::String(p)) if p.len() > MAX_PROMPT_BYTES => Err(invalid(
            "input.prompt",
            "string_too_long",
            &format!("String length must be less than or equal to {MAX_PROMPT_BYTES}"),
        )),
        Some(Value::String(p)) => Ok(p.clone()),
        Some(other) => Err(invalid(
            "input.prompt",
            "invalid_type",
            &format!("Invalid type. Expected: string, given: {}", type_name(other)),
        )),
    }
}

/// A Go-style duration as `Cancel-After` takes it: `30s`, `5m`, `1h30m`,
/// `250ms`, or a bare number of seconds. (The 5 s minimum of the real API
/// is not enforced, so tests can use short deadlines.)
fn parse_go_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then_some((secs * 1000.0) as u64);
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    (total.is_finite() && !text.is_empty()).then_some(total as u64)
}

/// Owner, model and version names: letters, digits, `-`, `_`, `.`.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A model input that cannot be used, as a 422.
fn rejected(e: inputs::Invalid) -> Problem {
    invalid(e.field, e.kind, &e.description)
}

/// A 422 in Replicate's shape.
pub(super) fn invalid(field: &str, kind: &str, description: &str) -> Problem {
    problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({
            "detail": format!("- {field}: {description}\n"),
            "status": 422,
            "title": "Input validation failed",
            "invalid_fields": [{"type": kind, "field": field, "description": description}],
        }),
    )
}

fn throttled() -> Response {
    let body = json!({
        "detail": "Request was throttled. Expected available in 1 second.",
        "status": 429,
        "retry_after": 1,
    });
    let mut response = problem(StatusCode::TOO_MANY_REQUESTS, body).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

pub(super) fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, json!({"detail": "Not found.", "status": 404})).into_response()
}

/// A 500 that says nothing of its cause (which the server logs).
pub(super) fn internal_error() -> Problem {
    problem(StatusCode::INTERNAL_SERVER_ERROR, json!({"detail": "Internal server error.", "status": 500}))
}

pub(super) fn problem(status: StatusCode, body: Value) -> Problem {
    Problem { status, body }
}

/// An error answer: a status and a JSON body in Replicate's shape.
pub(super) struct Problem {
    status: StatusCode,
    body: Value,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Compares tokens without leaking where they differ through timing.
fn same_secret(presented: &str, expected: &str) -> bool {
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_after_takes_go_durations() {
        assert_eq!(parse_go_duration_ms("600s"), Some(600_000));
        assert_eq!(parse_go_duration_ms("10m"), Some(600_000));
        assert_eq!(parse_go_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_go_duration_ms("250ms"), Some(250));
        assert_eq!(parse_go_duration_ms("1.5s"), Some(1_500));
        assert_eq!(parse_go_duration_ms("90"), Some(90_000));
        for bad in ["", "soon", "5x", "s", "-5s", "1h-5m"] {
            assert_eq!(parse_go_duration_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
    }
}
