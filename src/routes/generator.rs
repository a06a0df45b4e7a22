//! `/`: the prompt form and the current task, polled until it finishes.
//! The server-rendered page already carries the latest processing task, so
//! a reload or a reopened browser resumes polling it.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::polling::{pace, poll_while, tell_hidden_tab};
use super::task_card::{TaskCard, clock, now_ms};
use crate::api::{GenerateImage, check_image_status, generator_setup};
use crate::error::ErrorKind;
use crate::model::{GeneratorInfo, TaskStatus, TaskView};
use crate::session::{RequireUser, use_session};

/// How long Generate rests after a refusal at a cap (unless a task
/// finishes first).
const CAP_PAUSE_MS: i64 = 10_000;

#[component]
pub fn GeneratorPage() -> impl IntoView {
    view! {
        <RequireUser>
            <GeneratorLoader />
        </RequireUser>
    }
}

#[component]
fn GeneratorLoader() -> impl IntoView {
    let setup = OnceResource::new(generator_setup());
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || {
                setup
                    .get()
                    .map(|r| match r {
                        Ok(setup) => view! { <Generator setup /> }.into_any(),
                        Err(e) => view! { <p class="form-error" role="alert">{e.message}</p> }.into_any(),
                    })
            }}
        </Suspense>
    }
}

#[component]
fn Generator(setup: GeneratorInfo) -> impl IntoView {
    let session = use_session();
    let cost = setup.cost;
    let task = RwSignal::new(setup.resume.clone());
    let action = ServerAction::<GenerateImage>::new();
    let pending = action.pending();

    // Remember what was submitted, to show the new task at once.
    let submitted = StoredValue::new(None::<(String, String)>);
    Effect::new(move |_| {
        if let Some(input) = action.input().get() {
            submitted.set_value(Some((input.prompt, input.model.unwrap_or_default())));
        }
    });
    // At a cap (generations running at once, or per minute): Generate
    // rests until a task finishes here or a short while has passed.
    let paused_until = RwSignal::new(None::<i64>);
    Effect::new(move |_| {
        if let Some(Err(e)) = action.value().get()
            && e.kind == ErrorKind::RateLimited
        {
            paused_until.set(Some(now_ms() + CAP_PAUSE_MS));
        }
    });
    // A new task: show it at once (polling fills in the rest).
    Effect::new(move |_| {
        if let Some(Ok(generated)) = action.value().get() {
            session.refresh();
            let (prompt, model) = submitted.get_value().unwrap_or_default();
            task.set(Some(TaskView::pending(generated.task_id, prompt.trim().to_owned(), model, cost, now_ms())));
        }
    });

    let polling = Memo::new(move |_| {
        task.with(|t| t.as_ref().filter(|t| t.status == TaskStatus::Processing).map(|t| t.id.clone()))
    });
    let in_flight = StoredValue::new(false);
    let interval_ms = setup.poll_interval_ms;
    let advice = RwSignal::new(setup.resume.as_ref().and_then(|t| t.poll_after_ms));
    let every = Memo::new(move |_| pace(advice.get(), interval_ms));
    poll_while(polling, every, move |id: String| {
        if in_flight.get_value() {
            return;
        }
        in_flight.set_value(true);
        spawn_local(async move {
            let result = check_image_status(id.clone()).await;
            in_flight.set_value(false);
            match result {
                Ok(view) => {
                    let finished = view.status.is_finished();
                    advice.set(view.poll_after_ms);
                    if finished {
                        tell_hidden_tab(if view.status == TaskStatus::Completed {
                            "✓ Image ready — Darkroom"
                        } else {
                            "Generation ended — Darkroom"
                        });
                    }
                    // Ignore an answer about a task that is no longer shown.
                    // An answer sent before a Cancel must not undo it.
                    task.update(|t| {
                        if t.as_ref().is_some_and(|t| t.id == view.id && (finished || !t.status.is_finished())) {
                            *t = Some(view);
                        }
                    });
                    if finished {
                        session.refresh();
                        paused_until.set(None);
                    }
                }
                // Signed out meanwhile, or the task is gone: stop polling it.
                Err(e) if matches!(e.kind, ErrorKind::Unauthorized | ErrorKind::NotFound) => {
                    task.update(|t| {
                        if t.as_ref().is_some_and(|t| t.id == id) {
                            *t = None;
                        }
                    });
                    session.refresh();
                }
                // Anything else is passing trouble: the next tick retries.
                Err(_) => {}
            }
        });
    });

    let balance = move || session.current().map(|u| u.credits);
    let short_of_credits = move || balance().is_some_and(|b| b < cost);
    let now = clock();
    let paused = move || paused_until.get().is_some_and(|until| now.get() < until);
    // The card is rebuilt only when another task is shown, not on every poll.
    let shown = Memo::new(move |_| task.with(|t| t.as_ref().map(|t| t.id.clone())));

    view! {
        <section class="generator">
            <h1 class="visually-hidden">"Generate an image"</h1>
            <ActionForm action attr:class="prompt-form">
                <label for="prompt">"Prompt"</label>
                <textarea
                    id="prompt"
                    name="prompt"
                    rows="3"
                    maxlength="2000"
                    required
                    placeholder="A lighthouse on a cliff at dusk, warm light, film grain"
                ></textarea>
                <div class="form-row">
                    <label for="model" class="inline-label">
                        "Model"
                    </label>
                    <select id="model" name="model">
                        {setup
                            .models
                            .iter()
                            .map(|m| view! { <option value=m.id.clone()>{m.name.clone()}</option> })
                            .collect_view()}
                    </select>
                    <span class="cost">{format!("{cost} credits per image")}</span>
                    <button
                        type="submit"
                        class="primary"
                        disabled=move || pending.get() || short_of_credits() || paused()
                        aria-describedby="generate-hint"
                    >
                        {move || if pending.get() { "Submitting…" } else { "Generate" }}
                    </button>
                </div>
                <p id="generate-hint" class="hint" role="status">
                    {move || {
                        if short_of_credits() {
                            format!("Not enough credits: an image costs {cost}, you have {}.", balance().unwrap_or(0))
                        } else if paused() {
                            let left = paused_until.get().unwrap_or(0) - now.get();
                            format!("Generate is available again in {} s.", (left + 999) / 1000)
                        } else {
                            String::new()
                        }
                    }}
                </p>
                {move || {
                    action
                        .value()
                        .get()
                        .and_then(|r| r.err())
                        .map(|e| view! { <p class="form-error" role="alert">{e.message}</p> })
                }}
            </ActionForm>
            {move || {
                shown.get().and_then(|_| task.get_untracked()).map(|initial: TaskView| {
                    let current = Signal::derive(move || task.get().unwrap_or_else(|| initial.clone()));
                    // A cancel answers the task's new state at once.
                    let changed = Callback::new(move |view: TaskView| {
                        task.update(|t| {
                            if t.as_ref().is_some_and(|t| t.id == view.id) {
                                *t = Some(view);
                            }
                        });
                        paused_until.set(None);
                    });
                    view! { <TaskCard task=current now=now on_change=changed /> }
                })
            }}
        </section>
    }
}
