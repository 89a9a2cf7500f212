//! The proof log: one JSON line per payment decision, settlement, hold outcome and
//! compensation, chained by SHA-256 so that any edit, insertion or deletion shows.
//!
//! Each line starts with `"prev_hash"`, the SHA-256 (hex) of the previous line's bytes
//! (64 zeros for the first line ever). Lines are written by one thread that commits in
//! groups: every line queued while a write is under way goes out in the next write, with
//! one `fsync` for the group, so durability does not serialise the proxy.
//!
//! An agent cannot flood it: long fields are cut and hashed ([`bound`]), refusals past
//! a per-agent rate are summarised ([`refusals`]), files rotate by size, and
//! [`figures`] reports its size on disk and raises an alarm past a threshold.

pub mod bound;
pub mod figures;
pub mod filter;
mod record;
pub mod refusals;
mod verify;
mod writer;

pub use record::{BudgetSnapshot, RuleOutcome, TraceRecord};
pub use verify::{verify_files, VerifyError, VerifyReport};
pub use writer::{TraceError, TraceLimits, TraceLog, TraceSettings};

/// The hash a chain starts from.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
