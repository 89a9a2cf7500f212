//! The MPP wire against real captures of the official SDKs (pympp 0.16.0 server and
//! client, `tests/data/captures/mpp/`): challenges, credentials, bindings and receipts.

use super::*;
use serde_json::Value;

const EVM: &str = include_str!("../../tests/data/captures/mpp/mpp_http_evm_charge.json");
const TEMPO: &str = include_str!("../../tests/data/captures/mpp/mpp_http_tempo_charge.json");

/// Every value of header `name` in the capture's exchange `index`, request or response.
fn headers(capture: &str, index: usize, side: &str, name: &str) -> Vec<String> {
    let exchanges: Value = serde_json::from_str(capture).unwrap();
    exchanges[index][side]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0].as_str() == Some(name))
        .map(|pair| pair[1].as_str().unwrap().to_string())
        .collect()
}

fn challenges(capture: &str, index: usize) -> Vec<Challenge> {
    let values = headers(capture, index, "response", "www-authenticate");
    let parsed = parse_www_authenticate(values.iter().map(|v| v.as_bytes()));
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    parsed.challenges
}

#[test]
fn a_402_with_three_challenge_lines_reads_as_three_challenges() {
    let found = challenges(EVM, 0);
    let methods: Vec<&str> = found.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["tempo", "tempo", "evm"]);
    let evm = &found[2];
    assert_eq!(evm.id, "kSk9LQx6N6XIQpkgGEuvCMmrLzxQofOR6hBOnoGL-iA");
    assert_eq!(evm.realm, "api.merchant.test");
    assert_eq!(evm.intent, "charge");
    assert_eq!(evm.amount(), Some(10_000));
    assert_eq!(
        evm.request["currency"],
        "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
    );
    assert_eq!(evm.request["methodDetails"]["chainId"], 84532);
    assert_eq!(evm.description.as_deref(), Some("Market snapshot"));
    assert!(evm.opaque.as_ref().unwrap()["_mpp_nonce"].is_string());
    // The same lines joined into one field value read the same.
    let values = headers(EVM, 0, "response", "www-authenticate");
    let joined = values.join(", ");
    let one = parse_www_authenticate([joined.as_bytes()]);
    assert_eq!(one.challenges, found);
}

#[test]
fn a_credential_binds_to_the_challenge_it_answers_and_no_other() {
    let found = challenges(EVM, 0);
    let authorization = headers(EVM, 1, "request", "authorization");
    let credential = parse_authorization(authorization[0].as_bytes()).unwrap();
    assert_eq!(credential.challenge.id, found[2].id);
    assert_eq!(credential.challenge.binding(), found[2].binding());
    assert_ne!(credential.challenge.binding(), found[0].binding());
    assert_eq!(credential.payload["type"], "authorization");
    assert_eq!(credential.payload["value"], "10000");
    assert!(credential
        .source
        .as_deref()
        .unwrap()
        .starts_with("did:pkh:"));

    // Any echoed field changed breaks the binding; the description does not count.
    let mut echo = credential.challenge.clone();
    echo.request["amount"] = Value::from("1");
    assert_ne!(echo.binding(), found[2].binding());
    let mut echo = credential.challenge.clone();
    echo.expires = Some("2099-01-01T00:00:00Z".into());
    assert_ne!(echo.binding(), found[2].binding());
    let mut echo = credential.challenge.clone();
    echo.opaque = None;
    assert_ne!(echo.binding(), found[2].binding());
}

#[test]
fn a_body_bound_challenge_echoes_its_digest() {
    let found = challenges(EVM, 2);
    assert_eq!(
        found[2].digest.as_deref(),
        Some("sha-256=VJ4O3OTBCV7zFCZtqwGLNKJy6pYJ2ftK/G6omakKkpw=")
    );
    let authorization = headers(EVM, 3, "request", "authorization");
    let credential = parse_authorization(authorization[0].as_bytes()).unwrap();
    assert_eq!(credential.challenge.binding(), found[2].binding());
    let mut echo = credential.challenge;
    echo.digest = None;
    assert_ne!(echo.binding(), found[2].binding());
}

#[test]
fn receipts_of_both_methods_read_as_success() {
    for (capture, index, method) in [(EVM, 1, "evm"), (EVM, 3, "evm"), (TEMPO, 1, "tempo")] {
        let value = &headers(capture, index, "response", "payment-receipt")[0];
        let receipt = parse_receipt_header(value.as_bytes()).unwrap();
        assert_eq!(receipt.status, ReceiptStatus::Success);
        assert_eq!(receipt.method, method);
        assert!(receipt.reference.starts_with("0x"));
    }
    let failed =
        base64_url(r#"{"status":"failed","method":"evm","reference":"0x1","timestamp":"t"}"#);
    assert_eq!(
        parse_receipt_header(failed.as_bytes()).unwrap().status,
        ReceiptStatus::Failed
    );
    for bad in [
        r#"{"status":"pending","method":"evm","reference":"0x1","timestamp":"t"}"#,
        r#"{"status":"success","method":"evm","timestamp":"t"}"#,
        r#"["success"]"#,
    ] {
        assert!(
            parse_receipt_header(base64_url(bad).as_bytes()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn the_tempo_credential_carries_a_transaction_that_pays_its_challenge() {
    let found = challenges(TEMPO, 0);
    let authorization = headers(TEMPO, 1, "request", "authorization");
    let credential = parse_authorization(authorization[0].as_bytes()).unwrap();
    let answered = found
        .iter()
        .find(|c| c.id == credential.challenge.id)
        .unwrap();
    assert_eq!(answered.binding(), credential.challenge.binding());
    let raw = credential.payload["signature"].as_str().unwrap();
    let tx = tempo::read_transaction(&hex_bytes(raw).unwrap()).unwrap();
    assert_eq!(
        tx.transfers().unwrap()[0].amount,
        answered.amount().unwrap()
    );
}

fn base64_url(json: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

#[test]
fn credentials_are_read_strictly_and_never_panic() {
    let encode = |json: &str| format!("Payment {}", base64_url(json));
    let request = base64_url(r#"{"amount":"1"}"#);
    let good = format!(
        r#"{{"challenge":{{"id":"i","realm":"r","method":"evm","intent":"charge","request":"{request}"}},"payload":{{}}}}"#
    );
    assert!(parse_authorization(encode(&good).as_bytes()).is_ok());
    assert!(parse_authorization(format!("Bearer x, {}", encode(&good)).as_bytes()).is_ok());
    let twice = format!("{}, {}", encode(&good), encode(&good));
    assert!(parse_authorization(twice.as_bytes()).is_err());
    for bad in [
        good.replace(r#""method":"evm""#, r#""method":"EVM""#),
        good.replace(r#""id":"i","#, ""),
        good.replace(r#""payload":{}"#, r#""payload":[]"#),
        good.replace(&request, r#"{\"amount\":\"1\"}"#),
        good.replace(r#""realm":"r""#, r#""realm":7"#),
    ] {
        assert!(
            parse_authorization(encode(&bad).as_bytes()).is_err(),
            "{bad}"
        );
    }
    for bad in ["Payment", "Payment !!!", "payment e30", "Payment W10"] {
        assert!(parse_authorization(bad.as_bytes()).is_err(), "{bad}");
    }
    let huge = format!("Payment {}", "A".repeat(MAX_CREDENTIAL_BYTES));
    assert!(matches!(
        parse_authorization(huge.as_bytes()),
        Err(MppError::TooLarge { .. })
    ));
    // Every truncation of a real credential is read or refused, never a panic.
    let real = &headers(EVM, 1, "request", "authorization")[0];
    for cut in 0..real.len() {
        let _ = parse_authorization(&real.as_bytes()[..cut]);
    }
}

#[test]
fn malformed_payment_challenges_are_errors_and_others_are_skipped() {
    let request = base64_url(r#"{"amount":"1"}"#);
    let ok =
        format!(r#"Payment id="a", realm="r", method="evm", intent="charge", request="{request}""#);
    for bad in [
        ok.replace(r#"id="a", "#, ""),
        format!(r#"{ok}, ID="b""#),
        ok.replace("evm", "Evm"),
        ok.replace(&request, "!!"),
        "Payment abc==".to_string(),
    ] {
        let parsed = parse_www_authenticate([bad.as_bytes()]);
        assert!(parsed.challenges.is_empty(), "{bad}");
        assert_eq!(parsed.errors.len(), 1, "{bad}");
    }
    let mixed = format!(r#"Bearer realm="x", {ok}, Basic abc="#);
    let parsed = parse_www_authenticate([mixed.as_bytes(), b"Bearer"]);
    assert_eq!(parsed.challenges.len(), 1);
    assert!(parsed.errors.is_empty());
    let many = vec![ok.as_str(); MAX_CHALLENGES_PER_ANSWER + 1].join(", ");
    let parsed = parse_www_authenticate([many.as_bytes()]);
    assert_eq!(parsed.challenges.len(), MAX_CHALLENGES_PER_ANSWER);
    assert_eq!(parsed.errors.len(), 1);
}

/// A small deterministic generator (xorshift), so the mutations below are the same on
/// every run.
struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `input` with a few bytes changed, dropped or repeated.
    fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + self.next() % 4 {
            if out.is_empty() {
                break;
            }
            let at = (self.next() % out.len() as u64) as usize;
            match self.next() % 4 {
                0 => out[at] = self.next() as u8,
                1 => {
                    out.remove(at);
                }
                2 => out.insert(at, b"\",=\\ u{}[]:"[(self.next() % 11) as usize]),
                _ => out.truncate(at),
            }
        }
        out
    }
}

#[test]
fn mutated_challenges_credentials_and_receipts_never_panic() {
    let mut mutator = Mutator(0x9e37_79b9_7f4a_7c15);
    let challenge = headers(EVM, 0, "response", "www-authenticate").join(", ");
    let credential = headers(EVM, 1, "request", "authorization")[0].clone();
    let receipt = headers(EVM, 1, "response", "payment-receipt")[0].clone();
    // The same JSON inside the base64url too, so mutations reach the decoders behind it.
    let decoded = {
        use base64::Engine;
        let b64 = credential.trim_start_matches("Payment ");
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64)
            .unwrap()
    };
    for _ in 0..3000 {
        let parsed = parse_www_authenticate([mutator.mutate(challenge.as_bytes()).as_slice()]);
        for found in &parsed.challenges {
            let _ = (found.binding(), found.amount());
        }
        if let Ok(found) = parse_authorization(&mutator.mutate(credential.as_bytes())) {
            let _ = found.challenge.binding();
        }
        let json = mutator.mutate(&decoded);
        let wrapped = format!("Payment {}", base64_url_bytes(&json));
        if let Ok(found) = parse_authorization(wrapped.as_bytes()) {
            let _ = found.challenge.binding();
        }
        let _ = parse_receipt_header(&mutator.mutate(receipt.as_bytes()));
    }
}

fn base64_url_bytes(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

const OVER_MCP: &str = include_str!("../../tests/data/captures/mpp/mpp_over_mcp_evm.json");

/// The JSON-RPC message of the capture's exchange `index`, request or (SSE) response.
fn mcp_message(index: usize, side: &str) -> Value {
    let exchanges: Value = serde_json::from_str(OVER_MCP).unwrap();
    let message = &exchanges[index][side];
    match message.get("json").filter(|j| !j.is_null()) {
        Some(json) => json.clone(),
        None => message["sse_events"][0]["data_json"].clone(),
    }
}

#[test]
fn over_mcp_the_challenge_objects_bind_the_credential_object_alike() {
    let challenge = mcp_message(3, "response");
    assert_eq!(challenge["error"]["code"], -32042);
    let parsed = challenges_from_mcp(&challenge["error"]["data"]);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let offered = &parsed.challenges[0];
    assert_eq!(offered.amount(), Some(10_000));
    let paid = mcp_message(4, "request");
    let meta = &paid["params"]["_meta"]["org.paymentauth/credential"];
    let credential = credential::from_json(meta, EchoForm::Object).unwrap();
    assert_eq!(credential.challenge.binding(), offered.binding());
    // The HTTP form (base64url) of the same object does not pass as the MCP form.
    assert!(credential::from_json(meta, EchoForm::Base64url).is_err());
    let receipt = mcp_message(4, "response");
    let receipt =
        receipt_from_json(&receipt["result"]["_meta"]["org.paymentauth/receipt"]).unwrap();
    assert_eq!(receipt.status, ReceiptStatus::Success);
    assert_eq!(receipt.settled_amount, Some(10_000));
    assert_eq!(receipt.challenge_id.as_deref(), Some(offered.id.as_str()));
    for bad in [
        serde_json::json!({}),
        serde_json::json!({"challenges": [{"id": "a"}]}),
        serde_json::json!({"challenges": [{"id": "a", "realm": "r", "method": "evm", "intent": "charge", "request": "e30"}]}),
    ] {
        assert!(challenges_from_mcp(&bad).challenges.is_empty(), "{bad}");
    }
}

const MPPX: &str =
    include_str!("../../tests/data/captures/mpp/mppx_challenges_charge_session.json");

#[test]
fn the_challenges_mppx_writes_read_too() {
    let captured: Value = serde_json::from_str(MPPX).unwrap();
    for (intent, amount) in [("charge", 10_000), ("session", 100)] {
        let value = captured[intent]["headers"]["www-authenticate"]
            .as_str()
            .unwrap();
        let parsed = parse_www_authenticate([value.as_bytes()]);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let challenge = &parsed.challenges[0];
        assert_eq!(challenge.intent, intent);
        assert_eq!(challenge.method, "tempo");
        assert_eq!(challenge.amount(), Some(amount));
        assert!(challenge.opaque.is_none(), "mppx writes no opaque");
        assert!(challenge.expires.as_deref().unwrap().ends_with('Z'));
    }
}
