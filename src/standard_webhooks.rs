//! Standard Webhooks (<https://www.standardwebhooks.com>) as Replicate uses
//! it: the key is the base64 after `whsec_`; a message is signed as
//! `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` and sent with the
//! `webhook-id`, `webhook-timestamp` and `webhook-signature` headers.
//!
//! Shared by the simulator (which signs) and the app's webhook receiver
//! (which verifies), so both sides agree byte for byte. Verification never
//! panics: every malformed input is an error.

use std::fmt;

use base64::{
    Engine, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig, general_purpose::STANDARD},
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the message id (the same on every retry of one message).
pub const ID_HEADER: &str = "webhook-id";
/// Header carrying the send time, in seconds since the Unix epoch.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Header carrying space-separated `v1,<base64>` signatures.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// A message whose timestamp is further than this from now, either way, is
/// refused, so a captured message cannot be replayed later.
pub const TOLERANCE_SECS: u64 = 5 * 60;
/// Shortest key accepted: anything shorter is a configuration mistake.
pub const MIN_KEY_BYTES: usize = 16;

const PREFIX: &str = "whsec_";
/// Bytes in an HMAC-SHA256 signature.
const SIGNATURE_BYTES: usize = 32;
/// Keys are decoded whether or not their base64 padding was kept.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A signing key. Its `Debug` does not show the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

/// Why a `whsec_…` value is not a usable key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret must start with whsec_")]
    MissingPrefix,
    #[error("the part after whsec_ is not base64")]
    NotBase64,
    #[error("the key is {0} bytes; at least {MIN_KEY_BYTES} are needed")]
    TooShort(usize),
}

impl Secret {
    /// Parses `whsec_<base64>` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text.trim().strip_prefix(PREFIX).ok_or(SecretError::MissingPrefix)?;
        let key = LENIENT.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if key.len() < MIN_KEY_BYTES {
            return Err(SecretError::TooShort(key.len()));
        }
        Ok(Self { key })
    }

    /// A key from raw bytes (e.g. derived from another secret).
    pub fn from_bytes(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    /// The key as `whsec_<base64>`, the form providers hand out. Named so a
    /// call site reads as the disclosure it is.
    pub fn expose_whsec(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.key))
    }

    fn mac(&self, msg_id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = SecretError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// The `webhook-signature` value for a message: `v1,<base64>`.
pub fn sign(secret: &Secret, msg_id: &str, timestamp_secs: u64, body: &[u8]) -> String {
    let digest = secret.mac(msg_id, &timestamp_secs.to_string(), body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(digest))
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("the webhook-timestamp header is not a number of seconds")]
    BadTimestamp,
    #[error("the message is more than {TOLERANCE_SECS} s old")]
    TooOld,
    #[error("the message is timestamped more than {TOLERANCE_SECS} s in the future")]
    TooNew,
    #[error("the webhook-signature header has no well-formed v1 signature")]
    NoSignature,
    #[error("no signature matches")]
    Mismatch,
}

/// Checks a received message: `id`, `timestamp` and `signature` are the
/// three header values (`None` when absent), `now_secs` the receiver's
/// clock. Any one `v1` entry of the signature list may match; others
/// (other versions, malformed entries) are skipped.
pub fn verify(
    secret: &Secret,
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: u64,
) -> Result<(), VerifyError> {
    let id = id.filter(|v| !v.is_empty()).ok_or(VerifyError::MissingHeader(ID_HEADER))?;
    let timestamp = timestamp.filter(|v| !v.is_empty()).ok_or(VerifyError::MissingHeader(TIMESTAMP_HEADER))?;
    let signature = signature.filter(|v| !v.is_empty()).ok_or(VerifyError::MissingHeader(SIGNATURE_HEADER))?;

    // Digits only: `u64::from_str` would also take a leading `+`.
    if !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::BadTimestamp);
    }
    let sent: u64 = timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
    if sent < now_secs.saturating_sub(TOLERANCE_SECS) {
        return Err(VerifyError::TooOld);
    }
    if sent > now_secs.saturating_add(TOLERANCE_SECS) {
        return Err(VerifyError::TooNew);
    }

    let mac = secret.mac(id, timestamp, body);
    let mut any_well_formed = false;
    for entry in signature.split(' ').filter(|e| !e.is_empty()) {
        let Some(("v1", encoded)) = entry.split_once(',') else { continue };
        let Ok(candidate) = STANDARD.decode(encoded) else { continue };
        if candidate.len() != SIGNATURE_BYTES {
            continue;
        }
        any_well_formed = true;
        // Constant-time comparison (the `hmac` crate uses `subtle`).
        if mac.clone().verify_slice(&candidate).is_ok() {
            return Ok(());
        }
    }
    Err(if any_well_formed { VerifyError::Mismatch } else { VerifyError::NoSignature })
}

/// [`verify`] with the three values read from HTTP headers (a value that is
/// not visible ASCII counts as missing).
pub fn verify_headers(
    secret: &Secret,
    headers: &axum::http::HeaderMap,
    body: &[u8],
    now_secs: u64,
) -> Result<(), VerifyError> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    verify(secret, get(ID_HEADER), get(TIMESTAMP_HEADER), get(SIGNATURE_HEADER), body, now_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The published Standard Webhooks test vector.
    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TS: u64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn secret() -> Secret {
        Secret::parse(VECTOR_SECRET).unwrap_or_else(|e| panic!("{e}"))
    }

    fn check(signature: Option<&str>, now: u64) -> Result<(), VerifyError> {
        verify(&secret(), Some(VECTOR_ID), Some(&VECTOR_TS.to_string()), signature, VECTOR_BODY, now)
    }

    #[test]
    fn the_published_vector_signs_and_verifies() {
        assert_eq!(sign(&secret(), VECTOR_ID, VECTOR_TS, VECTOR_BODY), VECTOR_SIGNATURE);
        assert_eq!(check(Some(VECTOR_SIGNATURE), VECTOR_TS), Ok(()));
    }

    #[test]
    fn a_secret_round_trips_and_bad_ones_are_refused_plainly() {
        assert_eq!(secret().expose_whsec(), VECTOR_SECRET);
        assert_eq!(Secret::parse(&format!("  {VECTOR_SECRET}\n")), Ok(secret()));
        assert_eq!("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse::<Secret>(), Ok(secret()));
        let unpadded = Secret::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAA").map(|s| s.key.len());
        assert_eq!(unpadded, Ok(17), "padding is optional");
        assert_eq!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Err(SecretError::MissingPrefix));
        assert_eq!(Secret::parse(""), Err(SecretError::MissingPrefix));
        assert_eq!(Secret::parse("whsec_not base64!"), Err(SecretError::NotBase64));
        assert_eq!(Secret::parse("whsec_"), Err(SecretError::TooShort(0)));
        assert_eq!(Secret::parse("whsec_c2hvcnQ="), Err(SecretError::TooShort(5)));
        assert!(!format!("{:?}", secret()).contains("MfKQ"));
    }

    #[test]
    fn any_v1_entry_of_the_list_may_match() {
        let listed = format!("v1,Zm9vYmFyYmF6Zm9vYmFyYmF6Zm9vYmFyYmF6MTIzNDU= v1a,xyz {VECTOR_SIGNATURE}");
        assert_eq!(check(Some(&listed), VECTOR_TS), Ok(()));
        assert_eq!(check(Some(&format!("  {VECTOR_SIGNATURE}  ")), VECTOR_TS), Ok(()));
    }

    #[test]
    fn timestamps_must_be_within_five_minutes_either_way() {
        assert_eq!(check(Some(VECTOR_SIGNATURE), VECTOR_TS + TOLERANCE_SECS), Ok(()));
        assert_eq!(check(Some(VECTOR_SIGNATURE), VECTOR_TS - TOLERANCE_SECS), Ok(()));
        assert_eq!(check(Some(VECTOR_SIGNATURE), VECTOR_TS + TOLERANCE_SECS + 1), Err(VerifyError::TooOld));
        assert_eq!(check(Some(VECTOR_SIGNATURE), VECTOR_TS - TOLERANCE_SECS - 1), Err(VerifyError::TooNew));
        assert_eq!(check(Some(VECTOR_SIGNATURE), 0), Err(VerifyError::TooNew));
        assert_eq!(check(Some(VECTOR_SIGNATURE), u64::MAX), Err(VerifyError::TooOld));
    }

    #[test]
    fn a_changed_body_id_timestamp_or_key_does_not_verify() {
        let s = secret();
        let ts = VECTOR_TS.to_string();
        let sig = Some(VECTOR_SIGNATURE);
        let mismatch = Err(VerifyError::Mismatch);
        assert_eq!(verify(&s, Some(VECTOR_ID), Some(&ts), sig, br#"{"test": 2432232315}"#, VECTOR_TS), mismatch);
        assert_eq!(verify(&s, Some("msg_other"), Some(&ts), sig, VECTOR_BODY, VECTOR_TS), mismatch);
        let later = (VECTOR_TS + 1).to_string();
        assert_eq!(verify(&s, Some(VECTOR_ID), Some(&later), sig, VECTOR_BODY, VECTOR_TS), mismatch);
        let other = Secret::from_bytes(b"another key, sixteen bytes or more");
        assert_eq!(verify(&other, Some(VECTOR_ID), Some(&ts), sig, VECTOR_BODY, VECTOR_TS), mismatch);
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let s = secret();
        let ts = VECTOR_TS.to_string();
        let sig = Some(VECTOR_SIGNATURE);
        let missing = |name| Err(VerifyError::MissingHeader(name));
        assert_eq!(verify(&s, None, Some(&ts), sig, VECTOR_BODY, VECTOR_TS), missing(ID_HEADER));
        assert_eq!(verify(&s, Some(""), Some(&ts), sig, VECTOR_BODY, VECTOR_TS), missing(ID_HEADER));
        assert_eq!(verify(&s, Some(VECTOR_ID), None, sig, VECTOR_BODY, VECTOR_TS), missing(TIMESTAMP_HEADER));
        assert_eq!(check(None, VECTOR_TS), missing(SIGNATURE_HEADER));
        assert_eq!(check(Some(""), VECTOR_TS), missing(SIGNATURE_HEADER));
        for bad_ts in ["soon", "-1614265330", "+1614265330", "1614265330.5", " 1614265330", "99999999999999999999999"] {
            let got = verify(&s, Some(VECTOR_ID), Some(bad_ts), sig, VECTOR_BODY, VECTOR_TS);
            assert_eq!(got, Err(VerifyError::BadTimestamp), "{bad_ts:?}");
        }
        let no_signature = Err(VerifyError::NoSignature);
        for bad in [
            "v1,",
            "v1",
            " ",
            "v1,not base64!",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O==",
            "v1,AAAA",
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ",,,, v1,, ,v1",
        ] {
            assert_eq!(check(Some(bad), VECTOR_TS), no_signature, "{bad:?}");
        }
    }

    #[test]
    fn headers_are_read_by_their_standard_names() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(ID_HEADER, axum::http::HeaderValue::from_static(VECTOR_ID));
        headers.insert(TIMESTAMP_HEADER, axum::http::HeaderValue::from_static("1614265330"));
        headers.insert(SIGNATURE_HEADER, axum::http::HeaderValue::from_static(VECTOR_SIGNATURE));
        assert_eq!(verify_headers(&secret(), &headers, VECTOR_BODY, VECTOR_TS), Ok(()));
        headers.remove(ID_HEADER);
        assert_eq!(
            verify_headers(&secret(), &headers, VECTOR_BODY, VECTOR_TS),
            Err(VerifyError::MissingHeader(ID_HEADER))
        );
    }
}
