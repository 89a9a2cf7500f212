//! MPP credentials as payments the engine can price ([`MppPayment`]): what a `charge`
//! credential says it pays (the echoed challenge's `request`), what its payload signs or
//! carries, who pays, until when it can settle, and what makes it single-use.
//!
//! Governed: the `charge` intent of the `evm` (an EIP-3009 authorization), `tempo` (a
//! signed TIP-20 transfer transaction the merchant broadcasts) and `stripe` (a shared
//! payment token) methods. Everything else is `unsupported_payment`, with the reason: the
//! `session` intent, a Tempo transaction already broadcast (`hash`: its money moved
//! before Purser saw it), other methods, other payload forms.
//!
//! Nothing here trusts the echo yet: the engine binds it to a challenge Purser saw
//! before it prices anything from it, and compares what is signed with it.

use crate::mpp::{self, tempo, Credential, EchoForm, MppError};
use crate::x402::assets::STRIPE_NETWORK;
use crate::x402::{hex, ReplayKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A payment method Purser governs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MppMethod {
    /// `evm`: an EIP-3009 `transferWithAuthorization`, settled by the merchant.
    Evm,
    /// `tempo`: a signed Tempo transaction, broadcast by the merchant.
    Tempo,
    /// `stripe`: a Stripe shared payment token, charged by the merchant.
    Stripe,
}

impl MppMethod {
    /// The method id as MPP writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            MppMethod::Evm => "evm",
            MppMethod::Tempo => "tempo",
            MppMethod::Stripe => "stripe",
        }
    }
}

/// What the echoed challenge asks, read from its `request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeTerms {
    /// CAIP-2: `eip155:<chainId>`, or [`STRIPE_NETWORK`].
    pub network: String,
    /// The token address, or the ISO 4217 code in lower case.
    pub currency: String,
    /// Who is paid: an address, or for Stripe the merchant's network id.
    pub recipient: String,
    /// Base units, everything included (a Tempo split is part of it).
    pub amount: u128,
    /// The decimals the challenge states (`evm` does), to compare with the asset table.
    pub decimals: Option<u32>,
    /// Tempo splits: (recipient, amount) paid out of `amount`.
    pub splits: Vec<(String, u128)>,
}

/// What the credential's payload commits to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signed {
    /// EIP-3009: `value` to `to`.
    Authorization {
        /// The recipient signed.
        to: String,
        /// Base units signed.
        value: u128,
    },
    /// The TIP-20 transfers a Tempo transaction makes, on the chain it is signed for.
    Transfers {
        /// The chain the transaction is signed for.
        chain_id: u64,
        /// Its transfers.
        transfers: Vec<tempo::Transfer>,
    },
    /// A token the merchant charges the challenge's amount with; nothing signed to compare.
    Token,
}

/// An MPP credential read as a payment.
#[derive(Clone, Debug)]
pub struct MppPayment {
    /// The credential as decoded (its echo is bound by the engine).
    pub credential: Credential,
    /// Its method.
    pub method: MppMethod,
    /// What the echoed request asks.
    pub terms: ChargeTerms,
    /// What the payload commits to.
    pub signed: Signed,
    /// The payer's address, where the credential names one.
    pub payer: Option<String>,
    /// Unix time after which it cannot settle: the challenge's `expires`, or sooner if
    /// the payload says so.
    pub valid_before: Option<u64>,
    /// What makes it single-use, as the replay set keeps keys.
    pub replay_keys: Vec<String>,
}

/// The payment in an `Authorization: Payment` (or `Payment-Authorization`) value.
pub fn read_credential(value: &[u8]) -> Result<MppPayment, MppError> {
    from_credential(mpp::parse_authorization(value)?)
}

/// The payment in an MCP call's `_meta["org.paymentauth/credential"]`: the credential
/// as a JSON object, its echo's `request` and `opaque` objects too.
pub fn read_meta_credential(json: &str) -> Result<MppPayment, MppError> {
    if json.len() > mpp::MAX_CREDENTIAL_BYTES {
        return Err(MppError::TooLarge {
            what: "credential",
            limit: mpp::MAX_CREDENTIAL_BYTES,
        });
    }
    let value: Value = serde_json::from_str(json).map_err(|error| MppError::NotJson {
        what: "credential",
        detail: error.to_string(),
    })?;
    from_credential(mpp::credential::from_json(&value, EchoForm::Object)?)
}

/// A decoded credential as a payment, if its intent, method and payload are governed.
pub fn from_credential(credential: Credential) -> Result<MppPayment, MppError> {
    let echo = &credential.challenge;
    match echo.intent.as_str() {
        "charge" => {}
        "session" => {
            return Err(MppError::Unsupported(
                "MPP session intent is not governed yet: a session moves a deposit into \
                 escrow when it opens or tops up, then pays by vouchers of a cumulative \
                 amount, and Purser cannot yet bound a channel's cumulative increase across \
                 restarts, so it forwards none of it; pay with the charge intent"
                    .into(),
            ))
        }
        other => {
            return Err(MppError::Unsupported(format!(
                "MPP intent {} is not governed: Purser governs the charge intent",
                short(other)
            )))
        }
    }
    let method = match echo.method.as_str() {
        "evm" => MppMethod::Evm,
        "tempo" => MppMethod::Tempo,
        "stripe" => MppMethod::Stripe,
        other => {
            return Err(MppError::Unsupported(format!(
                "MPP payment method {} is not governed: Purser prices the evm, tempo and \
                 stripe charge methods; pay with one of those",
                short(other)
            )))
        }
    };
    let terms = terms(method, &echo.request)?;
    let expires = echo.expires.as_deref().map(unix_time).transpose()?;
    let read = match method {
        MppMethod::Evm => evm_payload(&credential.payload)?,
        MppMethod::Tempo => tempo_payload(&credential.payload)?,
        MppMethod::Stripe => stripe_payload(&credential.payload)?,
    };
    let mut replay_keys = vec![challenge_key(&echo.realm, &echo.id)];
    replay_keys.extend(read.keys);
    let payer = read
        .payer
        .or_else(|| credential.source.as_deref().and_then(did_address));
    let valid_before = match (expires, read.valid_before) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(MppPayment {
        method,
        terms,
        signed: read.signed,
        payer,
        valid_before,
        replay_keys,
        credential,
    })
}

fn short(text: &str) -> String {
    let cut: String = text.chars().take(40).collect();
    format!("{cut:?}")
}

/// One payment per challenge: a second credential for the same challenge is a replay.
fn challenge_key(realm: &str, id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update((realm.len() as u64).to_be_bytes());
    hasher.update(realm.as_bytes());
    hasher.update(id.as_bytes());
    format!("mpp_challenge:{}", hex(&hasher.finalize()))
}

fn text<'a>(object: &'a Value, name: &str, within: &str) -> Result<&'a str, MppError> {
    object
        .get(name)
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| MppError::Missing(format!("{within} field {name:?} (a string)")))
}

fn terms(method: MppMethod, request: &Value) -> Result<ChargeTerms, MppError> {
    let amount = mpp::amount(text(request, "amount", "request")?)?;
    let currency = text(request, "currency", "request")?;
    let details = request.get("methodDetails");
    let detail = |name: &str| details.and_then(|d| d.get(name));
    let chain = |default: Option<u64>| match detail("chainId") {
        Some(id) => id.as_u64().ok_or_else(|| {
            MppError::WrongShape("request methodDetails.chainId is not an integer".into())
        }),
        None => default.ok_or_else(|| MppError::Missing("request methodDetails.chainId".into())),
    };
    let (network, currency, recipient) = match method {
        MppMethod::Evm => (
            format!("eip155:{}", chain(None)?),
            currency.to_string(),
            text(request, "recipient", "request")?.to_string(),
        ),
        // The SDKs' default chain is Tempo mainnet.
        MppMethod::Tempo => (
            format!("eip155:{}", chain(Some(4217))?),
            currency.to_string(),
            text(request, "recipient", "request")?.to_string(),
        ),
        MppMethod::Stripe => {
            let recipient = request
                .get("recipient")
                .and_then(Value::as_str)
                .or_else(|| detail("networkId").and_then(Value::as_str))
                .unwrap_or("stripe");
            (
                STRIPE_NETWORK.to_string(),
                currency.to_ascii_lowercase(),
                recipient.to_string(),
            )
        }
    };
    let decimals = match detail("decimals") {
        None => None,
        Some(value) => Some(
            value
                .as_u64()
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| MppError::WrongShape("request decimals is not an integer".into()))?,
        ),
    };
    Ok(ChargeTerms {
        network,
        currency,
        recipient,
        amount,
        decimals,
        splits: splits(detail("splits"))?,
    })
}

fn splits(value: Option<&Value>) -> Result<Vec<(String, u128)>, MppError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let items = value
        .as_array()
        .filter(|items| items.len() <= 16)
        .ok_or_else(|| MppError::WrongShape("request splits is not a short list".into()))?;
    items
        .iter()
        .map(|split| {
            let recipient = text(split, "recipient", "split")?.to_string();
            Ok((recipient, mpp::amount(text(split, "amount", "split")?)?))
        })
        .collect()
}

/// What a payload yields besides the terms.
struct PayloadRead {
    signed: Signed,
    payer: Option<String>,
    valid_before: Option<u64>,
    keys: Vec<String>,
}

fn evm_payload(payload: &Value) -> Result<PayloadRead, MppError> {
    let kind = text(payload, "type", "payload")?;
    if kind != "authorization" {
        return Err(MppError::Unsupported(format!(
            "an evm charge payload of type {} is not governed: Purser reads EIP-3009 \
             authorizations (type \"authorization\")",
            short(kind)
        )));
    }
    let field = |name: &str| text(payload, name, "evm payload");
    let hex_field = |name: &str| {
        mpp::hex_bytes(field(name)?)
            .ok_or_else(|| MppError::WrongShape(format!("evm payload {name:?} is not 0x hex")))
    };
    let from = fixed::<20>(hex_field("from")?, "from")?;
    let nonce = fixed::<32>(hex_field("nonce")?, "nonce")?;
    fixed::<20>(hex_field("to")?, "to")?;
    let signature: [u8; 32] = Sha256::digest(hex_field("signature")?).into();
    let value = mpp::amount(field("value")?)?;
    let valid_before = field("validBefore")?
        .parse::<u64>()
        .map_err(|_| MppError::WrongShape("evm payload validBefore is not a time".into()))?;
    Ok(PayloadRead {
        signed: Signed::Authorization {
            to: field("to")?.to_string(),
            value,
        },
        payer: Some(field("from")?.to_string()),
        valid_before: Some(valid_before),
        keys: vec![
            ReplayKey::PayerNonce(from, nonce).to_string(),
            ReplayKey::Signature(signature).to_string(),
        ],
    })
}

fn fixed<const N: usize>(bytes: Vec<u8>, name: &str) -> Result<[u8; N], MppError> {
    bytes
        .try_into()
        .map_err(|_| MppError::WrongShape(format!("evm payload {name:?} is not {N} bytes")))
}

fn tempo_payload(payload: &Value) -> Result<PayloadRead, MppError> {
    match text(payload, "type", "payload")? {
        "transaction" => {}
        "hash" => {
            return Err(MppError::Unsupported(
                "a tempo charge paid by a transaction the client already broadcast (payload \
                 type \"hash\") moved its money before Purser saw it, so Purser does not \
                 forward it; let the merchant broadcast (payload type \"transaction\")"
                    .into(),
            ))
        }
        other => {
            return Err(MppError::Unsupported(format!(
                "a tempo charge payload of type {} is not governed: Purser reads signed \
                 transactions (type \"transaction\")",
                short(other)
            )))
        }
    }
    let raw = mpp::hex_bytes(text(payload, "signature", "tempo payload")?)
        .ok_or_else(|| MppError::WrongShape("tempo payload \"signature\" is not 0x hex".into()))?;
    let tx = tempo::read_transaction(&raw)?;
    Ok(PayloadRead {
        payer: tx.sender.map(|sender| format!("0x{}", hex(&sender))),
        valid_before: tx.valid_before,
        keys: vec![format!("tempo_tx:{}", hex(&tx.content_digest))],
        signed: Signed::Transfers {
            chain_id: tx.chain_id,
            transfers: tx.transfers()?,
        },
    })
}

fn stripe_payload(payload: &Value) -> Result<PayloadRead, MppError> {
    let token = text(payload, "spt", "stripe payload")?;
    let digest = Sha256::digest(token.as_bytes());
    Ok(PayloadRead {
        signed: Signed::Token,
        payer: None,
        valid_before: None,
        keys: vec![format!("stripe_spt:{}", hex(&digest))],
    })
}

/// The address of a `did:pkh:<namespace>:<reference>:<address>` payer.
fn did_address(did: &str) -> Option<String> {
    let mut parts = did.strip_prefix("did:pkh:")?.splitn(3, ':');
    let (_namespace, _reference, address) = (parts.next()?, parts.next()?, parts.next()?);
    (!address.is_empty() && address.len() <= 128).then(|| address.to_string())
}

/// An RFC 3339 time as Unix seconds.
fn unix_time(text: &str) -> Result<u64, MppError> {
    let at: jiff::Timestamp = text.parse().map_err(|_| {
        MppError::WrongShape(format!(
            "challenge expires {} is not an RFC 3339 time",
            short(text)
        ))
    })?;
    Ok(at.as_second().max(0) as u64)
}

#[cfg(test)]
mod tests;
