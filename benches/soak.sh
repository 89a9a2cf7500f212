#!/usr/bin/env bash
# Soak test (issue #6, part 6): ten minutes of mixed traffic through one Purser.
#
# Usage (from anywhere):  bash benches/soak.sh          # DURATION=60 for a short run
#
# Builds release binaries and runs `bench soak` (benches/bench/soak/: the mix, the checks
# and every option, `bench soak --help`). It prints a Markdown summary, writes it to
# benches/results/soak-<date>.md, and exits 1 if a check fails (keeping the run directory).
#
# Environment knobs (all optional):
#   DURATION=600             seconds of traffic
#   RATE=250 CONNS=8         operations/s (an x402 exchange is 2 requests; ≈ 290 req/s),
#                            and keep-alive connections (a session each)
#   RELOAD_EVERY=30          seconds between admin-API reloads (SIGHUP halfway between)
#   SAMPLE_EVERY=5           seconds between VmRSS samples
#   ROTATE=64MiB             Purser's --trace-rotate-size (so a long soak rotates the log)
#   SKIP_BUILD=1             use the binaries in target/release as they are
#   KEEP=1                   keep the run directory (logs, proof log, record) and say where
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
[[ "${SKIP_BUILD:-0}" == 1 ]] || cargo build --release --bin purser --example bench
keep=()
[[ "${KEEP:-0}" == 1 ]] && keep=(--keep)
exec "$BIN/examples/bench" soak --purser "$BIN/purser" --duration "${DURATION:-600}" \
  --rate "${RATE:-250}" --conns "${CONNS:-8}" --reload-every "${RELOAD_EVERY:-30}" \
  --sample-every "${SAMPLE_EVERY:-5}" --rotate "${ROTATE:-64MiB}" "${keep[@]}"
