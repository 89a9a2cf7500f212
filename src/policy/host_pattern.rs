//! Host patterns: `api.example.com`, `*.example.com`, optionally with `:port`, or `*`.

use serde::Deserialize;
use std::fmt;

/// A host (and optional port) pattern from the policy.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HostPattern {
    host: HostMatch,
    port: Option<u16>,
    text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostMatch {
    Any,
    Exact(String),
    /// `*.example.com`: stored as `.example.com`; matches subdomains only.
    Suffix(String),
}

/// Why a host pattern was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostPatternError {
    /// The pattern is empty or only spaces.
    #[error("host pattern is empty")]
    Empty,
    /// The `:port` is not a number from 1 to 65535 (the pattern as written).
    #[error("host pattern `{0}` has a bad port")]
    BadPort(String),
    /// A `*` somewhere other than alone or as a leading `*.` (the pattern as written).
    #[error("host pattern `{0}` may use `*` only as `*` or a leading `*.`")]
    MisplacedWildcard(String),
    /// Characters no host name has, or an unclosed `[` (the pattern as written).
    #[error("host pattern `{0}` has characters a host name cannot have")]
    BadCharacters(String),
}

impl HostPattern {
    /// Reads `host[:port]`, `*.domain[:port]` or `*`; the host is compared in lower case.
    pub fn parse(text: &str) -> Result<HostPattern, HostPatternError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(HostPatternError::Empty);
        }
        let (host_part, port) = split_port(trimmed)?;
        let host = host_part.to_ascii_lowercase();
        let host_match = if host == "*" {
            HostMatch::Any
        } else if let Some(rest) = host.strip_prefix("*.") {
            check_host_chars(rest, trimmed)?;
            HostMatch::Suffix(format!(".{rest}"))
        } else {
            check_host_chars(&host, trimmed)?;
            HostMatch::Exact(host)
        };
        Ok(HostPattern {
            host: host_match,
            port,
            text: trimmed.to_string(),
        })
    }

    /// Whether the pattern names one host (no wildcard).
    pub fn is_exact(&self) -> bool {
        matches!(self.host, HostMatch::Exact(_))
    }

    /// Whether the pattern covers `host` on `port`. `host` is compared in its normal
    /// form ([`super::route::normalize_host`]): any case, no brackets, no root dot.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|wanted| wanted != port) {
            return false;
        }
        let host = super::route::normalize_host(host);
        let host = host.as_ref();
        match &self.host {
            HostMatch::Any => true,
            HostMatch::Exact(exact) => exact.eq_ignore_ascii_case(host),
            // Compared as bytes: `host` may hold non-ASCII text (hosts come back from the
            // proof log and from policy test cases), where a `str` slice could split a
            // character and panic. The suffix is ASCII, so a split character never matches.
            HostMatch::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host.as_bytes()[host.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes())
            }
        }
    }
}

fn split_port(text: &str) -> Result<(&str, Option<u16>), HostPatternError> {
    // A bracketed IPv6 literal keeps its colons inside the brackets.
    if let Some(rest) = text.strip_prefix('[') {
        let close = rest
            .find(']')
            .ok_or_else(|| HostPatternError::BadCharacters(text.to_string()))?;
        let host = &rest[..close];
        return match &rest[close + 1..] {
            "" => Ok((host, None)),
            port => Ok((host, Some(parse_port(port.trim_start_matches(':'), text)?))),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Ok((host, Some(parse_port(port, text)?))),
        _ => Ok((text, None)),
    }
}

fn parse_port(port: &str, text: &str) -> Result<u16, HostPatternError> {
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| HostPatternError::BadPort(text.to_string()))
}

fn check_host_chars(host: &str, text: &str) -> Result<(), HostPatternError> {
    if host.contains('*') {
        return Err(HostPatternError::MisplacedWildcard(text.to_string()));
    }
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'));
    if valid {
        Ok(())
    } else {
        Err(HostPatternError::BadCharacters(text.to_string()))
    }
}

impl TryFrom<String> for HostPattern {
    type Error = HostPatternError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        HostPattern::parse(&text)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matches_subdomains_not_the_apex() {
        let pattern = HostPattern::parse("*.Example.com").unwrap();
        assert!(pattern.matches("api.example.COM", 443));
        assert!(!pattern.matches("example.com", 443));
        assert!(!pattern.matches("badexample.com", 443));
    }

    #[test]
    fn misplaced_wildcards_and_bad_ports_are_refused() {
        assert!(matches!(
            HostPattern::parse("api.*.com"),
            Err(HostPatternError::MisplacedWildcard(_))
        ));
        assert!(matches!(
            HostPattern::parse("api.com:99999"),
            Err(HostPatternError::BadPort(_))
        ));
        assert_eq!(HostPattern::parse("  "), Err(HostPatternError::Empty));
    }

    #[test]
    fn ipv6_literals_with_ports() {
        let pattern = HostPattern::parse("[::1]:8443").unwrap();
        assert!(pattern.matches("::1", 8443));
        assert!(!pattern.matches("::1", 443));
    }
}
