//! Request bodies read for payments before they leave: x402 and MPP over MCP put the
//! payment in a JSON-RPC body (SPEC §1), which Purser cannot govern yet and refuses.
//!
//! Only bodies a JSON-RPC server would read are inspected ([`detect::body_inspection`]).
//! The first [`INSPECTED_PREFIX_BYTES`] are read and scanned before anything is sent, so
//! a payment in an ordinary MCP call (a few kilobytes) is refused with nothing sent
//! upstream. A larger body (an ordinary big JSON upload) is not held back: it streams on
//! through the same scanner ([`detect::json_body::JsonScanner`]), chunk by chunk, and a
//! chunk is handed upstream only once scanned. If a payment turns up behind the padding,
//! the upstream request is cut off before the chunk that carries it leaves, and the agent
//! gets the same `403 unsupported_payment` (see [`BodyWatch`]). A body that declares
//! JSON but is not strict JSON is refused the same way; one that only might be JSON (no
//! content type, `text/plain`) passes once it proves not to be JSON. Bodies of any other
//! type are not held back at all but stream through the scanner too
//! ([`watch_undeclared`]): some servers parse JSON whatever the content type says.
//!
//! Trailers of an inspected body are not forwarded: a payment could ride in them.

use super::answers::{self, ErrorCode};
use super::body::{full, BoxError, Chained, ProxyBody};
use crate::detect::json_body::{JsonScanner, Scan};
use crate::detect::{self, BodyInspection, Undecidable};
use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// How much of a body is read and scanned before any of it goes upstream.
pub const INSPECTED_PREFIX_BYTES: usize = 64 * 1024;

/// What to do with a request after its body was looked at.
pub enum Inspected {
    /// Send it on. A watch is set when the body still streams through the scanner.
    Forward(Option<BodyWatch>),
    /// A payment (or an unreadable JSON body) in the first part: refuse, send nothing.
    Refuse(Undecidable),
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
    Continue,
    /// Not JSON, and it never said it was: nothing for a JSON-RPC server to read.
    NotJson,
}

fn verdict(scan: Scan, declared: bool) -> Verdict {
    match scan {
        Scan::Clean => Verdict::Continue,
        Scan::Found(protocol) => {
            Verdict::Refuse(Undecidable::unsupported(protocol, "in the request body"))
        }
        Scan::Unreadable(why) if declared => Verdict::Refuse(Undecidable::unreadable_body(why)),
        Scan::Unreadable(_) => Verdict::NotJson,
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
        BodyInspection::Undecodable(refusal) => return Inspected::Refuse(refusal),
        BodyInspection::Json { declared } => declared,
    };
    let mut body = std::mem::replace(request.body_mut(), super::body::empty());
    let mut scanner = JsonScanner::default();
    let mut prefix = BytesMut::new();
    loop {
        let data = match body.frame().await {
            None => {
                return match verdict(scanner.finish(), declared) {
                    Verdict::Refuse(refusal) => Inspected::Refuse(refusal),
                    Verdict::Continue | Verdict::NotJson => {
                        *request.body_mut() = full(prefix.freeze());
                        Inspected::Forward(None)
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
            Verdict::Refuse(refusal) => return Inspected::Refuse(refusal),
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
            match verdict(self.scanner.feed(&data), declared) {
                Verdict::Continue => {}
                Verdict::NotJson => self.done = true,
                Verdict::Refuse(refusal) => {
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

    fn request_text(body: Vec<u8>) -> Request<ProxyBody> {
        request("text/plain", vec![body])
    }
}
