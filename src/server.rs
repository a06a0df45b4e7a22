//! The server side: configuration, database, accounts, credits, storage, the
//! task engine, and the assembly of the axum `Router`.

pub mod account_deletion;
pub mod admin;
pub mod allocator;
pub mod auth;
pub mod background;
pub mod catalogue;
pub mod client;
pub mod clock;
pub mod config;
pub mod credits;
pub mod db;
pub mod engine;
pub mod http;
pub mod ids;
pub mod ledger;
pub mod mail;
pub mod metrics;
pub mod password_reset;
pub mod payments;
pub mod reads;
pub mod security;
pub mod sessions;
pub mod state;
pub mod storage;
pub mod tokens;
pub mod uploads;
pub mod verification;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use axum_login::AuthManagerLayerBuilder;
use axum_login::tower_sessions::cookie::SameSite;
use axum_login::tower_sessions::{Expiry, SessionManagerLayer};
use leptos::config::LeptosOptions;
use leptos_axum::{AxumRouteListing, LeptosRoutes, generate_route_list};
use secrecy::ExposeSecret;
use tower_http::trace::TraceLayer;

use self::auth::{Accounts, AttemptLimiter};
use self::config::{Config, ProviderChoice};
use self::sessions::Sessions;
use self::state::AppState;
use crate::app::{App, shell};
use crate::provider::{Api, Provider, ProviderConfig};

/// A built application: the router to serve and its state (tests reach into
/// the state to inspect the database and the object store).
pub struct Built {
    pub router: Router,
    pub state: AppState,
}

/// fal.ai's client, when a catalogue model names fal: fal's queue with
/// `FAL_KEY` (and `FAL_QUEUE_URL`) when set, otherwise `sim`: the
/// simulator's base, token and origin.
fn fal_client(config: &Config, sim: Option<(url::Url, &str, String)>) -> anyhow::Result<Option<Provider>> {
    if !config.models.iter().any(|m| m.api == Api::Fal) {
        return Ok(None);
    }
    let (base_url, token, hosts) = match (&config.fal, sim) {
        (Some(fal), _) => (fal.queue_url.clone(), fal.key.clone(), vec!["fal.media".to_owned()]),
        (None, Some((base, token, origin))) => (base, token.to_owned().into(), vec![origin]),
        // The configuration requires FAL_KEY for a fal model against Replicate.
        (None, None) => anyhow::bail!("FAL_KEY is required: a model is served by fal"),
    };
    let client = Provider::new(ProviderConfig {
        api: Api::Fal,
        base_url,
        token,
        output_hosts: config.output_hosts.clone().unwrap_or(hosts),
        connect_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(60),
    })?;
    Ok(Some(client))
}

/// Builds the whole application for `config`, to be served at `addr` (the
/// simulator needs to know where it is reachable), on the system clock.
/// Starts the background work (reconciler, session cleanup).
pub async fn build(config: Config, leptos_options: LeptosOptions, addr: SocketAddr) -> anyhow::Result<Built> {
    build_on(config, leptos_options, addr, clock::Clock::system()).await
}

/// [`build`] on `clock` (tests move a manual one).
pub async fn build_on(
    config: Config,
    mut leptos_options: LeptosOptions,
    addr: SocketAddr,
    clock: clock::Clock,
) -> anyhow::Result<Built> {
    leptos_options.site_addr = addr;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("DARKROOM_DATA_DIR: cannot create {}: {e}", config.data_dir.display()))?;

    let db = db::connect(&config.database_url).await?;
    let metrics = Arc::<metrics::Metrics>::default();
    let sessions = Sessions::new(db.clone());
    sessions.spawn_cleanup(Duration::from_secs(3600));
    let objects = storage::open(&config.storage)?;

    let local = local_base(addr);
    let (provider, fal, sim, sim_webhook_key, token_key) = match &config.provider {
        ProviderChoice::Sim => {
            let secret = sim_secret(&config)?;
            let public_base = local.join("sim")?;
            let token = match &config.sim_token {
                Some(token) => token.expose_secret().to_owned(),
                None => sim_token(&secret),
            };
            tracing::info!(api = %local.join("sim/v1")?, "{}", sim_token_notice(&config, &token));
            let webhook_secret = match &config.webhook_secret {
                Some(raw) => crate::standard_webhooks::Secret::parse(raw.expose_secret())
                    .map_err(|e| anyhow::anyhow!("DARKROOM_WEBHOOK_SECRET: {e}"))?,
                None => sim_webhook_secret(&secret),
            };
            let sim = crate::sim::SimConfig {
                public_base,
                api_token: token.clone(),
                secret,
                duration_ms: config.sim_duration_ms,
                output_ttl: config.sim_output_ttl,
                huge_bytes: config.max_image_bytes,
                webhook_secret,
                clock: clock.clone(),
                rate_limits: config.sim_rate_limits,
            };
            let key = engine::budget::token_key(&token);
            // The simulator's own origin, scheme and port included.
            let hosts = config.output_hosts.clone().unwrap_or_else(|| vec![local.origin().ascii_serialization()]);
            let provider = Provider::new(ProviderConfig {
                api: Api::Replicate,
                base_url: local.join("sim/v1/")?,
                token: token.clone().into(),
                output_hosts: hosts,
                connect_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(30),
            })?;
            let receiver_secret = sim.webhook_secret.clone();
            let fal_sim = (local.join("sim/fal/")?, token.as_str(), local.origin().ascii_serialization());
            let fal = fal_client(&config, Some(fal_sim))?;
            (provider, fal, Some(sim), Some(receiver_secret), key)
        }
        ProviderChoice::Replicate { token, base_url } => {
            let hosts = config.output_hosts.clone().unwrap_or_else(|| vec!["https://replicate.delivery".to_owned()]);
            let provider = Provider::new(ProviderConfig {
                api: Api::Replicate,
                base_url: base_url.clone(),
                token: token.clone(),
                output_hosts: hosts,
                connect_timeout: Duration::from_secs(10),
                request_timeout: Duration::from_secs(60),
            })?;
            let fal = fal_client(&config, None)?;
            (provider, fal, None, None, engine::budget::token_key(token.expose_secret()))
        }
    };
    // Provider webhooks, when the site has a public address to receive them.
    let (provider, webhooks) = match &config.public_url {
        None => (provider, None),
        Some(public) => {
            let url = public.join("webhooks/replicate")?;
            let secret = match (&config.webhook_secret, sim_webhook_key) {
                (Some(raw), _) => crate::standard_webhooks::Secret::parse(raw.expose_secret())
                    .map_err(|e| anyhow::anyhow!("DARKROOM_WEBHOOK_SECRET: {e}"))?,
                (None, Some(sim_key)) => sim_key,
                (None, None) => {
                    let key = provider.webhook_secret().await.map_err(|e| {
                        anyhow::anyhow!(
                            "DARKROOM_PUBLIC_URL is set, so webhooks are on, but the provider's webhook secret could \
                             not be fetched ({e}); set DARKROOM_WEBHOOK_SECRET"
                        )
                    })?;
                    crate::standard_webhooks::Secret::parse(&key)
                        .map_err(|e| anyhow::anyhow!("the provider's webhook secret: {e}"))?
                }
            };
            tracing::info!(%url, "provider webhooks on");
            let news = engine::news::News::start(db.clone(), Arc::clone(&metrics));
            let receiver = engine::webhook::Receiver::new(secret, url.clone(), news);
            (provider.with_webhook(url), Some(receiver))
        }
    };

    // fal's events too, verified with the keys of its key set (the
    // simulator's, unless FAL_KEY points at fal).
    let (fal, fal_webhooks) = match (&config.public_url, fal) {
        (Some(public), Some(fal)) => {
            let url = public.join("webhooks/fal")?;
            let jwks = match &config.fal {
                Some(settings) => settings.jwks_url.clone(),
                None => local.join("sim/fal/.well-known/jwks.json")?,
            };
            tracing::info!(%url, %jwks, "fal webhooks on");
            let receiver = engine::fal_events::FalReceiver::new(url.clone(), jwks)?;
            (Some(fal.with_webhook(url)), Some(receiver))
        }
        (_, fal) => (fal, None),
    };

    // Buying credits: Stripe, or its built-in simulator under /sim/stripe.
    let (payments, stripe_sim) = payments_for(&config, &local, &clock)?;

    let attempts = Arc::new(AttemptLimiter::per_minute(config.auth_attempts_per_minute));
    let signups_by_address = Arc::new(AttemptLimiter::per_hour(config.signups_per_address_per_hour));
    let signups = Arc::new(AttemptLimiter::<()>::per_hour(config.signups_per_hour));
    let account_attempts = Arc::new(AttemptLimiter::<String>::per_minute(config.auth_attempts_per_minute));
    let sign_in_attempts = Arc::new(AttemptLimiter::<String>::per_minute(config.auth_attempts_per_minute));
    let task_changes = Arc::new(AttemptLimiter::<String>::per_minute(state::CANCELS_AND_DELETES_PER_MINUTE));
    let purchase_attempts = Arc::new(AttemptLimiter::<String>::per_minute(state::PURCHASES_PER_MINUTE));
    let upload_attempts = Arc::new(AttemptLimiter::<String>::per_minute(uploads::UPLOADS_PER_MINUTE));
    let mail_requests = Arc::new(AttemptLimiter::<String>::per_hour(password_reset::PER_ADDRESS_PER_HOUR));
    {
        let limiters = (
            attempts.clone(),
            account_attempts.clone(),
            task_changes.clone(),
            purchase_attempts.clone(),
            upload_attempts.clone(),
            mail_requests.clone(),
            signups_by_address.clone(),
            sign_in_attempts.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(300));
            loop {
                tick.tick().await;
                limiters.0.prune();
                limiters.1.prune();
                limiters.2.prune();
                limiters.3.prune();
                limiters.4.prune();
                limiters.5.prune();
                limiters.6.prune();
                limiters.7.prune();
            }
        });
    }

    let cookie_name = config.session_cookie_name();
    let session_layer = SessionManagerLayer::new(sessions)
        .with_name(cookie_name)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(config.secure_cookies)
        .with_expiry(Expiry::OnInactivity(axum_login::tower_sessions::cookie::time::Duration::seconds(
            config.session_idle.as_secs() as i64,
        )));
    let auth_layer = AuthManagerLayerBuilder::new(Accounts::new(db.clone()), session_layer).build();

    let budget = if config.is_sqlite() {
        engine::budget::Budget::in_memory(config.budget_limits(), clock.clone())
    } else {
        engine::budget::Budget::shared(db.clone(), token_key, config.budget_limits(), clock.clone()).await?
    };
    tracing::info!(limits = %budget.limits(), "provider budget");
    let uploads = Arc::new(engine::finalize::Uploads::for_store(&config.storage));
    let spool = Arc::new(uploads::Spool::new(config.data_dir.join("spool")));
    let mailer = Arc::new(mail::Mailer::new(&config.mail, &config.mail_from)?);
    let state = AppState::new(state::Shared {
        config: Arc::new(config),
        db,
        finished: Arc::default(),
        uploads,
        rechecks: Arc::default(),
        backlog: Arc::default(),
        objects,
        provider,
        fal,
        budget: Arc::new(budget),
        fal_budget: Arc::new(engine::budget::Budget::in_memory(crate::rate::Limits::OFF, clock.clone())),
        queue: Arc::default(),
        pace: Arc::default(),
        webhooks,
        fal_webhooks,
        payments,
        attempts,
        signups_by_address,
        signups,
        account_attempts,
        sign_in_attempts,
        task_changes,
        purchase_attempts,
        upload_attempts,
        mail_requests,
        mailer,
        spool,
        metrics,
        leptos_options: leptos_options.clone(),
        clock: clock.clone(),
    });

    engine::reconcile::spawn(state.clone());
    engine::queue::spawn(state.clone());
    engine::backlog::spawn(state.clone());
    mail::spawn(state.clone());

    let proxies = Arc::new(state.config.trusted_proxies.clone());
    let routes = page_routes();
    let app = Router::new()
        .route("/healthz", get(http::healthz))
        .route("/images/{task_id}", get(http::image))
        .route("/images/{task_id}/{n}", get(http::image_n))
        .route("/uploads/{id}", get(uploads::serve))
        .route(
            http::UPLOAD_PATH,
            axum::routing::post(uploads::receive).layer(axum::extract::DefaultBodyLimit::max(
                usize::try_from(state.config.max_input_bytes + uploads::FORM_OVERHEAD).unwrap_or(usize::MAX),
            )),
        )
        .route("/s/{token}", get(http::shared_page))
        .route("/s/{token}/image", get(http::shared_image))
        .route("/metrics", get(metrics::serve))
        .route(
            "/webhooks/replicate",
            axum::routing::post(engine::webhook::receive)
                .layer(axum::extract::DefaultBodyLimit::max(engine::webhook::MAX_EVENT_BYTES)),
        )
        .route(
            "/webhooks/fal",
            axum::routing::post(engine::fal_events::receive)
                .layer(axum::extract::DefaultBodyLimit::max(engine::webhook::MAX_EVENT_BYTES)),
        )
        .route(
            "/webhooks/stripe",
            axum::routing::post(payments::webhook::receive)
                .layer(axum::extract::DefaultBodyLimit::max(payments::webhook::MAX_EVENT_BYTES)),
        )
        .leptos_routes_with_context(&state, routes, security::provide_page_nonce, {
            let options = leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<AppState, _>(security::provide_page_nonce, shell))
        .layer(axum::middleware::from_fn(metrics::label_route))
        .with_state(state.clone());
    // The middleware wraps the routers once, as one service, rather than
    // each route (`Router::layer`): a route's layers are boxed one inside
    // the other and every request clones the whole chain, once for the
    // route and again in each `from_fn` layer (about a hundred allocations
    // a request with these fourteen). Outermost first: who the client is,
    // for everything inside (logs included), and the host it asked for;
    // then the simulators, behind only those and the headers; then the
    // app: the headers every response carries, metrics, the cross-site
    // check outside the session layers (a refused request reaches no
    // session), and the session layers.
    let app = tower::ServiceBuilder::new()
        .layer(page_compression())
        .layer(axum::middleware::from_fn_with_state(state.clone(), security::headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(axum::middleware::from_fn_with_state(state.clone(), security::refuse_cross_site))
        .layer(axum::middleware::from_fn_with_state(cookie_name, sessions::one_session_cookie))
        .layer(auth_layer)
        .layer(axum::middleware::from_fn(sessions::keep_alive))
        .layer(axum::middleware::from_fn(http::limit_api_body))
        .layer(axum::middleware::from_fn(http::error_status))
        .layer(axum::middleware::from_fn(http::page_redirects))
        .layer(axum::middleware::from_fn_with_state(state.clone(), payments::on_return))
        .service(app);
    let mut routed = Router::new().fallback_service(app);
    if let Some(sim) = sim {
        // Its files set their own (sandboxed) policy, which
        // `security::headers` keeps.
        let sim = crate::sim::router(sim).layer(axum::middleware::from_fn_with_state(state.clone(), security::headers));
        routed = routed.nest("/sim", sim);
    }
    if let Some(stripe) = stripe_sim {
        let stripe = crate::sim::stripe::router(stripe)
            .layer(axum::middleware::from_fn_with_state(state.clone(), security::headers));
        routed = routed.nest("/sim/stripe", stripe);
    }
    let outer = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn_with_state(proxies, client::resolve_client))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::extract::Request| {
            let client = request.extensions().get::<client::Client>().map(|c| c.ip);
            tracing::debug_span!("request", method = %request.method(), uri = %request.uri(), client = ?client)
        }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), security::refuse_unknown_host))
        .service(routed);
    let router = Router::new().fallback_service(outer);

    Ok(Built { router, state })
}

/// The app's page routes, listed once per process.
///
/// Listing renders the app with resource loading switched off for the whole
/// process (`SuppressResourceLoad` is one global flag in leptos_server 0.8;
/// leptos-rs/leptos#4753 makes it re-entrant and moves the check into the
/// loader, but the flag stays global). A page rendered on another thread
/// while the list is made creates resources that never load, and its
/// answer never comes. A server lists its routes before it serves; a
/// process that builds several apps while others serve (the tests) must not
/// list them again.
fn page_routes() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// Gzip for the static files a first page load downloads (its script,
/// WebAssembly and stylesheet) when the browser accepts it. Not for pages:
/// a page echoes its address (`/?prompt=…`) beside the person's own data,
/// and compressing both together would let a network observer guess that
/// data from response sizes (BREACH). Not for the server functions' small
/// JSON answers (the polling hot path) or images (already compressed).
fn page_compression() -> tower_http::compression::CompressionLayer<impl tower_http::compression::Predicate> {
    use tower_http::compression::{CompressionLayer, DefaultPredicate, Predicate};
    let page_or_asset = |_: axum::http::StatusCode,
                         _: axum::http::Version,
                         headers: &axum::http::HeaderMap,
                         _: &axum::http::Extensions| {
        headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| {
            ["text/css", "text/javascript", "application/javascript", "application/wasm"]
                .iter()
                .any(|kind| t.starts_with(kind))
        })
    };
    CompressionLayer::new().gzip(true).compress_when(DefaultPredicate::new().and(page_or_asset))
}

/// Refuses to serve pages that could never come alive: the script and the
/// WebAssembly file the pages will link to must be in the site root. A
/// binary built outside cargo-leptos (`cargo build`, `cargo bench`) links
/// the WebAssembly under another name than cargo-leptos builds.
pub fn check_site(options: &LeptosOptions) -> anyhow::Result<()> {
    let pkg = std::path::Path::new(options.site_root.as_ref()).join(options.site_pkg_dir.as_ref());
    let name = options.output_name.as_ref();
    // Mirrors how Leptos' <HydrationScripts> names the files.
    let wasm_suffix = if option_env!("LEPTOS_OUTPUT_NAME").is_none() { "_bg" } else { "" };
    for file in [format!("{name}.js"), format!("{name}{wasm_suffix}.wasm")] {
        let path = pkg.join(&file);
        if !path.is_file() {
            anyhow::bail!(
                "the pages link to {}, which does not exist: build with `make build` (cargo leptos build --release) \
                 and start the binary it built, with LEPTOS_SITE_ROOT naming its site folder{}",
                path.display(),
                if wasm_suffix.is_empty() {
                    ""
                } else {
                    " (this binary was not built by cargo-leptos, e.g. by `cargo build` or `cargo bench`)"
                }
            );
        }
    }
    Ok(())
}

/// `http://host:port/` where this server is reachable from itself.
fn local_base(addr: SocketAddr) -> url::Url {
    let ip = if addr.ip().is_unspecified() {
        if addr.is_ipv4() { "127.0.0.1".to_owned() } else { "[::1]".to_owned() }
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    // A literal address and port always parse.
    url::Url::parse(&format!("http://{ip}:{}/", addr.port())).unwrap_or_else(|_| unreachable!())
}

/// The payment side for `DARKROOM_PAYMENTS`: Stripe's API, or the
/// built-in simulator (with its router, to nest under `/sim/stripe`).
fn payments_for(
    config: &Config,
    local: &url::Url,
    clock: &clock::Clock,
) -> anyhow::Result<(Option<Arc<payments::Payments>>, Option<crate::sim::stripe::StripeSimConfig>)> {
    use config::PaymentsChoice;
    let packages = config.credit_packages.clone();
    match &config.payments {
        PaymentsChoice::Off => Ok((None, None)),
        PaymentsChoice::Stripe { secret_key, webhook_secret, base_url } => {
            let stripe = crate::stripe::Stripe::new(base_url.clone(), secret_key.clone())?;
            Ok((Some(Arc::new(payments::Payments::new(stripe, webhook_secret.clone(), packages))), None))
        }
        PaymentsChoice::Sim => {
            // Derived from the simulator's key: every instance sharing it
            // verifies the same events.
            let key = derive(&sim_secret(config)?, b"darkroom-stripe-sim-webhook-secret");
            let hex: String = key.iter().take(24).map(|b| format!("{b:02x}")).collect();
            let webhook_secret = format!("whsec_{hex}");
            let sim = crate::sim::stripe::StripeSimConfig {
                webhook_url: local.join("webhooks/stripe")?,
                webhook_secret: webhook_secret.clone(),
                public_base: local.join("sim/stripe")?,
                clock: clock.clone(),
            };
            let stripe =
                crate::stripe::Stripe::new(local.join("sim/stripe")?, "sk_test_darkroom_simulator".to_owned().into())?;
            let payments = payments::Payments::new(stripe, webhook_secret.into(), packages);
            Ok((Some(Arc::new(payments)), Some(sim)))
        }
    }
}

/// The simulator's signing key: configured, or kept in the data dir so
/// prediction ids survive a restart.
fn sim_secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.sim_secret {
        return Ok(secret.expose_secret().as_bytes().to_vec());
    }
    let path = config.data_dir.join("sim.key");
    match std::fs::read(&path) {
        Ok(key) if key.len() >= 32 => Ok(key),
        _ => {
            let key: [u8; 32] = rand::random();
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(&path, &hex).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            Ok(hex.into_bytes())
        }
    }
}

/// What the start-up log says of the simulator's token. A token the
/// operator chose is never logged; the derived one is, as a developer's
/// convenience (to point their own Replicate client at `/sim/v1`), only
/// while the site is not public: anyone who reads the logs of a public
/// site could otherwise fetch the signing key and mint events.
fn sim_token_notice(config: &Config, token: &str) -> String {
    match (&config.sim_token, &config.public_url) {
        (Some(_), _) => "simulator API token: DARKROOM_SIM_TOKEN (not logged)".to_owned(),
        (None, Some(_)) => {
            "simulator API token: derived from its key, not logged on a public site (set DARKROOM_SIM_TOKEN to \
             choose one)"
                .to_owned()
        }
        (None, None) => format!("simulator API token: {token}"),
    }
}

/// The bearer token the simulator accepts, derived from its key.
fn sim_token(secret: &[u8]) -> String {
    let digest = derive(secret, b"darkroom-sim-api-token");
    format!("r8_sim{}", digest.iter().take(16).map(|b| format!("{b:02x}")).collect::<String>())
}

/// The key the simulator signs webhooks with when `DARKROOM_WEBHOOK_SECRET`
/// is unset: derived from its key, so instances sharing it agree.
fn sim_webhook_secret(secret: &[u8]) -> crate::standard_webhooks::Secret {
    crate::standard_webhooks::Secret::from_bytes(&derive(secret, b"darkroom-sim-webhook-secret"))
}

/// HMAC-SHA256 of a fixed label under the simulator's key.
fn derive(secret: &[u8], label: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(label);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The static files go gzipped to a browser that takes gzip; pages,
    /// JSON and images never do.
    #[tokio::test]
    async fn only_static_files_are_compressed() {
        use axum::http::{Request, header};
        use tower::ServiceExt;
        let big = "0123456789abcdef".repeat(256);
        let router = |kind: &'static str| {
            let body = big.clone();
            Router::new().route("/", get(move || async move { ([(header::CONTENT_TYPE, kind)], body) }))
        };
        for (kind, compressed) in [
            ("application/wasm", true),
            ("text/javascript", true),
            ("text/css", true),
            ("text/html; charset=utf-8", false),
            ("application/json", false),
            ("image/png", false),
        ] {
            let app = router(kind).layer(page_compression());
            let request = Request::get("/").header(header::ACCEPT_ENCODING, "gzip").body(axum::body::Body::empty());
            let response = app.oneshot(request.unwrap()).await.unwrap();
            let encoding = response.headers().get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(encoding.as_deref() == Some("gzip"), compressed, "{kind}: {encoding:?}");
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            assert_eq!(body.len() < big.len(), compressed, "{kind}: {} bytes", body.len());
        }
        // Without Accept-Encoding, as it is.
        let response = router("application/wasm")
            .layer(page_compression())
            .oneshot(Request::get("/").body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(response.headers().get(header::CONTENT_ENCODING).is_none());
    }

    /// Leptos.toml (read by the server binary) must agree with the build
    /// settings in Cargo.toml (read by cargo-leptos).
    #[test]
    fn leptos_toml_matches_the_build_settings() {
        let run = leptos::config::get_configuration(Some("Leptos.toml")).unwrap().leptos_options;
        let build = leptos::config::get_configuration(Some("Cargo.toml")).unwrap().leptos_options;
        assert_eq!(run.output_name, build.output_name);
        assert_eq!(run.site_root, build.site_root);
        assert_eq!(run.site_pkg_dir, build.site_pkg_dir);
        assert_eq!(run.site_addr, build.site_addr);
        assert_eq!(run.reload_port, build.reload_port);
    }

    #[test]
    fn the_local_base_is_reachable_from_this_process() {
        assert_eq!(local_base("0.0.0.0:3000".parse().unwrap()).as_str(), "http://127.0.0.1:3000/");
        assert_eq!(local_base("[::]:8080".parse().unwrap()).as_str(), "http://[::1]:8080/");
        assert_eq!(local_base("10.1.2.3:8080".parse().unwrap()).as_str(), "http://10.1.2.3:8080/");
    }

    #[test]
    fn the_sim_token_is_logged_only_when_derived_on_a_private_site() {
        let config = |vars: &[(&str, &str)]| {
            let vars: std::collections::HashMap<String, String> =
                vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            Config::from_lookup(|k| vars.get(k).cloned()).unwrap()
        };
        let token = "r8_simsecretvalue";
        assert!(sim_token_notice(&config(&[]), token).contains(token), "a developer's own machine");
        for vars in [
            &[("DARKROOM_SIM_TOKEN", token)][..],
            &[("DARKROOM_PUBLIC_URL", "http://192.168.1.20:3000")][..],
            &[("DARKROOM_PUBLIC_URL", "https://darkroom.example"), ("DARKROOM_SIM_ON_PUBLIC_SITE", "true")][..],
        ] {
            assert!(!sim_token_notice(&config(vars), token).contains(token), "{vars:?}");
        }
    }

    #[test]
    fn the_sim_token_is_stable_per_key() {
        assert_eq!(sim_token(b"k1"), sim_token(b"k1"));
        assert_ne!(sim_token(b"k1"), sim_token(b"k2"));
    }

    #[test]
    fn the_sim_webhook_secret_is_stable_per_key() {
        let key = sim_webhook_secret(b"k1").expose_whsec();
        assert_eq!(key, sim_webhook_secret(b"k1").expose_whsec());
        assert_ne!(key, sim_webhook_secret(b"k2").expose_whsec());
        assert!(crate::standard_webhooks::Secret::parse(&key).is_ok());
    }
}
