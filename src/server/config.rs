//! Typed configuration, read once from the environment at start-up. Every
//! setting has a default that works on a fresh clone; a bad value stops
//! start-up with a message naming the variable.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::catalogue;
use crate::rate::Limits;

/// The share of the provider's published limits the engine spends: the
/// rest is a margin for clock drift between us and the provider, other
/// clients of the same token, and calls made by hand.
pub const BUDGET_MARGIN: f64 = 0.8;
/// The engine's budget allows bursts of this many seconds' worth of calls.
pub const BUDGET_BURST_SECS: u32 = 2;
pub use super::catalogue::ModelSpec;

/// Where finished images are kept.
#[derive(Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// A local folder (`file://…`).
    Local(PathBuf),
    /// An S3-compatible bucket (`s3://bucket`), with the `AWS_*` settings
    /// (endpoint, region, keys) that were set, as (lower-case name, value).
    S3 { bucket: String, aws: Vec<(String, String)> },
}

/// The `AWS_*` variables passed to the S3 client when set.
pub const AWS_VARS: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ALLOW_HTTP",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
];

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(dir) => f.debug_tuple("Local").field(dir).finish(),
            Self::S3 { bucket, aws } => {
                let names: Vec<&str> = aws.iter().map(|(k, _)| k.as_str()).collect();
                f.debug_struct("S3").field("bucket", bucket).field("aws_settings", &names).finish()
            }
        }
    }
}

/// Where mail goes.
#[derive(Debug, Clone)]
pub enum MailChoice {
    /// No SMTP configured: `.eml` files in this folder, links logged.
    Folder(PathBuf),
    /// An SMTP server, as lettre's URL (`smtps://user:pass@host:465`,
    /// `smtp://host:587?tls=required`); it may hold a password.
    Smtp(SecretString),
}

/// Where people pay for credits.
#[derive(Debug, Clone)]
pub enum PaymentsChoice {
    /// The built-in Stripe simulator, served by this process under
    /// `/sim/stripe/`.
    Sim,
    /// Stripe's API.
    Stripe { secret_key: SecretString, webhook_secret: SecretString, base_url: url::Url },
    /// Buying is off: credits come only from grants.
    Off,
}

/// A package of credits for sale, from `DARKROOM_CREDIT_PACKAGES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditPackage {
    /// How the browser names it: the number of credits.
    pub id: String,
    pub credits: i64,
    /// The price in the currency's minor unit (cents).
    pub amount: i64,
    /// ISO 4217, lower case (`usd`).
    pub currency: String,
}

/// Currencies without a minor unit (Stripe's zero-decimal currencies).
const ZERO_DECIMAL: &[&str] =
    &["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"];

impl CreditPackage {
    /// "5.00 USD", "500 JPY".
    pub fn price(&self) -> String {
        price_text(self.amount, &self.currency)
    }
}

/// An amount in minor units as people read it: "5.00 USD", "500 JPY".
pub fn price_text(amount: i64, currency: &str) -> String {
    let code = currency.to_ascii_uppercase();
    if ZERO_DECIMAL.contains(&currency) {
        format!("{amount} {code}")
    } else {
        format!("{}.{:02} {code}", amount / 100, amount % 100)
    }
}

/// Parses `100=5.00 USD, 500=20.00 USD`: credits, then the price.
pub fn parse_packages(raw: &str) -> Result<Vec<CreditPackage>, String> {
    let mut packages: Vec<CreditPackage> = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("`{part}` is not `CREDITS=PRICE CURRENCY`, like `100=5.00 USD`");
        let (credits, price) = part.split_once('=').ok_or_else(bad)?;
        let credits: i64 = credits.trim().parse().map_err(|_| bad())?;
        if !(1..=100_000_000).contains(&credits) {
            return Err(format!("`{part}`: credits must be 1 to 100000000"));
        }
        let (number, currency) = price.trim().split_once(' ').ok_or_else(bad)?;
        let currency = currency.trim().to_ascii_lowercase();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(format!("`{part}`: `{currency}` is not a three-letter currency code"));
        }
        let zero_decimal = ZERO_DECIMAL.contains(&currency.as_str());
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let fraction_ok = if zero_decimal {
            fraction.is_empty()
        } else {
            fraction.is_empty() || (fraction.len() == 2 && digits(fraction))
        };
        if !digits(whole) || whole.len() > 9 || !fraction_ok {
            return Err(format!(
                "`{part}`: `{number}` is not a price like 5.00{}",
                if zero_decimal { " (whole units for this currency)" } else { "" }
            ));
        }
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        let amount = if zero_decimal { whole } else { whole * 100 + fraction.parse::<i64>().unwrap_or(0) };
        if amount <= 0 {
            return Err(format!("`{part}`: a price must be above zero"));
        }
        let id = credits.to_string();
        if packages.iter().any(|p| p.id == id) {
            return Err(format!("two packages of {credits} credits"));
        }
        packages.push(CreditPackage { id, credits, amount, currency });
    }
    if packages.len() > 20 {
        return Err("at most 20 packages".into());
    }
    Ok(packages)
}

/// Which provider generations go to.
#[derive(Debug, Clone)]
pub enum ProviderChoice {
    /// The built-in simulator, served by this process under `/sim/`.
    Sim,
    /// Replicate's HTTP API.
    Replicate { token: SecretString, base_url: url::Url },
}

/// fal.ai's key and queue (`FAL_KEY`, `FAL_QUEUE_URL`), for the models
/// that name it.
#[derive(Debug, Clone)]
pub struct FalConfig {
    pub key: SecretString,
    pub queue_url: url::Url,
    /// Where the keys its webhooks are signed with are (`FAL_JWKS_URL`).
    pub jwks_url: url::Url,
}

/// Every setting Darkroom reads (see the README's table).
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub storage: StorageConfig,
    pub provider: ProviderChoice,
    /// Set by `FAL_KEY`.
    pub fal: Option<FalConfig>,
    pub models: Vec<ModelSpec>,
    /// The model "Upscale" uses, when the catalogue has one.
    pub upscaler: Option<catalogue::Upscaler>,
    /// Largest image a person may upload to start from
    /// (`DARKROOM_MAX_INPUT_BYTES`).
    pub max_input_bytes: u64,
    pub generation_cost: i64,
    pub signup_credits: i64,
    pub poll_interval: Duration,
    pub provider_check: Duration,
    pub reconcile_interval: Duration,
    pub task_deadline: Duration,
    pub max_image_bytes: u64,
    /// Hosts outputs may be downloaded from; `None` means the provider's own.
    pub output_hosts: Option<Vec<String>>,
    pub sim_duration_ms: (u64, u64),
    pub sim_output_ttl: Duration,
    /// The simulator's limits per token (`DARKROOM_SIM_RATE_LIMITS`).
    pub sim_rate_limits: Limits,
    /// The provider's published limits per API token
    /// (`DARKROOM_PROVIDER_LIMITS`); the engine's budget is
    /// [`BUDGET_MARGIN`] of them.
    pub provider_limits: Limits,
    /// Key that signs simulator prediction ids; instances sharing a database
    /// must share it. Default: a random key kept in the data dir.
    pub sim_secret: Option<SecretString>,
    /// The simulator's API token (`DARKROOM_SIM_TOKEN`), so a person's own
    /// Replicate client can be pointed at `/sim/v1`. Default: derived from
    /// the simulator's key and logged at start-up.
    pub sim_token: Option<SecretString>,
    /// `whsec_…` key that signs provider webhooks (`DARKROOM_WEBHOOK_SECRET`),
    /// checked at start-up. The simulator signs with it; without it, it
    /// derives one from its own key.
    pub webhook_secret: Option<SecretString>,
    /// Sign-in and sign-up attempts allowed per client per minute.
    pub auth_attempts_per_minute: u32,
    /// Accounts created per hour on this instance (`DARKROOM_SIGNUPS_PER_HOUR`).
    pub signups_per_hour: u32,
    /// Accounts created per hour per client address (an IPv6 client's
    /// /64) (`DARKROOM_SIGNUPS_PER_ADDRESS_PER_HOUR`).
    pub signups_per_address_per_hour: u32,
    /// Mark the session cookie `Secure`: set by `DARKROOM_SECURE_COOKIES`,
    /// or implied by an https `DARKROOM_PUBLIC_URL`.
    pub secure_cookies: bool,
    /// The site's public origin (`https://darkroom.example`), when known.
    pub public_url: Option<url::Url>,
    /// Peers whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed.
    pub trusted_proxies: crate::server::client::TrustedProxies,
    /// Bearer token that opens `/metrics` to clients beyond loopback.
    pub metrics_token: Option<SecretString>,
    /// A person's generations submitting or processing at once.
    pub max_active_tasks: i64,
    /// A person's generations started per minute.
    pub generations_per_minute: i64,
    /// Sign out after this long without a visit.
    pub session_idle: Duration,
    /// Where people pay for credits (`DARKROOM_PAYMENTS`).
    pub payments: PaymentsChoice,
    /// What they can buy (`DARKROOM_CREDIT_PACKAGES`).
    pub credit_packages: Vec<CreditPackage>,
    /// Where mail goes (`DARKROOM_SMTP_URL`, else a folder).
    pub mail: MailChoice,
    /// Who mail comes from (`DARKROOM_MAIL_FROM`).
    pub mail_from: String,
    /// Sign-ups verify their address before they get credits or generate
    /// (`DARKROOM_REQUIRE_VERIFIED_EMAIL`; default on with SMTP).
    pub require_verified_email: bool,
}

/// A setting that could not be used, named.
#[derive(Debug, thiserror::Error)]
#[error("configuration error in {name}: {problem}")]
pub struct ConfigError {
    pub name: &'static str,
    pub problem: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `get` (tests pass a map instead of mutating
    /// the process environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());

        let data_dir = PathBuf::from(var("DARKROOM_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let database_url =
            var("DATABASE_URL").unwrap_or_else(|| format!("sqlite://{}/darkroom.db", data_dir.display()));
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(err("DATABASE_URL", "must start with sqlite:// or postgres://"));
        }
        let mut storage = parse_storage(var("DARKROOM_STORAGE"), &data_dir)?;
        if let StorageConfig::S3 { aws, .. } = &mut storage {
            *aws = AWS_VARS.iter().filter_map(|name| var(name).map(|v| (name.to_ascii_lowercase(), v))).collect();
        }
        let provider = parse_provider(&var)?;
        let public_url = var("DARKROOM_PUBLIC_URL").map(|raw| parse_public_url(&raw)).transpose()?;
        let sim_on_public_site = boolean(&var, "DARKROOM_SIM_ON_PUBLIC_SITE", false)?;
        if matches!(provider, ProviderChoice::Sim)
            && public_url.as_ref().is_some_and(|u| u.scheme() == "https")
            && !sim_on_public_site
        {
            return Err(err(
                "DARKROOM_PROVIDER",
                "is `sim` (the default: a development simulator that anyone with its token can drive) on a public \
                 https site (DARKROOM_PUBLIC_URL); set DARKROOM_PROVIDER=replicate, or \
                 DARKROOM_SIM_ON_PUBLIC_SITE=true if you mean to serve the simulator publicly",
            ));
        }
        let generation_cost = number(&var, "DARKROOM_GENERATION_COST", 10, 1..=1_000_000)?;
        let (models, upscaler) = match (var("DARKROOM_MODELS_FILE"), var("DARKROOM_MODELS")) {
            (Some(_), Some(_)) => {
                return Err(err("DARKROOM_MODELS_FILE", "set either it or DARKROOM_MODELS, not both"));
            }
            (Some(path), None) => {
                let path = std::path::Path::new(&path);
                let models = catalogue::from_file(path, generation_cost).map_err(|e| err("DARKROOM_MODELS_FILE", e))?;
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let upscaler = catalogue::upscaler_from_toml(&text, generation_cost)
                    .map_err(|e| err("DARKROOM_MODELS_FILE", format!("{}: {e}", path.display())))?;
                (models, upscaler)
            }
            (None, Some(list)) => {
                (catalogue::from_list(&list, generation_cost).map_err(|e| err("DARKROOM_MODELS", e))?, None)
            }
            (None, None) => (catalogue::builtin(generation_cost), Some(catalogue::Upscaler::builtin(generation_cost))),
        };

        let fal = parse_fal(&var)?;
        let builtin = var("DARKROOM_MODELS_FILE").is_none() && var("DARKROOM_MODELS").is_none();
        let mut models = models;
        if builtin && fal.is_none() && matches!(provider, ProviderChoice::Replicate { .. }) {
            // The built-in catalogue's fal model, without fal to serve it.
            models.retain(|m| m.api != crate::provider::Api::Fal);
        }
        if fal.is_none()
            && matches!(provider, ProviderChoice::Replicate { .. })
            && let Some(model) = models.iter().find(|m| m.api == crate::provider::Api::Fal)
        {
            return Err(err("FAL_KEY", format!("is required: model `{}` is served by fal", model.id)));
        }

        let payments = parse_payments(&var)?;
        // Anyone can pay the simulator with a test card: on a public site,
        // that is free credits for everyone.
        if matches!(payments, PaymentsChoice::Sim)
            && public_url.as_ref().is_some_and(|u| u.scheme() == "https")
            && !sim_on_public_site
        {
            return Err(err(
                "DARKROOM_PAYMENTS",
                "is `sim` (the default: a Stripe simulator where any test card pays) on a public https site \
                 (DARKROOM_PUBLIC_URL); set DARKROOM_PAYMENTS=stripe or off, or DARKROOM_SIM_ON_PUBLIC_SITE=true if \
                 you mean to serve the simulator publicly",
            ));
        }
        let credit_packages = parse_packages(var("DARKROOM_CREDIT_PACKAGES").as_deref().unwrap_or(DEFAULT_PACKAGES))
            .map_err(|e| err("DARKROOM_CREDIT_PACKAGES", e))?;
        if credit_packages.is_empty() && !matches!(payments, PaymentsChoice::Off) {
            return Err(err("DARKROOM_CREDIT_PACKAGES", "names no package (set DARKROOM_PAYMENTS=off to sell none)"));
        }
        Ok(Self {
            upscaler,
            max_input_bytes: number(&var, "DARKROOM_MAX_INPUT_BYTES", 10 * 1024 * 1024, 1024..=100 * 1024 * 1024)?,
            payments,
            credit_packages,
            storage,
            provider,
            fal,
            models,
            generation_cost,
            signup_credits: number(&var, "DARKROOM_SIGNUP_CREDITS", 100, 0..=1_000_000_000)?,
            poll_interval: millis(&var, "DARKROOM_POLL_INTERVAL_MS", 3000, 100..=600_000)?,
            provider_check: millis(&var, "DARKROOM_PROVIDER_CHECK_MS", 2000, 0..=600_000)?,
            reconcile_interval: Duration::from_secs(number(&var, "DARKROOM_RECONCILE_INTERVAL_SECS", 15, 1..=86_400)?),
            task_deadline: Duration::from_secs(number(&var, "DARKROOM_TASK_DEADLINE_SECS", 600, 1..=86_400)?),
            max_image_bytes: number(&var, "DARKROOM_MAX_IMAGE_BYTES", 20 * 1024 * 1024, 1024..=1 << 34)?,
            output_hosts: var("DARKROOM_OUTPUT_HOSTS")
                .map(|s| s.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect()),
            sim_duration_ms: parse_range(var("DARKROOM_SIM_DURATION_MS"))?,
            sim_output_ttl: Duration::from_secs(number(&var, "DARKROOM_SIM_OUTPUT_TTL_SECS", 3600, 1..=604_800)?),
            sim_rate_limits: match var("DARKROOM_SIM_RATE_LIMITS") {
                None => crate::sim::default_rate_limits(),
                Some(raw) => {
                    let defaults = crate::sim::default_rate_limits();
                    Limits::parse(&raw, defaults, crate::sim::RATE_BURST_SECS)
                        .map_err(|e| err("DARKROOM_SIM_RATE_LIMITS", e))?
                }
            },
            provider_limits: Limits::parse(
                var("DARKROOM_PROVIDER_LIMITS").as_deref().unwrap_or(""),
                Limits::replicate(BUDGET_BURST_SECS),
                BUDGET_BURST_SECS,
            )
            .map_err(|e| err("DARKROOM_PROVIDER_LIMITS", e))?,
            sim_secret: var("DARKROOM_SIM_SECRET").map(SecretString::from),
            sim_token: var("DARKROOM_SIM_TOKEN").map(|raw| parse_sim_token(&raw)).transpose()?,
            webhook_secret: var("DARKROOM_WEBHOOK_SECRET").map(|raw| parse_webhook_secret(&raw)).transpose()?,
            auth_attempts_per_minute: number(&var, "DARKROOM_AUTH_ATTEMPTS_PER_MINUTE", 10, 1..=1_000_000)?,
            signups_per_hour: number(&var, "DARKROOM_SIGNUPS_PER_HOUR", 100, 1..=1_000_000)?,
            signups_per_address_per_hour: number(&var, "DARKROOM_SIGNUPS_PER_ADDRESS_PER_HOUR", 5, 1..=1_000_000)?,
            secure_cookies: boolean(&var, "DARKROOM_SECURE_COOKIES", false)?
                || public_url.as_ref().is_some_and(|u| u.scheme() == "https"),
            public_url,
            trusted_proxies: crate::server::client::TrustedProxies::parse(
                var("DARKROOM_TRUSTED_PROXIES").as_deref().unwrap_or(""),
            )
            .map_err(|e| err("DARKROOM_TRUSTED_PROXIES", e))?,
            metrics_token: var("DARKROOM_METRICS_TOKEN").map(SecretString::from),
            max_active_tasks: number(&var, "DARKROOM_MAX_ACTIVE_TASKS", 4, 1..=10_000)?,
            generations_per_minute: number(&var, "DARKROOM_GENERATIONS_PER_MINUTE", 20, 1..=100_000)?,
            session_idle: Duration::from_secs(60 * 60 * 24 * number(&var, "DARKROOM_SESSION_DAYS", 30, 1..=3650)?),
            require_verified_email: boolean(
                &var,
                "DARKROOM_REQUIRE_VERIFIED_EMAIL",
                var("DARKROOM_SMTP_URL").is_some(),
            )?,
            mail: match var("DARKROOM_SMTP_URL") {
                Some(raw) => MailChoice::Smtp(parse_smtp_url(&raw)?),
                None => MailChoice::Folder(data_dir.join("outbox")),
            },
            mail_from: parse_mail_from(var("DARKROOM_MAIL_FROM"))?,
            data_dir,
            database_url,
        })
    }

    /// The session cookie's name: with `Secure` cookies it has the
    /// `__Host-` prefix, which browsers accept only from this host itself
    /// (Secure, `Path=/`, no `Domain`), so a sibling subdomain cannot plant
    /// one. Plain on http (the embedded default on 127.0.0.1).
    pub fn session_cookie_name(&self) -> &'static str {
        if self.secure_cookies { "__Host-darkroom_session" } else { "darkroom_session" }
    }

    /// What the engine may spend of the provider's limits.
    pub fn budget_limits(&self) -> Limits {
        self.provider_limits.scaled(BUDGET_MARGIN)
    }

    /// Whether `DATABASE_URL` names a SQLite database.
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
}

fn err(name: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { name, problem: problem.into() }
}

fn number<T>(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(raw) = var(name) else { return Ok(default) };
    let value: T = raw.parse().map_err(|_| err(name, format!("`{raw}` is not a whole number")))?;
    if !range.contains(&value) {
        return Err(err(name, format!("{value} is outside {}..={}", range.start(), range.end())));
    }
    Ok(value)
}

fn millis(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    number(var, name, default, range).map(Duration::from_millis)
}

fn boolean(var: &impl Fn(&str) -> Option<String>, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match var(name).as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => Err(err(name, format!("`{other}` is not true or false"))),
    }
}

fn parse_storage(raw: Option<String>, data_dir: &std::path::Path) -> Result<StorageConfig, ConfigError> {
    const NAME: &str = "DARKROOM_STORAGE";
    let Some(raw) = raw else { return Ok(StorageConfig::Local(data_dir.join("objects"))) };
    if let Some(path) = raw.strip_prefix("file://") {
        if path.is_empty() {
            return Err(err(NAME, "file:// needs a folder"));
        }
        Ok(StorageConfig::Local(PathBuf::from(path)))
    } else if let Some(bucket) = raw.strip_prefix("s3://") {
        let bucket = bucket.trim_end_matches('/');
        if bucket.is_empty() || bucket.contains('/') {
            return Err(err(NAME, "s3:// needs a bucket name, like s3://darkroom-images"));
        }
        Ok(StorageConfig::S3 { bucket: bucket.into(), aws: Vec::new() })
    } else {
        Err(err(NAME, format!("`{raw}` must start with file:// or s3://")))
    }
}

/// What `DARKROOM_CREDIT_PACKAGES` is when unset.
pub const DEFAULT_PACKAGES: &str = "100=5.00 USD,500=20.00 USD";

fn parse_payments(var: &impl Fn(&str) -> Option<String>) -> Result<PaymentsChoice, ConfigError> {
    match var("DARKROOM_PAYMENTS").as_deref().unwrap_or("sim") {
        "sim" => Ok(PaymentsChoice::Sim),
        "off" => Ok(PaymentsChoice::Off),
        "stripe" => {
            let secret_key = var("STRIPE_SECRET_KEY")
                .ok_or_else(|| err("STRIPE_SECRET_KEY", "is required when DARKROOM_PAYMENTS=stripe"))?;
            if !(secret_key.starts_with("sk_") || secret_key.starts_with("rk_")) {
                return Err(err("STRIPE_SECRET_KEY", "must be a secret (sk_…) or restricted (rk_…) key"));
            }
            let webhook_secret = var("STRIPE_WEBHOOK_SECRET")
                .ok_or_else(|| err("STRIPE_WEBHOOK_SECRET", "is required when DARKROOM_PAYMENTS=stripe"))?;
            if !webhook_secret.starts_with("whsec_") {
                return Err(err("STRIPE_WEBHOOK_SECRET", "must be the endpoint's signing secret (whsec_…)"));
            }
            let base = var("STRIPE_BASE_URL").unwrap_or_else(|| "https://api.stripe.com".into());
            let base_url =
                url::Url::parse(&base).map_err(|e| err("STRIPE_BASE_URL", format!("`{base}` is not a URL: {e}")))?;
            Ok(PaymentsChoice::Stripe {
                secret_key: SecretString::from(secret_key),
                webhook_secret: SecretString::from(webhook_secret),
                base_url,
            })
        }
        other => Err(err("DARKROOM_PAYMENTS", format!("`{other}` must be sim, stripe or off"))),
    }
}

fn parse_provider(var: &impl Fn(&str) -> Option<String>) -> Result<ProviderChoice, ConfigError> {
    match var("DARKROOM_PROVIDER").as_deref().unwrap_or("sim") {
        "sim" => Ok(ProviderChoice::Sim),
        "replicate" => {
            let token = var("REPLICATE_API_TOKEN")
                .ok_or_else(|| err("REPLICATE_API_TOKEN", "is required when DARKROOM_PROVIDER=replicate"))?;
            let base = var("REPLICATE_BASE_URL").unwrap_or_else(|| "https://api.replicate.com/v1".into());
            let base_url =
                url::Url::parse(&base).map_err(|e| err("REPLICATE_BASE_URL", format!("`{base}` is not a URL: {e}")))?;
            Ok(ProviderChoice::Replicate { token: SecretString::from(token), base_url })
        }
        other => Err(err("DARKROOM_PROVIDER", format!("`{other}` must be sim or replicate"))),
    }
}

/// `FAL_KEY`, `FAL_QUEUE_URL` (default fal's queue) and `FAL_JWKS_URL`
/// (default fal's key set).
fn parse_fal(var: &impl Fn(&str) -> Option<String>) -> Result<Option<FalConfig>, ConfigError> {
    let Some(key) = var("FAL_KEY").filter(|k| !k.trim().is_empty()) else { return Ok(None) };
    let http_url = |name: &'static str, default: &str| {
        let raw = var(name).unwrap_or_else(|| default.into());
        url::Url::parse(&raw)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
            .ok_or_else(|| err(name, format!("`{raw}` is not an http(s) URL")))
    };
    let queue_url = http_url("FAL_QUEUE_URL", "https://queue.fal.run")?;
    let jwks_url = http_url("FAL_JWKS_URL", "https://rest.alpha.fal.ai/.well-known/jwks.json")?;
    Ok(Some(FalConfig { key: SecretString::from(key.trim().to_owned()), queue_url, jwks_url }))
}

/// An http(s) origin, with at most a trailing `/` for a path.
fn parse_public_url(raw: &str) -> Result<url::Url, ConfigError> {
    const NAME: &str = "DARKROOM_PUBLIC_URL";
    let url = url::Url::parse(raw).map_err(|e| err(NAME, format!("`{raw}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(err(NAME, format!("`{raw}` must be an http(s) URL like https://darkroom.example")));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(err(NAME, format!("`{raw}` must be the site's origin, without a path")));
    }
    Ok(url)
}

impl Config {
    /// The model variations ("Vary") are made with: the first here that
    /// starts from an image.
    pub fn vary_model(&self) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.image_input.is_some())
    }

    /// The site's own origin (`scheme://host[:port]`), when configured.
    pub fn public_origin(&self) -> Option<String> {
        self.public_url.as_ref().map(|u| u.origin().ascii_serialization())
    }
}

/// `DARKROOM_SMTP_URL`: `smtps://` (TLS from the start) or `smtp://` with
/// `?tls=required` (STARTTLS; `starttls` means the same),
/// `?tls=opportunistic`, or nothing (plain, for a server on loopback).
/// Returned in lettre's syntax.
fn parse_smtp_url(raw: &str) -> Result<SecretString, ConfigError> {
    const NAME: &str = "DARKROOM_SMTP_URL";
    let mut url = url::Url::parse(raw.trim()).map_err(|_| err(NAME, "not a URL (e.g. smtps://user:pass@host:465)"))?;
    if !matches!(url.scheme(), "smtp" | "smtps") {
        return Err(err(NAME, "must start with smtp:// or smtps://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(err(NAME, "names no host"));
    }
    let mut query = Vec::new();
    for (key, value) in url.query_pairs() {
        match (key.as_ref(), value.as_ref()) {
            ("tls", "required" | "starttls") if url.scheme() == "smtp" => query.push(("tls", "required")),
            ("tls", "opportunistic") if url.scheme() == "smtp" => query.push(("tls", "opportunistic")),
            ("tls", _) => return Err(err(NAME, "tls= is required, starttls or opportunistic, and only with smtp://")),
            _ => return Err(err(NAME, format!("unknown parameter {}", key.chars().take(40).collect::<String>()))),
        }
    }
    let query =
        (!query.is_empty()).then(|| query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"));
    url.set_query(query.as_deref());
    Ok(SecretString::from(url.to_string()))
}

/// `DARKROOM_MAIL_FROM`: a mailbox (`Darkroom <hello@darkroom.example>`).
fn parse_mail_from(raw: Option<String>) -> Result<String, ConfigError> {
    let from = raw.unwrap_or_else(|| "Darkroom <darkroom@localhost>".to_owned());
    match from.parse::<lettre::message::Mailbox>() {
        Ok(_) => Ok(from),
        Err(_) => Err(err("DARKROOM_MAIL_FROM", "not a mailbox (e.g. Darkroom <hello@darkroom.example>)")),
    }
}

/// A bearer token: visible ASCII without spaces, so it fits a header.
fn parse_sim_token(raw: &str) -> Result<SecretString, ConfigError> {
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(err("DARKROOM_SIM_TOKEN", "must be visible ASCII characters without spaces"));
    }
    Ok(SecretString::from(raw))
}

/// A Standard Webhooks key, `whsec_<base64>`; the error says what is wrong
/// without echoing the value.
fn parse_webhook_secret(raw: &str) -> Result<SecretString, ConfigError> {
    crate::standard_webhooks::Secret::parse(raw).map_err(|e| err("DARKROOM_WEBHOOK_SECRET", e.to_string()))?;
    Ok(SecretString::from(raw))
}

fn parse_range(raw: Option<String>) -> Result<(u64, u64), ConfigError> {
    match raw {
        None => Ok((8000, 20000)),
        Some(raw) => crate::sim::parse_duration_range(&raw).map_err(|e| err("DARKROOM_SIM_DURATION_MS", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn an_empty_environment_gives_the_documented_defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.database_url, "sqlite://./data/darkroom.db");
        assert_eq!(c.storage, StorageConfig::Local(PathBuf::from("./data/objects")));
        assert!(matches!(c.provider, ProviderChoice::Sim));
        assert_eq!(c.generation_cost, 10);
        assert_eq!(c.signup_credits, 100);
        assert_eq!(c.poll_interval, Duration::from_millis(3000));
        assert_eq!(c.provider_check, Duration::from_millis(2000));
        assert_eq!(c.reconcile_interval, Duration::from_secs(15));
        assert_eq!(c.task_deadline, Duration::from_secs(600));
        assert_eq!(c.max_image_bytes, 20_971_520);
        assert_eq!(c.sim_duration_ms, (8000, 20000));
        assert_eq!(c.models[0].id, "black-forest-labs/flux-schnell");
    }

    #[test]
    fn mail_goes_to_a_folder_unless_an_smtp_url_is_set() {
        use secrecy::ExposeSecret;
        let c = config(&[("DARKROOM_DATA_DIR", "/tmp/dr")]).unwrap();
        assert!(matches!(&c.mail, MailChoice::Folder(dir) if dir == &PathBuf::from("/tmp/dr/outbox")));
        assert_eq!(c.mail_from, "Darkroom <darkroom@localhost>");
        assert!(!c.require_verified_email, "the embedded default signs up in one step");
        let smtp = config(&[("DARKROOM_SMTP_URL", "smtp://127.0.0.1:2525")]).unwrap();
        assert!(smtp.require_verified_email, "with SMTP, addresses are verified");
        let off =
            config(&[("DARKROOM_SMTP_URL", "smtp://127.0.0.1:2525"), ("DARKROOM_REQUIRE_VERIFIED_EMAIL", "false")]);
        assert!(!off.unwrap().require_verified_email);
        for (raw, lettre) in [
            ("smtps://u:p@mail.example:465", "smtps://u:p@mail.example:465"),
            ("smtp://mail.example:587?tls=starttls", "smtp://mail.example:587?tls=required"),
            ("smtp://127.0.0.1:2525", "smtp://127.0.0.1:2525"),
        ] {
            let c = config(&[("DARKROOM_SMTP_URL", raw)]).unwrap();
            let MailChoice::Smtp(url) = &c.mail else { panic!("{raw}: not SMTP") };
            assert_eq!(url.expose_secret(), lettre);
            assert!(!format!("{c:?}").contains("u:p"), "the password is not in Debug");
        }
        for bad in ["mail.example", "http://mail.example", "smtps://mail.example?tls=required", "smtp://x?tls=maybe"] {
            let e = config(&[("DARKROOM_SMTP_URL", bad)]).unwrap_err();
            assert_eq!(e.name, "DARKROOM_SMTP_URL", "{bad}");
        }
        assert_eq!(config(&[("DARKROOM_MAIL_FROM", "not a mailbox")]).unwrap_err().name, "DARKROOM_MAIL_FROM");
    }

    #[test]
    fn the_data_dir_moves_the_database_and_the_objects() {
        let c = config(&[("DARKROOM_DATA_DIR", "/tmp/dr")]).unwrap();
        assert_eq!(c.database_url, "sqlite:///tmp/dr/darkroom.db");
        assert_eq!(c.storage, StorageConfig::Local(PathBuf::from("/tmp/dr/objects")));
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (name, value) in [
            ("DARKROOM_GENERATION_COST", "ten"),
            ("DARKROOM_GENERATION_COST", "0"),
            ("DARKROOM_POLL_INTERVAL_MS", "-5"),
            ("DARKROOM_STORAGE", "ftp://x"),
            ("DARKROOM_PROVIDER", "midjourney"),
            ("DARKROOM_MODELS", "not-a-model"),
            ("DARKROOM_SIM_DURATION_MS", "20-10"),
            ("DATABASE_URL", "mysql://x"),
            ("DARKROOM_SECURE_COOKIES", "maybe"),
            ("DARKROOM_PUBLIC_URL", "darkroom.example"),
            ("DARKROOM_PUBLIC_URL", "https://darkroom.example/app"),
            ("DARKROOM_PUBLIC_URL", "ftp://darkroom.example"),
            ("DARKROOM_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("DARKROOM_TRUSTED_PROXIES", "caddy"),
            ("DARKROOM_MAX_ACTIVE_TASKS", "0"),
            ("DARKROOM_GENERATIONS_PER_MINUTE", "lots"),
            ("DARKROOM_WEBHOOK_SECRET", "hunter2"),
            ("DARKROOM_WEBHOOK_SECRET", "whsec_not base64!"),
            ("DARKROOM_WEBHOOK_SECRET", "whsec_c2hvcnQ="),
            ("DARKROOM_SIM_TOKEN", "r8 with spaces"),
            ("DARKROOM_SIM_RATE_LIMITS", "create=600"),
            ("DARKROOM_PROVIDER_LIMITS", "creates=600/min"),
            ("DARKROOM_PAYMENTS", "paypal"),
            ("DARKROOM_CREDIT_PACKAGES", "100=five dollars"),
            ("DARKROOM_CREDIT_PACKAGES", "100=5.5 USD"),
            ("DARKROOM_CREDIT_PACKAGES", "100=5.00 dollars"),
            ("DARKROOM_CREDIT_PACKAGES", "100=5.00 USD,100=6.00 EUR"),
            ("DARKROOM_CREDIT_PACKAGES", "0=5.00 USD"),
            ("DARKROOM_CREDIT_PACKAGES", "100=0.00 USD"),
        ] {
            let e = config(&[(name, value)]).unwrap_err();
            assert_eq!(e.name, name, "{value}");
            assert!(e.to_string().contains(name));
        }
    }

    #[test]
    fn the_simulator_starts_on_a_public_https_site_only_when_asked_to() {
        let public = ("DARKROOM_PUBLIC_URL", "https://darkroom.example");
        let e = config(&[public]).unwrap_err();
        assert_eq!(e.name, "DARKROOM_PROVIDER");
        assert!(e.problem.contains("DARKROOM_SIM_ON_PUBLIC_SITE=true"), "{}", e.problem);
        assert!(config(&[public, ("DARKROOM_SIM_ON_PUBLIC_SITE", "true")]).is_ok());
        let real_provider = [public, ("DARKROOM_PROVIDER", "replicate"), ("REPLICATE_API_TOKEN", "r8_x")];
        assert_eq!(config(&real_provider).unwrap_err().name, "DARKROOM_PAYMENTS", "the Stripe simulator too");
        assert!(config(&[&real_provider[..], &[("DARKROOM_PAYMENTS", "off")]].concat()).is_ok());
        // A plain-http public URL (a developer's LAN) is not a public site.
        assert!(config(&[("DARKROOM_PUBLIC_URL", "http://192.168.1.20:3000")]).is_ok());
        assert_eq!(
            config(&[("DARKROOM_SIM_ON_PUBLIC_SITE", "maybe")]).unwrap_err().name,
            "DARKROOM_SIM_ON_PUBLIC_SITE"
        );
    }

    #[test]
    fn an_https_public_url_makes_cookies_secure() {
        assert!(!config(&[]).unwrap().secure_cookies);
        assert!(!config(&[("DARKROOM_PUBLIC_URL", "http://127.0.0.1:3000")]).unwrap().secure_cookies);
        let c = config(&[("DARKROOM_PUBLIC_URL", "https://Darkroom.Example/"), ("DARKROOM_SIM_ON_PUBLIC_SITE", "1")])
            .unwrap();
        assert!(c.secure_cookies);
        assert_eq!(c.public_origin().as_deref(), Some("https://darkroom.example"));
        assert!(config(&[("DARKROOM_SECURE_COOKIES", "true")]).unwrap().secure_cookies);
    }

    #[test]
    fn provider_limits_default_to_replicates_and_the_budget_keeps_a_margin() {
        let c = config(&[]).unwrap();
        assert_eq!(c.provider_limits.to_string(), "create=600/min,other=3000/min");
        let budget = c.budget_limits();
        assert_eq!(budget.create.map(|r| (r.per_minute, r.burst)), Some((480, 16)));
        assert_eq!(budget.other.map(|r| (r.per_minute, r.burst)), Some((2400, 80)));
        assert_eq!(c.sim_rate_limits.to_string(), "create=600/min,other=3000/min");
        let c = config(&[("DARKROOM_PROVIDER_LIMITS", "create=6/min"), ("DARKROOM_SIM_RATE_LIMITS", "off")]).unwrap();
        assert_eq!(c.budget_limits().create.map(|r| (r.per_minute, r.burst)), Some((4, 1)));
        assert_eq!(c.sim_rate_limits, Limits::OFF);
    }

    #[test]
    fn packages_are_credits_and_a_price_in_minor_units() {
        let c = config(&[]).unwrap();
        assert!(matches!(c.payments, PaymentsChoice::Sim));
        let p = &c.credit_packages;
        assert_eq!((p[0].id.as_str(), p[0].credits, p[0].amount, p[0].currency.as_str()), ("100", 100, 500, "usd"));
        assert_eq!((p[1].credits, p[1].amount, p[1].price()), (500, 2000, "20.00 USD".to_owned()));
        let p = parse_packages(" 50 = 1 EUR , 1000=1500 JPY").unwrap();
        assert_eq!((p[0].amount, p[0].price()), (100, "1.00 EUR".to_owned()));
        assert_eq!((p[1].amount, p[1].price()), (1500, "1500 JPY".to_owned()));
        assert!(parse_packages("10=15.50 JPY").is_err(), "no minor unit in yen");
        let e = config(&[("DARKROOM_PAYMENTS", "stripe")]).unwrap_err();
        assert_eq!(e.name, "STRIPE_SECRET_KEY");
        let e = config(&[("DARKROOM_PAYMENTS", "stripe"), ("STRIPE_SECRET_KEY", "sk_test_1")]).unwrap_err();
        assert_eq!(e.name, "STRIPE_WEBHOOK_SECRET");
        let c = config(&[
            ("DARKROOM_PAYMENTS", "stripe"),
            ("STRIPE_SECRET_KEY", "sk_test_1"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_1"),
        ])
        .unwrap();
        assert!(
            matches!(c.payments, PaymentsChoice::Stripe { ref base_url, .. } if base_url.as_str() == "https://api.stripe.com/")
        );
        let c = config(&[("DARKROOM_PAYMENTS", "off"), ("DARKROOM_CREDIT_PACKAGES", ",")]).unwrap();
        assert!(matches!(c.payments, PaymentsChoice::Off) && c.credit_packages.is_empty());
        assert_eq!(config(&[("DARKROOM_CREDIT_PACKAGES", ",")]).unwrap_err().name, "DARKROOM_CREDIT_PACKAGES");
    }

    #[test]
    fn limits_have_their_documented_defaults() {
        let c = config(&[]).unwrap();
        assert_eq!((c.max_active_tasks, c.generations_per_minute), (4, 20));
        assert!(c.metrics_token.is_none());
        assert!(c.public_url.is_none());
    }

    #[test]
    fn webhook_secret_and_sim_token_are_optional_and_checked() {
        use secrecy::ExposeSecret;
        let c = config(&[]).unwrap();
        assert!(c.webhook_secret.is_none() && c.sim_token.is_none());
        let c = config(&[
            ("DARKROOM_WEBHOOK_SECRET", " whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw "),
            ("DARKROOM_SIM_TOKEN", "r8_local"),
        ])
        .unwrap();
        let secret = c.webhook_secret.as_ref().map(|s| s.expose_secret().to_owned());
        assert_eq!(secret.as_deref(), Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
        assert_eq!(c.sim_token.as_ref().map(|s| s.expose_secret().to_owned()).as_deref(), Some("r8_local"));
        let e = config(&[("DARKROOM_WEBHOOK_SECRET", "whsec_c2hvcnQ=")]).unwrap_err();
        assert!(e.to_string().contains("DARKROOM_WEBHOOK_SECRET") && e.to_string().contains("bytes"), "{e}");
        let e = config(&[("DARKROOM_WEBHOOK_SECRET", "my-secret-value")]).unwrap_err();
        assert!(!e.to_string().contains("my-secret-value"), "the value is not echoed: {e}");
    }

    #[test]
    fn fal_models_need_fals_key_outside_the_simulator() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("models.toml");
        std::fs::write(&file, "[[models]]\nid = \"fal-ai/flux/dev\"\nprovider = \"fal\"\n").unwrap();
        let file = file.display().to_string();
        let replicate = [("DARKROOM_PROVIDER", "replicate"), ("REPLICATE_API_TOKEN", "r8_x")];
        let with_file = [&replicate[..], &[("DARKROOM_MODELS_FILE", file.as_str())]].concat();
        let e = config(&with_file).unwrap_err();
        assert_eq!(e.name, "FAL_KEY");
        assert!(e.problem.contains("fal-ai/flux/dev"), "{e}");
        let c = config(&[&with_file[..], &[("FAL_KEY", "k")]].concat()).unwrap();
        let fal = c.fal.unwrap();
        assert_eq!(fal.queue_url.as_str(), "https://queue.fal.run/");
        assert_eq!(fal.jwks_url.as_str(), "https://rest.alpha.fal.ai/.well-known/jwks.json");
        let e =
            config(&[&with_file[..], &[("FAL_KEY", "k"), ("FAL_QUEUE_URL", "queue.fal.run")]].concat()).unwrap_err();
        assert_eq!(e.name, "FAL_QUEUE_URL");
        // The simulator serves fal's models without a key.
        assert!(config(&[("DARKROOM_MODELS_FILE", file.as_str())]).is_ok_and(|c| c.fal.is_none()));
        // Against Replicate alone, the built-in catalogue leaves its fal model out.
        let c = config(&replicate).unwrap();
        assert!(c.models.iter().all(|m| m.api == crate::provider::Api::Replicate));
        assert!(config(&[]).unwrap().models.iter().any(|m| m.api == crate::provider::Api::Fal));
    }

    #[test]
    fn replicate_needs_a_token() {
        let e = config(&[("DARKROOM_PROVIDER", "replicate")]).unwrap_err();
        assert_eq!(e.name, "REPLICATE_API_TOKEN");
        let c = config(&[("DARKROOM_PROVIDER", "replicate"), ("REPLICATE_API_TOKEN", "r8_x")]).unwrap();
        assert!(matches!(c.provider, ProviderChoice::Replicate { .. }));
    }

    #[test]
    fn models_come_from_a_list_or_a_file_never_both() {
        let c = config(&[("DARKROOM_MODELS", "a/b=Model B, c/d:abc123"), ("DARKROOM_GENERATION_COST", "7")]).unwrap();
        assert_eq!(
            c.models,
            vec![ModelSpec::prompt_only("a/b", "Model B", 7), ModelSpec::prompt_only("c/d:abc123", "d", 7)]
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("models.toml");
        std::fs::write(&file, "[[models]]\nid = \"e/f\"\nmax_outputs = 2\n").unwrap();
        let path = file.display().to_string();
        let c = config(&[("DARKROOM_MODELS_FILE", &path)]).unwrap();
        assert_eq!((c.models[0].id.as_str(), c.models[0].max_outputs, c.models[0].credits), ("e/f", 2, 10));
        let e = config(&[("DARKROOM_MODELS_FILE", &path), ("DARKROOM_MODELS", "a/b")]).unwrap_err();
        assert_eq!(e.name, "DARKROOM_MODELS_FILE");
        std::fs::write(&file, "[[models]]\nid = \"e/f\"\nseed = 3\n").unwrap();
        let e = config(&[("DARKROOM_MODELS_FILE", &path)]).unwrap_err();
        assert!(e.to_string().contains(&format!("{path}: model `e/f`: field `seed`")), "{e}");
    }

    #[test]
    fn storage_and_durations_parse() {
        let c = config(&[
            ("DARKROOM_STORAGE", "s3://images"),
            ("AWS_REGION", "auto"),
            ("AWS_SECRET_ACCESS_KEY", "hush"),
            ("DARKROOM_SIM_DURATION_MS", "1500"),
        ])
        .unwrap();
        assert_eq!(
            c.storage,
            StorageConfig::S3 {
                bucket: "images".into(),
                aws: vec![("aws_region".into(), "auto".into()), ("aws_secret_access_key".into(), "hush".into())]
            }
        );
        assert!(!format!("{:?}", c.storage).contains("hush"));
        assert_eq!(c.sim_duration_ms, (1500, 1500));
    }
}
