#!/usr/bin/env python3
"""Writes benches/REPORT.md and its plots from the raw numbers of benches/run.

    python3 benches/report.py --results results.tsv --meta meta.tsv --notes notes.tsv \\
        --report-dir benches/report --out benches/REPORT.md

results.tsv: `section target metric run value` (tab-separated), one number a line.
meta.tsv: `key value` (machine, versions, settings). notes.tsv: `section text`.
report-dir: where the SVGs (plot.py) go; findings.md there (copied by run from `bench findings`)
is embedded when present. Standard library only.
"""

import argparse
import collections
import os
import re
import shlex
import statistics
import sys

sys.dont_write_bytecode = True  # no __pycache__ beside the benches
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plot  # noqa: E402

PLAIN_TARGETS = ["direct", "bare", "purser", "squid", "tinyproxy", "mitmproxy"]
MITM_TARGETS = ["direct", "purser", "mitmproxy"]
LABELS = {
    "direct": "direct (no proxy)",
    "bare": "bare hyper pass-through",
    "purser": "**Purser**",
    "squid": "squid",
    "tinyproxy": "tinyproxy",
    "mitmproxy": "mitmproxy",
}
# The paid section's configurations, by key prefix: (path in the table, label on the plot).
PAID_PATHS = {
    "durable": ("paid, durable (fsync)", "durable"),
    "nofsync": ("paid, --trace-no-fsync", "traces off (no fsync)"),
    "plain": ("plain, no payment header", "plain, no payment"),
    "veto": ("paid, held 1 ms (notify_with_veto), durable", "held 1 ms, auto-approved"),
    "sessions": ("paid, durable, a session per connection", "durable, session per conn"),
}
HOLD_ROWS = [
    ("holds", "held payments"),
    ("holds-tls", "held payments over HTTPS (fresh Purser)"),
    ("holds-h2", "held payments over HTTPS, HTTP/2, 100 per tunnel (fresh Purser)"),
    ("conns", "idle keep-alive connections (fresh Purser)"),
]
MB = 1e6
MIB = 1048576


class Data:
    """The raw numbers: (section, target, metric) -> {run: value}, in the order recorded."""

    def __init__(self, path):
        self.values = collections.defaultdict(dict)
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 5:
                    continue
                section, target, metric, run, value = parts
                try:
                    self.values[(section, target, metric)][run] = float(value)
                except ValueError:
                    pass

    def runs(self, section, target, metric):
        return self.values.get((section, target, metric), {})

    def list(self, section, target, metric):
        return list(self.runs(section, target, metric).values())

    def med(self, section, target, metric):
        values = self.list(section, target, metric)
        return statistics.median(values) if values else None

    def span(self, section, target, metric):
        values = self.list(section, target, metric)
        return (min(values), max(values)) if values else (None, None)

    def ratio_runs(self, section, a, b, metric):
        """Per-run ratios a/b over the runs both have."""
        ra, rb = self.runs(section, a, metric), self.runs(section, b, metric)
        return [ra[r] / rb[r] for r in ra if r in rb and rb[r]]

    def targets(self, section):
        return list(dict.fromkeys(k[1] for k in self.values if k[0] == section))

    def has(self, section, target):
        return target in self.targets(section)


def num(v, digits=None):
    if v is None:
        return "–"
    return plot.fmt(v) if digits is None else f"{v:,.{digits}f}"


def ms(us):
    return num(None if us is None else us / 1000, 2)


def in_mib(kb):
    return "–" if kb is None else f"{kb / 1024:.1f} MiB"


def cell(data, section, target, metric, scale=1.0, digits=None, bold=False):
    """The median over the runs and, when there are several, their min–max."""
    values = data.list(section, target, metric)
    if not values:
        return "–"
    text = num(statistics.median(values) * scale, digits)
    if bold:
        text = f"**{text}**"
    if len(values) > 1:
        text += f" ({num(min(values) * scale, digits)}–{num(max(values) * scale, digits)})"
    return text


def ratio_cell(data, section, a, b, metric):
    ma, mb = data.med(section, a, metric), data.med(section, b, metric)
    if ma is None or not mb:
        return "–", None
    runs = data.ratio_runs(section, a, b, metric)
    text = f"{ma / mb:.2f}×" + (f" ({min(runs):.2f}–{max(runs):.2f})" if len(runs) > 1 else "")
    return text, ma / mb


def met(value, target, higher_is_better=True):
    if value is None:
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "**met**" if ok else "**not met**"


def bar(data, section, target, metric, scale=1.0, highlight=None, text=None, label=None):
    m = data.med(section, target, metric)
    lo, hi = data.span(section, target, metric)
    scaled = [None if v is None else v * scale for v in (m, lo, hi)]
    highlight = target == "purser" if highlight is None else highlight
    return {"label": label or target, "value": scaled[0], "lo": scaled[1], "hi": scaled[2],
            "highlight": highlight, **({"text": text} if text else {})}


def read_tsv(path):
    """`key value` lines as (key, value) pairs."""
    if not path or not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t", 1) for line in f if "\t" in line]


class Report:
    def __init__(self, args):
        self.args = args
        self.data = Data(args.results)
        self.meta = dict(read_tsv(args.meta))
        self.notes = collections.defaultdict(list)
        for section, text in read_tsv(args.notes):
            self.notes[section].append(text)
        self.settings = dict(kv.split("=", 1) for kv in shlex.split(self.meta.get("settings", "")) if "=" in kv)
        self.sections = self.meta.get("sections", "").split()
        self.summary = []  # (figure, target, measured, met)
        self.out = []

    def s(self, key, default):
        try:
            return float(self.settings.get(key, default))
        except ValueError:
            return float(default)

    def w(self, *lines):
        self.out.extend(lines)

    def table(self, header, rows, align=None):
        """A Markdown table; `align` is a letter per column, l or r (first l, the rest r by default)."""
        align = align or "l" + "r" * (len(header) - 1)
        self.w(("| " + " | ".join(header) + " |").replace("|  |", "| |"),
               "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|")
        self.w(*("| " + " | ".join(str(c) for c in row) + " |" for row in rows))

    def plot(self, name, alt, spec):
        path = os.path.join(self.args.report_dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(plot.render(spec))
        link = f"report/{name}" if os.path.basename(self.args.report_dir) == "report" else path
        self.w("", f"![{alt}]({link})")

    def end_section(self, section):
        if self.notes.get(section):
            self.w("", "Notes from the run:", "", *(f"* {n}" for n in self.notes[section]))
        self.w("")

    def runs_note(self, extra=""):
        return f"median of {self.settings.get('RUNS', '?')} run(s), whiskers min–max{extra}"

    # ------------------------------------------------------------ plain
    def plain(self):
        d, rate, conns = self.data, self.s("RATE", 1000), int(self.s("CONNS", 16))
        targets = [t for t in PLAIN_TARGETS if d.has("plain", t)]
        self.w("## 1. Plain HTTP path", "")
        self.w(f"Keep-alive `GET`s of a 6-byte body from `bench origin`, {conns} connections, through each proxy "
               "(absolute-form `http://` URLs; Purser with proxy credentials and the `benches/bench-policy.yaml` "
               f"agent, no payment). **Saturation**: `wrk -t1 -c{conns}` (`benches/proxy.lua`) after a warm-up. "
               f"**Fixed rate**: `bench load --rate {rate:.0f}`, an open loop that schedules every request at a fixed "
               "time and measures from that time whenever the connection was still busy then (no coordinated "
               "omission). squid runs with caching and its access log off; tinyproxy closes the client connection "
               "after every answer (wrk's read errors from that are not counted, the load generator reconnects and "
               "counts the time); mitmproxy is plain HTTP here (TLS in section 2).", "")

        def vs(t, base):
            return "1.00×" if t == base else ratio_cell(d, "plain", t, base, "rps")[0]

        self.table(["target", "req/s at saturation", "vs bare", "vs squid", "p50 (µs)", "p99 (µs)", "p99.9 (µs)",
                    "VmRSS idle (MiB)", "VmRSS after load (MiB)"],
                   [[LABELS[t], cell(d, "plain", t, "rps", digits=0, bold=t == "purser"), vs(t, "bare"), vs(t, "squid"),
                     *(cell(d, "plain", t, m, digits=0) for m in ("p50_us", "p99_us", "p999_us")),
                     *(cell(d, "plain", t, m, 1 / 1024, 1) for m in ("rss_idle_kb", "rss_load_kb"))] for t in targets])
        self.w("", f"At a fixed {rate:,.0f} req/s over {conns} connections (added = the target's median minus "
               "direct's median):", "")
        quantiles = ("p50_us", "p99_us", "p999_us")
        direct = {k: d.med("plain", "direct", f"open_{k}") for k in quantiles}
        rows = []
        for t in targets:
            pre = "≥ " if (d.med("plain", t, "open_unsent") or 0) > 0 else ""
            added = []
            for k in quantiles:
                m = d.med("plain", t, f"open_{k}")
                v = "–" if t == "direct" or m is None or direct[k] is None else f"{pre}{m - direct[k]:,.0f}"
                added.append(f"**{v}**" if t == "purser" and v != "–" else v)
            rows.append([LABELS[t], cell(d, "plain", t, "open_rps", digits=0),
                         *(pre + cell(d, "plain", t, f"open_{k}", digits=0) for k in quantiles), *added,
                         num(d.med("plain", t, "open_behind"), 0)])
        self.table(["target", "achieved req/s", "p50 (µs)", "p99 (µs)", "p99.9 (µs)", "added p50 (µs)",
                    "added p99 (µs)", "added p99.9 (µs)", "requests that waited for a busy connection"], rows)
        if any((d.med("plain", t, "open_unsent") or 0) > 0 for t in targets):
            self.w("", "≥: the target could not keep up; requests still unsent 2 s after the window are counted with "
                   "the time they had waited by then, so these are lower bounds.")
        for base, label, goal, ratio in (("bare", "bare hyper pass-through", "≥ 0.8×", 0.8),
                                         ("squid", "squid", "≥ 3×", 3)):
            text, r = ratio_cell(d, "plain", "purser", base, "rps")
            self.summary.append((f"plain HTTP req/s, Purser vs {label}", goal, text, met(r, ratio)))
        mp = d.med("plain", "purser", "open_p99_us")
        added99 = None if mp is None or direct["p99_us"] is None else mp - direct["p99_us"]
        self.summary.append((f"p99 added over direct at {rate:,.0f} req/s", "≤ 0.3 ms",
                             "–" if added99 is None else f"{added99 / 1000:.3f} ms", met(added99, 300, False)))
        bare, squid = d.med("plain", "bare", "rps"), d.med("plain", "squid", "rps")
        rps_bars = []
        for t in targets:
            m, extra = d.med("plain", t, "rps"), None
            if t == "purser" and bare and m is not None:
                extra = f"{plot.fmt(m)} ({m / bare:.2f}× bare" + (f", {m / squid:.1f}× squid)" if squid else ")")
            rps_bars.append(bar(d, "plain", t, "rps", text=extra))
        lines = [{"value": f * v, "label": f"target: {f}× {name}"}
                 for f, v, name in ((0.8, bare, "bare"), (3, squid, "squid")) if v]
        added_bars = []
        for t in targets[1:] if targets[:1] == ["direct"] else targets:
            m = d.med("plain", t, "open_p99_us")
            v = None if m is None or direct["p99_us"] is None else m - direct["p99_us"]
            added_bars.append({"label": t, "value": v, "highlight": t == "purser"})
        self.plot("plain.svg", "plain HTTP", {
            "title": "Plain HTTP path",
            "note": self.runs_note(f"; loopback, {self.meta.get('cores', '?')} cores shared"),
            "panels": [{"title": f"keep-alive req/s at saturation (wrk -t1 -c{conns})", "unit": "req/s",
                        "targets": lines, "bars": rps_bars},
                       {"title": f"p99 added over direct at {rate:,.0f} req/s", "unit": "µs", "target": 300,
                        "target_label": "target 0.3 ms", "clip": True, "bars": added_bars}]})
        self.end_section("plain")

    # ------------------------------------------------------------ mitm
    def mitm(self):
        d, conns, hs = self.data, int(self.s("CONNS", 16)), int(self.s("HS_CONNS", 16))
        targets = [t for t in MITM_TARGETS if d.has("mitm", t)]
        self.w("## 2. MITM path (TLS interception)", "")
        self.w("HTTPS to `bench origin`'s TLS listener (a test CA's certificate for 127.0.0.1) through each proxy's "
               "`CONNECT` interception; the load generator trusts the proxy's CA and the proxy verifies the origin "
               "against the test CA. TLS 1.3, ALPN http/1.1, no session resumption on the agent side: every handshake "
               f"is a full one. **Keep-alive**: {conns} tunnels, `GET`s back to back. **New handshakes**: {hs} workers "
               "each open a connection, `CONNECT`, complete the handshake (the leaf for 127.0.0.1 is cached) and close, "
               "in a loop; **new connections with one GET** do the same with one request each. **First handshake to a "
               f"new host**: {self.s('FIRST_COUNT', 500):.0f} `CONNECT`s one after another, each to a host name never "
               "seen (the proxy mints a leaf), timed from TCP connect to the end of the handshake, beside as many to a "
               "cached host; no request is sent, so the names are never resolved. **Bulk**: "
               f"{self.s('BULK_BYTES', 16777216) / MIB:.0f} MiB bodies back to back on one connection. mitmproxy runs "
               "`connection_strategy=lazy` (no upstream connection before a request needs one, as Purser) and "
               "`stream_large_bodies=1m`.", "")

        def pair(t, a, b):
            return f"{num(d.med('mitm', t, a), 0)} / {num(d.med('mitm', t, b), 0)}"

        self.table(["target", "keep-alive req/s", "p50 / p99 (µs)", "new handshakes/s", "new connections + GET /s",
                    "first handshake, new host p50 / p99 (µs)", "cached host p50 / p99 (µs)", "bulk MB/s",
                    "VmRSS after (MiB)"],
                   [[LABELS[t], cell(d, "mitm", t, "tls_rps", digits=0, bold=t == "purser"),
                     pair(t, "tls_p50_us", "tls_p99_us"), cell(d, "mitm", t, "hs_per_s", digits=0, bold=t == "purser"),
                     cell(d, "mitm", t, "conn_per_s", digits=0), pair(t, "new_p50_us", "new_p99_us"),
                     pair(t, "cached_p50_us", "cached_p99_us"), cell(d, "mitm", t, "bulk_mb_s", digits=0),
                     cell(d, "mitm", t, "rss_after_kb", 1 / 1024, 1)] for t in targets])
        ratios = ("tls_rps", "hs_per_s", "conn_per_s", "bulk_mb_s")
        if "purser" in targets and "mitmproxy" in targets:
            self.w("", "Purser ÷ mitmproxy (ratio of medians, per-run range):", "")
            self.table(["keep-alive req/s", "new handshakes/s", "new connections + GET /s", "bulk MB/s"],
                       [[ratio_cell(d, "mitm", "purser", "mitmproxy", m)[0] for m in ratios]], "rrrr")
        self.summary.append(("MITM new TLS handshakes/s through Purser (cached leaf)", "≥ 2,000/s",
                             cell(d, "mitm", "purser", "hs_per_s", digits=0), met(d.med("mitm", "purser", "hs_per_s"), 2000)))
        p99, p50 = d.med("mitm", "purser", "new_p99_us"), d.med("mitm", "purser", "new_p50_us")
        self.summary.append(("first handshake to a new host through Purser, p99", "≤ 2 ms",
                             "–" if p99 is None else f"{p99 / 1000:.2f} ms (p50 {p50 / 1000:.2f} ms)", met(p99, 2000, False)))
        text, r = ratio_cell(d, "mitm", "purser", "mitmproxy", "tls_rps")
        self.summary.append(("req/s over TLS, Purser vs mitmproxy", "≥ 10×", text, met(r, 10)))
        mitm_rps, proxies = d.med("mitm", "mitmproxy", "tls_rps"), [t for t in targets if t != "direct"]
        self.plot("mitm.svg", "MITM path", {"title": "MITM path", "note": self.runs_note(), "panels": [
            {"title": f"keep-alive req/s over TLS ({conns} connections)", "unit": "req/s",
             "targets": [{"value": 10 * mitm_rps, "label": "target: 10× mitmproxy"}] if mitm_rps else [],
             "bars": [bar(d, "mitm", t, "tls_rps") for t in targets]},
            {"title": f"new full TLS handshakes/s, cached leaf ({hs} workers)", "unit": "/s", "target": 2000,
             "target_label": "target 2,000/s", "bars": [bar(d, "mitm", t, "hs_per_s") for t in targets]},
            {"title": "first handshake to a new host (leaf minted), p99", "unit": "ms", "target": 2,
             "target_label": "target 2 ms", "bars": [bar(d, "mitm", t, "new_p99_us", 1e-3) for t in proxies]
             + [bar(d, "mitm", t, "cached_p99_us", 1e-3, label=f"{t}, cached host") for t in proxies]},
            {"title": "bulk download through the interception", "unit": "MB/s",
             "bars": [bar(d, "mitm", t, "bulk_mb_s") for t in targets]}]})
        self.end_section("mitm")

    # ------------------------------------------------------------ paid
    def paid(self):
        d, window = self.data, self.s("DURATION", 10) + self.s("WARMUP", 2)
        keys = [t for t in d.targets("paid") if t.split("-")[0] in PAID_PATHS]
        durable = f"durable-{self.s('PAID_CONNS', 64):.0f}"
        self.summary.append((f"durable paid decisions/s ({durable[8:]} connections)", "≥ 10,000/s",
                             cell(d, "paid", durable, "rps", digits=0), met(d.med("paid", durable, "rps"), 10000)))
        self.w("## 3. Paid path", "")
        if not keys:
            self.w("The paid section recorded no numbers.")
            return self.end_section("paid")
        for key in keys:  # per run: fdatasyncs a second, decision lines per fdatasync
            for run, f in d.runs("paid", key, "fsyncs").items():
                d.values[("paid", key, "fsyncs_s")][run] = f / window
                decisions = d.runs("paid", key, "decisions").get(run)
                if f and decisions:
                    d.values[("paid", key, "per_fsync")][run] = decisions / f
        self.w(f"`bench load --pay` through Purser to `bench merchant`; {self.meta.get('cores', '?')} CPUs shared by the "
               "load generator (1 thread), the stub merchant (1 thread) and Purser; "
               f"{self.settings.get('DURATION')}s measured after {self.settings.get('WARMUP')}s warm-up, median of "
               f"{self.settings.get('RUNS', '?')} runs (range in brackets), each against a fresh Purser with its own "
               "proof log; one agent session unless said otherwise, a unique x402 v2 payment of 1 atomic USDC unit per "
               "request.", "", "### Decisions per second", "")
        if d.has("paid", "disk"):
            self.w(f"Raw disk: **{num(d.med('paid', 'disk', 'per_s'), 0)} fsyncs/s** (100-byte append + fdatasync, "
                   f"p50 {num(d.med('paid', 'disk', 'p50_us'), 0)} µs, p99 {num(d.med('paid', 'disk', 'p99_us'), 0)} "
                   "µs), same directory as the proof logs.", "")
        self.table(["path", "conns", "decisions/s (req/s)", "p50 (ms)", "p99 (ms)", "Purser CPU per request (µs)",
                    "Purser fdatasyncs/s", "decisions per fsync", "errors"],
                   [[PAID_PATHS[key.split("-")[0]][0], key.split("-")[1], cell(d, "paid", key, "rps", digits=0),
                     ms(d.med("paid", key, "p50_us")), ms(d.med("paid", key, "p99_us")),
                     cell(d, "paid", key, "cpu_us", digits=0), cell(d, "paid", key, "fsyncs_s", digits=0),
                     cell(d, "paid", key, "per_fsync", digits=1),
                     "+".join(f"{v:.0f}" for v in d.list("paid", key, "errors")) or "–"] for key in keys])
        self.w("", "Target: ≥ 10,000 durable decisions/s. fdatasyncs are counted with perf's "
               "syscalls:sys_enter_fdatasync tracepoint over the whole run (warm-up included), so 'per fsync' is "
               "decision lines ÷ fdatasync calls; each also carries the settlement lines of that batch. CPU per "
               "request is Purser's user + system time over the run ÷ requests sent (warm-up included).", "",
               "#### Proof-log checks", "")
        for key in keys:
            for run, sent in d.runs("paid", key, "sent").items():
                v = {m: d.runs("paid", key, m).get(run) for m in ("decisions", "settlements", "errors", "verify_ok", "paid")}
                ok = v["decisions"] == (sent if v["paid"] else 0) and v["errors"] == 0 and v["verify_ok"] == 1
                self.w(f"* {'' if ok else '**MISMATCH** '}{key} run {run}: sent {num(sent, 0)}, decision lines "
                       f"{num(v['decisions'], 0)}, settlements {num(v['settlements'], 0)}, errors {num(v['errors'], 0)}, "
                       f"verify {'ok' if v['verify_ok'] == 1 else 'FAILED'}")
        self.paid_approvals()
        self.paid_mcp()
        self.paid_holds()
        self.paid_recovery()
        profile = self.meta.get("paid_profile")
        if profile and os.path.exists(profile):
            with open(profile, encoding="utf-8") as f:
                self.w("", "### Profile of the durable path (perf, Purser only, top symbols)", "",
                       "```", f.read().rstrip(), "```")
        bars = [bar(d, "paid", k, "rps", highlight=k.startswith("durable"),
                    label=f"{PAID_PATHS[k.split('-')[0]][1]}, {k.split('-')[1]} conns") for k in keys]
        self.plot("paid.svg", "paid path", {"title": "Paid path: decisions per second", "note": self.runs_note(),
                                            "panels": [{"title": "decisions/s (req/s)", "unit": "/s", "target": 10000,
                                                        "target_label": "target 10,000/s (durable)", "bars": bars}]})
        self.end_section("paid")

    def paid_approvals(self):
        a = {m: self.data.med("paid", "approve", m) for m in
             ("n", "p50_us", "p90_us", "p99_us", "max_us", "negatives", "min_raw_us", "approve_rtt_p50_us")}
        if a["n"] is None:
            return
        self.w("", "### Approval latency", "", f"{num(a['n'], 0)} sequential holds (single_call_threshold 0), each "
               f"approved {self.s('PAID_THINK_MS', 20):.0f} ms after it is listed; measured from the approve call "
               "returning to the held request reaching the stub merchant (which runs in the load generator's process: "
               "same monotonic clock).", "")
        self.table(["n", "p50 (ms)", "p90 (ms)", "p99 (ms)", "max (ms)", "arrived before the approve answer",
                    "approve call p50 (ms)"],
                   [[num(a["n"], 0), *(ms(a[k]) for k in ("p50_us", "p90_us", "p99_us", "max_us")),
                     f"{num(a['negatives'], 0)} (counted as 0; earliest {ms(a['min_raw_us'])} ms)",
                     ms(a["approve_rtt_p50_us"])]], "r" * 7)
        self.w("", "Target: ≤ 2 ms median.")

    def paid_mcp(self):
        d = self.data
        rows = [(key, label) for key, label in (("mcp", "durable (fsync), event-stream answers"),
                                                ("mcp-nofsync-json", "--trace-no-fsync, JSON answers"))
                if d.has("paid", key)]
        if not rows:
            return
        self.w("", "### A paid MCP tool call", "", f"{num(d.med('paid', rows[0][0], 'n'), 0)} x402-over-MCP paid "
               "`tools/call`s each way, one at a time, straight to the kit's stub MCP merchant and through Purser "
               "alternately, in one run (`bench mcp`); each timed from sending to the whole JSON-RPC answer, with "
               "its receipt, read.", "")
        self.table(["Purser", "direct p50 (µs)", "through Purser p50 (µs)", "added p50 (µs)", "direct p99 (µs)",
                    "through Purser p99 (µs)", "errors"],
                   [[label, *(num(d.med("paid", key, m), 1) for m in
                              ("direct_p50_us", "proxied_p50_us", "added_p50_us", "direct_p99_us", "proxied_p99_us")),
                     num(d.med("paid", key, "errors"), 0)] for key, label in rows], "l" + "r" * 6)
        added = d.med("paid", "mcp", "added_p50_us")
        self.w("", f"Target: ≤ 0.5 ms added p50 (durable): {met(added, 500, higher_is_better=False)}.")

    def paid_holds(self):
        d, n = self.data, f"{self.s('PAID_HOLDS', 1000):,.0f}"
        rows = [(key, label) for key, label in HOLD_ROWS if d.has("paid", key)]
        if not rows:
            return
        self.w("", f"### Memory of {n} concurrent holds", "")
        readings = ("rss_start_kb", "rss_idle_kb", "rss_held_kb", "rss_after_kb")
        table = []
        for key, label in rows:
            extra, per = in_mib(d.med("paid", key, "extra_kb")), "per_conn_bytes" if key == "conns" else "per_hold_bytes"
            table.append([label, *(in_mib(d.med("paid", key, m)) for m in readings),
                          extra if key == "conns" else f"**{extra}**", f"{num(d.med('paid', key, per), 0)} B"])
        self.table([f"{n} open …", "VmRSS at start", "after a warm-up of 10", f"with {n} open", "after closing them",
                    "extra", "per one"], table)
        denied = ", ".join(num(d.med("paid", k, "denied"), 0) for k, _ in rows if k != "conns")
        self.w("", f"Target: ≤ 20 MB extra. Each hold is a client connection kept open; {denied} of {n} answered 403 "
               "after the deny. The first row sends each as an absolute-form `http://` request; the second through a "
               "`CONNECT` tunnel that Purser intercepts (TLS 1.3, HTTP/1.1 inside, as the x402 SDK's `requests` client "
               "behind `HTTPS_PROXY`), so each hold also carries its TLS session and the tunnel; the third shares each "
               "tunnel among 100 holds over HTTP/2 (hyper's server allows 200 streams per connection). The fourth row "
               "opens the same number of plain connections, each after one plain GET, and leaves them idle. Listing "
               "holds (polled every 50 ms while they open) is part of the cost measured.")

    def paid_recovery(self):
        r = {m: self.data.med("paid", "recovery", m) for m in
             ("lines", "generated", "bytes", "sessions", "took_ms", "ready_s", "rss_kb", "verify_ok", "verify_s")}
        if r["generated"] is None:
            return
        self.w("", "### Recovery", "")
        self.table(["lines", "size", "sessions", "took_ms (log line)", "start to /healthz answering", "VmRSS after",
                    "traces verify"],
                   [[f"{num(r['lines'], 0)} (generated {num(r['generated'], 0)})", f"{(r['bytes'] or 0) / MIB:.0f} MiB",
                     num(r["sessions"], 0), "**–**" if r["took_ms"] is None else f"**{r['took_ms'] / 1000:.2f} s**",
                     f"{num(r['ready_s'], 2)} s", in_mib(r["rss_kb"]),
                     f"{'ok' if r['verify_ok'] == 1 else 'FAILED'} ({num(r['verify_s'], 1)} s)"]], "rrrrrrl")
        self.w("", "Target: ≤ 5 s. The log alternates ALLOWED decision and committed settlement lines copied from "
               "this run's own proof log (fresh trace ids, keys, sessions, times over 7 days), hash-chained, read from "
               "a warm page cache. took_ms is the replay alone; the time to /healthz also covers opening the log "
               "(which reads it once more for the last hash) and start-up.")

    # ------------------------------------------------------------ memory
    def memory(self):
        d = self.data
        conns, leaves, sessions = (int(self.s(k, v)) for k, v in
                                   (("MEM_CONNS", 1000), ("MEM_LEAVES", 10000), ("MEM_SESSIONS", 100000)))
        self.w("## 4. Memory", "")
        self.w("Purser's VmRSS (`/proc/PID/status`), mimalloc, `benches/memory-policy.yaml`. A fresh Purser idle "
               f"(1 s after start), then with {conns:,} idle keep-alive connections (one plain `GET` each, kept open), "
               f"then with {leaves:,} leaf certificates minted on top (a `CONNECT` and handshake to as many host names, "
               f"connections still open); a fresh Purser with the leaves alone; a fresh Purser after {sessions:,} "
               "sessions (`bench.mI` credentials, one paid request each to the stub merchant, proof log without "
               "fsync). Each reading is taken 1 s after the step.", "")
        idle = d.med("memory", "purser", "idle_kb")

        def row(label, metric, base=None, items=0, item="", target=""):
            m = d.med("memory", "purser", metric)
            over = "–" if m is None or base is None else f"{(m - base) / 1024:.1f}"
            per = "–" if m is None or base is None or not items else f"{(m - base) * 1024 / items:,.0f} B per {item}"
            return [label, cell(d, "memory", "purser", metric, 1 / 1024, 1), over, per, target]

        conns_kb = d.med("memory", "purser", "conns_kb")
        self.table(["state", "VmRSS (MiB)", "over idle (MiB)", "per item", "target"], [
            row("idle", "idle_kb", target="≤ 15 MB (14.3 MiB)"),
            row(f"{conns:,} keep-alive connections", "conns_kb", idle, conns, "connection"),
            row(f"{conns:,} connections + {leaves:,} cached leaves", "conns_leaves_kb", conns_kb, leaves,
                "leaf (over the connections)", "≤ 64 MB (61.0 MiB)"),
            row(f"{leaves:,} cached leaves alone", "leaves_kb", idle, leaves, "leaf"),
            row(f"{sessions:,} sessions", "sessions_kb", d.med("memory", "purser", "sessions_start_kb"), sessions,
                "session")], "lrrrl")
        checks = []
        for metric, what, expected in (("leaf_entries", "leaf cache entries after filling", leaves),
                                       ("sessions_listed", "sessions listed by the admin API afterwards", sessions)):
            if d.list("memory", "purser", metric):
                values = ", ".join(f"{v:,.0f}" for v in d.list("memory", "purser", metric))
                checks.append(f"{what}: {values} (expected {expected:,})")
        others = [f"{t} {v / 1024:.1f} MiB" for t in ("bare", "squid", "tinyproxy", "mitmproxy")
                  if (v := d.med("plain", t, "rss_idle_kb")) is not None]
        if others:
            checks.append("for scale, idle VmRSS of the other proxies in section 1: " + ", ".join(others))
        if checks:
            self.w("", *(f"* {c}" for c in checks))
        for label, metric, limit in (("idle RSS", "idle_kb", 15),
                                     (f"RSS with {conns:,} connections and {leaves:,} cached leaves", "conns_leaves_kb", 64)):
            kb = d.med("memory", "purser", metric)
            megabytes = None if kb is None else kb * 1024 / MB
            self.summary.append((label, f"≤ {limit} MB", "–" if kb is None else f"{kb / 1024:.1f} MiB ({megabytes:.1f} MB)",
                                 met(megabytes, limit, False)))
        bars = [bar(d, "memory", "purser", metric, 1 / 1024, highlight, label=label) for metric, highlight, label in (
            ("idle_kb", True, "idle"), ("conns_kb", True, f"{conns:,} connections"),
            ("conns_leaves_kb", True, f"+ {leaves:,} leaves"), ("leaves_kb", False, f"{leaves:,} leaves alone"),
            ("sessions_kb", False, f"{sessions:,} sessions"))]
        self.plot("memory.svg", "memory", {"title": "Memory (Purser VmRSS)", "note": self.runs_note(), "panels": [
            {"title": "VmRSS", "unit": "MiB", "bars": bars,
             "targets": [{"value": 15e6 / MIB, "label": "15 MB (idle)"},
                         {"value": 64e6 / MIB, "label": "64 MB (connections + leaves)"}]}]})
        self.end_section("memory")

    # ------------------------------------------------------------ findings
    def findings(self):
        self.w("## 5. Governance findings", "")
        path = os.path.join(self.args.report_dir, "findings.md")
        if not os.path.exists(path):
            self.w("`bench findings` produced no report.")
            return self.end_section("findings")
        with open(path, encoding="utf-8") as f:
            parts = f.read().split("\n## ")
        # The intro (after the title, up to the first section) and "The four figures".
        intro = parts[0].split("\n", 1)[1].strip() if "\n" in parts[0] else ""
        figures = next((p.split("\n", 1)[1].strip() for p in parts[1:]
                        if "four figures" in p.split("\n")[0].lower()), "")
        self.w("From `bench findings` (its full report: `report/findings.md`):", "", intro, "", figures)
        # Its table: metric | claimed | measured flat | measured governed | target.
        panels = []
        for line in figures.splitlines()[2:]:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            found = [re.search(r"([\d.]+)%", c) for c in cells[2:4]] if len(cells) > 3 else []
            if len(found) == 2 and all(found):
                panels.append({"title": re.sub(r"[*_`]", "", cells[0]).strip(), "unit": "%", "max": 100, "bars": [
                    {"label": "flat policy", "value": float(found[0].group(1))},
                    {"label": "governed policy", "value": float(found[1].group(1)), "highlight": True}]})
        if panels:
            self.plot("findings.svg", "governance findings", {"title": "Governance findings: flat vs governed policy",
                                                               "note": "one seeded workload through Purser twice",
                                                               "panels": panels})
        self.end_section("findings")

    # ------------------------------------------------------------ transparent
    def transparent(self):
        d, conns, hs = self.data, int(self.s("CONNS", 16)), int(self.s("HS_CONNS", 16))
        self.w("## 6. Transparent mode", "")
        self.w("HTTPS to `bench origin` (a test CA's certificate for `localhost`) inside a network namespace the run "
               "makes, from a load generator running as its own uid. **transparent**: no proxy settings; "
               "`purser redirect --apply` sends that uid's TCP to `--transparent-listen`, which intercepts by SNI and "
               "connects to the original destination. **HTTPS_PROXY**: the same load generator, the same Purser, "
               f"through `CONNECT` to the proxy listener. Keep-alive: {conns} connections, `GET`s back to back; new "
               f"handshakes: {hs} workers opening, handshaking and closing connections (cached leaf). Needs root.", "")
        if not d.has("transparent", "transparent"):
            self.end_section("transparent")
            return
        labels = {"transparent": "**transparent** (redirected)", "proxy": "HTTPS_PROXY (CONNECT)"}
        self.table(["path", "keep-alive req/s", "new TLS handshakes/s"],
                   [[labels[t], cell(d, "transparent", t, "tls_rps", digits=0), cell(d, "transparent", t, "hs_per_s", digits=0)]
                    for t in ("transparent", "proxy") if d.has("transparent", t)])
        rps, r_rps = ratio_cell(d, "transparent", "transparent", "proxy", "tls_rps")
        hs_text, r_hs = ratio_cell(d, "transparent", "transparent", "proxy", "hs_per_s")
        self.w("", "transparent ÷ HTTPS_PROXY (ratio of medians, per-run range):", "")
        self.table(["keep-alive req/s", "new TLS handshakes/s"], [[rps, hs_text]], "rr")
        self.summary.append(("transparent vs HTTPS_PROXY, keep-alive req/s", "≥ 0.90×", rps, met(r_rps, 0.9)))
        self.summary.append(("transparent vs HTTPS_PROXY, new TLS handshakes/s", "≥ 0.90×", hs_text, met(r_hs, 0.9)))
        self.end_section("transparent")

    # ------------------------------------------------------------ fleet
    def fleet(self):
        d = self.data
        settings = dict(kv.split("=", 1) for kv in self.meta.get("fleet_settings", "").split() if "=" in kv)
        n = settings.get("FLEET_REPLICAS", "3")
        self.w(f"## Fleet: {n} replicas on one PostgreSQL", "",
               f"Settings: `{self.meta.get('fleet_settings', '')}`; {self.meta.get('postgresql', 'PostgreSQL')} on the "
               "same machine, started by the section (fsync and synchronous commit on). Unique x402 v2 payments of "
               "$0.01 against one shared agent budget, `bench load` through every replica at once; "
               f"{self.runs_note()}.", "")
        if not d.targets("fleet"):
            self.w("The fleet section recorded no numbers.")
            return self.end_section("fleet")
        rows = []
        for key, label in (("embedded", "embedded default, one process"), ("fleet-1", "1 replica on the store"),
                           (f"fleet-{n}", f"{n} replicas on the store")):
            if d.has("fleet", key):
                rows.append([label, cell(d, "fleet", key, "rps", digits=0), cell(d, "fleet", key, "p50_us", 1e-3, 2),
                             cell(d, "fleet", key, "p99_us", 1e-3, 2), cell(d, "fleet", key, "errors", digits=0)])
        self.w("### Durable decisions/s (closed loop)", "")
        self.table(["configuration", "decisions/s", "p50 (ms)", "p99 (ms)", "errors"], rows)
        one, many = d.med("fleet", "fleet-1", "rps"), d.med("fleet", f"fleet-{n}", "rps")
        if one and many:
            self.w("", f"Scaling 1 → {n} replicas: {many / one:.2f}×.")
            self.summary.append([f"fleet decisions/s, {n} replicas", "≥ 3,000/s", num(many, 0), met(many, 3000)])
        fe, ee = d.med("fleet", "latency-fleet", "p50_us"), d.med("fleet", "latency-embedded", "p50_us")
        if fe is not None and ee is not None:
            f99, e99 = d.med("fleet", "latency-fleet", "p99_us"), d.med("fleet", "latency-embedded", "p99_us")
            self.w("", f"### Added latency at {settings.get('FLEET_RATE', '?')} payments/s (open loop)", "")
            self.table(["", "p50 (ms)", "p99 (ms)"], [
                ["embedded default", ms(ee), ms(e99)], [f"{n} replicas on the store", ms(fe), ms(f99)],
                ["added", f"**{ms(fe - ee)}**", ms(f99 - e99)]])
            self.summary.append(["added p50 per payment over the embedded default", "≤ 1 ms", f"{ms(fe - ee)} ms",
                                 met(-(fe - ee), -1000)])
        rows = []
        for key, label in (("overspend", "no fault"), ("overspend-replica-killed", "a replica SIGKILLed mid-run"),
                           ("overspend-store-restarted", "PostgreSQL crashed and restarted mid-run")):
            if d.has("fleet", key):
                rows.append([label, f"${settings.get('FLEET_BUDGET', '?')}", cell(d, "fleet", key, "settled_usd", digits=2),
                             cell(d, "fleet", key, "booked_usd", digits=2), cell(d, "fleet", key, "allowed", digits=0),
                             f"**{cell(d, 'fleet', key, 'overspend_usd', digits=2)}**"])
        if rows:
            self.w("", "### Overspend", "", "What the facilitator settled against the agent budget; what the store "
                   "counts (committed + unknown + reserved, after the run); ALLOWED decision lines in the replicas' "
                   "proof logs.", "")
            self.table(["run", "budget", "settled", "store counts", "ALLOWED lines", "overspend"], rows)
            worst = max(max(d.list("fleet", k, "overspend_usd") or [0]) for k in
                        ("overspend", "overspend-replica-killed", "overspend-store-restarted"))
            self.summary.append(["overspend, with faults", "0", f"${worst:.2f}", met(-worst, 0)])
        a = d.med("fleet", "approve", "p50_us")
        if a is not None:
            self.w("", "### Approval forwarding", "", "A payment held on replica r1, approved through r0's admin API; "
                   "from the approve call returning to the request reaching the merchant.", "")
            self.table(["n", "p50 (ms)", "p90 (ms)", "p99 (ms)"],
                       [[num(d.med("fleet", "approve", "n"), 0), ms(a), ms(d.med("fleet", "approve", "p90_us")),
                         ms(d.med("fleet", "approve", "p99_us"))]], "rrrr")
            self.summary.append(["approval on A forwarded from B, median", "≤ 10 ms", f"{ms(a)} ms", met(-a, -10000)])
        self.end_section("fleet")

    # ------------------------------------------------------------ all
    def render(self):
        m = self.meta
        for name in ("plain", "mitm", "paid", "memory", "findings", "fleet", "transparent"):
            if name in self.sections:
                getattr(self, name)()
        body, self.out = self.out, []
        self.w("# Purser benchmark report", "")
        self.w(f"Generated by `benches/run` on {m.get('date', '?')} in {m.get('elapsed', '?')}; every number below "
               f"comes from that run. Settings: `{m.get('settings', '')}`.", "")
        if self.s("DURATION", 10) < 10 or self.s("RUNS", 3) < 3:
            self.w(f"**Short run** (DURATION={self.settings.get('DURATION')} s, RUNS={self.settings.get('RUNS')}): it "
                   "checks that the suite works end to end; it is not a measurement of record (that takes the "
                   "defaults, DURATION=10 and RUNS=3, on a quiet machine).", "")
        busy = m.get("busy") or m.get("busy_at_start")
        if m.get("busy"):
            counts = collections.Counter(part.split()[0] for part in m["busy"].split(";") if part.strip())
            busy = ", ".join(f"{s} ({n} of its runs)" if n > 1 else s for s, n in counts.items())
        if busy:
            self.w(f"**Warning: the machine was busy** (cargo/rustc running during: {busy}); the numbers are noisy "
                   "and not a measurement of record.", "")
        for n in self.notes.get("build", []):
            self.w(f"**Build:** {n}", "")
        m["loadavg"] = f"{m.get('loadavg', '?')} / {m.get('loadavg_end', '?')}"
        self.table(["machine", ""], [[label, m.get(key, "?")] for key, label in (
            ("cpu", "CPU"), ("cores", "cores"), ("ram", "RAM"), ("kernel", "kernel"), ("os", "OS"),
            ("loadavg", "load average before / after"))], "ll")
        self.w("")
        self.table(["software", "version"], [[key, m[key]] for key in
                                             ("purser", "rustc", "squid", "tinyproxy", "mitmproxy", "wrk", "python")
                                             if key in m], "ll")
        self.w("", "Load generator, origin and proxy share the machine's cores on loopback (`bench load`, `bench "
               "origin`, one load-generator thread like `wrk -t1`). Each configuration ran RUNS times, the targets in "
               "a rotating order within each run; cells give the median and, in brackets, min–max over the runs.", "")
        if self.summary:
            self.w("## Targets", "")
            self.table(["figure", "target", "measured", ""], self.summary, "llll")
            self.w("")
        self.out.extend(body)
        return "\n".join(self.out).rstrip() + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag in ("--results", "--meta", "--report-dir", "--out"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--notes")
    args = ap.parse_args()
    os.makedirs(args.report_dir, exist_ok=True)
    text = Report(args).render()
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
