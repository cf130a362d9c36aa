"""The report page: one HTML file with its styles, its plots (inline SVG) and a
few lines of script (the event table's filter) inside; a Content-Security-Policy
forbids every request outside the file (docs/report.md)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import json
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from hil_rig.constants import NS_PER_S as NS
from hil_rig.report.data import RunData
from hil_rig.report.plots import build_plots, jobs_per_orbit, lateness_histogram
from hil_rig.report.svg import PALETTE, Marker, TimeAxis, legend, render

e = html.escape

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:16px 24px;color:#222;max-width:1160px}
h1{font-size:22px;margin:0 0 6px}h2{font-size:18px;margin:26px 0 8px;border-bottom:1px solid #ccc}
h3{font-size:15px;margin:18px 0 2px}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;
vertical-align:top}th{background:#f3f3f3}
.pass{color:#0a7d20;font-weight:bold}.fail{color:#c00;font-weight:bold}.abort{color:#b35c00;font-weight:bold}
.verdict{font-size:20px;padding:4px 10px;border-radius:4px;display:inline-block;margin:6px 0}
.verdict.pass{background:#e3f6e6}.verdict.fail{background:#fde4e4}.verdict.abort{background:#fff0d9}
.kv td:first-child{color:#555;white-space:nowrap}
.plot{display:block;max-width:100%;height:auto}.tick{font-size:11px;fill:#444}.axl{font-size:12px;fill:#333}
.lim{font-size:11px}.stl{font-size:11px;fill:#222}.barl{font-size:11px}
.legend{font-size:12px;margin:0 0 4px 70px}.li{margin-right:14px;white-space:nowrap}
.li svg{vertical-align:middle;margin-right:3px}
.keys{font-size:12px;color:#444;margin:4px 0 10px}
.keys i{display:inline-block;width:22px;height:10px;vertical-align:middle;margin:0 4px 0 10px}
#events td{font-size:12px}#events tr.error td{background:#fde4e4}#events tr.warning td{background:#fff6dd}
.filters{margin:6px 0}.filters label{margin-right:12px}
.marker.fail:target line,:target{outline:3px solid #ff00aa}
.diff td.d{background:#fff0b3}
.note{color:#555;font-size:12px}
"""

SCRIPT = """
(function(){
var sev=document.getElementById('f-sev'),src=document.getElementById('f-src'),
a=document.getElementById('f-from'),b=document.getElementById('f-to'),q=document.getElementById('f-text'),
n=document.getElementById('f-count');if(!sev)return;var rank={info:0,warning:1,error:2};
function go(){var rows=document.querySelectorAll('#events tbody tr'),shown=0,
lo=parseFloat(a.value),hi=parseFloat(b.value),text=q.value.toLowerCase();
rows.forEach(function(r){var t=parseFloat(r.dataset.t),ok=rank[r.dataset.sev]>=rank[sev.value]&&
(src.value==='all'||r.dataset.src===src.value)&&(isNaN(lo)||t>=lo*60)&&(isNaN(hi)||t<=hi*60)&&
(!text||r.textContent.toLowerCase().indexOf(text)>=0);r.hidden=!ok;if(ok)shown++;});
n.textContent=shown+' of '+rows.length+' events';}
[sev,src,a,b,q].forEach(function(x){x.addEventListener('input',go);});go();})();
"""

#: event severities for the table's filter
ERROR_KINDS = {"run_aborted", "watchdog_expired", "job_failed", "report_failed"}
WARNING_KINDS = {"link_error", "seu_detected", "mode_refused", "health_missed", "overrun", "payload_suspended",
                 "fault_injected", "tc_rejected", "tc_failed"}


def severity(source: str, kind: str, detail: str) -> str:
    if kind in ERROR_KINDS or (kind == "verdict" and ": FAIL" in detail):
        return "error"
    if source == "fault" or kind in WARNING_KINDS or kind.startswith("fdir"):
        return "warning"
    return "info"


def _fmt_dur(s: float | None) -> str:
    if s is None:
        return "?"
    s = float(s)
    return f"{s:,.1f} s ({s / 60:.1f} min)" if s < 7200 else f"{s:,.0f} s ({s / 3600:.2f} h)"


def _verdict(r: RunData) -> tuple[str, str]:
    s = r.summary
    if not s:
        return "abort", "NO SUMMARY (the run was killed before it ended)"
    if s.get("aborted"):
        return "abort", f"ABORTED ({s['aborted']})" + ("" if s.get("passed") else ", requirements not all met")
    return ("pass", "PASSED") if s.get("passed") else ("fail", "FAILED")


def _links(r: RunData, out_dir: pathlib.Path) -> str:
    names = ["telemetry.sqlite", "summary.json", "junit.xml", "ctrf.json", "events.log", "lateness.json"]
    items = []
    for n in names:
        f = r.path / n
        if f.exists():
            rel = os.path.relpath(f, out_dir)
            items.append(f'<a href="{e(rel)}">{e(n)}</a> ({f.stat().st_size / 1024:,.0f} kB)')
    return " · ".join(items)


def _header(r: RunData, out_dir: pathlib.Path) -> str:
    m, s = r.meta, r.summary
    cls, text = _verdict(r)
    clock = s.get("clock") or m.get("clock", "?")
    speed = s.get("speedup")
    rows = [
        ("scenario", f"{m.get('scenario', '?')} ({m.get('scenario_file', '')}, sha256 {m.get('scenario_sha256', '')[:12]})"),
        ("seed", m.get("seed", "?")),
        ("bench and boards", f"{s.get('bench') or m.get('bench', '?')}; boards {m.get('boards', '?')}"),
        ("clock and speed", f"{clock}" + (f"; {speed}x real time achieved" if speed else "")),
        ("simulated time", f"{_fmt_dur(r.end_s)} of {_fmt_dur(int(m.get('duration_ns', 0)) / NS)}; "
                           f"epoch {m.get('epoch', '?')}; orbit period {float(m.get('orbit_period_s', 'nan')):.0f} s"),
        ("wall time", _fmt_dur(s.get("wall_seconds")) if s else "?"),
        ("eclipses", f"{len(r.eclipses)} in the archived time"),
        ("run directory", f"{e(str(r.path))}"),
        ("files", _links(r, out_dir)),
    ]
    y = s.get("yield") or {}
    if y.get("ratio") is not None:  # docs/yield.md
        # each orbit's share of the whole run's bound (they add up to the ratio; docs/yield.md)
        per_orbit = " + ".join("n/a" if o.get("share") is None else f"{o['share']:.3f}"
                               for o in y.get("by_orbit", []))
        rows.append(("compute yield", f"{y['ratio']:.3f}: {y['delivered'] / 1e9:,.2f} of {y['bound'] / 1e9:,.2f} "
                                      f"GFLOP the bound allows; per orbit, shares of it: {per_orbit}"))
    elif y.get("error"):
        rows.append(("compute yield", f"no bound: {y['error']}"))
    if s.get("error"):
        rows.insert(0, ("error", e(str(s["error"]))))
    body = "".join(f"<tr><td>{e(k)}</td><td>{v if k in ('files', 'run directory', 'error') else e(str(v))}</td></tr>"
                   for k, v in rows)
    return f'<div class="verdict {cls}">{e(text)}</div><table class="kv">{body}</table>'


def _requirements(r: RunData, fail_ids: dict[str, str]) -> str:
    rows = []
    for v in r.verdicts():
        ok = v.get("passed")
        status = '<span class="pass">PASS</span>' if ok else '<span class="fail">FAIL</span>'
        name = e(v["name"])
        if not ok and v["name"] in fail_ids:
            name = f'<a href="#{fail_ids[v["name"]]}">{name}</a> <span class="note">(see the plots)</span>'
        measured = ", ".join(f"{e(str(k))} = {e(json.dumps(x))}" for k, x in (v.get("measured") or {}).items())
        rows.append(f"<tr><td>{status}</td><td>{name}</td><td>{e(v.get('kind', ''))}</td>"
                    f"<td>{e(v.get('detail', ''))}</td><td>{measured}</td></tr>")
    if not rows:
        return "<p>No verdicts (the run ended before it was judged).</p>"
    return ("<table><tr><th></th><th>requirement</th><th>kind</th><th>detail</th><th>measured</th></tr>"
            + "".join(rows) + "</table>")


def _events(r: RunData) -> str:
    ev = r.events()
    rows = []
    sources = sorted(set(ev["source"].tolist()))
    for t, src, kind, detail in zip(ev["t_ns"].tolist(), ev["source"].tolist(), ev["kind"].tolist(),
                                    ev["detail"].tolist(), strict=True):
        sev = severity(src, kind, detail)
        rows.append(f'<tr class="{sev}" data-t="{t / NS:.3f}" data-sev="{sev}" data-src="{e(src)}">'
                    f"<td>{t / NS:,.3f}</td><td>{sev}</td><td>{e(src)}</td><td>{e(kind)}</td><td>{e(detail)}</td></tr>")
    opts = "".join(f'<option value="{e(s)}">{e(s)}</option>' for s in sources)
    return (f'<div class="filters"><label>severity at least <select id="f-sev"><option value="info">info</option>'
            f'<option value="warning">warning</option><option value="error">error</option></select></label>'
            f'<label>source <select id="f-src"><option value="all">all</option>{opts}</select></label>'
            f'<label>from <input id="f-from" size="5" placeholder="min"> to <input id="f-to" size="5" '
            f'placeholder="min"> min</label><label>text <input id="f-text" size="14"></label>'
            f'<span id="f-count" class="note"></span></div>'
            f'<table id="events"><thead><tr><th>t (s)</th><th>severity</th><th>source</th><th>kind</th>'
            f"<th>detail</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _lateness(r: RunData) -> str:
    if r.lateness is None:
        return ('<p class="note">Virtual time: no frame is late by construction (the run was not paced). '
                "A real-time run (<code>--speed</code>) shows its frame lateness here.</p>")
    hist, worst = lateness_histogram(r.lateness)
    total = sum(n for *_, n in hist) or 1
    peak = max((n for *_, n in hist), default=1) or 1
    bars = []
    for i, (a, b, n) in enumerate(hist):
        w = 60
        h = 150 * n / peak
        x = 60 + i * (w + 6)
        label = f"≥{a:g}" if b == float("inf") else f"{a:g}–{b:g}"
        bars.append(f'<rect x="{x}" y="{170 - h:.1f}" width="{w}" height="{h:.1f}" fill="{PALETTE[0]}">'
                    f"<title>{label} ms: {n} frames</title></rect>"
                    f'<text x="{x + w / 2}" y="{165 - h:.1f}" text-anchor="middle" class="tick">{n}</text>'
                    f'<text x="{x + w / 2}" y="186" text-anchor="middle" class="tick">{label}</text>')
    width = 80 + len(hist) * 66
    svg = (f'<svg class="plot" id="svg-lateness" xmlns="http://www.w3.org/2000/svg" width="{width}" height="205" '
           f'viewBox="0 0 {width} 205"><line x1="55" y1="170" x2="{width - 10}" y2="170" stroke="#999"/>'
           f'{"".join(bars)}<text x="{width / 2}" y="202" text-anchor="middle" class="axl">frame lateness (ms)'
           f"</text></svg>")
    rows = "".join(f"<tr><td>{t:,.0f}</td><td>{ms:.3f}</td></tr>" for t, ms in worst)
    s = r.lateness
    pace = ""
    if "speed_kept" in s:  # runs since the pace is reported (docs/running.md, "Real time: pacing")
        kept = ("kept" if s["speed_kept"] else
                f'<b class="fail">not kept</b> ({s.get("speed_not_kept_frames")} frames in '
                f'{s.get("speed_not_kept_episodes")} episode(s))')
        pace = (f"<p>Real time × {s.get('requested_speed', 0):g}: {kept}; achieved × {s.get('achieved_speed')}; "
                f"{s.get('overruns', '?')} overruns; drift {s.get('pacing_drift_s', 0):g} s.</p>")
    return (f"<p>{total} frames; {s.get('late_frames', '?')} late; p50 {s.get('p50_ms', 0):.3f} ms, "
            f"p99 {s.get('p99_ms', 0):.3f} ms, max {s.get('max_ms', 0):.3f} ms.</p>{pace}{svg}"
            f"<h3>Worst frames</h3><table><tr><th>t (s)</th><th>late (ms)</th></tr>{rows}</table>")


def _key_figures(r: RunData) -> dict[str, str]:
    soc = r.col("soc_true")
    fig: dict[str, str] = {
        "simulated (s)": f"{r.end_s:,.0f}",
        "wall (s)": f"{r.summary.get('wall_seconds', float('nan')):,.1f}" if r.summary else "?",
        "lowest SOC": f"{np.nanmin(soc):.3f}" if len(soc) and not np.all(np.isnan(soc)) else "?",
        "jobs completed": f"{np.nanmax(r.col('fsw_jobs_completed')):.0f}" if len(r.t_s) else "?",
        "jobs per orbit": ", ".join(f"{x:.0f}" for x in jobs_per_orbit(r)[2]),
        "hottest payload node (°C)": f"{np.nanmax(r.col('temp_payload_k_true')) - 273.15:.1f}" if len(r.t_s) else "?",
    }
    for b in r.boards:
        rows = r.board_rows(b)
        if len(rows):
            fig[f"{b}: hottest (°C)"] = f"{np.nanmax(rows['temp_k'].astype(float)) - 273.15:.1f}"
            lr = r.link_rows(b)
            fig[f"{b}: link errors / retries"] = f"{lr['errors'][-1]} / {lr['retries'][-1]}" if len(lr) else "0 / 0"
    segs = r.segments("fsw_mode")
    tot: dict[str, float] = {}
    for a, b, name in segs:
        tot[name] = tot.get(name, 0.0) + (b - a)
    span = max(r.end_s, 1.0)
    fig["time per mode"] = ", ".join(f"{k} {100 * v / span:.0f}%" for k, v in tot.items())
    fig["faults injected"] = str(sum(1 for _, k in r.faults() if "_start" in k.split(":")[0]))
    return fig


def _comparison(runs: Sequence[RunData]) -> str:
    heads = "".join(f"<th>run {i + 1}<br>{e(r.label)}</th>" for i, r in enumerate(runs))
    # verdicts
    names = list(dict.fromkeys(v["name"] for r in runs for v in r.verdicts()))
    rows = []
    for n in names:
        cells = []
        for r in runs:
            v = next((x for x in r.verdicts() if x["name"] == n), None)
            cells.append("—" if v is None else
                         f'<span class="{"pass" if v["passed"] else "fail"}">{"PASS" if v["passed"] else "FAIL"}</span> '
                         f'{e(v["detail"])}')
        statuses = {c.split("</span>")[0] for c in cells}
        cls = ' class="d"' if len(statuses) > 1 else ""
        rows.append(f"<tr><td>{e(n)}</td>" + "".join(f"<td{cls}>{c}</td>" for c in cells) + "</tr>")
    verdicts = f'<table class="diff"><tr><th>requirement</th>{heads}</tr>{"".join(rows)}</table>'
    figs = [_key_figures(r) for r in runs]
    keys = list(dict.fromkeys(k for f in figs for k in f))
    rows = []
    for k in keys:
        vals = [f.get(k, "—") for f in figs]
        cls = ' class="d"' if len(set(vals)) > 1 else ""
        rows.append(f"<tr><td>{e(k)}</td>" + "".join(f"<td{cls}>{e(v)}</td>" for v in vals) + "</tr>")
    figures = f'<table class="diff"><tr><th>figure</th>{heads}</tr>{"".join(rows)}</table>'
    return (f"<h3>Verdicts</h3><p class=\"note\">Cells that differ between the runs are highlighted.</p>{verdicts}"
            f"<h3>Key figures</h3>{figures}")


def render_page(runs: Sequence[RunData], out: pathlib.Path) -> str:
    first = runs[0]
    multi = len(runs) > 1
    out_dir = out.parent.resolve()
    t1 = max(r.end_s for r in runs)
    axis = TimeAxis(0.0, t1)
    plots = build_plots(runs)
    # markers: faults and flight-software events of every run; failed requirements of the first
    markers: list[Marker] = []
    for i, r in enumerate(runs):
        pre = f"run {i + 1}: " if multi else ""
        markers += [Marker(t, pre + text, "fault") for t, text in r.faults()]
        markers += [Marker(t, pre + text, "fsw") for t, text in r.fsw_marks()]
    fail_ids: dict[str, str] = {}
    fails: list[Marker] = []
    for v in first.verdicts():
        if not v.get("passed"):
            t = first.failure_time(v)
            if t is not None:
                fid = f"fail-{len(fail_ids)}"
                fail_ids[v["name"]] = fid
                fails.append(Marker(min(t, t1), f"{v['name']} failed: {v.get('detail', '')}", "fail"))
    sections = []
    for k, plot in enumerate(plots):
        ms = list(markers)
        for j, f in enumerate(fails):
            ms.append(Marker(f.t_s, f.label, "fail", id=f"fail-{j}" if k == 0 else None))
        sections.append(f'<h3 id="plot-{plot.id}">{e(plot.title)}</h3><div class="legend">{legend(plot)}</div>'
                        + render(plot, axis, first.eclipses, ms))
    cls, text = _verdict(first)
    title = (f"orbit-hil report: {first.meta.get('scenario', '?')} seed {first.meta.get('seed', '?')} — {text}"
             if not multi else f"orbit-hil comparison of {len(runs)} runs")
    header = "".join(f"<h2>{'Run ' + str(i + 1) + ': ' if multi else 'Run: '}{e(r.label)}</h2>{_header(r, out_dir)}"
                     for i, r in enumerate(runs))
    reqs = "".join((f"<h3>Run {i + 1}: {e(r.label)}</h3>" if multi else "")
                   + _requirements(r, fail_ids if i == 0 else {}) for i, r in enumerate(runs))
    keys = ('<div class="keys">Shading <i style="background:#d9dcea"></i>eclipse (umbra, rig truth'
            + (", run 1" if multi else "") + ')<i style="border-top:2px dashed #d00000;height:0"></i>fault'
            '<i style="border-top:2px dotted #6a3d9a;height:0"></i>flight-software event'
            '<i style="border-top:2px dashed #ff00aa;height:0"></i>failed requirement'
            '<i style="border-top:2px dashed #b00020;height:0"></i>limit. Hover a line or marker for its name; '
            f"time axis in {axis.unit} since the epoch.</div>")
    compare = f"<h2>Comparison</h2>{_comparison(runs)}" if multi else ""
    events = "".join((f"<h3>Run {i + 1}: {e(r.label)}</h3>" if multi else "") + _events(r)
                     for i, r in enumerate(runs[:1]))
    body = (f"{header}{compare}<h2>Requirements</h2>{reqs}"
            f"<h2>Plots</h2>{keys}{''.join(sections)}"
            f"<h2>Frame timing</h2>{_lateness(first)}"
            f"<h2>Compute yield</h2><p class=\"note\" id=\"yield\">Achieved compute against the energy- and "
            f"thermal-limited bound of this orbit: not computed yet (the bound is not built; this section will "
            f"hold it).</p>"
            f"<h2>Events</h2>{'<p class=note>Run 1 only.</p>' if multi else ''}{events}")
    return html_page(title, body, SCRIPT, "hil report")


def html_page(title: str, body: str, script: str = "", made_by: str = "hil report") -> str:
    """One self-contained page: the report's styles, ``body``, and ``script`` allowed by
    its hash; a Content-Security-Policy forbids every request outside the file. Every
    HTML page of the project (run reports, campaign reports) is made here."""
    script_hash = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
           f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'")
    made = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    from hil_rig import __version__

    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{e(title)}</h1><p class=\"note\">Written {made} by orbit-hil {e(__version__)} "
        f"(<code>{e(made_by)}</code>). Everything is in this file; it makes no request outside it.</p>"
        f"{body}" + (f"<script>{script}</script>" if script else "") + "</body></html>"
    )


def to_file(runs: Sequence[RunData], out: pathlib.Path) -> int:
    text = render_page(runs, out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return len(text.encode())

