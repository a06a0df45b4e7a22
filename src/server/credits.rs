//! The credit ledger. A balance changes only by inserting a ledger row (a
//! database trigger applies it), each row has a unique key so a task is
//! charged and refunded at most once, and a CHECK keeps balances >= 0.

use sqlx::{AnyConnection, Row};

use super::db::{self, Db};
use crate::error::{AppError, ErrorKind, Result};

/// Adds `amount` credits (sign-up grants).
pub async fn grant(conn: &mut AnyConnection, user_id: &str, amount: i64, key: &str) -> Result<()> {
    insert(conn, user_id, "grant", amount, None, key).await.map(|_| ())
}

/// Takes `cost` for `task_id`; fails with "not enough credits" and changes
/// nothing when the balance does not cover it.
pub async fn charge(conn: &mut AnyConnection, user_id: &str, task_id: &str, cost: i64) -> Result<()> {
    match insert(conn, user_id, "charge", -cost, Some(task_id), &format!("charge:{task_id}")).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(AppError::internal(format!("task {task_id} was already charged"))),
        Err(e) => Err(e),
    }
}

/// Gives `task_id`'s cost back; returns false when it was already refunded.
pub async fn refund(conn: &mut AnyConnection, user_id: &str, task_id: &str, cost: i64) -> Result<bool> {
    insert(conn, user_id, "refund", cost, Some(task_id), &format!("refund:{task_id}")).await
}

/// Inserts a ledger row; `Ok(false)` when its key exists already.
async fn insert(
    conn: &mut AnyConnection,
    user_id: &str,
    kind: &str,
    amount: i64,
    task_id: Option<&str>,
    key: &str,
) -> Result<bool> {
    let result = sqlx::query(
        "INSERT INTO credit_ledger (user_id, kind, amount, task_id, entry_key, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (entry_key) DO NOTHING",
    )
    .bind(user_id)
    .bind(kind)
    .bind(amount)
    .bind(task_id)
    .bind(key)
    .bind(db::now_ms())
    .execute(conn)
    .await;
    // A duplicate key is skipped by ON CONFLICT (not raised: on PostgreSQL
    // an error would abort the caller's transaction).
    match result {
        Ok(done) => Ok(done.rows_affected() == 1),
        Err(e) if db::is_check_violation(&e) => Err(AppError::new(ErrorKind::NotEnoughCredits, "not enough credits")),
        Err(e) => Err(AppError::internal(e)),
    }
}

/// A user's balance.
pub async fn balance(db: &Db, user_id: &str) -> Result<i64> {
    let row = sqlx::query("SELECT balance FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(db)
        .await
        .map_err(AppError::internal)?;
    match row {
        Some(r) => r.try_get::<i64, _>("balance").map_err(AppError::internal),
        None => Err(AppError::unauthorized()),
    }
}

/// Sums of a user's ledger by kind: (grants, charges, refunds), charges as a
/// positive number. Used by the audit in tests and benchmarks.
pub async fn totals(db: &Db, user_id: &str) -> Result<(i64, i64, i64)> {
    let rows = sqlx::query(
        "SELECT kind, CAST(SUM(amount) AS BIGINT) AS total FROM credit_ledger WHERE user_id = $1 GROUP BY kind",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
    .map_err(AppError::internal)?;
    let (mut grants, mut charges, mut refunds) = (0, 0, 0);
    for row in rows {
        let kind: String = row.try_get("kind").map_err(AppError::internal)?;
        let total: i64 = row.try_get("total").map_err(AppError::internal)?;
        match kind.as_str() {
            "grant" => grants = total,
            "charge" => charges = -total,
            _ => refunds = total,
        }
    }
    Ok((grants, charges, refunds))
}
