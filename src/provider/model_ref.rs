//! How a configured model reference (`owner/name`, `owner/name:version` or a
//! bare version id) becomes a create request, and the `Cancel-After` value.

use std::time::Duration;

/// Replicate's documented minimum for `Cancel-After`; shorter values are
/// raised to it rather than rejected.
const MIN_CANCEL_AFTER_SECS: u64 = 5;

/// Where a create goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModelRef<'a> {
    /// `POST /models/{owner}/{name}/predictions` (the model's latest version).
    Model { owner: &'a str, name: &'a str },
    /// `POST /predictions` with `"version": id`.
    Version { version: &'a str },
}

impl<'a> ModelRef<'a> {
    /// Parses a reference; the error says what is wrong with it.
    pub(crate) fn parse(reference: &'a str) -> Result<Self, String> {
        let reference = reference.trim();
        let bad = || format!("invalid model reference {reference:?}");
        if let Some((path, version)) = reference.split_once(':') {
            // The version id alone works on every revision of the API.
            let (owner, name) = path.split_once('/').ok_or_else(bad)?;
            return if is_name(owner) && is_name(name) && is_name(version) {
                Ok(Self::Version { version })
            } else {
                Err(bad())
            };
        }
        match reference.split_once('/') {
            Some((owner, name)) if is_name(owner) && is_name(name) => Ok(Self::Model { owner, name }),
            None if is_name(reference) => Ok(Self::Version { version: reference }),
            _ => Err(bad()),
        }
    }
}

/// Owner, model and version names: letters, digits, `-`, `_`, `.`.
pub(crate) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
}

/// `Cancel-After` in whole seconds (rounded up), at least the API's minimum.
pub(crate) fn cancel_after_value(after: Duration) -> String {
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    format!("{}s", secs.max(MIN_CANCEL_AFTER_SECS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_choose_the_endpoint() {
        assert_eq!(
            ModelRef::parse("black-forest-labs/flux-schnell"),
            Ok(ModelRef::Model { owner: "black-forest-labs", name: "flux-schnell" })
        );
        assert_eq!(
            ModelRef::parse("stability-ai/sdxl:39ed52f2a78e"),
            Ok(ModelRef::Version { version: "39ed52f2a78e" })
        );
        assert_eq!(ModelRef::parse("39ed52f2a78e934b"), Ok(ModelRef::Version { version: "39ed52f2a78e934b" }));
        for bad in ["", "a/", "/b", "a/b/c", "a/b:", "a:b", "a b/c", "../x", "a/b:c:d"] {
            assert!(ModelRef::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn cancel_after_is_whole_seconds_with_a_floor() {
        assert_eq!(cancel_after_value(Duration::from_secs(600)), "600s");
        assert_eq!(cancel_after_value(Duration::from_millis(90_500)), "91s");
        assert_eq!(cancel_after_value(Duration::from_millis(10)), "5s");
    }
}
