#!/usr/bin/env python3
"""Paid resources in the x402 schemes beyond EIP-3009 `exact`, served by the OFFICIAL x402
SDK (2.25.0) FastAPI middleware in front of the facilitator stub (made after
tests/data/captures/scripts/x402_upto_permit2_server.py):

  GET /permit2   `exact` paid through Permit2 (extra.assetTransferMethod "permit2"),
                 --permit2-atomic (default 20000 = 0.02 USDC)
  GET /upto      `upto`, a signed maximum of --upto-max (default 100000 = 0.10 USDC); the
                 handler charges ?charge=N (default --upto-charge, 37000) with the SDK's
                 set_settlement_overrides, so PAYMENT-RESPONSE.amount reports it

Prints "READY <port>" on stdout once listening (--port 0 picks a free port).
Proxy variables are removed so the SDK reaches the facilitator directly.
"""

import argparse
import os

ap = argparse.ArgumentParser(description="x402 Permit2 and upto paid server (SDK middleware)")
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port", type=int, default=0)
ap.add_argument("--facilitator", required=True)
ap.add_argument("--network", default="eip155:84532")
ap.add_argument("--asset", default="0x036CbD53842c5426634e7929541eC2318f3dCF7e")
ap.add_argument("--pay-to", default="0x209693Bc6afc0C5328bA36FaF03C514EF312287C")
ap.add_argument("--permit2-atomic", default="20000")
ap.add_argument("--upto-max", default="100000")
ap.add_argument("--upto-charge", default="37000")
args = ap.parse_args()

for key in list(os.environ):
    if key.lower() in ("http_proxy", "https_proxy", "all_proxy"):
        del os.environ[key]
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "*"

import socket

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from x402 import x402ResourceServer
from x402.http import FacilitatorConfig, HTTPFacilitatorClient
from x402.http.middleware.fastapi import payment_middleware, set_settlement_overrides
from x402.http.types import PaymentOption, RouteConfig
from x402.mechanisms.evm.exact import ExactEvmServerScheme
from x402.mechanisms.evm.upto.server import UptoEvmScheme

server = x402ResourceServer(HTTPFacilitatorClient(FacilitatorConfig(url=args.facilitator)))
server.register(args.network, ExactEvmServerScheme())
server.register(args.network, UptoEvmScheme())
usdc = {"name": "USDC", "version": "2"}
routes = {
    "GET /permit2": RouteConfig(
        accepts=PaymentOption(scheme="exact", pay_to=args.pay_to, network=args.network,
                              max_timeout_seconds=60,
                              price={"amount": args.permit2_atomic, "asset": args.asset,
                                     "extra": {**usdc, "assetTransferMethod": "permit2"}}),
        description="exact via Permit2"),
    "GET /upto": RouteConfig(
        accepts=PaymentOption(scheme="upto", pay_to=args.pay_to, network=args.network,
                              max_timeout_seconds=60,
                              price={"amount": args.upto_max, "asset": args.asset, "extra": usdc}),
        description="metered, up to the maximum"),
}
app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
middleware = payment_middleware(routes, server)


@app.middleware("http")
async def x402_middleware(request, call_next):
    return await middleware(request, call_next)


@app.get("/permit2")
async def permit2():
    return {"data": "permit2-paid"}


@app.get("/upto")
async def upto(request: Request):
    charge = request.query_params.get("charge", args.upto_charge)
    response = JSONResponse({"data": "metered", "charged": charge})
    set_settlement_overrides(response, {"amount": charge})
    return response


sock = socket.socket()
sock.bind((args.host, args.port))
print(f"READY {sock.getsockname()[1]}", flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
