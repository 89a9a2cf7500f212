# shellcheck shell=bash
# The plumbing of benches/run: logging, a temp dir and the cleanup of every child
# started, ports, VmRSS, the busy-machine note, and the squid and tinyproxy set-ups.
# Source it from the repository root, then call `bench_init NAME`. Everything listens on
# $HOST (127.0.0.1).

HOST=${HOST:-127.0.0.1}
KEEP=${KEEP:-0}
PIDS=()
BUSY=()
TMP=""
SQUID_SERVICE=""

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# bench_init NAME: a fresh temp dir (/tmp/purser-NAME.*), the exit trap that stops every
# child, and no proxy settings inherited from the environment.
bench_init() {
  TMP=$(mktemp -d "/tmp/purser-$1.XXXXXX")
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  # Proxy settings from the environment must not redirect wrk/curl anywhere.
  unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY RUST_LOG
  export PATH="$PATH:/usr/sbin:/sbin"
}

# stop_pid PID: SIGTERM, up to 10 s, then SIGKILL; reaps it.
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid ignored SIGTERM for 10s; sending SIGKILL (i=$i)"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

bench_cleanup() {
  local i
  trap - INT TERM
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    stop_pid "${PIDS[$i]}"
  done
  [[ -n "$SQUID_SERVICE" ]] && rm -f /dev/shm/"$SQUID_SERVICE"-*
  if [[ -z "$TMP" ]]; then
    return 0
  elif [[ "$KEEP" == 1 ]]; then
    log "kept $TMP"
  else
    rm -rf "$TMP"
  fi
}

# start_bg LOGFILE CMD...: runs CMD in the background, stdout and stderr to LOGFILE;
# sets STARTED_PID and records it for the cleanup.
start_bg() {
  local logfile=$1
  shift
  "$@" >"$logfile" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
}

# run_child CMD...: CMD in the background, waited for. A signal to the script is then
# handled at once (bash defers traps while a foreground child runs) and the cleanup stops
# CMD too. Redirections given to run_child apply to CMD. Returns CMD's status.
run_child() {
  local pid rc=0 i
  "$@" &
  pid=$!
  PIDS+=("$pid")
  wait "$pid" || rc=$?
  for i in "${!PIDS[@]}"; do
    [[ "${PIDS[$i]}" != "$pid" ]] || unset 'PIDS[i]'
  done
  PIDS=("${PIDS[@]}")
  return "$rc"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# wait_port PID PORT [TIMEOUT_S]: wait until PORT accepts, failing if PID dies.
wait_port() {
  local pid=$1 port=$2 deadline=$((SECONDS + ${3:-30}))
  while ! port_open "$port"; do
    kill -0 "$pid" 2>/dev/null || return 1
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}

# ports_free PORT...: dies when one of them already accepts connections.
ports_free() {
  local p
  for p in "$@"; do
    port_open "$p" && die "port $HOST:$p already in use (set PORT_BASE)"
  done
  return 0
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || true; }

# cargo_busy: true when a cargo or rustc process runs (two shared cores: it moves numbers
# by 30% or more).
cargo_busy() { pgrep -x rustc >/dev/null || pgrep -x cargo >/dev/null; }

# busy_note LABEL: remembers LABEL in BUSY when cargo/rustc is running now.
busy_note() {
  if cargo_busy; then
    BUSY+=("$1")
    log "warning: cargo/rustc running during $1"
  fi
}

# wait_quiet SECONDS: waits up to SECONDS for other cargo/rustc processes to finish.
wait_quiet() {
  local deadline=$((SECONDS + $1))
  while cargo_busy; do
    if ((SECONDS >= deadline)); then
      log "cargo/rustc still running after ${1}s; measuring anyway"
      return 0
    fi
    log "waiting for other cargo/rustc processes to finish"
    sleep 10
  done
}

# ensure_tools CMD[:PACKAGE]...: apt-get installs the packages of missing commands.
ensure_tools() {
  local spec missing=()
  for spec in "$@"; do
    command -v "${spec%%:*}" >/dev/null || missing+=("${spec#*:}")
  done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand"
  log "installing: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# start_squid DIR PORT: squid as a plain forward proxy on $HOST:PORT, caching and access
# log off, config and logs in DIR; sets STARTED_PID. Started as root, squid drops to its
# packaged user (it refuses to keep running as root), which must reach DIR. Only
# 127.0.0.1 is ever contacted: it is squid's only DNS server, and the URLs are IP literals.
start_squid() {
  local dir=$1 port=$2 user=proxy
  id "$user" >/dev/null 2>&1 || user=nobody
  # squid names its shared-memory segments /dev/shm/<service>-*; a unique service name
  # keeps a crashed earlier run from blocking this one.
  SQUID_SERVICE="purserbench$$"
  mkdir -p "$dir"
  chmod 0711 "$TMP"
  chown "$user" "$dir"
  cat >"$dir/squid.conf" <<EOF
http_port $HOST:$port
acl bench_src src 127.0.0.1/32
http_access allow bench_src
http_access deny all
cache deny all
cache_mem 0 MB
access_log none
cache_store_log none
cache_log $dir/cache.log
pid_filename $dir/squid.pid
coredump_dir $dir
cache_effective_user $user
visible_hostname localhost
dns_nameservers 127.0.0.1
pinger_enable off
icp_port 0
htcp_port 0
logfile_rotate 0
shutdown_lifetime 0 seconds
EOF
  start_bg "$dir/squid.out" squid -N -n "$SQUID_SERVICE" -f "$dir/squid.conf"
}

# start_tinyproxy DIR PORT: tinyproxy on $HOST:PORT in the foreground; sets STARTED_PID.
start_tinyproxy() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  cat >"$dir/tinyproxy.conf" <<EOF
User root
Group root
Port $port
Listen $HOST
Timeout 600
MaxClients 256
Allow 127.0.0.1
LogLevel Warning
LogFile "$dir/tinyproxy.log"
PidFile "$dir/tinyproxy.pid"
EOF
  start_bg "$dir/tinyproxy.out" tinyproxy -d -c "$dir/tinyproxy.conf"
}
