//! Counters of what the engine does (provider calls, object writes,
//! finalizations, refunds). Tests and benchmarks read them to check the
//! coalescing and exactly-once bounds.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters, shared by every request of one process.
#[derive(Debug, Default)]
pub struct Metrics {
    pub polls: AtomicU64,
    pub provider_gets: AtomicU64,
    pub provider_creates: AtomicU64,
    pub object_writes: AtomicU64,
    pub completions: AtomicU64,
    pub failures: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
