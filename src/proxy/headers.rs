//! Header hygiene between agent and upstream: hop-by-hop headers and proxy credentials
//! never cross the proxy (RFC 9110 §7.6.1).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one hop and are never forwarded. Typed names, so removing them
/// is a hash look-up rather than a parse per name per request.
const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    // Only an h2c upgrade sends it, and h2c never passes ([`super::upgrade`]).
    HeaderName::from_static("http2-settings"),
];

/// Whether a request asks to switch protocols (WebSocket and the like).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_lists(headers, "upgrade")
}

/// Removes hop-by-hop headers, including those the `Connection` header names. When
/// `keep_upgrade` is set (an upgrade in progress), `Upgrade` survives and `Connection`
/// is reduced to `upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    if headers.contains_key(header::CONNECTION) {
        remove_connection_listed(headers, keep_upgrade);
    }
    let upgrade = if keep_upgrade {
        headers.remove(header::UPGRADE)
    } else {
        None
    };
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if let Some(upgrade) = upgrade {
        headers.insert(header::UPGRADE, upgrade);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Removes the headers the `Connection` header names (RFC 9110 §7.6.1).
fn remove_connection_listed(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if !(keep_upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
}

fn connection_lists(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Gives a request's URI and header values their own small allocations.
///
/// hyper hands out the head as slices of the connection's 8 KiB read buffer, so as long as
/// a request lives, that buffer does too, and hyper allocates a fresh one to watch the
/// connection. A payment can be held for minutes; copying its head (a kilobyte or two)
/// before hyper next reads lets hyper reuse that buffer instead of allocating another.
pub fn detach_head<B>(request: &mut http::Request<B>) {
    let owned_uri = request
        .uri()
        .to_string()
        .parse::<http::Uri>()
        .unwrap_or_else(|_| request.uri().clone());
    *request.uri_mut() = owned_uri;
    for value in request.headers_mut().values_mut() {
        if let Ok(owned) = HeaderValue::from_bytes(value.as_bytes()) {
            let sensitive = value.is_sensitive();
            *value = owned;
            value.set_sensitive(sensitive);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn strips_listed_and_standard_hop_headers() {
        let mut map = headers(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("proxy-authorization", "Basic abc"),
            ("te", "trailers"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut map, false);
        assert_eq!(map.len(), 1);
        assert_eq!(map["x-kept"], "yes");
    }

    #[test]
    fn upgrade_survives_when_asked() {
        let mut map = headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic abc"),
        ]);
        assert!(is_upgrade_request(&map));
        strip_hop_by_hop(&mut map, true);
        assert_eq!(map["upgrade"], "websocket");
        assert_eq!(map["connection"], "upgrade");
        assert!(!map.contains_key("proxy-authorization"));
    }
}
