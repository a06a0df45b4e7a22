//! Text made fit to show: one line, at most so many characters.

/// `s` on one line (runs of whitespace become one space), at most `max`
/// characters: longer text is cut and ends in "…".
pub fn clip(s: &str, max: usize) -> String {
    let line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max { line } else { line.chars().take(max.saturating_sub(1)).chain(['…']).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_clipped_to_one_short_line() {
        assert_eq!(clip("a  cat\n on\ta mat", 100), "a cat on a mat");
        assert_eq!(clip("abcdef", 6), "abcdef");
        assert_eq!(clip("abcdefg", 6), "abcde…");
        assert_eq!(clip("abcdefg", 6).chars().count(), 6);
        assert_eq!(clip("", 3), "");
    }
}
