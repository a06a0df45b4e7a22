//! Checking again when a prediction should end. A check that sees a
//! prediction running knows how far it got since it started; when the end
//! it points to comes before the next poll (or reconciler pass) would, this
//! instance checks again right then, so the task completes when the image
//! is ready rather than up to a poll interval later. The extra check goes
//! through the same claim as every other, so the provider is still asked at
//! most once per task per check interval.
//!
//! A new prediction gets its first such check without waiting for a poll:
//! at the end of its first check interval (`first_check`). Without it the
//! first reading of the progress came with the page's first poll, a poll
//! interval after submitting, and a short task's end was seen only at the
//! poll after that — on average half an interval late. With webhooks on,
//! the provider's own events do this and the first check is skipped.

use crate::server::ids::TaskId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::row;
use crate::provider::{Prediction, steps_from_logs};
use crate::server::db;
use crate::server::state::AppState;

/// Checked this long after the expected end (the estimate is rounded to a
/// whole percent).
const MARGIN_MS: i64 = 100;

/// Pending re-checks of this instance: task id → when. One timer per task;
/// a newer estimate moves it.
#[derive(Default)]
pub struct Rechecks(Mutex<HashMap<TaskId, Pending>>);

#[derive(Clone, Copy)]
struct Pending {
    at: i64,
    /// Timed at the prediction's expected end (not only the first check).
    at_end: bool,
}

impl Rechecks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Pending>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many are pending.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When this instance will check `task` again, if it will.
    pub fn due(&self, task: &TaskId) -> Option<i64> {
        self.lock().get(task).map(|p| p.at)
    }

    /// Whether this instance will check `task` at its expected end, and
    /// before `at`. (A pending first check does not count: it knows nothing
    /// a check now would not.)
    pub fn end_check_before(&self, task: &TaskId, at: i64) -> bool {
        self.lock().get(task).is_some_and(|p| p.at_end && p.at < at)
    }
}

/// When a running prediction should end, from its `started_at` and its
/// logs as they were at `now` (or earlier: `now` must not come before the
/// answer that carried them). `None` without a start and some progress.
///
/// With a tqdm bar (`k/n` steps at a rate), the last step ended within one
/// step before `now`, so the end lies in `now + (n−k−1)…(n−k)` steps. When
/// the bar started with the prediction, `started_at + n` steps says where
/// in that window: used when it falls inside it. Otherwise (time before the
/// bar, such as loading weights) the late end of the window: checking
/// early costs a whole check interval, late only the difference.
///
/// Without a bar: extrapolated from the last percentage, `started_at +
/// ran × 100 / progress` (late by up to what the truncated percentage
/// hides).
pub fn expected_end_ms(prediction: &Prediction, now: i64) -> Option<i64> {
    let started = humantime::parse_rfc3339_weak(prediction.started_at.as_deref()?).ok()?;
    let started = started.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64;
    let ran = now - started;
    if ran <= 0 {
        return None;
    }
    if let Some(steps) = prediction.logs.as_deref().and_then(steps_from_logs).filter(|s| s.done > 0) {
        let left = f64::from(steps.total - steps.done) * steps.step_ms;
        let (earliest, latest) = (now + (left - steps.step_ms) as i64, now + left as i64);
        let from_start = started + (f64::from(steps.total) * steps.step_ms) as i64;
        return Some(if (earliest..=latest).contains(&from_start) { from_start } else { latest });
    }
    let progress = i64::from(prediction.progress?);
    (progress > 0).then(|| started + ran * 100 / progress.min(100))
}

/// After a check at `checked_at` saw `prediction` still running: schedules
/// one more check at its expected end (not before the check interval has
/// passed) when that comes before polls or the reconciler would look again.
pub fn schedule(state: &AppState, task_id: &TaskId, prediction: &Prediction, checked_at: i64) {
    // From when the answer arrived, not when the check began: the model
    // may have finished another step while the answer was on its way.
    let Some(end) = expected_end_ms(prediction, db::now_ms().max(checked_at)) else { return };
    let at = (end + MARGIN_MS).max(checked_at + state.config.provider_check.as_millis() as i64);
    let horizon = state.config.poll_interval.max(state.config.reconcile_interval).as_millis() as i64;
    if at > checked_at + horizon {
        return;
    }
    check_at(state, task_id, Pending { at, at_end: true });
}

/// After `submit` stored the prediction with its first check due at
/// `due`: checks it then, so its progress (and from it the expected end)
/// is known before the page's first poll. Not with webhooks on: the
/// provider's `start` and `logs` events bring the same news unasked.
pub fn first_check(state: &AppState, task_id: &TaskId, due: i64) {
    if state.config.public_url.is_some() {
        return;
    }
    check_at(state, task_id, Pending { at: due, at_end: false });
}

/// Checks `task_id` at `at` (ms since the epoch) on this instance; a
/// pending check of the same task is moved when the new time is later.
fn check_at(state: &AppState, task_id: &TaskId, pending: Pending) {
    let at = pending.at;
    if state.rechecks.lock().insert(task_id.clone(), pending).is_some() {
        return; // the pending timer picks up the new time
    }
    let state = state.clone();
    let task_id = task_id.clone();
    tokio::spawn(async move {
        let mut at = at;
        loop {
            tokio::time::sleep(Duration::from_millis((at - db::now_ms()).max(0) as u64)).await;
            {
                let mut pending = state.rechecks.lock();
                match pending.get_mut(&task_id) {
                    // A newer estimate moved it: sleep on.
                    Some(p) if p.at > at => {
                        at = p.at;
                        continue;
                    }
                    // Running: it stays listed until it is done (the poll
                    // advice of a task being stored points at it), but
                    // polls meanwhile are not held back for it.
                    Some(p) => p.at_end = false,
                    None => {}
                }
            }
            let advanced = async {
                match row::load(&state.reads, &task_id).await? {
                    Some(task) => super::advance(&state, task).await.map(drop),
                    None => Ok(()),
                }
            }
            .await;
            if let Err(e) = advanced {
                tracing::warn!(task = %task_id, "re-check: {e}");
            }
            let mut pending = state.rechecks.lock();
            match pending.get(&task_id) {
                // The check scheduled the next one (it saw the task running).
                Some(p) if p.at > at => at = p.at,
                _ => {
                    pending.remove(&task_id);
                    break;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(progress: Option<u8>, started_at: Option<&str>) -> Prediction {
        let json = serde_json::json!({
            "id": "p1",
            "status": "processing",
            "started_at": started_at,
            "logs": progress.map(|p| format!("{p:>3}%|█████     | 15/30")),
        });
        Prediction::from_json(json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn the_end_is_extrapolated_from_progress_since_start() {
        // Started at 00:00:10 UTC on 1 Jan 1970, half done 4 s later: ends at 18 s.
        let p = running(Some(50), Some("1970-01-01T00:00:10.000Z"));
        assert_eq!(expected_end_ms(&p, 14_000), Some(18_000));
        // Replicate's microseconds parse too.
        let p = running(Some(25), Some("1970-01-01T00:00:10.000000Z"));
        assert_eq!(expected_end_ms(&p, 11_000), Some(14_000));
    }

    fn with_bar(line: &str, started_at: &str) -> Prediction {
        let json = serde_json::json!({
            "id": "p1",
            "status": "processing",
            "started_at": started_at,
            "logs": format!("Using seed: 1\n  0%|          | 0/30 [00:00<?, ?it/s]\r{line}"),
        });
        Prediction::from_json(json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_tqdm_bar_that_started_with_the_prediction_gives_its_end_to_the_step() {
        // 12 of 30 steps at 4 it/s, started at 10 s: the bar ends at 17.5 s,
        // inside the window the steps leave at 13.1 s (17.35–17.6 s).
        let p = with_bar(" 40%|████      | 12/30 [00:03<00:04,  4.00it/s]", "1970-01-01T00:00:10Z");
        assert_eq!(expected_end_ms(&p, 13_100), Some(17_500));
        // The percentage alone would say 10 s + 3.1 s × 100 / 40 = 17.75 s.
        assert_eq!(p.progress, Some(40));
    }

    #[test]
    fn a_tqdm_bar_that_started_late_gives_the_late_end_of_its_window() {
        // Started at 10 s but the bar began after 2 s of loading: at 15.1 s,
        // 12 steps done at 4 it/s leaves 4.5 s, so the end is by 19.6 s; the
        // start says 17.5 s, outside the window, so it is not trusted.
        let p = with_bar(" 40%|████      | 12/30 [00:03<00:04,  4.00it/s]", "1970-01-01T00:00:10Z");
        assert_eq!(expected_end_ms(&p, 15_100), Some(19_600));
    }

    #[test]
    fn no_estimate_without_progress_or_start() {
        assert_eq!(expected_end_ms(&running(None, Some("1970-01-01T00:00:10Z")), 14_000), None);
        assert_eq!(expected_end_ms(&running(Some(0), Some("1970-01-01T00:00:10Z")), 14_000), None);
        assert_eq!(expected_end_ms(&running(Some(50), None), 14_000), None);
        assert_eq!(expected_end_ms(&running(Some(50), Some("yesterday")), 14_000), None);
        // A start in the future (clock skew) says nothing.
        assert_eq!(expected_end_ms(&running(Some(50), Some("1970-01-01T00:00:20Z")), 14_000), None);
    }
}
