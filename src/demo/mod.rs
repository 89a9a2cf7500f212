//! `purser demo`: a governed x402 workflow end to end, on this machine only, in one
//! command: no Python, no network, no money.
//!
//! It starts the real Purser (this binary re-executed as `purser run`, see [`launch`]), a
//! demo merchant that charges with real x402 v1 and v2 challenges ([`merchant`]), a
//! facilitator STUB that records settlements and refund requests without verifying any
//! signature ([`facilitator`]), and a scripted agent that pays through the proxy
//! ([`agent`]). The agent then walks through six steps ([`script`]): free reads, a
//! payment refused in EXPLORE, COMMIT and settled payments, a payment held for a person,
//! a failed transaction whose payments are refunded, and a paid MCP tool call
//! ([`merchant_mcp`], [`script_mcp`]) refused in EXPLORE and paid in COMMIT. Each step says what Purser
//! decided, by which rule, what the budget stands at, and what the proof log recorded
//! ([`narrative`]). The demo exits non-zero when a step does not behave as expected, so
//! it doubles as a smoke test of a build.
//!
//! The policy is `policies/demo.yaml`, built in; its compensation endpoint is pointed at
//! the stub when the demo starts. Policy, CA, proof log and Purser's log live in a
//! working directory that is removed afterwards unless `--keep` or `--dir` is given (or
//! a step failed, so there is something to look at).

mod admin;
mod agent;
mod error;
mod facilitator;
mod http;
mod launch;
mod merchant;
mod merchant_mcp;
mod narrative;
mod script;
mod script_later;
mod script_mcp;

pub(crate) use error::DemoError;
use facilitator::Facilitator;
use launch::{PurserFiles, PurserProcess};
use merchant::Merchant;
use merchant_mcp::McpShop;
use std::path::PathBuf;
use std::process::ExitCode;

/// The demo's policy, as shipped in `policies/demo.yaml`.
const POLICY_TEMPLATE: &str = include_str!("../../policies/demo.yaml");
/// Where the template names the refund endpoint; replaced by the stub's address.
const ENDPOINT_PLACEHOLDER: &str = "http://FACILITATOR/refunds";
/// The proof log's name inside the working directory.
const TRACE_LOG: &str = "traces/purser-trace.jsonl";

/// `purser demo` options.
#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    /// Stop at the held payment (step 4) until you approve or deny it in the console (or
    /// with `purser approvals approve ID`), instead of letting the demo approve it.
    #[arg(long)]
    pub pause_at_hold: bool,
    /// Keep the working directory (policy, CA, proof log, Purser's log) and print where
    /// it is, instead of removing it at the end.
    #[arg(long)]
    pub keep: bool,
    /// Use this directory (created if missing, always kept) instead of a temporary one.
    /// It must not hold a proof log from an earlier run: Purser would rebuild that run's
    /// sessions from it.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Runs the demo; exits 0 when every step behaved as expected.
pub(crate) fn run(args: DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("purser demo: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let workspace = match Workspace::prepare(&args) {
        Ok(workspace) => workspace,
        Err(error) => {
            eprintln!("purser demo: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run_steps(&args, &workspace));
    // The servers stop with the runtime; Purser has been stopped already.
    drop(runtime);
    match outcome {
        Ok(()) => {
            if let Some(dir) = workspace.close(false) {
                say_kept(&dir);
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            let interrupted = matches!(error, DemoError::Interrupted);
            if !interrupted {
                narrative::failed(&error.to_string());
            }
            eprintln!("purser demo: {error}");
            // After a failure the files are kept for a look; a person who stopped the
            // demo has nothing to look at.
            if let Some(dir) = workspace.close(!interrupted) {
                eprintln!(
                    "purser demo: Purser's log and the proof log are kept in {}",
                    dir.display()
                );
            }
            ExitCode::FAILURE
        }
    }
}

async fn run_steps(args: &DemoArgs, workspace: &Workspace) -> Result<(), DemoError> {
    let facilitator = Facilitator::start().await?;
    let merchant = Merchant::start(facilitator.clone()).await?;
    let mcp = McpShop::start(merchant.clone()).await?;
    let policy = demo_policy(&facilitator.refund_endpoint())?;
    let files = workspace.files();
    std::fs::write(&files.policy, policy).map_err(|source| DemoError::Workspace {
        path: files.policy.clone(),
        source,
    })?;
    let mut purser = tokio::task::spawn_blocking(move || PurserProcess::start(&files))
        .await
        .map_err(|e| DemoError::Launch(format!("cannot start Purser: {e}")))??;
    let stage = script::Stage::new(&purser, merchant, mcp, facilitator, args.pause_at_hold);
    introduce(&stage, &purser, workspace);
    let steps = tokio::select! {
        outcome = run_all(&stage) => outcome,
        // Only a delivered Ctrl-C: should the handler fail to install, the steps run on.
        Ok(()) = tokio::signal::ctrl_c() => Err(DemoError::Interrupted),
    };
    purser.stop().await;
    steps?;
    let lines = verify_proof_log(&workspace.files().trace_log)?;
    conclude(&stage, lines);
    Ok(())
}

/// The policy text with the refund endpoint filled in.
fn demo_policy(refund_endpoint: &str) -> Result<String, DemoError> {
    if !POLICY_TEMPLATE.contains(ENDPOINT_PLACEHOLDER) {
        return Err(DemoError::Policy(format!(
            "the built-in demo policy lost its `{ENDPOINT_PLACEHOLDER}` placeholder"
        )));
    }
    Ok(POLICY_TEMPLATE.replace(ENDPOINT_PLACEHOLDER, refund_endpoint))
}

/// Checks the proof log's hash chain as `purser traces verify` does; returns its lines.
fn verify_proof_log(path: &std::path::Path) -> Result<u64, DemoError> {
    let files = crate::trace::log_files(path);
    crate::trace::verify_files(&files)
        .map(|report| report.lines)
        .map_err(|e| DemoError::ProofLog(e.to_string()))
}

fn introduce(stage: &script::Stage, purser: &PurserProcess, workspace: &Workspace) {
    use narrative::{gap, line, say};
    println!("Purser demo · a governed x402 workflow, end to end, on this machine only");
    gap();
    say(
        "NO MONEY MOVES. The merchant, the facilitator and the agent are local stand-ins: \
         the facilitator is a stub that records settlements and refund requests without \
         verifying signatures or touching any chain, and the agent's payments carry dummy \
         signatures. Purser itself is the real thing.",
    );
    gap();
    line(&format!(
        "Watch it live in Purser's console: {}",
        stage.admin.console_url()
    ));
    if !stage.pause_at_hold {
        line(
            "(it all takes a second; with --pause-at-hold the demo waits for you there at step 4)",
        );
    }
    gap();
    let rows = [
        (
            "Purser",
            format!("http://{}", purser.proxy),
            format!(
                "the real `purser run` (pid {}), policy \"demo\"",
                purser.pid
            ),
        ),
        (
            "Merchant",
            format!("http://{}", stage.merchant.address),
            "demo shop, x402 v2 and v1 challenges".to_string(),
        ),
        (
            "MCP server",
            format!("http://{}", stage.mcp.address),
            "the shop's paid MCP tool at /mcp, x402 over MCP".to_string(),
        ),
        (
            "Facilitator",
            format!("http://{}", stage.facilitator.address),
            "STUB: records /settle and /refunds, verifies nothing".to_string(),
        ),
        (
            "Agent",
            stage.agent.session_id.clone(),
            "a scripted x402 client, through the proxy".to_string(),
        ),
    ];
    for (name, address, what) in rows {
        line(&format!("{name:<12} {address:<24} {what}"));
    }
    line(&format!("{:<12} {}", "Files", workspace.root.display()));
    gap();
    say(
        "The policy (policies/demo.yaml): payments only in the COMMIT phase · a person \
         approves any payment above $0.50 · a session may spend $2.00 · a transaction \
         whose step fails after paying is refunded.",
    );
}

fn conclude(stage: &script::Stage, proof_lines: u64) {
    use narrative::{gap, line, say};
    println!();
    println!("Done · every step behaved as expected {}", "─".repeat(50));
    say(&format!(
        "The facilitator stub recorded {} settlements and {} refund requests. No money moved.",
        stage.facilitator.settlements().len(),
        stage.facilitator.refunds().len()
    ));
    gap();
    line(&format!(
        "Proof log: {proof_lines} lines, hash chain intact (checked as `purser traces verify` does)."
    ));
    if !stage.pause_at_hold {
        line("Run `purser demo --pause-at-hold --keep` to decide the held payment yourself.");
    }
}

fn say_kept(dir: &std::path::Path) {
    narrative::line(&format!(
        "Kept in {}: policy.yaml, purser.log, certs/, {TRACE_LOG}",
        dir.display()
    ));
    narrative::line(&format!(
        "Check it yourself: purser traces verify {}",
        dir.join(TRACE_LOG).display()
    ));
}

/// The demo's working directory.
struct Workspace {
    root: PathBuf,
    /// Kept at the end (asked for, or a directory the user named).
    keep: bool,
}

impl Workspace {
    fn prepare(args: &DemoArgs) -> Result<Workspace, DemoError> {
        let (root, keep) = match &args.dir {
            Some(dir) => (dir.clone(), true),
            None => (temporary_directory(), args.keep),
        };
        let failed = |source| DemoError::Workspace {
            path: root.clone(),
            source,
        };
        std::fs::create_dir_all(root.join("traces")).map_err(failed)?;
        let workspace = Workspace { root, keep };
        if !crate::trace::log_files(&workspace.files().trace_log).is_empty() {
            return Err(DemoError::UsedDirectory(workspace.root));
        }
        Ok(workspace)
    }

    fn files(&self) -> PurserFiles {
        PurserFiles {
            policy: self.root.join("policy.yaml"),
            ca_dir: self.root.join("certs"),
            trace_log: self.root.join(TRACE_LOG),
            log: self.root.join("purser.log"),
        }
    }

    /// Removes the directory unless it is kept (or the run failed); returns it if kept.
    fn close(self, failed: bool) -> Option<PathBuf> {
        if self.keep || failed {
            return Some(self.root);
        }
        let _ = std::fs::remove_dir_all(&self.root);
        None
    }
}

/// A new directory name under the system's temporary directory.
fn temporary_directory() -> PathBuf {
    let stamp = jiff::Timestamp::now().as_microsecond();
    std::env::temp_dir().join(format!("purser-demo-{}-{stamp}", std::process::id()))
}

/// Runs every step in order; stops at the first that does not behave as expected.
async fn run_all(stage: &script::Stage) -> Result<(), DemoError> {
    script::read_freely(stage).await?;
    script::refused_while_exploring(stage).await?;
    script::commit_and_pay(stage).await?;
    script_later::held_for_a_person(stage).await?;
    script_later::failed_transaction(stage).await?;
    script_mcp::mcp_tool_call(stage).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_policy_loads_with_the_endpoint_filled_in() {
        let text = demo_policy("http://127.0.0.1:4242/refunds").expect("placeholder present");
        assert!(!text.contains(ENDPOINT_PLACEHOLDER));
        let policy = crate::policy::Policy::from_yaml(std::path::Path::new("demo.yaml"), &text)
            .expect("the demo policy loads");
        assert_eq!(
            policy.compensation.endpoint.as_deref(),
            Some("http://127.0.0.1:4242/refunds")
        );
    }
}
