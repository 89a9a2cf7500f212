//! The one payment detector: does a request carry a payment, in which protocol, and can
//! Purser govern it?
//!
//! Every entry point (absolute-form requests, intercepted TLS over HTTP/1.1 and HTTP/2,
//! plaintext inside `CONNECT`, payments to `tunnel` hosts, connections redirected to the
//! transparent listener) asks this module, and nothing else, where a payment is:
//!
//! * [`names`]: header names as frameworks read them (`PAYMENT_SIGNATURE` is
//!   `PAYMENT-SIGNATURE`), for payment, receipt and Purser's own control headers;
//! * [`credentials`]: `Authorization: Payment` (MPP) and `L402` / `LSAT`;
//! * [`mpp`]: an MPP `charge` credential read as a payment: its terms, what it signs,
//!   its replay keys;
//! * [`json_body`]: payment keys in JSON bodies (x402 and MPP over MCP);
//! * [`mcp`]: MCP tool calls over streamable HTTP: the payment in `params._meta` and
//!   the challenge and receipt in the JSON or event-stream answer.
//!
//! What a payment costs is the engine's business ([`crate::engine::pricing`]): x402 is
//! priced from what it signs, checked against the challenge it answers; MPP from the
//! challenge its credential is bound to. The detector tells the engine which payment it
//! has to price ([`HeadPayment`]), and calls everything it cannot price
//! [`Undecidable`]: two payments in one request (`ambiguous_payment`), or a protocol
//! Purser does not govern yet (`unsupported_payment`). Either is refused, never
//! forwarded. Governing another protocol means turning its detection here into a
//! payment the engine prices: one detector per protocol. x402 and MPP over MCP are
//! governed that way ([`request_payment`] hands the engine its [`mcp::MetaPayment`]).

pub mod credentials;
pub mod json_body;
pub mod mcp;
pub mod mpp;
pub mod names;

use crate::mpp::MppError;
use crate::x402::{self, Receipt, X402Error};
use http::{header, HeaderMap, HeaderValue};
pub use names::PaymentHeader;
use names::Role;

/// The refusal code of a payment Purser cannot price or decide.
pub const UNSUPPORTED_PAYMENT: &str = "unsupported_payment";
/// The refusal code of a request that carries more than one payment.
pub const AMBIGUOUS_PAYMENT: &str = "ambiguous_payment";

/// A payment protocol, as the detector recognises it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// x402 v1, `X-PAYMENT`.
    X402V1,
    /// x402 v2, `PAYMENT-SIGNATURE`.
    X402V2,
    /// The Machine Payments Protocol, `Authorization: Payment`.
    Mpp,
    /// L402 (formerly LSAT), `Authorization: L402` / `LSAT`.
    L402,
    /// x402 over MCP: a payment in a JSON-RPC body's `_meta`.
    X402Mcp,
    /// MPP over MCP: `_meta["org.paymentauth/credential"]`.
    MppMcp,
}

impl Protocol {
    /// How the protocol is named to the agent.
    pub fn describe(self) -> &'static str {
        match self {
            Protocol::X402V1 => "an x402 v1 payment (X-PAYMENT)",
            Protocol::X402V2 => "an x402 v2 payment (PAYMENT-SIGNATURE)",
            Protocol::Mpp => "a Machine Payments Protocol credential (Authorization: Payment)",
            Protocol::L402 => "an L402/LSAT credential (Authorization: L402)",
            Protocol::X402Mcp => "an x402 payment in a JSON-RPC (MCP) body's _meta",
            Protocol::MppMcp => "an MPP credential in a JSON-RPC (MCP) body's _meta",
        }
    }
}

/// A payment Purser cannot decide, and why: refused with `code`, never forwarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undecidable {
    /// [`UNSUPPORTED_PAYMENT`] or [`AMBIGUOUS_PAYMENT`].
    pub code: &'static str,
    /// What the agent reads, saying what to do.
    pub message: String,
}

impl Undecidable {
    /// A payment in a protocol Purser does not govern yet; `detail` says where it was.
    pub fn unsupported(protocol: Protocol, detail: &str) -> Self {
        Undecidable {
            code: UNSUPPORTED_PAYMENT,
            message: format!(
                "{} {detail}: Purser cannot price or decide this protocol yet, so it is not \
                 forwarded; pay with x402 (HTTP headers, or MCP's _meta[\"x402/payment\"]) \
                 instead",
                protocol.describe()
            ),
        }
    }

    /// A body Purser cannot read well enough to rule out a payment in it.
    pub fn unreadable_body(why: &str) -> Self {
        Undecidable {
            code: UNSUPPORTED_PAYMENT,
            message: format!(
                "the JSON request body cannot be checked for a payment ({why}), so it is not \
                 forwarded; send strict, uncompressed UTF-8 JSON"
            ),
        }
    }

    fn ambiguous(found: &[Protocol]) -> Self {
        let message = match found {
            [first, second] if first == second => format!(
                "{} is sent more than once (in one spelling or several: `_` and `-` are the \
                 same to a merchant); send exactly one",
                first.describe()
            ),
            _ => {
                let named: Vec<&str> = found.iter().map(|p| p.describe()).collect();
                format!(
                    "the request carries {} payments ({}); send exactly one",
                    found.len(),
                    named.join(", ")
                )
            }
        };
        Undecidable {
            code: AMBIGUOUS_PAYMENT,
            message,
        }
    }
}

/// The one payment a request's head carries, in a protocol Purser governs.
#[derive(Clone, Debug)]
pub enum HeadPayment {
    /// An x402 payment header.
    X402(X402Header),
    /// An MPP credential: the `Authorization` (or `Payment-Authorization`) value that
    /// carries it, read by [`mpp::read_credential`].
    Mpp(HeaderValue),
}

impl HeadPayment {
    /// The protocol it is in.
    pub fn protocol(&self) -> Protocol {
        match self {
            HeadPayment::X402(header) => x402_protocol(header.kind),
            HeadPayment::Mpp(_) => Protocol::Mpp,
        }
    }
}

/// The x402 payment header a request carries.
#[derive(Clone, Debug)]
pub struct X402Header {
    /// Which header carried it: `X-PAYMENT` (v1) or `PAYMENT-SIGNATURE` (v2).
    pub kind: PaymentHeader,
    /// The header's value as sent: base64 of the payment's JSON.
    pub value: HeaderValue,
}

/// Whether the engine must see a request: it carries a payment or payment credential,
/// or one of Purser's control headers that act on a session (phase, transaction), in any
/// spelling. Reads without any of these pass without touching session state (a read
/// naming its session, `X-Purser-Session`, still is only a read). One pass over the
/// header names.
pub fn inspects(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| match names::role(name.as_str()) {
        Some(Role::Payment(_)) => true,
        Some(Role::Control(control)) => control != names::Control::Session,
        Some(Role::Authorization) => headers
            .get_all(name)
            .iter()
            .any(|value| credentials::payment_scheme(value.as_bytes()).is_some()),
        _ => false,
    })
}

/// The one payment of a request's head, if it carries one: an x402 header or an MPP
/// credential. Two payments (two headers, even the same header twice or in two
/// spellings, two credentials in one `Authorization`, or an x402 header beside another
/// protocol's credential) are [`AMBIGUOUS_PAYMENT`]; a credential of a protocol Purser
/// does not govern is [`UNSUPPORTED_PAYMENT`].
pub fn head_payment(headers: &HeaderMap) -> Result<Option<HeadPayment>, Undecidable> {
    let mut payment = None;
    let mut found = Vec::new();
    for (name, value) in headers {
        match names::role(name.as_str()) {
            Some(Role::Payment(kind)) => {
                found.push(x402_protocol(kind));
                payment = Some(HeadPayment::X402(X402Header {
                    kind,
                    value: value.clone(),
                }));
            }
            Some(Role::Authorization) => {
                for protocol in credentials::payment_schemes(value.as_bytes()) {
                    if protocol == Protocol::Mpp {
                        payment = Some(HeadPayment::Mpp(value.clone()));
                    }
                    found.push(protocol);
                }
            }
            _ => {}
        }
    }
    match found.as_slice() {
        [] => Ok(None),
        [Protocol::X402V1 | Protocol::X402V2 | Protocol::Mpp] => Ok(payment),
        [other] => Err(Undecidable::unsupported(*other, "in Authorization")),
        several => Err(Undecidable::ambiguous(several)),
    }
}

/// A request's one payment, in the form the engine prices.
#[derive(Clone, Debug)]
pub enum FoundPayment<'a> {
    /// An x402 payment header or an MPP credential in the request's head.
    Head(HeadPayment),
    /// A payment in an MCP call's `params._meta` ([`mcp::read_paid_call`]).
    Meta(&'a mcp::MetaPayment),
}

/// The one payment of a request: in its headers ([`head_payment`]) or in its body (an
/// MCP call's `_meta`, read before the engine is asked). A payment in both is
/// [`AMBIGUOUS_PAYMENT`].
pub fn request_payment<'a>(
    headers: &HeaderMap,
    body: Option<&'a mcp::MetaPayment>,
) -> Result<Option<FoundPayment<'a>>, Undecidable> {
    match (head_payment(headers)?, body) {
        (None, None) => Ok(None),
        (Some(head), None) => Ok(Some(FoundPayment::Head(head))),
        (None, Some(meta)) => Ok(Some(FoundPayment::Meta(meta))),
        (Some(head), Some(meta)) => Err(Undecidable::ambiguous(&[head.protocol(), meta.protocol])),
    }
}

/// Whether a request carries any payment or payment credential in its headers.
pub fn carries_payment(headers: &HeaderMap) -> bool {
    !matches!(head_payment(headers), Ok(None))
}

/// Removes every payment, payment credential and control field, in any spelling: for
/// places the engine does not decide on, such as a request's trailers.
pub fn strip_payment_fields(fields: &mut HeaderMap) {
    let payment_like: Vec<header::HeaderName> = fields
        .keys()
        .filter(|name| match names::role(name.as_str()) {
            Some(Role::Payment(_) | Role::Control(_) | Role::Http2Settings) => true,
            Some(Role::Authorization) => fields
                .get_all(*name)
                .iter()
                .any(|value| credentials::payment_scheme(value.as_bytes()).is_some()),
            _ => false,
        })
        .cloned()
        .collect();
    for name in payment_like {
        tracing::warn!(field = %name, "dropping a payment-like trailer field");
        fields.remove(name);
    }
}

/// Removes every spelling of Purser's control headers but the canonical one, which the
/// engine reads and strips itself: `X_Purser_Phase` is neither honoured nor forwarded.
pub fn strip_control_spellings(headers: &mut HeaderMap) {
    let variants: Vec<header::HeaderName> = headers
        .keys()
        .filter(|name| match names::role(name.as_str()) {
            Some(Role::Control(control)) => name.as_str() != names::control_name(control),
            _ => false,
        })
        .cloned()
        .collect();
    for name in variants {
        tracing::warn!(header = %name, "stripping a misspelt Purser control header");
        headers.remove(name);
    }
}

/// Removes `X-Purser-Session` in every spelling. It only names a redirected request's
/// session to Purser, which reads it before this, so it never goes upstream, on reads too.
pub fn strip_session_header(headers: &mut HeaderMap) {
    let spellings: Vec<header::HeaderName> = headers
        .keys()
        .filter(|name| names::role(name.as_str()) == Some(Role::Control(names::Control::Session)))
        .cloned()
        .collect();
    for name in spellings {
        headers.remove(name);
    }
}

/// The receipt on an upstream answer, in any spelling of `X-PAYMENT-RESPONSE` or
/// `PAYMENT-RESPONSE`. Receipts that differ make the answer's receipt unreadable: which
/// one would the agent's client believe?
pub fn receipt(headers: &HeaderMap) -> Option<Result<Receipt, X402Error>> {
    let mut found: Option<&HeaderValue> = None;
    for (name, value) in headers {
        if names::role(name.as_str()) != Some(Role::Receipt) {
            continue;
        }
        match found {
            Some(first) if first != value => {
                return Some(Err(X402Error::WrongShape(
                    "the answer carries receipt headers that differ".to_string(),
                )))
            }
            _ => found = Some(value),
        }
    }
    found.map(|value| x402::parse_receipt(value.as_bytes()))
}

/// The MPP receipt on an upstream answer, in any spelling of `Payment-Receipt`.
/// Receipts that differ make the answer's receipt unreadable.
pub fn mpp_receipt(headers: &HeaderMap) -> Option<Result<crate::mpp::Receipt, MppError>> {
    let mut found: Option<&HeaderValue> = None;
    for (name, value) in headers {
        if names::role(name.as_str()) != Some(Role::MppReceipt) {
            continue;
        }
        match found {
            Some(first) if first != value => {
                return Some(Err(MppError::WrongShape(
                    "the answer carries Payment-Receipt headers that differ".to_string(),
                )))
            }
            _ => found = Some(value),
        }
    }
    found.map(|value| crate::mpp::parse_receipt_header(value.as_bytes()))
}

/// Whether, and how strictly, a request's body is read for payments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyInspection {
    /// Not a body a JSON-RPC server reads.
    Skip,
    /// JSON, or maybe JSON.
    Json {
        /// The content type says JSON, so a body that is not strict JSON is refused;
        /// otherwise (no content type, `text/plain`) it passes.
        declared: bool,
    },
    /// Declared JSON that Purser cannot read (compressed): refused.
    Undecodable(Undecidable),
}

/// How a request's body is inspected, from its `Content-Type` and `Content-Encoding`.
/// MCP's streamable HTTP sends `application/json`; every content type naming JSON
/// (`application/json-rpc`, `+json`, NDJSON) is read, as are bodies a lenient server
/// might parse as JSON anyway (no content type, `text/plain`).
pub fn body_inspection(headers: &HeaderMap) -> BodyInspection {
    let types = headers.get_all(header::CONTENT_TYPE);
    let declared = types
        .iter()
        .any(|value| contains_ignore_case(value.as_bytes(), b"json"));
    // No content type at all counts as "maybe" too (`all` of nothing).
    let maybe = types
        .iter()
        .all(|value| starts_with_ignore_case(trim(value.as_bytes()), b"text/plain"));
    if !declared && !maybe {
        return BodyInspection::Skip;
    }
    let encoded = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .any(|coding| {
            let coding = trim(coding);
            !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity")
        });
    match (encoded, declared) {
        (false, _) => BodyInspection::Json { declared },
        (true, true) => BodyInspection::Undecodable(Undecidable::unreadable_body(
            "it is compressed (Content-Encoding)",
        )),
        (true, false) => BodyInspection::Skip,
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

fn starts_with_ignore_case(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && haystack[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The protocol version an x402 payment header carries.
fn x402_protocol(kind: PaymentHeader) -> Protocol {
    match kind {
        PaymentHeader::V1 => Protocol::X402V1,
        PaymentHeader::V2 => Protocol::X402V2,
    }
}

#[cfg(test)]
mod tests;
