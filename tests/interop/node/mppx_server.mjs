// A merchant paid with the official mppx server (0.11.0): any path answers 402 with an
// `evm` charge challenge of 0.01 USDC on Base Sepolia, and once paid, 200 with a
// Payment-Receipt. The charge settles through an x402 facilitator (the loopback stub:
// the one payment backend). Prints `READY <port>` once listening.
//
//   node mppx_server.mjs FACILITATOR_URL
import http from 'node:http';
import { Mppx } from 'mppx/server';
import { assets, charge } from 'mppx/evm/server';

const [facilitator] = process.argv.slice(2);
const payment = Mppx.create({
  methods: [
    charge({
      currency: assets.baseSepolia.USDC,
      recipient: '0x209693Bc6afc0C5328bA36FaF03C514EF312287C',
      x402: { facilitator },
    }),
  ],
  realm: 'api.merchant.test',
  secretKey: 'purser-interop-secret-of-32-bytes!!',
});
const server = http.createServer(async (req, res) => {
  const paid = payment.charge({ amount: '0.01', description: 'Market snapshot' });
  const result = await Mppx.toNodeListener(paid)(req, res);
  if (result.status === 402) return;
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ data: 'snapshot' }));
});
server.listen(0, '127.0.0.1', () => console.log(`READY ${server.address().port}`));
