//! "Forgot password?": a link by mail that sets a new password once.
//!
//! - Asking ([`request`]) answers the same, at once, whether or not the
//!   address has an account: the lookup, the token and the message are
//!   made after the answer. A link is a random 256-bit token, kept only as
//!   its SHA-256 digest, that works once and for [`TOKEN_TTL_MS`].
//! - Using it ([`reset`]) sets the password, moves the account's session
//!   epoch on and ends every session of the account (as a password change
//!   does), and spends every other link the account had, in one
//!   transaction.
//! - A link names this site as [`mail::link_base`] says.

use sqlx::Row;

use super::auth::{Email, NewPassword};
use super::mail::{self, Mail};
use super::state::AppState;
use super::tokens::{self, digest};
use crate::error::{AppError, Result};

/// How long a link works: an hour.
pub const TOKEN_TTL_MS: i64 = 3_600_000;
/// Links one address may be sent an hour (per instance): enough for a
/// person who lost one, too few to flood their inbox.
pub const PER_ADDRESS_PER_HOUR: u32 = 5;

/// What a used, expired or altered link is told.
const SPENT: &str = "this reset link has expired or was already used; ask for a new one";

/// Sends a reset link to `email` if an account uses it, after the caller
/// has answered (so the answer says nothing about the address).
pub fn request(state: &AppState, email: Email, base: Option<String>) {
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = send_link(&state, &email, base).await {
            tracing::warn!("password reset link: {e}");
        }
    });
}

async fn send_link(state: &AppState, email: &Email, base: Option<String>) -> Result<()> {
    let row =
        sqlx::query("SELECT id FROM users WHERE email = $1").bind(email.as_str()).fetch_optional(&state.db).await?;
    let Some(row) = row else { return Ok(()) };
    let Some(base) = base else {
        return Err(AppError::internal("no link sent: set DARKROOM_PUBLIC_URL so mail can name this site"));
    };
    let user: String = row.try_get("id")?;
    let (token, hash) = tokens::fresh();
    let now = state.clock.now_ms();
    let body = format!(
        "Someone asked to reset the password of your Darkroom account ({email}).\n\n\
         To choose a new password, open this link within an hour:\n\n{base}/reset?token={token}\n\n\
         If it was not you, ignore this message: your password stays as it is.\n",
        email = email.as_str(),
    );
    let mut tx = state.db.begin().await?;
    sqlx::query("INSERT INTO password_resets (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(hash)
        .bind(&user)
        .bind(now)
        .bind(now + TOKEN_TTL_MS)
        .execute(&mut *tx)
        .await?;
    mail::enqueue(&mut tx, &Mail { to: email.as_str(), subject: "Reset your Darkroom password", body }, now).await?;
    tx.commit().await?;
    state.mailer.wake();
    tracing::info!(user = %user, "password reset link queued");
    Ok(())
}

/// Sets the password of the account `token` was sent to, if the link still
/// works; ends every session of the account.
#[tracing::instrument(skip_all)]
pub async fn reset(state: &AppState, token: &str, new: NewPassword) -> Result<()> {
    if token.is_empty() || token.len() > tokens::MAX_LEN {
        return Err(AppError::invalid(SPENT));
    }
    let hash = digest(token);
    // Checked before the (slow) hash of the new password, and again,
    // atomically, when spent.
    let now = state.clock.now_ms();
    let live = sqlx::query(
        "SELECT user_id FROM password_resets WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(&hash)
    .bind(now)
    .fetch_optional(&state.db)
    .await?;
    if live.is_none() {
        return Err(AppError::invalid(SPENT));
    }
    let password_hash = super::auth::hash_password(new).await?;
    let now = state.clock.now_ms();
    let mut tx = state.db.begin().await?;
    let spent = sqlx::query(
        "UPDATE password_resets SET used_at = $1 \
         WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING user_id",
    )
    .bind(now)
    .bind(&hash)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(spent) = spent else { return Err(AppError::invalid(SPENT)) };
    let user: String = spent.try_get("user_id")?;
    sqlx::query("UPDATE password_resets SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL")
        .bind(now)
        .bind(&user)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE users SET password_hash = $1, session_epoch = session_epoch + 1 WHERE id = $2")
        .bind(&password_hash)
        .bind(&user)
        .execute(&mut *tx)
        .await?;
    let ended = super::sessions::Sessions::end_all(&mut tx, &user).await?;
    tx.commit().await?;
    tracing::info!(user = %user, sessions_ended = ended, "password reset");
    Ok(())
}
