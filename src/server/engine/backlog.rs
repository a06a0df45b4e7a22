//! The checks the provider budget has no room for yet, waiting their turn
//! best first, and the checker that makes them as the budget refills.
//!
//! A due check the budget denies joins this instance's backlog instead of
//! being tried again by every poll: nothing is written to the task (it
//! stays due in the database), and while anything waits here, a due check
//! that ranks after it joins too rather than take the budget itself — so
//! the budget goes where a check is worth most, not to whichever poll
//! comes first as it refills. The order ([`Rank`]):
//! 1. checks at a prediction's expected end (someone waits for exactly
//!    that check, [`Priority::Urgent`]), soonest end first;
//! 2. predictions' first checks (what learns their ends), newest first: a
//!    wave of them waits behind the ones that come after it, not the
//!    other way round (they come at most as fast as creates, well within
//!    the budget, so none waits for long);
//! 3. tasks a page is polling ([`Priority::Watched`]);
//! 4. the reconciler's ([`Priority::Background`]);
//!
//! the last two the task whose prediction should end soonest first (one
//! whose end is not known yet by its due time: a check now may find it
//! done, and tells its end; one that showed no progress at all by
//! [`schedule::no_end_before`]). The checker ([`spawn`]) takes the budget for
//! the head at the head's priority, and checks it.
//!
//! On PostgreSQL each instance keeps the backlog of the tasks it saw due;
//! the check's claim in the database keeps a task from being checked twice
//! when two instances wait for it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use super::budget::{Call, Priority, Spend};
use super::lifecycle::{self, Step};
use super::task::TaskRow;
use super::{queries, schedule};
use crate::error::Result;
use crate::server::ids::TaskId;
use crate::server::state::AppState;

/// Most checks one instance keeps waiting. A task that finds it full stays
/// due in the database: a later poll, or the reconciler, brings it back.
const MOST_WAITING: usize = 100_000;

/// Where a waiting check stands: smaller first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    /// 0 a check at an expected end, 1 a first check, 2 watched, 3
    /// background.
    class: u8,
    /// The prediction's expected end, or the task's due time; for a first
    /// check, the task's creation, newest first.
    at: i64,
}

impl Rank {
    /// The rank of `task`'s check at `priority`.
    pub fn of(task: &TaskRow, priority: Priority) -> Self {
        let end = schedule::task_end(task).or_else(|| schedule::no_end_before(task));
        let (class, at) = match (priority, end) {
            (Priority::Urgent, Some(end)) => (0, end),
            (Priority::Urgent, None) => (1, -task.created_at),
            (Priority::Watched, _) => (2, end.unwrap_or(task.next_check_at)),
            (Priority::Background, _) => (3, end.unwrap_or(task.next_check_at)),
        };
        Self { class, at }
    }

    fn priority(self) -> Priority {
        match self.class {
            0 | 1 => Priority::Urgent,
            2 => Priority::Watched,
            _ => Priority::Background,
        }
    }
}

/// One instance's waiting checks.
#[derive(Default)]
pub struct Backlog {
    waiting: Mutex<Waiting>,
    /// Wakes the checker: a check joined at the head.
    wake: tokio::sync::Notify,
}

#[derive(Default)]
struct Waiting {
    order: BTreeSet<(Rank, TaskId)>,
    tasks: HashMap<TaskId, Entry>,
}

/// A waiting task.
struct Entry {
    rank: Rank,
    /// Its model (whose budget its check spends).
    model: String,
    /// Its deadline: past it, the task is failed, not checked.
    deadline_at: i64,
}

/// What [`Backlog::join`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// It waits now, and did not before.
    New,
    /// It was waiting already (at its better rank, if this one was).
    Already,
    /// The backlog is full of better ones: it stays due, unlisted.
    Full,
}

impl Backlog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many checks wait.
    pub fn len(&self) -> usize {
        self.lock().tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `task` waits here for a check at `now` (not past its
    /// deadline).
    pub fn holds(&self, task: &TaskId, now: i64) -> bool {
        self.lock().tasks.get(task).is_some_and(|e| now < e.deadline_at)
    }

    /// Whether a check of `task` at `rank` must wait its turn: it waits
    /// already, or something better does.
    pub fn must_wait(&self, task: &TaskId, rank: Rank) -> bool {
        let waiting = self.lock();
        waiting.tasks.contains_key(task) || waiting.order.first().is_some_and(|(first, _)| *first < rank)
    }

    /// `task`'s check waits for the budget at `rank` (its better rank, when
    /// it waits already).
    pub fn join(&self, task: &TaskRow, rank: Rank) -> Joined {
        let (id, mut waiting) = (&task.id, self.lock());
        let joined = match waiting.tasks.get(id).map(|e| e.rank) {
            Some(old) if old <= rank => return Joined::Already,
            Some(old) => {
                waiting.order.remove(&(old, id.clone()));
                Joined::Already
            }
            None if waiting.tasks.len() < MOST_WAITING => Joined::New,
            None => match waiting.order.last().cloned() {
                Some(last) if rank < last.0 => {
                    waiting.order.remove(&last);
                    waiting.tasks.remove(&last.1);
                    Joined::New
                }
                _ => return Joined::Full,
            },
        };
        waiting.order.insert((rank, id.clone()));
        let entry = Entry { rank, model: task.model.clone(), deadline_at: task.deadline_at };
        waiting.tasks.insert(id.clone(), entry);
        let at_head = waiting.order.first().is_some_and(|(_, first)| first == id);
        drop(waiting);
        if at_head {
            self.wake.notify_one();
        }
        joined
    }

    /// The head: the best waiting check, its model and priority.
    fn head(&self) -> Option<(TaskId, String, Priority)> {
        let waiting = self.lock();
        let (rank, task) = waiting.order.first()?;
        let model = waiting.tasks.get(task).map(|e| e.model.clone()).unwrap_or_default();
        Some((task.clone(), model, rank.priority()))
    }

    /// `task` no longer waits.
    pub fn remove(&self, task: &TaskId) {
        let mut waiting = self.lock();
        if let Some(entry) = waiting.tasks.remove(task) {
            waiting.order.remove(&(entry.rank, task.clone()));
        }
    }

    /// About when `task`'s turn comes, in milliseconds from now, when the
    /// budget makes `per_second` checks: one budget interval for each
    /// check ahead of it, and its own. Counted up to `horizon_ms`' worth
    /// (a turn further off is told as `horizon_ms`); `None` when it does
    /// not wait here.
    pub fn turn_in_ms(&self, task: &TaskId, per_second: f64, horizon_ms: i64) -> Option<i64> {
        let waiting = self.lock();
        let rank = waiting.tasks.get(task)?.rank;
        if per_second <= 0.0 {
            return Some(horizon_ms);
        }
        let most = (per_second * horizon_ms as f64 / 1000.0).ceil() as usize;
        let ahead = waiting.order.range(..(rank, task.clone())).take(most).count();
        Some((((ahead + 1) as f64 * 1000.0 / per_second).ceil() as i64).min(horizon_ms))
    }
}

/// The checker: makes the backlog's checks as the budget allows, best
/// first, forever.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Some(head) = state.backlog.head() else {
                state.backlog.wake.notified().await;
                continue;
            };
            match serve(&state, head).await {
                Ok(None) => {}
                // Room comes back then, unless a better check joins first
                // (it may take what this one could not: a check at the end
                // may empty the bucket).
                Ok(Some(at)) => tokio::select! {
                    () = state.backlog.wake.notified() => {}
                    () = state.clock.sleep_until(at) => {}
                },
                Err(e) => {
                    tracing::warn!("backlog: {e}");
                    state.clock.sleep_until(state.clock.now_ms() + 1_000).await;
                }
            }
        }
    })
}

/// Checks the head if it is still due and the budget has room for it; when
/// to try again if it has none.
async fn serve(state: &AppState, (task_id, model, priority): (TaskId, String, Priority)) -> Result<Option<i64>> {
    let task = queries::load(&state.db, &task_id).await?;
    let now = state.clock.now_ms();
    // Checked meanwhile (by another instance, or this one's check at the
    // end), finished, or expiring (a poll or the reconciler fails it).
    let Some(task) = task.filter(|t| {
        let end_check_soon = state.rechecks.end_check_before(&t.id, now + schedule::check_interval_ms(state));
        lifecycle::step(t, now, end_check_soon) == Step::Check
    }) else {
        state.backlog.remove(&task_id);
        return Ok(None);
    };
    let budget = state.budget_for(&model);
    if let Spend::Denied { wait_ms } = budget.take(Call::Other, priority).await? {
        return Ok(Some(now + wait_ms.max(1)));
    }
    state.backlog.remove(&task_id);
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = lifecycle::check_granted(&state, task).await {
            tracing::warn!(task = %task_id, "check: {e}");
        }
    });
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::engine::State;

    fn task(n: u8, next_check_at: i64, end: Option<i64>) -> TaskRow {
        TaskRow {
            id: TaskId::from_db(format!("t{n}")),
            next_check_at,
            expected_end_at: end,
            ..TaskRow::example(State::Processing)
        }
    }

    fn order(backlog: &Backlog) -> Vec<TaskId> {
        let mut order = Vec::new();
        while let Some((task, _, _)) = backlog.head() {
            backlog.remove(&task);
            order.push(task);
        }
        order
    }

    #[test]
    fn the_check_worth_most_comes_first() {
        let backlog = Backlog::default();
        let long = task(1, 1_000, Some(600_000));
        let longer = task(2, 900, Some(700_000));
        let new = task(3, 2_000, None);
        let ending = task(4, 1_500, Some(5_000));
        let unwatched = task(5, 500, Some(3_000));
        let first = TaskRow { created_at: 100, ..task(6, 2_100, None) };
        let later_first = TaskRow { created_at: 200, ..task(7, 2_200, None) };
        for t in [&longer, &long, &new] {
            assert_eq!(backlog.join(t, Rank::of(t, Priority::Watched)), Joined::New);
        }
        for t in [&ending, &first, &later_first] {
            backlog.join(t, Rank::of(t, Priority::Urgent));
        }
        backlog.join(&unwatched, Rank::of(&unwatched, Priority::Background));
        // The check at an end; first checks, the newest first; the watched
        // ones, the new one (its end unknown, due at 2 s) before those
        // ending at 600 s and 700 s; the reconciler's last, though its end
        // is nearest.
        let expected = [&ending, &later_first, &first, &new, &long, &longer, &unwatched];
        assert_eq!(order(&backlog), expected.map(|t| t.id.clone()));
    }

    #[test]
    fn a_waiting_check_moves_up_never_down() {
        let backlog = Backlog::default();
        let t = task(1, 1_000, Some(9_000));
        let other = task(2, 1_000, Some(8_000));
        backlog.join(&t, Rank::of(&t, Priority::Background));
        backlog.join(&other, Rank::of(&other, Priority::Watched));
        assert_eq!(backlog.head().unwrap().0, other.id);
        // Its page polls it now: it moves up to the watched, by its end.
        assert_eq!(backlog.join(&t, Rank::of(&t, Priority::Watched)), Joined::Already);
        assert_eq!(backlog.len(), 2);
        // The reconciler finds it due again: it keeps its place.
        backlog.join(&t, Rank::of(&t, Priority::Background));
        assert_eq!(backlog.head().unwrap().2, Priority::Watched);
        assert_eq!(order(&backlog), [other.id.clone(), t.id.clone()]);
    }

    #[test]
    fn a_task_past_its_deadline_is_not_held() {
        let backlog = Backlog::default();
        let t = task(1, 1_000, None);
        backlog.join(&t, Rank::of(&t, Priority::Watched));
        assert!(backlog.holds(&t.id, t.deadline_at - 1));
        // The reconciler fails it then, though it waits for a check.
        assert!(!backlog.holds(&t.id, t.deadline_at));
        assert!(!backlog.holds(&task(2, 1_000, None).id, 0));
    }

    #[test]
    fn a_check_waits_behind_better_ones_only() {
        let backlog = Backlog::default();
        let long = task(1, 1_000, Some(600_000));
        let short = task(2, 2_000, Some(5_000));
        assert!(!backlog.must_wait(&long.id, Rank::of(&long, Priority::Watched)), "nothing waits");
        backlog.join(&long, Rank::of(&long, Priority::Watched));
        assert!(backlog.must_wait(&long.id, Rank::of(&long, Priority::Urgent)), "it waits already");
        assert!(!backlog.must_wait(&short.id, Rank::of(&short, Priority::Watched)), "it ends sooner");
        assert!(backlog.must_wait(&short.id, Rank::of(&short, Priority::Background)));
    }

    #[test]
    fn a_turn_is_told_by_the_checks_ahead() {
        let backlog = Backlog::default();
        let tasks: Vec<TaskRow> = (1..=20).map(|n| task(n, 0, Some(i64::from(n) * 1_000))).collect();
        for t in &tasks {
            backlog.join(t, Rank::of(t, Priority::Watched));
        }
        // Two checks a second: the first in 500 ms, the fourth in 2 s.
        assert_eq!(backlog.turn_in_ms(&tasks[0].id, 2.0, 3_000), Some(500));
        assert_eq!(backlog.turn_in_ms(&tasks[3].id, 2.0, 3_000), Some(2_000));
        // Further off than the horizon: told the horizon.
        assert_eq!(backlog.turn_in_ms(&tasks[19].id, 2.0, 3_000), Some(3_000));
        assert_eq!(backlog.turn_in_ms(&task(30, 0, None).id, 2.0, 3_000), None, "not waiting");
    }

    #[test]
    fn a_full_backlog_keeps_the_best() {
        let backlog = Backlog::default();
        {
            let mut waiting = backlog.lock();
            for n in 0..MOST_WAITING {
                let id = TaskId::new();
                let rank = Rank { class: 2, at: 1_000_000 + n as i64 };
                waiting.order.insert((rank, id.clone()));
                waiting.tasks.insert(id, Entry { rank, model: "m".into(), deadline_at: i64::MAX });
            }
        }
        let late = task(1, 0, Some(2_000_000));
        assert_eq!(backlog.join(&late, Rank::of(&late, Priority::Watched)), Joined::Full);
        let soon = task(2, 0, Some(5_000));
        assert_eq!(backlog.join(&soon, Rank::of(&soon, Priority::Watched)), Joined::New);
        assert_eq!(backlog.len(), MOST_WAITING);
        assert_eq!(backlog.head().unwrap().0, soon.id);
    }
}
