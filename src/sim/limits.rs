//! The simulator's rate limits and counters, as Replicate enforces and an
//! operator reads them: per API token (the simulator has one), creates and
//! every other API call are held to their own limit
//! (`DARKROOM_SIM_RATE_LIMITS`, default Replicate's published 600 and
//! 3,000 a minute, with bursts of [`BURST_SECS`] seconds' worth); over
//! it, a 429 in Replicate's words with a `Retry-After`. Output files come
//! from a delivery host, which is not limited.
//!
//! `GET /sim/_stats` answers what the simulator served since it started:
//! `creates`, `gets`, `lists`, `cancels`, `files` (output files served),
//! `uploads` (files created through `POST /v1/files`), `throttled`, and
//! its webhook events: `webhooks.delivered`, `.retried` (an attempt refused
//! or unanswered) and `.given_up`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::{
    Json,
    extract::{Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::Sim;
use crate::rate::{Bucket, Limits, Taken};

/// Replicate tolerates short bursts: this many seconds' worth of a limit.
pub const BURST_SECS: u32 = 10;

/// The limits the simulator enforces by default: Replicate's published ones.
pub fn default_limits() -> Limits {
    Limits::replicate(BURST_SECS)
}

/// The two limits of the simulator's token, and the calls taken of each.
pub(super) struct Limiter {
    limits: Limits,
    /// Creates, then every other call.
    buckets: Mutex<[Bucket; 2]>,
}

/// What an API call counts against (and is counted as).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    Create,
    Get,
    List,
    Cancel,
    /// Anything else of the API (the webhook secret, the Files API):
    /// limited, not listed.
    Other,
}

impl Call {
    /// What `method` on `path` (below `/v1`) is.
    fn of(method: &Method, path: &str) -> Self {
        let path = path.trim_end_matches('/');
        match *method {
            Method::POST if path.ends_with("/cancel") => Self::Cancel,
            Method::POST if path.ends_with("/predictions") => Self::Create,
            Method::GET if path.ends_with("/predictions") => Self::List,
            Method::GET if path.contains("/predictions/") => Self::Get,
            _ => Self::Other,
        }
    }
}

impl Limiter {
    pub(super) fn new(limits: Limits) -> Self {
        Self { limits, buckets: Mutex::new([Bucket::default(); 2]) }
    }

    /// Takes one `call` at `now_ms`; `Err(seconds)` to wait when over the limit.
    fn admit(&self, call: Call, now_ms: u64) -> Result<(), u64> {
        let (slot, rate) = match call {
            Call::Create => (0, self.limits.create),
            _ => (1, self.limits.other),
        };
        let Some(rate) = rate else { return Ok(()) };
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        match buckets[slot].take(rate, now_ms as i64 * 1000, 0.0) {
            Taken::Yes => Ok(()),
            Taken::No { wait_ms } => Err((wait_ms as u64).div_ceil(1000).max(1)),
        }
    }
}

/// What the simulator served since it started.
#[derive(Default)]
pub(super) struct Stats {
    creates: AtomicU64,
    gets: AtomicU64,
    lists: AtomicU64,
    cancels: AtomicU64,
    files: AtomicU64,
    uploads: AtomicU64,
    throttled: AtomicU64,
    webhooks: WebhookStats,
}

/// What the simulator's webhook deliveries met: events delivered (a 2xx),
/// attempts refused or not answered (each retried), and events given up.
#[derive(Default)]
pub(super) struct WebhookStats {
    delivered: AtomicU64,
    retried: AtomicU64,
    given_up: AtomicU64,
}

impl WebhookStats {
    pub(super) fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn given_up(&self) {
        self.given_up.fetch_add(1, Ordering::Relaxed);
    }
}

impl Stats {
    fn served(&self, call: Call) {
        let counter = match call {
            Call::Create => &self.creates,
            Call::Get => &self.gets,
            Call::List => &self.lists,
            Call::Cancel => &self.cancels,
            Call::Other => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn webhooks(&self) -> &WebhookStats {
        &self.webhooks
    }

    /// An output file was served.
    pub(super) fn file(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
    }

    /// A file was created through the Files API.
    pub(super) fn upload(&self) {
        self.uploads.fetch_add(1, Ordering::Relaxed);
    }
}

/// Holds every API call (after its token was checked) to its limit, and
/// counts it.
pub(super) async fn limit(State(sim): State<Arc<Sim>>, request: Request, next: Next) -> Response {
    let call = Call::of(request.method(), request.uri().path());
    if let Err(wait_s) = sim.limiter.admit(call, sim.now_ms()) {
        sim.stats.throttled.fetch_add(1, Ordering::Relaxed);
        return throttled(wait_s);
    }
    sim.stats.served(call);
    next.run(request).await
}

/// Replicate's answer over a limit.
fn throttled(wait_s: u64) -> Response {
    let body = json!({
        "title": "Request was throttled.",
        "detail": format!("Request was throttled. Your rate limit resets in ~{wait_s}s."),
        "status": 429,
    });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(wait_s));
    response
}

/// `GET /sim/_stats`
pub(super) async fn stats(State(sim): State<Arc<Sim>>) -> Response {
    let s = &sim.stats;
    let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Json(json!({
        "creates": read(&s.creates),
        "gets": read(&s.gets),
        "lists": read(&s.lists),
        "cancels": read(&s.cancels),
        "files": read(&s.files),
        "uploads": read(&s.uploads),
        "throttled": read(&s.throttled),
        "webhooks": {
            "delivered": read(&s.webhooks.delivered),
            "retried": read(&s.webhooks.retried),
            "given_up": read(&s.webhooks.given_up),
        },
        "limits": sim.limiter.limits.to_string(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::Rate;

    #[test]
    fn calls_are_told_apart_by_method_and_path() {
        assert_eq!(Call::of(&Method::POST, "/v1/models/a/b/predictions"), Call::Create);
        assert_eq!(Call::of(&Method::POST, "/v1/predictions"), Call::Create);
        assert_eq!(Call::of(&Method::GET, "/v1/predictions"), Call::List);
        assert_eq!(Call::of(&Method::GET, "/v1/predictions/abc"), Call::Get);
        assert_eq!(Call::of(&Method::POST, "/v1/predictions/abc/cancel"), Call::Cancel);
        assert_eq!(Call::of(&Method::GET, "/v1/webhooks/default/secret"), Call::Other);
        assert_eq!(Call::of(&Method::POST, "/v1/files"), Call::Other);
        assert_eq!(Call::of(&Method::GET, "/v1/files"), Call::Other);
        assert_eq!(Call::of(&Method::GET, "/v1/files/abc"), Call::Other);
        assert_eq!(Call::of(&Method::DELETE, "/v1/files/abc"), Call::Other);
    }

    #[test]
    fn creates_and_other_calls_have_limits_of_their_own() {
        let limiter = Limiter::new(Limits {
            create: Some(Rate { per_minute: 60, burst: 2 }),
            other: Some(Rate { per_minute: 600, burst: 3 }),
        });
        let now = 1_000_000;
        assert!(limiter.admit(Call::Create, now).is_ok());
        assert!(limiter.admit(Call::Create, now).is_ok());
        assert_eq!(limiter.admit(Call::Create, now), Err(1), "one a second: back in a second");
        for _ in 0..3 {
            assert!(limiter.admit(Call::Get, now).is_ok(), "gets are not held back by creates");
        }
        assert!(limiter.admit(Call::Cancel, now).is_err());
        assert!(limiter.admit(Call::Create, now + 1_000).is_ok());
        let off = Limiter::new(Limits::OFF);
        assert!((0..10_000).all(|_| off.admit(Call::Create, now).is_ok()));
    }
}
