//! Provider news: Replicate's events about a prediction still running
//! (`start`, `logs`), written in batches by one writer per instance.
//!
//! Thousands of predictions in flight send hundreds of such events a
//! second. Each is answered as soon as it is verified and queued here; the
//! writer then records a whole batch in one transaction: every event's
//! `webhook-id` (the same delivery record an ending's takes, so a
//! duplicate or a replay, on this instance or another, is dropped), then
//! each task's reading and deferred check (`store::note_events`). One
//! transaction of a few statements per batch, instead of two statements
//! per event, is what lets SQLite's single writer keep up; the queue is
//! bounded, and a full queue makes an event wait for room, then be refused
//! so that the provider sends it again.
//!
//! News is news: an event lost here (a failed batch) costs at most the
//! check it would have deferred. Endings (`completed`, a failure) are not
//! news and never wait here (`webhook::accept`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::task::TaskRow;
use super::{queries, store};
use crate::error::Result;
use crate::server::db::Db;
use crate::server::metrics::Metrics;

/// Events waiting for the writer, at most.
const QUEUE: usize = 4_096;
/// Most events one transaction writes.
const BATCH: usize = 256;

/// One verified event about a running prediction, with what it means for
/// the task's next check (worked out when it arrived).
#[derive(Debug)]
pub struct Item {
    /// Its `webhook-id`.
    pub delivery: String,
    pub prediction: String,
    /// The progress it reports (0–100), if any.
    pub progress: Option<u8>,
    /// When the prediction should end, by its start and progress.
    pub ends_at: Option<i64>,
    /// Its place in the provider's queue, `None` once it runs.
    pub queue: Option<u32>,
    /// When the task should be checked next (`schedule::after_event`).
    pub next_check: i64,
    /// How far past the last check events may defer it.
    pub trust_ms: i64,
    pub received_at: i64,
}

/// The queue in front of the writer.
pub struct News {
    queue: mpsc::Sender<Item>,
}

impl News {
    /// Starts this instance's writer on `db`.
    pub fn start(db: Db, metrics: Arc<Metrics>) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(write_all(db, metrics, waiting));
        Self { queue }
    }

    /// Queues `item`, waiting up to `wait` for room; false when there was
    /// none (the event is not taken).
    pub async fn send(&self, item: Item, wait: Duration) -> bool {
        self.queue.send_timeout(item, wait).await.is_ok()
    }
}

/// The writer: batches as they come, until every sender is gone.
async fn write_all(db: Db, metrics: Arc<Metrics>, mut waiting: mpsc::Receiver<Item>) {
    let mut batch = Vec::with_capacity(BATCH);
    while waiting.recv_many(&mut batch, BATCH).await > 0 {
        match write(&db, &batch).await {
            Ok(written) => {
                for _ in 0..written.recorded {
                    metrics.webhook();
                }
                for _ in 0..written.duplicates {
                    metrics.webhook_duplicate();
                }
            }
            Err(e) => tracing::warn!(events = batch.len(), "provider news not recorded: {e}"),
        }
        batch.clear();
    }
}

/// What a batch did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Events seen for the first time (on any instance).
    pub recorded: usize,
    /// Those of them about an unfinished task of ours, applied to it.
    pub applied: usize,
    /// Events whose `webhook-id` was already recorded.
    pub duplicates: usize,
}

/// Writes one batch in one transaction of a few statements, whatever its
/// size. The tasks are read first (one read, outside it). Inside, the
/// deliveries are recorded in the order of their ids, then the tasks
/// updated in the order of theirs (a task's events applied in the order
/// they came: `store::note_events`), so two instances' batches never wait
/// on each other in a circle; the write lock is held for a few statements,
/// not two per event.
pub async fn write(db: &Db, batch: &[Item]) -> Result<Written> {
    let mut predictions: Vec<&str> = batch.iter().map(|item| item.prediction.as_str()).collect();
    predictions.sort_unstable();
    predictions.dedup();
    let tasks = queries::of_predictions(db, &predictions).await?;
    let task_of: HashMap<&str, &TaskRow> =
        tasks.iter().filter_map(|t| Some((t.prediction_id.as_deref()?, t))).collect();
    let mut deliveries: Vec<(&str, i64)> =
        batch.iter().map(|item| (item.delivery.as_str(), item.received_at)).collect();
    deliveries.sort_unstable();
    let mut tx = db.begin().await?;
    let mut fresh = store::first_deliveries(&mut tx, &deliveries).await?;
    // An id twice in the batch is fresh once: the first time it came.
    let fresh: Vec<bool> = batch.iter().map(|item| fresh.remove(&item.delivery)).collect();
    let noted: Vec<store::Noted> = batch
        .iter()
        .zip(&fresh)
        .filter(|(_, fresh)| **fresh)
        .filter_map(|(item, _)| Some((*task_of.get(item.prediction.as_str())?, item)))
        .filter(|(task, _)| !task.state.is_finished())
        .map(|(task, item)| store::Noted {
            task: &task.id,
            reading: store::Reading::new(task, item.progress, item.queue).map(|r| r.ending(item.ends_at)),
            until: item.next_check,
            trust_ms: item.trust_ms,
            now: item.received_at,
        })
        .collect();
    store::note_events(&mut tx, &noted).await?;
    tx.commit().await?;
    let recorded = fresh.iter().filter(|&&fresh| fresh).count();
    Ok(Written { recorded, applied: noted.len(), duplicates: batch.len() - recorded })
}
