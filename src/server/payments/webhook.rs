//! `POST /webhooks/stripe`: Stripe's signed events. The signature is
//! checked as Stripe specifies (`Stripe-Signature`, HMAC-SHA256 of
//! `t.body`, 300 s of tolerance, every `v1` tried) before the event is
//! read; a body is at most [`MAX_EVENT_BYTES`], read at most 32 at a time,
//! and a client address that keeps sending refused events is barred for a
//! minute (`engine::webhook::Gate`, as for the provider's events). The
//! event is applied before
//! the answer, so Stripe retries one that could not be (a 500), and every
//! application is idempotent (`store`): duplicates, replays, late and
//! out-of-order events change nothing twice.
//!
//! - `checkout.session.completed` (paid at once) and
//!   `checkout.session.async_payment_succeeded` grant; `…async_payment_failed`
//!   and `checkout.session.expired` fail the purchase;
//! - `charge.refunded` takes back what the refunded total is worth;
//! - `charge.dispute.created` holds back what the dispute is worth;
//!   `charge.dispute.closed` (won) and `charge.dispute.funds_reinstated`
//!   give it back; a lost dispute keeps it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;

use super::store;
use crate::error::Result;
use crate::server::client::Client;
use crate::server::state::AppState;
use crate::stripe::{Charge, CheckoutSession, Dispute, Event, signature};

/// Largest event read: Stripe's are a few KB.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

pub async fn receive(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let Some(payments) = state.payments.as_deref() else {
        return (StatusCode::NOT_FOUND, "buying credits is off on this site").into_response();
    };
    let client = request.extensions().get::<Client>().copied().unwrap_or_else(Client::unknown).limit_key();
    payments.gate.admit(client, state.clock.now_ms(), read_event(&state, payments, request)).await
}

/// Reads (bounded), verifies and applies one event.
async fn read_event(state: &AppState, payments: &super::Payments, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let Ok(body) = axum::body::to_bytes(body, MAX_EVENT_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, format!("an event is at most {} KiB", MAX_EVENT_BYTES / 1024))
            .into_response();
    };
    let header = headers.get(signature::HEADER).and_then(|v| v.to_str().ok());
    let now = u64::try_from(state.clock.now_ms() / 1000).unwrap_or(0);
    if let Err(e) = signature::verify(header, &body, payments.webhook_secret.expose_secret(), now) {
        tracing::warn!("stripe event refused: {e}");
        return (StatusCode::BAD_REQUEST, format!("invalid signature: {e}")).into_response();
    }
    let event: Event = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not an event: {e}")).into_response(),
    };
    match apply(state, &event).await {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(e) => {
            tracing::warn!(event = %event.id, kind = %event.kind, "stripe event not applied: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "try again").into_response()
        }
    }
}

/// Applies one verified event.
pub async fn apply(state: &AppState, event: &Event) -> Result<()> {
    let object = || event.data.object.clone();
    let read = |what: &str, e: serde_json::Error| {
        crate::error::AppError::invalid(format!("a {what} that cannot be read: {e}"))
    };
    match event.kind.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            let session: CheckoutSession = serde_json::from_value(object()).map_err(|e| read("session", e))?;
            super::fulfil(state, &session).await
        }
        "checkout.session.async_payment_failed" | "checkout.session.expired" => {
            let session: CheckoutSession = serde_json::from_value(object()).map_err(|e| read("session", e))?;
            super::fail(state, &session).await
        }
        "charge.refunded" => {
            let charge: Charge = serde_json::from_value(object()).map_err(|e| read("charge", e))?;
            let Some(purchase) = purchase(state, charge.payment_intent.as_deref()).await? else { return Ok(()) };
            let taken = store::refund(&state.db, &purchase, charge.amount_refunded, state.clock.now_ms()).await?;
            if taken > 0 {
                tracing::info!(purchase = %purchase.id, credits = taken, "payment refunded: credits taken back");
            }
            Ok(())
        }
        "charge.dispute.created" | "charge.dispute.closed" | "charge.dispute.funds_reinstated" => {
            let dispute: Dispute = serde_json::from_value(object()).map_err(|e| read("dispute", e))?;
            let Some(purchase) = purchase(state, dispute.payment_intent.as_deref()).await? else { return Ok(()) };
            let now = state.clock.now_ms();
            let won = event.kind == "charge.dispute.funds_reinstated" || dispute.status == "won";
            // Whatever comes first (a lost `created` too): the dispute
            // holds its credits back once, and a win gives them back once.
            store::dispute_opened(&state.db, &purchase, &dispute.id, dispute.amount, now).await?;
            if won {
                store::dispute_won(&state.db, &purchase, &dispute.id, now).await?;
            }
            tracing::info!(purchase = %purchase.id, dispute = %dispute.id, status = %dispute.status, "payment disputed");
            Ok(())
        }
        other => {
            tracing::debug!(kind = other, "stripe event ignored");
            Ok(())
        }
    }
}

/// The purchase a refund or a dispute is about, by its payment. An event
/// may come before the one that said the payment succeeded (out of
/// order): then the payment's metadata names the purchase, which is
/// settled first. A payment that is none of ours (another product on the
/// same Stripe account) is `None`.
async fn purchase(state: &AppState, payment_intent: Option<&str>) -> Result<Option<store::PurchaseRow>> {
    let Some(pi) = payment_intent else { return Ok(None) };
    if let Some(purchase) = store::by_payment(&state.db, pi).await? {
        return Ok(Some(purchase));
    }
    let Some(payments) = state.payments.as_deref() else { return Ok(None) };
    let intent = payments.stripe.retrieve_payment_intent(pi).await.map_err(crate::error::AppError::internal)?;
    let Some(purchase) = intent.metadata.get("purchase_id") else { return Ok(None) };
    let Some(row) = store::load(&state.db, purchase).await? else { return Ok(None) };
    if let Some(checkout) = &row.checkout_id {
        let session = payments.stripe.retrieve_checkout(checkout).await.map_err(crate::error::AppError::internal)?;
        super::settle(state, &session).await?;
    }
    store::by_payment(&state.db, pi).await
}
