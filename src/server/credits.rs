//! The credit ledger. A balance changes only by inserting a ledger row (a
//! database trigger applies it), each row has a unique key so a task is
//! charged and refunded at most once, and a CHECK keeps balances >= 0. A
//! person's credits are their balance less their debt (what a payment
//! refund or a dispute took back beyond the balance; see migration 0013),
//! and always equal the sum of their ledger.

use sqlx::{AnyConnection, Row};

use super::clock::Clock;
use super::db::{self, Db};
use super::ids::{TaskId, UserId};
use crate::error::{AppError, ErrorKind, Result};

/// Adds `amount` credits (sign-up grants) once per `key`; whether it did.
pub async fn grant(conn: &mut AnyConnection, user: &UserId, amount: i64, key: &str) -> Result<bool> {
    insert(conn, user, "grant", amount, About::Nothing, key, Clock::system().now_ms()).await
}

/// An operator's grant, as the admin CLI records it.
pub struct OperatorGrant<'a> {
    pub amount: i64,
    /// Why, for the operators (never shown to the person).
    pub reason: &'a str,
    /// What the person reads beside it ("Granted: <note>"), if anything.
    pub note: Option<&'a str>,
    /// Who granted it: `user@host` of the command.
    pub operator: &'a str,
}

/// An operator's grant (the admin CLI).
pub async fn grant_by_operator(conn: &mut AnyConnection, user: &UserId, grant: OperatorGrant<'_>) -> Result<()> {
    let key = format!("grant:{}", uuid::Uuid::new_v4());
    sqlx::query(
        "INSERT INTO credit_ledger (user_id, kind, amount, task_id, entry_key, created_at, reason, note, operator) \
         VALUES ($1, 'grant', $2, NULL, $3, $4, $5, $6, $7)",
    )
    .bind(user.as_str())
    .bind(grant.amount)
    .bind(&key)
    .bind(Clock::system().now_ms())
    .bind(grant.reason)
    .bind(grant.note)
    .bind(grant.operator)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes `cost` for `task` at `at` (epoch ms); fails with "not enough
/// credits" and changes nothing when the balance does not cover it.
pub async fn charge(conn: &mut AnyConnection, user: &UserId, task: &TaskId, cost: i64, at: i64) -> Result<()> {
    match insert(conn, user, "charge", -cost, About::Task(task), &format!("charge:{task}"), at).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(AppError::internal(format!("task {task} was already charged"))),
        Err(e) => Err(e),
    }
}

/// Gives `task`'s cost back at `at`; returns false when it was already
/// refunded.
pub async fn refund(conn: &mut AnyConnection, user: &UserId, task: &TaskId, cost: i64, at: i64) -> Result<bool> {
    insert(conn, user, "refund", cost, About::Task(task), &format!("refund:{task}"), at).await
}

/// Moves `user`'s credits by `amount` for purchase `purchase` (a purchase,
/// a payment refund, a dispute or a dispute won: `kind`), once per `key`;
/// `Ok(false)` when its key exists already.
pub async fn purchase_entry(
    conn: &mut AnyConnection,
    user: &UserId,
    purchase: &str,
    kind: &str,
    amount: i64,
    key: &str,
    at: i64,
) -> Result<bool> {
    insert(conn, user, kind, amount, About::Purchase(purchase), key, at).await
}

/// What a ledger row is about.
enum About<'a> {
    Nothing,
    Task(&'a TaskId),
    Purchase(&'a str),
}

/// Inserts a ledger row; `Ok(false)` when its key exists already.
async fn insert(
    conn: &mut AnyConnection,
    user: &UserId,
    kind: &str,
    amount: i64,
    about: About<'_>,
    key: &str,
    at: i64,
) -> Result<bool> {
    let (task, purchase) = match about {
        About::Nothing => (None, None),
        About::Task(task) => (Some(task.as_str()), None),
        About::Purchase(purchase) => (None, Some(purchase)),
    };
    let result = sqlx::query(
        "INSERT INTO credit_ledger (user_id, kind, amount, task_id, entry_key, created_at, purchase_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (entry_key) DO NOTHING",
    )
    .bind(user.as_str())
    .bind(kind)
    .bind(amount)
    .bind(task)
    .bind(key)
    .bind(at)
    .bind(purchase)
    .execute(conn)
    .await;
    // A duplicate key is skipped by ON CONFLICT (not raised: on PostgreSQL
    // an error would abort the caller's transaction).
    match result {
        Ok(done) => Ok(done.rows_affected() == 1),
        Err(e) if db::is_negative_balance(&e) => Err(AppError::new(ErrorKind::NotEnoughCredits, "not enough credits")),
        Err(e) => Err(e.into()),
    }
}

/// A user's credits: the balance less any debt (below zero after a
/// payment refund or a dispute took back credits already spent).
pub async fn balance(db: &Db, user_id: &str) -> Result<i64> {
    let row = sqlx::query("SELECT balance - debt AS credits FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(db)
        .await?;
    match row {
        Some(r) => Ok(r.try_get::<i64, _>("credits")?),
        None => Err(AppError::unauthorized()),
    }
}

/// The sum of a user's whole ledger: what their credits must equal.
pub async fn ledger_sum(db: &Db, user_id: &str) -> Result<i64> {
    let row =
        sqlx::query("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS total FROM credit_ledger WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(db)
            .await?;
    Ok(row.try_get("total")?)
}

/// Sums of a user's ledger by kind: (grants, charges, refunds), charges as a
/// positive number. Used by the audit in tests and benchmarks.
pub async fn totals(db: &Db, user_id: &str) -> Result<(i64, i64, i64)> {
    let rows = sqlx::query(
        "SELECT kind, CAST(SUM(amount) AS BIGINT) AS total FROM credit_ledger WHERE user_id = $1 GROUP BY kind",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    let (mut grants, mut charges, mut refunds) = (0, 0, 0);
    for row in rows {
        let kind: String = row.try_get("kind")?;
        let total: i64 = row.try_get("total")?;
        match kind.as_str() {
            "grant" => grants = total,
            "charge" => charges = -total,
            "refund" => refunds = total,
            // Money: see `ledger_sum` for the whole.
            _ => {}
        }
    }
    Ok((grants, charges, refunds))
}
