//! Stripe, the part Darkroom uses: Checkout Sessions (create, retrieve), PaymentIntents (retrieve), the
//! objects its events carry, and the `Stripe-Signature` those events are
//! signed with. A small reqwest client (three calls; the simulator answers
//! them the same way), not an SDK: it builds in seconds.
//!
//! Amounts are integers in the currency's minor unit (cents), as Stripe
//! counts them; credits are never confused with money: a purchase names
//! both.

pub mod signature;

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

/// Largest API answer read.
const MAX_BODY: usize = 1024 * 1024;

/// A failed Stripe call.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// 4xx: the request was refused; `message` is Stripe's.
    #[error("Stripe refused the request (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    /// 5xx, a timeout or the connection: the outcome is unknown.
    #[error("Stripe could not be reached: {0}")]
    Unavailable(String),
    /// An answer that is not what the API documents.
    #[error("unexpected answer from Stripe: {0}")]
    Malformed(String),
}

/// The client for Stripe's API (or the built-in simulator's).
#[derive(Clone)]
pub struct Stripe {
    http: reqwest::Client,
    /// `https://api.stripe.com` (the paths add `/v1/…`).
    base: Url,
    key: SecretString,
}

impl std::fmt::Debug for Stripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stripe").field("base", &self.base.as_str()).finish_non_exhaustive()
    }
}

/// What a Checkout Session is made for: one package, paid once.
pub struct NewCheckout<'a> {
    /// Our purchase id: the session's `client_reference_id`, its metadata
    /// and the payment's, and the idempotency key of the create.
    pub purchase_id: &'a str,
    pub credits: i64,
    /// In the currency's minor unit.
    pub amount: i64,
    /// ISO code, lower case (`usd`).
    pub currency: &'a str,
    pub product_name: &'a str,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
}

/// A Checkout Session, the fields Darkroom reads.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    /// The hosted payment page (while the session is open).
    #[serde(default)]
    pub url: Option<String>,
    /// `open`, `complete` or `expired`.
    #[serde(default)]
    pub status: Option<String>,
    /// `paid`, `unpaid` (an asynchronous payment not yet settled) or
    /// `no_payment_required`.
    pub payment_status: String,
    #[serde(default)]
    pub client_reference_id: Option<String>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    #[serde(default)]
    pub amount_total: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub payment_intent: Option<String>,
}

/// A charge as `charge.refunded` carries it.
#[derive(Debug, Clone, Deserialize)]
pub struct Charge {
    pub id: String,
    #[serde(default)]
    pub payment_intent: Option<String>,
    pub amount: i64,
    /// All refunds of the charge so far (cumulative).
    pub amount_refunded: i64,
}

/// A dispute as `charge.dispute.*` carry it.
#[derive(Debug, Clone, Deserialize)]
pub struct Dispute {
    pub id: String,
    pub charge: String,
    #[serde(default)]
    pub payment_intent: Option<String>,
    pub amount: i64,
    /// `needs_response`, `under_review`, `won`, `lost`, …
    pub status: String,
}

/// A PaymentIntent, the fields Darkroom reads.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
}

/// A signed event: its type and the object it is about.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub created: i64,
    pub data: EventData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
}

impl Stripe {
    /// A client for the API at `base` (`https://api.stripe.com`) with the
    /// secret key `key`.
    pub fn new(base: Url, key: SecretString) -> Result<Self, StripeError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("darkroom/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StripeError::Malformed(format!("HTTP client: {e}")))?;
        Ok(Self { http, base, key })
    }

    /// Creates the Checkout Session of a purchase. Safe to retry: the
    /// purchase id is the idempotency key, so Stripe answers a repeated
    /// create with the first session.
    pub async fn create_checkout(&self, c: &NewCheckout<'_>) -> Result<CheckoutSession, StripeError> {
        let credits = c.credits.to_string();
        let amount = c.amount.to_string();
        let form: Vec<(&str, &str)> = vec![
            ("mode", "payment"),
            ("client_reference_id", c.purchase_id),
            ("success_url", c.success_url),
            ("cancel_url", c.cancel_url),
            ("line_items[0][quantity]", "1"),
            ("line_items[0][price_data][currency]", c.currency),
            ("line_items[0][price_data][unit_amount]", &amount),
            ("line_items[0][price_data][product_data][name]", c.product_name),
            ("metadata[purchase_id]", c.purchase_id),
            ("metadata[credits]", &credits),
            ("payment_intent_data[metadata][purchase_id]", c.purchase_id),
        ];
        let request = self
            .http
            .post(self.url(&["checkout", "sessions"]))
            .header("Idempotency-Key", format!("darkroom-purchase-{}", c.purchase_id))
            .form(&form);
        self.call(request).await
    }

    /// Reads a Checkout Session as it stands.
    pub async fn retrieve_checkout(&self, id: &str) -> Result<CheckoutSession, StripeError> {
        self.call(self.http.get(self.url(&["checkout", "sessions", id]))).await
    }

    /// Reads a PaymentIntent (its metadata names our purchase).
    pub async fn retrieve_payment_intent(&self, id: &str) -> Result<PaymentIntent, StripeError> {
        self.call(self.http.get(self.url(&["payment_intents", id]))).await
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("v1").extend(segments);
        }
        url
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, StripeError> {
        let unavailable = |e: reqwest::Error| StripeError::Unavailable(e.to_string());
        let mut response = request
            .bearer_auth(self.key.expose_secret())
            .header(header::ACCEPT, "application/json")
            .header("Stripe-Version", "2024-06-20")
            .send()
            .await
            .map_err(unavailable)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(StripeError::Malformed(format!("an answer over {MAX_BODY} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_server_error() {
            return Err(StripeError::Unavailable(format!("HTTP {status}")));
        }
        if !status.is_success() {
            #[derive(Deserialize, Default)]
            struct ErrorBody {
                error: Option<ErrorDetail>,
            }
            #[derive(Deserialize, Default)]
            struct ErrorDetail {
                message: Option<String>,
            }
            let parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
            let message = parsed.error.and_then(|e| e.message).unwrap_or_else(|| "no message".to_owned());
            return Err(StripeError::Refused { status: status.as_u16(), message });
        }
        serde_json::from_slice(&body).map_err(|e| StripeError::Malformed(e.to_string()))
    }
}
