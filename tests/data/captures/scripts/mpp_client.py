"""pympp client: evm charge (EIP-3009) with a throwaway key. usage: mpp_client.py URL [evm|tempo] [POST-body]"""
import asyncio, sys
from eth_account import Account
from mpp.client import Mpp
from mpp.methods.evm import client as evm, BASE_SEPOLIA_USDC
KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
async def main():
    url, kind = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "evm")
    if kind == "evm":
        methods = [evm.charge(currency=BASE_SEPOLIA_USDC, account=Account.from_key(KEY))]
    else:
        from mpp.methods.tempo import TempoAccount, client as tempo
        methods = [tempo.charge(account=TempoAccount.from_key(KEY), rpc_url=sys.argv[4] if len(sys.argv) > 4 else None)]
    async with Mpp(methods=methods) as m:
        if len(sys.argv) > 3 and sys.argv[3] != '-':
            r = await m.fetch(url, method="POST", content=sys.argv[3].encode(), headers={"content-type": "application/json"})
        else:
            r = await m.fetch(url)
        print(r.status_code, dict(r.headers), r.text[:300])
asyncio.run(main())
