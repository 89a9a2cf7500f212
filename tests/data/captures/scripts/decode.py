"""Turn a tap.py capture into a list of HTTP exchanges (headers as sent, bodies, SSE events parsed).
usage: decode.py CAP.jsonl OUT.json [OUT.txt]"""
import base64, json, sys, collections, h11
cap = [json.loads(l) for l in open(sys.argv[1])]
streams = collections.defaultdict(lambda: {'c2s': b'', 's2c': b''})
for e in cap: streams[e['conn']][e['dir']] += base64.b64decode(e['b64'])
def parse(data, role):
    conn = h11.Connection(our_role=h11.SERVER if role == 'c2s' else h11.CLIENT)
    if role == 's2c':  # fake that we sent requests so h11 accepts responses
        pass
    return conn
def msgs(data, is_req):
    out = []; cur = None
    c = h11.Connection(our_role=h11.SERVER) if is_req else None
    if not is_req: return split_responses(data)
    c.receive_data(data)
    while True:
        ev = c.next_event()
        if ev is h11.NEED_DATA or ev is h11.PAUSED or isinstance(ev, h11.ConnectionClosed):
            if ev is h11.PAUSED:
                c.start_next_cycle() if False else None
            break
        if isinstance(ev, h11.Request): cur = {'method': ev.method.decode(), 'target': ev.target.decode(), 'headers': [[k.decode(), v.decode()] for k, v in ev.headers], 'body': b''}
        elif isinstance(ev, h11.Data): cur['body'] += ev.data
        elif isinstance(ev, h11.EndOfMessage):
            out.append(cur); cur = None
            # reset for next request on same connection: send a dummy response
            c.send(h11.Response(status_code=200, headers=[('content-length', '0')])); c.send(h11.EndOfMessage()); c.start_next_cycle()
    return out
def split_responses(data):
    # parse responses with a client-role h11 after feeding fake requests
    out = []
    c = h11.Connection(our_role=h11.CLIENT)
    c.send(h11.Request(method='POST', target='/', headers=[('host', 'x'), ('content-length', '0')])); c.send(h11.EndOfMessage())
    c.receive_data(data); c.receive_data(b'')
    cur = None
    while True:
        try: ev = c.next_event()
        except h11.RemoteProtocolError: break
        if ev is h11.NEED_DATA or ev is h11.PAUSED or isinstance(ev, h11.ConnectionClosed): break
        if isinstance(ev, h11.Response): cur = {'status': ev.status_code, 'reason': ev.reason.decode(), 'headers': [[k.decode(), v.decode()] for k, v in ev.headers], 'body': b''}
        elif isinstance(ev, h11.Data): cur['body'] += ev.data
        elif isinstance(ev, h11.EndOfMessage):
            out.append(cur); cur = None
            if c.our_state is h11.DONE and c.their_state is h11.DONE:
                c.start_next_cycle(); c.send(h11.Request(method='POST', target='/', headers=[('host', 'x'), ('content-length', '0')])); c.send(h11.EndOfMessage())
    if cur: cur['incomplete'] = True; out.append(cur)
    return out
def body_view(b, headers):
    ct = dict((k.lower(), v) for k, v in headers).get('content-type', '')
    t = b.decode('utf-8', 'replace')
    if 'text/event-stream' in ct:
        evs = []
        for block in t.replace('\r\n', '\n').split('\n\n'):
            if not block.strip(): continue
            ev = {}
            for line in block.split('\n'):
                k, _, v = line.partition(':'); v = v[1:] if v.startswith(' ') else v
                ev[k] = ev.get(k, '') + ('\n' if k in ev and k == 'data' else '') + v if k else ev.get('comment')
            if 'data' in ev:
                try: ev['data_json'] = json.loads(ev['data'])
                except Exception: pass
            evs.append(ev)
        return {'raw': t, 'sse_events': evs}
    try: return {'json': json.loads(t)} if t else {'raw': ''}
    except Exception: return {'raw': t}
exch = []
for cid, s in sorted(streams.items()):
    reqs = msgs(s['c2s'], True); resps = split_responses(s['s2c'])
    for i, rq in enumerate(reqs):
        rs = resps[i] if i < len(resps) else None
        e = {'conn': cid, 'request': {k: v for k, v in rq.items() if k != 'body'}, 'response': None}
        e['request'].update(body_view(rq['body'], rq['headers']))
        if rs:
            e['response'] = {k: v for k, v in rs.items() if k != 'body'}; e['response'].update(body_view(rs['body'], rs['headers']))
        exch.append(e)
json.dump(exch, open(sys.argv[2], 'w'), indent=2)
if len(sys.argv) > 3:
    with open(sys.argv[3], 'w') as f:
        for cid, s in sorted(streams.items()):
            f.write(f'===== connection {cid}: client -> server =====\n'); f.write(s['c2s'].decode('utf-8', 'replace'))
            f.write(f'\n===== connection {cid}: server -> client =====\n'); f.write(s['s2c'].decode('utf-8', 'replace')); f.write('\n')
print(len(exch), 'exchanges')
for e in exch:
    rq = e['request']; rb = rq.get('json')
    print(e['conn'], rq['method'], rq['target'], (rb or {}).get('method') if isinstance(rb, dict) else rb, '->', e['response'] and e['response']['status'], e['response'] and dict((k.lower(), v) for k, v in e['response']['headers']).get('content-type'))
