// @x402/core + @x402/evm (npm) payloads for the same challenges the Python server issued.
import { readFileSync } from 'node:fs';
import { x402Client } from '@x402/core/client';
import { ExactEvmScheme } from '@x402/evm/exact/client';
import { UptoEvmScheme } from '@x402/evm/upto/client';
import { privateKeyToAccount } from 'viem/accounts';
const account = privateKeyToAccount('0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318');
const client = new x402Client();
client.register('eip155:84532', new ExactEvmScheme(account));
client.register('eip155:84532', new UptoEvmScheme(account));
const prs = JSON.parse(readFileSync('pr.json', 'utf8'));
const out = {};
for (const [k, pr] of Object.entries(prs)) {
  const payload = await client.createPaymentPayload(pr);
  out[k] = { paymentRequired: pr, paymentPayload: payload, paymentSignatureHeader: Buffer.from(JSON.stringify(payload)).toString('base64') };
}
console.log(JSON.stringify(out, null, 2));
