"""MPP over MCP: mcp 1.x lowlevel Server over streamable HTTP, paid tool via pympp verify_or_challenge (evm charge,
settled by the loopback x402 facilitator stub). usage: mpp_mcp_server.py PORT FACILITATOR_URL [raise|handler]"""
import contextlib, json, sys, uvicorn
import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.routing import Mount
from mpp.server import Mpp
from mpp.methods.evm import server as evm, BASE_SEPOLIA_USDC
from mpp.extensions.mcp import PaymentRequiredError, verify_or_challenge
PORT, FAC = int(sys.argv[1]), sys.argv[2]
MODE = sys.argv[3] if len(sys.argv) > 3 else "handler"
RECIP = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
mpp = Mpp(methods=[evm.charge(currency=BASE_SEPOLIA_USDC, recipient=RECIP, facilitator=FAC, route_binding="resource")],
          realm="mcp.merchant.test", secret_key="purser-research-secret")
server = Server("mpp-mcp-demo")

@server.list_tools()
async def list_tools():
    return [types.Tool(name="premium_echo", description="paid echo (0.01 USDC)",
                       inputSchema={"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]})]

async def run_tool(name, args, meta):
    res = await verify_or_challenge(mpp.charge(amount="0.01"), tool=name, meta=meta)
    if isinstance(res, list):
        raise PaymentRequiredError(challenges=res)
    cred, receipt = res
    return types.CallToolResult(content=[types.TextContent(type="text", text="echo: " + args.get("message", ""))],
                                _meta=receipt.to_meta())

if MODE == "raise":  # decorator style: the lowlevel decorator turns exceptions into isError results
    @server.call_tool()
    async def call_tool(name, args):
        ctx = server.request_context
        meta = ctx.meta.model_dump(by_alias=True, exclude_none=True) if ctx.meta else None
        return await run_tool(name, args, meta)
else:  # raw request handler: McpError propagates and becomes a JSON-RPC error
    async def handler(req: types.CallToolRequest):
        p = req.params
        meta = p.meta.model_dump(by_alias=True, exclude_none=True) if p.meta else None
        return types.ServerResult(await run_tool(p.name, p.arguments or {}, meta))
    server.request_handlers[types.CallToolRequest] = handler

mgr = StreamableHTTPSessionManager(app=server, json_response="--json" in sys.argv)
async def asgi(scope, receive, send): await mgr.handle_request(scope, receive, send)
@contextlib.asynccontextmanager
async def lifespan(app):
    async with mgr.run(): yield
app = Starlette(routes=[Mount("/mcp", app=asgi)], lifespan=lifespan)
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
