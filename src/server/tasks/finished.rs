//! Finished tasks in memory. A task leaves `processing` exactly once and
//! never changes afterwards (its refund, if any, is written in the same
//! transaction), so a view read once stays true on every instance: polls of
//! finished tasks are answered from here without touching the database.
//! Processing tasks are never kept: they are read fresh on every poll.
//!
//! The one change a finished task can still see is its deletion: the
//! instance that deletes it forgets it at once, and every instance forgets
//! what it remembered after [`TTL`], so another instance may answer a
//! deleted task's poll (its owner's only; its image, share link and history
//! entry are gone everywhere at once) for at most that long.

use std::sync::Arc;

use super::row::TaskRow;
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
}

pub struct Finished(quick_cache::sync::Cache<TaskId, Arc<Entry>>);

impl Default for Finished {
    fn default() -> Self {
        Self(quick_cache::sync::Cache::new(CAPACITY))
    }
}

impl Finished {
    /// The finished task `task_id`, if remembered.
    pub fn get(&self, task: &TaskId) -> Option<Arc<Entry>> {
        self.0.get(task).filter(|e| e.remembered.elapsed() < TTL)
    }

    /// Forgets `task` (deleted).
    pub fn forget(&self, task: &TaskId) {
        self.0.remove(task);
    }

    /// Remembers `task` if it is finished.
    pub fn remember(&self, task: &TaskRow) {
        if task.state.is_finished() {
            self.0.insert(
                task.id.clone(),
                Arc::new(Entry {
                    owner: task.user_id.clone(),
                    view: task.view(),
                    remembered: std::time::Instant::now(),
                }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::tasks::row::State;

    fn task(state: State) -> TaskRow {
        TaskRow {
            id: TaskId::from_db("t1".into()),
            user_id: UserId::from_db("u1".into()),
            prompt: "a cat".into(),
            model: "m".into(),
            cost: 10,
            state,
            prediction_id: None,
            progress: None,
            error: None,
            object_key: None,
            created_at: 0,
            finished_at: None,
            deadline_at: 0,
            next_check_at: 0,
            last_polled_at: None,
            refunded: false,
            aspect_ratio: None,
            num_outputs: 2,
            seed: None,
            negative_prompt: None,
        }
    }

    #[test]
    fn only_finished_tasks_are_remembered() {
        let cache = Finished::default();
        cache.remember(&task(State::Processing));
        cache.remember(&task(State::Submitting));
        let t1 = TaskId::from_db("t1".into());
        assert!(cache.get(&t1).is_none());
        cache.remember(&task(State::Completed));
        let entry = cache.get(&t1).unwrap();
        assert_eq!(entry.owner.as_str(), "u1");
        assert_eq!(entry.view.image_url.as_deref(), Some("/images/t1"));
        assert_eq!(entry.view.image_urls, ["/images/t1/0", "/images/t1/1"]);
        cache.forget(&t1);
        assert!(cache.get(&t1).is_none());
    }
}
