#!/usr/bin/env bash
# Create (or reuse) the Python venv that runs the x402 interop harness.
#
#   tests/interop/setup_venv.sh VENV_DIR [REQUIREMENTS]
#       e.g. target/interop-venv, or target/interop-mpp-venv tests/interop/mpp/requirements.txt
#
# REQUIREMENTS defaults to requirements.txt beside this script (the x402 lock); another
# lock gets a venv of its own (pympp's pins conflict with the x402 lock's, so the MPP
# tests use tests/interop/mpp/requirements.txt).
# Idempotent: VENV_DIR/.requirements.sha256 holds the sha256 of the requirements file
# (plus the interpreter version); when it matches, the script exits at once.
# Otherwise the venv is rebuilt from scratch with `python3 -m venv --clear` and
# `pip install -r REQUIREMENTS` (PyPI only, non-interactive). The x402 SDK smoke check
# runs for the default lock; any other lock gets `pip check`.
# Concurrent callers (parallel cargo tests) are serialised with flock(1).
# Prints the venv's python path on stdout as its last line.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 VENV_DIR [REQUIREMENTS]" >&2
    exit 2
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEFAULT_REQ="$HERE/requirements.txt"
REQ="${2:-$DEFAULT_REQ}"
[ -f "$REQ" ] || { echo "setup_venv: no requirements file $REQ" >&2; exit 2; }
REQ="$(cd "$(dirname "$REQ")" && pwd)/$(basename "$REQ")"
PYTHON="${PYTHON:-python3}"

mkdir -p "$(dirname "$1")"
VENV="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
STAMP="$VENV/.requirements.sha256"
LOCK="$VENV.lock"

want_stamp() {
    local req_sha py_ver
    req_sha="$(sha256sum "$REQ" | cut -d' ' -f1)"
    py_ver="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
    printf '%s  requirements.txt\npython %s\n' "$req_sha" "$py_ver"
}

is_fresh() {
    [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]
}

WANT="$(want_stamp)"

# Fast path without taking the lock.
if is_fresh; then
    echo "$VENV/bin/python"
    exit 0
fi

exec 9>"$LOCK"
flock 9

# Another process may have finished the job while we waited.
if is_fresh; then
    echo "$VENV/bin/python"
    exit 0
fi

echo "setup_venv: building $VENV from $REQ" >&2
start=$(date +%s)
rm -f "$STAMP"
"$PYTHON" -m venv --clear "$VENV" >&2

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off
"$VENV/bin/python" -m pip install --quiet -r "$REQ" >&2

if [ "$REQ" != "$DEFAULT_REQ" ]; then
    "$VENV/bin/python" -m pip check >&2
else
# Smoke-check that the SDK pieces the harness uses import cleanly.
"$VENV/bin/python" - >&2 <<'EOF'
import x402, fastapi, uvicorn, requests, eth_account  # noqa: F401
from x402.http.middleware.fastapi import payment_middleware  # noqa: F401
from x402.http.clients import x402_requests  # noqa: F401
from x402.mechanisms.evm.exact import register_exact_evm_client, register_exact_evm_server  # noqa: F401
from importlib.metadata import version
assert version("x402") == "2.25.0", version("x402")
EOF
fi

printf '%s\n' "$WANT" > "$STAMP.tmp"
mv "$STAMP.tmp" "$STAMP"
echo "setup_venv: done in $(( $(date +%s) - start ))s" >&2
echo "$VENV/bin/python"
