//! `purser redirect`: print, install (`--apply`) or remove (`--remove`) the nftables
//! rules that send one uid's outbound TCP to the transparent listener, in the current
//! network namespace. Written for an init container: idempotent, quiet on success, and
//! an exit status and one line that say what is missing when it fails.

use crate::redirect::{self, Redirect};
use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub(super) struct RedirectArgs {
    /// The uid whose outbound TCP is redirected (the agent's).
    #[arg(long, required_unless_present = "remove")]
    agent_uid: Option<u32>,
    /// Purser's own uid: never redirected, so its upstream connections cannot loop.
    #[arg(long)]
    proxy_uid: Option<u32>,
    /// The transparent listener's port (`purser run --transparent-listen ADDR:PORT`).
    #[arg(long, default_value_t = 15001)]
    port: u16,
    /// Redirect only these destination ports (`80,443`); every TCP port but DNS when absent.
    #[arg(long, value_delimiter = ',')]
    ports: Option<Vec<u16>>,
    /// Loopback ports the agent reaches without redirection: Purser's forward proxy, so
    /// that `HTTPS_PROXY` keeps working. Leave the admin port out: the agent then
    /// cannot reach the admin API.
    #[arg(long, value_delimiter = ',', default_value = "8402")]
    direct_ports: Vec<u16>,
    /// Leave the agent's UDP alone. By default its UDP other than DNS is rejected, so
    /// HTTP/3 (QUIC) falls back to TCP, which is redirected.
    #[arg(long)]
    allow_udp: bool,
    /// Install the rules in the current network namespace (needs CAP_NET_ADMIN), replacing
    /// any installed before.
    #[arg(long, conflicts_with = "remove")]
    apply: bool,
    /// Remove the rules from the current network namespace.
    #[arg(long)]
    remove: bool,
}

pub(super) fn run(args: RedirectArgs) -> ExitCode {
    if args.remove {
        return report(
            redirect::apply(&redirect::removal()),
            "removed table inet purser",
        );
    }
    let Some(agent_uid) = args.agent_uid else {
        eprintln!("purser: --agent-uid is required");
        return ExitCode::from(2);
    };
    let rules = Redirect {
        agent_uid,
        proxy_uid: args.proxy_uid,
        port: args.port,
        ports: args.ports,
        direct_ports: args.direct_ports,
        allow_udp: args.allow_udp,
    };
    let script = match rules.ruleset() {
        Ok(script) => script,
        Err(error) => {
            eprintln!("purser: {error}");
            return ExitCode::from(2);
        }
    };
    if !args.apply {
        print!("{script}");
        return ExitCode::SUCCESS;
    }
    let done = format!(
        "installed table inet purser: uid {agent_uid}'s outbound TCP goes to port {}",
        args.port
    );
    report(redirect::apply(&script), &done)
}

fn report(outcome: Result<(), redirect::RedirectError>, done: &str) -> ExitCode {
    match outcome {
        Ok(()) => {
            println!("purser: {done}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("purser: {error}");
            ExitCode::FAILURE
        }
    }
}
