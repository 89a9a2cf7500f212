//! Connections per agent: how many of Purser's connections (keep-alive connections and
//! the tunnels they became) one agent holds open at once.
//!
//! Identity arrives with the first request, not with the TCP connection, so a connection
//! claims its agent's slot when a request authenticates and gives it back when it closes;
//! a `CONNECT` hands the slot to its tunnel, which outlives hyper's connection future.

use dashmap::DashMap;
use std::sync::{Arc, Mutex};

/// Open connections, per agent.
#[derive(Default)]
pub struct AgentConnections {
    open: DashMap<Arc<str>, usize>,
}

/// One connection's claim on its agent's allowance; released on drop.
pub struct ConnectionSlot {
    registry: Arc<AgentConnections>,
    agent: Arc<str>,
}

/// The slot a connection holds, shared by its requests.
pub type ConnectionClaim = Arc<Mutex<Option<ConnectionSlot>>>;

impl AgentConnections {
    /// Claims a slot for `agent`, or `None` when it already holds `limit` connections.
    pub fn try_claim(self: &Arc<Self>, agent: &Arc<str>, limit: usize) -> Option<ConnectionSlot> {
        let mut count = self.open.entry(agent.clone()).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            registry: self.clone(),
            agent: agent.clone(),
        })
    }

    /// Connections `agent` holds open now.
    pub fn open_for(&self, agent: &str) -> usize {
        self.open.get(agent).map_or(0, |count| *count)
    }
}

impl ConnectionSlot {
    pub fn agent(&self) -> &str {
        &self.agent
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        // Entries of agents with nothing open are removed, so the map is bounded by the
        // agents connected now, not by every name ever presented.
        self.registry.open.remove_if_mut(&self.agent, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
    }
}

/// Makes sure the connection behind `claim` holds a slot for `agent`, switching agents if
/// the connection's credentials changed. `false` means the agent is at its limit.
pub fn claim_for(
    registry: &Arc<AgentConnections>,
    claim: &ConnectionClaim,
    agent: &Arc<str>,
    limit: usize,
) -> bool {
    let mut held = claim
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if held
        .as_ref()
        .is_some_and(|slot| slot.agent() == agent.as_ref())
    {
        return true;
    }
    // Release first: a connection switching agents must not count twice.
    *held = None;
    *held = registry.try_claim(agent, limit);
    held.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_agent_and_released_on_drop() {
        let registry = Arc::new(AgentConnections::default());
        let agent: Arc<str> = Arc::from("alice");
        let first = registry.try_claim(&agent, 2);
        let second = registry.try_claim(&agent, 2);
        assert!(first.is_some() && second.is_some());
        assert!(registry.try_claim(&agent, 2).is_none());
        let bob: Arc<str> = Arc::from("bob");
        assert!(
            registry.try_claim(&bob, 2).is_some(),
            "limits are per agent"
        );
        drop(first);
        assert_eq!(registry.open_for("alice"), 1);
        drop(second);
        assert_eq!(registry.open_for("alice"), 0);
        assert!(registry.open.is_empty(), "idle agents leave no entry");
    }

    #[test]
    fn a_connection_switching_agents_moves_its_slot() {
        let registry = Arc::new(AgentConnections::default());
        let claim = ConnectionClaim::default();
        let alice: Arc<str> = Arc::from("alice");
        let bob: Arc<str> = Arc::from("bob");
        assert!(claim_for(&registry, &claim, &alice, 1));
        assert!(claim_for(&registry, &claim, &alice, 1), "same agent again");
        assert!(claim_for(&registry, &claim, &bob, 1));
        assert_eq!(registry.open_for("alice"), 0);
        assert_eq!(registry.open_for("bob"), 1);
    }
}
