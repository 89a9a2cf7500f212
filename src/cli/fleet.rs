//! `purser traces verify --store URL`: every replica's chain in the fleet store, checked.

use crate::store::postgres::verify::{verify_store as check_store, ChainReport};
use std::process::ExitCode;

/// Checks every replica's chain; exits non-zero at the first break or when there is
/// nothing to check.
pub(super) fn verify_store(url: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("purser: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let reports = match runtime.block_on(check_store(url)) {
        Ok(reports) => reports,
        Err(error) => {
            eprintln!("purser: {error}");
            return ExitCode::FAILURE;
        }
    };
    if reports.is_empty() {
        eprintln!("purser: the fleet store holds no proof-log lines yet");
        return ExitCode::FAILURE;
    }
    let mut failed = false;
    for report in &reports {
        print_report(report);
        failed |= report.broken.is_some();
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_report(report: &ChainReport) {
    match &report.broken {
        None => println!(
            "ok: replica {}: {} lines chain correctly ({} chain{}); last hash {}",
            report.replica,
            report.lines,
            report.chains,
            if report.chains == 1 { "" } else { "s" },
            report.last_hash
        ),
        Some((seq, why)) => println!(
            "BROKEN: replica {} line {seq}: {why} ({} lines before it check)",
            report.replica, report.lines
        ),
    }
}
