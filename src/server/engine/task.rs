//! A task row as stored, its internal state, and its view as users see it.

use sqlx::any::AnyRow;

use crate::error::{AppError, Result};
use crate::model::{TaskStatus, TaskView};
use crate::server::catalogue::MAX_OUTPUTS;
use crate::server::clock::rfc3339;
use crate::server::ids::{TaskId, UserId};
use crate::server::reads::{Columns, ReadRow};

/// The columns every read of a task selects, with the refund flag taken from
/// the ledger (the one source of truth for money), as BIGINT like every
/// integer column: native PostgreSQL decoding (the point reads) does not
/// widen an INT4 into an i64.
///
/// The flag is a count of the task's refund entry (0 or 1: `entry_key` is
/// unique), a scalar subquery, so it is always a probe of the ledger's
/// unique index per task. An `EXISTS` there lets PostgreSQL's planner
/// hash the whole ledger instead whenever it expects more than a handful
/// of tasks: a history page of 20 from an account of 200 tasks, or a batch
/// of provider events read before the tables had statistics, scanned every
/// ledger entry.
pub const COLUMNS: &str = "t.id, t.user_id, t.prompt, t.model, t.cost, t.status, t.prediction_id, t.progress, \
     t.error, t.object_key, t.created_at, t.finished_at, t.deadline_at, t.next_check_at, t.last_polled_at, \
     t.aspect_ratio, t.num_outputs, t.seed, t.negative_prompt, t.input_key, t.source_task_id, t.scale, \
     t.provider_queue, t.expected_end_at, \
     CAST((SELECT COUNT(*) FROM credit_ledger l WHERE l.entry_key = 'refund:' || t.id) AS BIGINT) AS refunded";

/// The states of a task not yet finished, as an SQL list (for `concat!`).
macro_rules! unfinished {
    () => {
        "('queued', 'submitting', 'processing')"
    };
}
pub(crate) use unfinished;

/// The states of a task sent (or being sent) to the provider.
macro_rules! in_flight {
    () => {
        "('submitting', 'processing')"
    };
}
pub(crate) use in_flight;

/// Internal state of a task, including the `submitting` step users never see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Charged, waiting for room in the provider's budget.
    Queued,
    Submitting,
    Processing,
    Completed,
    Failed,
    Canceled,
}

impl State {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "submitting" => Self::Submitting,
            "processing" => Self::Processing,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "canceled" => Self::Canceled,
            _ => return None,
        })
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled)
    }
}

/// One row of `tasks`.
#[derive(Debug, Clone)]
pub struct TaskRow {
    pub id: TaskId,
    pub user_id: UserId,
    pub prompt: String,
    pub model: String,
    pub cost: i64,
    pub state: State,
    pub prediction_id: Option<String>,
    pub progress: Option<i64>,
    pub error: Option<String>,
    pub object_key: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub deadline_at: i64,
    pub next_check_at: i64,
    /// When the provider's state (and so `progress`) was last read.
    pub last_polled_at: Option<i64>,
    pub refunded: bool,
    pub aspect_ratio: Option<String>,
    /// Images asked for (1–4).
    pub num_outputs: u8,
    /// Asked for, or reported by the provider.
    pub seed: Option<u32>,
    pub negative_prompt: Option<String>,
    /// The task's copy of the image it started from.
    pub input_key: Option<String>,
    /// An upscale: the task whose image it makes larger.
    pub source_task_id: Option<String>,
    /// An upscale: by how much.
    pub scale: Option<u8>,
    /// Its place in the provider's own queue (0: next), while it waits
    /// there.
    pub provider_queue: Option<u32>,
    /// When its prediction should end, as the provider's own start time and
    /// progress said at the last reading that changed the progress.
    pub expected_end_at: Option<i64>,
}

#[cfg(test)]
impl TaskRow {
    /// A task to test with: a processing one's fields, in `state`.
    pub fn example(state: State) -> Self {
        Self {
            id: crate::server::ids::TaskId::from_db("t1".into()),
            user_id: crate::server::ids::UserId::from_db("u1".into()),
            prompt: "a cat".into(),
            model: "m".into(),
            cost: 10,
            state,
            prediction_id: Some("p1".into()),
            progress: Some(40),
            error: None,
            object_key: None,
            created_at: 1_000,
            finished_at: None,
            deadline_at: 601_000,
            next_check_at: 5_000,
            last_polled_at: None,
            refunded: false,
            aspect_ratio: None,
            num_outputs: 1,
            seed: None,
            negative_prompt: None,
            input_key: None,
            source_task_id: None,
            scale: None,
            provider_queue: None,
            expected_end_at: None,
        }
    }
}

impl ReadRow for TaskRow {
    fn read(r: &impl Columns) -> Result<Self> {
        let status: String = r.get("status")?;
        Ok(Self {
            id: TaskId::from_db(r.get("id")?),
            user_id: UserId::from_db(r.get("user_id")?),
            prompt: r.get("prompt")?,
            model: r.get("model")?,
            cost: r.get("cost")?,
            state: State::parse(&status).ok_or_else(|| AppError::internal(format!("unknown task status {status}")))?,
            prediction_id: r.get("prediction_id")?,
            progress: r.get("progress")?,
            error: r.get("error")?,
            object_key: r.get("object_key")?,
            created_at: r.get("created_at")?,
            finished_at: r.get("finished_at")?,
            deadline_at: r.get("deadline_at")?,
            next_check_at: r.get("next_check_at")?,
            last_polled_at: r.get("last_polled_at")?,
            refunded: r.get::<i64>("refunded")? != 0,
            aspect_ratio: r.get("aspect_ratio")?,
            num_outputs: r.get::<i64>("num_outputs")?.clamp(1, i64::from(MAX_OUTPUTS)) as u8,
            seed: r.get::<Option<i64>>("seed")?.and_then(|s| u32::try_from(s).ok()),
            negative_prompt: r.get("negative_prompt")?,
            input_key: r.get("input_key")?,
            source_task_id: r.get("source_task_id")?,
            scale: r.get::<Option<i64>>("scale")?.and_then(|s| u8::try_from(s).ok()),
            provider_queue: r.get::<Option<i64>>("provider_queue")?.and_then(|q| u32::try_from(q).ok()),
            expected_end_at: r.get("expected_end_at")?,
        })
    }
}

impl TaskRow {
    pub fn from_row(r: &AnyRow) -> Result<Self> {
        Self::read(r)
    }

    /// What the owner sees.
    pub fn view(&self) -> TaskView {
        let status = match self.state {
            State::Queued => TaskStatus::Queued,
            State::Submitting | State::Processing => TaskStatus::Processing,
            State::Completed => TaskStatus::Completed,
            State::Failed => TaskStatus::Failed,
            State::Canceled => TaskStatus::Canceled,
        };
        TaskView {
            id: self.id.to_string(),
            status,
            prompt: self.prompt.clone(),
            model: self.model.clone(),
            created_at: rfc3339(self.created_at),
            created_ms: self.created_at,
            finished_ms: self.finished_at,
            image_url: (status == TaskStatus::Completed).then(|| format!("/images/{}", self.id)),
            image_urls: match status {
                TaskStatus::Completed => (0..self.num_outputs).map(|n| format!("/images/{}/{n}", self.id)).collect(),
                _ => Vec::new(),
            },
            error: self.error.clone().filter(|_| status == TaskStatus::Failed),
            refunded: self.refunded,
            progress: match status {
                TaskStatus::Completed => Some(100),
                _ => self.progress.map(|p| p.clamp(0, 100) as u8),
            },
            cost: self.cost,
            poll_after_ms: None,
            // A queued task's place in our queue is the scheduler's to say;
            // a processing one's in the provider's (1 = next) is stored.
            queue_position: match status {
                TaskStatus::Processing => self.provider_queue.map(|q| q.saturating_add(1)),
                _ => None,
            },
            seed: self.seed,
            aspect_ratio: self.aspect_ratio.clone(),
            num_outputs: self.num_outputs,
            negative_prompt: self.negative_prompt.clone(),
            input_url: self.input_key.as_ref().map(|_| format!("/images/{}/input", self.id)),
            source_task_id: self.source_task_id.clone(),
            scale: self.scale,
        }
    }
}
