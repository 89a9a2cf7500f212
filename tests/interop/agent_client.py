#!/usr/bin/env python3
"""Paying HTTP client (the "agent") for loopback interop tests.

Uses the OFFICIAL x402 SDK's requests integration
(x402.http.clients.x402_requests -> x402HTTPAdapter mounted on a
requests.Session) with an x402ClientSync on which the EVM exact scheme is
registered (v2 "eip155:*" plus every legacy v1 network name) and all SDK
client-side spend controls are DISABLED (set_spend_controls(False)): the proxy
under test is what governs spending.

Proxies/CA: the session keeps requests' defaults (trust_env=True), so
HTTP_PROXY / HTTPS_PROXY / NO_PROXY / ALL_PROXY and REQUESTS_CA_BUNDLE /
CURL_CA_BUNDLE are honoured exactly as plain requests would. --ca-bundle
overrides.

Output: ONE JSON line per request on stdout:
  {"status": int, "headers": {lowercase-name: value}, "body": str[:2000],
   "index": i, "elapsed_ms": float, "paid": bool,
   "payment_response": {decoded PAYMENT-RESPONSE / X-PAYMENT-RESPONSE} | null,
   "error": str (only when no HTTP response was obtained; status is then 0)}
"paid" is true when the SDK retried with a payment header. Non-2xx statuses
are printed, never raised. The exit code is 0 unless arguments are invalid.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# Same throwaway key as the SDK test vectors: 0x1111...11 (32 bytes)
# -> address 0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A. Never fund it.
DEFAULT_KEY = "0x" + "11" * 32
BODY_LIMIT = 2000


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="x402 paying client (SDK requests integration)")
    ap.add_argument("--url", required=True)
    ap.add_argument("--count", type=int, default=1, help="number of requests")
    ap.add_argument("--concurrency", type=int, default=1, help="worker threads")
    ap.add_argument("--key", default=DEFAULT_KEY, help="hex EVM private key")
    ap.add_argument("--method", default="GET")
    ap.add_argument("--data", default=None, help="request body (string)")
    ap.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--ca-bundle", default=None, help="overrides REQUESTS_CA_BUNDLE")
    ap.add_argument("--insecure", action="store_true", help="verify=False")
    ap.add_argument("--no-pay", action="store_true",
                    help="plain requests session without the x402 adapter")
    ap.add_argument("--sent-headers", action="store_true",
                    help="also print the headers of the final request sent")
    args = ap.parse_args()
    if args.count < 1 or args.concurrency < 1:
        ap.error("--count and --concurrency must be >= 1")
    return args


def make_x402_client(key: str):
    from eth_account import Account

    from x402 import x402ClientSync
    from x402.mechanisms.evm.exact import register_exact_evm_client
    from x402.mechanisms.evm.signers import EthAccountSigner

    client = x402ClientSync()
    register_exact_evm_client(client, EthAccountSigner(Account.from_key(key)))
    from x402.mechanisms.evm.upto.client import UptoEvmScheme  # upto: a signed maximum (Permit2)
    client.register("eip155:*", UptoEvmScheme(EthAccountSigner(Account.from_key(key))))
    client.set_spend_controls(False)  # no SDK caps / asset allow-list
    return client


def make_session(x402_client, no_pay: bool):
    import requests

    if no_pay:
        return requests.Session()
    from x402.http.clients import x402_requests

    session = x402_requests(x402_client)
    assert session.trust_env, "proxy/CA env vars must stay honoured"
    return session


def decode_payment_response(headers) -> dict | None:
    for name in ("payment-response", "x-payment-response"):
        value = headers.get(name)
        if value:
            try:
                return json.loads(base64.b64decode(value + "=" * (-len(value) % 4)))
            except Exception:  # noqa: BLE001
                return {"undecodable": value}
    return None


def one_request(i: int, args: argparse.Namespace, x402_client) -> dict:
    started = time.monotonic()
    out: dict = {"index": i}
    headers = {}
    for h in args.header:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    kwargs: dict = {"headers": headers, "timeout": args.timeout}
    if args.data is not None:
        kwargs["data"] = args.data.encode()
    if args.insecure:
        kwargs["verify"] = False
    elif args.ca_bundle:
        kwargs["verify"] = args.ca_bundle
    session = make_session(x402_client, args.no_pay)  # fresh session = fresh payment
    try:
        resp = session.request(args.method, args.url, **kwargs)
        out.update(
            status=resp.status_code,
            headers={k.lower(): v for k, v in resp.headers.items()},
            body=resp.text[:BODY_LIMIT],
            paid=resp.request.headers.get("Payment-Retry") == "1"
            or resp.request.headers.get("Payment-Recovery") == "1",
            payment_response=decode_payment_response(resp.headers),
        )
        if args.sent_headers:
            out["sent_headers"] = dict(resp.request.headers)
    except Exception as e:  # noqa: BLE001 - never crash, report instead
        out.update(status=0, headers={}, body="", paid=False, payment_response=None,
                   error=f"{type(e).__name__}: {e}")
        cause = e.__cause__
        if cause is not None:
            out["error"] += f" (caused by {type(cause).__name__}: {cause})"
    finally:
        session.close()
    out["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
    return out


def main() -> None:
    args = parse_args()
    x402_client = make_x402_client(args.key)
    lock = threading.Lock()

    def run(i: int) -> None:
        rec = one_request(i, args, x402_client)
        line = json.dumps(rec)
        with lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    if args.concurrency == 1 or args.count == 1:
        for i in range(args.count):
            run(i)
    else:
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            list(pool.map(run, range(args.count)))


if __name__ == "__main__":
    main()
