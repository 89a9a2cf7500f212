//! [`RequestFacts`]: what the engine knows about a request (who sent it, where it goes,
//! which MCP tool it calls), and the digest a retry of an unknown payment must match.

use crate::policy::{Identity, Policy, Tool};
use crate::x402::hex;
use sha2::{Digest, Sha256};

/// Groups requests into a transaction for compensation (SPEC §3).
pub const TRANSACTION_HEADER: &str = "x-purser-transaction";

/// What the engine knows about a request.
#[derive(Clone, Debug)]
pub struct RequestFacts {
    pub identity: Identity,
    pub method: String,
    pub host: String,
    pub port: u16,
    pub path: String,
    /// The query string, if any: a retry must ask for the same one.
    pub query: Option<String>,
    /// `X-Purser-Transaction`, when the request is a step of one.
    pub transaction: Option<String>,
    /// For an MCP tool call (x402 over MCP): the tool's name, `params.name`. Its
    /// challenges are remembered per tool, and rules can target it.
    pub mcp_tool: Option<String>,
}

impl RequestFacts {
    /// The key challenges are remembered under: host, port and path (not the scheme: a
    /// v2 `resource.url` may name either).
    pub fn resource_key(&self) -> String {
        match &self.mcp_tool {
            // Every tool of an MCP server shares its path: the tool is the resource.
            Some(tool) => format!("{}:{}{} mcp://tool/{tool}", self.host, self.port, self.path),
            None => format!("{}:{}{}", self.host, self.port, self.path),
        }
    }

    /// The policy tool the request matches: by MCP tool name first, then by route.
    pub fn tool<'p>(&self, policy: &'p Policy) -> Option<&'p Tool> {
        policy.tool_for_call(&self.host, self.port, &self.path, self.mcp_tool.as_deref())
    }

    /// The policy category the request is in (`tool` is [`RequestFacts::tool`]).
    pub fn category<'p>(&self, policy: &'p Policy, tool: Option<&'p Tool>) -> Option<&'p str> {
        policy.category_for_call(
            tool,
            &self.host,
            self.port,
            &self.path,
            self.mcp_tool.as_deref(),
        )
    }

    /// What a retry must ask for again: method, host, port and the normalised path and
    /// query, as a SHA-256 (hex) so the proof log carries it at a fixed size.
    pub fn resource_digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.method.to_ascii_uppercase().as_bytes());
        hasher.update(b" ");
        hasher.update(self.host.to_ascii_lowercase().as_bytes());
        hasher.update(format!(":{}", self.port).as_bytes());
        // The route as the merchant will read it: the rules' normal form (`policy::route`).
        hasher.update(crate::policy::route::normalize_path(&self.path).as_bytes());
        if let Some(query) = &self.query {
            hasher.update(b"?");
            hasher.update(query.as_bytes());
        }
        if let Some(tool) = &self.mcp_tool {
            hasher.update(b" mcp://tool/");
            hasher.update(tool.as_bytes());
        }
        hex(&hasher.finalize())
    }
}
