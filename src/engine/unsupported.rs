//! Payments the detector found but Purser cannot decide: a protocol it does not govern
//! yet (MPP, L402, x402 or MPP over MCP), two payments in one request, or a JSON body it
//! cannot read. They are refused like any payment that fails its checks: `403`, the
//! refusal's code as rule and reason, and a durable decision line (`DENIED`).

use super::gate::Refusal;
use super::pricing::Rejection;
use super::{Engine, RequestFacts};
use crate::detect::Undecidable;

impl Engine {
    /// Refuses a request whose payment cannot be decided, with a decision line.
    pub async fn refuse_undecidable(
        &self,
        facts: &RequestFacts,
        undecidable: Undecidable,
    ) -> Refusal {
        let policy = self.policy.current();
        let rejection = Rejection {
            code: undecidable.code,
            message: undecidable.message,
        };
        self.refuse_unparsed(facts, &policy, rejection).await
    }
}
