// An agent that pays with the official x402 fetch wrapper and ignores every proxy setting:
// `@x402/fetch` around Node's global fetch, with no dispatcher, as its README shows. Node's
// fetch reads neither HTTP_PROXY nor HTTPS_PROXY, so only a kernel redirect (purser
// redirect) puts Purser in its path.
//
//   node x402_fetch_agent.mjs URL [NAME: VALUE ...]
//
// Trusts NODE_EXTRA_CA_CERTS as Node does. Prints one JSON line:
// {"status", "headers", "body", "paid"} or {"status": 0, "error"}.
import { wrapFetchWithPaymentFromConfig } from '@x402/fetch';
import { ExactEvmScheme } from '@x402/evm';
import { privateKeyToAccount } from 'viem/accounts';

// The throwaway key the Python agent uses too: 0x1111...11. Never fund it.
const account = privateKeyToAccount(`0x${'11'.repeat(32)}`);
const [url, ...headerArgs] = process.argv.slice(2);
const headers = {};
for (const arg of headerArgs) {
  const at = arg.indexOf(':');
  headers[arg.slice(0, at).trim()] = arg.slice(at + 1).trim();
}
let paid = false;
const counting = (input, init) => {
  const sent = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
  if (sent.has('payment-signature') || sent.has('x-payment')) paid = true;
  return fetch(input, init);
};
const payingFetch = wrapFetchWithPaymentFromConfig(counting, {
  schemes: [{ network: 'eip155:*', client: new ExactEvmScheme(account) }],
});
try {
  const response = await payingFetch(url, { headers });
  const body = await response.text();
  console.log(JSON.stringify({
    status: response.status,
    headers: Object.fromEntries(response.headers),
    body: body.slice(0, 2000),
    paid,
  }));
} catch (error) {
  console.log(JSON.stringify({ status: 0, paid, error: String(error?.cause ?? error) }));
}
