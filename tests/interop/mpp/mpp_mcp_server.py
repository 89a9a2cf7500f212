#!/usr/bin/env python3
"""An MCP server paid with the Machine Payments Protocol, for loopback interop tests: the
official MCP SDK's low-level server (mcp 1.30.0, streamable HTTP at /mcp) with the
official pympp 0.16.0 MCP extension (``verify_or_challenge``: draft-payment-transport-mcp-00).

Tools (realm ``mcp.merchant.test``, recipient 0x2096...287C):
  ping           free, answers "pong"
  premium_echo   0.01 USD, an evm charge (USDC on Base Sepolia, EIP-3009), echoes ``message``

The paid tool answers a call without a credential with a JSON-RPC error -32042 whose data
carries the challenges, and a paid call with its result and the receipt in
``result._meta["org.paymentauth/receipt"]``. It is a raw ``CallToolRequest`` handler: the
``@server.call_tool()`` decorator (and FastMCP) would turn the -32042 into an ``isError``
text result, which pympp's ``McpClient`` never pays. Only the payment backend is a stub on
loopback: the evm method settles through the x402 facilitator stub
(``tests/interop/facilitator_stub.py``). Answers are server-sent events, or JSON with
``--json``. Prints ``READY <port>`` once listening.

usage: mpp_mcp_server.py --port 0 --facilitator URL [--json]
"""
import argparse
import contextlib
import os
import socket

for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(name, None)

import mcp.types as types
import uvicorn
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mpp.extensions.mcp import PaymentRequiredError, verify_or_challenge
from mpp.methods.evm import BASE_SEPOLIA_USDC
from mpp.methods.evm import server as evm
from mpp.server import Mpp
from starlette.applications import Starlette
from starlette.routing import Mount

RECIPIENT = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"


def build(facilitator: str, json_response: bool) -> Starlette:
    payments = Mpp(
        methods=[evm.charge(currency=BASE_SEPOLIA_USDC, recipient=RECIPIENT,
                            facilitator=facilitator, route_binding="resource")],
        realm="mcp.merchant.test",
        secret_key="purser-interop-secret-of-32-bytes!!",
    )
    server = Server("purser-mpp-mcp")

    @server.list_tools()
    async def list_tools():
        text = {"type": "object", "properties": {"message": {"type": "string"}}}
        return [
            types.Tool(name="ping", description="free", inputSchema={"type": "object"}),
            types.Tool(name="premium_echo", description="paid echo (0.01 USDC)",
                       inputSchema=text),
        ]

    async def call_tool(request: types.CallToolRequest):
        params = request.params
        if params.name == "ping":
            content = [types.TextContent(type="text", text="pong")]
            return types.ServerResult(types.CallToolResult(content=content))
        meta = params.meta.model_dump(by_alias=True, exclude_none=True) if params.meta else None
        paid = await verify_or_challenge(payments.charge(amount="0.01"), tool=params.name,
                                         meta=meta)
        if isinstance(paid, list):
            raise PaymentRequiredError(challenges=paid)
        _credential, receipt = paid
        message = (params.arguments or {}).get("message", "")
        content = [types.TextContent(type="text", text=f"echo: {message}")]
        return types.ServerResult(types.CallToolResult(content=content, _meta=receipt.to_meta()))

    server.request_handlers[types.CallToolRequest] = call_tool
    manager = StreamableHTTPSessionManager(app=server, json_response=json_response)

    async def asgi(scope, receive, send):
        await manager.handle_request(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        async with manager.run():
            yield

    return Starlette(routes=[Mount("/mcp", app=asgi)], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--facilitator", required=True)
    parser.add_argument("--json", action="store_true", help="JSON answers instead of SSE")
    args = parser.parse_args()
    app = build(args.facilitator, args.json)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(1024)
    port = sock.getsockname()[1]

    class Ready(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            print(f"READY {port}", flush=True)

    # CRITICAL: the SDK logs a traceback for every session a client closes.
    config = uvicorn.Config(app, log_level="critical", access_log=False)
    Ready(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
