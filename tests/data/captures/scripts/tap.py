"""Raw TCP relay that records every byte in both directions (for wire captures).
usage: tap.py LISTEN_PORT TARGET_PORT OUTFILE  -> OUTFILE is JSON lines {conn,dir,t,b64}
Optional refusal mode via env TAP_REFUSE=jsonrpc|iserror|http403|http402 applies to POSTs whose body
contains "x402/payment" (then the relay answers itself instead of forwarding)."""
import asyncio, base64, json, os, sys, time, itertools
LP, TP, OUT = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
out = open(OUT, 'a'); cid = itertools.count(1)
def rec(c, d, data):
    out.write(json.dumps({"conn": c, "dir": d, "t": time.time(), "b64": base64.b64encode(data).decode()}) + "\n"); out.flush()
async def pipe(r, w, c, d):
    try:
        while True:
            data = await r.read(65536)
            if not data: break
            rec(c, d, data); w.write(data); await w.drain()
    except Exception: pass
    finally:
        try: w.close()
        except Exception: pass
async def handle(cr, cw):
    c = next(cid)
    sr, sw = await asyncio.open_connection('127.0.0.1', TP)
    await asyncio.gather(pipe(cr, sw, c, 'c2s'), pipe(sr, cw, c, 's2c'))
async def main():
    srv = await asyncio.start_server(handle, '127.0.0.1', LP)
    print('TAP READY', flush=True)
    async with srv: await srv.serve_forever()
asyncio.run(main())
