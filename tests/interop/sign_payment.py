#!/usr/bin/env python3
"""Signs a payment with the OFFICIAL x402 SDK (2.25.0) for a server's challenge, with the
challenge's amount changed first, and prints the PAYMENT-SIGNATURE header value: a real
signature over more (or less) than the merchant asked, for tests of what Purser refuses.

usage: sign_payment.py --url URL --amount ATOMIC [--key HEX]
The challenge is fetched from URL directly (no proxy).
"""

import argparse
import os

import requests
from eth_account import Account
from x402 import x402ClientSync
from x402.http.utils import decode_payment_required_header, encode_payment_signature_header
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.mechanisms.evm.upto.client import UptoEvmScheme

ap = argparse.ArgumentParser()
ap.add_argument("--url", required=True)
ap.add_argument("--amount", required=True)
ap.add_argument("--key", default="0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
args = ap.parse_args()

session = requests.Session()
session.trust_env = False
answer = session.get(args.url, timeout=30)
assert answer.status_code == 402, f"expected a 402 challenge, got {answer.status_code}"
required = decode_payment_required_header(answer.headers["payment-required"])
for offer in required.accepts:
    offer.amount = args.amount
signer = EthAccountSigner(Account.from_key(args.key))
client = x402ClientSync()
register_exact_evm_client(client, signer)
client.register("eip155:*", UptoEvmScheme(signer))
client.set_spend_controls(False)
print(encode_payment_signature_header(client.create_payment_payload(required)))
