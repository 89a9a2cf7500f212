#!/usr/bin/env python3
"""An agent's MCP session for loopback interop tests: the OFFICIAL MCP client (mcp 1.30.0
ClientSession over streamable HTTP) with the OFFICIAL x402 MCP client (x402 2.25.0
x402MCPSession), paying with the public test key. The proxy comes from HTTP(S)_PROXY,
as any httpx client reads it; SSL_CERT_FILE names the CA to trust.

usage: mcp_agent.py --url URL STEP...

Every step runs in ONE MCP session, in order, and prints one JSON line:
  call:TOOL[:ARG]     x402MCPSession.call_tool (probes, pays if asked, retries)
  big:TOOL:N          the same with an argument N bytes long
  replay:TOOL         probes, signs one payment, sends it twice (the second is a replay)
Each line: {"step", "tool", "is_error", "payment_made", "payment_response", "text",
"structured", "error"}; "error" is the exception, if the call raised one. A last line
{"closed": true|false, "error"} says whether the session closed cleanly.
"""

import argparse
import asyncio
import json
import sys
import traceback

KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"  # public test key
ARGS = {"get_weather": "city", "premium_report": "topic", "echo_size": "text"}


def emit(line: dict) -> None:
    print(json.dumps(line, default=str), flush=True)


def describe(step, tool, result=None, error=None, payment_made=None):
    line = {"step": step, "tool": tool, "is_error": None, "payment_made": payment_made,
            "payment_response": None, "text": None, "structured": None, "error": None}
    if error is not None:
        line["error"] = f"{type(error).__name__}: {error}"
        return line
    raw = getattr(result, "raw_result", result)
    line["is_error"] = bool(getattr(raw, "isError", False))
    if hasattr(result, "payment_made"):
        line["payment_made"] = result.payment_made
    pr = getattr(result, "payment_response", None)
    if pr is None and getattr(raw, "meta", None):
        pr = dict(raw.meta).get("x402/payment-response")
    if pr is not None:
        line["payment_response"] = pr.model_dump(by_alias=True) if hasattr(pr, "model_dump") else pr
    content = getattr(raw, "content", None) or []
    texts = [c.text for c in content if hasattr(c, "text")]
    line["text"] = texts[0] if texts else None
    line["structured"] = getattr(raw, "structuredContent", None)
    return line


def arguments(tool: str, value: str) -> dict:
    return {ARGS.get(tool, "arg"): value} if tool in ARGS else {}


async def replay(session, x402, client, step, tool):
    from x402.mcp import MCP_PAYMENT_META_KEY
    probe = await session.call_tool(name=tool, arguments=arguments(tool, "Paris"))
    required = x402._extract_payment_required(probe)
    payload = await client.create_payment_payload(required)
    meta = {MCP_PAYMENT_META_KEY: payload.model_dump(by_alias=True)}
    for attempt in ("first", "again"):
        try:
            result = await session.call_tool(name=tool, arguments=arguments(tool, "Paris"), meta=meta)
            emit(describe(f"{step}:{attempt}", tool, result, payment_made=True))
        except Exception as error:  # noqa: BLE001
            emit(describe(f"{step}:{attempt}", tool, error=error))


async def run(url: str, steps: list[str]) -> None:
    from eth_account import Account
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client
    from x402 import x402Client
    from x402.mcp import x402MCPSession
    from x402.mechanisms.evm import EthAccountSigner
    from x402.mechanisms.evm.exact import register_exact_evm_client

    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(Account.from_key(KEY)))
    async with streamablehttp_client(url) as (read, write, _session_id):
        async with ClientSession(read, write) as session:
            x402 = x402MCPSession(session, client)
            await x402.initialize()
            for step in steps:
                kind, _, rest = step.partition(":")
                tool, _, value = rest.partition(":")
                try:
                    if kind == "call":
                        result = await x402.call_tool(tool, arguments(tool, value or "Paris"))
                        emit(describe(step, tool, result))
                    elif kind == "big":
                        result = await x402.call_tool(tool, arguments(tool, "x" * int(value)))
                        emit(describe(step, tool, result))
                    elif kind == "replay":
                        await replay(session, x402, client, step, tool)
                    else:
                        raise ValueError(f"unknown step {step}")
                except Exception as error:  # noqa: BLE001
                    emit(describe(step, tool, error=error))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("steps", nargs="+")
    args = ap.parse_args()
    try:
        asyncio.run(run(args.url, args.steps))
        emit({"closed": True, "error": None})
    except BaseException as error:  # noqa: BLE001  (an ExceptionGroup when the transport dies)
        emit({"closed": False, "error": "".join(traceback.format_exception(error))[-2000:]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
