//! "Delete account": a person ends their account with their password.
//!
//! In one transaction: every task is deleted with a purge recorded for its
//! objects (the path a deleted task takes, so a crash leaves work the
//! reconciler finishes), uploads are marked expired (the upload sweep
//! removes them and their objects), reset and verification links and queued mail go, every
//! session ends, and the account row keeps only what the books need: its
//! id, which the ledger and purchases name, and its balance. The email
//! becomes `deleted:<id>` (freed for a new sign-up, and not an address
//! anyone can sign in with) and the password hash is emptied. Ledger rows
//! and purchases stay, for the operator's books, tied to that id only.
//!
//! A generation still running is not deleted under the provider's feet:
//! the person is asked to cancel it or let it end.

use sqlx::Row;

use super::auth::Account;
use super::engine::{owned, store};
use super::state::AppState;
use crate::error::{AppError, Result};

/// Deletes `account` if `password` is its password.
#[tracing::instrument(skip_all, fields(user = %account.id))]
pub async fn delete(state: &AppState, account: &Account, password: String) -> Result<()> {
    let row = sqlx::query("SELECT password_hash, email FROM users WHERE id = $1 AND deleted_at IS NULL")
        .bind(&account.id)
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(AppError::unauthorized)?;
    let (hash, email): (String, String) = (row.try_get("password_hash")?, row.try_get("email")?);
    if !super::auth::verify(password, hash).await.map_err(AppError::internal)? {
        return Err(AppError::invalid("the password is wrong"));
    }
    let now = state.clock.now_ms();
    let mut tx = state.db.begin().await?;
    // Taken first, as a generation's charge takes it: a generation started
    // meanwhile is either counted here or refused after.
    sqlx::query("UPDATE users SET balance = balance WHERE id = $1").bind(&account.id).execute(&mut *tx).await?;
    let tasks = store::delete_every_task(&mut tx, &account.user_id(), now).await?;
    sqlx::query("UPDATE uploads SET created_at = 0 WHERE user_id = $1").bind(&account.id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM password_resets WHERE user_id = $1").bind(&account.id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM email_verifications WHERE user_id = $1").bind(&account.id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM mail_outbox WHERE recipient = $1").bind(&email).execute(&mut *tx).await?;
    sqlx::query(
        "UPDATE users SET email = 'deleted:' || id, password_hash = '', deleted_at = $1, \
         session_epoch = session_epoch + 1, task_deletions = task_deletions + 1 WHERE id = $2",
    )
    .bind(now)
    .bind(&account.id)
    .execute(&mut *tx)
    .await?;
    let ended = super::sessions::Sessions::end_all(&mut tx, &account.id).await?;
    tx.commit().await?;
    tracing::info!(tasks = tasks.len(), sessions_ended = ended, "account deleted");

    // The objects: now, or by the reconciler's purge pass and the upload
    // sweep after a crash.
    for task in tasks {
        state.finished.forget(&task);
        if let Err(e) = owned::purge(state, &task).await {
            tracing::warn!(%task, "stored images not yet removed (the reconciler will): {e}");
        }
    }
    if let Err(e) = super::uploads::expire(state).await {
        tracing::warn!("uploads not yet removed (the sweep will): {e}");
    }
    Ok(())
}
