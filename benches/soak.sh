#!/usr/bin/env bash
# Soak test (issue #6, part 6): ten minutes of mixed traffic through one Purser.
#
# Usage (from anywhere):  bash benches/soak.sh          # DURATION=60 for a short run
#
# Builds release binaries, starts the stub merchant + facilitator
# (benches/paid_upstream.rs --record) and a fresh Purser (own proof log and CA, policy
# benches/soak-policy.yaml copied to a temporary file) on 127.0.0.1, and runs the driver
# (benches/soak.rs) for DURATION seconds: plain GETs, paid requests (direct, and full x402
# exchanges answering the stub's 402), payments held above the per-call threshold and
# approved through the admin API, payments the policy denies, and malformed payment
# headers, at RATE operations/s over CONNS keep-alive connections. Every RELOAD_EVERY
# seconds the driver rewrites the policy (a new generation comment, so a new digest) and
# reloads it through POST /v1/policy/reload; halfway between, it rewrites it and sends
# SIGHUP. It samples Purser's VmRSS every SAMPLE_EVERY seconds.
#
# At the end the driver snapshots GET /v1/sessions and the stub's GET /__record, Purser is
# stopped with SIGTERM (it flushes its proof log), and `soak report` checks:
#   1. zero panics (Purser's stderr log, alive at every sample, exit status 0);
#   2. VmRSS flat within 10% (median of the last minute vs median of minute 2);
#   3. every payment sent has its decision line (trace id + payment digest) with the
#      expected decision, and every paid one its committed settlement;
#   4. `purser traces verify` passes;
#   5. the ledger's committed spend equals the stub's settled payments (rust_decimal);
# plus: every class got its expected answers, every reload took effect.
# Prints a Markdown summary and writes it to benches/results/soak-<date>.md; exits 1 if a
# check fails. Exact rules: the header of benches/soak.rs and the end of the report.
#
# Environment knobs (all optional):
#   DURATION=600             seconds of traffic
#   RATE=250 CONNS=8         operations/s (an x402 exchange is 2 requests; ≈ 290 req/s),
#                            and keep-alive connections (a session each)
#   RELOAD_EVERY=30          seconds between admin-API reloads (SIGHUP halfway between)
#   SAMPLE_EVERY=5           seconds between VmRSS samples
#   ROTATE=64MiB             Purser's --trace-rotate-size (so a long soak rotates the log)
#   PORT_BASE=18490          stub, proxy and admin ports: PORT_BASE, +1, +2
#   SKIP_BUILD=1             use the binaries in target/release as they are
#   KEEP=1                   keep the run directory (logs, proof log, record) and say where
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${DURATION:-600}
RATE=${RATE:-250}
CONNS=${CONNS:-8}
RELOAD_EVERY=${RELOAD_EVERY:-30}
SAMPLE_EVERY=${SAMPLE_EVERY:-5}
ROTATE=${ROTATE:-64MiB}
PORT_BASE=${PORT_BASE:-18490}
POLICY=benches/soak-policy.yaml
TARGET_DIR=${CARGO_TARGET_DIR:-target}
PURSER_BIN=$TARGET_DIR/release/purser
SOAK_BIN=$TARGET_DIR/release/examples/soak
UPSTREAM_BIN=$TARGET_DIR/release/examples/paid_upstream

STUB_PORT=$PORT_BASE
PROXY_PORT=$((PORT_BASE + 1))
ADMIN_PORT=$((PORT_BASE + 2))

# shellcheck source=benches/lib.sh
source benches/lib.sh
bench_init soak

# ---------------------------------------------------------------- main
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 10 ]] || die "DURATION must be a whole number ≥ 10"
ports_free "$STUB_PORT" "$PROXY_PORT" "$ADMIN_PORT"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "cargo build --release --bin purser --example soak --example paid_upstream"
  cargo build --release --bin purser --example soak --example paid_upstream
fi
for bin in "$PURSER_BIN" "$SOAK_BIN" "$UPSTREAM_BIN"; do
  [[ -x "$bin" ]] || die "missing $bin"
done
"$PURSER_BIN" policy check "$POLICY" >/dev/null || die "$POLICY does not load"

LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY_NOTE=""
if pgrep -x rustc >/dev/null || pgrep -x cargo >/dev/null; then
  BUSY_NOTE="cargo/rustc was running when the soak started"
  log "warning: $BUSY_NOTE"
fi
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet -- src 2>/dev/null || echo ' + uncommitted src changes')"

start_bg "$TMP/stub.log" "$UPSTREAM_BIN" --listen "$HOST:$STUB_PORT" --record
STUB_PID=$STARTED_PID
wait_port "$STUB_PID" "$STUB_PORT" || die "paid_upstream did not start"

cp "$POLICY" "$TMP/policy.yaml"
# Every refusal is written (no per-agent summaries): check 3 matches each answer's trace
# id to its own decision line, and the one soak agent refuses about 4,000 a minute.
# Reload outcomes (purser::app for SIGHUP, purser::admin for the API) at INFO, the rest at
# WARN: a panic or an error shows, a line per request does not.
RUST_LOG="warn,purser::app=info,purser::admin=info" start_bg "$TMP/purser.log" \
  "$PURSER_BIN" run --listen "$HOST:$PROXY_PORT" --admin-listen "$HOST:$ADMIN_PORT" \
  --policy "$TMP/policy.yaml" --ca-dir "$TMP/ca" --trace-log "$TMP/trace/trace.jsonl" \
  --trace-rotate-size "$ROTATE" --trace-refusals-per-minute 0
PURSER_PID=$STARTED_PID
if ! wait_port "$PURSER_PID" "$ADMIN_PORT" 60; then
  sed 's/^/    /' "$TMP/purser.log" | tail -n 20 >&2
  die "purser did not start"
fi
until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$HOST:$ADMIN_PORT/healthz" || true)" == 200 ]]; do
  kill -0 "$PURSER_PID" 2>/dev/null || die "purser died at start"
  sleep 0.05
done

log "soak: ${DURATION}s at $RATE operations/s over $CONNS connections (Purser pid $PURSER_PID, run dir $TMP)"
"$SOAK_BIN" run --proxy "$HOST:$PROXY_PORT" --admin "$HOST:$ADMIN_PORT" --stub "$HOST:$STUB_PORT" \
  --pid "$PURSER_PID" --policy "$TMP/policy.yaml" --duration "$DURATION" --rate "$RATE" \
  --conns "$CONNS" --reload-every "$RELOAD_EVERY" --sample-every "$SAMPLE_EVERY" \
  --out "$TMP/run" 2> >(tee "$TMP/driver.log" >&2) || die "the soak driver failed (see above)"

# SIGTERM: Purser drains, flushes its proof log and should exit 0.
PURSER_EXIT=-1
if kill -0 "$PURSER_PID" 2>/dev/null; then
  kill -TERM "$PURSER_PID"
  for _ in $(seq 300); do
    kill -0 "$PURSER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$PURSER_PID" 2>/dev/null && { log "purser still running 30s after SIGTERM; SIGKILL"; kill -KILL "$PURSER_PID"; }
fi
if wait "$PURSER_PID"; then PURSER_EXIT=0; else PURSER_EXIT=$?; fi
log "purser exited with status $PURSER_EXIT"

mkdir -p benches/results
REPORT="benches/results/soak-$(date +%Y-%m-%d-%H%M%S).md"
NOTES=(
  --note "$(nproc) CPUs shared by the driver (1 thread), the stub (1 thread) and Purser; release build; commit $COMMIT; load average before: $LOADAVG.${BUSY_NOTE:+ **Warning:** $BUSY_NOTE.}"
  --note "Policy: $POLICY (reloaded as numbered generations); proof log rotated at $ROTATE; stub: paid_upstream --record."
)
STATUS=0
"$SOAK_BIN" report --dir "$TMP/run" --purser "$PURSER_BIN" --purser-log "$TMP/purser.log" \
  --trace "$TMP/trace/trace.jsonl" --purser-exit "$PURSER_EXIT" "${NOTES[@]}" --out "$REPORT" || STATUS=$?
log "written to $REPORT"
if ((STATUS != 0)); then
  KEEP=1
  log "some checks failed (see the report); keeping $TMP"
fi
exit "$STATUS"
