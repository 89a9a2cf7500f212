//! The policy loader: YAML text to a validated `Policy` (every section, the DSL, the
//! cross-references), then the lookups the proxy makes on a loaded policy.

#![no_main]

use libfuzzer_sys::fuzz_target;
use purser::policy::{Policy, PolicyError};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Policy::from_yaml(Path::new("fuzz.yaml"), &text) {
        Ok(policy) => {
            assert_eq!(policy.digest.len(), 64);
            for rule in &policy.rules {
                assert!(!rule.id.is_empty());
                assert!(rule.line >= 1);
            }
            let gates = policy.budget.gates;
            let present: Vec<_> = [gates.warning, gates.restrict, gates.halt]
                .into_iter()
                .flatten()
                .collect();
            assert!(present.windows(2).all(|pair| pair[0] <= pair[1]));
            let names: Vec<String> = policy.agents.names().map(str::to_string).collect();
            for agent in names.iter().map(String::as_str).chain(["nobody"]) {
                let _ = policy.limits_for(agent);
            }
            for host in ["api.example.com", "127.0.0.1", "[::1]", "169.254.169.254"] {
                let _ = policy.is_tunnel(host, 443);
                let _ = policy.egress_refusal(host, 8080);
                let tool = policy.tool_for(host, 443, "/v1/data");
                let _ = policy.category_for(tool, host, 443, "/v1/data");
            }
        }
        Err(error) => {
            assert!(!error.to_string().is_empty());
            if let PolicyError::Invalid { line, column, .. } = error {
                assert!(line >= 1 && column >= 1, "{line}:{column}");
            }
        }
    }
});
