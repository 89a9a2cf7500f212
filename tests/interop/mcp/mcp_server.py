#!/usr/bin/env python3
"""Paid MCP server for loopback interop tests: the OFFICIAL x402 MCP server wrapper
(x402.mcp.create_payment_wrapper, x402 2.25.0) on the official MCP SDK's FastMCP
(mcp 1.30.0), streamable HTTP at /mcp, settling through --facilitator (the stub).

Tools:
  ping              free, answers "pong"
  get_weather       paid, --price-atomic (default 10000 = 0.01 USDC)
  premium_report    paid, --premium-atomic (default 20000)
  echo_size         free, answers the length of its `text` argument

Answers are server-sent events, or JSON with --json. --max-timeout sets the offers'
maxTimeoutSeconds (what the client waits for a paid call). Prints "READY <port>" once
listening (--port 0 picks a free port); --tls-cert/--tls-key serve HTTPS. Proxy
variables are removed from this process so the facilitator is reached directly.
"""

import argparse
import asyncio
import inspect
import json
import os
import socket
import sys

PAY_TO = "0x2096000000000000000000000000000000000287"
NETWORK = "eip155:84532"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="paid MCP server (official x402 MCP wrapper)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--facilitator", required=True)
    ap.add_argument("--price-atomic", default="10000")
    ap.add_argument("--premium-atomic", default="20000")
    ap.add_argument("--max-timeout", type=int, default=60)
    ap.add_argument("--json", action="store_true", help="application/json answers instead of SSE")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    return ap.parse_args()


def resolve(value):
    return asyncio.run(value) if inspect.iscoroutine(value) else value


def main() -> None:
    args = parse_args()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        os.environ.pop(name, None)

    import uvicorn
    from mcp.server.fastmcp import FastMCP
    from x402.http import FacilitatorConfig, HTTPFacilitatorClient
    from x402.mcp import create_payment_wrapper
    from x402.mechanisms.evm.exact import register_exact_evm_server
    from x402.schemas import ResourceConfig, ResourceInfo
    from x402.server import x402ResourceServer

    server = x402ResourceServer(HTTPFacilitatorClient(FacilitatorConfig(url=args.facilitator)))
    register_exact_evm_server(server, NETWORK)
    resolve(server.initialize())

    def paid(name: str, atomic: str, description: str):
        accepts = resolve(server.build_payment_requirements(ResourceConfig(
            scheme="exact", network=NETWORK, payTo=PAY_TO, price=f"${int(atomic) / 1e6:.6f}",
            maxTimeoutSeconds=args.max_timeout)))
        return create_payment_wrapper(server, accepts=accepts, resource=ResourceInfo(
            url=f"mcp://tool/{name}", description=description, mime_type="application/json"))

    # CRITICAL: the SDK logs an error with a traceback for every session a client closes
    # (its standalone SSE writer), with or without Purser in between.
    mcp = FastMCP("purser-interop", json_response=args.json, host="127.0.0.1", port=0,
                  log_level="CRITICAL")

    @mcp.tool()
    def ping() -> str:
        """Free: answers pong."""
        return "pong"

    @mcp.tool()
    def echo_size(text: str) -> str:
        """Free: the length of its argument."""
        return str(len(text))

    @mcp.tool(name="get_weather", description="Weather for a city (paid)")
    @paid("get_weather", args.price_atomic, "Weather for a city")
    async def get_weather(city: str) -> str:
        return json.dumps({"city": city, "weather": "sunny", "temperature": 72})

    @mcp.tool(name="premium_report", description="A premium report (paid)")
    @paid("premium_report", args.premium_atomic, "A premium report")
    async def premium_report(topic: str) -> str:
        return json.dumps({"topic": topic, "report": "premium"})

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(1024)
    port = sock.getsockname()[1]

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            print(f"READY {port}", flush=True)

    tls = {}
    if args.tls_cert:
        tls = {"ssl_certfile": args.tls_cert, "ssl_keyfile": args.tls_key}
    app = mcp.streamable_http_app()
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=30,
                            lifespan="on", **tls)
    Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
