//! The simulator's only in-memory state, soft and bounded: how many GETs
//! each `#error` / `#ratelimit` prediction has had, and which predictions
//! were canceled. Losing it (a restart, another instance) only replays the
//! first failing GETs or forgets a cancel; everything else is in the id.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use super::id::Tag;

/// Entries kept before the oldest half (by creation time) is dropped.
const CAPACITY: usize = 50_000;

#[derive(Debug, Default)]
pub(super) struct SoftState {
    entries: Mutex<HashMap<Tag, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    created_ms: u64,
    gets: u32,
    canceled_at_ms: Option<u64>,
}

impl SoftState {
    /// Counts a GET of the prediction and returns how many there have been,
    /// this one included.
    pub(super) fn count_get(&self, tag: Tag, created_ms: u64) -> u32 {
        let mut entries = self.lock();
        let entry = entry(&mut entries, tag, created_ms);
        entry.gets = entry.gets.saturating_add(1);
        entry.gets
    }

    /// Records a cancel at `at_ms` unless one is already recorded; returns
    /// the cancel time in force.
    pub(super) fn cancel(&self, tag: Tag, created_ms: u64, at_ms: u64) -> u64 {
        let mut entries = self.lock();
        *entry(&mut entries, tag, created_ms).canceled_at_ms.get_or_insert(at_ms)
    }

    /// When the prediction was canceled, if this instance remembers it.
    pub(super) fn canceled_at(&self, tag: &Tag) -> Option<u64> {
        self.lock().get(tag).and_then(|e| e.canceled_at_ms)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Tag, Entry>> {
        // The map is valid after any panic mid-update, so poison is harmless.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

fn entry(entries: &mut HashMap<Tag, Entry>, tag: Tag, created_ms: u64) -> &mut Entry {
    if entries.len() >= CAPACITY && !entries.contains_key(&tag) {
        evict_oldest_half(entries);
    }
    entries.entry(tag).or_insert(Entry { created_ms, gets: 0, canceled_at_ms: None })
}

/// Drops the older half of the entries: amortised O(1) per insert, and the
/// predictions most likely still polled (the recent ones) survive.
fn evict_oldest_half(entries: &mut HashMap<Tag, Entry>) {
    let mut created: Vec<u64> = entries.values().map(|e| e.created_ms).collect();
    let middle = created.len() / 2;
    let (_, cutoff, _) = created.select_nth_unstable(middle);
    let cutoff = *cutoff;
    entries.retain(|_, e| e.created_ms > cutoff);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(n: u64) -> Tag {
        let mut tag = [0u8; 16];
        tag[..8].copy_from_slice(&n.to_be_bytes());
        tag
    }

    #[test]
    fn gets_are_counted_per_prediction() {
        let soft = SoftState::default();
        assert_eq!(soft.count_get(tag(1), 10), 1);
        assert_eq!(soft.count_get(tag(1), 10), 2);
        assert_eq!(soft.count_get(tag(2), 10), 1);
    }

    #[test]
    fn the_first_cancel_wins() {
        let soft = SoftState::default();
        assert_eq!(soft.canceled_at(&tag(1)), None);
        assert_eq!(soft.cancel(tag(1), 10, 50), 50);
        assert_eq!(soft.cancel(tag(1), 10, 80), 50);
        assert_eq!(soft.canceled_at(&tag(1)), Some(50));
    }

    #[test]
    fn the_state_stays_bounded_and_keeps_the_newest() {
        let soft = SoftState::default();
        let total = CAPACITY as u64 + 10;
        for n in 0..total {
            soft.count_get(tag(n), n);
        }
        assert!(soft.len() <= CAPACITY);
        assert_eq!(soft.count_get(tag(total - 1), total - 1), 2, "newest entry kept");
        assert_eq!(soft.count_get(tag(0), 0), 1, "oldest entry evicted");
    }
}
