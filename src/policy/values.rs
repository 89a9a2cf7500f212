//! Value types of the policy file that check themselves as they load, so an error points
//! at the exact value: money, ratios, durations, phases, endpoint patterns, and mappings
//! whose order matters.

use super::host_pattern::HostPattern;
use super::rules::{Phase, Trust};
use rust_decimal::Decimal;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

/// A non-negative decimal amount. Read from the scalar's text, never through a float, so
/// `0.10` is exactly one tenth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Money(pub Decimal);

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(DecimalText("an amount like 0.50"))
            .and_then(|value| {
                if value.is_sign_negative() {
                    Err(de::Error::custom(format!("amount {value} is negative")))
                } else {
                    Ok(Money(value))
                }
            })
    }
}

/// A ratio of a budget: `0.90` or `90%`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ratio(pub Decimal);

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(DecimalText("a ratio like 0.90 or 90%"))
            .and_then(|value| {
                if value.is_sign_negative() || value > Decimal::from(10) {
                    Err(de::Error::custom(format!(
                        "ratio {value} must be between 0 and 10 (1.0 is the whole budget)"
                    )))
                } else {
                    Ok(Ratio(value))
                }
            })
    }
}

/// Reads a decimal from a scalar's text; a trailing `%` divides by 100.
struct DecimalText(&'static str);

impl Visitor<'_> for DecimalText {
    type Value = Decimal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Decimal, E> {
        parse_decimal(text).ok_or_else(|| E::custom(format!("`{text}` is not {}", self.0)))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Decimal, E> {
        Ok(Decimal::from(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Decimal, E> {
        Ok(Decimal::from(value))
    }
}

fn parse_decimal(text: &str) -> Option<Decimal> {
    let text = text.trim().trim_start_matches('$');
    match text.strip_suffix('%') {
        Some(percent) => Decimal::from_str_exact(percent.trim())
            .ok()
            .map(|p| p / Decimal::from(100)),
        None => Decimal::from_str_exact(text).ok(),
    }
}

/// A duration: `30s`, `5m`, `2h`, `1d`, or plain seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationText(pub Duration);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = deserializer.deserialize_str(PlainText("a duration like 30s, 5m or 1h"))?;
        parse_duration(&text).map(DurationText).ok_or_else(|| {
            de::Error::custom(format!("`{text}` is not a duration like 30s, 5m or 1h"))
        })
    }
}

/// A size in bytes: `64MiB`, `512KiB`, `1GiB`, or plain bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeText(pub u64);

impl<'de> Deserialize<'de> for SizeText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = deserializer.deserialize_str(PlainText("a size like 64MiB or 512KiB"))?;
        parse_size(&text).map(SizeText).ok_or_else(|| {
            de::Error::custom(format!("`{text}` is not a size like 64MiB or 512KiB"))
        })
    }
}

/// Parses `64MiB`, `512KiB`, `1GiB` (or `kb`, `mb`, `gb`, any case) or plain bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// Parses `30s`, `5m`, `2h`, `1d`, `250ms` or plain seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => number,
        "ms" => return Some(Duration::from_millis(number)),
        "m" | "min" | "mins" | "minute" | "minutes" => number.checked_mul(60)?,
        "h" | "hour" | "hours" => number.checked_mul(3600)?,
        "d" | "day" | "days" => number.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(seconds))
}

/// Any scalar as its text.
struct PlainText(&'static str);

impl Visitor<'_> for PlainText {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
        Ok(text.to_string())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<String, E> {
        Ok(value.to_string())
    }
}

/// A phase name, any case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhaseName(pub Phase);

impl<'de> Deserialize<'de> for PhaseName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Phase::deserialize(deserializer).map(PhaseName)
    }
}

/// A recipient trust level, any case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustName(pub Trust);

impl<'de> Deserialize<'de> for TrustName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.trim().to_ascii_lowercase().as_str() {
            "verified" => Ok(TrustName(Trust::Verified)),
            "known" => Ok(TrustName(Trust::Known)),
            "unknown" => Ok(TrustName(Trust::Unknown)),
            _ => Err(de::Error::custom(format!(
                "`{text}` is not a recipient trust: verified, known or unknown"
            ))),
        }
    }
}

/// `host[:port][/path]`, where the path may end in `*` for a prefix; or
/// `mcp://tool/NAME` (`NAME*` for a prefix), the MCP tool calls of that name
/// (`params.name`, compared exactly) on any host, as x402 over MCP names the resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointPattern {
    /// The hosts (and port) it covers.
    pub(crate) host: HostPattern,
    /// The paths it covers, in normal form; `None` for every path.
    pub(crate) path: Option<PathPattern>,
    /// For `mcp://tool/...`: the tool names it covers (and it covers no plain request).
    pub(crate) mcp_tool: Option<ToolNamePattern>,
}

/// The tool names an `mcp://tool/...` pattern covers, as written (MCP names are
/// case-sensitive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ToolNamePattern {
    /// `mcp://tool/get_weather`
    Exact(String),
    /// `mcp://tool/weather_*`, stored without the `*`.
    Prefix(String),
}

/// How MCP tool patterns are written.
const MCP_TOOL_PREFIX: &str = "mcp://tool/";

/// The path part of an [`EndpointPattern`], in the normal form requests are compared in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PathPattern {
    /// `/market/eurusd`: this path only.
    Exact(String),
    /// `/market/*`, stored without the `*`: every path that starts with it.
    Prefix(String),
}

impl EndpointPattern {
    /// Reads `host[:port][/path[*]]`; a leading `http://` or `https://` is ignored.
    pub fn parse(text: &str) -> Result<EndpointPattern, String> {
        let text = text.trim();
        if let Some(name) = strip_prefix_ignore_case(text, MCP_TOOL_PREFIX) {
            return EndpointPattern::mcp_tool(name);
        }
        let text = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
            .unwrap_or(text);
        let (host, path) = match text.find('/') {
            Some(index) => (&text[..index], Some(&text[index..])),
            None => (text, None),
        };
        let host = HostPattern::parse(host).map_err(|e| e.to_string())?;
        // Patterns are kept in the normal form requests are compared in.
        let path = path.map(|path| match path.strip_suffix('*') {
            Some(prefix) => PathPattern::Prefix(normalize_prefix(prefix)),
            None => PathPattern::Exact(super::route::normalize_path(path)),
        });
        Ok(EndpointPattern {
            host,
            path,
            mcp_tool: None,
        })
    }

    fn mcp_tool(name: &str) -> Result<EndpointPattern, String> {
        let (name, prefix) = match name.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (name, false),
        };
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/');
        if (name.is_empty() && !prefix) || !name.chars().all(allowed) {
            return Err(format!(
                "`{MCP_TOOL_PREFIX}{name}` is not an MCP tool pattern: write \
                 `{MCP_TOOL_PREFIX}NAME` or `{MCP_TOOL_PREFIX}PREFIX*` (letters, digits, _ - . /)"
            ));
        }
        let pattern = if prefix {
            ToolNamePattern::Prefix(name.to_string())
        } else {
            ToolNamePattern::Exact(name.to_string())
        };
        Ok(EndpointPattern {
            host: HostPattern::parse("*").map_err(|e| e.to_string())?,
            path: None,
            mcp_tool: Some(pattern),
        })
    }

    /// Whether the pattern covers MCP tool calls of this name (`params.name`).
    pub fn matches_mcp_tool(&self, name: &str) -> bool {
        match &self.mcp_tool {
            None => false,
            Some(ToolNamePattern::Exact(exact)) => name == exact,
            Some(ToolNamePattern::Prefix(prefix)) => name.starts_with(prefix.as_str()),
        }
    }

    /// How narrowly the pattern picks requests: path length first, then an exact host.
    pub fn specificity(&self) -> usize {
        // A tool name picks calls more narrowly than any host and path.
        match &self.mcp_tool {
            Some(ToolNamePattern::Exact(name)) => return usize::MAX / 2 + name.len() * 2 + 1,
            Some(ToolNamePattern::Prefix(prefix)) => return usize::MAX / 2 + prefix.len() * 2,
            None => {}
        }
        let path = match &self.path {
            None => 0,
            Some(PathPattern::Prefix(prefix)) => prefix.len() * 2,
            Some(PathPattern::Exact(exact)) => exact.len() * 2 + 1,
        };
        path * 2 + usize::from(self.host.is_exact())
    }

    /// Whether the pattern covers a request; `path` must be in normal form
    /// ([`super::route::normalize_path`]).
    pub fn matches(&self, host: &str, port: u16, path: &str) -> bool {
        self.mcp_tool.is_none()
            && self.host.matches(host, port)
            && match &self.path {
                None => true,
                Some(PathPattern::Exact(exact)) => path == exact,
                Some(PathPattern::Prefix(prefix)) => path.starts_with(prefix.as_str()),
            }
    }
}

fn strip_prefix_ignore_case<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// A prefix in normal form. Normalising would drop a trailing slash's meaning only at the
/// root, so `/research/` stays `/research/` and `/research/market` keeps matching
/// `/research/market-feed` by prefix.
fn normalize_prefix(prefix: &str) -> String {
    let normal = super::route::normalize_path(prefix);
    if !prefix.ends_with('/') && normal.len() > 1 && normal.ends_with('/') {
        normal[..normal.len() - 1].to_string()
    } else {
        normal
    }
}

impl<'de> Deserialize<'de> for EndpointPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        EndpointPattern::parse(&text).map_err(de::Error::custom)
    }
}

/// A YAML mapping kept in file order (first match wins where order matters).
#[derive(Clone, Debug, PartialEq)]
pub struct OrderedMap<T>(pub Vec<(String, T)>);

impl<T> Default for OrderedMap<T> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OrderedMap<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OrderedMapVisitor(PhantomData))
    }
}

struct OrderedMapVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for OrderedMapVisitor<T> {
    type Value = OrderedMap<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of names to entries")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries: Vec<(String, T)> = Vec::new();
        while let Some((name, value)) = map.next_entry::<String, T>()? {
            if entries.iter().any(|(existing, _)| *existing == name) {
                return Err(de::Error::custom(format!("`{name}` is defined twice")));
            }
            entries.push((name, value));
        }
        Ok(OrderedMap(entries))
    }
}

/// One value or a list of them (`categories: data` or `categories: [data, feeds]`).
#[derive(Clone, Debug, PartialEq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrManyVisitor<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany(items))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                T::deserialize(de::value::StrDeserializer::<E>::new(text))
                    .map(|item| OneOrMany(vec![item]))
            }
        }
        deserializer.deserialize_any(OneOrManyVisitor(PhantomData))
    }
}

impl FromStr for Money {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match parse_decimal(text) {
            Some(value) if !value.is_sign_negative() => Ok(Money(value)),
            _ => Err(format!("`{text}` is not a non-negative amount")),
        }
    }
}
