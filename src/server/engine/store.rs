//! Every write to the `tasks` table, as named transitions. The rest of the
//! engine decides *when* a transition happens; this module is the only place
//! that says *how*, and each transition is a compare-and-set on the state it
//! leaves, so concurrent pollers, instances and the reconciler can race
//! freely: exactly one of them makes each transition.
//!
//! ```text
//!                 generate: charge + insert (one transaction)
//!                               │
//!                               ▼
//!                         ┌────────────┐  deadline (fail_and_refund)
//!                         │   queued   │─────────────────────────────────┐
//!                         └────────────┘                                 │
//!        claim_queued       │       ▲ requeue (the provider answered     │
//!                           │       │ 429: the create was not made)      │
//!                           ▼       │                                    │
//!                         ┌────────────┐  create failed, or stuck past   │
//!                         │ submitting │──────── SUBMIT_GRACE ───────────┤
//!                         └────────────┘                                 │
//!                               │ mark_processing (prediction id)        │
//!                               ▼                                        ▼
//!   claim_check ──────▶ ┌────────────┐  provider failed / canceled /  ┌────────┐
//!   (next_check_at,     │ processing │──── 404 / unusable output / ──▶│ failed │
//!    check_token)       └────────────┘     deadline (fail_and_refund) │+refund │
//!   set_reading,          │        ▲                                  └────────┘
//!   postpone              │        │ release_lease (retry later)
//!                         │ take_lease / extend_lease (download in progress)
//!                         ▼        │
//!                  [processing, leased: next_check_at = now + lease,
//!                   check_token = the downloader's]
//!                         │ image stored, then mark_completed
//!                         ▼
//!                   ┌───────────┐
//!                   │ completed │
//!                   └───────────┘
//!
//!   queued | submitting | processing ── the owner's cancel: request_cancel,
//!                       then the provider (once there is a prediction), then
//!                       cancel_and_refund ──▶ canceled (+refund)
//!   (a poll that sees the prediction canceled after request_cancel ends the
//!    task canceled too: end_canceled_at_provider)
//! ```
//!
//! - A queued task is charged and not yet submitted: the provider budget
//!   had no room for its create. Dispatchers on every instance take the
//!   queue's head in fair order (`queries::QUEUE_ORDER`) and take each
//!   task by compare-and-set ([`claim_queued`]), so each is submitted once.
//! - Polls, batched polls, re-checks and the reconciler all enter through
//!   `advance`, which claims a check (at most one provider call per task per
//!   interval, across instances) and then calls the transition the answer
//!   calls for. The reconciler also enforces the deadline: a task still
//!   unfinished at `deadline_at` fails and is refunded.
//! - The download lease is a sub-state of `processing`: whoever holds
//!   `check_token` while `leased_until` is in the future is downloading; if
//!   it dies, the lease runs out and the next claim takes over. A provider
//!   event (webhook) may take over an ordinary claim (`claim_for_event`),
//!   never a lease.
//! - A cancel races the same way: whichever of `cancel_and_refund`,
//!   `mark_completed` and `fail_and_refund` leaves `processing` first
//!   decides; the others change nothing.
//! - A finished task may be shared (`share`, `unshare`: a token on the
//!   row) and deleted by its owner: `delete_finished` removes the row and
//!   records a purge in one transaction, so the task is gone everywhere at
//!   once; its stored objects are removed next and the purge row with them
//!   (`purged`). A purge left behind by a crash is finished by the
//!   reconciler (`pending_purges`). Its ledger rows stay. An account's
//!   deletion deletes all its tasks this way at once (`delete_every_task`),
//!   once none is unfinished.
//! - Money moves only inside these transactions, through `credits`: the
//!   charge in [`insert_queued`], the refund in [`fail_and_refund`] and
//!   [`cancel_and_refund`].

use sqlx::{AnyConnection, Row};

use super::task::{State, in_flight, unfinished};
use crate::error::{AppError, ErrorKind, Result};
use crate::server::catalogue::Inputs;
use crate::server::credits;
use crate::server::db::Db;
use crate::server::ids::{TaskId, UserId};
use crate::server::reads::Arg;

/// A task about to be charged and recorded.
pub struct NewTask<'a> {
    pub id: &'a TaskId,
    pub user: &'a UserId,
    pub prompt: &'a str,
    pub model: &'a str,
    /// The model inputs, checked against the model.
    pub inputs: &'a Inputs,
    /// The whole charge: the model's credits per image times the images.
    pub cost: i64,
    pub now: i64,
    pub deadline_at: i64,
    /// The task's copy of the image it starts from, if any.
    pub input_key: Option<&'a str>,
    /// An upscale or a variation: the task whose image it starts from.
    pub source: Option<&'a TaskId>,
    /// An upscale: by how much.
    pub scale: Option<u8>,
}

/// How many generations a person may have going.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Queued, submitting or processing at once.
    pub active: i64,
    /// Started in the last minute.
    pub per_minute: i64,
    /// Only an account whose email is verified may generate.
    pub verified_only: bool,
}

/// Charges the cost and inserts the task as `queued`, in one transaction,
/// if the person is within their [`Caps`] and the balance covers the cost;
/// otherwise changes nothing. A queued task's only check is its deadline.
pub async fn insert_queued(db: &Db, task: NewTask<'_>, caps: Caps) -> Result<()> {
    // The transaction starts with a write, so it holds SQLite's write lock,
    // or on PostgreSQL the person's row, before it counts: concurrent
    // generations of one person (from any instance) are counted one after
    // the other.
    let mut tx = db.begin().await?;
    let verified = sqlx::query("UPDATE users SET balance = balance WHERE id = $1 RETURNING email_verified_at")
        .bind(task.user.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| row.try_get::<Option<i64>, _>("email_verified_at"))
        .transpose()?
        .flatten()
        .is_some();
    if caps.verified_only && !verified {
        return Err(AppError::new(
            ErrorKind::Unverified,
            "confirm your email address first: open the link we sent you (your account page sends a new one)",
        ));
    }
    within_caps(&mut tx, task.user, task.now, caps).await?;
    credits::charge(&mut tx, task.user, task.id, task.cost, task.now).await?;
    sqlx::query(
        "INSERT INTO tasks (id, user_id, prompt, model, cost, status, created_at, updated_at, deadline_at, next_check_at, \
         aspect_ratio, num_outputs, seed, negative_prompt, input_key, source_task_id, scale) \
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $6, $7, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(task.id.as_str())
    .bind(task.user.as_str())
    .bind(task.prompt)
    .bind(task.model)
    .bind(task.cost)
    .bind(task.now)
    .bind(task.deadline_at)
    .bind(task.inputs.aspect_ratio.as_deref())
    .bind(i64::from(task.inputs.num_outputs))
    .bind(task.inputs.seed.map(i64::from))
    .bind(task.inputs.negative_prompt.as_deref())
    .bind(task.input_key)
    .bind(task.source.map(TaskId::as_str))
    .bind(task.scale.map(i64::from))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Refuses a generation beyond the person's caps. The per-minute cap counts
/// the person's charges in the ledger, which nothing deletes: failed,
/// canceled and deleted generations all count (they are refunded, so
/// without the cap a script could loop for free).
async fn within_caps(conn: &mut AnyConnection, user: &UserId, now: i64, caps: Caps) -> Result<()> {
    let active: i64 =
        sqlx::query(concat!("SELECT COUNT(*) AS n FROM tasks WHERE user_id = $1 AND status IN ", unfinished!()))
            .bind(user.as_str())
            .fetch_one(&mut *conn)
            .await?
            .try_get("n")?;
    if active >= caps.active {
        let running = if active == 1 { "1 generation".to_owned() } else { format!("{active} generations") };
        return Err(AppError::new(
            ErrorKind::RateLimited,
            format!("You have {running} running; wait for one to finish."),
        ));
    }
    let recent = sqlx::query(
        "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM credit_ledger \
         WHERE user_id = $1 AND kind = 'charge' AND created_at > $2",
    )
    .bind(user.as_str())
    .bind(now - 60_000)
    .fetch_one(&mut *conn)
    .await?;
    let started: i64 = recent.try_get("n")?;
    if started >= caps.per_minute {
        let oldest: Option<i64> = recent.try_get("oldest")?;
        let wait_s = oldest.map_or(60, |t| ((t + 60_000 - now).max(1_000) + 999) / 1_000);
        return Err(AppError::new(
            ErrorKind::RateLimited,
            format!("You have started {started} generations in the last minute; try again in {wait_s} s."),
        ));
    }
    Ok(())
}

/// `queued` → `submitting`: this caller submits `task` now (its create is
/// stuck if still unanswered at `grace_until`); false when another
/// dispatcher took it, or it left the queue (canceled, expired).
pub async fn claim_queued(db: &Db, task: &TaskId, now: i64, grace_until: i64) -> Result<bool> {
    let claimed = sqlx::query(
        "UPDATE tasks SET status = 'submitting', submitted_at = $1, next_check_at = $2, updated_at = $1 \
         WHERE id = $3 AND status = 'queued'",
    )
    .bind(now)
    .bind(grace_until)
    .bind(task.as_str())
    .execute(db)
    .await?;
    Ok(claimed.rows_affected() == 1)
}

/// `submitting` → `queued` again: the provider refused the create with a
/// 429, so no prediction exists; the task waits for the budget once more.
pub async fn requeue(db: &Db, task: &TaskId, now: i64) -> Result<bool> {
    let back = sqlx::query(
        "UPDATE tasks SET status = 'queued', submitted_at = NULL, next_check_at = deadline_at, updated_at = $1 \
         WHERE id = $2 AND status = 'submitting'",
    )
    .bind(now)
    .bind(task.as_str())
    .execute(db)
    .await?;
    Ok(back.rows_affected() == 1)
}

/// `submitting` → `processing` with the provider's prediction id; false
/// when the task had already left `submitting` (failed meanwhile).
pub async fn mark_processing(
    db: &Db,
    task: &TaskId,
    prediction_id: &str,
    next_check_at: i64,
    now: i64,
) -> Result<bool> {
    let moved = sqlx::query(
        "UPDATE tasks SET status = 'processing', prediction_id = $1, next_check_at = $2, updated_at = $3 \
         WHERE id = $4 AND status = 'submitting'",
    )
    .bind(prediction_id)
    .bind(next_check_at)
    .bind(now)
    .bind(task.as_str())
    .execute(db)
    .await?;
    Ok(moved.rows_affected() == 1)
}

/// A claim on a task's provider check; its token also holds the download
/// lease that may follow.
#[derive(Debug, Clone)]
pub struct Claim {
    token: String,
    /// The next check the claim planned.
    next_check_at: i64,
}

impl Claim {
    /// When the task is checked next, as the claim wrote it.
    pub fn next_check_at(&self) -> i64 {
        self.next_check_at
    }
}

/// Claims this interval's provider check: only when the previous claim
/// (or lease) has run out. `None` when another poller has it. A claim is a
/// compare-and-set, so it may run twice ([`Db::repeatable`]): the second
/// finds the first's claim and takes nothing.
pub async fn claim_check(db: &Db, task: &TaskId, now: i64, next_check_at: i64) -> Result<Option<Claim>> {
    let token = uuid::Uuid::new_v4().to_string();
    let claimed = db
        .repeatable(
            "UPDATE tasks SET next_check_at = $1, check_token = $2, last_polled_at = $3, checked_at = $3 \
             WHERE id = $4 AND status = 'processing' AND next_check_at <= $3",
            &[Arg::Int(next_check_at), Arg::Text(&token), Arg::Int(now), Arg::Text(task.as_str())],
        )
        .await?;
    Ok((claimed == 1).then_some(Claim { token, next_check_at }))
}

/// Claims a task for a provider event (a verified webhook), which carries
/// the prediction, so no check interval needs to have passed: it takes over
/// an ordinary claim, never a download lease. `None` while one is held.
pub async fn claim_for_event(db: &Db, task: &TaskId, now: i64, next_check_at: i64) -> Result<Option<Claim>> {
    let (token, next_check_at) = (uuid::Uuid::new_v4().to_string(), next_check_at.max(now));
    let claimed = sqlx::query(
        "UPDATE tasks SET next_check_at = $1, check_token = $2, leased_until = NULL \
         WHERE id = $3 AND status = 'processing' AND (leased_until IS NULL OR leased_until <= $4)",
    )
    .bind(next_check_at)
    .bind(&token)
    .bind(task.as_str())
    .bind(now)
    .execute(db)
    .await?;
    Ok((claimed.rows_affected() == 1).then_some(Claim { token, next_check_at }))
}

/// Takes (or extends) the download lease until `until`, with the claim
/// made for this check; false when another poller has claimed it since.
pub async fn extend_lease(db: &Db, task: &TaskId, claim: &Claim, until: i64) -> Result<bool> {
    let held = sqlx::query(
        "UPDATE tasks SET next_check_at = $1, leased_until = $1 \
         WHERE id = $2 AND check_token = $3 AND status = 'processing'",
    )
    .bind(until)
    .bind(task.as_str())
    .bind(&claim.token)
    .execute(db)
    .await?;
    Ok(held.rows_affected() == 1)
}

/// Gives the task back for another attempt at `retry_at`.
pub async fn release_lease(db: &Db, task: &TaskId, claim: &Claim, retry_at: i64) -> Result<()> {
    sqlx::query(
        "UPDATE tasks SET next_check_at = $1, leased_until = NULL \
         WHERE id = $2 AND check_token = $3 AND status = 'processing'",
    )
    .bind(retry_at)
    .bind(task.as_str())
    .bind(&claim.token)
    .execute(db)
    .await?;
    Ok(())
}

/// What a check or an event read of a running prediction that its task
/// does not show yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// A new progress (0–100); `None` keeps the stored one.
    pub progress: Option<u8>,
    /// Its place in the provider's queue (0: next), `None` once it runs.
    pub queue: Option<u32>,
    /// With a new progress: when the prediction should end by the
    /// provider's own start time and progress (`schedule::expected_end_ms`),
    /// if they say.
    pub ends_at: Option<i64>,
}

impl Reading {
    /// What `prediction` changes of `task`, if anything (most checks of a
    /// long task: nothing, and nothing is written).
    pub fn of(task: &super::task::TaskRow, prediction: &crate::provider::Prediction) -> Option<Self> {
        Self::new(task, prediction.progress, prediction.queue_position)
    }

    /// What a `progress` and a place in the `queue` read of a running
    /// prediction change of `task`, if anything.
    pub fn new(task: &super::task::TaskRow, progress: Option<u8>, queue: Option<u32>) -> Option<Self> {
        let progress = progress.map(|p| p.min(100)).filter(|&p| task.progress != Some(i64::from(p)));
        (progress.is_some() || queue != task.provider_queue).then_some(Self { progress, queue, ends_at: None })
    }

    /// This reading with the expected end `ends_at` that its progress
    /// points to (kept only with a new progress).
    pub fn ending(self, ends_at: Option<i64>) -> Self {
        Self { ends_at: ends_at.filter(|_| self.progress.is_some()), ..self }
    }
}

/// Records what the provider said of a processing task, as read at
/// `read_at` (kept in `last_polled_at`: the poll advice extrapolates from
/// it), and brings its next check forward to `check_by` when that is
/// sooner (as [`check_by`]).
pub async fn set_reading(db: &Db, task: &TaskId, reading: Reading, read_at: i64, check_by: Option<i64>) -> Result<()> {
    let progress = reading.progress.map_or(-1, i64::from);
    let queue = reading.queue.map_or(-1, i64::from);
    db.repeatable(
        "UPDATE tasks SET progress = COALESCE(NULLIF($1, -1), progress), provider_queue = NULLIF($2, -1), \
             expected_end_at = CASE WHEN $1 = -1 THEN expected_end_at ELSE NULLIF($5, -1) END, \
             next_check_at = CASE WHEN $6 >= 0 AND $6 < next_check_at THEN $6 ELSE next_check_at END, \
             last_polled_at = $3 WHERE id = $4 AND status = 'processing'",
        &[
            Arg::Int(progress),
            Arg::Int(queue),
            Arg::Int(read_at),
            Arg::Text(task.as_str()),
            Arg::Int(ends_at(reading)),
            Arg::Int(check_by.filter(|&at| at >= 0).unwrap_or(-1)),
        ],
    )
    .await?;
    Ok(())
}

/// Brings a processing task's next check forward to `at` (never later
/// than already planned): a check at its expected end, which the spacing
/// of regular checks would otherwise hold back.
pub async fn check_by(db: &Db, task: &TaskId, at: i64) -> Result<()> {
    db.repeatable(
        "UPDATE tasks SET next_check_at = $1 WHERE id = $2 AND status = 'processing' AND next_check_at > $1",
        &[Arg::Int(at), Arg::Text(task.as_str())],
    )
    .await?;
    Ok(())
}

/// A reading's expected end as bound: -1 when unknown (stored as NULL).
fn ends_at(reading: Reading) -> i64 {
    reading.ends_at.filter(|&at| at >= 0).unwrap_or(-1)
}

/// Moves the next check to `until` (never earlier than already planned):
/// the provider asked us to wait.
pub async fn postpone(db: &Db, task: &TaskId, until: i64) -> Result<()> {
    db.repeatable(
        "UPDATE tasks SET next_check_at = $1 WHERE id = $2 AND status = 'processing' AND next_check_at < $1",
        &[Arg::Int(until), Arg::Text(task.as_str())],
    )
    .await?;
    Ok(())
}

/// One provider event's news about a processing task, received at `now`:
/// its `reading`, if it has one (as [`set_reading`]), and the next check
/// at `until` (the prediction's expected end, or a few intervals on),
/// earlier or later than planned — a later event knows more — but never
/// beyond `trust_ms` after the task's last provider check (or its
/// creation), however many events arrive, so events alone cannot keep the
/// provider from being asked; and never while a download holds the task.
#[derive(Debug, Clone, Copy)]
pub struct Noted<'a> {
    pub task: &'a TaskId,
    pub reading: Option<Reading>,
    pub until: i64,
    pub trust_ms: i64,
    pub now: i64,
}

/// Records one event's news (see [`Noted`]).
pub async fn note_event(
    db: &Db,
    task: &TaskId,
    reading: Option<Reading>,
    until: i64,
    trust_ms: i64,
    now: i64,
) -> Result<()> {
    let mut conn = db.acquire().await?;
    note_events(&mut conn, &[Noted { task, reading, until, trust_ms, now }]).await
}

/// Records a batch of events' news ([`Noted`]), in order, as if each were
/// written in turn, in one statement per [`ROWS`] tasks: a task's events
/// are folded first (the last reading's place in the queue, the last
/// progress reported, the last event's next check). Tasks are written in
/// the order of their ids (on PostgreSQL, locked so first), so two
/// instances' batches never wait on each other in a circle. Call it in a
/// transaction to write the batch at once.
pub async fn note_events(conn: &mut AnyConnection, events: &[Noted<'_>]) -> Result<()> {
    /// One task's events folded: the values [`note_events`]' statement binds.
    struct Folded {
        /// The last progress reported; -1: none, the stored one stays.
        progress: i64,
        /// The last reading's place in the queue; -1: running, -2: no
        /// reading, the stored one stays (and so does `last_polled_at`).
        queue: i64,
        /// When the last reading was taken.
        read_at: i64,
        /// The last new progress's expected end; -1: unknown, -2: no new
        /// progress, the stored one stays.
        ends_at: i64,
        until: i64,
        trust_ms: i64,
        now: i64,
    }
    let mut folded: std::collections::BTreeMap<&str, Folded> = std::collections::BTreeMap::new();
    for e in events {
        let f = folded.entry(e.task.as_str()).or_insert(Folded {
            progress: -1,
            queue: -2,
            read_at: 0,
            ends_at: -2,
            until: e.until,
            trust_ms: e.trust_ms,
            now: e.now,
        });
        if let Some(reading) = e.reading {
            if let Some(progress) = reading.progress {
                f.progress = i64::from(progress);
                f.ends_at = ends_at(reading);
            }
            f.queue = reading.queue.map_or(-1, i64::from);
            f.read_at = e.now;
        }
        (f.until, f.trust_ms, f.now) = (e.until, e.trust_ms, e.now);
    }
    let folded: Vec<(&str, Folded)> = folded.into_iter().collect();
    // One row cannot wait in a circle: only batches are locked first.
    let lock_first = folded.len() > 1 && conn.backend_name() == "PostgreSQL";
    for rows in folded.chunks(ROWS) {
        if lock_first {
            let sql = format!(
                "SELECT id FROM tasks WHERE id IN ({}) ORDER BY id FOR UPDATE",
                super::queries::placeholders(1, rows.len())
            );
            let mut lock = sqlx::query(&sql).persistent(false);
            for (id, _) in rows {
                lock = lock.bind(*id);
            }
            lock.fetch_all(&mut *conn).await?;
        }
        let sql = format!(
            "WITH news (n_id, n_progress, n_queue, n_read_at, n_ends_at, n_until, n_trust, n_now) AS (VALUES {}) \
             UPDATE tasks SET progress = COALESCE(NULLIF(news.n_progress, -1), tasks.progress), \
             expected_end_at = CASE WHEN news.n_ends_at = -2 THEN tasks.expected_end_at ELSE NULLIF(news.n_ends_at, -1) END, \
             provider_queue = CASE WHEN news.n_queue = -2 THEN tasks.provider_queue ELSE NULLIF(news.n_queue, -1) END, \
             last_polled_at = CASE WHEN news.n_queue = -2 THEN tasks.last_polled_at ELSE news.n_read_at END, \
             next_check_at = CASE WHEN tasks.leased_until IS NOT NULL AND tasks.leased_until > news.n_now \
             THEN tasks.next_check_at \
             WHEN news.n_until < COALESCE(tasks.checked_at, tasks.created_at) + news.n_trust THEN news.n_until \
             ELSE COALESCE(tasks.checked_at, tasks.created_at) + news.n_trust END \
             FROM news WHERE tasks.id = news.n_id AND tasks.status = 'processing'",
            super::queries::value_rows(rows.len(), 8)
        );
        let mut update = sqlx::query(&sql).persistent(false);
        for (id, f) in rows {
            update = update
                .bind(*id)
                .bind(f.progress)
                .bind(f.queue)
                .bind(f.read_at)
                .bind(f.ends_at)
                .bind(f.until)
                .bind(f.trust_ms)
                .bind(f.now);
        }
        update.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Most rows one batched statement writes.
const ROWS: usize = 256;

/// Records a provider event's `webhook-id` as applied; false when it was
/// already (a duplicate or a replay).
pub async fn first_delivery(db: &Db, id: &str, now: i64) -> Result<bool> {
    let mut conn = db.acquire().await?;
    Ok(first_deliveries(&mut conn, &[(id, now)]).await?.contains(id))
}

/// Records the `webhook-id`s of a batch of provider events (each with when
/// it was received), in the order given (sort them by id so that two
/// instances' batches never wait on each other in a circle); the ones seen
/// for the first time. An id given twice is recorded once.
pub async fn first_deliveries(
    conn: &mut AnyConnection,
    deliveries: &[(&str, i64)],
) -> Result<std::collections::HashSet<String>> {
    let mut fresh = std::collections::HashSet::new();
    for rows in deliveries.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO webhook_deliveries (id, received_at) VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
            super::queries::value_rows(rows.len(), 2)
        );
        let mut insert = sqlx::query(&sql).persistent(false);
        for (id, now) in rows {
            insert = insert.bind(*id).bind(*now);
        }
        for row in insert.fetch_all(&mut *conn).await? {
            fresh.insert(row.try_get::<String, _>("id")?);
        }
    }
    Ok(fresh)
}

/// Forgets deliveries received before `before`; how many.
pub async fn forget_deliveries(db: &Db, before: i64) -> Result<u64> {
    let done = sqlx::query("DELETE FROM webhook_deliveries WHERE received_at < $1").bind(before).execute(db).await?;
    Ok(done.rows_affected())
}

/// The stored images of a completed task.
pub struct StoredImages<'a> {
    /// Where the first is (the others follow from it: `finalize::output_key`).
    pub key: &'a str,
    /// Each image's content type, in order.
    pub content_types: &'a [&'static str],
    /// All of them together.
    pub size: u64,
    /// The seed the provider reported, kept unless one was asked for.
    pub seed: Option<u32>,
}

/// `processing` → `completed`, once all its images are in the store; false
/// when the task had already left `processing`.
pub async fn mark_completed(db: &Db, task: &TaskId, images: StoredImages<'_>, now: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE tasks SET status = 'completed', object_key = $1, content_type = $2, byte_size = $3, progress = 100, \
         output_types = $4, seed = COALESCE(seed, $5), finished_at = $6, updated_at = $6 \
         WHERE id = $7 AND status = 'processing'",
    )
    .bind(images.key)
    .bind(images.content_types.first().copied().unwrap_or("application/octet-stream"))
    .bind(images.size as i64)
    .bind(images.content_types.join(","))
    .bind(images.seed.map(i64::from))
    .bind(now)
    .bind(task.as_str())
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The states a task may fail from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailFrom {
    /// `queued`, `submitting` or `processing`.
    Unfinished,
    /// Only `submitting`: a submission that just succeeded must not be
    /// failed on a stale read.
    Submitting,
}

/// `from` → `failed` with `error`, and the cost refunded, in one
/// transaction; true when this call made the transition.
pub async fn fail_and_refund(db: &Db, task: &TaskId, from: FailFrom, error: &str, now: i64) -> Result<bool> {
    let sql = match from {
        FailFrom::Unfinished => concat!(
            "UPDATE tasks SET status = 'failed', error = $1, finished_at = $2, updated_at = $2 \
             WHERE id = $3 AND status IN ",
            unfinished!(),
            " RETURNING user_id, cost"
        ),
        FailFrom::Submitting => {
            "UPDATE tasks SET status = 'failed', error = $1, finished_at = $2, updated_at = $2 \
             WHERE id = $3 AND status = 'submitting' RETURNING user_id, cost"
        }
    };
    Ok(end_and_refund(db, task, sqlx::query(sql).bind(error).bind(now).bind(task.as_str()), now).await?.is_some())
}

/// What a cancel ended: the prediction the task had by then, if any (it
/// may have been stored after the caller read the task).
pub struct Canceled {
    pub prediction_id: Option<String>,
}

/// `queued` | `submitting` | `processing` → `canceled` (the owner's
/// cancel), and the cost refunded, in one transaction; `None` when the task
/// had finished first.
pub async fn cancel_and_refund(db: &Db, task: &TaskId, now: i64) -> Result<Option<Canceled>> {
    let sql = concat!(
        "UPDATE tasks SET status = 'canceled', finished_at = $1, updated_at = $1 WHERE id = $2 AND status IN ",
        unfinished!(),
        " RETURNING user_id, cost, prediction_id"
    );
    match end_and_refund(db, task, sqlx::query(sql).bind(now).bind(task.as_str()), now).await? {
        Some(row) => Ok(Some(Canceled { prediction_id: row.try_get("prediction_id")? })),
        None => Ok(None),
    }
}

/// Records the owner's wish to cancel an unfinished task, before the
/// provider is asked; false when the task has finished.
pub async fn request_cancel(db: &Db, task: &TaskId, now: i64) -> Result<bool> {
    let asked =
        sqlx::query(concat!("UPDATE tasks SET cancel_requested_at = $1 WHERE id = $2 AND status IN ", unfinished!()))
            .bind(now)
            .bind(task.as_str())
            .execute(db)
            .await?;
    Ok(asked.rows_affected() == 1)
}

/// How an unfinished task ended whose prediction the provider reports
/// canceled: `canceled` when its owner asked for it, `failed` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderCanceled {
    /// This call made the transition, to `canceled` (the owner's wish).
    Canceled,
    /// This call made the transition, to `failed`.
    Failed,
    /// The task had already left `processing`.
    AlreadyFinished,
}

/// `processing` → `canceled` or `failed` (decided in the same statement by
/// whether the owner asked to cancel), refunded, in one transaction.
pub async fn end_canceled_at_provider(db: &Db, task: &TaskId, error: &str, now: i64) -> Result<ProviderCanceled> {
    // Only a submitted task has a prediction the provider could cancel.
    let sql = concat!(
        "UPDATE tasks SET \
         status = CASE WHEN cancel_requested_at IS NULL THEN 'failed' ELSE 'canceled' END, \
         error = CASE WHEN cancel_requested_at IS NULL THEN $1 ELSE NULL END, \
         finished_at = $2, updated_at = $2 WHERE id = $3 AND status IN ",
        in_flight!(),
        " RETURNING user_id, cost, status"
    );
    let Some(row) = end_and_refund(db, task, sqlx::query(sql).bind(error).bind(now).bind(task.as_str()), now).await?
    else {
        return Ok(ProviderCanceled::AlreadyFinished);
    };
    let status: String = row.try_get("status")?;
    Ok(if status == "canceled" { ProviderCanceled::Canceled } else { ProviderCanceled::Failed })
}

/// Runs `transition` (an UPDATE … RETURNING user_id, cost, and whatever
/// else the caller needs) and refunds what it returns, in one transaction;
/// the returned row, or `None` when the transition did not apply.
async fn end_and_refund<'q>(
    db: &Db,
    task: &TaskId,
    transition: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    now: i64,
) -> Result<Option<sqlx::any::AnyRow>> {
    let mut tx = db.begin().await?;
    let Some(row) = transition.fetch_optional(&mut *tx).await? else {
        return Ok(None);
    };
    let user = UserId::from_db(row.try_get("user_id")?);
    let cost: i64 = row.try_get("cost")?;
    credits::refund(&mut tx, &user, task, cost, now).await?;
    tx.commit().await?;
    Ok(Some(row))
}

/// Statuses a task may be shared or deleted in.
const FINISHED: &str = "('completed', 'failed', 'canceled')";

/// Shares `user`'s completed `task`: its share token, `fresh` unless it
/// had one already; `None` when the task is not theirs or not completed.
pub async fn share(db: &Db, user: &UserId, task: &TaskId, fresh: &str) -> Result<Option<String>> {
    let row = sqlx::query(
        "UPDATE tasks SET share_token = COALESCE(share_token, $1)          WHERE id = $2 AND user_id = $3 AND status = 'completed' RETURNING share_token",
    )
    .bind(fresh)
    .bind(task.as_str())
    .bind(user.as_str())
    .fetch_optional(db)
    .await?;
    row.map(|r| r.try_get::<String, _>("share_token").map_err(AppError::from)).transpose()
}

/// Records the stored image's size (read when it is first shared).
pub async fn set_image_size(db: &Db, task: &TaskId, width: u32, height: u32) -> Result<()> {
    sqlx::query("UPDATE tasks SET image_width = $1, image_height = $2 WHERE id = $3")
        .bind(i64::from(width))
        .bind(i64::from(height))
        .bind(task.as_str())
        .execute(db)
        .await?;
    Ok(())
}

/// Stops sharing `user`'s `task`; false when it is not theirs.
pub async fn unshare(db: &Db, user: &UserId, task: &TaskId) -> Result<bool> {
    let done = sqlx::query("UPDATE tasks SET share_token = NULL WHERE id = $1 AND user_id = $2")
        .bind(task.as_str())
        .bind(user.as_str())
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes `user`'s finished `task`: the row (prompt, share token) goes and
/// a purge of its stored objects is recorded, in one transaction. False
/// when the task is not theirs, not finished, or already deleted.
pub async fn delete_finished(db: &Db, user: &UserId, task: &TaskId, now: i64) -> Result<bool> {
    let mut tx = db.begin().await?;
    let recorded = sqlx::query(&format!(
        "INSERT INTO purges (task_id, user_id, created_at) SELECT id, user_id, $1 FROM tasks          WHERE id = $2 AND user_id = $3 AND status IN {FINISHED} ON CONFLICT (task_id) DO NOTHING"
    ))
    .bind(now)
    .bind(task.as_str())
    .bind(user.as_str())
    .execute(&mut *tx)
    .await?;
    if recorded.rows_affected() != 1 {
        return Ok(false);
    }
    let deleted = sqlx::query(&format!("DELETE FROM tasks WHERE id = $1 AND user_id = $2 AND status IN {FINISHED}"))
        .bind(task.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() != 1 {
        return Ok(false);
    }
    // Every instance stops answering for the task from memory (`finished`).
    sqlx::query("UPDATE users SET task_deletions = task_deletions + 1 WHERE id = $1")
        .bind(user.as_str())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Deletes every task of `user` (an account being deleted), recording a
/// purge for each, on the caller's transaction; refused while one is
/// unfinished (it is the provider's until it ends). The tasks deleted.
pub async fn delete_every_task(conn: &mut AnyConnection, user: &UserId, now: i64) -> Result<Vec<TaskId>> {
    let running: i64 =
        sqlx::query(concat!("SELECT COUNT(*) AS n FROM tasks WHERE user_id = $1 AND status IN ", unfinished!()))
            .bind(user.as_str())
            .fetch_one(&mut *conn)
            .await?
            .try_get("n")?;
    if running > 0 {
        return Err(AppError::conflict(
            "a generation is still running: cancel it or let it end, then delete the account",
        ));
    }
    let tasks =
        sqlx::query("SELECT id FROM tasks WHERE user_id = $1").bind(user.as_str()).fetch_all(&mut *conn).await?;
    let tasks: Vec<TaskId> = tasks.iter().map(|r| Ok(TaskId::from_db(r.try_get("id")?))).collect::<Result<_>>()?;
    sqlx::query(
        "INSERT INTO purges (task_id, user_id, created_at) SELECT id, user_id, $1 FROM tasks WHERE user_id = $2 \
         ON CONFLICT (task_id) DO NOTHING",
    )
    .bind(now)
    .bind(user.as_str())
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM tasks WHERE user_id = $1").bind(user.as_str()).execute(&mut *conn).await?;
    Ok(tasks)
}

/// The purge of `task` is done: its objects are gone.
pub async fn purged(db: &Db, task: &TaskId) -> Result<()> {
    sqlx::query("DELETE FROM purges WHERE task_id = $1").bind(task.as_str()).execute(db).await?;
    Ok(())
}

/// A purge that failed goes to the back of the queue (one that keeps
/// failing must not hold up the others).
pub async fn purge_later(db: &Db, task: &TaskId, now: i64) -> Result<()> {
    sqlx::query("UPDATE purges SET created_at = $1 WHERE task_id = $2")
        .bind(now)
        .bind(task.as_str())
        .execute(db)
        .await?;
    Ok(())
}

/// Purges recorded before `before` and not yet done (a crash between the
/// row and the objects), oldest first.
pub async fn pending_purges(db: &Db, before: i64, limit: i64) -> Result<Vec<TaskId>> {
    let rows = sqlx::query("SELECT task_id FROM purges WHERE created_at <= $1 ORDER BY created_at LIMIT $2")
        .bind(before)
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(|r| Ok(TaskId::from_db(r.try_get("task_id")?))).collect()
}

/// A task's current state, read from the pool (after a lost race).
pub async fn state(db: &Db, task: &TaskId) -> Result<Option<State>> {
    let row = sqlx::query("SELECT status FROM tasks WHERE id = $1").bind(task.as_str()).fetch_optional(db).await?;
    match row {
        None => Ok(None),
        Some(r) => {
            let status: String = r.try_get("status")?;
            State::parse(&status).map(Some).ok_or_else(|| AppError::internal(format!("unknown task status {status}")))
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each transition against a real SQLite file: who wins a race, and that
    //! money moves exactly once.
    use super::*;
    use crate::server::catalogue::Inputs;

    struct Fixture {
        db: Db,
        user: UserId,
        _dir: tempfile::TempDir,
    }

    /// A fresh database with one person holding 100 credits.
    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let db = crate::server::db::connect(&url).await.unwrap();
        let user = UserId::from_db("u1".into());
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, balance, created_at) VALUES ('u1', 'a@b.c', 'x', 0, 0)",
        )
        .execute(&db)
        .await
        .unwrap();
        let mut tx = db.begin().await.unwrap();
        credits::grant(&mut tx, &user, 100, "signup:u1").await.unwrap();
        tx.commit().await.unwrap();
        Fixture { db, user, _dir: dir }
    }

    const CAPS: Caps = Caps { active: 10, per_minute: 10, verified_only: false };

    async fn queued_for(f: &Fixture, user: &UserId, now: i64) -> TaskId {
        let id = TaskId::new();
        let inputs = Inputs { aspect_ratio: None, num_outputs: 1, seed: None, negative_prompt: None, image: None };
        let task = NewTask {
            id: &id,
            user,
            prompt: "a cat",
            model: "m",
            inputs: &inputs,
            cost: 10,
            now,
            deadline_at: now + 600_000,
            input_key: None,
            source: None,
            scale: None,
        };
        insert_queued(&f.db, task, CAPS).await.unwrap();
        id
    }

    async fn submitted(f: &Fixture, now: i64) -> TaskId {
        let id = queued_for(f, &f.user, now).await;
        assert!(claim_queued(&f.db, &id, now, now + 120_000).await.unwrap());
        id
    }

    /// A second person with 100 credits.
    async fn another(f: &Fixture, id: &str) -> UserId {
        sqlx::query("INSERT INTO users (id, email, password_hash, balance, created_at) VALUES ($1, $2, 'x', 0, 0)")
            .bind(id)
            .bind(format!("{id}@b.c"))
            .execute(&f.db)
            .await
            .unwrap();
        let user = UserId::from_db(id.into());
        let mut tx = f.db.begin().await.unwrap();
        credits::grant(&mut tx, &user, 100, &format!("signup:{id}")).await.unwrap();
        tx.commit().await.unwrap();
        user
    }

    #[tokio::test]
    async fn a_queued_task_is_submitted_once_and_may_go_back_after_a_429() {
        let f = fixture().await;
        let id = queued_for(&f, &f.user, 1_000).await;
        assert_eq!(balance(&f).await, 90, "charged when queued");
        assert_eq!(state(&f.db, &id).await.unwrap(), Some(State::Queued));
        assert!(!mark_processing(&f.db, &id, "p0", 3_000, 1_100).await.unwrap(), "never processing unsubmitted");
        assert!(claim_queued(&f.db, &id, 2_000, 122_000).await.unwrap());
        assert!(!claim_queued(&f.db, &id, 2_000, 122_000).await.unwrap(), "one dispatcher takes it");
        assert!(claim_head(&f.db, 2_000, 122_000).await.unwrap().is_none(), "the queue is empty");
        assert!(requeue(&f.db, &id, 2_500).await.unwrap());
        assert!(!requeue(&f.db, &id, 2_500).await.unwrap(), "only from submitting");
        assert_eq!(claim_head(&f.db, 3_000, 123_000).await.unwrap().map(|(t, _)| t), Some(id.clone()));
        assert!(mark_processing(&f.db, &id, "p1", 5_000, 3_100).await.unwrap());
        assert!(!requeue(&f.db, &id, 3_200).await.unwrap(), "a submitted task never goes back");
    }

    #[tokio::test]
    async fn a_queued_task_is_canceled_or_expired_with_its_refund() {
        let f = fixture().await;
        let canceled = queued_for(&f, &f.user, 1_000).await;
        let expired = queued_for(&f, &f.user, 1_000).await;
        assert_eq!(balance(&f).await, 80);
        assert!(request_cancel(&f.db, &canceled, 1_500).await.unwrap());
        let ended = cancel_and_refund(&f.db, &canceled, 2_000).await.unwrap().expect("canceled");
        assert_eq!(ended.prediction_id, None, "nothing to stop at the provider");
        assert!(fail_and_refund(&f.db, &expired, FailFrom::Unfinished, "Timed out", 601_000).await.unwrap());
        assert!(!claim_queued(&f.db, &canceled, 2_000, 3_000).await.unwrap());
        assert!(claim_head(&f.db, 2_000, 3_000).await.unwrap().is_none());
        assert_eq!(balance(&f).await, 100);
    }

    #[tokio::test]
    async fn the_queue_is_served_round_robin_across_people() {
        let f = fixture().await;
        let (b, c) = (another(&f, "u2").await, another(&f, "u3").await);
        // u1 queues four, then u2 two, then u3 one; u3 already has one at
        // the provider.
        let running = queued_for(&f, &c, 500).await;
        assert!(claim_queued(&f.db, &running, 600, 10_000).await.unwrap());
        let mut t = 1_000;
        let mut queue = |who: UserId| {
            t += 1;
            let (f, at) = (&f, t);
            async move { queued_for(f, &who, at).await }
        };
        let a1 = queue(f.user.clone()).await;
        let a2 = queue(f.user.clone()).await;
        let a3 = queue(f.user.clone()).await;
        let a4 = queue(f.user.clone()).await;
        let b1 = queue(b.clone()).await;
        let b2 = queue(b.clone()).await;
        let c1 = queue(c.clone()).await;
        let mut served = Vec::new();
        while let Some((task, _)) = claim_head(&f.db, 5_000, 10_000).await.unwrap() {
            served.push(task);
        }
        // Turns: a1 b1 | a2 b2 c1 (c's second, its first runs) | a3 | a4 —
        // each person's running tasks count as turns served.
        let expected = [&a1, &b1, &a2, &b2, &c1, &a3, &a4];
        let names = |ts: &[&TaskId]| ts.iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>();
        assert_eq!(names(&served.iter().collect::<Vec<_>>()), names(&expected));
    }

    #[tokio::test]
    async fn queued_tasks_count_against_the_cap_on_tasks_at_once() {
        let f = fixture().await;
        let caps = Caps { active: 2, per_minute: 10, verified_only: false };
        let inputs = Inputs { aspect_ratio: None, num_outputs: 1, seed: None, negative_prompt: None, image: None };
        for n in 0..3 {
            let id = TaskId::new();
            let task = NewTask {
                id: &id,
                user: &f.user,
                prompt: "a cat",
                model: "m",
                inputs: &inputs,
                cost: 10,
                now: 1_000 + n,
                deadline_at: 600_000,
                input_key: None,
                source: None,
                scale: None,
            };
            let inserted = insert_queued(&f.db, task, caps).await;
            if n < 2 {
                inserted.unwrap();
            } else {
                let e = inserted.unwrap_err();
                assert_eq!(
                    (e.kind, e.message.as_str()),
                    (ErrorKind::RateLimited, "You have 2 generations running; wait for one to finish.")
                );
            }
        }
        assert_eq!(balance(&f).await, 80, "the refused one is not charged");
    }

    async fn balance(f: &Fixture) -> i64 {
        credits::balance(&f.db, f.user.as_str()).await.unwrap()
    }

    /// Claims the queue's head as the dispatcher does: the first task of
    /// the fair order that `claim_queued` takes.
    async fn claim_head(db: &Db, now: i64, grace_until: i64) -> Result<Option<(TaskId, i64)>> {
        for (task, _, queued_at) in super::super::queries::queue(db, 4).await? {
            if claim_queued(db, &task, now, grace_until).await? {
                return Ok(Some((task, queued_at)));
            }
        }
        Ok(None)
    }

    #[tokio::test]
    async fn a_task_is_charged_once_and_refunded_once() {
        let f = fixture().await;
        let id = submitted(&f, 1_000).await;
        assert_eq!(balance(&f).await, 90);
        assert!(fail_and_refund(&f.db, &id, FailFrom::Unfinished, "no", 2_000).await.unwrap());
        assert!(!fail_and_refund(&f.db, &id, FailFrom::Unfinished, "no", 3_000).await.unwrap(), "once");
        assert!(cancel_and_refund(&f.db, &id, 4_000).await.unwrap().is_none(), "and only one ending");
        assert_eq!(balance(&f).await, 100);
        let (grants, charges, refunds) = credits::totals(&f.db, f.user.as_str()).await.unwrap();
        assert_eq!((grants, charges, refunds), (100, 10, 10));
    }

    #[tokio::test]
    async fn a_task_leaves_processing_exactly_once() {
        let f = fixture().await;
        let id = submitted(&f, 1_000).await;
        assert!(mark_processing(&f.db, &id, "p1", 3_000, 1_100).await.unwrap());
        assert!(!mark_processing(&f.db, &id, "p2", 3_000, 1_200).await.unwrap(), "submitting only");
        let images = StoredImages { key: "images/x", content_types: &["image/png"], size: 10, seed: Some(7) };
        assert!(cancel_and_refund(&f.db, &id, 2_000).await.unwrap().is_some());
        assert!(!mark_completed(&f.db, &id, images, 2_100).await.unwrap(), "the cancel won");
        assert_eq!(state(&f.db, &id).await.unwrap(), Some(State::Canceled));
        assert_eq!(balance(&f).await, 100);
        // A submission that raced a failure does not bring the task back.
        let late = submitted(&f, 5_000).await;
        assert!(fail_and_refund(&f.db, &late, FailFrom::Submitting, "stuck", 6_000).await.unwrap());
        assert!(!mark_processing(&f.db, &late, "p3", 8_000, 6_100).await.unwrap());
    }

    #[tokio::test]
    async fn the_provider_is_claimed_once_per_interval() {
        let f = fixture().await;
        let id = submitted(&f, 1_000).await;
        mark_processing(&f.db, &id, "p1", 3_000, 1_000).await.unwrap();
        assert!(claim_check(&f.db, &id, 2_999, 5_000).await.unwrap().is_none(), "not due yet");
        let claim = claim_check(&f.db, &id, 3_000, 5_000).await.unwrap().expect("due");
        assert!(claim_check(&f.db, &id, 3_000, 5_000).await.unwrap().is_none(), "claimed");
        assert!(claim_check(&f.db, &id, 4_999, 7_000).await.unwrap().is_none());
        // The download lease holds the task past the interval.
        assert!(extend_lease(&f.db, &id, &claim, 100_000).await.unwrap());
        assert!(claim_check(&f.db, &id, 6_000, 8_000).await.unwrap().is_none(), "leased");
        assert!(claim_for_event(&f.db, &id, 6_000, 8_000).await.unwrap().is_none(), "an event never takes a lease");
        release_lease(&f.db, &id, &claim, 6_500).await.unwrap();
        assert!(claim_check(&f.db, &id, 6_500, 9_000).await.unwrap().is_some());
    }

    /// A processing task's reading as stored: its progress, its place in
    /// the provider's queue, when it was read, and its next check.
    async fn reading(db: &Db, id: &TaskId) -> (Option<i64>, Option<i64>, Option<i64>, Option<i64>) {
        let r = sqlx::query("SELECT progress, provider_queue, last_polled_at, next_check_at FROM tasks WHERE id = $1")
            .bind(id.as_str())
            .fetch_one(db)
            .await
            .unwrap();
        let get = |c: &str| r.try_get::<Option<i64>, _>(c).unwrap();
        (get("progress"), get("provider_queue"), get("last_polled_at"), get("next_check_at"))
    }

    /// A task's stored expected end.
    async fn expected_end(db: &Db, id: &TaskId) -> Option<i64> {
        sqlx::query_scalar("SELECT expected_end_at FROM tasks WHERE id = $1")
            .bind(id.as_str())
            .fetch_one(db)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_event_records_its_reading_with_the_next_check() {
        let f = fixture().await;
        let id = submitted(&f, 1_000).await;
        mark_processing(&f.db, &id, "p1", 3_000, 1_000).await.unwrap();
        let queued = Reading { progress: None, queue: Some(2), ends_at: None };
        note_event(&f.db, &id, Some(queued), 9_000, 60_000, 2_000).await.unwrap();
        let (_, queue, read_at, next) = reading(&f.db, &id).await;
        assert_eq!((queue, read_at, next), (Some(2), Some(2_000), Some(9_000)));
        let running = Reading { progress: Some(40), queue: None, ends_at: None }.ending(Some(9_500));
        note_event(&f.db, &id, Some(running), 8_000, 60_000, 3_000).await.unwrap();
        assert_eq!(reading(&f.db, &id).await, (Some(40), None, Some(3_000), Some(8_000)));
        assert_eq!(expected_end(&f.db, &id).await, Some(9_500));
        // An event with nothing new moves the check alone.
        note_event(&f.db, &id, None, 7_000, 60_000, 4_000).await.unwrap();
        assert_eq!(reading(&f.db, &id).await, (Some(40), None, Some(3_000), Some(7_000)));
        assert_eq!(expected_end(&f.db, &id).await, Some(9_500));
        // A check's reading: a new progress brings its end (or forgets the
        // old one when it points nowhere); a place in a queue alone keeps it.
        let later = Reading { progress: Some(60), queue: None, ends_at: None }.ending(Some(9_200));
        // With a check at its end sooner than the next one planned, the
        // next check comes then; never later than planned.
        set_reading(&f.db, &id, later, 5_000, Some(6_500)).await.unwrap();
        assert_eq!((reading(&f.db, &id).await.0, expected_end(&f.db, &id).await), (Some(60), Some(9_200)));
        assert_eq!(reading(&f.db, &id).await.3, Some(6_500));
        let queue_only = Reading { progress: None, queue: Some(0), ends_at: None }.ending(Some(1));
        set_reading(&f.db, &id, queue_only, 5_500, Some(8_000)).await.unwrap();
        assert_eq!(expected_end(&f.db, &id).await, Some(9_200), "no new progress, no new end");
        assert_eq!(reading(&f.db, &id).await.3, Some(6_500), "not put back");
        set_reading(&f.db, &id, Reading { progress: Some(70), queue: None, ends_at: None }, 6_000, None).await.unwrap();
        assert_eq!(expected_end(&f.db, &id).await, None);
        assert_eq!(reading(&f.db, &id).await.3, Some(6_500));
        // Without a reading to record, the check alone.
        check_by(&f.db, &id, 6_200).await.unwrap();
        check_by(&f.db, &id, 9_000).await.unwrap();
        assert_eq!(reading(&f.db, &id).await.3, Some(6_200));
    }

    /// A batch's events about a task, written in one statement, leave it
    /// as the same events written one at a time do (the test above).
    #[tokio::test]
    async fn a_batch_of_events_folds_as_written_one_by_one() {
        let f = fixture().await;
        let (a, b) = (submitted(&f, 1_000).await, submitted(&f, 1_000).await);
        mark_processing(&f.db, &a, "p1", 3_000, 1_000).await.unwrap();
        mark_processing(&f.db, &b, "p2", 3_000, 1_000).await.unwrap();
        let noted = |task, progress: Option<u8>, queue, until, now| Noted {
            task,
            reading: (progress, queue)
                .ne(&(None, None))
                .then_some(Reading { progress, queue, ends_at: None }.ending(progress.map(|p| 10_000 + i64::from(p)))),
            until,
            trust_ms: 60_000,
            now,
        };
        let batch = [
            noted(&a, None, Some(2), 9_000, 2_000),
            noted(&b, Some(30), None, 5_000, 2_000),
            noted(&a, Some(40), None, 8_000, 3_000),
            noted(&b, None, Some(1), 6_000, 2_500),
            noted(&a, None, None, 7_000, 4_000),
        ];
        let mut tx = f.db.begin().await.unwrap();
        note_events(&mut tx, &batch).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(reading(&f.db, &a).await, (Some(40), None, Some(3_000), Some(7_000)));
        assert_eq!(
            reading(&f.db, &b).await,
            (Some(30), Some(1), Some(2_500), Some(6_000)),
            "a reading keeps the progress"
        );
        assert_eq!((expected_end(&f.db, &a).await, expected_end(&f.db, &b).await), (Some(10_040), Some(10_030)));
        assert_eq!(super::super::queries::value_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }

    #[tokio::test]
    async fn deliveries_past_one_statement_are_recorded_once() {
        let f = fixture().await;
        let ids: Vec<String> = (0..ROWS + 44).map(|n| format!("msg_{n:04}")).collect();
        let mut batch: Vec<(&str, i64)> = ids.iter().map(|id| (id.as_str(), 1)).collect();
        batch.push((&ids[0], 2));
        let mut conn = f.db.acquire().await.unwrap();
        assert_eq!(first_deliveries(&mut conn, &batch).await.unwrap().len(), ROWS + 44);
        assert!(first_deliveries(&mut conn, &batch[..3]).await.unwrap().is_empty(), "each once");
    }

    /// A batch of news (`news::write`): each delivery recorded once, a
    /// task's events applied in the order they came whatever their ids, a
    /// duplicate, a finished task's and an unknown prediction's changing
    /// nothing; the same batch again is all duplicates.
    #[tokio::test]
    async fn news_is_written_in_one_batch_each_delivery_once() {
        use super::super::news::{Item, Written, write};
        let f = fixture().await;
        let running = submitted(&f, 1_000).await;
        mark_processing(&f.db, &running, "p1", 3_000, 1_000).await.unwrap();
        let finished = submitted(&f, 1_000).await;
        mark_processing(&f.db, &finished, "p2", 3_000, 1_000).await.unwrap();
        fail_and_refund(&f.db, &finished, FailFrom::Unfinished, "x", 1_500).await.unwrap();
        assert!(first_delivery(&f.db, "msg_old", 1_500).await.unwrap());
        let item = |delivery: &str, prediction: &str, progress: u8, next_check: i64| Item {
            delivery: delivery.into(),
            prediction: prediction.into(),
            progress: Some(progress),
            ends_at: None,
            queue: None,
            next_check,
            trust_ms: 60_000,
            received_at: 2_000,
        };
        let batch = [
            item("msg_z", "p1", 10, 9_000),
            item("msg_a", "p1", 20, 8_000),
            item("msg_old", "p1", 99, 1),
            item("msg_m", "p2", 50, 9_000),
            item("msg_u", "unknown", 5, 9_000),
        ];
        let state = |id: &TaskId| {
            let (id, db) = (id.clone(), f.db.clone());
            async move {
                let r = sqlx::query("SELECT progress, next_check_at FROM tasks WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_one(&db)
                    .await
                    .unwrap();
                (r.try_get::<Option<i64>, _>("progress").unwrap(), r.try_get::<i64, _>("next_check_at").unwrap())
            }
        };
        let before = state(&finished).await;
        assert_eq!(write(&f.db, &batch).await.unwrap(), Written { recorded: 4, applied: 2, duplicates: 1 });
        assert_eq!(state(&running).await, (Some(20), 8_000), "the later event wins");
        assert_eq!(state(&finished).await, before, "a finished task is left alone");
        let recorded = sqlx::query("SELECT COUNT(*) AS n FROM webhook_deliveries").fetch_one(&f.db).await.unwrap();
        assert_eq!(recorded.try_get::<i64, _>("n").unwrap(), 5);
        assert_eq!(write(&f.db, &batch).await.unwrap(), Written { recorded: 0, applied: 0, duplicates: 5 });
        assert_eq!(state(&running).await, (Some(20), 8_000));
    }

    #[tokio::test]
    async fn events_defer_the_next_check_only_so_far() {
        let f = fixture().await;
        let id = submitted(&f, 1_000).await;
        mark_processing(&f.db, &id, "p1", 3_000, 1_000).await.unwrap();
        let next = |f: &Fixture| {
            let id = id.clone();
            let db = f.db.clone();
            async move {
                sqlx::query("SELECT next_check_at FROM tasks WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_one(&db)
                    .await
                    .unwrap()
                    .try_get::<i64, _>("next_check_at")
                    .unwrap()
            }
        };
        note_event(&f.db, &id, None, 40_000, 60_000, 2_000).await.unwrap();
        assert_eq!(next(&f).await, 40_000);
        note_event(&f.db, &id, None, 90_000, 60_000, 3_000).await.unwrap();
        assert_eq!(next(&f).await, 61_000, "a minute after its creation at most");
        note_event(&f.db, &id, None, 20_000, 60_000, 4_000).await.unwrap();
        assert_eq!(next(&f).await, 20_000, "a later event that sees the end sooner brings the check forward");
        // A real check moves the bound on.
        let claim = claim_check(&f.db, &id, 20_000, 22_000).await.unwrap().expect("due");
        note_event(&f.db, &id, None, 200_000, 60_000, 20_500).await.unwrap();
        assert_eq!(next(&f).await, 80_000);
        // A download in progress is left alone.
        assert!(extend_lease(&f.db, &id, &claim, 90_000).await.unwrap());
        note_event(&f.db, &id, None, 30_000, 60_000, 21_000).await.unwrap();
        assert_eq!(next(&f).await, 90_000);
        // Each event id once.
        assert!(first_delivery(&f.db, "msg_1", 1).await.unwrap());
        assert!(!first_delivery(&f.db, "msg_1", 2).await.unwrap());
        assert_eq!(forget_deliveries(&f.db, 10).await.unwrap(), 1);
        assert!(first_delivery(&f.db, "msg_1", 20).await.unwrap());
    }

    #[tokio::test]
    async fn deleting_keeps_the_charge_that_the_cap_counts() {
        let f = fixture().await;
        let caps = Caps { active: 10, per_minute: 2, verified_only: false };
        let inputs = Inputs { aspect_ratio: None, num_outputs: 1, seed: None, negative_prompt: None, image: None };
        for n in 0..3 {
            let id = TaskId::new();
            let task = NewTask {
                id: &id,
                user: &f.user,
                prompt: "a cat",
                model: "m",
                inputs: &inputs,
                cost: 10,
                now: 10_000 + n,
                deadline_at: 600_000,
                input_key: None,
                source: None,
                scale: None,
            };
            let inserted = insert_queued(&f.db, task, caps).await;
            if n < 2 {
                inserted.unwrap();
                fail_and_refund(&f.db, &id, FailFrom::Unfinished, "x", 10_100).await.unwrap();
                assert!(delete_finished(&f.db, &f.user, &id, 10_200).await.unwrap());
            } else {
                assert_eq!(inserted.unwrap_err().kind, ErrorKind::RateLimited, "the third in a minute");
            }
        }
    }
}
