"""Inline SVG time plots, drawn here with no plotting library (docs/report.md).

Every plot of a report shares one time axis (same width, same range), so the
plots line up vertically: an eclipse band or a fault marker sits at the same x
in each. A plot has a left axis, optionally a right one, line or step series,
horizontal limit lines, shaded bands (eclipses), vertical markers (faults,
flight-software events, failed requirements) and an optional strip of named
states under it (the flight mode).

Long series are reduced to the minimum and maximum of each pixel column before
drawing, so a 3-orbit run (17,000 samples a series) draws as about 2,000
points and a spike of one second is never lost.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Sequence

import numpy as np

#: plot geometry, px
WIDTH = 1100
LEFT = 70
RIGHT = 70
TOP = 14
BOTTOM = 26
STRIP_H = 18

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")


@dataclasses.dataclass
class Series:
    label: str
    t_s: np.ndarray
    y: np.ndarray
    color: str = PALETTE[0]
    axis: str = "left"  # or "right"
    step: bool = False  # hold each value until the next sample
    dash: str = ""  # SVG stroke-dasharray
    width: float = 1.4
    bars: np.ndarray | None = None  # bar ends (s): each value drawn as a bar from t_s[i] to bars[i]


@dataclasses.dataclass
class Limit:
    label: str
    y: float
    axis: str = "left"
    color: str = "#b00020"


@dataclasses.dataclass
class Marker:
    t_s: float
    label: str
    kind: str  # "fault", "fsw", "fail"
    id: str | None = None


@dataclasses.dataclass
class Strip:
    """Named states over time: (t_start_s, t_end_s, name) segments."""

    label: str
    segments: list[tuple[float, float, str]]
    colors: dict[str, str]


@dataclasses.dataclass
class Plot:
    id: str
    title: str
    left_label: str
    right_label: str = ""
    series: list[Series] = dataclasses.field(default_factory=list)
    limits: list[Limit] = dataclasses.field(default_factory=list)
    strip: Strip | None = None
    height: int = 200
    left_range: tuple[float, float] | None = None
    right_range: tuple[float, float] | None = None


MARKER_STYLE = {"fault": ("#d00000", "3,2", 1.2), "fsw": ("#6a3d9a", "1,3", 0.9), "fail": ("#ff00aa", "6,3", 1.8)}


def reduce_minmax(t: np.ndarray, y: np.ndarray, t0: float, t1: float, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """At most two points per pixel column (its minimum and maximum, in time order):
    the drawn line looks the same as the full series."""
    n = len(t)
    if n <= columns or t1 <= t0:
        return t, y
    col = np.clip(((t - t0) / (t1 - t0) * columns).astype(np.int64), 0, columns - 1)
    keep = np.zeros(n, dtype=bool)
    starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
    ends = np.r_[starts[1:], n]
    yy = np.where(np.isnan(y), np.inf, y)
    yn = np.where(np.isnan(y), -np.inf, y)
    for s, e in zip(starts, ends, strict=True):
        keep[s + int(np.argmin(yy[s:e]))] = True
        keep[s + int(np.argmax(yn[s:e]))] = True
    keep |= np.isnan(y) & np.r_[True, ~np.isnan(y[:-1])]  # where a gap starts
    return t[keep], y[keep]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def fmt_num(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e4 or a < 1e-3:
        return f"{v:.2g}"
    return f"{v:.6g}" if a >= 1 else f"{v:.3g}"


def _range(series: Sequence[Series], limits: Sequence[Limit], axis: str) -> tuple[float, float]:
    vals = [s.y[np.isfinite(s.y)] for s in series if s.axis == axis and len(s.y)]
    vals += [np.array([lim.y]) for lim in limits if lim.axis == axis and math.isfinite(lim.y)]
    vals = [v for v in vals if len(v)]
    if not vals:
        return 0.0, 1.0
    lo = float(min(v.min() for v in vals))
    hi = float(max(v.max() for v in vals))
    if any(s.bars is not None for s in series if s.axis == axis):
        lo = min(lo, 0.0)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.06
    return lo - pad, hi + pad


class TimeAxis:
    """The shared time axis: simulation seconds to x pixels, and its tick labels."""

    def __init__(self, t0_s: float, t1_s: float) -> None:
        self.t0, self.t1 = t0_s, max(t1_s, t0_s + 1.0)
        self.x0, self.x1 = LEFT, WIDTH - RIGHT
        span = self.t1 - self.t0
        self.unit, self.div = ("h", 3600.0) if span > 4 * 3600 else ("min", 60.0)

    def x(self, t: np.ndarray | float) -> np.ndarray | float:
        return self.x0 + (np.asarray(t, dtype=float) - self.t0) / (self.t1 - self.t0) * (self.x1 - self.x0)

    def ticks(self) -> list[float]:
        return [v * self.div for v in nice_ticks(self.t0 / self.div, self.t1 / self.div, 10)]

    def label(self, t: float) -> str:
        return f"{t / self.div:g}"


def _path(xs: np.ndarray, ys: np.ndarray, step: bool) -> str:
    """An SVG path, broken where y is NaN."""
    parts: list[str] = []
    pen = False
    px = py = 0  # the pen, in tenths of a pixel (relative moves keep the text short)
    for x, y in zip(np.round(xs * 10).tolist(), np.round(ys * 10).tolist(), strict=True):
        if y != y:
            pen = False
            continue
        xi, yi = int(x), int(y)
        if not pen:
            parts.append(f"M{xi / 10:g},{yi / 10:g}")
            pen = True
        elif step:
            if xi != px:
                parts.append(f"h{(xi - px) / 10:g}")
            if yi != py:
                parts.append(f"v{(yi - py) / 10:g}")
        elif xi != px or yi != py:
            parts.append(f"l{(xi - px) / 10:g},{(yi - py) / 10:g}")
        px, py = xi, yi
    return "".join(parts)


def render(plot: Plot, axis: TimeAxis, bands: Sequence[tuple[float, float]], markers: Sequence[Marker]) -> str:
    """One plot as an inline ``<svg>`` element."""
    e = html.escape
    strip_h = STRIP_H + 4 if plot.strip is not None else 0
    h = plot.height
    y_top, y_bot = TOP, h - BOTTOM - strip_h
    lo_l, hi_l = plot.left_range or _range(plot.series, plot.limits, "left")
    has_right = any(s.axis == "right" for s in plot.series) or any(lim.axis == "right" for lim in plot.limits)
    lo_r, hi_r = plot.right_range or _range(plot.series, plot.limits, "right")

    def ymap(v: np.ndarray | float, side: str) -> np.ndarray:
        lo, hi = (lo_l, hi_l) if side == "left" else (lo_r, hi_r)
        return y_bot - (np.asarray(v, dtype=float) - lo) / (hi - lo) * (y_bot - y_top)

    out = [f'<svg class="plot" id="svg-{e(plot.id)}" xmlns="http://www.w3.org/2000/svg" '
           f'viewBox="0 0 {WIDTH} {h}" width="{WIDTH}" height="{h}" role="img" aria-label="{e(plot.title)}">']
    out.append(f'<rect class="frame" x="{axis.x0}" y="{y_top}" width="{axis.x1 - axis.x0}" '
               f'height="{y_bot - y_top}" fill="#fff" stroke="#999"/>')
    for a, b in bands:  # eclipses
        xa, xb = float(axis.x(max(a, axis.t0))), float(axis.x(min(b, axis.t1)))
        if xb > xa:
            out.append(f'<rect class="eclipse" x="{xa:.1f}" y="{y_top}" width="{xb - xa:.1f}" '
                       f'height="{y_bot - y_top}" fill="#d9dcea"><title>eclipse {a:.0f} s to {b:.0f} s</title></rect>')
    # grid and axes
    for tv in axis.ticks():
        x = float(axis.x(tv))
        out.append(f'<line x1="{x:.1f}" y1="{y_top}" x2="{x:.1f}" y2="{y_bot}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{h - 8}" text-anchor="middle" class="tick">{axis.label(tv)}</text>')
    out.append(f'<text x="{axis.x1 + 4}" y="{h - 8}" class="tick">{axis.unit}</text>')
    for v in nice_ticks(lo_l, hi_l, 4):
        y = float(ymap(v, "left"))
        out.append(f'<line x1="{axis.x0}" y1="{y:.1f}" x2="{axis.x1}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{axis.x0 - 5}" y="{y + 4:.1f}" text-anchor="end" class="tick">{fmt_num(v)}</text>')
    if has_right:
        for v in nice_ticks(lo_r, hi_r, 4):
            y = float(ymap(v, "right"))
            out.append(f'<text x="{axis.x1 + 5}" y="{y + 4:.1f}" class="tick">{fmt_num(v)}</text>')
    out.append(f'<text class="axl" transform="translate(14,{(y_top + y_bot) / 2:.0f}) rotate(-90)" '
               f'text-anchor="middle">{e(plot.left_label)}</text>')
    if has_right:
        out.append(f'<text class="axl" transform="translate({WIDTH - 10},{(y_top + y_bot) / 2:.0f}) rotate(-90)" '
                   f'text-anchor="middle">{e(plot.right_label)}</text>')
    # limits
    for lim in plot.limits:
        y = float(ymap(lim.y, lim.axis))
        if y_top <= y <= y_bot:
            out.append(f'<line class="limit" x1="{axis.x0}" y1="{y:.1f}" x2="{axis.x1}" y2="{y:.1f}" '
                       f'stroke="{lim.color}" stroke-width="1.2" stroke-dasharray="8,4"><title>{e(lim.label)}</title></line>')
            # left-axis limits labelled at the right end, right-axis ones at the left end
            lx, anchor = (axis.x1 - 4, "end") if lim.axis == "left" else (axis.x0 + 4, "start")
            out.append(f'<text x="{lx}" y="{y - 3:.1f}" text-anchor="{anchor}" class="lim" '
                       f'fill="{lim.color}">{e(lim.label)}</text>')
    # series
    out.append(f'<g clip-path="url(#clip-{e(plot.id)})">')
    out.append(f'<clipPath id="clip-{e(plot.id)}"><rect x="{axis.x0}" y="{y_top}" '
               f'width="{axis.x1 - axis.x0}" height="{y_bot - y_top}"/></clipPath>')
    for s in plot.series:
        if s.bars is not None:
            y0 = float(ymap(max((lo_l, lo_r)[s.axis == "right"], 0.0), s.axis))
            for a, b, v in zip(s.t_s.tolist(), s.bars.tolist(), s.y.tolist(), strict=True):
                xa, xb, yv = float(axis.x(a)), float(axis.x(b)), float(ymap(v, s.axis))
                out.append(f'<rect class="bar" x="{xa + 2:.1f}" y="{min(yv, y0):.1f}" width="{max(xb - xa - 4, 1):.1f}" '
                           f'height="{abs(y0 - yv):.1f}" fill="{s.color}" fill-opacity="0.08" stroke="{s.color}" stroke-opacity="0.5">'
                           f'<title>{e(s.label)}: {fmt_num(v)}</title></rect>')
                out.append(f'<text x="{(xa + xb) / 2:.1f}" y="{min(yv, y0) - 3:.1f}" text-anchor="middle" '
                           f'class="barl" fill="{s.color}">{fmt_num(v)}</text>')
            continue
        t, y = reduce_minmax(s.t_s, s.y, axis.t0, axis.t1, int(axis.x1 - axis.x0))
        d = _path(np.asarray(axis.x(t)), ymap(y, s.axis), s.step)
        if d:
            dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
            out.append(f'<path class="series" d="{d}" fill="none" stroke="{s.color}" stroke-width="{s.width}"{dash}>'
                       f'<title>{e(s.label)}</title></path>')
    out.append("</g>")
    # markers
    for m in markers:
        if not axis.t0 <= m.t_s <= axis.t1:
            continue
        color, dash, width = MARKER_STYLE[m.kind]
        x = float(axis.x(m.t_s))
        mid = f' id="{e(m.id)}"' if m.id else ""
        out.append(f'<g class="marker {m.kind}"{mid}><line x1="{x:.1f}" y1="{y_top}" x2="{x:.1f}" y2="{y_bot}" '
                   f'stroke="{color}" stroke-width="{width}" stroke-dasharray="{dash}"/>'
                   f'<path d="M{x - 4:.1f},{y_top - 1}L{x + 4:.1f},{y_top - 1}L{x:.1f},{y_top + 6}Z" fill="{color}"/>'
                   f'<title>{e(m.label)}</title></g>')
    # state strip
    if plot.strip is not None:
        ys = y_bot + 3
        for a, b, name in plot.strip.segments:
            xa, xb = float(axis.x(max(a, axis.t0))), float(axis.x(min(b, axis.t1)))
            if xb <= xa:
                continue
            col = plot.strip.colors.get(name, "#ccc")
            out.append(f'<rect class="state" x="{xa:.1f}" y="{ys}" width="{xb - xa:.1f}" height="{STRIP_H}" '
                       f'fill="{col}"><title>{e(plot.strip.label)} {e(name)}: {a:.0f} s to {b:.0f} s</title></rect>')
            if xb - xa > 8 * len(name):
                out.append(f'<text x="{(xa + xb) / 2:.1f}" y="{ys + 13}" text-anchor="middle" class="stl">{e(name)}</text>')
        out.append(f'<text x="{axis.x0 - 5}" y="{ys + 13}" text-anchor="end" class="tick">{e(plot.strip.label)}</text>')
    out.append("</svg>")
    return "".join(out)


def legend(plot: Plot) -> str:
    e = html.escape
    items = []
    for s in plot.series:
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        side = " (right axis)" if s.axis == "right" else ""
        items.append(f'<span class="li"><svg width="26" height="10"><line x1="0" y1="5" x2="26" y2="5" '
                     f'stroke="{s.color}" stroke-width="2.5"{dash}/></svg>{e(s.label)}{side}</span>')
    return "".join(items)
