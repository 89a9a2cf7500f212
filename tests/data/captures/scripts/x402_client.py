"""x402 v2 client (official httpx client) with exact(EIP-3009+Permit2) and upto registered. usage: cli.py URL"""
import asyncio, sys, base64, json
from eth_account import Account
from x402 import x402Client
from x402.http.clients.httpx import x402HttpxClient
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import ExactEvmClientScheme
from x402.mechanisms.evm.upto.client import UptoEvmScheme
KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
async def main():
    s = EthAccountSigner(Account.from_key(KEY)); c = x402Client()
    c.register("eip155:84532", ExactEvmClientScheme(s)); c.register("eip155:84532", UptoEvmScheme(s))
    async with x402HttpxClient(c) as h:
        r = await h.get(sys.argv[1]); print(r.status_code, r.text)
        pr = r.headers.get("payment-response")
        if pr: print("PAYMENT-RESPONSE", json.loads(base64.b64decode(pr)))
asyncio.run(main())
