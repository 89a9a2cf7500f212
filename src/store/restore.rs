//! [`Recovered`]: the state the proof log records, as recovery (`engine::recovery`) reads
//! it, for a store to rebuild itself from on start.

use super::session::RecentPayment;
use super::unknown::UnknownDetails;
use crate::ledger::{Outcome, UnknownPayment};
use crate::policy::rules::Phase;
use rust_decimal::Decimal;

/// What the proof log says the store held when Purser stopped, in the order it is
/// applied.
#[derive(Default)]
pub struct Recovered {
    /// Payments that settled as committed or unknown, by decision trace id.
    pub settled: Vec<(String, UnknownPayment, Outcome)>,
    /// Payments that left with no settlement line: unknown now, with their details.
    pub unsettled: Vec<(String, UnknownPayment, UnknownDetails)>,
    /// The details of the payments that settled as unknown.
    pub unknown: Vec<(String, UnknownDetails)>,
    /// Unknown payments resolved since: committed (`true`) or released.
    pub resolutions: Vec<(String, bool)>,
    /// Compensated payments credited back: session, agent, amount.
    pub credits: Vec<(String, String, Decimal)>,
    /// Replay keys still to remember, each with the Unix second it may be forgotten.
    pub replay_keys: Vec<(String, u64)>,
    /// The last phase of each session: session, agent, phase.
    pub phases: Vec<(String, String, Phase)>,
    /// Recent payments still inside the frequency windows: session, agent, payments
    /// oldest first.
    pub recent: Vec<(String, String, Vec<RecentPayment>)>,
}
