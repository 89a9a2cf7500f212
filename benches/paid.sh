# shellcheck shell=bash
# The paid section of benches/run (`SECTIONS=paid benches/run` runs it alone; its PAID_*
# knobs are documented there). `bench load --pay` through a fresh Purser per run to
# `bench merchant`: durable decisions/s (decision line fsynced before forwarding) against
# --trace-no-fsync, no payment, the held and auto-approved path, a session per
# connection and a sweep of connection counts, with the disk's raw fsync rate, Purser's
# fdatasyncs (perf tracepoint) and its CPU per request. After every run the proof log
# must hold one decision line per paid request sent and verify. Then approval latency
# (`bench approve`), the VmRSS of $PAID_HOLDS concurrent holds over HTTP, HTTPS and
# HTTP/2 against as many idle connections (`bench holds`), and the recovery time of a
# generated $PAID_RECOVERY_LINES-line proof log (`bench gen-log`). Every number goes to
# results.tsv (`rec paid KEY METRIC RUN VALUE`); report.py renders the tables.
[[ "${BASH_SOURCE[0]}" != "$0" ]] || { echo "benches/paid.sh is sourced by benches/run: run SECTIONS=paid benches/run" >&2; exit 2; }

# count_kind TRACE KIND: lines of KIND in a proof log and its rotated files.
count_kind() { cat "$1"* | grep -c "\"kind\":\"$2\"" || true; }

# cpu_ticks PID: user + system CPU time of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# paid_run KEY RUN POLICY PURSER_ARGS LOAD_ARGS: a fresh Purser (its fdatasyncs counted by
# perf), `bench load` through it to the stub merchant, then its proof log checked.
paid_run() {
  local key=$1 run=$2 policy=$3 trace=$TMP/trace-paid-$1-$2.jsonl pid perf_pid ticks fsyncs sent decisions
  local -a pargs largs
  read -r -a pargs <<<"$4"
  read -r -a largs <<<"$5"
  start_purser "paid-$key-$run" "$policy" "${pargs[@]}" || die "purser did not start ($key)"
  pid=$STARTED_PID
  if ((HAVE_PERF)); then
    start_bg "$TMP/perf-$key-$run.log" perf stat -x, -e syscalls:sys_enter_fdatasync -p "$pid" -o "$trace.perf"
    perf_pid=$STARTED_PID
    sleep 0.3
  fi
  busy_note "paid $key run $run"
  ticks=$(cpu_ticks "$pid")
  measure paid "$key" "$run" load "rps p50_us p99_us errors sent paid" load --proxy "$HOST:$PURSER_PORT" \
    --target "http://$HOST:$MERCHANT_PORT/paid" --auth "$AUTH" --duration "$DURATION" \
    --warmup "$WARMUP" "${largs[@]}" || { stop_pid "$pid"; return 0; }
  # Purser's user + system time over the run (warm-up included) per request sent.
  sent=$(kv "$OUT" sent)
  rec paid "$key" cpu_us "$run" "$(awk -v t="$(($(cpu_ticks "$pid") - ticks))" -v hz="$(getconf CLK_TCK)" \
    -v n="$sent" 'BEGIN {printf "%.0f", n ? t * 1e6 / hz / n : 0}')"
  stop_pid "$pid"
  if ((HAVE_PERF)); then
    # perf stat writes its counts when the process it watches exits (not on SIGTERM).
    for _ in $(seq 50); do kill -0 "$perf_pid" 2>/dev/null || break; sleep 0.1; done
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    fsyncs=$(awk -F, '/sys_enter_fdatasync/ {print $1}' "$trace.perf" 2>/dev/null || true)
    [[ "$fsyncs" =~ ^[0-9]+$ ]] && rec paid "$key" fsyncs "$run" "$fsyncs"
  fi
  decisions=$(count_kind "$trace" decision)
  rec paid "$key" decisions "$run" "$decisions"
  rec paid "$key" settlements "$run" "$(count_kind "$trace" settlement)"
  paid_verify "$key" "$run" "$trace"
  # One decision line per paid request sent, none without a payment.
  [[ "$(kv "$OUT" paid)" == 1 ]] || sent=0
  if [[ "$decisions" != "$sent" || "$(kv "$OUT" errors)" != 0 ]]; then
    note paid "$key run $run: $decisions decision lines for $sent paid requests, $(kv "$OUT" errors) errors"
    STATUS=1
  fi
  if [[ "$key" == durable-$PAID_CONNS && ! -f "$TMP/template.jsonl" ]]; then
    head -n 2000 "$trace" >"$TMP/template.jsonl"
  fi
  rm -f "$trace"*
}

# paid_verify KEY RUN TRACE: `purser traces verify`, recorded as verify_ok 1 or 0.
paid_verify() {
  local output
  if output=$("$PURSER_BIN" traces verify "$3" 2>&1); then
    rec paid "$1" verify_ok "$2" 1
  else
    rec paid "$1" verify_ok "$2" 0
    note paid "$1 run $2: purser traces verify FAILED: $output"
    STATUS=1
  fi
}

# paid_config KEY POLICY PURSER_ARGS LOAD_ARGS: RUNS runs of one configuration.
paid_config() {
  local run
  for run in $(seq "$RUNS"); do paid_run "$1" "$run" "$2" "$3" "$4"; done
}

# paid_profile: perf-records a durable run; the top symbols go to the report.
paid_profile() {
  start_purser paid-profile benches/paid-policy.yaml || die "purser did not start (profile)"
  local pid=$STARTED_PID
  "$BENCH" load --proxy "$HOST:$PURSER_PORT" --target "http://$HOST:$MERCHANT_PORT/paid" --auth "$AUTH" \
    --pay 1 --conns "$PAID_CONNS" --duration 8 --warmup 1 >"$TMP/profile.load" 2>/dev/null &
  local load_pid=$!
  sleep 2
  perf record -q -F 499 -p "$pid" -o "$TMP/perf.data" -- sleep 5 >/dev/null 2>&1 || true
  wait "$load_pid" || true
  stop_pid "$pid"
  perf report -i "$TMP/perf.data" --no-children --stdio --sort dso,symbol --percent-limit 1 -g none 2>/dev/null |
    grep -v '^#' | grep . | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//; s/[[:space:]]{2,}/  /g' |
    head -n 40 >"$TMP/profile.txt" || true
  meta paid_profile "$TMP/profile.txt"
  rm -f "$TMP"/trace-paid-profile*
}

# paid_holds WHAT KEYS [BENCH_ARGS...]: a fresh Purser on the hold policy, then `bench holds`.
paid_holds() {
  local what=$1 keys=$2
  shift 2
  start_purser "paid-$what" benches/paid-hold-policy.yaml || die "purser did not start ($what)"
  sleep 1
  measure paid "$what" 1 holds "$keys" holds --proxy "$HOST:$PURSER_PORT" --admin "$HOST:$ADMIN_PORT" \
    --auth "$AUTH" --count "$PAID_HOLDS" --pid "$STARTED_PID" "$@" || true
  stop_pid "$STARTED_PID"
}

# paid_recovery: a fresh Purser replaying a generated proof log of PAID_RECOVERY_LINES
# lines copied from a durable run's. The listeners are bound before recovery runs, so an
# open port proves nothing: the time is to the log line, then to /healthz answering.
paid_recovery() {
  local dir=$TMP/recovery started line pid
  [[ -f "$TMP/template.jsonl" ]] || { note paid "no template proof log from the durable run"; return 0; }
  mkdir -p "$dir"
  measure paid recovery 1 gen-log "lines=generated bytes sessions" gen-log --template "$TMP/template.jsonl" \
    --out "$dir/trace.jsonl" --lines "$PAID_RECOVERY_LINES" || return 0
  started=$(date +%s.%N)
  paid_verify recovery 1 "$dir/trace.jsonl"
  rec paid recovery verify_s 1 "$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')"
  sync
  started=$(date +%s.%N)
  RUST_LOG=info start_bg "$dir/purser.log" "$PURSER_BIN" run --listen "$HOST:$PURSER_PORT" \
    --admin-listen "$HOST:$ADMIN_PORT" --policy benches/paid-policy.yaml --ca-dir "$dir/ca" \
    --trace-log "$dir/trace.jsonl" --log-format json
  pid=$STARTED_PID
  until grep -q 'state rebuilt from the proof log' "$dir/purser.log"; do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$dir/purser.log" >&2; die "purser died on the large log"; }
    sleep 0.02
  done
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$HOST:$ADMIN_PORT/healthz" || true)" == 200 ]]; do
    kill -0 "$pid" 2>/dev/null || die "purser died on the large log"
    sleep 0.02
  done
  rec paid recovery ready_s 1 "$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')"
  line=$(grep -m1 'state rebuilt from the proof log' "$dir/purser.log")
  rec paid recovery took_ms 1 "$(grep -o '"took_ms":[0-9]*' <<<"$line" | cut -d: -f2)"
  rec paid recovery lines 1 "$(grep -o '"lines":[0-9]*' <<<"$line" | cut -d: -f2)"
  rec paid recovery rss_kb 1 "$(rss_kb "$pid")"
  log "recovery: $line"
  stop_pid "$pid"
  rm -rf "$dir"
}

# paid_mcp: x402 over MCP, one paid tools/call at a time, straight to the stub MCP
# merchant and through Purser alternately, in one run (`bench mcp`): what Purser adds at
# p50, with the decision durable, then without fsync and with JSON answers.
paid_mcp() {
  local keys="n direct_p50_us proxied_p50_us added_p50_us direct_p99_us proxied_p99_us errors" what args
  for what in mcp mcp-nofsync-json; do
    busy_note "paid $what"
    args=()
    [[ "$what" == mcp-nofsync-json ]] && args=(--trace-no-fsync)
    start_purser "paid-$what" benches/paid-policy.yaml "${args[@]}" || die "purser did not start ($what)"
    args=()
    [[ "$what" == mcp-nofsync-json ]] && args=(--json)
    measure paid "$what" 1 mcp "$keys" mcp --proxy "$HOST:$PURSER_PORT" --auth "$AUTH" \
      --count "$PAID_MCP_CALLS" "${args[@]}" || true
    stop_pid "$STARTED_PID"
  done
}

section_paid() {
  local c policy=benches/paid-policy.yaml pay=(--conns "$PAID_CONNS" --pay 1)
  HAVE_PERF=0
  if command -v perf >/dev/null && perf stat -e syscalls:sys_enter_fdatasync -- true >/dev/null 2>&1; then
    HAVE_PERF=1
  else
    note paid "perf with syscall tracepoints unavailable: fdatasync counts are n/a"
  fi
  # The disk's raw fsync rate, in the directory of the proof logs.
  measure paid disk 1 fsync "per_s p50_us p99_us" fsync --dir "$TMP" --count 1000 || true
  start_merchant
  paid_config "durable-$PAID_CONNS" "$policy" "" "${pay[*]}"
  paid_config "nofsync-$PAID_CONNS" "$policy" --trace-no-fsync "${pay[*]}"
  paid_config "plain-$PAID_CONNS" "$policy" "" "--conns $PAID_CONNS"
  paid_config "veto-$PAID_CONNS" benches/paid-veto-policy.yaml "" "${pay[*]}"
  paid_config "sessions-$PAID_CONNS" "$policy" "" "${pay[*]} --sessions $PAID_CONNS"
  for c in $PAID_SWEEP; do paid_config "durable-$c" "$policy" "" "--conns $c --pay 1"; done
  if [[ "$PROFILE" == 1 ]] && ((HAVE_PERF)); then paid_profile; fi
  stop_pid "$MERCHANT_PID"
  busy_note "paid approval latency"
  start_purser paid-approve benches/paid-hold-policy.yaml || die "purser did not start (approve)"
  measure paid approve 1 approve "n p50_us p90_us p99_us max_us negatives min_raw_us approve_rtt_p50_us" \
    approve --proxy "$HOST:$PURSER_PORT" --admin "$HOST:$ADMIN_PORT" --auth "$AUTH" \
    --count "$PAID_APPROVALS" --think-ms "$PAID_THINK_MS" || true
  stop_pid "$STARTED_PID"
  paid_mcp
  busy_note "paid holds"
  start_merchant
  local rss="rss_start_kb rss_idle_kb rss_held_kb rss_after_kb extra_kb" held=http://$HOST:$MERCHANT_PORT/held
  paid_holds holds "$rss per_hold_bytes denied" --target "$held"
  # The same holds over HTTPS: each a CONNECT tunnel Purser intercepts (TLS 1.3, HTTP/1.1
  # inside), as an SDK client behind HTTPS_PROXY sends them; then over HTTP/2 inside the
  # tunnels, 100 held payments sharing each one.
  paid_holds holds-tls "$rss per_hold_bytes denied" --target "https://$HOST:$MERCHANT_PORT/held" --tls-ca "$PURSER_CA"
  paid_holds holds-h2 "$rss per_hold_bytes denied" --target "https://$HOST:$MERCHANT_PORT/held" \
    --tls-ca "$PURSER_CA" --h2 --streams 100
  # The same number of idle keep-alive connections: the part of a hold that is the connection.
  paid_holds conns "$rss per_conn_bytes" --plain --target "http://$HOST:$MERCHANT_PORT/plain"
  stop_pid "$MERCHANT_PID"
  busy_note "paid recovery"
  paid_recovery
}

