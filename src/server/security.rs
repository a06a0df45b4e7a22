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

/// For HTML without scripts (the public share page sets it itself), and
/// for an HTML response that did not set a policy of its own: nothing runs.
pub const STATIC_PAGE_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; \
                               form-action 'self'; frame-ancestors 'none'";

/// A page's policy, handed from the page being rendered to [`headers`]
/// through the request's extensions (which Leptos gives the render).
/// [`headers`] puts it on the response: Leptos' `ResponseOptions` now and
/// then lost a header set during the render, and the page's scripts were
/// then blocked (the end-to-end tests' "hydration stall").
#[derive(Clone, Default)]
pub struct PagePolicy(std::sync::Arc<std::sync::Mutex<Option<HeaderValue>>>);

/// Hands the page's policy to [`headers`] (called by the shell, which
/// knows the nonce Leptos puts on its inline scripts).
pub fn set_page_policy(options: &leptos::config::LeptosOptions) {
    use leptos::prelude::use_context;
    let Some(nonce) = leptos::nonce::use_nonce() else {
        tracing::warn!("a page rendered without a nonce: its scripts will not run");
        return;
    };
    // Read once: the environment does not change while the server runs.
    static WATCHING: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| std::env::var("LEPTOS_WATCH").is_ok());
    let reload = WATCHING.then(|| options.reload_external_port.unwrap_or(options.reload_port));
    let Ok(value) = HeaderValue::from_str(&page_policy(&nonce.to_string(), reload)) else { return };
    if let Some(slot) =
        use_context::<axum::http::request::Parts>().and_then(|p| p.extensions.get::<PagePolicy>().cloned())
        && let Ok(mut slot) = slot.0.lock()
    {
        *slot = Some(value);
    }
}

/// Middleware: the headers every response carries, the page's policy on a
/// page, and a policy that allows no script on other HTML without one.
pub async fn headers(mut request: Request<Body>, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let page = PagePolicy::default();
    request.extensions_mut().insert(page.clone());
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("strict-origin-when-cross-origin"));
    let is_html = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/html"));
    if is_html && !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        match page.0.lock().ok().and_then(|mut p| p.take()) {
            Some(policy) => {
                h.insert(header::CONTENT_SECURITY_POLICY, policy);
            }
            None => {
                // Every page hands over its policy and the share pages set
                // a static one: HTML without either is a bug.
                tracing::warn!(path, "an HTML response came without its policy; no script on it will run");
                h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(STATIC_PAGE_POLICY));
            }
        }
    }
    response
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
    fn the_page_policy_allows_the_nonce_and_forbids_framing() {
        let p = page_policy("abc", None);
        assert!(p.contains("script-src 'self' 'nonce-abc' 'wasm-unsafe-eval'"), "{p}");
        assert!(p.contains("frame-ancestors 'none'"));
        assert!(!p.contains("ws://"));
        assert!(page_policy("abc", Some(3001)).contains("connect-src 'self' ws://*:3001"));
    }
}
