"""Charts as inline SVG: no JavaScript, no fonts, nothing to download, a few kB each.

Plotly would add 4.8 MB of JavaScript to every report for hover boxes a manager does not need;
these charts print, scale and open anywhere. Hovering a point shows its SVG ``<title>``.
Every piece of text goes through :func:`markupsafe.escape`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

from markupsafe import Markup, escape

from reports.format import fmt_money, fmt_ms, fmt_quality
from reports.view import HistoryPoint, MethodRow, QualityCostPoint, TrialRow

LEFT, RIGHT, TOP, BOTTOM = 64, 24, 16, 52
CHAR_W = 6.6  # average glyph width at 11px, for placing labels
MIN_QUALITY_SPAN = 0.2


@dataclass
class Scale:
    lo: float
    hi: float
    a: float  # pixel at lo
    b: float  # pixel at hi
    log: bool = False
    integer: bool = False  # ticks on whole numbers only (trial numbers)

    def __call__(self, v: float) -> float:
        if self.log:
            v, lo, hi = math.log10(max(v, 1e-12)), math.log10(self.lo), math.log10(self.hi)
        else:
            lo, hi = self.lo, self.hi
        return self.a + (v - lo) / ((hi - lo) or 1.0) * (self.b - self.a)

    def ticks(self) -> list[float]:
        if self.log:
            out = []
            for e in range(math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi)) + 1):
                for m in (1, 2, 5):
                    v = m * 10.0 ** e
                    if self.lo <= v <= self.hi:
                        out.append(v)
            return out
        step = _nice_step((self.hi - self.lo) / 5)
        if self.integer:
            step = max(1.0, math.ceil(step))
        start = math.ceil(self.lo / step - 1e-9) * step
        out, v = [], start
        while v <= self.hi + step * 1e-9:
            out.append(round(v, 12))
            v += step
        return out


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _domain(values: Sequence[float], *, pad: float = 0.08, floor: float | None = None,
            ceil: float | None = None) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    span = (hi - lo) or max(abs(hi) * 0.2, 0.05)
    lo, hi = lo - span * pad, hi + span * pad
    if floor is not None:
        lo = max(lo, floor)
    if ceil is not None:
        hi = min(hi, ceil)
    return lo, hi


def _x_scale(values: Sequence[float], W: int) -> Scale:
    positive = [v for v in values if v > 0]
    if positive and len(positive) == len(values) and max(positive) / min(positive) > 20:
        return Scale(min(positive) / 1.6, max(positive) * 1.6, LEFT, W - RIGHT, log=True)
    lo, hi = _domain(values, pad=0.12, floor=0.0 if min(values) >= 0 else None)
    return Scale(lo, hi, LEFT, W - RIGHT)


def _y_quality(values: Sequence[float], H: int, top: int = TOP) -> Scale:
    lo, hi = _domain(values, pad=0.12, floor=0.0, ceil=1.0)
    if hi - lo < MIN_QUALITY_SPAN:  # a flat result (all 0%, all 100%) still gets a readable axis
        mid = min(max((lo + hi) / 2, MIN_QUALITY_SPAN / 2), 1 - MIN_QUALITY_SPAN / 2)
        lo, hi = mid - MIN_QUALITY_SPAN / 2, mid + MIN_QUALITY_SPAN / 2
    return Scale(lo, hi, H - BOTTOM, top)


def _frame(x: Scale, y: Scale, x_label: str, y_label: str, x_fmt, y_fmt, body: list[str], title: str,
           W: int, H: int) -> Markup:
    top = y.b  # the plot's upper edge
    parts = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for t in y.ticks():
        py = y(t)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{py:.1f}" y2="{py:.1f}"/>'
                     f'<text class="tick" x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">{escape(y_fmt(t))}</text>')
    for t in x.ticks():
        px = x(t)
        parts.append(f'<line class="grid" x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{H - BOTTOM}"/>'
                     f'<text class="tick" x="{px:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">'
                     f'{escape(x_fmt(t))}</text>')
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{W - RIGHT}" y1="{H - BOTTOM}" y2="{H - BOTTOM}"/>'
                 f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{top}" y2="{H - BOTTOM}"/>')
    parts.append(f'<text class="label" x="{(LEFT + W - RIGHT) / 2}" y="{H - 10}" text-anchor="middle">'
                 f'{escape(x_label)}</text>')
    parts.append(f'<text class="label" transform="translate(14 {(top + H - BOTTOM) / 2}) rotate(-90)" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    parts += body
    parts.append("</svg>")
    return Markup("".join(parts))


def _place_labels(items: list[tuple[float, float, str, str]], W: int, H: int) -> list[str]:
    """Text labels beside their points, moved up or down or to the left so that they overlap
    neither each other nor another point, and stay inside the plot."""
    points = [(px - 7, py - 7, px + 7, py + 7) for px, py, _, _ in items]
    placed: list[tuple[float, float, float, float]] = []
    out = []

    def free(box, own):
        if box[1] < 2 or box[3] > H - BOTTOM - 2 or box[0] < LEFT + 2 or box[2] > W - 2:
            return False
        hits = placed + [p for k, p in enumerate(points) if k != own]
        return not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in hits)

    for k, (px, py, text, cls) in sorted(enumerate(items), key=lambda it: it[1][1]):
        width = len(text) * CHAR_W
        tries = [(dx, dy) for dy in (0, -14, 14, -28, 28, -42, 42) for dx in (9, -9 - width)]
        box = None
        for dx, dy in tries:
            x0, y0 = px + dx, py + 4 + dy
            candidate = (x0, y0 - 11, x0 + width, y0 + 2)
            if free(candidate, k):
                box = candidate
                break
        if box is None:  # crowded: right of the point, as it comes
            box = (px + 9, py - 7, px + 9 + width, py + 6)
        placed.append(box)
        out.append(f'<text class="{cls}" x="{box[0]:.1f}" y="{box[3] - 2:.1f}">{escape(text)}</text>')
    return out


def _money_tick(v: float) -> str:
    if v >= 1000:
        return f"${v / 1000:g}k"
    return f"${v:,.0f}" if v >= 10 else fmt_money(v)


def _pct_tick(v: float) -> str:
    return f"{v * 100:.1f}".rstrip("0").rstrip(".") + "%"


# ---------------------------------------------------------------- candidates

def _finite(*values) -> bool:
    """Only finite numbers can be drawn; a NaN or infinite value (a candidate that answered nothing)
    stays in the tables and is left out of the chart."""
    return all(v is not None and math.isfinite(v) for v in values)


def quality_cost_chart(points: Sequence[QualityCostPoint], *, x_label: str, ci: str, W: int = 860,
                       H: int = 400) -> Markup:
    """Quality (with its interval, labelled ``ci``) against total cost, one point per candidate."""
    points = [p if _finite(p.ci_low, p.ci_high) else replace(p, ci_low=p.quality, ci_high=p.quality)
              for p in points if _finite(p.cost_usd, p.quality)]
    if not points:
        return Markup("")
    x = _x_scale([p.cost_usd for p in points], W)
    y = _y_quality([v for p in points for v in (p.ci_low, p.ci_high)], H)
    body, labels = [], []
    for p in points:
        px, py = x(p.cost_usd), y(p.quality)
        cls = "win" if p.winner else "cand"
        tip = f"{p.name}: {fmt_quality(p.quality)} ({ci} {fmt_quality(p.ci_low)}–{fmt_quality(p.ci_high)}), " \
              f"{fmt_money(p.cost_usd)}"
        body.append(f'<g class="{cls}"><title>{escape(tip)}</title>'
                    f'<line class="ci" x1="{px:.1f}" x2="{px:.1f}" y1="{y(p.ci_low):.1f}" y2="{y(p.ci_high):.1f}"/>'
                    f'<line class="ci" x1="{px - 5:.1f}" x2="{px + 5:.1f}" y1="{y(p.ci_low):.1f}" y2="{y(p.ci_low):.1f}"/>'
                    f'<line class="ci" x1="{px - 5:.1f}" x2="{px + 5:.1f}" y1="{y(p.ci_high):.1f}" y2="{y(p.ci_high):.1f}"/>'
                    f'<circle class="pt" cx="{px:.1f}" cy="{py:.1f}" r="{7 if p.winner else 5.5}"/></g>')
        labels.append((px, py, f"{p.name}{'  ★ recommended' if p.winner else ''}",
                       "ptlabel win-label" if p.winner else "ptlabel"))
    body += _place_labels(labels, W, H)
    return _frame(x, y, x_label + (" (log scale)" if x.log else ""), f"Quality ({ci})", _money_tick, _pct_tick,
                  body, "Quality against cost for each candidate", W, H)


# ---------------------------------------------------------------- the study

def pareto_chart(trials: Sequence[TrialRow], *, by: str = "cost", W: int = 520, H: int = 330) -> Markup:
    """Finished trials by quality against training cost (``by="cost"``) or latency; the front joined."""
    get = (lambda t: t.train_cost_usd) if by == "cost" else (lambda t: t.latency_p95_ms)
    done = [t for t in trials if t.state == "complete" and _finite(t.quality, get(t))]
    if not done:
        return Markup("")
    x = _x_scale([get(t) for t in done], W)
    y = _y_quality([t.quality for t in done], H)
    x_fmt = _money_tick if by == "cost" else (lambda v: fmt_ms(v))
    body = []
    front = sorted((t for t in done if t.pareto), key=lambda t: (get(t), -t.quality))
    # The front is over three objectives; join it only where this 2-D view shows a real trade-off.
    if len(front) > 1 and all(a.quality <= b.quality for a, b in zip(front, front[1:])):
        pts = " ".join(f"{x(get(t)):.1f},{y(t.quality):.1f}" for t in front)
        body.append(f'<polyline class="front" points="{pts}"/>')
    labels = []
    for t in done:
        px, py = x(get(t)), y(t.quality)
        cls = "best" if t.best else "pareto" if t.pareto else "dominated"
        tip = (f"trial {t.number} ({t.method}{', ' + t.params if t.params else ''}): {fmt_quality(t.quality)}, "
               f"{fmt_money(t.train_cost_usd)} to train, p95 {fmt_ms(t.latency_p95_ms)}")
        shape = (_star(px, py, 9) if t.best else f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{5.5 if t.pareto else 4.5}"/>')
        body.append(f'<g class="{cls}"><title>{escape(tip)}</title>{shape}</g>')
        if t.pareto or t.best:
            labels.append((px, py, f"#{t.number} {t.method}", "ptlabel"))
    body += _place_labels(labels, W, H)
    x_label = "Training cost of the trial" if by == "cost" else "Latency per query, p95"
    return _frame(x, y, x_label + (" (log scale)" if x.log else ""), "Validation quality", x_fmt, _pct_tick,
                  body, f"Pareto front: quality against {'training cost' if by == 'cost' else 'latency'}", W, H)


def _star(cx: float, cy: float, r: float) -> str:
    pts = []
    for k in range(10):
        rad = r if k % 2 == 0 else r * 0.45
        a = math.pi / 2 + k * math.pi / 5
        pts.append(f"{cx + rad * math.cos(a):.1f},{cy - rad * math.sin(a):.1f}")
    return f'<polygon points="{" ".join(pts)}"/>'


def history_chart(history: Sequence[HistoryPoint], W: int = 520, H: int = 330) -> Markup:
    """Validation quality per trial in order, the best so far as a step line; pruned and failed marked."""
    history = [h if _finite(h.quality) else replace(h, quality=None) for h in history]
    history = [h if _finite(h.best_so_far) else replace(h, best_so_far=None) for h in history]
    if not history:
        return Markup("")
    values = [h.quality for h in history if h.quality is not None] or [0.0, 1.0]
    top = TOP + 24  # room for the legend above the plot
    y = _y_quality(values + [0.0] if any(h.state == "failed" for h in history) else values, H, top)
    numbers = [h.number for h in history]
    lo, hi = min(numbers), max(numbers)
    x = Scale(lo - 0.6, hi + 0.6, LEFT, W - RIGHT, integer=True)
    body: list[str] = []
    steps, last = [], None
    for h in history:
        if h.best_so_far is None:
            continue
        if last is not None:
            steps.append(f"{x(h.number):.1f},{y(last):.1f}")
        steps.append(f"{x(h.number):.1f},{y(h.best_so_far):.1f}")
        last = h.best_so_far
    if steps:
        steps.append(f"{x(hi + 0.5):.1f},{y(last):.1f}")
        body.append(f'<polyline class="bestline" points="{" ".join(steps)}"/>')
    for h in history:
        px = x(h.number)
        tip = f"trial {h.number}: {h.state}" + (f", {fmt_quality(h.quality)}" if h.quality is not None else "")
        if h.state == "failed" or h.quality is None:
            py = y(y.lo) - 8
            mark = (f'<path d="M{px - 5:.1f},{py - 5:.1f}L{px + 5:.1f},{py + 5:.1f}M{px - 5:.1f},{py + 5:.1f}'
                    f'L{px + 5:.1f},{py - 5:.1f}"/>')
            cls = "failed" if h.state == "failed" else "running"
        elif h.state == "pruned":
            py = y(h.quality)
            mark = f'<path d="M{px:.1f},{py - 6:.1f}L{px + 6:.1f},{py + 5:.1f}L{px - 6:.1f},{py + 5:.1f}Z"/>'
            cls = "pruned"
        else:
            mark = f'<circle cx="{px:.1f}" cy="{y(h.quality):.1f}" r="5"/>'
            cls = "complete"
        body.append(f'<g class="{cls}"><title>{escape(tip)}</title>{mark}</g>')
    legend = [("complete", "finished"), ("pruned", "stopped early"), ("failed", "failed"), ("bestline", "best so far")]
    for i, (cls, text) in enumerate(legend):
        lxi = LEFT + i * 108
        sym = (f'<line x1="{lxi}" x2="{lxi + 14}" y1="8" y2="8"/>' if cls == "bestline"
               else f'<rect x="{lxi + 2}" y="3" width="10" height="10"/>')
        body.append(f'<g class="legend {cls}">{sym}<text class="tick" x="{lxi + 18}" y="12">{text}</text></g>')
    return _frame(x, y, "Trial number", "Validation quality", lambda v: f"{v:g}",
                  _pct_tick, body, "Optimisation history", W, H)


def bar_chart(items: Sequence[tuple[str, float]], *, title: str, value_fmt=lambda v: f"{v * 100:.0f}%",
              W: int = 520) -> Markup:
    """Horizontal bars, largest first (hyperparameter importance)."""
    items = [(k, v) for k, v in items if _finite(v)]
    if not items:
        return Markup("")
    row, label_w = 30, max(CHAR_W * max(len(k) for k, _ in items) + 16, 90)
    height = TOP + row * len(items) + 10
    top = max(v for _, v in items) or 1.0
    span = W - RIGHT - label_w - 60
    parts = [f'<svg class="chart bars" viewBox="0 0 {W} {height}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for i, (name, value) in enumerate(items):
        yy = TOP + i * row
        w = max(span * value / top, 1)
        parts.append(f'<g class="bar"><title>{escape(f"{name}: {value_fmt(value)}")}</title>'
                     f'<text class="ptlabel" x="{label_w - 10}" y="{yy + 15}" text-anchor="end">{escape(name)}</text>'
                     f'<rect x="{label_w}" y="{yy + 3}" width="{w:.1f}" height="18" rx="2"/>'
                     f'<text class="tick" x="{label_w + w + 6:.1f}" y="{yy + 16}">{escape(value_fmt(value))}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))


def methods_chart(methods: Sequence[MethodRow], W: int = 720) -> Markup:
    """Per method: trials finished, stopped early and failed, stacked; excluded methods named."""
    if not methods:
        return Markup("")
    row = 28
    label_w = max(CHAR_W * max(len(m.method) for m in methods) + 16, 90)
    height = TOP + row * len(methods) + 34
    most = max((m.trials for m in methods), default=1) or 1
    unit = (W - RIGHT - label_w - 150) / most
    parts = [f'<svg class="chart bars methods" viewBox="0 0 {W} {height}" role="img" '
             f'aria-label="Methods tried, stopped early, failed or excluded" xmlns="http://www.w3.org/2000/svg">'
             f'<title>Methods tried, stopped early, failed or excluded</title>']
    for i, m in enumerate(methods):
        yy = TOP + i * row
        parts.append(f'<text class="ptlabel" x="{label_w - 10}" y="{yy + 15}" text-anchor="end">{escape(m.method)}</text>')
        if m.excluded:
            parts.append(f'<g class="excluded"><title>{escape(f"{m.method} excluded: {m.reason}")}</title>'
                         f'<text class="tick" x="{label_w}" y="{yy + 15}">excluded: {escape(_short(m.reason, 70))}'
                         f'</text></g>')
            continue
        x0 = label_w
        for cls, n, word in (("complete", m.complete, "finished"), ("pruned", m.pruned, "stopped early"),
                             ("failed", m.failed, "failed")):
            if n:
                parts.append(f'<g class="{cls}"><title>{escape(f"{m.method}: {n} {word}")}</title>'
                             f'<rect x="{x0:.1f}" y="{yy + 3}" width="{unit * n - 2:.1f}" height="18" rx="2"/></g>')
                x0 += unit * n
        best = f"best {fmt_quality(m.best_quality)}" if m.best_quality is not None else ""
        parts.append(f'<text class="tick" x="{x0 + 6:.1f}" y="{yy + 16}">{escape(best)}</text>')
    ly = TOP + row * len(methods) + 14
    for i, (cls, text) in enumerate((("complete", "finished"), ("pruned", "stopped early"), ("failed", "failed"))):
        lx = label_w + i * 130
        parts.append(f'<g class="legend {cls}"><rect x="{lx}" y="{ly}" width="10" height="10"/>'
                     f'<text class="tick" x="{lx + 16}" y="{ly + 9}">{text}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def curve_chart(points: Sequence[tuple[int, float]], W: int = 520, H: int = 260) -> Markup:
    """A pilot's validation quality by training step: the learning curve."""
    points = [(s, v) for s, v in points if _finite(v)]
    if not points:
        return Markup("")
    steps = [s for s, _ in points]
    x = Scale(0, max(steps) * 1.05, LEFT, W - RIGHT, integer=True)
    y = _y_quality([v for _, v in points], H)
    line = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in points)
    body = [f'<polyline class="bestline" points="{line}"/>']
    body += [f'<g class="complete"><title>step {s}: {fmt_quality(v)}</title>'
             f'<circle cx="{x(s):.1f}" cy="{y(v):.1f}" r="5"/></g>' for s, v in points]
    return _frame(x, y, "Training step", "Validation quality", lambda t: f"{t:g}", _pct_tick, body,
                  "Learning curve", W, H)
