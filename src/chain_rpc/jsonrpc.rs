//! `eth_call` as JSON-RPC 2.0 messages, framed by `jsonrpsee-types`:
//!
//! ```text
//! -> {"jsonrpc":"2.0","id":7,"method":"eth_call","params":[{"to":"0x…","data":"0x…"},"latest"]}
//! <- {"jsonrpc":"2.0","id":7,"result":"0x…"}
//! <- {"jsonrpc":"2.0","id":7,"error":{"code":-32000,"message":"execution reverted"}}
//! ```
//!
//! An answer is believed only if it answers this request (same id) with data in the form
//! nodes write it (`0x` and an even number of hex digits); anything else is a
//! [`RpcError::BadAnswer`], never a guessed result.

use super::{from_hex, to_hex, RpcError};
use jsonrpsee_types::{Id, Request, Response, ResponsePayload};
use serde_json::value::to_raw_value;

/// The most of a node's answer read: an `eth_call` of these two calls returns one word.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The longest node message kept in an error.
const MAX_MESSAGE: usize = 200;

/// The request body of `eth_call(to, data)` at the latest block, with `id`.
pub fn eth_call_request(id: u64, to: &[u8; 20], data: &[u8]) -> String {
    let call = serde_json::json!({
        "to": format!("0x{}", to_hex(to)),
        "data": format!("0x{}", to_hex(data)),
    });
    let params = to_raw_value(&(call, "latest")).ok();
    let request = Request::owned("eth_call".to_string(), params, Id::Number(id));
    // A request of strings and a number always serializes.
    serde_json::to_string(&request).unwrap_or_default()
}

/// The return data in the node's answer `body` to request `id`.
pub fn eth_call_result(body: &[u8], id: u64) -> Result<Vec<u8>, RpcError> {
    if body.len() > MAX_ANSWER_BYTES {
        return Err(RpcError::BadAnswer(format!(
            "the answer is larger than {MAX_ANSWER_BYTES} bytes"
        )));
    }
    let answer: Response<'_, String> = serde_json::from_slice(body)
        .map_err(|error| RpcError::BadAnswer(format!("not a JSON-RPC answer: {error}")))?;
    if answer.id != Id::Number(id) {
        return Err(RpcError::BadAnswer(format!(
            "the answer is to request {:?}, not {id}",
            answer.id
        )));
    }
    match answer.payload {
        ResponsePayload::Success(result) => from_hex(&result).ok_or_else(|| {
            RpcError::BadAnswer(format!(
                "the result is not 0x-prefixed hex bytes: {:?}",
                cut(&result)
            ))
        }),
        ResponsePayload::Error(error) => Err(RpcError::Node {
            code: error.code(),
            message: cut(error.message()),
        }),
    }
}

fn cut(text: &str) -> String {
    text.chars().take(MAX_MESSAGE).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const VECTORS: &str = include_str!("../../tests/data/x402/chain_eth_call.json");

    #[test]
    fn the_request_is_the_one_a_node_expects() {
        let vectors: Value = serde_json::from_str(VECTORS).unwrap();
        let expected = &vectors["permit2_nonceBitmap"]["request"];
        let to: [u8; 20] = from_hex("0x000000000022d473030f116ddee9f6b43ac78ba3")
            .unwrap()
            .try_into()
            .unwrap();
        let data_text = expected["params"][0]["data"].as_str().unwrap();
        let data = from_hex(data_text).unwrap();
        let sent: Value = serde_json::from_str(&eth_call_request(2, &to, &data)).unwrap();
        let mut want = expected.clone();
        // The vector spells the address checksummed; Purser writes lowercase hex.
        want["params"][0]["to"] = json!("0x000000000022d473030f116ddee9f6b43ac78ba3");
        assert_eq!(sent, want);
    }

    #[test]
    fn answers_the_nodes_give_are_read_as_they_mean() {
        let vectors: Value = serde_json::from_str(VECTORS).unwrap();
        let answer = vectors["eip3009_authorizationState"]["answer_used"].to_string();
        let data = eth_call_result(answer.as_bytes(), 1).unwrap();
        assert_eq!(data.len(), 32);
        assert_eq!(data[31], 1);
        assert!(matches!(
            eth_call_result(answer.as_bytes(), 2),
            Err(RpcError::BadAnswer(_))
        ));
        let shapes = &vectors["node_error_shapes"];
        let reverted = shapes["revert_no_data (geth)"].to_string();
        assert_eq!(
            eth_call_result(reverted.as_bytes(), 1),
            Err(RpcError::Node {
                code: -32000,
                message: "execution reverted".into()
            })
        );
        let with_data = shapes["revert_with_data (geth >=1.9.15)"].to_string();
        assert!(matches!(
            eth_call_result(with_data.as_bytes(), 1),
            Err(RpcError::Node { code: 3, .. })
        ));
        let empty = shapes["no contract at address"].to_string();
        assert_eq!(eth_call_result(empty.as_bytes(), 1), Ok(vec![]));
        for bad in [
            "",
            "not json",
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":"0x1"}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":7}"#,
            r#"[{"jsonrpc":"2.0","id":1,"result":"0x"}]"#,
        ] {
            assert!(
                matches!(
                    eth_call_result(bad.as_bytes(), 1),
                    Err(RpcError::BadAnswer(_))
                ),
                "{bad}"
            );
        }
    }
}
