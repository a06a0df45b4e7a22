//! Buying credits. A person picks a package (credits and a price the
//! server looks up: the browser never names an amount), a purchase is
//! written `pending` before Stripe is called, and they pay on Stripe
//! Checkout. The grant is made exactly once, by whichever learns first that
//! the payment succeeded: the signed webhook (`webhook`), the success page
//! the person comes back to (`confirm`), or the reconciler, which asks
//! Stripe about purchases still pending after a while (`reconcile`). Each
//! of them calls [`fulfil`], which grants by compare-and-set on the
//! purchase and a ledger row unique to it (`store`).
//!
//! Refunds and disputes take back what a purchase granted, as ledger rows
//! of their own; what the balance cannot cover becomes debt (the person's
//! credits go below zero, and generating is refused until they top up).

pub mod store;
pub mod webhook;

use secrecy::SecretString;

use super::config::{CreditPackage, PaymentsChoice, price_text};
use super::ids::UserId;
use super::state::AppState;
use crate::error::{AppError, ErrorKind, Result};
use crate::model::{Checkout, Purchase};
use crate::stripe::{CheckoutSession, NewCheckout, Stripe, StripeError};

/// The payment side of the app, when buying is on.
pub struct Payments {
    pub stripe: Stripe,
    /// Signs the events posted to `/webhooks/stripe`.
    pub webhook_secret: SecretString,
    pub packages: Vec<CreditPackage>,
    /// What strangers can make `/webhooks/stripe` do.
    pub gate: super::engine::webhook::Gate,
}

impl Payments {
    pub fn new(stripe: Stripe, webhook_secret: SecretString, packages: Vec<CreditPackage>) -> Self {
        Self { stripe, webhook_secret, packages, gate: Default::default() }
    }
}

/// Whether `choice` sells credits.
pub fn enabled(choice: &PaymentsChoice) -> bool {
    !matches!(choice, PaymentsChoice::Off)
}

fn payments(state: &AppState) -> Result<&Payments> {
    state.payments.as_deref().ok_or_else(|| AppError::new(ErrorKind::NotFound, "buying credits is off on this site"))
}

/// The packages for sale (none when buying is off).
pub fn packages(state: &AppState) -> Vec<crate::model::CreditPackage> {
    state
        .payments
        .as_deref()
        .map(|p| {
            p.packages
                .iter()
                .map(|k| crate::model::CreditPackage { id: k.id.clone(), credits: k.credits, price: k.price() })
                .collect()
        })
        .unwrap_or_default()
}

/// Starts buying `package` for `user`: the purchase (pending), then its
/// Checkout Session; `site` is the origin the person comes back to.
pub async fn buy(state: &AppState, user: &UserId, package: &str, site: &str) -> Result<Checkout> {
    let payments = payments(state)?;
    let package = payments
        .packages
        .iter()
        .find(|p| p.id == package.trim())
        .ok_or_else(|| AppError::invalid(format!("no package {}", crate::text::clip(package, 40))))?;
    let purchase_id = uuid::Uuid::new_v4().to_string();
    store::insert_pending(&state.db, &purchase_id, user, package, state.clock.now_ms()).await?;
    let back = format!("{site}/account?purchase={purchase_id}");
    let name = format!("{} Darkroom credits", package.credits);
    // Detached: a client that hangs up must not leave the session made at
    // Stripe without its id here.
    let (stripe, db, id, clock) = (payments.stripe.clone(), state.db.clone(), purchase_id.clone(), state.clock.clone());
    let session = {
        let (success, cancel, currency) = (back.clone(), back.clone(), package.currency.clone());
        let (credits, amount) = (package.credits, package.amount);
        crate::server::engine::detached(async move {
            let checkout = NewCheckout {
                purchase_id: &id,
                credits,
                amount,
                currency: &currency,
                product_name: &name,
                success_url: &success,
                cancel_url: &cancel,
            };
            match stripe.create_checkout(&checkout).await {
                Ok(session) => {
                    store::set_checkout(&db, &id, &session.id, clock.now_ms()).await?;
                    Ok(Ok(session))
                }
                Err(e) => Ok(Err(e)),
            }
        })
        .await?
    };
    match session {
        Ok(CheckoutSession { url: Some(url), .. }) => Ok(Checkout { purchase_id, url }),
        Ok(_) => Err(unavailable(&purchase_id, state, "no checkout page in Stripe's answer").await),
        Err(e) => Err(unavailable(&purchase_id, state, &e.to_string()).await),
    }
}

/// The checkout could not be made: the purchase fails (nothing was paid).
async fn unavailable(purchase: &str, state: &AppState, why: &str) -> AppError {
    tracing::warn!(purchase, "checkout not made: {why}");
    if let Err(e) = store::mark_failed(&state.db, purchase, state.clock.now_ms()).await {
        tracing::warn!(purchase, "cannot mark the purchase failed: {e}");
    }
    AppError::new(ErrorKind::Provider, "The payment service could not be reached; nothing was charged. Try again.")
}

/// `user`'s purchases, newest first.
pub async fn list(state: &AppState, user: &UserId) -> Result<Vec<Purchase>> {
    Ok(store::of_user(&state.db, user).await?.into_iter().map(|p| p.view()).collect())
}

/// The success page: the person is back from Checkout, so Stripe is asked
/// how the payment went and it is granted if paid (the webhook may not
/// have come yet, or ever). Their purchase as it stands afterwards.
pub async fn confirm(state: &AppState, user: &UserId, purchase_id: &str) -> Result<Purchase> {
    let payments = payments(state)?;
    let purchase =
        store::load(&state.db, purchase_id).await?.filter(|p| p.user_id == *user).ok_or_else(AppError::not_found)?;
    if purchase.status == "pending"
        && let Some(checkout) = &purchase.checkout_id
    {
        match payments.stripe.retrieve_checkout(checkout).await {
            Ok(session) => settle(state, &session).await?,
            // Pending it stays; the webhook or the reconciler settles it.
            Err(e) => tracing::warn!(purchase = purchase_id, "cannot read the checkout: {e}"),
        }
    }
    let purchase = store::load(&state.db, purchase_id).await?.ok_or_else(AppError::not_found)?;
    Ok(purchase.view())
}

/// Middleware: a person back from the checkout page
/// (`GET /account?purchase=<id>`) has their purchase confirmed with Stripe
/// before the page renders, so the page already shows its outcome and
/// balance (see [`confirm`]).
pub async fn on_return(
    axum::extract::State(state): axum::extract::State<AppState>,
    auth: super::auth::AuthSession,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if request.method() == axum::http::Method::GET
        && request.uri().path() == "/account"
        && let Some(account) = &auth.user
        && let Some(purchase) = request.uri().query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "purchase").map(|(_, v)| v.into_owned())
        })
        && !purchase.is_empty()
        && purchase.len() <= 64
        && state.payments.is_some()
        && let Err(e) = confirm(&state, &account.user_id(), &purchase).await
    {
        tracing::debug!(purchase, "back from checkout: {e}");
    }
    next.run(request).await
}

/// What a Checkout Session says of its purchase: paid → [`fulfil`];
/// expired → failed; otherwise nothing yet.
pub async fn settle(state: &AppState, session: &CheckoutSession) -> Result<()> {
    if session.payment_status == "paid" {
        fulfil(state, session).await
    } else if session.status.as_deref() == Some("expired") {
        fail(state, session).await
    } else {
        Ok(())
    }
}

/// Grants a paid session's purchase, exactly once however often and from
/// wherever this is called (the webhook, the success page, the
/// reconciler; replays, duplicates, parallel deliveries, new event ids).
/// The session must be the purchase's own, for its price.
pub async fn fulfil(state: &AppState, session: &CheckoutSession) -> Result<()> {
    let Some(purchase) = purchase_of(state, session).await? else { return Ok(()) };
    if session.payment_status != "paid" {
        return Ok(());
    }
    if session.amount_total != Some(purchase.amount)
        || session.currency.as_deref().map(str::to_ascii_lowercase).as_deref() != Some(purchase.currency.as_str())
    {
        tracing::error!(purchase = %purchase.id, session = %session.id, "a paid session does not match its purchase's price: not granted");
        return Ok(());
    }
    let granted = store::grant(&state.db, &purchase, session.payment_intent.as_deref(), state.clock.now_ms()).await?;
    if granted {
        tracing::info!(purchase = %purchase.id, credits = purchase.credits, "purchase paid and granted");
    }
    Ok(())
}

/// A session that will not be paid: its purchase fails (if still pending).
pub async fn fail(state: &AppState, session: &CheckoutSession) -> Result<()> {
    if let Some(purchase) = purchase_of(state, session).await? {
        store::mark_failed(&state.db, &purchase.id, state.clock.now_ms()).await?;
    }
    Ok(())
}

/// The purchase a session is for: named by its `client_reference_id` (or
/// metadata), and only if the purchase's own session is this one.
async fn purchase_of(state: &AppState, session: &CheckoutSession) -> Result<Option<store::PurchaseRow>> {
    let named = session.client_reference_id.as_deref().or(session.metadata.get("purchase_id").map(String::as_str));
    let Some(id) = named else { return Ok(None) };
    let purchase = store::load(&state.db, id).await?;
    Ok(purchase.filter(|p| p.checkout_id.as_deref().is_none_or(|c| c == session.id)))
}

/// Purchases still pending this long after they were made are settled by
/// asking Stripe.
const RECONCILE_AFTER_MS: i64 = 60_000;
/// Checkout Sessions expire after a day at the latest: older pending ones
/// are asked about until then, and a while after.
const RECONCILE_FOR_MS: i64 = 2 * 24 * 3600 * 1000;

/// One pass over pending purchases (the reconciler): each one older than
/// a minute is settled from its session. How many were looked at.
pub async fn reconcile(state: &AppState) -> Result<usize> {
    let Some(payments) = state.payments.as_deref() else { return Ok(0) };
    let now = state.clock.now_ms();
    let pending = store::pending(&state.db, now - RECONCILE_FOR_MS, now - RECONCILE_AFTER_MS, 100).await?;
    for (purchase, checkout) in &pending {
        match payments.stripe.retrieve_checkout(checkout).await {
            Ok(session) => settle(state, &session).await?,
            Err(StripeError::Refused { status: 404, .. }) => {
                tracing::warn!(%purchase, "its checkout is unknown to Stripe: failed");
                store::mark_failed(&state.db, purchase, now).await?;
            }
            Err(e) => tracing::warn!(%purchase, "cannot read the checkout: {e}"),
        }
    }
    Ok(pending.len())
}

/// An amount of a purchase's currency as people read it.
pub fn price(amount: i64, currency: &str) -> String {
    price_text(amount, currency)
}
