//! Every call the engine makes to the provider's API, through the provider
//! budget (see [`super::budget`]) and counted by kind and outcome (`ok`,
//! `error`, `throttled` for a 429, `denied` when the budget had no room and
//! nothing was sent). A 429 pauses every call of its kind (`Budget::throttled`).

use super::budget::{Call, Priority, Spend};
use crate::error::Result;
use crate::provider::{Prediction, ProviderError, ProviderFile};
use crate::server::state::AppState;

/// What a budgeted call came to.
#[derive(Debug)]
pub enum Called<T> {
    /// The budget had no room: nothing was sent; room comes back in
    /// `wait_ms`.
    Denied { wait_ms: i64 },
    /// The provider's answer.
    Answered(std::result::Result<T, ProviderError>),
}

/// Asks `model`'s provider to stop a prediction (someone is waiting: the
/// owner, or the deadline).
pub async fn cancel(state: &AppState, model: &str, prediction_id: &str) -> Result<Called<Prediction>> {
    if let Spend::Denied { wait_ms } = state.budget.take(Call::Other, Priority::Urgent).await? {
        state.metrics.provider_call("cancel", "denied");
        return Ok(Called::Denied { wait_ms });
    }
    let answer = state.provider_for(model).cancel_for(model, prediction_id).await;
    counted(state, Call::Other, "cancel", &answer).await?;
    Ok(Called::Answered(answer))
}

/// Uploads a task's image (`size` bytes of PNG, streamed from storage)
/// for its prediction to read.
pub async fn upload<S>(state: &AppState, bytes: S, size: u64) -> Result<Called<ProviderFile>>
where
    S: futures::Stream<Item = object_store::Result<bytes::Bytes>> + Send + 'static,
{
    if let Spend::Denied { wait_ms } = state.budget.take(Call::Other, Priority::Urgent).await? {
        state.metrics.provider_call("file", "denied");
        return Ok(Called::Denied { wait_ms });
    }
    let answer = state.provider.upload_file(bytes, size, "input.png", "image/png").await;
    counted(state, Call::Other, "file", &answer).await?;
    Ok(Called::Answered(answer))
}

/// Creates a prediction. The caller took the create from the budget
/// already (the dispatcher takes it before it claims a task).
pub async fn create(
    state: &AppState,
    model: &str,
    input: serde_json::Map<String, serde_json::Value>,
) -> Result<std::result::Result<Prediction, ProviderError>> {
    let answer = state.provider_for(model).create_with(model, input, Some(state.config.task_deadline)).await;
    counted(state, Call::Create, "create", &answer).await?;
    Ok(answer)
}

/// Counts an answer; a 429 pauses every call of its kind. (A status check
/// takes its call from the budget before it claims the task: see
/// `lifecycle::check`.)
pub(super) async fn counted<T>(
    state: &AppState,
    call: Call,
    name: &'static str,
    answer: &std::result::Result<T, ProviderError>,
) -> Result<()> {
    let outcome = match answer {
        Ok(_) => "ok",
        Err(ProviderError::RateLimited { retry_after }) => {
            state.budget.throttled(call, *retry_after).await?;
            "throttled"
        }
        Err(_) => "error",
    };
    state.metrics.provider_call(name, outcome);
    Ok(())
}
