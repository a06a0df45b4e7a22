//! The simulator's output files, as a delivery host would serve them: the
//! rendered PNG while the output lives, 410 once it expired, and the odd
//! outputs that `#huge` and `#notimage` ask for.

use std::{convert::Infallible, sync::Arc};

use axum::{
    body::{Body, Bytes},
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::stream;

use super::{
    Sim,
    clock::now_ms,
    directive::Directives,
    id::Ticket,
    render,
    timeline::{Status, output_expired, state_at},
};

/// The one output file of a prediction.
pub(super) const OUTPUT_NAME: &str = "out-0.png";
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// Chunk of filler streamed for `#huge` (never held more than once).
const HUGE_CHUNK: usize = 64 * 1024;
static ZEROS: [u8; HUGE_CHUNK] = [0; HUGE_CHUNK];

/// `GET /files/{id}/out-0.png`: no auth needed (the id is unguessable), as
/// with Replicate's delivery URLs.
pub(super) async fn serve(State(sim): State<Arc<Sim>>, Path((id, file)): Path<(String, String)>) -> Response {
    let Some((ticket, tag)) = Ticket::open(&id, &sim.cfg.secret).filter(|_| file == OUTPUT_NAME) else {
        return (StatusCode::NOT_FOUND, "Not found").into_response();
    };
    let now = now_ms();
    let state = state_at(&ticket, sim.soft.canceled_at(&tag), now);
    if state.status != Status::Succeeded {
        return (StatusCode::NOT_FOUND, "Not found").into_response();
    }
    let directives = Directives::parse(&ticket.prompt);
    if directives.expire || output_expired(&sim, &state, now) {
        return (StatusCode::GONE, "Gone: this output has expired").into_response();
    }
    if directives.notimage {
        return not_an_image();
    }
    if directives.huge {
        return huge(sim.cfg.huge_bytes);
    }
    image(ticket.prompt).await
}

async fn image(prompt: String) -> Response {
    match tokio::task::spawn_blocking(move || render::render_png(&prompt)).await {
        Ok(Ok(png)) => ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "private, max-age=3600")], png)
            .into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "simulator could not encode its image");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "simulator render task failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A PNG signature followed by more than `limit` bytes of filler, streamed
/// (no `Content-Length`), so a downloader must enforce its cap as it reads.
fn huge(limit: u64) -> Response {
    let chunks = limit / HUGE_CHUNK as u64 + 1;
    let filler = (0..chunks).map(|_| Bytes::from_static(&ZEROS));
    let body = std::iter::once(Bytes::from_static(PNG_SIGNATURE)).chain(filler).map(Ok::<_, Infallible>);
    ([(header::CONTENT_TYPE, "image/png")], Body::from_stream(stream::iter(body))).into_response()
}

/// What a misconfigured CDN answers instead of the file: a login page.
fn not_an_image() -> Response {
    const PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
        <title>Sign in</title></head><body><h1>Please sign in to continue</h1>\
        <p>This page stands in for an image (simulated by the #notimage directive).</p>\
        </body></html>\n";
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}
