//! fal.ai's queue API (`https://queue.fal.run`), read the way the engine
//! reads Replicate's: a request becomes a [`Prediction`].
//!
//! - submit: `POST {queue}/{owner}/{app}[/path]` with the model's input as
//!   the body (and `?fal_webhook=` when events are on) → `request_id`. The
//!   status, result and cancel URLs drop the endpoint's sub-path, so they
//!   are rebuilt from the model's `owner/app` and the id.
//! - status: `GET …/requests/{id}/status?logs=1` → `IN_QUEUE` (with
//!   `queue_position`), `IN_PROGRESS` (with logs) or `COMPLETED`, which
//!   carries an `error` when the request failed (there is no failed
//!   state); a completed request's result, `GET …/requests/{id}`, holds
//!   the images.
//! - cancel: `PUT …/requests/{id}/cancel` → 202 `CANCELLATION_REQUESTED`,
//!   400 `ALREADY_COMPLETED` (then its status says how it ended) or 404.

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::model_ref::is_name;
use super::prediction::error_text;
use super::{Prediction, PredictionStatus, Provider, ProviderError, progress_from_logs};

/// Most sub-path segments an endpoint id may have (`fal-ai/flux/dev/image-to-image`).
const MAX_PATH_SEGMENTS: usize = 4;

/// A fal endpoint id, `owner/app[/path…]`: submitted to in full, its
/// requests found under `owner/app`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint<'a> {
    pub owner: &'a str,
    pub app: &'a str,
    pub path: Vec<&'a str>,
}

impl<'a> Endpoint<'a> {
    /// Parses an endpoint id; the error names it.
    pub fn parse(id: &'a str) -> Result<Self, String> {
        let mut parts = id.split('/');
        let (owner, app) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        let path: Vec<&str> = parts.collect();
        if !is_name(owner) || !is_name(app) || path.len() > MAX_PATH_SEGMENTS || !path.iter().all(|p| is_name(p)) {
            return Err(format!("{id:?} is not a fal endpoint id (owner/app or owner/app/path)"));
        }
        Ok(Self { owner, app, path })
    }

    /// Where a request is submitted.
    fn submit_segments(&self) -> Vec<&'a str> {
        let mut segments = vec![self.owner, self.app];
        segments.extend(&self.path);
        segments
    }
}

/// `POST {queue}/{endpoint}`: submits `input`; the request, in the queue.
pub(super) async fn submit(
    provider: &Provider,
    model: &str,
    input: Map<String, Value>,
) -> Result<Prediction, ProviderError> {
    #[derive(Deserialize)]
    struct Submitted {
        request_id: String,
        #[serde(default)]
        queue_position: Option<u32>,
    }
    let endpoint = Endpoint::parse(model).map_err(|detail| ProviderError::Invalid { detail })?;
    let mut url = provider.api_url(&endpoint.submit_segments());
    if let Some(webhook) = provider.webhook() {
        url.query_pairs_mut().append_pair("fal_webhook", webhook.as_str());
    }
    let body = provider.send(provider.api().post(url).json(&Value::Object(input))).await?;
    let submitted: Submitted =
        serde_json::from_slice(&body).map_err(|e| ProviderError::Malformed(format!("fal submit: {e}")))?;
    if !is_request_id(&submitted.request_id) {
        return Err(ProviderError::Malformed(format!("fal request id {:?}", submitted.request_id)));
    }
    let mut prediction = Prediction::new(submitted.request_id, PredictionStatus::Starting);
    prediction.model = Some(model.to_owned());
    prediction.queue_position = submitted.queue_position;
    Ok(prediction)
}

/// The request's status; for a completed one without an error, its result
/// as well (the images).
pub(super) async fn get(provider: &Provider, model: &str, id: &str) -> Result<Prediction, ProviderError> {
    #[derive(Deserialize)]
    struct Status {
        status: String,
        #[serde(default)]
        queue_position: Option<u32>,
        #[serde(default)]
        logs: Option<Vec<Log>>,
        #[serde(default)]
        error: Value,
    }
    #[derive(Deserialize)]
    struct Log {
        #[serde(default)]
        message: String,
    }
    let endpoint = Endpoint::parse(model).map_err(|detail| ProviderError::Invalid { detail })?;
    let mut url = provider.api_url(&[endpoint.owner, endpoint.app, "requests", id, "status"]);
    url.set_query(Some("logs=1"));
    let body = provider.send(provider.api().get(url)).await?;
    let status: Status =
        serde_json::from_slice(&body).map_err(|e| ProviderError::Malformed(format!("fal status: {e}")))?;
    let logs = status.logs.map(|lines| lines.into_iter().map(|l| l.message).collect::<Vec<_>>().join("\n"));
    let mut prediction = match status.status.as_str() {
        "IN_QUEUE" => {
            let mut p = Prediction::new(id.to_owned(), PredictionStatus::Starting);
            p.queue_position = status.queue_position;
            p
        }
        "IN_PROGRESS" => Prediction::new(id.to_owned(), PredictionStatus::Processing),
        "COMPLETED" => match error_text(&status.error) {
            Some(error) => {
                let mut p = Prediction::new(id.to_owned(), PredictionStatus::Failed);
                p.error = Some(error);
                p
            }
            None => result(provider, &endpoint, id).await?,
        },
        other => return Err(ProviderError::Malformed(format!("unknown fal status {other:?}"))),
    };
    prediction.progress = logs.as_deref().and_then(progress_from_logs);
    prediction.logs = logs;
    prediction.model = Some(model.to_owned());
    Ok(prediction)
}

/// `GET …/requests/{id}`: a completed request's images and seed.
async fn result(provider: &Provider, endpoint: &Endpoint<'_>, id: &str) -> Result<Prediction, ProviderError> {
    let url = provider.api_url(&[endpoint.owner, endpoint.app, "requests", id]);
    let body = provider.send(provider.api().get(url)).await?;
    let output: Value =
        serde_json::from_slice(&body).map_err(|e| ProviderError::Malformed(format!("fal result: {e}")))?;
    output_prediction(id.to_owned(), &output)
}

/// `PUT …/requests/{id}/cancel`: canceled, or (already completed) how it
/// ended.
pub(super) async fn cancel(provider: &Provider, model: &str, id: &str) -> Result<Prediction, ProviderError> {
    let endpoint = Endpoint::parse(model).map_err(|detail| ProviderError::Invalid { detail })?;
    let url = provider.api_url(&[endpoint.owner, endpoint.app, "requests", id, "cancel"]);
    let (status, headers, body) = provider.send_raw(provider.api().put(url)).await?;
    let said = serde_json::from_slice::<Value>(&body).ok();
    let said = said.as_ref().and_then(|v| v.get("status")).and_then(Value::as_str);
    match (status, said) {
        (s, _) if s.is_success() => Ok(Prediction::new(id.to_owned(), PredictionStatus::Canceled)),
        (StatusCode::BAD_REQUEST, Some("ALREADY_COMPLETED")) => get(provider, model, id).await,
        _ => Err(ProviderError::from_status(status, &headers, &body)),
    }
}

/// A verified webhook's body (`{request_id, status: OK|ERROR, payload,
/// error}`) as the prediction it ends: `OK` succeeded with the payload's
/// images, `ERROR` failed with what the payload or `error` says.
pub fn event_prediction(body: &[u8]) -> Result<Prediction, ProviderError> {
    #[derive(Deserialize)]
    struct Event {
        request_id: String,
        status: String,
        #[serde(default)]
        payload: Value,
        #[serde(default)]
        error: Value,
    }
    let event: Event = serde_json::from_slice(body).map_err(|e| ProviderError::Malformed(format!("fal event: {e}")))?;
    if !is_request_id(&event.request_id) {
        return Err(ProviderError::Malformed(format!("fal request id {:?}", event.request_id)));
    }
    match event.status.as_str() {
        "OK" => output_prediction(event.request_id, &event.payload),
        "ERROR" => {
            let mut p = Prediction::new(event.request_id, PredictionStatus::Failed);
            let detail = event.payload.get("detail");
            let first = detail.and_then(Value::as_array).and_then(|d| d.first()).and_then(|d| d.get("msg"));
            p.error = first.or(detail).and_then(error_text).or_else(|| error_text(&event.error));
            Ok(p)
        }
        other => Err(ProviderError::Malformed(format!("unknown fal event status {other:?}"))),
    }
}

/// A result's images and seed, as a succeeded prediction `id`.
fn output_prediction(id: String, output: &Value) -> Result<Prediction, ProviderError> {
    #[derive(Deserialize)]
    struct Output {
        #[serde(default)]
        images: Vec<Image>,
        #[serde(default)]
        image: Option<Image>,
        #[serde(default)]
        seed: Option<u64>,
    }
    #[derive(Deserialize)]
    struct Image {
        url: String,
    }
    let output = Output::deserialize(output).map_err(|e| ProviderError::Malformed(format!("fal result: {e}")))?;
    let mut prediction = Prediction::new(id, PredictionStatus::Succeeded);
    prediction.output = output.images.into_iter().chain(output.image).map(|i| i.url).collect();
    prediction.seed = output.seed.and_then(|s| u32::try_from(s).ok());
    Ok(prediction)
}

/// fal's request ids are UUIDs; anything of that alphabet and length is
/// taken (the simulator's are longer), nothing that could add to a path.
fn is_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 512 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_ids_keep_their_path_for_submits_only() {
        let e = Endpoint::parse("fal-ai/flux/dev").unwrap();
        assert_eq!((e.owner, e.app, e.path.clone()), ("fal-ai", "flux", vec!["dev"]));
        assert_eq!(e.submit_segments(), ["fal-ai", "flux", "dev"]);
        assert_eq!(Endpoint::parse("fal-ai/fast-sdxl").unwrap().path, Vec::<&str>::new());
        for bad in ["", "fal-ai", "fal-ai/", "/flux", "fal-ai/flux/../x", "fal-ai/fl ux", "a/b/c/d/e/f/g"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn events_end_their_prediction() {
        let ok = br#"{"request_id":"r-1","gateway_request_id":"r-1","status":"OK","error":null,
            "payload":{"images":[{"url":"https://v3.fal.media/a.png"}],"seed":42}}"#;
        let p = event_prediction(ok).unwrap();
        assert_eq!((p.id.as_str(), p.status, p.seed), ("r-1", PredictionStatus::Succeeded, Some(42)));
        assert_eq!(p.output, ["https://v3.fal.media/a.png"]);
        let failed = br#"{"request_id":"r-2","status":"ERROR","error":"Invalid status code: 422",
            "payload":{"detail":[{"loc":["body","prompt"],"msg":"prompt is too long","type":"value_error"}]}}"#;
        let p = event_prediction(failed).unwrap();
        assert_eq!((p.status, p.error.as_deref()), (PredictionStatus::Failed, Some("prompt is too long")));
        let bare = br#"{"request_id":"r-3","status":"ERROR","error":"Invalid status code: 500","payload":null}"#;
        assert_eq!(event_prediction(bare).unwrap().error.as_deref(), Some("Invalid status code: 500"));
        for bad in [&br#"{"request_id":"../x","status":"OK"}"#[..], br#"{"request_id":"r","status":"MAYBE"}"#, b"[]"] {
            assert!(event_prediction(bad).is_err());
        }
    }

    #[test]
    fn request_ids_cannot_add_to_a_path() {
        assert!(is_request_id("80e732af-660e-45cd-bd63-580e4f2a94cc"));
        for bad in ["", "a/b", "..", "a?b", "a b", "a%2F"] {
            assert!(!is_request_id(bad), "{bad:?}");
        }
    }
}
