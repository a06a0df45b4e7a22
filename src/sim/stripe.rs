//! The built-in Stripe simulator, under `/sim/stripe/`: the subset of
//! Stripe's API Darkroom calls, with Stripe's paths and shapes, so the
//! real client code runs in development and tests, and Stripe's official
//! clients accept it.
//!
//! - `POST /v1/checkout/sessions` (form-encoded, `Idempotency-Key`
//!   honoured), `GET /v1/checkout/sessions/{id}`,
//!   `GET /v1/payment_intents/{id}`, `POST /v1/refunds`,
//!   `POST /v1/disputes/{id}` (evidence; `submit=true` decides it),
//!   `GET /v1/events`; any secret key that starts with `sk_test_`;
//! - the hosted checkout page (`/pay/{session}`): a plain HTML form, a
//!   "Card number" field and a "Pay" button, working without JavaScript.
//!   Cards follow Stripe's test cards: `4242424242424242` pays,
//!   `4000000000000002` is declined, `4000000000000259` pays and is then
//!   disputed; and two of the simulator's own settle later:
//!   `4000000000000101` succeeds, `4000000000000341` fails;
//! - signed events (`Stripe-Signature`, with the secret at `GET /_secret`)
//!   POSTed to the app's `/webhooks/stripe`: `checkout.session.completed`,
//!   `checkout.session.async_payment_succeeded` / `_failed`,
//!   `charge.refunded`, `charge.dispute.created`, `charge.dispute.closed`,
//!   `charge.dispute.funds_reinstated`; retried on failure;
//! - for tests, as an operator would see them: `POST /_hold` keeps events
//!   back, `POST /_release` (`order=reverse` for out of order) sends them,
//!   `POST /_drop` loses them, and `POST /_events/{id}/resend` (the same
//!   event again) or `/resend_as_new` (the same payment under a new event
//!   id) replay one.
//!
//! Stateful, in this process's memory and bounded ([`KEPT`] of each kind):
//! test mode has no restart to survive.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::{
    Form, Json, Router,
    body::Bytes,
    extract::{Path, Query, Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use crate::server::clock::Clock;
use crate::stripe::signature;

/// Sessions, charges, disputes and events kept; the oldest go first.
const KEPT: usize = 10_000;
/// An asynchronous payment settles this long after checkout.
const SETTLES_AFTER: Duration = Duration::from_millis(1_500);
/// A dispute is opened this long after the payment.
const DISPUTED_AFTER: Duration = Duration::from_millis(500);
/// Waits before each retry of a delivery that failed.
const RETRY_DELAYS: [Duration; 4] =
    [Duration::from_millis(250), Duration::from_secs(1), Duration::from_secs(3), Duration::from_secs(10)];

/// How the Stripe simulator is set up.
#[derive(Clone)]
pub struct StripeSimConfig {
    /// Where events are POSTed (the app's `/webhooks/stripe`).
    pub webhook_url: url::Url,
    /// The endpoint's signing secret (`whsec_…`).
    pub webhook_secret: String,
    /// Where the hosted page is (`http://…/sim/stripe`).
    pub public_base: url::Url,
    pub clock: Clock,
}

struct StripeSim {
    cfg: StripeSimConfig,
    base: String,
    http: reqwest::Client,
    state: Mutex<Books>,
}

#[derive(Default)]
struct Books {
    sessions: Kept<Value>,
    /// Idempotency key → session id.
    idempotent: Kept<String>,
    charges: Kept<Value>,
    disputes: Kept<Value>,
    events: Kept<Value>,
    /// Events kept back while `/_hold` is on.
    held: Option<Vec<Value>>,
}

/// A bounded map that forgets its oldest entries.
struct Kept<T> {
    map: HashMap<String, T>,
    order: VecDeque<String>,
}

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Self { map: HashMap::new(), order: VecDeque::new() }
    }
}

impl<T> Kept<T> {
    fn insert(&mut self, key: String, value: T) {
        if self.map.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
            if self.order.len() > KEPT
                && let Some(old) = self.order.pop_front()
            {
                self.map.remove(&old);
            }
        }
    }

    fn get(&self, key: &str) -> Option<&T> {
        self.map.get(key)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut T> {
        self.map.get_mut(key)
    }

    /// The newest first.
    fn newest(&self) -> impl Iterator<Item = &T> {
        self.order.iter().rev().filter_map(|k| self.map.get(k))
    }
}

/// The simulator's routes, relative to where the app nests them
/// (`/sim/stripe`).
pub fn router(cfg: StripeSimConfig) -> Router {
    let base = cfg.public_base.as_str().trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
    let sim = Arc::new(StripeSim { cfg, base, http, state: Mutex::new(Books::default()) });
    let api = Router::new()
        .route("/v1/checkout/sessions", post(create_session))
        .route("/v1/checkout/sessions/{id}", get(retrieve_session))
        .route("/v1/payment_intents/{id}", get(retrieve_payment_intent))
        .route("/v1/refunds", post(create_refund))
        .route("/v1/disputes/{id}", post(update_dispute))
        .route("/v1/events", get(list_events))
        .route("/_hold", post(hold))
        .route("/_release", post(release))
        .route("/_drop", post(drop_held))
        .route("/_events/{id}/resend", post(resend))
        .route("/_events/{id}/resend_as_new", post(resend_as_new))
        .route_layer(middleware::from_fn(require_test_key));
    Router::new().merge(api).route("/pay/{id}", get(page).post(pay)).route("/_secret", get(secret)).with_state(sim)
}

impl StripeSim {
    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_secs(&self) -> i64 {
        self.cfg.clock.now_ms() / 1000
    }
}

/// `Authorization: Bearer sk_test_…`, as Stripe's test mode takes it.
async fn require_test_key(request: Request, next: Next) -> Response {
    let key = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match key {
        Some(k) if k.starts_with("sk_test_") && k.len() > "sk_test_".len() => next.run(request).await,
        _ => stripe_error(StatusCode::UNAUTHORIZED, "invalid_request_error", "Invalid API Key provided."),
    }
}

/// An error in Stripe's shape.
fn stripe_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"type": kind, "message": message}}))).into_response()
}

/// A random Stripe-like id: `cs_test_…`, `pi_…`.
fn new_id(prefix: &str) -> String {
    let bytes: [u8; 12] = rand::random();
    let tail: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}_{tail}")
}

/// `POST /v1/checkout/sessions`
async fn create_session(State(sim): State<Arc<StripeSim>>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let missing = |k: &str| {
        stripe_error(StatusCode::BAD_REQUEST, "invalid_request_error", &format!("Missing required param: {k}."))
    };
    let Some(success_url) = field("success_url") else { return missing("success_url") };
    let Some(currency) = field("line_items[0][price_data][currency]") else {
        return missing("line_items[0][price_data][currency]");
    };
    let Some(unit_amount) = field("line_items[0][price_data][unit_amount]").and_then(|a| a.parse::<i64>().ok()) else {
        return missing("line_items[0][price_data][unit_amount]");
    };
    let quantity = field("line_items[0][quantity]").and_then(|q| q.parse::<i64>().ok()).unwrap_or(1);
    if field("mode") != Some("payment") || unit_amount <= 0 || !(1..=100).contains(&quantity) {
        return stripe_error(StatusCode::BAD_REQUEST, "invalid_request_error", "Invalid line items or mode.");
    }
    let idempotency = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut books = sim.books();
    if let Some(key) = &idempotency
        && let Some(id) = books.idempotent.get(key).cloned()
        && let Some(session) = books.sessions.get(&id)
    {
        return Json(session.clone()).into_response();
    }
    let metadata: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("metadata[")?.strip_suffix(']')?.to_owned(), Value::from(v.clone()))))
        .collect();
    let payment_metadata: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.strip_prefix("payment_intent_data[metadata][")?.strip_suffix(']')?.to_owned(),
                Value::from(v.clone()),
            ))
        })
        .collect();
    let id = new_id("cs_test");
    let now = sim.now_secs();
    let session = json!({
        "id": id,
        "object": "checkout.session",
        "amount_subtotal": unit_amount * quantity,
        "amount_total": unit_amount * quantity,
        "cancel_url": field("cancel_url"),
        "client_reference_id": field("client_reference_id"),
        "created": now,
        "currency": currency.to_ascii_lowercase(),
        "expires_at": now + 24 * 3600,
        "line_items_name": field("line_items[0][price_data][product_data][name]"),
        "livemode": false,
        "metadata": metadata,
        "payment_intent_metadata": payment_metadata,
        "mode": "payment",
        "payment_intent": null,
        "payment_status": "unpaid",
        "status": "open",
        "success_url": success_url,
        "url": format!("{}/pay/{id}", sim.base),
    });
    books.sessions.insert(id.clone(), session.clone());
    if let Some(key) = idempotency {
        books.idempotent.insert(key, id);
    }
    Json(public_session(&session)).into_response()
}

/// A session as the API shows it (without the simulator's own notes).
fn public_session(session: &Value) -> Value {
    let mut shown = session.clone();
    if let Some(o) = shown.as_object_mut() {
        o.remove("line_items_name");
        o.remove("payment_intent_metadata");
    }
    shown
}

/// `GET /v1/checkout/sessions/{id}`
async fn retrieve_session(State(sim): State<Arc<StripeSim>>, Path(id): Path<String>) -> Response {
    match sim.books().sessions.get(&id) {
        Some(s) => Json(public_session(s)).into_response(),
        None => {
            stripe_error(StatusCode::NOT_FOUND, "invalid_request_error", &format!("No such checkout.session: '{id}'"))
        }
    }
}

/// `GET /v1/payment_intents/{id}`: the payment of a completed session.
async fn retrieve_payment_intent(State(sim): State<Arc<StripeSim>>, Path(id): Path<String>) -> Response {
    let books = sim.books();
    let charge = books.charges.newest().find(|c| c["payment_intent"] == id.as_str()).cloned();
    match charge {
        Some(c) => Json(json!({
            "id": id,
            "object": "payment_intent",
            "amount": c["amount"],
            "currency": c["currency"],
            "latest_charge": c["id"],
            "metadata": c["metadata"],
            "status": if c["paid"] == true { "succeeded" } else { "processing" },
        }))
        .into_response(),
        None => {
            stripe_error(StatusCode::NOT_FOUND, "invalid_request_error", &format!("No such payment_intent: '{id}'"))
        }
    }
}

/// What a test card does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Card {
    Pays,
    Declined,
    PaysThenDisputed,
    SettlesLater,
    FailsLater,
    Unknown,
}

impl Card {
    fn of(number: &str) -> Self {
        let digits: String = number.chars().filter(char::is_ascii_digit).collect();
        match digits.as_str() {
            "4242424242424242" => Self::Pays,
            "4000000000000002" => Self::Declined,
            "4000000000000259" => Self::PaysThenDisputed,
            "4000000000000101" => Self::SettlesLater,
            "4000000000000341" => Self::FailsLater,
            _ => Self::Unknown,
        }
    }
}

/// `GET /pay/{id}`: the hosted checkout page.
async fn page(State(sim): State<Arc<StripeSim>>, Path(id): Path<String>) -> Response {
    let session = sim.books().sessions.get(&id).cloned();
    match session {
        Some(s) if s["status"] == "open" => checkout_page(&s, None, StatusCode::OK),
        Some(s) => checkout_page(&s, Some("This checkout is over."), StatusCode::GONE),
        None => (StatusCode::NOT_FOUND, "No such checkout").into_response(),
    }
}

#[derive(serde::Deserialize)]
struct PayForm {
    #[serde(default)]
    card_number: String,
}

/// `POST /pay/{id}`: pays with the card typed in.
async fn pay(State(sim): State<Arc<StripeSim>>, Path(id): Path<String>, Form(form): Form<PayForm>) -> Response {
    let Some(session) = sim.books().sessions.get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, "No such checkout").into_response();
    };
    if session["status"] != "open" {
        return checkout_page(&session, Some("This checkout is over."), StatusCode::GONE);
    }
    let card = Card::of(&form.card_number);
    let refused = match card {
        Card::Declined => Some("Your card was declined."),
        Card::Unknown => Some("Use a test card: 4242 4242 4242 4242 pays."),
        _ => None,
    };
    if let Some(message) = refused {
        return checkout_page(&session, Some(message), StatusCode::PAYMENT_REQUIRED);
    }
    let settled = matches!(card, Card::Pays | Card::PaysThenDisputed);
    let (session, charge) = complete(&sim, &id, settled);
    sim.emit("checkout.session.completed", public_session(&session));
    match card {
        Card::PaysThenDisputed => {
            let (sim, charge) = (Arc::clone(&sim), charge.clone());
            tokio::spawn(async move {
                sim.cfg.clock.sleep(DISPUTED_AFTER).await;
                sim.open_dispute(&charge);
            });
        }
        Card::SettlesLater | Card::FailsLater => {
            let sim = Arc::clone(&sim);
            tokio::spawn(async move {
                sim.cfg.clock.sleep(SETTLES_AFTER).await;
                sim.settle(&id, card == Card::SettlesLater);
            });
        }
        _ => {}
    }
    let next = session["success_url"].as_str().unwrap_or("/").to_owned();
    Redirect::to(&next).into_response()
}

/// The session completed: a payment and its charge exist; paid at once
/// when `settled`, else later.
fn complete(sim: &StripeSim, id: &str, settled: bool) -> (Value, Value) {
    let mut books = sim.books();
    let payment_intent = new_id("pi");
    let Some(session) = books.sessions.get_mut(id) else { return (Value::Null, Value::Null) };
    session["status"] = "complete".into();
    session["payment_status"] = if settled { "paid" } else { "unpaid" }.into();
    session["payment_intent"] = payment_intent.clone().into();
    session["url"] = Value::Null;
    let charge = json!({
        "id": new_id("ch"),
        "object": "charge",
        "amount": session["amount_total"],
        "amount_refunded": 0,
        "currency": session["currency"],
        "disputed": false,
        "metadata": session["payment_intent_metadata"],
        "paid": settled,
        "payment_intent": payment_intent,
        "refunded": false,
        "refunds": {"object": "list", "data": []},
        "status": if settled { "succeeded" } else { "pending" },
    });
    let session = session.clone();
    books.charges.insert(charge["id"].as_str().unwrap_or_default().to_owned(), charge.clone());
    (session, charge)
}

impl StripeSim {
    /// An asynchronous payment settled (or failed).
    fn settle(&self, id: &str, paid: bool) {
        let session = {
            let mut books = self.books();
            let Some(session) = books.sessions.get_mut(id) else { return };
            session["payment_status"] = if paid { "paid" } else { "unpaid" }.into();
            session.clone()
        };
        let kind =
            if paid { "checkout.session.async_payment_succeeded" } else { "checkout.session.async_payment_failed" };
        self.emit(kind, public_session(&session));
    }

    /// The card's holder disputes the payment.
    fn open_dispute(&self, charge: &Value) {
        let dispute = json!({
            "id": new_id("dp"),
            "object": "dispute",
            "amount": charge["amount"],
            "charge": charge["id"],
            "currency": charge["currency"],
            "payment_intent": charge["payment_intent"],
            "reason": "fraudulent",
            "status": "needs_response",
            "evidence": {},
        });
        {
            let mut books = self.books();
            books.disputes.insert(dispute["id"].as_str().unwrap_or_default().to_owned(), dispute.clone());
            if let Some(c) = books.charges.get_mut(charge["id"].as_str().unwrap_or_default()) {
                c["disputed"] = true.into();
            }
        }
        self.emit("charge.dispute.created", dispute);
    }

    /// Records an event and delivers it (or keeps it back while held).
    fn emit(&self, kind: &str, object: Value) {
        let event = json!({
            "id": new_id("evt"),
            "object": "event",
            "api_version": "2024-06-20",
            "created": self.now_secs(),
            "data": {"object": object},
            "livemode": false,
            "pending_webhooks": 1,
            "request": {"id": null, "idempotency_key": null},
            "type": kind,
        });
        let now = {
            let mut books = self.books();
            books.events.insert(event["id"].as_str().unwrap_or_default().to_owned(), event.clone());
            match &mut books.held {
                Some(held) => {
                    held.push(event.clone());
                    false
                }
                None => true,
            }
        };
        if now {
            self.deliver(event);
        }
    }

    /// POSTs an event to the app, signed, retrying a failed delivery.
    fn deliver(&self, event: Value) {
        let (http, url, secret, clock) =
            (self.http.clone(), self.cfg.webhook_url.clone(), self.cfg.webhook_secret.clone(), self.cfg.clock.clone());
        tokio::spawn(async move {
            let body = event.to_string();
            for wait in std::iter::once(Duration::ZERO).chain(RETRY_DELAYS) {
                tokio::time::sleep(wait).await;
                let t = u64::try_from(clock.now_ms() / 1000).unwrap_or(0);
                let signed = signature::sign(&secret, body.as_bytes(), t);
                let sent = http
                    .post(url.clone())
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(signature::HEADER, signed)
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) => tracing::debug!(status = %r.status(), "stripe simulator: delivery refused"),
                    Err(e) => tracing::debug!("stripe simulator: delivery failed: {e}"),
                }
            }
            tracing::warn!(event = %event["id"], "stripe simulator: gave up delivering an event");
        });
    }
}

#[derive(serde::Deserialize)]
struct RefundForm {
    charge: Option<String>,
    payment_intent: Option<String>,
    amount: Option<i64>,
}

/// `POST /v1/refunds`: refunds `amount` (or what is left) of a charge.
async fn create_refund(State(sim): State<Arc<StripeSim>>, Form(form): Form<RefundForm>) -> Response {
    let refund;
    let charge = {
        let mut books = sim.books();
        let id = match (&form.charge, &form.payment_intent) {
            (Some(c), _) => Some(c.clone()),
            (None, Some(pi)) => books
                .charges
                .newest()
                .find(|c| c["payment_intent"] == pi.as_str())
                .and_then(|c| c["id"].as_str().map(str::to_owned)),
            _ => None,
        };
        let Some(charge) = id.as_deref().and_then(|id| books.charges.get_mut(id)) else {
            return stripe_error(StatusCode::NOT_FOUND, "invalid_request_error", "No such charge.");
        };
        let (amount, refunded) =
            (charge["amount"].as_i64().unwrap_or(0), charge["amount_refunded"].as_i64().unwrap_or(0));
        let asked = form.amount.unwrap_or(amount - refunded);
        if asked <= 0 || refunded + asked > amount || charge["paid"] != true {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "The refund is more than what is left.",
            );
        }
        refund = json!({
            "id": new_id("re"),
            "object": "refund",
            "amount": asked,
            "charge": charge["id"],
            "currency": charge["currency"],
            "payment_intent": charge["payment_intent"],
            "status": "succeeded",
        });
        charge["amount_refunded"] = (refunded + asked).into();
        charge["refunded"] = (refunded + asked == amount).into();
        if let Some(list) = charge["refunds"]["data"].as_array_mut() {
            list.insert(0, refund.clone());
        }
        charge.clone()
    };
    sim.emit("charge.refunded", charge);
    Json(refund).into_response()
}

/// `POST /v1/disputes/{id}`: evidence; with `submit=true` the dispute is
/// decided: won when the evidence says `winning_evidence`, else lost.
async fn update_dispute(State(sim): State<Arc<StripeSim>>, Path(id): Path<String>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let evidence = form.get("evidence[uncategorized_text]").cloned().unwrap_or_default();
    let submit = form.get("submit").is_some_and(|s| s == "true");
    let dispute = {
        let mut books = sim.books();
        let Some(dispute) = books.disputes.get_mut(&id) else {
            return stripe_error(StatusCode::NOT_FOUND, "invalid_request_error", &format!("No such dispute: '{id}'"));
        };
        if dispute["status"] == "won" || dispute["status"] == "lost" {
            return stripe_error(StatusCode::BAD_REQUEST, "invalid_request_error", "This dispute is already closed.");
        }
        dispute["evidence"]["uncategorized_text"] = evidence.clone().into();
        if submit {
            dispute["status"] = if evidence.contains("winning_evidence") { "won" } else { "lost" }.into();
        }
        dispute.clone()
    };
    if submit {
        sim.emit("charge.dispute.closed", dispute.clone());
        if dispute["status"] == "won" {
            sim.emit("charge.dispute.funds_reinstated", dispute.clone());
        }
    }
    Json(dispute).into_response()
}

#[derive(serde::Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// `GET /v1/events`: newest first.
async fn list_events(State(sim): State<Arc<StripeSim>>, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(10).clamp(1, 100);
    let books = sim.books();
    let data: Vec<Value> = books
        .events
        .newest()
        .filter(|e| q.kind.as_deref().is_none_or(|k| e["type"] == k))
        .take(limit)
        .cloned()
        .collect();
    Json(json!({"object": "list", "url": "/v1/events", "has_more": false, "data": data})).into_response()
}

/// `GET /_secret`: the signing secret of the app's endpoint.
async fn secret(State(sim): State<Arc<StripeSim>>) -> Response {
    Json(json!({"secret": sim.cfg.webhook_secret})).into_response()
}

/// `POST /_hold`: events are kept back until `/_release` or `/_drop`.
async fn hold(State(sim): State<Arc<StripeSim>>) -> StatusCode {
    sim.books().held.get_or_insert_with(Vec::new);
    StatusCode::NO_CONTENT
}

#[derive(serde::Deserialize)]
struct ReleaseForm {
    order: Option<String>,
}

/// `POST /_release`: sends what was kept back (`order=reverse`: newest
/// first, out of order) and stops holding.
async fn release(State(sim): State<Arc<StripeSim>>, Form(form): Form<ReleaseForm>) -> StatusCode {
    let mut held = sim.books().held.take().unwrap_or_default();
    if form.order.as_deref() == Some("reverse") {
        held.reverse();
    }
    for event in held {
        sim.deliver(event);
    }
    StatusCode::NO_CONTENT
}

/// `POST /_drop`: loses what was kept back and stops holding.
async fn drop_held(State(sim): State<Arc<StripeSim>>) -> StatusCode {
    sim.books().held = None;
    StatusCode::NO_CONTENT
}

/// `POST /_events/{id}/resend`: the same event again (a duplicate, or a
/// replay).
async fn resend(State(sim): State<Arc<StripeSim>>, Path(id): Path<String>) -> Response {
    let Some(event) = sim.books().events.get(&id).cloned() else { return StatusCode::NOT_FOUND.into_response() };
    sim.deliver(event);
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /_events/{id}/resend_as_new`: the same object under a new event
/// id (Stripe may send one payment's news as several events).
async fn resend_as_new(State(sim): State<Arc<StripeSim>>, Path(id): Path<String>) -> Response {
    let Some(event) = sim.books().events.get(&id).cloned() else { return StatusCode::NOT_FOUND.into_response() };
    let kind = event["type"].as_str().unwrap_or_default().to_owned();
    sim.emit(&kind, event["data"]["object"].clone());
    StatusCode::NO_CONTENT.into_response()
}

/// The hosted page: what is bought, a card field and Pay; `message` after
/// a refused card. Script-free (`ScriptFree`: the site's static policy).
fn checkout_page(session: &Value, message: Option<&str>, status: StatusCode) -> Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
    };
    let name = esc(session["line_items_name"].as_str().unwrap_or("Darkroom credits"));
    let amount = session["amount_total"].as_i64().unwrap_or(0);
    let currency = session["currency"].as_str().unwrap_or("usd");
    let price = esc(&crate::server::config::price_text(amount, currency));
    let id = esc(session["id"].as_str().unwrap_or_default());
    let cancel = esc(session["cancel_url"].as_str().unwrap_or("/"));
    let alert = message.map(|m| format!(r#"<p class="form-error" role="alert">{}</p>"#, esc(m))).unwrap_or_default();
    let open = session["status"] == "open";
    let form = if open {
        format!(
            r#"<form method="post" action="/sim/stripe/pay/{id}">
  <label for="card_number">Card number</label>
  <input id="card_number" name="card_number" inputmode="numeric" autocomplete="cc-number" required placeholder="4242 4242 4242 4242">
  <p class="hint">Test cards: 4242 4242 4242 4242 pays; 4000 0000 0000 0002 is declined; 4000 0000 0000 0259 pays and is then disputed; 4000 0000 0000 0101 and 4000 0000 0000 0341 settle later (paid, failed).</p>
  <button type="submit" class="primary">Pay</button>
</form>"#
        )
    } else {
        String::new()
    };
    let html = format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Pay {price} — Stripe simulator</title><link rel="stylesheet" href="/pkg/darkroom.css"></head>
<body><main class="checkout-page"><section class="auth-card">
<h1>Test checkout</h1>
<p>{name}: <strong>{price}</strong></p>
<p class="hint">Darkroom's built-in Stripe simulator: no real money moves.</p>
{alert}
{form}
<p><a href="{cancel}">Back to Darkroom</a></p>
</section></main></body></html>"#
    );
    let mut response = (status, Html(html)).into_response();
    response.extensions_mut().insert(crate::server::security::ScriptFree);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards_do_what_stripe_documents() {
        assert_eq!(Card::of("4242 4242 4242 4242"), Card::Pays);
        assert_eq!(Card::of("4000000000000002"), Card::Declined);
        assert_eq!(Card::of("4000-0000-0000-0259"), Card::PaysThenDisputed);
        assert_eq!(Card::of("4000000000000101"), Card::SettlesLater);
        assert_eq!(Card::of("4000000000000341"), Card::FailsLater);
        assert_eq!(Card::of("1234"), Card::Unknown);
    }

    #[test]
    fn kept_maps_forget_the_oldest() {
        let mut kept = Kept::default();
        for n in 0..KEPT + 3 {
            kept.insert(n.to_string(), n);
        }
        assert!(kept.get("0").is_none() && kept.get("3").is_some());
        assert_eq!(kept.newest().next(), Some(&(KEPT + 2)));
    }
}
