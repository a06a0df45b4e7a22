//! `POST /webhooks/replicate`: the provider's signed events about our
//! predictions. A verified event *is* the prediction, so it feeds the same
//! transitions as a poll's GET (`lifecycle::apply`): progress from its logs,
//! success → store the output and complete, failure → fail and refund.
//! Events may come twice, late, out of order or not at all: each
//! `webhook-id` is applied once (remembered in the database for twice the
//! signature's tolerance), every transition is a compare-and-set, so a
//! duplicate or a stale event changes nothing, news defers checks only so
//! far past the last one, and polls, re-checks and the reconciler stay the
//! safety net.
//! The answer is sent at once: news (a prediction still running) once it is
//! queued for the batch writer (`news`), an ending once its delivery is
//! recorded; the ending's work runs in the background.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::news::{self, News};
use super::{lifecycle, queries, schedule, store};
use crate::error::Result;
use crate::provider::{Prediction, PredictionStatus};
use crate::server::client::Client;
use crate::server::state::AppState;
use crate::standard_webhooks::{self, Secret};

/// Where events are received, the key that signs them, and the gate in
/// front of the route.
#[derive(Clone)]
pub struct Receiver {
    pub secret: Secret,
    /// `{DARKROOM_PUBLIC_URL}/webhooks/replicate`.
    pub url: url::Url,
    pub gate: Arc<Gate>,
    /// Where news waits for its batch.
    pub news: Arc<News>,
}

impl Receiver {
    pub fn new(secret: Secret, url: url::Url, news: News) -> Self {
        Self { secret, url, gate: Arc::default(), news: Arc::new(news) }
    }
}

/// Largest event body read: a prediction with its input and a long run's
/// logs is a few dozen KB.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// Events read and checked at once; more wait for a place, so strangers
/// cannot make the server hold many bodies (a waiting request's body is
/// not read yet).
pub const MAX_EVENTS_AT_ONCE: usize = 32;

/// How long an event waits for a place before it is answered 503 (the
/// provider tries again later). A burst of events (thousands of predictions
/// starting together) waits its turn instead of being sent back: a
/// provider gives up on an event after a few refusals, and a lost
/// `completed` costs a person the wait for a check.
pub const PLACE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Refused events (bad signature, stale, malformed, too large) a client
/// address may send a minute; one more, and its requests are refused unread
/// for a minute.
pub const REFUSALS_PER_MINUTE: u32 = 20;

/// What strangers can make the route do: bounded bodies, a bounded number
/// at once, and a minute out for an address that keeps sending refused
/// events. The provider's genuine events are never counted against it.
pub struct Gate {
    at_once: tokio::sync::Semaphore,
    refusals: crate::server::auth::AttemptLimiter<IpAddr>,
    /// Addresses over [`REFUSALS_PER_MINUTE`], until when (bounded).
    barred: quick_cache::sync::Cache<IpAddr, i64>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            at_once: tokio::sync::Semaphore::new(MAX_EVENTS_AT_ONCE),
            refusals: crate::server::auth::AttemptLimiter::per_minute(REFUSALS_PER_MINUTE),
            barred: quick_cache::sync::Cache::new(10_000),
        }
    }
}

impl Gate {
    /// Answers `client`'s request with `answer`, unless the client is
    /// barred or too many are being read; a refused event (401, 400, 413)
    /// counts against the client.
    pub async fn admit(&self, client: IpAddr, now: i64, answer: impl Future<Output = Response>) -> Response {
        if self.barred(client, now) {
            return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "60")], "too many refused events")
                .into_response();
        }
        let Ok(Ok(_place)) = tokio::time::timeout(PLACE_WAIT, self.at_once.acquire()).await else {
            return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], "busy, try again").into_response();
        };
        let answer = answer.await;
        if matches!(answer.status(), StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE)
        {
            self.refused(client, now);
        }
        answer
    }

    fn barred(&self, client: IpAddr, now: i64) -> bool {
        self.barred.get(&client).is_some_and(|until| until > now)
    }

    /// Counts a refused event from `client`; past the limit, bars it.
    fn refused(&self, client: IpAddr, now: i64) {
        if self.refusals.check(client).is_err() {
            self.barred.insert(client, now + 60_000);
        }
    }
}

/// Longest `webhook-id` taken (the provider's are a few dozen characters).
const MAX_ID_CHARS: usize = 128;

/// The handler. Nothing is read from a stranger beyond the headers until
/// they name a fresh, signed message: the body (bounded) is read only then,
/// at most [`MAX_EVENTS_AT_ONCE`] at a time, and not at all from an address
/// that keeps sending refused events.
pub async fn receive(State(state): State<AppState>, request: Request) -> Response {
    let Some(receiver) = &state.webhooks else {
        return (StatusCode::NOT_FOUND, "webhooks are not enabled (DARKROOM_PUBLIC_URL is not set)").into_response();
    };
    let client = request.extensions().get::<Client>().copied().unwrap_or_else(Client::unknown).limit_key();
    receiver.gate.admit(client, state.clock.now_ms(), read_event(&state, receiver, request)).await
}

/// Reads, verifies and applies (in the background) one event.
async fn read_event(state: &AppState, receiver: &Receiver, request: Request) -> Response {
    let now_secs = (state.clock.now_ms() / 1000).max(0) as u64;
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let fresh = headers
        .get(standard_webhooks::TIMESTAMP_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|ts| ts.abs_diff(now_secs) <= standard_webhooks::TOLERANCE_SECS);
    if !fresh
        || !headers.contains_key(standard_webhooks::ID_HEADER)
        || !headers.contains_key(standard_webhooks::SIGNATURE_HEADER)
    {
        return (StatusCode::UNAUTHORIZED, "invalid webhook signature").into_response();
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_EVENT_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, format!("an event is at most {} KiB", MAX_EVENT_BYTES / 1024))
            .into_response();
    };
    if let Err(e) = standard_webhooks::verify_headers(&receiver.secret, &headers, &body, now_secs) {
        tracing::warn!("webhook refused: {e:?}");
        return (StatusCode::UNAUTHORIZED, "invalid webhook signature").into_response();
    }
    let prediction = match Prediction::from_json(&body) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("webhook with an unreadable body: {e}");
            return (StatusCode::BAD_REQUEST, "not a prediction").into_response();
        }
    };
    // Signed, so the id is the provider's; each is applied once, wherever it
    // arrives (a duplicate, or a capture replayed within the tolerance).
    let id = headers.get(standard_webhooks::ID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
        return (StatusCode::BAD_REQUEST, "invalid webhook-id").into_response();
    }
    if is_news(&prediction) {
        return queue_news(state, receiver, id, prediction).await;
    }
    accept(state, id, prediction).await
}

/// Whether `prediction` is news (still running), not an ending.
fn is_news(prediction: &Prediction) -> bool {
    matches!(prediction.status, PredictionStatus::Starting | PredictionStatus::Processing) && !prediction.data_removed
}

/// Takes a verified event about a running Replicate prediction: queued for
/// the batch writer, which records its delivery and its reading; answered
/// once queued (503 when the queue has had no room for [`PLACE_WAIT`]).
async fn queue_news(state: &AppState, receiver: &Receiver, delivery: &str, prediction: Prediction) -> Response {
    let now = state.clock.now_ms();
    // Replicate's predictions: checks spaced on Replicate's budget.
    let spacing = schedule::spacing_ms(state).await;
    let ends_at = schedule::expected_end_ms(&prediction, now);
    let item = news::Item {
        delivery: delivery.to_owned(),
        next_check: schedule::after_event(ends_at, now, spacing),
        trust_ms: schedule::EVENT_TRUST_MS.max(spacing),
        progress: prediction.progress,
        ends_at,
        queue: prediction.queue_position,
        prediction: prediction.id,
        received_at: now,
    };
    if receiver.news.send(item, PLACE_WAIT).await {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], "busy, try again").into_response()
    }
}

/// Takes a verified event about `prediction`: applied in the background
/// the first time its `delivery` key is seen on any instance (remembered
/// in the database), answered as a duplicate after that. The answer for
/// the provider.
pub(super) async fn accept(state: &AppState, delivery: &str, prediction: Prediction) -> Response {
    match store::first_delivery(&state.db, delivery, state.clock.now_ms()).await {
        Ok(true) => {}
        Ok(false) => {
            state.metrics.webhook_duplicate();
            return (StatusCode::OK, "duplicate").into_response();
        }
        Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response(),
    }
    state.metrics.webhook();
    let state = state.clone();
    tokio::spawn(async move {
        let id = prediction.id.clone();
        if let Err(e) = apply_event(&state, prediction).await {
            tracing::warn!(prediction = %id, "webhook event: {e}");
        }
    });
    (StatusCode::OK, "ok").into_response()
}

/// Applies one verified event to its task, if we know the prediction.
async fn apply_event(state: &AppState, prediction: Prediction) -> Result<()> {
    let Some(task) = queries::of_prediction(&state.db, &prediction.id).await? else {
        tracing::debug!(prediction = %prediction.id, "webhook for an unknown prediction: ignored");
        return Ok(());
    };
    if task.state.is_finished() {
        return Ok(());
    }
    let now = state.clock.now_ms();
    let spacing = schedule::spacing_for(state, &task.model).await;
    let ends_at = schedule::expected_end_ms(&prediction, now);
    let next_check = schedule::after_event(ends_at, now, spacing);
    if is_news(&prediction) {
        // News through `accept` (fal's route): record the progress and
        // defer the provider checks; a poller holding a claim keeps it.
        let trust = schedule::EVENT_TRUST_MS.max(spacing);
        let reading = store::Reading::of(&task, &prediction).map(|r| r.ending(ends_at));
        store::note_event(&state.db, &task.id, reading, next_check, trust, now).await?;
        return Ok(());
    }
    // An ending: take the task over (unless another poller is storing its
    // output: it needs no news).
    let Some(claim) = store::claim_for_event(&state.db, &task.id, now, next_check).await? else { return Ok(()) };
    lifecycle::apply(state, &task, &claim, Ok(prediction), now).await?;
    if let Some(task) = queries::load(&state.db, &task.id).await? {
        state.finished.remember(&task, None);
    }
    Ok(())
}

/// How long an applied event's id is remembered: twice the signature's
/// tolerance, so a replay is refused as stale or as a duplicate.
pub const DELIVERY_MEMORY_MS: i64 = 2 * standard_webhooks::TOLERANCE_SECS as i64 * 1000;

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts an event whose handling lasts until `release` changes (or its
    /// sender is dropped).
    fn held(gate: &Arc<Gate>, release: &tokio::sync::watch::Receiver<()>) -> tokio::task::JoinHandle<StatusCode> {
        let (gate, mut release) = (Arc::clone(gate), release.clone());
        tokio::spawn(async move {
            let answer = async move {
                let _ = release.changed().await;
                StatusCode::OK.into_response()
            };
            gate.admit(IpAddr::from([203, 0, 113, 7]), 0, answer).await.status()
        })
    }

    #[tokio::test]
    async fn events_beyond_the_places_wait_for_one_then_are_refused() {
        let gate = Arc::new(Gate::default());
        let (release, waiting) = tokio::sync::watch::channel(());
        let first: Vec<_> = (0..MAX_EVENTS_AT_ONCE).map(|_| held(&gate, &waiting)).collect();
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        // One more waits for a place, and gets one when an event ends.
        let next = held(&gate, &waiting);
        tokio::time::sleep(PLACE_WAIT / 4).await;
        assert!(!next.is_finished(), "it waits rather than being refused");
        release.send(()).unwrap();
        for h in first {
            assert_eq!(h.await.unwrap(), StatusCode::OK);
        }
        assert_eq!(next.await.unwrap(), StatusCode::OK);
        // With every place held past the wait, the next is told to come back.
        let (_release, waiting) = tokio::sync::watch::channel(());
        let _held: Vec<_> = (0..MAX_EVENTS_AT_ONCE).map(|_| held(&gate, &waiting)).collect();
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        let refused = held(&gate, &waiting);
        assert_eq!(refused.await.unwrap(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
