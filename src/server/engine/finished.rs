//! Finished tasks in memory. A task leaves `processing` exactly once and
//! never changes afterwards (its refund, if any, is written in the same
//! transaction), so a view read once stays true on every instance: polls of
//! finished tasks are answered from here without touching the database.
//! Processing tasks are never kept: they are read fresh on every poll.
//!
//! The one change a finished task can still see is its deletion. Each entry
//! keeps the owner's count of deleted tasks it was read under, and a poll
//! is answered from here only when the count its request read with the
//! session is the same (`sessions::task_deletions`): a deletion on any
//! instance bumps the count in the deleting transaction, so from then on
//! every instance reads the task from the database, where it is gone. An
//! entry remembered without a count (by the reconciler, a webhook, a
//! cancel) is not answered from until a poll has read it once. Every
//! instance also forgets what it remembered after [`TTL`].

use std::sync::Arc;

use super::task::TaskRow;
use crate::model::TaskView;
use crate::server::ids::{TaskId, UserId};

/// How many finished tasks each instance remembers (least recently used
/// first out); a miss only costs one database read.
const CAPACITY: usize = 8192;
/// How long an instance trusts what it remembers.
pub const TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// A finished task: whose it is, and what its owner sees.
pub struct Entry {
    pub owner: UserId,
    pub view: TaskView,
    remembered: std::time::Instant,
    /// The owner's count of deleted tasks when the task was read.
    task_deletions: Option<i64>,
}

pub struct Finished(quick_cache::sync::Cache<TaskId, Arc<Entry>>);

impl Default for Finished {
    fn default() -> Self {
        Self(quick_cache::sync::Cache::new(CAPACITY))
    }
}

impl Finished {
    /// The finished task `task_id`, if remembered under `task_deletions`,
    /// the owner's count of deleted tasks as this request read it.
    pub fn get(&self, task: &TaskId, task_deletions: Option<i64>) -> Option<Arc<Entry>> {
        self.0.get(task).filter(|e| {
            e.remembered.elapsed() < TTL && e.task_deletions.is_some() && e.task_deletions == task_deletions
        })
    }

    /// Forgets `task` (deleted).
    pub fn forget(&self, task: &TaskId) {
        self.0.remove(task);
    }

    /// Remembers `task` if it is finished, read while its owner's count of
    /// deleted tasks was `task_deletions` (read before the task; `None`
    /// when not known).
    pub fn remember(&self, task: &TaskRow, task_deletions: Option<i64>) {
        if task.state.is_finished() {
            self.0.insert(
                task.id.clone(),
                Arc::new(Entry {
                    owner: task.user_id.clone(),
                    view: task.view(),
                    remembered: std::time::Instant::now(),
                    task_deletions,
                }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::engine::task::State;

    fn task(state: State) -> TaskRow {
        TaskRow {
            prediction_id: None,
            progress: None,
            created_at: 0,
            deadline_at: 0,
            next_check_at: 0,
            num_outputs: 2,
            ..TaskRow::example(state)
        }
    }

    #[test]
    fn only_finished_tasks_are_remembered() {
        let cache = Finished::default();
        cache.remember(&task(State::Processing), Some(0));
        cache.remember(&task(State::Submitting), Some(0));
        let t1 = TaskId::from_db("t1".into());
        assert!(cache.get(&t1, Some(0)).is_none());
        cache.remember(&task(State::Completed), Some(0));
        let entry = cache.get(&t1, Some(0)).unwrap();
        assert_eq!(entry.owner.as_str(), "u1");
        assert_eq!(entry.view.image_url.as_deref(), Some("/images/t1"));
        assert_eq!(entry.view.image_urls, ["/images/t1/0", "/images/t1/1"]);
        cache.forget(&t1);
        assert!(cache.get(&t1, Some(0)).is_none());
    }

    #[test]
    fn an_entry_answers_only_under_the_deletion_count_it_was_read_with() {
        let cache = Finished::default();
        let t1 = TaskId::from_db("t1".into());
        cache.remember(&task(State::Completed), Some(3));
        assert!(cache.get(&t1, Some(3)).is_some());
        // The owner deleted a task since (on any instance): read it again.
        assert!(cache.get(&t1, Some(4)).is_none());
        assert!(cache.get(&t1, None).is_none());
        // Remembered without a count: never answered from until read.
        cache.remember(&task(State::Completed), None);
        assert!(cache.get(&t1, None).is_none());
        assert!(cache.get(&t1, Some(3)).is_none());
    }
}
