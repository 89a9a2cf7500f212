#!/usr/bin/env bash
# Install (or reuse) the pinned Node clients the tests drive through Purser.
#
#   tests/interop/setup_node.sh DIR        e.g. target/interop-node
#
# Copies node/package.json and node/package-lock.json into DIR and runs `npm ci` there
# (the npm registry only, exact versions from the lock file). Idempotent: DIR/.lock.sha256
# holds the lock file's sha256 and the Node version; when they match it exits at once.
# Concurrent callers (parallel cargo tests) are serialised with flock(1).
# The scripts (node/*.mjs) are copied beside node_modules on every call, so that their
# imports resolve there. Prints DIR on stdout as its last line.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
for tool in node npm; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "setup_node.sh: $tool not found; install Debian's nodejs and npm (.ci/run does)" >&2
        exit 1
    }
done

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$1"
DIR="$(cd "$1" && pwd)"
want="$(sha256sum "$HERE/node/package-lock.json" | cut -d' ' -f1) $(node --version)"

exec 9>"$DIR.lock"
flock 9
if [ "$(cat "$DIR/.lock.sha256" 2>/dev/null || true)" != "$want" ]; then
    cp "$HERE/node/package.json" "$HERE/node/package-lock.json" "$DIR/"
    (cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$want" >"$DIR/.lock.sha256"
fi
cp "$HERE"/node/*.mjs "$DIR/"
echo "$DIR"
