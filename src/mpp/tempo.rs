//! Tempo transactions as a `tempo` charge credential carries them (`payload.signature`:
//! `0x76 || rlp([...])` signed by the sender, or the `0x78` fee-payer envelope), read far
//! enough to see what they move: the chain, the calls, `valid_before`, and (for `0x78`)
//! the sender.
//!
//! Field layout (pytempo `TempoTransaction.encode`, mpp `fee_payer_envelope`):
//! `[chainId, maxPriorityFeePerGas, maxFeePerGas, gasLimit, calls, accessList, nonceKey,
//! nonce, validBefore, validAfter, feeToken, feePayerSignature | senderAddress,
//! authorizationList, keyAuthorization?, signature]`, each call `[to, value, data]`.
//!
//! A payment call is a TIP-20 `transfer(address,uint256)` (`0xa9059cbb`) or
//! `transferWithMemo(address,uint256,bytes32)` (`0x95777d59`) on the token, with no
//! native value ([`Transaction::transfers`]). Any other call (a swap, an approval) is
//! refused: Purser could not say what it costs. RLP is read canonically (shortest
//! lengths, no leading zeros), as Tempo nodes read it, and never past its bounds.

use super::error::MppError;
use sha2::{Digest, Sha256};

/// Sender-signed Tempo transaction type.
pub const TEMPO_TX: u8 = 0x76;
/// Fee-payer envelope: a sender-signed transaction handed to the merchant to co-sign.
pub const FEE_PAYER_ENVELOPE: u8 = 0x78;

const TRANSFER: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];
const TRANSFER_WITH_MEMO: [u8; 4] = [0x95, 0x77, 0x7d, 0x59];
/// Calls read from one transaction: pympp allows a transfer and ten splits.
const MAX_CALLS: usize = 16;

/// One call of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The contract called.
    pub to: [u8; 20],
    /// Native value sent with the call (big-endian, no leading zeros).
    pub value: Vec<u8>,
    /// The call data.
    pub data: Vec<u8>,
}

/// A TIP-20 transfer a transaction makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// The token contract.
    pub token: [u8; 20],
    /// The recipient.
    pub to: [u8; 20],
    /// Base units.
    pub amount: u128,
    /// `transferWithMemo`'s memo.
    pub memo: Option<[u8; 32]>,
}

/// What a transaction moves, and what identifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// [`TEMPO_TX`] or [`FEE_PAYER_ENVELOPE`].
    pub kind: u8,
    /// The chain it is signed for.
    pub chain_id: u64,
    /// Its calls, in order.
    pub calls: Vec<Call>,
    /// Unix time after which it cannot be included, if set.
    pub valid_before: Option<u64>,
    /// The sender, when the envelope names it (`0x78`).
    pub sender: Option<[u8; 20]>,
    /// SHA-256 of the type and every field but the final signature: the same
    /// transaction however its signature is spelled (a recovery id as 0/1 or 27/28).
    pub content_digest: [u8; 32],
}

fn malformed(what: &str) -> MppError {
    MppError::WrongShape(format!("the Tempo transaction is malformed: {what}"))
}

/// Reads a signed Tempo transaction from its bytes.
pub fn read_transaction(bytes: &[u8]) -> Result<Transaction, MppError> {
    let (&kind, body) = bytes.split_first().ok_or_else(|| malformed("empty"))?;
    if kind != TEMPO_TX && kind != FEE_PAYER_ENVELOPE {
        return Err(MppError::Unsupported(format!(
            "a Tempo transaction of type 0x{kind:02x} is not governed (Purser reads 0x76 \
             and the 0x78 fee-payer envelope)"
        )));
    }
    let (list, rest) = item(body)?;
    let Item::List(payload) = list else {
        return Err(malformed("not an RLP list"));
    };
    if !rest.is_empty() {
        return Err(malformed("bytes after the transaction"));
    }
    let fields = list_items(payload, 20)?;
    if fields.len() < 14 {
        return Err(malformed("too few fields"));
    }
    refuse_authorizations(&fields)?;
    let calls = list_items(fields[4].0.list()?, MAX_CALLS + 1)?
        .iter()
        .map(|(call, _)| read_call(call))
        .collect::<Result<Vec<_>, _>>()?;
    if calls.len() > MAX_CALLS {
        return Err(malformed("too many calls"));
    }
    let sender = if kind == FEE_PAYER_ENVELOPE {
        Some(address(fields[11].0.bytes()?)?)
    } else {
        None
    };
    let signed_part = fields.len() - 1;
    let mut hasher = Sha256::new();
    hasher.update([kind]);
    for (_, raw) in &fields[..signed_part] {
        hasher.update(raw);
    }
    Ok(Transaction {
        kind,
        chain_id: u64::try_from(uint(fields[0].0.bytes()?, 8)?)
            .map_err(|_| malformed("chain id"))?,
        calls,
        valid_before: match fields[8].0.bytes()? {
            [] => None,
            bytes => Some(u64::try_from(uint(bytes, 8)?).map_err(|_| malformed("validBefore"))?),
        },
        sender,
        content_digest: hasher.finalize().into(),
    })
}

/// Refuses a transaction that delegates the account (a non-empty `authorizationList`,
/// EIP-7702) or grants a spending key (a non-empty `keyAuthorization`): whoever broadcasts
/// it could spend again later with no decision, so only a plain transfer is governed.
fn refuse_authorizations(fields: &[(Item<'_>, &[u8])]) -> Result<(), MppError> {
    let empty = |item: &Item<'_>| match item {
        Item::List(payload) | Item::Bytes(payload) => payload.is_empty(),
    };
    if !empty(&fields[12].0) {
        return Err(MppError::Unsupported(
            "this Tempo transaction carries an authorizationList (an account delegation): \
             Purser governs only plain transfers"
                .into(),
        ));
    }
    // With a key authorization the fields are 15: it sits before the signature.
    if fields.len() > 14 && !empty(&fields[13].0) {
        return Err(MppError::Unsupported(
            "this Tempo transaction carries a keyAuthorization (a spending key for the \
             account): Purser governs only plain transfers"
                .into(),
        ));
    }
    Ok(())
}

impl Transaction {
    /// Every call as a TIP-20 transfer; an error names the first call that is not one.
    pub fn transfers(&self) -> Result<Vec<Transfer>, MppError> {
        self.calls.iter().map(transfer).collect()
    }
}

fn transfer(call: &Call) -> Result<Transfer, MppError> {
    let not_a_transfer = || {
        MppError::Unsupported(
            "the Tempo transaction makes a call other than a TIP-20 transfer (a swap or an \
             approval, say); Purser cannot say what it costs, so it is not governed"
                .into(),
        )
    };
    if !call.value.is_empty() {
        return Err(not_a_transfer());
    }
    let (selector, args) = call.data.split_at_checked(4).ok_or_else(not_a_transfer)?;
    let memo = match (selector, args.len()) {
        (s, 64) if s == TRANSFER => None,
        (s, 96) if s == TRANSFER_WITH_MEMO => {
            let mut memo = [0u8; 32];
            memo.copy_from_slice(&args[64..96]);
            Some(memo)
        }
        _ => return Err(not_a_transfer()),
    };
    let (to_word, amount_word) = (&args[..32], &args[32..64]);
    if to_word[..12].iter().any(|b| *b != 0) {
        return Err(malformed("a transfer's recipient is not an address"));
    }
    if amount_word[..16].iter().any(|b| *b != 0) {
        return Err(MppError::BadAmount(
            "a Tempo transfer of more than 2^128 base units".into(),
        ));
    }
    let mut to = [0u8; 20];
    to.copy_from_slice(&to_word[12..]);
    let mut amount = [0u8; 16];
    amount.copy_from_slice(&amount_word[16..]);
    Ok(Transfer {
        token: call.to,
        to,
        amount: u128::from_be_bytes(amount),
        memo,
    })
}

fn read_call(item: &Item<'_>) -> Result<Call, MppError> {
    let fields = list_items(item.list()?, 4)?;
    let [(to, _), (value, _), (data, _)] = fields.as_slice() else {
        return Err(malformed("a call is not [to, value, data]"));
    };
    uint(value.bytes()?, 32)?;
    Ok(Call {
        to: address(to.bytes()?)?,
        value: value.bytes()?.to_vec(),
        data: data.bytes()?.to_vec(),
    })
}

fn address(bytes: &[u8]) -> Result<[u8; 20], MppError> {
    bytes
        .try_into()
        .map_err(|_| malformed("an address is not 20 bytes"))
}

/// An RLP integer of at most `width` bytes (no leading zero), as a u128 when it fits.
fn uint(bytes: &[u8], width: usize) -> Result<u128, MppError> {
    if bytes.len() > width || bytes.first() == Some(&0) {
        return Err(malformed("an integer is too wide or has a leading zero"));
    }
    if bytes.len() > 16 {
        return Ok(u128::MAX);
    }
    Ok(bytes.iter().fold(0u128, |n, b| n << 8 | u128::from(*b)))
}

/// One RLP item.
#[derive(Clone, Copy, Debug)]
enum Item<'a> {
    Bytes(&'a [u8]),
    /// The list's payload (its items, still encoded).
    List(&'a [u8]),
}

impl<'a> Item<'a> {
    fn bytes(&self) -> Result<&'a [u8], MppError> {
        match self {
            Item::Bytes(bytes) => Ok(bytes),
            Item::List(_) => Err(malformed("a list where a string belongs")),
        }
    }

    fn list(&self) -> Result<&'a [u8], MppError> {
        match self {
            Item::List(payload) => Ok(payload),
            Item::Bytes(_) => Err(malformed("a string where a list belongs")),
        }
    }
}

/// The items of a list payload with their encoded bytes, at most `max` of them.
fn list_items(mut payload: &[u8], max: usize) -> Result<Vec<(Item<'_>, &[u8])>, MppError> {
    let mut items = Vec::new();
    while !payload.is_empty() {
        if items.len() >= max {
            return Err(malformed("a list is longer than Purser reads"));
        }
        let (found, rest) = item(payload)?;
        items.push((found, &payload[..payload.len() - rest.len()]));
        payload = rest;
    }
    Ok(items)
}

/// The first item of `input` and what follows it.
fn item(input: &[u8]) -> Result<(Item<'_>, &[u8]), MppError> {
    let (&prefix, rest) = input.split_first().ok_or_else(|| malformed("truncated"))?;
    let (is_list, header, length) = match prefix {
        0x00..=0x7f => return Ok((Item::Bytes(&input[..1]), rest)),
        0x80..=0xb7 => (false, 0, usize::from(prefix - 0x80)),
        0xb8..=0xbf => (false, usize::from(prefix - 0xb7), 0),
        0xc0..=0xf7 => (true, 0, usize::from(prefix - 0xc0)),
        0xf8..=0xff => (true, usize::from(prefix - 0xf7), 0),
    };
    let (length, rest) = if header == 0 {
        (length, rest)
    } else {
        let digits = rest.get(..header).ok_or_else(|| malformed("truncated"))?;
        if digits[0] == 0 {
            return Err(malformed("a length with a leading zero"));
        }
        let long = digits
            .iter()
            .try_fold(0usize, |n, b| {
                n.checked_mul(256).map(|n| n | usize::from(*b))
            })
            .ok_or_else(|| malformed("a length too large"))?;
        if long < 56 {
            return Err(malformed("a long-form length under 56"));
        }
        (long, &rest[header..])
    };
    let body = rest.get(..length).ok_or_else(|| malformed("truncated"))?;
    if is_list {
        return Ok((Item::List(body), &rest[length..]));
    }
    if length == 1 && body[0] < 0x80 {
        return Err(malformed("a single byte below 0x80 written as a string"));
    }
    Ok((Item::Bytes(body), &rest[length..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpp::canonical::hex_bytes;

    /// The transaction pympp 0.16.0 signed for the tempo charge capture
    /// (`tests/data/captures/mpp/mpp_http_tempo_charge.json`).
    const CAPTURED: &str = "0x76f9011682a5bf8504a817c8008504a817c800830f4240f87ef87c9420c0000000000000000000006a37da5c996874be80b86495777d59000000000000000000000000209693bc6afc0c5328ba36faf03c514ef312287c0000000000000000000000000000000000000000000000000000000000002710ef1ed7120125f1971519a50f0a961200000000000000000000690c9caca5a038c0a0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff80846b15ed57809420c000000000000000000000000000000000000080c0b841e3d931653b6b81dc88e816efd830e72ec2911fb564ad1bccfb53cbb033609e8b5dba3d39c36ad8ff91c2ba64cbcc64c539447e955eb99c6fa8653b894d3ee6ae1b";

    #[test]
    fn the_captured_transaction_pays_one_transfer_with_memo() {
        let tx = read_transaction(&hex_bytes(CAPTURED).unwrap()).unwrap();
        assert_eq!(tx.kind, TEMPO_TX);
        assert_eq!(tx.chain_id, 42431);
        assert_eq!(tx.valid_before, Some(0x6b15ed57));
        let transfers = tx.transfers().unwrap();
        assert_eq!(transfers.len(), 1);
        assert_eq!(
            hex_bytes("0x20c0000000000000000000006a37da5c996874be").unwrap(),
            transfers[0].token
        );
        assert_eq!(
            hex_bytes("0x209693bc6afc0c5328ba36faf03c514ef312287c").unwrap(),
            transfers[0].to
        );
        assert_eq!(transfers[0].amount, 10_000);
        assert!(transfers[0].memo.is_some());
    }

    #[test]
    fn the_content_digest_ignores_how_the_signature_is_spelled() {
        let original = hex_bytes(CAPTURED).unwrap();
        let mut respelled = original.clone();
        let last = respelled.len() - 1;
        respelled[last] = 0x00; // recovery id 0 instead of 27
        let a = read_transaction(&original).unwrap();
        let b = read_transaction(&respelled).unwrap();
        assert_eq!(a.content_digest, b.content_digest);
    }

    #[test]
    fn a_delegation_or_a_spending_key_is_refused_however_exact_the_transfer() {
        // The captured transaction ends `…80 c0 b841<signature>`: no fee payer, an empty
        // authorizationList, the signature. Its list header is `f9 0116`.
        assert!(CAPTURED.contains("f90116") && CAPTURED.contains("80c0b841"));
        let with = |from: &str, header: &str| {
            let text = CAPTURED
                .replacen("f90116", header, 1)
                .replacen("80c0b841", from, 1);
            read_transaction(&hex_bytes(&text).unwrap())
        };
        // An authorizationList holding one (empty) entry: one byte longer.
        let delegated = with("80c180b841", "f90117");
        assert!(
            matches!(&delegated, Err(MppError::Unsupported(why)) if why.contains("authorizationList")),
            "{delegated:?}"
        );
        // A keyAuthorization before the signature: two bytes longer.
        let keyed = with("80c0c180b841", "f90118");
        assert!(
            matches!(&keyed, Err(MppError::Unsupported(why)) if why.contains("keyAuthorization")),
            "{keyed:?}"
        );
        // An empty keyAuthorization grants nothing.
        assert!(with("80c080b841", "f90117").is_ok());
    }

    #[test]
    fn truncated_or_non_canonical_bytes_are_errors_never_panics() {
        let original = hex_bytes(CAPTURED).unwrap();
        for cut in 0..original.len() {
            assert!(read_transaction(&original[..cut]).is_err(), "cut at {cut}");
        }
        for bad in [
            &[0x76, 0x81, 0x05][..],
            &[0x76, 0xb8, 0x01, 0x00],
            &[0x76, 0xc1, 0x80, 0x00],
            &[0x77, 0xc0],
            &[0x76, 0xf9, 0x00, 0x01, 0x80],
        ] {
            assert!(read_transaction(bad).is_err(), "{bad:?}");
        }
        // Every single-byte change reads or is refused; none panics.
        for at in 0..original.len() {
            let mut changed = original.clone();
            changed[at] ^= 0x5a;
            let _ = read_transaction(&changed).map(|tx| tx.transfers());
        }
    }
}
