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
    for b in next.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
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
}
