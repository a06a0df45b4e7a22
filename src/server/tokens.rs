//! Single-use tokens sent by mail (password resets, email verification):
//! 256 random bits, base64url, stored only as their SHA-256 digest, so a
//! copy of the database opens no account.

use base64::Engine;
use sha2::Digest;

/// Tokens longer than this are not looked up.
pub const MAX_LEN: usize = 100;

/// A fresh token and its digest.
pub fn fresh() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = digest(&token);
    (token, hash)
}

/// The digest a token is stored as (hex SHA-256).
pub fn digest(token: &str) -> String {
    sha2::Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_256_bit_and_kept_as_their_digest() {
        let (a, hash) = fresh();
        assert_eq!(a.len(), 43);
        assert_eq!(hash, digest(&a));
        assert_ne!(fresh().0, a);
        assert_eq!(digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
