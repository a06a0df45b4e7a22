//! fal.ai's webhook signatures: ED25519 over
//! `request_id \n user_id \n timestamp \n hex(sha256(body))`, the
//! signature in hex, the public keys in a JSON Web Key Set. Signed by fal's
//! simulator, checked by the receiver (`POST /webhooks/fal`).

use axum::http::HeaderMap;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

pub const REQUEST_ID_HEADER: &str = "x-fal-webhook-request-id";
pub const USER_ID_HEADER: &str = "x-fal-webhook-user-id";
pub const TIMESTAMP_HEADER: &str = "x-fal-webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "x-fal-webhook-signature";

/// How far a timestamp may be from now, either way, in seconds.
pub const TOLERANCE_SECS: u64 = 300;
/// Most keys a key set may hold (more are ignored).
const MAX_KEYS: usize = 16;
/// Longest request and user id taken.
const MAX_ID_CHARS: usize = 256;

/// Why an event was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A header is missing, too long or not text.
    MissingHeader,
    /// The timestamp is not a number, or not within the tolerance.
    Stale,
    /// The signature is not 64 bytes of hex.
    BadSignature,
    /// No key signed it.
    NoMatch,
}

/// What is signed.
fn message(request_id: &str, user_id: &str, timestamp: u64, body: &[u8]) -> Vec<u8> {
    let digest = hex::encode(Sha256::digest(body));
    format!("{request_id}\n{user_id}\n{timestamp}\n{digest}").into_bytes()
}

/// The hex signature of an event, as fal sends it.
pub fn sign(key: &SigningKey, request_id: &str, user_id: &str, timestamp: u64, body: &[u8]) -> String {
    hex::encode(key.sign(&message(request_id, user_id, timestamp, body)).to_bytes())
}

/// The signed headers' request id, once `headers` and `body` are shown
/// to be signed by one of `keys` within the tolerance of `now_secs`.
pub fn verify<'h>(
    keys: &[VerifyingKey],
    headers: &'h HeaderMap,
    body: &[u8],
    now_secs: u64,
) -> Result<&'h str, Refused> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= MAX_ID_CHARS)
            .ok_or(Refused::MissingHeader)
    };
    let (request_id, user_id) = (header(REQUEST_ID_HEADER)?, header(USER_ID_HEADER)?);
    let timestamp = fresh(header(TIMESTAMP_HEADER)?, now_secs)?;
    let signature = signature(header(SIGNATURE_HEADER)?)?;
    let message = message(request_id, user_id, timestamp, body);
    if keys.iter().any(|key| key.verify(&message, &signature).is_ok()) { Ok(request_id) } else { Err(Refused::NoMatch) }
}

/// Checks the headers that cost nothing to check (present, fresh, a
/// well-formed signature) before the body is read.
pub fn precheck(headers: &HeaderMap, now_secs: u64) -> Result<(), Refused> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).ok_or(Refused::MissingHeader);
    for name in [REQUEST_ID_HEADER, USER_ID_HEADER] {
        header(name).map(str::len).ok().filter(|&n| n > 0 && n <= MAX_ID_CHARS).ok_or(Refused::MissingHeader)?;
    }
    fresh(header(TIMESTAMP_HEADER)?, now_secs)?;
    signature(header(SIGNATURE_HEADER)?).map(drop)
}

fn fresh(timestamp: &str, now_secs: u64) -> Result<u64, Refused> {
    let timestamp: u64 = timestamp.trim().parse().map_err(|_| Refused::Stale)?;
    if timestamp.abs_diff(now_secs) > TOLERANCE_SECS {
        return Err(Refused::Stale);
    }
    Ok(timestamp)
}

fn signature(hex_text: &str) -> Result<Signature, Refused> {
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(hex_text.trim(), &mut bytes).map_err(|_| Refused::BadSignature)?;
    Ok(Signature::from_bytes(&bytes))
}

/// A key set with `key`, as fal serves it (`/.well-known/jwks.json`).
pub fn jwks(key: &VerifyingKey) -> serde_json::Value {
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes());
    serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "x": x}]})
}

/// The ED25519 keys of a JSON Web Key Set (others are skipped); at most
/// [`MAX_KEYS`].
pub fn parse_jwks(body: &[u8]) -> Result<Vec<VerifyingKey>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<Jwk>,
    }
    #[derive(serde::Deserialize)]
    struct Jwk {
        #[serde(default)]
        kty: String,
        #[serde(default)]
        crv: String,
        #[serde(default)]
        x: String,
    }
    let set: Set = serde_json::from_slice(body).map_err(|e| format!("not a key set: {e}"))?;
    let keys: Vec<VerifyingKey> = set
        .keys
        .iter()
        .filter(|k| k.kty == "OKP" && k.crv == "Ed25519")
        .filter_map(|k| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(k.x.trim_end_matches('=')).ok())
        .filter_map(|x| <[u8; 32]>::try_from(x.as_slice()).ok())
        .filter_map(|x| VerifyingKey::from_bytes(&x).ok())
        .take(MAX_KEYS)
        .collect();
    if keys.is_empty() { Err("the key set has no ED25519 key".into()) } else { Ok(keys) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(request_id: &str, timestamp: u64, signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID_HEADER, request_id.parse().unwrap());
        h.insert(USER_ID_HEADER, "user-1".parse().unwrap());
        h.insert(TIMESTAMP_HEADER, timestamp.to_string().parse().unwrap());
        h.insert(SIGNATURE_HEADER, signature.parse().unwrap());
        h
    }

    #[test]
    fn a_signed_event_verifies_with_its_key_only() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let body = br#"{"request_id":"r1","status":"OK"}"#;
        let signed = sign(&key, "r1", "user-1", 1_000, body);
        let good = headers("r1", 1_000, &signed);
        assert_eq!(verify(&[key.verifying_key()], &good, body, 1_100), Ok("r1"));
        // Any key of the set may have signed it.
        assert_eq!(verify(&[other.verifying_key(), key.verifying_key()], &good, body, 1_100), Ok("r1"));
        assert_eq!(verify(&[other.verifying_key()], &good, body, 1_100), Err(Refused::NoMatch), "another key");
        assert_eq!(verify(&[key.verifying_key()], &good, b"{}", 1_100), Err(Refused::NoMatch), "another body");
        let moved = headers("r2", 1_000, &signed);
        assert_eq!(verify(&[key.verifying_key()], &moved, body, 1_100), Err(Refused::NoMatch), "another request");
        assert_eq!(verify(&[key.verifying_key()], &good, body, 1_301), Err(Refused::Stale));
        assert_eq!(verify(&[key.verifying_key()], &good, body, 699), Err(Refused::Stale));
        let short = headers("r1", 1_000, "abcd");
        assert_eq!(verify(&[key.verifying_key()], &short, body, 1_000), Err(Refused::BadSignature));
        assert_eq!(precheck(&good, 1_000), Ok(()));
        assert_eq!(precheck(&HeaderMap::new(), 1_000), Err(Refused::MissingHeader));
    }

    #[test]
    fn key_sets_round_trip_and_skip_other_keys() {
        let key = SigningKey::from_bytes(&[9; 32]).verifying_key();
        let set = serde_json::to_vec(&jwks(&key)).unwrap();
        assert_eq!(parse_jwks(&set), Ok(vec![key]));
        let mixed = br#"{"keys":[{"kty":"RSA","n":"x","e":"AQAB"},{"kty":"OKP","crv":"X25519","x":"AAAA"}]}"#;
        assert!(parse_jwks(mixed).is_err());
        assert!(parse_jwks(b"[]").is_err());
    }
}
