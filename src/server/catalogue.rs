//! The model catalogue: which models people may pick, what each costs per
//! image, and which inputs each takes (aspect ratios, several images, a
//! seed, a negative prompt, fixed extra inputs). Read once at start-up from
//! `DARKROOM_MODELS_FILE` (TOML), `DARKROOM_MODELS` (a list, prompt only) or
//! the built-in catalogue of the simulator. A request's inputs are checked
//! against the chosen model here, before anything is charged.
//!
//! ```toml
//! [[models]]
//! id = "black-forest-labs/flux-schnell"   # owner/name[:version]
//! name = "FLUX.1 [schnell]"               # what the picker shows
//! credits = 10                            # per image (default: DARKROOM_GENERATION_COST)
//! aspect_ratios = ["1:1", "16:9", "9:16"] # the first is the default
//! max_outputs = 4                         # images per generation, 1–4
//! seed = true
//! negative_prompt = false
//! [models.fixed_inputs]                   # passed to the model as they are
//! output_format = "png"
//! ```

use serde_json::{Map, Value};

use crate::error::{AppError, Result};
use crate::model::{ImageInputOption, ModelOption};
use crate::provider::Api;
use crate::text::clip;

/// Most images one generation may ask for (and the most objects a task
/// stores).
pub const MAX_OUTPUTS: u8 = 4;
/// Longest negative prompt, in characters.
pub const MAX_NEGATIVE_CHARS: usize = 2000;
/// Longest display name, in characters.
const MAX_NAME_CHARS: usize = 100;
/// Inputs Darkroom sets itself; a catalogue's fixed inputs may not.
const MANAGED_INPUTS: &[&str] = &["prompt", "aspect_ratio", "num_outputs", "seed", "negative_prompt"];

/// The aspect ratios of the built-in catalogue.
const SIM_ASPECT_RATIOS: &[&str] = &["1:1", "16:9", "9:16", "4:3", "3:4"];

/// The simulator's models, offered when neither `DARKROOM_MODELS` nor
/// `DARKROOM_MODELS_FILE` is set: (id, name, takes a negative prompt,
/// takes an image to start from). SDXL takes one as Replicate's does
/// (`image`, with `prompt_strength`).
const SIM_MODELS: &[(&str, &str, bool, bool)] = &[
    ("black-forest-labs/flux-schnell", "FLUX.1 [schnell]", false, false),
    ("stability-ai/sdxl", "Stable Diffusion XL", true, true),
    ("bytedance/sdxl-lightning-4step", "SDXL Lightning", false, false),
];

/// The simulator's fal model, served by fal's simulator (`/sim/fal/`).
const SIM_FAL_MODEL: (&str, &str) = ("fal-ai/flux/dev", "FLUX.1 [dev] on fal");

/// The built-in catalogue's upscaler: Replicate's Real-ESRGAN takes
/// `image` and `scale`.
const SIM_UPSCALER: &str = "nightmareai/real-esrgan";

/// An image a model takes to start from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInput {
    /// The input's name as the model takes it (`image`).
    pub name: String,
    pub required: bool,
    /// The name of the input that says how far to move from the image
    /// (`prompt_strength`), when the model has one: left at its default.
    pub strength: Option<String>,
}

/// The model that makes a finished image larger ("Upscale"): an image
/// and a scale, priced per image it makes (whatever its size: an upscale
/// runs about as long as a generation, and a flat price reads plainly on
/// the button).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upscaler {
    pub id: String,
    pub name: String,
    pub credits: i64,
    /// The image input's name (`image`).
    pub image_input: String,
    /// The scale input's name (`scale`).
    pub scale_input: String,
    /// The scales offered; the first is the default.
    pub scales: Vec<u8>,
}

impl Upscaler {
    /// The built-in catalogue's, at `credits` an image.
    pub fn builtin(credits: i64) -> Self {
        Self {
            id: SIM_UPSCALER.to_owned(),
            name: "Real-ESRGAN".to_owned(),
            credits,
            image_input: "image".to_owned(),
            scale_input: "scale".to_owned(),
            scales: vec![2, 4],
        }
    }

    /// The provider's input for an upscale of the image at `url`.
    pub fn provider_input(&self, url: &str, scale: u8) -> Map<String, Value> {
        let mut input = Map::new();
        input.insert(self.image_input.clone(), url.into());
        input.insert(self.scale_input.clone(), scale.into());
        input
    }
}

/// A model offered to people: what the generator page is told about it
/// (its inputs and price, [`ModelOption`]), and what only the server needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// Id, name, credits per image and the inputs it takes. An empty
    /// `aspect_ratios` sends no aspect ratio; `max_outputs` 1 never sends
    /// `num_outputs`.
    pub offer: ModelOption,
    /// Inputs passed to the model as they are.
    pub fixed_inputs: Map<String, Value>,
    /// The image it takes to start from, if any.
    pub image_input: Option<ImageInput>,
    /// Whose API serves it (`provider = "fal"`; Replicate by default).
    pub api: Api,
}

impl std::ops::Deref for ModelSpec {
    type Target = ModelOption;

    fn deref(&self) -> &ModelOption {
        &self.offer
    }
}

impl std::ops::DerefMut for ModelSpec {
    fn deref_mut(&mut self) -> &mut ModelOption {
        &mut self.offer
    }
}

impl ModelSpec {
    /// A model that takes only a prompt and makes one image.
    pub fn prompt_only(id: &str, name: &str, credits: i64) -> Self {
        Self {
            offer: ModelOption {
                id: id.to_owned(),
                name: name.to_owned(),
                credits,
                aspect_ratios: Vec::new(),
                max_outputs: 1,
                seed: false,
                negative_prompt: false,
                image: ImageInputOption::None,
            },
            fixed_inputs: Map::new(),
            image_input: None,
            api: Api::Replicate,
        }
    }

    /// Takes an image to start from, as `input` names it.
    pub fn with_image(mut self, input: ImageInput) -> Self {
        self.offer.image = if input.required { ImageInputOption::Required } else { ImageInputOption::Optional };
        self.image_input = Some(input);
        self
    }

    /// What the generator page is told about the model.
    pub fn option(&self) -> ModelOption {
        self.offer.clone()
    }

    /// Checks a request's inputs against the model: each one given must be
    /// one the model takes, with a value it accepts. Absent (or blank)
    /// inputs take the model's defaults.
    pub fn check(&self, raw: &RawInputs<'_>) -> Result<Inputs> {
        let given = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let image = given(raw.image);
        match (&image, &self.image_input) {
            (Some(_), None) => return Err(AppError::invalid(format!("{} does not take an image", self.name))),
            (None, Some(input)) if input.required => {
                return Err(AppError::invalid(format!("{} needs an image to start from", self.name)));
            }
            _ => {}
        }
        let aspect_ratio = match given(raw.aspect_ratio) {
            None => self.aspect_ratios.first().cloned(),
            Some(_) if self.aspect_ratios.is_empty() => {
                return Err(AppError::invalid(format!("{} does not take an aspect ratio", self.name)));
            }
            Some(ratio) => match self.aspect_ratios.iter().find(|r| **r == ratio) {
                Some(r) => Some(r.clone()),
                None => {
                    return Err(AppError::invalid(format!(
                        "aspect ratio {} is not offered for {} (choose {})",
                        clip(&ratio, 20),
                        self.name,
                        self.aspect_ratios.join(", ")
                    )));
                }
            },
        };
        let num_outputs = match given(raw.num_outputs) {
            None => 1,
            Some(n) => match n.parse::<u8>() {
                Ok(n) if (1..=self.max_outputs).contains(&n) => n,
                _ if self.max_outputs == 1 => {
                    return Err(AppError::invalid(format!("{} makes one image per generation", self.name)));
                }
                _ => {
                    return Err(AppError::invalid(format!(
                        "number of images must be a whole number from 1 to {}",
                        self.max_outputs
                    )));
                }
            },
        };
        let seed = match given(raw.seed) {
            None => None,
            Some(_) if !self.seed => return Err(AppError::invalid(format!("{} does not take a seed", self.name))),
            Some(s) => Some(
                s.parse::<u32>()
                    .map_err(|_| AppError::invalid(format!("seed must be a whole number from 0 to {}", u32::MAX)))?,
            ),
        };
        let negative_prompt = match given(raw.negative_prompt) {
            None => None,
            Some(_) if !self.negative_prompt => {
                return Err(AppError::invalid(format!("{} does not take a negative prompt", self.name)));
            }
            Some(text) => {
                if text.chars().count() > MAX_NEGATIVE_CHARS {
                    return Err(AppError::invalid(format!(
                        "negative prompt is too long (at most {MAX_NEGATIVE_CHARS} characters)"
                    )));
                }
                if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')) {
                    return Err(AppError::invalid("negative prompt contains control characters"));
                }
                Some(text)
            }
        };
        Ok(Inputs { aspect_ratio, num_outputs, seed, negative_prompt, image })
    }

    /// What the cost of `images` images is.
    pub fn cost(&self, images: u8) -> i64 {
        self.credits * i64::from(images)
    }

    /// The provider's `input` for `prompt` and checked `inputs`: the fixed
    /// inputs, then the ones Darkroom sets; `image_url` where the model
    /// reads its image from (the provider's copy of the task's input).
    /// fal's models take `image_size` (a name, or a width and height) and
    /// `num_images` where Replicate's take `aspect_ratio` and `num_outputs`.
    pub fn provider_input(&self, prompt: &str, inputs: &Inputs, image_url: Option<&str>) -> Map<String, Value> {
        let mut input = self.fixed_inputs.clone();
        input.insert("prompt".into(), prompt.into());
        if let (Some(url), Some(image)) = (image_url, &self.image_input) {
            input.insert(image.name.clone(), url.into());
        }
        let fal = self.api == Api::Fal;
        if let Some(ratio) = &inputs.aspect_ratio {
            let (name, value) =
                if fal { ("image_size", fal_image_size(ratio)) } else { ("aspect_ratio", ratio.clone().into()) };
            input.insert(name.into(), value);
        }
        if self.max_outputs > 1 {
            input.insert(if fal { "num_images" } else { "num_outputs" }.into(), inputs.num_outputs.into());
        }
        if let Some(seed) = inputs.seed {
            input.insert("seed".into(), seed.into());
        }
        if let Some(negative) = &inputs.negative_prompt {
            input.insert("negative_prompt".into(), negative.clone().into());
        }
        input
    }
}

/// fal's `image_size` for an aspect ratio `W:H`: its name where fal has one,
/// otherwise a width and height with the long side 1024 (multiples of 8).
pub fn fal_image_size(ratio: &str) -> Value {
    let named = match ratio {
        "1:1" => "square_hd",
        "4:3" => "landscape_4_3",
        "16:9" => "landscape_16_9",
        "3:4" => "portrait_4_3",
        "9:16" => "portrait_16_9",
        _ => "",
    };
    if !named.is_empty() {
        return named.into();
    }
    let (w, h) = ratio
        .split_once(':')
        .and_then(|(w, h)| Some((w.parse::<f64>().ok()?, h.parse::<f64>().ok()?)))
        .unwrap_or((1.0, 1.0));
    let scale = 1024.0 / w.max(h);
    let side = |x: f64| ((x * scale / 8.0).round() as u32).max(1) * 8;
    serde_json::json!({ "width": side(w), "height": side(h) })
}

/// A request's model inputs as they arrived (form fields are text).
#[derive(Debug, Default, Clone, Copy)]
pub struct RawInputs<'a> {
    pub aspect_ratio: Option<&'a str>,
    pub num_outputs: Option<&'a str>,
    pub seed: Option<&'a str>,
    pub negative_prompt: Option<&'a str>,
    /// An upload's id (`/api/upload_image`).
    pub image: Option<&'a str>,
}

/// A request's model inputs, checked against its model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub aspect_ratio: Option<String>,
    pub num_outputs: u8,
    pub seed: Option<u32>,
    pub negative_prompt: Option<String>,
    /// The upload to start from (its owner is checked by the caller).
    pub image: Option<String>,
}

/// The simulator's catalogue: every model takes the aspect ratios, up to
/// four images and a seed; SDXL also a negative prompt.
pub fn builtin(credits: i64) -> Vec<ModelSpec> {
    SIM_MODELS
        .iter()
        .map(|&(id, name, negative_prompt, image)| {
            let mut model = ModelSpec::prompt_only(id, name, credits);
            model.aspect_ratios = SIM_ASPECT_RATIOS.iter().map(|r| (*r).to_owned()).collect();
            model.max_outputs = MAX_OUTPUTS;
            model.seed = true;
            model.negative_prompt = negative_prompt;
            if image {
                model = model.with_image(ImageInput {
                    name: "image".to_owned(),
                    required: false,
                    strength: Some("prompt_strength".to_owned()),
                });
            }
            model
        })
        .chain(std::iter::once({
            let (id, name) = SIM_FAL_MODEL;
            let mut model = ModelSpec::prompt_only(id, name, credits);
            model.api = Api::Fal;
            model.aspect_ratios = SIM_ASPECT_RATIOS.iter().map(|r| (*r).to_owned()).collect();
            model.max_outputs = MAX_OUTPUTS;
            model.seed = true;
            model
        }))
        .collect()
}

/// `owner/name[:version][=Display name]`, comma separated (`DARKROOM_MODELS`):
/// prompt-only models making one image each.
pub fn from_list(list: &str, credits: i64) -> std::result::Result<Vec<ModelSpec>, String> {
    let mut models = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, name) = match item.split_once('=') {
            Some((id, name)) => (id.trim(), name.trim().to_owned()),
            None => (item, default_name(item)),
        };
        check_id(id)?;
        models.push(ModelSpec::prompt_only(id, &name, credits));
    }
    if models.is_empty() {
        return Err("names no model".into());
    }
    Ok(models)
}

/// Reads a TOML catalogue (`DARKROOM_MODELS_FILE`); the error names the
/// file, the model and the field.
pub fn from_file(path: &std::path::Path, credits: i64) -> std::result::Result<Vec<ModelSpec>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    from_toml(&text, credits).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses a TOML catalogue; `credits` is the price of a model that names
/// none.
pub fn from_toml(text: &str, credits: i64) -> std::result::Result<Vec<ModelSpec>, String> {
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| format!("not valid TOML: {}", e.message()))?;
    if let Some(key) = doc.keys().find(|k| *k != "models" && *k != "upscaler") {
        return Err(format!("unknown top-level key `{key}` (a catalogue is a list of [[models]] and an [upscaler])"));
    }
    let entries = match doc.get("models") {
        Some(toml::Value::Array(a)) if !a.is_empty() => a,
        Some(toml::Value::Array(_)) | None => return Err("names no model (add a [[models]] table)".into()),
        Some(_) => return Err("`models` must be a list of [[models]] tables".into()),
    };
    let mut models: Vec<ModelSpec> = Vec::with_capacity(entries.len());
    for (n, entry) in entries.iter().enumerate() {
        let model = parse_model(n + 1, entry, credits)?;
        if models.iter().any(|m| m.id == model.id) {
            return Err(format!("model `{}` is listed twice", model.id));
        }
        models.push(model);
    }
    Ok(models)
}

/// A TOML catalogue's `[upscaler]`, if it has one: `id`, `name`,
/// `credits` (default `credits`), `scales` (default [2, 4]),
/// `image_input` (default `image`), `scale_input` (default `scale`).
pub fn upscaler_from_toml(text: &str, credits: i64) -> std::result::Result<Option<Upscaler>, String> {
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| format!("not valid TOML: {}", e.message()))?;
    let Some(entry) = doc.get("upscaler") else { return Ok(None) };
    let toml::Value::Table(table) = entry else { return Err("`upscaler` must be a table".into()) };
    let text = |key: &str, default: &str| match table.get(key) {
        None => Ok(default.to_owned()),
        Some(toml::Value::String(v)) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        Some(_) => Err(format!("upscaler: field `{key}` must be a string")),
    };
    let id = text("id", "")?;
    check_id(&id).map_err(|e| format!("upscaler: field `id`: {e}"))?;
    let image_input = text("image_input", "image")?;
    let scale_input = text("scale_input", "scale")?;
    if !is_input_name(&image_input) || !is_input_name(&scale_input) {
        return Err("upscaler: an input's name is letters, digits and _".into());
    }
    let credits = match table.get("credits") {
        None => credits,
        Some(toml::Value::Integer(c)) if (1..=1_000_000).contains(c) => *c,
        Some(_) => return Err("upscaler: field `credits` must be a whole number from 1 to 1000000".into()),
    };
    let scales = match table.get("scales") {
        None => vec![2, 4],
        Some(toml::Value::Array(list)) if !list.is_empty() && list.len() <= 4 => list
            .iter()
            .map(|v| v.as_integer().filter(|n| (2..=8).contains(n)).map(|n| n as u8))
            .collect::<Option<Vec<u8>>>()
            .ok_or("upscaler: field `scales` must list whole numbers from 2 to 8")?,
        Some(_) => return Err("upscaler: field `scales` must list one to four scales".into()),
    };
    if let Some(key) =
        table.keys().find(|k| !["id", "name", "credits", "scales", "image_input", "scale_input"].contains(&k.as_str()))
    {
        return Err(format!("upscaler: unknown field `{key}`"));
    }
    let name = text("name", &default_name(&id))?;
    Ok(Some(Upscaler { id, name, credits, image_input, scale_input, scales }))
}

/// One `[[models]]` table (the `n`th).
fn parse_model(n: usize, entry: &toml::Value, credits: i64) -> std::result::Result<ModelSpec, String> {
    let toml::Value::Table(table) = entry else { return Err(format!("model #{n} is not a table")) };
    let id = match table.get("id") {
        Some(toml::Value::String(id)) => id.trim().to_owned(),
        Some(_) => return Err(format!("model #{n}: field `id`: must be a string like owner/name")),
        None => return Err(format!("model #{n}: field `id` is missing")),
    };
    let fail = |field: &str, problem: &str| format!("model `{id}`: field `{field}`: {problem}");
    let api = match table.get("provider") {
        None => Api::Replicate,
        Some(toml::Value::String(p)) if p == "replicate" => Api::Replicate,
        Some(toml::Value::String(p)) if p == "fal" => Api::Fal,
        Some(_) => return Err(fail("provider", "must be \"replicate\" or \"fal\"")),
    };
    match api {
        Api::Replicate => check_id(&id),
        Api::Fal => crate::provider::fal::Endpoint::parse(&id).map(drop),
    }
    .map_err(|e| format!("model #{n}: field `id`: {e}"))?;
    let mut model = ModelSpec::prompt_only(&id, &default_name(&id), credits);
    model.api = api;
    for (key, value) in table {
        match (key.as_str(), value) {
            ("id" | "provider", _) => {}
            ("name", toml::Value::String(name)) => {
                let name = name.trim();
                if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
                    return Err(fail(key, &format!("must be 1 to {MAX_NAME_CHARS} characters")));
                }
                model.name = name.to_owned();
            }
            ("credits", toml::Value::Integer(c)) if (1..=1_000_000).contains(c) => model.credits = *c,
            ("credits", _) => return Err(fail(key, "must be a whole number from 1 to 1000000")),
            ("aspect_ratios", toml::Value::Array(list)) => {
                model.aspect_ratios = aspect_ratios(list).map_err(|e| fail(key, &e))?;
            }
            ("max_outputs", toml::Value::Integer(m)) if (1..=i64::from(MAX_OUTPUTS)).contains(m) => {
                model.max_outputs = *m as u8;
            }
            ("max_outputs", _) => return Err(fail(key, &format!("must be a whole number from 1 to {MAX_OUTPUTS}"))),
            ("seed", toml::Value::Boolean(b)) => model.seed = *b,
            ("image_input", toml::Value::String(name)) if is_input_name(name) => {
                let required = table.get("image_required").and_then(toml::Value::as_bool).unwrap_or(false);
                let strength = table.get("strength_input").and_then(toml::Value::as_str).map(str::to_owned);
                model = model.with_image(ImageInput { name: name.clone(), required, strength });
            }
            ("image_input", _) => return Err(fail(key, "must be the name of the model's image input, like \"image\"")),
            ("image_required", toml::Value::Boolean(_)) if table.contains_key("image_input") => {}
            ("strength_input", toml::Value::String(name))
                if table.contains_key("image_input") && is_input_name(name) => {}
            ("image_required" | "strength_input", _) => {
                return Err(fail(key, "needs `image_input`, and must be true/false or an input's name"));
            }
            ("negative_prompt", toml::Value::Boolean(b)) => model.negative_prompt = *b,
            ("fixed_inputs", toml::Value::Table(inputs)) => {
                model.fixed_inputs = fixed_inputs(inputs).map_err(|(k, e)| fail(&format!("fixed_inputs.{k}"), &e))?;
            }
            ("name" | "aspect_ratios" | "seed" | "negative_prompt" | "fixed_inputs", other) => {
                let wanted = match key.as_str() {
                    "name" => "a string",
                    "aspect_ratios" => "a list of strings like \"16:9\"",
                    "fixed_inputs" => "a table of inputs",
                    _ => "true or false",
                };
                return Err(fail(key, &format!("must be {wanted}, not {}", other.type_str())));
            }
            _ => {
                return Err(fail(
                    key,
                    "unknown (known: id, provider, name, credits, aspect_ratios, max_outputs, seed, \
                     negative_prompt, fixed_inputs, image_input, image_required, strength_input)",
                ));
            }
        }
    }
    if model.api == Api::Fal {
        if model.image_input.is_some() {
            return Err(fail("image_input", "is not supported for fal models yet"));
        }
        if let Some(key) = ["image_size", "num_images"].into_iter().find(|k| model.fixed_inputs.contains_key(*k)) {
            return Err(fail(&format!("fixed_inputs.{key}"), "is set by Darkroom for fal models"));
        }
    }
    if let Some(image) = &model.image_input
        && model.fixed_inputs.contains_key(&image.name)
    {
        return Err(fail(&format!("fixed_inputs.{}", image.name), "is the image a person gives (image_input)"));
    }
    Ok(model)
}

/// A non-empty list of distinct `W:H` ratios of whole numbers 1–100.
fn aspect_ratios(list: &[toml::Value]) -> std::result::Result<Vec<String>, String> {
    if list.is_empty() {
        return Err("must list at least one ratio (leave it out for a model that takes none)".into());
    }
    let mut ratios: Vec<String> = Vec::with_capacity(list.len());
    for value in list {
        let toml::Value::String(ratio) = value else {
            return Err(format!("must be strings like \"16:9\", not {}", value.type_str()));
        };
        let part = |p: &str| {
            !p.starts_with('0')
                && p.chars().all(|c| c.is_ascii_digit())
                && p.parse::<u8>().is_ok_and(|n| (1..=100).contains(&n))
        };
        if !ratio.split_once(':').is_some_and(|(w, h)| part(w) && part(h)) {
            return Err(format!("`{ratio}` is not a ratio like 16:9"));
        }
        if ratios.contains(ratio) {
            return Err(format!("`{ratio}` is listed twice"));
        }
        ratios.push(ratio.clone());
    }
    Ok(ratios)
}

/// Fixed inputs as JSON; none may be an input Darkroom sets itself.
fn fixed_inputs(table: &toml::Table) -> std::result::Result<Map<String, Value>, (String, String)> {
    let mut inputs = Map::new();
    for (key, value) in table {
        if MANAGED_INPUTS.contains(&key.as_str()) {
            return Err((key.clone(), "is set by Darkroom from each request; it cannot be fixed".into()));
        }
        if contains_datetime(value) {
            return Err((key.clone(), "dates and times cannot be passed to a model".into()));
        }
        let json = serde_json::to_value(value).map_err(|e| (key.clone(), e.to_string()))?;
        inputs.insert(key.clone(), json);
    }
    Ok(inputs)
}

fn contains_datetime(value: &toml::Value) -> bool {
    match value {
        toml::Value::Datetime(_) => true,
        toml::Value::Array(a) => a.iter().any(contains_datetime),
        toml::Value::Table(t) => t.values().any(contains_datetime),
        _ => false,
    }
}

/// A model input's name: letters, digits and `_`, 1–64 characters.
fn is_input_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `owner/name`, optionally `:version`, of letters, digits, `-`, `_`, `.`.
fn check_id(id: &str) -> std::result::Result<(), String> {
    let path = id.split(':').next().unwrap_or(id);
    let valid = path.split('/').count() == 2
        && path.split('/').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
    if valid { Ok(()) } else { Err(format!("`{id}` is not owner/name")) }
}

/// `name` of `owner/name:version`.
fn default_name(id: &str) -> String {
    id.split(':').next().unwrap_or(id).rsplit('/').next().unwrap_or(id).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [[models]]
        id = "black-forest-labs/flux-schnell"
        name = "FLUX.1 [schnell]"
        credits = 3
        aspect_ratios = ["16:9", "1:1"]
        max_outputs = 4
        seed = true
        [models.fixed_inputs]
        output_format = "png"
        go_fast = true

        [[models]]
        id = "stability-ai/sdxl:39ed52f2a78e"
        negative_prompt = true
    "#;

    fn flux() -> ModelSpec {
        from_toml(GOOD, 10).unwrap().remove(0)
    }

    fn raw<'a>(ar: &'a str, n: &'a str, seed: &'a str, neg: &'a str) -> RawInputs<'a> {
        RawInputs {
            aspect_ratio: Some(ar),
            num_outputs: Some(n),
            seed: Some(seed),
            negative_prompt: Some(neg),
            image: None,
        }
    }

    #[test]
    fn a_good_file_gives_each_model_its_inputs_and_defaults() {
        let models = from_toml(GOOD, 10).unwrap();
        assert_eq!(models.len(), 2);
        let flux = &models[0];
        assert_eq!(flux.name, "FLUX.1 [schnell]");
        assert_eq!(flux.credits, 3);
        assert_eq!(flux.aspect_ratios, ["16:9", "1:1"]);
        assert_eq!((flux.max_outputs, flux.seed, flux.negative_prompt), (4, true, false));
        assert_eq!(flux.fixed_inputs["output_format"], "png");
        assert_eq!(flux.fixed_inputs["go_fast"], true);
        let sdxl = &models[1];
        assert_eq!(sdxl.name, "sdxl", "the name defaults to the model's");
        assert_eq!(sdxl.credits, 10, "the price defaults to DARKROOM_GENERATION_COST");
        assert!(sdxl.aspect_ratios.is_empty());
        assert_eq!((sdxl.max_outputs, sdxl.seed, sdxl.negative_prompt), (1, false, true));
    }

    #[test]
    fn each_bad_field_is_named_with_its_model() {
        let model = |fields: &str| format!("[[models]]\nid = \"a/b\"\n{fields}\n");
        let cases = [
            (model("credits = 0"), "model `a/b`: field `credits`"),
            (model("credits = \"ten\""), "field `credits`"),
            (model("max_outputs = 5"), "field `max_outputs`: must be a whole number from 1 to 4"),
            (model("max_outputs = 0"), "field `max_outputs`"),
            (model("aspect_ratios = []"), "field `aspect_ratios`: must list at least one"),
            (model("aspect_ratios = [\"wide\"]"), "field `aspect_ratios`: `wide` is not a ratio"),
            (model("aspect_ratios = [\"0:1\"]"), "`0:1` is not a ratio"),
            (model("aspect_ratios = [\"1:1\", \"1:1\"]"), "`1:1` is listed twice"),
            (model("aspect_ratios = \"1:1\""), "field `aspect_ratios`: must be a list"),
            (model("seed = \"yes\""), "field `seed`: must be true or false"),
            (model("negative_prompt = 1"), "field `negative_prompt`"),
            (model("name = \"\""), "field `name`"),
            (model("colour = \"red\""), "field `colour`: unknown"),
            (model("[models.fixed_inputs]\nprompt = \"x\""), "field `fixed_inputs.prompt`: is set by Darkroom"),
            (model("[models.fixed_inputs]\nat = 1979-05-27"), "field `fixed_inputs.at`"),
            (model("image_input = \"a b\""), "field `image_input`"),
            (model("image_required = true"), "field `image_required`: needs `image_input`"),
            (
                model("image_input = \"image\"\n[models.fixed_inputs]\nimage = \"x\""),
                "fixed_inputs.image`: is the image",
            ),
            ("[[models]]\nname = \"x\"".to_owned(), "model #1: field `id` is missing"),
            ("[[models]]\nid = \"nope\"".to_owned(), "model #1: field `id`: `nope` is not owner/name"),
            ("[[models]]\nid = \"a/b\"\n[[models]]\nid = \"a/b\"".to_owned(), "model `a/b` is listed twice"),
            ("models = []".to_owned(), "names no model"),
            ("".to_owned(), "names no model"),
            ("title = \"x\"".to_owned(), "unknown top-level key `title`"),
            ("[[models]\n".to_owned(), "not valid TOML"),
        ];
        for (text, expected) in cases {
            let e = from_toml(&text, 10).expect_err(&text);
            assert!(e.contains(expected), "{text:?}: {e:?} lacks {expected:?}");
        }
    }

    #[test]
    fn the_example_catalogue_in_deploy_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/models.example.toml");
        let models = from_file(&path, 10).unwrap();
        assert_eq!(models[0].id, "black-forest-labs/flux-schnell");
        assert!(models.iter().all(|m| m.max_outputs == MAX_OUTPUTS));
    }

    #[test]
    fn a_file_that_cannot_be_read_is_named() {
        let e = from_file(std::path::Path::new("/nonexistent/models.toml"), 10).unwrap_err();
        assert!(e.contains("/nonexistent/models.toml"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("models.toml");
        std::fs::write(&path, "[[models]]\nid = \"a/b\"\nmax_outputs = 9\n").unwrap();
        let e = from_file(&path, 10).unwrap_err();
        assert!(e.starts_with(&format!("{}: model `a/b`: field `max_outputs`", path.display())), "{e}");
    }

    #[test]
    fn a_list_gives_prompt_only_models() {
        let models = from_list("a/b=Model B, c/d:abc123", 7).unwrap();
        assert_eq!(models[0], ModelSpec::prompt_only("a/b", "Model B", 7));
        assert_eq!(models[1], ModelSpec::prompt_only("c/d:abc123", "d", 7));
        assert!(from_list("not-a-model", 7).is_err());
        assert!(from_list(" , ", 7).is_err());
    }

    #[test]
    fn the_builtin_catalogue_offers_every_input() {
        let models = builtin(10);
        assert_eq!(models[0].id, "black-forest-labs/flux-schnell");
        assert!(models.iter().all(|m| m.aspect_ratios == SIM_ASPECT_RATIOS && m.max_outputs == 4 && m.seed));
        assert_eq!(models.iter().filter(|m| m.negative_prompt).count(), 1);
        let fal: Vec<&str> = models.iter().filter(|m| m.api == Api::Fal).map(|m| m.id.as_str()).collect();
        assert_eq!(fal, ["fal-ai/flux/dev"], "one model served by fal's simulator");
    }

    #[test]
    fn a_fal_model_takes_fals_endpoint_ids_and_input_names() {
        let text = "[[models]]\nid = \"fal-ai/flux/dev\"\nprovider = \"fal\"\naspect_ratios = [\"16:9\", \"2:1\"]\n\
                    max_outputs = 4\nseed = true\n";
        let model = &from_toml(text, 10).unwrap()[0];
        assert_eq!((model.id.as_str(), model.api), ("fal-ai/flux/dev", Api::Fal));
        let inputs = Inputs {
            aspect_ratio: Some("16:9".into()),
            num_outputs: 2,
            seed: Some(5),
            negative_prompt: None,
            image: None,
        };
        let input = model.provider_input("a fox", &inputs, None);
        assert_eq!(input["image_size"], "landscape_16_9");
        assert_eq!(input["num_images"], 2);
        assert_eq!(input["seed"], 5);
        assert!(!input.contains_key("aspect_ratio") && !input.contains_key("num_outputs"));
        let odd = Inputs { aspect_ratio: Some("2:1".into()), ..inputs };
        assert_eq!(
            model.provider_input("a fox", &odd, None)["image_size"],
            serde_json::json!({"width": 1024, "height": 512})
        );
        // Replicate's by default, with Replicate's ids and names.
        let replicate = &from_toml("[[models]]\nid = \"a/b\"\n", 10).unwrap()[0];
        assert_eq!(replicate.api, Api::Replicate);
        for (fields, wanted) in [
            ("id = \"fal-ai/flux/dev\"", "owner/name"),
            ("id = \"a/b\"\nprovider = \"openai\"", "\"replicate\" or \"fal\""),
            ("id = \"a/../b\"\nprovider = \"fal\"", "fal endpoint id"),
            ("id = \"a/b\"\nprovider = \"fal\"\nimage_input = \"image\"", "not supported for fal"),
            ("id = \"a/b\"\nprovider = \"fal\"\n[models.fixed_inputs]\nnum_images = 4", "set by Darkroom"),
        ] {
            let e = from_toml(&format!("[[models]]\n{fields}\n"), 10).unwrap_err();
            assert!(e.contains(wanted), "{fields}: {e}");
        }
    }

    #[test]
    fn inputs_left_out_take_the_models_defaults() {
        let inputs = flux().check(&RawInputs::default()).unwrap();
        assert_eq!(
            inputs,
            Inputs {
                aspect_ratio: Some("16:9".into()),
                num_outputs: 1,
                seed: None,
                negative_prompt: None,
                image: None
            }
        );
        // Blank form fields are left out too.
        assert_eq!(flux().check(&raw(" ", "", "", "")).unwrap(), inputs);
    }

    #[test]
    fn good_inputs_pass_and_shape_the_provider_input() {
        let model = flux();
        let inputs = model.check(&raw("1:1", "3", "4294967295", "")).unwrap();
        assert_eq!(inputs.num_outputs, 3);
        assert_eq!(inputs.seed, Some(u32::MAX));
        assert_eq!(model.cost(inputs.num_outputs), 9);
        let input = Value::Object(model.provider_input("a fox", &inputs, None));
        assert_eq!(
            input,
            serde_json::json!({
                "prompt": "a fox", "aspect_ratio": "1:1", "num_outputs": 3, "seed": 4294967295u32,
                "output_format": "png", "go_fast": true,
            })
        );
        // A prompt-only model is sent the prompt alone.
        let plain = ModelSpec::prompt_only("a/b", "B", 10);
        let inputs = plain.check(&RawInputs::default()).unwrap();
        assert_eq!(
            Value::Object(plain.provider_input("a fox", &inputs, None)),
            serde_json::json!({ "prompt": "a fox" })
        );
    }

    #[test]
    fn a_model_that_takes_an_image_is_sent_its_url_under_the_models_name() {
        let text = "[[models]]\nid = \"a/img\"\nimage_input = \"init_image\"\nimage_required = true\n\
                    strength_input = \"prompt_strength\"\n";
        let model = from_toml(text, 10).unwrap().remove(0);
        assert_eq!(model.option().image, ImageInputOption::Required);
        let with = RawInputs { image: Some("u1"), ..RawInputs::default() };
        let inputs = model.check(&with).unwrap();
        assert_eq!(inputs.image.as_deref(), Some("u1"));
        let input = Value::Object(model.provider_input("a fox", &inputs, Some("https://api.example/v1/files/f1")));
        assert_eq!(input, serde_json::json!({ "prompt": "a fox", "init_image": "https://api.example/v1/files/f1" }));
        let e = model.check(&RawInputs::default()).unwrap_err();
        assert!(e.message.contains("needs an image to start from"), "{}", e.message);
        // A model without an image input refuses one.
        let e = flux().check(&with).unwrap_err();
        assert!(e.message.contains("does not take an image"), "{}", e.message);
        // The built-in SDXL takes one, optionally; the others none.
        let builtin = builtin(10);
        let takes: Vec<_> = builtin.iter().filter(|m| m.offer.image != ImageInputOption::None).map(|m| &m.id).collect();
        assert_eq!(takes, ["stability-ai/sdxl"]);
        assert_eq!(builtin[1].offer.image, ImageInputOption::Optional);
    }

    #[test]
    fn an_upscaler_comes_from_the_catalogue_with_its_scales_and_price() {
        let text = "[[models]]\nid = \"a/b\"\n[upscaler]\nid = \"x/esrgan\"\ncredits = 25\nscales = [4, 2]\n";
        assert_eq!(from_toml(text, 10).unwrap().len(), 1, "an [upscaler] is not a model");
        let upscaler = upscaler_from_toml(text, 10).unwrap().unwrap();
        assert_eq!(
            (upscaler.id.as_str(), upscaler.credits, upscaler.scales.as_slice()),
            ("x/esrgan", 25, &[4u8, 2][..])
        );
        assert_eq!(
            Value::Object(upscaler.provider_input("https://f/1", 4)),
            serde_json::json!({ "image": "https://f/1", "scale": 4 })
        );
        assert_eq!(upscaler_from_toml("[[models]]\nid = \"a/b\"\n", 10).unwrap(), None);
        for (bad, expected) in [
            ("[upscaler]\nid = \"x/y\"\nscales = [9]", "scales"),
            ("[upscaler]\nid = \"x/y\"\nscales = []", "scales"),
            ("[upscaler]\nid = \"x/y\"\ncredits = 0", "credits"),
            ("[upscaler]\nid = \"nope\"", "`id`"),
            ("[upscaler]\nid = \"x/y\"\ncolour = 1", "unknown field `colour`"),
            ("[upscaler]\nid = \"x/y\"\nimage_input = \"a b\"", "input's name"),
        ] {
            let e = upscaler_from_toml(bad, 10).unwrap_err();
            assert!(e.contains(expected), "{bad:?}: {e}");
        }
    }

    #[test]
    fn each_refused_input_says_why() {
        let model = flux();
        let cases = [
            (raw("7:3", "", "", ""), "aspect ratio 7:3 is not offered for FLUX.1 [schnell] (choose 16:9, 1:1)"),
            (raw("", "0", "", ""), "number of images must be a whole number from 1 to 4"),
            (raw("", "5", "", ""), "number of images must be a whole number from 1 to 4"),
            (raw("", "2.5", "", ""), "number of images"),
            (raw("", "-1", "", ""), "number of images"),
            (raw("", "", "-1", ""), "seed must be a whole number from 0 to 4294967295"),
            (raw("", "", "4294967296", ""), "seed must be a whole number"),
            (raw("", "", "1e3", ""), "seed must be a whole number"),
            (raw("", "", "", "blurry"), "FLUX.1 [schnell] does not take a negative prompt"),
        ];
        for (inputs, expected) in cases {
            let e = model.check(&inputs).expect_err(expected);
            assert_eq!(e.status(), 400);
            assert!(e.message.contains(expected), "{:?} lacks {expected:?}", e.message);
        }
        let plain = ModelSpec::prompt_only("a/b", "B", 10);
        for (inputs, expected) in [
            (raw("1:1", "", "", ""), "B does not take an aspect ratio"),
            (raw("", "2", "", ""), "B makes one image per generation"),
            (raw("", "", "1", ""), "B does not take a seed"),
        ] {
            assert!(plain.check(&inputs).unwrap_err().message.contains(expected), "{expected}");
        }
        let mut sdxl = plain;
        sdxl.negative_prompt = true;
        assert!(sdxl.check(&raw("", "", "", &"x".repeat(2001))).unwrap_err().message.contains("too long"));
        assert!(sdxl.check(&raw("", "", "", "a\u{0}b")).is_err());
        assert_eq!(sdxl.check(&raw("", "", "", " blurry ")).unwrap().negative_prompt.as_deref(), Some("blurry"));
    }
}
