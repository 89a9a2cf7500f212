#!/usr/bin/env python3
"""Writes benches/REPORT.md and its plots from the raw numbers of benches/run.

    python3 benches/report.py --results results.tsv --meta meta.tsv --notes notes.tsv \\
        --report-dir benches/report --out benches/REPORT.md

results.tsv: `section target metric run value` (tab-separated), one number a line.
meta.tsv: `key value` (machine, versions, settings). notes.tsv: `section text`.
report-dir: where the SVGs go; paid.md and findings.md there (copied by run from
benches/paid.sh and benches/findings.sh) are embedded when present.
Standard library only.
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
MB = 1e6
MIB = 1048576


class Data:
    def __init__(self, path):
        self.values = collections.defaultdict(dict)  # (section, target, metric) -> {run: v}
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

    def has(self, section, target):
        return any(k[0] == section and k[1] == target for k in self.values)


def num(v, digits=None):
    if v is None:
        return "–"
    if digits is not None:
        return f"{v:,.{digits}f}"
    return plot.fmt(v)


def cell(data, section, target, metric, scale=1.0, digits=None, bold=False):
    values = data.list(section, target, metric)
    if not values:
        return "–"
    m = statistics.median(values) * scale
    text = num(m, digits)
    if bold:
        text = f"**{text}**"
    if len(values) > 1:
        lo, hi = min(values) * scale, max(values) * scale
        text += f" ({num(lo, digits)}–{num(hi, digits)})"
    return text


def ratio_cell(data, section, a, b, metric):
    ma, mb = data.med(section, a, metric), data.med(section, b, metric)
    if ma is None or not mb:
        return "–", None
    r = ma / mb
    runs = data.ratio_runs(section, a, b, metric)
    text = f"{r:.2f}×"
    if len(runs) > 1:
        text += f" ({min(runs):.2f}–{max(runs):.2f})"
    return text, r


def met(value, target, higher_is_better=True):
    if value is None:
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "**met**" if ok else "**not met**"


def bar(data, section, target, metric, scale=1.0, highlight=None, text=None, label=None):
    m = data.med(section, target, metric)
    lo, hi = data.span(section, target, metric)
    return {
        "label": label or target,
        "value": None if m is None else m * scale,
        "lo": None if lo is None else lo * scale,
        "hi": None if hi is None else hi * scale,
        "highlight": (target == "purser") if highlight is None else highlight,
        **({"text": text} if text else {}),
    }


def write_svg(report_dir, name, spec):
    path = os.path.join(report_dir, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(plot.render(spec))
    return f"report/{name}" if os.path.basename(report_dir) == "report" else path


def demote(markdown, levels=1):
    """Headings one level down (## → ###), the first H1 dropped."""
    out = []
    dropped = False
    for line in markdown.splitlines():
        if line.startswith("# ") and not dropped:
            dropped = True
            continue
        if line.startswith("#"):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out).strip() + "\n"


def first_number(text):
    m = re.search(r"-?[\d,]+(?:\.\d+)?", text or "")
    return float(m.group(0).replace(",", "")) if m else None


def short_path(label):
    """A paid.sh path label, short enough for a bar label."""
    known = {
        "paid, durable (fsync)": "durable",
        "paid, --trace-no-fsync": "traces off (no fsync)",
        "plain, no payment header": "plain, no payment",
        "paid, held 1 ms (notify_with_veto), durable": "held 1 ms, auto-approved",
        "paid, durable, a session per connection": "durable, session per conn",
    }
    return known.get(label, label if len(label) <= 28 else label[:27] + "…")


def md_tables(markdown):
    """Every Markdown table as (header cells, rows of cells)."""
    tables, current = [], None
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if current is None:
                current = (cells, [])
            elif set("".join(cells)) <= set("-: "):
                continue
            else:
                current[1].append(cells)
        elif current is not None:
            tables.append(current)
            current = None
    if current is not None:
        tables.append(current)
    return tables


class Report:
    def __init__(self, args):
        self.args = args
        self.data = Data(args.results)
        self.meta = {}
        with open(args.meta, encoding="utf-8") as f:
            for line in f:
                if "\t" in line:
                    k, v = line.rstrip("\n").split("\t", 1)
                    self.meta[k] = v
        self.notes = collections.defaultdict(list)
        if args.notes and os.path.exists(args.notes):
            with open(args.notes, encoding="utf-8") as f:
                for line in f:
                    if "\t" in line:
                        k, v = line.rstrip("\n").split("\t", 1)
                        self.notes[k].append(v)
        self.settings = {}
        for kv in shlex.split(self.meta.get("settings", "")):
            if "=" in kv:
                k, v = kv.split("=", 1)
                self.settings[k] = v
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

    def section_notes(self, section):
        if self.notes.get(section):
            self.w("", "Notes from the run:", "")
            for n in self.notes[section]:
                self.w(f"* {n}")

    # ------------------------------------------------------------ plain
    def plain(self):
        d = self.data
        rate = self.s("RATE", 1000)
        conns = int(self.s("CONNS", 16))
        targets = [t for t in PLAIN_TARGETS if d.has("plain", t)]
        self.w("## 1. Plain HTTP path", "")
        self.w(
            f"Keep-alive `GET`s of a 6-byte body from `bench origin`, {conns} connections, through each "
            "proxy (absolute-form `http://` URLs; Purser with proxy credentials and the "
            "`benches/bench-policy.yaml` agent, no payment). **Saturation**: `wrk -t1 "
            f"-c{conns}` (`benches/proxy.lua`) after a warm-up. **Fixed rate**: `bench load "
            f"--rate {rate:.0f}`, an open loop that schedules every request at a fixed time and "
            "measures from that time whenever the connection was still busy then (no coordinated "
            "omission). squid runs with caching and its access log off; tinyproxy closes the "
            "client connection after every answer (wrk's read errors from that are not counted, "
            "the load generator reconnects and counts the time); mitmproxy is plain HTTP here "
            "(TLS in section 2).",
            "",
        )
        self.w(
            "| target | req/s at saturation | vs bare | vs squid | p50 (µs) | p99 (µs) | p99.9 (µs) "
            "| VmRSS idle (MiB) | VmRSS after load (MiB) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        )
        for t in targets:
            vs_bare = ratio_cell(d, "plain", t, "bare", "rps")[0] if t != "bare" else "1.00×"
            vs_squid = ratio_cell(d, "plain", t, "squid", "rps")[0] if t != "squid" else "1.00×"
            self.w(
                f"| {LABELS[t]} | {cell(d, 'plain', t, 'rps', digits=0, bold=t == 'purser')} | {vs_bare} | "
                f"{vs_squid} | {cell(d, 'plain', t, 'p50_us', digits=0)} | "
                f"{cell(d, 'plain', t, 'p99_us', digits=0)} | {cell(d, 'plain', t, 'p999_us', digits=0)} | "
                f"{cell(d, 'plain', t, 'rss_idle_kb', 1 / 1024, 1)} | "
                f"{cell(d, 'plain', t, 'rss_load_kb', 1 / 1024, 1)} |"
            )
        self.w("")
        self.w(
            f"At a fixed {rate:,.0f} req/s over {conns} connections (added = the target's median "
            "minus direct's median):",
            "",
            "| target | achieved req/s | p50 (µs) | p99 (µs) | p99.9 (µs) | added p50 (µs) | "
            "added p99 (µs) | added p99.9 (µs) | requests that waited for a busy connection |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        )
        direct = {k: d.med("plain", "direct", f"open_{k}") for k in ("p50_us", "p99_us", "p999_us")}
        for t in targets:
            lower = (d.med("plain", t, "open_unsent") or 0) > 0
            pre = "≥ " if lower else ""
            added = []
            for k in ("p50_us", "p99_us", "p999_us"):
                m = d.med("plain", t, f"open_{k}")
                if t == "direct" or m is None or direct[k] is None:
                    added.append("–")
                else:
                    v = f"{pre}{m - direct[k]:,.0f}"
                    added.append(f"**{v}**" if t == "purser" else v)
            behind = d.med("plain", t, "open_behind")
            self.w(
                f"| {LABELS[t]} | {cell(d, 'plain', t, 'open_rps', digits=0)} | "
                f"{pre}{cell(d, 'plain', t, 'open_p50_us', digits=0)} | {pre}{cell(d, 'plain', t, 'open_p99_us', digits=0)} | "
                f"{pre}{cell(d, 'plain', t, 'open_p999_us', digits=0)} | {' | '.join(added)} | "
                f"{num(behind, 0)} |"
            )
        if any((d.med("plain", t, "open_unsent") or 0) > 0 for t in targets):
            self.w(
                "",
                "≥: the target could not keep up; requests still unsent 2 s after the window "
                "are counted with the time they had waited by then, so these are lower bounds.",
            )
        # Targets.
        text, r = ratio_cell(d, "plain", "purser", "bare", "rps")
        self.summary.append(("plain HTTP req/s, Purser vs bare hyper pass-through", "≥ 0.8×", text, met(r, 0.8)))
        text, r = ratio_cell(d, "plain", "purser", "squid", "rps")
        self.summary.append(("plain HTTP req/s, Purser vs squid", "≥ 3×", text, met(r, 3)))
        mp, md_ = d.med("plain", "purser", "open_p99_us"), direct["p99_us"]
        added99 = None if mp is None or md_ is None else mp - md_
        self.summary.append(
            (f"p99 added over direct at {rate:,.0f} req/s", "≤ 0.3 ms",
             "–" if added99 is None else f"{added99 / 1000:.3f} ms", met(added99, 300, False))
        )
        # Plot.
        bare = d.med("plain", "bare", "rps")
        squid = d.med("plain", "squid", "rps")
        rps_bars = []
        for t in targets:
            extra = None
            if t == "purser" and bare:
                m = d.med("plain", t, "rps")
                extra = f"{plot.fmt(m)} ({m / bare:.2f}× bare" + (f", {m / squid:.1f}× squid)" if squid else ")")
            rps_bars.append(bar(d, "plain", t, "rps", text=extra))
        lines = []
        if bare:
            lines.append({"value": 0.8 * bare, "label": "target: 0.8× bare"})
        if squid:
            lines.append({"value": 3 * squid, "label": "target: 3× squid"})
        added_bars = []
        for t in targets:
            if t == "direct":
                continue
            m = d.med("plain", t, "open_p99_us")
            v = None if m is None or direct["p99_us"] is None else m - direct["p99_us"]
            added_bars.append({"label": t, "value": v, "highlight": t == "purser"})
        spec = {
            "title": "Plain HTTP path",
            "note": f"median of {self.meta_runs()} run(s), whiskers min–max; loopback, {self.meta.get('cores', '?')} cores shared",
            "panels": [
                {"title": f"keep-alive req/s at saturation (wrk -t1 -c{conns})", "unit": "req/s",
                 "targets": lines, "bars": rps_bars},
                {"title": f"p99 added over direct at {rate:,.0f} req/s", "unit": "µs",
                 "target": 300, "target_label": "target 0.3 ms", "clip": True, "bars": added_bars},
            ],
        }
        self.w("", f"![plain HTTP]({write_svg(self.args.report_dir, 'plain.svg', spec)})")
        self.section_notes("plain")
        self.w("")

    def meta_runs(self):
        return self.settings.get("RUNS", "?")

    # ------------------------------------------------------------ mitm
    def mitm(self):
        d = self.data
        conns = int(self.s("CONNS", 16))
        hs = int(self.s("HS_CONNS", 16))
        first_n = int(self.s("FIRST_COUNT", 500))
        bulk = self.s("BULK_BYTES", 16777216)
        targets = [t for t in MITM_TARGETS if d.has("mitm", t)]
        self.w("## 2. MITM path (TLS interception)", "")
        self.w(
            "HTTPS to `bench origin`'s TLS listener (a test CA's certificate for 127.0.0.1) "
            "through each proxy's `CONNECT` interception; the load generator trusts the proxy's "
            "CA and the proxy verifies the origin against the test CA. TLS 1.3, ALPN http/1.1, "
            "no session resumption on the agent side: every handshake is a full one. "
            f"**Keep-alive**: {conns} tunnels, `GET`s back to back. **New handshakes**: {hs} "
            "workers each open a connection, `CONNECT`, complete the handshake (the leaf for "
            "127.0.0.1 is cached) and close, in a loop; **new connections with one GET** do the "
            f"same with one request each. **First handshake to a new host**: {first_n} `CONNECT`s "
            "one after another, each to a host name never seen (the proxy mints a leaf), timed "
            "from TCP connect to the end of the handshake, beside as many to a cached host; no "
            f"request is sent, so the names are never resolved. **Bulk**: {bulk / MIB:.0f} MiB "
            "bodies back to back on one connection. mitmproxy runs `connection_strategy=lazy` "
            "(no upstream connection before a request needs one, as Purser) and "
            "`stream_large_bodies=1m`.",
            "",
        )
        self.w(
            "| target | keep-alive req/s | p50 / p99 (µs) | new handshakes/s | new connections + GET /s "
            "| first handshake, new host p50 / p99 (µs) | cached host p50 / p99 (µs) | bulk MB/s | "
            "VmRSS after (MiB) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        )
        for t in targets:
            self.w(
                f"| {LABELS[t]} | {cell(d, 'mitm', t, 'tls_rps', digits=0, bold=t == 'purser')} | "
                f"{num(d.med('mitm', t, 'tls_p50_us'), 0)} / {num(d.med('mitm', t, 'tls_p99_us'), 0)} | "
                f"{cell(d, 'mitm', t, 'hs_per_s', digits=0, bold=t == 'purser')} | "
                f"{cell(d, 'mitm', t, 'conn_per_s', digits=0)} | "
                f"{num(d.med('mitm', t, 'new_p50_us'), 0)} / {num(d.med('mitm', t, 'new_p99_us'), 0)} | "
                f"{num(d.med('mitm', t, 'cached_p50_us'), 0)} / {num(d.med('mitm', t, 'cached_p99_us'), 0)} | "
                f"{cell(d, 'mitm', t, 'bulk_mb_s', digits=0)} | "
                f"{cell(d, 'mitm', t, 'rss_after_kb', 1 / 1024, 1)} |"
            )
        if "purser" in targets and "mitmproxy" in targets:
            self.w("", "Purser ÷ mitmproxy (ratio of medians, per-run range):", "")
            self.w("| keep-alive req/s | new handshakes/s | new connections + GET /s | bulk MB/s |",
                   "|---:|---:|---:|---:|")
            cells = [ratio_cell(d, "mitm", "purser", "mitmproxy", m)[0]
                     for m in ("tls_rps", "hs_per_s", "conn_per_s", "bulk_mb_s")]
            self.w("| " + " | ".join(cells) + " |")
        hs_m = d.med("mitm", "purser", "hs_per_s")
        self.summary.append(("MITM new TLS handshakes/s through Purser (cached leaf)", "≥ 2,000/s",
                             cell(d, "mitm", "purser", "hs_per_s", digits=0), met(hs_m, 2000)))
        p99 = d.med("mitm", "purser", "new_p99_us")
        self.summary.append(("first handshake to a new host through Purser, p99", "≤ 2 ms",
                             "–" if p99 is None else f"{p99 / 1000:.2f} ms (p50 {d.med('mitm', 'purser', 'new_p50_us') / 1000:.2f} ms)",
                             met(p99, 2000, False)))
        text, r = ratio_cell(d, "mitm", "purser", "mitmproxy", "tls_rps")
        self.summary.append(("req/s over TLS, Purser vs mitmproxy", "≥ 10×", text, met(r, 10)))
        mitm_rps = d.med("mitm", "mitmproxy", "tls_rps")
        panels = [
            {"title": f"keep-alive req/s over TLS ({conns} connections)", "unit": "req/s",
             "targets": [{"value": 10 * mitm_rps, "label": "target: 10× mitmproxy"}] if mitm_rps else [],
             "bars": [bar(d, "mitm", t, "tls_rps") for t in targets]},
            {"title": f"new full TLS handshakes/s, cached leaf ({hs} workers)", "unit": "/s",
             "target": 2000, "target_label": "target 2,000/s",
             "bars": [bar(d, "mitm", t, "hs_per_s") for t in targets]},
            {"title": "first handshake to a new host (leaf minted), p99", "unit": "ms",
             "target": 2, "target_label": "target 2 ms",
             "bars": [bar(d, "mitm", t, "new_p99_us", 1e-3) for t in targets if t != "direct"]
             + [bar(d, "mitm", t, "cached_p99_us", 1e-3, label=f"{t}, cached host") for t in targets if t != "direct"]},
            {"title": "bulk download through the interception", "unit": "MB/s",
             "bars": [bar(d, "mitm", t, "bulk_mb_s") for t in targets]},
        ]
        spec = {"title": "MITM path", "note": f"median of {self.meta_runs()} run(s), whiskers min–max", "panels": panels}
        self.w("", f"![MITM path]({write_svg(self.args.report_dir, 'mitm.svg', spec)})")
        self.section_notes("mitm")
        self.w("")

    # ------------------------------------------------------------ paid
    def paid(self):
        self.w("## 3. Paid path", "")
        path = os.path.join(self.args.report_dir, "paid.md")
        if not os.path.exists(path):
            self.w("`benches/paid.sh` produced no report.")
            self.section_notes("paid")
            self.w("")
            self.summary.append(("durable paid decisions/s", "≥ 10,000/s", "–", "n/a"))
            return
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.w("The output of `benches/paid.sh` (run by `benches/run` with the same DURATION, "
               "WARMUP and RUNS; full copy in `report/paid.md`):", "")
        self.w(demote(text, 1))
        bars, durable = [], None
        for header, rows in md_tables(text):
            if not header or not header[0].startswith("path"):
                continue
            for row in rows:
                if len(row) < 3:
                    continue
                label, conns, rps = row[0], row[1], row[2]
                value = first_number(rps)
                rng = re.search(r"\(([\d.]+)–([\d.]+)\)", rps)
                lo, hi = (float(rng.group(1)), float(rng.group(2))) if rng else (None, None)
                is_durable = label.startswith("paid, durable (fsync)")
                if is_durable and durable is None:
                    durable = (value, rps)
                bars.append({"label": f"{short_path(label)}, {conns} conns", "value": value, "lo": lo, "hi": hi,
                             "highlight": is_durable})
            break
        self.summary.append(("durable paid decisions/s (64 connections)", "≥ 10,000/s",
                             durable[1] if durable else "–", met(durable[0] if durable else None, 10000)))
        spec = {"title": "Paid path: decisions per second", "note": "benches/paid.sh; median of its runs, whiskers min–max",
                "panels": [{"title": "decisions/s (req/s)", "unit": "/s", "target": 10000,
                            "target_label": "target 10,000/s (durable)", "bars": bars}]}
        self.w(f"![paid path]({write_svg(self.args.report_dir, 'paid.svg', spec)})")
        self.section_notes("paid")
        self.w("")

    # ------------------------------------------------------------ memory
    def memory(self):
        d = self.data
        conns = int(self.s("MEM_CONNS", 1000))
        leaves = int(self.s("MEM_LEAVES", 10000))
        sessions = int(self.s("MEM_SESSIONS", 100000))
        self.w("## 4. Memory", "")
        self.w(
            "Purser's VmRSS (`/proc/PID/status`), mimalloc, `benches/memory-policy.yaml`. "
            f"A fresh Purser idle (1 s after start), then with {conns:,} idle keep-alive "
            f"connections (one plain `GET` each, kept open), then with {leaves:,} leaf "
            "certificates minted on top (a `CONNECT` and handshake to as many host names, "
            "connections still open); a fresh Purser with the leaves alone; a fresh Purser "
            f"after {sessions:,} sessions (`bench.mI` credentials, one paid request each to the "
            "stub merchant, proof log without fsync). Each reading is taken 1 s after the step.",
            "",
            "| state | VmRSS (MiB) | over idle (MiB) | per item | target |",
            "|---|---:|---:|---:|---|",
        )
        idle = d.med("memory", "purser", "idle_kb")

        def row(label, metric, base=None, items=0, item="", target=""):
            m = d.med("memory", "purser", metric)
            over = "–" if m is None or base is None else f"{(m - base) / 1024:.1f}"
            per = "–"
            if m is not None and base is not None and items:
                per = f"{(m - base) * 1024 / items:,.0f} B per {item}"
            self.w(f"| {label} | {cell(d, 'memory', 'purser', metric, 1 / 1024, 1)} | {over} | {per} | {target} |")
            return m

        row("idle", "idle_kb", target="≤ 15 MB (14.3 MiB)")
        c = row(f"{conns:,} keep-alive connections", "conns_kb", idle, conns, "connection")
        row(f"{conns:,} connections + {leaves:,} cached leaves", "conns_leaves_kb", c, leaves, "leaf (over the connections)",
            "≤ 64 MB (61.0 MiB)")
        row(f"{leaves:,} cached leaves alone", "leaves_kb", idle, leaves, "leaf")
        row(f"{sessions:,} sessions", "sessions_kb", d.med("memory", "purser", "sessions_start_kb"), sessions, "session")
        checks = []
        entries = d.list("memory", "purser", "leaf_entries")
        if entries:
            checks.append(f"leaf cache entries after filling: {', '.join(f'{v:,.0f}' for v in entries)} (expected {leaves:,})")
        listed = d.list("memory", "purser", "sessions_listed")
        if listed:
            checks.append(f"sessions listed by the admin API afterwards: {', '.join(f'{v:,.0f}' for v in listed)} (expected {sessions:,})")
        others = []
        for t in ("bare", "squid", "tinyproxy", "mitmproxy"):
            v = d.med("plain", t, "rss_idle_kb")
            if v is not None:
                others.append(f"{t} {v / 1024:.1f} MiB")
        if others:
            checks.append("for scale, idle VmRSS of the other proxies in section 1: " + ", ".join(others))
        if checks:
            self.w("")
            for c_ in checks:
                self.w(f"* {c_}")
        idle_mb = None if idle is None else idle * 1024 / MB
        self.summary.append(("idle RSS", "≤ 15 MB", "–" if idle is None else f"{idle / 1024:.1f} MiB ({idle_mb:.1f} MB)",
                             met(idle_mb, 15, False)))
        both = d.med("memory", "purser", "conns_leaves_kb")
        both_mb = None if both is None else both * 1024 / MB
        self.summary.append((f"RSS with {conns:,} connections and {leaves:,} cached leaves", "≤ 64 MB",
                             "–" if both is None else f"{both / 1024:.1f} MiB ({both_mb:.1f} MB)", met(both_mb, 64, False)))
        bars = [
            bar(d, "memory", "purser", "idle_kb", 1 / 1024, True, label="idle"),
            bar(d, "memory", "purser", "conns_kb", 1 / 1024, True, label=f"{conns:,} connections"),
            bar(d, "memory", "purser", "conns_leaves_kb", 1 / 1024, True, label=f"+ {leaves:,} leaves"),
            bar(d, "memory", "purser", "leaves_kb", 1 / 1024, False, label=f"{leaves:,} leaves alone"),
            bar(d, "memory", "purser", "sessions_kb", 1 / 1024, False, label=f"{sessions:,} sessions"),
        ]
        spec = {"title": "Memory (Purser VmRSS)", "note": f"median of {self.meta_runs()} run(s), whiskers min–max",
                "panels": [{"title": "VmRSS", "unit": "MiB", "bars": bars,
                            "targets": [{"value": 15e6 / MIB, "label": "15 MB (idle)"},
                                        {"value": 64e6 / MIB, "label": "64 MB (connections + leaves)"}]}]}
        self.w("", f"![memory]({write_svg(self.args.report_dir, 'memory.svg', spec)})")
        self.section_notes("memory")
        self.w("")

    # ------------------------------------------------------------ findings
    def findings(self):
        self.w("## 5. Governance findings", "")
        path = os.path.join(self.args.report_dir, "findings.md")
        if not os.path.exists(path):
            self.w("`benches/findings.sh` produced no report.")
            self.section_notes("findings")
            self.w("")
            return
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.w("From `benches/findings.sh` (its full report: `report/findings.md`):", "")
        # The intro (up to the first section) and "The four figures".
        lines = text.splitlines()
        intro, figures, in_figures = [], [], False
        for line in lines[1:]:
            if line.startswith("## "):
                in_figures = "four figures" in line.lower()
                if in_figures:
                    continue
                if figures:
                    break
            if in_figures:
                figures.append(line)
            elif not figures and not any(l.startswith("## ") for l in intro) and not line.startswith("## "):
                intro.append(line)
        body = "\n".join(intro).strip() + "\n\n" + "\n".join(figures).strip() + "\n"
        self.w(body)
        panels = []
        for header, rows in md_tables("\n".join(figures)):
            cols = [h.lower() for h in header]
            try:
                fi = next(i for i, h in enumerate(cols) if "flat" in h and "measured" in h)
                gi = next(i for i, h in enumerate(cols) if "governed" in h and "measured" in h)
            except StopIteration:
                continue
            for row in rows:
                if len(row) <= max(fi, gi):
                    continue
                f_pct, g_pct = (re.search(r"([\d.]+)%", row[i]) for i in (fi, gi))
                if f_pct and g_pct:
                    panels.append({"title": re.sub(r"[*_`]", "", row[0]).strip(), "unit": "%", "max": 100,
                                   "bars": [{"label": "flat policy", "value": float(f_pct.group(1))},
                                            {"label": "governed policy", "value": float(g_pct.group(1)), "highlight": True}]})
            break
        if panels:
            spec = {"title": "Governance findings: flat vs governed policy", "note": "one seeded workload through Purser twice",
                    "panels": panels}
            self.w(f"![governance findings]({write_svg(self.args.report_dir, 'findings.svg', spec)})")
        self.section_notes("findings")
        self.w("")

    # ------------------------------------------------------------ all
    def render(self):
        m = self.meta
        body_sections = []
        for name in ("plain", "mitm", "paid", "memory", "findings"):
            if name in self.sections:
                getattr(self, name)()
        body_sections, self.out = self.out, []
        self.w("# Purser benchmark report", "")
        self.w(f"Generated by `benches/run` on {m.get('date', '?')} in {m.get('elapsed', '?')}; "
               f"every number below comes from that run. Settings: `{m.get('settings', '')}`.", "")
        if self.s("DURATION", 10) < 10 or self.s("RUNS", 3) < 3:
            self.w(f"**Short run** (DURATION={self.settings.get('DURATION')} s, RUNS={self.settings.get('RUNS')}): "
                   "it checks that the suite works end to end; it is not a measurement of record "
                   "(that takes the defaults, DURATION=10 and RUNS=3, on a quiet machine).", "")
        busy = m.get("busy") or m.get("busy_at_start")
        if m.get("busy"):
            counts = collections.Counter(part.split()[0] for part in m["busy"].split(";") if part.strip())
            busy = ", ".join(f"{s} ({n} of its runs)" if n > 1 else s for s, n in counts.items())
        if busy:
            self.w(f"**Warning: the machine was busy** (cargo/rustc running during: {busy}); "
                   "the numbers are noisy and not a measurement of record.", "")
        for n in self.notes.get("build", []):
            self.w(f"**Build:** {n}", "")
        self.w("| machine | |", "|---|---|")
        for key, label in (("cpu", "CPU"), ("cores", "cores"), ("ram", "RAM"), ("kernel", "kernel"),
                           ("os", "OS"), ("loadavg", "load average before / after")):
            value = m.get(key, "?")
            if key == "loadavg":
                value = f"{value} / {m.get('loadavg_end', '?')}"
            self.w(f"| {label} | {value} |")
        self.w("", "| software | version |", "|---|---|")
        for key in ("purser", "rustc", "squid", "tinyproxy", "mitmproxy", "wrk", "python"):
            if key in m:
                self.w(f"| {key} | {m[key]} |")
        self.w("", "Load generator, origin and proxy share the machine's cores on loopback "
               "(`bench load`, `bench origin`, one load-generator thread like `wrk -t1`). "
               "Each configuration ran RUNS times, the targets in a rotating order within each run; "
               "cells give the median and, in brackets, min–max over the runs.", "")
        if self.summary:
            self.w("## Targets", "", "| figure | target | measured | |", "|---|---|---|---|")
            for fig, target, measured, ok in self.summary:
                self.w(f"| {fig} | {target} | {measured} | {ok} |")
            self.w("")
        self.out.extend(body_sections)
        return "\n".join(self.out).rstrip() + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--notes")
    ap.add_argument("--report-dir", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.report_dir, exist_ok=True)
    text = Report(args).render()
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
