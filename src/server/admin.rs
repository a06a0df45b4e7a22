//! The operator's command line, in the same binary as the server:
//! `darkroom [serve]` serves the app; `darkroom admin …` grants credits and
//! looks at accounts and tasks. It reads the same configuration (the
//! environment) and talks to the same database, safely while servers run
//! (SQLite in WAL mode, or PostgreSQL): a grant is one ledger row in one
//! transaction, like every other change of a balance.

use std::fmt::Write as _;

use clap::{Parser, Subcommand};
use sqlx::Row;

use super::auth::Email;
use super::clock::rfc3339;
use super::config::Config;
use super::db::{self, Db};
use super::ids::UserId;
use crate::error::{AppError, ErrorKind, Result};

#[derive(Debug, Parser)]
#[command(name = "darkroom", version, about = "Darkroom: text to image on an asynchronous model provider")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the app (the default); configured by the environment.
    Serve,
    /// Operator commands on the configured database.
    #[command(subcommand)]
    Admin(Admin),
}

#[derive(Debug, Subcommand)]
pub enum Admin {
    /// Grant credits to an account (a ledger row carrying the reason, the
    /// note and who ran the command).
    Grant {
        /// The account's email.
        email: String,
        /// How many credits: a positive whole number.
        #[arg(value_parser = parse_credits, allow_negative_numbers = true)]
        credits: i64,
        /// Why, for the operators (shown by `admin user`, never to the person).
        #[arg(long)]
        reason: String,
        /// A note for the person (their account page shows "Granted: <note>";
        /// without one, "Granted").
        #[arg(long)]
        note: Option<String>,
    },
    /// An account: balance, tasks by status, the latest tasks.
    User {
        /// The account's email.
        email: String,
    },
    /// Marks an account's email verified (an operator's fix for a lost
    /// link), granting the sign-up credits as the link would.
    Verify {
        /// The account's email.
        email: String,
    },
    /// Purchases of credits and their state, newest first.
    Purchases {
        /// Only this account's purchases.
        email: Option<String>,
        /// How many (1–1000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
    },
    /// The latest tasks, newest first.
    Tasks {
        /// Only tasks in this status: queued, submitting, processing, completed, failed or canceled.
        #[arg(long, value_parser = ["queued", "submitting", "processing", "completed", "failed", "canceled"])]
        status: Option<String>,
        /// Only this account's tasks.
        #[arg(long)]
        email: Option<String>,
        /// How many (1–1000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
    },
}

/// Most credits one grant may add.
pub const MAX_GRANT: i64 = 1_000_000_000;
/// Longest reason, in characters.
const MAX_REASON_CHARS: usize = 200;

fn parse_credits(raw: &str) -> std::result::Result<i64, String> {
    match raw.trim().parse::<i64>() {
        Ok(n) if (1..=MAX_GRANT).contains(&n) => Ok(n),
        _ => Err(format!("credits must be a positive whole number, at most {MAX_GRANT}")),
    }
}

/// Parses the command line; a mistake is one line on stderr and exit code
/// 2 (`--help` and `--version` print as usual).
pub fn parse() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("{}", one_line(&e.render().to_string()));
            std::process::exit(2);
        }
    }
}

/// clap's error without its usage and help hints, on one line.
fn one_line(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs an admin command; what it prints goes to stdout.
pub async fn run(command: Admin) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    // An operator pointing at the wrong place must hear so, not get a new
    // empty database.
    if let Some(file) = db::sqlite_file(&config.database_url)
        && !file.exists()
    {
        anyhow::bail!(
            "no database at {} (set DARKROOM_DATA_DIR or DATABASE_URL as the server has them)",
            file.display()
        );
    }
    let db = db::connect(&config.database_url).await?;
    let out = match command {
        Admin::Grant { email, credits, reason, note } => {
            grant(&db, &email, credits, &reason, note.as_deref(), &operator()).await?
        }
        Admin::User { email } => user(&db, &email).await?,
        Admin::Verify { email } => verify(&db, &email, config.signup_credits).await?,
        Admin::Tasks { status, email, limit } => tasks(&db, status.as_deref(), email.as_deref(), limit).await?,
        Admin::Purchases { email, limit } => purchases(&db, email.as_deref(), limit).await?,
    };
    print!("{out}");
    Ok(())
}

/// The account with `email`, or a clear error.
async fn account(db: &Db, email: &str) -> Result<(UserId, String)> {
    let email = Email::parse(email)?;
    let row =
        sqlx::query("SELECT id, email FROM users WHERE email = $1").bind(email.as_str()).fetch_optional(db).await?;
    match row {
        Some(r) => Ok((UserId::from_db(r.try_get("id")?), r.try_get("email")?)),
        None => Err(AppError::new(ErrorKind::NotFound, format!("no account with email {}", email.as_str()))),
    }
}

/// Who runs this command: `user@host`, recorded with a grant.
fn operator() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{host}").chars().take(MAX_REASON_CHARS).collect()
}

/// One line of at most [`MAX_REASON_CHARS`], named `flag` in the error.
fn one_line_text<'a>(flag: &str, raw: &'a str) -> Result<&'a str> {
    let text = raw.trim();
    if text.chars().count() > MAX_REASON_CHARS || text.chars().any(char::is_control) {
        return Err(AppError::invalid(format!("{flag} must be one line of at most {MAX_REASON_CHARS} characters")));
    }
    Ok(text)
}

/// Adds `credits` to the account: a ledger row carrying `reason` (for the
/// operators), `note` (for the person) and `operator` (who ran it).
pub async fn grant(
    db: &Db,
    email: &str,
    credits: i64,
    reason: &str,
    note: Option<&str>,
    operator: &str,
) -> Result<String> {
    let reason = one_line_text("--reason", reason)?;
    if reason.is_empty() {
        return Err(AppError::invalid("--reason must say why the credits are granted"));
    }
    let note = note.map(|n| one_line_text("--note", n)).transpose()?.filter(|n| !n.is_empty());
    parse_credits(&credits.to_string()).map_err(AppError::invalid)?;
    let (user, email) = account(db, email).await?;
    let mut tx = db.begin().await?;
    let grant = super::credits::OperatorGrant { amount: credits, reason, note, operator };
    super::credits::grant_by_operator(&mut tx, &user, grant).await?;
    tx.commit().await?;
    let balance = super::credits::balance(db, user.as_str()).await?;
    Ok(format!("granted {credits} credits to {email} ({reason}); balance {balance} credits\n"))
}

/// Marks `email`'s account verified, granting `credits` sign-up credits
/// once per mailbox.
pub async fn verify(db: &Db, email: &str, credits: i64) -> Result<String> {
    let email = Email::parse(email)?;
    let now = super::clock::Clock::system().now_ms();
    let granted = super::verification::verify_by_operator(db, &email, credits, now).await?;
    Ok(format!("{} is verified; granted {granted} sign-up credits\n", email.as_str()))
}

/// An account's balance, its tasks by status and the latest ones.
pub async fn user(db: &Db, email: &str) -> Result<String> {
    let (user, email) = account(db, email).await?;
    let row = sqlx::query("SELECT balance - debt AS credits, created_at, email_verified_at FROM users WHERE id = $1")
        .bind(user.as_str())
        .fetch_one(db)
        .await?;
    let balance: i64 = row.try_get("credits")?;
    let created: i64 = row.try_get("created_at")?;
    let verified: Option<i64> = row.try_get("email_verified_at")?;
    let counts = super::engine::queries::status_counts(db, &user).await?;
    let mut out = String::new();
    let _ = writeln!(out, "email:    {email}");
    let _ = writeln!(out, "id:       {user}");
    let _ = writeln!(out, "since:    {}", rfc3339(created));
    let _ =
        writeln!(out, "verified: {}", verified.map_or_else(|| "no".to_owned(), |at| format!("yes, {}", rfc3339(at))));
    let _ = writeln!(out, "balance:  {balance} credits");
    let by_status: Vec<String> = counts.iter().map(|(status, n)| format!("{status} {n}")).collect();
    let _ = writeln!(out, "tasks:    {}", if by_status.is_empty() { "none".to_owned() } else { by_status.join(", ") });
    let grants = sqlx::query(
        "SELECT amount, created_at, reason, note, operator FROM credit_ledger \
         WHERE user_id = $1 AND kind = 'grant' AND entry_key LIKE 'grant:%' ORDER BY id DESC LIMIT 10",
    )
    .bind(user.as_str())
    .fetch_all(db)
    .await?;
    if !grants.is_empty() {
        let _ = writeln!(out, "grants:");
        for g in &grants {
            let note: Option<String> = g.try_get("note")?;
            let _ = writeln!(
                out,
                "  {}  +{}  {}  by {}{}",
                rfc3339(g.try_get("created_at")?),
                g.try_get::<i64, _>("amount")?,
                g.try_get::<Option<String>, _>("reason")?.unwrap_or_default(),
                g.try_get::<Option<String>, _>("operator")?.unwrap_or_else(|| "unknown".into()),
                note.map(|n| format!("  (note: {n})")).unwrap_or_default(),
            );
        }
    }
    let latest = task_lines(db, None, Some(&user), 10).await?;
    if !latest.is_empty() {
        let _ = writeln!(out, "latest:");
        for line in latest {
            let _ = writeln!(out, "  {line}");
        }
    }
    Ok(out)
}

/// The latest tasks, optionally of one status and one account.
pub async fn tasks(db: &Db, status: Option<&str>, email: Option<&str>, limit: i64) -> Result<String> {
    let user = match email {
        Some(e) => Some(account(db, e).await?.0),
        None => None,
    };
    let lines = task_lines(db, status, user.as_ref(), limit).await?;
    if lines.is_empty() {
        return Ok("no tasks\n".to_owned());
    }
    Ok(lines.into_iter().map(|l| l + "\n").collect())
}

/// The latest purchases (of one account when given), one line each:
/// made, status, id, owner, credits, price, refunded so far, the Checkout
/// Session.
pub async fn purchases(db: &Db, email: Option<&str>, limit: i64) -> Result<String> {
    let user = match email {
        Some(e) => Some(account(db, e).await?.0),
        None => None,
    };
    let rows = sqlx::query(
        "SELECT p.id, p.status, p.credits, p.amount, p.currency, p.amount_refunded, p.checkout_id, p.created_at, \
         u.email FROM purchases p JOIN users u ON u.id = p.user_id WHERE ($1 IS NULL OR p.user_id = $1) \
         ORDER BY p.created_at DESC, p.id LIMIT $2",
    )
    .bind(user.as_ref().map(UserId::as_str))
    .bind(limit)
    .fetch_all(db)
    .await?;
    if rows.is_empty() {
        return Ok("no purchases\n".to_owned());
    }
    let mut out = String::new();
    for r in rows {
        let (amount, currency): (i64, String) = (r.try_get("amount")?, r.try_get("currency")?);
        let refunded: i64 = r.try_get("amount_refunded")?;
        let checkout: Option<String> = r.try_get("checkout_id")?;
        let _ = writeln!(
            out,
            "{}  {:<8}  {}  {}  {} credits  {}  refunded {}  {}",
            rfc3339(r.try_get("created_at")?),
            r.try_get::<String, _>("status")?,
            r.try_get::<String, _>("id")?,
            r.try_get::<String, _>("email")?,
            r.try_get::<i64, _>("credits")?,
            super::config::price_text(amount, &currency),
            super::config::price_text(refunded, &currency),
            checkout.as_deref().unwrap_or("-"),
        );
    }
    Ok(out)
}

/// One line per task: created, status, id, owner, cost, prompt.
async fn task_lines(db: &Db, status: Option<&str>, user: Option<&UserId>, limit: i64) -> Result<Vec<String>> {
    let tasks = super::engine::queries::latest(db, status, user, limit).await?;
    Ok(tasks
        .into_iter()
        .map(|t| {
            format!(
                "{}  {:<10}  {}  {}  {} credits  {}",
                rfc3339(t.created_at),
                t.status,
                t.id,
                t.email,
                t.cost,
                crate::text::clip(&t.prompt, 60)
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_must_be_a_positive_whole_number() {
        assert_eq!(parse_credits("50"), Ok(50));
        for bad in ["0", "-5", "1.5", "ten", "", "1000000001", "99999999999999999999"] {
            assert!(parse_credits(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_command_line_parses() {
        let cli = Cli::try_parse_from(["darkroom", "admin", "grant", "a@b.co", "50", "--reason", "beta"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Admin(Admin::Grant { credits: 50, .. }))));
        assert!(Cli::try_parse_from(["darkroom"]).unwrap().command.is_none());
        assert!(matches!(Cli::try_parse_from(["darkroom", "serve"]).unwrap().command, Some(Command::Serve)));
        let e = Cli::try_parse_from(["darkroom", "admin", "grant", "a@b.co", "50"]).unwrap_err();
        let line = one_line(&e.render().to_string());
        assert!(line.contains("--reason"), "{line}");
        assert!(!line.contains('\n'));
        let e = Cli::try_parse_from(["darkroom", "admin", "tasks", "--status", "done"]).unwrap_err();
        assert!(one_line(&e.render().to_string()).contains("done"));
    }
}
