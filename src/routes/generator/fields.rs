//! The generator form's fields: what they hold ([`Fields`], filled from the
//! address or from a task), and the inputs a model takes ("Model", "Aspect
//! ratio", "Number of images", and under "Advanced" a "Seed" and a
//! "Negative prompt").

use leptos::prelude::*;

use crate::model::{ModelOption, TaskView};

/// The fields the address can fill in (`/?prompt=…`, where "Use this
/// prompt" and "Reuse seed" lead).
pub const PREFILL: [&str; 6] = ["prompt", "model", "aspect_ratio", "num_outputs", "seed", "negative_prompt"];

/// The generator form's fields, filled from the address (`/?prompt=…`, as
/// "Use this prompt" and "Reuse seed" link to it) and kept as the person
/// edits them.
#[derive(Clone, Copy)]
pub struct Fields {
    pub prompt: RwSignal<String>,
    pub model: RwSignal<String>,
    pub aspect_ratio: RwSignal<String>,
    pub num_outputs: RwSignal<u8>,
    pub seed: RwSignal<String>,
    pub negative_prompt: RwSignal<String>,
    /// Whether "Advanced" is open: opened by a filled-in seed or negative
    /// prompt from the address, then as the person toggles it (never
    /// closed under their typing).
    pub advanced_open: RwSignal<bool>,
}

impl Fields {
    pub fn new() -> Self {
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
    pub fn fill(self, query: &[(String, String)], models: &[ModelOption]) {
        self.fill_with(
            |name| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default(),
            models,
        );
    }

    /// Fills the fields with a task's prompt, model and inputs, and its
    /// seed too when `with_seed` (what its "Reuse seed" link says).
    pub fn fill_from(self, task: &TaskView, with_seed: bool, models: &[ModelOption]) {
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

/// "Aspect ratio" and "Number of images" for a model that takes them.
#[component]
pub fn ModelInputs(model: ModelOption, fields: Fields) -> impl IntoView {
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
pub fn Choice(
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
pub fn Advanced(model: ModelOption, fields: Fields) -> impl IntoView {
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
