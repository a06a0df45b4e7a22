//! Point reads on the request path: the session, its account, a task.
//!
//! Every poll makes these reads, so they decide what a poll costs. On
//! PostgreSQL they go through connections of their own ([`PgReads`]):
//! native (no `Any` row conversion) and not pinged before and after each
//! statement, as a sqlx pool does, which triples the round trips of a poll.
//! The few writes a poll makes that may safely run twice (the check's
//! claim, its progress) take the same path ([`Reads::repeatable`]). On
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
//! implement.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Postgres;
use sqlx::any::AnyRow;
use sqlx::postgres::{PgConnection, PgRow};

use super::clock::Clock;
use super::db::{self, Db};
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

/// Where point reads go.
#[derive(Clone)]
pub enum Reads {
    /// In-process SQLite, read in the calling thread.
    Sqlite(Arc<SqliteReads>),
    /// PostgreSQL: connections of their own, without sqlx's pings.
    Postgres(Arc<PgReads>),
    /// An in-memory SQLite database, which another connection could not
    /// see: the app's pool.
    Pool(Db),
}

impl Reads {
    /// Reads for the database at `url`, whose pool is `db`.
    pub fn open(url: &str, db: &Db) -> anyhow::Result<Self> {
        if db::Backend::of(url) == db::Backend::Postgres {
            return PgReads::open(url).map(|reads| Self::Postgres(Arc::new(reads)));
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
            Self::Postgres(reads) => reads.optional(sql, args).await,
            Self::Pool(db) => {
                let row = bind(sqlx::query(sql), args).fetch_optional(db).await?;
                row.as_ref().map(T::read).transpose()
            }
        }
    }

    /// Runs one write that may safely run twice and may be lost (a claim,
    /// which is a compare-and-set; recorded progress; a postponed check),
    /// and returns the rows it changed. On PostgreSQL it takes the
    /// connections of the point reads, and is tried again when its
    /// connection turns out to be dead, which is why it must be repeatable.
    /// On SQLite, writes go through the pool (`db`): the read connections
    /// are read-only.
    pub async fn repeatable(&self, db: &Db, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        match self {
            Self::Postgres(reads) => reads.repeatable(sql, args).await,
            Self::Sqlite(_) | Self::Pool(_) => Ok(bind(sqlx::query(sql), args).execute(db).await?.rows_affected()),
        }
    }
}

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

/// Runs `$statement` (a closure over `&mut PgConnection`) on one of
/// `$reads`' connections, once more on a new connection when the idle one
/// it took had died; the connection goes back only after a success.
macro_rules! on_a_connection {
    ($reads:expr, |$conn:ident| $statement:expr) => {{
        let reads: &PgReads = $reads;
        let (slot, mut connection, reused) = reads.take().await?;
        let mut result = {
            let $conn = &mut connection;
            within_timeout($statement).await
        };
        if let Err(e) = &result
            && reused
            && connection_lost(e)
        {
            tracing::info!("a PostgreSQL connection had closed while idle ({e}); trying again on a new one");
            connection = reads.connect().await?;
            let $conn = &mut connection;
            result = within_timeout($statement).await;
        }
        if result.is_ok() {
            reads.put(connection);
        }
        drop(slot);
        result
    }};
}

/// Point statements on PostgreSQL, on connections of their own.
///
/// Not through a sqlx `Pool`: it pings a connection when it hands it out
/// (`test_before_acquire`) and again when it takes it back, in a task of
/// its own; three round trips and three backend wake-ups for every
/// statement, where one does. Here a connection is taken from a free list,
/// used for one statement, and put back only if the statement finished:
/// one that failed, or whose caller went away mid-statement, is closed, so
/// a connection is never reused in a state nobody knows. A connection that
/// died while idle (PostgreSQL restarted, a proxy dropped it) fails its
/// next statement before the server ran it; such a statement is tried once
/// more on a new connection.
pub struct PgReads {
    options: sqlx::postgres::PgConnectOptions,
    /// Connections not in use.
    idle: Mutex<Vec<PgConnection>>,
    /// One permit per connection that may exist: in use or idle.
    slots: tokio::sync::Semaphore,
}

/// Connections for point statements (each is a PostgreSQL backend).
const PG_CONNECTIONS: usize = 8;
/// Longest a point statement may run: every request with a cookie waits
/// for one (its session), so a stalled one must fail, not hold a batch
/// slot and everything queued behind it. PostgreSQL enforces it too
/// (`statement_timeout`), which also covers a statement whose answer the
/// network loses.
const PG_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// `statement`, or an error once [`PG_STATEMENT_TIMEOUT`] has passed (the
/// connection is then dropped mid-statement, so never reused).
async fn within_timeout<T>(statement: impl std::future::Future<Output = sqlx::Result<T>>) -> sqlx::Result<T> {
    match tokio::time::timeout(PG_STATEMENT_TIMEOUT, statement).await {
        Ok(result) => result,
        Err(_) => {
            tracing::error!(
                "a PostgreSQL statement did not finish within {} s: the database is stalled or unreachable",
                PG_STATEMENT_TIMEOUT.as_secs()
            );
            Err(sqlx::Error::Protocol(format!("statement timed out after {} s", PG_STATEMENT_TIMEOUT.as_secs())))
        }
    }
}
/// How long a statement waits for a free connection before it fails.
const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

impl PgReads {
    fn open(url: &str) -> anyhow::Result<Self> {
        let options = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a PostgreSQL URL: {e}"))?
            .options([("statement_timeout", format!("{}ms", PG_STATEMENT_TIMEOUT.as_millis()))]);
        Ok(Self { options, idle: Mutex::new(Vec::new()), slots: tokio::sync::Semaphore::new(PG_CONNECTIONS) })
    }

    async fn optional<T: ReadRow>(&self, sql: &str, args: &[Arg<'_>]) -> Result<Option<T>> {
        let row = on_a_connection!(self, |conn| bind(sqlx::query(sql), args).fetch_optional(conn))?;
        row.as_ref().map(T::read).transpose()
    }

    /// Runs one statement that may safely run twice (see [`Reads::repeatable`]).
    async fn repeatable(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        let done = on_a_connection!(self, |conn| bind(sqlx::query(sql), args).execute(conn))?;
        Ok(done.rows_affected())
    }

    /// A connection for one statement: an idle one (true), else a new one.
    async fn take(&self) -> sqlx::Result<(tokio::sync::SemaphorePermit<'_>, PgConnection, bool)> {
        let slot = tokio::time::timeout(PG_ACQUIRE_TIMEOUT, self.slots.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(conn) => Ok((slot, conn, true)),
            None => Ok((slot, self.connect().await?, false)),
        }
    }

    /// Puts a connection back after a statement that finished.
    fn put(&self, conn: PgConnection) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
    }

    async fn connect(&self) -> sqlx::Result<PgConnection> {
        use sqlx::ConnectOptions;
        self.options.connect().await
    }
}

/// One kind of point read by key, batched on PostgreSQL.
///
/// The read every request makes (its session) would otherwise be one
/// statement per request: under load, PostgreSQL spends its time waking
/// for, planning and answering thousands of one-row statements. Here the
/// reads that arrive while earlier ones are running are gathered and made
/// as one statement (`WHERE key = ANY($1)`), so the busier it is, the fewer
/// statements per read; an idle server runs each read at once, alone. Each
/// read still sees every commit made before it was asked for, as a read of
/// its own would: a batch starts after every read in it was asked for.
pub struct PgBatch<T> {
    asks: tokio::sync::mpsc::Sender<Ask<T>>,
}

struct Ask<T> {
    key: String,
    reply: tokio::sync::oneshot::Sender<Result<Option<T>>>,
}

/// At most this many keys per statement.
const MAX_BATCH: usize = 128;
/// Batches running at once (each on one of the point-read connections).
const BATCHES_AT_ONCE: usize = 4;

impl<T: ReadRow + Clone + Send + 'static> PgBatch<T> {
    /// Batches `sql` on `reads`: `sql` selects the rows whose `key` column
    /// is in `$1` (a text array), with `$2` the time of the batch in epoch
    /// ms; each row carries its key as `key`.
    pub fn new(reads: Arc<PgReads>, sql: &'static str) -> Self {
        let (asks, mut incoming) = tokio::sync::mpsc::channel::<Ask<T>>(1024);
        tokio::spawn(async move {
            let running = Arc::new(tokio::sync::Semaphore::new(BATCHES_AT_ONCE));
            while let Some(first) = incoming.recv().await {
                // While every batch slot is busy, asks gather in the queue.
                let Ok(slot) = running.clone().acquire_owned().await else { return };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match incoming.try_recv() {
                        Ok(ask) => batch.push(ask),
                        Err(_) => break,
                    }
                }
                let reads = reads.clone();
                tokio::spawn(async move {
                    let keys: Vec<String> = batch.iter().map(|a| a.key.clone()).collect();
                    let answer = reads.by_keys::<T>(sql, &keys, Clock::system().now_ms()).await;
                    drop(slot);
                    for ask in batch {
                        let _ = ask.reply.send(match &answer {
                            Ok(rows) => Ok(rows.iter().find(|(key, _)| *key == ask.key).map(|(_, row)| row.clone())),
                            Err(e) => Err(e.clone()),
                        });
                    }
                });
            }
        });
        Self { asks }
    }

    /// The row for `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<T>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.asks
            .send(Ask { key: key.to_owned(), reply })
            .await
            .map_err(|_| AppError::internal("the batched reads stopped"))?;
        answer.await.map_err(|_| AppError::internal("a batched read was dropped"))?
    }
}

impl PgReads {
    /// The rows `sql` selects for `keys` (`$1`, a text array) at `now`
    /// (`$2`), each with its `key`.
    async fn by_keys<T: ReadRow>(&self, sql: &str, keys: &[String], now: i64) -> Result<Vec<(String, T)>> {
        let rows = on_a_connection!(self, |conn| sqlx::query(sql).bind(keys).bind(now).fetch_all(conn))?;
        rows.iter().map(|row| Ok((row.get::<String>("key")?, T::read(row)?))).collect()
    }
}

/// Whether a failed statement never reached a live server: the connection
/// was closed or broken (PostgreSQL restarted, a proxy dropped it).
fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        // 57P01 admin_shutdown (the backend was terminated), 57P02/57P03:
        // crash / cannot connect now, 08xxx: connection exceptions.
        sqlx::Error::Database(d) => d.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P0")),
        _ => false,
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
