// An agent that uses a proxy the way most Node agents do: undici's EnvHttpProxyAgent,
// which reads HTTP_PROXY / HTTPS_PROXY and sends even `http://` requests as CONNECT
// followed by plaintext HTTP.
//
//   node undici_agent.mjs URL [NAME: VALUE ...]
//
// Prints one JSON line: {"status", "headers", "body"}.
import { EnvHttpProxyAgent, fetch } from 'undici';

const [url, ...headerArgs] = process.argv.slice(2);
const headers = {};
for (const arg of headerArgs) {
  const at = arg.indexOf(':');
  headers[arg.slice(0, at).trim()] = arg.slice(at + 1).trim();
}
const dispatcher = new EnvHttpProxyAgent();
try {
  const response = await fetch(url, { dispatcher, headers });
  const body = await response.text();
  console.log(JSON.stringify({
    status: response.status,
    headers: Object.fromEntries(response.headers),
    body,
  }));
} catch (error) {
  console.log(JSON.stringify({ status: 0, error: String(error?.cause ?? error) }));
}
