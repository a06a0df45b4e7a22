//! `AppState`: everything a request needs, built once at start-up and
//! reached in server functions through Leptos context.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use object_store::ObjectStore;

use super::auth::AttemptLimiter;
use super::config::Config;
use super::db::Db;
use super::engine::Finished;
use super::engine::backlog::Backlog;
use super::engine::budget::Budget;
use super::engine::finalize::Uploads;
use super::engine::queue::Queue;
use super::engine::schedule::{Pace, Rechecks};
use super::metrics::Metrics;
use crate::error::{AppError, Result};
use crate::provider::Provider;

/// Everything a request needs, behind one `Arc`: axum, Leptos and the
/// middleware clone the state for every request, so a clone must be a
/// single reference-count increment.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// How many cancels and deletions a person may make a minute: each one
/// may call the provider and writes the ledger, the task and the object
/// store.
pub const CANCELS_AND_DELETES_PER_MINUTE: u32 = 60;

/// How many checkouts a person may start a minute: each writes a purchase
/// and calls Stripe.
pub const PURCHASES_PER_MINUTE: u32 = 10;

/// What [`AppState`] shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub db: Db,
    /// Views of finished tasks, which never change.
    pub finished: Arc<Finished>,
    pub objects: Arc<dyn ObjectStore>,
    /// How many finalizations may upload at once.
    pub uploads: Arc<Uploads>,
    /// Checks this instance will make when predictions should end.
    pub rechecks: Arc<Rechecks>,
    /// Checks waiting for the provider budget, best first.
    pub backlog: Arc<Backlog>,
    /// Replicate's client (or its simulator's).
    pub provider: Provider,
    /// fal.ai's client (or its simulator's), for the models that say
    /// `provider = "fal"`.
    pub fal: Option<Provider>,
    /// What the engine may spend of Replicate's rate limits (shared by
    /// every instance on PostgreSQL).
    pub budget: Arc<Budget>,
    /// fal's token's budget: without limits (fal publishes none a minute;
    /// past an account's concurrency it queues requests itself, and the
    /// card shows that queue), so fal's calls never wait for Replicate's.
    pub fal_budget: Arc<Budget>,
    /// Generations waiting for the budget, as this instance sees them.
    pub queue: Arc<Queue>,
    /// How many tasks are at the provider (checks are spread over them).
    pub pace: Arc<Pace>,
    /// Buying credits, unless `DARKROOM_PAYMENTS=off`.
    pub payments: Option<Arc<super::payments::Payments>>,
    /// Provider events, when `DARKROOM_PUBLIC_URL` is set.
    pub webhooks: Option<super::engine::webhook::Receiver>,
    /// fal's events, when `DARKROOM_PUBLIC_URL` is set and a model is
    /// fal's.
    pub fal_webhooks: Option<super::engine::fal_events::FalReceiver>,
    pub attempts: Arc<AttemptLimiter>,
    /// Accounts created per client address an hour.
    pub signups_by_address: Arc<AttemptLimiter>,
    /// Accounts created an hour, on this instance.
    pub signups: Arc<AttemptLimiter<()>>,
    /// Password changes and account deletions per account.
    pub account_attempts: Arc<AttemptLimiter<String>>,
    /// Sign-in attempts per email address (whatever the client's address).
    pub sign_in_attempts: Arc<AttemptLimiter<String>>,
    /// Cancels and deletions per account ([`CANCELS_AND_DELETES_PER_MINUTE`]).
    pub task_changes: Arc<AttemptLimiter<String>>,
    /// Checkouts started per account ([`PURCHASES_PER_MINUTE`]).
    pub purchase_attempts: Arc<AttemptLimiter<String>>,
    /// Images uploaded per account (`uploads::UPLOADS_PER_MINUTE`).
    pub upload_attempts: Arc<AttemptLimiter<String>>,
    /// Mail a person can have sent, per address or account, an hour
    /// (`password_reset::PER_ADDRESS_PER_HOUR`): reset links per address,
    /// verification links and email changes per account, sign-up notes
    /// per address.
    pub mail_requests: Arc<AttemptLimiter<String>>,
    /// Where mail goes; its sender runs in the background (`mail`).
    pub mailer: Arc<super::mail::Mailer>,
    /// Where uploads wait for their decode.
    pub spool: Arc<super::uploads::Spool>,
    pub metrics: Arc<Metrics>,
    pub leptos_options: LeptosOptions,
    /// The time the engine, the reconciler and the simulator go by.
    pub clock: super::clock::Clock,
}

impl Shared {
    /// Whether `model` is served by fal: a catalogue model that names it.
    pub fn is_fal(&self, model: &str) -> bool {
        self.fal.is_some() && self.config.models.iter().any(|m| m.id == model && m.api == crate::provider::Api::Fal)
    }

    /// The client of `model`'s provider: fal's for a fal model, Replicate's
    /// for every other.
    pub fn provider_for(&self, model: &str) -> &Provider {
        match &self.fal {
            Some(client) if self.is_fal(model) => client,
            _ => &self.provider,
        }
    }

    /// The budget of `model`'s provider token.
    pub fn budget_for(&self, model: &str) -> &Budget {
        if self.is_fal(model) { &self.fal_budget } else { &self.budget }
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// The state inside a server function; an error (not a panic) if missing.
pub fn app_state() -> Result<AppState> {
    use leptos::prelude::{Owner, use_context};
    use_context::<AppState>().ok_or_else(|| {
        // Work done for a request after its reactive owner is gone (see
        // `session::RequireUser` for how a page once caused it); counted so
        // tests and operators see it.
        super::metrics::LOST_CONTEXT.inc();
        let owner = Owner::current().is_some();
        AppError::internal(format!("AppState missing from context (owner {owner})"))
    })
}
