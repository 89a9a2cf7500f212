//! Path and host normalisation (`policy::route`): what rules match a request against.
//! Input: `PATH` or `PATH\0HOST`. The normal form never panics and is what it says: one
//! leading `/`, no empty, `.` or `..` segments, no `\`, no `;` parameters, no ASCII upper
//! case; a pattern written in normal form matches its own normal path (for paths an HTTP
//! request can carry).

#![no_main]

use libfuzzer_sys::fuzz_target;
use purser::policy::route::{normalize_host, normalize_path};
use purser::policy::values::EndpointPattern;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (path, host) = text.split_once('\0').unwrap_or((&text, "api.example.com"));
    let normal = normalize_path(path);
    assert!(normal.starts_with('/'), "{path:?} -> {normal:?}");
    let inner = normal.trim_end_matches('/');
    for segment in inner.split('/').skip(1) {
        assert!(!matches!(segment, "" | "." | ".."), "{path:?} -> {normal:?}");
    }
    assert!(!normal.contains('\\') && !normal.contains(';'), "{normal:?}");
    assert!(!normal.bytes().any(|b| b.is_ascii_uppercase()), "{normal:?}");
    let host = normalize_host(host);
    assert!(!host.bytes().any(|b| b.is_ascii_uppercase()), "{host:?}");
    // A pattern's text is trimmed when it loads, and request paths carry no spaces or
    // control characters (the HTTP parser refuses them), so only such paths must match
    // their own pattern.
    let plain = |c: char| c != '*' && c != '%' && !c.is_whitespace() && !c.is_control();
    if normal.chars().all(plain) {
        if let Ok(pattern) = EndpointPattern::parse(&format!("*{normal}")) {
            assert!(pattern.matches("api.example.com", 443, &normal), "{normal:?}");
        }
    }
});
