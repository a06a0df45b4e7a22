//! Stateless prediction ids: everything the simulator needs to answer for a
//! prediction, packed and authenticated with a truncated HMAC-SHA256, in
//! URL-safe base64. A tampered or foreign id does not open.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Format version, so a future layout can coexist with old ids.
const FORMAT: u8 = 1;
/// Bytes of the HMAC kept in the id.
const TAG_LEN: usize = 16;
/// Fixed part: format, created, duration, cancel-after, nonce.
const HEADER_LEN: usize = 1 + 8 + 4 + 4 + 4;
/// Longest id we try to decode (prompts are capped well below this).
const MAX_ID_LEN: usize = 16 * 1024;

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
}

impl Ticket {
    /// Packs and signs the ticket into a URL-safe id; also returns the
    /// id's tag, as [`Ticket::open`] would.
    pub(super) fn seal(&self, secret: &[u8]) -> (String, Tag) {
        let mut bytes = Vec::with_capacity(HEADER_LEN + 4 + self.prompt.len() + TAG_LEN + 64);
        bytes.push(FORMAT);
        bytes.extend_from_slice(&self.created_ms.to_be_bytes());
        bytes.extend_from_slice(&self.duration_ms.to_be_bytes());
        bytes.extend_from_slice(&self.cancel_after_ms.to_be_bytes());
        bytes.extend_from_slice(&self.nonce);
        push_short_str(&mut bytes, &self.model);
        push_short_str(&mut bytes, &self.version);
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
        if reader.take(1)? != [FORMAT] {
            return None;
        }
        let ticket = Self {
            created_ms: u64::from_be_bytes(reader.take(8)?.try_into().ok()?),
            duration_ms: u32::from_be_bytes(reader.take(4)?.try_into().ok()?),
            cancel_after_ms: u32::from_be_bytes(reader.take(4)?.try_into().ok()?),
            nonce: reader.take(4)?.try_into().ok()?,
            model: reader.short_str()?,
            version: reader.short_str()?,
            prompt: String::from_utf8(reader.0.to_vec()).ok()?,
        };
        Some((ticket, tag.try_into().ok()?))
    }
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

    fn short_str(&mut self) -> Option<String> {
        let len = usize::from(*self.take(1)?.first()?);
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> Ticket {
        Ticket {
            created_ms: 1_700_000_000_123,
            duration_ms: 12_345,
            cancel_after_ms: 600_000,
            nonce: [1, 2, 3, 4],
            model: "stability-ai/sdxl".into(),
            version: String::new(),
            prompt: "a lighthouse at dusk, ünïcode ☀ #slow".into(),
        }
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
