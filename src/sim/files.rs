//! The simulator's output files, as a delivery host would serve them: each
//! output's rendered PNG while the outputs live (an upscale's made from its
//! input file, 404 once that file is gone), 410 once they expired, and the
//! odd outputs that `#huge`, `#notimage` and `#bad-output` ask for.

use std::{convert::Infallible, fmt::Display, sync::Arc};

use axum::{
    body::{Body, Bytes},
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::stream;

use super::{
    Sim,
    directive::Directives,
    id::Ticket,
    images,
    render::{self, Picture},
    timeline::{Status, output_expired, state_at},
};

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// Chunk of filler streamed for `#huge` (never held more than once).
const HUGE_CHUNK: usize = 64 * 1024;
static ZEROS: [u8; HUGE_CHUNK] = [0; HUGE_CHUNK];

/// The file name of output `index`: `out-0.png`, `out-1.png`, …
pub(super) fn output_name(index: u8) -> String {
    format!("out-{index}.png")
}

/// The index in an output file name, as [`output_name`] writes it (no sign,
/// no leading zero); `None` for any other name.
fn output_index(file: &str) -> Option<u8> {
    let digits = file.strip_prefix("out-")?.strip_suffix(".png")?;
    let canonical = digits.bytes().all(|b| b.is_ascii_digit()) && (digits == "0" || !digits.starts_with('0'));
    // An empty or too large number does not parse.
    if canonical { digits.parse().ok() } else { None }
}

/// `GET /files/{id}/out-{n}.png`: no auth needed (the id is unguessable),
/// as with Replicate's delivery URLs. Renders only the output asked for.
pub(super) async fn serve(State(sim): State<Arc<Sim>>, Path((id, file)): Path<(String, String)>) -> Response {
    let opened = Ticket::open(&id, &sim.cfg.secret);
    let asked = opened.zip(output_index(&file)).filter(|((ticket, _), index)| *index < ticket.inputs.outputs());
    let Some(((ticket, tag), index)) = asked else {
        return not_found();
    };
    let now = sim.now_ms();
    let state = state_at(&ticket, sim.soft.canceled_at(&tag), now);
    if state.status != Status::Succeeded {
        return not_found();
    }
    let directives = Directives::parse(&ticket.prompt);
    if directives.bad_output && index + 1 == ticket.inputs.outputs() {
        return not_found();
    }
    // An upscale is made from its input file: without it, the output is lost.
    let upscale = match ticket.inputs.upscale() {
        Some(upscale) => match sim.uploads.get(upscale.file, now) {
            Some(file) => Some((file, upscale.to)),
            None => return not_found(),
        },
        None => None,
    };
    if directives.expire || output_expired(&sim, &state, now) {
        return (StatusCode::GONE, "Gone: this output has expired").into_response();
    }
    sim.stats.file();
    if directives.notimage {
        return not_an_image();
    }
    if directives.huge {
        return huge(sim.cfg.huge_bytes);
    }
    if let Some((file, (width, height))) = upscale {
        return serve_png(&sim.image_work, move || images::upscale_png(&file.bytes, width, height)).await;
    }
    let (width, height) = ticket.inputs.size();
    let guide = ticket.inputs.guide();
    let picture = Picture { seed: ticket.inputs.seed.value(), prompt: ticket.prompt, index, width, height, guide };
    serve_png(&sim.image_work, move || render::render_png(&picture)).await
}

/// Whatever a file answer is (a PNG, HTML standing in for one, an error),
/// it runs nothing on this site's origin: a sandbox of its own, and no
/// sniffing its type.
pub(super) async fn sandboxed(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static("sandbox"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    response
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not found").into_response()
}

/// Makes a PNG and serves it: holding one of `permits` (the simulator's
/// image work, a couple at a time), on a thread of lower priority than
/// the server's (`server::background`).
///
/// The simulator stands in for a provider's own machines, yet runs in the
/// app's process (and, built in, on its cores): its rendering must take
/// only what the app leaves. Thirty outputs rendered at once at the app's
/// priority held the polls of 10,000 tasks up by 100–300 ms (make bench,
/// section 2b on PostgreSQL).
async fn serve_png<E: Display + Send + 'static>(
    permits: &tokio::sync::Semaphore,
    make: impl FnOnce() -> Result<Vec<u8>, E> + Send + 'static,
) -> Response {
    let Ok(_permit) = permits.acquire().await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match crate::server::background::run("sim-render", make).await {
        Ok(Ok(png)) => ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "private, max-age=3600")], png)
            .into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "simulator could not make its image");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_round_trip_and_nothing_else_is_one() {
        for index in [0, 1, 3, 255] {
            assert_eq!(output_index(&output_name(index)), Some(index));
        }
        let others =
            ["out-01.png", "out-.png", "out--1.png", "out-+1.png", "out-1.jpg", "out-256.png", "0.png", "out-1"];
        for name in others {
            assert_eq!(output_index(name), None, "{name}");
        }
    }

    /// The priority of the thread that made an image, as its one byte
    /// (nice values run from -20 to 19).
    fn made_at_priority() -> Result<Vec<u8>, String> {
        let nice = rustix::process::getpriority_process(None).map_err(|e| e.to_string())?;
        Ok(vec![(nice + 20) as u8])
    }

    async fn body(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), 1024).await.expect("body").to_vec()
    }

    #[tokio::test]
    async fn images_are_made_at_a_lower_priority_than_the_server() {
        let own = rustix::process::getpriority_process(None).expect("own priority");
        let response = serve_png(&images::work_permits(), made_at_priority).await;
        assert_eq!(response.status(), StatusCode::OK);
        let nice = i32::from(body(response).await[0]) - 20;
        assert!(nice > own, "made at nice {nice}, the server runs at {own}");
    }

    #[tokio::test]
    async fn images_are_made_only_while_a_permit_is_free() {
        let permits = images::work_permits();
        let held = permits.acquire_many(images::AT_ONCE as u32).await.expect("every permit");
        let waiting = serve_png(&permits, made_at_priority);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(200), &mut waiting).await.is_err(),
            "an image was made while every permit was held"
        );
        drop(held);
        assert_eq!(waiting.await.status(), StatusCode::OK);
    }
}
