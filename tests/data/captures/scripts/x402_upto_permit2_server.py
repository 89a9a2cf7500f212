"""x402 v2 FastAPI server (official middleware): /permit2 = exact via Permit2, /upto = upto (max $0.10, settles 0.037).
usage: srv.py PORT FACILITATOR_URL"""
import sys, uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from x402 import x402ResourceServer
from x402.http import FacilitatorConfig, HTTPFacilitatorClient
from x402.http.middleware.fastapi import payment_middleware, set_settlement_overrides
from x402.http.types import PaymentOption, RouteConfig
from x402.mechanisms.evm.exact import ExactEvmServerScheme
from x402.mechanisms.evm.upto.server import UptoEvmScheme
PORT, FAC = int(sys.argv[1]), sys.argv[2]
NET, USDC, PAY_TO = "eip155:84532", "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
rs = x402ResourceServer(HTTPFacilitatorClient(FacilitatorConfig(url=FAC)))
rs.register(NET, ExactEvmServerScheme()); rs.register(NET, UptoEvmScheme())
routes = {
  "GET /permit2": RouteConfig(accepts=PaymentOption(scheme="exact", pay_to=PAY_TO, network=NET, max_timeout_seconds=60,
        price={"amount": "20000", "asset": USDC, "extra": {"name": "USDC", "version": "2", "assetTransferMethod": "permit2"}}),
        description="exact via Permit2"),
  "GET /upto": RouteConfig(accepts=PaymentOption(scheme="upto", pay_to=PAY_TO, network=NET, max_timeout_seconds=60,
        price={"amount": "100000", "asset": USDC, "extra": {"name": "USDC", "version": "2"}}), description="metered, up to $0.10"),
}
app = FastAPI(); mw = payment_middleware(routes, rs)
@app.middleware("http")
async def x402_mw(request, call_next): return await mw(request, call_next)
@app.get("/permit2")
async def p2(): return {"data": "permit2-paid"}
@app.get("/upto")
async def upto():
    resp = JSONResponse({"data": "metered", "used_units": 37})
    set_settlement_overrides(resp, {"amount": "37000"})
    return resp
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
