//! `Stripe-Signature`, as Stripe signs its events: `t=<unix seconds>` and
//! one or more `v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed by the
//! endpoint's signing secret (`whsec_…`, the whole string). A signature is
//! accepted when any `v1` matches (Stripe lists several while a secret is
//! rolled) and `t` is within [`TOLERANCE_SECS`] of now.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far `t` may be from now.
pub const TOLERANCE_SECS: u64 = 300;
/// The header.
pub const HEADER: &str = "Stripe-Signature";

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no signature")]
    Missing,
    #[error("the signature header cannot be read")]
    Malformed,
    #[error("the signature is too old or from the future")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

fn mac(secret: &str, t: u64, payload: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// The header value that signs `payload` at `t` with `secret`.
pub fn sign(secret: &str, payload: &[u8], t: u64) -> String {
    let digest = mac(secret, t, payload).finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// Checks `header` (the `Stripe-Signature` value) over `payload` at `now`
/// (unix seconds).
pub fn verify(header: Option<&str>, payload: &[u8], secret: &str, now: u64) -> Result<(), SignatureError> {
    let header = header.map(str::trim).filter(|h| !h.is_empty()).ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let (key, value) = part.trim().split_once('=').ok_or(SignatureError::Malformed)?;
        match key {
            "t" if t.is_none() => t = Some(value.parse::<u64>().map_err(|_| SignatureError::Malformed)?),
            "t" => return Err(SignatureError::Malformed),
            "v1" => candidates.push(decode_hex(value).ok_or(SignatureError::Malformed)?),
            // Other schemes (v0, a test scheme) are not ours to check.
            _ => {}
        }
        if candidates.len() > 8 {
            return Err(SignatureError::Malformed);
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    if t.abs_diff(now) > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    // `verify_slice` compares in constant time.
    if candidates.iter().any(|c| mac(secret, t, payload).verify_slice(c).is_ok()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";

    #[test]
    fn a_signed_payload_verifies_and_nothing_else_does() {
        let body = br#"{"id":"evt_1","type":"checkout.session.completed"}"#;
        let header = sign(SECRET, body, 1_700_000_000);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(verify(Some(&header), body, SECRET, 1_700_000_100), Ok(()));
        assert_eq!(verify(Some(&header), b"{}", SECRET, 1_700_000_100), Err(SignatureError::Mismatch));
        assert_eq!(verify(Some(&header), body, "whsec_other", 1_700_000_100), Err(SignatureError::Mismatch));
        assert_eq!(verify(Some(&header), body, SECRET, 1_700_000_301), Err(SignatureError::Stale));
        assert_eq!(verify(Some(&header), body, SECRET, 1_699_999_699), Err(SignatureError::Stale));
        assert_eq!(verify(None, body, SECRET, 1_700_000_000), Err(SignatureError::Missing));
        for bad in ["garbage", "t=abc,v1=00", "t=1,t=2,v1=00", "v1=zz"] {
            assert_eq!(verify(Some(bad), body, SECRET, 1_700_000_000), Err(SignatureError::Malformed), "{bad}");
        }
        assert_eq!(verify(Some("t=1700000000"), body, SECRET, 1_700_000_000), Err(SignatureError::Mismatch));
    }

    #[test]
    fn any_v1_may_match_as_while_a_secret_is_rolled() {
        let body = b"payload";
        let good = sign(SECRET, body, 42);
        let old = sign("whsec_old", body, 42);
        let both = format!("{old},{},v0=abc", good.split_once(',').map(|(_, v)| v).unwrap_or_default());
        assert_eq!(verify(Some(&both), body, SECRET, 42), Ok(()));
    }

    #[test]
    fn the_digest_is_stripes() {
        // Python: hmac.new(b"whsec_test_secret", b"1.{}", hashlib.sha256).hexdigest()
        assert_eq!(sign(SECRET, b"{}", 1), "t=1,v1=5bf3deb7e4bfc9899b179a53c4675ef3ab9ca8c5cd0df9e0ed182c5d798cfbb2");
    }
}
