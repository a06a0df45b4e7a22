//! What an owner does with a finished task besides looking at it: share it
//! by a link, stop sharing it, delete it. The writes are transitions in
//! `store`; this module checks ownership and state, and removes a deleted
//! task's stored objects.

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

pub use super::queries::SharedImage;
use super::{detached, finalize, lifecycle, queries, store};
use crate::error::{AppError, Result};
use crate::model::ShareLink;
use crate::server::ids::{TaskId, UserId};
use crate::server::state::AppState;

/// A share token: 128 random bits, base64url without padding.
pub struct ShareToken;

impl ShareToken {
    pub const LEN: usize = 22;

    pub fn fresh() -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
    }

    /// Whether `raw` could be a token (checked before any lookup).
    pub fn is_well_formed(raw: &str) -> bool {
        raw.len() == Self::LEN && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
}

/// The public link of the owner's completed task (the same link when it
/// is already shared).
pub async fn share(state: &AppState, user: &UserId, task_id: &TaskId) -> Result<ShareLink> {
    let Some(token) = store::share(&state.db, user, task_id, &ShareToken::fresh()).await? else {
        return Err(match queries::load_owned(&state.db, user, task_id).await? {
            None => AppError::not_found(),
            Some(_) => AppError::conflict("only a completed image can be shared"),
        });
    };
    record_image_size(state, task_id).await;
    Ok(ShareLink { url: format!("/s/{token}") })
}

/// Stops sharing the owner's task; its link answers 404 from now on.
pub async fn unshare(state: &AppState, user: &UserId, task_id: &TaskId) -> Result<()> {
    if store::unshare(&state.db, user, task_id).await? { Ok(()) } else { Err(AppError::not_found()) }
}

/// Most bytes read from the start of an image to learn its size.
const HEADER_BYTES: u64 = 64 * 1024;

/// Reads the stored image's width and height for the share card, once;
/// best effort (the card then goes without them).
async fn record_image_size(state: &AppState, task: &TaskId) {
    if matches!(queries::image_size_known(&state.db, task).await, Ok(true)) {
        return;
    }
    let key = finalize::object_key(task);
    let size = async {
        let meta = state.objects.head(&key).await.ok()?;
        let bytes = state.objects.get_range(&key, 0..meta.size.min(HEADER_BYTES)).await.ok()?;
        imagesize::blob_size(&bytes).ok()
    }
    .await;
    match size {
        Some(size) => {
            let (Ok(w), Ok(h)) = (u32::try_from(size.width), u32::try_from(size.height)) else { return };
            if let Err(e) = store::set_image_size(&state.db, task, w, h).await {
                tracing::warn!(%task, "cannot record the image size: {e}");
            }
        }
        None => tracing::warn!(%task, "cannot read the stored image's size"),
    }
}

/// Deletes the owner's task: a processing one is canceled first. Its
/// stored objects are removed after the row; a crash in between leaves a
/// purge the reconciler finishes.
pub async fn delete(state: &AppState, user: &UserId, task: &TaskId) -> Result<()> {
    let found = queries::load_owned(&state.db, user, task).await?.ok_or_else(AppError::not_found)?;
    if !found.state.is_finished() {
        let view = detached(lifecycle::cancel(state.clone(), found)).await?;
        if !view.status.is_finished() {
            return Err(AppError::conflict("the image is being stored; try again in a moment"));
        }
    }
    // Detached: a client that hangs up must not leave the objects behind
    // until the reconciler's next pass.
    let (state, user, task) = (state.clone(), user.clone(), task.clone());
    detached(async move {
        if !store::delete_finished(&state.db, &user, &task, state.clock.now_ms()).await? {
            return Err(AppError::not_found());
        }
        state.finished.forget(&task);
        state.metrics.deleted();
        tracing::info!(%task, "deleted");
        if let Err(e) = purge(&state, &task).await {
            tracing::warn!(%task, "stored images not yet removed (the reconciler will): {e}");
        }
        Ok(())
    })
    .await
}

/// Removes every stored object of a deleted task, then its purge row.
pub async fn purge(state: &AppState, task: &TaskId) -> Result<()> {
    remove_objects(state.objects.as_ref(), task).await.map_err(AppError::internal)?;
    store::purged(&state.db, task).await
}

/// Deletes every image of the task, the image it started from, and
/// anything under `images/{task}/`.
async fn remove_objects(objects: &dyn ObjectStore, task: &TaskId) -> object_store::Result<()> {
    finalize::remove_outputs(objects, task).await?;
    ignore_missing(objects.delete(&crate::server::uploads::input_key(task)).await)?;
    let prefix = ObjectPath::from(format!("images/{task}"));
    let under: Vec<_> = objects.list(Some(&prefix)).map_ok(|meta| meta.location).try_collect().await?;
    for location in under {
        ignore_missing(objects.delete(&location).await)?;
    }
    Ok(())
}

fn ignore_missing(result: object_store::Result<()>) -> object_store::Result<()> {
    match result {
        Err(object_store::Error::NotFound { .. }) => Ok(()),
        other => other,
    }
}

/// The completed task shared under `token`, if any (a token of the wrong
/// shape is not looked up).
pub async fn shared(state: &AppState, token: &str) -> Result<Option<SharedImage>> {
    if !ShareToken::is_well_formed(token) {
        return Ok(None);
    }
    queries::shared(&state.db, token).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_tokens_are_128_bit_base64url() {
        let a = ShareToken::fresh();
        assert_eq!(a.len(), ShareToken::LEN);
        assert!(ShareToken::is_well_formed(&a));
        assert_ne!(a, ShareToken::fresh());
        for bad in ["", "short", &"a".repeat(23), "aaaaaaaaaaaaaaaaaaaa/=", "aaaaaaaaaaaaaaaaaaaa.."] {
            assert!(!ShareToken::is_well_formed(bad), "{bad:?}");
        }
    }
}
