//! Verified email (`DARKROOM_REQUIRE_VERIFIED_EMAIL`): an account proves
//! its address by a link we mail, and only then gets its sign-up credits
//! and may generate.
//!
//! - Sign-up ([`sign_up`]) answers "check your inbox" at once, with no
//!   session, for a new address and a registered one alike: the work is
//!   done after the answer. A new address gets an account (no credits) and
//!   a link; a registered one gets a note that it already has an account.
//! - The link (`/verify?token=…`, a single-use token kept as its digest,
//!   for [`TOKEN_TTL_MS`]) marks the address verified, grants the sign-up
//!   credits once per mailbox (`auth::grant_signup`), and signs in.
//! - An email change ([`change_email`], with the password) mails the same
//!   kind of link to the new address and a notice to the current one; the
//!   address changes, verified, when the link is opened.
//! - Until then the account may sign in and look around; a generation is
//!   refused in its charging transaction (`store::Caps::verified_only`).

use sqlx::Row;

use super::auth::{self, Account, Email, NewPassword};
use super::ids::UserId;
use super::mail::{self, Mail};
use super::state::AppState;
use super::tokens;
use crate::error::{AppError, Result};

/// How long a verification link works: a day.
pub const TOKEN_TTL_MS: i64 = 24 * 3_600_000;

/// What a used, expired or altered link is told.
const SPENT: &str = "this verification link has expired or was already used; sign in to have a new one sent";

/// Makes the account and mails the link, or mails a registered address a
/// note, after the caller has answered (so the answer says nothing about
/// the address).
pub fn sign_up(state: &AppState, email: Email, password: NewPassword, base: Option<String>) {
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = sign_up_now(&state, &email, password, base).await {
            tracing::warn!("sign-up with verification: {e}");
        }
    });
}

async fn sign_up_now(state: &AppState, email: &Email, password: NewPassword, base: Option<String>) -> Result<()> {
    let Some(base) = base else {
        return Err(AppError::internal("no link sent: set DARKROOM_PUBLIC_URL so mail can name this site"));
    };
    let account = match auth::create_account(&state.db, email, password, 0).await {
        Ok((account, _)) => account,
        Err(e) if e.kind == crate::error::ErrorKind::Conflict => return already_registered(state, email, &base).await,
        Err(e) => return Err(e),
    };
    send_link(state, &account.user_id(), email, &base).await
}

/// Tells a registered address that someone tried to sign up with it.
async fn already_registered(state: &AppState, email: &Email, base: &str) -> Result<()> {
    let body = format!(
        "Someone, perhaps you, tried to create a Darkroom account with this address ({email}).\n\n\
         You already have one: sign in at {base}/login\n\n\
         Forgot its password? Choose a new one at {base}/forgot\n\n\
         If it was not you, ignore this message.\n",
        email = email.as_str(),
    );
    let mut conn = state.db.acquire().await?;
    let mail = Mail { to: email.as_str(), subject: "You already have a Darkroom account", body };
    mail::enqueue(&mut conn, &mail, state.clock.now_ms()).await?;
    state.mailer.wake();
    Ok(())
}

/// Mails `email` a fresh verification link for `user`.
pub async fn send_link(state: &AppState, user: &UserId, email: &Email, base: &str) -> Result<()> {
    let (token, hash) = tokens::fresh();
    let now = state.clock.now_ms();
    let body = format!(
        "Welcome to Darkroom.\n\n\
         To confirm this address ({email}) and get your free credits, open this link within a day:\n\n\
         {base}/verify?token={token}\n\n\
         If you did not sign up, ignore this message.\n",
        email = email.as_str(),
    );
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "INSERT INTO email_verifications (token_hash, user_id, email, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash)
    .bind(user.as_str())
    .bind(email.as_str())
    .bind(now)
    .bind(now + TOKEN_TTL_MS)
    .execute(&mut *tx)
    .await?;
    mail::enqueue(&mut tx, &Mail { to: email.as_str(), subject: "Confirm your email for Darkroom", body }, now).await?;
    tx.commit().await?;
    state.mailer.wake();
    tracing::info!(user = %user, "verification link queued");
    Ok(())
}

/// Marks the address the link was sent to verified and grants the sign-up
/// credits (once per mailbox); the account, its session epoch and the
/// credits granted, to sign in with.
#[tracing::instrument(skip_all)]
pub async fn verify(state: &AppState, token: &str) -> Result<(Account, i64, i64)> {
    if token.is_empty() || token.len() > tokens::MAX_LEN {
        return Err(AppError::invalid(SPENT));
    }
    let now = state.clock.now_ms();
    let mut tx = state.db.begin().await?;
    let spent = sqlx::query(
        "UPDATE email_verifications SET used_at = $1 \
         WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING user_id, email",
    )
    .bind(now)
    .bind(tokens::digest(token))
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| AppError::invalid(SPENT))?;
    let (user, sent_to): (String, String) = (spent.try_get("user_id")?, spent.try_get("email")?);
    // The link's address becomes the account's: the one it signed up
    // with, or the one it is changing to (taken meanwhile by another
    // account: refused). A deleted account answers nothing.
    let row = sqlx::query(
        "UPDATE users SET email = $3, \
         email_verified_at = CASE WHEN email = $3 THEN COALESCE(email_verified_at, $1) ELSE $1 END \
         WHERE id = $2 AND deleted_at IS NULL RETURNING session_epoch",
    )
    .bind(now)
    .bind(&user)
    .bind(&sent_to)
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| {
        if super::db::is_unique_violation(&e) {
            AppError::invalid("another account uses this address now")
        } else {
            AppError::from(e)
        }
    })?
    .ok_or_else(|| AppError::invalid(SPENT))?;
    let epoch: i64 = row.try_get("session_epoch")?;
    let email = Email::parse(&sent_to)?;
    let user_id = UserId::from_db(user.clone());
    let granted = auth::grant_signup(&mut tx, &user_id, &email, state.config.signup_credits).await?;
    tx.commit().await?;
    tracing::info!(user = %user, granted, "email verified");
    Ok((Account::new(user, sent_to), epoch, granted))
}

/// Mails `account` a new link, unless its address is verified.
pub async fn resend(state: &AppState, account: &Account, base: Option<String>) -> Result<()> {
    let now = auth::standing(&state.db, &account.id).await?;
    if now.verified {
        return Err(AppError::conflict("this address is already verified"));
    }
    let base = base.ok_or_else(|| AppError::internal("set DARKROOM_PUBLIC_URL so mail can name this site"))?;
    send_link(state, &account.user_id(), &Email::parse(&now.email)?, &base).await
}

/// Starts changing `account`'s email to `new`, with its password: a link
/// to the new address (the change is made when it is opened, see
/// [`verify`]; any earlier link of the account is spent), and a notice to
/// the current one.
pub async fn change_email(
    state: &AppState,
    account: &Account,
    new: &Email,
    password: String,
    base: Option<String>,
) -> Result<()> {
    let hash: String = sqlx::query("SELECT password_hash FROM users WHERE id = $1 AND deleted_at IS NULL")
        .bind(&account.id)
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(AppError::unauthorized)?
        .try_get("password_hash")?;
    if !auth::verify(password, hash).await.map_err(AppError::internal)? {
        return Err(AppError::invalid("the password is wrong"));
    }
    let current = auth::standing(&state.db, &account.id).await?.email;
    if current == new.as_str() {
        return Err(AppError::invalid("that is already your address"));
    }
    let taken =
        sqlx::query("SELECT 1 FROM users WHERE email = $1").bind(new.as_str()).fetch_optional(&state.db).await?;
    if taken.is_some() {
        return Err(AppError::conflict("another account uses that address"));
    }
    let base = base.ok_or_else(|| AppError::internal("set DARKROOM_PUBLIC_URL so mail can name this site"))?;
    let now = state.clock.now_ms();
    let (token, hash) = tokens::fresh();
    let link = format!(
        "You asked to change the email of your Darkroom account to this address ({new}).\n\n\
         To confirm it, open this link within a day:\n\n{base}/verify?token={token}\n\n\
         If it was not you, ignore this message.\n",
        new = new.as_str(),
    );
    let notice = format!(
        "Someone signed in to your Darkroom account ({current}) asked to move it to another address. \
         It moves only if that address confirms.\n\n\
         If it was not you, choose a new password at {base}/forgot\n",
    );
    let mut tx = state.db.begin().await?;
    sqlx::query("UPDATE email_verifications SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL")
        .bind(now)
        .bind(&account.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO email_verifications (token_hash, user_id, email, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash)
    .bind(&account.id)
    .bind(new.as_str())
    .bind(now)
    .bind(now + TOKEN_TTL_MS)
    .execute(&mut *tx)
    .await?;
    mail::enqueue(&mut tx, &Mail { to: new.as_str(), subject: "Confirm your new email for Darkroom", body: link }, now)
        .await?;
    mail::enqueue(&mut tx, &Mail { to: &current, subject: "Your Darkroom email is being changed", body: notice }, now)
        .await?;
    tx.commit().await?;
    state.mailer.wake();
    tracing::info!(user = %account.id, "email change link queued");
    Ok(())
}

/// Marks `email`'s account verified by hand (the admin CLI), granting
/// `credits` sign-up credits as the link would; the credits granted.
pub async fn verify_by_operator(db: &super::db::Db, email: &Email, credits: i64, now: i64) -> Result<i64> {
    let mut tx = db.begin().await?;
    let row = sqlx::query(
        "UPDATE users SET email_verified_at = COALESCE(email_verified_at, $1) WHERE email = $2 RETURNING id",
    )
    .bind(now)
    .bind(email.as_str())
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| {
        AppError::new(crate::error::ErrorKind::NotFound, format!("no account with email {}", email.as_str()))
    })?;
    let user = UserId::from_db(row.try_get("id")?);
    let granted = auth::grant_signup(&mut tx, &user, email, credits).await?;
    tx.commit().await?;
    Ok(granted)
}
