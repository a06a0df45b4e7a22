//! The provider budget: what the engine may spend of the provider's rate
//! limits, per API token, shared by every instance that uses the token.
//!
//! Replicate limits each token to 600 prediction creates and 3,000 other
//! calls a minute; over them it answers 429 to every caller of the token,
//! so a busy instance would throttle every person on it. The engine spends
//! [`crate::server::config::BUDGET_MARGIN`] of the published limits
//! (`DARKROOM_PROVIDER_LIMITS`), creates and other calls as two token
//! buckets (see [`crate::rate`]):
//! - on SQLite (one process), in memory;
//! - on PostgreSQL, in the `provider_budget` row of the token (keyed by a
//!   hash of it, never the token), so instances share one budget: each take
//!   is one compare-and-set on that row.
//!
//! Calls differ in how much they may take ([`Priority`]): a check someone
//! is waiting on may empty the bucket, a poll leaves a little, and the
//! reconciler's background checks leave a quarter for the others. A 429
//! that gets through anyway (another client of the token, a provider that
//! counts differently) pauses every call of its kind, on every instance,
//! for the wait it names.

use std::sync::Mutex;
use std::time::Duration;

use sqlx::Row;

use crate::error::Result;
use crate::rate::{Bucket, Limits, Rate, decide};
use crate::server::clock::Clock;
use crate::server::db::Db;

/// The two limits of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Creating a prediction.
    Create,
    /// Everything else: reading, canceling and listing predictions.
    Other,
}

impl Call {
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Other => "other",
        }
    }

    fn slot(self) -> usize {
        match self {
            Self::Create => 0,
            Self::Other => 1,
        }
    }
}

/// How much of the bucket a call may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Someone waits for exactly this call: a create, a person's cancel, a
    /// prediction's first check or the one at its expected end. May take
    /// the last token.
    Urgent,
    /// A page's poll found the task due: leaves a tenth of a burst.
    Watched,
    /// Nobody is waiting (the reconciler): leaves a quarter of a burst.
    Background,
}

impl Priority {
    /// The share of a burst this priority leaves for the ones above it.
    pub fn keep_back(self) -> f64 {
        match self {
            Self::Urgent => 0.0,
            Self::Watched => 0.1,
            Self::Background => 0.25,
        }
    }
}

/// What [`Budget::take`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// Make the call.
    Granted,
    /// Not now: room comes back in this many milliseconds.
    Denied { wait_ms: i64 },
}

/// How long every call of a kind waits after a 429 that named no wait:
/// Replicate's limits reset within about 30 s.
const DEFAULT_PAUSE: Duration = Duration::from_secs(10);
/// The longest pause a 429 may ask for.
const MAX_PAUSE: Duration = Duration::from_secs(300);

/// One token's budget.
pub struct Budget {
    limits: Limits,
    clock: Clock,
    store: Store,
}

enum Store {
    /// Creates, then other calls.
    Memory(Mutex<[Slot; 2]>),
    /// The `provider_budget` rows of `token` (a hash of the token).
    Postgres { db: Db, token: String },
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    bucket: Bucket,
    paused_until_ms: i64,
}

impl Budget {
    /// A budget in this process's memory.
    pub fn in_memory(limits: Limits, clock: Clock) -> Self {
        Self { limits, clock, store: Store::Memory(Mutex::new([Slot::default(); 2])) }
    }

    /// A budget shared through PostgreSQL by every instance using the
    /// token whose key (a hash) is `token`.
    pub async fn shared(db: Db, token: String, limits: Limits, clock: Clock) -> Result<Self> {
        for call in [Call::Create, Call::Other] {
            sqlx::query(
                "INSERT INTO provider_budget (token, call, tat_us, paused_until) VALUES ($1, $2, 0, 0) \
                 ON CONFLICT (token, call) DO NOTHING",
            )
            .bind(&token)
            .bind(call.as_str())
            .execute(&db)
            .await?;
        }
        Ok(Self { limits, clock, store: Store::Postgres { db, token } })
    }

    /// The limits this budget spends.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn rate(&self, call: Call) -> Option<Rate> {
        match call {
            Call::Create => self.limits.create,
            Call::Other => self.limits.other,
        }
    }

    /// Takes one `call` at `priority`, or says how long until there is
    /// room.
    pub async fn take(&self, call: Call, priority: Priority) -> Result<Spend> {
        let Some(rate) = self.rate(call) else { return Ok(Spend::Granted) };
        let now_ms = self.clock.now_ms();
        let now_us = now_ms * 1000;
        let keep_back = priority.keep_back();
        match &self.store {
            Store::Memory(slots) => {
                let mut slots = slots.lock().unwrap_or_else(|e| e.into_inner());
                let slot = &mut slots[call.slot()];
                if slot.paused_until_ms > now_ms {
                    return Ok(Spend::Denied { wait_ms: slot.paused_until_ms - now_ms });
                }
                Ok(match decide(slot.bucket.tat_us, rate, now_us, keep_back) {
                    Ok(tat) => {
                        slot.bucket.tat_us = tat;
                        Spend::Granted
                    }
                    Err(wait_ms) => Spend::Denied { wait_ms },
                })
            }
            Store::Postgres { db, token } => {
                // `rate::decide` in SQL: the same arithmetic on the shared row.
                let limit = limit_us(rate, keep_back);
                let taken = sqlx::query(
                    "UPDATE provider_budget SET tat_us = GREATEST(tat_us, $3) + $4 \
                     WHERE token = $1 AND call = $2 AND paused_until <= $5 \
                     AND GREATEST(tat_us, $3) + $4 - $3 <= $6",
                )
                .bind(token)
                .bind(call.as_str())
                .bind(now_us)
                .bind(rate.interval_us())
                .bind(now_ms)
                .bind(limit)
                .execute(db)
                .await?;
                if taken.rows_affected() == 1 {
                    return Ok(Spend::Granted);
                }
                let row =
                    sqlx::query("SELECT tat_us, paused_until FROM provider_budget WHERE token = $1 AND call = $2")
                        .bind(token)
                        .bind(call.as_str())
                        .fetch_one(db)
                        .await?;
                let (tat_us, paused_until): (i64, i64) = (row.try_get("tat_us")?, row.try_get("paused_until")?);
                let wait_ms = if paused_until > now_ms {
                    paused_until - now_ms
                } else {
                    decide(tat_us, rate, now_us, keep_back).err().unwrap_or(1)
                };
                Ok(Spend::Denied { wait_ms })
            }
        }
    }

    /// Gives back one `call` taken and not made.
    pub async fn give_back(&self, call: Call) -> Result<()> {
        let Some(rate) = self.rate(call) else { return Ok(()) };
        match &self.store {
            Store::Memory(slots) => {
                slots.lock().unwrap_or_else(|e| e.into_inner())[call.slot()].bucket.give_back(rate);
            }
            Store::Postgres { db, token } => {
                sqlx::query("UPDATE provider_budget SET tat_us = tat_us - $3 WHERE token = $1 AND call = $2")
                    .bind(token)
                    .bind(call.as_str())
                    .bind(rate.interval_us())
                    .execute(db)
                    .await?;
            }
        }
        Ok(())
    }

    /// The provider answered a `call` with 429: every call of the kind
    /// waits `retry_after` (or a default), here and on every instance.
    pub async fn throttled(&self, call: Call, retry_after: Option<Duration>) -> Result<()> {
        let wait = retry_after.unwrap_or(DEFAULT_PAUSE).min(MAX_PAUSE);
        let until = self.clock.now_ms() + wait.as_millis() as i64;
        tracing::warn!(call = call.as_str(), wait_ms = wait.as_millis() as u64, "the provider throttled us; pausing");
        match &self.store {
            Store::Memory(slots) => {
                let mut slots = slots.lock().unwrap_or_else(|e| e.into_inner());
                let slot = &mut slots[call.slot()];
                slot.paused_until_ms = slot.paused_until_ms.max(until);
            }
            Store::Postgres { db, token } => {
                sqlx::query(
                    "UPDATE provider_budget SET paused_until = GREATEST(paused_until, $3) WHERE token = $1 AND call = $2",
                )
                .bind(token)
                .bind(call.as_str())
                .bind(until)
                .execute(db)
                .await?;
            }
        }
        Ok(())
    }

    /// Calls of the kind that could be made back to back now (`None`: not
    /// limited), for `/metrics`.
    pub async fn left(&self, call: Call) -> Result<Option<f64>> {
        let Some(rate) = self.rate(call) else { return Ok(None) };
        let now_ms = self.clock.now_ms();
        let slot = match &self.store {
            Store::Memory(slots) => slots.lock().unwrap_or_else(|e| e.into_inner())[call.slot()],
            Store::Postgres { db, token } => {
                let row =
                    sqlx::query("SELECT tat_us, paused_until FROM provider_budget WHERE token = $1 AND call = $2")
                        .bind(token)
                        .bind(call.as_str())
                        .fetch_one(db)
                        .await?;
                Slot {
                    bucket: Bucket { tat_us: row.try_get("tat_us")? },
                    paused_until_ms: row.try_get("paused_until")?,
                }
            }
        };
        Ok(Some(if slot.paused_until_ms > now_ms { 0.0 } else { slot.bucket.left(rate, now_ms * 1000) }))
    }

    /// Calls a second of the kind at the steady rate (`None`: not limited).
    pub fn per_second(&self, call: Call) -> Option<f64> {
        self.rate(call).map(Rate::per_second)
    }
}

/// How far ahead of now a priority may push the bucket: `rate::decide`'s
/// limit.
fn limit_us(rate: Rate, keep_back: f64) -> i64 {
    ((rate.window_us() as f64 * (1.0 - keep_back.clamp(0.0, 0.95))) as i64).max(rate.interval_us())
}

/// The key a token's budget is shared under: a hash, so the database never
/// holds the token.
pub fn token_key(token: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(create: u32, other: u32) -> (Budget, Clock) {
        let clock = Clock::manual(1_000_000);
        let limits = Limits {
            create: Some(Rate { per_minute: create, burst: 2 }),
            other: Some(Rate { per_minute: other, burst: 10 }),
        };
        (Budget::in_memory(limits, clock.clone()), clock)
    }

    async fn takes(b: &Budget, call: Call, priority: Priority) -> usize {
        let mut n = 0;
        while b.take(call, priority).await.unwrap() == Spend::Granted {
            n += 1;
            assert!(n < 1000);
        }
        n
    }

    #[tokio::test]
    async fn creates_and_other_calls_are_spent_apart() {
        let (b, clock) = budget(60, 600);
        assert_eq!(takes(&b, Call::Create, Priority::Urgent).await, 2);
        assert_eq!(b.take(Call::Create, Priority::Urgent).await.unwrap(), Spend::Denied { wait_ms: 1000 });
        assert_eq!(takes(&b, Call::Other, Priority::Urgent).await, 10, "other calls are not held by creates");
        b.give_back(Call::Create).await.unwrap();
        assert_eq!(takes(&b, Call::Create, Priority::Urgent).await, 1);
        clock.advance(Duration::from_secs(1));
        assert_eq!(takes(&b, Call::Create, Priority::Urgent).await, 1, "one a second");
    }

    #[tokio::test]
    async fn background_checks_leave_room_for_watched_and_urgent_ones() {
        let (b, _clock) = budget(60, 600);
        assert_eq!(takes(&b, Call::Other, Priority::Background).await, 7);
        assert_eq!(takes(&b, Call::Other, Priority::Watched).await, 2);
        assert_eq!(takes(&b, Call::Other, Priority::Urgent).await, 1);
        assert!((b.left(Call::Other).await.unwrap().unwrap()).abs() < 1e-9);
    }

    #[tokio::test]
    async fn a_429_pauses_every_call_of_its_kind() {
        let (b, clock) = budget(60, 600);
        b.throttled(Call::Other, Some(Duration::from_secs(7))).await.unwrap();
        assert_eq!(b.take(Call::Other, Priority::Urgent).await.unwrap(), Spend::Denied { wait_ms: 7000 });
        assert_eq!(b.left(Call::Other).await.unwrap(), Some(0.0));
        assert_eq!(b.take(Call::Create, Priority::Urgent).await.unwrap(), Spend::Granted, "creates go on");
        clock.advance(Duration::from_secs(7));
        assert_eq!(b.take(Call::Other, Priority::Urgent).await.unwrap(), Spend::Granted);
        // Without a hint, a default pause; an absurd one is capped.
        b.throttled(Call::Create, None).await.unwrap();
        assert_eq!(b.take(Call::Create, Priority::Urgent).await.unwrap(), Spend::Denied { wait_ms: 10_000 });
        b.throttled(Call::Create, Some(Duration::from_secs(86_400))).await.unwrap();
        assert_eq!(b.take(Call::Create, Priority::Urgent).await.unwrap(), Spend::Denied { wait_ms: 300_000 });
    }

    #[tokio::test]
    async fn without_a_limit_everything_is_granted() {
        let b = Budget::in_memory(Limits::OFF, Clock::manual(0));
        assert_eq!(takes_some(&b).await, 500);
        assert_eq!(b.left(Call::Create).await.unwrap(), None);
    }

    async fn takes_some(b: &Budget) -> usize {
        let mut n = 0;
        for _ in 0..500 {
            if b.take(Call::Create, Priority::Background).await.unwrap() == Spend::Granted {
                n += 1;
            }
        }
        n
    }

    #[test]
    fn token_keys_are_short_hashes() {
        let k = token_key("r8_secret");
        assert_eq!(k.len(), 24);
        assert!(!k.contains("r8_secret"));
        assert_ne!(k, token_key("r8_other"));
    }
}
