//! Stateless prediction ids: everything the simulator needs to answer for a
//! prediction, packed and authenticated with a truncated HMAC-SHA256, in
//! URL-safe base64. A tampered or foreign id does not open.
//!
//! Layout, all integers big-endian:
//! - format 1 (before model inputs; still opened): format, created (u64),
//!   duration (u32), cancel-after (u32), nonce (4 bytes), model and version
//!   (u8 length + bytes each), then the prompt to the end;
//! - format 2 (minted now): the same up to the version, then the inputs:
//!   aspect ratio (u8 code, 0 = none), `num_outputs` (u8, 0 = not given),
//!   flags (u8: seed given, negative prompt given), seed (u32), output
//!   format (u8 code, 0 = none), negative prompt (u16 length + bytes), then
//!   the prompt to the end.
//!
//! The HMAC tag follows the payload.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::inputs::{AspectRatio, Inputs, MAX_OUTPUTS, OutputFormat, Seed};

type HmacSha256 = Hmac<Sha256>;

/// Ids from before model inputs: they open with [`Inputs::from_prompt`].
const FORMAT_V1: u8 = 1;
/// The format minted now: with model inputs.
const FORMAT_V2: u8 = 2;
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
        let capacity = HEADER_LEN + INPUTS_LEN + 2 + 255 * 2 + negative.len() + self.prompt.len() + TAG_LEN;
        let mut bytes = Vec::with_capacity(capacity);
        bytes.push(FORMAT_V2);
        bytes.extend_from_slice(&self.created_ms.to_be_bytes());
        bytes.extend_from_slice(&self.duration_ms.to_be_bytes());
        bytes.extend_from_slice(&self.cancel_after_ms.to_be_bytes());
        bytes.extend_from_slice(&self.nonce);
        push_short_str(&mut bytes, &self.model);
        push_short_str(&mut bytes, &self.version);
        push_inputs(&mut bytes, &self.inputs);
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
        if format != FORMAT_V1 && format != FORMAT_V2 {
            return None;
        }
        let created_ms = u64::from_be_bytes(reader.array()?);
        let duration_ms = reader.u32()?;
        let cancel_after_ms = reader.u32()?;
        let nonce = reader.array()?;
        let model = reader.short_str()?;
        let version = reader.short_str()?;
        let inputs = if format == FORMAT_V2 { Some(read_inputs(&mut reader)?) } else { None };
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
    Some(Inputs { aspect_ratio, num_outputs, seed, negative_prompt, output_format })
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

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
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
            },
        }
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
        future[0] = 3;
        assert!(Ticket::open(&sign(&future, b"k"), b"k").is_none(), "an unknown format");
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
