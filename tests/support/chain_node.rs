//! A stub EVM node for chain reconciliation tests: JSON-RPC over HTTP/1.1 on loopback,
//! answering `eth_call` the way a node answers it for the two calls Purser makes
//! (shapes from `tests/data/x402/chain_eth_call.json`):
//!
//! * `authorizationState(address,bytes32)` (`0xe94a0102`) on a token it knows: an ABI
//!   bool, true for the (payer, nonce) pairs [`ChainNode::use_nonce`] marked used;
//! * `nonceBitmap(address,uint256)` (`0x4fe02b44`) on Permit2: the word `wordPos` of the
//!   owner's bitmap, with the bits of the Permit2 nonces [`ChainNode::use_permit2_nonce`]
//!   marked used;
//! * a call to an address with no contract: `"result":"0x"`; any other selector: the
//!   `-32000 execution reverted` error; any other method: `-32601`.
//!
//! [`ChainNode::down`] makes it answer `503` to everything, as an overloaded or broken
//! endpoint does. It records every `eth_call` it was asked, up or down.

use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// Permit2's address, lowercase.
pub(crate) const PERMIT2: &str = "0x000000000022d473030f116ddee9f6b43ac78ba3";

/// One `eth_call` the node was asked.
#[derive(Clone, Debug)]
pub(crate) struct Call {
    /// The contract, lowercase.
    pub to: String,
    /// The calldata, lowercase hex with `0x`.
    pub data: String,
    /// Whether the node was down (answered 503).
    pub while_down: bool,
}

#[derive(Default)]
struct State {
    /// Tokens with code (lowercase).
    tokens: HashSet<String>,
    /// (token, payer, nonce) used, as 64-hex-digit words without `0x`.
    used: HashSet<(String, String, String)>,
    /// (owner, nonce) Permit2 nonces used, as 64-hex-digit words.
    permit2_used: HashSet<(String, String)>,
    down: bool,
    calls: Vec<Call>,
}

pub(crate) struct ChainNode {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl ChainNode {
    /// A node on which `tokens` (EIP-3009 contracts) and Permit2 exist.
    pub(crate) fn start(tokens: &[&str]) -> ChainNode {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind chain node");
        let port = listener.local_addr().expect("node address").port();
        let state = Arc::new(Mutex::new(State {
            tokens: tokens.iter().map(|t| t.to_ascii_lowercase()).collect(),
            ..State::default()
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        ChainNode { port, state }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Marks EIP-3009 `nonce` (0x hex, 32 bytes) of `payer` used on `token`.
    pub(crate) fn use_nonce(&self, token: &str, payer: &str, nonce: &str) {
        let entry = (token.to_ascii_lowercase(), word(payer), word(nonce));
        self.state.lock().unwrap().used.insert(entry);
    }

    /// Marks Permit2 `nonce` (0x hex, 32 bytes) of `owner` used.
    pub(crate) fn use_permit2_nonce(&self, owner: &str, nonce: &str) {
        let entry = (word(owner), word(nonce));
        self.state.lock().unwrap().permit2_used.insert(entry);
    }

    /// While on, every request is answered `503`.
    pub(crate) fn down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    pub(crate) fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }
}

/// A value as one 32-byte word of lowercase hex (left-padded), without `0x`.
fn word(hex: &str) -> String {
    let digits = hex.trim_start_matches("0x").to_ascii_lowercase();
    format!("{digits:0>64}")
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(clone) => clone,
        Err(_) => return,
    });
    let mut stream = stream;
    // Keep-alive: one request after another on the connection.
    while let Some(body) = read_request(&mut reader) {
        let (status, answer) = answer(&body, state);
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        if stream.write_all(head.as_bytes()).is_err()
            || stream.write_all(answer.as_bytes()).is_err()
        {
            return;
        }
        let _ = stream.flush();
    }
}

/// The next request's body, or `None` when the connection ends.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

fn answer(body: &[u8], state: &Mutex<State>) -> (&'static str, String) {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let id = request["id"].clone();
    let mut state = state.lock().unwrap();
    if request["method"] == "eth_call" {
        let call = &request["params"][0];
        let while_down = state.down;
        state.calls.push(Call {
            to: call["to"].as_str().unwrap_or("").to_ascii_lowercase(),
            data: call["data"].as_str().unwrap_or("").to_ascii_lowercase(),
            while_down,
        });
    }
    if state.down {
        return (
            "503 Service Unavailable",
            r#"{"error":"node unavailable"}"#.into(),
        );
    }
    let outcome = match request["method"].as_str() {
        Some("eth_call") => eth_call(&request["params"][0], &state),
        _ => Err((-32601, "the method does not exist/is not available")),
    };
    let message = match outcome {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, text)) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": text}})
        }
    };
    ("200 OK", message.to_string())
}

fn eth_call(call: &Value, state: &State) -> Result<String, (i64, &'static str)> {
    let to = call["to"].as_str().unwrap_or("").to_ascii_lowercase();
    let data = call["data"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches("0x")
        .to_ascii_lowercase();
    if to != PERMIT2 && !state.tokens.contains(&to) {
        return Ok("0x".into()); // no contract there
    }
    if data.len() != 8 + 128 {
        return Err((-32000, "execution reverted"));
    }
    let (selector, first, second) = (&data[..8], &data[8..72], &data[72..136]);
    match (selector, to == PERMIT2) {
        ("e94a0102", false) => {
            let used = state
                .used
                .contains(&(to.clone(), first.to_string(), second.to_string()));
            Ok(format!("0x{:064x}", u8::from(used)))
        }
        ("4fe02b44", true) => Ok(format!("0x{}", bitmap(state, first, second))),
        _ => Err((-32000, "execution reverted")),
    }
}

/// Permit2's `nonceBitmap(owner, wordPos)`: bit `nonce & 0xff` set for each used nonce
/// of `owner` whose `nonce >> 8` is `word_position`.
fn bitmap(state: &State, owner: &str, word_position: &str) -> String {
    let mut bits = [0u8; 32];
    for (used_owner, nonce) in &state.permit2_used {
        // nonce >> 8 in hex is the nonce without its last byte, padded on the left.
        let position = format!("00{}", &nonce[..62]);
        if used_owner == owner && position == word_position {
            let bit = u8::from_str_radix(&nonce[62..], 16).unwrap_or(0);
            bits[31 - usize::from(bit / 8)] |= 1 << (bit % 8);
        }
    }
    bits.iter().map(|b| format!("{b:02x}")).collect()
}
