//! What happens to a task now: advancing an unfinished one (the deadline,
//! the once-per-interval provider check, claimed by compare-and-set so it
//! holds across pollers and instances, and the transition its answer calls
//! for), failing and refunding, and the owner's cancel. Polls, batched
//! polls, re-checks, provider events and the reconciler all come through
//! here; every write is a transition in `store`.

use super::budget::Priority;
use super::calls::{self, Called};
use super::store::{self, FailFrom};
use super::task::{State, TaskRow};
use super::{backlog, detached, finalize, queries, schedule};
use crate::error::Result;
use crate::model::TaskView;
use crate::provider::{Prediction, PredictionStatus, ProviderError, seed_from_logs};
use crate::server::ids::TaskId;
use crate::server::state::AppState;
use crate::text::clip;

/// How long a task may stay in `submitting` before it is failed and refunded
/// (a crash between leaving the queue and storing the prediction id).
pub const SUBMIT_GRACE_MS: i64 = 120_000;

/// What one look at an unfinished task calls for, decided before anything
/// is written ([`step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing yet: its next check has not come, it is finished, or this
    /// instance checks it at its expected end within the interval anyway
    /// (checking now would push that check back a whole interval).
    Wait,
    /// Still `submitting` past [`SUBMIT_GRACE_MS`] (a crash between
    /// leaving the queue and storing the prediction id): fail and refund.
    GiveUpSubmitting,
    /// Past its deadline (queued or processing): fail, refund, and stop the
    /// prediction if there is one.
    Expire,
    /// Ask the provider, once this interval's check is claimed.
    Check,
}

/// What an unfinished `task` calls for at `now`; `end_check_soon`: this
/// instance re-checks it at its expected end within the check interval.
pub fn step(task: &TaskRow, now: i64, end_check_soon: bool) -> Step {
    match task.state {
        State::Completed | State::Failed | State::Canceled => Step::Wait,
        State::Queued if now >= task.deadline_at => Step::Expire,
        // The dispatcher submits it when the budget has room.
        State::Queued => Step::Wait,
        // Its grace ends at `next_check_at` (set when it left the queue).
        State::Submitting if now >= task.next_check_at => Step::GiveUpSubmitting,
        // Its prediction id is on its way (the create is under way).
        State::Submitting => Step::Wait,
        State::Processing if now >= task.deadline_at => Step::Expire,
        State::Processing if task.next_check_at > now || end_check_soon => Step::Wait,
        State::Processing => Step::Check,
    }
}

/// What the provider's answer about a task calls for ([`judge`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Still running: record what changed (its progress, its place in the
    /// provider's queue), and re-check at the expected end.
    Running { reading: Option<store::Reading> },
    /// Succeeded: store its outputs (`seed`: the one the provider reported),
    /// then complete.
    Store { outputs: Vec<String>, seed: Option<u32> },
    /// Over without an image: fail and refund, saying why.
    Fail(String),
    /// Canceled or aborted at the provider: `canceled` when its owner asked,
    /// `failed` otherwise; refunded either way.
    EndCanceled,
    /// Passing trouble: stay processing, and ask again after the provider's
    /// hint when it gave one.
    TryLater { retry_after: Option<std::time::Duration> },
}

/// The provider's answer about `task`, judged. A poll's GET and a verified
/// webhook event are judged alike.
pub fn judge(task: &TaskRow, answer: &std::result::Result<Prediction, ProviderError>) -> Verdict {
    let p = match answer {
        Ok(p) => p,
        Err(ProviderError::NotFound) => return Verdict::Fail("The provider no longer knows this generation.".into()),
        Err(e) => return Verdict::TryLater { retry_after: e.retry_after() },
    };
    if p.data_removed {
        return Verdict::Fail("The image was deleted at the provider before it could be saved.".into());
    }
    match p.status {
        PredictionStatus::Starting | PredictionStatus::Processing => {
            Verdict::Running { reading: store::Reading::of(task, p) }
        }
        PredictionStatus::Succeeded => Verdict::Store {
            outputs: p.output.clone(),
            seed: p.seed.or_else(|| p.logs.as_deref().and_then(seed_from_logs)),
        },
        PredictionStatus::Failed => {
            let reason = p.error.as_deref().map(str::trim).filter(|e| !e.is_empty()).unwrap_or("no reason given");
            Verdict::Fail(format!("The model failed: {}", clip(reason, 300)))
        }
        PredictionStatus::Canceled | PredictionStatus::Aborted => Verdict::EndCanceled,
    }
}

/// What advancing a task did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was due: the task stands as it was read.
    NotDue,
    /// Another poller, instance or event holds this interval's check (or
    /// took the download over): it does the work.
    ClaimedElsewhere,
    /// The provider says it is still running (`reading`: when something
    /// changed).
    Running { reading: Option<store::Reading> },
    /// It left processing (completed, failed or canceled), by this call or
    /// a racing one.
    Finished,
    /// Trouble (the provider, the download, the store): it stays
    /// processing until a later check.
    TryLater,
    /// The provider budget had no room, or other checks wait for it: the
    /// check waits its turn in the backlog.
    Deferred,
}

/// Moves an unfinished task forward if it is due (see [`step`]): fails it
/// past its deadline, otherwise asks the provider — at most once per check
/// interval across every poller and instance, and only as the provider
/// budget allows a call at `priority` — and carries out what the answer
/// calls for (see [`judge`]). Returns the task as it stands afterwards.
pub async fn advance(state: &AppState, task: TaskRow, priority: Priority) -> Result<TaskRow> {
    let now = state.clock.now_ms();
    let end_check_soon = state.rechecks.end_check_before(&task.id, now + schedule::check_interval_ms(state));
    if step(&task, now, end_check_soon) == Step::Wait {
        return Ok(task);
    }
    // Detached, so a poller that hangs up cannot abandon a download or a
    // transition half-way.
    detached(advance_due(state.clone(), task, priority)).await
}

async fn advance_due(state: AppState, task: TaskRow, priority: Priority) -> Result<TaskRow> {
    let state = &state;
    let now = state.clock.now_ms();
    let end_check_soon = state.rechecks.end_check_before(&task.id, now + schedule::check_interval_ms(state));
    let next_check_at = now + schedule::spacing_for(state, &task.model).await.max(1);
    let outcome = match step(&task, now, end_check_soon) {
        Step::Wait => Outcome::NotDue,
        Step::GiveUpSubmitting => {
            fail_unsubmitted(state, &task.id, "Could not start: the image service did not answer.").await?;
            Outcome::Finished
        }
        Step::Expire => {
            let minutes = state.config.task_deadline.as_secs().div_ceil(60);
            let error = match task.state {
                State::Queued => format!("Timed out after {minutes} min in the queue (the image service was busy)."),
                _ => format!("Timed out after {minutes} min."),
            };
            if fail_and_refund(state, &task.id, &error).await?
                && let Some(pid) = &task.prediction_id
            {
                let _ = calls::cancel(state, &task.model, pid).await;
            }
            Outcome::Finished
        }
        Step::Check => check(state, &task, now, next_check_at, priority).await?,
    };
    match outcome {
        Outcome::NotDue => Ok(task),
        // Most checks of a long task: still running. The task is what was
        // read plus what this check wrote, so it needs no second read (on
        // PostgreSQL, one round trip less per poll).
        Outcome::Running { reading } => {
            let mut task = task;
            task.next_check_at = next_check_at;
            task.last_polled_at = Some(now);
            if let Some(reading) = reading {
                if let Some(progress) = reading.progress {
                    (task.progress, task.expected_end_at) = (Some(i64::from(progress)), reading.ends_at);
                }
                task.provider_queue = reading.queue;
            }
            Ok(task)
        }
        // Waiting for the budget: nothing was written.
        Outcome::Deferred => Ok(task),
        Outcome::ClaimedElsewhere | Outcome::Finished | Outcome::TryLater => reload(state, task).await,
    }
}

/// This interval's provider check of a due task: a call from the budget,
/// then the claim (so a claim is never left without its call), then the
/// answer applied. While checks wait for the budget, one that ranks after
/// them waits with them ([`backlog`]), as does one the budget denies:
/// nothing is written, and the checker makes it in its turn.
async fn check(state: &AppState, task: &TaskRow, now: i64, next_check_at: i64, priority: Priority) -> Result<Outcome> {
    if task.prediction_id.is_none() {
        return Ok(Outcome::NotDue);
    }
    use super::budget::{Call, Spend};
    let budget = state.budget_for(&task.model);
    let rank = backlog::Rank::of(task, priority);
    // (A budget without limits, such as fal's, never makes a check wait.)
    let limited = budget.per_second(Call::Other).is_some();
    if limited && state.backlog.must_wait(&task.id, rank)
        || matches!(budget.take(Call::Other, priority).await?, Spend::Denied { .. })
    {
        if state.backlog.join(task, rank) == backlog::Joined::New {
            state.metrics.provider_call("get", "denied");
        }
        return Ok(Outcome::Deferred);
    }
    claim_and_check(state, task, now, next_check_at).await
}

/// The checker's turn for a due task, the budget taken for it
/// ([`backlog`]): the check, unless another poller or instance made it
/// meanwhile (the call goes back to the budget).
pub async fn check_granted(state: &AppState, task: TaskRow) -> Result<Outcome> {
    let now = state.clock.now_ms();
    let next_check_at = now + schedule::spacing_for(state, &task.model).await.max(1);
    claim_and_check(state, &task, now, next_check_at).await
}

/// The claim of this interval's check, the call the budget granted, and the
/// answer applied.
async fn claim_and_check(state: &AppState, task: &TaskRow, now: i64, next_check_at: i64) -> Result<Outcome> {
    use super::budget::Call;
    // Processing tasks have a prediction id (`mark_processing`).
    let Some(prediction_id) = task.prediction_id.as_deref() else { return Ok(Outcome::NotDue) };
    let budget = state.budget_for(&task.model);
    let Some(claim) = store::claim_check(&state.db, &task.id, now, next_check_at).await? else {
        budget.give_back(Call::Other).await?;
        return Ok(Outcome::ClaimedElsewhere);
    };
    let answer = state.provider_for(&task.model).get_for(&task.model, prediction_id).await;
    calls::counted(state, budget, Call::Other, "get", &answer).await?;
    apply(state, task, &claim, answer, now).await
}

/// Carries out what the provider's answer about a claimed task calls for
/// (see [`judge`]): progress, store the outputs and complete, fail and
/// refund, or (on trouble) try again later.
pub async fn apply(
    state: &AppState,
    task: &TaskRow,
    claim: &store::Claim,
    answer: std::result::Result<Prediction, ProviderError>,
    now: i64,
) -> Result<Outcome> {
    let verdict = judge(task, &answer);
    Ok(match verdict {
        Verdict::Running { reading } => {
            // The end it points to, from when the answer arrived (the model
            // may have finished another step while it was on its way).
            let end = answer.as_ref().ok().and_then(|p| schedule::expected_end_ms(p, state.clock.now_ms().max(now)));
            let reading = reading.map(|reading| reading.ending(end));
            // The check at the end comes before the one the claim planned
            // when the budget spaces regular checks further apart than the
            // prediction has left to run: the row says so, or no poller
            // could claim it.
            let recheck_at = schedule::recheck_at(state, end, now);
            let sooner = recheck_at.filter(|&at| at < claim.next_check_at());
            match (reading, sooner) {
                (Some(reading), _) => store::set_reading(&state.db, &task.id, reading, now, sooner).await?,
                (None, Some(at)) => store::check_by(&state.db, &task.id, at).await?,
                (None, None) => {}
            }
            if let Some(at) = recheck_at {
                schedule::recheck(state, &task.id, at);
            }
            Outcome::Running { reading }
        }
        Verdict::Store { outputs, seed } => finalize::store_outputs(state, task, claim, &outputs, seed).await?,
        Verdict::Fail(reason) => {
            fail_and_refund(state, &task.id, &reason).await?;
            Outcome::Finished
        }
        Verdict::EndCanceled => {
            let error = "The generation was canceled at the provider.";
            match store::end_canceled_at_provider(&state.db, &task.id, error, state.clock.now_ms()).await? {
                store::ProviderCanceled::Canceled => state.metrics.canceled_and_refunded(),
                store::ProviderCanceled::Failed => state.metrics.failed_and_refunded(),
                store::ProviderCanceled::AlreadyFinished => {}
            }
            Outcome::Finished
        }
        Verdict::TryLater { retry_after } => {
            // Transient (or a configuration problem, logged by the adapter).
            if let Err(e) = &answer {
                tracing::warn!(task = %task.id, "provider check failed: {e}");
            }
            if let Some(wait) = retry_after {
                let until = state.clock.now_ms() + wait.as_millis().min(600_000) as i64;
                store::postpone(&state.db, &task.id, until).await?;
            }
            Outcome::TryLater
        }
    })
}

async fn reload(state: &AppState, task: TaskRow) -> Result<TaskRow> {
    Ok(queries::load(&state.db, &task.id).await?.unwrap_or(task))
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
    let failed = store::fail_and_refund(&state.db, task, from, error, state.clock.now_ms()).await?;
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
    if task.state.is_finished() || !store::request_cancel(&state.db, &task_id, state.clock.now_ms()).await? {
        let task = queries::load(&state.db, &task_id).await?.unwrap_or(task);
        return Ok(task.view());
    }
    let succeeded = match &task.prediction_id {
        Some(pid) => cancel_at_provider(state, &task.model, pid).await,
        None => false,
    };
    if succeeded {
        // Too late to cancel: the next check stores the image.
        let task = queries::load(&state.db, &task_id).await?.unwrap_or(task);
        return schedule::advised(state, &advance(state, task, Priority::Urgent).await?).await;
    }
    if let Some(canceled) = store::cancel_and_refund(&state.db, &task_id, state.clock.now_ms()).await? {
        state.metrics.canceled_and_refunded();
        tracing::info!(task = %task_id, "canceled and refunded");
        // The prediction id may have been stored since the task was read.
        if task.prediction_id.is_none()
            && let Some(pid) = &canceled.prediction_id
        {
            cancel_at_provider(state, &task.model, pid).await;
        }
        discard_images(state, &task_id).await;
    }
    let task = queries::load(&state.db, &task_id).await?.ok_or_else(crate::error::AppError::not_found)?;
    state.finished.remember(&task, None);
    Ok(task.view())
}

/// Asks the provider to stop a prediction; true when it answers that the
/// prediction had already succeeded.
async fn cancel_at_provider(state: &AppState, model: &str, prediction_id: &str) -> bool {
    // Canceled here all the same when the provider cannot be asked: the
    // person asked, and the provider's own deadline (Cancel-After) stops it.
    match calls::cancel(state, model, prediction_id).await {
        Ok(Called::Answered(Ok(p))) => p.status == PredictionStatus::Succeeded,
        Ok(Called::Answered(Err(e))) => {
            tracing::warn!(prediction = %prediction_id, "provider cancel failed: {e}");
            false
        }
        Ok(Called::Denied { wait_ms }) => {
            tracing::warn!(prediction = %prediction_id, wait_ms, "provider cancel not sent: the budget has no room");
            false
        }
        Err(e) => {
            tracing::warn!(prediction = %prediction_id, "provider cancel: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(state: State) -> TaskRow {
        TaskRow::example(state)
    }

    #[test]
    fn each_state_and_moment_calls_for_one_step() {
        let processing = task(State::Processing);
        assert_eq!(step(&processing, 4_999, false), Step::Wait, "its check has not come");
        assert_eq!(step(&processing, 5_000, false), Step::Check);
        assert_eq!(step(&processing, 5_000, true), Step::Wait, "this instance checks it at its end anyway");
        assert_eq!(step(&processing, 601_000, true), Step::Expire, "the deadline wins over everything");
        // Its grace ends at `next_check_at`, set when it left the queue.
        let submitting = TaskRow { next_check_at: 50_000 + SUBMIT_GRACE_MS, ..task(State::Submitting) };
        assert_eq!(step(&submitting, 50_000 + SUBMIT_GRACE_MS - 1, false), Step::Wait, "its create is under way");
        assert_eq!(step(&submitting, 50_000 + SUBMIT_GRACE_MS, false), Step::GiveUpSubmitting);
        let queued = task(State::Queued);
        assert_eq!(step(&queued, 600_999, false), Step::Wait, "the dispatcher submits it");
        assert_eq!(step(&queued, 601_000, false), Step::Expire, "past its deadline in the queue");
        for finished in [State::Completed, State::Failed, State::Canceled] {
            assert_eq!(step(&task(finished), 999_999_999, false), Step::Wait, "{finished:?}");
        }
    }

    fn prediction(json: serde_json::Value) -> std::result::Result<Prediction, ProviderError> {
        Ok(Prediction::from_json(json.to_string().as_bytes()).unwrap())
    }

    #[test]
    fn each_answer_is_judged_once_and_for_all() {
        let t = task(State::Processing);
        let running = |logs: &str| prediction(serde_json::json!({"id": "p1", "status": "processing", "logs": logs}));
        assert_eq!(judge(&t, &running("40%|████ | 40/100")), Verdict::Running { reading: None }, "no change");
        let reading =
            |progress, queue| Verdict::Running { reading: Some(store::Reading { progress, queue, ends_at: None }) };
        assert_eq!(judge(&t, &running("55%|█████ | 55/100")), reading(Some(55), None));
        // A place in the provider's queue is news until it no longer changes.
        let mut queued = Prediction::new("p1".into(), PredictionStatus::Starting);
        queued.queue_position = Some(1);
        assert_eq!(judge(&t, &Ok(queued.clone())), reading(None, Some(1)));
        let waiting = TaskRow { provider_queue: Some(1), ..t.clone() };
        assert_eq!(judge(&waiting, &Ok(queued)), Verdict::Running { reading: None });
        let started = running("40%|████ | 40/100");
        assert_eq!(judge(&waiting, &started), reading(None, None), "out of the queue");
        let done = prediction(serde_json::json!({
            "id": "p1", "status": "succeeded", "output": ["https://x/1.png"], "logs": "Using seed: 42\n"
        }));
        assert_eq!(judge(&t, &done), Verdict::Store { outputs: vec!["https://x/1.png".into()], seed: Some(42) });
        let failed = prediction(serde_json::json!({"id": "p1", "status": "failed", "error": "  CUDA out of memory "}));
        assert_eq!(judge(&t, &failed), Verdict::Fail("The model failed: CUDA out of memory".into()));
        let silent = prediction(serde_json::json!({"id": "p1", "status": "failed", "error": null}));
        assert_eq!(judge(&t, &silent), Verdict::Fail("The model failed: no reason given".into()));
        for status in ["canceled", "aborted"] {
            let p = prediction(serde_json::json!({"id": "p1", "status": status}));
            assert_eq!(judge(&t, &p), Verdict::EndCanceled, "{status}");
        }
        let removed = prediction(serde_json::json!({"id": "p1", "status": "succeeded", "data_removed": true}));
        assert!(matches!(judge(&t, &removed), Verdict::Fail(r) if r.contains("deleted at the provider")));
        assert!(matches!(judge(&t, &Err(ProviderError::NotFound)), Verdict::Fail(r) if r.contains("no longer knows")));
        let wait = std::time::Duration::from_secs(7);
        assert_eq!(
            judge(&t, &Err(ProviderError::RateLimited { retry_after: Some(wait) })),
            Verdict::TryLater { retry_after: Some(wait) }
        );
        assert_eq!(judge(&t, &Err(ProviderError::Transport("reset".into()))), Verdict::TryLater { retry_after: None });
    }
}
