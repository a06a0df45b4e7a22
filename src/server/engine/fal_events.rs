//! `POST /webhooks/fal`: fal's signed completion events, fed into the same
//! lifecycle as Replicate's (`webhook::accept`). An event is checked
//! with the ED25519 keys of fal's key set (fetched when first needed, kept
//! a day, fetched again at most once a minute when no key matches, for a
//! rotation), within five minutes of its timestamp. fal sends one
//! completion per request and retries it for hours: each request's is
//! applied once (`fal:<request id>` in the deliveries table), so a retry
//! or a replayed capture changes nothing.

use ed25519_dalek::VerifyingKey;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::webhook::{Gate, MAX_EVENT_BYTES, accept};
use crate::fal_webhooks::{self, Refused};
use crate::server::client::Client;
use crate::server::state::AppState;

/// How long fetched keys are used.
const KEYS_FOR_MS: i64 = 24 * 3600 * 1000;
/// How soon an unmatched signature may fetch the keys again.
const REFETCH_AFTER_MS: i64 = 60 * 1000;
/// Largest key set read.
const MAX_KEY_SET_BYTES: usize = 64 * 1024;

/// Where fal's events arrive, how their keys are found, and the gate in
/// front of the route.
pub struct FalReceiver {
    /// `{DARKROOM_PUBLIC_URL}/webhooks/fal`.
    pub url: url::Url,
    keys: KeySet,
    pub gate: std::sync::Arc<Gate>,
}

impl FalReceiver {
    /// Events at `url`, signed by the keys served at `jwks_url`.
    pub fn new(url: url::Url, jwks_url: url::Url) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let keys = KeySet { url: jwks_url, client, cached: tokio::sync::Mutex::new(None) };
        Ok(Self { url, keys, gate: std::sync::Arc::default() })
    }
}

/// fal's public keys, as last fetched.
struct KeySet {
    url: url::Url,
    client: reqwest::Client,
    /// When they were fetched, and the keys.
    cached: tokio::sync::Mutex<Option<(i64, Vec<VerifyingKey>)>>,
}

impl KeySet {
    /// The keys: those fetched within a day, or (`again`: none of them
    /// matched) fetched anew when the last fetch is over a minute old.
    async fn get(&self, now: i64, again: bool) -> Result<Vec<VerifyingKey>, String> {
        let mut cached = self.cached.lock().await;
        if let Some((at, keys)) = cached.as_ref() {
            let age = now - at;
            if age < KEYS_FOR_MS && !(again && age >= REFETCH_AFTER_MS) {
                return Ok(keys.clone());
            }
        }
        let keys = self.fetch().await?;
        *cached = Some((now, keys.clone()));
        Ok(keys)
    }

    async fn fetch(&self) -> Result<Vec<VerifyingKey>, String> {
        let mut response = self.client.get(self.url.clone()).send().await.map_err(|e| format!("fal's keys: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("fal's keys: HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("fal's keys: {e}"))? {
            if body.len() + chunk.len() > MAX_KEY_SET_BYTES {
                return Err(format!("fal's keys: larger than {MAX_KEY_SET_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        fal_webhooks::parse_jwks(&body).map_err(|e| format!("fal's keys: {e}"))
    }
}

/// The handler: as Replicate's, nothing is read from a stranger beyond the
/// headers until they are present and fresh, through the same kind of gate.
pub async fn receive(State(state): State<AppState>, request: Request) -> Response {
    let Some(receiver) = &state.fal_webhooks else {
        return (StatusCode::NOT_FOUND, "fal webhooks are not enabled (DARKROOM_PUBLIC_URL is not set)")
            .into_response();
    };
    let client = request.extensions().get::<Client>().copied().unwrap_or_else(Client::unknown).limit_key();
    receiver.gate.admit(client, state.clock.now_ms(), read_event(&state, receiver, request)).await
}

fn refused() -> Response {
    (StatusCode::UNAUTHORIZED, "invalid webhook signature").into_response()
}

/// Reads, verifies and applies (in the background) one event.
async fn read_event(state: &AppState, receiver: &FalReceiver, request: Request) -> Response {
    let now = state.clock.now_ms();
    let now_secs = (now / 1000).max(0) as u64;
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    if fal_webhooks::precheck(&headers, now_secs).is_err() {
        return refused();
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_EVENT_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, format!("an event is at most {} KiB", MAX_EVENT_BYTES / 1024))
            .into_response();
    };
    let mut verified = Err(Refused::NoMatch);
    for again in [false, true] {
        let keys = match receiver.keys.get(now, again).await {
            Ok(keys) => keys,
            Err(e) => {
                // fal retries: the event is not lost.
                tracing::warn!("fal webhook not checked: {e}");
                return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
            }
        };
        verified = fal_webhooks::verify(&keys, &headers, &body, now_secs);
        if verified != Err(Refused::NoMatch) {
            break;
        }
    }
    let request_id = match verified {
        Ok(id) => id.to_owned(),
        Err(e) => {
            tracing::warn!("fal webhook refused: {e:?}");
            return refused();
        }
    };
    let prediction = match crate::provider::fal::event_prediction(&body) {
        Ok(p) if p.id == request_id => p,
        Ok(_) => return (StatusCode::BAD_REQUEST, "the event is about another request").into_response(),
        Err(e) => {
            tracing::warn!("fal webhook with an unreadable body: {e}");
            return (StatusCode::BAD_REQUEST, "not a fal event").into_response();
        }
    };
    // fal sends one completion per request: its id is the delivery's.
    accept(state, &format!("fal:{request_id}"), prediction).await
}
