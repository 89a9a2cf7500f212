#!/usr/bin/env python3
"""An agent's MCP session paying with the Machine Payments Protocol, for loopback interop
tests: the official MCP client (mcp 1.30.0 ``ClientSession`` over streamable HTTP) with the
official pympp 0.16.0 MCP client (``mpp.extensions.mcp.McpClient``: a ``-32042`` answer is
paid with an evm charge credential in ``params._meta["org.paymentauth/credential"]`` and
the call retried), signing with the public test key. The proxy comes from HTTP(S)_PROXY,
as any httpx client reads it.

usage: mpp_mcp_agent.py --url URL STEP...

Every step runs in ONE MCP session, in order, and prints one JSON line:
  ping            a free call, without McpClient
  call:TOOL       McpClient.call_tool (the probe, then the paid retry)
  replay:TOOL     probes, makes one credential, sends it twice (the second is a replay)
Each line: {"step", "is_error", "text", "structured", "receipt", "error"}; "error" is the
exception, if the call raised one. A last line {"closed": true|false, "error"} says
whether the session closed cleanly.
"""
import argparse
import asyncio
import json
import sys
import traceback

KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"  # public test key
ARGUMENTS = {"message": "hi"}


def emit(line: dict) -> None:
    print(json.dumps(line, default=str), flush=True)


def describe(step, result=None, receipt=None, error=None):
    line = {"step": step, "is_error": None, "text": None, "structured": None,
            "receipt": None, "error": None}
    if error is not None:
        line["error"] = f"{type(error).__name__}: {error}"
        return line
    line["is_error"] = bool(getattr(result, "isError", False))
    texts = [c.text for c in (getattr(result, "content", None) or []) if hasattr(c, "text")]
    line["text"] = texts[0] if texts else None
    line["structured"] = getattr(result, "structuredContent", None)
    if receipt is not None:
        line["receipt"] = receipt.to_dict()
    return line


async def replay(session, method, step, tool):
    """One credential for the tool's challenge, sent twice."""
    from mcp.shared.exceptions import McpError
    from mpp.extensions.mcp import MCPChallenge, MCPCredential, McpClient
    from mpp.runtime import PaymentRuntime

    try:
        await session.call_tool(tool, ARGUMENTS)
        raise RuntimeError(f"{tool} answered without asking to be paid")
    except McpError as asked:
        challenges = asked.error.data["challenges"]
    challenge = MCPChallenge.from_dict(challenges[0])
    core = await PaymentRuntime([method]).create_credential(challenge.to_core(), method)
    meta = MCPCredential.from_core(core, challenge).to_meta()
    for attempt in ("first", "again"):
        try:
            result = await session.call_tool(tool, ARGUMENTS, meta=meta)
            emit(describe(f"{step}:{attempt}", result, McpClient._extract_receipt(result)))
        except Exception as error:  # noqa: BLE001
            emit(describe(f"{step}:{attempt}", error=error))


async def run(url: str, steps: list[str]) -> None:
    from eth_account import Account
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client
    from mpp.extensions.mcp import McpClient
    from mpp.methods.evm import BASE_SEPOLIA_USDC
    from mpp.methods.evm import client as evm

    method = evm.charge(currency=BASE_SEPOLIA_USDC, account=Account.from_key(KEY))
    async with streamablehttp_client(url) as (read, write, _session_id):
        async with ClientSession(read, write) as session:
            await session.initialize()
            paying = McpClient(session, methods=[method])
            for step in steps:
                kind, _, tool = step.partition(":")
                try:
                    if kind == "ping":
                        emit(describe(step, await session.call_tool("ping", {})))
                    elif kind == "call":
                        paid = await paying.call_tool(tool, ARGUMENTS)
                        emit(describe(step, paid.result, paid.receipt))
                    elif kind == "replay":
                        await replay(session, method, step, tool)
                    else:
                        raise ValueError(f"unknown step {step}")
                except Exception as error:  # noqa: BLE001
                    emit(describe(step, error=error))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("steps", nargs="+")
    args = parser.parse_args()
    try:
        asyncio.run(run(args.url, args.steps))
        emit({"closed": True, "error": None})
    except BaseException as error:  # noqa: BLE001  (an ExceptionGroup when the transport dies)
        emit({"closed": False, "error": "".join(traceback.format_exception(error))[-2000:]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
