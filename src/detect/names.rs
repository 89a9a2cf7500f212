//! Header names as the merchant's framework reads them.
//!
//! CGI, WSGI, Rack and PHP hand headers to the application as `HTTP_` variables: upper
//! case, `-` turned into `_`. `PAYMENT_SIGNATURE` and `PAYMENT-SIGNATURE` both arrive as
//! `HTTP_PAYMENT_SIGNATURE`, and some servers map every other separator the same way. So
//! Purser compares names after lower-casing and mapping every byte that is not a letter
//! or digit to `-`: whatever a framework could read as a payment header, Purser reads as
//! one too.

/// Which x402 header carries a payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentHeader {
    /// `X-PAYMENT`
    V1,
    /// `PAYMENT-SIGNATURE`
    V2,
}

/// What a header name means to Purser, whatever its spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An x402 payment: `X-PAYMENT` (v1) or `PAYMENT-SIGNATURE` (v2).
    Payment(PaymentHeader),
    /// An x402 receipt: `X-PAYMENT-RESPONSE` (v1) or `PAYMENT-RESPONSE` (v2).
    Receipt,
    /// `X-Purser-Phase` or `X-Purser-Transaction`: for Purser, never for the merchant.
    Control(Control),
    /// `Authorization`, where MPP and L402 put their credentials, or
    /// `Payment-Authorization`, where an MPP challenge may ask for the credential.
    Authorization,
    /// MPP's receipt: `Payment-Receipt`.
    MppReceipt,
    /// `HTTP2-Settings`, which only an `h2c` upgrade uses.
    Http2Settings,
}

/// Purser's own request headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// `X-Purser-Phase`: the agent moves its session to a later phase.
    Phase,
    /// `X-Purser-Transaction`: the multi-step transaction the request is a step of.
    Transaction,
    /// `X-Purser-Session`: the session a redirected connection's request speaks for,
    /// where the policy's `transparent` section lets the agent pick it.
    Session,
}

/// The canonical spelling of each name Purser looks for.
const NAMED: [(&str, Role); 11] = [
    ("x-payment", Role::Payment(PaymentHeader::V1)),
    ("payment-signature", Role::Payment(PaymentHeader::V2)),
    ("x-payment-response", Role::Receipt),
    ("payment-response", Role::Receipt),
    ("x-purser-phase", Role::Control(Control::Phase)),
    ("x-purser-transaction", Role::Control(Control::Transaction)),
    ("x-purser-session", Role::Control(Control::Session)),
    ("authorization", Role::Authorization),
    ("payment-authorization", Role::Authorization),
    ("payment-receipt", Role::MppReceipt),
    ("http2-settings", Role::Http2Settings),
];

/// A byte of a name, as compared: letters lower-cased, digits kept, anything else `-`.
fn canonical_byte(byte: u8) -> u8 {
    if byte.is_ascii_alphanumeric() {
        byte.to_ascii_lowercase()
    } else {
        b'-'
    }
}

/// Whether `name` is `canonical` in some spelling.
pub fn same_name(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len()
        && name
            .bytes()
            .zip(canonical.bytes())
            .all(|(byte, wanted)| canonical_byte(byte) == wanted)
}

/// The canonical spelling of `name`.
pub fn canonical(name: &str) -> String {
    name.bytes().map(|b| canonical_byte(b) as char).collect()
}

/// What `name` means to Purser, if anything. Most names differ in length from every
/// name looked for, so this is a few length compares per header on the plain path.
pub fn role(name: &str) -> Option<Role> {
    NAMED
        .iter()
        .find(|(canonical, _)| same_name(name, canonical))
        .map(|(_, role)| *role)
}

/// The canonical spelling of a control header, which is the one Purser honours; any
/// other spelling is stripped unread.
pub fn control_name(control: Control) -> &'static str {
    match control {
        Control::Phase => "x-purser-phase",
        Control::Transaction => "x-purser-transaction",
        Control::Session => "x-purser-session",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_separator_and_case_is_the_same_name() {
        for name in [
            "payment-signature",
            "PAYMENT_SIGNATURE",
            "Payment.Signature",
            "payment_signature",
            "PAYMENT~SIGNATURE",
        ] {
            assert_eq!(role(name), Some(Role::Payment(PaymentHeader::V2)), "{name}");
        }
        assert_eq!(role("X_PAYMENT"), Some(Role::Payment(PaymentHeader::V1)));
        assert_eq!(role("x_payment_response"), Some(Role::Receipt));
        assert_eq!(
            role("X_Purser_Transaction"),
            Some(Role::Control(Control::Transaction))
        );
        assert_eq!(role("HTTP2_Settings"), Some(Role::Http2Settings));
        assert_eq!(role("Payment_Authorization"), Some(Role::Authorization));
        assert_eq!(role("PAYMENT-RECEIPT"), Some(Role::MppReceipt));
        for other in [
            "x-paymentx",
            "paymentsignature",
            "content-type",
            "x-pay",
            "",
        ] {
            assert_eq!(role(other), None, "{other}");
        }
        assert_eq!(canonical("X_Purser.Phase"), "x-purser-phase");
    }
}
