#!/usr/bin/env bash
# The governance findings, reproduced (issue #7, part 6).
#
# Usage (from anywhere):  bash benches/findings.sh
#
# Builds release binaries and runs `bench findings` (benches/bench/findings/: the
# workload, the definitions and every option, `bench findings --help`): one seeded
# workload of agent runs through Purser twice, under benches/findings-flat-policy.yaml
# (a session limit and nothing else) and under policies/governed.yaml, each against a
# fresh Purser and stub merchant. It prints the Markdown table beside the claimed figures
# and writes it to benches/results/findings-<date>.md.
#
# Environment knobs (all optional):
#   RUNS=200 SEED=7          agent runs, and the seed of their plan
#   CONCURRENCY=8            runs in flight at once
#   THINK_MS=5               how long the simulated human looks at a hold before approving
#   SKIP_BUILD=1             use the binaries in target/release as they are
#   KEEP=1                   keep the per-pass directories (logs, record, workload) and say where
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
[[ "${SKIP_BUILD:-0}" == 1 ]] || cargo build --release --bin purser --example bench
keep=()
[[ "${KEEP:-0}" == 1 ]] && keep=(--keep)
exec "$BIN/examples/bench" findings --purser "$BIN/purser" --runs "${RUNS:-200}" \
  --seed "${SEED:-7}" --concurrency "${CONCURRENCY:-8}" --think-ms "${THINK_MS:-5}" "${keep[@]}"
