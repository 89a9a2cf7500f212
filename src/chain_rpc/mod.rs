//! Asking an EVM chain about a payment, for reconciliation: one `eth_call` to a node's
//! JSON-RPC endpoint. The engine is *given* a [`ChainRpc`] (the proxy's upstream client
//! implements it, `proxy::chain_rpc`), so it never speaks HTTP itself.
//!
//! * [`abi`]: the two calls asked (`authorizationState`, `nonceBitmap`) and their answers,
//!   ABI-encoded by hand: both are small and fixed.
//! * [`jsonrpc`]: the `eth_call` request and the node's answer, as JSON-RPC 2.0 messages
//!   (`jsonrpsee-types`), with the error shapes nodes return.

pub mod abi;
pub mod jsonrpc;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// One `eth_call` against the latest block.
#[derive(Clone, Copy, Debug)]
pub struct EthCall<'a> {
    /// The node's JSON-RPC endpoint (`http://` or `https://`), from the policy.
    pub url: &'a http::Uri,
    /// The contract called.
    pub to: [u8; 20],
    /// The calldata: a selector and its ABI-encoded arguments.
    pub data: &'a [u8],
}

/// Why a call got no usable answer. Each is worth retrying later: the node may come
/// back, or be replaced in the policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// No HTTP answer: refused, timed out, TLS failed.
    #[error("the chain RPC endpoint could not be reached: {0}")]
    Unreachable(String),
    /// An HTTP answer other than 2xx (a rate limit, an outage).
    #[error("the chain RPC endpoint answered HTTP {0}")]
    Status(u16),
    /// An answer that is not a JSON-RPC answer to this call.
    #[error("the chain RPC endpoint's answer is not a JSON-RPC answer to the call: {0}")]
    BadAnswer(String),
    /// The node answered with a JSON-RPC error (a revert, an unknown method).
    #[error("the node refused the call: {message} (JSON-RPC error {code})")]
    Node {
        /// The JSON-RPC error code (`-32000` or `3` for a revert).
        code: i32,
        /// The node's message, cut short.
        message: String,
    },
}

/// The call's return data, or why there is none.
pub type CallResult<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, RpcError>> + Send + 'a>>;

/// Makes `eth_call`s. Timeouts, retries and backoff are the caller's.
pub trait ChainRpc: Send + Sync + 'static {
    /// Calls `call.to` with `call.data` at the latest block; resolves to the return data.
    fn eth_call<'a>(&'a self, call: EthCall<'a>) -> CallResult<'a>;
}

/// How the engine holds the client.
pub type SharedChainRpc = Arc<dyn ChainRpc>;

/// Lowercase hex of bytes, no prefix (this module imports nothing of Purser's).
fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]])
        .map(char::from)
        .collect()
}

/// Bytes of `0x`-prefixed hex with an even number of digits, as nodes write data.
fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.strip_prefix("0x")?.as_bytes();
    if digits.len() % 2 != 0 {
        return None;
    }
    let nibble = |d: u8| char::from(d).to_digit(16).map(|v| v as u8);
    digits
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_what_a_node_would_not_write() {
        assert_eq!(to_hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(from_hex("0x00abFF"), Some(vec![0x00, 0xab, 0xff]));
        assert_eq!(from_hex("0x"), Some(vec![]));
        for bad in ["", "00", "0x0", "0xzz", "0x+1"] {
            assert_eq!(from_hex(bad), None, "{bad:?}");
        }
    }
}
