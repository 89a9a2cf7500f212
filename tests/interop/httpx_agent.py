#!/usr/bin/env python3
"""Paying agent on the official x402 SDK's httpx integration, which ignores proxies.

`x402HttpxClient` (x402.http.clients.httpx) sends through its own
`httpx.AsyncHTTPTransport()`, made without a proxy: HTTP_PROXY / HTTPS_PROXY never
reach it. Only a kernel redirect (`purser redirect`) puts Purser in its path. TLS
trusts SSL_CERT_FILE, as httpx does.

    httpx_agent.py --url URL [--header 'Name: value' ...]

Prints ONE JSON line: {"status", "headers", "body", "paid"} or {"status": 0, "error"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json

DEFAULT_KEY = "0x" + "11" * 32  # the throwaway key of the SDK's test vectors; never fund it


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True)
    ap.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    from eth_account import Account
    from x402 import x402Client
    from x402.http.clients import x402HttpxClient
    from x402.mechanisms.evm.exact import register_exact_evm_client
    from x402.mechanisms.evm.signers import EthAccountSigner

    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(Account.from_key(DEFAULT_KEY)))
    client.set_spend_controls(False)  # the proxy under test is what governs spending
    headers = {}
    for h in args.header:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    out: dict = {}
    try:
        async with x402HttpxClient(client, timeout=args.timeout) as http:
            resp = await http.get(args.url, headers=headers)
            await resp.aread()
            out.update(
                status=resp.status_code,
                headers={k.lower(): v for k, v in resp.headers.items()},
                body=resp.text[:2000],
                paid="payment-response" in resp.headers or "x-payment-response" in resp.headers,
            )
    except Exception as e:  # noqa: BLE001 - report, never crash
        out.update(status=0, paid=False, error=f"{type(e).__name__}: {e}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
