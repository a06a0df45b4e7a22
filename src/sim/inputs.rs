//! The model inputs the simulator takes beside `prompt`, checked the way a
//! Cog model's schema checks them: `aspect_ratio`, `num_outputs`, `seed`,
//! `negative_prompt` and `output_format`. Unknown keys are ignored, as
//! before; a `null` is the same as leaving the key out.

use serde_json::{Map, Value};

use super::render;

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
/// The long side of an image that has an aspect ratio.
const LONG_SIDE: u32 = 768;

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
        }
    }

    /// Checks a create's `input` object; without a `seed` there, `pick`
    /// chooses one.
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
        })
    }

    /// How many images the prediction makes.
    pub(super) fn outputs(&self) -> u8 {
        self.num_outputs.unwrap_or(1)
    }

    /// Width and height of its images: the aspect ratio's shape with a long
    /// side of 768, or the renderer's square without one.
    pub(super) fn size(&self) -> (u32, u32) {
        match self.aspect_ratio {
            Some(ratio) => ratio.size(LONG_SIDE),
            None => (render::SIZE, render::SIZE),
        }
    }

    /// The prediction's `input` as Replicate echoes it: the prompt and the
    /// known inputs the create gave.
    pub(super) fn echo(&self, prompt: &str) -> Value {
        let mut echo = Map::new();
        echo.insert("prompt".into(), prompt.into());
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
        Value::Object(echo)
    }
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

    #[test]
    fn absent_or_null_inputs_take_the_defaults_and_a_picked_seed() {
        for input in [json!({"prompt": "x", "other": [1]}), json!({"seed": null, "num_outputs": null})] {
            let inputs = parse(input).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(inputs.seed, Seed::Picked(7));
            assert_eq!((inputs.outputs(), inputs.size()), (1, (512, 512)));
            assert_eq!(inputs.echo("x"), json!({"prompt": "x"}));
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
        assert_eq!(inputs.echo("x"), echoed);
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
}
