//! The task engine: everything that happens to a generation, from the
//! charge to the stored image. All state is in the database; instances and
//! pollers race freely and the database decides (compare-and-set).
//!
//! Read it in this order:
//! - [`service`]: the entry points the server functions call (generate,
//!   check, check many, cancel, history, the generator's setup), with typed
//!   ids;
//! - [`queue`]: generations waiting for the provider budget, and the
//!   dispatcher that submits them in fair order;
//! - [`lifecycle`]: what happens to a task now — the decisions, each one a
//!   pure function returning a step or an [`lifecycle::Outcome`], and the
//!   code that carries them out;
//! - [`store`]: the only writer of `tasks`, one named compare-and-set per
//!   transition, with the state diagram in its header;
//! - [`queries`]: every read of `tasks`;
//! - [`schedule`]: when to ask the provider next (the re-check at a
//!   prediction's expected end, a page's poll advice, the reconciler's
//!   picks);
//! - [`budget`] and [`calls`]: the provider's rate limits as a budget
//!   every instance shares, and every provider call through it;
//!   [`backlog`]: the checks it has no room for yet, best first;
//! - [`finalize`]: a succeeded prediction's outputs streamed into object
//!   storage;
//! - [`webhook`] (provider events; fal's in [`fal_events`]; running
//!   predictions' news written in batches by [`news`]) and [`reconcile`]
//!   (the background loop): more ways in, through the same lifecycle;
//! - [`task`] (a row and its view), [`finished`] (finished tasks kept in
//!   memory) and [`owned`] (sharing and deleting).

pub mod backlog;
pub mod budget;
pub mod calls;
pub mod fal_events;
pub mod finalize;
pub mod finished;
pub mod lifecycle;
pub mod news;
pub mod owned;
pub mod queries;
pub mod queue;
pub mod reconcile;
pub mod schedule;
pub mod service;
pub mod store;
pub mod task;
pub mod webhook;

pub use finished::Finished;
pub use task::{State, TaskRow};

use crate::error::{AppError, Result};

/// Runs `work` in a task of its own and waits for it. A request's future is
/// dropped when its client hangs up; work that writes a transition, calls
/// the provider or stores an image must not stop half-way then.
pub async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(work).await.map_err(AppError::internal)?
}
