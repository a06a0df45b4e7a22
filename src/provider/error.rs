//! What can go wrong when talking to the provider, as typed outcomes the task
//! engine can act on (fail and refund, retry later, or show the user why).

use std::time::Duration;

use reqwest::{StatusCode, header::HeaderMap};
use serde::Deserialize;

use super::hosts::RedirectRefused;

/// Longest wait we accept from a `retry_after` hint; anything longer is
/// treated as "no usable hint" rather than stalling a task for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A failed provider call. Each variant says which HTTP answer (or transport
/// failure) produced it; none of them needs its message parsed later.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// 400 or 422 (or another unexpected 4xx): the request itself was
    /// rejected. `detail` is the provider's human-readable reason, fit to
    /// show the user. Also returned by [`super::Provider::new`] for a bad
    /// configuration and by `create` for a model reference that cannot be
    /// parsed (no request is sent then).
    #[error("the provider rejected the request: {detail}")]
    Invalid {
        /// The provider's explanation (`detail` of its error body).
        detail: String,
    },
    /// 401, 402 or 403: the API token (or the account behind it) is not
    /// accepted. A configuration problem, logged loudly when it happens.
    #[error("the provider refused our credentials (HTTP {status})")]
    Unauthorized {
        /// The HTTP status the provider answered.
        status: u16,
    },
    /// 404 or 410: the prediction or the output file does not exist (any more).
    #[error("not found at the provider")]
    NotFound,
    /// 429: throttled; retry after the hint from the body's `retry_after` or
    /// the `Retry-After` header, when one was given.
    #[error("rate limited by the provider")]
    RateLimited {
        /// How long the provider asked us to wait.
        retry_after: Option<Duration>,
    },
    /// 5xx: the provider failed; the outcome of the call is unknown.
    #[error("the provider failed (HTTP {status})")]
    Server {
        /// The HTTP status the provider answered.
        status: u16,
    },
    /// The connect or total timeout elapsed; the outcome is unknown.
    #[error("the provider did not answer in time")]
    Timeout,
    /// The connection failed (DNS, refused, reset, TLS, too many redirects).
    #[error("could not reach the provider: {0}")]
    Transport(String),
    /// A success status with a body we cannot read as a prediction, or an
    /// answer no documented API call gives (e.g. an unexpected redirect).
    #[error("unexpected answer from the provider: {0}")]
    Malformed(String),
    /// An output URL (or a redirect from it) points outside the allowed hosts.
    #[error("output URL not allowed: {0}")]
    Disallowed(String),
}

impl ProviderError {
    /// True when trying the same (idempotent) call again later may succeed:
    /// 429, 5xx, timeouts, transport failures and malformed answers.
    /// A create must never be retried whatever this says: the API has no
    /// idempotency key, so a retried create may run (and bill) twice.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Server { .. } | Self::Timeout | Self::Transport(_) | Self::Malformed(_)
        )
    }

    /// The provider's requested wait before the next call, for a 429.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// Maps a non-2xx answer (status, headers and the start of its body).
    pub(crate) fn from_status(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Self {
        let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
        let code = status.as_u16();
        match code {
            401..=403 => {
                tracing::error!(
                    status = code,
                    "the provider refused our API token: check REPLICATE_API_TOKEN (or FAL_KEY \
                     for fal's models) and the account's billing; every generation will fail until fixed"
                );
                Self::Unauthorized { status: code }
            }
            404 | 410 => Self::NotFound,
            429 => Self::RateLimited { retry_after: parsed.retry_after_hint().or_else(|| retry_after_header(headers)) },
            400..=499 => Self::Invalid {
                detail: parsed
                    .detail_text()
                    .unwrap_or_else(|| format!("the provider rejected the request (HTTP {code})")),
            },
            500..=599 => Self::Server { status: code },
            _ => Self::Malformed(format!("unexpected HTTP status {code}")),
        }
    }

    /// Maps a reqwest failure (sending, or reading the body).
    pub(crate) fn from_reqwest(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            return Self::Timeout;
        }
        if let Some(refused) = find_source::<RedirectRefused>(&err) {
            return Self::Disallowed(refused.0.clone());
        }
        if err.is_decode() {
            return Self::Malformed(error_chain(&err));
        }
        Self::Transport(error_chain(&err))
    }
}

/// The fields of Replicate's error bodies we use; everything is optional
/// because a proxy in front of the API may answer with anything.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    detail: Option<serde_json::Value>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    retry_after: Option<serde_json::Value>,
}

impl ErrorBody {
    fn detail_text(&self) -> Option<String> {
        let detail = match &self.detail {
            Some(serde_json::Value::String(s)) => s.trim().to_owned(),
            Some(serde_json::Value::Null) | None => String::new(),
            // fal's (FastAPI's) shape: `[{"loc": [...], "msg": "...", ...}]`.
            Some(serde_json::Value::Array(items))
                if items.iter().all(|i| i.get("msg").is_some_and(|m| m.is_string())) =>
            {
                let line = |item: &serde_json::Value| {
                    let loc = item.get("loc").and_then(|l| l.as_array()).map(|parts| {
                        parts
                            .iter()
                            .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
                            .collect::<Vec<_>>()
                    });
                    let msg = item.get("msg").and_then(|m| m.as_str()).unwrap_or_default().trim();
                    match loc.filter(|l| !l.is_empty()) {
                        Some(loc) => format!("{}: {msg}", loc.join(".")),
                        None => msg.to_owned(),
                    }
                };
                items.iter().map(line).collect::<Vec<_>>().join("; ")
            }
            Some(other) => other.to_string(),
        };
        let text = if detail.is_empty() { self.title.as_deref().unwrap_or("").trim().to_owned() } else { detail };
        (!text.is_empty()).then_some(text)
    }

    fn retry_after_hint(&self) -> Option<Duration> {
        let secs = match self.retry_after.as_ref()? {
            serde_json::Value::Number(n) => n.as_f64()?,
            serde_json::Value::String(s) => s.trim().parse().ok()?,
            _ => return None,
        };
        seconds_to_hint(secs)
    }
}

/// `Retry-After` in its delta-seconds form (the only one Replicate sends).
fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    seconds_to_hint(value.trim().parse().ok()?)
}

fn seconds_to_hint(secs: f64) -> Option<Duration> {
    let hint = Duration::try_from_secs_f64(secs).ok()?;
    (hint <= MAX_RETRY_AFTER).then_some(hint)
}

fn find_source<'a, T: std::error::Error + 'static>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// reqwest's `Display` hides the cause ("error sending request"); keep it.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut current = err.source();
    while let Some(e) = current {
        text.push_str(": ");
        text.push_str(&e.to_string());
        current = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    fn map(code: u16, headers: &HeaderMap, body: &str) -> ProviderError {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
        ProviderError::from_status(status, headers, body.as_bytes())
    }

    #[test]
    fn a_422_keeps_the_providers_detail() {
        let body = r#"{"detail":"- input.prompt: Invalid type","status":422,"title":"Input validation failed"}"#;
        match map(422, &HeaderMap::new(), body) {
            ProviderError::Invalid { detail } => assert_eq!(detail, "- input.prompt: Invalid type"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_422_in_fals_shape_names_each_field() {
        let body = r#"{"detail":[{"loc":["body","prompt"],"msg":"field required","type":"missing"},
            {"loc":["body","num_images",0],"msg":"too many","type":"value_error"}]}"#;
        match map(422, &HeaderMap::new(), body) {
            ProviderError::Invalid { detail } => {
                assert_eq!(detail, "body.prompt: field required; body.num_images.0: too many");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_429_prefers_the_body_hint_then_the_header() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let with_body = map(429, &headers, r#"{"retry_after": 2}"#);
        assert_eq!(with_body.retry_after(), Some(Duration::from_secs(2)));
        let header_only = map(429, &headers, "throttled");
        assert_eq!(header_only.retry_after(), Some(Duration::from_secs(7)));
        let neither = map(429, &HeaderMap::new(), "{}");
        assert!(matches!(neither, ProviderError::RateLimited { retry_after: None }));
        assert!(neither.is_transient());
    }

    #[test]
    fn statuses_map_to_their_variants() {
        let none = HeaderMap::new();
        assert!(matches!(map(401, &none, ""), ProviderError::Unauthorized { status: 401 }));
        assert!(matches!(map(403, &none, ""), ProviderError::Unauthorized { status: 403 }));
        assert!(matches!(map(404, &none, ""), ProviderError::NotFound));
        assert!(matches!(map(410, &none, ""), ProviderError::NotFound));
        assert!(matches!(map(502, &none, ""), ProviderError::Server { status: 502 }));
        assert!(matches!(map(409, &none, ""), ProviderError::Invalid { .. }));
        assert!(!map(422, &none, "").is_transient());
        assert!(!map(404, &none, "").is_transient());
        assert!(map(500, &none, "").is_transient());
    }
}
