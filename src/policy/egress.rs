//! The policy's `egress` section as reasoning about IP addresses: which destinations
//! agents may not reach through Purser (cloud metadata on link-local addresses, the host's
//! own loopback services), and which address a connection really reaches.
//!
//! Names are not resolved here: [`EgressRules::refusal`] judges literal addresses before
//! anything is resolved, and `proxy::egress` calls [`EgressRules::refusal_ip`] on every
//! address it is about to connect to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What `egress` allows, compiled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EgressRules {
    /// Link-local addresses (cloud metadata) are reachable.
    pub allow_link_local: bool,
    /// When set, the only loopback ports agents may reach.
    pub loopback_ports: Option<Vec<u16>>,
}

impl EgressRules {
    /// Why `host:port` is forbidden, if it is. Only literal addresses (and `localhost`)
    /// are judged; a name is judged address by address when the connection is made.
    pub fn refusal(&self, host: &str, port: u16) -> Option<String> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse::<IpAddr>().ok()?
        };
        self.refusal_ip(ip, port)
            .map(|refusal| format!("{host} is {refusal}"))
    }

    /// Why connecting to `ip:port` is forbidden, if it is: the check made on every
    /// address Purser is about to connect to, literal or resolved.
    pub fn refusal_ip(&self, ip: IpAddr, port: u16) -> Option<EgressRefusal> {
        let ip = effective_destination(ip);
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        };
        if link_local && !self.allow_link_local {
            return Some(EgressRefusal::LinkLocal);
        }
        if ip.is_loopback() {
            if let Some(ports) = &self.loopback_ports {
                if !ports.contains(&port) {
                    return Some(EgressRefusal::LoopbackPort(port));
                }
            }
        }
        None
    }
}

/// Why the policy's `egress` section refuses an address; reads after "ADDRESS is".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EgressRefusal {
    #[error(
        "link-local (cloud metadata lives there) and the policy's egress.allow_link_local is off"
    )]
    /// A link-local address (169.254.0.0/16, fe80::/10) while `egress.allow_link_local` is off.
    LinkLocal,
    /// A loopback port (given) missing from `egress.loopback_ports`.
    #[error("loopback, and port {0} is not in the policy's egress.loopback_ports")]
    LoopbackPort(u16),
}

/// The address a connection to `ip` really reaches: an IPv4-mapped IPv6 address is its
/// IPv4 address, and the unspecified address (`0.0.0.0`, `::`) is the host itself, which
/// is where the kernel sends a connection to it. Judging the literal instead would let
/// `[::ffff:169.254.169.254]` or `0.0.0.0:PORT` past the checks.
pub fn effective_destination(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Policy;
    use super::EgressRefusal;
    use std::path::Path;

    fn load(text: &str) -> Policy {
        Policy::from_yaml(Path::new("test.yaml"), text).unwrap()
    }

    #[test]
    fn egress_judges_the_address_a_connection_really_reaches() {
        let policy = load("egress:\n  loopback_ports: [8080]\n");
        let refused = |ip: &str, port| policy.egress_refusal_ip(ip.parse().unwrap(), port);
        assert_eq!(
            refused("169.254.169.254", 80),
            Some(EgressRefusal::LinkLocal)
        );
        assert_eq!(
            refused("::ffff:169.254.169.254", 80),
            Some(EgressRefusal::LinkLocal)
        );
        assert_eq!(refused("fe80::1", 80), Some(EgressRefusal::LinkLocal));
        assert_eq!(refused("127.0.0.1", 8080), None);
        assert_eq!(
            refused("127.0.0.1", 22),
            Some(EgressRefusal::LoopbackPort(22))
        );
        assert_eq!(
            refused("127.9.9.9", 22),
            Some(EgressRefusal::LoopbackPort(22))
        );
        assert_eq!(refused("::1", 22), Some(EgressRefusal::LoopbackPort(22)));
        assert_eq!(
            refused("::ffff:127.0.0.1", 22),
            Some(EgressRefusal::LoopbackPort(22))
        );
        assert_eq!(
            refused("0.0.0.0", 22),
            Some(EgressRefusal::LoopbackPort(22))
        );
        assert_eq!(refused("::", 22), Some(EgressRefusal::LoopbackPort(22)));
        assert_eq!(refused("192.0.2.1", 22), None);
        assert!(policy.egress_refusal("LOCALHOST", 22).is_some());
        assert!(policy
            .egress_refusal("[::ffff:169.254.169.254]", 80)
            .is_some());
        assert!(policy.egress_refusal("example.com", 22).is_none());
        let open = load("egress:\n  allow_link_local: true\n");
        assert_eq!(
            open.egress_refusal_ip("169.254.169.254".parse().unwrap(), 80),
            None
        );
    }

    #[test]
    fn no_egress_section_refuses_link_local_only() {
        let policy = load("");
        assert_eq!(
            policy.egress_refusal("169.254.169.254", 80).as_deref(),
            Some(
                "169.254.169.254 is link-local (cloud metadata lives there) and the policy's \
                 egress.allow_link_local is off"
            )
        );
        assert_eq!(policy.egress_refusal("127.0.0.1", 22), None);
    }
}
