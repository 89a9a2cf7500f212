//! What the chain can be asked about a payment: which contract keeps its nonce, whose
//! nonce it is, and until when it could still be used. Chain reconciliation
//! (`engine::chain_watch`) asks it of payments whose outcome is unknown.
//!
//! * EIP-3009: the token contract answers `authorizationState(payer, nonce)`.
//! * Permit2: the Permit2 contract answers `nonceBitmap(payer, nonce >> 8)`; bit
//!   `nonce & 0xff` of the answer is the nonce.
//!
//! Built only from canonical bytes: a payment whose nonce could be read two ways (an
//! EIP-3009 nonce written shorter than 32 bytes) has no single answer on chain and is left
//! to the operator.

use super::canonical;
use super::hex::hex;
use super::network::canonical_network;
use super::payment::{Payment, PaymentKind};
use serde::{Deserialize, Serialize};

/// How the payment moves money, as the chain keeps its nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferMethod {
    /// EIP-3009 `transferWithAuthorization`: the token keeps `authorizationState`.
    Eip3009,
    /// Permit2 `permitWitnessTransferFrom`: Permit2 keeps the nonce bitmap.
    Permit2,
    /// Written by a later Purser; nothing here can ask the chain about it.
    #[serde(other)]
    Other,
}

/// A payment's signed authorization, as the chain knows it. Text fields are canonical:
/// lowercase `0x` hex, the nonce as 32 bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainAuthorization {
    /// Which contract keeps the nonce, and how it is asked.
    pub method: TransferMethod,
    /// CAIP-2 (`eip155:84532`).
    pub network: String,
    /// The token moved.
    pub token: String,
    /// The signer, whose nonce it is.
    pub payer: String,
    /// `0x` and 64 hex digits (a Permit2 `uint256` nonce, big-endian).
    pub nonce: String,
    /// Unix time from which the authorization can no longer be used (EIP-3009
    /// `validBefore`, Permit2 `deadline`); `None` when it did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_before: Option<u64>,
}

impl ChainAuthorization {
    /// Of `payment`, when it is an EVM authorization the chain can be asked about.
    pub fn of(payment: &Payment) -> Option<ChainAuthorization> {
        let method = match payment.kind {
            PaymentKind::EvmAuthorization => TransferMethod::Eip3009,
            PaymentKind::EvmPermit2 => TransferMethod::Permit2,
            PaymentKind::Solana | PaymentKind::Other => return None,
        };
        let network = canonical_network(&payment.network).filter(|n| n.starts_with("eip155:"))?;
        let token = canonical::address(payment.asset.as_deref()?)?;
        let payer = canonical::address(payment.payer.as_deref()?)?;
        let nonce_text = payment.nonce.as_deref()?;
        let nonce = match method {
            TransferMethod::Permit2 => canonical::uint256(nonce_text)?,
            _ => match canonical::bytes32_nonce(nonce_text)?.as_slice() {
                [only] => *only,
                _ => return None,
            },
        };
        Some(ChainAuthorization {
            method,
            network,
            token: format!("0x{}", hex(&token)),
            payer: format!("0x{}", hex(&payer)),
            nonce: format!("0x{}", hex(&nonce)),
            valid_before: payment.valid_before,
        })
    }

    /// The token's address as bytes; `None` if the text is not one (a line read back).
    pub fn token_bytes(&self) -> Option<[u8; 20]> {
        strict_hex(&self.token)
    }

    /// The contract that keeps the nonce: the token (EIP-3009) or Permit2.
    pub fn contract(&self) -> Option<[u8; 20]> {
        match self.method {
            TransferMethod::Eip3009 => self.token_bytes(),
            TransferMethod::Permit2 => canonical::address(super::permit2::PERMIT2),
            TransferMethod::Other => None,
        }
    }

    /// The payer's address as bytes.
    pub fn payer_bytes(&self) -> Option<[u8; 20]> {
        strict_hex(&self.payer)
    }

    /// The nonce as 32 big-endian bytes.
    pub fn nonce_bytes(&self) -> Option<[u8; 32]> {
        strict_hex(&self.nonce)
    }

    /// Whether the authorization can no longer be used at Unix time `now`, allowing
    /// `margin` seconds for a transaction already in flight (and for clocks that differ).
    pub fn expired_at(&self, now: u64, margin: u64) -> bool {
        self.valid_before
            .is_some_and(|until| now >= until.saturating_add(margin))
    }
}

/// Exactly `N` bytes of `0x` hex: a field read back from the log is trusted only in the
/// form it was written in.
fn strict_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.strip_prefix("0x")?;
    if digits.len() != N * 2 {
        return None;
    }
    canonical::hex_bytes(digits)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_back_only_in_the_form_written() {
        let authorization = ChainAuthorization {
            method: TransferMethod::Eip3009,
            network: "eip155:84532".into(),
            token: format!("0x{}", "ab".repeat(20)),
            payer: "0x12".into(),
            nonce: format!("0x{}", "00".repeat(32)),
            valid_before: Some(100),
        };
        assert_eq!(authorization.token_bytes(), Some([0xab; 20]));
        assert_eq!(authorization.contract(), Some([0xab; 20]));
        let permit2 = ChainAuthorization {
            method: TransferMethod::Permit2,
            ..authorization.clone()
        };
        let permit2_contract = format!("0x{}", hex(&permit2.contract().unwrap()));
        assert_eq!(
            permit2_contract,
            super::super::permit2::PERMIT2.to_ascii_lowercase()
        );
        assert_eq!(authorization.payer_bytes(), None, "too short");
        assert_eq!(authorization.nonce_bytes(), Some([0; 32]));
        assert!(!authorization.expired_at(99, 0));
        assert!(authorization.expired_at(100, 0));
        assert!(!authorization.expired_at(100, 60));
        assert!(authorization.expired_at(160, 60));
        let open = ChainAuthorization {
            valid_before: None,
            ..authorization
        };
        assert!(!open.expired_at(u64::MAX, 0));
    }

    #[test]
    fn a_method_from_a_later_purser_reads_as_other() {
        let line =
            r#"{"method":"erc7710","network":"eip155:1","token":"0x","payer":"0x","nonce":"0x"}"#;
        let read: ChainAuthorization = serde_json::from_str(line).unwrap();
        assert_eq!(read.method, TransferMethod::Other);
    }
}
