//! The asset table (network, asset address → symbol, decimals, USD peg) and pricing.
//!
//! Built-in entries are USDC on the networks x402 merchants use. Addresses are from the
//! official SDKs: Python `mechanisms/evm/constants.py` (`NETWORK_CONFIGS`),
//! `mechanisms/evm/v1/constants.py` (`V1_DEFAULT_ASSETS`), `mechanisms/svm/constants.py`;
//! TypeScript `mechanisms/evm/src/shared/defaultAssets.ts` and the legacy
//! `x402/src/types/shared/evm/config.ts` (Avalanche Fuji). Polygon Amoy's USDC is Circle's
//! testnet deployment (not in the SDK tables). All are 6 decimals.
//!
//! The Machine Payments Protocol's currencies come next ([`BUILTIN_MPP`]): its `evm`
//! method's EIP-3009 tokens beyond those (pympp `methods/evm/assets.py`, mppx
//! `src/x402/Assets.ts`: Celo), the TIP-20 stablecoins its `tempo` method pays in
//! (pympp `methods/tempo/_defaults.py`: the same addresses on Tempo mainnet, chain 4217,
//! and the Moderato testnet, 42431; MACH, a closed-loop credit with no USD peg, is left
//! to the policy), and its `stripe` method's US dollar, in cents, under the network
//! [`STRIPE_NETWORK`].

use super::address::normalize_address;
use super::error::X402Error;
pub use super::network::canonical_network;
use super::network::{SOLANA_DEVNET, SOLANA_MAINNET};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What Purser knows about one asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetInfo {
    /// The ticker written into traces (`USDC`).
    pub symbol: String,
    /// Atomic units per whole token, as a power of ten.
    pub decimals: u32,
    /// USD value of one whole token.
    pub usd_peg: Decimal,
}

/// Assets keyed by canonical CAIP-2 network and normalized address.
#[derive(Debug, Clone, Default)]
pub struct AssetTable {
    entries: HashMap<(String, String), AssetInfo>,
}

/// Built-in USDC deployments: (CAIP-2 network, address).
const BUILTIN_USDC: &[(&str, &str)] = &[
    ("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"), // Base
    ("eip155:84532", "0x036CbD53842c5426634e7929541eC2318f3dCF7e"), // Base Sepolia
    ("eip155:1", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"),    // Ethereum
    ("eip155:137", "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359"),  // Polygon PoS
    ("eip155:80002", "0x41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582"), // Polygon Amoy
    ("eip155:43114", "0xB97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E"), // Avalanche C-Chain
    ("eip155:43113", "0x5425890298aed601595a70AB815c96711a31Bc65"), // Avalanche Fuji
    ("eip155:42161", "0xaf88d065e77c8cC2239327C5EDb3A432268e5831"), // Arbitrum One
    (
        "eip155:421614",
        "0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d",
    ), // Arbitrum Sepolia
    (
        SOLANA_MAINNET,
        "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
    ),
    (
        SOLANA_DEVNET,
        "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
    ),
];

/// The network Purser files fiat currencies paid through Stripe under (MPP's `stripe`
/// method): the asset is the ISO 4217 code in lower case (`usd`), in minor units.
pub const STRIPE_NETWORK: &str = "fiat:stripe";

/// Built-in MPP currencies: (CAIP-2 network, asset, symbol, decimals), each pegged at
/// 1.00 USD.
const BUILTIN_MPP: &[(&str, &str, &str, u32)] = &[
    (
        "eip155:42220",
        "0xcebA9300f2b948710d2653dD7B07f33A8B32118C",
        "USDC",
        6,
    ), // Celo
    (
        "eip155:42220",
        "0x48065fbBE25f71C9282ddf5e1cD6D6A887483D5e",
        "USDT",
        6,
    ), // Celo
    (
        "eip155:11142220",
        "0x01C5C0122039549AD1493B8220cABEdD739BC44E",
        "USDC",
        6,
    ), // Celo Sepolia
    (
        "eip155:4217",
        "0x20c0000000000000000000000000000000000000",
        "pathUSD",
        6,
    ), // Tempo
    (
        "eip155:4217",
        "0x20C000000000000000000000b9537d11c60E8b50",
        "USDC.e",
        6,
    ),
    (
        "eip155:4217",
        "0x20c0000000000000000000006a37DA5C996874BE",
        "OUSD",
        6,
    ),
    (
        "eip155:42431",
        "0x20c0000000000000000000000000000000000000",
        "pathUSD",
        6,
    ), // Moderato
    (
        "eip155:42431",
        "0x20C000000000000000000000b9537d11c60E8b50",
        "USDC.e",
        6,
    ),
    (
        "eip155:42431",
        "0x20c0000000000000000000006a37DA5C996874BE",
        "OUSD",
        6,
    ),
    (STRIPE_NETWORK, "usd", "USD", 2),
];

impl AssetTable {
    /// An empty table (policies normally start from [`AssetTable::builtin`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The table Purser ships with: USDC, 6 decimals, pegged at 1.00 USD, and MPP's
    /// stablecoins and US dollar.
    pub fn builtin() -> Self {
        let usdc = AssetInfo {
            symbol: "USDC".into(),
            decimals: 6,
            usd_peg: Decimal::new(100, 2),
        };
        let mut entries: HashMap<(String, String), AssetInfo> = BUILTIN_USDC
            .iter()
            .map(|(network, asset)| {
                let key = ((*network).to_string(), normalize_address(asset));
                (key, usdc.clone())
            })
            .collect();
        for (network, asset, symbol, decimals) in BUILTIN_MPP {
            let info = AssetInfo {
                symbol: (*symbol).into(),
                decimals: *decimals,
                usd_peg: Decimal::new(100, 2),
            };
            entries.insert(((*network).to_string(), normalize_address(asset)), info);
        }
        AssetTable { entries }
    }

    /// Adds or replaces an asset; the policy's `assets` section uses this.
    pub fn insert(&mut self, network: &str, asset: &str, info: AssetInfo) -> Result<(), X402Error> {
        let network_id = canonical_network(network)
            .ok_or_else(|| X402Error::UnknownNetwork(network.to_string()))?;
        if asset.trim().is_empty() || asset.trim() != asset {
            return Err(X402Error::WrongShape(format!(
                "asset address {asset:?} must be non-empty and have no surrounding spaces"
            )));
        }
        if info.decimals > Decimal::MAX_SCALE {
            return Err(X402Error::WrongShape(format!(
                "{} decimals for {asset} is more than the {} Purser can price exactly",
                info.decimals,
                Decimal::MAX_SCALE
            )));
        }
        if info.usd_peg.is_sign_negative() {
            return Err(X402Error::BadAmount(format!(
                "USD peg {} for {asset} is negative",
                info.usd_peg
            )));
        }
        self.entries
            .insert((network_id, normalize_address(asset)), info);
        Ok(())
    }

    /// The asset's info; `network` may be a v1 name or a CAIP-2 id.
    pub fn lookup(&self, network: &str, asset: &str) -> Result<&AssetInfo, X402Error> {
        let network_id = canonical_network(network)
            .ok_or_else(|| X402Error::UnknownNetwork(network.to_string()))?;
        self.entries
            .get(&(network_id, normalize_address(asset)))
            .ok_or_else(|| X402Error::UnknownAsset {
                network: network.to_string(),
                asset: asset.to_string(),
            })
    }

    /// Every entry as (CAIP-2 network, normalized address, info), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &AssetInfo)> {
        self.entries
            .iter()
            .map(|((network, asset), info)| (network.as_str(), asset.as_str(), info))
    }
}

/// An amount in atomic units, in whole tokens, and in USD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    /// The amount in the asset's atomic units, as the wire gives it.
    pub atomic: u128,
    /// `atomic / 10^decimals`, exact.
    pub amount: Decimal,
    /// The asset's ticker (`USDC`).
    pub symbol: String,
    /// `amount * usd_peg` (exact unless it needs more than 28 decimal places).
    pub usd: Decimal,
}

/// The largest payment priced, in USD or asset units: $10^15, far beyond any real
/// payment, and small enough that budget sums (`rust_decimal` tops out near 7.9·10^28)
/// can never overflow, so the ledger's arithmetic cannot panic on a hostile amount.
pub fn max_payment_usd() -> Decimal {
    Decimal::from(1_000_000_000_000_000u64)
}

/// Prices `atomic` units of `asset` on `network` with exact decimal arithmetic.
pub fn price(
    table: &AssetTable,
    network: &str,
    asset: &str,
    atomic: u128,
) -> Result<Price, X402Error> {
    let info = table.lookup(network, asset)?;
    let too_big = || X402Error::BadAmount(format!("{atomic} atomic units is too large to price"));
    let mantissa = i128::try_from(atomic).map_err(|_| too_big())?;
    let amount =
        Decimal::try_from_i128_with_scale(mantissa, info.decimals).map_err(|_| too_big())?;
    let usd = amount.checked_mul(info.usd_peg).ok_or_else(too_big)?;
    if usd > max_payment_usd() || amount > max_payment_usd() {
        return Err(too_big());
    }
    Ok(Price {
        atomic,
        amount: amount.normalize(),
        symbol: info.symbol.clone(),
        usd: usd.normalize(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpp_currencies_price_in_their_own_decimals() {
        let table = AssetTable::builtin();
        for network in ["eip155:4217", "eip155:42431"] {
            let path_usd = "0x20c0000000000000000000000000000000000000";
            let priced = price(&table, network, path_usd, 10_000).unwrap();
            assert_eq!(
                (priced.symbol.as_str(), priced.usd),
                ("pathUSD", Decimal::new(1, 2))
            );
            let ousd = "0x20C0000000000000000000006A37DA5C996874BE";
            assert_eq!(
                price(&table, network, ousd, 250_000).unwrap().usd,
                Decimal::new(25, 2)
            );
        }
        let cents = price(&table, STRIPE_NETWORK, "usd", 50).unwrap();
        assert_eq!(
            (cents.symbol.as_str(), cents.usd),
            ("USD", Decimal::new(50, 2))
        );
        // MACH is a closed-loop credit without a USD peg: the policy must name its value.
        let mach = "0x20c000000000000000000000f37de3740ADec032";
        assert!(price(&table, "eip155:4217", mach, 1).is_err());
        assert!(
            price(&table, STRIPE_NETWORK, "USD", 1).is_err(),
            "codes are lower case"
        );
    }
}
