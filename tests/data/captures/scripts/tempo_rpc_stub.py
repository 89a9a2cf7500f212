"""Loopback JSON-RPC stub of a Tempo (Moderato, chain 42431) node: enough for pympp's tempo charge client and server.
Answers eth_chainId, eth_gasPrice, eth_estimateGas, eth_call(balanceOf), eth_getBlockByNumber, eth_getTransactionCount,
eth_sendRawTransactionSync (decodes the 0x76 tx, returns a success receipt with the TIP-20 Transfer[WithMemo] log),
eth_getTransactionReceipt. Logs every call to --log FILE. usage: tempo_rpc_stub.py PORT LOGFILE SENDER"""
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import rlp
from eth_hash.auto import keccak
PORT, LOG, SENDER = int(sys.argv[1]), sys.argv[2], sys.argv[3].lower()
TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
TRANSFER_MEMO = "0x57bc7354aa85aed339e000bccffabbc529466af35f0772c8f8ee1145927de7f0"
receipts = {}
def pad(a): return "0x" + a.lower().removeprefix("0x").rjust(64, "0")
def receipt_for(raw):
    b = bytes.fromhex(raw.removeprefix("0x")); assert b[0] == 0x76
    fields = rlp.decode(b[1:]); h = "0x" + keccak(b).hex(); logs = []
    for i, call in enumerate(fields[4]):
        to, data = "0x" + call[0].hex(), call[2]
        recip, amount = "0x" + data[16:36].hex(), int.from_bytes(data[36:68], "big")
        if len(data) >= 100:
            logs.append({"address": to, "topics": [TRANSFER_MEMO, pad(SENDER), pad(recip), "0x" + data[68:100].hex()],
                         "data": "0x" + amount.to_bytes(32, "big").hex(), "logIndex": hex(i), "transactionHash": h})
        else:
            logs.append({"address": to, "topics": [TRANSFER, pad(SENDER), pad(recip)], "data": "0x" + amount.to_bytes(32, "big").hex(),
                         "logIndex": hex(i), "transactionHash": h})
    r = {"status": "0x1", "transactionHash": h, "blockNumber": "0x10", "blockHash": "0x" + "ab" * 32, "from": SENDER,
         "to": logs[0]["address"] if logs else None, "logs": logs, "gasUsed": "0x5208", "type": "0x76"}
    receipts[h] = r; return r
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["content-length"])))
        m, p = req["method"], req.get("params", [])
        if m == "eth_chainId": res = hex(42431)
        elif m == "eth_gasPrice": res = hex(20_000_000_000)
        elif m == "eth_estimateGas": res = hex(60_000)
        elif m == "eth_getTransactionCount": res = "0x0"
        elif m == "eth_call": res = "0x" + (10**12).to_bytes(32, "big").hex()
        elif m == "eth_getBlockByNumber": res = {"number": "0x10", "timestamp": hex(int(time.time()))}
        elif m == "eth_sendRawTransactionSync": res = receipt_for(p[0])
        elif m == "eth_getTransactionReceipt": res = receipts.get(p[0])
        else: res = None
        out = {"jsonrpc": "2.0", "id": req.get("id"), "result": res}
        with open(LOG, "a") as f: f.write(json.dumps({"request": req, "response": out}) + "\n")
        body = json.dumps(out).encode()
        self.send_response(200); self.send_header("content-type", "application/json"); self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
ThreadingHTTPServer(("127.0.0.1", PORT), H).serve_forever()
