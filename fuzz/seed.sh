#!/bin/sh
# Builds fuzz/corpus/<target>/ from the x402 wire captures, the policy files and crafted
# trace lines, plus the hand-picked seeds in fuzz/seeds/<target>/ and the inputs of past
# findings in fuzz/regressions/<target>/.
#   fuzz/seed.sh            (from anywhere; needs python3 with PyYAML for rule strings)
# Existing corpus files are kept: libFuzzer's own findings accumulate next to the seeds.
set -eu
FUZZ=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$FUZZ")
VECTORS=${VECTORS:-$ROOT/tests/data/x402/vectors.json}
exec python3 - "$FUZZ" "$ROOT" "$VECTORS" <<'PY'
import base64, glob, hashlib, json, os, shutil, sys

fuzz, root, vectors = sys.argv[1:4]
corpus = os.path.join(fuzz, "corpus")
counts = {}

def seed(target, data):
    if isinstance(data, str):
        data = data.encode()
    directory = os.path.join(corpus, target)
    os.makedirs(directory, exist_ok=True)
    # Named by content, as libFuzzer names its own corpus files.
    with open(os.path.join(directory, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)
    counts[target] = counts.get(target, 0) + 1

def compact(value):
    return json.dumps(value, separators=(",", ":"))

# ── x402: header values, their decoded JSON, 402 bodies ──────────────────────────────
if os.path.exists(vectors):
    v = json.load(open(vectors))
    headers = [
        v["v2"]["challenge_headers"]["payment-required"],
        v["v2"]["paid_retry_request_headers"]["PAYMENT-SIGNATURE"],
        v["v2"]["PAYMENT-RESPONSE"],
        v["v1"]["X-PAYMENT"],
    ]
    decoded = [
        v["v2"]["PAYMENT-REQUIRED_decoded"],
        v["v2"]["PAYMENT-SIGNATURE_decoded"],
        v["v2"]["PAYMENT-RESPONSE_decoded"],
        v["v1"]["X-PAYMENT_decoded"],
        v["v1"]["X-PAYMENT-RESPONSE_example_decoded"],
    ]
    for header in headers:
        seed("x402_header", header)                      # as received
        seed("x402_header", base64.b64decode(header))    # its exact JSON bytes
    for value in decoded:
        seed("x402_header", compact(value))
    for body in [v["v1"]["challenge_body"], v["v2"]["challenge_body"]]:
        seed("x402_challenge_body", body)
    for value in [v["v1"]["challenge_body_decoded"], v["v2"]["PAYMENT-REQUIRED_decoded"]]:
        seed("x402_challenge_body", compact(value))
        seed("x402_challenge_body", json.dumps(value, indent=1))
else:
    print(f"seed.sh: {vectors} not found; x402 targets get only the hand-picked seeds",
          file=sys.stderr)

# ── policies: whole files, and every rule string in them ─────────────────────────────
try:
    import yaml
except ImportError:
    yaml = None
    print("seed.sh: no PyYAML; dsl_rule gets only the hand-picked seeds", file=sys.stderr)
for path in sorted(glob.glob(os.path.join(root, "policies", "*.yaml"))):
    if path.endswith(".cases.yaml"):
        continue
    text = open(path, "rb").read()
    seed("policy_load", text)
    if yaml is None:
        continue
    try:
        rules = (yaml.safe_load(text) or {}).get("rules") or []
    except yaml.YAMLError:
        continue
    if isinstance(rules, str):
        rules = [rules]
    for item in rules:
        if isinstance(item, str):
            seed("dsl_rule", item)
            for line in item.splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    seed("dsl_rule", line.strip())
        elif isinstance(item, dict):
            for key in ("condition", "target"):
                if isinstance(item.get(key), str):
                    seed("dsl_rule", item[key])

# ── trace lines: one of each kind, chained as the writer chains them ─────────────────
GENESIS = "0" * 64
T = "2025-06-01T12:00:0{}Z"
records = [
    {"trace_id": "t-1", "kind": "phase", "time": T.format(0), "session": "bot.s1",
     "agent": "bot", "phase": "COMMIT"},
    {"trace_id": "t-2", "kind": "decision", "time": T.format(1), "session": "bot.s1",
     "agent": "bot", "phase": "COMMIT", "tool": "pay_for_data", "category": "data",
     "tier": "autonomous", "method": "GET", "host": "api.feeds.example",
     "path": "/market/feed", "x402_version": 2, "scheme": "exact",
     "network": "eip155:84532", "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
     "asset_symbol": "USDC", "amount_atomic": "50000", "amount": "0.05",
     "amount_usd": "0.05", "pay_to": "0x2096000000000000000000000000000000000287",
     "payer": "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A",
     "payment_digest": "ab" * 32,
     "replay_keys": ["payer_nonce:0x19e7e376e7c213b7e7e7e46cc70a5dd086daff2a:0x01",
                     "signature:0xa494"],
     "budget": {"level": "session", "limit": "1.50", "spent": "0", "reserved": "0.05",
                "ratio": "0.0333"},
     "rules": [{"id": "pay-only-in-commit", "action": "BLOCK", "matched": False}],
     "decision": "ALLOWED", "policy_digest": "cd" * 32, "purser_version": "0.1.0"},
    {"trace_id": "t-3", "kind": "settlement", "time": T.format(2), "session": "bot.s1",
     "agent": "bot", "outcome": "committed", "decision_trace_id": "t-2",
     "transaction": "0x" + "12" * 32, "upstream_status": 200},
    {"trace_id": "t-4", "kind": "decision", "time": T.format(3), "session": "bot.s1",
     "agent": "bot", "amount_usd": "0.75", "pay_to": "0xabc", "replay_keys": ["signature:0xdef"],
     "decision": "PENDING_APPROVAL", "rule": "large-call-needs-approval"},
    {"trace_id": "t-5", "kind": "hold", "time": T.format(4), "session": "bot.s1",
     "agent": "bot", "decision": "ALLOWED", "decision_trace_id": "t-4",
     "approval": {"hold_id": "h-1", "outcome": "approved", "by": "ops", "at": T.format(4),
                  "waited_ms": 1200}},
    {"trace_id": "t-6", "kind": "settlement", "time": T.format(5), "session": "bot.s1",
     "agent": "bot", "outcome": "unknown", "decision_trace_id": "t-4"},
    {"trace_id": "t-7", "kind": "resolution", "time": T.format(6), "session": "bot.s1",
     "agent": "bot", "outcome": "committed", "decision_trace_id": "t-4"},
    {"trace_id": "t-8", "kind": "compensation", "time": T.format(7), "session": "bot.s1",
     "agent": "bot", "outcome": "pending", "amount_usd": "0.05",
     "compensation": {"refund_id": "r-1", "transaction": "wf-1", "loss_usd": "0.05",
                      "credited": False, "job": {"id": "r-1"}}},
    {"trace_id": "t-9", "kind": "compensation", "time": T.format(8), "session": "bot.s1",
     "agent": "bot", "outcome": "requested", "amount_usd": "0.05",
     "compensation": {"refund_id": "r-1", "transaction": None, "loss_usd": "0.05",
                      "credited": True}},
]
prev, lines = GENESIS, []
for record in records:
    line = compact({"prev_hash": prev, **record})
    lines.append(line)
    prev = hashlib.sha256(line.encode()).hexdigest()
for target in ("trace_line", "trace_recover"):
    seed(target, "\n".join(lines) + "\n")
    seed(target, "\n".join(lines[:3]))   # a torn last line
    for line in lines:
        seed(target, line + "\n")

# ── hand-picked seeds, and the inputs of past findings ───────────────────────────────
for kept in ("seeds", "regressions"):
    top = os.path.join(fuzz, kept)
    for target in sorted(os.listdir(top)) if os.path.isdir(top) else []:
        for name in sorted(os.listdir(os.path.join(top, target))):
            seed(target, open(os.path.join(top, target, name), "rb").read())

for target, count in sorted(counts.items()):
    print(f"{target}: {count} seeds -> {os.path.relpath(os.path.join(corpus, target), root)}")
PY
