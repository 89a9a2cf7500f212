//! [`Paid`]: the payment a decision is about, in whichever protocol it came, and what
//! the rest of the engine asks of it whatever the protocol: the digest approvals and
//! retries bind to, until when it can settle, who pays, and its replay keys.

use crate::detect::mpp::MppPayment;
use crate::detect::Protocol;
use crate::x402::Payment;

/// A payment header or credential, parsed.
#[derive(Clone, Debug)]
pub enum Paid {
    /// x402 (v1 `X-PAYMENT` or v2 `PAYMENT-SIGNATURE`).
    X402(Payment),
    /// An MPP `charge` credential.
    Mpp(MppPayment),
}

impl Paid {
    /// SHA-256 of the decoded payment or credential: identifies this exact payment.
    pub fn digest(&self) -> [u8; 32] {
        match self {
            Paid::X402(payment) => payment.digest,
            Paid::Mpp(payment) => payment.credential.digest,
        }
    }

    /// Unix time after which it can no longer settle, if it says.
    pub fn valid_before(&self) -> Option<u64> {
        match self {
            Paid::X402(payment) => payment.valid_before,
            Paid::Mpp(payment) => payment.valid_before,
        }
    }

    /// The payer's address, where the payment names one.
    pub fn payer(&self) -> Option<String> {
        match self {
            Paid::X402(payment) => payment.payer.clone(),
            Paid::Mpp(payment) => payment.payer.clone(),
        }
    }

    /// Every key that makes it single-use, as the trace and the replay set write them.
    pub fn replay_keys(&self) -> Vec<String> {
        match self {
            Paid::X402(payment) => payment
                .replay_keys()
                .iter()
                .map(ToString::to_string)
                .collect(),
            Paid::Mpp(payment) => payment.replay_keys.clone(),
        }
    }

    /// The x402 version, for x402 payments.
    pub fn x402_version(&self) -> Option<u8> {
        match self {
            Paid::X402(payment) => Some(payment.version),
            Paid::Mpp(_) => None,
        }
    }

    /// The x402 payment, if it is one (what x402-only code, such as `upto` metering or
    /// asking the chain about an EIP-3009 nonce, reads).
    pub fn x402(&self) -> Option<&Payment> {
        match self {
            Paid::X402(payment) => Some(payment),
            Paid::Mpp(_) => None,
        }
    }

    /// The MPP credential, if it is one.
    pub fn mpp(&self) -> Option<&MppPayment> {
        match self {
            Paid::X402(_) => None,
            Paid::Mpp(payment) => Some(payment),
        }
    }

    /// The protocol it came in, which says where its receipt will be.
    pub fn protocol(&self) -> Protocol {
        match self {
            Paid::X402(payment) if payment.version == 1 => Protocol::X402V1,
            Paid::X402(_) => Protocol::X402V2,
            Paid::Mpp(_) => Protocol::Mpp,
        }
    }
}
