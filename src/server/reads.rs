//! Point reads on the request path: the session, its account, a task.
//!
//! Every poll makes these reads, so they decide what a poll costs. On
//! PostgreSQL they go through connections of their own ([`PgReads`]):
//! native (no `Any` row conversion) and not pinged before and after each
//! statement, as a sqlx pool does, which triples the round trips of a poll.
//! The few writes a poll makes that may safely run twice (the check's
//! claim, its progress) take the same path ([`super::db::Db::repeatable`]). On
//! SQLite the reads do not go through a pool at all: sqlx runs each SQLite connection on a thread of its
//! own and hands it every statement over a channel (two thread wake-ups per
//! statement, plus a ping when the connection goes back to the pool), which
//! costs far more than the lookup itself. Here they run in the calling thread
//! on read-only connections kept in a small free list, the way SQLite is
//! meant to be used: a point lookup by primary key takes microseconds. In WAL
//! mode a reader never waits for the writer, and every read is its own
//! transaction, so it sees each commit made before it, from any connection
//! or instance. Writes stay on the sqlx pool.
//!
//! The reads that take this path are the ones every request or poll makes:
//! the session (`sessions::Sessions::load`), its account
//! (`auth::Accounts::get_user`) and one task (`engine::queries::load`,
//! `load_owned`). Everything else (lists, batches, the reconciler's scan,
//! every read inside a transaction) goes through the pool.
//!
//! A row type is mapped once, from [`Columns`], which both drivers' rows
//! implement. Each strategy is a module of its own: [`sqlite`] (in the
//! calling thread) and [`postgres`] (own connections, batched reads).

mod postgres;
mod sqlite;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use sqlx::any::AnyRow;
use sqlx::postgres::PgRow;
use sqlx::{AnyPool, Postgres};

pub use self::postgres::{PgBatch, PgReads};
pub use self::sqlite::SqliteReads;
use super::db;
use crate::error::{AppError, Result};

/// A value bound to a `$N` placeholder.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Text(&'a str),
    Int(i64),
}

/// A column type every driver can decode.
pub trait Column:
    rusqlite::types::FromSql
    + for<'r> sqlx::Decode<'r, sqlx::Any>
    + sqlx::Type<sqlx::Any>
    + for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Postgres>
{
}

impl<T> Column for T where
    T: rusqlite::types::FromSql
        + for<'r> sqlx::Decode<'r, sqlx::Any>
        + sqlx::Type<sqlx::Any>
        + for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>
{
}

/// A row of either driver, read column by column.
pub trait Columns {
    fn get<T: Column>(&self, name: &str) -> Result<T>;
}

impl Columns for AnyRow {
    #[track_caller]
    fn get<T: Column>(&self, name: &str) -> Result<T> {
        Ok(sqlx::Row::try_get(self, name)?)
    }
}

impl Columns for PgRow {
    #[track_caller]
    fn get<T: Column>(&self, name: &str) -> Result<T> {
        Ok(sqlx::Row::try_get(self, name)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    #[track_caller]
    fn get<T: Column>(&self, name: &str) -> Result<T> {
        rusqlite::Row::get(self, name).map_err(AppError::internal)
    }
}

/// A row type, mapped once from either driver's row.
pub trait ReadRow: Sized {
    fn read(row: &impl Columns) -> Result<Self>;
}

/// Where point reads go (the pool is the [`Db`](super::db::Db)'s).
#[derive(Clone)]
pub enum Reads {
    /// In-process SQLite, read in the calling thread.
    Sqlite(Arc<SqliteReads>),
    /// PostgreSQL: connections of their own, without sqlx's pings.
    Postgres(Arc<PgReads>),
    /// An in-memory SQLite database, which another connection could not
    /// see: the pool.
    Pool,
}

impl Reads {
    /// Reads for the database at `url`.
    pub(super) fn open(url: &str) -> anyhow::Result<Self> {
        if db::Backend::of(url) == db::Backend::Postgres {
            return PgReads::open(url).map(|reads| Self::Postgres(Arc::new(reads)));
        }
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a SQLite URL: {e}"))?;
        let path = opts.get_filename();
        if path.as_os_str().is_empty() || path == Path::new(":memory:") || url.contains("mode=memory") {
            return Ok(Self::Pool);
        }
        Ok(Self::Sqlite(Arc::new(SqliteReads::open(path)?)))
    }

    /// The row `sql` selects with `args`, if any. `sql` uses `$1`, `$2`, …
    /// placeholders, like every query of the app.
    pub(super) async fn optional<T: ReadRow>(&self, pool: &AnyPool, sql: &str, args: &[Arg<'_>]) -> Result<Option<T>> {
        match self {
            Self::Sqlite(reads) => reads.optional(sql, args),
            Self::Postgres(reads) => reads.optional(sql, args).await,
            Self::Pool => {
                let row = bind(sqlx::query(sql), args).fetch_optional(pool).await?;
                row.as_ref().map(T::read).transpose()
            }
        }
    }

    /// Runs one write that may safely run twice and may be lost, and
    /// returns the rows it changed. On PostgreSQL it takes the connections
    /// of the point reads, and is tried again when its connection turns out
    /// to be dead, which is why it must be repeatable. On SQLite, writes go
    /// through the pool: the read connections are read-only.
    pub(super) async fn repeatable(&self, pool: &AnyPool, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        match self {
            Self::Postgres(reads) => reads.repeatable(sql, args).await,
            Self::Sqlite(_) | Self::Pool => Ok(bind(sqlx::query(sql), args).execute(pool).await?.rows_affected()),
        }
    }
}

/// Binds `args` to `query` in order.
fn bind<'q, DB>(
    mut query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    args: &[Arg<'q>],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for arg in args {
        query = match *arg {
            Arg::Text(s) => query.bind(s),
            Arg::Int(i) => query.bind(i),
        };
    }
    query
}
