//! Unit tests of the detector: header spellings, credentials, and which requests it inspects.

use super::*;
use http::header::HeaderName;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[test]
fn one_payment_in_any_spelling_is_found() {
    for name in [
        "PAYMENT-SIGNATURE",
        "payment_signature",
        "Payment.Signature",
    ] {
        let Some(HeadPayment::X402(found)) = head_payment(&headers(&[(name, "abc")])).unwrap()
        else {
            panic!("{name} is an x402 payment");
        };
        assert_eq!(found.kind, PaymentHeader::V2, "{name}");
        assert_eq!(found.value, "abc");
        assert!(inspects(&headers(&[(name, "abc")])));
    }
    let Some(HeadPayment::X402(v1)) = head_payment(&headers(&[("X_PAYMENT", "abc")])).unwrap()
    else {
        panic!("X_PAYMENT is an x402 payment");
    };
    assert_eq!(v1.kind, PaymentHeader::V1);
    assert!(head_payment(&headers(&[("accept", "*/*")]))
        .unwrap()
        .is_none());
    assert!(!inspects(&headers(&[("authorization", "Bearer x")])));
}

#[test]
fn two_payments_are_ambiguous_whatever_their_spelling() {
    for pairs in [
        &[("payment-signature", "a"), ("payment_signature", "a")][..],
        &[("payment-signature", "a"), ("payment-signature", "a")],
        &[("x-payment", "a"), ("payment-signature", "b")],
        &[("x_payment", "a"), ("authorization", "Payment abc")],
        &[
            ("authorization", "L402 a:b"),
            ("authorization", "Payment abc"),
        ],
        &[("authorization", "L402 a:b, Payment abc")],
        &[("authorization", "Payment a, Payment b")],
        &[
            ("authorization", "Payment abc"),
            ("payment-authorization", "Payment abc"),
        ],
    ] {
        let refused = head_payment(&headers(pairs)).unwrap_err();
        assert_eq!(refused.code, AMBIGUOUS_PAYMENT, "{pairs:?}");
    }
}

#[test]
fn an_mpp_credential_in_either_header_is_the_payment() {
    for (name, value) in [
        ("authorization", "Payment eyJ0"),
        ("Authorization", "Bearer t, payment x"),
        ("payment-authorization", "Payment eyJ0"),
        ("Payment_Authorization", "Payment eyJ0"),
    ] {
        let map = headers(&[(name, value)]);
        assert!(inspects(&map), "{name}: {value}");
        let Some(HeadPayment::Mpp(found)) = head_payment(&map).unwrap() else {
            panic!("{name}: {value} is an MPP credential");
        };
        assert_eq!(found, value);
        assert!(carries_payment(&map));
    }
}

#[test]
fn credentials_of_other_protocols_are_unsupported() {
    for value in ["L402 mac:pre", "LSAT mac:pre"] {
        let map = headers(&[("authorization", value)]);
        assert!(inspects(&map), "{value}");
        let refused = head_payment(&map).unwrap_err();
        assert_eq!(refused.code, UNSUPPORTED_PAYMENT, "{value}");
        assert!(carries_payment(&map));
    }
}

#[test]
fn control_headers_in_other_spellings_are_stripped() {
    let mut map = headers(&[
        ("x-purser-phase", "COMMIT"),
        ("x_purser_phase", "COMMIT"),
        ("X_Purser_Transaction", "t1"),
        ("x-kept", "1"),
    ]);
    assert!(inspects(&headers(&[("x_purser_transaction", "t")])));
    strip_control_spellings(&mut map);
    assert!(map.contains_key("x-purser-phase"));
    assert!(!map.contains_key("x_purser_phase"));
    assert!(!map.contains_key("x_purser_transaction"));
    assert!(map.contains_key("x-kept"));
}

#[test]
fn the_session_header_is_stripped_in_every_spelling_and_keeps_a_read_a_read() {
    let mut map = headers(&[
        ("x-purser-session", "s1"),
        ("X_Purser_Session", "s2"),
        ("x.purser.session", "s3"),
        ("x-kept", "1"),
    ]);
    assert!(
        !inspects(&map),
        "naming a session does not make a read a payment"
    );
    strip_session_header(&mut map);
    assert_eq!(map.len(), 1);
    assert!(map.contains_key("x-kept"));
}

#[test]
fn payment_fields_are_stripped_from_trailers() {
    let mut trailers = headers(&[
        ("payment_signature", "a"),
        ("authorization", "Payment x"),
        ("x-purser-transaction", "t"),
        ("x-checksum", "1"),
    ]);
    strip_payment_fields(&mut trailers);
    assert_eq!(trailers.len(), 1);
    assert!(trailers.contains_key("x-checksum"));
}

#[test]
fn receipts_are_read_in_any_spelling_and_disagreeing_ones_are_unreadable() {
    use base64::Engine as _;
    let receipt = base64::engine::general_purpose::STANDARD
        .encode(r#"{"success":true,"transaction":"0xab","network":"base"}"#);
    let found = super::receipt(&headers(&[("payment_response", &receipt)]));
    assert!(found.unwrap().unwrap().success);
    let same = super::receipt(&headers(&[
        ("payment-response", &receipt),
        ("x-payment-response", &receipt),
    ]));
    assert!(same.unwrap().is_ok());
    let differ = super::receipt(&headers(&[
        ("payment-response", &receipt),
        ("payment_response", "eyJ9"),
    ]));
    assert!(differ.unwrap().is_err());
    assert!(super::receipt(&headers(&[("x-other", "1")])).is_none());
}

#[test]
fn json_bodies_are_inspected_by_content_type() {
    let json = |pairs: &[(&str, &str)]| body_inspection(&headers(pairs));
    assert_eq!(
        json(&[("content-type", "application/json")]),
        BodyInspection::Json { declared: true }
    );
    assert_eq!(
        json(&[("content-type", "Application/JSON-RPC; charset=utf-8")]),
        BodyInspection::Json { declared: true }
    );
    assert_eq!(json(&[]), BodyInspection::Json { declared: false });
    assert_eq!(
        json(&[("content-type", "text/plain")]),
        BodyInspection::Json { declared: false }
    );
    assert_eq!(json(&[("content-type", "image/png")]), BodyInspection::Skip);
    assert_eq!(
        json(&[("content-type", "multipart/form-data; boundary=x")]),
        BodyInspection::Skip
    );
    assert!(matches!(
        json(&[
            ("content-type", "application/json"),
            ("content-encoding", "gzip")
        ]),
        BodyInspection::Undecodable(_)
    ));
    assert_eq!(
        json(&[
            ("content-type", "application/json"),
            ("content-encoding", "identity")
        ]),
        BodyInspection::Json { declared: true }
    );
    assert_eq!(json(&[("content-encoding", "gzip")]), BodyInspection::Skip);
}
