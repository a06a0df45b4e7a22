//! What happens to a task now: advancing an unfinished one (the deadline,
//! the once-per-interval provider check, claimed by compare-and-set so it
//! holds across pollers and instances, and the transition its answer calls
//! for), failing and refunding, and the owner's cancel. Polls, batched
//! polls, re-checks, provider events and the reconciler all come through
//! here; every write is a transition in `store`.

use super::store::{self, FailFrom};
use super::task::{State, TaskRow};
use super::{detached, finalize, queries, schedule};
use crate::error::Result;
use crate::model::TaskView;
use crate::provider::{PredictionStatus, ProviderError, seed_from_logs};
use crate::server::db;
use crate::server::ids::TaskId;
use crate::server::state::AppState;
use crate::text::clip;

/// How long a task may stay in `submitting` before it is failed and refunded
/// (a crash between charge and submission).
pub const SUBMIT_GRACE_MS: i64 = 120_000;

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
    // Detached, so a poller that hangs up cannot abandon a download or a
    // transition half-way.
    detached(advance_due(state.clone(), task)).await
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
    if task.next_check_at > now || state.rechecks.end_check_before(&task.id, now + schedule::check_interval_ms(state)) {
        // Not due; or this instance checks it again within the interval
        // anyway (at the prediction's expected end), and checking now would
        // push that check back by a whole interval.
        return Ok(task);
    }
    let next_check_at = now + schedule::check_interval_ms(state).max(1);
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
pub enum Applied {
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
pub async fn apply(
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
                schedule::recheck(state, &task.id, &p, now);
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
    Ok(queries::load(&state.reads, &task.id).await?.unwrap_or(task))
}

/// Fails an unfinished task and refunds it, in one transaction; true when
/// this call made the transition (false: it had already left processing).
pub async fn fail_and_refund(state: &AppState, task: &TaskId, error: &str) -> Result<bool> {
    fail_from(state, task, FailFrom::Unfinished, error).await
}

/// Like [`fail_and_refund`], only while the task is still `submitting`.
async fn fail_unsubmitted(state: &AppState, task: &TaskId, error: &str) -> Result<bool> {
    fail_from(state, task, FailFrom::Submitting, error).await
}

async fn fail_from(state: &AppState, task: &TaskId, from: FailFrom, error: &str) -> Result<bool> {
    let failed = store::fail_and_refund(&state.db, task, from, error, db::now_ms()).await?;
    if failed {
        state.metrics.failed_and_refunded();
        tracing::info!(%task, "failed and refunded: {error}");
        discard_images(state, task).await;
    }
    Ok(failed)
}

/// Removes whatever a downloader may have stored for a task that ended
/// without completing (it died between storing and marking, or one image
/// of several was unusable); best effort.
async fn discard_images(state: &AppState, task: &TaskId) {
    if let Err(e) = finalize::remove_outputs(&*state.objects, task).await {
        tracing::warn!(%task, "cannot remove the stored images of an unfinished task: {e}");
    }
}

/// The owner's cancel: asks the provider to stop the prediction, then
/// moves the task to `canceled` and refunds it — unless the provider had
/// already succeeded (the task then completes as usual and stays charged)
/// or another transition wins the compare-and-set. A finished task is
/// answered unchanged; a task still `submitting` is canceled here, and its
/// prediction at the provider as soon as its id is known (`service::submit`).
pub async fn cancel(state: AppState, task: TaskRow) -> Result<TaskView> {
    let state = &state;
    let task_id = task.id.clone();
    if task.state.is_finished() || !store::request_cancel(&state.db, &task_id, db::now_ms()).await? {
        let task = queries::load(&state.reads, &task_id).await?.unwrap_or(task);
        return Ok(task.view());
    }
    let succeeded = match &task.prediction_id {
        Some(pid) => cancel_at_provider(state, pid).await,
        None => false,
    };
    if succeeded {
        // Too late to cancel: the next check stores the image.
        let task = queries::load(&state.reads, &task_id).await?.unwrap_or(task);
        return Ok(schedule::advised(state, &advance(state, task).await?));
    }
    if let Some(canceled) = store::cancel_and_refund(&state.db, &task_id, db::now_ms()).await? {
        state.metrics.canceled_and_refunded();
        tracing::info!(task = %task_id, "canceled and refunded");
        // The prediction id may have been stored since the task was read.
        if task.prediction_id.is_none()
            && let Some(pid) = &canceled.prediction_id
        {
            cancel_at_provider(state, pid).await;
        }
        discard_images(state, &task_id).await;
    }
    let task = queries::load(&state.reads, &task_id).await?.ok_or_else(crate::error::AppError::not_found)?;
    state.finished.remember(&task, None);
    Ok(task.view())
}

/// Asks the provider to stop a prediction; true when it answers that the
/// prediction had already succeeded.
async fn cancel_at_provider(state: &AppState, prediction_id: &str) -> bool {
    let answer = state.provider.cancel(prediction_id).await;
    state.metrics.provider_call("cancel", answer.is_ok());
    match answer {
        Ok(p) => p.status == PredictionStatus::Succeeded,
        Err(e) => {
            // Canceled here all the same: the person asked, and the
            // provider's own deadline (Cancel-After) stops it.
            tracing::warn!(prediction = %prediction_id, "provider cancel failed: {e}");
            false
        }
    }
}
