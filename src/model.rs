//! What crosses the wire between the server and the browser (and any HTTP
//! client of `/api/…`): the shapes of the public contract.

use serde::{Deserialize, Serialize};

/// The signed-in person as `/api/me` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub email: String,
    pub credits: i64,
}

/// A task's state as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Processing,
    Completed,
    Failed,
    /// Stopped by its owner; the cost was refunded.
    Canceled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    pub fn is_finished(self) -> bool {
        self != Self::Processing
    }
}

/// One generation task, as polls and history answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    pub id: String,
    pub status: TaskStatus,
    pub prompt: String,
    pub model: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Milliseconds since the Unix epoch (for elapsed-time displays).
    pub created_ms: i64,
    /// When the task finished, in milliseconds since the Unix epoch.
    pub finished_ms: Option<i64>,
    /// `/images/{id}` once completed.
    pub image_url: Option<String>,
    /// Why it failed, in words for a person.
    pub error: Option<String>,
    /// Whether the cost was given back.
    pub refunded: bool,
    /// 0–100 while the provider reports progress.
    pub progress: Option<u8>,
    /// Credits this task cost.
    pub cost: i64,
    /// While unfinished: the server's advice for the next poll, in ms (the
    /// regular interval, shorter when the end is near; never under 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_after_ms: Option<u64>,
}

impl TaskView {
    /// A task known only by what the page submitted, shown until the first
    /// poll answers for it.
    pub fn pending(id: String, prompt: String, model: String, cost: i64, created_ms: i64) -> Self {
        Self {
            id,
            status: TaskStatus::Processing,
            prompt,
            model,
            created_at: String::new(),
            created_ms,
            finished_ms: None,
            image_url: None,
            error: None,
            refunded: false,
            progress: None,
            cost,
            poll_after_ms: None,
        }
    }
}

/// Answer of `/api/generate_image`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generated {
    pub task_id: String,
}

/// A page of `/api/list_history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub items: Vec<TaskView>,
    pub next_cursor: Option<String>,
}

/// A model people may pick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelOption {
    /// `owner/name` (optionally `:version`), as sent to the provider.
    pub id: String,
    /// What the picker shows.
    pub name: String,
}

/// What the generator page needs to render: models, price, pace and the
/// task to resume after a reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratorInfo {
    pub models: Vec<ModelOption>,
    pub cost: i64,
    pub poll_interval_ms: u64,
    pub resume: Option<TaskView>,
}

/// What moved a balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerKind {
    Grant,
    Charge,
    Refund,
}

/// One row of a person's credit ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The row's number (newer rows have larger ones).
    pub id: i64,
    /// RFC 3339, UTC.
    pub at: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub kind: LedgerKind,
    /// Signed: grants and refunds positive, charges negative.
    pub amount: i64,
    /// The task charged or refunded (it may since have been deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Why an operator granted credits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// In words: "Sign-up credits", "Image: <prompt>", "Refund: <prompt>",
    /// "Granted: <reason>", "Image (deleted)".
    pub what: String,
    /// Whether the task still exists.
    pub task_exists: bool,
    /// The task's image, while it exists and completed (the page links it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
}

/// A page of `/api/list_ledger`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerPage {
    pub items: Vec<LedgerEntry>,
    pub next_cursor: Option<String>,
}

/// Answer of `/api/share_image`: the public link, relative to the site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareLink {
    pub url: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_view_has_the_contracts_json_shape() {
        let view = TaskView {
            id: "t".into(),
            status: TaskStatus::Completed,
            prompt: "a cat".into(),
            model: "a/b".into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            created_ms: 0,
            finished_ms: Some(1),
            image_url: Some("/images/t".into()),
            error: None,
            refunded: false,
            progress: Some(100),
            cost: 10,
            poll_after_ms: None,
        };
        let json = serde_json::to_value(&view).unwrap();
        for field in ["id", "status", "prompt", "model", "created_at", "image_url", "error", "refunded", "progress"] {
            assert!(json.get(field).is_some(), "{field} missing");
        }
        assert_eq!(json["status"], "completed");
        assert_eq!(serde_json::to_value(TaskStatus::Processing).unwrap(), "processing");
        assert_eq!(serde_json::to_value(TaskStatus::Failed).unwrap(), "failed");
        assert_eq!(serde_json::to_value(TaskStatus::Canceled).unwrap(), "canceled");
        // Only unfinished tasks carry the advice.
        assert!(json.get("poll_after_ms").is_none());
        let waiting = TaskView { poll_after_ms: Some(1200), ..view };
        assert_eq!(serde_json::to_value(&waiting).unwrap()["poll_after_ms"], 1200);
    }

    #[test]
    fn errors_cross_the_wire_as_kind_and_message() {
        let e = crate::error::AppError::invalid("prompt is empty");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json, serde_json::json!({ "kind": "invalid", "message": "prompt is empty" }));
        assert_eq!(e.status(), 400);
    }
}
