//! Point reads on the request path: the session, its account, a task.
//!
//! Every poll makes these reads, so they decide what a poll costs. On
//! PostgreSQL they go through the sqlx pool like every other query. On
//! SQLite they do not: sqlx runs each SQLite connection on a thread of its
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
//! (`auth::Accounts::get_user`) and one task (`tasks::row::load`,
//! `load_owned`). Everything else (lists, batches, the reconciler's scan,
//! every read inside a transaction) goes through the pool.
//!
//! A row type is mapped once, from [`Columns`], which both drivers' rows
//! implement.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::any::AnyRow;

use super::db::{self, Db};
use crate::error::{AppError, Result};

/// A value bound to a `$N` placeholder.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Text(&'a str),
    Int(i64),
}

/// A column type both drivers can decode.
pub trait Column: rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any> {}

impl<T> Column for T where T: rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any> {}

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

/// Where point reads go.
#[derive(Clone)]
pub enum Reads {
    /// In-process SQLite, read in the calling thread.
    Sqlite(Arc<SqliteReads>),
    /// Anything else (PostgreSQL, or an in-memory SQLite database that
    /// another connection could not see): the pool.
    Pool(Db),
}

impl Reads {
    /// Reads for the database at `url`, whose pool is `db`.
    pub fn open(url: &str, db: &Db) -> anyhow::Result<Self> {
        if db::Backend::of(url) == db::Backend::Postgres {
            return Ok(Self::Pool(db.clone()));
        }
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a SQLite URL: {e}"))?;
        let path = opts.get_filename();
        if path.as_os_str().is_empty() || path == Path::new(":memory:") || url.contains("mode=memory") {
            return Ok(Self::Pool(db.clone()));
        }
        let reads = SqliteReads { path: path.to_path_buf(), idle: Mutex::new(Vec::new()) };
        // Fail at start-up, not on the first request.
        reads.put(reads.connect()?);
        Ok(Self::Sqlite(Arc::new(reads)))
    }

    /// The row `sql` selects with `args`, if any. `sql` uses `$1`, `$2`, …
    /// placeholders, like every query of the app.
    pub async fn optional<T: ReadRow>(&self, sql: &str, args: &[Arg<'_>]) -> Result<Option<T>> {
        match self {
            Self::Sqlite(reads) => reads.optional(sql, args),
            Self::Pool(db) => {
                let mut query = sqlx::query(sql);
                for arg in args {
                    query = match *arg {
                        Arg::Text(s) => query.bind(s),
                        Arg::Int(i) => query.bind(i),
                    };
                }
                let row = query.fetch_optional(db).await?;
                row.as_ref().map(T::read).transpose()
            }
        }
    }
}

/// Read-only SQLite connections on one database file.
pub struct SqliteReads {
    path: PathBuf,
    /// Connections not in use. A read never awaits while it holds one, so
    /// there are at most as many as threads that read at once.
    idle: Mutex<Vec<rusqlite::Connection>>,
}

/// More idle connections than this are closed instead of kept.
const MAX_IDLE: usize = 16;
/// How long a read may wait on a lock. WAL readers take none in normal
/// operation; this only bounds the rare wait (WAL recovery after a crash).
const BUSY_TIMEOUT: Duration = Duration::from_millis(200);
/// Prepared statements kept per connection (the app has a handful of reads).
const STATEMENT_CACHE: usize = 32;

impl SqliteReads {
    fn connect(&self) -> anyhow::Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| anyhow::anyhow!("cannot open {} for reading: {e}", self.path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    fn take(&self) -> Result<rusqlite::Connection> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => self.connect().map_err(AppError::internal),
        }
    }

    fn put(&self, conn: rusqlite::Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    fn optional<T: ReadRow>(&self, sql: &str, args: &[Arg<'_>]) -> Result<Option<T>> {
        let conn = self.take()?;
        let result = query_row(&conn, sql, args);
        // A connection that failed is not reused: whatever went wrong stays
        // with it.
        if result.is_ok() {
            self.put(conn);
        }
        result
    }
}

fn query_row<T: ReadRow>(conn: &rusqlite::Connection, sql: &str, args: &[Arg<'_>]) -> Result<Option<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(AppError::internal)?;
    // SQLite numbers `$N` parameters in order of first appearance; bind by
    // name so `$2` always gets the second argument.
    for i in 1..=stmt.parameter_count() {
        let n = stmt
            .parameter_name(i)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| AppError::internal(format!("parameter {i} of {sql} is not $N")))?;
        match args.get(n - 1) {
            Some(Arg::Text(s)) => stmt.raw_bind_parameter(i, s).map_err(AppError::internal)?,
            Some(Arg::Int(v)) => stmt.raw_bind_parameter(i, v).map_err(AppError::internal)?,
            None => return Err(AppError::internal(format!("{sql} needs ${n}, given {} arguments", args.len()))),
        }
    }
    let mut rows = stmt.raw_query();
    match rows.next().map_err(AppError::internal)? {
        Some(row) => T::read(row).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair(String, i64);

    impl ReadRow for Pair {
        fn read(row: &impl Columns) -> Result<Self> {
            Ok(Self(row.get("a")?, row.get("b")?))
        }
    }

    fn reads_on(dir: &Path) -> SqliteReads {
        let path = dir.join("r.db");
        let w = rusqlite::Connection::open(&path).unwrap();
        w.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (a TEXT, b INTEGER); INSERT INTO t VALUES ('x', 1), ('y', 2);",
        )
        .unwrap();
        SqliteReads { path, idle: Mutex::new(Vec::new()) }
    }

    #[test]
    fn placeholders_bind_by_number_not_by_position() {
        let dir = tempfile::tempdir().unwrap();
        let reads = reads_on(dir.path());
        // `$2` appears first in the text: it must still get the second argument.
        let row: Option<Pair> =
            reads.optional("SELECT a, b FROM t WHERE b = $2 AND a = $1", &[Arg::Text("y"), Arg::Int(2)]).unwrap();
        let Pair(a, b) = row.unwrap();
        assert_eq!((a.as_str(), b), ("y", 2));
        let none: Option<Pair> =
            reads.optional("SELECT a, b FROM t WHERE b = $2 AND a = $1", &[Arg::Text("x"), Arg::Int(2)]).unwrap();
        assert!(none.is_none());
    }

    #[test]
    fn a_read_sees_what_another_connection_committed() {
        let dir = tempfile::tempdir().unwrap();
        let reads = reads_on(dir.path());
        let sql = "SELECT a, b FROM t WHERE a = $1";
        assert!(reads.optional::<Pair>(sql, &[Arg::Text("z")]).unwrap().is_none());
        let w = rusqlite::Connection::open(dir.path().join("r.db")).unwrap();
        w.execute("INSERT INTO t VALUES ('z', 3)", []).unwrap();
        // The same (idle, reused) connection sees the commit.
        assert_eq!(reads.idle.lock().unwrap().len(), 1);
        assert_eq!(reads.optional::<Pair>(sql, &[Arg::Text("z")]).unwrap().unwrap().1, 3);
    }

    #[test]
    fn too_few_arguments_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let reads = reads_on(dir.path());
        assert!(reads.optional::<Pair>("SELECT a, b FROM t WHERE a = $1 AND b = $2", &[Arg::Text("x")]).is_err());
    }

    #[test]
    fn reads_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let reads = reads_on(dir.path());
        let conn = reads.take().unwrap();
        assert!(conn.execute("INSERT INTO t VALUES ('w', 9)", []).is_err());
    }
}
