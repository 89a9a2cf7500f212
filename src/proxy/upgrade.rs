//! Protocol switches: only WebSocket passes (SPEC §1).
//!
//! An upgraded connection is spliced byte for byte, so whatever the agent and the
//! merchant speak over it is unseen. `Upgrade: h2c` would carry HTTP/2 requests, payment
//! headers and all, past every decision. So a request that asks for anything but exactly
//! `websocket` (`h2c` in any case, a list such as `foo, websocket`, or `HTTP2-Settings`,
//! which only an h2c upgrade sends) is refused before it goes anywhere, whichever way it
//! came in: absolute-form, intercepted TLS or plaintext inside `CONNECT`. The merchant's
//! `101` must switch to WebSocket too: a merchant that answers a WebSocket request by
//! switching to something else is not spliced. A `CONNECT` inside a tunnel is refused as
//! well: it would open a second, uninspected tunnel.

use crate::detect::names::{role, Role};
use http::{header, HeaderMap, Method};

/// Why a request's protocol switch is refused, or `None` when it may go on: no switch at
/// all, or a WebSocket handshake (`GET`, `Upgrade: websocket` and nothing else).
pub fn request_refusal(method: &Method, headers: &HeaderMap) -> Option<String> {
    if method == Method::CONNECT {
        return Some(
            "CONNECT is for the proxy itself; a CONNECT inside a tunnel is not forwarded"
                .to_string(),
        );
    }
    if headers
        .keys()
        .any(|name| role(name.as_str()) == Some(Role::Http2Settings))
    {
        return Some(
            "HTTP2-Settings belongs to an h2c upgrade; Purser passes only WebSocket upgrades \
             (HTTP/2 is served inside intercepted TLS)"
                .to_string(),
        );
    }
    let protocols = upgrade_protocols(headers)?;
    match protocols.as_slice() {
        [only] if only.eq_ignore_ascii_case("websocket") && method == Method::GET => None,
        [only] if only.eq_ignore_ascii_case("websocket") => Some(format!(
            "a WebSocket handshake is a GET, not {method}; not forwarded"
        )),
        _ => Some(format!(
            "`Upgrade: {}` is refused: Purser passes only `Upgrade: websocket` (a spliced \
             upgrade would carry payments it never sees); use HTTPS for HTTP/2",
            protocols.join(", ")
        )),
    }
}

/// Why a `101` answer is not spliced, or `None` when it switches to WebSocket.
pub fn switch_refusal(response_headers: &HeaderMap) -> Option<String> {
    let protocols = upgrade_protocols(response_headers).unwrap_or_default();
    match protocols.as_slice() {
        [only] if only.eq_ignore_ascii_case("websocket") => None,
        _ => Some(format!(
            "the upstream switched protocols to `{}` instead of WebSocket; not spliced",
            protocols.join(", ")
        )),
    }
}

/// Every protocol the `Upgrade` headers name, or `None` when there is no `Upgrade`
/// header. A value that is not text counts as a protocol of its own (and is refused).
fn upgrade_protocols(headers: &HeaderMap) -> Option<Vec<String>> {
    let mut values = headers.get_all(header::UPGRADE).iter().peekable();
    values.peek()?;
    let mut protocols = Vec::new();
    for value in values {
        match value.to_str() {
            Ok(text) => protocols.extend(
                text.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_string),
            ),
            Err(_) => protocols.push("(not text)".to_string()),
        }
    }
    if protocols.is_empty() {
        protocols.push("(empty)".to_string());
    }
    Some(protocols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn only_a_websocket_get_may_switch() {
        let get = Method::GET;
        assert!(request_refusal(&get, &headers(&[])).is_none());
        assert!(request_refusal(&get, &headers(&[("upgrade", "websocket")])).is_none());
        assert!(request_refusal(&get, &headers(&[("upgrade", "WebSocket")])).is_none());
        for pairs in [
            &[("upgrade", "h2c")][..],
            &[("upgrade", "H2C")],
            &[("upgrade", "foo, websocket")],
            &[("upgrade", "websocket"), ("upgrade", "h2c")],
            &[("upgrade", "")],
            &[("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA")],
            &[("HTTP2_Settings", "AAMAAABk")],
            &[("upgrade", "websocket"), ("http2-settings", "AA")],
        ] {
            assert!(
                request_refusal(&get, &headers(pairs)).is_some(),
                "{pairs:?}"
            );
        }
        assert!(request_refusal(&Method::POST, &headers(&[("upgrade", "websocket")])).is_some());
        assert!(request_refusal(&Method::CONNECT, &headers(&[])).is_some());
    }

    #[test]
    fn a_switch_must_be_to_websocket() {
        assert!(switch_refusal(&headers(&[("upgrade", "websocket")])).is_none());
        assert!(switch_refusal(&headers(&[("upgrade", "h2c")])).is_some());
        assert!(switch_refusal(&headers(&[])).is_some());
    }
}
