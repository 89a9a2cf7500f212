//! Unit tests of x402 over MCP against the official SDK's captures
//! (`tests/data/captures/mcp/`): the paid call and its probe, their JSON and
//! event-stream answers cut into chunks of every size, both payment key spellings, and
//! malformed input, which is refused or passed over but never panics.

use super::answer::{AnswerReader, Answered, MAX_ANSWER_BYTES};
use super::x402_forms::read_answer;
use super::*;
use crate::detect::json_body::JsonScanner;
use http::{HeaderMap, HeaderValue};
use serde_json::{json, Value};

const SSE_CAPTURE: &str =
    include_str!("../../../tests/data/captures/mcp/x402_mcp_streamable_sse.json");
const JSON_CAPTURE: &str =
    include_str!("../../../tests/data/captures/mcp/x402_mcp_streamable_json.json");

/// The exchanges of a capture; the probe is the 6th, the paid call the 7th.
fn exchanges(capture: &str) -> Vec<Value> {
    serde_json::from_str::<Vec<Value>>(capture).unwrap()
}

fn request_body(capture: &str, index: usize) -> Vec<u8> {
    serde_json::to_vec(&exchanges(capture)[index]["request"]["json"]).unwrap()
}

/// The answer's bytes as they came: the raw event stream, or the JSON document.
fn answer_bytes(capture: &str, index: usize) -> Vec<u8> {
    let response = &exchanges(capture)[index]["response"];
    match response["raw"].as_str() {
        Some(raw) => raw.as_bytes().to_vec(),
        None => serde_json::to_vec(&response["json"]).unwrap(),
    }
}

fn headers(content_type: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_str(content_type).unwrap());
    headers
}

/// What a reader makes of `bytes` fed in `piece`-byte chunks.
fn read_in_pieces(content_type: &str, id: u64, bytes: &[u8], piece: usize) -> Answered {
    let mut reader = AnswerReader::new(&headers(content_type), Id::Number(id)).unwrap();
    for chunk in bytes.chunks(piece.max(1)) {
        if let Some(answered) = reader.feed(chunk) {
            return answered;
        }
    }
    reader.finish().unwrap()
}

fn response(answered: Answered) -> Box<jsonrpsee_types::Response<'static, Value>> {
    match answered {
        Answered::Response(response) => response,
        Answered::Unreadable(why) => panic!("unreadable: {why}"),
    }
}

#[test]
fn the_sdks_paid_call_is_read_with_its_payment_and_its_probe_without() {
    for capture in [SSE_CAPTURE, JSON_CAPTURE] {
        let paid = read_paid_call(&request_body(capture, 6)).unwrap();
        assert_eq!(paid.id, Id::Number(4));
        assert_eq!(paid.tool, "get_weather");
        let payment = paid.payment.unwrap();
        assert_eq!(payment.protocol, Protocol::X402Mcp);
        assert_eq!(payment.key, "x402/payment");
        let priced = crate::x402::parse_payment_json(payment.json.get().as_bytes()).unwrap();
        assert_eq!(priced.version, 2);
        assert_eq!(priced.amount_atomic, Some(10_000));
        assert_eq!(priced.accepted.unwrap().max_timeout_seconds, Some(60));
        let probe = read_call(&request_body(capture, 5)).unwrap();
        assert_eq!(
            (probe.id, probe.tool.as_str()),
            (Id::Number(3), "get_weather")
        );
        assert!(probe.payment.is_none());
        assert!(read_call(&request_body(capture, 3)).is_none(), "tools/list");
    }
}

#[test]
fn the_older_dotted_key_is_governed_too() {
    let body = br#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"t","_meta":{"x402.payment":{"x402Version":2}}}}"#;
    let call = read_paid_call(body).unwrap();
    assert_eq!(call.id, Id::Str("a-1".into()));
    assert_eq!(call.payment.unwrap().key, "x402.payment");
    assert_eq!(meta_protocol("x402/payment"), Some(Protocol::X402Mcp));
    assert_eq!(meta_protocol("X402/Payment"), None);
}

#[test]
fn an_mpp_credential_in_meta_is_governed_as_mpp_over_mcp() {
    let exchanges: serde_json::Value = serde_json::from_str(include_str!(
        "../../../tests/data/captures/mpp/mpp_over_mcp_evm.json"
    ))
    .unwrap();
    let body = exchanges[4]["request"]["json"].to_string();
    let call = read_paid_call(body.as_bytes()).unwrap();
    assert_eq!(call.id, Id::Number(2));
    assert_eq!(call.tool, "premium_echo");
    let payment = call.payment.unwrap();
    assert_eq!(payment.protocol, Protocol::MppMcp);
    assert_eq!(payment.key, MPP_CREDENTIAL_KEY);
    assert!(payment.json.get().contains("\"challenge\""));
    assert_eq!(meta_protocol(MPP_CREDENTIAL_KEY), Some(Protocol::MppMcp));
}

#[test]
fn payments_purser_does_not_govern_are_refused_with_the_id_to_answer_under() {
    let cases: [(&str, &str); 9] = [
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"t","_meta":{"x402/payment":{},"x402.payment":{}}}}"#,
            AMBIGUOUS_PAYMENT,
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"t","_meta":{"x402/payment":{}},"arguments":{"x402/payment":{}}}}"#,
            AMBIGUOUS_PAYMENT,
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"t","arguments":{"x402/payment":{}}}}"#,
            UNSUPPORTED_PAYMENT,
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"t","_meta":{"X402_PAYMENT":{}}}}"#,
            UNSUPPORTED_PAYMENT,
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"t","_meta":{"org.paymentauth/credential":{},"x402/payment":{}}}}"#,
            AMBIGUOUS_PAYMENT,
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"x","_meta":{"org.paymentauth/credential":{}}}}"#,
            UNSUPPORTED_PAYMENT,
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"t","_meta":{"org.paymentauth/credential":"eyJ4"}}}"#,
            UNSUPPORTED_PAYMENT,
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"x","_meta":{"x402/payment":{}}}}"#,
            UNSUPPORTED_PAYMENT,
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"t","_meta":{"x402/payment":"eyJ4"}}}"#,
            UNSUPPORTED_PAYMENT,
        ),
    ];
    for (body, code) in cases {
        let refused = read_paid_call(body.as_bytes()).unwrap_err();
        assert_eq!(refused.undecidable.code, code, "{body}");
        assert_eq!(refused.id, Some(Id::Number(7)), "{body}");
    }
    // The name read twice could be read either way: refused, as is a name too long.
    let twice = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a","name":"b","_meta":{"x402/payment":{}}}}"#;
    assert!(read_paid_call(twice.as_bytes()).is_err());
    let long = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{}","_meta":{{"x402/payment":{{}}}}}}}}"#,
        "n".repeat(MAX_TOOL_NAME_BYTES + 1)
    );
    assert!(read_paid_call(long.as_bytes()).is_err());
    // A batch is not one request: refused, with no id to answer under.
    let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"x402/payment":{}}}}]"#;
    assert_eq!(read_paid_call(batch).unwrap_err().id, None);
}

#[test]
fn malformed_bodies_never_panic() {
    let paid = request_body(SSE_CAPTURE, 6);
    for end in 0..paid.len() {
        let cut = &paid[..end];
        assert!(read_paid_call(cut).is_err());
        let _ = read_call(cut);
        let _ = id_of(cut);
    }
    for junk in [
        &b"\xff\xfe\x00"[..],
        b"null",
        b"{\"id\":{\"a\":1}}",
        b"{\"jsonrpc\":\"2.0\",\"id\":-1,\"method\":\"tools/call\",\"params\":{\"name\":\"t\",\"_meta\":{\"x402/payment\":{}}}}",
        b"{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"t\",\"_meta\":{\"x402/payment\":{}}}}",
    ] {
        assert!(read_paid_call(junk).is_err());
    }
}

#[test]
fn the_answers_are_read_in_chunks_of_any_size() {
    for (capture, content_type) in [
        (SSE_CAPTURE, "text/event-stream"),
        (JSON_CAPTURE, "application/json"),
    ] {
        let paid_answer = answer_bytes(capture, 6);
        let probe_answer = answer_bytes(capture, 5);
        for piece in [1, 2, 3, 7, 64, 100_000] {
            let paid = read_answer(&response(read_in_pieces(
                content_type,
                4,
                &paid_answer,
                piece,
            )));
            let receipt = paid.receipt.unwrap().unwrap();
            assert!(receipt.success);
            assert_eq!(receipt.transaction.unwrap().len(), 66);
            assert!(paid.challenge.is_none() && !paid.tool_error);
            let probe = read_answer(&response(read_in_pieces(
                content_type,
                3,
                &probe_answer,
                piece,
            )));
            assert!(probe.receipt.is_none() && probe.tool_error);
            let challenge = probe.challenge.unwrap();
            assert_eq!(challenge.version, 2);
            assert_eq!(challenge.accepts[0].amount_atomic, 10_000);
            assert_eq!(
                challenge.resource.as_deref(),
                Some("mcp://tool/get_weather")
            );
        }
        // An answer for another id says nothing about this call.
        match read_in_pieces(content_type, 9, &paid_answer, 5) {
            Answered::Unreadable(_) => {}
            Answered::Response(r) => panic!("wrong id read: {r:?}"),
        }
    }
}

#[test]
fn other_events_are_passed_over_and_the_response_is_found_among_them() {
    let stream = concat!(
        ": ping\r\n\r\n",
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n",
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":99,\"method\":\"sampling/createMessage\",\"params\":{}}\n\n",
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"content\":[],\"_meta\":{\"x402/payment-response\":{\"success\":false,\"errorReason\":\"insufficient_funds\",\"transaction\":\"\",\"network\":\"eip155:84532\"}}}}\n\n",
    );
    for piece in [1, 5, 1000] {
        let answer = read_answer(&response(read_in_pieces(
            "text/event-stream",
            4,
            stream.as_bytes(),
            piece,
        )));
        let receipt = answer.receipt.unwrap().unwrap();
        assert!(!receipt.success);
        assert_eq!(receipt.error_reason.as_deref(), Some("insufficient_funds"));
    }
    let ended = read_in_pieces("text/event-stream", 4, b": ping\n\n", 3);
    assert!(matches!(ended, Answered::Unreadable(_)));
}

#[test]
fn the_other_challenge_forms_are_read() {
    let offer = json!({"scheme":"exact","network":"eip155:84532","amount":"5000",
        "asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x2096000000000000000000000000000000000287"});
    let required = json!({"x402Version":2,"accepts":[offer],"resource":{"url":"mcp://tool/t"}});
    let forms = [
        json!({"jsonrpc":"2.0","id":1,"error":{"code":402,"message":"Payment required","data":required}}),
        json!({"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[{"type":"text",
            "text": json!({"x402/error":{"code":402,"message":"m","data":required}}).to_string()}]}}),
        json!({"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[{"type":"text",
            "text": format!("Error executing tool t: {required}")}]}}),
        json!({"jsonrpc":"2.0","id":1,"result":{"structuredContent":required}}),
    ];
    for form in forms {
        let bytes = serde_json::to_vec(&form).unwrap();
        let answer = read_answer(&response(read_in_pieces("application/json", 1, &bytes, 10)));
        assert_eq!(
            answer.challenge.unwrap().accepts[0].amount_atomic,
            5000,
            "{form}"
        );
        assert!(answer.receipt.is_none());
    }
    // Purser's own refusal carries no challenge, and an empty `accepts` is none either.
    let refusal = json!({"jsonrpc":"2.0","id":1,"result":{"isError":true,
        "content":[{"type":"text","text":"Purser refused this payment"}],
        "structuredContent":{"x402Version":2,"accepts":[]}}});
    let bytes = serde_json::to_vec(&refusal).unwrap();
    let answer = read_answer(&response(read_in_pieces("application/json", 1, &bytes, 10)));
    assert!(answer.challenge.is_none() && answer.tool_error);
    // Two receipts that differ are unreadable.
    let two = json!({"jsonrpc":"2.0","id":1,"result":{
        "_meta":{"x402/payment-response":{"success":true}},
        "structuredContent":{"x402/payment-response":{"success":false}}}});
    let bytes = serde_json::to_vec(&two).unwrap();
    let answer = read_answer(&response(read_in_pieces("application/json", 1, &bytes, 10)));
    assert!(answer.receipt.unwrap().is_err());
}

#[test]
fn answers_that_cannot_be_read_say_so_and_never_panic() {
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"pad":"{}"}}}}"#,
        "x".repeat(MAX_ANSWER_BYTES)
    );
    for content_type in ["application/json", "text/event-stream"] {
        let framed = if content_type == "application/json" {
            big.clone()
        } else {
            format!("data: {big}\n\n")
        };
        assert!(matches!(
            read_in_pieces(content_type, 1, framed.as_bytes(), 4096),
            Answered::Unreadable(_)
        ));
    }
    let garbage: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    for content_type in ["application/json", "text/event-stream"] {
        for piece in [1, 13, 5000] {
            let _ = read_in_pieces(content_type, 1, &garbage, piece);
        }
    }
    let paid_answer = answer_bytes(JSON_CAPTURE, 6);
    for end in 0..paid_answer.len() {
        assert!(matches!(
            read_in_pieces("application/json", 4, &paid_answer[..end], 7),
            Answered::Unreadable(_)
        ));
    }
    assert!(AnswerReader::new(&headers("text/html"), Id::Number(1)).is_none());
    let mut gzip = headers("application/json");
    gzip.insert("content-encoding", HeaderValue::from_static("gzip"));
    assert!(AnswerReader::new(&gzip, Id::Number(1)).is_none());
    assert!(
        AnswerReader::new(&headers("text/event-stream; charset=utf-8"), Id::Number(1)).is_some()
    );
}

#[test]
fn the_top_level_id_is_captured_after_any_padding() {
    let pad = "p".repeat(200_000);
    for (body, id) in [
        (
            format!(r#"{{"params":{{"a":"{pad}","id":5}},"id":42}}"#),
            Some(Id::Number(42)),
        ),
        (
            format!(r#"{{"id":"x-\"1","params":"{pad}"}}"#),
            Some(Id::Str("x-\"1".into())),
        ),
        (
            format!(r#"{{"params":"{pad}","id" : 7 }}"#),
            Some(Id::Number(7)),
        ),
        (format!(r#"{{"params":"{pad}","id":{{"no":1}}}}"#), None),
        (format!(r#"{{"id":"{}"}}"#, "i".repeat(200)), None),
        (r#"[{"id":1}]"#.to_string(), None),
    ] {
        for piece in [1, 3, 4096] {
            let mut scanner = JsonScanner::counting().capturing_id();
            for chunk in body.as_bytes().chunks(piece) {
                scanner.feed(chunk);
            }
            scanner.finish();
            let captured = scanner.top_level_id().and_then(captured_id);
            assert_eq!(captured, id, "{}", &body[..body.len().min(60)]);
        }
    }
}
