//! `WWW-Authenticate: Payment` challenges, and the binding a credential must echo.
//!
//! A `402` may carry several challenges (one per method and currency), in one field line
//! or several ([`parse_www_authenticate`]). Required auth-params: `id`, `realm`, `method`,
//! `intent`, `request` (base64url of a JSON object); optional: `digest`, `expires`,
//! `description`, `opaque` (base64url of a JSON object), `header`. Names are
//! case-insensitive and a duplicate is an error, as in the SDKs.
//!
//! Over MCP the same challenges come as JSON objects in a `-32042` error's `data`
//! ([`challenges_from_mcp`]).
//!
//! The challenge's `id` is the merchant's HMAC over the other parameters, which Purser
//! cannot recompute. So a credential is bound to a challenge by its `id` and by
//! [`Challenge::binding`]: a digest of every parameter the `id` covers (the `request` and
//! `opaque` as decoded JSON, in a canonical form), which the credential's echo must
//! reproduce exactly (`Echo::binding` in `credential`). `description` is left out:
//! the `id` does not cover it either, and it moves no money.

use super::auth_params::parse_challenge_list;
use super::canonical::{amount, b64url_object, hash_text, hash_value};
use super::error::{excerpt, MppError};
use super::limits::{MAX_CHALLENGES_PER_ANSWER, MAX_CHALLENGE_FIELD_BYTES, MAX_PARAM_BYTES};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One `Payment` challenge, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Challenge {
    /// The merchant's id for this challenge (an HMAC over the rest).
    pub id: String,
    /// The protection space (`api.merchant.test`).
    pub realm: String,
    /// The payment method (`evm`, `tempo`, `stripe`).
    pub method: String,
    /// The intent (`charge`, `session`).
    pub intent: String,
    /// The decoded `request`: amount, currency, recipient, method details.
    pub request: Value,
    /// When the challenge stops being payable (RFC 3339).
    pub expires: Option<String>,
    /// `sha-256=...` of the request body the credential must come with.
    pub digest: Option<String>,
    /// Shown to the payer; not covered by the `id`.
    pub description: Option<String>,
    /// The decoded `opaque` object, echoed back untouched.
    pub opaque: Option<Value>,
    /// The header the credential must come in, when not `Authorization`.
    pub header: Option<String>,
}

/// What the `WWW-Authenticate` fields of one answer held.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Every `Payment` challenge read, at most [`MAX_CHALLENGES_PER_ANSWER`].
    pub challenges: Vec<Challenge>,
    /// Why the others could not be read (a malformed field loses all of its challenges).
    pub errors: Vec<MppError>,
}

/// The `Payment` challenges of an answer's `WWW-Authenticate` field values, in order.
/// Challenges of other schemes are skipped.
pub fn parse_www_authenticate<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Parsed {
    let mut parsed = Parsed::default();
    for value in values {
        if value.len() > MAX_CHALLENGE_FIELD_BYTES {
            parsed.errors.push(MppError::TooLarge {
                what: "WWW-Authenticate field",
                limit: MAX_CHALLENGE_FIELD_BYTES,
            });
            continue;
        }
        let Ok(text) = std::str::from_utf8(value) else {
            parsed.errors.push(MppError::BadChallengeSyntax(
                "the field is not UTF-8".into(),
            ));
            continue;
        };
        let list = match parse_challenge_list(text) {
            Ok(list) => list,
            Err(error) => {
                parsed.errors.push(error);
                continue;
            }
        };
        for raw in list {
            if !raw.scheme.eq_ignore_ascii_case("payment") {
                continue;
            }
            if parsed.challenges.len() >= MAX_CHALLENGES_PER_ANSWER {
                parsed.errors.push(MppError::WrongShape(format!(
                    "more than {MAX_CHALLENGES_PER_ANSWER} Payment challenges in one answer"
                )));
                return parsed;
            }
            match from_params(raw.token68.is_some(), raw.params) {
                Ok(challenge) => parsed.challenges.push(challenge),
                Err(error) => parsed.errors.push(error),
            }
        }
    }
    parsed
}

fn from_params(token68: bool, params: Vec<(String, String)>) -> Result<Challenge, MppError> {
    if token68 {
        return Err(MppError::WrongShape(
            "a Payment challenge carries auth-params, not a token68".into(),
        ));
    }
    let mut fields = Fields::default();
    for (name, value) in params {
        let slot = match name.as_str() {
            "id" => &mut fields.id,
            "realm" => &mut fields.realm,
            "method" => &mut fields.method,
            "intent" => &mut fields.intent,
            "request" => &mut fields.request,
            "expires" => &mut fields.expires,
            "digest" => &mut fields.digest,
            "description" => &mut fields.description,
            "opaque" => &mut fields.opaque,
            "header" => &mut fields.header,
            // Parameters a later draft adds are kept out of the binding, as the SDKs do.
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(MppError::DuplicateParam(name));
        }
    }
    let required = |value: Option<String>, name: &str| {
        value
            .filter(|v| !v.is_empty())
            .ok_or_else(|| MppError::Missing(format!("challenge parameter {name:?}")))
    };
    let request = required(fields.request, "request")?;
    let method = required(fields.method, "method")?;
    check_method_id(&method)?;
    Ok(Challenge {
        id: required(fields.id, "id")?,
        realm: required(fields.realm, "realm")?,
        method,
        intent: required(fields.intent, "intent")?,
        request: b64url_object(&request, "challenge request", MAX_PARAM_BYTES)?,
        expires: fields.expires,
        digest: fields.digest,
        description: fields.description,
        opaque: fields
            .opaque
            .filter(|o| !o.is_empty())
            .map(|o| b64url_object(&o, "challenge opaque", MAX_PARAM_BYTES))
            .transpose()?,
        header: credential_header(fields.header),
    })
}

#[derive(Default)]
struct Fields {
    id: Option<String>,
    realm: Option<String>,
    method: Option<String>,
    intent: Option<String>,
    request: Option<String>,
    expires: Option<String>,
    digest: Option<String>,
    description: Option<String>,
    opaque: Option<String>,
    header: Option<String>,
}

/// The challenges of an MPP-over-MCP `-32042` error's `data` (`{"challenges": [...]}`,
/// each an object whose `request` and `opaque` are JSON objects, not base64url).
pub fn challenges_from_mcp(data: &Value) -> Parsed {
    let mut parsed = Parsed::default();
    let Some(items) = data.get("challenges").and_then(Value::as_array) else {
        parsed.errors.push(MppError::Missing(
            "error data \"challenges\" (a list)".into(),
        ));
        return parsed;
    };
    for item in items {
        if parsed.challenges.len() >= MAX_CHALLENGES_PER_ANSWER {
            parsed.errors.push(MppError::WrongShape(format!(
                "more than {MAX_CHALLENGES_PER_ANSWER} Payment challenges in one answer"
            )));
            break;
        }
        match challenge_from_object(item) {
            Ok(challenge) => parsed.challenges.push(challenge),
            Err(error) => parsed.errors.push(error),
        }
    }
    parsed
}

/// One challenge written as a JSON object (MPP over MCP).
pub fn challenge_from_object(item: &Value) -> Result<Challenge, MppError> {
    let text = |name: &str| match item.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(MppError::WrongShape(format!(
            "challenge field {name:?} must be a string"
        ))),
    };
    let required = |name: &str| {
        text(name)?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| MppError::Missing(format!("challenge field {name:?}")))
    };
    let object = |name: &str| match item.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value @ Value::Object(_)) => Ok(Some(value.clone())),
        Some(_) => Err(MppError::WrongShape(format!(
            "challenge field {name:?} must be a JSON object"
        ))),
    };
    let method = required("method")?;
    check_method_id(&method)?;
    Ok(Challenge {
        id: required("id")?,
        realm: required("realm")?,
        method,
        intent: required("intent")?,
        request: object("request")?
            .ok_or_else(|| MppError::Missing("challenge field \"request\"".into()))?,
        expires: text("expires")?,
        digest: text("digest")?,
        description: text("description")?,
        opaque: object("opaque")?,
        header: credential_header(text("header")?),
    })
}

/// A payment method id as the SDKs accept it: `^[a-z][a-z0-9:_-]*$`.
pub fn check_method_id(method: &str) -> Result<(), MppError> {
    let mut bytes = method.bytes();
    let first = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
    let rest = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b":_-".contains(&b));
    if first && rest && method.len() <= 64 {
        Ok(())
    } else {
        Err(MppError::WrongShape(format!(
            "payment method id {} is not lowercase letters, digits, ':', '_' or '-'",
            excerpt(method)
        )))
    }
}

/// The credential header a challenge names, `None` for the default `Authorization`.
pub(crate) fn credential_header(header: Option<String>) -> Option<String> {
    header.filter(|h| !h.is_empty() && !h.eq_ignore_ascii_case("authorization"))
}

/// What a credential must echo of its challenge, borrowed from either side.
pub(crate) struct BindingFields<'a> {
    pub id: &'a str,
    pub realm: &'a str,
    pub method: &'a str,
    pub intent: &'a str,
    pub request: &'a Value,
    pub expires: Option<&'a str>,
    pub digest: Option<&'a str>,
    pub opaque: Option<&'a Value>,
    pub header: Option<&'a str>,
}

impl BindingFields<'_> {
    /// SHA-256 over every field, each delimited, absent ones marked as such.
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"mpp-binding-v1");
        for text in [self.id, self.realm, self.method, self.intent] {
            hash_text(&mut hasher, text);
        }
        hash_value(&mut hasher, self.request);
        for text in [self.expires, self.digest] {
            hash_optional_text(&mut hasher, text);
        }
        match self.opaque {
            Some(opaque) => {
                hasher.update(b"1");
                hash_value(&mut hasher, opaque);
            }
            None => hasher.update(b"0"),
        }
        hash_optional_text(
            &mut hasher,
            self.header.map(str::to_ascii_lowercase).as_deref(),
        );
        hasher.finalize().into()
    }
}

fn hash_optional_text(hasher: &mut Sha256, text: Option<&str>) {
    match text {
        Some(text) => {
            hasher.update(b"1");
            hash_text(hasher, text);
        }
        None => hasher.update(b"0"),
    }
}

impl Challenge {
    /// The digest a credential answering this challenge must reproduce.
    pub fn binding(&self) -> [u8; 32] {
        BindingFields {
            id: &self.id,
            realm: &self.realm,
            method: &self.method,
            intent: &self.intent,
            request: &self.request,
            expires: self.expires.as_deref(),
            digest: self.digest.as_deref(),
            opaque: self.opaque.as_ref(),
            header: self.header.as_deref(),
        }
        .digest()
    }

    /// The request's `amount`, when it is a well-formed integer string.
    pub fn amount(&self) -> Option<u128> {
        self.request
            .get("amount")
            .and_then(Value::as_str)
            .and_then(|a| amount(a).ok())
    }
}
