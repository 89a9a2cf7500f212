"""Small SVG bar charts for benches/REPORT.md (report.py), with the standard library only.

A chart is a title and a stack of panels; each panel is a horizontal bar chart of one
quantity (one unit): a bar per target with its value written after it, an optional
min–max whisker (the range over runs) and optional dashed target lines. With "clip":
true, one value far above the rest is drawn broken at the axis's end instead of
flattening every other bar; "max" fixes the axis (100 for percentages). `render(spec)`
returns the SVG text of a spec of the shape

    {"title": "Plain HTTP", "note": "median of 3 runs; whiskers: min–max",
     "panels": [{"title": "keep-alive req/s", "unit": "req/s",
                 "target": 30000, "target_label": "0.8× bare",
                 "targets": [{"value": 45000, "label": "3× squid"}],
                 "bars": [{"label": "purser", "value": 31000, "lo": 29000, "hi": 33000,
                           "highlight": true, "text": "31,000 (0.84× bare)"}]}]}
"""

import html
import math

WIDTH = 760
LABEL_W = 170
BAR_H = 18
BAR_GAP = 7
PANEL_TITLE_H = 24
LABEL_ROW = 12
PANEL_GAP = 18
AXIS_H = 18
FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"
HIGHLIGHT = "#2b6cb0"
OTHER = "#a0aec0"
TARGET = "#c53030"
INK = "#1a202c"
MUTED = "#4a5568"


def fmt(value):
    """A number as a short label: 12,345 / 123 / 12.3 / 1.23 / 0.123."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def nice_max(value):
    """A round axis maximum at or above value (four even ticks below it)."""
    if value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for step in (1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8, 10):
        candidate = step * 10**exp
        if candidate >= value * 0.999999:
            return candidate
    return 10 ** (exp + 1)


def text(x, y, s, size=12, anchor="start", color=INK, weight="normal"):
    return (
        f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}' "
        f"fill='{color}' font-weight='{weight}' {FONT}>{html.escape(str(s))}</text>"
    )


def panel_targets(panel):
    """The panel's target lines as (value, label)."""
    targets = [(t["value"], t.get("label", f"target {fmt(t['value'])}"))
               for t in panel.get("targets", []) if t.get("value") is not None]
    if panel.get("target") is not None:
        targets.append((panel["target"], panel.get("target_label", f"target {fmt(panel['target'])}")))
    return targets


def bars_top(panel):
    """Offset of the first bar: the title, then a row per target label."""
    return PANEL_TITLE_H + LABEL_ROW * len(panel_targets(panel)) + 4


def panel_height(panel):
    bars = max(1, len(panel.get("bars", [])))
    return bars_top(panel) + bars * (BAR_H + BAR_GAP) + AXIS_H


def render_panel(panel, top, label_w=LABEL_W):
    out = []
    unit = panel.get("unit", "")
    title = panel.get("title", "")
    out.append(text(10, top + 15, f"{title}" + (f" ({unit})" if unit else ""), 13, weight="bold"))
    bars = [b for b in panel.get("bars", [])]
    values = [b.get("value") for b in bars if b.get("value") is not None]
    highs = [b.get("hi") for b in bars if b.get("hi") is not None]
    targets = panel_targets(panel)
    candidates = sorted(values + highs + [t[0] for t in targets] + [0], reverse=True)
    top_value = candidates[0]
    # One value far above the rest (mitmproxy's latency) would flatten every other bar:
    # the axis then stops above the rest, and that bar is drawn broken at the edge.
    clipped = (panel.get("clip") and len(candidates) > 2 and candidates[1] > 0
               and top_value > 6 * candidates[1])
    if clipped:
        top_value = candidates[1] * 1.15
    scale_max = panel.get("max") or nice_max(top_value)
    x0 = label_w
    bar_area = WIDTH - label_w - 160
    y = top + bars_top(panel)

    def sx(v):
        return x0 + bar_area * min(max(0.0, v), scale_max * 1.04) / scale_max

    # Grid and axis labels.
    bars_h = max(1, len(bars)) * (BAR_H + BAR_GAP)
    for i in range(5):
        v = scale_max * i / 4
        gx = sx(v)
        out.append(
            f"<line x1='{gx:.1f}' y1='{y - 2:.1f}' x2='{gx:.1f}' y2='{y + bars_h:.1f}' "
            f"stroke='#e2e8f0' stroke-width='1'/>"
        )
        tick = f"{v:,.0f}" if v == int(v) else fmt(v)
        out.append(text(gx, y + bars_h + 12, tick, 10, "middle", MUTED))
    for n, (value, label) in enumerate(targets):
        tx = sx(value)
        ly = top + PANEL_TITLE_H + LABEL_ROW * (n + 1) - 3
        out.append(
            f"<line x1='{tx:.1f}' y1='{ly - 9:.1f}' x2='{tx:.1f}' "
            f"y2='{top + bars_top(panel) + bars_h:.1f}' stroke='{TARGET}' stroke-width='1.5' "
            f"stroke-dasharray='5,3'/>"
        )
        if tx > x0 + bar_area * 0.75:
            out.append(text(tx - 4, ly, label, 10, "end", TARGET))
        else:
            out.append(text(tx + 4, ly, label, 10, "start", TARGET))
    if not bars:
        out.append(text(x0 + 6, y + BAR_H - 4, "no data", 11, color=MUTED))
    for bar in bars:
        label = bar.get("label", "")
        value = bar.get("value")
        out.append(text(x0 - 8, y + BAR_H - 5, label, 12, "end"))
        if value is None:
            out.append(text(x0 + 6, y + BAR_H - 5, bar.get("text", "n/a"), 11, color=MUTED))
        else:
            color = HIGHLIGHT if bar.get("highlight") else OTHER
            width = max(1.0, sx(value) - x0)
            out.append(
                f"<rect x='{x0}' y='{y:.1f}' width='{width:.1f}' height='{BAR_H}' "
                f"fill='{color}' rx='2'/>"
            )
            if value > scale_max:
                # The break mark: the bar goes on far past the axis.
                bx = x0 + bar_area * 0.97
                out.append(
                    f"<path d='M{bx:.1f},{y + BAR_H + 2:.1f} l6,{-BAR_H - 4} m4,0 "
                    f"l-6,{BAR_H + 4}' stroke='white' stroke-width='3'/>"
                )
            lo, hi = bar.get("lo"), bar.get("hi")
            end = sx(value)
            if lo is not None and hi is not None and hi > lo:
                cy = y + BAR_H / 2
                out.append(
                    f"<line x1='{sx(lo):.1f}' y1='{cy:.1f}' x2='{sx(hi):.1f}' y2='{cy:.1f}' "
                    f"stroke='{INK}' stroke-width='1.2'/>"
                )
                for edge in (lo, hi):
                    out.append(
                        f"<line x1='{sx(edge):.1f}' y1='{y + 4:.1f}' x2='{sx(edge):.1f}' "
                        f"y2='{y + BAR_H - 4:.1f}' stroke='{INK}' stroke-width='1.2'/>"
                    )
                end = max(end, sx(hi))
            label_text = bar.get("text", fmt(value))
            out.append(text(end + 6, y + BAR_H - 5, label_text, 11, color=INK))
        y += BAR_H + BAR_GAP
    return out


def render(spec):
    panels = spec.get("panels", [])
    title = spec.get("title", "")
    note = spec.get("note", "")
    height = 34 + (16 if note else 0)
    for panel in panels:
        height += panel_height(panel) + PANEL_GAP
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' "
        f"viewBox='0 0 {WIDTH} {height}'>",
        f"<rect width='{WIDTH}' height='{height}' fill='white'/>",
        text(10, 22, title, 16, weight="bold"),
    ]
    top = 34
    if note:
        parts.append(text(10, 44, note, 11, color=MUTED))
        top += 16
    # The label column fits the longest bar label (about 7 px a character at 12 px).
    longest = max([len(str(b.get("label", ""))) for p in panels for b in p.get("bars", [])] + [8])
    label_w = max(110, min(320, 7 * longest + 18))
    for panel in panels:
        parts.extend(render_panel(panel, top, label_w))
        top += panel_height(panel) + PANEL_GAP
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
