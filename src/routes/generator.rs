//! `/`: the prompt form and the current task, polled until it finishes.
//! The server-rendered page already carries the latest processing task, so
//! a reload or a reopened browser resumes polling it. The form and the card
//! are one island ([`Generator`]); the loader around it is server-only.

use leptos::either::Either;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;

mod fields;
mod live_task;
mod start_image;

use self::fields::{Advanced, Choice, Fields, ModelInputs, PREFILL};
use self::live_task::{CardCode, LiveTask};
use self::start_image::{StartImage, StartImageField, UploadForm};
use super::polling::{LiveTasks, tell_hidden_tab, unfinished, use_task_poller};
use super::refused::{Form, refused, upload_refused};
use super::task_card::{ImageOffers, TaskCard, clock, now_ms};
use crate::api::{GenerateImage, ResendVerification, generate_image, generator_setup};
use crate::balance;
use crate::error::{AppError, ErrorKind};
use crate::model::{GeneratorInfo, ImageInputOption, TaskStatus, TaskView};
use crate::session::{RequireUser, loaded, use_current_user};

/// How long Generate rests after a refusal at a cap (unless a task
/// finishes first).
const CAP_PAUSE_MS: i64 = 10_000;

/// Until the account's address is confirmed: why it cannot generate yet,
/// and "Send the link again" (a plain form; `resent` once it was sent).
#[component]
fn ConfirmEmail(resent: bool) -> impl IntoView {
    let refused = refused(Form::ResendVerification);
    view! {
        <section class="confirm-email" aria-labelledby="confirm-email-heading">
            <h2 id="confirm-email-heading">"Confirm your email address"</h2>
            <p>
                "Open the link we mailed you to get your free credits and start generating. It works for a day."
            </p>
            {resent.then(|| view! { <p class="form-success" role="status">"We sent a new link."</p> })}
            {refused.map(|e| view! { <p class="form-error" role="alert">{e.message}</p> })}
            <form action=ResendVerification::url() method="post">
                <button type="submit">"Send the link again"</button>
            </form>
        </section>
    }
}

/// The page; its data is read once per render, here (see `RequireUser`).
#[component]
pub fn GeneratorPage() -> impl IntoView {
    let setup = OnceResource::new(generator_setup());
    let user = use_current_user();
    let prefill: Vec<(String, String)> = use_query_map().with_untracked(|q| {
        PREFILL.iter().filter_map(|name| q.get(name).map(|value| ((*name).to_owned(), value))).collect()
    });
    let refused = refused(Form::Generate).or_else(upload_refused);
    // Where "Send the link again" leads without JavaScript.
    let resent = use_query_map().with_untracked(|q| q.get("resent").is_some());
    // The upload chosen without JavaScript (`/api/upload_image` leads
    // back here with it); the server checks whose it is.
    let start_image = use_query_map()
        .with_untracked(|q| q.get("image"))
        .filter(|id| id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .unwrap_or_default();
    view! {
        <RequireUser>
            {
                let (prefill, refused, start_image) = (prefill.clone(), refused.clone(), start_image.clone());
                move || {
                    loaded(setup)
                        .map(|r| match r {
                            Ok(setup) => {
                                let (credits, verified) =
                                    user.get().flatten().map_or((0, false), |u| (u.credits, u.verified));
                                let unverified = setup.verification_required && !verified;
                                let confirm_first = unverified.then(|| view! { <ConfirmEmail resent /> });
                                // The task to resume, as plain HTML: the island
                                // shows it live once the card's code has loaded.
                                let resumed = setup.resume.clone().map(|t| {
                                    let noop = Callback::new(|_: TaskView| {});
                                    view! { <TaskCard task=Signal::stored(t) now=Signal::stored(now_ms()) on_change=noop /> }
                                });
                                Either::Left(view! {
                                    {confirm_first}
                                    <Generator
                                        setup
                                        prefill=prefill.clone()
                                        credits
                                        refused=refused.clone()
                                        start_image=start_image.clone()
                                        unverified
                                    >
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

/// Given by the generator to the task card it shows: "Reuse seed" fills
/// the form in directly, also when its link points at the address already
/// shown (where following it changes nothing the page would notice).
#[derive(Clone, Copy)]
pub struct Refill(pub Callback<(TaskView, bool)>);

/// "30 credits for 3 images", said as it changes.
#[component]
fn CostLine(credits: Signal<i64>, images: RwSignal<u8>) -> impl IntoView {
    view! {
        <span class="cost" aria-live="polite">
            {move || cost_line(credits.get(), images.get())}
        </span>
    }
}

/// "30 credits for 3 images".
fn cost_line(credits: i64, images: u8) -> String {
    let total = credits * i64::from(images);
    if images == 1 { format!("{total} credits for 1 image") } else { format!("{total} credits for {images} images") }
}

/// The form and the task it shows. `prefill`: the address's fields (see
/// [`PREFILL`]); `credits`: the balance the page was rendered with;
/// `refused`: why the server refused a post of the form without JavaScript;
/// `start_image`: the upload chosen without JavaScript (empty for none);
/// `children`: the task to resume, rendered by the server (see
/// [`live_task_card`]).
#[island]
fn Generator(
    setup: GeneratorInfo,
    prefill: Vec<(String, String)>,
    credits: i64,
    refused: Option<AppError>,
    start_image: String,
    /// The account must confirm its email before it generates (the page
    /// says so above the form; the form's hint points there instead of at
    /// buying credits).
    unverified: bool,
    children: Children,
) -> impl IntoView {
    crate::island_hydrated();
    let balance = balance::shared(credits);
    let models = StoredValue::new(setup.models.clone());
    let fields = Fields::new();
    fields.fill(&prefill, &setup.models);
    // An upload chosen without JavaScript leads here: the model is one
    // that takes it.
    if !start_image.is_empty()
        && let Some(takes) = setup.models.iter().find(|m| m.image != ImageInputOption::None)
        && setup.models.iter().any(|m| m.id == fields.model.get_untracked() && m.image == ImageInputOption::None)
    {
        fields.model.set(takes.id.clone());
    }
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
    let start = StartImage::new(start_image, setup.max_input_bytes);
    let takes_image = Memo::new(move |_| model.with(|m| m.as_ref().map_or(ImageInputOption::None, |m| m.image)));
    let default_credits = setup.cost;
    let can_buy = setup.can_buy;
    let credits = move || model.with(|m| m.as_ref().map_or(default_credits, |m| m.credits));
    let cost = move || credits() * i64::from(fields.num_outputs.get());
    // The tasks this page has shown, and which one it shows now.
    let tasks = LiveTasks::new(setup.resume.clone());
    let shown = RwSignal::new(setup.resume.as_ref().map(|t| t.id.clone()));
    let task = Memo::new(move |_| shown.get().and_then(|id| tasks.get(&id)));
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

    let polling = Memo::new(move |_| unfinished(tasks, shown.get()));
    let on_finished = Callback::new(move |view: TaskView| {
        if shown.get_untracked().as_deref() == Some(view.id.as_str()) {
            tell_hidden_tab(if view.status == TaskStatus::Completed {
                "✓ Image ready — Darkroom"
            } else {
                "Generation ended — Darkroom"
            });
            paused_until.set(None);
        }
    });
    use_task_poller(tasks, polling, setup.poll_interval_ms, on_finished);
    // "Upscale" and "Vary" on the card show the task they start here.
    ImageOffers::provide(
        setup.upscale.clone(),
        setup.vary.clone(),
        Callback::new(move |view: TaskView| {
            shown.set(Some(view.id.clone()));
            tasks.set(view);
        }),
    );

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
        let image = (m.image != ImageInputOption::None).then(|| start.id.get_untracked()).filter(|id| !id.is_empty());
        if m.image == ImageInputOption::Required && image.is_none() {
            refusal.set(Some(AppError::invalid(format!("{} needs an image to start from.", m.name))));
            return;
        }
        let with_image = image.is_some();
        pending.set(true);
        spawn_local(async move {
            let answer = generate_image(
                prompt.clone(),
                Some(m.id.clone()),
                aspect_ratio.clone(),
                (m.max_outputs > 1).then(|| count.to_string()),
                seed,
                negative_prompt,
                image,
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
                    view.input_url = with_image.then(|| format!("/images/{}/input", view.id));
                    shown.set(Some(view.id.clone()));
                    tasks.set(view);
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
    // The card's code is fetched once there is a task to show, or a prompt
    // is typed (so it is usually there before the first task).
    let code = CardCode::new();
    // A cancel answers the task's new state at once.
    let changed = Callback::new(move |view: TaskView| {
        tasks.set(view);
        paused_until.set(None);
    });
    let resumed_id = setup.resume.as_ref().map(|t| t.id.clone());
    // An image pasted into the form, or dropped on it, is the one to start
    // from (for a model that takes one; otherwise a paste is left alone).
    let on_paste = move |ev: leptos::ev::ClipboardEvent| {
        #[cfg(feature = "hydrate")]
        if takes_image.get_untracked() != ImageInputOption::None
            && let Some(file) = start_image::image_file(ev.clipboard_data())
        {
            ev.prevent_default();
            start.send(file);
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = ev;
    };
    let on_dragover = move |ev: leptos::ev::DragEvent| {
        if takes_image.get_untracked() != ImageInputOption::None {
            // Lets the drop happen here rather than open the file.
            ev.prevent_default();
        }
    };
    let on_drop = move |ev: leptos::ev::DragEvent| {
        if takes_image.get_untracked() == ImageInputOption::None {
            return;
        }
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        if let Some(file) = start_image::image_file(ev.data_transfer()) {
            start.send(file);
        }
    };

    view! {
        <section class="generator">
            <h1 class="visually-hidden">"Generate an image"</h1>
            <UploadForm />
            <form
                action=GenerateImage::url()
                method="post"
                class="prompt-form"
                on:submit=submit
                on:paste=on_paste
                on:dragover=on_dragover
                on:drop=on_drop
            >
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
                        code.want();
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
                {move || match takes_image.get() {
                    ImageInputOption::None => None,
                    takes => Some(view! { <StartImageField image=start required=takes == ImageInputOption::Required /> }),
                }}
                {move || model.get().filter(|m| m.seed || m.negative_prompt).map(|m| view! { <Advanced model=m fields /> })}
                <div class="form-row submit-row">
                    <CostLine credits=Signal::derive(credits) images=fields.num_outputs />
                    <button
                        type="submit"
                        class="primary"
                        disabled=move || pending.get() || start.busy.get() || short_of_credits() || paused()
                        aria-describedby="generate-hint"
                    >
                        {move || if pending.get() { "Submitting…" } else { "Generate" }}
                    </button>
                </div>
                <p id="generate-hint" class="hint" role="status">
                    {move || {
                        if unverified {
                            "Confirm your email address first: open the link we mailed you.".to_owned()
                        } else if short_of_credits() {
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
                {move || {
                    let short = short_of_credits()
                        || refusal.with(|r| r.as_ref().is_some_and(|e| e.kind == ErrorKind::NotEnoughCredits));
                    (can_buy && short && !unverified)
                        .then(|| view! { <p class="buy-more"><a href="/account#buy">"Buy credits"</a></p> })
                }}
            </form>
            <LiveTask task code resumed_id now on_change=changed>
                {children()}
            </LiveTask>
        </section>
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
