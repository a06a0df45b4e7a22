//! Point reads on PostgreSQL: connections of their own, and reads that
//! arrive together made as one statement.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgConnection;

use super::{Arg, Columns, ReadRow, bind};
use crate::error::{AppError, Result};
use crate::server::clock::Clock;

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
    pub(super) fn open(url: &str) -> anyhow::Result<Self> {
        let options = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a PostgreSQL URL: {e}"))?
            .options([("statement_timeout", format!("{}ms", PG_STATEMENT_TIMEOUT.as_millis()))]);
        Ok(Self { options, idle: Mutex::new(Vec::new()), slots: tokio::sync::Semaphore::new(PG_CONNECTIONS) })
    }

    pub(super) async fn optional<T: ReadRow>(&self, sql: &str, args: &[Arg<'_>]) -> Result<Option<T>> {
        let row = on_a_connection!(self, |conn| bind(sqlx::query(sql), args).fetch_optional(conn))?;
        row.as_ref().map(T::read).transpose()
    }

    /// Runs one statement that may safely run twice (see [`super::Reads::repeatable`]).
    pub(super) async fn repeatable(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
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
