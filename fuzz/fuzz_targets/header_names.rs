//! The payment detector's view of request and response headers (`purser::detect`), on
//! arbitrary header lists: input lines `name: value`. Names are compared after
//! lower-casing and mapping separators to `-`; whatever is stripped is gone in every
//! spelling.

#![no_main]

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use libfuzzer_sys::fuzz_target;
use purser::detect::{self, names};

fn header_map(data: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) {
            map.append(name, value);
        }
    }
    map
}

fuzz_target!(|data: &[u8]| {
    let mut headers = header_map(data);
    for name in headers.keys() {
        let role = names::role(name.as_str());
        assert_eq!(role, names::role(&names::canonical(name.as_str())));
    }
    let found = detect::head_payment(&headers);
    if let Ok(Some(_)) = &found {
        assert!(detect::inspects(&headers), "a payment the engine would not see");
    }
    if let Err(refused) = &found {
        assert!(refused.code == detect::UNSUPPORTED_PAYMENT || refused.code == detect::AMBIGUOUS_PAYMENT);
    }
    let _ = detect::receipt(&headers);
    let _ = detect::body_inspection(&headers);
    let _ = purser::proxy::upgrade::request_refusal(&Method::GET, &headers);
    let _ = purser::proxy::upgrade::switch_refusal(&headers);
    let mut controls = headers.clone();
    detect::strip_control_spellings(&mut controls);
    for name in controls.keys() {
        if let Some(names::Role::Control(control)) = names::role(name.as_str()) {
            assert_eq!(name.as_str(), names::control_name(control));
        }
    }
    detect::strip_payment_fields(&mut headers);
    assert!(!detect::inspects(&headers), "a payment field survived stripping");
    assert!(!detect::carries_payment(&headers));
});
