//! Replicate's Files API: `POST /v1/files` (multipart: the file in the part
//! `content`, an optional JSON object in `metadata`), `GET /v1/files`
//! (newest first), `GET /v1/files/{id}` and `DELETE /v1/files/{id}`. A
//! prediction names a file as `input.image` by its `urls.get`.
//!
//! Files are kept in memory: like webhooks, a restart loses them (an
//! upscale of a lost file then answers 404 for its output, as for a lost
//! output). They expire [`TTL_MS`] after their creation by the simulator's
//! clock, as Replicate's do, and the store is bounded: at most
//! [`MAX_FILES`] files and [`MAX_TOTAL_BYTES`] in all, the oldest going
//! first.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use axum::{
    Json,
    body::Bytes,
    extract::{Multipart, Path, State, multipart::MultipartRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    Sim,
    api::{Problem, internal_error, invalid, not_found, problem},
    render::hex_digest,
    timeline::rfc3339,
};

/// Largest `POST /v1/files` body.
pub(super) const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Most files kept.
const MAX_FILES: usize = 256;
/// Most bytes kept, all files together.
const MAX_TOTAL_BYTES: usize = 128 * 1024 * 1024;
/// How long a file lives: a day, as on Replicate.
pub(super) const TTL_MS: u64 = 24 * 3600 * 1000;
/// The name of a file whose upload gave none.
const DEFAULT_NAME: &str = "file";
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// A file to keep, as a create gave it.
pub(super) struct NewUpload {
    pub name: String,
    pub content_type: String,
    pub bytes: Bytes,
    /// A JSON object.
    pub metadata: Value,
}

/// A kept file.
#[derive(Debug)]
pub(super) struct Upload {
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub bytes: Bytes,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
    pub metadata: Value,
    pub created_ms: u64,
}

impl Upload {
    fn expires_ms(&self) -> u64 {
        self.created_ms.saturating_add(TTL_MS)
    }

    fn live(&self, now_ms: u64) -> bool {
        now_ms < self.expires_ms()
    }
}

/// The files, oldest first, and the store's bounds.
#[derive(Debug)]
pub(super) struct Uploads {
    files: Mutex<VecDeque<Arc<Upload>>>,
    max_files: usize,
    max_bytes: usize,
}

impl Default for Uploads {
    fn default() -> Self {
        Self::bounded(MAX_FILES, MAX_TOTAL_BYTES)
    }
}

impl Uploads {
    fn bounded(max_files: usize, max_bytes: usize) -> Self {
        Self { files: Mutex::default(), max_files, max_bytes }
    }

    /// Keeps a file, making room by dropping the expired ones, then the
    /// oldest. Hashes the bytes: for a large file, call it from
    /// `spawn_blocking`.
    pub(super) fn add(&self, new: NewUpload, now_ms: u64) -> Arc<Upload> {
        let upload = Arc::new(Upload {
            id: new_id(),
            sha256: hex_digest(&new.bytes),
            name: new.name,
            content_type: new.content_type,
            bytes: new.bytes,
            metadata: new.metadata,
            created_ms: now_ms,
        });
        let mut files = self.lock();
        files.retain(|file| file.live(now_ms));
        let mut total = files.iter().map(|file| file.bytes.len()).sum::<usize>() + upload.bytes.len();
        while files.len() >= self.max_files || total > self.max_bytes {
            let Some(oldest) = files.pop_front() else { break };
            total -= oldest.bytes.len();
        }
        files.push_back(Arc::clone(&upload));
        upload
    }

    /// The file `id`, unless it expired or was dropped.
    pub(super) fn get(&self, id: &str, now_ms: u64) -> Option<Arc<Upload>> {
        self.lock().iter().find(|file| file.id == id && file.live(now_ms)).cloned()
    }

    /// The live files, newest first.
    fn list(&self, now_ms: u64) -> Vec<Arc<Upload>> {
        self.lock().iter().rev().filter(|file| file.live(now_ms)).cloned().collect()
    }

    /// Drops the file `id`; false when there was no such live file.
    fn remove(&self, id: &str, now_ms: u64) -> bool {
        let mut files = self.lock();
        let Some(at) = files.iter().position(|file| file.id == id && file.live(now_ms)) else { return false };
        files.remove(at);
        true
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<Upload>>> {
        // Every update leaves the list valid, so poison is harmless.
        self.files.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A fresh, unguessable file id: 24 lower-case hex digits.
fn new_id() -> String {
    rand::random::<[u8; 12]>().iter().map(|b| format!("{b:02x}")).collect()
}

/// `POST /v1/files`: the file in the part `content` (its file name and
/// type, else the text parts `filename` and `type`), and an optional JSON
/// object in `metadata`. 201 with the file.
pub(super) async fn create(
    State(sim): State<Arc<Sim>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, Problem> {
    let mut multipart = multipart.map_err(|e| bad_body(e.status(), e.body_text()))?;
    let mut content = None;
    let (mut metadata, mut filename, mut kind) = (None, None, None);
    while let Some(field) = multipart.next_field().await.map_err(|e| bad_body(e.status(), e.body_text()))? {
        let part = field.name().unwrap_or_default().to_owned();
        if part == "content" {
            let name = field.file_name().map(str::to_owned);
            let content_type = field.content_type().map(str::to_owned);
            let bytes = field.bytes().await.map_err(|e| bad_body(e.status(), e.body_text()))?;
            content = Some((name, content_type, bytes));
            continue;
        }
        let slot = match part.as_str() {
            "metadata" => &mut metadata,
            "filename" => &mut filename,
            "type" => &mut kind,
            _ => continue,
        };
        *slot = Some(field.text().await.map_err(|e| bad_body(e.status(), e.body_text()))?);
    }
    let Some((name, content_type, bytes)) = content else {
        return Err(invalid("content", "required", "content is required"));
    };
    let new = NewUpload {
        name: given(name).or_else(|| given(filename)).unwrap_or_else(|| DEFAULT_NAME.into()),
        content_type: given(content_type).or_else(|| given(kind)).unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
        bytes,
        metadata: parse_metadata(metadata.as_deref())?,
    };
    let now = sim.now_ms();
    let store = Arc::clone(&sim);
    let upload = tokio::task::spawn_blocking(move || store.uploads.add(new, now)).await.map_err(|e| {
        tracing::error!(error = %e, "simulator could not keep a file");
        internal_error()
    })?;
    sim.stats.upload();
    tracing::debug!(id = %upload.id, bytes = upload.bytes.len(), "simulated file created");
    Ok((StatusCode::CREATED, Json(file_json(&sim, &upload))).into_response())
}

/// `GET /v1/files`: the live files, newest first, on one page.
pub(super) async fn list(State(sim): State<Arc<Sim>>) -> Response {
    let results: Vec<Value> = sim.uploads.list(sim.now_ms()).iter().map(|file| file_json(&sim, file)).collect();
    Json(json!({ "results": results, "next": null })).into_response()
}

/// `GET /v1/files/{id}`: the file's JSON; 404 once it expired.
pub(super) async fn get(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    match sim.uploads.get(&id, sim.now_ms()) {
        Some(file) => Json(file_json(&sim, &file)).into_response(),
        None => not_found(),
    }
}

/// `DELETE /v1/files/{id}`: 204, or 404 when there is no such file.
pub(super) async fn delete(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    if sim.uploads.remove(&id, sim.now_ms()) { StatusCode::NO_CONTENT.into_response() } else { not_found() }
}

/// A file as Replicate's JSON.
fn file_json(sim: &Sim, file: &Upload) -> Value {
    json!({
        "id": file.id,
        "name": file.name,
        "content_type": file.content_type,
        "size": file.bytes.len(),
        "etag": file.sha256.get(..32).unwrap_or(&file.sha256),
        "checksums": { "sha256": file.sha256 },
        "metadata": file.metadata,
        "created_at": rfc3339(file.created_ms),
        "expires_at": rfc3339(file.expires_ms()),
        "urls": { "get": sim.upload_url(&file.id) },
    })
}

/// A text part's value, unless it is blank.
fn given(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.trim().is_empty())
}

/// The `metadata` part: a JSON object (`{}` when absent or blank).
fn parse_metadata(text: Option<&str>) -> Result<Value, Problem> {
    match text.map(str::trim) {
        None | Some("") => Ok(json!({})),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(object @ Value::Object(_)) => Ok(object),
            _ => Err(invalid("metadata", "invalid_type", "metadata must be a JSON object")),
        },
    }
}

/// A body that is not a readable multipart form: its status (400, or 413
/// over [`MAX_BODY_BYTES`]) in Replicate's problem shape.
fn bad_body(status: StatusCode, detail: String) -> Problem {
    let title = status.canonical_reason().unwrap_or("Bad request");
    problem(status, json!({ "detail": detail, "status": status.as_u16(), "title": title }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(bytes: usize) -> NewUpload {
        NewUpload {
            name: "a.png".into(),
            content_type: "image/png".into(),
            bytes: Bytes::from(vec![7; bytes]),
            metadata: json!({}),
        }
    }

    #[test]
    fn a_file_lives_a_day_by_the_clock() {
        let uploads = Uploads::default();
        let file = uploads.add(new(3), 1_000);
        assert_eq!(file.sha256, hex_digest(&[7, 7, 7]));
        assert_eq!(file.id.len(), 24);
        assert!(uploads.get(&file.id, 1_000 + TTL_MS - 1).is_some());
        assert!(uploads.get(&file.id, 1_000 + TTL_MS).is_none(), "expired");
        assert!(uploads.list(1_000 + TTL_MS).is_empty());
        assert!(!uploads.remove(&file.id, 1_000 + TTL_MS), "an expired file cannot be deleted");
        assert!(uploads.get("nope", 1_000).is_none());
    }

    #[test]
    fn files_list_newest_first_and_delete() {
        let uploads = Uploads::default();
        let ids: Vec<String> = (0..3).map(|n| uploads.add(new(1), n).id.clone()).collect();
        let listed: Vec<String> = uploads.list(10).iter().map(|file| file.id.clone()).collect();
        assert_eq!(listed, [ids[2].clone(), ids[1].clone(), ids[0].clone()]);
        assert!(uploads.remove(&ids[1], 10));
        assert!(!uploads.remove(&ids[1], 10), "already gone");
        assert!(uploads.get(&ids[1], 10).is_none());
        assert_eq!(uploads.list(10).len(), 2);
    }

    #[test]
    fn the_store_is_bounded_by_count_dropping_the_oldest() {
        let uploads = Uploads::default();
        let first = uploads.add(new(1), 0).id.clone();
        for n in 1..MAX_FILES as u64 {
            uploads.add(new(1), n);
        }
        assert!(uploads.get(&first, 300).is_some(), "{MAX_FILES} files fit");
        let newest = uploads.add(new(1), 300).id.clone();
        assert!(uploads.get(&first, 300).is_none(), "the oldest went first");
        assert_eq!(uploads.list(300).len(), MAX_FILES);
        assert!(uploads.get(&newest, 300).is_some());
    }

    #[test]
    fn the_store_is_bounded_by_bytes_dropping_the_oldest() {
        let uploads = Uploads::bounded(100, 40);
        let kept = |uploads: &Uploads| uploads.list(10).iter().map(|file| file.bytes.len()).sum::<usize>();
        let ids: Vec<String> = (0..4).map(|n| uploads.add(new(10), n).id.clone()).collect();
        assert_eq!(kept(&uploads), 40, "exactly the bound fits");
        let big = uploads.add(new(25), 5).id.clone();
        assert!(
            uploads.get(&ids[0], 10).is_none()
                && uploads.get(&ids[1], 10).is_none()
                && uploads.get(&ids[2], 10).is_none()
        );
        assert!(uploads.get(&ids[3], 10).is_some() && uploads.get(&big, 10).is_some());
        assert_eq!(kept(&uploads), 35);
    }

    #[test]
    fn metadata_is_a_json_object_or_nothing() {
        assert_eq!(parse_metadata(None).ok(), Some(json!({})));
        assert_eq!(parse_metadata(Some(" ")).ok(), Some(json!({})));
        assert_eq!(parse_metadata(Some(r#"{"customer": 123}"#)).ok(), Some(json!({"customer": 123})));
        for bad in ["[1]", "\"x\"", "{", "42"] {
            assert!(parse_metadata(Some(bad)).is_err(), "{bad}");
        }
    }
}
