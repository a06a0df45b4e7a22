//! The C library's allocator, tuned for a server whose live heap is small
//! next to what its threads churn through.
//!
//! Under a sustained load the heap in use stays under 30 MiB (heaptrack,
//! make bench section 9), yet with glibc's defaults the resident set levels
//! at about 235 MiB, and at about 213 MiB with mimalloc: memory freed but
//! kept by the allocator. Two of glibc's defaults keep it. Each thread that
//! allocates while another holds the lock gets an arena of its own (up to
//! 8 per core), and each arena keeps what was freed in it. And a block
//! freed from `mmap` raises the size below which blocks come from the
//! arenas (up to 32 MiB), so after one password hash (19 MiB) or one
//! rendered image (2 MiB) every later one is carved from an arena and its
//! pages stay there. Two arenas, and blocks of [`MMAP_THRESHOLD`] or more
//! always mapped and unmapped, leave the level at about 60 MiB at the same
//! throughput (46 MiB on PostgreSQL; BENCHMARKS.md, section 9).
//!
//! An operator's own setting wins: `GLIBC_TUNABLES`, `MALLOC_ARENA_MAX` or
//! `MALLOC_MMAP_THRESHOLD_` in the environment leaves that parameter alone.

/// Arenas for every thread to share: the workers, the blocking pool and
/// SQLite's threads take turns, and a lock on a 2-core machine is rarely
/// contended for long.
pub const ARENAS: i32 = 2;
/// Blocks at least this large come from `mmap` and go back to the system
/// when freed: an image, an upload's part, a password hash's memory.
pub const MMAP_THRESHOLD: i32 = 512 * 1024;

/// A `mallopt` parameter this process sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Arenas(i32),
    MmapThreshold(i32),
}

/// The settings to make, given which environment variables are set.
pub fn settings(is_set: impl Fn(&str) -> bool) -> Vec<Setting> {
    if is_set("GLIBC_TUNABLES") {
        return Vec::new();
    }
    let mut out = Vec::new();
    if !is_set("MALLOC_ARENA_MAX") {
        out.push(Setting::Arenas(ARENAS));
    }
    if !is_set("MALLOC_MMAP_THRESHOLD_") {
        out.push(Setting::MmapThreshold(MMAP_THRESHOLD));
    }
    out
}

/// Applies [`settings`] for this process's environment. Call it first
/// thing in `main`, before any other thread exists.
pub fn tune() {
    for setting in settings(|name| std::env::var_os(name).is_some()) {
        apply(setting);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply(setting: Setting) {
    let (param, value) = match setting {
        Setting::Arenas(n) => (libc::M_ARENA_MAX, n),
        Setting::MmapThreshold(bytes) => (libc::M_MMAP_THRESHOLD, bytes),
    };
    // SAFETY: `mallopt` only changes the allocator's parameters, which
    // glibc reads under its own locks; both values are in their ranges.
    if unsafe { libc::mallopt(param, value) } != 1 {
        eprintln!("darkroom: the C library refused the malloc setting {setting:?}");
    }
}

/// Another C library keeps its own defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply(_: Setting) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_by_default_and_an_operators_variable_wins() {
        let none = |_: &str| false;
        assert_eq!(settings(none), [Setting::Arenas(2), Setting::MmapThreshold(512 * 1024)]);
        assert_eq!(settings(|v| v == "MALLOC_ARENA_MAX"), [Setting::MmapThreshold(512 * 1024)]);
        assert_eq!(settings(|v| v == "MALLOC_MMAP_THRESHOLD_"), [Setting::Arenas(2)]);
        assert_eq!(settings(|v| v == "GLIBC_TUNABLES"), []);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_large_block_is_mapped_even_after_one_was_freed() {
        // SAFETY: `mallinfo2` only reads the allocator's counters.
        let mapped = || unsafe { libc::mallinfo2() }.hblkhd;
        tune();
        // With glibc's default, freeing this mapped block would raise the
        // threshold past its size, and the next one would come from an
        // arena (and stay resident there once freed).
        drop(std::hint::black_box(vec![1u8; 4 << 20]));
        let before = mapped();
        let second = std::hint::black_box(vec![1u8; 4 << 20]);
        let grew = mapped().saturating_sub(before);
        drop(second);
        assert!(grew >= 4 << 20, "the second 4 MiB block was not mapped: mapped bytes grew by {grew}");
    }
}
