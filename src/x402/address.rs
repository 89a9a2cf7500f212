//! When two payment addresses are the same account, and the one form an address is kept in
//! (asset table keys, verified recipients, ledger keys, traces).
//!
//! EVM addresses are hex and compare case-insensitively: EIP-55 mixed case is only a
//! checksum over the same 20 bytes. Every other address (a Solana base58 account or mint)
//! is case-SENSITIVE: `EPjF…` and `epjf…` are different accounts, so folding their case
//! could match a payment to a recipient it does not pay.
//!
//! Whitespace is never trimmed here. An address that arrives padded is not the address
//! the merchant asked for, the facilitator may read it differently, and so it must not
//! compare equal to (or be trusted as) the unpadded one: failing to match is the safe
//! side. Text a person wrote (the policy file) is trimmed where it is read.

/// `0x`-prefixed (either case of x) text.
pub(crate) fn is_hex_address(text: &str) -> bool {
    text.starts_with("0x") || text.starts_with("0X")
}

/// The form addresses are stored and compared in: `0x` hex lowercased (prefix included),
/// anything else exactly as written.
pub fn normalize_address(address: &str) -> String {
    if is_hex_address(address) {
        address.to_ascii_lowercase()
    } else {
        address.to_string()
    }
}

/// Whether two addresses are the same account: exactly
/// `normalize_address(a) == normalize_address(b)`, without building either.
pub fn same_address(a: &str, b: &str) -> bool {
    if is_hex_address(a) && is_hex_address(b) {
        a.eq_ignore_ascii_case(b)
    } else {
        // Neither hex: the normal forms are the texts. One hex: its form starts `0x` and
        // the other's (its text) starts with neither `0x` nor `0X`, so forms and texts
        // both differ.
        a == b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINT: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
    const CHECKSUMMED: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";

    #[test]
    fn hex_folds_case_and_prefix_base58_does_not() {
        assert_eq!(normalize_address("0XAbC"), "0xabc");
        assert_eq!(
            normalize_address(CHECKSUMMED),
            CHECKSUMMED.to_ascii_lowercase()
        );
        assert_eq!(normalize_address(MINT), MINT);
        assert!(same_address(CHECKSUMMED, &CHECKSUMMED.to_ascii_uppercase()));
        assert!(same_address("0xAB", "0Xab"));
        assert!(!same_address(MINT, &MINT.to_ascii_lowercase()));
        assert!(
            !same_address("ab", "0xab"),
            "a prefix makes a different address"
        );
    }

    /// `policy::normalize_address` used to trim and `x402::same_address` did not, so a
    /// padded payTo was "verified" by the policy yet refused as the challenge's payTo.
    /// Now neither trims: padded text is a different address everywhere.
    #[test]
    fn surrounding_whitespace_is_part_of_the_address() {
        assert_eq!(normalize_address(" 0xAB "), " 0xAB ");
        assert_ne!(normalize_address(" 0xAB"), normalize_address("0xab"));
        assert!(!same_address(" 0xab", "0xab"));
        assert_ne!(normalize_address(&format!("{MINT}\n")), MINT);
        assert!(!same_address(&format!(" {MINT}"), MINT));
    }

    /// The two functions agree on every pair: one notion of "the same address".
    #[test]
    fn same_address_is_equality_of_normal_forms() {
        let samples = [
            "",
            "0x",
            "0X",
            "0xab",
            "0xAB",
            "0Xab",
            "0XAB",
            "ab",
            "AB",
            " 0xab",
            "0xab ",
            "\t0xAB",
            "0xÄb",
            "0xäb",
            "0x0ab",
            MINT,
            " EPjF",
            "epjf",
            "EPJF",
            CHECKSUMMED,
        ];
        for a in samples {
            for b in samples {
                let by_form = normalize_address(a) == normalize_address(b);
                assert_eq!(same_address(a, b), by_form, "{a:?} vs {b:?}");
            }
        }
    }
}
