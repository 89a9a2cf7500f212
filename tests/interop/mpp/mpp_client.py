#!/usr/bin/env python3
"""An agent that pays with the Machine Payments Protocol: the official pympp 0.16.0
client, through a proxy (Purser), for loopback interop tests.

pympp's ``PaymentTransport`` pays 402s itself; its inner transport is pointed at the
proxy (an httpx client given its own transport would bypass HTTP_PROXY). The chain
(``--rpc``, for tempo) is reached directly: it is the payment backend, not the merchant.

Modes (each prints one JSON line per request: status, headers, body, and the credential
the client sent, if any):
  pay       pay as the SDK does (``--count`` times)
  foreign   pay a challenge fetched from the merchant directly, not through the proxy
            (or through ``--probe-proxy``, another session's proxy URL)
  altered   pay a challenge fetched through the proxy, with its echoed request changed
  replay    pay as the SDK does, then send the same credential again

usage: mpp_client.py --url URL --proxy URL [--method evm|tempo] [--rpc URL]
                     [--mode pay|foreign|altered|replay] [--count N] [--data BODY]
                     [--header 'K: V'] [--probe-proxy URL]
"""
import argparse
import asyncio
import base64
import json
import os

for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(name, None)

import httpx
from eth_account import Account
from mpp import Challenge, Credential, ChallengeEcho
from mpp.client import PaymentTransport
from mpp.runtime import CredentialParams

# The public test key every capture used (address 0x2c7536E3605D9C16a7a3D7b1898e529396a65c23).
KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"


def method_for(args):
    if args.method == "evm":
        from mpp.methods.evm import BASE_SEPOLIA_USDC
        from mpp.methods.evm import client as evm
        return evm.charge(currency=BASE_SEPOLIA_USDC, account=Account.from_key(KEY))
    from mpp.methods.tempo import TempoAccount
    from mpp.methods.tempo import client as tempo
    return tempo.charge(account=TempoAccount.from_key(KEY), rpc_url=args.rpc)


class Recording(httpx.AsyncBaseTransport):
    """The proxied transport, remembering the credential of the last request it sent."""

    def __init__(self, proxy):
        self.inner = httpx.AsyncHTTPTransport(proxy=proxy)
        self.sent = None

    async def handle_async_request(self, request):
        self.sent = request.headers.get("authorization") or request.headers.get(
            "payment-authorization")
        return await self.inner.handle_async_request(request)

    async def aclose(self):
        await self.inner.aclose()


def report(response, sent=None):
    body = response.content.decode("utf-8", "replace")
    print(json.dumps({"status": response.status_code,
                      "headers": {k.lower(): v for k, v in response.headers.items()},
                      "body": body[:4000], "authorization": sent}), flush=True)


def request_kwargs(args):
    headers = dict(h.split(": ", 1) for h in args.header)
    if args.data is not None:
        headers.setdefault("content-type", "application/json")
        return "POST", {"content": args.data.encode(), "headers": headers}
    return "GET", {"headers": headers}


async def challenge_for(method, response):
    """The challenge of a 402 that the configured method pays."""
    for value in response.headers.get_list("www-authenticate"):
        challenge = Challenge.from_www_authenticate(value)
        if challenge.method == method.name and (
                method.can_handle_challenge is None or method.can_handle_challenge(challenge)):
            return challenge
    raise SystemExit(f"no {method.name} challenge in {response.status_code} {response.headers}")


async def pay_by_hand(args, method, proxied, probe_client):
    verb, kwargs = request_kwargs(args)
    probe = await probe_client.request(verb, args.url, **kwargs)
    challenge = await challenge_for(method, probe)
    authorization = await method.create_credential(CredentialParams(challenge=challenge))
    if args.mode == "altered":
        credential = Credential.from_authorization(authorization)
        echo = credential.challenge
        request = json.loads(base64.urlsafe_b64decode(echo.request + "=" * (-len(echo.request) % 4)))
        request["amount"] = "1"
        changed = base64.urlsafe_b64encode(
            json.dumps(request, separators=(",", ":"), sort_keys=True).encode()).decode().rstrip("=")
        altered = ChallengeEcho(id=echo.id, realm=echo.realm, method=echo.method,
                                intent=echo.intent, request=changed, expires=echo.expires,
                                digest=echo.digest, opaque=echo.opaque, header=echo.header,
                                description=echo.description)
        authorization = Credential(challenge=altered, payload=credential.payload,
                                   source=credential.source).to_authorization()
    kwargs["headers"] = {**kwargs["headers"], "authorization": authorization}
    async with httpx.AsyncClient(transport=proxied, trust_env=False, timeout=60) as client:
        report(await client.request(verb, args.url, **kwargs), authorization)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--proxy", required=True)
    parser.add_argument("--method", choices=["evm", "tempo"], default="evm")
    parser.add_argument("--rpc")
    parser.add_argument("--mode", choices=["pay", "foreign", "altered", "replay"], default="pay")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--data")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--probe-proxy")
    args = parser.parse_args()
    method = method_for(args)
    recording = Recording(args.proxy)

    if args.mode in ("foreign", "altered"):
        direct = httpx.AsyncClient(trust_env=False, timeout=60, proxy=args.probe_proxy)
        proxied = httpx.AsyncClient(transport=recording, trust_env=False, timeout=60)
        probe_client = direct if args.mode == "foreign" else proxied
        await pay_by_hand(args, method, Recording(args.proxy), probe_client)
        await direct.aclose()
        return

    transport = PaymentTransport([method], inner=recording)
    verb, kwargs = request_kwargs(args)
    async with httpx.AsyncClient(transport=transport, trust_env=False, timeout=60) as client:
        for _ in range(args.count):
            response = await client.request(verb, args.url, **kwargs)
            report(response, recording.sent)
        if args.mode == "replay":
            kwargs["headers"] = {**kwargs["headers"], "authorization": recording.sent}
            async with httpx.AsyncClient(transport=Recording(args.proxy), trust_env=False,
                                         timeout=60) as again:
                report(await again.request(verb, args.url, **kwargs), recording.sent)


if __name__ == "__main__":
    asyncio.run(main())
