"""pympp server on Starlette: /paid offers tempo charge (2 currencies) + evm charge (EIP-3009, x402-compatible);
/paid-body binds a request-body digest. Chain RPC (tempo) and x402 facilitator (evm) are loopback stubs.
usage: mpp_server.py PORT FACILITATOR_URL TEMPO_RPC_URL"""
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from mpp.server import Mpp, pay
from mpp.methods.tempo import server as tempo
from mpp.methods.evm import server as evm, BASE_SEPOLIA_USDC
PORT, FAC, RPC = int(sys.argv[1]), sys.argv[2], sys.argv[3]
RECIP = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
server = Mpp(methods=[tempo.charge(recipient=RECIP, chain_id=42431, rpc_url=RPC),
                      evm.charge(currency=BASE_SEPOLIA_USDC, recipient=RECIP, facilitator=FAC, route_binding="resource")],
             realm="api.merchant.test", secret_key="purser-research-secret")

@pay(server.charge(amount="0.01", description="Market snapshot"))
async def paid(request, credential, receipt):
    return JSONResponse({"data": "snapshot", "reference": receipt.reference})

@pay(server.charge(amount="0.25", body=lambda req: req.body))
async def paid_body(request, credential, receipt):
    return JSONResponse({"data": "deep"})

app = Starlette(routes=[Route("/paid", paid), Route("/paid-body", paid_body, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
