#!/usr/bin/env python3
"""A merchant paid with the Machine Payments Protocol: the official pympp 0.16.0 server
(Starlette), for loopback interop tests.

Routes (realm ``api.merchant.test``, recipient 0x2096...287C):
  GET  /paid       0.01 USD: two tempo charge challenges (OUSD, pathUSD on Moderato,
                   chain 42431) and one evm charge (USDC on Base Sepolia, EIP-3009)
  POST /paid-body  0.25 USD, the challenge binds the request body (``digest``)
  GET  /pricey     0.75 USD, the same three challenges

Only the payment backends are stubs on loopback: the evm method settles through an x402
facilitator (``tests/interop/facilitator_stub.py``), the tempo method broadcasts to a
Tempo JSON-RPC node (``tempo_rpc_stub.py``). Prints ``READY <port>`` once listening.

usage: mpp_server.py --port 0 --facilitator URL --tempo-rpc URL
"""
import argparse
import os
import socket

for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(name, None)

import uvicorn
from mpp.methods.evm import BASE_SEPOLIA_USDC
from mpp.methods.evm import server as evm
from mpp.methods.tempo import server as tempo
from mpp.server import Mpp, pay
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

RECIPIENT = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"


def build(facilitator: str, rpc: str) -> Starlette:
    server = Mpp(
        methods=[
            tempo.charge(recipient=RECIPIENT, chain_id=42431, rpc_url=rpc),
            evm.charge(currency=BASE_SEPOLIA_USDC, recipient=RECIPIENT,
                       facilitator=facilitator, route_binding="resource"),
        ],
        realm="api.merchant.test",
        secret_key="purser-interop-secret-of-32-bytes!!",
    )

    @pay(server.charge(amount="0.01", description="Market snapshot"))
    async def paid(request, credential, receipt):
        return JSONResponse({"data": "snapshot", "reference": receipt.reference})

    @pay(server.charge(amount="0.25", body=lambda req: req.body))
    async def paid_body(request, credential, receipt):
        return JSONResponse({"data": "deep", "reference": receipt.reference})

    @pay(server.charge(amount="0.75", description="Full report"))
    async def pricey(request, credential, receipt):
        return JSONResponse({"data": "report", "reference": receipt.reference})

    return Starlette(routes=[
        Route("/paid", paid),
        Route("/paid-body", paid_body, methods=["POST"]),
        Route("/pricey", pricey),
    ])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--facilitator", required=True)
    parser.add_argument("--tempo-rpc", required=True)
    args = parser.parse_args()
    app = build(args.facilitator, args.tempo_rpc)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(1024)
    port = sock.getsockname()[1]

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            print(f"READY {port}", flush=True)

    config = uvicorn.Config(app, log_level="warning", access_log=False)
    Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
