//! The queue: generations the provider's budget has no room for yet wait
//! here, charged, instead of being refused. Every generation is stored
//! `queued`; one that nobody is ahead of goes straight to the provider when
//! the budget has a create to spare (`service::generate`), the others are
//! submitted by the dispatcher of whichever instance has room first, in
//! fair order (round-robin across people: `queries::QUEUE_ORDER`), each
//! claimed by compare-and-set so no task is submitted twice. The queue is
//! in the database: a restart, or another instance, takes it over.
//!
//! A 429 on a create puts the task back (no prediction was made) and
//! pauses every create for the wait the provider named. A queued task past
//! its deadline fails and is refunded (`lifecycle::step`); its owner may
//! cancel it (refunded, never submitted).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::budget::{Budget, Call, Priority, Spend};
use super::lifecycle::{self, SUBMIT_GRACE_MS};
use super::task::TaskRow;
use super::{calls, queries, schedule, store};
use crate::error::{AppError, ErrorKind, Result};
use crate::provider::ProviderError;
use crate::server::catalogue::Inputs;
use crate::server::ids::TaskId;
use crate::server::state::AppState;

/// Creates sent at once by one instance's dispatcher.
const SUBMITS_AT_ONCE: usize = 32;
/// How often an idle dispatcher looks for tasks another instance queued.
const IDLE_MS: i64 = 1_000;
/// How long a read of the queue's order serves positions, and the
/// dispatcher's submissions.
const SNAPSHOT_MS: i64 = 500;
/// Positions are told for this many tasks at the head of the queue.
const POSITIONS: i64 = 10_000;

/// This instance's view of the queue.
#[derive(Default)]
pub struct Queue {
    /// Wakes the dispatcher: a task was queued here.
    wake: tokio::sync::Notify,
    /// The queue's order as last read, for the positions views carry.
    snapshot: Mutex<Snapshot>,
    /// One reader of the order at a time; the others wait for its answer.
    reading: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Snapshot {
    read_at: Option<i64>,
    positions: HashMap<TaskId, u32>,
    /// Tasks that left the queue here so far ([`Queue::moved`]): an order
    /// read while one left is not kept.
    moves: u64,
}

impl Queue {
    /// A task was queued: the dispatcher looks at once.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Where `task` (queued) stands in the queue (1 = next), as read at
    /// most [`SNAPSHOT_MS`] ago, or now when the last read cannot know it
    /// (it was queued since); `None` when it is not among the first
    /// [`POSITIONS`].
    pub async fn position(&self, state: &AppState, task: &TaskId) -> Result<Option<u32>> {
        let known = |s: &Snapshot, now: i64| {
            let fresh = s.read_at.is_some_and(|at| now - at < SNAPSHOT_MS);
            let complete = s.positions.len() < POSITIONS as usize;
            (fresh && (s.positions.contains_key(task) || !complete)).then(|| s.positions.get(task).copied())
        };
        if let Some(position) = known(&self.lock(), state.clock.now_ms()) {
            return Ok(position);
        }
        let read_at = self.lock().read_at;
        let _reading = self.reading.lock().await;
        // Another caller may have read it while this one waited.
        if self.lock().read_at == read_at {
            let (read_at, moves) = (state.clock.now_ms(), self.lock().moves);
            let order = queries::queue(&state.db, POSITIONS).await?;
            state.metrics.queue_read("positions");
            let positions: HashMap<TaskId, u32> = order.into_iter().map(|(task, _, _)| task).zip(1u32..).collect();
            let position = positions.get(task).copied();
            let mut snapshot = self.lock();
            // A task that left meanwhile may be in it: answer this call,
            // keep it not.
            if snapshot.moves == moves {
                *snapshot = Snapshot { read_at: Some(read_at), positions, moves };
            }
            return Ok(position);
        }
        Ok(self.lock().positions.get(task).copied())
    }

    /// Forgets the order read, so the next position is read anew (a task
    /// left the queue here), and any read under way with it.
    pub fn moved(&self) {
        let mut snapshot = self.lock();
        snapshot.read_at = None;
        snapshot.moves += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.snapshot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The dispatcher: submits queued tasks as the budget allows, forever.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let slots = Arc::new(tokio::sync::Semaphore::new(SUBMITS_AT_ONCE));
        loop {
            // When to look again: a time, not a wait, so a clock that moved
            // while this was decided does not push it back.
            let at = match serve(&state, &slots).await {
                Ok(at) => at,
                Err(e) => {
                    tracing::warn!("queue: {e}");
                    state.clock.now_ms() + IDLE_MS
                }
            };
            tokio::select! {
                () = state.queue.wake.notified() => {}
                () = state.clock.sleep_until(at) => {}
            }
        }
    })
}

/// Submits from the head of the queue while the budget has creates to
/// spare; when to look again. The order is read [`SUBMITS_AT_ONCE`] heads
/// at a time and served while it is at most [`SNAPSHOT_MS`] old, waiting
/// for a free submission slot per head: one read of the order (a pass over
/// every queued and in-flight task) for a batch of submissions, however
/// busy the slots. Submitting a head leaves the others' order as it was
/// (a person's queued task moves to their in-flight ones); only tasks
/// queued, finished or canceled since can change it, hence the age bound.
/// Each head is taken by compare-and-set: one another instance took
/// first is skipped.
async fn serve(state: &AppState, slots: &Arc<tokio::sync::Semaphore>) -> Result<i64> {
    loop {
        let read_at = state.clock.now_ms();
        let heads = queries::queue(&state.db, SUBMITS_AT_ONCE as i64).await?;
        state.metrics.queue_read("dispatch");
        if heads.is_empty() {
            return Ok(read_at + IDLE_MS);
        }
        // A create taken from a budget and not spent yet: a head found
        // taken passes it on to the next one (rather than give it back and
        // take another: on PostgreSQL, two writes of the row every instance
        // shares, for each head another instance took first).
        let mut held: Option<&Budget> = None;
        for (task, model, queued_at) in heads {
            let permit = Arc::clone(slots).acquire_owned().await.map_err(AppError::internal)?;
            let now = state.clock.now_ms();
            if now - read_at >= SNAPSHOT_MS {
                break;
            }
            let budget = state.budget_for(&model);
            if !held.is_some_and(|h| std::ptr::eq(h, budget)) {
                if let Some(other) = held.take() {
                    other.give_back(Call::Create).await?;
                }
                if let Spend::Denied { wait_ms } = budget.take(Call::Create, Priority::Urgent).await? {
                    return Ok(now + wait_ms);
                }
                held = Some(budget);
            }
            if !store::claim_queued(&state.db, &task, now, now + SUBMIT_GRACE_MS).await? {
                // Taken by another dispatcher, or canceled, meanwhile.
                state.metrics.queue_claim_lost();
                continue;
            }
            held = None;
            state.metrics.dequeued(Duration::from_millis((now - queued_at).max(0) as u64));
            state.queue.moved();
            let state = state.clone();
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = submit(&state, &task).await {
                    tracing::warn!(%task, "submission: {e}");
                }
            });
        }
        if let Some(unspent) = held {
            unspent.give_back(Call::Create).await?;
        }
    }
}

/// What submitting a claimed task came to.
#[derive(Debug)]
pub enum Submitted {
    /// At the provider: processing.
    Processing,
    /// The provider answered 429 (no prediction was made): queued again.
    Requeued,
    /// Failed and refunded; the error says why, for the person.
    Failed(AppError),
}

/// Submits a task this instance took from the queue (`submitting`): its
/// model and inputs from its row, its image (if any) sent to the
/// provider's Files API first.
pub async fn submit(state: &AppState, task_id: &TaskId) -> Result<Submitted> {
    let task = queries::load(&state.db, task_id).await?.ok_or_else(AppError::not_found)?;
    let upscaler = state.config.upscaler.as_ref().filter(|u| task.scale.is_some() && u.id == task.model);
    let model = state.config.models.iter().find(|m| task.scale.is_none() && m.id == task.model);
    if upscaler.is_none() && model.is_none() {
        return refuse(state, task_id, "the model is no longer offered").await;
    }
    let image_url = match &task.input_key {
        None => None,
        Some(key) => match send_image(state, task_id, key).await? {
            Ok(url) => Some(url),
            Err(submitted) => return Ok(submitted),
        },
    };
    let (model, input) = match (upscaler, model, task.scale, image_url) {
        (Some(upscaler), _, Some(scale), Some(url)) => (&upscaler.id, upscaler.provider_input(&url, scale)),
        (_, Some(model), _, url) => (&model.id, model.provider_input(&task.prompt, &inputs_of(&task), url.as_deref())),
        _ => return refuse(state, task_id, "the image to upscale is missing").await,
    };
    create(state, task_id, model, input).await
}

/// Fails and refunds a task that cannot be started, for `reason`.
async fn refuse(state: &AppState, task_id: &TaskId, reason: &str) -> Result<Submitted> {
    lifecycle::fail_and_refund(state, task_id, &format!("Could not start: {reason}.")).await?;
    Ok(Submitted::Failed(AppError::invalid(format!("Could not start the generation ({reason}). Nothing was charged."))))
}

/// Longest a submission waits for the budget to upload its image.
const UPLOAD_WAIT_MS: i64 = 30_000;

/// Uploads the task's stored image (streamed, never held whole) through
/// the provider's Files API; the URL its prediction names it by. A 429, or
/// a budget with no room for [`UPLOAD_WAIT_MS`], queues the task again;
/// any other failure fails and refunds it.
async fn send_image(state: &AppState, task_id: &TaskId, key: &str) -> Result<std::result::Result<String, Submitted>> {
    let until = state.clock.now_ms() + UPLOAD_WAIT_MS;
    loop {
        let object = match state.objects.get(&object_store::path::Path::from(key)).await {
            Ok(object) => object,
            Err(e) => {
                tracing::warn!(task = %task_id, "the task's image is not in storage: {e}");
                return refuse(state, task_id, "its image is missing").await.map(Err);
            }
        };
        let size = object.meta.size;
        match calls::upload(state, object.into_stream(), size).await? {
            calls::Called::Answered(Ok(file)) => return Ok(Ok(file.urls.get)),
            calls::Called::Answered(Err(ProviderError::RateLimited { .. })) => {
                return requeue(state, task_id).await.map(Err);
            }
            calls::Called::Answered(Err(e)) => {
                tracing::warn!(task = %task_id, "the image upload failed: {e}");
                return refuse(state, task_id, "the image could not be sent to the image service").await.map(Err);
            }
            calls::Called::Denied { wait_ms } => {
                let at = state.clock.now_ms() + wait_ms;
                if at > until {
                    return requeue(state, task_id).await.map(Err);
                }
                state.clock.sleep_until(at).await;
            }
        }
    }
}

/// Puts a claimed task back in the queue, and the create it took back in
/// the budget (no prediction was made).
async fn requeue(state: &AppState, task_id: &TaskId) -> Result<Submitted> {
    store::requeue(&state.db, task_id, state.clock.now_ms()).await?;
    state.budget.give_back(Call::Create).await?;
    state.queue.moved();
    tracing::info!(task = %task_id, "its image could not be sent yet: queued again");
    Ok(Submitted::Requeued)
}

fn inputs_of(task: &TaskRow) -> Inputs {
    Inputs {
        aspect_ratio: task.aspect_ratio.clone(),
        num_outputs: task.num_outputs,
        seed: task.seed,
        negative_prompt: task.negative_prompt.clone(),
        image: None,
    }
}

/// Sends a claimed task's create and stores the prediction id; on a 429,
/// queues it again; on any other failure, fails and refunds it (a create
/// is never retried: the API has no idempotency key).
pub async fn create(
    state: &AppState,
    task_id: &TaskId,
    model: &str,
    input: serde_json::Map<String, serde_json::Value>,
) -> Result<Submitted> {
    match calls::create(state, model, input).await? {
        Ok(prediction) => {
            let now = state.clock.now_ms();
            let first_check = now + schedule::check_interval_ms(state);
            let moved = store::mark_processing(&state.db, task_id, &prediction.id, first_check, now).await?;
            if moved {
                schedule::first_check(state, task_id, first_check);
            } else {
                // Canceled, or given up on, meanwhile (and refunded).
                let _ = calls::cancel(state, model, &prediction.id).await;
            }
            tracing::info!(task = %task_id, prediction = %prediction.id, "submitted");
            Ok(Submitted::Processing)
        }
        Err(ProviderError::RateLimited { .. }) => {
            // `calls::create` paused every create; the dispatcher resumes.
            store::requeue(&state.db, task_id, state.clock.now_ms()).await?;
            state.queue.moved();
            tracing::info!(task = %task_id, "the provider throttled the create: queued again");
            Ok(Submitted::Requeued)
        }
        Err(e) => {
            tracing::warn!(task = %task_id, "submission failed: {e}");
            let (kind, reason) = match &e {
                ProviderError::Invalid { detail } => {
                    (ErrorKind::Invalid, format!("the model refused the request: {detail}"))
                }
                _ => (ErrorKind::Provider, "the image service could not be reached".to_owned()),
            };
            lifecycle::fail_and_refund(state, task_id, &format!("Could not start: {reason}.")).await?;
            Ok(Submitted::Failed(AppError::new(
                kind,
                format!("Could not start the generation ({reason}). Nothing was charged."),
            )))
        }
    }
}
