//! Point reads on SQLite: read-only connections used in the calling
//! thread, kept in a small free list.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::{Arg, ReadRow};
use crate::error::{AppError, Result};

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
    /// Reads of the database file at `path`; fails at once (at start-up,
    /// not on the first request) when it cannot be opened.
    pub(super) fn open(path: &Path) -> anyhow::Result<Self> {
        let reads = Self { path: path.to_path_buf(), idle: Mutex::new(Vec::new()) };
        reads.put(reads.connect()?);
        Ok(reads)
    }

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

    pub(super) fn optional<T: ReadRow>(&self, sql: &str, args: &[Arg<'_>]) -> Result<Option<T>> {
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
    use crate::server::reads::Columns;

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
