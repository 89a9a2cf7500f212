// mppx server: issue a tempo charge and a tempo session challenge (no chain needed to issue).
import { Mppx, tempo } from 'mppx/server';
const mppx = Mppx.create({ methods: [tempo({ recipient: '0x209693Bc6afc0C5328bA36FaF03C514EF312287C', testnet: true })],
                           secretKey: 'purser-research-secret-0123456789abcdef', realm: 'api.merchant.test' });
const out = {};
for (const [name, h] of [['charge', mppx.charge({ amount: '0.01', description: 'Market snapshot' })],
                         ['session', mppx.tempo.session({ amount: '0.0001', unitType: 'token', suggestedDeposit: '1' })]]) {
  const r = await h(new Request('http://127.0.0.1/v1/completions', { method: 'POST', body: '{"prompt":"hi"}', headers: { 'content-type': 'application/json' } }));
  const resp = r.challenge ?? r;
  out[name] = { status: r.status, headers: Object.fromEntries([...resp.headers]), www_authenticate_all: resp.headers.getSetCookie ? undefined : undefined, body: await resp.text() };
  out[name].www_authenticate = resp.headers.get('www-authenticate');
}
console.log(JSON.stringify(out, null, 2));
