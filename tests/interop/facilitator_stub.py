#!/usr/bin/env python3
"""Fake x402 facilitator for loopback interop tests.

Implements the HTTP facilitator protocol that the official x402 Python SDK's
``HTTPFacilitatorClient`` (x402 2.25.0) speaks:

  GET  /supported  -> {"kinds": [...], "extensions": [], "signers": {...}}
  POST /verify     <- {"x402Version", "paymentPayload", "paymentRequirements"}
                   -> {"isValid": true, "payer": "0x.."}
  POST /settle     <- same body as /verify
                   -> {"success": true, "payer", "transaction", "network", "amount"}

Every verify is approved and every settle succeeds with a fake transaction
hash (unless told otherwise, see below). Each settle APPENDS one JSON line to
--record FILE. Works for both x402 v1 (legacy network names, maxAmountRequired,
scheme/network at the top of the payload) and v2 (CAIP-2 networks, amount,
``accepted``) bodies, and for both EIP-3009 (``authorization``) and Permit2
(``permit2Authorization``) exact-EVM payloads.

Test-only endpoints:
  GET  /settlements   -> JSON list of every settlement recorded by this process
  GET  /verifications -> JSON list of every verify request seen (summaries)
  GET  /stats         -> {"verify": n, "settle": n, "settle_ok": n}
  GET  /health        -> {"ok": true}
  POST /config        <- {"reject_verify": bool, "fail_settle": bool,
                          "reject_replay": bool}   (runtime toggles)
  POST /reset         -> forget in-memory settlements/verifications (file kept)

Prints ``READY <port>`` on stdout once listening (``--port 0`` picks a free one).
Only the standard library is required; if the venv's eth_account is importable
each EIP-3009 signature is also checked and ``signature_valid`` recorded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAKE_FACILITATOR_ADDRESS = "0xFAC11174700000000000000000000000000000FA"

V2_NETWORKS = ["eip155:84532", "eip155:8453", "eip155:1", "eip155:11155111"]
V1_NETWORKS = ["base-sepolia", "base", "ethereum", "polygon", "polygon-amoy",
               "avalanche", "avalanche-fuji"]
V1_CHAIN_IDS = {"base": 8453, "base-sepolia": 84532, "ethereum": 1, "polygon": 137,
                "polygon-amoy": 80002, "avalanche": 43114, "avalanche-fuji": 43113}


def chain_id_of(network: str) -> int | None:
    if network.startswith("eip155:"):
        try:
            return int(network.split(":", 1)[1])
        except ValueError:
            return None
    try:  # full legacy table from the SDK when available
        from x402.mechanisms.evm.v1.constants import V1_NETWORK_CHAIN_IDS
        return V1_NETWORK_CHAIN_IDS.get(network)
    except Exception:
        return V1_CHAIN_IDS.get(network)


def check_eip3009_signature(auth: dict, signature: str, chain_id: int | None,
                            asset: str, extra: dict) -> bool | None:
    """Recover the EIP-712 TransferWithAuthorization signer; None if not checkable."""
    if chain_id is None or not signature or not asset:
        return None
    try:
        from eth_account import Account
        from eth_account.messages import encode_typed_data
    except Exception:
        return None
    try:
        typed = {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "TransferWithAuthorization": [
                    {"name": "from", "type": "address"},
                    {"name": "to", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "validAfter", "type": "uint256"},
                    {"name": "validBefore", "type": "uint256"},
                    {"name": "nonce", "type": "bytes32"},
                ],
            },
            "primaryType": "TransferWithAuthorization",
            "domain": {
                "name": (extra or {}).get("name", "USDC"),
                "version": (extra or {}).get("version", "2"),
                "chainId": chain_id,
                "verifyingContract": asset,
            },
            "message": {
                "from": auth["from"],
                "to": auth["to"],
                "value": int(auth["value"]),
                "validAfter": int(auth["validAfter"]),
                "validBefore": int(auth["validBefore"]),
                "nonce": bytes.fromhex(auth["nonce"].removeprefix("0x")),
            },
        }
        signer = Account.recover_message(encode_typed_data(full_message=typed),
                                         signature=signature)
        return signer.lower() == auth["from"].lower()
    except Exception:
        return False


def summarize(body: dict) -> dict:
    """Flatten a verify/settle request body (v1 or v2) into one record."""
    version = body.get("x402Version")
    payload = body.get("paymentPayload") or {}
    reqs = body.get("paymentRequirements") or {}
    version = version or payload.get("x402Version")
    inner = payload.get("payload") or {}
    accepted = payload.get("accepted") or {}

    if version == 1:
        amount = reqs.get("maxAmountRequired")
        network = reqs.get("network") or payload.get("network")
        scheme = reqs.get("scheme") or payload.get("scheme")
        resource = reqs.get("resource")
    else:
        amount = reqs.get("amount") or accepted.get("amount")
        network = reqs.get("network") or accepted.get("network")
        scheme = reqs.get("scheme") or accepted.get("scheme")
        resource = (payload.get("resource") or {}).get("url")

    rec: dict = {
        "x402Version": version,
        "scheme": scheme,
        "network": network,
        "payTo": reqs.get("payTo") or accepted.get("payTo"),
        "amount": None if amount is None else str(amount),
        "asset": reqs.get("asset") or accepted.get("asset"),
        "resource": resource,
        "signature": inner.get("signature"),
    }
    if "authorization" in inner:  # EIP-3009
        auth = inner["authorization"]
        rec.update(
            transfer_method="eip3009",
            payer=auth.get("from"),
            authorized_to=auth.get("to"),
            authorized_value=auth.get("value"),
            nonce=auth.get("nonce"),
            validAfter=auth.get("validAfter"),
            validBefore=auth.get("validBefore"),
        )
        rec["signature_valid"] = check_eip3009_signature(
            auth, inner.get("signature"), chain_id_of(network or ""),
            rec["asset"] or "", reqs.get("extra") or accepted.get("extra") or {})
    elif "permit2Authorization" in inner:  # Permit2
        p2 = inner["permit2Authorization"]
        rec.update(
            transfer_method="permit2",
            payer=p2.get("from"),
            authorized_to=(p2.get("witness") or {}).get("to"),
            authorized_value=(p2.get("permitted") or {}).get("amount"),
            nonce=p2.get("nonce"),
            deadline=p2.get("deadline"),
            signature_valid=None,
        )
    else:
        rec.update(transfer_method="unknown", payer=None, nonce=None, signature_valid=None)
    return rec


class State:
    def __init__(self, record_path: str | None, args: argparse.Namespace):
        self.lock = threading.Lock()
        self.record_path = record_path
        self.settlements: list[dict] = []
        self.verifications: list[dict] = []
        self.used_nonces: set[str] = set()
        self.counter = 0
        self.reject_verify = args.reject_verify
        self.fail_settle = args.fail_settle
        self.reject_replay = args.reject_replay
        self.settle_delay = args.settle_delay_ms / 1000.0
        self.settle_ok = 0

    def append_record(self, rec: dict) -> None:
        if not self.record_path:
            return
        line = json.dumps(rec, sort_keys=True) + "\n"
        with open(self.record_path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def make_handler(state: State, quiet: bool):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "x402-facilitator-stub/1"

        def log_message(self, fmt, *a):  # noqa: N802
            if not quiet:
                sys.stderr.write("facilitator: " + (fmt % a) + "\n")

        def _send(self, status: int, obj) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict | None:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            try:
                return json.loads(raw or b"{}")
            except json.JSONDecodeError:
                return None

        def do_GET(self):  # noqa: N802
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            if path == "/supported":
                kinds = [{"x402Version": 2, "scheme": "exact", "network": n} for n in V2_NETWORKS]
                kinds.append({"x402Version": 2, "scheme": "exact", "network": "eip155:*"})
                kinds += [{"x402Version": 1, "scheme": "exact", "network": n} for n in V1_NETWORKS]
                # upto: the SDK's server builds an upto route only if the kind names the facilitator.
                kinds += [{"x402Version": 2, "scheme": "upto", "network": n, "extra": {"facilitatorAddress": FAKE_FACILITATOR_ADDRESS}} for n in V2_NETWORKS + ["eip155:*"]]
                self._send(200, {"kinds": kinds, "extensions": [],
                                 "signers": {"eip155:*": [FAKE_FACILITATOR_ADDRESS]}})
            elif path == "/settlements":
                with state.lock:
                    self._send(200, list(state.settlements))
            elif path == "/verifications":
                with state.lock:
                    self._send(200, list(state.verifications))
            elif path == "/stats":
                with state.lock:
                    self._send(200, {"verify": len(state.verifications),
                                     "settle": len(state.settlements),
                                     "settle_ok": state.settle_ok})
            elif path == "/health":
                self._send(200, {"ok": True})
            else:
                self._send(404, {"error": "not found", "path": path})

        def do_POST(self):  # noqa: N802
            path = self.path.split("?", 1)[0].rstrip("/")
            body = self._body()
            if body is None:
                self._send(400, {"error": "invalid json"})
                return
            if path == "/verify":
                self._verify(body)
            elif path == "/settle":
                self._settle(body)
            elif path == "/config":
                with state.lock:
                    for k in ("reject_verify", "fail_settle", "reject_replay"):
                        if k in body:
                            setattr(state, k, bool(body[k]))
                    if "settle_delay_ms" in body:
                        state.settle_delay = float(body["settle_delay_ms"]) / 1000.0
                    self._send(200, {"reject_verify": state.reject_verify,
                                     "fail_settle": state.fail_settle,
                                     "reject_replay": state.reject_replay,
                                     "settle_delay_ms": state.settle_delay * 1000})
            elif path == "/reset":
                with state.lock:
                    state.settlements.clear()
                    state.verifications.clear()
                    state.used_nonces.clear()
                    state.settle_ok = 0
                self._send(200, {"ok": True})
            else:
                self._send(404, {"error": "not found", "path": path})

        def _verify(self, body: dict) -> None:
            rec = summarize(body)
            with state.lock:
                replay = bool(rec.get("nonce")) and rec["nonce"] in state.used_nonces
                rec.update(ts=time.time(), replay=replay)
                state.verifications.append(rec)
                reject = state.reject_verify or (state.reject_replay and replay)
            if reject:
                reason = "invalid_transaction_state" if replay else "insufficient_funds"
                self._send(200, {"isValid": False, "invalidReason": reason,
                                 "invalidMessage": "rejected by facilitator stub",
                                 "payer": rec.get("payer")})
            else:
                self._send(200, {"isValid": True, "payer": rec.get("payer")})

        def _settle(self, body: dict) -> None:
            rec = summarize(body)
            if state.settle_delay:
                time.sleep(state.settle_delay)
            with state.lock:
                state.counter += 1
                replay = bool(rec.get("nonce")) and rec["nonce"] in state.used_nonces
                fail = state.fail_settle or (state.reject_replay and replay)
                tx = "0x" + hashlib.sha256(
                    f"{rec.get('nonce')}:{state.counter}:{time.time_ns()}".encode()
                ).hexdigest()
                rec.update(ts=time.time(), replay=replay, success=not fail,
                           transaction="" if fail else tx)
                if not fail:
                    state.settle_ok += 1
                    if rec.get("nonce"):
                        state.used_nonces.add(rec["nonce"])
                state.settlements.append(rec)
                state.append_record(rec)
            if fail:
                self._send(200, {"success": False,
                                 "errorReason": "invalid_transaction_state" if replay
                                 else "unexpected_settle_error",
                                 "errorMessage": "settlement refused by facilitator stub",
                                 "payer": rec.get("payer"), "transaction": "",
                                 "network": rec.get("network") or ""})
            else:
                self._send(200, {"success": True, "payer": rec.get("payer"),
                                 "transaction": tx, "network": rec.get("network") or "",
                                 "amount": rec.get("amount")})

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument("--record", help="append one JSON line per settle to this file")
    ap.add_argument("--reject-verify", action="store_true", help="answer isValid=false")
    ap.add_argument("--fail-settle", action="store_true", help="answer success=false")
    ap.add_argument("--reject-replay", action="store_true",
                    help="refuse verify/settle of an already-settled nonce")
    ap.add_argument("--settle-delay-ms", type=float, default=0.0)
    ap.add_argument("--quiet", action="store_true", help="no access log on stderr")
    args = ap.parse_args()

    if args.record:
        os.makedirs(os.path.dirname(os.path.abspath(args.record)), exist_ok=True)
        open(args.record, "a").close()
    state = State(args.record, args)
    ThreadingHTTPServer.daemon_threads = True
    httpd = ThreadingHTTPServer((args.host, args.port), make_handler(state, args.quiet))
    print(f"READY {httpd.server_address[1]}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()
