//! The time the engine, the reconciler and the simulator go by: the system
//! clock in production; in tests a manual clock the test moves on, so a
//! deadline, a check interval, a simulated generation or an event's delay
//! is asserted exactly instead of by sleeping and measuring. Network
//! timeouts stay on real time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A clock (cheap to clone).
#[derive(Clone)]
pub struct Clock(Inner);

#[derive(Clone)]
enum Inner {
    System,
    Manual(Arc<Manual>),
}

struct Manual {
    now_ms: AtomicI64,
    /// Tells sleepers the time moved.
    moved: tokio::sync::watch::Sender<i64>,
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Self {
        Self(Inner::System)
    }

    /// A clock that stands at `start_ms` (since the Unix epoch) until
    /// [`Clock::advance`] moves it.
    pub fn manual(start_ms: i64) -> Self {
        let (moved, _) = tokio::sync::watch::channel(start_ms);
        Self(Inner::Manual(Arc::new(Manual { now_ms: AtomicI64::new(start_ms), moved })))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Inner::System => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0),
            Inner::Manual(m) => m.now_ms.load(Ordering::SeqCst),
        }
    }

    /// Waits until the clock reads `at_ms` or later.
    pub async fn sleep_until(&self, at_ms: i64) {
        match &self.0 {
            Inner::System => {
                let wait = (at_ms - self.now_ms()).max(0) as u64;
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            Inner::Manual(m) => {
                let mut moved = m.moved.subscribe();
                while m.now_ms.load(Ordering::SeqCst) < at_ms {
                    if moved.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Waits `d` by this clock.
    pub async fn sleep(&self, d: Duration) {
        self.sleep_until(self.now_ms() + d.as_millis() as i64).await;
    }

    /// Moves a manual clock on by `d` and wakes whoever it woke up; the
    /// system clock cannot be moved (a no-op).
    pub fn advance(&self, d: Duration) {
        if let Inner::Manual(m) = &self.0 {
            let now = m.now_ms.fetch_add(d.as_millis() as i64, Ordering::SeqCst) + d.as_millis() as i64;
            m.moved.send_replace(now);
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::System => f.write_str("Clock::system"),
            Inner::Manual(_) => write!(f, "Clock::manual({})", self.now_ms()),
        }
    }
}

/// RFC 3339 (UTC, milliseconds) of a time in epoch milliseconds.
pub fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// RFC 3339 (UTC) with microseconds, the way Replicate prints its times.
pub fn rfc3339_micros(ms: i64) -> String {
    humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_moves_only_when_told_and_wakes_its_sleepers() {
        let clock = Clock::manual(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move {
                clock.sleep(Duration::from_secs(10)).await;
                clock.now_ms()
            }
        });
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(9));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "9 s of 10");
        clock.advance(Duration::from_secs(1));
        assert_eq!(sleeper.await.unwrap(), 11_000);
        // Already past: no wait.
        clock.sleep_until(5_000).await;
    }

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_micros(1_700_000_000_123), "2023-11-14T22:13:20.123000Z");
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29 (a leap day in a century leap year) 12:34:56.789
        assert_eq!(rfc3339_micros(951_827_696_789), "2000-02-29T12:34:56.789000Z");
        assert_eq!(rfc3339_micros(1_735_689_599_999), "2024-12-31T23:59:59.999000Z");
        assert_eq!(rfc3339_micros(1_735_689_600_000), "2025-01-01T00:00:00.000000Z");
    }
}
