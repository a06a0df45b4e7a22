//! Finalizing a succeeded prediction: stream each of its outputs into object
//! storage (capped, checked to be an image, only from allowed hosts), then
//! mark the task completed. The objects are written before the row says so;
//! a crash in between heals on the next check, which finds the objects
//! already stored and marks it.

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};

use super::lifecycle::{Outcome, fail_and_refund};
use super::store::{self, Claim, StoredImages};
use super::task::{State, TaskRow};
use crate::error::{AppError, Result};
use crate::provider::ProviderError;
use crate::server::catalogue::MAX_OUTPUTS;
use crate::server::config::StorageConfig;
use crate::server::ids::TaskId;
use crate::server::state::AppState;

/// How long a finalizing poller holds the task before another may try.
const DOWNLOAD_LEASE_MS: i64 = 120_000;
const MIB: usize = 1024 * 1024;

/// The memory an instance spends on finalizing. Each upload holds the part
/// being filled plus the parts in flight, and each open download holds
/// connection buffers of its own, so only a few run at once per instance; a
/// burst of completions queues (each waits for a few milliseconds on a
/// local disk) instead of taking memory in proportion to its size. Parts
/// held at once: at most `at_once × part_bytes × (1 + parts_in_flight)`.
pub struct Uploads {
    at_once: tokio::sync::Semaphore,
    part_bytes: usize,
    /// Parts of one upload in flight while the next is filled.
    parts_in_flight: usize,
}

impl Uploads {
    /// A local file takes parts of any size and a write is quick: 1 MiB
    /// parts, 2 in flight, 8 uploads at once (24 MiB). S3 needs at least
    /// 5 MiB per part but the last, and a part upload is a round trip worth
    /// overlapping with the download: 5 MiB parts, 1 in flight, 3 at once
    /// (30 MiB).
    pub fn for_store(config: &StorageConfig) -> Self {
        let (part_bytes, parts_in_flight, at_once) = match config {
            StorageConfig::Local(_) => (MIB, 2, 8),
            StorageConfig::S3 { .. } => (5 * MIB, 1, 3),
        };
        Self { at_once: tokio::sync::Semaphore::new(at_once), part_bytes, parts_in_flight }
    }

    /// Waits until one more upload may start.
    pub async fn admit(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.at_once.acquire().await.map_err(AppError::internal)
    }
}

/// Where a task's first image lives in the store.
pub fn object_key(task: &TaskId) -> ObjectPath {
    output_key(task, 0)
}

/// Where a task's `n`th image (from 0) lives: `images/{task}` for the
/// first, as before several images existed, `images/{task}.{n}` for the
/// others.
pub fn output_key(task: &TaskId, n: u8) -> ObjectPath {
    if n == 0 { ObjectPath::from(format!("images/{task}")) } else { ObjectPath::from(format!("images/{task}.{n}")) }
}

/// Removes every image a task may have stored (any of [`MAX_OUTPUTS`]);
/// missing ones are fine.
pub async fn remove_outputs(store: &dyn ObjectStore, task: &TaskId) -> object_store::Result<()> {
    for n in 0..MAX_OUTPUTS {
        match store.delete(&output_key(task, n)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Downloads the task's outputs (`urls`, one per image asked for) into the
/// store, one after the other, and completes the task once all are there —
/// or fails and refunds it when one is unusable, or when the model made
/// fewer images than asked. All or nothing. Transient trouble leaves the
/// task processing for a later check, which keeps the images already
/// stored. `seed` is the one the provider reported.
pub async fn store_outputs(
    state: &AppState,
    task: &TaskRow,
    claim: &Claim,
    urls: &[String],
    seed: Option<u32>,
) -> Result<Outcome> {
    let wanted = usize::from(task.num_outputs);
    if urls.len() < wanted {
        let reason = match urls.len() {
            0 => "The model finished without an image.".to_owned(),
            got => format!("The model made {got} of the {wanted} images asked for."),
        };
        fail_and_refund(state, &task.id, &reason).await?;
        return Ok(Outcome::Finished);
    }
    let mut content_types = Vec::with_capacity(wanted);
    let mut total = 0;
    for (n, url) in (0..task.num_outputs).zip(urls) {
        // An upload slot per image (so one task's images do not hold a slot
        // others wait for), then the lease: a poll queued behind other
        // uploads holds no lease that could run out while it waits (another
        // poller would then download the same output again). While it
        // waits, the check it claimed expires as usual, another poller may
        // claim it, and whichever holds the claim when a slot frees up
        // does the work, reusing the images already stored.
        let _admitted = state.uploads.admit().await?;
        if !store::extend_lease(&state.db, &task.id, claim, state.clock.now_ms() + DOWNLOAD_LEASE_MS).await? {
            let_go(state, &task.id).await?;
            return Ok(Outcome::ClaimedElsewhere);
        }
        let key = output_key(&task.id, n);
        // A previous poller may have stored it and died before marking.
        let stored = match existing(&*state.objects, &key).await {
            Some(found) => Ok(found),
            None => download(state, &key, url, (task, claim)).await,
        };
        match stored {
            Ok((content_type, size)) => {
                content_types.push(content_type);
                total += size;
            }
            // Another poller took the task over (this download ran past its
            // lease): it does the work; nothing is marked from here.
            Err(Download::LeaseLost) => {
                let_go(state, &task.id).await?;
                return Ok(Outcome::ClaimedElsewhere);
            }
            Err(Download::Unusable(reason)) => {
                let reason = if wanted > 1 { format!("Image {} of {wanted}: {reason}", n + 1) } else { reason };
                fail_and_refund(state, &task.id, &reason).await?;
                return Ok(Outcome::Finished);
            }
            Err(Download::Retry(e)) => {
                tracing::warn!(task = %task.id, "output download will be retried: {e}");
                let wait = e.retry_after().unwrap_or(state.config.provider_check);
                store::release_lease(&state.db, &task.id, claim, state.clock.now_ms() + wait.as_millis() as i64)
                    .await?;
                return Ok(Outcome::TryLater);
            }
            Err(Download::Internal(e)) => {
                let retry_at = state.clock.now_ms() + state.config.provider_check.as_millis() as i64;
                store::release_lease(&state.db, &task.id, claim, retry_at).await?;
                return Err(e);
            }
        }
    }
    mark_completed(state, task, &content_types, total, seed).await?;
    Ok(Outcome::Finished)
}

enum Download {
    /// Permanent: fail the task with this message and refund.
    Unusable(String),
    /// Transient: try again later.
    Retry(ProviderError),
    /// Our side failed (storage): try again later, report.
    Internal(AppError),
    /// The download lease could not be renewed: stop.
    LeaseLost,
}

/// How often a running download renews its lease.
const LEASE_RENEW_MS: i64 = DOWNLOAD_LEASE_MS / 4;

async fn download(
    state: &AppState,
    key: &ObjectPath,
    url: &str,
    (task, claim): (&TaskRow, &Claim),
) -> Result<(&'static str, u64), Download> {
    let mut renewed_at = state.clock.now_ms();
    let cap = state.config.max_image_bytes;
    let too_big = || Download::Unusable(format!("The image was larger than {} MB.", cap.div_ceil(1024 * 1024)));
    // The caller holds an upload slot (taken before the download opens: a
    // response waiting for its turn would fill buffers of its own).
    let uploads = &state.uploads;
    let opened = state.provider_for(&task.model).open_output(url).await;
    state.metrics.provider_call("output", if opened.is_ok() { "ok" } else { "error" });
    let response = match opened {
        Ok(r) => r,
        Err(ProviderError::NotFound) => {
            return Err(Download::Unusable("The image expired at the provider before it could be saved.".into()));
        }
        Err(ProviderError::Disallowed(host)) => {
            tracing::error!("output from a host that is not allowed: {host}");
            return Err(Download::Unusable("The provider returned an image from an untrusted address.".into()));
        }
        Err(e) if e.is_transient() => return Err(Download::Retry(e)),
        Err(e) => return Err(Download::Unusable(format!("The image could not be downloaded ({e})."))),
    };
    if response.content_length().is_some_and(|n| n > cap) {
        return Err(too_big());
    }
    let declared = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !(declared.is_empty() || declared.starts_with("image/") || declared.starts_with("application/octet-stream")) {
        return Err(Download::Unusable("The provider returned something that is not an image.".into()));
    }

    let upload = state.objects.put_multipart(key).await.map_err(|e| Download::Internal(AppError::internal(e)))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, uploads.part_bytes);
    let mut stream = response.bytes_stream();
    let mut head: Vec<u8> = Vec::with_capacity(16);
    let mut content_type = None;
    let mut total: u64 = 0;
    let result: Result<(), Download> = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Download::Retry(ProviderError::Transport(e.to_string())))?;
            total += chunk.len() as u64;
            if total > cap {
                return Err(too_big());
            }
            if content_type.is_none() {
                head.extend_from_slice(&chunk[..chunk.len().min(16 - head.len())]);
                if head.len() >= 12 {
                    content_type = Some(sniff(&head).ok_or_else(|| {
                        Download::Unusable("The provider returned something that is not an image.".into())
                    })?);
                }
            }
            writer
                .wait_for_capacity(uploads.parts_in_flight)
                .await
                .map_err(|e| Download::Internal(AppError::internal(e)))?;
            writer.write(&chunk);
            // A slow download keeps its lease, so no one else starts the same.
            if state.clock.now_ms() - renewed_at >= LEASE_RENEW_MS {
                renewed_at = state.clock.now_ms();
                let held = store::extend_lease(&state.db, &task.id, claim, renewed_at + DOWNLOAD_LEASE_MS)
                    .await
                    .map_err(Download::Internal)?;
                if !held {
                    return Err(Download::LeaseLost);
                }
            }
        }
        Ok(())
    }
    .await;
    let content_type = match (result, content_type) {
        (Ok(()), Some(ct)) => ct,
        (Ok(()), None) => {
            let _ = writer.abort().await;
            return Err(Download::Unusable("The provider returned something that is not an image.".into()));
        }
        (Err(outcome), _) => {
            let _ = writer.abort().await;
            return Err(outcome);
        }
    };
    writer.finish().await.map_err(|e| Download::Internal(AppError::internal(e)))?;
    state.metrics.object_written();
    Ok((content_type, total))
}

/// The image format named by a file's first bytes.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else {
        None
    }
}

/// Type and size of an object already stored under `key`.
async fn existing(store: &dyn ObjectStore, key: &ObjectPath) -> Option<(&'static str, u64)> {
    let meta = store.head(key).await.ok()?;
    let head = store.get_range(key, 0..16.min(meta.size)).await.ok()?;
    sniff(&head).map(|ct| (ct, meta.size))
}

async fn mark_completed(
    state: &AppState,
    task: &TaskRow,
    content_types: &[&'static str],
    size: u64,
    seed: Option<u32>,
) -> Result<()> {
    let now = state.clock.now_ms();
    let key = object_key(&task.id);
    let images = StoredImages { key: key.as_ref(), content_types, size, seed };
    if store::mark_completed(&state.db, &task.id, images, now).await? {
        state.metrics.completed(std::time::Duration::from_millis((now - task.created_at).max(0) as u64));
        tracing::info!(task = %task.id, images = content_types.len(), bytes = size, "completed");
    } else {
        let_go(state, &task.id).await?;
    }
    Ok(())
}

/// This poller stops working on a task it no longer holds. If the task
/// failed (deadline), was canceled, or was canceled and deleted meanwhile,
/// the images stored so far belong to no one and are removed. If it is
/// still processing, another poller took it over and reuses them; if it
/// completed, they are that task's images.
async fn let_go(state: &AppState, task: &TaskId) -> Result<()> {
    if !matches!(store::state(&state.db, task).await?, Some(State::Processing | State::Completed)) {
        let _ = remove_outputs(&*state.objects, task).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[test]
    fn uploads_beyond_the_limit_wait() {
        let local = Uploads::for_store(&StorageConfig::Local("objects".into()));
        assert_eq!(local.part_bytes, MIB);
        let admitted: Vec<_> = (0..8).map(|_| local.admit().now_or_never().unwrap().unwrap()).collect();
        assert!(local.admit().now_or_never().is_none(), "the 9th upload must wait");
        drop(admitted);
        assert!(local.admit().now_or_never().is_some());

        let s3 = Uploads::for_store(&StorageConfig::S3 { bucket: "b".into(), aws: Vec::new() });
        assert_eq!(s3.part_bytes, 5 * MIB);
        let admitted: Vec<_> = (0..3).map(|_| s3.admit().now_or_never().unwrap().unwrap()).collect();
        assert!(s3.admit().now_or_never().is_none(), "S3 parts are larger: the 4th waits");
        drop(admitted);
    }

    #[test]
    fn image_formats_are_recognised_by_their_first_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some("image/png"));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0, 0, 0, 0, 0, 0, 0]), Some("image/jpeg"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"<!doctype html>"), None);
    }
}
