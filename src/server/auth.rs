//! Accounts: sign-up with a credit grant, sign-in, and the axum-login
//! backend (which loads the signed-in account on every request).

use std::net::IpAddr;
use std::num::NonZeroU32;

use super::credits;
use super::db::{self, Db};
use super::ids::UserId;
use super::reads::{Arg, Columns, ReadRow};
use crate::error::{AppError, ErrorKind, Result};
use axum_login::{AuthUser, AuthnBackend};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// A signed-in account as the session layer knows it: its id, which never
/// changes (so each instance may remember the account), and its email as
/// it was when this instance loaded it (what is shown reads it fresh:
/// [`standing`]; an email change is rare and verified).
#[derive(Clone)]
pub struct Account {
    pub id: String,
    pub email: String,
    /// What the session keeps to check it belongs to this account (see
    /// `session_auth_hash`).
    session_hash: [u8; 16],
}

impl Account {
    pub(crate) fn new(id: String, email: String) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("darkroom-session:{id}").as_bytes());
        let mut session_hash = [0; 16];
        session_hash.copy_from_slice(&digest[..16]);
        Self { id, email, session_hash }
    }
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

    /// Fixed per account: a password change ends the other sessions by
    /// deleting them (`change_password`), which every instance sees at
    /// once, rather than by changing this value, which an instance that
    /// remembers the account would not see.
    fn session_auth_hash(&self) -> &[u8] {
        &self.session_hash
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

    /// The mailbox the address delivers to, as far as free credits go:
    /// without a `+tag`, and for Gmail without dots (Gmail ignores both),
    /// so `ada+1@example.com` and `ada+2@example.com` are one mailbox.
    pub fn mailbox(&self) -> String {
        let (local, domain) = self.0.split_once('@').unwrap_or((&self.0, ""));
        let local = local.split_once('+').map_or(local, |(base, _)| base);
        match domain {
            "gmail.com" | "googlemail.com" => format!("{}@gmail.com", local.replace('.', "")),
            _ => format!("{local}@{domain}"),
        }
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

impl ReadRow for Account {
    fn read(r: &impl Columns) -> Result<Self> {
        Ok(Account::new(r.get("id")?, r.get("email")?))
    }
}

/// An account with its password hash and session epoch, read fresh (in one
/// read) for every password check.
struct Login {
    account: Account,
    password_hash: String,
    epoch: i64,
}

impl ReadRow for Login {
    fn read(r: &impl Columns) -> Result<Self> {
        Ok(Login { account: Account::read(r)?, password_hash: r.get("password_hash")?, epoch: r.get("session_epoch")? })
    }
}

impl Account {
    /// The account's id, typed for the money path.
    pub fn user_id(&self) -> UserId {
        UserId::from_db(self.id.clone())
    }
}

/// The axum-login backend: accounts in the `users` table.
///
/// Every request loads the signed-in account. What it loads (id, email)
/// never changes once the account exists, so each instance remembers the
/// accounts it has loaded; the password hash is not part of it (every
/// password check reads it fresh), and the session itself is read from the
/// database on every request, so a password change, which deletes the
/// other sessions, ends them on every instance at once.
#[derive(Clone)]
pub struct Accounts {
    db: Db,
    known: std::sync::Arc<quick_cache::sync::Cache<String, Account>>,
}

/// Accounts each instance remembers.
const KNOWN_ACCOUNTS: usize = 4096;

/// What can fail while looking accounts up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{}", .0.message)]
    Db(#[from] AppError),
    #[error("password check failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub type AuthSession = axum_login::AuthSession<Accounts>;

impl Accounts {
    pub fn new(db: Db) -> Self {
        Self { db, known: std::sync::Arc::new(quick_cache::sync::Cache::new(KNOWN_ACCOUNTS)) }
    }
}

impl Accounts {
    /// The account `creds` name, if the password matches, with the
    /// account's session epoch as read with the password hash (a sign-in
    /// records it in the session; see `sessions::LOAD`).
    pub async fn verify(&self, creds: Credentials) -> Result<Option<(Account, i64)>, AuthError> {
        let Ok(email) = Email::parse(&creds.email) else { return Ok(None) };
        let login: Option<Login> = self
            .db
            .optional(
                "SELECT id, email, password_hash, session_epoch FROM users WHERE email = $1",
                &[Arg::Text(email.as_str())],
            )
            .await?;
        // Verify against a dummy hash when the email is unknown, so both
        // answers take the same time.
        let hash = login.as_ref().map(|l| l.password_hash.clone()).unwrap_or_else(|| DUMMY_HASH.clone());
        let ok = verify(creds.password, hash).await?;
        Ok(login.filter(|_| ok).map(|l| (l.account, l.epoch)))
    }
}

impl AuthnBackend for Accounts {
    type User = Account;
    type Credentials = Credentials;
    type Error = AuthError;

    async fn authenticate(&self, creds: Credentials) -> Result<Option<Account>, AuthError> {
        Ok(self.verify(creds).await?.map(|(account, _)| account))
    }

    async fn get_user(&self, id: &String) -> Result<Option<Account>, AuthError> {
        if let Some(account) = self.known.get(id) {
            return Ok(Some(account));
        }
        let account: Option<Account> =
            self.db.optional("SELECT id, email FROM users WHERE id = $1", &[Arg::Text(id)]).await?;
        if let Some(account) = &account {
            self.known.insert(id.clone(), account.clone());
        }
        Ok(account)
    }
}

/// Whether `password` matches `hash` (Argon2, off the async threads).
pub(crate) async fn verify(password: String, hash: String) -> Result<bool, tokio::task::JoinError> {
    argon2(move || password_auth::verify_password(password, &hash).is_ok()).await
}

pub(crate) async fn hash_password(password: NewPassword) -> Result<String> {
    argon2(move || password_auth::generate_hash(password.0)).await.map_err(AppError::internal)
}

/// Argon2 takes 19 MiB and a core's work for each hash or check, so only
/// a few run at once (one per core, 2 to 8): a burst of sign-ups or
/// sign-ins waits its turn instead of taking memory in proportion to its
/// size (60 at once took a gigabyte).
static ARGON2_TURNS: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    std::sync::Arc::new(tokio::sync::Semaphore::new(cores.clamp(2, 8)))
});

/// Runs `work` on the blocking threads once a turn is free; the turn is
/// held until the work ends, even if the caller stops waiting.
async fn argon2<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, tokio::task::JoinError> {
    let turn = std::sync::Arc::clone(&ARGON2_TURNS).acquire_owned().await.expect("the semaphore is never closed");
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        work()
    })
    .await
}

/// Replaces `account`'s password after checking the current one, moves the
/// account's session epoch on and ends every session of the account, in one
/// transaction. Returns the new epoch.
#[tracing::instrument(skip_all, fields(user = %account.id))]
pub async fn change_password(db: &Db, account: &Account, current: String, new: NewPassword) -> Result<i64> {
    let row = sqlx::query("SELECT password_hash FROM users WHERE id = $1").bind(&account.id).fetch_optional(db).await?;
    let Some(row) = row else { return Err(AppError::unauthorized()) };
    let old_hash: String = sqlx::Row::try_get(&row, "password_hash")?;
    if !verify(current, old_hash.clone()).await.map_err(AppError::internal)? {
        return Err(AppError::invalid("the current password is wrong"));
    }
    let new_hash = hash_password(new).await?;
    let mut tx = db.begin().await?;
    // Compare-and-set: two changes at once cannot both pass the check of
    // the same old password.
    let changed = sqlx::query(
        "UPDATE users SET password_hash = $1, session_epoch = session_epoch + 1 \
         WHERE id = $2 AND password_hash = $3 RETURNING session_epoch",
    )
    .bind(&new_hash)
    .bind(&account.id)
    .bind(&old_hash)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(changed) = changed else {
        return Err(AppError::conflict("the password was changed meanwhile; sign in again"));
    };
    let epoch: i64 = sqlx::Row::try_get(&changed, "session_epoch")?;
    let ended = super::sessions::Sessions::end_all(&mut tx, &account.id).await?;
    tx.commit().await?;
    tracing::info!(sessions_ended = ended, "password changed");
    Ok(epoch)
}

/// Ends every session of the account, and any sign-in whose password check
/// is under way (the epoch moves on), in one transaction.
#[tracing::instrument(skip_all, fields(user = %account.id))]
pub async fn end_every_session(db: &Db, account: &Account) -> Result<()> {
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE users SET session_epoch = session_epoch + 1 WHERE id = $1")
        .bind(&account.id)
        .execute(&mut *tx)
        .await?;
    let ended = super::sessions::Sessions::end_all(&mut tx, &account.id).await?;
    tx.commit().await?;
    tracing::info!(sessions_ended = ended, "signed out everywhere");
    Ok(())
}

/// Grants `credits` sign-up credits to `user` if `email`'s mailbox has
/// had none (see [`create_account`]); how many it granted.
pub async fn grant_signup(conn: &mut sqlx::AnyConnection, user: &UserId, email: &Email, credits: i64) -> Result<i64> {
    use sha2::Digest;
    if credits <= 0 {
        return Ok(0);
    }
    // Once per account too: an account that changes its address gets no
    // second grant.
    let had =
        sqlx::query("SELECT 1 FROM credit_ledger WHERE user_id = $1 AND kind = 'grant' AND entry_key LIKE 'signup:%'")
            .bind(user.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    if had.is_some() {
        return Ok(0);
    }
    let mailbox: String = sha2::Sha256::digest(email.mailbox().as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let granted = credits::grant(conn, user, credits, &format!("signup:{mailbox}")).await?;
    Ok(if granted { credits } else { 0 })
}

/// An account as it stands now, read fresh: its email (which may have
/// changed since an instance remembered the account), balance, and
/// whether the email is verified.
pub struct Standing {
    pub email: String,
    pub credits: i64,
    pub verified: bool,
}

impl Standing {
    /// What the pages and `/api/me` are told of a signed-in account.
    pub fn into_user(self) -> crate::model::User {
        crate::model::User { email: self.email, credits: self.credits, verified: self.verified, check_inbox: false }
    }
}

/// The account's [`Standing`].
pub async fn standing(db: &Db, user: &str) -> Result<Standing> {
    let row = sqlx::query("SELECT email, balance - debt AS credits, email_verified_at FROM users WHERE id = $1")
        .bind(user)
        .fetch_optional(db)
        .await?
        .ok_or_else(AppError::unauthorized)?;
    let verified: Option<i64> = sqlx::Row::try_get(&row, "email_verified_at")?;
    Ok(Standing {
        email: sqlx::Row::try_get(&row, "email")?,
        credits: sqlx::Row::try_get(&row, "credits")?,
        verified: verified.is_some(),
    })
}

/// A hash of nothing anyone types, verified when an email is unknown.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| password_auth::generate_hash(uuid::Uuid::new_v4().to_string()));

/// Creates an account and grants its sign-up credits, in one transaction;
/// the account and the credits granted. The credits are granted once per
/// mailbox ([`Email::mailbox`]), whatever became of the account that had
/// them: the ledger row's key is a digest of the mailbox, which stays when
/// an account is deleted, so deleting and signing up again, or `+tags`,
/// give no second grant.
#[tracing::instrument(skip_all, fields(email = %email.as_str()))]
pub async fn create_account(
    db: &Db,
    email: &Email,
    password: NewPassword,
    signup_credits: i64,
) -> Result<(Account, i64)> {
    let hash = hash_password(password).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let now = super::clock::Clock::system().now_ms();

    let mut tx = db.begin().await?;
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
        Err(e) => return Err(e.into()),
    }
    let granted = grant_signup(&mut tx, &UserId::from_db(id.clone()), email, signup_credits).await?;
    tx.commit().await.map_err(|e| {
        if db::is_unique_violation(&e) { AppError::conflict("email already registered") } else { AppError::internal(e) }
    })?;
    tracing::info!(user = %id, granted, "account created");
    Ok((Account::new(id, email.clone().0), granted))
}

/// Limit on password attempts per client address (sign-in, sign-up,
/// password change) or per account (password change: a stolen session must
/// not guess the current password from many addresses). Kept in memory: it
/// protects one instance and is not needed for correctness.
pub struct AttemptLimiter<K: std::hash::Hash + Eq + Clone = IpAddr>(DefaultKeyedRateLimiter<K>);

impl<K: std::hash::Hash + Eq + Clone> AttemptLimiter<K> {
    pub fn per_minute(n: u32) -> Self {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self(RateLimiter::keyed(Quota::per_minute(n)))
    }

    pub fn per_hour(n: u32) -> Self {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self(RateLimiter::keyed(Quota::per_hour(n)))
    }

    /// Counts an attempt by `key`, or says how long to wait.
    pub fn check(&self, key: K) -> Result<()> {
        self.check_as(key, "attempts")
    }

    /// Counts one of `what` (plural, "cancels and deletions") by `key`, or
    /// says how long to wait.
    pub fn check_as(&self, key: K, what: &str) -> Result<()> {
        self.0.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let secs = wait.as_secs().max(1);
            AppError::new(ErrorKind::RateLimited, format!("too many {what}, try again in {secs} s"))
        })
    }

    /// Forgets clients that have not tried for a while.
    pub fn prune(&self) {
        self.0.retain_recent();
        self.0.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn only_a_few_password_hashes_run_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static RUNNING: AtomicUsize = AtomicUsize::new(0);
        static MOST: AtomicUsize = AtomicUsize::new(0);
        let turns = ARGON2_TURNS.available_permits();
        let burst = (0..turns * 4).map(|_| {
            argon2(|| {
                let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
                MOST.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(20));
                RUNNING.fetch_sub(1, Ordering::SeqCst);
            })
        });
        for done in futures::future::join_all(burst).await {
            done.unwrap();
        }
        let most = MOST.load(Ordering::SeqCst);
        assert!((1..=turns).contains(&most), "{most} ran at once, {turns} allowed");
        // A real hash takes its turn too.
        let hash = hash_password(NewPassword::parse("correct horse".into()).unwrap()).await.unwrap();
        assert!(verify("correct horse".into(), hash).await.unwrap());
    }

    #[test]
    fn emails_are_checked_and_normalised() {
        assert_eq!(Email::parse("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "a da@example.com", "a@b@c.com", "ada@.com"] {
            let e = Email::parse(bad).unwrap_err();
            assert_eq!(e.message, "not a valid email", "{bad:?}");
        }
    }

    #[test]
    fn plus_tags_and_gmail_dots_are_one_mailbox() {
        for (a, b) in [
            ("ada+1@example.com", "ada@example.com"),
            ("Ada+free+credits@Example.com", "ada@example.com"),
            ("a.d.a+x@googlemail.com", "ada@gmail.com"),
            ("a.da@example.com", "a.da@example.com"),
        ] {
            assert_eq!(Email::parse(a).unwrap().mailbox(), b, "{a}");
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
