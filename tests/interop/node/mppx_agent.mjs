// An agent paying with the official mppx client (0.11.0): an `evm` charge (EIP-3009,
// USDC on Base Sepolia) signed with the public test key, through HTTP_PROXY the way most
// Node agents reach a proxy (undici's EnvHttpProxyAgent: even `http://` requests go as
// CONNECT, then plaintext HTTP).
//
//   node mppx_agent.mjs URL
//
// Prints one JSON line: {"status", "headers", "body"} (or {"status": 0, "error"}).
import { Mppx } from 'mppx/client';
import { assets, charge } from 'mppx/evm/client';
import { EnvHttpProxyAgent, fetch } from 'undici';
import { privateKeyToAccount } from 'viem/accounts';

const [url] = process.argv.slice(2);
const dispatcher = new EnvHttpProxyAgent();
const account = privateKeyToAccount(
  '0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318',
);
const mppx = Mppx.create({
  methods: [charge({ account, currencies: [assets.baseSepolia.USDC] })],
  fetch: (input, init = {}) => fetch(input, { ...init, dispatcher }),
  polyfill: false,
});
try {
  const response = await mppx.fetch(url);
  console.log(JSON.stringify({
    status: response.status,
    headers: Object.fromEntries(response.headers),
    body: await response.text(),
  }));
} catch (error) {
  console.log(JSON.stringify({ status: 0, error: String(error?.stack ?? error) }));
}
