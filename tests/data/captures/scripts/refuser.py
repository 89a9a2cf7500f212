"""HTTP relay that forwards MCP traffic to UPSTREAM but answers paid tools/call itself (refusal forms).
usage: refuser.py PORT UPSTREAM MODE ; MODE in jsonrpc|jsonrpc_sse|iserror|iserror_sse|iserror_x402|http403|http402|http500"""
import json, sys, httpx, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
PORT, UP, MODE = int(sys.argv[1]), sys.argv[2], sys.argv[3]
client = httpx.AsyncClient(timeout=None)
HOP = {'connection', 'keep-alive', 'transfer-encoding', 'te', 'upgrade', 'proxy-authorization', 'host', 'content-length'}
DETAIL = {"decision": "DENIED", "rule": "phase", "reason": "payments are allowed from COMMIT on; the session is in EXPLORE", "trace_id": "tr_5d5330c500000000"}
TEXT = "Purser refused this payment: DENIED by rule phase (payments are allowed from COMMIT on; the session is in EXPLORE). trace tr_5d5330c500000000. No money moved."
def sse(obj): return f"event: message\ndata: {json.dumps(obj)}\n\n".encode()
async def handle(request):
    body = await request.body()
    if MODE.startswith('hold:') and request.method == 'POST' and b'x402/payment' in body:
        import asyncio; await asyncio.sleep(float(MODE.split(':')[1]))
    elif (request.method == 'POST' and (b'x402/payment' in body or b'org.paymentauth/credential' in body)) or request.headers.get('authorization', '').lower().startswith('payment ') or 'payment-signature' in request.headers:
        rid = json.loads(body).get('id') if body.startswith(b'{') else None
        if MODE.startswith('jsonrpc'):
            msg = {"jsonrpc": "2.0", "id": rid, "error": {"code": -32002, "message": TEXT, "data": {"purser": DETAIL}}}
        elif MODE.startswith('iserror'):
            res = {"content": [{"type": "text", "text": TEXT}], "isError": True, "structuredContent": {"purser": DETAIL}}
            if MODE == 'iserror_x402':  # carries an x402-looking challenge: what does the x402 client do?
                res["structuredContent"] = {"x402Version": 2, "error": TEXT, "accepts": [], "purser": DETAIL}
            msg = {"jsonrpc": "2.0", "id": rid, "result": res}
        elif MODE == 'http403':
            return Response(json.dumps({"error": "payment_refused", **DETAIL}), 403, media_type='application/json')
        elif MODE == 'http402':
            return Response(json.dumps({"error": "payment_refused", **DETAIL}), 402, media_type='application/json')
        else:
            return Response("refused", 500)
        hdr = {'mcp-session-id': request.headers.get('mcp-session-id', '')}
        if MODE.endswith('_sse'):
            return Response(sse(msg), 200, media_type='text/event-stream', headers=hdr)
        return Response(json.dumps(msg), 200, media_type='application/json', headers=hdr)
    req = client.build_request(request.method, UP + request.url.path, content=body,
                               headers=[(k, v) for k, v in request.headers.items() if k.lower() not in HOP])
    r = await client.send(req, stream=True)
    return StreamingResponse(r.aiter_raw(), status_code=r.status_code,
                             headers={k: v for k, v in r.headers.items() if k.lower() not in HOP})
app = Starlette(routes=[Route('/{p:path}', handle, methods=['GET', 'POST', 'DELETE'])])
uvicorn.run(app, host='127.0.0.1', port=PORT, log_level='warning')
