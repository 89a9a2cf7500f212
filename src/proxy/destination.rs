//! Where a request goes, and whether it may go there: the destination checks, written
//! once for every way a request arrives ([`Arrival`]).
//!
//! * On the agent's own connection, the target is the request's: the absolute-form URI
//!   (`GET http://host/path`) or the `CONNECT` authority. Before anything is sent it must
//!   not be one of Purser's own listeners, and `egress` must allow it ([`check`]). A plain
//!   request that carries a payment ([`crate::detect`]) to a `tunnel` host the policy does
//!   not trust with payments is refused ([`payment_to_untrusted_tunnel`]).
//! * Inside a tunnel, the target is the tunnel's, checked when the tunnel opened. A
//!   request that names another host gets `421 Misdirected Request` rather than being
//!   routed by its `Host` header, so an agent cannot smuggle a request past host-based
//!   policy.
//!
//! * On a redirected connection (the transparent listener), the host is the one its TLS
//!   named (SNI) or, for plain HTTP, the request's `Host`; the request goes to the
//!   connection's original address whatever it names ([`super::pinned`]), and the
//!   checks above apply to the name as to any other.
//!
//! These checks judge what the agent names, before anything is resolved. Names are
//! judged again, address by address, when the connection is made ([`super::egress`]).

use super::answering::Answering;
use super::answers::{self, ErrorCode};
use super::arrival::{Arrival, Redirected};
use super::body::ProxyBody;
use super::egress::own_listener;
use super::state::ProxyState;
use super::target::Target;
use crate::policy::{effective_destination, Policy};
use http::{header, HeaderMap, Method, Request, Response};
use rustls::pki_types::ServerName;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The target of a request that arrived as `arrival`, once it passes the checks; the
/// refusal to answer with otherwise.
pub fn of<B>(
    state: &ProxyState,
    arrival: Arrival<'_>,
    request: &Request<B>,
) -> Result<Target, Answering> {
    match arrival {
        Arrival::Proxy(_) if request.method() == Method::CONNECT => {
            let target = connect_target(request)
                .map_err(|reason| Answering::now(answers::error(ErrorCode::BadRequest, reason)))?;
            check(state, &state.policy.peek(), &target).inspect_err(|_| {
                // A refused tunnel is counted; a refused plain request is not.
                state.metrics.refused_connect();
            })?;
            Ok(target)
        }
        Arrival::Proxy(_) => {
            let target = absolute_target(request)
                .map_err(|reason| Answering::now(answers::error(ErrorCode::BadRequest, reason)))?;
            let policy = state.policy.peek();
            check(state, &policy, &target)?;
            match payment_to_untrusted_tunnel(&policy, &target, request.headers()) {
                Some(refusal) => Err(refusal.into()),
                None => Ok(target),
            }
        }
        Arrival::Intercepted(tunnel) | Arrival::Plaintext(tunnel) => {
            if let Some(named) = named_host(request) {
                if !named.eq_ignore_ascii_case(&tunnel.target.host) {
                    return Err(answers::error(
                        ErrorCode::Misdirected,
                        format!("this tunnel is for {}, not {named}", tunnel.target.host),
                    )
                    .into());
                }
            }
            Ok(tunnel.target.clone())
        }
        Arrival::Transparent(redirected) => {
            let target = redirected_target(redirected, request)
                .map_err(|(code, reason)| Answering::now(answers::error(code, reason)))?;
            let policy = state.policy.peek();
            check(state, &policy, &target)?;
            match payment_to_untrusted_tunnel(&policy, &target, request.headers()) {
                Some(refusal) => Err(refusal.into()),
                None => Ok(target),
            }
        }
    }
}

/// The target of a request on a redirected connection: the host its TLS named (a
/// request naming another gets `421`, as inside a tunnel), or for plain HTTP the host
/// it names (the original address when it names none); the port is always the original
/// one, which is where the request goes ([`super::pinned`]).
fn redirected_target<B>(
    redirected: &Redirected,
    request: &Request<B>,
) -> Result<Target, (ErrorCode, String)> {
    let port = redirected.original.port();
    let named = named_host(request);
    if let Some(server_name) = &redirected.server_name {
        if let Some(named) = named.filter(|named| !named.eq_ignore_ascii_case(server_name)) {
            let reason = format!("this connection's TLS is for {server_name}, not {named}");
            return Err((ErrorCode::Misdirected, reason));
        }
        return Ok(Target {
            https: true,
            host: server_name.clone(),
            port,
        });
    }
    let host = match named {
        Some(host) => {
            let nameable =
                host.parse::<IpAddr>().is_ok() || ServerName::try_from(host.as_str()).is_ok();
            if !nameable {
                return Err((
                    ErrorCode::BadRequest,
                    format!("`{host}` is not a valid host name"),
                ));
            }
            host.to_ascii_lowercase()
        }
        None => effective_destination(redirected.original.ip()).to_string(),
    };
    Ok(Target {
        https: false,
        host,
        port,
    })
}

/// The checks every target the agent names passes before anything is sent: it is not
/// one of Purser's own listeners, and `egress` allows it.
fn check(state: &ProxyState, policy: &Policy, target: &Target) -> Result<(), Answering> {
    if is_own_address(&state.own_addresses, target) {
        return Err(answers::error(
            ErrorCode::Forbidden,
            "Purser's own listeners are not reachable through the proxy",
        )
        .into());
    }
    if let Some(reason) = policy.egress_refusal(&target.host, target.port) {
        tracing::warn!(target = %target.display(), %reason, "refusing a destination");
        return Err(answers::error(ErrorCode::Forbidden, reason).into());
    }
    Ok(())
}

/// Whether `target` is one of Purser's own listeners, judged by its literal address
/// (or `localhost`) before anything is resolved.
fn is_own_address(own_addresses: &[SocketAddr], target: &Target) -> bool {
    let host = target.host.trim_start_matches('[').trim_end_matches(']');
    let candidates = if host.eq_ignore_ascii_case("localhost") {
        vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]
    } else {
        host.parse::<IpAddr>().into_iter().collect()
    };
    candidates
        .into_iter()
        .any(|ip| own_listener(own_addresses, ip, target.port).is_some())
}

/// The refusal for a plain (absolute-form) request that carries a payment to a `tunnel`
/// host the policy does not trust with payments; `None` when the request may go on.
/// Listing a host under `tunnel` lets its TLS pass unread, its 402 challenges included,
/// so Purser cannot govern payments to it ([`super::tunnel`]).
fn payment_to_untrusted_tunnel(
    policy: &Policy,
    target: &Target,
    headers: &HeaderMap,
) -> Option<Response<ProxyBody>> {
    let entry = policy.tunnel_entry(&target.host, target.port)?;
    // Any payment in any spelling or protocol ([`crate::detect`]).
    if entry.trust_payments || !crate::detect::carries_payment(headers) {
        return None;
    }
    tracing::warn!(target = %target.display(), tunnel = %entry.pattern, "refusing a payment to an untrusted tunnel host");
    Some(answers::error(
        ErrorCode::TunnelUntrusted,
        untrusted_tunnel_reason(target, &entry.pattern.to_string()),
    ))
}

/// Why payments to a `tunnel` host matching `pattern` are not governed, and what to do.
pub fn untrusted_tunnel_reason(target: &Target, pattern: &str) -> String {
    format!(
        "{} is a `tunnel` host (`{pattern}`): its HTTPS traffic, 402 challenges included, is spliced without inspection, \
         so Purser cannot govern payments to it; the policy must list it as {{host: '{pattern}', trust_payments: true}} to allow them",
        target.display()
    )
}

/// The target of an absolute-form request (`GET http://host/path`).
fn absolute_target<B>(request: &Request<B>) -> Result<Target, String> {
    let uri = request.uri();
    let https = match uri.scheme_str() {
        Some(scheme) if scheme.eq_ignore_ascii_case("http") => false,
        Some(scheme) if scheme.eq_ignore_ascii_case("https") => true,
        Some(other) => {
            return Err(format!(
                "scheme `{other}` is not proxied; use http or https"
            ))
        }
        None => return Err(
            "Purser is a forward proxy: send absolute-form requests (http://host/path) or CONNECT"
                .to_string(),
        ),
    };
    let authority = uri.authority().ok_or("request URI has no host")?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err("request URI has no host".to_string());
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok(Target {
        https,
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// The `host:port` a `CONNECT` names, checked to be something a certificate can name.
fn connect_target<B>(request: &Request<B>) -> Result<Target, String> {
    let authority = request
        .uri()
        .authority()
        .ok_or("CONNECT needs an authority-form target, host:port")?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority
        .port_u16()
        .ok_or("CONNECT target needs a port, host:port")?;
    if port == 0 {
        return Err("CONNECT target port 0 is not valid".to_string());
    }
    ServerName::try_from(host)
        .map_err(|_| format!("CONNECT target `{host}` is not a valid host name"))?;
    Ok(Target {
        https: true,
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// The host a request inside a tunnel names: `:authority` (HTTP/2) or `Host`.
fn named_host<B>(request: &Request<B>) -> Option<String> {
    let authority = request.uri().authority().map(|a| a.host().to_string());
    authority
        .or_else(|| {
            let host = request.headers().get(header::HOST)?.to_str().ok()?;
            let parsed: http::uri::Authority = host.parse().ok()?;
            Some(parsed.host().to_string())
        })
        .map(|host| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str, host: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(host) = host {
            builder = builder.header(header::HOST, host);
        }
        builder.body(()).unwrap()
    }

    fn target(https: bool, host: &str, port: u16) -> Target {
        Target {
            https,
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn absolute_form_names_scheme_host_and_port() {
        let absolute = |uri| absolute_target(&request("GET", uri, None));
        assert_eq!(
            absolute("http://Shop.Example/x"),
            Ok(target(false, "shop.example", 80))
        );
        assert_eq!(
            absolute("https://shop.example:8443/"),
            Ok(target(true, "shop.example", 8443))
        );
        assert_eq!(
            absolute("http://[::1]:8080/"),
            Ok(target(false, "::1", 8080))
        );
        assert!(absolute("/relative").unwrap_err().contains("forward proxy"));
        assert!(absolute("ftp://shop.example/").unwrap_err().contains("ftp"));
    }

    #[test]
    fn a_connect_target_needs_a_port_and_a_nameable_host() {
        let connect = |uri| connect_target(&request("CONNECT", uri, None));
        assert_eq!(
            connect("Shop.Example:443"),
            Ok(target(true, "shop.example", 443))
        );
        assert_eq!(connect("[::1]:8443"), Ok(target(true, "::1", 8443)));
        assert!(connect("shop.example:0").unwrap_err().contains("port 0"));
    }

    #[test]
    fn inside_a_tunnel_the_named_host_comes_from_authority_or_host() {
        let h2 = request("GET", "https://shop.example/x", None);
        assert_eq!(named_host(&h2).as_deref(), Some("shop.example"));
        let h1 = request("GET", "/x", Some("other.example:8443"));
        assert_eq!(named_host(&h1).as_deref(), Some("other.example"));
        let v6 = request("GET", "/x", Some("[::1]:8443"));
        assert_eq!(named_host(&v6).as_deref(), Some("::1"));
        assert_eq!(named_host(&request("GET", "/x", None)), None);
    }

    #[test]
    fn own_listeners_are_recognised_by_literal_address_or_localhost() {
        let own: Vec<SocketAddr> = vec!["127.0.0.1:8402".parse().unwrap()];
        assert!(is_own_address(&own, &target(false, "127.0.0.1", 8402)));
        assert!(is_own_address(&own, &target(false, "localhost", 8402)));
        assert!(!is_own_address(&own, &target(false, "127.0.0.1", 8080)));
        assert!(
            !is_own_address(&own, &target(false, "shop.example", 8402)),
            "names are judged when they are resolved (egress)"
        );
    }
}
