//! Chain reconciliation: on a timer, off the decision path, payments whose outcome is
//! `unknown` are looked up on their chain, where the policy names a node for it
//! (`chains.rpc`), and resolved the way an operator resolves them
//! (`settle::resolve_unknown`: the `resolution` line is on disk before the budget moves).
//!
//! What is asked: whether the signed authorization's nonce was used. EIP-3009 asks the
//! token's `authorizationState(payer, nonce)`; Permit2 asks Permit2's
//! `nonceBitmap(payer, nonce >> 8)` (see [`crate::chain_rpc::abi`]).
//!
//! * **Used: committed.** The nonce can be used once, and only by this authorization,
//!   which names its recipient and amount (a Permit2 one through the x402 proxy Purser
//!   checked it names). "Used" also covers a payer who *cancelled* it
//!   (`cancelAuthorization`, `invalidateUnorderedNonces`): no money moved then, but the
//!   authorization can never move any, and the budget keeps counting it, the safe side
//!   (telling the two apart needs the transaction's logs). An `upto` payment commits its
//!   signed maximum: the chain state does not say how much of it was charged.
//! * **Unused, and past its `validBefore` / `deadline` by `chains.expiry_margin`:
//!   released.** It can never be used.
//! * **Unused and still valid: unknown**, looked at again later.
//!
//! A payment is looked at again after `every`, then twice as long each time it is still
//! undecided or its call fails (an unreachable node, an error, an answer that does not
//! read), up to `max_backoff`; one about to expire is looked at right after. Each check
//! asks at most `per_check` payments, oldest first, each call bounded by `timeout`. Calls
//! that fail are logged (`tracing`), resolutions are proof-log lines.

use super::context::Shared;
use super::settle::{resolve_unknown, ResolveError};
use crate::chain_rpc::{abi, EthCall, RpcError, SharedChainRpc};
use crate::policy::ChainSettings;
use crate::x402::{ChainAuthorization, TransferMethod};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Who resolutions name.
const BY: &str = "chain reconciliation";

/// Starts the timer; it runs as long as the runtime does.
pub(super) fn start(shared: Arc<Shared>, rpc: SharedChainRpc) {
    tokio::spawn(async move {
        let mut schedule = Schedule::default();
        loop {
            let settings = shared.policy.current().chains.clone();
            tokio::time::sleep(settings.every).await;
            if !settings.rpc.is_empty() {
                check(&shared, &rpc, &settings, &mut schedule).await;
            }
        }
    });
}

/// When each unknown payment is next looked at, by its decision's trace id.
#[derive(Default)]
struct Schedule {
    next: HashMap<String, Next>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Next {
    at: Instant,
    /// Looks that did not decide it, in a row.
    misses: u32,
}

impl Schedule {
    fn due(&self, id: &str, now: Instant) -> bool {
        self.next.get(id).is_none_or(|next| next.at <= now)
    }

    /// The payment was looked at and stays unknown: wait `every`, doubled per miss, up to
    /// `max_backoff`, and no later than `deadline` (when it would expire).
    fn missed(
        &mut self,
        id: &str,
        now: Instant,
        settings: &ChainSettings,
        deadline: Option<Instant>,
    ) {
        let misses = self.next.get(id).map_or(0, |n| n.misses).saturating_add(1);
        let wait = backoff(settings.every, settings.max_backoff, misses);
        let at = deadline.map_or(now + wait, |deadline| (now + wait).min(deadline));
        self.next.insert(id.to_string(), Next { at, misses });
    }

    /// Keeps only the payments still unknown.
    fn retain(&mut self, unknown: &[String]) {
        self.next.retain(|id, _| unknown.contains(id));
    }
}

/// `every` × 2^(misses-1), at most `max`.
fn backoff(every: Duration, max: Duration, misses: u32) -> Duration {
    let factor = 1u32 << misses.saturating_sub(1).min(20);
    every.saturating_mul(factor).min(max)
}

/// What the chain said about one payment.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Used,
    Expired,
    NotYet,
}

/// One check: the due payments, oldest first, at most `per_check` of them.
async fn check(
    shared: &Shared,
    rpc: &SharedChainRpc,
    settings: &ChainSettings,
    schedule: &mut Schedule,
) {
    let unknown = shared.store.unknown_payments().await;
    let ids: Vec<String> = unknown.iter().map(|(_, view)| view.id.clone()).collect();
    schedule.retain(&ids);
    let now = Instant::now();
    let due: Vec<(String, ChainAuthorization, http::Uri)> = unknown
        .into_iter()
        .filter(|(_, view)| !view.retry_in_flight && schedule.due(&view.id, now))
        .filter_map(|(_, view)| {
            let onchain = view.details.onchain?;
            let url = settings.rpc_for(&onchain.network)?.clone();
            Some((view.id, onchain, url))
        })
        .take(settings.per_check)
        .collect();
    for (id, onchain, url) in due {
        let unix_now = crate::store::replay::unix_now();
        let margin = settings.expiry_margin.as_secs();
        let asked = tokio::time::timeout(settings.timeout, nonce_used(rpc, &url, &onchain)).await;
        let verdict = match asked {
            Ok(Ok(true)) => Verdict::Used,
            Ok(Ok(false)) if onchain.expired_at(unix_now, margin) => Verdict::Expired,
            Ok(Ok(false)) => Verdict::NotYet,
            Ok(Err(error)) => {
                failed(schedule, &id, &onchain, settings, &error.to_string());
                continue;
            }
            Err(_) => {
                let why = format!("no answer within {:?}", settings.timeout);
                failed(schedule, &id, &onchain, settings, &why);
                continue;
            }
        };
        match verdict {
            Verdict::NotYet => {
                let deadline = expiry_instant(&onchain, unix_now, margin);
                schedule.missed(&id, Instant::now(), settings, deadline);
                tracing::debug!(payment = %id, network = %onchain.network, "chain: nonce unused and still valid; outcome stays unknown");
            }
            Verdict::Used | Verdict::Expired => {
                let committed = verdict == Verdict::Used;
                let why = explain(&onchain, committed, margin);
                match resolve_unknown(shared, &id, committed, BY, &why).await {
                    Ok(_) | Err(ResolveError::NotUnknown(_)) => {}
                    // A retry came in: its answer decides first; look again later.
                    Err(ResolveError::RetryInFlight(_)) => {}
                    Err(error) => {
                        schedule.missed(&id, Instant::now(), settings, None);
                        tracing::error!(payment = %id, %error, "chain: the resolution could not be written; will try again");
                    }
                }
            }
        }
    }
}

/// A call that got no usable answer: logged, and looked at again after a backoff.
fn failed(
    schedule: &mut Schedule,
    id: &str,
    onchain: &ChainAuthorization,
    settings: &ChainSettings,
    why: &str,
) {
    schedule.missed(id, Instant::now(), settings, None);
    let retry_in = schedule
        .next
        .get(id)
        .map(|next| next.at.saturating_duration_since(Instant::now()))
        .unwrap_or_default();
    tracing::warn!(payment = %id, network = %onchain.network, error = %why, ?retry_in, "chain: could not ask the chain about an unknown payment; it stays unknown and will be retried");
}

/// When an unused authorization becomes expired-and-unused, as an `Instant`.
fn expiry_instant(onchain: &ChainAuthorization, unix_now: u64, margin: u64) -> Option<Instant> {
    let expires = onchain.valid_before?.saturating_add(margin);
    Some(Instant::now() + Duration::from_secs(expires.saturating_sub(unix_now)))
}

/// Whether the chain says `onchain`'s nonce was used.
async fn nonce_used(
    rpc: &SharedChainRpc,
    url: &http::Uri,
    onchain: &ChainAuthorization,
) -> Result<bool, RpcError> {
    let unreadable =
        || RpcError::BadAnswer("the payment's recorded nonce facts do not read".into());
    let payer = onchain.payer_bytes().ok_or_else(unreadable)?;
    let nonce = onchain.nonce_bytes().ok_or_else(unreadable)?;
    let to = onchain.contract().ok_or_else(unreadable)?;
    if onchain.method == TransferMethod::Permit2 {
        let (data, bit) = abi::nonce_bitmap(&payer, &nonce);
        let answer = rpc
            .eth_call(EthCall {
                url,
                to,
                data: &data,
            })
            .await?;
        abi::decode_bit(&answer, bit)
    } else {
        let data = abi::authorization_state(&payer, &nonce);
        let answer = rpc
            .eth_call(EthCall {
                url,
                to,
                data: &data,
            })
            .await?;
        abi::decode_bool(&answer)
    }
}

/// The resolution line's reason: what was asked, what it said, what that means.
fn explain(onchain: &ChainAuthorization, committed: bool, margin: u64) -> String {
    let asked = match onchain.method {
        TransferMethod::Permit2 => format!("Permit2's nonceBitmap on {}", onchain.network),
        _ => format!(
            "authorizationState of token {} on {}",
            onchain.token, onchain.network
        ),
    };
    let nonce = format!("nonce {} of payer {}", onchain.nonce, onchain.payer);
    if committed {
        return format!(
            "{asked} says {nonce} was used: the authorization was executed (or cancelled by \
             the payer) and can never move money again; counted as spent"
        );
    }
    let until = onchain
        .valid_before
        .map_or("with no expiry".to_string(), |t| {
            format!("valid before {t}")
        });
    format!(
        "{asked} says {nonce} is unused and the authorization ({until}) expired more than \
         {margin} s ago: it can never settle"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_every_up_to_the_cap() {
        let every = Duration::from_secs(30);
        let max = Duration::from_secs(300);
        let waits: Vec<u64> = (1..=6).map(|m| backoff(every, max, m).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 300, 300]);
        assert_eq!(backoff(every, max, u32::MAX), max);
    }

    #[test]
    fn a_miss_waits_longer_each_time_but_not_past_the_expiry() {
        let settings = ChainSettings {
            every: Duration::from_secs(10),
            max_backoff: Duration::from_secs(60),
            ..ChainSettings::default()
        };
        let mut schedule = Schedule::default();
        let now = Instant::now();
        assert!(schedule.due("a", now));
        schedule.missed("a", now, &settings, None);
        assert!(!schedule.due("a", now));
        assert!(schedule.due("a", now + Duration::from_secs(10)));
        schedule.missed("a", now, &settings, None);
        assert!(!schedule.due("a", now + Duration::from_secs(10)));
        assert!(schedule.due("a", now + Duration::from_secs(20)));
        schedule.missed("a", now, &settings, Some(now + Duration::from_secs(5)));
        assert!(schedule.due("a", now + Duration::from_secs(5)));
        schedule.retain(&["b".to_string()]);
        assert!(schedule.next.is_empty());
    }
}
