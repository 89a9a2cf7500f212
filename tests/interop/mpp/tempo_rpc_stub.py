#!/usr/bin/env python3
"""Loopback JSON-RPC stub of a Tempo node (Moderato, chain 42431): the chain the pympp
tempo charge client and server talk to, and nothing more. It answers eth_chainId,
eth_gasPrice, eth_estimateGas, eth_call (balanceOf), eth_getBlockByNumber,
eth_getTransactionCount, eth_sendRawTransactionSync / eth_sendRawTransaction (decodes
the 0x76 transaction, returns a success receipt with the TIP-20 Transfer[WithMemo] logs)
and eth_getTransactionReceipt. Every call is appended to --log as one JSON line: a
broadcast there is money that moved. (From tests/data/captures/scripts/tempo_rpc_stub.py,
with a free port and READY.)

usage: tempo_rpc_stub.py --port 0 --log FILE --sender 0xADDRESS
"""
import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import rlp
from eth_hash.auto import keccak

TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
TRANSFER_MEMO = "0x57bc7354aa85aed339e000bccffabbc529466af35f0772c8f8ee1145927de7f0"


def pad(address):
    return "0x" + address.lower().removeprefix("0x").rjust(64, "0")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", required=True)
    parser.add_argument("--sender", required=True)
    args = parser.parse_args()
    sender = args.sender.lower()
    receipts = {}

    def receipt_for(raw):
        tx = bytes.fromhex(raw.removeprefix("0x"))
        fields = rlp.decode(tx[1:])
        tx_hash = "0x" + keccak(tx).hex()
        logs = []
        for index, call in enumerate(fields[4]):
            token, data = "0x" + call[0].hex(), call[2]
            recipient, amount = "0x" + data[16:36].hex(), int.from_bytes(data[36:68], "big")
            topics = [TRANSFER, pad(sender), pad(recipient)]
            if len(data) >= 100:
                topics = [TRANSFER_MEMO, pad(sender), pad(recipient), "0x" + data[68:100].hex()]
            logs.append({"address": token, "topics": topics,
                         "data": "0x" + amount.to_bytes(32, "big").hex(),
                         "logIndex": hex(index), "transactionHash": tx_hash})
        receipt = {"status": "0x1", "transactionHash": tx_hash, "blockNumber": "0x10",
                   "blockHash": "0x" + "ab" * 32, "from": sender,
                   "to": logs[0]["address"] if logs else None, "logs": logs,
                   "gasUsed": "0x5208", "type": "0x76"}
        receipts[tx_hash] = receipt
        return receipt

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_POST(self):  # noqa: N802
            request = json.loads(self.rfile.read(int(self.headers["content-length"])))
            method, params = request["method"], request.get("params", [])
            if method == "eth_chainId":
                result = hex(42431)
            elif method == "eth_gasPrice":
                result = hex(20_000_000_000)
            elif method == "eth_estimateGas":
                result = hex(60_000)
            elif method == "eth_getTransactionCount":
                result = "0x0"
            elif method == "eth_call":
                result = "0x" + (10**12).to_bytes(32, "big").hex()
            elif method == "eth_getBlockByNumber":
                result = {"number": "0x10", "timestamp": hex(int(time.time()))}
            elif method == "eth_sendRawTransactionSync":
                result = receipt_for(params[0])
            elif method == "eth_sendRawTransaction":
                result = receipt_for(params[0])["transactionHash"]
            elif method == "eth_getTransactionReceipt":
                result = receipts.get(params[0])
            else:
                result = None
            answer = {"jsonrpc": "2.0", "id": request.get("id"), "result": result}
            with open(args.log, "a", encoding="utf-8") as log:
                log.write(json.dumps({"request": request, "response": answer}) + "\n")
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
