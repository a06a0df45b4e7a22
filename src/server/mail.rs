//! Mail: a message is written to the `mail_outbox` table by the request
//! that asks for it and sent by a background sender, so a slow or absent
//! mail server never holds a request and a restart loses nothing. The
//! sender claims a due message by moving its `next_attempt_at` on
//! (compare-and-set: one instance sends it), deletes it once the server
//! took it, and tries a refused one again with backoff, giving up (logged)
//! after [`MAX_ATTEMPTS`].
//!
//! Where it goes: SMTP (`DARKROOM_SMTP_URL`, through lettre), or with no
//! SMTP configured a folder, `$DARKROOM_DATA_DIR/outbox/`, one `.eml` file
//! per message, its links logged, so a developer can follow them.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use sqlx::Row;

use super::config::MailChoice;
use super::state::AppState;
use crate::error::{AppError, Result};

/// Tries before a message is given up.
pub const MAX_ATTEMPTS: i64 = 12;
/// How long a claimed message is left to its sender before another
/// instance may try it (longer than an SMTP exchange may take).
const CLAIM_MS: i64 = 120_000;
/// Longest the sender sleeps: messages other instances wrote are found
/// within this.
const IDLE_MS: i64 = 30_000;
/// Messages sent per pass.
const BATCH: i64 = 20;

/// A message to one person.
pub struct Mail<'a> {
    pub to: &'a str,
    pub subject: &'a str,
    /// Plain text.
    pub body: String,
}

/// Where mail goes, and the sender's wake-up call.
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    wake: tokio::sync::Notify,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Folder(PathBuf),
}

impl Mailer {
    pub fn new(choice: &MailChoice, from: &str) -> anyhow::Result<Self> {
        let from: Mailbox = from.parse().map_err(|e| anyhow::anyhow!("DARKROOM_MAIL_FROM: {e}"))?;
        let transport = match choice {
            MailChoice::Folder(dir) => Transport::Folder(dir.clone()),
            MailChoice::Smtp(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .map_err(|e| anyhow::anyhow!("DARKROOM_SMTP_URL: {e}"))?
                    .timeout(Some(Duration::from_secs(30)))
                    .build(),
            ),
        };
        Ok(Self { transport, from, wake: tokio::sync::Notify::new() })
    }

    /// Tells the sender a message is waiting.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    async fn deliver(&self, id: &str, to: &str, subject: &str, body: &str) -> std::result::Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("recipient: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned())
            .map_err(|e| e.to_string())?;
        match &self.transport {
            Transport::Smtp(smtp) => smtp.send(message).await.map(drop).map_err(|e| e.to_string()),
            Transport::Folder(dir) => {
                tokio::fs::create_dir_all(dir).await.map_err(|e| e.to_string())?;
                let path = dir.join(format!("{id}.eml"));
                tokio::fs::write(&path, message.formatted()).await.map_err(|e| e.to_string())?;
                for link in body.split_whitespace().filter(|w| w.starts_with("http://") || w.starts_with("https://")) {
                    tracing::info!(path = %path.display(), "mail written (no SMTP configured): {link}");
                }
                Ok(())
            }
        }
    }
}

/// The origin links in mail name, if one can be trusted: the public URL,
/// or `request_base` when its host is loopback. A `Host` header is the
/// client's to choose: a link to a host it chose would hand it the token.
pub fn link_base(state: &AppState, request_base: &str) -> Option<String> {
    if let Some(origin) = state.config.public_origin() {
        return Some(origin);
    }
    let host = url::Url::parse(request_base).ok()?.host()?.to_owned();
    let loopback = match host {
        url::Host::Domain(name) => name == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    loopback.then(|| request_base.to_owned())
}

/// Writes `mail` to the outbox on `conn` (inside the caller's transaction,
/// so it is sent if and only if what it tells of happened). Call
/// [`Mailer::wake`] once committed.
pub async fn enqueue(conn: &mut sqlx::AnyConnection, mail: &Mail<'_>, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO mail_outbox (id, recipient, subject, body, created_at, attempts, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, 0, $5)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(mail.to)
    .bind(mail.subject)
    .bind(&mail.body)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// How long to wait after `attempts` failed tries: 5 s, doubling, at most
/// an hour.
fn backoff_ms(attempts: i64) -> i64 {
    let doublings = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(10);
    (5_000i64 << doublings).min(3_600_000)
}

/// Starts the sender.
pub fn spawn(state: AppState) {
    tokio::spawn(async move {
        loop {
            let now = state.clock.now_ms();
            let next = match send_due(&state).await {
                Ok(next) => next.unwrap_or(i64::MAX),
                Err(e) => {
                    tracing::warn!("mail sender: {e}");
                    now + 5_000
                }
            };
            let at = next.min(state.clock.now_ms() + IDLE_MS);
            tokio::select! {
                () = state.clock.sleep_until(at) => {}
                () = state.mailer.wake.notified() => {}
            }
        }
    });
}

/// Sends what is due; when the next message is.
async fn send_due(state: &AppState) -> Result<Option<i64>> {
    let now = state.clock.now_ms();
    let due = sqlx::query(
        "SELECT id, recipient, subject, body, attempts, next_attempt_at FROM mail_outbox \
         WHERE next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2",
    )
    .bind(now)
    .bind(BATCH)
    .fetch_all(&state.db)
    .await?;
    for row in due {
        let id: String = row.try_get("id")?;
        let was: i64 = row.try_get("next_attempt_at")?;
        let attempts: i64 = row.try_get::<i64, _>("attempts")? + 1;
        let claimed = sqlx::query(
            "UPDATE mail_outbox SET next_attempt_at = $1, attempts = $2 WHERE id = $3 AND next_attempt_at = $4",
        )
        .bind(now + CLAIM_MS)
        .bind(attempts)
        .bind(&id)
        .bind(was)
        .execute(&state.db)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            continue;
        }
        let (to, subject, body): (String, String, String) =
            (row.try_get("recipient")?, row.try_get("subject")?, row.try_get("body")?);
        match state.mailer.deliver(&id, &to, &subject, &body).await {
            Ok(()) => {
                sqlx::query("DELETE FROM mail_outbox WHERE id = $1").bind(&id).execute(&state.db).await?;
                state.metrics.mail("sent");
                tracing::info!(mail = %id, "mail sent: {subject}");
            }
            Err(e) if attempts >= MAX_ATTEMPTS => {
                sqlx::query("DELETE FROM mail_outbox WHERE id = $1").bind(&id).execute(&state.db).await?;
                state.metrics.mail("given_up");
                tracing::error!(mail = %id, attempts, "mail given up after {attempts} tries: {e}");
            }
            Err(e) => {
                let at = state.clock.now_ms() + backoff_ms(attempts);
                sqlx::query("UPDATE mail_outbox SET next_attempt_at = $1 WHERE id = $2")
                    .bind(at)
                    .bind(&id)
                    .execute(&state.db)
                    .await?;
                state.metrics.mail("retried");
                tracing::warn!(mail = %id, attempts, "mail not sent, trying again in {} s: {e}", (at - now) / 1000);
            }
        }
    }
    let next = sqlx::query("SELECT MIN(next_attempt_at) AS next FROM mail_outbox").fetch_one(&state.db).await?;
    next.try_get::<Option<i64>, _>("next").map_err(AppError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_an_hour() {
        let waits: Vec<i64> = [1, 2, 3, 4, 11, 12, 40].map(backoff_ms).into();
        assert_eq!(waits, [5_000, 10_000, 20_000, 40_000, 3_600_000, 3_600_000, 3_600_000]);
    }
}
