//! Typed ids for the money path: a task id and a user id are both strings
//! in the database, and a function taking two bare strings can be called
//! with them swapped. These cannot.

use std::fmt;

use crate::error::{AppError, Result};

/// A task's id: a UUID in its hyphenated form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(String);

impl TaskId {
    /// A fresh random id.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// Checks that `raw` looks like a task id (a UUID); bad input is a
    /// plain "not a valid task id".
    pub fn parse(raw: &str) -> Result<Self> {
        uuid::Uuid::parse_str(raw.trim())
            .map(|u| Self(u.hyphenated().to_string()))
            .map_err(|_| AppError::invalid("not a valid task id"))
    }

    /// An id read back from the database (written by us, so trusted).
    pub fn from_db(id: String) -> Self {
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user's (account's) id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    /// An id read back from the database or the session (written by us).
    pub fn from_db(id: String) -> Self {
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_must_be_uuids() {
        let id = TaskId::parse(" 0B4F9A8E-5F7E-4A52-9D2E-1D2B3C4D5E6F ").unwrap();
        assert_eq!(id.as_str(), "0b4f9a8e-5f7e-4a52-9d2e-1d2b3c4d5e6f");
        assert_eq!(TaskId::parse("../../etc").unwrap_err().message, "not a valid task id");
        assert_ne!(TaskId::new(), TaskId::new());
    }
}
