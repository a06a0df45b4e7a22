//! The database: one `sqlx::AnyPool` over SQLite (default) or PostgreSQL,
//! migrated at start-up. Queries are written once, in the SQL both accept
//! (`$1` placeholders, `RETURNING`, integers for times and flags).

use std::str::FromStr;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::error::ErrorKind as DbErrorKind;

/// The pool every query goes through.
pub type Db = AnyPool;

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

/// Opens the pool (creating a SQLite file and its folder if needed) and
/// applies the migrations; any failure stops start-up.
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
    Ok(pool)
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

async fn migrate(pool: &Db, backend: Backend) -> anyhow::Result<()> {
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
