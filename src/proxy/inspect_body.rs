//! Request bodies read for payments before they leave: x402 and MPP over MCP put the
//! payment in a JSON-RPC body (SPEC §1).
//!
//! Only bodies a JSON-RPC server would read are inspected ([`detect::body_inspection`]).
//! The first [`INSPECTED_PREFIX_BYTES`] are read and scanned before anything is sent. A
//! body with a payment key in it is read whole, within the same bound, and handed to the
//! detector ([`detect::mcp::read_paid_call`]): an MCP `tools/call` with an x402 payment
//! or an MPP credential in its `_meta` becomes an [`McpCall`] the engine decides on,
//! anything else is refused with nothing sent upstream, and so is a body with a payment
//! that is larger than the bound (read to its end, unsent, for the JSON-RPC id to answer under). A whole
//! `tools/call` body without a payment is an [`McpCall`] too: its answer may carry a
//! challenge. A larger body (an ordinary big JSON upload) is not held back: it streams on
//! through the same scanner ([`detect::json_body::JsonScanner`]), chunk by chunk, and a
//! chunk is handed upstream only once scanned. If a payment turns up behind the padding,
//! the upstream request is cut off before the chunk that carries it leaves, and the agent
//! gets a `403 unsupported_payment` (see [`BodyWatch`]). A body that declares
//! JSON but is not strict JSON is refused the same way; one that only might be JSON (no
//! content type, `text/plain`) passes once it proves not to be JSON. Bodies of any other
//! type are not held back at all but stream through the scanner too
//! ([`watch_undeclared`]): some servers parse JSON whatever the content type says.
//!
//! Trailers of an inspected body are not forwarded: a payment could ride in them.

use super::answers::{self, ErrorCode};
use super::body::{full, BoxError, Chained, ProxyBody};
use crate::detect::json_body::{JsonScanner, Scan};
use crate::detect::mcp::{self, McpCall, RefusedCall};
use crate::detect::{self, BodyInspection, Undecidable, UNSUPPORTED_PAYMENT};
use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// How much of a body is read and scanned before any of it goes upstream; also the most
/// of a body with a payment in it that Purser reads.
pub const INSPECTED_PREFIX_BYTES: usize = 64 * 1024;

/// The most of an oversized body with a payment that is read (and dropped) looking for
/// its JSON-RPC id; past it, the refusal is plain HTTP.
const MAX_DRAINED_BYTES: usize = 16 * 1024 * 1024;

/// What to do with a request after its body was looked at.
pub enum Inspected {
    /// Send it on. A watch is set when the body still streams through the scanner.
    Forward(Option<BodyWatch>),
    /// An MCP tool call, read whole (the body goes on as it came): the engine decides on
    /// the payment in its `_meta`, if it carries one, and its answer is watched.
    Call(McpCall),
    /// A payment Purser will not forward (or an unreadable JSON body): refuse, send
    /// nothing; answer under the call's id when it has one.
    Refuse(RefusedCall),
    /// The agent's body broke off while it was read.
    Failed(Response<ProxyBody>),
}

/// Tells whether the streaming rest of a body turned out to carry a payment: the scanner
/// records it here as it cuts the upstream request off.
#[derive(Clone, Default)]
pub struct BodyWatch(Arc<Mutex<Option<Undecidable>>>);

impl BodyWatch {
    /// The payment found after the body began to stream, if any.
    pub fn found(&self) -> Option<Undecidable> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    fn record(&self, found: Undecidable) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(found);
    }
}

/// The error the upstream request ends with when a payment is found mid-stream.
#[derive(Debug, thiserror::Error)]
#[error("purser cut the request off: {0}")]
struct PaymentInBody(String);

/// What a scan outcome means for the request: refuse, keep reading, or stop reading.
enum Verdict {
    Refuse(Undecidable),
    /// A payment key: the body is read whole for the detector.
    Payment,
    Continue,
    /// Not JSON, and it never said it was: nothing for a JSON-RPC server to read.
    NotJson,
}

fn verdict(scan: Scan, declared: bool) -> Verdict {
    match scan {
        Scan::Clean => Verdict::Continue,
        Scan::Found(_) => Verdict::Payment,
        Scan::Unreadable(why) if declared => Verdict::Refuse(Undecidable::unreadable_body(why)),
        Scan::Unreadable(_) => Verdict::NotJson,
    }
}

/// The refusal of a payment found in a body that is being streamed on, when it can
/// no longer be read whole.
fn streaming_refusal(scan: Scan, declared: bool) -> Option<Undecidable> {
    match verdict(scan, declared) {
        Verdict::Refuse(refusal) => Some(refusal),
        Verdict::Payment => Some(Undecidable {
            code: UNSUPPORTED_PAYMENT,
            message: format!(
                "a payment key turned up in a request body Purser streams on rather than \
                 reads whole (its content type is not JSON, or the key comes after the \
                 first {INSPECTED_PREFIX_BYTES} bytes), so the request was cut off before \
                 it; send an MCP payment in an application/json tools/call, its _meta first"
            ),
        }),
        Verdict::Continue | Verdict::NotJson => None,
    }
}

/// Whether a request has a body that [`inspect`] must read: cheap, and false for every
/// request without a body, so reads pay nothing.
pub fn worth_reading(request: &Request<ProxyBody>) -> bool {
    !request.body().is_end_stream()
        && detect::body_inspection(request.headers()) != BodyInspection::Skip
}

/// Any other body (another content type, or compressed without saying it is JSON) still
/// streams through the scanner, holding nothing back: a server that parses JSON whatever
/// the content type says must not receive a payment either. The first bytes of a body
/// that is not JSON end the scan; one that is JSON and carries a payment key is cut off
/// before the chunk with the key leaves, as a large JSON body is. `None` for no body.
pub fn watch_undeclared(request: &mut Request<ProxyBody>) -> Option<BodyWatch> {
    if request.body().is_end_stream() {
        return None;
    }
    let inner = std::mem::replace(request.body_mut(), super::body::empty());
    let watch = BodyWatch::default();
    let scanned = ScannedBody {
        inner,
        scanner: JsonScanner::default(),
        declared: false,
        watch: watch.clone(),
        done: false,
    };
    *request.body_mut() = scanned.boxed_unsync();
    Some(watch)
}

/// Reads and scans the start of the request's body if it may be JSON; see the module.
pub async fn inspect(request: &mut Request<ProxyBody>) -> Inspected {
    let declared = match detect::body_inspection(request.headers()) {
        _ if request.body().is_end_stream() => return Inspected::Forward(None),
        BodyInspection::Skip => return Inspected::Forward(None),
        BodyInspection::Undecodable(refusal) => return refuse(refusal),
        BodyInspection::Json { declared } => declared,
    };
    let mut body = std::mem::replace(request.body_mut(), super::body::empty());
    let mut scanner = JsonScanner::default();
    let mut prefix = BytesMut::new();
    loop {
        let data = match body.frame().await {
            None => {
                return match verdict(scanner.finish(), declared) {
                    Verdict::Refuse(refusal) => refuse(refusal),
                    Verdict::Payment => read_paid(request, body, prefix).await,
                    Verdict::Continue | Verdict::NotJson => {
                        let whole = prefix.freeze();
                        let call = tools_call(&whole);
                        *request.body_mut() = full(whole);
                        call.map_or(Inspected::Forward(None), Inspected::Call)
                    }
                };
            }
            Some(Err(error)) => return Inspected::Failed(broken_body(&error)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_trailers) => continue,
            },
        };
        let outcome = verdict(scanner.feed(&data), declared);
        prefix.extend_from_slice(&data);
        match outcome {
            Verdict::Refuse(refusal) => return refuse(refusal),
            Verdict::Payment => return read_paid(request, body, prefix).await,
            Verdict::NotJson => {
                *request.body_mut() = Chained::new(prefix.freeze(), body).boxed_unsync();
                return Inspected::Forward(None);
            }
            Verdict::Continue if prefix.len() > INSPECTED_PREFIX_BYTES => {
                let watch = BodyWatch::default();
                let rest = ScannedBody {
                    inner: body,
                    scanner,
                    declared,
                    watch: watch.clone(),
                    done: false,
                };
                *request.body_mut() = Chained::new(prefix.freeze(), rest).boxed_unsync();
                return Inspected::Forward(Some(watch));
            }
            Verdict::Continue => {}
        }
    }
}

/// The `tools/call` a whole clean body is, if it says so (a quick look for the method's
/// name first: most JSON bodies are not MCP calls).
fn tools_call(body: &[u8]) -> Option<McpCall> {
    let named = body
        .windows(mcp::TOOLS_CALL.len())
        .any(|window| window == mcp::TOOLS_CALL.as_bytes());
    named.then(|| mcp::read_call(body)).flatten()
}

fn refuse(undecidable: Undecidable) -> Inspected {
    Inspected::Refuse(RefusedCall {
        id: None,
        undecidable,
    })
}

/// A payment key was found in `prefix`: the whole body is read, within the bound, and
/// the detector says whether it is a payment Purser governs. Nothing has been sent.
async fn read_paid(
    request: &mut Request<ProxyBody>,
    mut body: ProxyBody,
    mut whole: BytesMut,
) -> Inspected {
    loop {
        if whole.len() > INSPECTED_PREFIX_BYTES {
            return oversized(body, whole).await;
        }
        match body.frame().await {
            None => break,
            Some(Err(error)) => return Inspected::Failed(broken_body(&error)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    whole.extend_from_slice(&data);
                }
            }
        }
    }
    match mcp::read_paid_call(&whole) {
        Ok(call) => {
            *request.body_mut() = full(whole.freeze());
            Inspected::Call(call)
        }
        Err(refused) => Inspected::Refuse(refused),
    }
}

/// A body with a payment, larger than Purser reads before forwarding one: refused. The
/// rest is read (and dropped) for the JSON-RPC id at its end, so an MCP client hears the
/// refusal as the answer to its call.
async fn oversized(mut body: ProxyBody, prefix: BytesMut) -> Inspected {
    let mut scanner = JsonScanner::structure().capturing_id();
    scanner.feed(&prefix);
    let mut read = prefix.len();
    drop(prefix);
    while read <= MAX_DRAINED_BYTES {
        match body.frame().await {
            None => break,
            Some(Err(error)) => return Inspected::Failed(broken_body(&error)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    read += data.len();
                    scanner.feed(&data);
                }
            }
        }
    }
    let id = (read <= MAX_DRAINED_BYTES)
        .then(|| scanner.top_level_id().and_then(mcp::captured_id))
        .flatten();
    Inspected::Refuse(RefusedCall {
        id,
        undecidable: Undecidable {
            code: UNSUPPORTED_PAYMENT,
            message: format!(
                "the request body carries a payment and is larger than the \
                 {INSPECTED_PREFIX_BYTES} bytes Purser reads before forwarding one, so it is \
                 not forwarded; send the payment with smaller arguments"
            ),
        },
    })
}

fn broken_body(error: &BoxError) -> Response<ProxyBody> {
    let code = if error.is::<super::body::BodyStalled>() {
        ErrorCode::RequestTimeout
    } else {
        ErrorCode::BadRequest
    };
    answers::error(code, format!("the request body broke off: {error}"))
}

/// The rest of a large body, each chunk scanned before it is handed on.
struct ScannedBody {
    inner: ProxyBody,
    scanner: JsonScanner,
    declared: bool,
    watch: BodyWatch,
    /// Set once a payment was found (or the JSON proved not to be JSON): from then on
    /// the body is either cut off or passed through unscanned.
    done: bool,
}

impl Body for ScannedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                other => return other,
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                // Trailers are dropped (see the module).
                Err(_trailers) => continue,
            };
            if self.done {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            let declared = self.declared;
            let scan = self.scanner.feed(&data);
            if let Verdict::NotJson = verdict(scan, declared) {
                self.done = true;
            }
            match streaming_refusal(scan, declared) {
                None => {}
                Some(refusal) => {
                    tracing::warn!(
                        code = refusal.code,
                        "payment found in a streaming request body; cutting the request off"
                    );
                    let error = PaymentInBody(refusal.message.clone());
                    self.watch.record(refusal);
                    return Poll::Ready(Some(Err(Box::new(error))));
                }
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn request(content_type: &str, chunks: Vec<Vec<u8>>) -> Request<ProxyBody> {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .into_iter()
            .map(|chunk| Ok(Frame::data(Bytes::from(chunk))))
            .collect();
        Request::builder()
            .method("POST")
            .uri("http://merchant/mcp")
            .header("content-type", content_type)
            .body(StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync())
            .unwrap()
    }

    async fn collect(request: Request<ProxyBody>) -> Result<Bytes, BoxError> {
        Ok(request.into_body().collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn small_bodies_are_refused_before_anything_leaves_and_clean_ones_pass_intact() {
        let paid =
            br#"{"jsonrpc":"2.0","method":"tools/call","params":{"_meta":{"x402/payment":{}}}}"#;
        let mut refused = request(
            "application/json",
            vec![paid[..20].to_vec(), paid[20..].to_vec()],
        );
        assert!(matches!(inspect(&mut refused).await, Inspected::Refuse(_)));
        let clean = br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"t"}}"#.to_vec();
        let mut passed = request("application/json", vec![clean.clone()]);
        assert!(matches!(
            inspect(&mut passed).await,
            Inspected::Forward(None)
        ));
        assert_eq!(collect(passed).await.unwrap(), Bytes::from(clean));
    }

    #[tokio::test]
    async fn a_payment_behind_the_prefix_cuts_the_stream_before_its_chunk() {
        let pad = format!(r#"{{"pad":"{}""#, "a".repeat(INSPECTED_PREFIX_BYTES + 10));
        let tail = br#","params":{"_meta":{"x402/payment":1}}}"#.to_vec();
        let mut request = request("application/json", vec![pad.into_bytes(), tail]);
        let Inspected::Forward(Some(watch)) = inspect(&mut request).await else {
            panic!("a long body streams on");
        };
        assert!(collect(request).await.is_err(), "the stream is cut off");
        assert_eq!(watch.found().unwrap().code, "unsupported_payment");
    }

    #[tokio::test]
    async fn large_ordinary_json_and_non_json_text_stream_intact() {
        let big = format!(r#"{{"data":"{}"}}"#, "b".repeat(3 * INSPECTED_PREFIX_BYTES));
        let chunks: Vec<Vec<u8>> = big.as_bytes().chunks(10_000).map(<[u8]>::to_vec).collect();
        let mut request = request("application/json", chunks);
        let Inspected::Forward(Some(watch)) = inspect(&mut request).await else {
            panic!("a long body streams on");
        };
        assert_eq!(collect(request).await.unwrap(), Bytes::from(big));
        assert!(watch.found().is_none());
        let text = b"hello, { not json".to_vec();
        let mut plain = request_text(text.clone());
        assert!(matches!(
            inspect(&mut plain).await,
            Inspected::Forward(None)
        ));
        assert_eq!(collect(plain).await.unwrap(), Bytes::from(text));
    }

    #[tokio::test]
    async fn an_mcp_call_is_read_whole_with_its_payment_and_goes_on_intact() {
        let paid = br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"_meta":{"x402/payment":{"x402Version":2}},"name":"get_weather"}}"#;
        let chunks: Vec<Vec<u8>> = paid.chunks(9).map(<[u8]>::to_vec).collect();
        let mut request = request("application/json", chunks);
        let Inspected::Call(call) = inspect(&mut request).await else {
            panic!("a paid tools/call is a call");
        };
        assert_eq!(call.tool, "get_weather");
        assert!(call.payment.is_some());
        assert_eq!(collect(request).await.unwrap(), Bytes::from(paid.to_vec()));
        let probe =
            br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_weather"}}"#;
        let mut request = request_text(probe.to_vec());
        let Inspected::Call(call) = inspect(&mut request).await else {
            panic!("a tools/call without a payment is a call too");
        };
        assert!(call.payment.is_none());
    }

    #[tokio::test]
    async fn an_oversized_paid_call_is_refused_under_the_id_at_its_end() {
        let big = format!(
            r#"{{"method":"tools/call","params":{{"_meta":{{"x402/payment":{{}}}},"name":"t","arguments":{{"a":"{}"}}}},"jsonrpc":"2.0","id":41}}"#,
            "x".repeat(3 * INSPECTED_PREFIX_BYTES)
        );
        let chunks: Vec<Vec<u8>> = big.as_bytes().chunks(8192).map(<[u8]>::to_vec).collect();
        let mut request = request("application/json", chunks);
        let Inspected::Refuse(refused) = inspect(&mut request).await else {
            panic!("an oversized paid call is refused");
        };
        assert_eq!(refused.id, Some(jsonrpsee_types::Id::Number(41)));
        assert_eq!(refused.undecidable.code, "unsupported_payment");
        assert!(refused.undecidable.message.contains("larger than"));
    }

    fn request_text(body: Vec<u8>) -> Request<ProxyBody> {
        request("text/plain", vec![body])
    }
}
