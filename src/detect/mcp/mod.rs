//! MCP's streamable HTTP transport: JSON-RPC `tools/call` requests and their answers, as
//! far as payments ride in them (SPEC §1, "x402 over MCP"; MPP over MCP alike).
//!
//! * this file: the request. [`read_call`] says whether a JSON body is a `tools/call` (its
//!   id and tool name: the answer may carry a challenge for that tool);
//!   [`read_paid_call`] reads one that carries a payment key into an [`McpCall`] whose
//!   [`MetaPayment`] the engine prices, or says why it cannot be governed.
//! * [`answer`]: the answer, JSON or server-sent events, read as it streams until the
//!   JSON-RPC response to the call is whole.
//! * [`x402_forms`]: what such a response says about an x402 payment: a challenge, a
//!   receipt.
//! * [`mpp_forms`]: the same for an MPP payment: `-32042` challenges, the
//!   `org.paymentauth/receipt`.
//!
//! The transport parts (body, answer, JSON-RPC id) know no payment protocol: a protocol
//! is a key in `params._meta` ([`meta_protocol`]) and a reader of its answer forms.
//! JSON-RPC messages are read with `jsonrpsee-types`, server-sent events with
//! `sse-stream`.

pub mod answer;
pub mod mpp_forms;
pub mod x402_forms;

use super::json_body::{JsonScanner, Scan};
use super::{Protocol, Undecidable, AMBIGUOUS_PAYMENT, UNSUPPORTED_PAYMENT};
use jsonrpsee_types::{Id, Request};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The JSON-RPC method of an MCP tool call.
pub const TOOLS_CALL: &str = "tools/call";

/// Longest tool name read: MCP names are short identifiers (the spec suggests at most
/// 128 characters); a longer one is not a call Purser governs.
pub const MAX_TOOL_NAME_BYTES: usize = 256;

/// The `_meta` keys that carry a payment Purser governs, and their protocol.
const GOVERNED_KEYS: [(&str, Protocol); 3] = [
    ("x402/payment", Protocol::X402Mcp),
    // Older clients; no SDK seen writes it, but the transport spec's drafts did.
    ("x402.payment", Protocol::X402Mcp),
    // MPP over MCP (draft-payment-transport-mcp-00, pympp's `McpClient`).
    (MPP_CREDENTIAL_KEY, Protocol::MppMcp),
];

/// Where an MPP credential rides in a `tools/call`'s `params._meta`.
pub const MPP_CREDENTIAL_KEY: &str = "org.paymentauth/credential";

/// The keys Purser governs, as the agent is told them.
const GOVERNED_SPELLING: &str =
    "params._meta[\"x402/payment\"] or params._meta[\"org.paymentauth/credential\"]";

/// An MCP `tools/call` request, as far as Purser reads it.
#[derive(Clone, Debug)]
pub struct McpCall {
    /// The JSON-RPC id: an answer Purser gives instead of the server echoes it.
    pub id: Id<'static>,
    /// `params.name`: rules, tools and categories can target it, and challenges are
    /// remembered per tool.
    pub tool: String,
    /// The payment in `params._meta`, when the call carries one.
    pub payment: Option<MetaPayment>,
}

/// A payment in a call's `params._meta`.
#[derive(Clone, Debug)]
pub struct MetaPayment {
    /// Its protocol, from its key.
    pub protocol: Protocol,
    /// The key as spelled (`x402/payment`).
    pub key: String,
    /// The payment object's JSON, byte for byte as sent: its digest identifies it.
    pub json: Box<RawValue>,
}

/// A call that carries a payment Purser will not forward, and the id to answer it under
/// when the body said one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedCall {
    /// The request's id, when Purser could read one.
    pub id: Option<Id<'static>>,
    /// Why the payment is not forwarded.
    pub undecidable: Undecidable,
}

/// `params` of a `tools/call`: only what Purser reads. Repeated members are an error
/// (serde refuses duplicate fields), so no server can read a different name or `_meta`.
#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(rename = "_meta", borrow, default)]
    meta: Option<BTreeMap<Cow<'a, str>, &'a RawValue>>,
}

/// Just the id of a JSON-RPC message that is otherwise unreadable.
#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow)]
    id: Id<'a>,
}

/// The protocol of a `_meta` key Purser governs (`x402/payment`, `x402.payment`).
pub fn meta_protocol(key: &str) -> Option<Protocol> {
    GOVERNED_KEYS
        .iter()
        .find(|(governed, _)| *governed == key)
        .map(|(_, protocol)| *protocol)
}

/// The `tools/call` a whole JSON body is, if it is one (id and tool name; the payment is
/// left unread). `None` for anything else: other methods, notifications, batches,
/// answers, or JSON that is not JSON-RPC.
pub fn read_call(body: &[u8]) -> Option<McpCall> {
    let request: Request<'_> = serde_json::from_slice(body).ok()?;
    if request.method != TOOLS_CALL {
        return None;
    }
    let params: CallParams<'_> = serde_json::from_str(request.params.as_ref()?.get()).ok()?;
    (params.name.len() <= MAX_TOOL_NAME_BYTES).then(|| McpCall {
        id: request.id.into_owned(),
        tool: params.name.into_owned(),
        payment: None,
    })
}

/// Reads a whole JSON body in which the detector found a payment key. A payment Purser
/// governs is exactly one governed key ([`meta_protocol`]) in `params._meta` of one
/// `tools/call` request, and no other payment key anywhere in the body; anything else is
/// refused, with the id to answer under when the body has one.
pub fn read_paid_call(body: &[u8]) -> Result<McpCall, RefusedCall> {
    let request: Request<'_> = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(error) => {
            return Err(refused(
                id_of(body),
                Undecidable::unreadable_body(&format!(
                    "it carries a payment key but is not one JSON-RPC request: {error}"
                )),
            ))
        }
    };
    let id = Some(request.id.clone().into_owned());
    let Some(count) = count_payment_keys(body) else {
        return Err(refused(
            id,
            Undecidable::unreadable_body("it is not strict JSON"),
        ));
    };
    let not_governed = |detail: &str| {
        refused(
            id.clone(),
            Undecidable {
                code: UNSUPPORTED_PAYMENT,
                message: format!(
                    "the request body carries a payment key {detail}, so it is not forwarded"
                ),
            },
        )
    };
    if request.method != TOOLS_CALL {
        return Err(not_governed(&format!(
            "in a `{}` request (Purser governs payments in `tools/call` only)",
            cut(&request.method)
        )));
    }
    let params: CallParams<'_> = request
        .params
        .as_ref()
        .ok_or_else(|| "it has no params".to_string())
        .and_then(|raw| serde_json::from_str(raw.get()).map_err(|e| e.to_string()))
        .map_err(|why| {
            refused(
                id.clone(),
                Undecidable::unreadable_body(&format!("its tools/call params: {why}")),
            )
        })?;
    if params.name.len() > MAX_TOOL_NAME_BYTES {
        return Err(not_governed(&format!(
            "for a tool whose name is longer than {MAX_TOOL_NAME_BYTES} bytes"
        )));
    }
    let governed: Vec<(&str, Protocol, &RawValue)> = params
        .meta
        .iter()
        .flatten()
        .filter_map(|(key, value)| meta_protocol(key).map(|p| (key.as_ref(), p, *value)))
        .collect();
    let (key, protocol, json) = match (governed.as_slice(), count) {
        ([one], 1) => *one,
        (_, found) if found > 1 => {
            return Err(refused(
                id,
                Undecidable {
                    code: AMBIGUOUS_PAYMENT,
                    message: format!(
                        "the tools/call body carries {found} payment keys; send exactly one, \
                         in {GOVERNED_SPELLING}"
                    ),
                },
            ))
        }
        _ => {
            return Err(not_governed(&format!(
                "under a key or in a place Purser does not read (it governs \
                 {GOVERNED_SPELLING} of a tools/call)"
            )))
        }
    };
    if !json.get().trim_start().starts_with('{') {
        return Err(refused(
            id,
            Undecidable {
                code: UNSUPPORTED_PAYMENT,
                message: format!("params._meta[\"{key}\"] must be a JSON object"),
            },
        ));
    }
    Ok(McpCall {
        id: request.id.into_owned(),
        tool: params.name.into_owned(),
        payment: Some(MetaPayment {
            protocol,
            key: key.to_string(),
            json: json.to_owned(),
        }),
    })
}

/// The id of a JSON-RPC message Purser could not otherwise read, if it can find one.
pub fn id_of(body: &[u8]) -> Option<Id<'static>> {
    serde_json::from_slice::<IdOnly<'_>>(body)
        .ok()
        .map(|message| message.id.into_owned())
}

/// The id a streaming scanner captured ([`JsonScanner::capturing_id`]), as JSON-RPC reads it.
pub fn captured_id(raw: &[u8]) -> Option<Id<'static>> {
    serde_json::from_slice::<Id<'_>>(raw)
        .ok()
        .map(Id::into_owned)
}

/// How many payment keys the whole body holds, wherever they are: the count is what
/// rules out a second payment a server might read instead.
fn count_payment_keys(body: &[u8]) -> Option<usize> {
    let mut scanner = JsonScanner::counting();
    scanner.feed(body);
    match scanner.finish() {
        Scan::Unreadable(_) => None,
        _ => Some(scanner.payment_keys().0),
    }
}

fn refused(id: Option<Id<'static>>, undecidable: Undecidable) -> RefusedCall {
    RefusedCall { id, undecidable }
}

/// A name from the wire, cut for a message.
fn cut(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests;
