//! Stateless prediction ids: everything the simulator needs to answer for a
//! prediction, packed and authenticated with a truncated HMAC-SHA256, in
//! URL-safe base64. A tampered or foreign id does not open.
//!
//! Layout, all integers big-endian:
//! - format 1 (before model inputs; still opened): format, created (u64),
//!   duration (u32), cancel-after (u32), nonce (4 bytes), model and version
//!   (u8 length + bytes each), then the prompt to the end;
//! - format 2 (minted for creates without images in): the same up to the
//!   version, then the inputs: aspect ratio (u8 code, 0 = none),
//!   `num_outputs` (u8, 0 = not given), flags (u8: seed given, negative
//!   prompt given), seed (u32), output format (u8 code, 0 = none), negative
//!   prompt (u16 length + bytes), then the prompt to the end;
//! - format 3 (minted when the create gave `image`, `prompt_strength` or
//!   `scale`): format 2 up to the negative prompt, then flags (u8:
//!   strength, scale, image, grid), `prompt_strength` and `scale` when
//!   given (f64 each), and with an image its file id (u8 length + bytes),
//!   width and height (u16 each) and, for image-to-image, its colour grid
//!   (12×12 RGB bytes); then the prompt to the end. So an image-to-image
//!   output renders from the id alone, and an upscale's from the file the
//!   id names (the output size follows from the input size and the scale).
//!
//! The HMAC tag follows the payload.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{
    inputs::{
        AspectRatio, Image, Inputs, MAX_IMAGE_SIDE, MAX_OUTPUTS, MAX_UPSCALED_SIDE, Number, OutputFormat, SCALE_RANGE,
        STRENGTH_RANGE, Seed, is_file_id, upscaled_size,
    },
    render::{GRID_BYTES, Grid},
};

type HmacSha256 = Hmac<Sha256>;

/// Ids from before model inputs: they open with [`Inputs::from_prompt`].
const FORMAT_V1: u8 = 1;
/// With model inputs: minted for creates without images in.
const FORMAT_V2: u8 = 2;
/// With model inputs and images in.
const FORMAT_V3: u8 = 3;
/// Bytes of the HMAC kept in the id.
const TAG_LEN: usize = 16;
/// Fixed part: format, created, duration, cancel-after, nonce.
const HEADER_LEN: usize = 1 + 8 + 4 + 4 + 4;
/// Fixed part of format 2's inputs: aspect ratio, outputs, flags, seed,
/// output format, negative prompt length.
const INPUTS_LEN: usize = 1 + 1 + 1 + 4 + 1 + 2;
/// Flag: the seed was given by the create (else the simulator picked it).
const SEED_GIVEN: u8 = 1;
/// Flag: the create gave a negative prompt (possibly empty).
const NEGATIVE_GIVEN: u8 = 2;
/// Format 3's flags: `prompt_strength` given, `scale` given, an image, its
/// colour grid.
const STRENGTH_GIVEN: u8 = 1;
const SCALE_GIVEN: u8 = 2;
const IMAGE_GIVEN: u8 = 4;
const GRID_GIVEN: u8 = 8;
/// Longest id we try to decode (prompts and negative prompts are capped
/// well below this).
const MAX_ID_LEN: usize = 32 * 1024;

/// The authenticated tag of an id: a short, unique key for soft state.
pub(super) type Tag = [u8; TAG_LEN];

/// What an id says about its prediction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ticket {
    /// Creation time, epoch ms.
    pub created_ms: u64,
    /// Time from creation to completion, ms.
    pub duration_ms: u32,
    /// `Cancel-After` in ms from creation; 0 when none was asked for.
    pub cancel_after_ms: u32,
    /// Random bytes that make ids of identical requests differ.
    pub nonce: [u8; 4],
    /// `owner/name`.
    pub model: String,
    /// The version id asked for, or empty when the model endpoint was used.
    pub version: String,
    /// The prompt (`input.prompt`).
    pub prompt: String,
    /// The other model inputs (defaults for a format 1 id).
    pub inputs: Inputs,
}

impl Ticket {
    /// Packs and signs the ticket into a URL-safe id; also returns the
    /// id's tag, as [`Ticket::open`] would.
    pub(super) fn seal(&self, secret: &[u8]) -> (String, Tag) {
        let negative = self.inputs.negative_prompt.as_deref().unwrap_or_default();
        let images_in = self.inputs.images_in();
        let extras = if images_in { 1 + 8 + 8 + 1 + 255 + 4 + GRID_BYTES } else { 0 };
        let capacity = HEADER_LEN + INPUTS_LEN + 2 + 255 * 2 + negative.len() + extras + self.prompt.len() + TAG_LEN;
        let mut bytes = Vec::with_capacity(capacity);
        bytes.push(if images_in { FORMAT_V3 } else { FORMAT_V2 });
        bytes.extend_from_slice(&self.created_ms.to_be_bytes());
        bytes.extend_from_slice(&self.duration_ms.to_be_bytes());
        bytes.extend_from_slice(&self.cancel_after_ms.to_be_bytes());
        bytes.extend_from_slice(&self.nonce);
        push_short_str(&mut bytes, &self.model);
        push_short_str(&mut bytes, &self.version);
        push_inputs(&mut bytes, &self.inputs);
        if images_in {
            push_images_in(&mut bytes, &self.inputs);
        }
        bytes.extend_from_slice(self.prompt.as_bytes());
        let digest = mac(secret, &bytes).finalize().into_bytes();
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(&digest[..TAG_LEN]);
        bytes.extend_from_slice(&tag);
        (URL_SAFE_NO_PAD.encode(bytes), tag)
    }

    /// Decodes an id and checks its tag; `None` for anything not minted
    /// under this secret.
    pub(super) fn open(id: &str, secret: &[u8]) -> Option<(Self, Tag)> {
        if id.len() > MAX_ID_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(id).ok()?;
        let split = bytes.len().checked_sub(TAG_LEN)?;
        let (payload, tag) = bytes.split_at(split);
        mac(secret, payload).verify_truncated_left(tag).ok()?;
        let mut reader = Reader(payload);
        let format = reader.u8()?;
        if !matches!(format, FORMAT_V1 | FORMAT_V2 | FORMAT_V3) {
            return None;
        }
        let created_ms = u64::from_be_bytes(reader.array()?);
        let duration_ms = reader.u32()?;
        let cancel_after_ms = reader.u32()?;
        let nonce = reader.array()?;
        let model = reader.short_str()?;
        let version = reader.short_str()?;
        let mut inputs = if format == FORMAT_V1 { None } else { Some(read_inputs(&mut reader)?) };
        if let (FORMAT_V3, Some(inputs)) = (format, inputs.as_mut()) {
            read_images_in(&mut reader, inputs)?;
        }
        let prompt = String::from_utf8(reader.0.to_vec()).ok()?;
        let inputs = inputs.unwrap_or_else(|| Inputs::from_prompt(&prompt));
        let ticket = Self { created_ms, duration_ms, cancel_after_ms, nonce, model, version, prompt, inputs };
        Some((ticket, tag.try_into().ok()?))
    }
}

/// Appends format 2's inputs.
fn push_inputs(bytes: &mut Vec<u8>, inputs: &Inputs) {
    let mut flags = 0;
    if matches!(inputs.seed, Seed::Given(_)) {
        flags |= SEED_GIVEN;
    }
    if inputs.negative_prompt.is_some() {
        flags |= NEGATIVE_GIVEN;
    }
    bytes.push(inputs.aspect_ratio.map_or(0, AspectRatio::code));
    bytes.push(inputs.num_outputs.unwrap_or(0));
    bytes.push(flags);
    bytes.extend_from_slice(&inputs.seed.value().to_be_bytes());
    bytes.push(inputs.output_format.map_or(0, OutputFormat::code));
    push_long_str(bytes, inputs.negative_prompt.as_deref().unwrap_or_default());
}

/// Reads what [`push_inputs`] wrote; `None` for a value it never writes.
fn read_inputs(reader: &mut Reader<'_>) -> Option<Inputs> {
    let aspect_ratio = match reader.u8()? {
        0 => None,
        code => Some(AspectRatio::from_code(code)?),
    };
    let num_outputs = match reader.u8()? {
        0 => None,
        n if n <= MAX_OUTPUTS => Some(n),
        _ => return None,
    };
    let flags = reader.u8()?;
    if flags & !(SEED_GIVEN | NEGATIVE_GIVEN) != 0 {
        return None;
    }
    let seed = reader.u32()?;
    let seed = if flags & SEED_GIVEN != 0 { Seed::Given(seed) } else { Seed::Picked(seed) };
    let output_format = match reader.u8()? {
        0 => None,
        code => Some(OutputFormat::from_code(code)?),
    };
    let negative = reader.long_str()?;
    let negative_prompt = (flags & NEGATIVE_GIVEN != 0).then_some(negative);
    Some(Inputs {
        aspect_ratio,
        num_outputs,
        seed,
        negative_prompt,
        output_format,
        prompt_strength: None,
        scale: None,
        image: None,
    })
}

/// Appends format 3's inputs of images in.
fn push_images_in(bytes: &mut Vec<u8>, inputs: &Inputs) {
    let grid = inputs.image.as_ref().and_then(|image| image.grid.as_ref());
    let flags = [
        (inputs.prompt_strength.is_some(), STRENGTH_GIVEN),
        (inputs.scale.is_some(), SCALE_GIVEN),
        (inputs.image.is_some(), IMAGE_GIVEN),
        (grid.is_some(), GRID_GIVEN),
    ];
    bytes.push(flags.iter().filter(|(given, _)| *given).fold(0, |all, (_, flag)| all | flag));
    for number in [inputs.prompt_strength, inputs.scale].into_iter().flatten() {
        bytes.extend_from_slice(&number.get().to_be_bytes());
    }
    if let Some(image) = &inputs.image {
        push_short_str(bytes, &image.file);
        for side in [image.width, image.height] {
            bytes.extend_from_slice(&u16::try_from(side).unwrap_or(u16::MAX).to_be_bytes());
        }
    }
    if let Some(grid) = grid {
        bytes.extend_from_slice(&grid.0);
    }
}

/// Reads what [`push_images_in`] wrote into `inputs`; `None` for anything
/// it never writes: no flag, an unknown one, a grid without an image or
/// with a scale, an image with neither, a number or a size out of range.
fn read_images_in(reader: &mut Reader<'_>, inputs: &mut Inputs) -> Option<()> {
    let flags = reader.u8()?;
    let has = |flag: u8| flags & flag != 0;
    let known = STRENGTH_GIVEN | SCALE_GIVEN | IMAGE_GIVEN | GRID_GIVEN;
    let image_fits = if has(IMAGE_GIVEN) { has(GRID_GIVEN) != has(SCALE_GIVEN) } else { !has(GRID_GIVEN) };
    if flags == 0 || flags & !known != 0 || !image_fits {
        return None;
    }
    let mut number = |given: bool, range| {
        if given { reader.f64().and_then(|n| Number::within(n, range)).map(Some) } else { Some(None) }
    };
    inputs.prompt_strength = number(has(STRENGTH_GIVEN), STRENGTH_RANGE)?;
    inputs.scale = number(has(SCALE_GIVEN), SCALE_RANGE)?;
    if has(IMAGE_GIVEN) {
        let file = reader.short_str().filter(|id| is_file_id(id))?;
        let mut side = || reader.u16().map(u32::from).filter(|side| (1..=MAX_IMAGE_SIDE).contains(side));
        let (width, height) = (side()?, side()?);
        let grid = if has(GRID_GIVEN) { Some(Grid(reader.array()?)) } else { None };
        inputs.image = Some(Image { file, width, height, grid });
    }
    if let Some(upscale) = inputs.upscale() {
        let (width, height) = upscaled_size(upscale.from, upscale.scale);
        if width > MAX_UPSCALED_SIDE || height > MAX_UPSCALED_SIDE {
            return None;
        }
    }
    Some(())
}

fn mac(secret: &[u8], payload: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(payload);
    mac
}

/// A string of at most 255 bytes, length-prefixed (model and version names
/// are validated to be short long before they get here).
fn push_short_str(bytes: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    bytes.push(end as u8);
    bytes.extend_from_slice(&s.as_bytes()[..end]);
}

/// A string of at most 65535 bytes, with a u16 length (negative prompts
/// are capped at 2000 characters, at most 8000 bytes, before they get here).
fn push_long_str(bytes: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    bytes.extend_from_slice(&(end as u16).to_be_bytes());
    bytes.extend_from_slice(&s.as_bytes()[..end]);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn f64(&mut self) -> Option<f64> {
        self.array().map(f64::from_be_bytes)
    }

    fn short_str(&mut self) -> Option<String> {
        let len = usize::from(self.u8()?);
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    fn long_str(&mut self) -> Option<String> {
        let len = usize::from(u16::from_be_bytes(self.array()?));
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::render::seed_of;

    const PROMPT: &str = "a lighthouse at dusk, ünïcode ☀ #slow";

    fn ticket() -> Ticket {
        Ticket {
            created_ms: 1_700_000_000_123,
            duration_ms: 12_345,
            cancel_after_ms: 600_000,
            nonce: [1, 2, 3, 4],
            model: "stability-ai/sdxl".into(),
            version: String::new(),
            prompt: PROMPT.into(),
            inputs: Inputs {
                aspect_ratio: AspectRatio::from_code(2),
                num_outputs: Some(3),
                seed: Seed::Given(u32::MAX),
                negative_prompt: Some("blurry, ☁ ".repeat(200)),
                output_format: OutputFormat::from_code(1),
                prompt_strength: None,
                scale: None,
                image: None,
            },
        }
    }

    /// A grid whose every byte differs from its neighbours.
    fn grid() -> Grid {
        let mut cells = [0; GRID_BYTES];
        for (n, cell) in cells.iter_mut().enumerate() {
            *cell = (n * 7 % 256) as u8;
        }
        Grid(cells)
    }

    fn guided() -> Inputs {
        let image = Image { file: "0123456789abcdef01234567".into(), width: 8192, height: 1, grid: Some(grid()) };
        Inputs {
            prompt_strength: Number::within(0.35, STRENGTH_RANGE),
            image: Some(image),
            negative_prompt: None,
            ..ticket().inputs
        }
    }

    fn upscale() -> Inputs {
        let image = Image { file: "up-file_1".into(), width: 1024, height: 512, grid: None };
        Inputs { scale: Number::within(4.0, SCALE_RANGE), image: Some(image), negative_prompt: None, ..ticket().inputs }
    }

    fn format_of(id: &str) -> Option<u8> {
        URL_SAFE_NO_PAD.decode(id).ok().and_then(|bytes| bytes.first().copied())
    }

    /// Signs `payload` as [`Ticket::seal`] does, whatever its layout.
    fn sign(payload: &[u8], secret: &[u8]) -> String {
        let digest = mac(secret, payload).finalize().into_bytes();
        URL_SAFE_NO_PAD.encode([payload, &digest[..TAG_LEN]].concat())
    }

    /// A format 1 payload, laid out by hand.
    fn v1_payload(prompt: &str) -> Vec<u8> {
        let mut bytes = vec![FORMAT_V1];
        bytes.extend_from_slice(&1_700_000_000_123u64.to_be_bytes());
        bytes.extend_from_slice(&12_345u32.to_be_bytes());
        bytes.extend_from_slice(&0u32.to_be_bytes());
        bytes.extend_from_slice(&[9, 8, 7, 6]);
        bytes.push(3);
        bytes.extend_from_slice(b"a/b");
        bytes.push(0);
        bytes.extend_from_slice(prompt.as_bytes());
        bytes
    }

    #[test]
    fn an_id_round_trips_and_is_url_safe() {
        let (id, sealed_tag) = ticket().seal(b"secret");
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let (opened, tag) = Ticket::open(&id, b"secret").unwrap_or_else(|| panic!("opens"));
        assert_eq!(opened, ticket());
        assert_eq!(tag, sealed_tag);
    }

    #[test]
    fn a_v2_id_round_trips_every_input_given_or_not() {
        let none = Inputs {
            aspect_ratio: None,
            num_outputs: None,
            seed: Seed::Picked(0),
            negative_prompt: None,
            output_format: None,
            prompt_strength: None,
            scale: None,
            image: None,
        };
        let empty_negative = Inputs { negative_prompt: Some(String::new()), seed: Seed::Given(0), ..none.clone() };
        let longest = Inputs { negative_prompt: Some("ß".repeat(2000)), ..ticket().inputs };
        for (n, inputs) in [none, empty_negative, longest].into_iter().enumerate() {
            let sealed = Ticket { inputs, ..ticket() };
            let (id, _) = sealed.seal(b"secret");
            let format = URL_SAFE_NO_PAD.decode(&id).ok().and_then(|bytes| bytes.first().copied());
            assert_eq!(format, Some(FORMAT_V2));
            let opened = Ticket::open(&id, b"secret").map(|(t, _)| t);
            assert_eq!(opened.as_ref(), Some(&sealed), "case {n}");
        }
        for code in 1..=11 {
            let inputs = Inputs { aspect_ratio: AspectRatio::from_code(code), ..ticket().inputs };
            let sealed = Ticket { inputs, ..ticket() };
            let opened = Ticket::open(&sealed.seal(b"k").0, b"k").map(|(t, _)| t);
            assert_eq!(opened.map(|t| t.inputs.aspect_ratio), Some(sealed.inputs.aspect_ratio));
        }
    }

    #[test]
    fn a_v1_id_sealed_by_hand_opens_with_the_defaults() {
        let id = sign(&v1_payload(PROMPT), b"secret");
        let (opened, _) = Ticket::open(&id, b"secret").unwrap_or_else(|| panic!("a v1 id opens"));
        assert_eq!((opened.created_ms, opened.duration_ms, opened.cancel_after_ms), (1_700_000_000_123, 12_345, 0));
        assert_eq!((opened.nonce, opened.model.as_str(), opened.version.as_str()), ([9, 8, 7, 6], "a/b", ""));
        assert_eq!(opened.prompt, PROMPT);
        assert_eq!(opened.inputs, Inputs::from_prompt(PROMPT));
        assert_eq!(opened.inputs.seed, Seed::Picked(seed_of(PROMPT)), "seeded from the prompt, as the logs said");
        assert_eq!((opened.inputs.outputs(), opened.inputs.size()), (1, (512, 512)));
    }

    #[test]
    fn an_id_minted_before_inputs_existed_still_opens() {
        // Sealed by the format 1 code (commit before model inputs).
        const OLD_ID: &str = "AQAAAYvP5Wh7AAAwOQAJJ8ABAgMEEXN0YWJpbGl0eS1haS9zZHhsAGEgbGlnaHRob3VzZSBvbiBh\
                              IGNsaWZmIGF0IGR1c2vWnnoNIQbDc1b4bZ8JPO1T";
        let prompt = "a lighthouse on a cliff at dusk";
        let (opened, _) = Ticket::open(OLD_ID, b"secret").unwrap_or_else(|| panic!("an old id opens"));
        let expected = Ticket {
            created_ms: 1_700_000_000_123,
            duration_ms: 12_345,
            cancel_after_ms: 600_000,
            nonce: [1, 2, 3, 4],
            model: "stability-ai/sdxl".into(),
            version: String::new(),
            prompt: prompt.into(),
            inputs: Inputs::from_prompt(prompt),
        };
        assert_eq!(opened, expected);
        assert_eq!(opened.inputs.seed.value(), 553_500_617, "the seed its logs always printed");
    }

    #[test]
    fn a_signed_id_with_values_never_written_does_not_open() {
        let valid = ticket().seal(b"k").0;
        assert!(Ticket::open(&valid, b"k").is_some());
        let header = HEADER_LEN + 1 + "stability-ai/sdxl".len() + 1;
        let payload = URL_SAFE_NO_PAD.decode(&valid).unwrap_or_default();
        let payload = &payload[..payload.len() - TAG_LEN];
        // Aspect ratio code 12, 5 outputs, an unknown flag, output format 4.
        for (offset, value) in [(0, 12), (1, 5), (2, 4), (7, 4)] {
            let mut bad = payload.to_vec();
            bad[header + offset] = value;
            assert!(Ticket::open(&sign(&bad, b"k"), b"k").is_none(), "offset {offset} = {value}");
        }
        let mut future = payload.to_vec();
        future[0] = 4;
        assert!(Ticket::open(&sign(&future, b"k"), b"k").is_none(), "an unknown format");
    }

    #[test]
    fn a_v3_id_round_trips_images_in() {
        let strength_only = Inputs { prompt_strength: Number::within(0.0, STRENGTH_RANGE), ..ticket().inputs };
        let scale_only = Inputs { scale: Number::within(2.5, SCALE_RANGE), ..ticket().inputs };
        let no_prompt = Ticket { prompt: String::new(), inputs: upscale(), ..ticket() };
        let cases = [
            Ticket { inputs: strength_only, ..ticket() },
            Ticket { inputs: scale_only, ..ticket() },
            Ticket { inputs: guided(), ..ticket() },
            Ticket { inputs: upscale(), ..ticket() },
            no_prompt,
        ];
        for (n, sealed) in cases.into_iter().enumerate() {
            let (id, _) = sealed.seal(b"secret");
            assert_eq!(format_of(&id), Some(FORMAT_V3), "case {n}");
            let opened = Ticket::open(&id, b"secret").map(|(t, _)| t);
            assert_eq!(opened.as_ref(), Some(&sealed), "case {n}");
        }
        assert_eq!(format_of(&ticket().seal(b"k").0), Some(FORMAT_V2), "no images in: format 2, as before");
    }

    #[test]
    fn a_signed_v3_id_with_values_never_written_does_not_open() {
        // Where the images-in flags sit: no negative prompt, so right after
        // format 2's fixed inputs and an empty negative prompt's length.
        let extras = HEADER_LEN + 1 + "stability-ai/sdxl".len() + 1 + INPUTS_LEN;
        let payload_of = |inputs: Inputs| {
            let bytes = URL_SAFE_NO_PAD.decode(Ticket { inputs, ..ticket() }.seal(b"k").0).unwrap_or_default();
            bytes[..bytes.len() - TAG_LEN].to_vec()
        };
        let opens = |payload: &[u8]| Ticket::open(&sign(payload, b"k"), b"k").is_some();
        let (guided, upscale) = (payload_of(guided()), payload_of(upscale()));
        assert!(opens(&guided) && opens(&upscale));
        assert_eq!(
            (guided[extras], upscale[extras]),
            (STRENGTH_GIVEN | IMAGE_GIVEN | GRID_GIVEN, SCALE_GIVEN | IMAGE_GIVEN)
        );
        let with = |payload: &[u8], at: usize, value: &[u8]| {
            let mut bad = payload.to_vec();
            bad[at..at + value.len()].copy_from_slice(value);
            bad
        };
        let number = extras + 1;
        let file = number + 8;
        let sides = |payload: &[u8]| file + 1 + usize::from(payload[file]);
        let bad = [
            ("no flag", with(&guided, extras, &[0])),
            ("an unknown flag", with(&guided, extras, &[16 | STRENGTH_GIVEN | IMAGE_GIVEN | GRID_GIVEN])),
            ("an image without grid or scale", with(&guided, extras, &[STRENGTH_GIVEN | IMAGE_GIVEN])),
            ("a grid without an image", with(&guided, extras, &[STRENGTH_GIVEN | GRID_GIVEN])),
            ("a strength above 1", with(&guided, number, &1.5f64.to_be_bytes())),
            ("a strength below 0", with(&guided, number, &(-0.5f64).to_be_bytes())),
            ("a strength that is no number", with(&guided, number, &f64::NAN.to_be_bytes())),
            ("a scale below 1", with(&upscale, number, &0.5f64.to_be_bytes())),
            ("a scale above 10", with(&upscale, number, &11f64.to_be_bytes())),
            ("an output side above 4096", with(&upscale, number, &8f64.to_be_bytes())),
            ("a file id of other characters", with(&upscale, file + 1, b"up/")),
            ("an empty file id", [&upscale[..file], &[0u8][..], &upscale[file + 1 + 9..]].concat()),
            ("a width of 0", with(&upscale, sides(&upscale), &[0, 0])),
            ("a height above 8192", with(&guided, sides(&guided) + 2, &8193u16.to_be_bytes())),
        ];
        for (what, payload) in bad {
            assert!(!opens(&payload), "{what}");
        }
    }

    #[test]
    fn a_tampered_or_foreign_id_does_not_open() {
        let (id, _) = ticket().seal(b"secret");
        assert!(Ticket::open(&id, b"another secret").is_none());
        // Flip each character in turn: none of the variants may open.
        for at in 0..id.len() {
            let mut chars: Vec<char> = id.chars().collect();
            chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
            let tampered: String = chars.into_iter().collect();
            if tampered != id {
                assert!(Ticket::open(&tampered, b"secret").is_none(), "flipped at {at}");
            }
        }
        for junk in ["", "abc", "!!!!", &id[..id.len() - 1]] {
            assert!(Ticket::open(junk, b"secret").is_none(), "{junk:?}");
        }
    }

    #[test]
    fn identical_requests_get_different_ids_through_the_nonce() {
        let a = ticket();
        let b = Ticket { nonce: [9, 9, 9, 9], ..ticket() };
        assert_ne!(a.seal(b"k").0, b.seal(b"k").0);
    }
}
