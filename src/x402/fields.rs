//! Path-aware reading of decoded JSON objects, so every error names the exact field
//! (`accepts[0].payTo`, `payload.authorization.value`) instead of "invalid type".
//!
//! `null` is treated as absent everywhere: the Python SDK writes `null` for unset optional
//! fields (`"outputSchema": null`), and a required field that is `null` is as missing as
//! one that is not there.

use super::amount;
use super::error::X402Error;
use serde_json::{Map, Value};

/// A JSON object and the path that led to it.
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    /// The top-level object of a header or body; `what` names it in the error.
    pub(crate) fn root(value: &'a Value, what: &str) -> Result<Self, X402Error> {
        match value {
            Value::Object(map) => Ok(Obj {
                map,
                path: String::new(),
            }),
            other => Err(X402Error::WrongShape(format!(
                "{what} must be a JSON object, not {}",
                kind(other)
            ))),
        }
    }

    /// An object found at `path`.
    fn at(value: &'a Value, path: String) -> Result<Self, X402Error> {
        match value {
            Value::Object(map) => Ok(Obj { map, path }),
            other => Err(X402Error::WrongShape(format!(
                "{path} must be a JSON object, not {}",
                kind(other)
            ))),
        }
    }

    /// The dotted path of `key` inside this object.
    pub(crate) fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Whether `key` holds a non-null value.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|value| !value.is_null())
    }

    fn require(&self, key: &str) -> Result<&'a Value, X402Error> {
        self.get(key)
            .ok_or_else(|| X402Error::MissingField(self.path_of(key)))
    }

    /// A required nested object.
    pub(crate) fn object(&self, key: &str) -> Result<Obj<'a>, X402Error> {
        Obj::at(self.require(key)?, self.path_of(key))
    }

    /// An optional nested object.
    pub(crate) fn opt_object(&self, key: &str) -> Result<Option<Obj<'a>>, X402Error> {
        self.get(key)
            .map(|value| Obj::at(value, self.path_of(key)))
            .transpose()
    }

    /// An optional object's members, or an empty map when it is absent.
    pub(crate) fn members(&self, key: &str) -> Result<Map<String, Value>, X402Error> {
        Ok(self
            .opt_object(key)?
            .map(|obj| obj.map.clone())
            .unwrap_or_default())
    }

    /// A required array of objects, each carrying its index in its path.
    pub(crate) fn objects(&self, key: &str) -> Result<Vec<Obj<'a>>, X402Error> {
        let path = self.path_of(key);
        let Value::Array(items) = self.require(key)? else {
            return Err(X402Error::WrongShape(format!("{path} must be an array")));
        };
        items
            .iter()
            .enumerate()
            .map(|(index, item)| Obj::at(item, format!("{path}[{index}]")))
            .collect()
    }

    /// A required, non-empty string.
    pub(crate) fn string(&self, key: &str) -> Result<String, X402Error> {
        let text = self.text(self.require(key)?, key)?;
        if text.is_empty() {
            return Err(X402Error::WrongShape(format!(
                "{} must not be empty",
                self.path_of(key)
            )));
        }
        Ok(text)
    }

    /// An optional string (which may be empty: `"mimeType": ""` is real).
    pub(crate) fn opt_string(&self, key: &str) -> Result<Option<String>, X402Error> {
        self.get(key).map(|value| self.text(value, key)).transpose()
    }

    fn text(&self, value: &Value, key: &str) -> Result<String, X402Error> {
        match value {
            Value::String(text) => Ok(text.clone()),
            other => Err(X402Error::WrongShape(format!(
                "{} must be a string, not {}",
                self.path_of(key),
                kind(other)
            ))),
        }
    }

    /// A required boolean.
    pub(crate) fn boolean(&self, key: &str) -> Result<bool, X402Error> {
        match self.require(key)? {
            Value::Bool(flag) => Ok(*flag),
            other => Err(X402Error::WrongShape(format!(
                "{} must be true or false, not {}",
                self.path_of(key),
                kind(other)
            ))),
        }
    }

    /// An optional non-negative integer that fits a `u64` (a JSON number).
    pub(crate) fn opt_u64(&self, key: &str) -> Result<Option<u64>, X402Error> {
        self.get(key)
            .map(|value| {
                value.as_u64().ok_or_else(|| {
                    X402Error::WrongShape(format!(
                        "{} must be a non-negative integer",
                        self.path_of(key)
                    ))
                })
            })
            .transpose()
    }

    /// An optional Unix time sent as a decimal string (EIP-3009 `validBefore`, Permit2
    /// `deadline`) or as a JSON number.
    pub(crate) fn opt_timestamp(&self, key: &str) -> Result<Option<u64>, X402Error> {
        let bad = || {
            X402Error::WrongShape(format!(
                "{} must be a Unix time in decimal digits",
                self.path_of(key)
            ))
        };
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(text)) if text.bytes().all(|b| b.is_ascii_digit()) => {
                text.parse::<u64>().map(Some).map_err(|_| bad())
            }
            Some(Value::Number(number)) => number.as_u64().map(Some).ok_or_else(bad),
            Some(_) => Err(bad()),
        }
    }

    /// A required atomic amount (see [`amount::parse_atomic`]).
    pub(crate) fn amount(&self, key: &str) -> Result<u128, X402Error> {
        amount::parse_atomic(self.require(key)?, &self.path_of(key))
    }

    /// An optional atomic amount.
    pub(crate) fn opt_amount(&self, key: &str) -> Result<Option<u128>, X402Error> {
        self.get(key)
            .map(|value| amount::parse_atomic(value, &self.path_of(key)))
            .transpose()
    }

    /// `x402Version`, which must be a small non-negative integer.
    pub(crate) fn version(&self) -> Result<u64, X402Error> {
        self.require("x402Version")?.as_u64().ok_or_else(|| {
            X402Error::UnsupportedVersion("x402Version must be an integer such as 1 or 2".into())
        })
    }
}

/// The JSON type of a value, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
