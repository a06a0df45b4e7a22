//! Advancing one unfinished task: the deadline, the once-per-interval
//! provider check (claimed by compare-and-set, so it holds across pollers
//! and instances), and the transition its answer calls for. Polls, batched
//! polls and the reconciler all come through here.

use super::row::{self, State, TaskRow};
use super::{SUBMIT_GRACE_MS, check_interval_ms, clip, fail_and_refund, fail_unsubmitted, finalize, store};
use crate::error::{AppError, Result};
use crate::provider::{PredictionStatus, ProviderError, seed_from_logs};
use crate::server::db;
use crate::server::state::AppState;

/// Moves an unfinished task forward if it is due: fails it past its
/// deadline, otherwise asks the provider — at most once per check interval
/// across every poller and instance — and finalizes on a terminal answer.
/// Returns the task as it stands afterwards.
pub async fn advance(state: &AppState, task: TaskRow) -> Result<TaskRow> {
    let now = db::now_ms();
    let due = task.state == State::Submitting || now >= task.deadline_at || task.next_check_at <= now;
    if task.state.is_finished() || !due {
        return Ok(task);
    }
    // In a task of its own, so a poller that hangs up cannot abandon a
    // download or a transition half-way.
    tokio::spawn(advance_due(state.clone(), task)).await.map_err(AppError::internal)?
}

async fn advance_due(state: AppState, task: TaskRow) -> Result<TaskRow> {
    let state = &state;
    let now = db::now_ms();
    if task.state == State::Submitting {
        if now >= task.created_at + SUBMIT_GRACE_MS {
            fail_unsubmitted(state, &task.id, "Could not start: the image service did not answer.").await?;
            return reload(state, task).await;
        }
        return Ok(task);
    }
    if now >= task.deadline_at {
        let minutes = state.config.task_deadline.as_secs().div_ceil(60);
        if fail_and_refund(state, &task.id, &format!("Timed out after {minutes} min.")).await?
            && let Some(pid) = &task.prediction_id
        {
            let _ = state.provider.cancel(pid).await;
        }
        return reload(state, task).await;
    }
    if task.next_check_at > now || state.rechecks.end_check_before(&task.id, now + check_interval_ms(state)) {
        // Not due; or this instance checks it again within the interval
        // anyway (at the prediction's expected end), and checking now would
        // push that check back by a whole interval.
        return Ok(task);
    }
    let next_check_at = now + check_interval_ms(state).max(1);
    let Some(claim) = store::claim_check(&state.db, &state.reads, &task.id, now, next_check_at).await? else {
        return reload(state, task).await;
    };
    let Some(prediction_id) = task.prediction_id.clone() else {
        return Ok(task);
    };
    let answer = state.provider.get(&prediction_id).await;
    state.metrics.provider_call("get", answer.is_ok());
    match apply(state, &task, &claim, answer, now).await? {
        // Most checks of a long task: still running. The task is what was
        // read plus what this check wrote, so it needs no second read (on
        // PostgreSQL, one round trip less per poll).
        Applied::Running { progress } => {
            let mut task = task;
            task.next_check_at = next_check_at;
            task.last_polled_at = Some(now);
            task.progress = progress.map(i64::from).or(task.progress);
            Ok(task)
        }
        Applied::Moved => reload(state, task).await,
    }
}

/// What [`apply`] did to the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Applied {
    /// Nothing but the progress, when it changed (`Some`): the task is
    /// still processing.
    Running { progress: Option<u8> },
    /// Anything else: finished, postponed, or not known without a read.
    Moved,
}

/// Makes the transition the provider's answer about a claimed task calls
/// for: progress, store the output and complete, fail and refund, or (on
/// trouble) try again later. A poll's GET and a verified webhook event
/// both end here.
pub(super) async fn apply(
    state: &AppState,
    task: &TaskRow,
    claim: &store::Claim,
    answer: Result<crate::provider::Prediction, ProviderError>,
    now: i64,
) -> Result<Applied> {
    let mut applied = Applied::Moved;
    match answer {
        Ok(p) if p.data_removed => {
            fail_and_refund(state, &task.id, "The image was deleted at the provider before it could be saved.").await?;
        }
        Ok(p) => match p.status {
            PredictionStatus::Starting | PredictionStatus::Processing => {
                // Write only a change: most checks of a long task see none.
                let mut changed = None;
                if let Some(progress) = p.progress
                    && task.progress != Some(i64::from(progress))
                {
                    store::set_progress(&state.db, &state.reads, &task.id, progress, now).await?;
                    changed = Some(progress.min(100));
                }
                super::recheck::schedule(state, &task.id, &p, now);
                applied = Applied::Running { progress: changed };
            }
            PredictionStatus::Succeeded => {
                let seed = p.logs.as_deref().and_then(seed_from_logs);
                finalize::store_outputs(state, task, claim, &p.output, seed).await?;
            }
            PredictionStatus::Failed => {
                let reason = p.error.as_deref().map(str::trim).filter(|e| !e.is_empty()).unwrap_or("no reason given");
                fail_and_refund(state, &task.id, &format!("The model failed: {}", clip(reason, 300))).await?;
            }
            PredictionStatus::Canceled | PredictionStatus::Aborted => {
                let error = "The generation was canceled at the provider.";
                match store::end_canceled_at_provider(&state.db, &task.id, error, db::now_ms()).await? {
                    store::ProviderCanceled::Canceled => state.metrics.canceled_and_refunded(),
                    store::ProviderCanceled::Failed => state.metrics.failed_and_refunded(),
                    store::ProviderCanceled::AlreadyFinished => {}
                }
            }
        },
        Err(ProviderError::NotFound) => {
            fail_and_refund(state, &task.id, "The provider no longer knows this generation.").await?;
        }
        Err(e) => {
            // Transient (or a configuration problem, logged by the adapter):
            // stay processing; come back after the provider's hint.
            tracing::warn!(task = %task.id, "provider check failed: {e}");
            if let Some(wait) = e.retry_after() {
                let until = db::now_ms() + wait.as_millis().min(600_000) as i64;
                store::postpone(&state.db, &state.reads, &task.id, until).await?;
            }
        }
    }
    Ok(applied)
}

async fn reload(state: &AppState, task: TaskRow) -> Result<TaskRow> {
    Ok(row::load(&state.reads, &task.id).await?.unwrap_or(task))
}
