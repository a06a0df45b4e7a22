//! Prompt directives: `#word` tokens (any case) that make the simulator take
//! a particular path, so any test, in a browser or over HTTP, can force it.

/// The directives found in a prompt.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Directives {
    /// `#fail`: the prediction ends `failed` with an `error`.
    pub fail: bool,
    /// `#error`: the first 3 GETs of the prediction answer 500.
    pub error: bool,
    /// `#ratelimit`: the first 3 GETs answer 429 with a retry hint.
    pub ratelimit: bool,
    /// `#huge`: the output is larger than the configured `huge_bytes`.
    pub huge: bool,
    /// `#notimage`: the output is an HTML page.
    pub notimage: bool,
    /// `#expire`: the output URL is already gone when it is reported.
    pub expire: bool,
    /// `#slow`: the prediction takes 60 s.
    pub slow: bool,
    /// `#hook-dup`: the completed webhook is delivered twice, then a stale
    /// (still processing) one after it.
    pub hook_dup: bool,
    /// `#hook-lost`: no completed webhook is sent (start and logs still are).
    pub hook_lost: bool,
    /// `#hook-late`: the completed webhook comes 10 s after completion.
    pub hook_late: bool,
    /// `#bad-output`: the prediction's last output file answers 404 (the
    /// others are served), so one image of several cannot be had.
    pub bad_output: bool,
    /// `#ms=N` (an extension of the contract's list): the prediction takes
    /// N milliseconds, whatever the configured range, so a test can order
    /// finishes.
    pub duration_ms: Option<u64>,
}

impl Directives {
    /// Finds `#word` tokens; `#failure` or `abc#fail` are not directives.
    pub(super) fn parse(prompt: &str) -> Self {
        let mut found = Self::default();
        let mut previous = ' ';
        for (at, c) in prompt.char_indices() {
            if c == '#' && !previous.is_alphanumeric() {
                let raw: String = prompt[at + 1..].chars().take_while(|c| c.is_alphanumeric()).collect();
                let word = raw.to_lowercase();
                if word == "ms" {
                    let rest = &prompt[at + 3..];
                    if let Some(digits) = rest.strip_prefix('=') {
                        let digits: String = digits.chars().take_while(char::is_ascii_digit).collect();
                        found.duration_ms = digits.parse().ok().filter(|ms| *ms <= 600_000);
                    }
                }
                if word == "hook" || word == "bad" {
                    // `#hook-dup`, `#bad-output`: the `-` ends a word elsewhere
                    // (`#fail-safe` is `#fail`).
                    let rest = &prompt[at + 1 + raw.len()..];
                    if let Some(suffix) = rest.strip_prefix('-') {
                        let suffix: String = suffix.chars().take_while(|c| c.is_alphanumeric()).collect();
                        found.set_hyphenated(&word, &suffix.to_lowercase());
                    }
                }
                found.set(&word);
            }
            previous = c;
        }
        found
    }

    fn set(&mut self, word: &str) {
        match word {
            "fail" => self.fail = true,
            "error" => self.error = true,
            "ratelimit" => self.ratelimit = true,
            "huge" => self.huge = true,
            "notimage" => self.notimage = true,
            "expire" => self.expire = true,
            "slow" => self.slow = true,
            _ => {}
        }
    }

    fn set_hyphenated(&mut self, word: &str, suffix: &str) {
        match (word, suffix) {
            ("hook", "dup") => self.hook_dup = true,
            ("hook", "lost") => self.hook_lost = true,
            ("hook", "late") => self.hook_late = true,
            ("bad", "output") => self.bad_output = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_case_insensitive_whole_tokens() {
        let d = Directives::parse("A cat #FAIL, then #Slow.\n#huge");
        assert_eq!(d, Directives { fail: true, slow: true, huge: true, ..Directives::default() });
        let all = Directives::parse("#fail #error #ratelimit #huge #notimage #expire #slow");
        assert!(all.fail && all.error && all.ratelimit && all.huge);
        assert!(all.notimage && all.expire && all.slow);
    }

    #[test]
    fn a_duration_can_be_asked_for() {
        assert_eq!(Directives::parse("quick #ms=1500").duration_ms, Some(1500));
        assert_eq!(Directives::parse("#MS=20 #slow").duration_ms, Some(20));
        assert_eq!(Directives::parse("#ms=").duration_ms, None);
        assert_eq!(Directives::parse("#ms=9999999").duration_ms, None);
        assert_eq!(Directives::parse("a#ms=5").duration_ms, None);
    }

    #[test]
    fn webhook_directives_are_hyphenated() {
        let d = Directives::parse("a cat #hook-dup, #HOOK-Lost\n#hook-late.");
        assert!(d.hook_dup && d.hook_lost && d.hook_late);
        assert!(Directives::parse("#fail-safe").fail, "a hyphen still ends other words");
        // Lower-casing may change byte lengths (the Kelvin sign becomes `k`):
        // parsing must not slice inside a character.
        assert!(Directives::parse("#hoo\u{212A}-dup").hook_dup);
    }

    #[test]
    fn bad_output_is_hyphenated_too() {
        let d = Directives::parse("three foxes, one lost #bad-output");
        assert_eq!(d, Directives { bad_output: true, ..Directives::default() });
        assert!(Directives::parse("#BAD-Output.").bad_output);
        assert!(!Directives::parse("#bad-hook").hook_dup && !Directives::parse("#hook-output").bad_output);
    }

    #[test]
    fn lookalikes_are_not_directives() {
        for prompt in [
            "a #failure",
            "abc#fail",
            "fail",
            "# fail",
            "#ratelimits",
            "a cat",
            "#hook",
            "#hook-",
            "#hook-dups",
            "#hook dup",
            "a#hook-dup",
            "#hooks-dup",
            "#hook_dup",
            "#bad",
            "#bad-",
            "#bad-outputs",
            "#bad_output",
            "#bad output",
            "a#bad-output",
            "#hook-output",
            "#bad-dup",
        ] {
            assert_eq!(Directives::parse(prompt), Directives::default(), "{prompt:?}");
        }
    }
}
