//! The JSON body scanner that finds x402 and MPP payments in MCP (JSON-RPC) bodies
//! (`purser::detect::json_body`), on arbitrary bytes. The first byte picks a chunk size:
//! the answer must not depend on how the body is cut into chunks. And it must agree with
//! serde_json: a document serde_json reads is never unreadable to the scanner, and one
//! with a payment key anywhere is found.

#![no_main]

use libfuzzer_sys::fuzz_target;
use purser::detect::json_body::{payment_key, scan, JsonScanner, Scan};

fn has_payment_key(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Object(map) => map
            .iter()
            .any(|(key, value)| payment_key(key).is_some() || has_payment_key(value)),
        serde_json::Value::Array(items) => items.iter().any(has_payment_key),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else {
        return;
    };
    let whole = scan(body);
    let mut scanner = JsonScanner::default();
    for chunk in body.chunks(usize::from(cut).max(1)) {
        scanner.feed(chunk);
    }
    assert_eq!(scanner.finish(), whole, "chunking changed the answer");
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        assert!(
            !matches!(whole, Scan::Unreadable(_)),
            "serde_json reads what the scanner calls unreadable: {whole:?}"
        );
        if has_payment_key(&value) {
            // (A document with repeated keys may hide a payment from serde_json, whose
            // map keeps the last; the scanner sees every key, so only this direction holds.)
            assert!(matches!(whole, Scan::Found(_)), "a payment key was missed");
        }
    }
});
