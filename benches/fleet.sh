# shellcheck shell=bash
# The fleet section of benches/run (`SECTIONS=fleet benches/run`): FLEET_REPLICAS (at
# least 3) Purser replicas on loopback sharing one PostgreSQL that the section starts
# itself (initdb in $TMP; as the postgres user when run as root), the stub merchant and
# facilitator behind them, and `bench load --pay` through every replica at once: unique
# payments, one shared agent budget.
#
# * throughput: durable decisions/s, closed loop, FLEET_CONNS connections per replica,
#   for the embedded default (one process, no store, as many connections in all), one
#   replica on the store, and FLEET_REPLICAS replicas (the scaling from 1 to N);
# * latency: an open loop at FLEET_RATE payments/s over the whole fleet, p50 and p99,
#   against the embedded default at the same rate (the added latency);
# * overspend: an agent budget of FLEET_BUDGET USD that the run exhausts; what the
#   facilitator settled against the limit, the store's books and the proof logs. Again
#   with one replica SIGKILLed mid-run, and with PostgreSQL killed and restarted mid-run;
# * approval forwarding: a payment held on replica B, approved through replica A's admin
#   API (`bench approve`): from the approve call to the request reaching the merchant.
#
# Knobs: FLEET_REPLICAS=3 FLEET_CONNS=100 FLEET_RATE=600 FLEET_BUDGET=20 FLEET_APPROVALS=100
# PG_BIN (default: the newest /usr/lib/postgresql/*/bin).
[[ "${BASH_SOURCE[0]}" != "$0" ]] || { echo "benches/fleet.sh is sourced by benches/run: run SECTIONS=fleet benches/run" >&2; exit 2; }

FLEET_REPLICAS=${FLEET_REPLICAS:-3}
FLEET_CONNS=${FLEET_CONNS:-100}
FLEET_RATE=${FLEET_RATE:-600}
FLEET_BUDGET=${FLEET_BUDGET:-20}
FLEET_APPROVALS=${FLEET_APPROVALS:-100}
PG_PORT=$((${PORT_BASE:-18500} + 9))
# Replica i listens on FLEET_PORT+2i (proxy) and FLEET_PORT+2i+1 (admin).
FLEET_PORT=$((${PORT_BASE:-18500} + 10))
PG_PID=""
FLEET_PIDS=()
FLEET_DB=0
FLEET_URL=""
FLEET_TOLERATE=0

# pg_bin: the PostgreSQL server binaries.
pg_bin() {
  if [[ -n "${PG_BIN:-}" ]]; then echo "$PG_BIN"; return; fi
  find /usr/lib/postgresql -maxdepth 3 -name postgres -path '*/bin/*' 2>/dev/null | sort -V | tail -n1 | xargs -r dirname
}

# as_pg CMD...: CMD as the postgres user when this runs as root (PostgreSQL refuses root).
AS_PG=()
[[ $(id -u) == 0 ]] && AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --)
as_pg() { "${AS_PG[@]}" "$@"; }

# pg_server: the postgres command line (setpriv execs it: its pid is the postmaster's).
pg_server() {
  PG_CMD=("${AS_PG[@]}" "$(pg_bin)/postgres" -D "$TMP/pg/data" -p "$PG_PORT" -k "$TMP/pg"
    -c listen_addresses="$HOST" -c max_connections=300 -c shared_buffers=256MB)
}

# pg_start: initdb once, then the server on PG_PORT; PG_PID is the postmaster.
pg_start() {
  local bin dir=$TMP/pg
  bin=$(pg_bin)
  [[ -n "$bin" ]] || die "PostgreSQL is not installed (apt-get install postgresql, or set PG_BIN)"
  [[ -x "$bin/postgres" ]] || die "PostgreSQL is not installed (apt-get install postgresql, or set PG_BIN)"
  if [[ ! -d "$dir/data" ]]; then
    # The postgres user must be able to reach its directory inside the temp dir.
    chmod 711 "$TMP"
    mkdir -p "$dir"
    [[ $(id -u) == 0 ]] && chown -R postgres:postgres "$dir"
    as_pg "$bin/initdb" -U postgres --auth=trust -E UTF8 -D "$dir/data" >"$TMP/initdb.log" 2>&1 ||
      { cat "$TMP/initdb.log" >&2; die "initdb failed"; }
    meta postgresql "$("$bin/postgres" --version)"
  fi
  pg_server
  start_bg "$TMP/pg.log" "${PG_CMD[@]}"
  PG_PID=$STARTED_PID
  pg_wait || { tail -n 20 "$TMP/pg.log" >&2; die "PostgreSQL did not start"; }
}

# pg_wait: until the server accepts connections (a minute at most).
pg_wait() {
  local i
  for i in $(seq 600); do
    as_pg "$(pg_bin)/pg_isready" -q -h "$HOST" -p "$PG_PORT" && return 0
    sleep 0.1
  done
  return 1
}

# pg_crash_and_restart: in the background, a crash and a new server on the same data;
# its pid is left in $TMP/pg.pid for the script to adopt.
pg_crash_and_restart() {
  pg_crash
  pg_server
  local i
  for i in $(seq 50); do
    "${PG_CMD[@]}" >>"$TMP/pg.log" 2>&1 &
    echo $! >"$TMP/pg.pid"
    sleep 1
    kill -0 "$(cat "$TMP/pg.pid")" 2>/dev/null && return 0
  done
}

# pg_crash: SIGKILL to the postmaster and every process it started, as a crash would.
pg_crash() {
  local children
  children=$(ps -o pid= --ppid "$PG_PID" 2>/dev/null | tr '\n' ' ')
  # shellcheck disable=SC2086
  kill -KILL "$PG_PID" $children 2>/dev/null || true
  wait "$PG_PID" 2>/dev/null || true
}

# pg_db: a fresh database, fleetN; its URL in FLEET_URL.
pg_db() {
  FLEET_DB=$((FLEET_DB + 1))
  as_pg "$(pg_bin)/psql" -q -h "$HOST" -p "$PG_PORT" -U postgres -c "CREATE DATABASE fleet$FLEET_DB" >/dev/null
  FLEET_URL="postgres://postgres@$HOST:$PG_PORT/fleet$FLEET_DB?sslmode=disable"
}

# pg_sql DB SQL: one value.
pg_sql() {
  as_pg "$(pg_bin)/psql" -XAtq -h "$HOST" -p "$PG_PORT" -U postgres -d "$1" -c "$2"
}

# fleet_up NAME POLICY COUNT [URL]: COUNT replicas (r0, r1, ...) on the store at URL, or
# one embedded Purser without URL. Their pids go to FLEET_PIDS.
fleet_up() {
  local name=$1 policy=$2 count=$3 url=${4:-} i port
  FLEET_PIDS=()
  for ((i = 0; i < count; i++)); do
    port=$((FLEET_PORT + 2 * i))
    local -a store=()
    [[ -n "$url" ]] && store=(--store "$url" --replica-id "r$i")
    start_bg "$TMP/fleet-$name-r$i.log" "$PURSER_BIN" run --listen "$HOST:$port" \
      --admin-listen "$HOST:$((port + 1))" --policy "$policy" --ca-dir "$TMP/purser-ca" \
      --trace-log "$TMP/trace-fleet-$name-r$i.jsonl" --log-level warn "${store[@]}"
    FLEET_PIDS+=("$STARTED_PID")
    wait_port "$STARTED_PID" "$port" 60 || { tail -n 20 "$TMP/fleet-$name-r$i.log" >&2; die "replica r$i did not start ($name)"; }
  done
}

fleet_down() {
  local pid
  for pid in "${FLEET_PIDS[@]}"; do stop_pid "$pid"; done
  FLEET_PIDS=()
}

# fleet_load NAME RUN COUNT LOAD_ARGS...: `bench load --pay` through each of COUNT
# replicas at once (one generator each, FLEET_CONNS connections); records the summed
# rps and the worst replica's p50 and p99.
fleet_load() {
  local name=$1 run=$2 count=$3 i
  shift 3
  local -a gens=()
  for ((i = 0; i < count; i++)); do
    "$BENCH" load --proxy "$HOST:$((FLEET_PORT + 2 * i))" --target "http://$HOST:$MERCHANT_PORT/paid" \
      --auth "bench.r$i:bench-token" --duration "$DURATION" --warmup "$WARMUP" --pay 10000 \
      "$@" >"$TMP/fleet-$name-$run-$i.load" 2>"$TMP/fleet-$name-$run-$i.err" &
    gens+=($!)
  done
  for i in "${gens[@]}"; do wait "$i" || true; done
  local rps=0 p50=0 p99=0 errors=0 out
  for ((i = 0; i < count; i++)); do
    out=$TMP/fleet-$name-$run-$i.load
    if ! grep -q '^RESULT ' "$out"; then
      ((FLEET_TOLERATE)) && continue # the replica this run kills
      note fleet "$name run $run: replica r$i's load generator failed: $(tail -n1 "$TMP/fleet-$name-$run-$i.err")"
      STATUS=1
      continue
    fi
    rps=$(awk -v a="$rps" -v b="$(kv "$out" rps)" 'BEGIN {print a + b}')
    p50=$(awk -v a="$p50" -v b="$(kv "$out" p50_us)" 'BEGIN {print (b > a) ? b : a}')
    p99=$(awk -v a="$p99" -v b="$(kv "$out" p99_us)" 'BEGIN {print (b > a) ? b : a}')
    errors=$((errors + $(kv "$out" errors)))
  done
  rec fleet "$name" rps "$run" "$rps"
  rec fleet "$name" p50_us "$run" "$p50"
  rec fleet "$name" p99_us "$run" "$p99"
  rec fleet "$name" errors "$run" "$errors"
  log "fleet/$name run $run: $rps decisions/s, worst p50 ${p50} us, p99 ${p99} us, $errors errors"
}

# fleet_policy FILE LIMIT [EXTRA_YAML]: the bench agent with an agent budget of LIMIT USD.
fleet_policy() {
  cat >"$1" <<EOF
name: bench-fleet
agents:
  bench:
    token: bench-token
phases:
  allowed_payment_phase: EXPLORE
limits:
  # The single-process runs put every connection on one replica.
  connections_per_agent: 1024
budget:
  agent_limit: $2
${3:-}
EOF
}

# fleet_overspend NAME RUN FAULT: a budget the run exhausts; FAULT is none, replica
# (SIGKILL one replica mid-run) or store (crash PostgreSQL and start it again mid-run).
fleet_overspend() {
  local name=$1 run=$2 fault=$3 url db settled allowed booked
  pg_db
  url=$FLEET_URL
  db=fleet$FLEET_DB
  stop_pid "$MERCHANT_PID"
  start_bg "$TMP/merchant-fleet.log" "$BENCH" merchant --listen "$HOST:$MERCHANT_PORT" --record
  MERCHANT_PID=$STARTED_PID
  wait_port "$MERCHANT_PID" "$MERCHANT_PORT" || die "bench merchant did not start"
  fleet_up "$name-$run" "$TMP/fleet-budget.yaml" "$FLEET_REPLICAS" "$url"
  local fault_pid=""
  rm -f "$TMP/pg.pid"
  case $fault in
    replica) (sleep "$((WARMUP + DURATION / 2))"; kill -KILL "${FLEET_PIDS[1]}") & fault_pid=$! ;;
    store) (sleep "$((WARMUP + DURATION / 3))"; pg_crash_and_restart) & fault_pid=$! ;;
  esac
  FLEET_TOLERATE=$([[ "$fault" == replica ]] && echo 1 || echo 0)
  fleet_load "$name" "$run" "$FLEET_REPLICAS" --conns "$FLEET_CONNS"
  FLEET_TOLERATE=0
  [[ -n "$fault_pid" ]] && { wait "$fault_pid" 2>/dev/null || true; }
  if [[ -s "$TMP/pg.pid" ]]; then
    PG_PID=$(cat "$TMP/pg.pid")
    PIDS+=("$PG_PID")
    pg_wait || die "PostgreSQL did not come back"
  fi
  # The settlements the replicas still queue reach the store.
  sleep 3
  settled=$(curl -s "http://$HOST:$MERCHANT_PORT/__record" | python3 -c 'import json,sys
r = json.load(sys.stdin)
print(sum(int(s["amount"]) for s in r.get("settlements", [])) / 1e6)')
  booked=$(pg_sql "$db" "SELECT committed + unknown + reserved FROM purser_agents WHERE agent = 'bench'" || echo "?")
  allowed=$(cat "$TMP"/trace-fleet-"$name-$run"-r*.jsonl* 2>/dev/null | grep '"kind":"decision"' | grep -c '"decision":"ALLOWED"' || true)
  rec fleet "$name" settled_usd "$run" "$settled"
  rec fleet "$name" booked_usd "$run" "${booked:-0}"
  rec fleet "$name" allowed "$run" "$allowed"
  rec fleet "$name" overspend_usd "$run" "$(awk -v s="$settled" -v l="$FLEET_BUDGET" 'BEGIN {o = s - l; print (o > 0) ? o : 0}')"
  log "fleet/$name run $run: settled \$$settled of \$$FLEET_BUDGET; the store counts \$$booked; $allowed ALLOWED lines"
  if awk -v s="$settled" -v l="$FLEET_BUDGET" 'BEGIN {exit !(s > l)}'; then
    note fleet "$name run $run: OVERSPENT: the facilitator settled \$$settled against a \$$FLEET_BUDGET budget"
    STATUS=1
  fi
  fleet_down
  "$PURSER_BIN" traces verify --store "$url" >"$TMP/fleet-verify-$name-$run.txt" 2>&1 ||
    { note fleet "$name run $run: traces verify --store failed: $(head -n3 "$TMP/fleet-verify-$name-$run.txt")"; STATUS=1; }
}

section_fleet() {
  ((FLEET_REPLICAS >= 1)) || die "FLEET_REPLICAS must be at least 1"
  pg_start
  start_merchant
  local all=$((FLEET_CONNS * FLEET_REPLICAS)) run
  meta fleet_settings "FLEET_REPLICAS=$FLEET_REPLICAS FLEET_CONNS=$FLEET_CONNS FLEET_RATE=$FLEET_RATE FLEET_BUDGET=$FLEET_BUDGET FLEET_APPROVALS=$FLEET_APPROVALS"
  fleet_policy "$TMP/fleet-open.yaml" 1000000000.00
  fleet_policy "$TMP/fleet-budget.yaml" "$FLEET_BUDGET"
  fleet_policy "$TMP/fleet-hold.yaml" 1000000000.00 "  single_call_threshold: 0.0000001
approvals:
  timeout: 60s"
  for run in $(seq "$RUNS"); do
    # Throughput and scaling: the same connections in all, on 1 process or N.
    fleet_up embedded "$TMP/fleet-open.yaml" 1
    fleet_load embedded "$run" 1 --conns "$all"
    fleet_down
    pg_db
    fleet_up "fleet-1" "$TMP/fleet-open.yaml" 1 "$FLEET_URL"
    fleet_load "fleet-1" "$run" 1 --conns "$all"
    fleet_down
    pg_db
    fleet_up "fleet-$FLEET_REPLICAS" "$TMP/fleet-open.yaml" "$FLEET_REPLICAS" "$FLEET_URL"
    fleet_load "fleet-$FLEET_REPLICAS" "$run" "$FLEET_REPLICAS" --conns "$FLEET_CONNS"
    # Latency at a fixed rate, on the same replicas, then on the embedded default.
    local per=$(awk -v r="$FLEET_RATE" -v n="$FLEET_REPLICAS" 'BEGIN {printf "%.1f", r / n}')
    fleet_load "latency-fleet" "$run" "$FLEET_REPLICAS" --conns 16 --rate "$per"
    fleet_down
    fleet_up embedded "$TMP/fleet-open.yaml" 1
    fleet_load "latency-embedded" "$run" 1 --conns 48 --rate "$FLEET_RATE"
    fleet_down
    # Overspend: none, then with a replica killed, then with the store crashed.
    fleet_overspend overspend "$run" none
    fleet_overspend overspend-replica-killed "$run" replica
    fleet_overspend overspend-store-restarted "$run" store
  done
  # Approval forwarding: held on r1, approved through r0's admin API.
  pg_db
  fleet_up approve "$TMP/fleet-hold.yaml" 2 "$FLEET_URL"
  measure fleet approve 1 approve "n p50_us p90_us p99_us max_us" approve \
    --proxy "$HOST:$((FLEET_PORT + 2))" --admin "$HOST:$((FLEET_PORT + 1))" --auth "bench.s1:bench-token" \
    --count "$FLEET_APPROVALS" --think-ms 20 || true
  fleet_down
  stop_pid "$MERCHANT_PID"
  stop_pid "$PG_PID"
}
