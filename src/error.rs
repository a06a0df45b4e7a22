//! The one application error type. It crosses the wire: the server logs the
//! full cause, the browser (and any HTTP client) sees a kind and a message
//! written for a person.

use crate::codec::JsonText;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// Result alias used across the crate.
pub type Result<T, E = AppError> = std::result::Result<T, E>;

/// What went wrong, as far as the caller may know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad input; the message says which (400).
    Invalid,
    /// Not signed in (401).
    Unauthorized,
    /// Signed in, but the account's email is not verified yet (403).
    Unverified,
    /// The balance does not cover the cost (402).
    NotEnoughCredits,
    /// Absent, or someone else's (404).
    NotFound,
    /// Clashes with what exists, e.g. a registered email (409).
    Conflict,
    /// The request is larger than the server takes (413).
    TooLarge,
    /// Too many attempts from this client (429).
    RateLimited,
    /// The image provider refused or failed; nothing was charged (502).
    Provider,
    /// Anything else; details are only in the server log (500).
    Internal,
    /// The request did not reach the server or its answer was unreadable.
    Network,
}

/// An error with a message fit to show as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub kind: ErrorKind,
    pub message: String,
}

impl AppError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// Bad input, with the message the person should read.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(ErrorKind::Unauthorized, "please sign in")
    }

    pub fn not_found() -> Self {
        Self::new(ErrorKind::NotFound, "not found")
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// An internal failure: the cause is logged here, the caller gets a plain
    /// "something went wrong".
    #[track_caller]
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        #[cfg(feature = "ssr")]
        tracing::error!(location = %std::panic::Location::caller(), "internal error: {cause}");
        #[cfg(not(feature = "ssr"))]
        let _ = cause;
        Self::new(ErrorKind::Internal, "something went wrong, please try again")
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::Invalid => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Unverified => 403,
            ErrorKind::NotEnoughCredits => 402,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::TooLarge => 413,
            ErrorKind::RateLimited => 429,
            ErrorKind::Provider => 502,
            ErrorKind::Internal | ErrorKind::Network => 500,
        }
    }
}

/// A database failure is an internal error: `?` on a sqlx call logs it with
/// the location of that `?` and answers "something went wrong".
#[cfg(feature = "ssr")]
impl From<sqlx::Error> for AppError {
    #[track_caller]
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonText;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Args(m) | ServerFnErrorErr::MissingArg(m) => {
                Self::invalid(format!("invalid request: {m}"))
            }
            ServerFnErrorErr::Request(m) | ServerFnErrorErr::Response(m) => {
                Self::new(ErrorKind::Network, format!("could not reach the server: {m}"))
            }
            other => Self::new(ErrorKind::Internal, other.to_string()),
        }
    }
}
