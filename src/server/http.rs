//! Plain HTTP routes beside the Leptos ones: health and stored images, and
//! the redirects around signing in, answered before any page renders.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::AuthSession;
use super::ids::TaskId;
use super::state::AppState;

/// Middleware: a signed-out visitor asking for a page that needs a person
/// gets `303 See Other` to `/login?next=<page>`, and a signed-in one asking
/// for `/login` or `/signup` goes to the (local) `next` page — real
/// redirects that browsers without JavaScript, crawlers and curl follow,
/// before anything renders. (In-app navigation redirects on the client.)
pub async fn page_redirects(
    auth: AuthSession,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use crate::paths::{PRIVATE_PAGES, login_url, safe_next};
    if !matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD) {
        return next.run(request).await;
    }
    let path = request.uri().path();
    let signed_in = auth.user.is_some();
    let target = if !signed_in && PRIVATE_PAGES.contains(&path) {
        let page = request.uri().path_and_query().map_or(path, |pq| pq.as_str());
        Some(login_url(page))
    } else if signed_in && matches!(path, "/login" | "/signup") {
        let next = request.uri().query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "next").map(|(_, v)| v.into_owned())
        });
        Some(safe_next(next.as_deref()))
    } else {
        None
    };
    match target.and_then(|t| HeaderValue::from_str(&t).ok()) {
        Some(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        None => next.run(request).await,
    }
}

/// The image upload's endpoint (not a server function: multipart, streamed).
pub const UPLOAD_PATH: &str = "/api/upload_image";

/// Largest body a server function takes: their inputs are form fields (a
/// prompt of at most 2,000 characters, up to 100 task ids).
pub const MAX_API_BODY_BYTES: usize = 64 * 1024;

/// Middleware: a server function's body is read here, at most
/// [`MAX_API_BODY_BYTES`]; a larger one is answered 413 with the app's
/// error (Leptos would answer the truncated read with a 500). An image
/// upload streams under a limit of its own (`uploads::receive`).
pub async fn limit_api_body(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = request.uri().path();
    if !path.starts_with("/api/") || path == UPLOAD_PATH {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let bytes = match declared {
        Some(n) if n > MAX_API_BODY_BYTES as u64 => None,
        _ => axum::body::to_bytes(body, MAX_API_BODY_BYTES).await.ok(),
    };
    match bytes {
        Some(bytes) => next.run(axum::extract::Request::from_parts(parts, Body::from(bytes))).await,
        None => {
            let error = crate::error::AppError::new(
                crate::error::ErrorKind::TooLarge,
                format!("the request is too large (at most {} KiB)", MAX_API_BODY_BYTES / 1024),
            );
            (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(error)).into_response()
        }
    }
}

/// Middleware: a server function's error is answered with its kind's
/// status. Leptos answers the errors it finds before the function runs (an
/// argument that does not parse, one that is missing) with a 500 carrying
/// the app's error (server_fn 0.8's `error_response` has no other status);
/// the errors the functions return get theirs in `api::ssr::answer`.
pub async fn error_status(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !response.headers().contains_key(leptos::server_fn::error::SERVER_FN_ERROR_HEADER)
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_API_BODY_BYTES).await else { return internal() };
    if let Ok(error) = serde_json::from_slice::<crate::error::AppError>(&bytes) {
        parts.status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// `GET /healthz`: 200 when the database answers.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match sqlx::query("SELECT 1").execute(&state.db).await {
        Ok(_) => (StatusCode::OK, "ok").into_response(),
        Err(e) => {
            tracing::error!("health check: database: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

/// `GET /images/{task_id}`: the first stored image of a completed task, to
/// its owner only (anyone else gets the same 404 as for a missing task).
pub async fn image(
    State(state): State<AppState>,
    auth: AuthSession,
    Path(task_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    task_image(&state, auth, &task_id, 0, &headers).await
}

/// `GET /images/{task_id}/{n}`: the `n`th image (from 0) of a completed
/// task, to its owner only; 404 past the images it has.
pub async fn image_n(
    State(state): State<AppState>,
    auth: AuthSession,
    Path((task_id, n)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if n == "input" {
        return task_input(&state, auth, &task_id, &headers).await;
    }
    // Only the canonical spelling (`1`, not `01` or `+1`) names an image.
    match n.parse::<u8>() {
        Ok(i) if i < super::catalogue::MAX_OUTPUTS && i.to_string() == n => {
            task_image(&state, auth, &task_id, i, &headers).await
        }
        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// `GET /images/{task_id}/input`: the image a task started from, to its
/// owner only (never on a share page).
async fn task_input(state: &AppState, auth: AuthSession, task_id: &str, headers: &HeaderMap) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "not found").into_response();
    let Some(user) = auth.user else { return not_found() };
    let Ok(id) = TaskId::parse(task_id) else { return not_found() };
    match super::engine::queries::input_of(&state.db, &user.id, &id).await {
        Ok(Some(key)) => {
            let etag = format!("\"{id}.input\"");
            serve_object(state, &key, "image/png", &etag, HeaderValue::from_static(OWNER_CACHE), headers).await
        }
        Ok(None) => not_found(),
        Err(_) => internal(),
    }
}

async fn task_image(state: &AppState, auth: AuthSession, task_id: &str, n: u8, headers: &HeaderMap) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "not found").into_response();
    let Some(user) = auth.user else { return not_found() };
    let Ok(id) = TaskId::parse(task_id) else { return not_found() };
    let outputs = match super::engine::queries::stored_outputs(&state.db, &user.id, &id).await {
        Ok(Some(o)) => o,
        Ok(None) => return not_found(),
        Err(_) => return internal(),
    };
    let super::engine::queries::StoredOutputs { first_type: first, types, count } = outputs;
    if i64::from(n) >= count {
        return not_found();
    }
    // Tasks completed before several images existed have no `output_types`.
    let content_type = match (n, types) {
        (_, Some(types)) => types.split(',').nth(usize::from(n)).map(str::to_owned),
        (0, None) => first,
        _ => None,
    }
    .unwrap_or_else(|| "application/octet-stream".into());
    let key = super::engine::finalize::output_key(&id, n);
    // A stored image never changes: its ETag is its task id (and number).
    let etag = if n == 0 { format!("\"{id}\"") } else { format!("\"{id}.{n}\"") };
    serve_object(state, key.as_ref(), &content_type, &etag, HeaderValue::from_static(OWNER_CACHE), headers).await
}

/// Streams the stored object `key`, or answers 304 when the client's copy
/// (`If-None-Match`) is `etag`.
async fn serve_object(
    state: &AppState,
    key: &str,
    content_type: &str,
    etag: &str,
    cache: HeaderValue,
    headers: &HeaderMap,
) -> Response {
    let Ok(etag_value) = HeaderValue::from_str(etag) else { return internal() };
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value), (header::CACHE_CONTROL, cache)])
            .into_response();
    }
    let object = match state.objects.get(&object_store::path::Path::from(key)).await {
        Ok(o) => o,
        // Deleted since the row was read.
        Err(object_store::Error::NotFound { .. }) => return (StatusCode::NOT_FOUND, "not found").into_response(),
        Err(e) => {
            tracing::error!(key, "stored image missing: {e}");
            return internal();
        }
    };
    let size = object.meta.size;
    let mut response = Body::from_stream(object.into_stream()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(header::CACHE_CONTROL, cache);
    h.insert(header::ETAG, etag_value);
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

/// Shared images may be kept by browsers and shared caches, which must ask
/// again before every use (a 304 while shared, a 404 from the moment it is
/// not), so that "Stop sharing" and "Delete" take effect at once.
const SHARED_CACHE: &str = "public, no-cache";

/// An owner's image, in their own browser only: it never changes, but a
/// deleted one must not linger, so it is kept ten minutes and then asked
/// for again (a 304 while it exists, by its ETag).
const OWNER_CACHE: &str = "private, max-age=600";

/// `GET /s/{token}`: the public page of a shared image, with the
/// OpenGraph / Twitter card link previews read. Anyone with the link; no
/// sign-in.
pub async fn shared_page(
    State(state): State<AppState>,
    auth: AuthSession,
    Path(token): Path<String>,
    client: Option<axum::Extension<super::client::Client>>,
    headers: HeaderMap,
) -> Response {
    let shared = match super::engine::owned::shared(&state, &token).await {
        Ok(Some(s)) => s,
        Ok(None) => return shared_not_found(),
        Err(e) => {
            tracing::error!("share lookup: {e}");
            return internal();
        }
    };
    let base = site_base(&state, &headers, client.as_deref());
    let css = format!("/{}/{}.css", state.leptos_options.site_pkg_dir, state.leptos_options.output_name);
    // Its owner may upscale or vary it from here (plain forms: the page
    // runs no script); nobody else sees them.
    let owner = auth.user.is_some_and(|u| u.id == shared.owner);
    let offers = OwnerOffers {
        upscale: state.config.upscaler.as_ref().filter(|_| owner && shared.scale.is_none()),
        vary_credits: state.config.vary_model().filter(|_| owner && shared.scale.is_none()).map(|m| m.cost(1)),
    };
    let page = share_html(&base, &token, &shared, &css, offers);
    let cache = if owner { "private, no-cache" } else { "no-cache" };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        axum::Extension(super::security::ScriptFree),
        page,
    )
        .into_response()
}

/// The site's origin for absolute links: `DARKROOM_PUBLIC_URL`, else the
/// request's own (its host, which `security::refuse_unknown_host` has
/// checked, and https when a trusted proxy says so).
pub fn site_base(state: &AppState, headers: &HeaderMap, client: Option<&super::client::Client>) -> String {
    state.config.public_origin().unwrap_or_else(|| {
        let https = client.is_some_and(|c| c.https);
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        format!("{}://{}", if https { "https" } else { "http" }, host.to_ascii_lowercase())
    })
}

/// `GET /s/{token}/image`: a shared image, with public cache headers.
pub async fn shared_image(State(state): State<AppState>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    let shared = match super::engine::owned::shared(&state, &token).await {
        Ok(Some(s)) => s,
        Ok(None) => return (StatusCode::NOT_FOUND, "not found").into_response(),
        Err(e) => {
            tracing::error!("share lookup: {e}");
            return internal();
        }
    };
    let key = super::engine::finalize::object_key(&shared.task_id);
    let content_type = shared.content_type.as_deref().unwrap_or("application/octet-stream");
    serve_object(
        &state,
        key.as_ref(),
        content_type,
        &format!("\"{token}\""),
        HeaderValue::from_static(SHARED_CACHE),
        &headers,
    )
    .await
}

fn shared_not_found() -> Response {
    let page = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not found — Darkroom</title>\
                <meta name=\"robots\" content=\"noindex\"></head><body><main><h1>This link no longer works</h1>\
                <p>The image was never shared, or its owner stopped sharing or deleted it.</p>\
                <p><a href=\"/\">Darkroom</a></p></main></body></html>";
    let headers = [(header::CONTENT_TYPE, "text/html; charset=utf-8")];
    (StatusCode::NOT_FOUND, headers, axum::Extension(super::security::ScriptFree), page).into_response()
}

/// What a shared image's page offers its owner.
#[derive(Default)]
struct OwnerOffers<'a> {
    upscale: Option<&'a super::catalogue::Upscaler>,
    /// A variation's price, when the site makes them.
    vary_credits: Option<i64>,
}

/// The public page of a shared image.
fn share_html(
    base: &str,
    token: &str,
    shared: &super::engine::owned::SharedImage,
    css: &str,
    offers: OwnerOffers<'_>,
) -> String {
    let prompt = escape(&shared.prompt);
    let title = escape(&crate::text::clip(&shared.prompt, 70));
    let page_url = escape(&format!("{base}/s/{token}"));
    let image_url = escape(&format!("{base}/s/{token}/image"));
    let size = match (shared.width, shared.height) {
        (Some(w), Some(h)) => format!(
            "<meta property=\"og:image:width\" content=\"{w}\">\n<meta property=\"og:image:height\" content=\"{h}\">\n"
        ),
        _ => String::new(),
    };
    let dims = match (shared.width, shared.height) {
        (Some(w), Some(h)) => format!(" width=\"{w}\" height=\"{h}\""),
        _ => String::new(),
    };
    let image_type = shared.content_type.as_deref().map(escape).unwrap_or_default();
    let id = escape(shared.task_id.as_str());
    let upscale = offers.upscale.map_or_else(String::new, |u| {
        let scales: String = u.scales.iter().map(|s| format!("<option value=\"{s}\">{s}×</option>")).collect();
        format!(
            "<form class=\"upscale\" method=\"post\" action=\"/api/upscale_image\">\
             <input type=\"hidden\" name=\"task_id\" value=\"{id}\"><input type=\"hidden\" name=\"index\" value=\"0\">\
             <select name=\"scale\" aria-label=\"Scale\">{scales}</select> \
             <button type=\"submit\" class=\"button\">Upscale</button> \
             <span class=\"hint\">{credits} credits; only you see this.</span></form>\n",
            credits = u.credits,
        )
    });
    let vary = offers.vary_credits.map_or_else(String::new, |credits| {
        format!(
            "<form class=\"vary\" method=\"post\" action=\"/api/vary_image\">\
             <input type=\"hidden\" name=\"task_id\" value=\"{id}\"><input type=\"hidden\" name=\"index\" value=\"0\">\
             <button type=\"submit\" class=\"button\">Vary</button> \
             <span class=\"hint\">{credits} credits; only you see this.</span></form>\n"
        )
    });
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} — Darkroom</title>\n<meta name=\"robots\" content=\"noindex\">\n\
         <meta name=\"description\" content=\"{prompt}\">\n\
         <meta property=\"og:type\" content=\"website\">\n<meta property=\"og:site_name\" content=\"Darkroom\">\n\
         <meta property=\"og:title\" content=\"{title}\">\n<meta property=\"og:description\" content=\"{prompt}\">\n\
         <meta property=\"og:url\" content=\"{page_url}\">\n<meta property=\"og:image\" content=\"{image_url}\">\n\
         <meta property=\"og:image:type\" content=\"{image_type}\">\n{size}\
         <meta property=\"og:image:alt\" content=\"{prompt}\">\n\
         <meta name=\"twitter:card\" content=\"summary_large_image\">\n<meta name=\"twitter:title\" content=\"{title}\">\n\
         <meta name=\"twitter:image\" content=\"{image_url}\">\n<meta name=\"twitter:image:alt\" content=\"{prompt}\">\n\
         <link rel=\"stylesheet\" href=\"{css}\">\n</head>\n<body>\n<main class=\"shared\">\n\
         <figure class=\"shared-figure\"><img src=\"/s/{token}/image\" alt=\"{prompt}\"{dims}>\
         <figcaption>{prompt}</figcaption></figure>\n{upscale}{vary}\
         <p class=\"shared-footer\">Made with <a href=\"/\">Darkroom</a></p>\n</main>\n</body>\n</html>\n"
    )
}

/// `s` safe inside HTML text and double-quoted attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn internal() -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, "something went wrong").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn the_share_page_carries_the_card() {
        let shared = super::super::engine::owned::SharedImage {
            task_id: super::super::ids::TaskId::from_db("t".into()),
            owner: "u".into(),
            scale: None,
            prompt: "a \"cat\" <script>".into(),
            content_type: Some("image/png".into()),
            width: Some(1024),
            height: Some(768),
        };
        let html = share_html("https://darkroom.example", "tok", &shared, "/pkg/darkroom.css", OwnerOffers::default());
        assert!(html.contains(r#"<meta property="og:image" content="https://darkroom.example/s/tok/image">"#));
        assert!(!html.contains("Upscale") && !html.contains("Vary"), "only its owner is offered these");
        let upscaler = super::super::catalogue::Upscaler::builtin(20);
        let offers = OwnerOffers { upscale: Some(&upscaler), vary_credits: Some(10) };
        let owned = share_html("https://darkroom.example", "tok", &shared, "/pkg/darkroom.css", offers);
        assert!(owned.contains(r#"action="/api/upscale_image""#) && owned.contains(">Upscale</button>"));
        assert!(owned.contains(r#"action="/api/vary_image""#) && owned.contains(">Vary</button>"));
        assert!(html.contains(r#"<meta property="og:image:width" content="1024">"#));
        assert!(html.contains(r#"<meta property="og:image:height" content="768">"#));
        assert!(html.contains(r#"<meta name="twitter:card" content="summary_large_image">"#));
        assert!(html.contains("a &quot;cat&quot; &lt;script&gt;"));
        assert!(!html.contains("<script>"));
    }
}
