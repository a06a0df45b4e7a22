//! The model inputs the simulator takes beside `prompt`, checked the way a
//! Cog model's schema checks them: `aspect_ratio`, `num_outputs`, `seed`,
//! `negative_prompt` and `output_format`; and images in: `image` (a file
//! of the simulator's Files API or a `data:image/…;base64,…` URL),
//! `prompt_strength` (image-to-image) and `scale` (with `image`, an
//! upscale). Unknown keys are ignored, as before; a `null` is the same as
//! leaving the key out.

use base64::{
    Engine, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use serde_json::{Map, Value};

use super::render::{self, Grid, Guide};

/// The aspect ratios offered, as `(name, width, height)`. An id stores a
/// ratio as its position here plus one (0: none), so only append.
const ASPECT_RATIOS: [(&str, u32, u32); 11] = [
    ("1:1", 1, 1),
    ("16:9", 16, 9),
    ("21:9", 21, 9),
    ("3:2", 3, 2),
    ("2:3", 2, 3),
    ("4:5", 4, 5),
    ("5:4", 5, 4),
    ("3:4", 3, 4),
    ("4:3", 4, 3),
    ("9:16", 9, 16),
    ("9:21", 9, 21),
];
/// The output formats accepted (every output is served as a PNG anyway).
/// Stored like aspect ratios: position plus one, 0 for none.
const OUTPUT_FORMATS: [&str; 3] = ["webp", "jpg", "png"];
/// Most images one prediction makes.
pub(super) const MAX_OUTPUTS: u8 = 4;
/// Longest negative prompt, in characters.
pub(super) const MAX_NEGATIVE_CHARS: usize = 2000;
/// The long side of an image that has an aspect ratio or an input image.
const LONG_SIDE: u32 = 768;
/// `prompt_strength`'s bounds, and its value when not given.
pub(super) const STRENGTH_RANGE: (f64, f64) = (0.0, 1.0);
const DEFAULT_STRENGTH: f64 = 0.8;
/// `scale`'s bounds (Real-ESRGAN's input; its default is 4).
pub(super) const SCALE_RANGE: (f64, f64) = (1.0, 10.0);
/// Longest side of an upscale's output.
pub(super) const MAX_UPSCALED_SIDE: u32 = 4096;
/// Largest data URL taken as `image`, decoded.
pub(super) const MAX_DATA_URL_BYTES: usize = 1024 * 1024;
/// Longest side of an input image.
pub(super) const MAX_IMAGE_SIDE: u32 = 8192;
/// Longest file id (the simulator mints 24 characters).
const MAX_FILE_ID_LEN: usize = 64;
/// Base64 as data URLs carry it, padded or not.
const DATA_URL_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An aspect ratio from [`ASPECT_RATIOS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AspectRatio(u8);

impl AspectRatio {
    fn parse(name: &str) -> Option<Self> {
        let at = ASPECT_RATIOS.iter().position(|(n, _, _)| *n == name)?;
        u8::try_from(at).ok().map(Self)
    }

    /// The ratio stored as `code` in an id (1-based); `None` for anything else.
    pub(super) fn from_code(code: u8) -> Option<Self> {
        let at = code.checked_sub(1)?;
        (usize::from(at) < ASPECT_RATIOS.len()).then_some(Self(at))
    }

    /// How an id stores the ratio: 1 and up (0 means none).
    pub(super) fn code(self) -> u8 {
        self.0 + 1
    }

    fn entry(self) -> (&'static str, u32, u32) {
        ASPECT_RATIOS[usize::from(self.0)]
    }

    fn name(self) -> &'static str {
        self.entry().0
    }

    /// Width and height with a long side of `long`, the short side rounded
    /// to the nearest pixel.
    fn size(self, long: u32) -> (u32, u32) {
        let (_, w, h) = self.entry();
        let scale = |short: u32, of: u32| (long * short + of / 2) / of;
        if w >= h { (long, scale(h, w)) } else { (scale(w, h), long) }
    }
}

/// An output format from [`OUTPUT_FORMATS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OutputFormat(u8);

impl OutputFormat {
    fn parse(name: &str) -> Option<Self> {
        let at = OUTPUT_FORMATS.iter().position(|n| *n == name)?;
        u8::try_from(at).ok().map(Self)
    }

    /// The format stored as `code` in an id (1-based); `None` for anything else.
    pub(super) fn from_code(code: u8) -> Option<Self> {
        let at = code.checked_sub(1)?;
        (usize::from(at) < OUTPUT_FORMATS.len()).then_some(Self(at))
    }

    /// How an id stores the format: 1 and up (0 means none).
    pub(super) fn code(self) -> u8 {
        self.0 + 1
    }

    fn name(self) -> &'static str {
        OUTPUT_FORMATS[usize::from(self.0)]
    }
}

/// The seed a prediction runs with, and whether the create asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seed {
    /// `input.seed`, echoed back in `input`.
    Given(u32),
    /// Picked by the simulator (at random, or from the prompt for an id
    /// from before inputs existed); only the logs tell it.
    Picked(u32),
}

impl Seed {
    /// The seed's value, whoever chose it.
    pub(super) fn value(self) -> u32 {
        match self {
            Self::Given(seed) | Self::Picked(seed) => seed,
        }
    }
}

/// A number input (`prompt_strength`, `scale`) exactly as given: finite,
/// and compared by its bits, as an id carries it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Number(f64);

impl Number {
    /// `value` when it is finite and within `low..=high`.
    pub(super) fn within(value: f64, (low, high): (f64, f64)) -> Option<Self> {
        (value.is_finite() && (low..=high).contains(&value)).then_some(Self(value))
    }

    pub(super) fn get(self) -> f64 {
        self.0
    }

    /// As JSON: an integer when it is one (`"scale": 4`), else a float.
    fn json(self) -> Value {
        if self.0.fract() == 0.0 && self.0.abs() < 1e15 { Value::from(self.0 as i64) } else { Value::from(self.0) }
    }
}

impl PartialEq for Number {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Number {}

/// An input image, as the create read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Image {
    /// The file of the simulator's store it is (a data URL is stored as one).
    pub file: String,
    /// Its size, 1 to [`MAX_IMAGE_SIDE`] a side.
    pub width: u32,
    pub height: u32,
    /// Its average colours, which an image-to-image output follows; `None`
    /// for an upscale, whose output is made from the file itself.
    pub grid: Option<Grid>,
}

/// What an upscale makes: its input resized by `scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Upscale<'a> {
    pub file: &'a str,
    pub from: (u32, u32),
    pub to: (u32, u32),
    pub scale: f64,
}

/// What `input.image` names, before it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    /// A file of the Files API, by id.
    File(String),
    /// A data URL's bytes and type.
    Data { content_type: String, bytes: Vec<u8> },
}

/// A prediction's model inputs beside the prompt. `None` means the create
/// did not give that input (and the model's default applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Inputs {
    pub aspect_ratio: Option<AspectRatio>,
    /// 1 to [`MAX_OUTPUTS`].
    pub num_outputs: Option<u8>,
    pub seed: Seed,
    /// At most [`MAX_NEGATIVE_CHARS`] characters. Carried and echoed; the
    /// image depends on the seed, prompt and index only.
    pub negative_prompt: Option<String>,
    pub output_format: Option<OutputFormat>,
    /// How far an image-to-image output moves away from its input, 0 to 1.
    pub prompt_strength: Option<Number>,
    /// 1 to 10: with `image`, the prediction upscales it by this much.
    pub scale: Option<Number>,
    /// The input image. [`Inputs::parse`] leaves it out: reading it needs
    /// the file store (see `images.rs`).
    pub image: Option<Image>,
}

/// An input that cannot be used: the field (`input.seed`), the kind of
/// problem and a description, for a 422.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Invalid {
    pub field: &'static str,
    pub kind: &'static str,
    pub description: String,
}

impl Inputs {
    /// What an id from before inputs existed (format 1) means: one square
    /// image, seeded from the prompt as the logs always said.
    pub(super) fn from_prompt(prompt: &str) -> Self {
        Self {
            aspect_ratio: None,
            num_outputs: None,
            seed: Seed::Picked(render::seed_of(prompt)),
            negative_prompt: None,
            output_format: None,
            prompt_strength: None,
            scale: None,
            image: None,
        }
    }

    /// Checks a create's `input` object, all but `image` (see
    /// [`image_source`]); without a `seed` there, `pick` chooses one.
    pub(super) fn parse(input: &Map<String, Value>, pick: impl FnOnce() -> u32) -> Result<Self, Invalid> {
        let given = |key: &str| input.get(key).filter(|v| !v.is_null());
        let seed = match given("seed") {
            Some(value) => Seed::Given(parse_seed(value)?),
            None => Seed::Picked(pick()),
        };
        Ok(Self {
            aspect_ratio: given("aspect_ratio").map(parse_aspect_ratio).transpose()?,
            num_outputs: given("num_outputs").map(parse_num_outputs).transpose()?,
            seed,
            negative_prompt: given("negative_prompt").map(parse_negative_prompt).transpose()?,
            output_format: given("output_format").map(parse_output_format).transpose()?,
            prompt_strength: given("prompt_strength")
                .map(|value| number_in("input.prompt_strength", value, STRENGTH_RANGE))
                .transpose()?,
            scale: given("scale").map(|value| number_in("input.scale", value, SCALE_RANGE)).transpose()?,
            image: None,
        })
    }

    /// True when the create gave any input of images in (ids then take
    /// format 3).
    pub(super) fn images_in(&self) -> bool {
        self.prompt_strength.is_some() || self.scale.is_some() || self.image.is_some()
    }

    /// The upscale the prediction is: an image and a scale.
    pub(super) fn upscale(&self) -> Option<Upscale<'_>> {
        let (image, scale) = (self.image.as_ref()?, self.scale?.get());
        let from = (image.width, image.height);
        Some(Upscale { file: &image.file, from, to: upscaled_size(from, scale), scale })
    }

    /// What an image-to-image prediction's outputs follow: an image without
    /// a scale.
    pub(super) fn guide(&self) -> Option<Guide> {
        let grid = self.image.as_ref()?.grid.clone().filter(|_| self.scale.is_none())?;
        Some(Guide { grid, strength: self.strength() as f32 })
    }

    /// `prompt_strength`, or its default.
    pub(super) fn strength(&self) -> f64 {
        self.prompt_strength.map_or(DEFAULT_STRENGTH, Number::get)
    }

    /// How many images the prediction makes (an upscale: exactly one).
    pub(super) fn outputs(&self) -> u8 {
        if self.upscale().is_some() { 1 } else { self.num_outputs.unwrap_or(1) }
    }

    /// Width and height of its images: an upscale's output size; else the
    /// aspect ratio's shape with a long side of 768, or without one the
    /// input image's shape, or the renderer's square without either.
    pub(super) fn size(&self) -> (u32, u32) {
        if let Some(upscale) = self.upscale() {
            return upscale.to;
        }
        match (self.aspect_ratio, &self.image) {
            (Some(ratio), _) => ratio.size(LONG_SIDE),
            (None, Some(image)) => shape(image.width, image.height, LONG_SIDE),
            (None, None) => (render::SIZE, render::SIZE),
        }
    }

    /// The prediction's `input` as Replicate echoes it: the prompt (unless
    /// an image came without one) and the known inputs the create gave,
    /// `image` as the URL of its file (`file_url` of its id).
    pub(super) fn echo(&self, prompt: &str, file_url: impl Fn(&str) -> String) -> Value {
        let mut echo = Map::new();
        if !(prompt.is_empty() && self.image.is_some()) {
            echo.insert("prompt".into(), prompt.into());
        }
        if let Some(ratio) = self.aspect_ratio {
            echo.insert("aspect_ratio".into(), ratio.name().into());
        }
        if let Some(n) = self.num_outputs {
            echo.insert("num_outputs".into(), n.into());
        }
        if let Seed::Given(seed) = self.seed {
            echo.insert("seed".into(), seed.into());
        }
        if let Some(negative) = &self.negative_prompt {
            echo.insert("negative_prompt".into(), negative.as_str().into());
        }
        if let Some(format) = self.output_format {
            echo.insert("output_format".into(), format.name().into());
        }
        if let Some(image) = &self.image {
            echo.insert("image".into(), file_url(&image.file).into());
        }
        if let Some(strength) = self.prompt_strength {
            echo.insert("prompt_strength".into(), strength.json());
        }
        if let Some(scale) = self.scale {
            echo.insert("scale".into(), scale.json());
        }
        Value::Object(echo)
    }
}

/// The size of an image of `width`×`height` scaled by `scale`, each side
/// rounded and at least 1.
pub(super) fn upscaled_size((width, height): (u32, u32), scale: f64) -> (u32, u32) {
    let side = |n: u32| (f64::from(n) * scale).round().clamp(1.0, f64::from(u32::MAX)) as u32;
    (side(width), side(height))
}

/// `width`×`height`'s shape with a long side of `long`, the short side
/// rounded to the nearest pixel (at least 1).
fn shape(width: u32, height: u32, long: u32) -> (u32, u32) {
    let (width, height) = (u64::from(width.max(1)), u64::from(height.max(1)));
    let scale = |short: u64, of: u64| u32::try_from((u64::from(long) * short + of / 2) / of).unwrap_or(long).max(1);
    if width >= height { (long, scale(height, width)) } else { (scale(width, height), long) }
}

/// A file id as the store mints it: letters, digits, `-` and `_`.
pub(super) fn is_file_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_FILE_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What a create's `input.image` names: a file of this simulator's store,
/// by its URL (`files_url` followed by the id), or a data URL's image.
/// `None` when no image was given.
pub(super) fn image_source(input: &Map<String, Value>, files_url: &str) -> Result<Option<Source>, Invalid> {
    const FIELD: &str = "input.image";
    let Some(value) = input.get("image").filter(|v| !v.is_null()) else { return Ok(None) };
    let url = value.as_str().ok_or_else(|| wrong_type(FIELD, "string", value))?;
    if let Some(id) = url.strip_prefix(files_url) {
        return if is_file_id(id) { Ok(Some(Source::File(id.to_owned()))) } else { Err(file_not_found()) };
    }
    let data = url.get(..5).filter(|scheme| scheme.eq_ignore_ascii_case("data:")).and_then(|_| url.get(5..));
    match data {
        Some(rest) => data_url(rest).map(Some),
        None => Err(Invalid {
            field: FIELD,
            kind: "invalid_url",
            description: "the simulator reads only its own files (POST /v1/files) and data URLs".into(),
        }),
    }
}

/// `input.image` names a file the store does not have (any more).
pub(super) fn file_not_found() -> Invalid {
    Invalid { field: "input.image", kind: "not_found", description: "file not found or expired".into() }
}

/// The part of a data URL after `data:`, which must be an image in base64
/// of at most [`MAX_DATA_URL_BYTES`].
fn data_url(rest: &str) -> Result<Source, Invalid> {
    const FIELD: &str = "input.image";
    let shape = || Invalid {
        field: FIELD,
        kind: "invalid_url",
        description: "a data URL must be data:image/<type>;base64,<data>".into(),
    };
    let too_large = || Invalid {
        field: FIELD,
        kind: "too_large",
        description: format!("a data URL may hold at most {} MiB", MAX_DATA_URL_BYTES / (1024 * 1024)),
    };
    let (header, payload) = rest.split_once(',').ok_or_else(shape)?;
    let header = header.to_ascii_lowercase();
    let content_type = header.split(';').next().unwrap_or_default();
    if !content_type.starts_with("image/") || !header.ends_with(";base64") {
        return Err(shape());
    }
    if payload.len() > MAX_DATA_URL_BYTES.div_ceil(3) * 4 {
        return Err(too_large());
    }
    let bytes = DATA_URL_BASE64.decode(payload).map_err(|_| Invalid {
        field: FIELD,
        kind: "invalid_url",
        description: "the data URL's data is not valid base64".into(),
    })?;
    if bytes.len() > MAX_DATA_URL_BYTES {
        return Err(too_large());
    }
    Ok(Source::Data { content_type: content_type.to_owned(), bytes })
}

fn parse_aspect_ratio(value: &Value) -> Result<AspectRatio, Invalid> {
    const FIELD: &str = "input.aspect_ratio";
    let name = value.as_str().ok_or_else(|| wrong_type(FIELD, "string", value))?;
    AspectRatio::parse(name).ok_or_else(|| {
        let names: Vec<&str> = ASPECT_RATIOS.iter().map(|(n, _, _)| *n).collect();
        not_one_of(FIELD, "aspect_ratio", &names)
    })
}

fn parse_num_outputs(value: &Value) -> Result<u8, Invalid> {
    let n = integer_in("input.num_outputs", value, 1, MAX_OUTPUTS.into())?;
    // In range, so it fits.
    Ok(u8::try_from(n).unwrap_or(MAX_OUTPUTS))
}

fn parse_seed(value: &Value) -> Result<u32, Invalid> {
    let n = integer_in("input.seed", value, 0, u32::MAX.into())?;
    // In range, so it fits.
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

fn parse_negative_prompt(value: &Value) -> Result<String, Invalid> {
    const FIELD: &str = "input.negative_prompt";
    let text = value.as_str().ok_or_else(|| wrong_type(FIELD, "string", value))?;
    if text.chars().count() > MAX_NEGATIVE_CHARS {
        let description = format!("String length must be less than or equal to {MAX_NEGATIVE_CHARS}");
        return Err(Invalid { field: FIELD, kind: "string_too_long", description });
    }
    Ok(text.to_owned())
}

fn parse_output_format(value: &Value) -> Result<OutputFormat, Invalid> {
    const FIELD: &str = "input.output_format";
    let name = value.as_str().ok_or_else(|| wrong_type(FIELD, "string", value))?;
    OutputFormat::parse(name).ok_or_else(|| not_one_of(FIELD, "output_format", &OUTPUT_FORMATS))
}

/// A JSON number (integer or not, not `"0.5"`) within `low..=high`.
fn number_in(field: &'static str, value: &Value, (low, high): (f64, f64)) -> Result<Number, Invalid> {
    let Some(n) = value.as_f64() else {
        return Err(wrong_type(field, "number", value));
    };
    if n < low {
        return Err(Invalid {
            field,
            kind: "number_gte",
            description: format!("Must be greater than or equal to {low}"),
        });
    }
    Number::within(n, (low, high)).ok_or_else(|| Invalid {
        field,
        kind: "number_lte",
        description: format!("Must be less than or equal to {high}"),
    })
}

/// A JSON integer (not `2.0`, not `"2"`) within `low..=high`.
fn integer_in(field: &'static str, value: &Value, low: u64, high: u64) -> Result<u64, Invalid> {
    let Value::Number(number) = value else { return Err(wrong_type(field, "integer", value)) };
    if let Some(n) = number.as_u64() {
        if n < low {
            return Err(below(field, low));
        }
        if n > high {
            let description = format!("Must be less than or equal to {high}");
            return Err(Invalid { field, kind: "number_lte", description });
        }
        return Ok(n);
    }
    match number.as_i64() {
        // Negative: below any bound we use.
        Some(_) => Err(below(field, low)),
        None => Err(wrong_type(field, "integer", value)),
    }
}

fn below(field: &'static str, low: u64) -> Invalid {
    Invalid { field, kind: "number_gte", description: format!("Must be greater than or equal to {low}") }
}

fn wrong_type(field: &'static str, expected: &str, given: &Value) -> Invalid {
    let description = format!("Invalid type. Expected: {expected}, given: {}", type_name(given));
    Invalid { field, kind: "invalid_type", description }
}

fn not_one_of(field: &'static str, name: &str, allowed: &[&str]) -> Invalid {
    let quoted: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
    let description = format!("{name} must be one of the following: {}", quoted.join(", "));
    Invalid { field, kind: "enum", description }
}

/// The JSON type of a value, as validation messages name it.
pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(input: Value) -> Result<Inputs, Invalid> {
        let Value::Object(map) = input else { panic!("not an object: {input}") };
        Inputs::parse(&map, || 7)
    }

    fn field_of(input: Value) -> Option<&'static str> {
        parse(input).err().map(|e| e.field)
    }

    fn file_url(id: &str) -> String {
        format!("{FILES}{id}")
    }

    const FILES: &str = "http://sim.test/sim/v1/files/";

    fn source(image: Value) -> Result<Option<Source>, Invalid> {
        let Value::Object(map) = json!({ "image": image }) else { unreachable!() };
        image_source(&map, FILES)
    }

    fn image(width: u32, height: u32, grid: Option<Grid>) -> Image {
        Image { file: "f1".into(), width, height, grid }
    }

    #[test]
    fn absent_or_null_inputs_take_the_defaults_and_a_picked_seed() {
        for input in [json!({"prompt": "x", "other": [1]}), json!({"seed": null, "num_outputs": null})] {
            let inputs = parse(input).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(inputs.seed, Seed::Picked(7));
            assert_eq!((inputs.outputs(), inputs.size()), (1, (512, 512)));
            assert_eq!(inputs.echo("x", file_url), json!({"prompt": "x"}));
            assert!(!inputs.images_in());
        }
    }

    #[test]
    fn given_inputs_are_kept_and_echoed() {
        let input = json!({
            "aspect_ratio": "16:9", "num_outputs": 3, "seed": 4_294_967_295u64,
            "negative_prompt": "blurry", "output_format": "webp", "go_fast": true,
        });
        let inputs = parse(input.clone()).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(inputs.seed, Seed::Given(u32::MAX));
        assert_eq!((inputs.outputs(), inputs.size()), (3, (768, 432)));
        let mut echoed = input;
        echoed["prompt"] = "x".into();
        if let Some(map) = echoed.as_object_mut() {
            map.remove("go_fast");
        }
        assert_eq!(inputs.echo("x", file_url), echoed);
    }

    #[test]
    fn every_aspect_ratio_has_its_shape_with_a_long_side_of_768() {
        let size = |name: &str| AspectRatio::parse(name).map(|r| r.size(LONG_SIDE));
        assert_eq!(size("1:1"), Some((768, 768)));
        assert_eq!(size("16:9"), Some((768, 432)));
        assert_eq!(size("9:16"), Some((432, 768)));
        assert_eq!(size("21:9"), Some((768, 329)));
        assert_eq!(size("4:5"), Some((614, 768)));
        assert_eq!(size("3:2"), Some((768, 512)));
        for (n, (name, _, _)) in ASPECT_RATIOS.iter().enumerate() {
            let ratio = AspectRatio::parse(name);
            assert_eq!(ratio.and_then(|r| AspectRatio::from_code(r.code())), ratio);
            assert_eq!(ratio.map(AspectRatio::code), u8::try_from(n + 1).ok());
        }
        assert_eq!(AspectRatio::from_code(0), None);
        assert_eq!(AspectRatio::from_code(12), None);
    }

    #[test]
    fn bad_values_and_types_name_their_field() {
        let cases = [
            (json!({"aspect_ratio": "7:3"}), "input.aspect_ratio"),
            (json!({"aspect_ratio": 1}), "input.aspect_ratio"),
            (json!({"num_outputs": 0}), "input.num_outputs"),
            (json!({"num_outputs": 5}), "input.num_outputs"),
            (json!({"num_outputs": -1}), "input.num_outputs"),
            (json!({"num_outputs": 2.0}), "input.num_outputs"),
            (json!({"num_outputs": "2"}), "input.num_outputs"),
            (json!({"seed": -1}), "input.seed"),
            (json!({"seed": 4_294_967_296u64}), "input.seed"),
            (json!({"seed": 1.5}), "input.seed"),
            (json!({"seed": "42"}), "input.seed"),
            (json!({"negative_prompt": "n".repeat(MAX_NEGATIVE_CHARS + 1)}), "input.negative_prompt"),
            (json!({"negative_prompt": false}), "input.negative_prompt"),
            (json!({"output_format": "gif"}), "input.output_format"),
            (json!({"output_format": ["png"]}), "input.output_format"),
        ];
        for (input, field) in cases {
            assert_eq!(field_of(input.clone()), Some(field), "{input}");
        }
        let longest = "é".repeat(MAX_NEGATIVE_CHARS);
        assert!(parse(json!({"negative_prompt": longest})).is_ok(), "characters are counted, not bytes");
        let message = parse(json!({"num_outputs": 9})).err().map(|e| e.description);
        assert_eq!(message.as_deref(), Some("Must be less than or equal to 4"));
    }

    #[test]
    fn strength_and_scale_are_numbers_in_range_and_echoed_as_given() {
        let inputs = parse(json!({"prompt_strength": 0.35, "scale": 4})).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(inputs.prompt_strength.map(Number::get), Some(0.35));
        assert_eq!(inputs.scale.map(Number::get), Some(4.0));
        assert!(inputs.images_in());
        let echo = inputs.echo("x", file_url);
        assert_eq!(echo, json!({"prompt": "x", "prompt_strength": 0.35, "scale": 4}));
        assert!(parse(json!({"prompt_strength": 0, "scale": 2.5})).is_ok());
        let cases = [
            (json!({"prompt_strength": 1.01}), "input.prompt_strength"),
            (json!({"prompt_strength": -0.1}), "input.prompt_strength"),
            (json!({"prompt_strength": "0.5"}), "input.prompt_strength"),
            (json!({"scale": 0.5}), "input.scale"),
            (json!({"scale": 11}), "input.scale"),
            (json!({"scale": true}), "input.scale"),
        ];
        for (input, field) in cases {
            assert_eq!(field_of(input.clone()), Some(field), "{input}");
        }
    }

    #[test]
    fn an_image_is_a_file_of_the_store_or_a_data_url() {
        assert_eq!(source(Value::Null), Ok(None));
        assert_eq!(source(json!(format!("{FILES}abc-123_x"))), Ok(Some(Source::File("abc-123_x".into()))));
        let png = Source::Data { content_type: "image/png".into(), bytes: b"hello".to_vec() };
        assert_eq!(source(json!("data:image/png;base64,aGVsbG8=")), Ok(Some(png.clone())));
        assert_eq!(source(json!("DATA:image/PNG;base64,aGVsbG8")), Ok(Some(png)), "case and padding do not matter");
        let described = |image: Value| source(image).err().map(|e| (e.field, e.description));
        let foreign = described(json!("https://example.com/cat.png"));
        assert_eq!(
            foreign,
            Some(("input.image", "the simulator reads only its own files (POST /v1/files) and data URLs".into()))
        );
        let other_host = described(json!("http://elsewhere.test/sim/v1/files/abc"));
        assert_eq!(other_host, foreign);
        assert_eq!(described(json!(format!("{FILES}a/b"))), Some(("input.image", "file not found or expired".into())));
        assert_eq!(described(json!(FILES)), Some(("input.image", "file not found or expired".into())));
        for bad in ["data:text/plain;base64,aGVsbG8=", "data:image/png,hello", "data:image/png;base64,!!!", "data:"] {
            assert_eq!(source(json!(bad)).err().map(|e| e.field), Some("input.image"), "{bad}");
        }
        let largest = "A".repeat(MAX_DATA_URL_BYTES / 3 * 4);
        assert!(source(json!(format!("data:image/png;base64,{largest}"))).is_ok());
        let larger = "A".repeat(MAX_DATA_URL_BYTES / 3 * 4 + 8);
        let too_large = source(json!(format!("data:image/png;base64,{larger}"))).err().map(|e| e.kind);
        assert_eq!(too_large, Some("too_large"));
        assert_eq!(source(json!(42)).err().map(|e| e.kind), Some("invalid_type"));
    }

    #[test]
    fn an_image_shapes_the_outputs_and_a_scale_makes_one_upscale() {
        let guided =
            Inputs { image: Some(image(640, 480, Some(Grid([7; render::GRID_BYTES])))), ..Inputs::from_prompt("x") };
        assert_eq!((guided.size(), guided.outputs()), ((768, 576), 1));
        assert_eq!(guided.guide().map(|g| g.strength), Some(0.8));
        assert!(guided.upscale().is_none());
        let tall = Inputs { image: Some(image(100, 1000, None)), num_outputs: Some(3), ..guided.clone() };
        assert_eq!((tall.size(), tall.outputs()), ((77, 768), 3));
        let squared = Inputs { aspect_ratio: AspectRatio::from_code(1), ..guided.clone() };
        assert_eq!(squared.size(), (768, 768), "an aspect ratio wins");
        let echo = guided.echo("", file_url);
        assert_eq!(echo, json!({"image": format!("{FILES}f1")}), "no prompt given, none echoed");
        let upscale = Inputs {
            image: Some(image(512, 300, None)),
            scale: Number::within(2.5, SCALE_RANGE),
            num_outputs: Some(4),
            ..Inputs::from_prompt("")
        };
        let expected = Upscale { file: "f1", from: (512, 300), to: (1280, 750), scale: 2.5 };
        assert_eq!(upscale.upscale(), Some(expected));
        assert_eq!((upscale.size(), upscale.outputs()), ((1280, 750), 1));
        assert!(upscale.guide().is_none());
        assert_eq!(upscaled_size((1, 1), 1.4), (1, 1));
        assert_eq!(upscaled_size((3, 3), 1.5), (5, 5));
    }
}
