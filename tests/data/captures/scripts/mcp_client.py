"""Official MCP client (mcp 1.x streamable HTTP) + x402MCPSession (x402.mcp). usage: mcp_client.py URL"""
import asyncio, json, sys
from eth_account import Account
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from x402 import x402Client
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mcp import x402MCPSession

KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"  # throwaway, public test key
url = sys.argv[1]
mode = sys.argv[2] if len(sys.argv) > 2 else "pay"

async def main():
    acct = Account.from_key(KEY)
    pc = x402Client(); register_exact_evm_client(pc, EthAccountSigner(acct))
    async with streamablehttp_client(url) as (r, w, get_sid):
        async with ClientSession(r, w) as s:
            x = x402MCPSession(s, pc)
            await x.initialize()
            print("session", get_sid())
            tl = await s.list_tools(); print("tools", [t.name for t in tl.tools])
            res = await x.call_tool("ping", {}); print("ping ->", res.content, res.is_error, res.payment_made)
            try:
                res = await x.call_tool("get_weather", {"city": "Paris"})
                print("PAID ->", "is_error=", res.is_error, "payment_made=", res.payment_made)
                print("   content:", res.content)
                print("   payment_response:", res.payment_response)
            except Exception as e:
                print("PAID RAISED", type(e).__name__, repr(e))
            # is the session still usable afterwards?
            try:
                res = await x.call_tool("ping", {}); print("ping after ->", res.content, res.is_error)
            except Exception as e:
                print("PING AFTER RAISED", type(e).__name__, repr(e))
asyncio.run(main())
