//! The entry points the server functions call: generate (validate, charge
//! and record, submit), check one task or many (answer, advancing it when it
//! is due), cancel, a page of history, and what the generator page renders
//! with. Ids arrive typed; what each call decides is in `lifecycle`.

use futures::StreamExt;

use super::lifecycle::{self, SUBMIT_GRACE_MS};
use super::store::{self, Caps, NewTask};
use super::task::TaskRow;
use super::{detached, queries, schedule};
use crate::error::{AppError, ErrorKind, Result};
use crate::model::{Generated, GeneratorInfo, HistoryPage, TaskView};
use crate::provider::ProviderError;
use crate::server::catalogue::{ModelSpec, RawInputs};
use crate::server::ids::{TaskId, UserId};
use crate::server::state::AppState;

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
        resume: resume.map(|t| schedule::advised(state, &t)),
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
        submit_grace_until: now + SUBMIT_GRACE_MS,
    };
    let caps = Caps { active: state.config.max_active_tasks, per_minute: state.config.generations_per_minute };
    store::insert_submitting(&state.db, new, caps).await?;

    // Detached: if the browser goes away mid-request, a prediction created
    // at the provider must still have its id stored.
    let input = model.provider_input(prompt.as_str(), &inputs);
    detached(submit(state.clone(), task_id, model.id.clone(), input)).await
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
            let now = state.clock.now_ms();
            let first_check = now + schedule::check_interval_ms(state);
            let moved = store::mark_processing(&state.db, &task_id, &prediction.id, first_check, now).await?;
            if moved {
                schedule::first_check(state, &task_id, first_check);
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
            lifecycle::fail_and_refund(state, &task_id, &format!("Could not start: {reason}.")).await?;
            Err(AppError::new(kind, format!("Could not start the generation ({reason}). Nothing was charged.")))
        }
    }
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
    let task = queries::load_owned(&state.reads, user, task_id).await?.ok_or_else(AppError::not_found)?;
    state.metrics.poll();
    let task = lifecycle::advance(state, task).await?;
    state.finished.remember(&task, task_deletions);
    Ok(schedule::advised(state, &task))
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
        .map(|t| async move { lifecycle::advance(state, t.clone()).await.unwrap_or(t) })
        .buffered(8)
        .collect()
        .await;
    for task in &advanced {
        state.finished.remember(task, task_deletions);
    }
    let mut views: Vec<TaskView> = advanced.iter().map(|t| schedule::advised(state, t)).collect();
    views.sort_by_key(|v| ids.iter().position(|id| id.as_str() == v.id));
    Ok(views)
}

/// The owner's cancel (see `lifecycle::cancel`), detached: a client that
/// hangs up must not leave a cancel half-done.
pub async fn cancel(state: &AppState, user: &UserId, task_id: &TaskId) -> Result<TaskView> {
    let task = queries::load_owned(&state.reads, user, task_id).await?.ok_or_else(AppError::not_found)?;
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
    Ok(HistoryPage { items: items.iter().map(|t| schedule::advised(state, t)).collect(), next_cursor })
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
