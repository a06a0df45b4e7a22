//! One task as a card: status, elapsed time and progress while processing;
//! the images (alt text = the prompt) once completed, with the seed and
//! "Reuse seed", "Upscale" and "Vary"; the reason and the refund once failed; the
//! image a task started from beside it. Used by the generator and the
//! history page (where "Use this prompt" reopens the generator with the
//! task's prompt, model and inputs).

use leptos::either::{Either, EitherOf3, EitherOf4};
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos::task::spawn_local;

use super::generator::Refill;
use crate::api::{
    UpscaleImage, VaryImage, cancel_image, delete_image, share_image, unshare_image, upscale_image, vary_image,
};
use crate::model::{TaskStatus, TaskView, UpscaleOffer, VaryOffer, aspect_size};

/// What a completed card offers to make from its image ("Upscale",
/// "Vary"), and where the task it starts is shown: given (as context) by
/// the page that shows the cards.
#[derive(Clone)]
pub struct ImageOffers {
    pub upscale: Option<UpscaleOffer>,
    pub vary: Option<VaryOffer>,
    pub started: Callback<TaskView>,
}

impl ImageOffers {
    /// Given as context when the site offers either.
    pub fn provide(upscale: Option<UpscaleOffer>, vary: Option<VaryOffer>, started: Callback<TaskView>) {
        if upscale.is_some() || vary.is_some() {
            provide_context(Self { upscale, vary, started });
        }
    }
}

/// Milliseconds since the Unix epoch, on either side.
pub fn now_ms() -> i64 {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::now() as i64
    }
    #[cfg(not(feature = "hydrate"))]
    {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// "12 s", "3 min 05 s".
pub fn format_elapsed(ms: i64) -> String {
    let s = (ms.max(0) / 1000) as u64;
    if s < 60 { format!("{s} s") } else { format!("{} min {:02} s", s / 60, s % 60) }
}

/// A signal of the current time that ticks every second while mounted in
/// the browser.
pub fn clock() -> ReadSignal<i64> {
    let (now, set_now) = signal(now_ms());
    Effect::new(move |_| {
        if let Ok(h) = set_interval_with_handle(move || set_now.set(now_ms()), std::time::Duration::from_secs(1)) {
            on_cleanup(move || h.clear());
        }
    });
    now
}

/// "1st", "2nd", "3rd", "11th", "1,022nd": a place in the queue.
pub fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    let digits = n.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{grouped}{suffix}")
}

/// "10 credits refunded." for a refunded task.
fn refund_note(t: &TaskView) -> String {
    if t.refunded { format!("{} credits refunded.", t.cost) } else { String::new() }
}

#[component]
pub fn TaskCard(
    #[prop(into)] task: Signal<TaskView>,
    #[prop(into)] now: Signal<i64>,
    /// Large card on the generator page, compact in the history grid.
    #[prop(optional)]
    compact: bool,
    /// Told the task's new state after an action on the card (Cancel).
    #[prop(optional, into)]
    on_change: Option<Callback<TaskView>>,
    /// Told the task's id once it is deleted; a finished card offers
    /// "Delete" only when this is given.
    #[prop(optional, into)]
    on_delete: Option<Callback<String>>,
) -> impl IntoView {
    let status = move || task.with(|t| t.status);
    let badge = move || match status() {
        TaskStatus::Queued => match task.with(|t| t.queue_position) {
            Some(n) => format!("In queue — {}", ordinal(n)),
            None => "In queue".to_owned(),
        },
        // Sent, and waiting in the provider's own queue (fal says where).
        TaskStatus::Processing => match task.with(|t| t.queue_position) {
            Some(n) => format!("In queue at the provider — {}", ordinal(n)),
            None => "Processing".to_owned(),
        },
        TaskStatus::Completed => "Completed".to_owned(),
        TaskStatus::Failed => "Failed".to_owned(),
        TaskStatus::Canceled => "Canceled".to_owned(),
    };
    let unfinished = move || !status().is_finished();
    // On the generator page: "Reuse seed" fills its form in directly.
    let refill = use_context::<Refill>();
    let offers = use_context::<ImageOffers>();
    let canceling = RwSignal::new(false);
    let cancel_error = RwSignal::new(None::<String>);
    let cancel = move |_| {
        if canceling.get_untracked() {
            return;
        }
        canceling.set(true);
        let id = task.with_untracked(|t| t.id.clone());
        spawn_local(async move {
            match cancel_image(id).await {
                Ok(view) => {
                    cancel_error.set(None);
                    if let Some(on_change) = on_change {
                        on_change.run(view);
                    }
                    crate::balance::refresh();
                }
                Err(e) => cancel_error.set(Some(e.message)),
            }
            canceling.set(false);
        });
    };
    let elapsed = move || {
        task.with(|t| {
            let end = t.finished_ms.unwrap_or_else(|| now.get());
            format_elapsed(end - t.created_ms)
        })
    };

    view! {
        <article
            class="task-card"
            class:compact=compact
            data-status=move || status().as_str()
            aria-busy=move || unfinished().to_string()
        >
            <div class="frame">
                {move || {
                    let t = task.get();
                    let images = t.images();
                    match t.status {
                        TaskStatus::Completed if !images.is_empty() => {
                            let (width, height) = aspect_size(t.aspect_ratio.as_deref(), 512);
                            let count = images.len();
                            EitherOf3::A(view! {
                                <div class="outputs" data-count=count.to_string()>
                                    {images
                                        .into_iter()
                                        .map(|url| {
                                            let href = url.clone();
                                            view! {
                                                <a href=href target="_blank" rel="noopener" class="image-link">
                                                    <img
                                                        src=url
                                                        alt=t.prompt.clone()
                                                        width=width.to_string()
                                                        height=height.to_string()
                                                        loading="lazy"
                                                        decoding="async"
                                                    />
                                                </a>
                                            }
                                        })
                                        .collect_view()}
                                </div>
                            })
                        }
                        TaskStatus::Failed | TaskStatus::Canceled => {
                            EitherOf3::B(view! {
                                <div class="placeholder failed" aria-hidden="true">
                                    <span>"✕"</span>
                                </div>
                            })
                        }
                        status => {
                            // Still in the queue: nothing is developing yet.
                            let class = if status == TaskStatus::Queued {
                                "placeholder waiting"
                            } else {
                                "placeholder developing"
                            };
                            EitherOf3::C(view! { <div class=class aria-hidden="true"></div> })
                        }
                    }
                }}
            </div>
            <div class="meta">
                <p class="prompt" title=move || task.with(|t| t.prompt.clone())>
                    {move || task.with(|t| t.prompt.clone())}
                </p>
                {move || {
                    task.with(|t| {
                        let label = match (t.scale, &t.source_task_id) {
                            (Some(scale), _) => format!("Upscaled {scale}×"),
                            (None, Some(_)) => "Variation of".to_owned(),
                            (None, None) => "Started from".to_owned(),
                        };
                        t.input_url.clone().map(|url| {
                            view! {
                                <p class="input-image">
                                    <a href=url.clone() target="_blank" rel="noopener">
                                        <img src=url.clone() alt=format!("{label}: the image it started from") loading="lazy" />
                                    </a>
                                    <span>{label}</span>
                                </p>
                            }
                        })
                    })
                }}
                <p class="status-line">
                    <span class="badge" data-status=move || status().as_str()>
                        {badge}
                    </span>
                    <span class="elapsed" title=move || task.with(|t| format!("Started {}", t.created_at))>
                        {elapsed}
                    </span>
                </p>
                {move || {
                    (status() == TaskStatus::Processing)
                        .then(|| {
                            let progress = task.with(|t| t.progress);
                            match progress {
                                Some(p) => {
                                    Either::Left(view! {
                                        <div
                                            class="progress"
                                            role="progressbar"
                                            aria-label="Progress"
                                            aria-valuemin="0"
                                            aria-valuemax="100"
                                            aria-valuenow=p.to_string()
                                        >
                                            <div class="bar" style=format!("width: {p}%")></div>
                                        </div>
                                    })
                                }
                                None => {
                                    Either::Right(view! {
                                        <div class="progress indeterminate" role="progressbar" aria-label="Progress">
                                            <div class="bar"></div>
                                        </div>
                                    })
                                }
                            }
                        })
                }}
                {move || {
                    (status() == TaskStatus::Queued)
                        .then(|| {
                            view! {
                                <p class="hint">
                                    "Waiting for room at the image service; it starts on its own. Canceling refunds it."
                                </p>
                            }
                        })
                }}
                {move || {
                    (unfinished() && on_change.is_some())
                        .then(|| {
                            view! {
                                <p class="actions">
                                    <button
                                        type="button"
                                        class="button"
                                        on:click=cancel
                                        disabled=move || canceling.get()
                                    >
                                        {move || if canceling.get() { "Canceling…" } else { "Cancel" }}
                                    </button>
                                </p>
                            }
                        })
                }}
                {move || cancel_error.get().map(|e| view! { <p class="form-error" role="alert">{e}</p> })}
                {move || {
                    let t = task.get();
                    match t.status {
                        TaskStatus::Canceled => {
                            let refund = refund_note(&t);
                            EitherOf4::A(view! {
                                <p class="failure" role="status">
                                    "Canceled. " <strong>{refund}</strong>
                                </p>
                            })
                        }
                        TaskStatus::Failed => {
                            let refund = refund_note(&t);
                            EitherOf4::B(view! {
                                <p class="failure" role="status">
                                    {t.error.unwrap_or_else(|| "The generation failed.".into())} " "
                                    <strong>{refund}</strong>
                                </p>
                            })
                        }
                        TaskStatus::Completed => {
                            let images = t.images();
                            let count = images.len();
                            let short_id = t.id[..8.min(t.id.len())].to_owned();
                            EitherOf4::C(view! {
                                <p class="actions">
                                    {images
                                        .into_iter()
                                        .enumerate()
                                        .map(|(n, url)| {
                                            let (label, name) = if count == 1 {
                                                ("Download".to_owned(), format!("darkroom-{short_id}.png"))
                                            } else {
                                                (
                                                    // A history card is narrow: a short label, the
                                                    // full name for assistive technology and hover.
                                                    if compact {
                                                        format!("↓ {}", n + 1)
                                                    } else {
                                                        format!("Download image {}", n + 1)
                                                    },
                                                    format!("darkroom-{short_id}-{}.png", n + 1),
                                                )
                                            };
                                            let described =
                                                (count > 1).then(|| format!("Download image {} of {count}", n + 1));
                                            view! {
                                                <a
                                                    href=url
                                                    download=name
                                                    class="button"
                                                    aria-label=described.clone()
                                                    title=described
                                                >
                                                    {label}
                                                </a>
                                            }
                                        })
                                        .collect_view()}
                                </p>
                            })
                        }
                        _ => EitherOf4::D(()),
                    }
                }}
                {move || {
                    task.with(|t| {
                        t.seed.filter(|_| t.status == TaskStatus::Completed).map(|seed| {
                            let href = t.reuse_url(true);
                            view! {
                                <p class="seed">
                                    "Seed " <code>{seed.to_string()}</code> " "
                                    <a
                                        href=href.clone()
                                        class="reuse"
                                        on:click=move |ev| {
                                            if let Some(Refill(fill)) = refill {
                                                ev.prevent_default();
                                                fill.run((task.get_untracked(), true));
                                                show_address(&href);
                                            }
                                        }
                                    >
                                        "Reuse seed"
                                    </a>
                                </p>
                            }
                        })
                    })
                }}
                {move || {
                    compact
                        .then(|| {
                            view! {
                                <p class="reuse-prompt">
                                    <a href=move || task.with(|t| t.reuse_url(false)) class="button">
                                        "Use this prompt"
                                    </a>
                                </p>
                            }
                        })
                }}
                {move || {
                    // An upscaled image is not upscaled or varied again.
                    let from_here = task.with(|t| t.status == TaskStatus::Completed && t.scale.is_none());
                    offers.clone().filter(|_| from_here).map(|ImageOffers { upscale, vary, started }| {
                        let upscale = upscale
                            .map(|offer| view! { <UpscaleControl task=task.get_untracked() offer started /> });
                        let vary = vary.map(|offer| view! { <VaryControl task=task.get_untracked() offer started /> });
                        (upscale, vary)
                    })
                }}
                {move || {
                    let (id, status) = task.with(|t| (t.id.clone(), t.status));
                    (status == TaskStatus::Completed).then(|| view! { <ShareControls task_id=id /> })
                }}
                {move || {
                    let (id, finished) = task.with(|t| (t.id.clone(), t.status.is_finished()));
                    on_delete
                        .filter(|_| finished)
                        .map(|on_delete| view! { <DeleteControl task_id=id on_delete /> })
                }}
            </div>
        </article>
    }
}

/// Shows `url` (a path on this site) in the address bar, as a new history
/// entry, without loading it: the page has already done what it says.
fn show_address(url: &str) {
    #[cfg(feature = "hydrate")]
    {
        let location = window().location();
        let current = format!("{}{}", location.pathname().unwrap_or_default(), location.search().unwrap_or_default());
        if current != url
            && let Ok(history) = window().history()
        {
            let _ = history.push_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(url));
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = url;
}

/// `path` as an absolute address on this site (in the browser).
fn absolute(path: &str) -> String {
    #[cfg(feature = "hydrate")]
    if let Some(origin) = web_sys::window().and_then(|w| w.location().origin().ok()) {
        return format!("{origin}{path}");
    }
    path.to_owned()
}

/// Puts `text` on the clipboard; false when the browser cannot or will not
/// (no clipboard outside a secure context, or permission refused).
async fn copy_to_clipboard(text: String) -> bool {
    #[cfg(feature = "hydrate")]
    {
        let Some(window) = web_sys::window() else { return false };
        let navigator = window.navigator();
        // `navigator.clipboard` is undefined on plain-http origins.
        let has_clipboard = js_sys::Reflect::get(&navigator, &"clipboard".into()).is_ok_and(|c| !c.is_undefined());
        if !has_clipboard {
            return false;
        }
        wasm_bindgen_futures::JsFuture::from(navigator.clipboard().write_text(&text)).await.is_ok()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = text;
        false
    }
}

/// "Share" on a completed card: the public link, "Copy link" and "Stop
/// sharing".
#[component]
fn ShareControls(task_id: String) -> impl IntoView {
    let id = StoredValue::new(task_id);
    let link = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    // Whether the last "Copy link" worked (None: not tried since shown).
    let copied = RwSignal::new(None::<bool>);
    let error = RwSignal::new(None::<String>);
    let share = move |_| {
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        spawn_local(async move {
            match share_image(id.get_value()).await {
                Ok(shared) => {
                    link.set(Some(absolute(&shared.url)));
                    error.set(None);
                }
                Err(e) => error.set(Some(e.message)),
            }
            busy.set(false);
        });
    };
    let unshare = move |_| {
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        spawn_local(async move {
            match unshare_image(id.get_value()).await {
                Ok(()) => {
                    link.set(None);
                    copied.set(None);
                    error.set(None);
                }
                Err(e) => error.set(Some(e.message)),
            }
            busy.set(false);
        });
    };
    let copy = move |_| {
        if let Some(url) = link.get_untracked() {
            spawn_local(async move { copied.set(Some(copy_to_clipboard(url).await)) });
        }
    };
    view! {
        <div class="share">
            {move || match link.get() {
                None => {
                    Either::Left(view! {
                        <button type="button" class="button" on:click=share disabled=move || busy.get()>
                            {move || if busy.get() { "Sharing…" } else { "Share" }}
                        </button>
                    })
                }
                Some(url) => {
                    Either::Right(view! {
                        <div class="share-link" role="group" aria-label="Share link">
                            <input type="url" readonly value=url aria-label="Public link" />
                            <button type="button" class="button" on:click=copy>
                                {move || if copied.get() == Some(true) { "Copied" } else { "Copy link" }}
                            </button>
                            <button type="button" class="button" on:click=unshare disabled=move || busy.get()>
                                "Stop sharing"
                            </button>
                        </div>
                    })
                }
            }}
            {move || {
                (copied.get() == Some(false))
                    .then(|| {
                        view! {
                            <p class="hint" role="status">
                                "This browser would not copy it: select the link and copy it."
                            </p>
                        }
                    })
            }}
            {move || error.get().map(|e| view! { <p class="form-error" role="alert">{e}</p> })}
        </div>
    }
}

/// "Upscale" on a completed card: which image (when it has several), by
/// how much, and the price. A form that posts without JavaScript too (the
/// server then leads to the history, where the new task shows).
#[component]
fn UpscaleControl(task: TaskView, offer: UpscaleOffer, started: Callback<TaskView>) -> impl IntoView {
    let id = StoredValue::new(task.id.clone());
    let prompt = StoredValue::new(task.prompt.clone());
    let model = StoredValue::new(offer.model.clone());
    let count = task.num_outputs.max(1);
    let index = RwSignal::new(0u8);
    let scale = RwSignal::new(offer.scales.first().copied().unwrap_or(2));
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let credits = offer.credits;
    let go = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        let (source, n, by) = (id.get_value(), index.get_untracked(), scale.get_untracked());
        spawn_local(async move {
            match upscale_image(source.clone(), n, by).await {
                Ok(generated) => {
                    error.set(None);
                    crate::balance::refresh();
                    let (prompt, model) = (prompt.get_value(), model.get_value());
                    started.run(started_view(generated.task_id, prompt, model, credits, source, Some(by)));
                }
                Err(e) => error.set(Some(e.message)),
            }
            busy.set(false);
        });
    };
    let short_id = task.id[..8.min(task.id.len())].to_owned();
    view! {
        <form class="upscale" method="post" action=UpscaleImage::url() on:submit=go>
            <input type="hidden" name="task_id" value=task.id.clone() />
            <ImageIndex count index label="Image to upscale" />
            <select
                name="scale"
                aria-label="Scale"
                on:change=move |ev| scale.set(event_target_value(&ev).parse().unwrap_or(2))
            >
                {offer
                    .scales
                    .iter()
                    .map(|s| view! { <option value=s.to_string()>{format!("{s}×")}</option> })
                    .collect_view()}
            </select>
            <button
                type="submit"
                class="button"
                disabled=move || busy.get()
                aria-describedby=format!("upscale-cost-{short_id}")
            >
                {move || if busy.get() { "Upscaling…" } else { "Upscale" }}
            </button>
            <span id=format!("upscale-cost-{short_id}") class="hint">
                {format!("{credits} credits")}
            </span>
            {move || error.get().map(|e| view! { <p class="form-error" role="alert">{e}</p> })}
        </form>
    }
}

/// The first view of a task made from a card's image, `source` (an
/// upscale by `scale`, or a variation), until polling fills in the rest.
fn started_view(
    task_id: String,
    prompt: String,
    model: String,
    credits: i64,
    source: String,
    scale: Option<u8>,
) -> TaskView {
    let mut view = TaskView::pending(task_id, prompt, model, credits, now_ms());
    view.input_url = Some(format!("/images/{}/input", view.id));
    view.source_task_id = Some(source);
    view.scale = scale;
    view
}

/// The `index` field of a form that starts from one of a card's `count`
/// images: a choice named `label` when there are several.
#[component]
fn ImageIndex(count: u8, index: RwSignal<u8>, label: &'static str) -> impl IntoView {
    if count > 1 {
        Either::Left(view! {
            <select
                name="index"
                aria-label=label
                on:change=move |ev| index.set(event_target_value(&ev).parse().unwrap_or(0))
            >
                {(0..count)
                    .map(|n| view! { <option value=n.to_string()>{format!("Image {}", n + 1)}</option> })
                    .collect_view()}
            </select>
        })
    } else {
        Either::Right(view! { <input type="hidden" name="index" value="0" /> })
    }
}

/// "Vary" on a completed card: a new image from this one, with its prompt,
/// on the model that starts from an image; which image (when it has
/// several) and the price. A form that posts without JavaScript too.
#[component]
fn VaryControl(task: TaskView, offer: VaryOffer, started: Callback<TaskView>) -> impl IntoView {
    let id = StoredValue::new(task.id.clone());
    let prompt = StoredValue::new(task.prompt.clone());
    let model = StoredValue::new(offer.model.clone());
    let count = task.num_outputs.max(1);
    let index = RwSignal::new(0u8);
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let credits = offer.credits;
    let go = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        let (source, n) = (id.get_value(), index.get_untracked());
        spawn_local(async move {
            match vary_image(source.clone(), n).await {
                Ok(generated) => {
                    error.set(None);
                    crate::balance::refresh();
                    let (prompt, model) = (prompt.get_value(), model.get_value());
                    started.run(started_view(generated.task_id, prompt, model, credits, source, None));
                }
                Err(e) => error.set(Some(e.message)),
            }
            busy.set(false);
        });
    };
    let short_id = task.id[..8.min(task.id.len())].to_owned();
    view! {
        <form class="vary" method="post" action=VaryImage::url() on:submit=go>
            <input type="hidden" name="task_id" value=task.id.clone() />
            <ImageIndex count index label="Image to vary" />
            <button
                type="submit"
                class="button"
                disabled=move || busy.get()
                aria-describedby=format!("vary-cost-{short_id}")
            >
                {move || if busy.get() { "Varying…" } else { "Vary" }}
            </button>
            <span id=format!("vary-cost-{short_id}") class="hint">
                {format!("{credits} credits")}
            </span>
            {move || error.get().map(|e| view! { <p class="form-error" role="alert">{e}</p> })}
        </form>
    }
}

/// "Delete" on a finished card, with a confirmation step.
#[component]
fn DeleteControl(task_id: String, on_delete: Callback<String>) -> impl IntoView {
    let id = StoredValue::new(task_id);
    let confirming = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let delete = move |_| {
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        spawn_local(async move {
            match delete_image(id.get_value()).await {
                Ok(()) => on_delete.run(id.get_value()),
                Err(e) => {
                    error.set(Some(e.message));
                    busy.set(false);
                }
            }
        });
    };
    view! {
        <div class="delete">
            {move || {
                if confirming.get() {
                    Either::Left(view! {
                        <div class="confirm" role="group" aria-label="Confirm deletion">
                            <span>"Delete this image for good?"</span>
                            <button type="button" class="button danger" on:click=delete disabled=move || busy.get()>
                                {move || if busy.get() { "Deleting…" } else { "Yes, delete" }}
                            </button>
                            <button type="button" class="button" on:click=move |_| confirming.set(false)>
                                "Keep"
                            </button>
                        </div>
                    })
                } else {
                    Either::Right(view! {
                        <button type="button" class="button" on:click=move |_| confirming.set(true)>
                            "Delete"
                        </button>
                    })
                }
            }}
            {move || error.get().map(|e| view! { <p class="form-error" role="alert">{e}</p> })}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_times_read_naturally() {
        assert_eq!(format_elapsed(0), "0 s");
        assert_eq!(format_elapsed(12_400), "12 s");
        assert_eq!(format_elapsed(185_000), "3 min 05 s");
        assert_eq!(format_elapsed(-5), "0 s");
    }

    #[test]
    fn places_in_the_queue_read_as_ordinals() {
        let read: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 112, 1_022, 12_345].map(ordinal).into();
        assert_eq!(
            read,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th", "112th",
                "1,022nd", "12,345th"
            ]
        );
    }
}
