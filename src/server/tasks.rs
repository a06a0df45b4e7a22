//! The task engine: generate (charge, submit), check (poll the provider at
//! most once per interval, finalize exactly once), history, and the
//! reconciler that advances tasks nobody polls. All state is in the
//! database; every transition is a compare-and-set on `status`.

mod advance;
pub mod finalize;
mod finished;
pub mod recheck;
pub mod reconcile;
pub mod row;

pub use advance::advance;
pub use finalize::object_key;
pub use finished::Finished;

use futures::StreamExt;
use sqlx::Row;

use self::row::TaskRow;
use super::credits;
use super::db;
use super::state::AppState;
use crate::error::{AppError, ErrorKind, Result};
use crate::model::{Generated, GeneratorInfo, HistoryPage, ModelOption, TaskView};
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

/// Checks that `raw` looks like a task id (a UUID).
pub fn parse_task_id(raw: &str) -> Result<String> {
    uuid::Uuid::parse_str(raw.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| AppError::invalid("not a valid task id"))
}

/// What the generator page renders with.
pub async fn generator_setup(state: &AppState, user_id: &str) -> Result<GeneratorInfo> {
    let sql = format!(
        "SELECT {} FROM tasks t WHERE t.user_id = $1 AND t.status IN ('submitting', 'processing') \
         ORDER BY t.created_at DESC, t.id DESC LIMIT 1",
        row::COLUMNS
    );
    let resume = sqlx::query(&sql).bind(user_id).fetch_optional(&state.db).await.map_err(AppError::internal)?;
    Ok(GeneratorInfo {
        models: state.config.models.iter().map(|m| ModelOption { id: m.id.clone(), name: m.name.clone() }).collect(),
        cost: state.config.generation_cost,
        poll_interval_ms: state.config.poll_interval.as_millis() as u64,
        resume: resume.as_ref().map(TaskRow::from_row).transpose()?.map(|t| t.view()),
    })
}

/// Validates, charges, records and submits one generation.
#[tracing::instrument(skip(state, prompt), fields(task))]
pub async fn generate(state: &AppState, user_id: &str, prompt: &str, model: Option<&str>) -> Result<Generated> {
    let prompt = Prompt::parse(prompt)?;
    let model = match model.map(str::trim).filter(|m| !m.is_empty()) {
        None => state.config.models.first().map(|m| m.id.clone()).ok_or_else(|| AppError::internal("no models"))?,
        Some(m) => state
            .config
            .models
            .iter()
            .find(|s| s.id == m)
            .map(|s| s.id.clone())
            .ok_or_else(|| AppError::invalid(format!("unknown model {m}")))?,
    };
    let cost = state.config.generation_cost;
    let task_id = uuid::Uuid::new_v4().to_string();
    tracing::Span::current().record("task", task_id.as_str());
    let now = db::now_ms();
    let deadline = now + state.config.task_deadline.as_millis() as i64;

    // Admit, charge and record in one transaction, which starts with a
    // write so that it holds SQLite's write lock, or on PostgreSQL the
    // person's row, before it counts: concurrent generations of one person
    // (from any instance) are counted one after the other.
    let mut tx = state.db.begin().await.map_err(AppError::internal)?;
    sqlx::query("UPDATE users SET balance = balance WHERE id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(AppError::internal)?;
    admit(&mut tx, state, user_id, now).await?;
    credits::charge(&mut tx, user_id, &task_id, cost).await?;
    sqlx::query(
        "INSERT INTO tasks (id, user_id, prompt, model, cost, status, created_at, updated_at, deadline_at, next_check_at) \
         VALUES ($1, $2, $3, $4, $5, 'submitting', $6, $6, $7, $8)",
    )
    .bind(&task_id)
    .bind(user_id)
    .bind(prompt.as_str())
    .bind(&model)
    .bind(cost)
    .bind(now)
    .bind(deadline)
    .bind(now + SUBMIT_GRACE_MS)
    .execute(&mut *tx)
    .await
    .map_err(AppError::internal)?;
    tx.commit().await.map_err(AppError::internal)?;

    // Submit in a task of its own: if the browser goes away mid-request,
    // axum drops this future, and a prediction created at the provider must
    // still have its id stored.
    tokio::spawn(submit(state.clone(), task_id, model, prompt)).await.map_err(AppError::internal)?
}

/// Refuses a generation beyond the person's caps: generations running at
/// once (`DARKROOM_MAX_ACTIVE_TASKS`) and started in the last minute
/// (`DARKROOM_GENERATIONS_PER_MINUTE`). Failed generations count too: they
/// are refunded, so without the cap a script could loop for free.
async fn admit(conn: &mut sqlx::AnyConnection, state: &AppState, user_id: &str, now: i64) -> Result<()> {
    let max_active = state.config.max_active_tasks;
    let active: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM tasks WHERE user_id = $1 AND status IN ('submitting', 'processing')")
            .bind(user_id)
            .fetch_one(&mut *conn)
            .await
            .and_then(|r| r.try_get("n"))
            .map_err(AppError::internal)?;
    if active >= max_active {
        let running = if active == 1 { "1 generation".to_owned() } else { format!("{active} generations") };
        return Err(AppError::new(
            ErrorKind::RateLimited,
            format!("You have {running} running; wait for one to finish."),
        ));
    }
    let per_minute = state.config.generations_per_minute;
    let recent = sqlx::query(
        "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM tasks WHERE user_id = $1 AND created_at > $2",
    )
    .bind(user_id)
    .bind(now - 60_000)
    .fetch_one(&mut *conn)
    .await
    .map_err(AppError::internal)?;
    let started: i64 = recent.try_get("n").map_err(AppError::internal)?;
    if started >= per_minute {
        let oldest: Option<i64> = recent.try_get("oldest").map_err(AppError::internal)?;
        let wait_s = oldest.map_or(60, |t| ((t + 60_000 - now).max(1_000) + 999) / 1_000);
        return Err(AppError::new(
            ErrorKind::RateLimited,
            format!("You have started {started} generations in the last minute; try again in {wait_s} s."),
        ));
    }
    Ok(())
}

/// Sends a recorded, charged task to the provider and stores the
/// prediction id; on failure, fails and refunds it.
async fn submit(state: AppState, task_id: String, model: String, prompt: Prompt) -> Result<Generated> {
    let state = &state;
    let submitted = state.provider.create(&model, prompt.as_str(), Some(state.config.task_deadline)).await;
    state.metrics.provider_call("create", submitted.is_ok());
    match submitted {
        Ok(prediction) => {
            let now = db::now_ms();
            let moved = sqlx::query(
                "UPDATE tasks SET status = 'processing', prediction_id = $1, next_check_at = $2, updated_at = $3 \
                 WHERE id = $4 AND status = 'submitting'",
            )
            .bind(&prediction.id)
            .bind(now + check_interval_ms(state))
            .bind(now)
            .bind(&task_id)
            .execute(&state.db)
            .await
            .map_err(AppError::internal)?;
            if moved.rows_affected() == 0 {
                // The reconciler gave up on it meanwhile (and refunded).
                let _ = state.provider.cancel(&prediction.id).await;
            }
            tracing::info!(prediction = %prediction.id, "submitted");
            Ok(Generated { task_id })
        }
        Err(e) => {
            tracing::warn!("submission failed: {e}");
            let (kind, reason) = match &e {
                ProviderError::Invalid { detail } => {
                    (ErrorKind::Invalid, format!("the model refused the prompt: {detail}"))
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
pub async fn check(state: &AppState, user_id: &str, task_id: &str) -> Result<TaskView> {
    let task_id = parse_task_id(task_id)?;
    if let Some(finished) = state.finished.get(&task_id) {
        if finished.owner != user_id {
            return Err(AppError::not_found());
        }
        state.metrics.poll();
        return Ok(finished.view.clone());
    }
    let task = row::load_owned(&state.reads, user_id, &task_id).await?.ok_or_else(AppError::not_found)?;
    state.metrics.poll();
    let task = advance(state, task).await?;
    state.finished.remember(&task);
    Ok(task.view())
}

/// Several tasks' states (ids of other users, or unknown, are left out).
pub async fn check_many(state: &AppState, user_id: &str, task_ids: &[String]) -> Result<Vec<TaskView>> {
    if task_ids.len() > MAX_BATCH {
        return Err(AppError::invalid(format!("at most {MAX_BATCH} task ids at once")));
    }
    let ids = task_ids.iter().map(|id| parse_task_id(id)).collect::<Result<Vec<_>>>()?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = (0..ids.len()).map(|i| format!("${}", i + 2)).collect::<Vec<_>>().join(", ");
    let sql = format!("SELECT {} FROM tasks t WHERE t.user_id = $1 AND t.id IN ({placeholders})", row::COLUMNS);
    let mut query = sqlx::query(&sql).bind(user_id);
    for id in &ids {
        query = query.bind(id);
    }
    let rows = query.fetch_all(&state.db).await.map_err(AppError::internal)?;
    let tasks = rows.iter().map(TaskRow::from_row).collect::<Result<Vec<_>>>()?;
    // One task's trouble (already logged) must not hide the others: it is
    // answered as it was.
    let advanced: Vec<TaskRow> = futures::stream::iter(tasks)
        .map(|t| async move { advance(state, t.clone()).await.unwrap_or(t) })
        .buffered(8)
        .collect()
        .await;
    for task in &advanced {
        state.finished.remember(task);
    }
    let mut views: Vec<TaskView> = advanced.iter().map(TaskRow::view).collect();
    views.sort_by_key(|v| ids.iter().position(|id| *id == v.id));
    Ok(views)
}

/// A page of history, newest first. The cursor is opaque to clients.
pub async fn history(state: &AppState, user_id: &str, cursor: Option<&str>) -> Result<HistoryPage> {
    let after = match cursor.map(str::trim).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let bad = || AppError::invalid("not a valid cursor");
            let (ms, id) = c.split_once('_').ok_or_else(bad)?;
            Some((ms.parse::<i64>().map_err(|_| bad())?, parse_task_id(id).map_err(|_| bad())?))
        }
    };
    let limit = (PAGE_SIZE + 1) as i64;
    let rows = match &after {
        None => {
            let sql = format!(
                "SELECT {} FROM tasks t WHERE t.user_id = $1 ORDER BY t.created_at DESC, t.id DESC LIMIT $2",
                row::COLUMNS
            );
            sqlx::query(&sql).bind(user_id).bind(limit).fetch_all(&state.db).await
        }
        Some((ms, id)) => {
            let sql = format!(
                "SELECT {} FROM tasks t WHERE t.user_id = $1 AND (t.created_at < $2 OR (t.created_at = $2 AND t.id < $3)) \
                 ORDER BY t.created_at DESC, t.id DESC LIMIT $4",
                row::COLUMNS
            );
            sqlx::query(&sql).bind(user_id).bind(*ms).bind(id).bind(limit).fetch_all(&state.db).await
        }
    }
    .map_err(AppError::internal)?;
    let mut items = rows.iter().map(TaskRow::from_row).collect::<Result<Vec<_>>>()?;
    let next_cursor = if items.len() > PAGE_SIZE {
        items.truncate(PAGE_SIZE);
        items.last().map(|t| format!("{}_{}", t.created_at, t.id))
    } else {
        None
    };
    Ok(HistoryPage { items: items.iter().map(TaskRow::view).collect(), next_cursor })
}

fn check_interval_ms(state: &AppState) -> i64 {
    state.config.provider_check.as_millis() as i64
}

/// Fails an unfinished task and refunds it, in one transaction; true when
/// this call made the transition (false: it had already left processing).
pub async fn fail_and_refund(state: &AppState, task_id: &str, error: &str) -> Result<bool> {
    fail_from(state, task_id, error, "status IN ('submitting', 'processing')").await
}

/// Like [`fail_and_refund`], only while the task is still `submitting` (a
/// submission that just succeeded must not be failed on a stale read).
async fn fail_unsubmitted(state: &AppState, task_id: &str, error: &str) -> Result<bool> {
    fail_from(state, task_id, error, "status = 'submitting'").await
}

async fn fail_from(state: &AppState, task_id: &str, error: &str, status_clause: &str) -> Result<bool> {
    let now = db::now_ms();
    let mut tx = state.db.begin().await.map_err(AppError::internal)?;
    let sql = format!(
        "UPDATE tasks SET status = 'failed', error = $1, finished_at = $2, updated_at = $2 \
         WHERE id = $3 AND {status_clause} RETURNING user_id, cost"
    );
    let row = sqlx::query(&sql)
        .bind(error)
        .bind(now)
        .bind(task_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(AppError::internal)?;
    let Some(row) = row else {
        return Ok(false);
    };
    let user_id: String = row.try_get("user_id").map_err(AppError::internal)?;
    let cost: i64 = row.try_get("cost").map_err(AppError::internal)?;
    credits::refund(&mut tx, &user_id, task_id, cost).await?;
    tx.commit().await.map_err(AppError::internal)?;
    state.metrics.failed_and_refunded();
    tracing::info!(task = %task_id, "failed and refunded: {error}");
    Ok(true)
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_owned() } else { format!("{}…", s.chars().take(max).collect::<String>()) }
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

    #[test]
    fn task_ids_must_be_uuids() {
        assert!(parse_task_id("0b4f9a8e-5f7e-4a52-9d2e-1d2b3c4d5e6f").is_ok());
        assert_eq!(parse_task_id("../../etc").unwrap_err().message, "not a valid task id");
    }
}
