//! Where a visitor goes after signing in: the `next` page they asked for,
//! only when it is a path on this site. Shared by the server (its redirects
//! of signed-out and signed-in visitors) and the pages (after a sign-in
//! with JavaScript).

/// Pages that need a signed-in person; a signed-out visitor is sent to
/// `/login?next=…`.
pub const PRIVATE_PAGES: &[&str] = &["/", "/history", "/account"];

/// `next` when it is a local path (`/…`, not `//…` or `/\…`, no scheme,
/// nothing a browser would read as another host); otherwise `/`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(|c| c.is_control() || c.is_whitespace())
                && path.len() <= 2048 =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// `/login?next=<path>`, with the path percent-encoded.
pub fn login_url(next: &str) -> String {
    if next == "/" {
        return "/login".to_owned();
    }
    let mut url = String::from("/login?next=");
    push_encoded(&mut url, next, b"-._~/");
    url
}

/// The generator with its form filled in: `/?prompt=…&model=…`, each value
/// percent-encoded; empty values are left out.
pub fn generator_url(fields: &[(&str, &str)]) -> String {
    let mut url = String::from("/");
    for (name, value) in fields.iter().filter(|(_, v)| !v.is_empty()) {
        url.push(if url.len() == 1 { '?' } else { '&' });
        url.push_str(name);
        url.push('=');
        push_encoded(&mut url, value, b"-._~");
    }
    url
}

/// Appends `text` percent-encoded: letters, digits and `keep` stay.
fn push_encoded(url: &mut String, text: &str, keep: &[u8]) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(safe_next(Some("/history")), "/history");
        assert_eq!(safe_next(Some("/history?cursor=1_x")), "/history?cursor=1_x");
        for hostile in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "evil.example",
            "javascript:alert(1)",
            "/\tevil",
            "/ /evil",
            "",
        ] {
            assert_eq!(safe_next(Some(hostile)), "/", "{hostile:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn the_login_url_carries_the_page_encoded() {
        assert_eq!(login_url("/"), "/login");
        assert_eq!(login_url("/history"), "/login?next=/history");
        assert_eq!(login_url("/history?cursor=1_a&x=y"), "/login?next=/history%3Fcursor%3D1_a%26x%3Dy");
    }

    #[test]
    fn the_generator_url_carries_every_field_encoded() {
        assert_eq!(generator_url(&[]), "/");
        assert_eq!(
            generator_url(&[("prompt", "a fox & a hen"), ("model", "a/b"), ("seed", ""), ("aspect_ratio", "16:9")]),
            "/?prompt=a%20fox%20%26%20a%20hen&model=a%2Fb&aspect_ratio=16%3A9"
        );
        assert_eq!(generator_url(&[("prompt", "é\n#")]), "/?prompt=%C3%A9%0A%23");
    }
}
