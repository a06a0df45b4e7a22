//! The server-side session store for tower-sessions, in the app's own
//! database (table `sessions`, created by the migrations). Writes go through
//! the pool; the load every request makes is a point read (`Db::optional`),
//! batched on PostgreSQL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::clock::Clock;
use super::db::{self, Db};
use super::reads::{Arg, Columns, PgBatch, ReadRow};
use crate::error::Result;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum_login::tower_sessions::Session;
use axum_login::tower_sessions::cookie::time::OffsetDateTime;
use axum_login::tower_sessions::session::{Id, Record};
use axum_login::tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};

/// Sessions of signed-in people.
#[derive(Clone)]
pub struct Sessions {
    db: Db,
    /// On PostgreSQL, the loads of concurrent requests, made together.
    batched: Option<Arc<PgBatch<Stored>>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions")
    }
}

/// A stored session: its data (JSON), when it expires, and its account's
/// count of deleted tasks as of this read.
#[derive(Clone)]
struct Stored {
    data: String,
    expires_at: i64,
    task_deletions: Option<i64>,
}

impl ReadRow for Stored {
    fn read(row: &impl Columns) -> Result<Self> {
        Ok(Self {
            data: row.get("data")?,
            expires_at: row.get("expires_at")?,
            task_deletions: row.get("task_deletions")?,
        })
    }
}

/// A session loads while it has not expired and, when signed in, while its
/// epoch is still its account's (a password change moves it on). The
/// account's deletion count comes with it (see [`task_deletions`]).
const LOAD: &str = "SELECT s.data, s.expires_at, u.task_deletions FROM sessions s LEFT JOIN users u ON u.id = s.user_id \
                    WHERE s.id = $1 AND s.expires_at > $2 AND (s.user_id IS NULL OR s.epoch = u.session_epoch)";
/// [`LOAD`] for several sessions at once (`$1`, an array of ids).
const LOAD_MANY: &str = "SELECT s.id AS key, s.data, s.expires_at, u.task_deletions \
                         FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.id = ANY($1) \
                         AND s.expires_at > $2 AND (s.user_id IS NULL OR s.epoch = u.session_epoch)";

impl Sessions {
    pub fn new(db: Db) -> Self {
        let batched = db.pg_reads().map(|pg| Arc::new(PgBatch::new(pg, LOAD_MANY)));
        Self { db, batched }
    }

    /// Deletes expired sessions every `period`, forever.
    pub fn spawn_cleanup(&self, period: Duration) {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                if let Err(e) = store.delete_expired().await {
                    tracing::warn!("cannot delete expired sessions: {e}");
                }
            }
        });
    }
}

/// The day (since the epoch) a session was last seen, in its data.
const SEEN_DAY: &str = "darkroom.seen_day";
const DAY_MS: i64 = 86_400_000;

/// Keeps a signed-in session alive while it is used. tower-sessions writes a
/// session only when it changed, so an unchanged one would expire
/// `DARKROOM_SESSION_DAYS` after sign-in however often it is used; writing
/// on every request would cost every poll a database write. So the first
/// request of each day records the day, which saves the session and moves
/// its expiry, in the database and in the cookie, to the full idle time
/// from now.
pub async fn keep_alive(request: Request, next: Next) -> Response {
    let session = request.extensions().get::<Session>().cloned();
    // After the handler: a sign-in is then saved once, with the day in it,
    // and a sign-out (which empties the session) is left alone.
    let response = next.run(request).await;
    if let Some(session) = session
        && !session.is_empty().await
    {
        let today = Clock::system().now_ms() / DAY_MS;
        if session.get::<i64>(SEEN_DAY).await.ok().flatten() != Some(today)
            && let Err(e) = session.insert(SEEN_DAY, today).await
        {
            tracing::warn!("cannot refresh a session: {e}");
        }
    }
    response
}

/// Middleware: refuses a request that carries the session cookie (named
/// `name`) more than once. Browsers send every matching cookie, and a
/// sibling subdomain can plant one for the whole domain: with two, which
/// one the session layer takes is the browser's order, and a planted one
/// could sign the person into someone else's account.
pub async fn one_session_cookie(
    axum::extract::State(name): axum::extract::State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    use axum::response::IntoResponse;
    let count = request
        .headers()
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter(|pair| pair.split('=').next().is_some_and(|k| k.trim() == name))
        .count();
    if count > 1 {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            "This request carries two session cookies. Clear this site's cookies in the browser, then sign in again.",
        )
            .into_response();
    }
    next.run(request).await
}

fn epoch_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn store_error(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

fn encode(record: &Record) -> session_store::Result<String> {
    let mut data = record.data.clone();
    // Read fresh with every load; never stored.
    data.remove(TASK_DELETIONS);
    serde_json::to_string(&data).map_err(|e| session_store::Error::Encode(e.to_string()))
}

/// Where a loaded session carries its account's count of deleted tasks.
const TASK_DELETIONS: &str = "darkroom.task_deletions";

/// How many tasks the session's account had deleted when this request
/// loaded the session: read in the same statement as the session, so it is
/// never older than the request. Polls answer a finished task from memory
/// only under the count it was remembered with (`engine::finished`).
pub async fn task_deletions(session: &Session) -> Option<i64> {
    session.get::<i64>(TASK_DELETIONS).await.ok().flatten()
}

/// Where axum-login keeps the signed-in account in a session's data.
const AUTH_DATA: &str = "axum-login.data";

/// Where a session keeps its account's epoch as of the sign-in.
const EPOCH: &str = "darkroom.epoch";

/// The account a session is signed in to, stored beside its data so that
/// a password change can end every other session of the account.
fn account_of(record: &Record) -> Option<&str> {
    record.data.get(AUTH_DATA)?.get("user_id")?.as_str()
}

/// The account epoch a session was signed in at (see `LOAD`).
fn epoch_of(record: &Record) -> Option<i64> {
    record.data.get(EPOCH)?.as_i64()
}

/// Records in `session` the account epoch read with the password that
/// signed it in (every sign-in does; a session without one never loads).
pub async fn set_epoch(session: &Session, epoch: i64) -> Result<()> {
    session.insert(EPOCH, epoch).await.map_err(crate::error::AppError::internal)
}

impl Sessions {
    /// Ends every session of `user`, in the caller's transaction. Every
    /// instance reads sessions from the database on every request, so they
    /// end everywhere at once.
    pub async fn end_all(conn: &mut sqlx::AnyConnection, user: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user).execute(&mut *conn).await?;
        Ok(done.rows_affected())
    }
}

#[async_trait::async_trait]
impl SessionStore for Sessions {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data = encode(record)?;
        loop {
            let inserted =
                sqlx::query("INSERT INTO sessions (id, data, expires_at, user_id, epoch) VALUES ($1, $2, $3, $4, $5)")
                    .bind(record.id.to_string())
                    .bind(&data)
                    .bind(epoch_ms(record.expiry_date))
                    .bind(account_of(record))
                    .bind(epoch_of(record))
                    .execute(&self.db)
                    .await;
            match inserted {
                Ok(_) => return Ok(()),
                // 128 random bits collided: draw again.
                Err(e) if db::is_unique_violation(&e) => record.id = Id::default(),
                Err(e) => return Err(store_error(e)),
            }
        }
    }

    /// Updates a session that exists; never brings back a deleted one. A
    /// request that loaded the session before a sign-out elsewhere (another
    /// tab, another instance) would otherwise write it back and undo the
    /// sign-out. (New sessions go through `create`, and so does a session
    /// whose id was cycled at sign-in.)
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        sqlx::query("UPDATE sessions SET data = $1, expires_at = $2, user_id = $3, epoch = $4 WHERE id = $5")
            .bind(encode(record)?)
            .bind(epoch_ms(record.expiry_date))
            .bind(account_of(record))
            .bind(epoch_of(record))
            .bind(record.id.to_string())
            .execute(&self.db)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let id_text = id.to_string();
        let stored: Option<Stored> = match &self.batched {
            Some(batched) => batched.get(&id_text).await,
            None => self.db.optional(LOAD, &[Arg::Text(&id_text), Arg::Int(Clock::system().now_ms())]).await,
        }
        .map_err(|e| store_error(e.message))?;
        let Some(stored) = stored else { return Ok(None) };
        let mut data: HashMap<String, serde_json::Value> =
            serde_json::from_str(&stored.data).map_err(|e| session_store::Error::Decode(e.to_string()))?;
        match stored.task_deletions {
            Some(n) => data.insert(TASK_DELETIONS.to_owned(), n.into()),
            None => data.remove(TASK_DELETIONS),
        };
        let expiry_date = OffsetDateTime::from_unix_timestamp_nanos(i128::from(stored.expires_at) * 1_000_000)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record { id: *id, data, expiry_date }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.db)
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl ExpiredDeletion for Sessions {
    async fn delete_expired(&self) -> session_store::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(Clock::system().now_ms())
            .execute(&self.db)
            .await
            .map_err(store_error)?;
        Ok(())
    }
}
