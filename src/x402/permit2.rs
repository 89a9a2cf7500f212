//! Permit2 as x402 uses it: the contracts, and which spender a Permit2 signature must name
//! for the scheme it pays.
//!
//! A Permit2 signature lets its `spender` pull up to `permitted.amount` of the token from
//! the payer. The recipient in the `witness` binds the money only because the x402 proxy
//! contracts (the spenders the SDKs sign for) enforce it; any other spender could send
//! the permitted amount anywhere. So a Permit2 payment whose spender is not the x402
//! proxy of its scheme does not pay the recipient Purser would judge, and is refused.
//!
//! Addresses: x402 2.25.0 `mechanisms/evm/constants.py` (the same on every chain, deployed
//! with CREATE2); the captures under `tests/data/captures/x402/` sign for them.

use super::address::same_address;

/// Uniswap's Permit2 contract, which keeps the nonce bitmap of every Permit2 signature.
pub const PERMIT2: &str = "0x000000000022D473030F116dDEE9F6B43aC78BA3";
/// The x402 proxy an `exact` Permit2 payment is signed to (`x402ExactPermit2Proxy`).
pub const EXACT_PROXY: &str = "0x402085c248EeA27D92E8b30b2C58ed07f9E20001";
/// The x402 proxy an `upto` payment is signed to (`x402UptoPermit2Proxy`).
pub const UPTO_PROXY: &str = "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002";

/// The spender a Permit2 payment of `scheme` must name; `None` for a scheme that has none.
pub fn expected_spender(scheme: &str) -> Option<&'static str> {
    match scheme {
        "exact" => Some(EXACT_PROXY),
        "upto" => Some(UPTO_PROXY),
        _ => None,
    }
}

/// Why `spender` cannot be trusted to pay the witness's recipient for `scheme`, or
/// `None` when it is that scheme's x402 proxy (compared case-insensitively: the SDKs
/// re-checksum addresses).
pub fn spender_problem(scheme: &str, spender: &str) -> Option<String> {
    let expected = expected_spender(scheme)?;
    if same_address(spender, expected) {
        return None;
    }
    Some(format!(
        "the Permit2 signature names spender {}, not the x402 {scheme} proxy {expected}: \
         another spender is not bound to pay the signed recipient",
        super::error::excerpt(spender)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scheme_has_its_proxy_in_any_case() {
        assert_eq!(spender_problem("exact", EXACT_PROXY), None);
        assert_eq!(
            spender_problem("exact", &EXACT_PROXY.to_ascii_lowercase()),
            None
        );
        assert_eq!(spender_problem("upto", UPTO_PROXY), None);
        let crossed = spender_problem("upto", EXACT_PROXY).unwrap();
        assert!(crossed.contains(UPTO_PROXY), "{crossed}");
        assert!(spender_problem("exact", PERMIT2).is_some());
        assert!(spender_problem("exact", "0x1234").is_some());
    }
}
