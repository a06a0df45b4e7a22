//! The provider adapters: one reqwest-based client for Replicate's HTTP
//! prediction API, which also speaks fal.ai's queue API (`fal.rs`) when
//! built for it. The built-in simulators speak the same APIs, so this is
//! the code path in development, tests and production alike.
//!
//! Every call is a single attempt with connect and total timeouts; retrying
//! is the task engine's decision (and a create is never retried: the API has
//! no idempotency key).

mod error;
pub mod fal;
mod hosts;
mod model_ref;
mod prediction;

use std::{fmt, sync::Arc, time::Duration};

use reqwest::{RequestBuilder, Response, header};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

pub use error::ProviderError;
use hosts::HostList;
use model_ref::{ModelRef, cancel_after_value};
pub use prediction::{Prediction, PredictionStatus, Steps, progress_from_logs, seed_from_logs, steps_from_logs};

/// Largest API response body we read; a prediction's logs can be long.
const MAX_API_BODY: usize = 4 * 1024 * 1024;
/// Largest error body we read from an output host.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Which provider's API a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Replicate's prediction API (bearer token).
    Replicate,
    /// fal.ai's queue API (`Authorization: Key …`).
    Fal,
}

/// How to reach the provider. Built once from the app's configuration.
#[derive(Clone)]
pub struct ProviderConfig {
    /// The API it speaks.
    pub api: Api,
    /// The API root, e.g. `https://api.replicate.com/v1` or
    /// `http://127.0.0.1:3000/sim/v1`.
    pub base_url: Url,
    /// The bearer token (`REPLICATE_API_TOKEN`, or the simulator's); kept
    /// secret until a request to the API host is built.
    pub token: SecretString,
    /// Hosts outputs may be downloaded from, each with its scheme and port
    /// (a bare host means https on 443); `replicate.delivery` (or
    /// `.replicate.delivery`) also allows its subdomains.
    pub output_hosts: Vec<String>,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait for a whole call (connect, request and response body).
    pub request_timeout: Duration,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("api", &self.api)
            .field("base_url", &self.base_url.as_str())
            .field("token", &"<redacted>")
            .field("output_hosts", &self.output_hosts)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// The provider client. Cheap to clone: everything is behind one `Arc`.
#[derive(Clone)]
pub struct Provider {
    inner: Arc<Inner>,
}

struct Inner {
    api_kind: Api,
    base: Url,
    token: SecretString,
    /// API calls: Replicate's API never redirects, so neither do we.
    api: reqwest::Client,
    /// Output downloads: redirects only to allowed hosts.
    files: reqwest::Client,
    hosts: Arc<HostList>,
    /// Where the provider posts events about our predictions, if anywhere.
    webhook: Option<Url>,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("base", &self.inner.base.as_str())
            .field("hosts", &self.inner.hosts)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// Builds the client. Fails with [`ProviderError::Invalid`] when the base
    /// URL is not an http(s) URL or an output host entry is not a host.
    pub fn new(cfg: ProviderConfig) -> Result<Self, ProviderError> {
        let invalid = |detail: String| ProviderError::Invalid { detail };
        let base = cfg.base_url;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid(format!("provider base URL {base} is not http(s)")));
        }
        let hosts = Arc::new(HostList::parse(&cfg.output_hosts).map_err(invalid)?);
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(cfg.connect_timeout)
                .timeout(cfg.request_timeout)
                .user_agent(concat!("darkroom/", env!("CARGO_PKG_VERSION")))
        };
        let build_failed = |e: reqwest::Error| invalid(format!("HTTP client: {e}"));
        let api = builder().redirect(reqwest::redirect::Policy::none()).build().map_err(build_failed)?;
        let files = builder().redirect(hosts.redirect_policy()).build().map_err(build_failed)?;
        let inner = Inner { api_kind: cfg.api, base, token: cfg.token, api, files, hosts, webhook: None };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The API this client speaks.
    pub fn api_kind(&self) -> Api {
        self.inner.api_kind
    }

    /// Every prediction created from now on asks the provider to post its
    /// `start`, `logs` and `completed` events to `url`.
    pub fn with_webhook(self, url: Url) -> Self {
        let inner = Inner {
            api_kind: self.inner.api_kind,
            base: self.inner.base.clone(),
            token: self.inner.token.clone(),
            api: self.inner.api.clone(),
            files: self.inner.files.clone(),
            hosts: Arc::clone(&self.inner.hosts),
            webhook: Some(url),
        };
        Self { inner: Arc::new(inner) }
    }

    /// The key the provider signs webhooks with
    /// (`GET /webhooks/default/secret`, `{"key": "whsec_…"}`).
    pub async fn webhook_secret(&self) -> Result<String, ProviderError> {
        #[derive(serde::Deserialize)]
        struct Key {
            key: String,
        }
        let body = self.send(self.inner.api.get(self.api_url(&["webhooks", "default", "secret"]))).await?;
        serde_json::from_slice::<Key>(&body)
            .map(|k| k.key)
            .map_err(|e| ProviderError::Malformed(format!("webhook secret: {e}")))
    }

    /// Starts a prediction of `model` on `prompt` alone. `cancel_after`
    /// asks the provider to cancel it by itself after that long (our
    /// deadline).
    ///
    /// Never retried: on a timeout or 5xx the prediction may or may not
    /// exist, and a second create could run (and bill) twice.
    pub async fn create(
        &self,
        model: &str,
        prompt: &str,
        cancel_after: Option<Duration>,
    ) -> Result<Prediction, ProviderError> {
        let mut input = serde_json::Map::new();
        input.insert("prompt".into(), prompt.into());
        self.create_with(model, input, cancel_after).await
    }

    /// Like [`Provider::create`], with the model's whole `input` (the
    /// prompt and whatever else the model takes), sent as it is.
    #[tracing::instrument(skip(self, input), fields(inputs = input.len()), err(level = "warn"))]
    pub async fn create_with(
        &self,
        model: &str,
        input: serde_json::Map<String, serde_json::Value>,
        cancel_after: Option<Duration>,
    ) -> Result<Prediction, ProviderError> {
        if self.inner.api_kind == Api::Fal {
            // fal has no deadline of its own to pass; the engine's stands.
            return fal::submit(self, model, input).await;
        }
        let target = ModelRef::parse(model).map_err(|detail| ProviderError::Invalid { detail })?;
        let input = serde_json::Value::Object(input);
        let (url, mut body) = match target {
            ModelRef::Model { owner, name } => {
                (self.api_url(&["models", owner, name, "predictions"]), serde_json::json!({ "input": input }))
            }
            ModelRef::Version { version } => {
                (self.api_url(&["predictions"]), serde_json::json!({ "version": version, "input": input }))
            }
        };
        if let Some(webhook) = &self.inner.webhook {
            body["webhook"] = serde_json::json!(webhook.as_str());
            body["webhook_events_filter"] = serde_json::json!(["start", "logs", "completed"]);
        }
        let mut request = self.inner.api.post(url).json(&body);
        if let Some(after) = cancel_after {
            request = request.header("Cancel-After", cancel_after_value(after));
        }
        self.call(request).await
    }

    /// Reads a Replicate prediction's current state (by its id alone; see
    /// [`Provider::get_for`]).
    #[tracing::instrument(skip(self), err(level = "debug"))]
    pub async fn get(&self, id: &str) -> Result<Prediction, ProviderError> {
        let url = self.api_url(&["predictions", id]);
        self.call(self.inner.api.get(url)).await
    }

    /// Reads the current state of prediction `id` of `model`, whichever API
    /// (fal finds a request under its model's `owner/app`).
    pub async fn get_for(&self, model: &str, id: &str) -> Result<Prediction, ProviderError> {
        match self.inner.api_kind {
            Api::Replicate => self.get(id).await,
            Api::Fal => fal::get(self, model, id).await,
        }
    }

    /// Cancels a Replicate prediction; a terminal one comes back unchanged.
    #[tracing::instrument(skip(self), err(level = "warn"))]
    pub async fn cancel(&self, id: &str) -> Result<Prediction, ProviderError> {
        let url = self.api_url(&["predictions", id, "cancel"]);
        self.call(self.inner.api.post(url)).await
    }

    /// Cancels prediction `id` of `model`, whichever API; a finished one
    /// comes back as it ended.
    pub async fn cancel_for(&self, model: &str, id: &str) -> Result<Prediction, ProviderError> {
        match self.inner.api_kind {
            Api::Replicate => self.cancel(id).await,
            Api::Fal => fal::cancel(self, model, id).await,
        }
    }

    /// Uploads a file of `size` bytes through the Files API (`POST /files`,
    /// multipart, the file in the part `content`, as Replicate's own
    /// clients send it), streamed as it is read; the file, whose `urls.get`
    /// a prediction's input names it by.
    #[tracing::instrument(skip(self, bytes), err(level = "warn"))]
    pub async fn upload_file<S>(
        &self,
        bytes: S,
        size: u64,
        filename: &str,
        content_type: &str,
    ) -> Result<ProviderFile, ProviderError>
    where
        S: futures::Stream<Item = object_store::Result<bytes::Bytes>> + Send + 'static,
    {
        let body = reqwest::Body::wrap_stream(bytes);
        let part = reqwest::multipart::Part::stream_with_length(body, size)
            .file_name(filename.to_owned())
            .mime_str(content_type)
            .map_err(|e| ProviderError::Invalid { detail: format!("file type: {e}") })?;
        let form = reqwest::multipart::Form::new().part("content", part);
        let body = self.send(self.inner.api.post(self.api_url(&["files"])).multipart(form)).await?;
        serde_json::from_slice(&body).map_err(|e| ProviderError::Malformed(format!("file: {e}")))
    }

    /// Opens an output URL for download. Only http(s) URLs on the allowed
    /// hosts are fetched, and redirects are followed only to allowed hosts
    /// ([`ProviderError::Disallowed`] otherwise). Output URLs are public:
    /// the API token goes to the API host only, never here. A 404 or 410 (an expired output)
    /// is [`ProviderError::NotFound`]; other failures map like API calls.
    /// The caller streams the body (`bytes_stream()`) under its own size cap.
    #[tracing::instrument(skip(self), err(level = "warn"))]
    pub async fn open_output(&self, url: &str) -> Result<Response, ProviderError> {
        let parsed = Url::parse(url).map_err(|e| ProviderError::Disallowed(format!("{url:?} is not a URL: {e}")))?;
        self.inner.hosts.check(&parsed).map_err(ProviderError::Disallowed)?;
        let response = self.inner.files.get(parsed).send().await.map_err(ProviderError::from_reqwest)?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_capped(response, MAX_ERROR_BODY).await.unwrap_or_default();
        Err(ProviderError::from_status(status, &headers, &body))
    }

    /// The client for API calls (no redirects).
    fn api(&self) -> &reqwest::Client {
        &self.inner.api
    }

    /// Where events about new predictions go, if anywhere.
    fn webhook(&self) -> Option<&Url> {
        self.inner.webhook.as_ref()
    }

    /// `{base}/a/b/c`, each segment percent-encoded (an id cannot add path).
    fn api_url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        // `new` checked the base can have path segments.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends an API request and reads the prediction it answers with.
    async fn call(&self, request: RequestBuilder) -> Result<Prediction, ProviderError> {
        Prediction::from_json(&self.send(request).await?)
    }

    /// Sends an API request (with the token, to the API host only) and reads
    /// a successful answer's body; anything else is a typed error.
    async fn send(&self, request: RequestBuilder) -> Result<Vec<u8>, ProviderError> {
        let (status, headers, body) = self.send_raw(request).await?;
        if !status.is_success() {
            return Err(ProviderError::from_status(status, &headers, &body));
        }
        Ok(body)
    }

    /// Sends an API request with the API's credentials and reads whatever
    /// it answers.
    async fn send_raw(
        &self,
        request: RequestBuilder,
    ) -> Result<(reqwest::StatusCode, header::HeaderMap, Vec<u8>), ProviderError> {
        let token = self.inner.token.expose_secret();
        let request = match self.inner.api_kind {
            Api::Replicate => request.bearer_auth(token),
            Api::Fal => request.header(header::AUTHORIZATION, format!("Key {token}")),
        };
        let response =
            request.header(header::ACCEPT, "application/json").send().await.map_err(ProviderError::from_reqwest)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_capped(response, MAX_API_BODY).await?;
        Ok((status, headers, body))
    }
}

/// A file the provider keeps for predictions to read (its Files API).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ProviderFile {
    pub id: String,
    pub urls: ProviderFileUrls,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct ProviderFileUrls {
    /// What a prediction's input names the file by.
    pub get: String,
}

/// Reads a body up to `cap` bytes; more is a malformed answer.
async fn read_capped(mut response: Response, cap: usize) -> Result<Vec<u8>, ProviderError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ProviderError::from_reqwest)? {
        if body.len() + chunk.len() > cap {
            return Err(ProviderError::Malformed(format!("response body larger than {cap} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
