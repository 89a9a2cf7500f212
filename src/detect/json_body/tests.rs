//! Unit tests of the streaming JSON scanner, fed whole and in pieces of every size.

use super::*;

fn scan_in_pieces(body: &[u8], piece: usize) -> Scan {
    let mut scanner = JsonScanner::default();
    for chunk in body.chunks(piece.max(1)) {
        scanner.feed(chunk);
    }
    scanner.finish()
}

/// The same body gives the same answer however it is cut into chunks.
fn scan_every_way(body: &[u8]) -> Scan {
    let whole = scan(body);
    for piece in [1, 2, 3, 7, 64] {
        assert_eq!(
            scan_in_pieces(body, piece),
            whole,
            "{piece}-byte chunks of {body:?}"
        );
    }
    whole
}

#[test]
fn payments_in_meta_are_found_in_every_spelling_and_place() {
    let x402 = Scan::Found(Protocol::X402Mcp);
    let mpp = Scan::Found(Protocol::MppMcp);
    for (body, expected) in [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"x402/payment":{"x402Version":2}}}}"#,
            x402,
        ),
        (
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"_meta":{"x402.payment":{}}}}"#,
            x402,
        ),
        (
            r#"{"params":{"_meta":{"org.paymentauth/credential":"abc"}}}"#,
            mpp,
        ),
        (
            r#"[{"jsonrpc":"2.0","method":"ping"},{"method":"tools/call","params":{"_meta":{"x402/payment":1}}}]"#,
            x402,
        ),
        (r#"{"params":{"_meta":{"\u0078402/payment":1}}}"#, x402),
        (r#"{"params":{"_meta":{"x402\/payment":1}}}"#, x402),
        (r#"{"params":{"_meta":{"X402_PAYMENT":1}}}"#, x402),
        (r#"{"params":{"_meta":{"x402":{"payment":1}}}}"#, x402),
        (
            r#"{"params":{"_meta":{"ORG.PaymentAuth/Credential":1}}}"#,
            mpp,
        ),
        ("\u{feff}{\"x402/payment\":1}", x402),
        ("{\"a\":1}\n{\"x402/payment\":1}\n", x402),
    ] {
        assert_eq!(scan_every_way(body.as_bytes()), expected, "{body}");
    }
}

#[test]
fn ordinary_json_is_clean() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x402/payment","arguments":{"note":"x402/payment"},"_meta":{"progressToken":1}}}"#,
        r#"[1, 2.5e-3, -4, true, false, null, "s\"\\\n\u00e9"]"#,
        r#"{"x402payment":1,"x4021":2,"org.paymentauthx":3}"#,
        "",
        "   \n",
        r#""just a string""#,
        "42",
        "{}",
        "[]",
        "{\"a\":[{},[],{\"b\":[]}]}",
    ] {
        assert_eq!(scan_every_way(body.as_bytes()), Scan::Clean, "{body}");
    }
}

#[test]
fn what_is_not_strict_json_is_unreadable() {
    for body in [
        &b"{'x402/payment': 1}"[..],
        b"{\"a\":1,}",
        b"[1,]",
        b"{\"a\" 1}",
        b"// comment\n{}",
        b"{\"a\":1",
        b"{\"a\":\"unterminated",
        b"\xff\xfe{\x00\"\x00",
        b"{\x00\"\x00a\x00\"\x00}\x00",
        b"{\"a\":\"\x01\"}",
        b"{\"a\":\"\\x\"}",
        b"{\"\\u00zz\":1}",
        b"[}",
        b"{]",
        b"]",
        b",",
    ] {
        assert!(
            matches!(scan_every_way(body), Scan::Unreadable(_)),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    let deep = "[".repeat(MAX_DEPTH + 1);
    assert!(matches!(scan(deep.as_bytes()), Scan::Unreadable(_)));
    let fine = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert_eq!(scan(fine.as_bytes()), Scan::Clean);
}

#[test]
fn a_payment_behind_padding_is_found_and_long_keys_are_compared_by_their_head() {
    let padding = "a".repeat(200_000);
    let body = format!(
        r#"{{"pad":"{padding}","jsonrpc":"2.0","method":"tools/call","params":{{"_meta":{{"x402/payment":1}}}}}}"#
    );
    assert_eq!(scan(body.as_bytes()), Scan::Found(Protocol::X402Mcp));
    let long_key = format!(r#"{{"x402/{}":1}}"#, "p".repeat(500));
    assert_eq!(scan(long_key.as_bytes()), Scan::Found(Protocol::X402Mcp));
    let long_other = format!(r#"{{"{}":1}}"#, "x".repeat(500));
    assert_eq!(scan(long_other.as_bytes()), Scan::Clean);
}

/// What serde_json reads as a document with a payment key, the scanner finds; what it
/// reads at all, the scanner reads.
#[test]
fn the_scanner_agrees_with_serde_json() {
    fn has_payment_key(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(map) => map.iter().any(|(key, value)| {
                payment_namespace(key.as_bytes(), key.len()).is_some() || has_payment_key(value)
            }),
            serde_json::Value::Array(items) => items.iter().any(has_payment_key),
            _ => false,
        }
    }
    for body in [
        r#"{"a":{"b":[{"x402/payment":{}}]}}"#,
        r#"{"a":{"b":[{"x402-payment":{}}]}}"#,
        r#"{"a":"x402/payment"}"#,
        r#"[[[[{"org.paymentauth/credential":null}]]]]"#,
        r#"{"\u0058402.payment":[]}"#,
    ] {
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        let found = matches!(scan(body.as_bytes()), Scan::Found(_));
        assert_eq!(found, has_payment_key(&value), "{body}");
    }
}
