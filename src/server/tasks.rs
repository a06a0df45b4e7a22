//! The task engine: generate (charge, submit), check (poll the provider at
//! most once per interval, finalize exactly once), history, and the
//! reconciler that advances tasks nobody polls. All state is in the
//! database; every write is a named transition in `store` (its header has
//! the state diagram). This module and `advance`, `finalize` and
//! `reconcile` decide which transition to make and when.

mod advance;
pub mod finalize;
mod finished;
pub mod owned;
pub mod recheck;
pub mod reconcile;
pub mod row;
pub mod store;
pub mod webhook;

pub use advance::advance;
pub use finalize::object_key;
pub use finished::Finished;

use futures::StreamExt;

use self::row::TaskRow;
use self::store::{Caps, FailFrom, NewTask};
use super::catalogue::{ModelSpec, RawInputs};
use super::db;
use super::ids::{TaskId, UserId};
use super::state::AppState;
use crate::error::{AppError, ErrorKind, Result};
use crate::model::{Generated, GeneratorInfo, HistoryPage, TaskView};
use crate::provider::ProviderError;

/// Tasks per history page.
pub const PAGE_SIZE: usize = 24;
/// Most ids one batched status call may ask about.
pub const MAX_BATCH: usize = 100;
/// How long a task may stay in `submitting` before it is failed and refunded
/// (a crash between charge and submission).
const SUBMIT_GRACE_MS: i64 = 120_000;

/// A prompt that passed validation: trimmed, 1–2000 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt(String);

impl Prompt {
    pub const MAX_CHARS: usize = 2000;

    pub fn parse(raw: &str) -> Result<Self> {
        let prompt = raw.trim();
        if prompt.is_empty() {
            return Err(AppError::invalid("prompt is empty"));
        }
        if prompt.chars().count() > Self::MAX_CHARS {
            return Err(AppError::invalid(format!("prompt is too long (at most {} characters)", Self::MAX_CHARS)));
        }
        if prompt.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
            return Err(AppError::invalid("prompt contains control characters"));
        }
        Ok(Self(prompt.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the generator page renders with.
pub async fn generator_setup(state: &AppState, user: &UserId) -> Result<GeneratorInfo> {
    let sql = format!(
        "SELECT {} FROM tasks t WHERE t.user_id = $1 AND t.status IN ('submitting', 'processing') \
         ORDER BY t.created_at DESC, t.id DESC LIMIT 1",
        row::COLUMNS
    );
    let resume = sqlx::query(&sql).bind(user.as_str()).fetch_optional(&state.db).await?;
    Ok(GeneratorInfo {
        models: state.config.models.iter().map(ModelSpec::option).collect(),
        cost: state.config.models.first().map_or(state.config.generation_cost, |m| m.credits),
        poll_interval_ms: state.config.poll_interval.as_millis() as u64,
        resume: resume.as_ref().map(TaskRow::from_row).transpose()?.map(|t| advised(state, &t)),
    })
}

/// Validates, charges, records and submits one generation: `model` (the
/// default when `None`) with `inputs` checked against it, charged the
/// model's credits per image times the images asked for.
#[tracing::instrument(skip(state, prompt, inputs), fields(task))]
pub async fn generate(
    state: &AppState,
    user: &UserId,
    prompt: &str,
    model: Option<&str>,
    inputs: RawInputs<'_>,
) -> Result<Generated> {
    let prompt = Prompt::parse(prompt)?;
    let model =
        match model.map(str::trim).filter(|m| !m.is_empty()) {
            None => state.config.models.first().ok_or_else(|| AppError::internal("no models"))?,
            Some(m) => state.config.models.iter().find(|s| s.id == m).ok_or_else(|| {
                AppError::invalid(format!("unknown model {}", m.chars().take(100).collect::<String>()))
            })?,
        };
    let inputs = model.check(&inputs)?;
    let task_id = TaskId::new();
    tracing::Span::current().record("task", task_id.as_str());
    let now = db::now_ms();
    let new = NewTask {
        id: &task_id,
        user,
        prompt: prompt.as_str(),
        model: &model.id,
        inputs: &inputs,
        cost: model.cost(inputs.num_outputs),
        now,
        deadline_at: now + state.config.task_deadline.as_millis() as i64,
        submit_grace_until: now + SUBMIT_GRACE_MS,
    };
    let caps = Caps { active: state.config.max_active_tasks, per_minute: state.config.generations_per_minute };
    store::insert_submitting(&state.db, new, caps).await?;

    // Submit in a task of its own: if the browser goes away mid-request,
    // axum drops this future, and a prediction created at the provider must
    // still have its id stored.
    let input = model.provider_input(prompt.as_str(), &inputs);
    tokio::spawn(submit(state.clone(), task_id, model.id.clone(), input)).await.map_err(AppError::internal)?
}

/// Sends a recorded, charged task to the provider and stores the
/// prediction id; on failure, fails and refunds it.
async fn submit(
    state: AppState,
    task_id: TaskId,
    model: String,
    input: serde_json::Map<String, serde_json::Value>,
) -> Result<Generated> {
    let state = &state;
    let submitted = state.provider.create_with(&model, input, Some(state.config.task_deadline)).await;
    state.metrics.provider_call("create", submitted.is_ok());
    match submitted {
        Ok(prediction) => {
            let now = db::now_ms();
            let first_check = now + check_interval_ms(state);
            let moved = store::mark_processing(&state.db, &task_id, &prediction.id, first_check, now).await?;
            if moved {
                recheck::first_check(state, &task_id, first_check);
            } else {
                // The reconciler gave up on it meanwhile (and refunded).
                let _ = state.provider.cancel(&prediction.id).await;
            }
            tracing::info!(prediction = %prediction.id, "submitted");
            Ok(Generated { task_id: task_id.to_string() })
        }
        Err(e) => {
            tracing::warn!("submission failed: {e}");
            let (kind, reason) = match &e {
                ProviderError::Invalid { detail } => {
                    (ErrorKind::Invalid, format!("the model refused the request: {detail}"))
                }
                ProviderError::RateLimited { .. } => (ErrorKind::Provider, "the image service is busy".to_owned()),
                _ => (ErrorKind::Provider, "the image service could not be reached".to_owned()),
            };
            fail_and_refund(state, &task_id, &format!("Could not start: {reason}.")).await?;
            Err(AppError::new(kind, format!("Could not start the generation ({reason}). Nothing was charged.")))
        }
    }
}

/// One task's state, advanced when it is due.
pub async fn check(state: &AppState, user: &UserId, task_deletions: Option<i64>, task_id: &str) -> Result<TaskView> {
    let task_id = TaskId::parse(task_id)?;
    if let Some(finished) = state.finished.get(&task_id, task_deletions) {
        if finished.owner != *user {
            return Err(AppError::not_found());
        }
        state.metrics.poll();
        return Ok(finished.view.clone());
    }
    let task = row::load_owned(&state.reads, user, &task_id).await?.ok_or_else(AppError::not_found)?;
    state.metrics.poll();
    let task = advance(state, task).await?;
    state.finished.remember(&task, task_deletions);
    Ok(advised(state, &task))
}

/// The owner's cancel: asks the provider to stop the prediction, then
/// moves the task to `canceled` and refunds it — unless the provider had
/// already succeeded (the task then completes as usual and stays charged)
/// or another transition wins the compare-and-set. A finished task is
/// answered unchanged; a task still `submitting` is canceled here, and its
/// prediction at the provider as soon as its id is known (`submit`).
pub async fn cancel(state: &AppState, user: &UserId, task_id: &str) -> Result<TaskView> {
    let task_id = TaskId::parse(task_id)?;
    let task = row::load_owned(&state.reads, user, &task_id).await?.ok_or_else(AppError::not_found)?;
    // In a task of its own, like every transition: a client that hangs up
    // must not leave a cancel half-done.
    tokio::spawn(cancel_owned(state.clone(), task)).await.map_err(AppError::internal)?
}

async fn cancel_owned(state: AppState, task: TaskRow) -> Result<TaskView> {
    let state = &state;
    let task_id = task.id.clone();
    if task.state.is_finished() || !store::request_cancel(&state.db, &task_id, db::now_ms()).await? {
        let task = row::load(&state.reads, &task_id).await?.unwrap_or(task);
        return Ok(task.view());
    }
    let succeeded = match &task.prediction_id {
        Some(pid) => cancel_at_provider(state, pid).await,
        None => false,
    };
    if succeeded {
        // Too late to cancel: the next check stores the image.
        let task = row::load(&state.reads, &task_id).await?.unwrap_or(task);
        return Ok(advised(state, &advance(state, task).await?));
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
        discard_image(state, &task_id).await;
    }
    let task = row::load(&state.reads, &task_id).await?.ok_or_else(AppError::not_found)?;
    state.finished.remember(&task, None);
    Ok(task.view())
}

/// Asks the provider to stop a prediction; true when it answers that the
/// prediction had already succeeded.
async fn cancel_at_provider(state: &AppState, prediction_id: &str) -> bool {
    let answer = state.provider.cancel(prediction_id).await;
    state.metrics.provider_call("cancel", answer.is_ok());
    match answer {
        Ok(p) => p.status == crate::provider::PredictionStatus::Succeeded,
        Err(e) => {
            // Canceled here all the same: the person asked, and the
            // provider's own deadline (Cancel-After) stops it.
            tracing::warn!(prediction = %prediction_id, "provider cancel failed: {e}");
            false
        }
    }
}

/// Removes whatever a downloader may have stored for a task that ended
/// without completing (it died between storing and marking, or one image
/// of several was unusable); best effort.
async fn discard_image(state: &AppState, task: &TaskId) {
    if let Err(e) = finalize::remove_outputs(&*state.objects, task).await {
        tracing::warn!(%task, "cannot remove the stored images of an unfinished task: {e}");
    }
}

/// Several tasks' states (ids of other users, or unknown, are left out).
pub async fn check_many(
    state: &AppState,
    user: &UserId,
    task_deletions: Option<i64>,
    task_ids: &[String],
) -> Result<Vec<TaskView>> {
    if task_ids.len() > MAX_BATCH {
        return Err(AppError::invalid(format!("at most {MAX_BATCH} task ids at once")));
    }
    let ids = task_ids.iter().map(|id| TaskId::parse(id)).collect::<Result<Vec<_>>>()?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = (0..ids.len()).map(|i| format!("${}", i + 2)).collect::<Vec<_>>().join(", ");
    let sql = format!("SELECT {} FROM tasks t WHERE t.user_id = $1 AND t.id IN ({placeholders})", row::COLUMNS);
    let mut query = sqlx::query(&sql).bind(user.as_str());
    for id in &ids {
        query = query.bind(id.as_str());
    }
    let rows = query.fetch_all(&state.db).await?;
    let tasks = rows.iter().map(TaskRow::from_row).collect::<Result<Vec<_>>>()?;
    // One task's trouble (already logged) must not hide the others: it is
    // answered as it was.
    let advanced: Vec<TaskRow> = futures::stream::iter(tasks)
        .map(|t| async move { advance(state, t.clone()).await.unwrap_or(t) })
        .buffered(8)
        .collect()
        .await;
    for task in &advanced {
        state.finished.remember(task, task_deletions);
    }
    let mut views: Vec<TaskView> = advanced.iter().map(|t| advised(state, t)).collect();
    views.sort_by_key(|v| ids.iter().position(|id| id.as_str() == v.id));
    Ok(views)
}

/// A page of history, newest first. The cursor is opaque to clients.
pub async fn history(state: &AppState, user: &UserId, cursor: Option<&str>) -> Result<HistoryPage> {
    let after = match cursor.map(str::trim).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let bad = || AppError::invalid("not a valid cursor");
            let (ms, id) = c.split_once('_').ok_or_else(bad)?;
            Some((ms.parse::<i64>().map_err(|_| bad())?, TaskId::parse(id).map_err(|_| bad())?))
        }
    };
    let limit = (PAGE_SIZE + 1) as i64;
    let rows = match &after {
        None => {
            let sql = format!(
                "SELECT {} FROM tasks t WHERE t.user_id = $1 ORDER BY t.created_at DESC, t.id DESC LIMIT $2",
                row::COLUMNS
            );
            sqlx::query(&sql).bind(user.as_str()).bind(limit).fetch_all(&state.db).await
        }
        Some((ms, id)) => {
            let sql = format!(
                "SELECT {} FROM tasks t WHERE t.user_id = $1 AND (t.created_at < $2 OR (t.created_at = $2 AND t.id < $3)) \
                 ORDER BY t.created_at DESC, t.id DESC LIMIT $4",
                row::COLUMNS
            );
            sqlx::query(&sql).bind(user.as_str()).bind(*ms).bind(id.as_str()).bind(limit).fetch_all(&state.db).await
        }
    }?;
    let mut items = rows.iter().map(TaskRow::from_row).collect::<Result<Vec<_>>>()?;
    let next_cursor = if items.len() > PAGE_SIZE {
        items.truncate(PAGE_SIZE);
        items.last().map(|t| format!("{}_{}", t.created_at, t.id))
    } else {
        None
    };
    Ok(HistoryPage { items: items.iter().map(|t| advised(state, t)).collect(), next_cursor })
}

/// The soonest a page is told to poll again.
pub const MIN_POLL_AFTER_MS: u64 = 500;
/// How long after a prediction's expected end its image is usually stored
/// (the server's own re-check comes 100 ms after it, then the download).
const STORE_MARGIN_MS: u64 = 400;

/// The server's advice for a page's next poll of an unfinished task: the
/// regular interval, or sooner when the provider's progress (`progress`
/// percent, read at `read_at`) says the end comes before it — so the poll
/// arrives when the image does.
pub fn poll_after_ms(progress: Option<i64>, read_at: Option<i64>, created_ms: i64, now: i64, interval_ms: u64) -> u64 {
    let interval = interval_ms.max(MIN_POLL_AFTER_MS);
    let (Some(p), Some(read_at)) = (progress.filter(|p| (1..100).contains(p)), read_at) else { return interval };
    // The end the progress pointed at when it was read.
    let ran = (read_at - created_ms).max(0);
    let end = created_ms + ran * 100 / p;
    let remaining = (end - now).max(0) as u64;
    (remaining + STORE_MARGIN_MS).clamp(MIN_POLL_AFTER_MS, interval)
}

/// How long after this instance's re-check of a task its image is usually
/// stored (the provider's answer, the download and the write).
const STORED_AFTER_RECHECK_MS: u64 = 150;

/// The advice when this instance will re-check the task at `due` (the
/// prediction's expected end, from the provider's own start time and
/// progress): poll just after that check will have stored the image.
pub fn poll_after_recheck_ms(due: i64, now: i64, interval_ms: u64) -> u64 {
    let until = (due - now).max(0) as u64;
    (until + STORED_AFTER_RECHECK_MS).clamp(MIN_POLL_AFTER_MS, interval_ms.max(MIN_POLL_AFTER_MS))
}

/// A task's view with the poll advice an unfinished one carries: timed to
/// this instance's pending re-check when there is one (it is what stores
/// the image), else extrapolated from the progress.
fn advised(state: &AppState, task: &TaskRow) -> TaskView {
    let mut view = task.view();
    if !task.state.is_finished() {
        let interval = state.config.poll_interval.as_millis() as u64;
        let now = db::now_ms();
        view.poll_after_ms = Some(match state.rechecks.due(&task.id) {
            Some(due) => poll_after_recheck_ms(due, now, interval),
            None => poll_after_ms(task.progress, task.last_polled_at, task.created_at, now, interval),
        });
    }
    view
}

fn check_interval_ms(state: &AppState) -> i64 {
    state.config.provider_check.as_millis() as i64
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
        discard_image(state, task).await;
    }
    Ok(failed)
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_owned() } else { format!("{}…", s.chars().take(max).collect::<String>()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_advice_points_at_the_expected_end() {
        // No progress yet, or none reported: the regular interval.
        assert_eq!(poll_after_ms(None, None, 0, 5_000, 3_000), 3_000);
        assert_eq!(poll_after_ms(Some(0), Some(4_000), 0, 5_000, 3_000), 3_000);
        // 80 % read at 8 s: the end is at 10 s; asked at 8 s, 2 s to go plus
        // the time to store the image.
        assert_eq!(poll_after_ms(Some(80), Some(8_000), 0, 8_000, 3_000), 2_400);
        // The same reading, asked a second later: the advice moves with the
        // clock, not with the stale reading.
        assert_eq!(poll_after_ms(Some(80), Some(8_000), 0, 9_000, 3_000), 1_400);
        // Past the expected end: the soonest.
        assert_eq!(poll_after_ms(Some(80), Some(8_000), 0, 12_000, 3_000), 500);
        // Far from the end: never more than the interval.
        assert_eq!(poll_after_ms(Some(10), Some(2_000), 0, 2_000, 3_000), 3_000);
        // A short configured interval still bounds it, but not below 500.
        assert_eq!(poll_after_ms(Some(50), Some(4_000), 0, 4_000, 1_000), 1_000);
        assert_eq!(poll_after_ms(None, None, 0, 0, 100), 500);
    }

    #[test]
    fn the_poll_advice_follows_a_pending_re_check() {
        // The re-check at 10 s stores the image; the page comes just after.
        assert_eq!(poll_after_recheck_ms(10_000, 8_000, 3_000), 2_150);
        assert_eq!(poll_after_recheck_ms(10_000, 9_900, 3_000), 500, "never sooner than 500 ms");
        assert_eq!(poll_after_recheck_ms(10_000, 12_000, 3_000), 500, "a late re-check: soon");
        assert_eq!(poll_after_recheck_ms(60_000, 0, 3_000), 3_000, "never later than the interval");
    }

    #[test]
    fn prompts_are_trimmed_and_bounded() {
        assert_eq!(Prompt::parse("  a cat \n").unwrap().as_str(), "a cat");
        assert_eq!(Prompt::parse(" \n\t ").unwrap_err().message, "prompt is empty");
        assert!(Prompt::parse(&"x".repeat(2000)).is_ok());
        assert!(Prompt::parse(&"x".repeat(2001)).unwrap_err().message.contains("too long"));
        assert!(Prompt::parse("a\u{0}b").is_err());
    }
}
