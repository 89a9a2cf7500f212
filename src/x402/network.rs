//! Network names: x402 v1's short names and v2's CAIP-2 ids, mapped to one CAIP-2 form.
//!
//! The v1 names and chain ids are the official Python SDK's (`mechanisms/evm/v1/constants.py`
//! `V1_NETWORK_CHAIN_IDS` and `NETWORK_ALIASES`; `mechanisms/svm/constants.py`
//! `V1_TO_V2_NETWORK_MAP`). Names are matched exactly, as the SDKs match them.

/// CAIP-2 id of Solana mainnet (the genesis hash prefix).
pub const SOLANA_MAINNET: &str = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp";
/// CAIP-2 id of Solana devnet.
pub const SOLANA_DEVNET: &str = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";
/// CAIP-2 id of Solana testnet.
pub const SOLANA_TESTNET: &str = "solana:4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z";

/// v1 network names and their CAIP-2 ids.
const V1_NAMES: &[(&str, &str)] = &[
    ("base", "eip155:8453"),
    ("base-mainnet", "eip155:8453"),
    ("base-sepolia", "eip155:84532"),
    ("ethereum", "eip155:1"),
    ("mainnet", "eip155:1"),
    ("polygon", "eip155:137"),
    ("polygon-amoy", "eip155:80002"),
    ("avalanche", "eip155:43114"),
    ("avalanche-fuji", "eip155:43113"),
    ("abstract", "eip155:2741"),
    ("abstract-testnet", "eip155:11124"),
    ("iotex", "eip155:4689"),
    ("sei", "eip155:1329"),
    // The Python SDK says 713715; the early TypeScript SDK said 1328. Python is the
    // reference the vectors come from.
    ("sei-testnet", "eip155:713715"),
    ("peaq", "eip155:3338"),
    ("story", "eip155:1513"),
    ("educhain", "eip155:656476"),
    ("skale-base-sepolia", "eip155:1444673419"),
    ("megaeth", "eip155:4326"),
    ("monad", "eip155:143"),
    ("stable", "eip155:988"),
    ("stable-testnet", "eip155:2201"),
    ("solana", SOLANA_MAINNET),
    ("solana-devnet", SOLANA_DEVNET),
    ("solana-testnet", SOLANA_TESTNET),
];

/// The CAIP-2 id for a v1 name or a CAIP-2 id; `None` for anything else.
///
/// Any well-formed CAIP-2 id is accepted as it is, known chain or not: whether Purser can
/// price a payment there is the asset table's question, not this one's.
pub fn canonical_network(name: &str) -> Option<String> {
    if let Some((_, id)) = V1_NAMES.iter().find(|(v1, _)| *v1 == name) {
        return Some((*id).to_string());
    }
    is_caip2(name).then(|| name.to_string())
}

/// The CAIP-2 namespace of a network (`eip155`, `solana`), if it has a known form.
pub fn namespace(name: &str) -> Option<String> {
    let id = canonical_network(name)?;
    id.split_once(':').map(|(ns, _)| ns.to_string())
}

/// CAIP-2: `namespace:reference`, namespace `[-a-z0-9]{3,8}`, reference
/// `[-_a-zA-Z0-9]{1,32}`.
fn is_caip2(name: &str) -> bool {
    let Some((namespace, reference)) = name.split_once(':') else {
        return false;
    };
    let namespace_ok = (3..=8).contains(&namespace.len())
        && namespace
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let reference_ok = (1..=32).contains(&reference.len())
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    namespace_ok && reference_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_names_and_caip2_ids_meet() {
        assert_eq!(canonical_network("base").as_deref(), Some("eip155:8453"));
        assert_eq!(
            canonical_network("base-sepolia").as_deref(),
            Some("eip155:84532")
        );
        assert_eq!(canonical_network("solana").as_deref(), Some(SOLANA_MAINNET));
        assert_eq!(
            canonical_network("eip155:84532").as_deref(),
            Some("eip155:84532")
        );
        assert_eq!(
            canonical_network("solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1").as_deref(),
            Some(SOLANA_DEVNET)
        );
        assert_eq!(namespace("base").as_deref(), Some("eip155"));
    }

    #[test]
    fn unknown_names_and_malformed_ids_are_refused() {
        for bad in [
            "",
            "Base",
            "base-goerli",
            "eip155",
            "eip155:",
            ":8453",
            "EIP155:1",
            "ei:1",
            "eip155:84 32",
            "eip155:1:2",
        ] {
            assert_eq!(canonical_network(bad), None, "{bad:?}");
        }
        let long = format!("eip155:{}", "1".repeat(33));
        assert_eq!(canonical_network(&long), None);
    }
}
