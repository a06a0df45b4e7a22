//! The built-in provider: a faithful in-process imitation of Replicate's HTTP
//! prediction API, nested by the app under `/sim`, so that development and
//! tests run the real adapter over real HTTP.
//!
//! Stateless by design: a prediction id encodes, and authenticates with an
//! HMAC under the configured secret, everything needed to answer for it
//! (creation time, duration, model, prompt, model inputs), so any instance
//! sharing the secret answers the same id the same way, also after a
//! restart. The only in-memory state is soft and bounded (see `soft.rs`):
//! per-id GET counters for `#error` / `#ratelimit`, and which ids were
//! canceled.
//!
//! Model inputs (see `inputs.rs`) are checked like a Cog model's schema:
//! `aspect_ratio` shapes the images, `num_outputs` makes a list of
//! different images, `seed` (picked at random when not given, and printed
//! in the logs as `Using seed: N`) makes them reproducible, and
//! `negative_prompt` and `output_format` are accepted and echoed.
//!
//! Images in (see `uploads.rs`, `images.rs`): `input.image` names a file
//! of the simulator's Files API by its URL (`<base>/v1/files/<id>`) or is
//! a `data:image/…;base64,…` URL of at most 1 MiB (kept as a file); other
//! URLs are refused. With it the prompt may be left out. Alone, or with
//! `prompt_strength` (0 to 1, default 0.8), it makes image-to-image: the
//! outputs take the input's shape (long side 768, unless `aspect_ratio`)
//! and follow its colours and layout, from a colour grid of it carried in
//! the id. With `scale` (1 to 10) it makes an upscale: one output, the
//! input resized, made from the stored file (404 once the file is gone).
//!
//! Prompt directives (see `directive.rs`) force every path a real provider can
//! take: `#fail`, `#error`, `#ratelimit`, `#huge`, `#notimage`, `#expire`,
//! `#bad-output`, `#slow`, and for webhooks `#hook-dup`, `#hook-lost`,
//! `#hook-late`.
//!
//! Webhooks (see `webhooks.rs`) and files are the exceptions to
//! statelessness: a create's `webhook` URL is not put in the id, so its
//! events are delivered by an in-memory task of the instance that took the
//! create, lost on a restart like any webhook may be; and files live in
//! the memory of the instance that took them, lost on a restart too (an
//! upscale of a lost file answers 404 for its output).

mod api;
mod directive;
mod fal;
mod files;
mod id;
mod images;
#[cfg(test)]
mod images_in;
mod inputs;
mod limits;
mod list;
mod render;
mod soft;
pub mod stripe;
mod timeline;
mod uploads;
mod webhooks;

use std::{fmt, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    routing::{any, get, post},
};
use url::Url;

/// A `#slow` prediction runs this long whatever the configuration says.
const SLOW_DURATION_MS: u64 = 60_000;

/// How the simulator behaves. Built once from the app's configuration.
#[derive(Clone)]
pub struct SimConfig {
    /// Where [`router`] is reachable from outside, e.g.
    /// `http://127.0.0.1:3000/sim`; output and `urls` links start with it.
    pub public_base: Url,
    /// The bearer token API calls must carry.
    pub api_token: String,
    /// The HMAC key that authenticates prediction ids; instances that share
    /// it answer each other's ids.
    pub secret: Vec<u8>,
    /// Generation time in ms, an inclusive range (equal bounds: fixed).
    pub duration_ms: (u64, u64),
    /// How long an output URL works after the prediction completed.
    pub output_ttl: Duration,
    /// `#huge` outputs are larger than this many bytes.
    pub huge_bytes: u64,
    /// The key webhooks are signed with, answered by
    /// `GET /v1/webhooks/default/secret`.
    pub webhook_secret: crate::standard_webhooks::Secret,
    /// The time predictions run by (the app's: tests move a manual one).
    pub clock: crate::server::clock::Clock,
    /// The rate limits of its token (`DARKROOM_SIM_RATE_LIMITS`).
    pub rate_limits: crate::rate::Limits,
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("public_base", &self.public_base.as_str())
            .field("api_token", &"<redacted>")
            .field("secret", &"<redacted>")
            .field("duration_ms", &self.duration_ms)
            .field("output_ttl", &self.output_ttl)
            .field("huge_bytes", &self.huge_bytes)
            .field("webhook_secret", &self.webhook_secret)
            .field("rate_limits", &self.rate_limits)
            .finish()
    }
}

/// The shared state of one simulator instance.
struct Sim {
    cfg: SimConfig,
    /// `public_base` without a trailing slash.
    base: String,
    soft: soft::SoftState,
    hooks: webhooks::Hooks,
    limiter: limits::Limiter,
    stats: limits::Stats,
    recent: list::Recent,
    /// The files of the Files API.
    uploads: uploads::Uploads,
    /// Permits for decoding and upscaling images, a few at a time.
    image_work: tokio::sync::Semaphore,
}

impl Sim {
    /// Now, in milliseconds since the Unix epoch, by the simulator's clock.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.cfg.clock.now_ms()).unwrap_or(0)
    }

    fn api_url(&self, rest: &str) -> String {
        format!("{}/v1/{rest}", self.base)
    }

    /// A file of the Files API: its `urls.get`, and how `input.image` names it.
    fn upload_url(&self, id: &str) -> String {
        self.api_url(&format!("files/{id}"))
    }

    /// Where output `index` of prediction `id` is served.
    fn file_url(&self, id: &str, index: u8) -> String {
        format!("{}/files/{id}/{}", self.base, files::output_name(index))
    }
}

/// The simulator's routes, relative to where the app nests them (`/sim`):
/// `POST /v1/models/{owner}/{name}/predictions`, `POST /v1/predictions`,
/// `GET /v1/predictions` (the list), `GET /v1/predictions/{id}`,
/// `POST /v1/predictions/{id}/cancel`, `GET /v1/webhooks/default/secret`,
/// the Files API (`POST /v1/files`, multipart, up to 32 MiB; `GET
/// /v1/files`; `GET` and `DELETE /v1/files/{id}`) (all with bearer auth,
/// then held to the token's rate limits),
/// `GET /files/{id}/out-{n}.png` (the outputs, until they expire; each
/// answer sandboxed, since a file may be anything: `#notimage` is HTML) and
/// `GET /_stats` (what it served); and fal's queue API under `/fal/`
/// (`fal.rs`, with `Authorization: Key`).
pub fn router(cfg: SimConfig) -> Router {
    let base = cfg.public_base.as_str().trim_end_matches('/').to_owned();
    let limiter = limits::Limiter::new(cfg.rate_limits);
    let sim = Arc::new(Sim {
        cfg,
        base,
        soft: soft::SoftState::default(),
        hooks: webhooks::Hooks::new(),
        limiter,
        stats: limits::Stats::default(),
        recent: list::Recent::default(),
        uploads: uploads::Uploads::default(),
        image_work: images::work_permits(),
    });
    // The last layer added runs first: the token, then the limits.
    let v1 = Router::new()
        .route("/models/{owner}/{name}/predictions", post(api::create_for_model))
        .route("/predictions", post(api::create_for_version).get(list::list))
        .route("/predictions/{id}", get(api::get))
        .route("/predictions/{id}/cancel", post(api::cancel))
        .route("/webhooks/default/secret", get(api::webhook_secret))
        .route("/files", post(uploads::create).get(uploads::list).layer(DefaultBodyLimit::max(uploads::MAX_BODY_BYTES)))
        .route("/files/{id}", get(uploads::get).delete(uploads::delete))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&sim), limits::limit))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&sim), api::require_token));
    let fal = Router::new()
        .route("/{owner}/{app}", post(fal::submit_to_app))
        .route("/{owner}/{app}/{*rest}", any(fal::under_app))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&sim), fal::require_key))
        .route("/.well-known/jwks.json", get(fal::jwks));
    let files =
        Router::new().route("/files/{id}/{file}", get(files::serve)).layer(middleware::map_response(files::sandboxed));
    Router::new().nest("/v1", v1).nest("/fal", fal).merge(files).route("/_stats", get(limits::stats)).with_state(sim)
}

pub use fal::webhook_key as fal_webhook_key;
pub use limits::{BURST_SECS as RATE_BURST_SECS, default_limits as default_rate_limits};

/// Parses `DARKROOM_SIM_DURATION_MS`: `"8000-20000"` (inclusive) or `"1500"`.
pub fn parse_duration_range(s: &str) -> Result<(u64, u64), String> {
    let number = |part: &str| {
        part.trim().parse::<u64>().map_err(|_| format!("{s:?} is not a duration in ms (\"1500\" or \"8000-20000\")"))
    };
    let (low, high) = match s.split_once('-') {
        Some((low, high)) => (number(low)?, number(high)?),
        None => {
            let fixed = number(s)?;
            (fixed, fixed)
        }
    };
    if low > high {
        return Err(format!("{s:?}: the range's lower bound is above its upper bound"));
    }
    if high > u64::from(u32::MAX) {
        return Err(format!("{s:?}: durations above {} ms are not supported", u32::MAX));
    }
    Ok((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_ranges_parse_and_bad_ones_name_the_value() {
        assert_eq!(parse_duration_range("8000-20000"), Ok((8000, 20000)));
        assert_eq!(parse_duration_range(" 300 - 500 "), Ok((300, 500)));
        assert_eq!(parse_duration_range("1500"), Ok((1500, 1500)));
        assert_eq!(parse_duration_range("0"), Ok((0, 0)));
        for bad in ["", "fast", "20000-8000", "-5", "1-2-3", "1.5", "99999999999"] {
            let err = parse_duration_range(bad).err();
            assert!(err.is_some_and(|e| e.contains(bad)), "{bad:?} should be rejected");
        }
    }
}
