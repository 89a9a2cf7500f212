#!/usr/bin/env bash
# Load benchmark: plain-HTTP keep-alive GETs through forward proxies.
#
# Usage (from the repo root):  bash benches/load.sh
#
# Measures, with wrk -t1 -c16 (after a short warm-up), in this order:
#   direct to origin, bare hyper proxy (benches/bare_proxy.rs), Purser,
#   squid, tinyproxy.
# Prints a Markdown table and writes it to benches/results/load-<date>.md.
#
# Environment knobs (all optional):
#   DURATION=10      seconds per measured run
#   WARMUP=2         seconds of warm-up per target (not measured)
#   PORT_BASE=18180  first of 6 consecutive loopback ports used
#   SKIP_BUILD=1     do not run cargo; use the binaries below as they are
#   ORIGIN_BIN, BARE_BIN, PURSER_BIN   override binary paths
#   PURSER=0         skip Purser (reported as n/a)
#   PURSER_POLICY=benches/bench-policy.yaml
#   PURSER_ARGS="--log-level warn"   extra arguments for `purser run`
#   PURSER_AGENT=bench PURSER_SESSION=s1 PURSER_TOKEN=bench-token
#
# Every target is on 127.0.0.1; nothing else is ever contacted (squid is
# given 127.0.0.1 as its only DNS server, and only IP-literal URLs are used).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=benches/lib.sh
source benches/lib.sh
bench_init load
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
PORT_BASE=${PORT_BASE:-18180}
THREADS=1
CONNS=16
TARGET_DIR=${CARGO_TARGET_DIR:-target}
ORIGIN_BIN=${ORIGIN_BIN:-$TARGET_DIR/release/examples/bench_origin}
BARE_BIN=${BARE_BIN:-$TARGET_DIR/release/examples/bare_proxy}
PURSER_BIN=${PURSER_BIN:-$TARGET_DIR/release/purser}
PURSER_POLICY=${PURSER_POLICY:-benches/bench-policy.yaml}
PURSER_AGENT=${PURSER_AGENT:-bench}
PURSER_SESSION=${PURSER_SESSION:-s1}
PURSER_TOKEN=${PURSER_TOKEN:-bench-token}
LUA=benches/proxy.lua

ORIGIN_PORT=$PORT_BASE
BARE_PORT=$((PORT_BASE + 1))
PURSER_PORT=$((PORT_BASE + 2))
PURSER_ADMIN_PORT=$((PORT_BASE + 3))
SQUID_PORT=$((PORT_BASE + 4))
TINY_PORT=$((PORT_BASE + 5))
ORIGIN_URL="http://$HOST:$ORIGIN_PORT/"

# ---------------------------------------------------------------- helpers
# check_once PORT|"" [AUTH]: one request must give 200 + "hello".
check_once() {
  local proxy_port=$1 auth=${2:-} code args=(-s -o "$TMP/check.body" -w '%{http_code}' --max-time 5)
  if [[ -n "$proxy_port" ]]; then
    args+=(-x "http://$HOST:$proxy_port")
    [[ -n "$auth" ]] && args+=(--proxy-header "Proxy-Authorization: $auth")
  else
    args+=(--noproxy '*')
  fi
  code=$(curl "${args[@]}" "$ORIGIN_URL" || true)
  if [[ "$code" != 200 ]] || [[ "$(cat "$TMP/check.body" 2>/dev/null)" != hello ]]; then
    printf 'pre-check got HTTP %s' "${code:-none}"
    return 1
  fi
}

# Results, keyed by target name.
declare -A RPS P50 P99 NOTE RSS_IDLE RSS_LOAD VALID
ORDER=()
INVALID=0

record_na() {
  ORDER+=("$1"); NOTE[$1]="n/a: $2"
}

# run_wrk NAME PID|"" PROXY_PORT|"" [AUTH]
# With EOF_OK=1 in its environment (tinyproxy), a target that closes the client
# connection after every response without saying so is not flagged: wrk counts
# each such close as one read error and reconnects, so read errors up to the
# number of responses (+ connections) are expected there; any other error is not.
run_wrk() {
  local name=$1 pid=$2 port=$3 auth=${4:-} url out line reason
  ORDER+=("$name")
  RSS_IDLE[$name]=-; RSS_LOAD[$name]=-
  [[ -n "$pid" ]] && RSS_IDLE[$name]=$(rss_mib "$pid")
  if ! reason=$(check_once "$port" "$auth"); then
    NOTE[$name]="INVALID: $reason"; INVALID=1
    log "$name: $reason; skipping load"
    return 0
  fi
  if [[ -n "$port" ]]; then
    url="http://$HOST:$port/"
    export WRK_TARGET_URL=$ORIGIN_URL
  else
    url=$ORIGIN_URL
    export WRK_TARGET_URL=
  fi
  export WRK_PROXY_AUTH=$auth
  log "$name: warm-up ${WARMUP}s"
  wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$LUA" "$url" >"$TMP/$name.warmup" 2>&1 || true
  log "$name: measuring ${DURATION}s"
  out="$TMP/$name.wrk"
  if ! wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$LUA" "$url" >"$out" 2>&1; then
    NOTE[$name]="INVALID: wrk failed"; INVALID=1
    sed 's/^/    /' "$out" >&2
    return 0
  fi
  [[ -n "$pid" ]] && RSS_LOAD[$name]=$(rss_mib "$pid")
  line=$(grep '^RESULT ' "$out" | tail -n1) || { NOTE[$name]="INVALID: no wrk result"; INVALID=1; return 0; }
  # shellcheck disable=SC2034 # p999_us: parsed from the RESULT line, reported by benches/run only
  local requests duration_us p50_us p99_us p999_us connect read write status timeout kv
  for kv in ${line#RESULT }; do
    printf -v "${kv%%=*}" '%s' "${kv#*=}"
  done
  RPS[$name]=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN {printf "%.0f", r / (d / 1e6)}')
  P50[$name]=$p50_us
  P99[$name]=$p99_us
  if ((requests > 0 && connect + read + write + status + timeout == 0)); then
    NOTE[$name]=ok; VALID[$name]=1
  elif [[ "${EOF_OK:-0}" == 1 ]] && ((requests > 0 && connect + write + status + timeout == 0 && read <= requests + 2 * CONNS)); then
    NOTE[$name]="ok, but no client keep-alive: closes after each response ($read reconnects, counted by wrk as read errors)"
    VALID[$name]=1
  else
    NOTE[$name]="INVALID: errors connect=$connect read=$read write=$write timeout=$timeout non-2xx/3xx=$status"
    INVALID=1
  fi
  log "$name: ${RPS[$name]} req/s, p50 ${p50_us}us, p99 ${p99_us}us (${NOTE[$name]})"
}

ratio() { # ratio NAME BASE
  local a=${RPS[$1]:-} b=${RPS[$2]:-}
  if [[ -z "$a" || -z "$b" || -z "${VALID[$1]:-}" || -z "${VALID[$2]:-}" ]]; then echo "-"; return; fi
  awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2fx", a / b}'
}

# ---------------------------------------------------------------- main
[[ "$DURATION" =~ ^[0-9]+$ && "$WARMUP" =~ ^[0-9]+$ ]] || die "DURATION and WARMUP must be whole seconds"
ensure_tools wrk squid tinyproxy curl

ports_free "$ORIGIN_PORT" "$BARE_PORT" "$PURSER_PORT" "$PURSER_ADMIN_PORT" "$SQUID_PORT" "$TINY_PORT"

PURSER_BUILD=ok
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "cargo build --release --bin purser --example bare_proxy --example bench_origin"
  if ! cargo build --release --bin purser --example bare_proxy --example bench_origin; then
    log "combined build failed; building the baseline examples alone"
    PURSER_BUILD="build failed"
    cargo build --release --example bare_proxy --example bench_origin \
      || die "baseline examples failed to build (they link the purser lib: fix src/ or use SKIP_BUILD=1 ORIGIN_BIN=.. BARE_BIN=..)"
  fi
fi
[[ -x "$ORIGIN_BIN" ]] || die "missing $ORIGIN_BIN"
[[ -x "$BARE_BIN" ]] || die "missing $BARE_BIN"

# Two cores are shared by wrk, the origin and the proxy: anything else busy
# (a cargo build in another shell) moves the numbers by 30% or more.
BUSY_TEXT=""
if cargo_busy; then
  BUSY_TEXT="cargo/rustc was running when the load started; numbers are noisy."
  log "warning: $BUSY_TEXT"
fi
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)

# Origin, shared by all runs.
start_bg "$TMP/origin.log" "$ORIGIN_BIN" --listen "$HOST:$ORIGIN_PORT"
ORIGIN_PID=$STARTED_PID
wait_port "$ORIGIN_PID" "$ORIGIN_PORT" || { cat "$TMP/origin.log" >&2; die "origin did not start"; }

# 1. direct
run_wrk direct "" ""

# 2. bare hyper proxy
start_bg "$TMP/bare.log" "$BARE_BIN" --listen "$HOST:$BARE_PORT"
if wait_port "$STARTED_PID" "$BARE_PORT"; then
  run_wrk bare_proxy "$STARTED_PID" "$BARE_PORT"
else
  cat "$TMP/bare.log" >&2; record_na bare_proxy "failed to start"; INVALID=1
fi
stop_pid "$STARTED_PID"

# 3. Purser
if [[ "${PURSER:-1}" == 0 ]]; then
  record_na purser "skipped (PURSER=0)"
elif [[ "$PURSER_BUILD" != ok ]]; then
  record_na purser "$PURSER_BUILD"
elif [[ ! -x "$PURSER_BIN" ]]; then
  record_na purser "no binary at $PURSER_BIN"
elif [[ ! -f "$PURSER_POLICY" ]]; then
  record_na purser "no $PURSER_POLICY"
else
  mkdir -p "$TMP/purser-ca"
  read -r -a purser_args <<<"${PURSER_ARGS:-}"
  start_bg "$TMP/purser.log" "$PURSER_BIN" run --listen "$HOST:$PURSER_PORT" --admin-listen "$HOST:$PURSER_ADMIN_PORT" \
    --policy "$PURSER_POLICY" --ca-dir "$TMP/purser-ca" "${purser_args[@]}"
  if wait_port "$STARTED_PID" "$PURSER_PORT" 30; then
    sleep 1 # let start-up allocations settle before reading idle RSS
    auth="Basic $(printf '%s' "$PURSER_AGENT.$PURSER_SESSION:$PURSER_TOKEN" | base64 -w0)"
    run_wrk purser "$STARTED_PID" "$PURSER_PORT" "$auth"
  else
    log "purser failed to start; log:"; sed 's/^/    /' "$TMP/purser.log" | tail -n 20 >&2
    record_na purser "failed to start"
  fi
  stop_pid "$STARTED_PID"
fi

# 4. squid (benches/lib.sh: caching and access log off, 127.0.0.1 as its only DNS server)
start_squid "$TMP/squid" "$SQUID_PORT"
if wait_port "$STARTED_PID" "$SQUID_PORT" 30; then
  run_wrk squid "$STARTED_PID" "$SQUID_PORT"
else
  log "squid failed to start; logs:"; tail -n 20 "$TMP/squid/squid.out" "$TMP/squid/cache.log" >&2 || true
  record_na squid "failed to start"; INVALID=1
fi
stop_pid "$STARTED_PID"

# 5. tinyproxy
start_tinyproxy "$TMP/tinyproxy" "$TINY_PORT"
if wait_port "$STARTED_PID" "$TINY_PORT"; then
  EOF_OK=1 run_wrk tinyproxy "$STARTED_PID" "$TINY_PORT"
else
  log "tinyproxy failed to start; logs:"; tail -n 20 "$TMP/tinyproxy/tinyproxy.out" "$TMP/tinyproxy/tinyproxy.log" >&2 || true
  record_na tinyproxy "failed to start"; INVALID=1
fi
stop_pid "$STARTED_PID"

# ---------------------------------------------------------------- report
mkdir -p benches/results
REPORT="benches/results/load-$(date +%Y-%m-%d-%H%M%S).md"
{
  echo "# Purser load benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo
  echo "wrk -t$THREADS -c$CONNS -d${DURATION}s (after ${WARMUP}s warm-up), plain-HTTP keep-alive GET of a 6-byte body," \
    "$(nproc) CPUs shared by wrk, origin and proxy; $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)," \
    "$(squid -v | head -n1), $(tinyproxy -v 2>&1 | head -n1)," \
    "commit $(git rev-parse --short HEAD 2>/dev/null || echo none), load average before: $LOADAVG."
  if [[ -n "$BUSY_TEXT" ]]; then echo; echo "**Warning:** $BUSY_TEXT"; fi
  echo
  echo "| target | req/s | p50 (µs) | p99 (µs) | vs bare proxy | vs squid | RSS idle (MiB) | RSS after load (MiB) | status |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
  for name in "${ORDER[@]}"; do
    echo "| $name | ${RPS[$name]:--} | ${P50[$name]:--} | ${P99[$name]:--} | $(ratio "$name" bare_proxy) | $(ratio "$name" squid) | ${RSS_IDLE[$name]:--} | ${RSS_LOAD[$name]:--} | ${NOTE[$name]} |"
  done
} | tee "$REPORT"
log "written to $REPORT"

((INVALID == 0)) || { log "some runs are INVALID (see status column)"; exit 1; }
