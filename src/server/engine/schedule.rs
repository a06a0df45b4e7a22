//! When to ask the provider next, and what to tell a page about it.
//!
//! - **The check interval**: at most one provider call per task per
//!   `DARKROOM_PROVIDER_CHECK_MS`, whoever asks (the claim in `store`) —
//!   longer when the tasks at the provider are more than the budget can
//!   check that often ([`spacing_ms`]): the provider budget is spent
//!   evenly over them, with a quarter kept for re-checks at an expected
//!   end, cancels and creates.
//! - **Re-checks at the expected end**: a check that sees a prediction
//!   running knows how far it got since it started; when the end it points
//!   to comes before the next poll (or reconciler pass) would, this instance
//!   checks again right then ([`recheck_at`]), so the task completes when
//!   the image is ready rather than up to a poll interval (or a spacing of
//!   regular checks) later. A new prediction gets its first such check
//!   without waiting for a poll ([`first_check`]); with webhooks on, the
//!   provider's own events do this.
//! - **Checks the budget has no room for** wait their turn, best first,
//!   in [`super::backlog`].
//! - **After a provider event** ([`after_event`]): news defers the next
//!   check to the expected end, never past a minute after the last check.
//! - **A page's poll advice** ([`advised`]): when the next poll is worth
//!   making — for a queued task, its place in the queue and how soon the
//!   budget reaches it.
//! - **The reconciler's picks** ([`due_now`]).

use crate::server::ids::TaskId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use super::budget::{Call, Priority};
use super::queries;
use super::task::{State, TaskRow};
use crate::error::Result;
use crate::model::TaskView;
use crate::provider::{Api, Prediction, steps_from_logs};
use crate::server::state::AppState;

/// The check interval in milliseconds.
pub fn check_interval_ms(state: &AppState) -> i64 {
    state.config.provider_check.as_millis() as i64
}

/// The share of the budget's other calls spent on regular checks; the rest
/// is for re-checks at an expected end, cancels and listings.
const CHECK_SHARE: f64 = 0.75;

/// How many tasks are at Replicate, counted at most once a second: what
/// the regular checks on its budget are spread over.
#[derive(Default)]
pub struct Pace {
    in_flight: AtomicI64,
    counted_at: AtomicI64,
}

/// Time between two regular checks of a task: the check interval, or
/// longer when `in_flight` tasks checked that often would spend more than
/// [`CHECK_SHARE`] of `calls_per_s`.
pub fn spacing(check_ms: i64, in_flight: i64, calls_per_s: Option<f64>) -> i64 {
    match calls_per_s {
        Some(rate) if rate > 0.0 => check_ms.max((in_flight as f64 * 1000.0 / (CHECK_SHARE * rate)).ceil() as i64),
        _ => check_ms,
    }
}

/// [`spacing`] now, counting the tasks at the provider anew when the last
/// count is a second old.
pub async fn spacing_ms(state: &AppState) -> i64 {
    let now = state.clock.now_ms();
    let pace = &state.pace;
    let counted_at = pace.counted_at.load(Ordering::Relaxed);
    if now - counted_at >= 1_000
        && pace.counted_at.compare_exchange(counted_at, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    {
        // Replicate's tasks: fal's spend a budget of their own.
        let fal: Vec<&str> = match state.fal {
            Some(_) => state.config.models.iter().filter(|m| m.api == Api::Fal).map(|m| m.id.as_str()).collect(),
            None => Vec::new(),
        };
        match queries::in_flight_count(&state.db, &fal).await {
            Ok(n) => pace.in_flight.store(n, Ordering::Relaxed),
            Err(e) => tracing::warn!("cannot count the tasks at the provider: {e}"),
        }
    }
    current_spacing_ms(state)
}

/// The spacing of `model`'s checks: [`spacing_ms`] on Replicate's budget,
/// the check interval on fal's (which has no limits to spread).
pub async fn spacing_for(state: &AppState, model: &str) -> i64 {
    if state.budget_for(model).per_second(Call::Other).is_none() {
        check_interval_ms(state)
    } else {
        spacing_ms(state).await
    }
}

/// [`spacing`] by the last count.
pub fn current_spacing_ms(state: &AppState) -> i64 {
    spacing(
        check_interval_ms(state),
        state.pace.in_flight.load(Ordering::Relaxed),
        state.budget.per_second(Call::Other),
    )
}

/// Most tasks one reconciler pass looks at.
const RECONCILE_BATCH: i64 = 500;

/// The unfinished tasks whose check or deadline has come, soonest first:
/// what one reconciler pass advances.
pub async fn due_now(state: &AppState) -> Result<Vec<TaskId>> {
    queries::due(&state.db, state.clock.now_ms(), RECONCILE_BATCH).await
}

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

/// After a check at `checked_at` saw a prediction still running, with its
/// expected `end` ([`expected_end_ms`] from when the answer arrived, not
/// when the check began: the model may have finished another step while
/// the answer was on its way): when to check once more, at that end (not
/// before the check interval has passed), if it comes before polls or the
/// reconciler would look again. The caller brings the task's next check
/// forward to it ([`store::check_by`](super::store::check_by)) — the
/// spacing of regular checks may put it much later, and a check before
/// `next_check_at` is never claimed — then [`recheck`]s it.
pub fn recheck_at(state: &AppState, end: Option<i64>, checked_at: i64) -> Option<i64> {
    let at = (end? + MARGIN_MS).max(checked_at + state.config.provider_check.as_millis() as i64);
    let horizon = (state.config.poll_interval.max(state.config.reconcile_interval).as_millis() as i64)
        .max(current_spacing_ms(state));
    (at <= checked_at + horizon).then_some(at)
}

/// Checks `task_id` once more at `at` ([`recheck_at`]) on this instance.
pub fn recheck(state: &AppState, task_id: &TaskId, at: i64) {
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
            state.clock.sleep_until(at).await;
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
            // Someone waits for exactly this check: the one at the end
            // stores the image; a first check learns when the prediction
            // ends, without which none can be timed there (one per create,
            // so the create budget bounds them: a fifth of the other
            // calls' at Replicate's limits).
            let priority = Priority::Urgent;
            let advanced = async {
                match queries::load(&state.db, &task_id).await? {
                    Some(task) => super::lifecycle::advance(&state, task, priority).await.map(drop),
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

/// Longest a task goes without a provider check while its events arrive,
/// counted from its last check (or its creation): events defer checks,
/// never past this.
pub const EVENT_TRUST_MS: i64 = 60_000;

/// Checks an event without progress defers.
const QUIET_CHECKS: i64 = 4;

/// When to ask the provider next after an event: events that keep coming
/// make status checks unneeded, so none is made before the prediction's
/// expected end (when its `completed` event is due: a check then catches a
/// lost one), at most a minute ahead. An event that says nothing of the end
/// (no progress yet) defers the check by a few intervals only: a short
/// prediction may send no `logs` before its end, and if its `completed` is
/// lost, a check must come soon.
///
/// `end` is the event's expected end ([`expected_end_ms`] at `now`);
/// `check_ms` is the spacing of regular checks ([`spacing`]): with many
/// tasks in flight the trust stretches with it, so events never make the
/// checks more frequent than the budget allows anyway.
pub fn after_event(end: Option<i64>, now: i64, check_ms: i64) -> i64 {
    let check_ms = check_ms.max(1);
    match end {
        Some(end) => (end + 1_000).clamp(now + check_ms, now + EVENT_TRUST_MS.max(check_ms)),
        None => now + QUIET_CHECKS * check_ms,
    }
}

/// The soonest a page is told to poll again.
pub const MIN_POLL_AFTER_MS: u64 = 500;
/// How long after a prediction's expected end its image is usually stored
/// (the server's own re-check comes 100 ms after it, then the download).
const STORE_MARGIN_MS: u64 = 400;

/// The server's advice for a page's next poll of an unfinished task: the
/// regular interval, or sooner when the prediction's expected `end` comes
/// before it — so the poll arrives when the image does.
pub fn poll_after_ms(end: Option<i64>, now: i64, interval_ms: u64) -> u64 {
    let interval = interval_ms.max(MIN_POLL_AFTER_MS);
    let Some(end) = end else { return interval };
    let remaining = (end - now).max(0) as u64;
    (remaining + STORE_MARGIN_MS).clamp(MIN_POLL_AFTER_MS, interval)
}

/// A task's expected end: the one its provider's own start time and
/// progress gave (`expected_end_ms`, stored with the reading), or else
/// extrapolated from its progress (`progress` percent, read at `read_at`)
/// as if the prediction had run since the task was created (late by the
/// time it took to start).
pub fn task_end(task: &TaskRow) -> Option<i64> {
    task.expected_end_at.or_else(|| extrapolated_end(task.progress, task.last_polled_at, task.created_at))
}

/// The soonest a task whose last reading showed no progress at all (0 %)
/// is likely to end: as if that reading had been 1 % — it ran that long
/// with nothing to show. Ranks checks ([`super::backlog`]); no page is
/// advised by it.
pub fn no_end_before(task: &TaskRow) -> Option<i64> {
    (task.progress == Some(0)).then(|| extrapolated_end(Some(1), task.last_polled_at, task.created_at)).flatten()
}

fn extrapolated_end(progress: Option<i64>, read_at: Option<i64>, created_ms: i64) -> Option<i64> {
    let (Some(p), Some(read_at)) = (progress.filter(|p| (1..100).contains(p)), read_at) else { return None };
    let ran = (read_at - created_ms).max(0);
    Some(created_ms + ran * 100 / p)
}

/// How long after this instance's re-check of a task its image is usually
/// stored (the provider's answer, the download and the write).
const STORED_AFTER_RECHECK_MS: u64 = 150;

/// The advice when this instance will re-check the task at `due` (the
/// prediction's expected end, from the provider's own start time and
/// progress): poll just after that check will have stored the image.
pub fn poll_after_recheck_ms(due: i64, now: i64, interval_ms: u64) -> u64 {
    let until = (due - now).max(0) as u64;
    (until + STORED_AFTER_RECHECK_MS).clamp(MIN_POLL_AFTER_MS, interval_ms.max(MIN_POLL_AFTER_MS))
}

/// The advice for a queued task at `position` (1 = next) when the budget
/// submits `creates_per_s`: about when its turn comes, polled at least
/// once an interval so its place is shown as it moves.
pub fn poll_after_queued_ms(position: Option<u32>, creates_per_s: Option<f64>, interval_ms: u64) -> u64 {
    let interval = interval_ms.max(MIN_POLL_AFTER_MS);
    match (position, creates_per_s) {
        (Some(p), Some(rate)) if rate > 0.0 => {
            ((f64::from(p) * 1000.0 / rate) as u64).clamp(MIN_POLL_AFTER_MS, interval)
        }
        _ => interval,
    }
}

/// Without webhooks only a check can end a task, and none comes before
/// `next_check_at`: the advice is never earlier, up to `ceiling` (the
/// spacing of checks, when the budget stretches it past the interval).
pub fn not_before_next_check(advice: u64, next_check_at: i64, now: i64, ceiling: u64) -> u64 {
    advice.max((next_check_at - now).max(0) as u64 + STORED_AFTER_RECHECK_MS).min(ceiling.max(advice))
}

/// A task's view with what an unfinished one carries: its place in the
/// queue while queued, and the poll advice — timed to this instance's
/// pending re-check when there is one (it is what stores the image), or to
/// its turn when its check waits for the budget ([`super::backlog`]), else
/// extrapolated from the progress, never before the next check can come.
pub async fn advised(state: &AppState, task: &TaskRow) -> crate::error::Result<TaskView> {
    let mut view = task.view();
    if task.state.is_finished() {
        return Ok(view);
    }
    let interval = state.config.poll_interval.as_millis() as u64;
    let now = state.clock.now_ms();
    view.poll_after_ms = Some(match task.state {
        State::Queued => {
            view.queue_position = state.queue.position(state, &task.id).await?;
            poll_after_queued_ms(view.queue_position, state.budget.per_second(Call::Create), interval)
        }
        // A re-check of its own, else its turn in the backlog (only walked
        // when there is no re-check), else by its expected end.
        _ => match state
            .rechecks
            .due(&task.id)
            .or_else(|| turn_in_backlog(state, task, interval as i64).map(|turn| now + turn))
        {
            Some(at) => poll_after_recheck_ms(at, now, interval),
            None => {
                let advice = poll_after_ms(task_end(task), now, interval);
                if state.webhooks.is_some() || task.state != State::Processing {
                    advice
                } else {
                    let ceiling = interval.max(current_spacing_ms(state).max(0) as u64);
                    not_before_next_check(advice, task.next_check_at, now, ceiling)
                }
            }
        },
    });
    Ok(view)
}

/// When `task`'s check, waiting for the budget, is about to be made (up to
/// `horizon_ms`); `None` when it does not wait.
fn turn_in_backlog(state: &AppState, task: &TaskRow, horizon_ms: i64) -> Option<i64> {
    let rate = state.budget_for(&task.model).per_second(Call::Other)?;
    state.backlog.turn_in_ms(&task.id, rate, horizon_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_advice_points_at_the_expected_end() {
        // No end known: the regular interval.
        assert_eq!(poll_after_ms(None, 5_000, 3_000), 3_000);
        // The end at 10 s; asked at 8 s, 2 s to go plus the time to store
        // the image.
        assert_eq!(poll_after_ms(Some(10_000), 8_000, 3_000), 2_400);
        // Asked a second later: the advice moves with the clock.
        assert_eq!(poll_after_ms(Some(10_000), 9_000, 3_000), 1_400);
        // Past the expected end: the soonest.
        assert_eq!(poll_after_ms(Some(10_000), 12_000, 3_000), 500);
        // Far from the end: never more than the interval.
        assert_eq!(poll_after_ms(Some(20_000), 2_000, 3_000), 3_000);
        // A short configured interval still bounds it, but not below 500.
        assert_eq!(poll_after_ms(Some(8_000), 4_000, 1_000), 1_000);
        assert_eq!(poll_after_ms(None, 0, 100), 500);
    }

    #[test]
    fn a_task_ends_when_its_provider_said_else_by_its_progress() {
        let mut task = TaskRow { progress: None, created_at: 0, ..TaskRow::example(State::Processing) };
        // No progress yet, or none that points anywhere: no end.
        assert_eq!(task_end(&task), None);
        task.last_polled_at = Some(4_000);
        task.progress = Some(0);
        assert_eq!(task_end(&task), None);
        // 80 % read at 8 s, as if it ran since the task was created: 10 s.
        (task.progress, task.last_polled_at) = (Some(80), Some(8_000));
        assert_eq!(task_end(&task), Some(10_000));
        // The provider's own start and steps said 9.2 s (it started late):
        // that is the end.
        task.expected_end_at = Some(9_200);
        assert_eq!(task_end(&task), Some(9_200));
        // Nothing to show after 5 s: not before 500 s, as if it were at 1 %.
        let stuck = TaskRow { progress: Some(0), last_polled_at: Some(5_000), created_at: 0, ..task.clone() };
        assert_eq!(no_end_before(&stuck), Some(500_000));
        assert_eq!(no_end_before(&task), None, "it shows progress");
        assert_eq!(no_end_before(&TaskRow { last_polled_at: None, ..stuck }), None, "never read");
    }

    #[test]
    fn checks_are_spread_so_the_budget_holds() {
        // 40 calls a second, 30 of them for regular checks.
        assert_eq!(spacing(2_000, 10, Some(40.0)), 2_000, "few tasks: the interval");
        assert_eq!(spacing(2_000, 60, Some(40.0)), 2_000);
        assert_eq!(spacing(2_000, 100, Some(40.0)), 3_334);
        assert_eq!(spacing(2_000, 1_000, Some(40.0)), 33_334);
        assert_eq!(spacing(2_000, 10_000, Some(40.0)), 333_334);
        assert_eq!(spacing(2_000, 10_000, None), 2_000, "no limit");
    }

    #[test]
    fn a_queued_task_is_told_when_its_turn_comes() {
        // Fifth in line at 8 creates a second: in about 625 ms.
        assert_eq!(poll_after_queued_ms(Some(5), Some(8.0), 3_000), 625);
        assert_eq!(poll_after_queued_ms(Some(1), Some(8.0), 3_000), 500, "never sooner than 500 ms");
        assert_eq!(poll_after_queued_ms(Some(900), Some(8.0), 3_000), 3_000, "its place is shown as it moves");
        assert_eq!(poll_after_queued_ms(None, Some(8.0), 3_000), 3_000);
    }

    #[test]
    fn without_webhooks_no_poll_is_advised_before_the_next_check() {
        // The progress says the end is in 1 s, but the budget allows the
        // next check in 20 s.
        assert_eq!(not_before_next_check(1_000, 30_000, 10_000, 33_000), 20_150);
        assert_eq!(not_before_next_check(1_000, 50_000, 10_000, 33_000), 33_000, "at most the spacing");
        assert_eq!(not_before_next_check(2_400, 9_000, 10_000, 3_000), 2_400, "a check already due: the advice");
    }

    #[test]
    fn the_poll_advice_follows_a_pending_re_check() {
        // The re-check at 10 s stores the image; the page comes just after.
        assert_eq!(poll_after_recheck_ms(10_000, 8_000, 3_000), 2_150);
        assert_eq!(poll_after_recheck_ms(10_000, 9_900, 3_000), 500, "never sooner than 500 ms");
        assert_eq!(poll_after_recheck_ms(10_000, 12_000, 3_000), 500, "a late re-check: soon");
        assert_eq!(poll_after_recheck_ms(60_000, 0, 3_000), 3_000, "never later than the interval");
    }

    fn event(progress: Option<u8>, started_ms_ago: i64, now: i64) -> Prediction {
        let started = std::time::UNIX_EPOCH + std::time::Duration::from_millis((now - started_ms_ago) as u64);
        let json = serde_json::json!({
            "id": "p1",
            "status": "processing",
            "started_at": humantime::format_rfc3339_millis(started).to_string(),
            "logs": progress.map(|p| format!("{p}%|████ | {}/100", p)).unwrap_or_default(),
        });
        Prediction::from_json(json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn events_defer_checks_until_the_expected_end() {
        let now = 1_800_000_000_000;
        // 50 % after 4 s: the end is due in 4 s; check a second after it.
        assert_eq!(after_event(expected_end_ms(&event(Some(50), 4_000, now), now), now, 2_000), now + 5_000);
        // A long one: at most a minute without a check.
        assert_eq!(after_event(expected_end_ms(&event(Some(1), 10_000, now), now), now, 2_000), now + 60_000);
        // Nearly done: never sooner than the check interval.
        assert_eq!(after_event(expected_end_ms(&event(Some(99), 10_000, now), now), now, 2_000), now + 2_000);
        // No progress yet: a few intervals (a lost `completed` of a short
        // prediction must not wait a minute).
        assert_eq!(after_event(expected_end_ms(&event(None, 1_000, now), now), now, 2_000), now + 8_000);
    }

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
