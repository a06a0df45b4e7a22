//! What the server does, counted: requests by route, polls, provider calls
//! by outcome, object writes, finalizations, refunds and generation time,
//! served at `GET /metrics` in the Prometheus text format. Tests and
//! benchmarks read the same counters to check the coalescing and
//! exactly-once bounds.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::client::Client;
use super::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    call: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PurposeLabels {
    purpose: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerFnLabels {
    /// The endpoint (`/api/list_history`).
    function: &'static str,
    /// `api` (an HTTP call) or `page` (a page rendering calls it).
    from: &'static str,
}

/// Server functions that ran without their request's context (see
/// `state::app_state`): counted for the whole process, since the state
/// that holds the other counters is what they could not find.
pub static LOST_CONTEXT: std::sync::LazyLock<Counter> = std::sync::LazyLock::new(Counter::default);

/// A request's labels, each from a bounded set: a known method or
/// `other`, a route pattern (the routes are the app's own) or `other`, and
/// a status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

/// Any token is a valid HTTP method: only the standard ones get a label.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The process's counters; `Metrics::default()` registers them all.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RequestLabels, Histogram>,
    polls: Counter,
    webhooks: Counter,
    webhook_duplicates: Counter,
    provider_calls: Family<CallLabels, Counter>,
    object_writes: Counter,
    finalizations: Family<OutcomeLabels, Counter>,
    refunds: Counter,
    deletions: Counter,
    mail: Family<OutcomeLabels, Counter>,
    generation_seconds: Histogram,
    queue_wait_seconds: Histogram,
    queue_reads: Family<PurposeLabels, Counter>,
    queue_claims_lost: Counter,
    server_fns: Family<ServerFnLabels, Counter>,
    /// Read when `/metrics` is scraped ([`Metrics::set_gauges`]).
    queue_length: Gauge,
    checks_waiting: Gauge,
    budget_left: Family<BudgetLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    call: &'static str,
}

/// What the scrape reads from the database and the budget.
pub struct Gauges {
    pub queue_length: i64,
    /// Checks waiting for the budget on this instance (its backlog).
    pub checks_waiting: i64,
    pub create_left: Option<f64>,
    pub other_left: Option<f64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("darkroom");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        let polls = Counter::default();
        let webhooks = Counter::default();
        let webhook_duplicates = Counter::default();
        let provider_calls = Family::<CallLabels, Counter>::default();
        let object_writes = Counter::default();
        let finalizations = Family::<OutcomeLabels, Counter>::default();
        let refunds = Counter::default();
        let deletions = Counter::default();
        let mail = Family::<OutcomeLabels, Counter>::default();
        let generation_seconds = Histogram::new(exponential_buckets(1.0, 1.5, 14));
        let queue_wait_seconds = Histogram::new(exponential_buckets(0.1, 2.0, 14));
        let queue_reads = Family::<PurposeLabels, Counter>::default();
        let queue_claims_lost = Counter::default();
        let queue_length = Gauge::default();
        let checks_waiting = Gauge::default();
        let budget_left = Family::<BudgetLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let server_fns = Family::<ServerFnLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by route and status", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency", request_seconds.clone());
        registry.register("polls", "Status checks of unfinished or finished tasks", polls.clone());
        registry.register("webhooks", "Verified provider events received", webhooks.clone());
        registry.register(
            "webhook_duplicates",
            "Verified provider events dropped as already applied (duplicates, replays)",
            webhook_duplicates.clone(),
        );
        registry.register("provider_calls", "Calls to the provider by kind and outcome", provider_calls.clone());
        registry.register("object_writes", "Images written to object storage", object_writes.clone());
        registry.register("finalizations", "Tasks that left processing, by outcome", finalizations.clone());
        registry.register("refunds", "Credits refunds (one per failed or canceled task)", refunds.clone());
        registry.register("deletions", "Tasks deleted by their owners", deletions.clone());
        registry.register("mail", "Mail sent, tried again later, or given up", mail.clone());
        registry.register("generation_seconds", "From submission to a stored image", generation_seconds.clone());
        registry.register(
            "queue_wait_seconds",
            "From a queued generation to its submission",
            queue_wait_seconds.clone(),
        );
        registry.register(
            "queue_order_reads",
            "Reads of the queue's fair order, to dispatch or to tell positions",
            queue_reads.clone(),
        );
        registry.register(
            "queue_claims_lost",
            "Queued tasks the dispatcher found taken (by another instance) or canceled",
            queue_claims_lost.clone(),
        );
        registry.register("queue_length", "Generations queued for the provider's budget", queue_length.clone());
        registry.register(
            "checks_waiting",
            "Status checks waiting for the provider's budget on this instance",
            checks_waiting.clone(),
        );
        registry.register(
            "provider_budget_left",
            "Provider calls of each kind that could be made back to back now",
            budget_left.clone(),
        );
        registry.register("server_fn_runs", "Server function bodies run, by endpoint and caller", server_fns.clone());
        registry.register(
            "lost_request_context",
            "Server functions run without their request's context (the process's, a bug when not 0)",
            LOST_CONTEXT.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            polls,
            webhooks,
            webhook_duplicates,
            provider_calls,
            object_writes,
            finalizations,
            refunds,
            deletions,
            mail,
            generation_seconds,
            queue_wait_seconds,
            queue_reads,
            queue_claims_lost,
            server_fns,
            queue_length,
            checks_waiting,
            budget_left,
        }
    }
}

impl Metrics {
    /// A message `outcome`: `sent`, `retried` or `given_up`.
    pub fn mail(&self, outcome: &'static str) {
        self.mail.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn poll(&self) {
        self.polls.inc();
    }

    pub fn webhook(&self) {
        self.webhooks.inc();
    }

    pub fn webhooks(&self) -> u64 {
        self.webhooks.get()
    }

    /// A verified event whose id was applied before (dropped).
    pub fn webhook_duplicate(&self) {
        self.webhook_duplicates.inc();
    }

    pub fn webhook_duplicates(&self) -> u64 {
        self.webhook_duplicates.get()
    }

    /// A provider call (`create`, `get`, `cancel`, `output`) and its
    /// outcome: `ok`, `error`, `throttled` (a 429) or `denied` (the budget
    /// had no room; nothing was sent).
    pub fn provider_call(&self, call: &'static str, outcome: &'static str) {
        self.provider_calls.get_or_create(&CallLabels { call, outcome }).inc();
    }

    /// Provider calls of `call` with `outcome` so far.
    pub fn provider_calls(&self, call: &'static str, outcome: &'static str) -> u64 {
        self.provider_calls.get_or_create(&CallLabels { call, outcome }).get()
    }

    /// A queued task left the queue for the provider after `waited`.
    pub fn dequeued(&self, waited: Duration) {
        self.queue_wait_seconds.observe(waited.as_secs_f64());
    }

    /// The queue's order was read: by the dispatcher for the heads to
    /// submit (`dispatch`), or for the positions views carry.
    pub fn queue_read(&self, purpose: &'static str) {
        self.queue_reads.get_or_create(&PurposeLabels { purpose }).inc();
    }

    /// Reads of the queue's order for `purpose` so far.
    pub fn queue_reads(&self, purpose: &'static str) -> u64 {
        self.queue_reads.get_or_create(&PurposeLabels { purpose }).get()
    }

    /// A head the dispatcher read was gone when it came to take it.
    pub fn queue_claim_lost(&self) {
        self.queue_claims_lost.inc();
    }

    pub fn queue_claims_lost(&self) -> u64 {
        self.queue_claims_lost.get()
    }

    pub fn object_written(&self) {
        self.object_writes.inc();
    }

    pub fn completed(&self, took: Duration) {
        self.finalizations.get_or_create(&OutcomeLabels { outcome: "completed" }).inc();
        self.generation_seconds.observe(took.as_secs_f64());
    }

    pub fn failed_and_refunded(&self) {
        self.finalizations.get_or_create(&OutcomeLabels { outcome: "failed" }).inc();
        self.refunds.inc();
    }

    pub fn deleted(&self) {
        self.deletions.inc();
    }

    pub fn canceled_and_refunded(&self) {
        self.finalizations.get_or_create(&OutcomeLabels { outcome: "canceled" }).inc();
        self.refunds.inc();
    }

    /// A server function's body ran: `from` is `api` or `page`.
    pub fn server_fn(&self, function: &'static str, from: &'static str) {
        self.server_fns.get_or_create(&ServerFnLabels { function, from }).inc();
    }

    /// How often the server function at `function` ran for pages.
    pub fn page_server_fn_runs(&self, function: &'static str) -> u64 {
        self.server_fns.get_or_create(&ServerFnLabels { function, from: "page" }).get()
    }

    pub fn polls(&self) -> u64 {
        self.polls.get()
    }

    /// Provider status checks (`get`) sent, whatever they answered.
    pub fn provider_gets(&self) -> u64 {
        ["ok", "error", "throttled"]
            .iter()
            .map(|o| self.provider_calls.get_or_create(&CallLabels { call: "get", outcome: o }).get())
            .sum()
    }

    pub fn object_writes(&self) -> u64 {
        self.object_writes.get()
    }

    pub fn completions(&self) -> u64 {
        self.finalizations.get_or_create(&OutcomeLabels { outcome: "completed" }).get()
    }

    pub fn failures(&self) -> u64 {
        self.finalizations.get_or_create(&OutcomeLabels { outcome: "failed" }).get()
    }

    /// Sets the gauges read at scrape time.
    pub fn set_gauges(&self, g: &Gauges) {
        self.queue_length.set(g.queue_length);
        self.checks_waiting.set(g.checks_waiting);
        for (call, left) in [("create", g.create_left), ("other", g.other_left)] {
            if let Some(left) = left {
                self.budget_left.get_or_create(&BudgetLabels { call }).set(left);
            }
        }
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// `GET /metrics`: to loopback clients (after proxy resolution), or to any
/// client with `Authorization: Bearer $DARKROOM_METRICS_TOKEN` when that is
/// set; everyone else gets the 404 of a route that does not exist.
pub async fn serve(State(state): State<AppState>, request: Request) -> Response {
    let client = request.extensions().get::<Client>().copied().unwrap_or_else(Client::unknown);
    if !may_read(&state, &client, request.headers()) {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    match gauges(&state).await {
        Ok(g) => state.metrics.set_gauges(&g),
        Err(e) => tracing::warn!("metrics: cannot read the queue and the budget: {e}"),
    }
    let content_type = HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], state.metrics.render()).into_response()
}

async fn gauges(state: &AppState) -> crate::error::Result<Gauges> {
    use super::engine::budget::Call;
    Ok(Gauges {
        queue_length: super::engine::queries::queue_length(&state.db).await?,
        checks_waiting: state.backlog.len() as i64,
        create_left: state.budget.left(Call::Create).await?,
        other_left: state.budget.left(Call::Other).await?,
    })
}

fn may_read(state: &AppState, client: &Client, headers: &HeaderMap) -> bool {
    use secrecy::ExposeSecret;
    if client.is_loopback() {
        return true;
    }
    let Some(token) = &state.config.metrics_token else { return false };
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    constant_time_eq(offered.trim().as_bytes(), token.expose_secret().as_bytes())
}

/// Equal bytes, compared in a time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Inside the router, after routing: passes the route a request matched
/// (its pattern, one of the app's own, never the client's path) out with
/// the response, to [`track`], which runs outside the router.
pub async fn label_route(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

/// Middleware: counts and times every request by its route pattern (never
/// the raw path, so ids do not explode the label set).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let route = response.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let labels = RequestLabels {
        method,
        route: route.unwrap_or_else(|| "other".to_owned()),
        status: response.status().as_u16(),
    };
    state.metrics.requests.get_or_create(&labels).inc();
    state.metrics.request_seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_the_prometheus_format() {
        let m = Metrics::default();
        m.poll();
        m.provider_call("get", "ok");
        m.provider_call("get", "error");
        m.provider_call("get", "denied");
        m.set_gauges(&Gauges { queue_length: 3, checks_waiting: 7, create_left: Some(2.5), other_left: None });
        m.dequeued(Duration::from_millis(1500));
        m.queue_read("dispatch");
        m.queue_claim_lost();
        m.completed(Duration::from_secs(3));
        m.failed_and_refunded();
        assert_eq!((m.polls(), m.provider_gets(), m.completions(), m.failures()), (1, 2, 1, 1));
        let text = m.render();
        assert!(text.contains("darkroom_polls_total 1"), "{text}");
        assert!(text.contains(r#"darkroom_provider_calls_total{call="get",outcome="error"} 1"#), "{text}");
        assert!(text.contains(r#"darkroom_finalizations_total{outcome="completed"} 1"#), "{text}");
        assert!(text.contains("darkroom_refunds_total 1"), "{text}");
        assert!(text.contains("darkroom_generation_seconds_count 1"), "{text}");
        assert!(text.contains(r#"darkroom_provider_calls_total{call="get",outcome="denied"} 1"#), "{text}");
        assert!(text.contains("darkroom_queue_length 3"), "{text}");
        assert!(text.contains("darkroom_checks_waiting 7"), "{text}");
        assert!(text.contains(r#"darkroom_provider_budget_left{call="create"} 2.5"#), "{text}");
        assert!(text.contains("darkroom_queue_wait_seconds_count 1"), "{text}");
        assert!(text.contains(r#"darkroom_queue_order_reads_total{purpose="dispatch"} 1"#), "{text}");
        assert!(text.contains("darkroom_queue_claims_lost_total 1"), "{text}");
    }

    #[test]
    fn only_standard_methods_get_a_label_of_their_own() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"PROPFIND").unwrap()), "other");
        assert_eq!(method_label(&Method::from_bytes(&[b'X'; 4000]).unwrap()), "other");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"secret"));
    }
}
