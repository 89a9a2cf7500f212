"""Annotate decoded HTTP exchanges with decoded MPP / x402 headers. usage: mpp_decode.py IN.json OUT.json"""
import base64, json, re, sys, hashlib
def b64d(s):
    s = s.strip(); pad = '=' * (-len(s) % 4)
    try: return json.loads(base64.urlsafe_b64decode(s + pad))
    except Exception:
        return json.loads(base64.b64decode(s + pad))
PARAM = re.compile(r'([a-zA-Z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
def chal(v):
    params = {m.group(1): (m.group(2) if m.group(2) is not None else m.group(3)) for m in PARAM.finditer(v[len('Payment '):])}
    d = dict(params)
    for k in ('request', 'opaque'):
        if k in params: d[k + '_decoded'] = b64d(params[k])
    return d
ex = json.load(open(sys.argv[1]))
for e in ex:
    for side in ('request', 'response'):
        m = e.get(side)
        if not m: continue
        dec = {}
        for k, v in m['headers']:
            kl = k.lower()
            if kl == 'www-authenticate' and v.lower().startswith('payment '): dec.setdefault('www-authenticate', []).append(chal(v))
            elif kl in ('authorization', 'payment-authorization') and v.lower().startswith('payment '):
                dec[kl] = b64d(v[8:]); cr = dec[kl]['challenge']
                if 'request' in cr: cr['request_decoded'] = b64d(cr['request'])
                if cr.get('opaque'): cr['opaque_decoded'] = b64d(cr['opaque'])
            elif kl in ('payment-receipt', 'payment-required', 'payment-signature', 'payment-response'): dec[kl] = b64d(v)
        if side == 'request' and m.get('raw') is not None and m.get('raw') != '':
            dec['body_sha256'] = 'sha-256=' + base64.b64encode(hashlib.sha256(m['raw'].encode()).digest()).decode()
        if dec: m['decoded_headers'] = dec
json.dump(ex, open(sys.argv[2], 'w'), indent=2)
