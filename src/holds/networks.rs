//! Which network a held payment would move money on, as the approver needs to see it:
//! a readable name and whether it is a mainnet (real funds), a testnet, or a network
//! Purser does not know. An unknown network is shown as unknown, never guessed mainnet
//! or testnet: the person deciding must not be told a payment is play money when it
//! may not be.

use crate::x402::network::{canonical_network, SOLANA_DEVNET, SOLANA_MAINNET, SOLANA_TESTNET};
use serde::Serialize;

/// Whether a network moves real funds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkKind {
    Mainnet,
    Testnet,
    Unknown,
}

/// Networks whose kind is known, by CAIP-2 id. The chain ids are the x402 SDKs' (see
/// `crate::x402::network`) plus the common EVM chains' own testnets.
const KNOWN: &[(&str, &str, NetworkKind)] = &[
    ("eip155:1", "Ethereum", NetworkKind::Mainnet),
    ("eip155:11155111", "Ethereum Sepolia", NetworkKind::Testnet),
    ("eip155:8453", "Base", NetworkKind::Mainnet),
    ("eip155:84532", "Base Sepolia", NetworkKind::Testnet),
    ("eip155:10", "Optimism", NetworkKind::Mainnet),
    ("eip155:11155420", "Optimism Sepolia", NetworkKind::Testnet),
    ("eip155:42161", "Arbitrum One", NetworkKind::Mainnet),
    ("eip155:421614", "Arbitrum Sepolia", NetworkKind::Testnet),
    ("eip155:137", "Polygon", NetworkKind::Mainnet),
    ("eip155:80002", "Polygon Amoy", NetworkKind::Testnet),
    ("eip155:43114", "Avalanche C-Chain", NetworkKind::Mainnet),
    ("eip155:43113", "Avalanche Fuji", NetworkKind::Testnet),
    ("eip155:2741", "Abstract", NetworkKind::Mainnet),
    ("eip155:11124", "Abstract Testnet", NetworkKind::Testnet),
    ("eip155:4689", "IoTeX", NetworkKind::Mainnet),
    ("eip155:1329", "Sei", NetworkKind::Mainnet),
    ("eip155:1328", "Sei Testnet", NetworkKind::Testnet),
    ("eip155:713715", "Sei Devnet", NetworkKind::Testnet),
    ("eip155:3338", "peaq", NetworkKind::Mainnet),
    ("eip155:656476", "EDU Chain Testnet", NetworkKind::Testnet),
    (
        "eip155:1444673419",
        "SKALE Base Sepolia",
        NetworkKind::Testnet,
    ),
    ("eip155:143", "Monad", NetworkKind::Mainnet),
    ("eip155:10143", "Monad Testnet", NetworkKind::Testnet),
    ("eip155:988", "Stable", NetworkKind::Mainnet),
    ("eip155:2201", "Stable Testnet", NetworkKind::Testnet),
    (SOLANA_MAINNET, "Solana", NetworkKind::Mainnet),
    (SOLANA_DEVNET, "Solana Devnet", NetworkKind::Testnet),
    (SOLANA_TESTNET, "Solana Testnet", NetworkKind::Testnet),
];

/// A network as the console shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NetworkLabel {
    /// The CAIP-2 id, when the name is a v1 name or a well-formed CAIP-2 id.
    pub id: Option<String>,
    /// A readable name, for known networks.
    pub name: Option<&'static str>,
    pub kind: NetworkKind,
}

/// Labels `network` (a v1 name such as `base-sepolia` or a CAIP-2 id).
pub(crate) fn label(network: &str) -> NetworkLabel {
    let id = canonical_network(network);
    let known = id
        .as_deref()
        .and_then(|id| KNOWN.iter().find(|(known, _, _)| *known == id));
    NetworkLabel {
        name: known.map(|(_, name, _)| *name),
        kind: known.map_or(NetworkKind::Unknown, |(_, _, kind)| *kind),
        id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_and_its_testnet_are_told_apart() {
        let base = label("eip155:8453");
        assert_eq!(base.kind, NetworkKind::Mainnet);
        assert_eq!(base.name, Some("Base"));
        let sepolia = label("base-sepolia");
        assert_eq!(sepolia.kind, NetworkKind::Testnet);
        assert_eq!(sepolia.id.as_deref(), Some("eip155:84532"));
        assert_eq!(sepolia.name, Some("Base Sepolia"));
    }

    #[test]
    fn solana_clusters_are_told_apart() {
        assert_eq!(label("solana").kind, NetworkKind::Mainnet);
        assert_eq!(label("solana-devnet").kind, NetworkKind::Testnet);
        assert_eq!(label(SOLANA_TESTNET).kind, NetworkKind::Testnet);
    }

    #[test]
    fn an_unknown_network_is_never_called_mainnet() {
        for unknown in [
            "eip155:999999",
            "cosmos:cosmoshub-4",
            "Base",
            "",
            "base-goerli",
        ] {
            let labelled = label(unknown);
            assert_eq!(labelled.kind, NetworkKind::Unknown, "{unknown:?}");
            assert_eq!(labelled.name, None, "{unknown:?}");
        }
        assert_eq!(
            label("eip155:999999").id.as_deref(),
            Some("eip155:999999"),
            "a well-formed id is still shown"
        );
        assert_eq!(label("Base").id, None);
    }

    #[test]
    fn every_v1_name_the_sdks_use_has_a_kind_that_matches_its_name() {
        for (v1, kind) in [
            ("base", NetworkKind::Mainnet),
            ("ethereum", NetworkKind::Mainnet),
            ("polygon-amoy", NetworkKind::Testnet),
            ("avalanche-fuji", NetworkKind::Testnet),
            ("sei-testnet", NetworkKind::Testnet),
            ("skale-base-sepolia", NetworkKind::Testnet),
            ("stable-testnet", NetworkKind::Testnet),
            ("abstract-testnet", NetworkKind::Testnet),
        ] {
            assert_eq!(label(v1).kind, kind, "{v1}");
        }
    }
}
