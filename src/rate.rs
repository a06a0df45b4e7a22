//! Rate limits as a provider publishes them (`create=600/min,other=3000/min`)
//! and the token bucket that holds a stream of calls to one of them. The
//! simulator enforces limits with it, the engine spends its provider
//! budget with it (in memory, or in PostgreSQL with the same arithmetic).
//!
//! The bucket is a GCRA ("generic cell rate algorithm"): one number, the
//! theoretical arrival time (`tat`) of the next call at the steady rate. A
//! call is let through while `tat` is less than a burst's worth ahead of
//! now; each call moves it one emission interval on. It is exact, needs no
//! timer to refill, and is one compare-and-set on one row when shared.

use std::fmt;

/// One limit: `per_minute` calls on average, with bursts of up to `burst`
/// back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Rate {
    /// `per_minute` with a burst of `burst_secs` seconds' worth (at least 1).
    pub fn per_minute(per_minute: u32, burst_secs: u32) -> Self {
        let burst = (u64::from(per_minute) * u64::from(burst_secs) / 60).max(1);
        Self { per_minute, burst: u32::try_from(burst).unwrap_or(u32::MAX) }
    }

    /// Microseconds between two calls at the steady rate.
    pub fn interval_us(self) -> i64 {
        60_000_000 / i64::from(self.per_minute.max(1))
    }

    /// Microseconds of calls a full burst holds.
    pub fn window_us(self) -> i64 {
        self.interval_us() * i64::from(self.burst.max(1))
    }

    /// This rate times `factor` (a safety margin), never below 1 a minute.
    pub fn scaled(self, factor: f64) -> Self {
        let scale = |n: u32| ((f64::from(n) * factor).floor() as u32).max(1);
        Self { per_minute: scale(self.per_minute), burst: scale(self.burst) }
    }

    /// Calls a second at the steady rate.
    pub fn per_second(self) -> f64 {
        f64::from(self.per_minute) / 60.0
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/min", self.per_minute)
    }
}

/// The two limits of an API token: creating predictions, and every other
/// call. `None`: not limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub create: Option<Rate>,
    pub other: Option<Rate>,
}

impl Limits {
    /// Replicate's published limits per account: 600 creates a minute and
    /// 3,000 calls a minute to every other endpoint.
    pub const REPLICATE_PER_MINUTE: (u32, u32) = (600, 3000);

    /// No limit on anything.
    pub const OFF: Self = Self { create: None, other: None };

    /// Replicate's limits, with bursts of `burst_secs` seconds' worth.
    pub fn replicate(burst_secs: u32) -> Self {
        let (create, other) = Self::REPLICATE_PER_MINUTE;
        Self { create: Some(Rate::per_minute(create, burst_secs)), other: Some(Rate::per_minute(other, burst_secs)) }
    }

    /// Parses `create=600/min,other=3000/min` (either part may be left out:
    /// `defaults` gives it), `N/s` and `N/h` too, or `off`. Bursts are
    /// `burst_secs` seconds' worth of each rate.
    pub fn parse(raw: &str, defaults: Self, burst_secs: u32) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("off") {
            return Ok(Self::OFF);
        }
        let mut limits = defaults;
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, rate) =
                part.split_once('=').ok_or_else(|| format!("`{part}` is not `create=N/min` or `other=N/min`"))?;
            let rate = parse_rate(rate.trim(), burst_secs).map_err(|e| format!("`{part}`: {e}"))?;
            match name.trim() {
                "create" => limits.create = rate,
                "other" => limits.other = rate,
                other => return Err(format!("`{other}` is not a limit (create or other)")),
            }
        }
        Ok(limits)
    }

    /// Each limit times `factor`.
    pub fn scaled(self, factor: f64) -> Self {
        Self { create: self.create.map(|r| r.scaled(factor)), other: self.other.map(|r| r.scaled(factor)) }
    }
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |r: Option<Rate>| r.map_or_else(|| "unlimited".to_owned(), |r| r.to_string());
        write!(f, "create={},other={}", show(self.create), show(self.other))
    }
}

/// `600/min`, `10/s`, `36000/h` or `off`.
fn parse_rate(raw: &str, burst_secs: u32) -> Result<Option<Rate>, String> {
    if raw.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let (count, unit) = raw.split_once('/').ok_or("a rate is N/s, N/min or N/h")?;
    let count: u64 = count.trim().parse().map_err(|_| format!("`{count}` is not a whole number"))?;
    let per_minute = match unit.trim() {
        "s" | "sec" => count.checked_mul(60),
        "min" | "m" => Some(count),
        "h" | "hour" => Some(count / 60),
        other => return Err(format!("`{other}` is not s, min or h")),
    };
    match per_minute.and_then(|n| u32::try_from(n).ok()) {
        Some(n) if (1..=10_000_000).contains(&n) => Ok(Some(Rate::per_minute(n, burst_secs))),
        _ => Err("a rate must be between 1/min and 10000000/min".into()),
    }
}

/// One stream of calls held to a [`Rate`]: the theoretical arrival time of
/// the next call, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    pub tat_us: i64,
}

/// What [`Bucket::take`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    Yes,
    /// Not now: room comes back in this many milliseconds (at least 1).
    No {
        wait_ms: i64,
    },
}

impl Bucket {
    /// Takes one call at `now_us` if the bucket has room beyond the
    /// fraction `keep_back` of a burst (0: the whole burst is usable; a
    /// caller of lower priority keeps some back for the others).
    pub fn take(&mut self, rate: Rate, now_us: i64, keep_back: f64) -> Taken {
        match decide(self.tat_us, rate, now_us, keep_back) {
            Ok(tat) => {
                self.tat_us = tat;
                Taken::Yes
            }
            Err(wait_ms) => Taken::No { wait_ms },
        }
    }

    /// Gives back one call taken and not made.
    pub fn give_back(&mut self, rate: Rate) {
        self.tat_us -= rate.interval_us();
    }

    /// Calls that could be made back to back now (fractional).
    pub fn left(&self, rate: Rate, now_us: i64) -> f64 {
        let used = (self.tat_us - now_us).max(0) as f64;
        ((rate.window_us() as f64 - used) / rate.interval_us() as f64).max(0.0)
    }
}

/// The arithmetic of [`Bucket::take`], shared with the PostgreSQL bucket:
/// the new `tat`, or how long until there is room (ms, at least 1).
pub fn decide(tat_us: i64, rate: Rate, now_us: i64, keep_back: f64) -> Result<i64, i64> {
    let limit = (rate.window_us() as f64 * (1.0 - keep_back.clamp(0.0, 0.95))) as i64;
    let next = tat_us.max(now_us) + rate.interval_us();
    if next - now_us <= limit.max(rate.interval_us()) { Ok(next) } else { Err(((next - now_us - limit) / 1000).max(1)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_like_the_provider_publishes_them() {
        let d = Limits::replicate(5);
        assert_eq!(d.create, Some(Rate { per_minute: 600, burst: 50 }));
        assert_eq!(d.other, Some(Rate { per_minute: 3000, burst: 250 }));
        assert_eq!(Limits::parse("off", d, 5), Ok(Limits::OFF));
        let l = Limits::parse("create=6/min", d, 5).unwrap();
        assert_eq!(l.create, Some(Rate { per_minute: 6, burst: 1 }), "a burst is never below one call");
        assert_eq!(l.other, d.other, "what is left out keeps its default");
        let l = Limits::parse(" create = 10/s , other=off ", d, 5).unwrap();
        assert_eq!(l.create.map(|r| r.per_minute), Some(600));
        assert_eq!(l.other, None);
        assert_eq!(Limits::parse("other=36000/h", d, 5).unwrap().other.map(|r| r.per_minute), Some(600));
        for bad in ["create", "create=600", "create=lots/min", "create=600/day", "reads=5/s", "create=0/min"] {
            assert!(Limits::parse(bad, d, 5).is_err(), "{bad:?}");
        }
        assert_eq!(d.to_string(), "create=600/min,other=3000/min");
    }

    #[test]
    fn a_margin_scales_rates_and_bursts() {
        let r = Rate::per_minute(600, 5).scaled(0.8);
        assert_eq!(r, Rate { per_minute: 480, burst: 40 });
        assert_eq!(r.interval_us(), 125_000);
        assert!((r.per_second() - 8.0).abs() < 1e-9);
    }

    #[test]
    fn a_bucket_lets_a_burst_through_then_the_steady_rate() {
        let rate = Rate { per_minute: 600, burst: 3 }; // one per 100 ms
        let mut b = Bucket::default();
        let now = 1_000_000_000;
        for _ in 0..3 {
            assert_eq!(b.take(rate, now, 0.0), Taken::Yes);
        }
        assert_eq!(b.take(rate, now, 0.0), Taken::No { wait_ms: 100 });
        assert_eq!(b.take(rate, now + 99_000, 0.0), Taken::No { wait_ms: 1 });
        assert_eq!(b.take(rate, now + 100_000, 0.0), Taken::Yes);
        // Idle for a long time: a burst again, never more.
        let later = now + 60_000_000;
        assert!((b.left(rate, later) - 3.0).abs() < 1e-9);
        for _ in 0..3 {
            assert_eq!(b.take(rate, later, 0.0), Taken::Yes);
        }
        assert!(matches!(b.take(rate, later, 0.0), Taken::No { .. }));
        b.give_back(rate);
        assert_eq!(b.take(rate, later, 0.0), Taken::Yes, "a call given back can be taken again");
    }

    #[test]
    fn a_caller_that_keeps_some_back_stops_earlier() {
        let rate = Rate { per_minute: 600, burst: 10 };
        let (mut low, mut high) = (Bucket::default(), Bucket::default());
        let now = 5_000_000;
        let count = |b: &mut Bucket, keep| (0..20).take_while(|_| b.take(rate, now, keep) == Taken::Yes).count();
        assert_eq!(count(&mut high, 0.0), 10);
        assert_eq!(count(&mut low, 0.25), 7, "a quarter of the burst is left for others");
        assert_eq!(count(&mut low, 0.0), 3, "which they can still take");
    }

    #[test]
    fn over_any_window_a_bucket_never_passes_rate_times_window_plus_a_burst() {
        let rate = Rate::per_minute(600, 5);
        let mut b = Bucket::default();
        // Callers try every millisecond for 30 s.
        let mut passed = Vec::new();
        for ms in 0..30_000i64 {
            if b.take(rate, ms * 1000, 0.0) == Taken::Yes {
                passed.push(ms);
            }
        }
        assert_eq!(passed.len(), 50 + 300 - 1);
        for w in passed.windows(60) {
            // 60 calls at 10/s take at least ~(60 - burst) × 100 ms.
            assert!(w[59] - w[0] >= (60 - 50 - 1) * 100, "{w:?}");
        }
    }
}
