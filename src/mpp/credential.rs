//! Payment credentials: `Authorization: Payment <base64url JSON>` over HTTP (or the header
//! the challenge named, `Payment-Authorization`), and the same JSON object in MCP's
//! `_meta["org.paymentauth/credential"]`.
//!
//! ```json
//! {"challenge": {"id", "realm", "method", "intent", "request", "expires"?, "digest"?,
//!                "opaque"?, "header"?, "description"?},
//!  "payload": {...method-specific...}, "source"?: "did:pkh:eip155:84532:0x..."}
//! ```
//!
//! Over HTTP the echoed `request` and `opaque` are base64url strings, over MCP JSON
//! objects ([`EchoForm`]); either way they are decoded, so [`Echo::binding`] compares
//! what they mean with the challenge Purser saw. The payload is left as JSON: what it
//! signs is the method's business (`crate::detect`).

use super::canonical::{b64url, b64url_object, hash_value, json_object};
use super::challenge::{check_method_id, credential_header, BindingFields};
use super::error::MppError;
use super::limits::{MAX_CREDENTIAL_BYTES, MAX_PARAM_BYTES};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// How a credential writes the `request` and `opaque` it echoes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EchoForm {
    /// HTTP: base64url of the JSON object, as the challenge's auth-param had it.
    Base64url,
    /// MCP: the JSON object itself.
    Object,
}

/// The challenge a credential says it answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Echo {
    /// The challenge's id.
    pub id: String,
    /// Echoed `realm`.
    pub realm: String,
    /// Echoed `method`.
    pub method: String,
    /// Echoed `intent`.
    pub intent: String,
    /// The echoed `request`, decoded: what Purser prices once the echo is bound.
    pub request: Value,
    /// Echoed `expires`.
    pub expires: Option<String>,
    /// Echoed `digest`.
    pub digest: Option<String>,
    /// Echoed `opaque`, decoded.
    pub opaque: Option<Value>,
    /// Echoed `header`, `None` for `Authorization`.
    pub header: Option<String>,
}

/// A credential, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Credential {
    /// The challenge it answers.
    pub challenge: Echo,
    /// What the method signs or carries (an EIP-3009 authorization, a Tempo
    /// transaction, a Stripe token): always a JSON object.
    pub payload: Value,
    /// The payer, as a DID (`did:pkh:eip155:84532:0x...`), if given.
    pub source: Option<String>,
    /// SHA-256 of the decoded JSON (HTTP) or of its canonical form (MCP): identifies this
    /// exact credential (approvals and retries bind to it).
    pub digest: [u8; 32],
}

/// The `Payment` credential in one `Authorization` (or `Payment-Authorization`) value.
/// A list (`Bearer x, Payment y`) is read item by item, as the merchant's SDK does.
pub fn parse_authorization(value: &[u8]) -> Result<Credential, MppError> {
    if value.len() > MAX_CREDENTIAL_BYTES {
        return Err(MppError::TooLarge {
            what: "credential",
            limit: MAX_CREDENTIAL_BYTES,
        });
    }
    let text = std::str::from_utf8(value)
        .map_err(|_| MppError::WrongShape("the Authorization value is not UTF-8".into()))?;
    let mut items = text.split(',').map(str::trim).filter(|item| {
        let scheme = item.split([' ', '\t']).next().unwrap_or("");
        scheme.eq_ignore_ascii_case("payment")
    });
    let item = items
        .next()
        .ok_or_else(|| MppError::Missing("Payment credential".into()))?;
    if items.next().is_some() {
        // A merchant that reads the last one would be paid by a credential not decided.
        return Err(MppError::WrongShape(
            "two Payment credentials in one Authorization value; send exactly one".into(),
        ));
    }
    let encoded = item
        .split_once([' ', '\t'])
        .map(|(_, rest)| rest.trim())
        .filter(|rest| !rest.is_empty())
        .ok_or_else(|| MppError::Missing("credential after the Payment scheme".into()))?;
    let bytes = b64url(encoded, "credential", MAX_CREDENTIAL_BYTES)?;
    let json = json_object(&bytes, "credential")?;
    let mut credential = from_json(&json, EchoForm::Base64url)?;
    credential.digest = Sha256::digest(&bytes).into();
    Ok(credential)
}

/// A credential given as a JSON object (MCP's `_meta`), echo in `form`.
pub fn from_json(json: &Value, form: EchoForm) -> Result<Credential, MppError> {
    let root = json
        .as_object()
        .ok_or_else(|| MppError::WrongShape("the credential is not a JSON object".into()))?;
    let challenge = root
        .get("challenge")
        .and_then(Value::as_object)
        .ok_or_else(|| MppError::Missing("credential field \"challenge\" (an object)".into()))?;
    let payload = root
        .get("payload")
        .filter(|p| p.is_object())
        .cloned()
        .ok_or_else(|| MppError::Missing("credential field \"payload\" (an object)".into()))?;
    let source = optional_text(root, "source", "credential")?;
    let mut hasher = Sha256::new();
    hash_value(&mut hasher, json);
    Ok(Credential {
        challenge: echo(challenge, form)?,
        payload,
        source,
        digest: hasher.finalize().into(),
    })
}

fn echo(challenge: &Map<String, Value>, form: EchoForm) -> Result<Echo, MppError> {
    let required = |name: &str| {
        optional_text(challenge, name, "challenge echo")?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| MppError::Missing(format!("credential challenge field {name:?}")))
    };
    let method = required("method")?;
    check_method_id(&method)?;
    let request = challenge
        .get("request")
        .ok_or_else(|| MppError::Missing("credential challenge field \"request\"".into()))?;
    Ok(Echo {
        id: required("id")?,
        realm: required("realm")?,
        method,
        intent: required("intent")?,
        request: echoed_object(request, form, "echoed request")?,
        expires: optional_text(challenge, "expires", "challenge echo")?,
        digest: optional_text(challenge, "digest", "challenge echo")?,
        opaque: match challenge.get("opaque") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(opaque) => Some(echoed_object(opaque, form, "echoed opaque")?),
        },
        header: credential_header(optional_text(challenge, "header", "challenge echo")?),
    })
}

/// An echoed `request` or `opaque`: base64url text over HTTP, an object over MCP.
fn echoed_object(value: &Value, form: EchoForm, what: &'static str) -> Result<Value, MppError> {
    match (form, value) {
        (EchoForm::Base64url, Value::String(text)) => b64url_object(text, what, MAX_PARAM_BYTES),
        (EchoForm::Object, Value::Object(_)) => Ok(value.clone()),
        (EchoForm::Base64url, _) => Err(MppError::WrongShape(format!(
            "the {what} must be the challenge's base64url text"
        ))),
        (EchoForm::Object, _) => Err(MppError::WrongShape(format!(
            "the {what} must be the challenge's JSON object"
        ))),
    }
}

/// A string field, `None` when absent or `null`; any other type is an error.
fn optional_text(
    object: &Map<String, Value>,
    name: &str,
    within: &str,
) -> Result<Option<String>, MppError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(MppError::WrongShape(format!(
            "{within} field {name:?} must be a string"
        ))),
    }
}

impl Echo {
    /// The digest of what is echoed: equal to `Challenge::binding` of the
    /// challenge answered, if and only if every field the `id` covers is echoed as sent.
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
}
