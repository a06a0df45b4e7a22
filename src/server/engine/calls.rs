//! Every call the engine makes to the provider's API, through the provider
//! budget (see [`super::budget`]) and counted by kind and outcome (`ok`,
//! `error`, `throttled` for a 429, `denied` when the budget had no room and
//! nothing was sent). A 429 pauses every call of its kind (`Budget::throttled`).

use super::budget::{Budget, Call, Priority, Spend};
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
    let budget = state.budget_for(model);
    if let Spend::Denied { wait_ms } = budget.take(Call::Other, Priority::Urgent).await? {
        state.metrics.provider_call("cancel", "denied");
        return Ok(Called::Denied { wait_ms });
    }
    let answer = state.provider_for(model).cancel_for(model, prediction_id).await;
    counted(state, budget, Call::Other, "cancel", &answer).await?;
    Ok(Called::Answered(answer))
}

/// Uploads a task's image (`size` bytes of PNG, streamed from storage)
/// for its prediction to read (Replicate's Files API: fal's models take no
/// image yet).
pub async fn upload<S>(state: &AppState, bytes: S, size: u64) -> Result<Called<ProviderFile>>
where
    S: futures::Stream<Item = object_store::Result<bytes::Bytes>> + Send + 'static,
{
    if let Spend::Denied { wait_ms } = state.budget.take(Call::Other, Priority::Urgent).await? {
        state.metrics.provider_call("file", "denied");
        return Ok(Called::Denied { wait_ms });
    }
    let answer = state.provider.upload_file(bytes, size, "input.png", "image/png").await;
    counted(state, &state.budget, Call::Other, "file", &answer).await?;
    Ok(Called::Answered(answer))
}

/// Creates a prediction. The caller took the create from the model's
/// budget already (the dispatcher takes it before it claims a task).
pub async fn create(
    state: &AppState,
    model: &str,
    input: serde_json::Map<String, serde_json::Value>,
) -> Result<std::result::Result<Prediction, ProviderError>> {
    let answer = state.provider_for(model).create_with(model, input, Some(state.config.task_deadline)).await;
    counted(state, state.budget_for(model), Call::Create, "create", &answer).await?;
    Ok(answer)
}

/// Counts an answer; a 429 pauses every call of its kind on `budget`. (A
/// status check takes its call from the budget before it claims the task:
/// see `lifecycle::check`.)
pub(super) async fn counted<T>(
    state: &AppState,
    budget: &Budget,
    call: Call,
    name: &'static str,
    answer: &std::result::Result<T, ProviderError>,
) -> Result<()> {
    let outcome = match answer {
        Ok(_) => "ok",
        Err(ProviderError::RateLimited { retry_after }) => {
            budget.throttled(call, *retry_after).await?;
            "throttled"
        }
        Err(_) => "error",
    };
    state.metrics.provider_call(name, outcome);
    Ok(())
}
