//! The request as a merchant's router will see it, for matching tools, categories and
//! host patterns.
//!
//! Rules are written against routes (`*/research/market*`), but an agent chooses the
//! bytes of its request line. Routers decode percent-escapes, resolve dot segments, fold
//! repeated slashes, and many (Express, ASP.NET, Spring) ignore case and `;` path
//! parameters, so `/%6Darket`, `/x/../market`, `//Market` and `/market;v=1` all reach the
//! handler of `/market`. Matching the raw path would let each of them escape a rule the
//! merchant still routes to. So both the request and every pattern are compared in one
//! normal form: decoded once (as a router does: `%256D` stays `%6D`), `\` read as `/`,
//! path parameters dropped, dot segments resolved, empty segments folded, ASCII lower case.
//! Hosts: lower case, without brackets or a trailing dot (`Shop.Example.` is `shop.example`).

use std::borrow::Cow;

/// `raw` (a request path, or a pattern's path) in the form routes are compared in.
pub fn normalize_path(raw: &str) -> String {
    let decoded = percent_decode(raw);
    let decoded = decoded.replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        let segment = segment.split(';').next().unwrap_or_default();
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let trailing_slash = !segments.is_empty()
        && (decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/.."));
    let mut normal = String::with_capacity(decoded.len() + 1);
    for segment in &segments {
        normal.push('/');
        normal.push_str(segment);
    }
    if normal.is_empty() || trailing_slash {
        normal.push('/');
    }
    normal.make_ascii_lowercase();
    normal
}

/// A host as routes compare it.
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let host = raw.trim_start_matches('[').trim_end_matches(']');
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.len() == raw.len() && !host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(host.to_ascii_lowercase())
}

/// Decodes each `%XX` once; a `%` not followed by two hex digits stays as it is. Bytes
/// that do not form UTF-8 become U+FFFD, which no pattern contains.
fn percent_decode(raw: &str) -> Cow<'_, str> {
    if !raw.contains('%') {
        return Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escape = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(|_| bytes[index + 1].is_ascii_hexdigit());
        match escape {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_a_router_folds_is_one_route() {
        for raw in [
            "/market-feed",
            "/%6Darket-feed",
            "/%6darket%2Dfeed",
            "/MARKET-feed",
            "//market-feed",
            "/x/../market-feed",
            "/./market-feed",
            "/x/%2e%2e/market-feed",
            "/market-feed;jsessionid=1",
            "\\market-feed",
            "/a/b/../../market-feed",
            "/../market-feed",
        ] {
            assert_eq!(normalize_path(raw), "/market-feed", "{raw}");
        }
    }

    #[test]
    fn decoding_happens_once_and_bad_escapes_stay() {
        assert_eq!(normalize_path("/%256Darket"), "/%6darket");
        assert_eq!(normalize_path("/100%"), "/100%");
        assert_eq!(normalize_path("/%zz/%4"), "/%zz/%4");
        assert_eq!(normalize_path("/%ff"), "/\u{fffd}");
        assert_eq!(normalize_path("/é%C3%A9"), "/éé");
    }

    #[test]
    fn roots_and_trailing_slashes() {
        assert_eq!(normalize_path(""), "/");
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path("/.."), "/");
        assert_eq!(normalize_path("/research/"), "/research/");
        assert_eq!(normalize_path("/research/x/.."), "/research/");
        assert_eq!(normalize_path("/research"), "/research");
    }

    #[test]
    fn hosts_fold_case_brackets_and_the_root_dot() {
        assert_eq!(normalize_host("Shop.Example."), "shop.example");
        assert_eq!(normalize_host("[::1]"), "::1");
        assert!(matches!(normalize_host("shop.example"), Cow::Borrowed(_)));
    }
}
