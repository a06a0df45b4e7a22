//! Webhooks as Replicate sends them (and as fal does, see [`Dialect`]):
//! when a create carries `webhook`, the simulator POSTs the prediction,
//! exactly as a GET would answer it at that moment, signed the Standard
//! Webhooks way, on `start`, on `logs` (at most
//! every 500 ms, only when progress changed) and on `completed`; `output`
//! is sent on success when `completed` was filtered out (the simulator's
//! output only appears on completion).
//!
//! Delivery is one spawned task per prediction, in memory: a restart loses
//! it, as webhooks may be lost anyway (polls stay the safety net). The
//! number of tasks alive at once is capped by a semaphore
//! ([`MAX_ACTIVE_DELIVERIES`]); past the cap a prediction's webhooks are
//! dropped with a warning, so memory stays bounded whatever the load. A
//! task ends when its prediction finishes or is canceled (and its
//! completed event is delivered or given up on).

use std::{iter, sync::Arc, time::Duration};

use bytes::Bytes;
use serde_json::Value;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::sleep,
};
use url::Url;

use super::{
    Sim,
    directive::Directives,
    id::{Tag, Ticket},
    timeline::{Status, prediction_json, state_at, steps_done},
};
use crate::standard_webhooks::{self, ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// Predictions whose webhooks are being delivered at once, at most.
pub(super) const MAX_ACTIVE_DELIVERIES: usize = 16_384;
/// `logs` events are sent at most this often.
const LOGS_EVERY: Duration = Duration::from_millis(500);
/// Waits before each retry of a failed delivery (non-2xx or transport error).
const RETRY_DELAYS: [Duration; 3] = [Duration::from_millis(250), Duration::from_secs(1), Duration::from_secs(3)];
/// One delivery attempt, connection included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How late a `#hook-late` completed event comes.
const LATE_BY: Duration = Duration::from_secs(10);
/// Longest webhook URL accepted.
const MAX_URL_LEN: usize = 2048;

/// A set of webhook events (`webhook_events_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Events(u8);

impl Events {
    pub(super) const START: Self = Self(1);
    pub(super) const OUTPUT: Self = Self(2);
    pub(super) const LOGS: Self = Self(4);
    pub(super) const COMPLETED: Self = Self(8);
    pub(super) const ALL: Self = Self(15);
    const NAMES: [(&'static str, Self); 4] =
        [("start", Self::START), ("output", Self::OUTPUT), ("logs", Self::LOGS), ("completed", Self::COMPLETED)];

    fn has(self, event: Self) -> bool {
        self.0 & event.0 != 0
    }
}

/// Whose webhooks: Replicate's (every event, the prediction as a GET
/// answers it, Standard Webhooks signatures) or fal's (the completion
/// only, fal's payload, ED25519 signatures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Replicate,
    Fal,
}

/// Where and what to deliver for one prediction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Webhook {
    pub url: Url,
    pub events: Events,
    pub dialect: Dialect,
}

/// A create's `webhook` / `webhook_events_filter` that cannot be used: the
/// field, the kind of problem and a description, for a 422.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Invalid {
    pub field: &'static str,
    pub kind: &'static str,
    pub description: String,
}

fn invalid(field: &'static str, kind: &'static str, description: impl Into<String>) -> Invalid {
    Invalid { field, kind, description: description.into() }
}

/// Reads `webhook` (an http(s) URL) and `webhook_events_filter` (a subset of
/// start, output, logs, completed; absent or empty means all) from a
/// create's body. `None` when no webhook was asked for.
pub(super) fn parse(json: &Value) -> Result<Option<Webhook>, Invalid> {
    const FILTER: &str = "webhook_events_filter";
    let events = match json.get(FILTER) {
        None | Some(Value::Null) => Events::ALL,
        Some(Value::Array(items)) if items.is_empty() => Events::ALL,
        Some(Value::Array(items)) => {
            let mut events = Events(0);
            for item in items {
                let named = item.as_str().and_then(|s| Events::NAMES.iter().find(|(name, _)| *name == s));
                let Some((_, event)) = named else {
                    return Err(invalid(FILTER, "enum", "each event must be one of start, output, logs, completed"));
                };
                events.0 |= event.0;
            }
            events
        }
        Some(_) => return Err(invalid(FILTER, "invalid_type", "must be a list of event names")),
    };
    let raw = match json.get("webhook") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(raw)) => raw,
        Some(_) => return Err(invalid("webhook", "invalid_type", "must be a URL string")),
    };
    let url = parse_url(raw, "webhook")?;
    Ok(Some(Webhook { url, events, dialect: Dialect::Replicate }))
}

/// A webhook URL (`field` names it in the error): http(s), with a host,
/// of bounded length.
pub(super) fn parse_url(raw: &str, field: &'static str) -> Result<Url, Invalid> {
    if raw.len() > MAX_URL_LEN {
        return Err(invalid(field, "string_too_long", format!("must be at most {MAX_URL_LEN} characters")));
    }
    Url::parse(raw)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty()))
        .ok_or_else(|| invalid(field, "invalid_format", "must be an http:// or https:// URL"))
}

/// The simulator's webhook sender: one HTTP client and the cap on tasks.
pub(super) struct Hooks {
    /// `None` when no client could be built; webhooks are then not sent.
    client: Option<reqwest::Client>,
    slots: Arc<Semaphore>,
}

impl Hooks {
    pub(super) fn new() -> Self {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(ATTEMPT_TIMEOUT)
            // A webhook is delivered to the URL given, never elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("darkroom-sim-webhooks")
            .build()
            .map_err(|e| tracing::warn!(error = %e, "simulator webhooks are disabled: no HTTP client"))
            .ok();
        Self { client, slots: Arc::new(Semaphore::new(MAX_ACTIVE_DELIVERIES)) }
    }
}

/// Starts delivering `hook`'s events for the prediction `id`, in the
/// background, unless too many deliveries are already running.
pub(super) fn spawn(sim: &Arc<Sim>, id: String, ticket: Ticket, tag: Tag, hook: Webhook) {
    let Some(client) = sim.hooks.client.clone() else { return };
    let Ok(permit) = Arc::clone(&sim.hooks.slots).try_acquire_owned() else {
        tracing::warn!(limit = MAX_ACTIVE_DELIVERIES, "too many simulator webhooks in flight; dropping this one's");
        return;
    };
    let delivery = Delivery { sim: Arc::clone(sim), client, id, ticket, tag, hook };
    tokio::spawn(delivery.run(permit));
}

/// Everything one prediction's delivery task needs.
struct Delivery {
    sim: Arc<Sim>,
    client: reqwest::Client,
    id: String,
    ticket: Ticket,
    tag: Tag,
    hook: Webhook,
}

impl Delivery {
    async fn run(self, _permit: OwnedSemaphorePermit) {
        let events = self.hook.events;
        let directives = Directives::parse(&self.ticket.prompt);
        let now = self.sim.now_ms();
        let start = self.body_at(now);
        if events.has(Events::START) {
            self.deliver(&new_msg_id(), &start).await;
        }

        // While running: a `logs` event when progress changed, at most every
        // 500 ms; wake at completion to send `completed` right away. The
        // logs change with the steps done, which are compared (the body is
        // made only for an event: thousands of predictions wake here).
        let mut last_steps = steps_done(&state_at(&self.ticket, self.canceled_at(), now));
        let mut last_sent: Option<u64> = None;
        let status = loop {
            let now = self.sim.now_ms();
            let status = state_at(&self.ticket, self.canceled_at(), now).status;
            if status.is_terminal() {
                break status;
            }
            let until_done = Duration::from_millis(self.finishes_ms().saturating_sub(now).max(1));
            self.sim.cfg.clock.sleep(LOGS_EVERY.min(until_done)).await;
            let now = self.sim.now_ms();
            let state = state_at(&self.ticket, self.canceled_at(), now);
            if !events.has(Events::LOGS) || state.status.is_terminal() {
                continue;
            }
            if last_sent.is_some_and(|at| now.saturating_sub(at) < LOGS_EVERY.as_millis() as u64) {
                continue;
            }
            let steps = steps_done(&state);
            if steps != last_steps {
                last_steps = steps;
                last_sent = Some(now);
                self.deliver(&new_msg_id(), &self.body_at(now)).await;
            }
        };

        if !events.has(Events::COMPLETED) {
            if events.has(Events::OUTPUT) && status == Status::Succeeded {
                self.deliver(&new_msg_id(), &self.body_at(self.sim.now_ms())).await;
            }
            return;
        }
        if directives.hook_lost {
            tracing::debug!(id = %self.id, "#hook-lost: no completed webhook");
            return;
        }
        if directives.hook_late {
            self.sim.cfg.clock.sleep(LATE_BY).await;
        }
        let msg_id = new_msg_id();
        let completed = self.body_at(self.sim.now_ms());
        self.deliver(&msg_id, &completed).await;
        if directives.hook_dup {
            // The same event again, then (Replicate) an earlier, processing
            // one late.
            self.deliver(&msg_id, &completed).await;
            if self.hook.dialect == Dialect::Replicate {
                self.deliver(&new_msg_id(), &self.stale_body()).await;
            }
        }
    }

    fn canceled_at(&self) -> Option<u64> {
        self.sim.soft.canceled_at(&self.tag)
    }

    /// When the prediction ends unless canceled by hand: its duration, or
    /// `Cancel-After` when sooner.
    fn finishes_ms(&self) -> u64 {
        let duration = u64::from(self.ticket.duration_ms);
        let limit = match self.ticket.cancel_after_ms {
            0 => duration,
            after => duration.min(u64::from(after)),
        };
        self.ticket.created_ms.saturating_add(limit)
    }

    /// The prediction as GET answers it at `now` (fal: its completion
    /// event).
    fn body_at(&self, now: u64) -> Value {
        let state = state_at(&self.ticket, self.canceled_at(), now);
        match self.hook.dialect {
            Dialect::Replicate => prediction_json(&self.sim, &self.id, &self.ticket, &state, now),
            Dialect::Fal => super::fal::event_json(&self.sim, &self.id, &self.ticket, &state),
        }
    }

    /// The prediction as it was just before it completed.
    fn stale_body(&self) -> Value {
        let state = state_at(&self.ticket, self.canceled_at(), self.sim.now_ms());
        let before = state.completed_ms.unwrap_or(self.ticket.created_ms).saturating_sub(1).max(self.ticket.created_ms);
        self.body_at(before)
    }

    /// POSTs one event, signed, retrying a non-2xx answer or a transport
    /// error after each of [`RETRY_DELAYS`]. Every attempt carries the same
    /// `webhook-id` and a fresh timestamp and signature.
    async fn deliver(&self, msg_id: &str, body: &Value) {
        let Ok(bytes) = serde_json::to_vec(body).map(Bytes::from) else { return };
        let host = self.hook.url.host_str().unwrap_or_default();
        for (attempt, delay) in iter::once(Duration::ZERO).chain(RETRY_DELAYS).enumerate() {
            sleep(delay).await;
            let timestamp = self.sim.now_ms() / 1000;
            let request =
                self.client.post(self.hook.url.clone()).header(reqwest::header::CONTENT_TYPE, "application/json");
            let request = match self.hook.dialect {
                Dialect::Replicate => {
                    let signature = standard_webhooks::sign(&self.sim.cfg.webhook_secret, msg_id, timestamp, &bytes);
                    request
                        .header(ID_HEADER, msg_id)
                        .header(TIMESTAMP_HEADER, timestamp.to_string())
                        .header(SIGNATURE_HEADER, signature)
                }
                Dialect::Fal => {
                    use crate::fal_webhooks as fal;
                    let key = super::fal::webhook_key(&self.sim.cfg.secret);
                    let signature = fal::sign(&key, &self.id, super::fal::USER_ID, timestamp, &bytes);
                    request
                        .header(fal::REQUEST_ID_HEADER, &self.id)
                        .header(fal::USER_ID_HEADER, super::fal::USER_ID)
                        .header(fal::TIMESTAMP_HEADER, timestamp.to_string())
                        .header(fal::SIGNATURE_HEADER, signature)
                }
            };
            let sent = request.body(bytes.clone()).send().await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    self.sim.stats.webhooks().delivered();
                    return;
                }
                Ok(response) => tracing::debug!(host, attempt, status = %response.status(), "webhook refused"),
                Err(e) => tracing::debug!(host, attempt, error = %e, "webhook not delivered"),
            }
            if attempt < RETRY_DELAYS.len() {
                self.sim.stats.webhooks().retried();
            }
        }
        self.sim.stats.webhooks().given_up();
        tracing::warn!(id = %self.id, host, "simulator webhook given up after {} attempts", RETRY_DELAYS.len() + 1);
    }
}

/// A unique `webhook-id`.
fn new_msg_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(body: Value) -> Result<Option<Webhook>, Invalid> {
        parse(&body)
    }

    #[test]
    fn a_webhook_is_an_http_url_with_all_events_by_default() {
        assert_eq!(parsed(json!({"input": {}})), Ok(None));
        assert_eq!(parsed(json!({"webhook": null})), Ok(None));
        let hook = parsed(json!({"webhook": "https://example.com/hooks?x=1"})).ok().flatten();
        assert_eq!(hook.as_ref().map(|h| h.url.as_str()), Some("https://example.com/hooks?x=1"));
        assert_eq!(hook.map(|h| h.events), Some(Events::ALL));
        let empty = parsed(json!({"webhook": "http://127.0.0.1:9/x", "webhook_events_filter": []}));
        assert_eq!(empty.ok().flatten().map(|h| h.events), Some(Events::ALL));
    }

    #[test]
    fn the_filter_picks_events() {
        let hook = parsed(json!({"webhook": "http://h/", "webhook_events_filter": ["completed", "start", "start"]}));
        let events = hook.ok().flatten().map(|h| h.events).unwrap_or(Events(0));
        assert!(events.has(Events::START) && events.has(Events::COMPLETED));
        assert!(!events.has(Events::LOGS) && !events.has(Events::OUTPUT));
    }

    #[test]
    fn anything_else_is_invalid_input() {
        for (body, field) in [
            (json!({"webhook": "ftp://example.com/x"}), "webhook"),
            (json!({"webhook": "file:///etc/passwd"}), "webhook"),
            (json!({"webhook": "example.com/hook"}), "webhook"),
            (json!({"webhook": ""}), "webhook"),
            (json!({"webhook": "http://"}), "webhook"),
            (json!({"webhook": 7}), "webhook"),
            (json!({"webhook": format!("https://h/{}", "a".repeat(MAX_URL_LEN))}), "webhook"),
            (json!({"webhook": "https://h/", "webhook_events_filter": ["finished"]}), "webhook_events_filter"),
            (json!({"webhook": "https://h/", "webhook_events_filter": [1]}), "webhook_events_filter"),
            (json!({"webhook": "https://h/", "webhook_events_filter": "completed"}), "webhook_events_filter"),
        ] {
            assert_eq!(parsed(body.clone()).err().map(|e| e.field), Some(field), "{body}");
        }
    }

    #[test]
    fn message_ids_are_unique() {
        let a = new_msg_id();
        assert!(a.starts_with("msg_") && a.len() > 20);
        assert_ne!(a, new_msg_id());
    }
}
