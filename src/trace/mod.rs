//! The proof log: one JSON line per payment decision, settlement, hold outcome and
//! compensation, chained by SHA-256 so that any edit, insertion or deletion shows.
//!
//! Each line starts with `"prev_hash"`, the SHA-256 (hex) of the previous line's bytes
//! (64 zeros for the first line ever). Lines are written by one thread that commits in
//! groups: every line queued while a write is under way goes out in the next write, with
//! one `fsync` for the group, so durability does not serialise the proxy.
//!
//! An agent cannot flood it: long fields are cut and hashed ([`bound`]), refusals past
//! a per-agent rate are summarised (`refusals`), files rotate by size, and
//! [`figures`] reports its size on disk and raises an alarm past a threshold.
//!
//! Every line is one [`TraceRecord`], whose fixed vocabularies are typed ([`vocabulary`]:
//! kind, verdict, outcome, gate), as is who decided ([`decider`]). The writer, recovery,
//! the CLI and the admin API all read and write that one type (recovery reads its
//! fields through a borrowed [`ReplayView`], tested against it); [`log_files`] lists the
//! files a log has rotated into, in chain order.

pub mod bound;
mod chain;
mod checks;
pub mod decider;
pub mod figures;
mod files;
pub mod filter;
mod record;
mod refusals;
mod replay_view;
mod verify;
pub mod vocabulary;
mod writer;

pub use chain::{line_hash, GENESIS_HASH};
pub use checks::{Checks, RuleOutcome};
pub use decider::{Approver, Decider};
pub use files::log_files;
pub use record::{Approval, BudgetSnapshot, TraceRecord};
pub use replay_view::ReplayView;
pub use verify::{verify_files, VerifyError, VerifyReport};
pub use vocabulary::{Gate, HoldEnd, Kind, Outcome, Verdict, Vocabulary};
pub use writer::{TraceError, TraceLimits, TraceLog, TraceSettings};
