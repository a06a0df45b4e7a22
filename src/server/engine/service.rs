//! The entry points the server functions call: generate (validate, charge
//! and record, submit), check one task or many (answer, advancing it when it
//! is due), cancel, a page of history, and what the generator page renders
//! with. Ids arrive typed; what each call decides is in `lifecycle`.

use futures::StreamExt;

use super::budget::{Call, Priority, Spend};
use super::lifecycle::{self, SUBMIT_GRACE_MS};
use super::queue::{self, Submitted};
use super::store::{self, Caps, NewTask};
use super::task::{State, TaskRow};
use super::{detached, queries, schedule};
use crate::error::{AppError, Result};
use object_store::path::Path as ObjectPath;

use crate::model::{Generated, GeneratorInfo, HistoryPage, TaskView, UpscaleOffer, VaryOffer};
use crate::server::catalogue::{Inputs, ModelSpec, RawInputs};
use crate::server::ids::{TaskId, UserId};
use crate::server::state::AppState;
use crate::server::uploads;

/// Tasks per history page.
pub const PAGE_SIZE: usize = 24;
/// Most ids one batched status call may ask about.
pub const MAX_BATCH: usize = 100;

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
    let resume = queries::latest_unfinished(&state.db, user).await?;
    Ok(GeneratorInfo {
        models: state.config.models.iter().map(ModelSpec::option).collect(),
        cost: state.config.models.first().map_or(state.config.generation_cost, |m| m.credits),
        poll_interval_ms: state.config.poll_interval.as_millis() as u64,
        resume: match resume {
            Some(t) => Some(schedule::advised(state, &t).await?),
            None => None,
        },
        can_buy: state.payments.is_some(),
        max_input_bytes: state.config.max_input_bytes,
        upscale: state.config.upscaler.as_ref().map(|u| UpscaleOffer {
            model: u.id.clone(),
            credits: u.credits,
            scales: u.scales.clone(),
        }),
        vary: state.config.vary_model().map(|m| VaryOffer { model: m.id.clone(), credits: m.credits }),
        verification_required: state.config.require_verified_email,
    })
}

/// Validates, charges and records one generation: `model` (the default
/// when `None`) with `inputs` checked against it, charged the model's
/// credits per image times the images asked for. An image to start from
/// (an upload's id) is copied to the task before anything is charged, and
/// removed again if the task is not recorded. Then [`start`]s it.
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
    let input_key = match &inputs.image {
        Some(upload) => Some(uploads::use_upload(state, user, upload, &task_id).await?),
        None => None,
    };
    let now = state.clock.now_ms();
    let new = NewTask {
        id: &task_id,
        user,
        prompt: prompt.as_str(),
        model: &model.id,
        inputs: &inputs,
        cost: model.cost(inputs.num_outputs),
        now,
        deadline_at: now + state.config.task_deadline.as_millis() as i64,
        input_key: input_key.as_ref().map(AsRef::as_ref),
        source: None,
        scale: None,
    };
    record(state, user, new, input_key.as_ref()).await?;
    start(state, task_id, &model.id).await
}

/// Makes output `index` of the owner's completed task `scale` times larger
/// with the site's upscaler: a task of its own, charged the upscaler's
/// price, whose input is the stored image (read from our storage: the
/// provider's output URL has long expired). Then [`start`]s it.
#[tracing::instrument(skip(state), fields(task))]
pub async fn upscale(state: &AppState, user: &UserId, source: &TaskId, index: u8, scale: u8) -> Result<Generated> {
    let upscaler = state.config.upscaler.as_ref().ok_or_else(|| AppError::invalid("this site offers no upscaling"))?;
    if !upscaler.scales.contains(&scale) {
        let offered: Vec<String> = upscaler.scales.iter().map(|s| format!("{s}×")).collect();
        return Err(AppError::invalid(format!("scale must be one of {}", offered.join(", "))));
    }
    let found = completed_source(state, user, source, index, "upscaled").await?;
    if found.scale.is_some() {
        return Err(AppError::invalid("this image is already upscaled"));
    }
    start_from_output(state, &found, index, &upscaler.id, upscaler.credits, Some(scale)).await
}

/// Makes a variation of output `index` of the owner's completed task: a
/// task of its own on the model that starts from an image (`Config::vary_model`),
/// with the source's prompt, charged that model's price for one image,
/// whose input is the stored image. Then [`start`]s it.
#[tracing::instrument(skip(state), fields(task))]
pub async fn vary(state: &AppState, user: &UserId, source: &TaskId, index: u8) -> Result<Generated> {
    let model = state.config.vary_model().ok_or_else(|| AppError::invalid("this site offers no variations"))?;
    let found = completed_source(state, user, source, index, "varied").await?;
    if found.scale.is_some() {
        return Err(AppError::invalid("an upscaled image is too large to vary; vary the image it was made from"));
    }
    start_from_output(state, &found, index, &model.id, model.cost(1), None).await
}

/// Records and [`start`]s a task of `model` for `cost` whose input is
/// output `index` of the completed task `source` (an upscale by `scale`,
/// or a variation), with its prompt: the stored image is copied to the
/// new task, so the source may be deleted meanwhile.
async fn start_from_output(
    state: &AppState,
    source: &TaskRow,
    index: u8,
    model: &str,
    cost: i64,
    scale: Option<u8>,
) -> Result<Generated> {
    let task_id = TaskId::new();
    tracing::Span::current().record("task", task_id.as_str());
    let input_key = uploads::use_output(&state.objects, &source.id, index, &task_id).await?;
    let inputs = Inputs { aspect_ratio: None, num_outputs: 1, seed: None, negative_prompt: None, image: None };
    let now = state.clock.now_ms();
    let new = NewTask {
        id: &task_id,
        user: &source.user_id,
        prompt: &source.prompt,
        model,
        inputs: &inputs,
        cost,
        now,
        deadline_at: now + state.config.task_deadline.as_millis() as i64,
        input_key: Some(input_key.as_ref()),
        source: Some(&source.id),
        scale,
    };
    record(state, &source.user_id, new, Some(&input_key)).await?;
    start(state, task_id, model).await
}

/// The owner's completed task `source`, which has an image `index`: what
/// an upscale or a variation starts from (`made`: "upscaled", "varied").
async fn completed_source(state: &AppState, user: &UserId, source: &TaskId, index: u8, made: &str) -> Result<TaskRow> {
    let found = queries::load_owned(&state.db, user, source).await?.ok_or_else(AppError::not_found)?;
    if found.state != State::Completed {
        return Err(AppError::conflict(format!("only a completed image can be {made}")));
    }
    if index >= found.num_outputs {
        return Err(AppError::invalid(format!(
            "the task has {} image(s); index {index} is not one",
            found.num_outputs
        )));
    }
    Ok(found)
}

/// Charges and records a task (`queued`), within the caps; a refusal
/// removes the task's copy of its input image.
async fn record(state: &AppState, user: &UserId, new: NewTask<'_>, input: Option<&ObjectPath>) -> Result<()> {
    let caps = Caps {
        active: state.config.max_active_tasks,
        per_minute: state.config.generations_per_minute,
        verified_only: state.config.require_verified_email,
    };
    if let Err(e) = store::insert_queued(&state.db, new, caps).await {
        if let Some(key) = input {
            uploads::remove(state, key).await;
        }
        return Err(below_zero(state, user, e).await);
    }
    Ok(())
}

/// Starts a recorded task of `model`: when nobody is queued ahead and its
/// provider's budget has a create to spare, it is submitted at once and
/// the answer waits for the provider (so a refusal is told at once);
/// otherwise it waits in the queue (see `queue`). The queue holds what
/// Replicate's budget cannot take yet: a fal task waits in fal's own
/// queue, not behind it.
async fn start(state: &AppState, task_id: TaskId, model: &str) -> Result<Generated> {
    let generated = Generated { task_id: task_id.to_string() };
    let now = state.clock.now_ms();
    let budget = state.budget_for(model);
    let first_in_line = state.is_fal(model) || !queries::others_queued(&state.db, &task_id).await?;
    if first_in_line && budget.take(Call::Create, Priority::Urgent).await? == Spend::Granted {
        if store::claim_queued(&state.db, &task_id, now, now + SUBMIT_GRACE_MS).await? {
            // Detached: if the browser goes away mid-request, a prediction
            // created at the provider must still have its id stored.
            let state = state.clone();
            let submitted = detached(async move { queue::submit(&state, &task_id).await }).await?;
            return match submitted {
                Submitted::Processing | Submitted::Requeued => Ok(generated),
                Submitted::Failed(e) => Err(e),
            };
        }
        // A dispatcher took it first.
        budget.give_back(Call::Create).await?;
    }
    state.queue.wake();
    Ok(generated)
}

/// A refusal for lack of credits says so plainly when a payment refund or
/// a dispute took the person below zero.
async fn below_zero(state: &AppState, user: &UserId, e: AppError) -> AppError {
    if e.kind == crate::error::ErrorKind::NotEnoughCredits
        && crate::server::credits::balance(&state.db, user.as_str()).await.is_ok_and(|credits| credits < 0)
    {
        return AppError::new(
            e.kind,
            "Your credits are below zero after a payment was refunded or disputed; buy credits to go on.",
        );
    }
    e
}

/// One task's state, advanced when it is due.
pub async fn check(state: &AppState, user: &UserId, task_deletions: Option<i64>, task_id: &TaskId) -> Result<TaskView> {
    if let Some(finished) = state.finished.get(task_id, task_deletions) {
        if finished.owner != *user {
            return Err(AppError::not_found());
        }
        state.metrics.poll();
        return Ok(finished.view.clone());
    }
    let task = queries::load_owned(&state.db, user, task_id).await?.ok_or_else(AppError::not_found)?;
    state.metrics.poll();
    let task = lifecycle::advance(state, task, Priority::Watched).await?;
    state.finished.remember(&task, task_deletions);
    schedule::advised(state, &task).await
}

/// Several tasks' states (ids of other users, or unknown, are left out),
/// in the order asked.
pub async fn check_many(
    state: &AppState,
    user: &UserId,
    task_deletions: Option<i64>,
    ids: &[TaskId],
) -> Result<Vec<TaskView>> {
    if ids.len() > MAX_BATCH {
        return Err(AppError::invalid(format!("at most {MAX_BATCH} task ids at once")));
    }
    let tasks = queries::owned_among(&state.db, user, ids).await?;
    // One task's trouble (already logged) must not hide the others: it is
    // answered as it was.
    let advanced: Vec<TaskRow> = futures::stream::iter(tasks)
        .map(|t| async move { lifecycle::advance(state, t.clone(), Priority::Watched).await.unwrap_or(t) })
        .buffered(8)
        .collect()
        .await;
    for task in &advanced {
        state.finished.remember(task, task_deletions);
    }
    let mut views = Vec::with_capacity(advanced.len());
    for task in &advanced {
        views.push(schedule::advised(state, task).await?);
    }
    views.sort_by_key(|v| ids.iter().position(|id| id.as_str() == v.id));
    Ok(views)
}

/// The owner's cancel (see `lifecycle::cancel`), detached: a client that
/// hangs up must not leave a cancel half-done.
pub async fn cancel(state: &AppState, user: &UserId, task_id: &TaskId) -> Result<TaskView> {
    let task = queries::load_owned(&state.db, user, task_id).await?.ok_or_else(AppError::not_found)?;
    detached(lifecycle::cancel(state.clone(), task)).await
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
    let after = after.as_ref().map(|(ms, id)| (*ms, id));
    let mut items = queries::history(&state.db, user, after, (PAGE_SIZE + 1) as i64).await?;
    let next_cursor = if items.len() > PAGE_SIZE {
        items.truncate(PAGE_SIZE);
        items.last().map(|t| format!("{}_{}", t.created_at, t.id))
    } else {
        None
    };
    let mut views = Vec::with_capacity(items.len());
    for task in &items {
        views.push(schedule::advised(state, task).await?);
    }
    Ok(HistoryPage { items: views, next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_trimmed_and_bounded() {
        assert_eq!(Prompt::parse("  a cat \n").unwrap().as_str(), "a cat");
        assert_eq!(Prompt::parse(" \n\t ").unwrap_err().message, "prompt is empty");
        assert!(Prompt::parse(&"x".repeat(2000)).is_ok());
        assert!(Prompt::parse(&"x".repeat(2001)).unwrap_err().message.contains("too long"));
        assert!(Prompt::parse("a\u{0}b").is_err());
    }
}
