#!/usr/bin/env bash
# The governance findings, reproduced (issue #7, part 6).
#
# Usage (from anywhere):  bash benches/findings.sh
#
# Builds release binaries, then runs one seeded workload of agent runs (benches/findings.rs)
# through Purser twice, each time against a fresh Purser (own proof log and CA) and a
# fresh merchant + facilitator stub (benches/paid_upstream.rs --record), all on 127.0.0.1:
#   1. flat:     benches/findings-flat-policy.yaml (a session limit and nothing else);
#   2. governed: policies/governed.yaml, with compensation.endpoint pointed at the stub.
# After each pass Purser is stopped (SIGTERM flushes its log) and the stub's record is
# saved. `findings report` then verifies both proof logs (`purser traces verify`),
# computes unnecessary-spend reduction, failure recovery, approval latency and audit
# completeness, and prints a Markdown table beside the claimed figures; the report is
# written to benches/results/findings-<date>.md. Definitions: the header of
# benches/findings.rs and the end of the report.
#
# Environment knobs (all optional):
#   RUNS=200 SEED=7          agent runs, and the seed of their plan
#   CONCURRENCY=8            runs in flight at once
#   THINK_MS=5               how long the simulated human looks at a hold before approving
#   PORT_BASE=18390          stub, proxy and admin ports: PORT_BASE, +1, +2
#   SKIP_BUILD=1             use the binaries in target/release as they are
#   KEEP=1                   keep the per-pass directories (logs, record, workload) and say where
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS=${RUNS:-200}
SEED=${SEED:-7}
CONCURRENCY=${CONCURRENCY:-8}
THINK_MS=${THINK_MS:-5}
PORT_BASE=${PORT_BASE:-18390}
FLAT_POLICY=benches/findings-flat-policy.yaml
GOVERNED_POLICY=policies/governed.yaml
TARGET_DIR=${CARGO_TARGET_DIR:-target}
PURSER_BIN=$TARGET_DIR/release/purser
FINDINGS_BIN=$TARGET_DIR/release/examples/findings
UPSTREAM_BIN=$TARGET_DIR/release/examples/paid_upstream

STUB_PORT=$PORT_BASE
PROXY_PORT=$((PORT_BASE + 1))
ADMIN_PORT=$((PORT_BASE + 2))

# shellcheck source=benches/lib.sh
source benches/lib.sh
bench_init findings

# prepare_policy SRC DEST: SRC with compensation.endpoint pointed at this pass's stub,
# checked and its own cases run (when it has them).
prepare_policy() {
  local src=$1 dest=$2 changed
  sed -E "s#^([[:space:]]*endpoint:).*#\\1 http://$HOST:$STUB_PORT/refunds#" "$src" >"$dest"
  changed=$(diff "$src" "$dest" | grep -c '^>' || true)
  ((changed <= 1)) || die "rewriting compensation.endpoint of $src changed $changed lines"
  "$PURSER_BIN" policy check "$dest" >/dev/null || die "$dest does not load"
  local cases=${src%.yaml}.cases.yaml
  if [[ -f "$cases" ]]; then
    "$PURSER_BIN" policy test "$dest" "$cases" >"$dest.cases.out" ||
      { cat "$dest.cases.out" >&2; die "$cases fail against $dest"; }
  fi
}

# pass LABEL POLICY: stub + Purser + workload; leaves workload.json, record.json and
# trace.jsonl in $TMP/LABEL.
pass() {
  local label=$1 policy=$2 dir=$TMP/$1
  mkdir -p "$dir"
  prepare_policy "$policy" "$dir/policy.yaml"
  start_bg "$dir/stub.log" "$UPSTREAM_BIN" --listen "$HOST:$STUB_PORT" --record
  local stub_pid=$STARTED_PID
  wait_port "$stub_pid" "$STUB_PORT" || { cat "$dir/stub.log" >&2; die "stub did not start"; }
  start_bg "$dir/purser.log" "$PURSER_BIN" run --listen "$HOST:$PROXY_PORT" \
    --admin-listen "$HOST:$ADMIN_PORT" --policy "$dir/policy.yaml" --ca-dir "$dir/ca" \
    --trace-log "$dir/trace.jsonl" --log-level warn
  local purser_pid=$STARTED_PID
  if ! wait_port "$purser_pid" "$ADMIN_PORT" 60; then
    tail -n 20 "$dir/purser.log" >&2
    die "purser did not start ($label)"
  fi
  busy_note "$label"
  log "$label: $RUNS runs, seed $SEED, policy $policy"
  if ! "$FINDINGS_BIN" run --seed "$SEED" --runs "$RUNS" --concurrency "$CONCURRENCY" \
    --think-ms "$THINK_MS" --proxy "$HOST:$PROXY_PORT" --admin "$HOST:$ADMIN_PORT" \
    --stub "$HOST:$STUB_PORT" --label "$label" --out "$dir/workload.json" 2>"$dir/findings.err"; then
    cat "$dir/findings.err" >&2
    die "the $label pass failed"
  fi
  sed 's/^/    /' "$dir/findings.err" >&2
  stop_pid "$purser_pid"
  curl -sf --max-time 10 "http://$HOST:$STUB_PORT/__record" -o "$dir/record.json" ||
    die "could not read the stub's record ($label)"
  stop_pid "$stub_pid"
}

# ---------------------------------------------------------------- main
[[ "$RUNS" =~ ^[1-9][0-9]*$ && "$SEED" =~ ^[0-9]+$ && "$CONCURRENCY" =~ ^[1-9][0-9]*$ ]] ||
  die "RUNS, SEED and CONCURRENCY must be whole numbers"
ports_free "$STUB_PORT" "$PROXY_PORT" "$ADMIN_PORT"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "cargo build --release --bin purser --example findings --example paid_upstream"
  cargo build --release --bin purser --example findings --example paid_upstream
fi
for bin in "$PURSER_BIN" "$FINDINGS_BIN" "$UPSTREAM_BIN"; do
  [[ -x "$bin" ]] || die "missing $bin"
done

LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || echo unknown)

pass flat "$FLAT_POLICY"
pass governed "$GOVERNED_POLICY"

mkdir -p benches/results
REPORT="benches/results/findings-$(date +%Y-%m-%d-%H%M%S).md"
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo none)
if [[ "$COMMIT" != none && -n "$(git status --porcelain -- src benches policies ":!benches/report" ":!benches/REPORT.md" 2>/dev/null)" ]]; then
  COMMIT+=" + uncommitted changes in src/benches/policies"
fi
NOTES=(
  "Run $STARTED on $(nproc) CPUs ($CPU) shared by the workload, the stub and Purser; load average before: $LOADAVG; commit $COMMIT."
  "The governed pass ran \`$GOVERNED_POLICY\` with only \`compensation.endpoint\` rewritten to the stub (http://$HOST:$STUB_PORT/refunds); its cases passed against that copy."
  "Reproduce: \`RUNS=$RUNS SEED=$SEED CONCURRENCY=$CONCURRENCY THINK_MS=$THINK_MS bash benches/findings.sh\`."
)
if ((${#BUSY[@]})); then
  BUSY_LIST=$(printf '%s and ' "${BUSY[@]}")
  NOTES+=("**Warning:** cargo/rustc was running during the ${BUSY_LIST% and } pass(es); the latency figures are noisy.")
fi
NOTE_ARGS=()
for n in "${NOTES[@]}"; do NOTE_ARGS+=(--note "$n"); done
"$FINDINGS_BIN" report --flat "$TMP/flat" --governed "$TMP/governed" --purser "$PURSER_BIN" \
  --flat-policy "$FLAT_POLICY" --governed-policy "$GOVERNED_POLICY" "${NOTE_ARGS[@]}" --out "$REPORT"
log "written to $REPORT"
