//! Accounts: sign-up with a credit grant, sign-in, the axum-login backend and
//! the server-side session store (tower-sessions on the same database).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use axum_login::tower_sessions::session::{Id, Record};
use axum_login::tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use axum_login::{AuthUser, AuthnBackend};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sqlx::Row;
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

use super::credits;
use super::db::{self, Db};
use crate::error::{AppError, ErrorKind, Result};

/// A signed-in account as the session layer knows it.
#[derive(Clone)]
pub struct Account {
    pub id: String,
    pub email: String,
    password_hash: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account").field("id", &self.id).field("email", &self.email).finish_non_exhaustive()
    }
}

impl AuthUser for Account {
    type Id = String;

    fn id(&self) -> String {
        self.id.clone()
    }

    /// Changing the password hash signs out every session.
    fn session_auth_hash(&self) -> &[u8] {
        self.password_hash.as_bytes()
    }
}

/// An email address that passed the (deliberately plain) syntax check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self> {
        let email = raw.trim().to_lowercase();
        let ok = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && match email.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                }
                None => false,
            };
        if ok { Ok(Self(email)) } else { Err(AppError::invalid("not a valid email")) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password long enough to keep.
pub struct NewPassword(String);

impl NewPassword {
    pub const MIN_CHARS: usize = 8;
    const MAX_BYTES: usize = 1024;

    pub fn parse(raw: String) -> Result<Self> {
        if raw.chars().count() < Self::MIN_CHARS {
            return Err(AppError::invalid("password must be at least 8 characters"));
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(AppError::invalid("password must be at most 1024 bytes"));
        }
        Ok(Self(raw))
    }
}

/// Email and password as typed into the sign-in form.
#[derive(Clone)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

/// The axum-login backend: accounts in the `users` table.
#[derive(Clone)]
pub struct Accounts {
    db: Db,
}

/// What can fail while looking accounts up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("password check failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub type AuthSession = axum_login::AuthSession<Accounts>;

impl Accounts {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    async fn by(&self, column: &str, value: &str) -> Result<Option<Account>, sqlx::Error> {
        let sql = format!("SELECT id, email, password_hash FROM users WHERE {column} = $1");
        let row = sqlx::query(&sql).bind(value).fetch_optional(&self.db).await?;
        row.map(|r| {
            Ok(Account { id: r.try_get("id")?, email: r.try_get("email")?, password_hash: r.try_get("password_hash")? })
        })
        .transpose()
    }
}

impl AuthnBackend for Accounts {
    type User = Account;
    type Credentials = Credentials;
    type Error = AuthError;

    async fn authenticate(&self, creds: Credentials) -> Result<Option<Account>, AuthError> {
        let Ok(email) = Email::parse(&creds.email) else { return Ok(None) };
        let account = self.by("email", email.as_str()).await?;
        // Verify against a dummy hash when the email is unknown, so both
        // answers take the same time.
        let hash = account.as_ref().map(|a| a.password_hash.clone()).unwrap_or_else(|| DUMMY_HASH.clone());
        let ok =
            tokio::task::spawn_blocking(move || password_auth::verify_password(creds.password, &hash).is_ok()).await?;
        Ok(account.filter(|_| ok))
    }

    async fn get_user(&self, id: &String) -> Result<Option<Account>, AuthError> {
        Ok(self.by("id", id).await?)
    }
}

/// A hash of nothing anyone types, verified when an email is unknown.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| password_auth::generate_hash(uuid::Uuid::new_v4().to_string()));

/// Creates an account and grants its sign-up credits, in one transaction.
#[tracing::instrument(skip_all, fields(email = %email.as_str()))]
pub async fn create_account(db: &Db, email: &Email, password: NewPassword, signup_credits: i64) -> Result<Account> {
    let hash = tokio::task::spawn_blocking(move || password_auth::generate_hash(password.0))
        .await
        .map_err(AppError::internal)?;
    let id = uuid::Uuid::new_v4().to_string();
    let now = db::now_ms();

    let mut tx = db.begin().await.map_err(AppError::internal)?;
    let inserted =
        sqlx::query("INSERT INTO users (id, email, password_hash, balance, created_at) VALUES ($1, $2, $3, 0, $4)")
            .bind(&id)
            .bind(email.as_str())
            .bind(&hash)
            .bind(now)
            .execute(&mut *tx)
            .await;
    match inserted {
        Ok(_) => {}
        Err(e) if db::is_unique_violation(&e) => return Err(AppError::conflict("email already registered")),
        Err(e) => return Err(AppError::internal(e)),
    }
    if signup_credits > 0 {
        credits::grant(&mut tx, &id, signup_credits, &format!("signup:{id}")).await?;
    }
    tx.commit().await.map_err(|e| {
        if db::is_unique_violation(&e) { AppError::conflict("email already registered") } else { AppError::internal(e) }
    })?;
    tracing::info!(user = %id, "account created");
    Ok(Account { id, email: email.clone().0, password_hash: hash })
}

/// Per-client limit on sign-in and sign-up attempts (kept in memory: it
/// protects one instance and is not needed for correctness).
pub struct AttemptLimiter(DefaultKeyedRateLimiter<IpAddr>);

impl AttemptLimiter {
    pub fn per_minute(n: u32) -> Self {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self(RateLimiter::keyed(Quota::per_minute(n)))
    }

    /// Counts an attempt from `ip`, or says how long to wait.
    pub fn check(&self, ip: IpAddr) -> Result<()> {
        self.0.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let secs = wait.as_secs().max(1);
            AppError::new(ErrorKind::RateLimited, format!("too many attempts, try again in {secs} s"))
        })
    }

    /// Forgets clients that have not tried for a while.
    pub fn prune(&self) {
        self.0.retain_recent();
        self.0.shrink_to_fit();
    }
}

/// The session store, on whichever database Darkroom uses.
#[derive(Debug, Clone)]
pub enum Sessions {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Sessions {
    /// Opens the store's own pool on `url` and creates its table.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let store = match db::Backend::of(url) {
            db::Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(url).await?;
                Self::Sqlite(SqliteStore::new(pool))
            }
            db::Backend::Postgres => {
                let pool = sqlx::PgPool::connect(url).await?;
                Self::Postgres(PostgresStore::new(pool))
            }
        };
        // Several instances may start at once and race to create the table;
        // the loser sees a duplicate and tries again.
        let mut attempt = 0;
        loop {
            let migrated = match &store {
                Self::Sqlite(s) => s.migrate().await,
                Self::Postgres(s) => s.migrate().await,
            };
            match migrated {
                Ok(()) => return Ok(store),
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    tracing::debug!("session table creation raced, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Deletes expired sessions every `period`, forever.
    pub fn spawn_cleanup(&self, period: Duration) {
        let store = self.clone();
        tokio::spawn(async move {
            let _ = store.continuously_delete_expired(period).await;
        });
    }
}

#[async_trait::async_trait]
impl SessionStore for Sessions {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            Self::Sqlite(s) => s.create(record).await,
            Self::Postgres(s) => s.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            Self::Sqlite(s) => s.save(record).await,
            Self::Postgres(s) => s.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            Self::Sqlite(s) => s.load(id).await,
            Self::Postgres(s) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            Self::Sqlite(s) => s.delete(id).await,
            Self::Postgres(s) => s.delete(id).await,
        }
    }
}

#[async_trait::async_trait]
impl ExpiredDeletion for Sessions {
    async fn delete_expired(&self) -> session_store::Result<()> {
        match self {
            Self::Sqlite(s) => s.delete_expired().await,
            Self::Postgres(s) => s.delete_expired().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_and_normalised() {
        assert_eq!(Email::parse("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "a da@example.com", "a@b@c.com", "ada@.com"] {
            let e = Email::parse(bad).unwrap_err();
            assert_eq!(e.message, "not a valid email", "{bad:?}");
        }
    }

    #[test]
    fn short_passwords_are_refused() {
        assert_eq!(
            NewPassword::parse("1234567".into()).err().unwrap().message,
            "password must be at least 8 characters"
        );
        assert!(NewPassword::parse("12345678".into()).is_ok());
    }

    #[test]
    fn the_limiter_refuses_past_its_quota() {
        let limiter = AttemptLimiter::per_minute(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(limiter.check(ip).is_ok());
        assert!(limiter.check(ip).is_ok());
        let e = limiter.check(ip).unwrap_err();
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert!(limiter.check("10.0.0.2".parse().unwrap()).is_ok());
    }
}
