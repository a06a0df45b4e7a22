//! A prediction as Replicate describes it, normalised from every shape the
//! API returns (string or list output, error string or object, tqdm logs).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ProviderError;

/// Where a prediction is in its life, as the provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PredictionStatus {
    /// Queued or booting; nothing has run yet.
    Starting,
    /// The model is running; `logs` grow.
    Processing,
    /// Finished; `output` holds the result.
    Succeeded,
    /// The model raised an error; `error` says which.
    Failed,
    /// Canceled by us (or by `Cancel-After`).
    Canceled,
    /// Stopped by the provider before it could run.
    Aborted,
}

impl PredictionStatus {
    /// True once the status can no longer change.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Starting | Self::Processing)
    }

    /// True only for `succeeded`.
    pub fn is_success(self) -> bool {
        self == Self::Succeeded
    }

    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Aborted => "aborted",
        }
    }
}

/// One prediction, normalised. Unknown fields of the API's JSON are ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The provider's id (what `get` and `cancel` take).
    pub id: String,
    /// `owner/name` of the model, when reported.
    pub model: Option<String>,
    /// The model version id, when reported.
    pub version: Option<String>,
    /// Where the prediction is.
    pub status: PredictionStatus,
    /// Output URLs: a string output becomes a one-element list, `null` none.
    pub output: Vec<String>,
    /// The error message of a failed prediction.
    pub error: Option<String>,
    /// The model's log output so far.
    pub logs: Option<String>,
    /// The last `NN%` printed in the logs (0–100).
    pub progress: Option<u8>,
    /// True when the provider has deleted the inputs and outputs.
    pub data_removed: bool,
    /// Seconds the model ran (`metrics.predict_time`).
    pub predict_time: Option<f64>,
    /// When the prediction was created (RFC 3339, as given).
    pub created_at: Option<String>,
    /// When the model started running (RFC 3339, as given).
    pub started_at: Option<String>,
    /// When it reached a terminal status (RFC 3339, as given).
    pub completed_at: Option<String>,
    /// Requests ahead of it in the provider's own queue, when the provider
    /// says (fal's `queue_position`: 0 is next).
    pub queue_position: Option<u32>,
    /// The seed the images were made with, when the provider reports it
    /// apart from the logs (fal's result `seed`).
    pub seed: Option<u32>,
}

impl Prediction {
    /// Reads a prediction from an API response body. The `id` and a known
    /// `status` are required; everything else is read leniently.
    pub fn from_json(body: &[u8]) -> Result<Self, ProviderError> {
        let wire: Wire =
            serde_json::from_slice(body).map_err(|e| ProviderError::Malformed(format!("prediction JSON: {e}")))?;
        if wire.id.trim().is_empty() {
            return Err(ProviderError::Malformed("prediction without an id".into()));
        }
        let status = serde_json::from_value(Value::String(wire.status.clone()))
            .map_err(|_| ProviderError::Malformed(format!("unknown status {:?}", wire.status)))?;
        let logs = text(&wire.logs);
        Ok(Self {
            progress: logs.as_deref().and_then(progress_from_logs),
            id: wire.id,
            model: text(&wire.model),
            version: text(&wire.version),
            status,
            output: output_urls(&wire.output),
            error: error_text(&wire.error),
            logs,
            data_removed: wire.data_removed.as_bool().unwrap_or(false),
            predict_time: wire.metrics.get("predict_time").and_then(Value::as_f64),
            created_at: text(&wire.created_at),
            started_at: text(&wire.started_at),
            completed_at: text(&wire.completed_at),
            queue_position: None,
            seed: None,
        })
    }

    /// A prediction known only by its id and status; the rest is filled in
    /// by the adapter that reads it.
    pub fn new(id: String, status: PredictionStatus) -> Self {
        Self {
            id,
            model: None,
            version: None,
            status,
            output: Vec::new(),
            error: None,
            logs: None,
            progress: None,
            data_removed: false,
            predict_time: None,
            created_at: None,
            started_at: None,
            completed_at: None,
            queue_position: None,
            seed: None,
        }
    }
}

/// The API's JSON; fields other than `id` and `status` take any shape.
#[derive(Deserialize)]
struct Wire {
    id: String,
    status: String,
    #[serde(default)]
    model: Value,
    #[serde(default)]
    version: Value,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    error: Value,
    #[serde(default)]
    logs: Value,
    #[serde(default)]
    data_removed: Value,
    #[serde(default)]
    metrics: Value,
    #[serde(default)]
    created_at: Value,
    #[serde(default)]
    started_at: Value,
    #[serde(default)]
    completed_at: Value,
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

/// A string output is one URL, a list keeps its string items, and `null`
/// (or a shape no image model returns) is no output.
fn output_urls(output: &Value) -> Vec<String> {
    match output {
        Value::String(url) => vec![url.clone()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// `error` is usually a string; some failures report an object.
pub(super) fn error_text(error: &Value) -> Option<String> {
    let text = match error {
        Value::Null => return None,
        Value::String(s) => s.trim().to_owned(),
        Value::Object(fields) => ["detail", "message", "error"]
            .iter()
            .find_map(|k| fields.get(*k).and_then(Value::as_str))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|| error.to_string()),
        other => other.to_string(),
    };
    (!text.is_empty()).then_some(text)
}

/// The last percentage in tqdm-style logs (lines split by `\r` or `\n`),
/// e.g. ` 45%|████▌     | 14/30` → 45. Fractions are truncated; the value is
/// clamped to 100.
pub fn progress_from_logs(logs: &str) -> Option<u8> {
    let bytes = logs.as_bytes();
    let mut end = bytes.len();
    while let Some(pct) = bytes[..end].iter().rposition(|&b| b == b'%') {
        end = pct;
        let digits_start = start_of_digits(bytes, pct);
        if digits_start == pct {
            continue;
        }
        // "45.5%": the digits before the '%' are the fraction; use the part
        // before the dot.
        let (int_start, int_end) =
            if digits_start >= 2 && bytes[digits_start - 1] == b'.' && bytes[digits_start - 2].is_ascii_digit() {
                (start_of_digits(bytes, digits_start - 1), digits_start - 1)
            } else {
                (digits_start, pct)
            };
        let digits = &logs[int_start..int_end];
        let value = digits.trim_start_matches('0');
        let percent = if value.len() > 3 { 100 } else { value.parse::<u16>().unwrap_or(0) };
        return Some(percent.min(100) as u8);
    }
    None
}

/// Where a tqdm bar stands: the last `k/n [elapsed<remaining, rate]` of the
/// logs, e.g. ` 45%|████▌     | 14/30 [00:03<00:04,  4.10it/s]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Steps {
    /// Steps done.
    pub done: u32,
    /// Steps in all.
    pub total: u32,
    /// Milliseconds per step, from the rate (`it/s` or `s/it`).
    pub step_ms: f64,
}

/// Larger bars or slower steps than these are not read as a bar.
const MAX_STEPS: u32 = 100_000;
const MAX_STEP_MS: f64 = 3_600_000.0;

/// The last tqdm bar's steps and rate, when its last redraw carries both
/// (the first redraw says `?it/s`). Only the tail of the logs is read.
pub fn steps_from_logs(logs: &str) -> Option<Steps> {
    let mut start = logs.len().saturating_sub(200);
    while !logs.is_char_boundary(start) {
        start += 1;
    }
    let tail = &logs[start..];
    let line = tail.rsplit(['\r', '\n']).find(|l| !l.trim().is_empty())?;
    let (_, bar) = line.rsplit_once('|')?;
    let (counts, rest) = bar.trim_start().split_once(' ')?;
    let (done, total) = counts.split_once('/')?;
    let (done, total): (u32, u32) = (done.parse().ok()?, total.parse().ok()?);
    let rate = rest.trim_end().strip_suffix(']')?.rsplit(',').next()?.trim();
    let step_ms = if let Some(per_sec) = rate.strip_suffix("it/s") {
        1000.0 / per_sec.trim().parse::<f64>().ok()?
    } else {
        1000.0 * rate.strip_suffix("s/it")?.trim().parse::<f64>().ok()?
    };
    // The logs are the model's output: bounds keep any arithmetic on them
    // (steps × milliseconds, added to a clock) far from overflowing.
    let sane = (1..=MAX_STEPS).contains(&total) && done <= total && step_ms > 0.0 && step_ms <= MAX_STEP_MS;
    sane.then_some(Steps { done, total, step_ms })
}

/// The seed a model reports in its logs (`Using seed: 1234`, as flux and
/// many cog models print it), if one fits a u32. Only the first such line
/// counts; the logs are the model's output, so nothing else is trusted.
pub fn seed_from_logs(logs: &str) -> Option<u32> {
    let line = logs.lines().find_map(|l| l.trim_start().strip_prefix("Using seed:"))?;
    let digits: &str = line.trim_start();
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

fn start_of_digits(bytes: &[u8], end: usize) -> usize {
    let mut start = end;
    while start > 0 && bytes[start - 1].is_ascii_digit() {
        start -= 1;
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Prediction {
        Prediction::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn progress_is_the_last_percentage_in_carriage_return_separated_logs() {
        let logs = "Using seed: 4242\n  0%|          | 0/30 [00:00<?, ?it/s]\r 10%|█         | 3/30 \
                    [00:00<00:05,  5.1it/s]\r 47%|████▋     | 14/30 [00:02<00:03,  5.2it/s]";
        assert_eq!(progress_from_logs(logs), Some(47));
        assert_eq!(progress_from_logs("100%|██████████| 30/30\n"), Some(100));
        assert_eq!(progress_from_logs("step 3\nloading 7.5% done\n"), Some(7));
        assert_eq!(progress_from_logs("bogus 250%|"), Some(100));
        assert_eq!(progress_from_logs("99999999999999999999%"), Some(100));
        assert_eq!(progress_from_logs("000%"), Some(0));
        assert_eq!(progress_from_logs("50% then a bare % sign"), Some(50));
        assert_eq!(progress_from_logs("Using seed: 12\n"), None);
        assert_eq!(progress_from_logs(""), None);
    }

    #[test]
    fn steps_and_rate_are_read_from_the_last_tqdm_redraw() {
        let logs = "Using seed: 4242\n  0%|          | 0/30 [00:00<?, ?it/s]\r 10%|█         | 3/30 \
                    [00:00<00:05,  5.1it/s]\r 46%|████▋     | 14/30 [00:03<00:04,  4.00it/s]";
        assert_eq!(steps_from_logs(logs), Some(Steps { done: 14, total: 30, step_ms: 250.0 }));
        let slow = "  3%|▎         | 1/30 [00:02<00:58,  2.00s/it]";
        assert_eq!(steps_from_logs(slow), Some(Steps { done: 1, total: 30, step_ms: 2000.0 }));
        let done = "100%|██████████| 4/4 [00:01<00:00,  3.20it/s]\n";
        assert_eq!(steps_from_logs(done), Some(Steps { done: 4, total: 4, step_ms: 312.5 }));
        // No rate yet, no bar, nonsense: nothing.
        assert_eq!(steps_from_logs("  0%|          | 0/30 [00:00<?, ?it/s]"), None);
        assert_eq!(steps_from_logs("Using seed: 1\n"), None);
        assert_eq!(steps_from_logs(" 50%|█| 9/4 [00:01<00:00,  3.20it/s]"), None);
        assert_eq!(steps_from_logs(" 50%|█| 2/4 [00:01<00:00,  0it/s]"), None);
        assert_eq!(steps_from_logs(""), None);
        // Absurd figures (the logs are the model's to write) are not a bar.
        assert_eq!(steps_from_logs(" 50%|█| 2/4 [00:01<00:00,  1e-300it/s]"), None);
        assert_eq!(steps_from_logs(" 50%|█| 2/4 [00:01<00:00,  NaNit/s]"), None);
        assert_eq!(steps_from_logs(" 50%|█| 2/4000000000 [00:01<00:00,  3.00it/s]"), None);
        assert_eq!(steps_from_logs(" 50%|█| 2/4 [00:01<00:00,  1e308s/it]"), None);
        // A multi-byte character where the tail is cut does not panic.
        let long = format!("{}{}", "█".repeat(100), " 46%|████▋     | 14/30 [00:03<00:04,  4.00it/s]");
        assert!(steps_from_logs(&long).is_some());
    }

    #[test]
    fn the_seed_is_read_from_the_first_using_seed_line() {
        assert_eq!(seed_from_logs("Using seed: 1234\n  0%|          | 0/4"), Some(1234));
        assert_eq!(seed_from_logs("loading\r\n  Using seed: 7 (random)\nUsing seed: 8"), Some(7));
        assert_eq!(seed_from_logs("Using seed: 4294967295"), Some(u32::MAX));
        assert_eq!(seed_from_logs("Using seed: 4294967296"), None, "beyond a u32");
        assert_eq!(seed_from_logs("Using seed: -3"), None);
        assert_eq!(seed_from_logs("Using seed:"), None);
        assert_eq!(seed_from_logs("seed 12"), None);
        assert_eq!(seed_from_logs(""), None);
    }

    #[test]
    fn outputs_become_a_list_whatever_their_shape() {
        let one = parse(r#"{"id":"a","status":"succeeded","output":"https://x/1.png"}"#);
        assert_eq!(one.output, vec!["https://x/1.png"]);
        let many = parse(r#"{"id":"a","status":"succeeded","output":["https://x/1.png",7,"https://x/2.png"]}"#);
        assert_eq!(many.output, vec!["https://x/1.png", "https://x/2.png"]);
        let none = parse(r#"{"id":"a","status":"starting","output":null}"#);
        assert!(none.output.is_empty());
        let missing = parse(r#"{"id":"a","status":"starting"}"#);
        assert!(missing.output.is_empty());
    }

    #[test]
    fn errors_may_be_strings_or_objects() {
        let s = parse(r#"{"id":"a","status":"failed","error":"CUDA out of memory"}"#);
        assert_eq!(s.error.as_deref(), Some("CUDA out of memory"));
        let o = parse(r#"{"id":"a","status":"failed","error":{"detail":"NSFW content"}}"#);
        assert_eq!(o.error.as_deref(), Some("NSFW content"));
        let odd = parse(r#"{"id":"a","status":"failed","error":{"code":3}}"#);
        assert_eq!(odd.error.as_deref(), Some(r#"{"code":3}"#));
        let blank = parse(r#"{"id":"a","status":"failed","error":""}"#);
        assert_eq!(blank.error, None);
    }

    #[test]
    fn every_status_parses_and_unknown_ones_are_malformed() {
        for (name, terminal) in [
            ("starting", false),
            ("processing", false),
            ("succeeded", true),
            ("failed", true),
            ("canceled", true),
            ("aborted", true),
        ] {
            let p = parse(&format!(r#"{{"id":"a","status":"{name}"}}"#));
            assert_eq!(p.status.as_str(), name);
            assert_eq!(p.status.is_terminal(), terminal);
            assert_eq!(p.status.is_success(), name == "succeeded");
        }
        for bad in [r#"{"id":"a","status":"exploded"}"#, r#"{"status":"starting"}"#, "[]", "<html>"] {
            assert!(matches!(Prediction::from_json(bad.as_bytes()), Err(ProviderError::Malformed(_))));
        }
    }

    #[test]
    fn metrics_flags_and_timestamps_are_read() {
        let p = parse(
            r#"{"id":"a","status":"succeeded","data_removed":true,"metrics":{"predict_time":2.5},
                "created_at":"2024-01-01T00:00:00.000000Z","completed_at":null,"extra":{"x":1}}"#,
        );
        assert!(p.data_removed);
        assert_eq!(p.predict_time, Some(2.5));
        assert_eq!(p.created_at.as_deref(), Some("2024-01-01T00:00:00.000000Z"));
        assert_eq!(p.completed_at, None);
    }
}
