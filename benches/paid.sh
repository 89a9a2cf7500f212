#!/usr/bin/env bash
# Paid-path benchmark: durable payment decisions through Purser.
#
# Usage (from anywhere):  bash benches/paid.sh
#
# Builds release binaries (purser, and `bench`, whose `load`, `approve`, `holds`,
# `fsync`, `gen-log` and `merchant` subcommands do the work), then measures, each
# against a fresh Purser with its own temporary proof log and CA (all on 127.0.0.1):
#   1. durable paid decisions/s (PAYMENT-SIGNATURE on every request, decision line fsynced
#      before forwarding) with C keep-alive connections; the same with --trace-no-fsync;
#      the plain path (no payment header) for reference; the disk's raw fsync rate and
#      Purser's fdatasync count (perf tracepoint), hence trace lines per fsync. After each
#      run the proof log must hold one decision line per request sent and verify.
#   2. the held-and-auto-approved path (notify_with_veto tier, 1 ms veto window);
#   3. approval latency: approve call returning -> held request reaching the upstream;
#   4. VmRSS growth for 1,000 concurrent held requests;
#   5. recovery time of a 1,000,000-line proof log.
# Prints a Markdown report and writes it to benches/results/paid-<date>.md.
#
# Environment knobs (all optional):
#   DURATION=10 WARMUP=2     seconds per measured load run, and of warm-up before it
#   RUNS=3                   runs per load configuration (the median is reported)
#   CONNS=64                 connections for the headline runs
#   SWEEP="16 256"           extra connection counts for the durable run
#   APPROVALS=200 THINK_MS=20  approval-latency samples; wait before each approve
#   HOLDS=1000               concurrent holds for the RSS figure
#   RECOVERY_LINES=1000000   lines of the generated proof log
#   PROFILE=0                1: perf-record one durable run and add the top symbols
#   PORT_BASE=18280          first of 3 consecutive loopback ports
#   SKIP_BUILD=1             use the binaries in target/release as they are
#   QUIET_WAIT=900           seconds to wait for other cargo/rustc processes to finish
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=benches/lib.sh
source benches/lib.sh
bench_init paid
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
RUNS=${RUNS:-3}
CONNS=${CONNS:-64}
SWEEP=${SWEEP:-16 256}
APPROVALS=${APPROVALS:-200}
THINK_MS=${THINK_MS:-20}
HOLDS=${HOLDS:-1000}
RECOVERY_LINES=${RECOVERY_LINES:-1000000}
PROFILE=${PROFILE:-0}
PORT_BASE=${PORT_BASE:-18280}
QUIET_WAIT=${QUIET_WAIT:-900}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
PURSER_BIN=$TARGET_DIR/release/purser
BENCH=$TARGET_DIR/release/examples/bench
AUTH=bench.s1:bench-token

UPSTREAM_PORT=$PORT_BASE
PROXY_PORT=$((PORT_BASE + 1))
ADMIN_PORT=$((PORT_BASE + 2))
TARGET_URL="http://$HOST:$UPSTREAM_PORT/paid"

# result FILE KEY: a value from the RESULT line of a `bench` output file.
result() { grep -m1 '^RESULT ' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# start_purser NAME POLICY [EXTRA ARGS...]: a fresh Purser with its own log and CA.
# Sets PURSER_PID and RUN_DIR.
start_purser() {
  local name=$1 policy=$2; shift 2
  RUN_DIR=$TMP/$name
  mkdir -p "$RUN_DIR"
  start_bg "$RUN_DIR/purser.log" "$PURSER_BIN" run --listen "$HOST:$PROXY_PORT" \
    --admin-listen "$HOST:$ADMIN_PORT" --policy "$policy" --ca-dir "$RUN_DIR/ca" \
    --trace-log "$RUN_DIR/trace.jsonl" --log-level warn "$@"
  PURSER_PID=$STARTED_PID
  if ! wait_port "$PURSER_PID" "$ADMIN_PORT" 60; then
    sed 's/^/    /' "$RUN_DIR/purser.log" | tail -n 20 >&2
    die "purser did not start ($name)"
  fi
}

# cpu_ticks PID: user + system CPU time of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)

# Counts every line kind in the run's proof log (rotated files included).
count_kind() { cat "$RUN_DIR"/trace.jsonl* | grep -c "\"kind\":\"$1\"" || true; }

# ---------------------------------------------------------------- load runs
declare -A CELL
CHECKS=()
FAILED=0

# load_run KEY POLICY PURSER_ARGS LOAD_ARGS: one run, appended to the lists of KEY.
load_run() {
  local key=$1 policy=$2 purser_args=$3 load_args=$4 run=$5 out perf_out
  local -a pargs largs
  read -r -a pargs <<<"$purser_args"
  read -r -a largs <<<"$load_args"
  start_purser "$key-$run" "$policy" "${pargs[@]}"
  perf_out=$RUN_DIR/perf.txt
  if ((HAVE_PERF)); then
    perf stat -x, -e syscalls:sys_enter_fdatasync -p "$PURSER_PID" -o "$perf_out" >/dev/null 2>&1 &
    PERF_PID=$!
    PIDS+=("$PERF_PID")
    sleep 0.3
  fi
  busy_note "$key run $run"
  local cpu_before cpu_after
  cpu_before=$(cpu_ticks "$PURSER_PID")
  out=$RUN_DIR/load.out
  log "$key (run $run/$RUNS): $BENCH load ${largs[*]}"
  if ! "$BENCH" load --proxy "$HOST:$PROXY_PORT" --target "$TARGET_URL" --auth "$AUTH" \
    --duration "$DURATION" --warmup "$WARMUP" "${largs[@]}" >"$out" 2>"$RUN_DIR/load.err"; then
    sed 's/^/    /' "$RUN_DIR/load.err" >&2
    die "bench load failed ($key)"
  fi
  cpu_after=$(cpu_ticks "$PURSER_PID")
  stop_pid "$PURSER_PID"
  local fsyncs=- sent decisions settlements verify
  if ((HAVE_PERF)); then
    # perf stat writes its counts when the process it watches exits (not on SIGTERM).
    for _ in $(seq 50); do kill -0 "$PERF_PID" 2>/dev/null || break; sleep 0.1; done
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    fsyncs=$(awk -F, '/sys_enter_fdatasync/ {print $1}' "$perf_out" 2>/dev/null || true)
    [[ "$fsyncs" =~ ^[0-9]+$ ]] || fsyncs=-
  fi
  sent=$(result "$out" sent)
  decisions=$(count_kind decision)
  settlements=$(count_kind settlement)
  if verify=$("$PURSER_BIN" traces verify "$RUN_DIR/trace.jsonl" 2>&1); then verify=ok; else verify="FAILED: $verify"; FAILED=1; fi
  local errors
  errors=$(result "$out" errors)
  log "$key: $(grep '^RESULT' "$out" | cut -d' ' -f2-)"
  log "$key: decision lines $decisions for $sent requests, settlements $settlements, fdatasyncs $fsyncs, verify $verify"
  [[ -s "$RUN_DIR/load.err" ]] && sed 's/^/    /' "$RUN_DIR/load.err" >&2
  CELL[$key,rps]+="$(result "$out" rps) "
  CELL[$key,p50]+="$(result "$out" p50_us) "
  CELL[$key,p99]+="$(result "$out" p99_us) "
  CELL[$key,errors]+="$errors "
  CELL[$key,cpu]+="$(awk -v t="$((cpu_after - cpu_before))" -v hz="$CLK_TCK" -v n="$sent" 'BEGIN {printf "%.0f", n ? t * 1e6 / hz / n : 0}') "
  if [[ "$fsyncs" != - ]]; then
    CELL[$key,fsyncs_s]+="$(awk -v f="$fsyncs" -v t="$((DURATION + WARMUP))" 'BEGIN {printf "%.0f", f / t}') "
  fi
  if [[ "$fsyncs" != - && "$fsyncs" != 0 && "$decisions" -gt 0 ]]; then
    CELL[$key,per_fsync]+="$(awk -v d="$decisions" -v f="$fsyncs" 'BEGIN {printf "%.1f", d / f}') "
  fi
  local expect_decisions=$sent
  [[ "$load_args" == *--pay* ]] || expect_decisions=0
  local check="$key run $run: sent $sent, decision lines $decisions, settlements $settlements, errors $errors, verify $verify"
  if [[ "$decisions" != "$expect_decisions" || "$errors" != 0 || "$verify" != ok ]]; then
    check="**MISMATCH** $check"; FAILED=1
  fi
  CHECKS+=("$check")
  if [[ "$key" == durable-$CONNS && ! -f "$TMP/template.jsonl" ]]; then
    head -n 2000 "$RUN_DIR/trace.jsonl" >"$TMP/template.jsonl"
  fi
  rm -rf "$RUN_DIR"
}

# config KEY LABEL POLICY PURSER_ARGS LOAD_ARGS: RUNS runs of one configuration.
ORDER=()
declare -A LABEL
config() {
  local key=$1 run
  ORDER+=("$key"); LABEL[$key]=$2
  for run in $(seq "$RUNS"); do
    load_run "$key" "$3" "$4" "$5" "$run"
  done
}

cell() { # cell KEY FIELD: "median (min–max)" over the runs
  local values=${CELL[$1,$2]:-}
  [[ -n "${values// /}" ]] || { echo "-"; return; }
  local m r
  m=$(tr ' ' '\n' <<<"$values" | grep . | median)
  r=$(tr ' ' '\n' <<<"$values" | grep . | range)
  if [[ "$r" == - ]]; then echo "$m"; else echo "$m ($r)"; fi
}

# ---------------------------------------------------------------- main
[[ "$DURATION" =~ ^[0-9]+$ && "$WARMUP" =~ ^[0-9]+$ && "$RUNS" =~ ^[1-9][0-9]*$ ]] ||
  die "DURATION, WARMUP and RUNS must be whole numbers"
ports_free "$UPSTREAM_PORT" "$PROXY_PORT" "$ADMIN_PORT"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "cargo build --release --bin purser --example bench"
  cargo build --release --bin purser --example bench
fi
for bin in "$PURSER_BIN" "$BENCH"; do
  [[ -x "$bin" ]] || die "missing $bin"
done
HAVE_PERF=0
if command -v perf >/dev/null && perf stat -e syscalls:sys_enter_fdatasync -- true >/dev/null 2>&1; then
  HAVE_PERF=1
else
  log "perf with syscall tracepoints unavailable: fdatasync counts will be n/a"
fi

wait_quiet "$QUIET_WAIT"
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u '+%Y-%m-%d %H:%M:%S UTC')

# Raw fsync rate of the disk the proof logs are on.
log "raw fsync rate in $TMP"
"$BENCH" fsync --dir "$TMP" --count 1000 >"$TMP/fsync.out"
FSYNC_RATE=$(result "$TMP/fsync.out" per_s)
FSYNC_P50=$(result "$TMP/fsync.out" p50_us)
FSYNC_P99=$(result "$TMP/fsync.out" p99_us)
log "raw: $FSYNC_RATE fsyncs/s (p50 ${FSYNC_P50}us, p99 ${FSYNC_P99}us)"

start_bg "$TMP/upstream.log" "$BENCH" merchant --listen "$HOST:$UPSTREAM_PORT"
wait_port "$STARTED_PID" "$UPSTREAM_PORT" || die "bench merchant did not start"

config "durable-$CONNS" "paid, durable (fsync)" benches/paid-policy.yaml "" "--conns $CONNS --pay 1"
config "nofsync-$CONNS" "paid, --trace-no-fsync" benches/paid-policy.yaml "--trace-no-fsync" "--conns $CONNS --pay 1"
config "plain-$CONNS" "plain, no payment header" benches/paid-policy.yaml "" "--conns $CONNS"
config "veto-$CONNS" "paid, held 1 ms (notify_with_veto), durable" benches/paid-veto-policy.yaml "" "--conns $CONNS --pay 1"
config "sessions-$CONNS" "paid, durable, a session per connection" benches/paid-policy.yaml "" "--conns $CONNS --pay 1 --sessions $CONNS"
for c in $SWEEP; do
  config "durable-$c" "paid, durable (fsync)" benches/paid-policy.yaml "" "--conns $c --pay 1"
done

# Optional profile of the durable path.
PROFILE_TEXT=""
if [[ "$PROFILE" == 1 ]] && ((HAVE_PERF)); then
  start_purser profile benches/paid-policy.yaml
  "$BENCH" load --proxy "$HOST:$PROXY_PORT" --target "$TARGET_URL" --auth "$AUTH" \
    --pay 1 --conns "$CONNS" --duration 8 --warmup 1 >"$RUN_DIR/load.out" 2>/dev/null &
  LOAD_PID=$!
  sleep 2
  perf record -q -F 499 -p "$PURSER_PID" -o "$RUN_DIR/perf.data" -- sleep 5 >/dev/null 2>&1 || true
  wait "$LOAD_PID" || true
  stop_pid "$PURSER_PID"
  PROFILE_TEXT=$(perf report -i "$RUN_DIR/perf.data" --no-children --stdio --sort dso,symbol \
    --percent-limit 1 -g none 2>/dev/null | grep -v '^#' | grep . |
    sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//; s/[[:space:]]{2,}/  /g' | head -n 40 || true)
  rm -rf "$RUN_DIR"
fi

# Approval latency.
busy_note "approval latency"
start_purser approve benches/paid-hold-policy.yaml
log "approval latency: $APPROVALS sequential holds"
"$BENCH" approve --proxy "$HOST:$PROXY_PORT" --admin "$HOST:$ADMIN_PORT" --auth "$AUTH" \
  --count "$APPROVALS" --think-ms "$THINK_MS" >"$RUN_DIR/approve.out" 2>"$RUN_DIR/approve.err" ||
  { cat "$RUN_DIR/approve.err" >&2; die "approval latency run failed"; }
APPROVE_OUT=$(cat "$RUN_DIR/approve.out")
log "$APPROVE_OUT"
stop_pid "$PURSER_PID"

# RSS of concurrent holds.
busy_note "holds RSS"
# hold_rss NAME WHAT [LOAD_ARGS...]: a fresh Purser ($TMP/NAME) on the hold policy, then
# `bench holds` with LOAD_ARGS; its RESULT line is left in HOLD_RSS.
hold_rss() {
  local name=$1 what=$2
  shift 2
  start_purser "$name" benches/paid-hold-policy.yaml
  sleep 1
  log "$HOLDS $what"
  "$BENCH" holds --proxy "$HOST:$PROXY_PORT" --admin "$HOST:$ADMIN_PORT" --auth "$AUTH" \
    --count "$HOLDS" --pid "$PURSER_PID" "$@" >"$RUN_DIR/holds.out" 2>"$RUN_DIR/holds.err" ||
    { cat "$RUN_DIR/holds.err" >&2; die "$HOLDS $what: run failed"; }
  HOLD_RSS=$(cat "$RUN_DIR/holds.out")
  log "$HOLD_RSS"
  stop_pid "$PURSER_PID"
}
hold_rss holds "concurrent holds" --target "http://$HOST:$UPSTREAM_PORT/held"
HOLDS_OUT=$HOLD_RSS
# The same holds over HTTPS: each a CONNECT tunnel Purser intercepts (TLS 1.3, HTTP/1.1
# inside), as an SDK client behind HTTPS_PROXY sends them; then over HTTP/2 inside the
# tunnels, 100 held payments sharing each one.
hold_rss holds-tls "concurrent holds over HTTPS" --target "https://$HOST:$UPSTREAM_PORT/held" \
  --tls-ca "$TMP/holds-tls/ca/purser-ca.pem"
TLS_HOLDS_OUT=$HOLD_RSS
hold_rss holds-h2 "concurrent holds over HTTPS, HTTP/2, 100 per tunnel" \
  --target "https://$HOST:$UPSTREAM_PORT/held" --tls-ca "$TMP/holds-h2/ca/purser-ca.pem" --h2 --streams 100
H2_HOLDS_OUT=$HOLD_RSS
# The same number of idle keep-alive connections: the part of a hold that is the connection.
hold_rss conns "idle keep-alive connections" --plain --target "http://$HOST:$UPSTREAM_PORT/plain"
CONNS_OUT=$HOLD_RSS

# Recovery of a large proof log.
busy_note "recovery"
[[ -f "$TMP/template.jsonl" ]] || die "no template proof log from the durable run"
REC_DIR=$TMP/recovery
mkdir -p "$REC_DIR"
log "generating a $RECOVERY_LINES-line proof log"
"$BENCH" gen-log --template "$TMP/template.jsonl" --out "$REC_DIR/trace.jsonl" \
  --lines "$RECOVERY_LINES" >"$REC_DIR/gen.out"
REC_BYTES=$(result "$REC_DIR/gen.out" bytes)
REC_LINES=$(result "$REC_DIR/gen.out" lines)
REC_SESSIONS=$(result "$REC_DIR/gen.out" sessions)
VERIFY_START=$(date +%s.%N)
if REC_VERIFY=$("$PURSER_BIN" traces verify "$REC_DIR/trace.jsonl" 2>&1); then REC_VERIFY=ok; else REC_VERIFY="FAILED: $REC_VERIFY"; FAILED=1; fi
VERIFY_S=$(awk -v a="$VERIFY_START" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
sync
LAUNCH=$(date +%s.%N)
RUST_LOG=info start_bg "$REC_DIR/purser.log" "$PURSER_BIN" run --listen "$HOST:$PROXY_PORT" \
  --admin-listen "$HOST:$ADMIN_PORT" --policy benches/paid-policy.yaml --ca-dir "$REC_DIR/ca" \
  --trace-log "$REC_DIR/trace.jsonl" --log-format json
REC_PID=$STARTED_PID
# The listeners are bound before recovery runs, so an open port proves nothing: wait for
# the log line, then for /healthz to answer.
until grep -q 'state rebuilt from the proof log' "$REC_DIR/purser.log"; do
  kill -0 "$REC_PID" 2>/dev/null || { tail -n 20 "$REC_DIR/purser.log" >&2; die "purser died on the large log"; }
  sleep 0.02
done
until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$HOST:$ADMIN_PORT/healthz" || true)" == 200 ]]; do
  kill -0 "$REC_PID" 2>/dev/null || die "purser died on the large log"
  sleep 0.02
done
READY_S=$(awk -v a="$LAUNCH" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
REC_LINE=$(grep -m1 'state rebuilt from the proof log' "$REC_DIR/purser.log")
TOOK_MS=$(grep -o '"took_ms":[0-9]*' <<<"$REC_LINE" | cut -d: -f2 || true)
RECOVERED=$(grep -o '"lines":[0-9]*' <<<"$REC_LINE" | cut -d: -f2 || true)
REC_RSS=$(awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$REC_PID/status")
log "recovery: ${TOOK_MS:-?} ms for ${RECOVERED:-?} lines, ready after ${READY_S}s, RSS ${REC_RSS} MiB"
stop_pid "$REC_PID"
rm -rf "$REC_DIR"

# ---------------------------------------------------------------- report
mkdir -p benches/results
REPORT="benches/results/paid-$(date +%Y-%m-%d-%H%M%S).md"
kv() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }
fmt_ms() { awk -v v="$1" 'BEGIN {if (v == "" || v == "-") print "-"; else printf "%.2f", v / 1000}'; }
{
  echo "# Purser paid-path benchmark, $STARTED"
  echo
  echo "$(nproc) CPUs shared by the load generator (1 thread), the stub upstream (1 thread) and Purser;" \
    "${DURATION}s measured after ${WARMUP}s warm-up, median of $RUNS runs (range in brackets);" \
    "one agent session unless said otherwise, a unique x402 v2 payment of 1 atomic USDC unit per request;" \
    "commit $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet -- src 2>/dev/null || echo ' + uncommitted src changes')," \
    "load average before: $LOADAVG."
  if ((${#BUSY[@]})); then echo; echo "**Warning:** cargo/rustc was running during: ${BUSY[*]}; those numbers are noisy."; fi
  echo
  echo "## Decisions per second"
  echo
  echo "Raw disk: **$FSYNC_RATE fsyncs/s** (100-byte append + fdatasync, p50 ${FSYNC_P50} µs, p99 ${FSYNC_P99} µs), same directory as the proof logs."
  echo
  echo "| path | conns | decisions/s (req/s) | p50 (ms) | p99 (ms) | Purser CPU per request (µs) | Purser fdatasyncs/s | decisions per fsync | errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for key in "${ORDER[@]}"; do
    local_p50=$(tr ' ' '\n' <<<"${CELL[$key,p50]}" | grep . | median)
    local_p99=$(tr ' ' '\n' <<<"${CELL[$key,p99]}" | grep . | median)
    echo "| ${LABEL[$key]} | ${key##*-} | $(cell "$key" rps) | $(fmt_ms "$local_p50") | $(fmt_ms "$local_p99") | $(cell "$key" cpu) | $(cell "$key" fsyncs_s) | $(cell "$key" per_fsync) | $(tr ' ' '+' <<<"${CELL[$key,errors]% }") |"
  done
  echo
  echo "Target: ≥ 10,000 durable decisions/s. fdatasyncs are counted with perf's" \
    "syscalls:sys_enter_fdatasync tracepoint over the whole run (warm-up included), so" \
    "'per fsync' is decision lines ÷ fdatasync calls; each also carries the settlement lines of that batch." \
    "CPU per request is Purser's user + system time over the run ÷ requests sent (warm-up included)."
  echo
  echo "### Proof-log checks"
  echo
  for c in "${CHECKS[@]}"; do echo "* $c"; done
  echo
  echo "## Approval latency"
  echo
  echo "$APPROVALS sequential holds (single_call_threshold 0), each approved ${THINK_MS} ms after it is listed;" \
    "measured from the approve call returning to the held request reaching the stub upstream" \
    "(the upstream runs in the load generator's process: same monotonic clock)."
  echo
  echo "| n | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | arrived before the approve answer | approve call p50 (ms) |"
  echo "|---:|---:|---:|---:|---:|---:|---:|"
  echo "| $(kv "$APPROVE_OUT" n) | $(fmt_ms "$(kv "$APPROVE_OUT" p50_us)") | $(fmt_ms "$(kv "$APPROVE_OUT" p90_us)") | $(fmt_ms "$(kv "$APPROVE_OUT" p99_us)") | $(fmt_ms "$(kv "$APPROVE_OUT" max_us)") | $(kv "$APPROVE_OUT" negatives) (counted as 0; earliest $(fmt_ms "$(kv "$APPROVE_OUT" min_raw_us)") ms) | $(fmt_ms "$(kv "$APPROVE_OUT" approve_rtt_p50_us)") |"
  echo
  echo "Target: ≤ 2 ms median."
  echo
  echo "## Memory of $HOLDS concurrent holds"
  echo
  echo "| $HOLDS open … | VmRSS at start | after a warm-up of 10 | with $HOLDS open | after closing them | extra | per one |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}'; }
  echo "| held payments | $(mib "$(kv "$HOLDS_OUT" rss_start_kb)") | $(mib "$(kv "$HOLDS_OUT" rss_idle_kb)") | $(mib "$(kv "$HOLDS_OUT" rss_held_kb)") | $(mib "$(kv "$HOLDS_OUT" rss_after_kb)") | **$(mib "$(kv "$HOLDS_OUT" extra_kb)")** | $(kv "$HOLDS_OUT" per_hold_bytes) B |"
  echo "| held payments over HTTPS (fresh Purser) | $(mib "$(kv "$TLS_HOLDS_OUT" rss_start_kb)") | $(mib "$(kv "$TLS_HOLDS_OUT" rss_idle_kb)") | $(mib "$(kv "$TLS_HOLDS_OUT" rss_held_kb)") | $(mib "$(kv "$TLS_HOLDS_OUT" rss_after_kb)") | **$(mib "$(kv "$TLS_HOLDS_OUT" extra_kb)")** | $(kv "$TLS_HOLDS_OUT" per_hold_bytes) B |"
  echo "| held payments over HTTPS, HTTP/2, 100 per tunnel (fresh Purser) | $(mib "$(kv "$H2_HOLDS_OUT" rss_start_kb)") | $(mib "$(kv "$H2_HOLDS_OUT" rss_idle_kb)") | $(mib "$(kv "$H2_HOLDS_OUT" rss_held_kb)") | $(mib "$(kv "$H2_HOLDS_OUT" rss_after_kb)") | **$(mib "$(kv "$H2_HOLDS_OUT" extra_kb)")** | $(kv "$H2_HOLDS_OUT" per_hold_bytes) B |"
  echo "| idle keep-alive connections (fresh Purser) | $(mib "$(kv "$CONNS_OUT" rss_start_kb)") | $(mib "$(kv "$CONNS_OUT" rss_idle_kb)") | $(mib "$(kv "$CONNS_OUT" rss_held_kb)") | $(mib "$(kv "$CONNS_OUT" rss_after_kb)") | $(mib "$(kv "$CONNS_OUT" extra_kb)") | $(kv "$CONNS_OUT" per_conn_bytes) B |"
  echo
  echo "Target: ≤ 20 MB extra. Each hold is a client connection kept open; $(kv "$HOLDS_OUT" denied), $(kv "$TLS_HOLDS_OUT" denied) and $(kv "$H2_HOLDS_OUT" denied) of $HOLDS answered 403 after the deny." \
    "The first row sends each as an absolute-form \`http://\` request; the second through a \`CONNECT\` tunnel that Purser intercepts (TLS 1.3, HTTP/1.1 inside, as the x402 SDK's \`requests\` client behind \`HTTPS_PROXY\`), so each hold also carries its TLS session and the tunnel; the third shares each tunnel among 100 holds over HTTP/2 (hyper's server allows 200 streams per connection)." \
    "The fourth row opens the same number of plain connections, each after one plain GET, and leaves them idle." \
    "Listing holds (polled every 50 ms while they open) is part of the cost measured."
  echo
  echo "## Recovery"
  echo
  echo "| lines | size | sessions | took_ms (log line) | start to /healthz answering | VmRSS after | traces verify |"
  echo "|---:|---:|---:|---:|---:|---:|---|"
  echo "| ${RECOVERED:-?} (generated $REC_LINES) | $(awk -v b="$REC_BYTES" 'BEGIN {printf "%.0f MiB", b / 1048576}') | $REC_SESSIONS | **$(awk -v m="${TOOK_MS:-0}" 'BEGIN {printf "%.2f s", m / 1000}')** | ${READY_S} s | ${REC_RSS} MiB | $REC_VERIFY (${VERIFY_S} s) |"
  echo
  echo "Target: ≤ 5 s. The log alternates ALLOWED decision and committed settlement lines copied" \
    "from this run's own proof log (fresh trace ids, keys, sessions, times over 7 days), hash-chained," \
    "read from a warm page cache. took_ms is the replay alone; the time to /healthz also covers" \
    "opening the log (which reads it once more for the last hash) and start-up."
  if [[ -n "$PROFILE_TEXT" ]]; then
    echo
    echo "## Profile of the durable path (perf, Purser only, top symbols)"
    echo
    echo '```'
    echo "$PROFILE_TEXT"
    echo '```'
  fi
} | tee "$REPORT"
log "written to $REPORT"
((FAILED == 0)) || { log "some checks failed (see the report)"; exit 1; }
