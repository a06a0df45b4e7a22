//! What every response and every state-changing request goes through:
//! the cross-site request check and the headers that keep pages out of
//! frames, stop content sniffing and restrict what a page may load.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::client::Client;
use super::state::AppState;

/// Paths whose POSTs come from other sites by design (signed provider
/// events) and are authenticated otherwise.
const CROSS_SITE_ALLOWED: &[&str] = &["/webhooks/"];

/// What a refused cross-site request is told.
pub const CROSS_SITE_REFUSED: &str =
    "Refused: this request came from another site. Open Darkroom itself and try again.";

/// Whether a request may change state, judged by the headers a browser sends.
/// `own_origin` is the site's origin (`https://darkroom.example`).
///
/// - `Origin` present: it must be the site's own.
/// - `Origin` absent, `Sec-Fetch-Site` present: `same-origin` or `none` (typed
///   into the address bar, a bookmark).
/// - Neither: not a browser acting for a page (curl, API clients): allowed;
///   a cookie only reaches such a client if it was given one.
pub fn same_origin(headers: &HeaderMap, own_origin: &str) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin.to_str().is_ok_and(|o| o.eq_ignore_ascii_case(own_origin));
    }
    match headers.get("sec-fetch-site") {
        Some(site) => matches!(site.to_str().map(str::to_ascii_lowercase).as_deref(), Ok("same-origin" | "none")),
        None => true,
    }
}

/// The origin this request was addressed to: `DARKROOM_PUBLIC_URL` when set,
/// else the scheme the client used and the `Host` it asked for.
fn own_origin(state: &AppState, request: &Request, client: &Client) -> Option<String> {
    if let Some(origin) = state.config.public_origin() {
        return Some(origin);
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))?;
    let scheme = if client.https { "https" } else { "http" };
    Some(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// Middleware: refuses a state-changing request sent by another site's page
/// with 403, before the session layer sees it (so nothing changes and no
/// cookie is set).
pub async fn refuse_cross_site(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if !changes_state(request.method()) || CROSS_SITE_ALLOWED.iter().any(|p| path.starts_with(p)) {
        return next.run(request).await;
    }
    let client = request.extensions().get::<Client>().copied().unwrap_or_else(Client::unknown);
    let allowed = own_origin(&state, &request, &client).is_some_and(|own| same_origin(request.headers(), &own));
    if allowed {
        return next.run(request).await;
    }
    tracing::warn!(client = %client.ip, path, origin = ?request.headers().get(header::ORIGIN), "cross-site request refused");
    (StatusCode::FORBIDDEN, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], CROSS_SITE_REFUSED).into_response()
}

/// Whether `host` (a `Host` header: name or address, and maybe a port) is
/// one this server answers to: the public URL's host when there is one, an
/// IP address (a proxy's health check, the simulator calling itself, a
/// visitor typing the address), or `localhost`. A name nobody configured is
/// refused: with a page on another site that renames itself to 127.0.0.1
/// (DNS rebinding), a browser would otherwise read this server's answers
/// as that site's, and share cards would point at whatever `Host` said.
pub fn known_host(host: &str, public_host: Option<&str>) -> bool {
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => return rest.split(']').next().is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok()),
        None => host.rsplit_once(':').filter(|(_, port)| port.parse::<u16>().is_ok()).map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || public_host.is_some_and(|public| public.eq_ignore_ascii_case(&name))
}

/// Middleware: refuses (400) a request addressed to a host this server does
/// not answer to (see [`known_host`]).
pub async fn refuse_unknown_host(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
    let public = state.config.public_url.as_ref().and_then(|u| u.host_str());
    match host {
        Some(host) if known_host(&host, public) => next.run(request).await,
        _ => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "This server answers only at its own address. (Operators: set DARKROOM_PUBLIC_URL to the address people \
             use.)",
        )
            .into_response(),
    }
}

/// The policy of a page rendered with `nonce` on its inline scripts. Styles
/// may be inline (a progress bar's width is an attribute); scripts only
/// from this site or carrying the nonce; WebAssembly may be compiled (the
/// page's own). `reload_port`: `cargo leptos watch`'s live-reload socket.
pub fn page_policy(nonce: &str, reload_port: Option<u32>) -> String {
    let reload = reload_port.map(|p| format!(" ws://*:{p} wss://*:{p}")).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'{reload}; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// For HTML without scripts (the share pages): nothing runs.
pub const STATIC_PAGE_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; \
                               form-action 'self'; frame-ancestors 'none'";

/// The nonce of the page a request is answered with: [`headers`] makes one
/// for every request (a server function's too: Leptos gives its calls the
/// same context as a page's render), names it in the response's policy, and hands it
/// to the render through the request's extensions ([`provide_page_nonce`]),
/// which puts it on the inline scripts it writes. The policy is decided
/// before the render starts, never by it.
#[derive(Clone)]
pub struct PageNonce(std::sync::Arc<str>);

impl PageNonce {
    fn new() -> Self {
        use base64::Engine;
        let bytes: [u8; 16] = rand::random();
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes).into())
    }
}

/// A response extension that marks HTML without scripts (the share
/// pages): [`headers`] gives it [`STATIC_PAGE_POLICY`].
#[derive(Clone, Copy)]
pub struct ScriptFree;

/// The render's context (`leptos_routes_with_context`, the 404 handler):
/// the page's inline scripts carry the nonce [`headers`] made for this
/// request, in place of the one Leptos makes up.
pub fn provide_page_nonce() {
    use leptos::prelude::{provide_context, use_context};
    match render_nonce(use_context::<axum::http::request::Parts>().as_ref()) {
        RenderNonce::NotARender => {}
        RenderNonce::Nonce(nonce) => provide_context(leptos::nonce::Nonce::from_value(nonce.0)),
        RenderNonce::Missing => {
            tracing::error!("a page rendered outside security::headers: its scripts will not run");
        }
    }
}

/// What [`provide_page_nonce`] finds.
enum RenderNonce {
    /// No request: leptos_axum's file handler calls the context function
    /// for a static file it serves too, and renders nothing then.
    NotARender,
    Nonce(PageNonce),
    /// A render whose request did not pass through [`headers`] (every route
    /// does): its page has no policy naming its scripts.
    Missing,
}

fn render_nonce(parts: Option<&axum::http::request::Parts>) -> RenderNonce {
    match parts {
        None => RenderNonce::NotARender,
        Some(parts) => parts.extensions.get::<PageNonce>().cloned().map_or(RenderNonce::Missing, RenderNonce::Nonce),
    }
}

/// Middleware: the headers every response carries (with an https public
/// URL, HSTS too), `Cache-Control: no-store` on pages and API answers that
/// set no caching of their own, and the policy of every HTML response: a page's (scripts from this site, or inline with this
/// request's nonce), or none for [`ScriptFree`] HTML. A response that set a
/// policy of its own keeps it: only the simulator's files do (`sandbox`),
/// never a page.
pub async fn headers(State(state): State<AppState>, mut request: Request<Body>, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let nonce = PageNonce::new();
    request.extensions_mut().insert(nonce.clone());
    let mut response = next.run(request).await;
    let script_free = response.extensions().get::<ScriptFree>().is_some();
    let h = response.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("strict-origin-when-cross-origin"));
    if state.config.public_url.as_ref().is_some_and(|u| u.scheme() == "https") {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    let is_html = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/html"));
    if is_html && !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        let page = if script_free {
            None
        } else {
            HeaderValue::from_str(&page_policy(&nonce.0, reload_port(&state.leptos_options))).ok()
        };
        h.insert(header::CONTENT_SECURITY_POLICY, page.unwrap_or(HeaderValue::from_static(STATIC_PAGE_POLICY)));
    }
    // Pages and API answers carry a person's data: no cache keeps them
    // (a shared computer, a proxy), unless the answer says otherwise (the
    // share pages, the images).
    if (is_html || api) && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// `cargo leptos watch`'s live-reload port, which its pages connect to.
fn reload_port(options: &leptos::config::LeptosOptions) -> Option<u32> {
    // Read once: the environment does not change while the server runs.
    static WATCHING: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| std::env::var("LEPTOS_WATCH").is_ok());
    WATCHING.then(|| options.reload_external_port.unwrap_or(options.reload_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_the_sites_own_pages_may_change_state() {
        let own = "https://darkroom.example";
        assert!(same_origin(&headers(&[("origin", "https://darkroom.example")]), own));
        assert!(same_origin(&headers(&[("origin", "https://DARKROOM.example")]), own));
        assert!(!same_origin(&headers(&[("origin", "https://evil.example")]), own));
        assert!(!same_origin(&headers(&[("origin", "http://darkroom.example")]), own), "scheme counts");
        assert!(!same_origin(&headers(&[("origin", "https://darkroom.example:8443")]), own), "port counts");
        assert!(!same_origin(&headers(&[("origin", "https://sub.darkroom.example")]), own), "a sibling");
        assert!(!same_origin(&headers(&[("origin", "null")]), own));
        // Origin wins over Sec-Fetch-Site.
        assert!(!same_origin(&headers(&[("origin", "https://evil.example"), ("sec-fetch-site", "same-origin")]), own));
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")]), own));
        assert!(same_origin(&headers(&[("sec-fetch-site", "none")]), own));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")]), own));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")]), own));
        // Not a browser: nothing to forge.
        assert!(same_origin(&HeaderMap::new(), own));
    }

    #[test]
    fn only_known_hosts_are_answered() {
        for host in
            ["127.0.0.1:3000", "127.0.0.1", "10.0.0.5:8080", "localhost:3000", "LOCALHOST", "[::1]:3000", "[::1]"]
        {
            assert!(known_host(host, None), "{host}");
        }
        for host in ["evil.example", "evil.example:3000", "127.0.0.1.nip.io:3000", "", "[nope]:1", "localhost.evil"] {
            assert!(!known_host(host, None), "{host}");
        }
        assert!(known_host("darkroom.example", Some("darkroom.example")));
        assert!(known_host("Darkroom.Example:443", Some("darkroom.example")));
        assert!(!known_host("evil.example", Some("darkroom.example")));
        assert!(known_host("127.0.0.1:3000", Some("darkroom.example")), "health checks by address");
    }

    #[test]
    fn a_static_file_is_not_a_page_without_its_policy() {
        assert!(matches!(render_nonce(None), RenderNonce::NotARender));
        let (mut parts, ()) = axum::http::Request::new(()).into_parts();
        assert!(matches!(render_nonce(Some(&parts)), RenderNonce::Missing));
        parts.extensions.insert(PageNonce::new());
        assert!(matches!(render_nonce(Some(&parts)), RenderNonce::Nonce(_)));
    }

    #[test]
    fn the_page_policy_allows_the_nonce_and_forbids_framing() {
        let p = page_policy("abc", None);
        assert!(p.contains("script-src 'self' 'nonce-abc' 'wasm-unsafe-eval'"), "{p}");
        assert!(p.contains("frame-ancestors 'none'"));
        assert!(!p.contains("ws://"));
        assert!(page_policy("abc", Some(3001)).contains("connect-src 'self' ws://*:3001"));
    }
}
