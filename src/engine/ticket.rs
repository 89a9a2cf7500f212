//! [`Ticket`]: a payment that was allowed and forwarded, until its answer settles it.
//!
//! A ticket owns the payment's stake: the reservation booked for it, or, for the agent's
//! retry of a payment whose outcome is unknown, the claim on that retry (a retry reserves
//! nothing). A ticket dropped before its answer was settled (the agent's request went
//! away while the payment was upstream) settles itself as `unknown`, rather than leaving
//! its amount reserved for ever where no one can reconcile it.

use super::context::Shared;
use super::facts::RequestFacts;
use super::pricing::PricedPayment;
use super::records::{settlement_record, Settlement};
use super::upto::{Charge, Metered};
use crate::detect::Protocol;
use crate::ledger::{Outcome, ReservationId};
use crate::store::{Booking, RetryClaim, SettledPayment, UnknownDetails};
use crate::x402::{hex, ChainAuthorization};
use rust_decimal::Decimal;
use std::sync::Arc;

/// A forwarded payment, to settle when its answer comes back.
#[derive(Debug)]
pub struct Ticket {
    pub trace_id: String,
    pub amount_usd: Decimal,
    /// The budget gate the payment crossed, named in `X-Purser-Budget`.
    pub gate: Option<&'static str>,
    /// The x402 version, 0 for an MPP credential.
    pub version: u8,
    /// The protocol it was paid in: where its receipt will be.
    pub protocol: Protocol,
    pub replay_keys: Vec<String>,
    /// SHA-256 of the decoded payment, kept if its outcome becomes unknown.
    pub payment_digest: [u8; 32],
    /// What compensation needs if the payment settles.
    pub settled: SettledPayment,
    /// An `upto` payment's terms: what it commits depends on its receipt.
    metered: Option<Metered>,
    /// What the chain can be asked about it, kept if its outcome becomes unknown.
    onchain: Option<ChainAuthorization>,
    stake: Stake,
}

/// What a ticket holds in the store until it is settled.
#[derive(Debug)]
pub(super) enum Stake {
    /// A new payment's reservation; the ticket settles it as `unknown` if it is dropped
    /// unsettled.
    Reserved {
        reservation: ReservationId,
        owner: Owner,
    },
    /// The agent's retry of an unknown payment: the claim keeps other copies out until
    /// this one is settled.
    Retry(RetryClaim),
    /// Settled (or handed to the settlement).
    Settled,
}

/// What a dropped ticket needs to settle itself.
pub(super) struct Owner {
    shared: Arc<Shared>,
    facts: Box<RequestFacts>,
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Owner")
    }
}

/// A payment about to leave, as its ticket will describe it.
pub(super) struct Leaving {
    pub trace_id: String,
    pub amount_usd: Decimal,
    pub gate: Option<&'static str>,
    pub version: u8,
    pub protocol: Protocol,
    pub payment_digest: [u8; 32],
    pub settled: SettledPayment,
    pub metered: Option<Metered>,
    pub onchain: Option<ChainAuthorization>,
}

impl Leaving {
    /// `priced`, decided in `trace_id`, crossing `gate`.
    pub(super) fn new(
        facts: &RequestFacts,
        priced: &PricedPayment,
        trace_id: String,
        gate: Option<&'static str>,
    ) -> Self {
        Leaving {
            settled: settled_payment(facts, priced, &trace_id),
            trace_id,
            amount_usd: priced.price.usd,
            gate,
            version: priced.payment.x402_version().unwrap_or(0),
            protocol: priced.payment.protocol(),
            payment_digest: priced.payment.digest(),
            metered: Metered::of(priced),
            onchain: priced.payment.x402().and_then(ChainAuthorization::of),
        }
    }
}

impl Ticket {
    /// The ticket of a new payment leaving with its booking (reservation and replay
    /// keys).
    pub(super) fn reserved(
        shared: &Arc<Shared>,
        facts: &RequestFacts,
        leaving: Leaving,
        booking: Booking,
    ) -> Self {
        let (reservation, replay_keys) = booking.keep();
        let owner = Owner {
            shared: shared.clone(),
            facts: Box::new(facts.clone()),
        };
        Ticket::new(leaving, replay_keys, Stake::Reserved { reservation, owner })
    }

    /// The ticket of the agent's retry of `claim`'s original. Compensation refers to the
    /// original's decision: that is the payment that settles.
    pub(super) fn retry(mut leaving: Leaving, replay_keys: Vec<String>, claim: RetryClaim) -> Self {
        leaving.settled.decision_trace_id = claim.original().to_string();
        Ticket::new(leaving, replay_keys, Stake::Retry(claim))
    }

    fn new(leaving: Leaving, replay_keys: Vec<String>, stake: Stake) -> Self {
        let Leaving {
            trace_id,
            amount_usd,
            gate,
            version,
            protocol,
            payment_digest,
            settled,
            metered,
            onchain,
        } = leaving;
        Ticket {
            trace_id,
            amount_usd,
            gate,
            version,
            protocol,
            replay_keys,
            payment_digest,
            settled,
            metered,
            onchain,
            stake,
        }
    }

    /// What an `upto` payment commits now that its receipt says it settled, reporting
    /// `reported` atomic units; `None` for any other payment, and for the retry of an
    /// unknown one (which commits its original as it was reserved). Compensation is told
    /// the amount charged.
    pub(super) fn charge(
        &mut self,
        reported: Option<u128>,
        assets: &crate::x402::AssetTable,
    ) -> Option<Charge> {
        if !matches!(self.stake, Stake::Reserved { .. }) {
            return None;
        }
        let charge = self
            .metered
            .as_ref()?
            .charge(reported, self.amount_usd, assets);
        self.settled.amount_usd = charge.usd;
        self.settled.amount_atomic = charge.atomic.to_string();
        Some(charge)
    }

    /// Takes the stake out for settlement; the ticket no longer settles itself.
    pub(super) fn take_stake(&mut self) -> Stake {
        std::mem::replace(&mut self.stake, Stake::Settled)
    }

    /// What the unknown payments keep of this one, should its outcome be unknown.
    pub(super) fn unknown_details(
        &self,
        facts: &RequestFacts,
        why: Option<String>,
        upstream_status: Option<u16>,
    ) -> UnknownDetails {
        UnknownDetails {
            session: facts.identity.session_id().into(),
            agent: facts.identity.agent.to_string(),
            since: jiff::Timestamp::now().to_string(),
            method: facts.method.clone(),
            host: facts.host.clone(),
            path: facts.path.clone(),
            payment_digest: Some(hex(&self.payment_digest)),
            resource: Some(facts.resource_digest()),
            keys: self.replay_keys.clone(),
            why,
            upstream_status,
            onchain: self.onchain.clone(),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let Stake::Reserved { reservation, owner } = self.take_stake() else {
            return;
        };
        let Owner { shared, facts } = owner;
        let why = "the request went away before its answer came (the agent closed the \
                   connection while the payment was upstream)";
        let details = self.unknown_details(&facts, Some(why.to_string()), None);
        shared
            .store
            .settle_unknown(reservation, &self.trace_id, details);
        let policy = shared.policy.current();
        let settlement = Settlement {
            outcome: Outcome::Unknown,
            amount_usd: self.amount_usd,
            amount_atomic: None,
            transaction: None,
            note: Some(why.to_string()),
            upstream_status: None,
            retry_of: None,
        };
        let trace_id = shared.next_trace_id();
        let record = settlement_record(&facts, &policy, &trace_id, &self.trace_id, settlement);
        shared.metrics.settlement("unknown");
        shared.trace.append(&record);
        tracing::warn!(trace = %self.trace_id, "payment left but its request went away; outcome unknown");
    }
}

/// A payment as compensation needs it, should it settle.
pub(super) fn settled_payment(
    facts: &RequestFacts,
    priced: &PricedPayment,
    trace_id: &str,
) -> SettledPayment {
    SettledPayment {
        decision_trace_id: trace_id.to_string(),
        session: facts.identity.session_id(),
        agent: facts.identity.agent.to_string(),
        payer: priced.payment.payer(),
        pay_to: priced.pay_to.clone(),
        amount_atomic: priced.price.atomic.to_string(),
        amount_usd: priced.price.usd,
        asset: priced.asset.clone(),
        network: priced.network.clone(),
        tx_hash: None,
    }
}
