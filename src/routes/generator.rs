//! `/`: the prompt form and the current task, polled until it finishes.
//! The server-rendered page already carries the latest processing task, so
//! a reload or a reopened browser resumes polling it. The form and the card
//! are one island ([`Generator`]); the loader around it is server-only.

use leptos::either::Either;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;

use super::polling::{pace, poll_while, tell_hidden_tab};
use super::refused::{Form, refused};
use super::task_card::{TaskCard, clock, now_ms};
use crate::api::{GenerateImage, check_image_status, generate_image, generator_setup};
use crate::balance;
use crate::error::{AppError, ErrorKind};
use crate::model::{GeneratorInfo, ModelOption, TaskStatus, TaskView};
use crate::session::{RequireUser, use_current_user};

/// How long Generate rests after a refusal at a cap (unless a task
/// finishes first).
const CAP_PAUSE_MS: i64 = 10_000;

/// The fields the address can fill in (`/?prompt=…`, where "Use this
/// prompt" and "Reuse seed" lead).
const PREFILL: [&str; 6] = ["prompt", "model", "aspect_ratio", "num_outputs", "seed", "negative_prompt"];

/// The page; its data is read once per render, here (see `RequireUser`).
#[component]
pub fn GeneratorPage() -> impl IntoView {
    let setup = OnceResource::new(generator_setup());
    let user = use_current_user();
    let prefill: Vec<(String, String)> = use_query_map().with_untracked(|q| {
        PREFILL.iter().filter_map(|name| q.get(name).map(|value| ((*name).to_owned(), value))).collect()
    });
    let refused = refused(Form::Generate);
    view! {
        <RequireUser>
            {
                let (prefill, refused) = (prefill.clone(), refused.clone());
                move || {
                    setup
                        .get()
                        .map(|r| match r {
                            Ok(setup) => {
                                let credits = user.get().flatten().map_or(0, |u| u.credits);
                                // The task to resume, as plain HTML: the island
                                // shows it live once the card's code has loaded.
                                let resumed = setup.resume.clone().map(|t| {
                                    let noop = Callback::new(|_: TaskView| {});
                                    view! { <TaskCard task=Signal::stored(t) now=Signal::stored(now_ms()) on_change=noop /> }
                                });
                                Either::Left(view! {
                                    <Generator setup prefill=prefill.clone() credits refused=refused.clone()>
                                        {resumed}
                                    </Generator>
                                })
                            }
                            Err(e) => Either::Right(view! { <p class="form-error" role="alert">{e.message}</p> }),
                        })
                }
            }
        </RequireUser>
    }
}

/// The generator form's fields, filled from the address (`/?prompt=…`, as
/// "Use this prompt" and "Reuse seed" link to it) and kept as the person
/// edits them.
#[derive(Clone, Copy)]
struct Fields {
    prompt: RwSignal<String>,
    model: RwSignal<String>,
    aspect_ratio: RwSignal<String>,
    num_outputs: RwSignal<u8>,
    seed: RwSignal<String>,
    negative_prompt: RwSignal<String>,
    /// Whether "Advanced" is open: opened by a filled-in seed or negative
    /// prompt from the address, then as the person toggles it (never
    /// closed under their typing).
    advanced_open: RwSignal<bool>,
}

impl Fields {
    fn new() -> Self {
        Self {
            prompt: RwSignal::new(String::new()),
            model: RwSignal::new(String::new()),
            aspect_ratio: RwSignal::new(String::new()),
            num_outputs: RwSignal::new(1),
            seed: RwSignal::new(String::new()),
            negative_prompt: RwSignal::new(String::new()),
            advanced_open: RwSignal::new(false),
        }
    }

    /// Fills the fields from the address's query; a model or an input the
    /// catalogue does not offer falls back to the model's default.
    fn fill(self, query: &[(String, String)], models: &[ModelOption]) {
        self.fill_with(
            |name| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default(),
            models,
        );
    }

    /// Fills the fields with a task's prompt, model and inputs, and its
    /// seed too when `with_seed` (what its "Reuse seed" link says).
    fn fill_from(self, task: &TaskView, with_seed: bool, models: &[ModelOption]) {
        let seed = task.seed.filter(|_| with_seed).map(|s| s.to_string()).unwrap_or_default();
        self.fill_with(
            |name| match name {
                "prompt" => task.prompt.clone(),
                "model" => task.model.clone(),
                "aspect_ratio" => task.aspect_ratio.clone().unwrap_or_default(),
                "num_outputs" => task.num_outputs.to_string(),
                "seed" => seed.clone(),
                "negative_prompt" => task.negative_prompt.clone().unwrap_or_default(),
                _ => String::new(),
            },
            models,
        );
    }

    fn fill_with(self, get: impl Fn(&str) -> String, models: &[ModelOption]) {
        let model = models.iter().find(|m| m.id == get("model")).or(models.first());
        let Some(model) = model else { return };
        self.prompt.set(get("prompt"));
        self.model.set(model.id.clone());
        let ratio = get("aspect_ratio");
        self.aspect_ratio.set(if model.aspect_ratios.contains(&ratio) {
            ratio
        } else {
            model.aspect_ratios.first().cloned().unwrap_or_default()
        });
        self.num_outputs
            .set(get("num_outputs").parse::<u8>().ok().filter(|n| (1..=model.max_outputs).contains(n)).unwrap_or(1));
        self.seed.set(if model.seed { get("seed") } else { String::new() });
        self.negative_prompt.set(if model.negative_prompt { get("negative_prompt") } else { String::new() });
        if !self.seed.get_untracked().is_empty() || !self.negative_prompt.get_untracked().is_empty() {
            self.advanced_open.set(true);
        }
    }
}

/// Given by the generator to the task card it shows: "Reuse seed" fills
/// the form in directly, also when its link points at the address already
/// shown (where following it changes nothing the page would notice).
#[derive(Clone, Copy)]
pub struct Refill(pub Callback<(TaskView, bool)>);

/// "30 credits for 3 images".
fn cost_line(credits: i64, images: u8) -> String {
    let total = credits * i64::from(images);
    if images == 1 { format!("{total} credits for 1 image") } else { format!("{total} credits for {images} images") }
}

/// The live task card, in a WebAssembly file of its own: the generator's
/// page fetches it once it has a task to show ([`load_task_card`]), so a
/// first visit fetches only the form's code.
#[lazy]
fn live_task_card(task: Signal<TaskView>, now: Signal<i64>, on_change: Callback<TaskView>) -> AnyView {
    view! { <TaskCard task now on_change /> }.into_any()
}

/// Fetches the code of [`live_task_card`], then sets `done`.
fn load_task_card(done: RwSignal<bool>) {
    #[cfg(feature = "hydrate")]
    spawn_local(async move {
        __preload_live_task_card().await;
        done.set(true);
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = done;
}

/// The value of a future that has nothing left to wait for (a lazy
/// function whose code has arrived), or `None` if it still waits.
fn loaded<T>(future: impl std::future::Future<Output = T>) -> Option<T> {
    use std::task::{Context, Poll, Waker};
    match std::pin::pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}

/// The form and the task it shows. `prefill`: the address's fields (see
/// [`PREFILL`]); `credits`: the balance the page was rendered with;
/// `refused`: why the server refused a post of the form without JavaScript;
/// `children`: the task to resume, rendered by the server (see
/// [`live_task_card`]).
#[island]
fn Generator(
    setup: GeneratorInfo,
    prefill: Vec<(String, String)>,
    credits: i64,
    refused: Option<AppError>,
    children: Children,
) -> impl IntoView {
    crate::island_hydrated();
    let balance = balance::shared(credits);
    let models = StoredValue::new(setup.models.clone());
    let fields = Fields::new();
    fields.fill(&prefill, &setup.models);
    provide_context(Refill(Callback::new(move |(task, with_seed): (TaskView, bool)| {
        models.with_value(|m| fields.fill_from(&task, with_seed, m));
    })));
    let model = Memo::new(move |_| {
        let id = fields.model.get();
        models.with_value(|m| m.iter().find(|m| m.id == id).or(m.first()).cloned())
    });
    // A model that offers fewer choices than the last one: back to its
    // defaults where the choice no longer exists.
    Effect::new(move |_| {
        if let Some(m) = model.get() {
            if !m.aspect_ratios.contains(&fields.aspect_ratio.get_untracked()) {
                fields.aspect_ratio.set(m.aspect_ratios.first().cloned().unwrap_or_default());
            }
            if fields.num_outputs.get_untracked() > m.max_outputs {
                fields.num_outputs.set(1);
            }
        }
    });
    let default_credits = setup.cost;
    let credits = move || model.with(|m| m.as_ref().map_or(default_credits, |m| m.credits));
    let cost = move || credits() * i64::from(fields.num_outputs.get());
    let task = RwSignal::new(setup.resume.clone());
    // What the last submission was refused with; a post without
    // JavaScript comes back from the server with it (`refused`).
    let refusal = RwSignal::new(refused);
    let pending = RwSignal::new(false);
    // At a cap (generations running at once, or per minute): Generate
    // rests until a task finishes here or a short while has passed.
    let paused_until = RwSignal::new(None::<i64>);
    let rest_if_capped = move |e: &AppError| {
        if e.kind == ErrorKind::RateLimited {
            paused_until.set(Some(now_ms() + CAP_PAUSE_MS));
        }
    };
    Effect::new(move |_| refusal.with_untracked(|r| r.as_ref().map(rest_if_capped)));

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
                        balance::refresh();
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
                    balance::refresh();
                }
                // Anything else is passing trouble: the next tick retries.
                Err(_) => {}
            }
        });
    });

    let short_of_credits = move || balance.get() < cost();
    // The form posts without JavaScript; with it, what it would post is
    // sent from the fields (the inputs the chosen model shows), and the new
    // task shows at once (polling fills in the rest).
    let submit = move |ev: leptos::ev::SubmitEvent| {
        // (No model to offer: the server answers the plain post.)
        let Some(m) = model.get_untracked() else { return };
        ev.prevent_default();
        if pending.get_untracked() {
            return;
        }
        let prompt = fields.prompt.get_untracked();
        let aspect_ratio = (!m.aspect_ratios.is_empty()).then(|| fields.aspect_ratio.get_untracked());
        let count = if m.max_outputs > 1 { fields.num_outputs.get_untracked() } else { 1 };
        let seed = m.seed.then(|| fields.seed.get_untracked());
        let negative_prompt = m.negative_prompt.then(|| fields.negative_prompt.get_untracked());
        pending.set(true);
        spawn_local(async move {
            let answer = generate_image(
                prompt.clone(),
                Some(m.id.clone()),
                aspect_ratio.clone(),
                (m.max_outputs > 1).then(|| count.to_string()),
                seed,
                negative_prompt,
            )
            .await;
            pending.set(false);
            match answer {
                Ok(generated) => {
                    refusal.set(None);
                    balance::refresh();
                    let mut view = TaskView::pending(
                        generated.task_id,
                        prompt.trim().to_owned(),
                        m.id,
                        m.credits * i64::from(count),
                        now_ms(),
                    );
                    view.num_outputs = count;
                    view.aspect_ratio = aspect_ratio.filter(|r| !r.is_empty());
                    task.set(Some(view));
                }
                Err(e) => {
                    rest_if_capped(&e);
                    refusal.set(Some(e));
                }
            }
        });
    };
    let now = clock();
    let paused = move || paused_until.get().is_some_and(|until| now.get() < until);
    // The card is rebuilt only when another task is shown, not on every poll.
    let shown = Memo::new(move |_| task.with(|t| t.as_ref().map(|t| t.id.clone())));
    // The server renders the resumed task's card as plain HTML (the
    // island's children). In the browser the card's code is fetched once a
    // prompt is typed or there is a task to show (`want_card`, at most
    // once); from then on the island shows its tasks with the live card.
    // The server's card stays until then, while it is still the task shown,
    // and is removed after.
    let card_code = RwSignal::new(false);
    let asked = StoredValue::new(false);
    let want_card = move || {
        if !asked.get_value() {
            asked.set_value(true);
            load_task_card(card_code);
        }
    };
    Effect::new(move |_| {
        if shown.with(Option::is_some) {
            want_card();
        }
    });
    let resumed_id = setup.resume.as_ref().map(|t| t.id.clone());
    let server_card_shown = Memo::new(move |_| !card_code.get() && shown.with(|s| s.is_some() && *s == resumed_id));
    let server_card = NodeRef::<leptos::html::Div>::new();
    Effect::new(move |_| {
        if !server_card_shown.get()
            && let Some(el) = server_card.get()
        {
            el.set_inner_html("");
        }
    });

    view! {
        <section class="generator">
            <h1 class="visually-hidden">"Generate an image"</h1>
            <form action=GenerateImage::url() method="post" class="prompt-form" on:submit=submit>
                <label for="prompt">"Prompt"</label>
                <textarea
                    id="prompt"
                    name="prompt"
                    rows="3"
                    maxlength="2000"
                    required
                    placeholder="A lighthouse on a cliff at dusk, warm light, film grain"
                    prop:value=move || fields.prompt.get()
                    on:input=move |ev| {
                        fields.prompt.set(event_target_value(&ev));
                        want_card();
                    }
                >
                    {fields.prompt.get_untracked()}
                </textarea>
                <div class="form-row">
                    <Choice
                        id="model"
                        label="Model"
                        options=setup.models.iter().map(|m| (m.id.clone(), m.name.clone())).collect()
                        chosen=fields.model
                        on_pick=move |id| fields.model.set(id)
                    />
                    {move || model.get().map(|m| view! { <ModelInputs model=m fields /> })}
                </div>
                {move || model.get().filter(|m| m.seed || m.negative_prompt).map(|m| view! { <Advanced model=m fields /> })}
                <div class="form-row submit-row">
                    <span class="cost" aria-live="polite">
                        {move || cost_line(credits(), fields.num_outputs.get())}
                    </span>
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
                            let have = balance.get();
                            match fields.num_outputs.get() {
                                1 => format!("Not enough credits: an image costs {}, you have {have}.", cost()),
                                n => format!("Not enough credits: {n} images cost {}, you have {have}.", cost()),
                            }
                        } else if paused() {
                            let left = paused_until.get().unwrap_or(0) - now.get();
                            format!("Generate is available again in {} s.", (left + 999) / 1000)
                        } else {
                            String::new()
                        }
                    }}
                </p>
                {move || refusal.get().map(|e| view! { <p class="form-error" role="alert">{e.message}</p> })}
            </form>
            <div node_ref=server_card hidden=move || !server_card_shown.get()>
                {children()}
            </div>
            {move || {
                let shown = shown.get().filter(|_| card_code.get());
                shown.and_then(|_| task.get_untracked()).and_then(|initial: TaskView| {
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
                    // The code is here: the card is built at once.
                    loaded(live_task_card(current, now.into(), changed))
                })
            }}
        </section>
    }
}

/// "Aspect ratio" and "Number of images" for a model that takes them.
#[component]
fn ModelInputs(model: ModelOption, fields: Fields) -> impl IntoView {
    let ratios = (!model.aspect_ratios.is_empty()).then(|| {
        view! {
            <Choice
                id="aspect_ratio"
                label="Aspect ratio"
                options=model.aspect_ratios.iter().map(|r| (r.clone(), r.clone())).collect()
                chosen=fields.aspect_ratio
                on_pick=move |ratio| fields.aspect_ratio.set(ratio)
            />
        }
    });
    let counts = (model.max_outputs > 1).then(|| {
        view! {
            <Choice
                id="num_outputs"
                label="Number of images"
                options=(1..=model.max_outputs).map(|n| (n.to_string(), n.to_string())).collect()
                chosen=Signal::derive(move || fields.num_outputs.get().to_string())
                on_pick=move |n: String| fields.num_outputs.set(n.parse().unwrap_or(1))
            />
        }
    });
    view! {
        {ratios}
        {counts}
    }
}

/// A labelled select (`id` is also its form name) of (value, label)
/// options, showing `chosen` and telling `on_pick` what the person picks.
#[component]
fn Choice(
    id: &'static str,
    label: &'static str,
    options: Vec<(String, String)>,
    #[prop(into)] chosen: Signal<String>,
    #[prop(into)] on_pick: Callback<String>,
) -> impl IntoView {
    view! {
        <span class="choice">
            <label for=id class="inline-label">
                {label}
            </label>
            <select id=id name=id on:change=move |ev| on_pick.run(event_target_value(&ev))>
                {options
                    .into_iter()
                    .map(|(value, text)| {
                        let this = value.clone();
                        let is_chosen = move || chosen.get() == this;
                        view! {
                            <option value=value selected=is_chosen.clone() prop:selected=is_chosen>
                                {text}
                            </option>
                        }
                    })
                    .collect_view()}
            </select>
        </span>
    }
}

/// "Advanced": a seed and a negative prompt, for the models that take
/// them. Opens when the address fills either in (a reused seed shows).
#[component]
fn Advanced(model: ModelOption, fields: Fields) -> impl IntoView {
    let open = fields.advanced_open;
    view! {
        <details
            class="advanced"
            open=open.get_untracked()
            prop:open=move || open.get()
            on:toggle=move |ev| open.set(event_target::<web_sys::Element>(&ev).has_attribute("open"))
        >
            <summary>"Advanced"</summary>
            {model
                .seed
                .then(|| {
                    view! {
                        <div class="field">
                            <label for="seed">"Seed"</label>
                            <input
                                id="seed"
                                name="seed"
                                type="text"
                                inputmode="numeric"
                                pattern="[0-9]*"
                                maxlength="10"
                                autocomplete="off"
                                placeholder="random"
                                aria-describedby="seed-hint"
                                prop:value=move || fields.seed.get()
                                value=fields.seed.get_untracked()
                                on:input=move |ev| fields.seed.set(event_target_value(&ev))
                            />
                            <p id="seed-hint" class="hint">
                                "The same seed, prompt and settings give the same image. Leave empty for a random one."
                            </p>
                        </div>
                    }
                })}
            {model
                .negative_prompt
                .then(|| {
                    view! {
                        <div class="field">
                            <label for="negative_prompt">"Negative prompt"</label>
                            <textarea
                                id="negative_prompt"
                                name="negative_prompt"
                                rows="2"
                                maxlength="2000"
                                placeholder="What the image should not show"
                                prop:value=move || fields.negative_prompt.get()
                                on:input=move |ev| fields.negative_prompt.set(event_target_value(&ev))
                            >
                                {fields.negative_prompt.get_untracked()}
                            </textarea>
                        </div>
                    }
                })}
        </details>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cost_line_counts_the_images() {
        assert_eq!(cost_line(10, 1), "10 credits for 1 image");
        assert_eq!(cost_line(10, 3), "30 credits for 3 images");
    }
}
