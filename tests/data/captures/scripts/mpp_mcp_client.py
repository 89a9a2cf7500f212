"""MPP over MCP client: official mcp ClientSession + pympp McpClient (evm charge). usage: mpp_mcp_client.py URL"""
import asyncio, sys
from eth_account import Account
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from mpp.extensions.mcp import McpClient
from mpp.methods.evm import client as evm, BASE_SEPOLIA_USDC
KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
async def main():
    async with streamablehttp_client(sys.argv[1]) as (r, w, _):
        async with ClientSession(r, w) as s:
            await s.initialize()
            c = McpClient(s, methods=[evm.charge(currency=BASE_SEPOLIA_USDC, account=Account.from_key(KEY))])
            try:
                res = await c.call_tool("premium_echo", {"message": "hi"})
                print("RESULT", res.result.isError, res.result.content, "receipt:", res.receipt)
            except Exception as e:
                print("RAISED", type(e).__name__, e)
asyncio.run(main())
