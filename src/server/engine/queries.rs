//! Every read of `tasks`: one task (the hot path, a point read: `Db::optional`), a
//! person's history and batches, the reconciler's picks, a webhook's task,
//! an image or a share link to serve, and the operator's listings. The
//! writes are in `store`.

use sqlx::Row;

use super::task::{COLUMNS, TaskRow, in_flight, unfinished};
use crate::error::Result;
use crate::server::db::Db;
use crate::server::ids::{TaskId, UserId};
use crate::server::reads::Arg;

/// One of `user`'s tasks.
pub async fn load_owned(db: &Db, user: &UserId, task: &TaskId) -> Result<Option<TaskRow>> {
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("SELECT {COLUMNS} FROM tasks t WHERE t.id = $1 AND t.user_id = $2"));
    db.optional(&SQL, &[Arg::Text(task.as_str()), Arg::Text(user.as_str())]).await
}

/// A task by id, whoever owns it (the reconciler, re-checks, events).
pub async fn load(db: &Db, task: &TaskId) -> Result<Option<TaskRow>> {
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("SELECT {COLUMNS} FROM tasks t WHERE t.id = $1"));
    db.optional(&SQL, &[Arg::Text(task.as_str())]).await
}

/// The person's latest unfinished task (the generator resumes it).
pub async fn latest_unfinished(db: &Db, user: &UserId) -> Result<Option<TaskRow>> {
    let sql = format!(
        concat!(
            "SELECT {} FROM tasks t WHERE t.user_id = $1 AND t.status IN ",
            unfinished!(),
            " ORDER BY t.created_at DESC, t.id DESC LIMIT 1"
        ),
        COLUMNS
    );
    let row = sqlx::query(&sql).bind(user.as_str()).fetch_optional(db).await?;
    row.as_ref().map(TaskRow::from_row).transpose()
}

/// Those of `ids` that are `user`'s (others are left out), in no order.
pub async fn owned_among(db: &Db, user: &UserId, ids: &[TaskId]) -> Result<Vec<TaskRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql =
        format!("SELECT {COLUMNS} FROM tasks t WHERE t.user_id = $1 AND t.id IN ({})", placeholders(2, ids.len()));
    let mut query = sqlx::query(&sql).bind(user.as_str());
    for id in ids {
        query = query.bind(id.as_str());
    }
    query.fetch_all(db).await?.iter().map(TaskRow::from_row).collect()
}

/// Up to `limit` of the person's tasks, newest first, after `after`
/// (`created_at`, id) when given.
pub async fn history(db: &Db, user: &UserId, after: Option<(i64, &TaskId)>, limit: i64) -> Result<Vec<TaskRow>> {
    let rows = match after {
        None => {
            let sql = format!(
                "SELECT {COLUMNS} FROM tasks t WHERE t.user_id = $1 ORDER BY t.created_at DESC, t.id DESC LIMIT $2"
            );
            sqlx::query(&sql).bind(user.as_str()).bind(limit).fetch_all(db).await
        }
        Some((ms, id)) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM tasks t WHERE t.user_id = $1 AND (t.created_at < $2 OR (t.created_at = $2 AND \
                 t.id < $3)) ORDER BY t.created_at DESC, t.id DESC LIMIT $4"
            );
            sqlx::query(&sql).bind(user.as_str()).bind(ms).bind(id.as_str()).bind(limit).fetch_all(db).await
        }
    }?;
    rows.iter().map(TaskRow::from_row).collect()
}

/// Unfinished tasks whose check or deadline has come by `now`, soonest
/// first, at most `limit`.
pub async fn due(db: &Db, now: i64, limit: i64) -> Result<Vec<TaskId>> {
    sqlx::query(concat!(
        "SELECT id FROM tasks WHERE status IN ",
        unfinished!(),
        " AND (next_check_at <= $1 OR deadline_at <= $1) ORDER BY next_check_at LIMIT $2"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await?
    .iter()
    .map(|r| Ok(TaskId::from_db(r.try_get("id")?)))
    .collect()
}

/// The queue in the order it is served, at most `limit`: round-robin by
/// account (a person's n-th queued task comes after everyone's (n−1)-th),
/// where each person's tasks already at the provider count as served
/// (so one person's running tasks don't hold back others' first), then
/// oldest first.
pub const QUEUE_ORDER: &str = concat!(
    "SELECT q.id, q.model, q.created_at FROM (\
       SELECT t.id, t.model, t.created_at, ROW_NUMBER() OVER (PARTITION BY t.user_id ORDER BY t.created_at, t.id) \
         + COALESCE(r.n, 0) AS turn \
       FROM tasks t LEFT JOIN (\
         SELECT user_id, COUNT(*) AS n FROM tasks WHERE status IN ",
    in_flight!(),
    " GROUP BY user_id) r ON r.user_id = t.user_id \
       WHERE t.status = 'queued') q \
     ORDER BY q.turn, q.created_at, q.id LIMIT $1"
);

/// The first `limit` tasks of the queue, in the order they are served,
/// with when each was queued. One read of the order costs a pass over the
/// queued and the in-flight tasks (each person's in-flight tasks are
/// counted once, not once per queued task), so callers read a batch of
/// heads at a time.
pub async fn queue(db: &Db, limit: i64) -> Result<Vec<(TaskId, String, i64)>> {
    sqlx::query(QUEUE_ORDER)
        .bind(limit)
        .fetch_all(db)
        .await?
        .iter()
        .map(|r| Ok((TaskId::from_db(r.try_get("id")?), r.try_get("model")?, r.try_get("created_at")?)))
        .collect()
}

/// How many tasks are queued.
pub async fn queue_length(db: &Db) -> Result<i64> {
    let row =
        sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM tasks WHERE status = 'queued'").fetch_one(db).await?;
    Ok(row.try_get("n")?)
}

/// Whether any task but `task` is queued.
pub async fn others_queued(db: &Db, task: &TaskId) -> Result<bool> {
    let row = sqlx::query("SELECT id FROM tasks WHERE status = 'queued' AND id <> $1 LIMIT 1")
        .bind(task.as_str())
        .fetch_optional(db)
        .await?;
    Ok(row.is_some())
}

/// How many tasks are at the provider (what the checks are spread over),
/// but those of the models in `except` (the catalogue's, never a client's).
pub async fn in_flight_count(db: &Db, except: &[&str]) -> Result<i64> {
    let mut sql = concat!("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM tasks WHERE status IN ", in_flight!()).to_owned();
    if !except.is_empty() {
        sql.push_str(&format!(" AND model NOT IN ({})", placeholders(1, except.len())));
    }
    let row = except.iter().fold(sqlx::query(&sql), |q, model| q.bind(*model)).fetch_one(db).await?;
    Ok(row.try_get("n")?)
}

/// The task of a provider prediction, if it is one of ours (a point read:
/// every provider event makes it).
pub async fn of_prediction(db: &Db, prediction_id: &str) -> Result<Option<TaskRow>> {
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("SELECT {COLUMNS} FROM tasks t WHERE t.prediction_id = $1"));
    db.optional(&SQL, &[Arg::Text(prediction_id)]).await
}

/// The tasks of those of `predictions` that are ours, in no order (one
/// read for a batch of provider events).
pub async fn of_predictions(db: &Db, predictions: &[&str]) -> Result<Vec<TaskRow>> {
    if predictions.is_empty() {
        return Ok(Vec::new());
    }
    let sql =
        format!("SELECT {COLUMNS} FROM tasks t WHERE t.prediction_id IN ({})", placeholders(1, predictions.len()));
    let rows = predictions.iter().fold(sqlx::query(&sql), |q, id| q.bind(*id)).fetch_all(db).await?;
    rows.iter().map(TaskRow::from_row).collect()
}

/// `count` placeholders numbered from `$first`, comma separated: `$2, $3`.
pub(super) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// The rows of a `VALUES` list: `rows` groups of `width` placeholders
/// numbered from `$1` (`value_rows(2, 2)`: `($1, $2), ($3, $4)`).
pub(super) fn value_rows(rows: usize, width: usize) -> String {
    (0..rows).map(|row| format!("({})", placeholders(1 + row * width, width))).collect::<Vec<_>>().join(", ")
}

/// A completed task's stored images, as its owner may fetch them.
pub struct StoredOutputs {
    /// The first image's content type (tasks from before several images).
    pub first_type: Option<String>,
    /// Every image's content type, comma separated.
    pub types: Option<String>,
    pub count: i64,
}

/// The stored images of `user`'s completed `task`.
pub async fn stored_outputs(db: &Db, user: &str, task: &TaskId) -> Result<Option<StoredOutputs>> {
    let row = sqlx::query(
        "SELECT content_type, output_types, num_outputs FROM tasks \
         WHERE id = $1 AND user_id = $2 AND status = 'completed'",
    )
    .bind(task.as_str())
    .bind(user)
    .fetch_optional(db)
    .await?;
    row.map(|r| {
        Ok(StoredOutputs {
            first_type: r.try_get("content_type")?,
            types: r.try_get("output_types")?,
            count: r.try_get("num_outputs")?,
        })
    })
    .transpose()
}

/// Where the image `user`'s `task` started from is stored, if it has one.
pub async fn input_of(db: &Db, user: &str, task: &TaskId) -> Result<Option<String>> {
    let row = sqlx::query("SELECT input_key FROM tasks WHERE id = $1 AND user_id = $2")
        .bind(task.as_str())
        .bind(user)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| r.try_get::<Option<String>, _>("input_key")).transpose()?.flatten())
}

/// A shared image as its public page shows it.
pub struct SharedImage {
    pub task_id: TaskId,
    /// Whose it is (the owner sees "Upscale" on the page).
    pub owner: String,
    /// An upscale's scale (an upscale is not offered again).
    pub scale: Option<i64>,
    pub prompt: String,
    pub content_type: Option<String>,
    pub width: Option<i64>,
    pub height: Option<i64>,
}

/// The completed task shared under `token` (read from the database: an
/// unshare or a deletion on any instance takes effect at once).
pub async fn shared(db: &Db, token: &str) -> Result<Option<SharedImage>> {
    let row = sqlx::query(
        "SELECT id, user_id, scale, prompt, content_type, image_width, image_height FROM tasks \
         WHERE share_token = $1 AND status = 'completed'",
    )
    .bind(token)
    .fetch_optional(db)
    .await?;
    row.map(|r| {
        Ok(SharedImage {
            task_id: TaskId::from_db(r.try_get("id")?),
            owner: r.try_get("user_id")?,
            scale: r.try_get("scale")?,
            prompt: r.try_get("prompt")?,
            content_type: r.try_get("content_type")?,
            width: r.try_get("image_width")?,
            height: r.try_get("image_height")?,
        })
    })
    .transpose()
}

/// Whether the task's image size is recorded (for its share card).
pub async fn image_size_known(db: &Db, task: &TaskId) -> Result<bool> {
    let row = sqlx::query("SELECT image_width FROM tasks WHERE id = $1 AND image_width IS NOT NULL")
        .bind(task.as_str())
        .fetch_optional(db)
        .await?;
    Ok(row.is_some())
}

/// How many of the person's tasks are in each status (the operator's view).
pub async fn status_counts(db: &Db, user: &UserId) -> Result<Vec<(String, i64)>> {
    sqlx::query(
        "SELECT status, CAST(COUNT(*) AS BIGINT) AS n FROM tasks WHERE user_id = $1 GROUP BY status ORDER BY status",
    )
    .bind(user.as_str())
    .fetch_all(db)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
    .collect()
}

/// A task as the operator's listing shows it.
pub struct Listed {
    pub id: String,
    pub status: String,
    pub prompt: String,
    pub cost: i64,
    pub created_at: i64,
    pub email: String,
}

/// The latest tasks, of one status and one person when given.
pub async fn latest(db: &Db, status: Option<&str>, user: Option<&UserId>, limit: i64) -> Result<Vec<Listed>> {
    sqlx::query(
        "SELECT t.id, t.status, t.prompt, t.cost, t.created_at, u.email FROM tasks t JOIN users u ON u.id = t.user_id \
         WHERE ($1 IS NULL OR t.status = $1) AND ($2 IS NULL OR t.user_id = $2) \
         ORDER BY t.created_at DESC, t.id DESC LIMIT $3",
    )
    .bind(status)
    .bind(user.map(UserId::as_str))
    .bind(limit)
    .fetch_all(db)
    .await?
    .iter()
    .map(|r| {
        Ok(Listed {
            id: r.try_get("id")?,
            status: r.try_get("status")?,
            prompt: r.try_get("prompt")?,
            cost: r.try_get("cost")?,
            created_at: r.try_get("created_at")?,
            email: r.try_get("email")?,
        })
    })
    .collect()
}
