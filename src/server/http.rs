//! Plain HTTP routes beside the Leptos ones: health and stored images, and
//! the redirects around signing in, answered before any page renders.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sqlx::Row;

use super::auth::AuthSession;
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

/// `GET /images/{task_id}`: the stored image of a completed task, to its
/// owner only (anyone else gets the same 404 as for a missing task).
pub async fn image(
    State(state): State<AppState>,
    auth: AuthSession,
    Path(task_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "not found").into_response();
    let Some(user) = auth.user else { return not_found() };
    let row = sqlx::query(
        "SELECT object_key, content_type FROM tasks WHERE id = $1 AND user_id = $2 AND status = 'completed'",
    )
    .bind(&task_id)
    .bind(&user.id)
    .fetch_optional(&state.db)
    .await;
    let (key, content_type): (String, String) = match row {
        Ok(Some(r)) => match (r.try_get("object_key"), r.try_get::<Option<String>, _>("content_type")) {
            (Ok(k), Ok(ct)) => (k, ct.unwrap_or_else(|| "application/octet-stream".into())),
            _ => return internal(),
        },
        Ok(None) => return not_found(),
        Err(e) => {
            tracing::error!("image lookup: {e}");
            return internal();
        }
    };
    // A stored image never changes: its ETag is its task id.
    let etag = format!("\"{task_id}\"");
    let cache = HeaderValue::from_static("private, max-age=31536000, immutable");
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache.to_str().unwrap_or_default().to_owned())],
        )
            .into_response();
    }
    let object = match state.objects.get(&object_store::path::Path::from(key.as_str())).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(task = %task_id, "stored image missing: {e}");
            return internal();
        }
    };
    let size = object.meta.size;
    let mut response = Body::from_stream(object.into_stream()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(header::CACHE_CONTROL, cache);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

fn internal() -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, "something went wrong").into_response()
}
