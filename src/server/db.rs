//! The database, and the one way into it: [`Db`] holds the `sqlx::AnyPool`
//! over SQLite (default) or PostgreSQL, migrated at start-up, and the point
//! reads of the request path ([`super::reads`]). Queries are written once,
//! in the SQL both accept (`$1` placeholders, `RETURNING`, integers for
//! times and flags). A `&Db` is a sqlx executor like the pool itself, so
//! lists, batches and transactions (`Db::begin`) go through the pool;
//! [`Db::optional`] and [`Db::repeatable`] take the point-read path.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use sqlx::any::{AnyPoolOptions, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::error::ErrorKind as DbErrorKind;
use sqlx::{Any, AnyPool, Either, Execute, Executor};

use super::reads::{Arg, PgReads, ReadRow, Reads};
use crate::error::Result;

/// The database: its pool and its point reads. Cloning is cheap (both are
/// shared).
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    reads: Reads,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("pool", &self.pool).finish_non_exhaustive()
    }
}

impl Db {
    /// The pool, for what takes one by type (migrations, a connection of
    /// one's own).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A transaction on a connection of the pool.
    pub async fn begin(&self) -> sqlx::Result<sqlx::Transaction<'static, Any>> {
        self.pool.begin().await
    }

    /// A connection of the pool, for a few statements in a row.
    pub async fn acquire(&self) -> sqlx::Result<sqlx::pool::PoolConnection<Any>> {
        self.pool.acquire().await
    }

    /// The row `sql` selects with `args`, if any, read the way the request
    /// path reads (see `reads`): the session, its account, a task.
    pub async fn optional<T: ReadRow>(&self, sql: &str, args: &[Arg<'_>]) -> Result<Option<T>> {
        self.reads.optional(&self.pool, sql, args).await
    }

    /// Runs one write that may safely run twice and may be lost (a claim,
    /// which is a compare-and-set; recorded progress; a postponed check) on
    /// the point-read path; the rows it changed. See `Reads::repeatable`.
    pub async fn repeatable(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        self.reads.repeatable(&self.pool, sql, args).await
    }

    /// PostgreSQL's point-read connections, which batched reads share.
    pub fn pg_reads(&self) -> Option<Arc<PgReads>> {
        match &self.reads {
            Reads::Postgres(pg) => Some(Arc::clone(pg)),
            _ => None,
        }
    }
}

/// `&Db` runs queries on the pool, as `&AnyPool` does.
impl<'p> Executor<'p> for &'_ Db {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, sqlx::Result<Either<AnyQueryResult, AnyRow>>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        self.pool.fetch_many(query)
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, sqlx::Result<Option<AnyRow>>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        self.pool.fetch_optional(query)
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, sqlx::Result<AnyStatement<'q>>>
    where
        'p: 'e,
    {
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, sqlx::Result<sqlx::Describe<Any>>>
    where
        'p: 'e,
    {
        self.pool.describe(sql)
    }
}

/// Which SQL dialect the pool speaks (only migrations differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Self {
        if url.starts_with("sqlite:") { Self::Sqlite } else { Self::Postgres }
    }
}

/// Opens the database (creating a SQLite file and its folder if needed),
/// applies the migrations and opens the point reads; any failure stops
/// start-up.
pub async fn connect(url: &str) -> anyhow::Result<Db> {
    sqlx::any::install_default_drivers();
    let backend = Backend::of(url);
    let url = match backend {
        Backend::Sqlite => sqlite_url(url)?,
        Backend::Postgres => url.to_owned(),
    };
    if backend == Backend::Sqlite {
        enable_wal(&url).await?;
    }
    let pool = AnyPoolOptions::new()
        .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
        .acquire_timeout(Duration::from_secs(10))
        // A ping checks that a network connection survived; an in-process
        // SQLite connection cannot go stale, and the ping is one more thread
        // hand-off per query.
        .test_before_acquire(backend == Backend::Postgres)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // Safe with WAL (a crash loses at most the last commits'
                    // durability, never consistency) and much faster.
                    sqlx::Executor::execute(&mut *conn, "PRAGMA synchronous = NORMAL").await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database ({}): {e}", redact(&url)))?;
    migrate(&pool, backend).await?;
    let reads = Reads::open(&url)?;
    Ok(Db { pool, reads })
}

/// Puts the SQLite file in write-ahead-log mode (a property of the file):
/// readers no longer block the writer, which polling needs.
async fn enable_wal(url: &str) -> anyhow::Result<()> {
    use sqlx::ConnectOptions;
    let conn = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database ({}): {e}", redact(url)))?;
    sqlx::Connection::close(conn).await.ok();
    Ok(())
}

async fn migrate(pool: &AnyPool, backend: Backend) -> anyhow::Result<()> {
    let result = match backend {
        Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(pool).await,
        Backend::Postgres => sqlx::migrate!("migrations/postgres").run(pool).await,
    };
    result.map_err(|e| anyhow::anyhow!("database migration failed: {e}"))
}

/// Makes sure the SQLite file can be created: its folder exists and the URL
/// asks for create-if-missing.
fn sqlite_url(url: &str) -> anyhow::Result<String> {
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a SQLite URL: {e}"))?;
    if let Some(dir) = opts.get_filename().parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    Ok(if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

/// The file a SQLite URL names, if it is one (`None` for PostgreSQL).
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    if Backend::of(url) != Backend::Sqlite {
        return None;
    }
    sqlx::sqlite::SqliteConnectOptions::from_str(url).ok().map(|o| o.get_filename().to_path_buf())
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Whether a database error is the violation of a unique key.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == DbErrorKind::UniqueViolation)
}

/// Whether a database error is a balance that would drop below zero. On
/// PostgreSQL the violated constraint is named (`balance_not_negative`), so
/// no other CHECK can be mistaken for it; SQLite reports only the kind.
pub fn is_negative_balance(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) if d.kind() == DbErrorKind::CheckViolation => match d.constraint() {
            Some(name) => name == "balance_not_negative",
            None => true,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_ask_for_creation() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/sub/x.db", dir.path().display());
        assert_eq!(sqlite_url(&url).unwrap(), format!("{url}?mode=rwc"));
        assert!(dir.path().join("sub").is_dir());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    }
}
