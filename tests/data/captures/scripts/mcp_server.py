"""Minimal paid MCP server: FastMCP (mcp 1.x) + x402.mcp.create_payment_wrapper, facilitator = loopback stub.
usage: mcp_server.py PORT FACILITATOR_URL [--json]"""
import json, sys
from mcp.server.fastmcp import FastMCP
from x402.http import FacilitatorConfig, HTTPFacilitatorClient
from x402.mechanisms.evm.exact import register_exact_evm_server
from x402.schemas import ResourceConfig, ResourceInfo
from x402.server import x402ResourceServer
from x402.mcp import create_payment_wrapper

port, fac = int(sys.argv[1]), sys.argv[2]
json_mode = '--json' in sys.argv
PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"

rs = x402ResourceServer(HTTPFacilitatorClient(FacilitatorConfig(url=fac)))
register_exact_evm_server(rs, "eip155:84532")
rs.initialize() if not hasattr(rs.initialize, '__await__') else None
import asyncio, inspect
if inspect.iscoroutinefunction(rs.initialize):
    asyncio.run(rs.initialize())
accepts = rs.build_payment_requirements(ResourceConfig(scheme="exact", network="eip155:84532", payTo=PAY_TO,
                                                       price="$0.01", maxTimeoutSeconds=60))
if inspect.iscoroutine(accepts): accepts = asyncio.run(accepts)
paid = create_payment_wrapper(rs, accepts=accepts,
        resource=ResourceInfo(url="mcp://tool/get_weather", description="Weather for a city", mime_type="application/json"))

mcp = FastMCP("x402-mcp-demo", json_response=json_mode, host="127.0.0.1", port=port)

@mcp.tool()
def ping() -> str:
    """free tool"""
    return "pong"

@mcp.tool(name="get_weather", description="Weather for a city ($0.01)")
@paid
async def get_weather(city: str) -> str:
    return json.dumps({"city": city, "weather": "sunny", "temperature": 72})

mcp.run(transport="streamable-http")
