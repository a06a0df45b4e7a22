//! The reconciler: a background loop that advances unfinished tasks no poll
//! has checked recently, through the same `advance` the polls use, so a task
//! nobody watches still finishes (and its output is saved before the
//! provider deletes it). Safe with several instances: each check is claimed
//! by compare-and-set in the database. It also finishes deletions whose
//! stored objects were left behind (a crash after the row was deleted),
//! and settles purchases still pending a minute after they were made
//! (`payments::reconcile`: a lost webhook, a person who never came back).

use futures::StreamExt;

use super::budget::Priority;
use super::{lifecycle, queries, schedule};
use crate::error::{AppError, Result};
use crate::server::state::AppState;

/// Most purges one pass finishes.
const PURGE_BATCH: i64 = 500;

/// Runs passes forever, one every `reconcile_interval`.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            state.clock.sleep(state.config.reconcile_interval).await;
            match pass(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!("reconciler advanced {n} tasks"),
                Err(e) => tracing::warn!("reconciler pass failed: {e}"),
            }
            match purge_pass(&state, state.clock.now_ms() - PURGE_GRACE_MS).await {
                Ok(0) => {}
                Ok(n) => tracing::info!("reconciler removed the stored images of {n} deleted tasks"),
                Err(e) => tracing::warn!("reconciler purge failed: {e}"),
            }
            match crate::server::payments::reconcile(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!("reconciler asked Stripe about {n} pending purchases"),
                Err(e) => tracing::warn!("reconciler: purchases: {e}"),
            }
            match crate::server::uploads::expire(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!("reconciler removed {n} uploads no task used"),
                Err(e) => tracing::warn!("reconciler: uploads: {e}"),
            }
            let before = state.clock.now_ms() - super::webhook::DELIVERY_MEMORY_MS;
            if let Err(e) = super::store::forget_deliveries(&state.db, before).await {
                tracing::warn!("cannot forget old webhook deliveries: {e}");
            }
        }
    })
}

/// How old a purge must be before the reconciler takes it over from the
/// deletion that recorded it (which normally finishes it in milliseconds).
const PURGE_GRACE_MS: i64 = 10_000;

/// Removes the stored objects of deleted tasks whose purge was recorded
/// before `before` and never finished. Returns how many were finished.
pub async fn purge_pass(state: &AppState, before: i64) -> Result<usize> {
    let pending = super::store::pending_purges(&state.db, before, PURGE_BATCH).await?;
    let mut done = 0;
    for task in pending {
        match super::owned::purge(state, &task).await {
            Ok(()) => done += 1,
            Err(e) => {
                tracing::warn!(%task, "purge: {e}");
                super::store::purge_later(&state.db, &task, state.clock.now_ms()).await?;
            }
        }
    }
    Ok(done)
}

/// One pass: every due unfinished task gets one `advance`, unless its check
/// waits in the backlog. Returns how many were looked at.
pub async fn pass(state: &AppState) -> Result<usize> {
    let mut ids = schedule::due_now(state).await?;
    // Waiting for the budget already: the checker makes them in turn
    // (unless their deadline has come).
    let now = state.clock.now_ms();
    ids.retain(|id| !state.backlog.holds(id, now));
    let n = ids.len();
    futures::stream::iter(ids)
        .for_each_concurrent(8, |id| async move {
            let result = async {
                if let Some(task) = queries::load(&state.db, &id).await? {
                    lifecycle::advance(state, task, Priority::Background).await?;
                }
                Ok::<_, AppError>(())
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(task = %id, "reconcile: {e}");
            }
        })
        .await;
    Ok(n)
}
