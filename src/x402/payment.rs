//! Payments, v1 (`X-PAYMENT`) and v2 (`PAYMENT-SIGNATURE`), as one normalized [`Payment`],
//! plus what identifies a payment for replay checks and how it compares to a challenge.

use super::address::same_address;
use super::challenge::{expect_version, requirement_v2, resource_url, Requirement};
use super::decode::{check_size, decode_header_json, parse_json, MAX_PAYMENT_HEADER_BYTES};
use super::error::X402Error;
use super::fields::Obj;
use super::hex::hex;
use super::network::{canonical_network, namespace};
use super::payload::{self, Signed};
use super::replay_key::ReplayKey;
use sha2::{Digest, Sha256};

pub use super::payload::PaymentKind;

/// Schemes Purser can price.
pub const KNOWN_SCHEMES: &[&str] = &["exact", "upto"];

/// A parsed payment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// 1 or 2.
    pub version: u8,
    /// `exact` or `upto`: other schemes are refused while parsing.
    pub scheme: String,
    /// As written (v1 name or CAIP-2 id); v2 takes it from `accepted`.
    pub network: String,
    /// How the payment moves money, from the network's family and the payload's shape.
    pub kind: PaymentKind,
    /// v2: the requirement the client says it is paying.
    pub accepted: Option<Requirement>,
    /// v2: `resource.url`.
    pub resource: Option<String>,
    /// The signer (`authorization.from`, `permit2Authorization.from`).
    pub payer: Option<String>,
    /// From the signed payload (`authorization.to`, `witness.to`); `None` for Solana.
    pub pay_to: Option<String>,
    /// Signed value, Permit2 permitted amount or `upto` maximum; `None` for Solana.
    pub amount_atomic: Option<u128>,
    /// The Permit2 signed token, else v2 `accepted.asset`; v1 EIP-3009 has none.
    pub asset: Option<String>,
    /// The signed nonce as written (EIP-3009: bytes32, 0x hex; Permit2: uint256, decimal);
    /// `None` for Solana.
    pub nonce: Option<String>,
    /// The payer's signature as written (EVM: 0x hex); `None` for Solana or when absent.
    pub signature: Option<String>,
    /// Permit2: the contract the signature lets pull the tokens (must be the x402 proxy
    /// of the scheme, see [`Payment::permit2_spender_problem`]).
    pub spender: Option<String>,
    /// Solana: the base64 transaction.
    pub solana_transaction: Option<String>,
    /// Unix time after which the signature is void (EIP-3009 `validBefore`, Permit2
    /// `deadline`): a held payment is worthless after it.
    pub valid_before: Option<u64>,
    /// SHA-256 of the decoded JSON bytes: identifies this exact payment (approvals bind
    /// to it).
    pub digest: [u8; 32],
    /// Built while parsing, from canonical bytes: a payment that cannot be keyed is not
    /// a payment Purser accepts.
    keys: Vec<ReplayKey>,
}

/// Parses a v1 `X-PAYMENT` header.
pub fn parse_payment_v1(header: &[u8]) -> Result<Payment, X402Error> {
    let (json, bytes) = decode_header_json(header)?;
    payment_v1(&Obj::root(&json, "X-PAYMENT")?, &bytes, "X-PAYMENT")
}

/// Parses a payment sent as JSON instead of a header: x402 over MCP puts it in a
/// JSON-RPC body's `_meta["x402/payment"]`. Either version, as its `x402Version` says;
/// the digest is of these exact bytes.
pub fn parse_payment_json(json: &[u8]) -> Result<Payment, X402Error> {
    check_size(json, MAX_PAYMENT_HEADER_BYTES)?;
    let value = parse_json(json)?;
    let what = "the x402/payment object";
    let root = Obj::root(&value, what)?;
    match root.version()? {
        1 => payment_v1(&root, json, what),
        _ => payment_v2(&root, json, what),
    }
}

fn payment_v1(root: &Obj<'_>, bytes: &[u8], what: &str) -> Result<Payment, X402Error> {
    expect_version(root, 1, what)?;
    let scheme = known_scheme(root.string("scheme")?)?;
    let network = root.string("network")?;
    let signed = payload::read(&root.object("payload")?, &namespace_of(&network)?)?;
    Ok(assemble(1, scheme, network, None, None, signed, bytes))
}

/// Parses a v2 `PAYMENT-SIGNATURE` header.
pub fn parse_payment_v2(header: &[u8]) -> Result<Payment, X402Error> {
    let (json, bytes) = decode_header_json(header)?;
    let what = "PAYMENT-SIGNATURE";
    payment_v2(&Obj::root(&json, what)?, &bytes, what)
}

fn payment_v2(root: &Obj<'_>, bytes: &[u8], what: &str) -> Result<Payment, X402Error> {
    expect_version(root, 2, what)?;
    // Scheme and network first, so an unknown one is reported as such and not as a
    // missing field of a shape Purser does not know.
    let accepted_obj = root.object("accepted")?;
    let scheme = known_scheme(accepted_obj.string("scheme")?)?;
    let ns = namespace_of(&accepted_obj.string("network")?)?;
    let resource = resource_url(root)?;
    let accepted = requirement_v2(&accepted_obj, resource.clone())?;
    let mut signed = payload::read(&root.object("payload")?, &ns)?;
    // What is signed wins: a Permit2 token is the asset that moves.
    signed.asset = signed.asset.or_else(|| Some(accepted.asset.clone()));
    let network = accepted.network.clone();
    Ok(assemble(
        2,
        scheme,
        network,
        Some(accepted),
        resource,
        signed,
        bytes,
    ))
}

/// Joins the envelope and the signed payload.
fn assemble(
    version: u8,
    scheme: String,
    network: String,
    accepted: Option<Requirement>,
    resource: Option<String>,
    signed: Signed,
    decoded: &[u8],
) -> Payment {
    Payment {
        version,
        scheme,
        network,
        kind: signed.kind,
        accepted,
        resource,
        payer: signed.payer,
        pay_to: signed.pay_to,
        amount_atomic: signed.amount_atomic,
        asset: signed.asset,
        nonce: signed.nonce,
        signature: signed.signature,
        spender: signed.spender,
        solana_transaction: signed.solana_transaction,
        valid_before: signed.valid_before,
        digest: Sha256::digest(decoded).into(),
        keys: signed.keys,
    }
}

/// Refuses schemes Purser cannot price.
fn known_scheme(scheme: String) -> Result<String, X402Error> {
    if KNOWN_SCHEMES.contains(&scheme.as_str()) {
        Ok(scheme)
    } else {
        Err(X402Error::UnknownScheme(scheme))
    }
}

/// The CAIP-2 namespace of a payment's network, or why the network is unknown.
fn namespace_of(network: &str) -> Result<String, X402Error> {
    namespace(network).ok_or_else(|| X402Error::UnknownNetwork(network.to_string()))
}

impl Payment {
    /// Every key that identifies this payment; a payment whose key was seen is a replay.
    /// Empty only for a network family Purser does not read payloads for.
    pub fn replay_keys(&self) -> Vec<ReplayKey> {
        self.keys.clone()
    }

    /// The digest as lowercase hex.
    pub fn digest_hex(&self) -> String {
        hex(&self.digest)
    }

    /// The most this payment can move according to what it carries itself: the signed
    /// amount (EIP-3009 `value`, Permit2 `permitted.amount`, the `upto` maximum), which
    /// is what the chain lets move. v2's `accepted.amount` is only echoed by the client,
    /// never signed, so it counts only when nothing is signed (a Solana payment). `None`
    /// when it carries neither (v1 Solana: price it from the challenge it answers).
    pub fn max_cost_atomic(&self) -> Option<u128> {
        self.amount_atomic
            .or_else(|| self.accepted.as_ref().map(|r| r.amount_atomic))
    }

    /// Why a Permit2 payment's spender cannot be trusted to pay the signed recipient
    /// (see [`super::permit2`]), or `None`; always `None` for other payments.
    pub fn permit2_spender_problem(&self) -> Option<String> {
        let spender = self.spender.as_deref()?;
        super::permit2::spender_problem(&self.scheme, spender)
    }

    /// Why this payment does not answer `requirement` (another scheme, network, asset
    /// or recipient, or more money), or `None` if it does. Fields the payment does not
    /// carry are not compared.
    pub fn mismatch_with(&self, requirement: &Requirement) -> Option<String> {
        if self.scheme != requirement.scheme {
            return Some(format!(
                "scheme {:?} does not match the challenge's {:?}",
                self.scheme, requirement.scheme
            ));
        }
        if canonical_network(&self.network) != canonical_network(&requirement.network) {
            return Some(format!(
                "network {:?} does not match the challenge's {:?}",
                self.network, requirement.network
            ));
        }
        self.asset_or_recipient_mismatch(requirement)
            .or_else(|| self.amount_mismatch(requirement))
    }

    fn asset_or_recipient_mismatch(&self, requirement: &Requirement) -> Option<String> {
        if let Some(asset) = &self.asset {
            if !same_address(asset, &requirement.asset) {
                return Some(format!(
                    "asset {asset} does not match the challenge's {}",
                    requirement.asset
                ));
            }
        }
        match &self.pay_to {
            Some(pay_to) if !same_address(pay_to, &requirement.pay_to) => Some(format!(
                "pays {pay_to}, not the challenge's payTo {}",
                requirement.pay_to
            )),
            _ => None,
        }
    }

    fn amount_mismatch(&self, requirement: &Requirement) -> Option<String> {
        match self.amount_atomic {
            Some(amount) if amount > requirement.amount_atomic => Some(format!(
                "signs {amount} atomic units, more than the challenge's {}",
                requirement.amount_atomic
            )),
            _ => None,
        }
    }
}
