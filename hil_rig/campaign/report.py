"""The campaign report: ``OUT/report.html``, one self-contained page made with the run
report's page machinery (``hil_rig.report.page.html_page``: its styles, its
Content-Security-Policy) from what the campaign directory holds (docs/campaigns.md):

- ``schedules.json`` (the plan, and the fault space it was drawn from),
- ``results.jsonl`` (one line per run), ``summary.json`` when the campaign ended,
- each run's directory (its archive: eclipse events, fault start times, illumination).

It shows the pass / fail / timeout / error counts; a matrix of fault kind against the
orbit phase each fault started in; the coverage of the fault space; each failure group
and each minimal failing scenario with its verdicts, its TOML and a link to its run
report; timeouts and errors.

**Orbit phase** of a fault: its start time (the run's own ``fault_scheduled`` event)
against the run's own archive. ``sunlit``, ``penumbra`` and ``umbra`` come from the
illumination fraction the rig recorded at that time (1, between, 0) and split the faults
between them; ``eclipse entry`` and ``eclipse exit`` are within ``EDGE_WINDOW_S`` of an
umbra entry or exit (the rig's ``eclipse_predicted_truth`` event) and overlap the three
others: a fault 30 s before an umbra entry counts as sunlit and as eclipse entry.
A run that left no archive (a timeout killed early, an error) has no phase: ``unknown``.
"""

from __future__ import annotations

import html
import json
import os
import pathlib
import re
from collections import Counter, defaultdict
from typing import Any

import numpy as np

REPORT_NAME = "report.html"
#: a fault within this many seconds of an umbra entry (exit) counts as "eclipse entry" ("exit")
EDGE_WINDOW_S = 60.0
LIGHT = ("sunlit", "penumbra", "umbra")
EDGES = ("eclipse entry", "eclipse exit")
PHASES = (*LIGHT, *EDGES, "unknown")

_SCHEDULED = re.compile(r"t = ([-0-9.]+) s: fault\[(\d+)\] ")
_ECLIPSE = re.compile(r"umbra entry (?:([-0-9.]+) s|[a-z ]+), exit (?:([-0-9.]+) s|[a-z ]+)")

e = html.escape


class CampaignReportError(ValueError):
    """A directory that holds no campaign (names the directory and what is missing)."""


def fault_phases(run_dir: str | os.PathLike[str], n_faults: int) -> list[list[str]]:
    """The orbit phases of the last ``n_faults`` faults of the run in ``run_dir`` (the
    campaign's drawn faults follow the base scenario's own): for each, its light phase
    (``sunlit``/``penumbra``/``umbra``) and any edge phase; ``["unknown"]`` each when the
    run left no readable archive or the fault never started."""
    from hil_rig.archive import ArchiveError, load_run
    from hil_rig.constants import NS_PER_S

    unknown = [["unknown"] for _ in range(n_faults)]
    try:
        run = load_run(run_dir)
        ev, tm = run["events"], run["telemetry"]
    except (ArchiveError, OSError, KeyError, Exception):  # noqa: BLE001 - a torn or missing archive: no phase
        return unknown
    if not len(tm) or "illumination" not in (tm.dtype.names or ()):
        return unknown
    t_s = tm["t_ns"].astype(float) / NS_PER_S
    illum = tm["illumination"].astype(float)
    starts: dict[int, float] = {}
    entries: list[float] = []
    exits: list[float] = []
    for kind, detail in zip(ev["kind"].tolist(), ev["detail"].tolist(), strict=True):
        if kind == "fault_scheduled":
            m = _SCHEDULED.match(detail)
            if m and " start" in detail:
                i = int(m.group(2))
                starts[i] = min(starts.get(i, float("inf")), float(m.group(1)))
        elif kind == "eclipse_predicted_truth":
            m = _ECLIPSE.search(detail)
            if m and m.group(1):
                entries.append(float(m.group(1)))
            if m and m.group(2):
                exits.append(float(m.group(2)))
    idx = sorted(starts)[-n_faults:] if n_faults else []
    if len(idx) < n_faults:
        return unknown
    out = []
    for i in idx:
        t = starts[i]
        if t > t_s[-1]:
            out.append(["unknown"])
            continue
        k = int(np.clip(np.searchsorted(t_s, t, side="right") - 1, 0, len(t_s) - 1))
        light = "sunlit" if illum[k] >= 1.0 - 1e-9 else "umbra" if illum[k] <= 1e-9 else "penumbra"
        ph = [light]
        if any(abs(t - a) <= EDGE_WINDOW_S for a in entries):
            ph.append("eclipse entry")
        if any(abs(t - b) <= EDGE_WINDOW_S for b in exits):
            ph.append("eclipse exit")
        out.append(ph)
    return out


def _load(out: pathlib.Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    plan_path = out / "schedules.json"
    if not plan_path.exists():
        raise CampaignReportError(f"{out}: not a campaign directory (no schedules.json)")
    try:
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CampaignReportError(f"{plan_path}: unreadable ({exc})") from None
    records = []
    rp = out / "results.jsonl"
    if rp.exists():
        for line in rp.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a line torn by a kill: that run is done again on --resume
    summary = None
    sp = out / "summary.json"
    if sp.exists():
        try:
            summary = json.loads(sp.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            summary = None
    return plan, records, summary


def _rel(path: str | None, out: pathlib.Path, name: str = REPORT_NAME) -> str | None:
    if not path:
        return None
    f = pathlib.Path(path) / name if name else pathlib.Path(path)
    if not f.exists():
        return None
    return os.path.relpath(f, out)


def _link(path: str | None, out: pathlib.Path, text: str = "run report") -> str:
    rel = _rel(path, out)
    return f'<a href="{e(rel)}">{e(text)}</a>' if rel else '<span class="note">no run report</span>'


def _ensure_run_report(run_dir: str | None) -> None:
    """Write a minimal scenario's run report if the run did not (``ORBIT_HIL_REPORT=0``,
    ``--no-report``): the campaign report links to it."""
    if not run_dir or (pathlib.Path(run_dir) / REPORT_NAME).exists() or \
            not (pathlib.Path(run_dir) / "telemetry.sqlite").exists():
        return
    from hil_rig.report import ReportError, write_report

    try:
        write_report([run_dir])
    except (ReportError, OSError, ValueError):
        pass  # the link then says "no run report"


def _fault_text(f: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in f.items())


def _status(s: str) -> str:
    cls = {"pass": "pass", "fail": "fail"}.get(s, "abort")
    return f'<span class="{cls}">{e(s.upper())}</span>'


def _matrix(examples: dict[int, dict[str, Any]], phases: dict[int, list[list[str]]], kinds: list[str]) -> str:
    cells: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for i, rec in examples.items():
        for f, ph in zip(rec["schedule"], phases[i], strict=True):
            for p in ph:
                c = cells[f["kind"]][p]
                c["faults"] += 1
                c[rec["status"]] += 1
    used = [p for p in PHASES if p != "unknown" or any(cells[k]["unknown"]["faults"] for k in cells)]
    head = "".join(f"<th>{e(p)}</th>" for p in used)
    rows = []
    for k in kinds + sorted(set(cells) - set(kinds)):
        tds = []
        for p in used:
            c = cells[k][p]
            bad = c["fail"] + c["timeout"]
            cls = ' class="mx bad"' if bad else (' class="mx none"' if not c["faults"] else ' class="mx"')
            text = "—" if not c["faults"] else (f"{c['faults']}" + (f" / <b>{c['fail']} fail</b>" if c["fail"] else "")
                                               + (f" / <b>{c['timeout']} timeout</b>" if c["timeout"] else "")
                                               + (f" / {c['error']} error" if c["error"] else ""))
            tds.append(f'<td{cls} data-kind="{e(k)}" data-phase="{e(p)}">{text}</td>')
        rows.append(f"<tr><th>{e(k)}</th>{''.join(tds)}</tr>")
    return (f'<table id="phase-matrix"><tr><th>fault kind</th>{head}</tr>{"".join(rows)}</table>'
            f'<p class="note">Each cell: faults of that kind that started in that phase (in the campaign\'s '
            f"examples), then how many of them were in a schedule that failed or timed out. Sunlit, penumbra and "
            f"umbra split the faults (the rig's illumination fraction at the fault's start: 1, between, 0); "
            f"eclipse entry and exit overlap them: within {EDGE_WINDOW_S:.0f} s of the run's own umbra entry or "
            f"exit event. Unknown: the run left no archive to place it in.</p>")


def _range_text(lo: Any, hi: Any, unit: str = "") -> str:
    if lo is None:
        return "—"
    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    return (fmt(lo) if lo == hi else f"{fmt(lo)} … {fmt(hi)}") + unit


def _coverage(space: list[dict[str, Any]] | None, examples: dict[int, dict[str, Any]], n_plan: int,
              plan: list[list[dict[str, Any]]]) -> str:
    """For each kind of the space: how often drawn, which targets, which trigger events
    and offsets, durations and parameters (drawn min … max beside the declared range)."""
    drawn: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in plan:
        for f in s:
            drawn[f["kind"]].append(f)
    kinds = [sp["kind"] for sp in space] if space else sorted(drawn)
    declared = {sp["kind"]: sp for sp in space} if space else {}
    rows = []
    for k in kinds:
        fs = drawn.get(k, [])
        sp = declared.get(k, {})
        if not fs:
            rows.append(f'<tr class="never"><td>{e(k)}</td><td>0</td><td colspan="4"><b>never drawn</b></td></tr>')
            continue
        tkey = next((x for x in ("board", "sensor", "wheel") if any(x in f for f in fs)), None)
        tgt = Counter(f.get(tkey, "") for f in fs) if tkey else Counter()
        want = sp.get("targets") or []
        targets = ", ".join(f"{e(str(t))} {tgt.get(t, 0)}" for t in (want or sorted(tgt))) or "—"
        missing = [t for t in want if t and not tgt.get(t)]
        if missing:
            targets += f' <span class="fail">(never: {e(", ".join(missing))})</span>'
        events: dict[str, list[int]] = defaultdict(list)
        for f in fs:
            m = re.match(r"(?:([a-z_]+) (\d+) ([+-]) )?(\d+) s$", f["at"])
            if m:
                ev = f"{m.group(1)} {m.group(2)}" if m.group(1) else "t"
                events[ev].append(int(m.group(4)) * (-1 if m.group(3) == "-" else 1))
        decl_at = {("t" if a["event"] == "t" else f"{a['event']} {a['index']}"): (a["from_s"], a["to_s"])
                   for a in sp.get("at", [])}
        trig = "<br>".join(f"{e(ev)}: {len(v)} × {_range_text(min(v), max(v), ' s')}"
                           + (f' <span class="note">of {_range_text(*decl_at[ev], " s")}</span>' if ev in decl_at else "")
                           for ev, v in events.items())
        never_ev = [ev for ev in decl_at if ev not in events]
        if never_ev:
            trig += f'<br><span class="fail">never: {e(", ".join(never_ev))}</span>'
        durs = [int(f["duration"].split()[0]) for f in fs if "duration" in f]
        dur = _range_text(min(durs), max(durs), " s") if durs else "—"
        if sp.get("duration_s"):
            dur += f' <span class="note">of {_range_text(*sp["duration_s"], " s")}</span>'
        params = []
        for p, rng in (sp.get("params") or {}).items():
            vals = [f[p] for f in fs if p in f]
            params.append(f"{e(p)}: {_range_text(min(vals), max(vals)) if vals else '—'} "
                          f'<span class="note">of {_range_text(rng[0], rng[1])}</span>')
        if not sp:
            for p in sorted({p for f in fs for p in f} - {"kind", "at", "duration", "board", "sensor", "wheel"}):
                vals = [f[p] for f in fs if p in f]
                params.append(f"{e(p)}: {_range_text(min(vals), max(vals))}")
        rows.append(f"<tr><td>{e(k)}</td><td>{len(fs)}</td><td>{targets}</td><td>{trig}</td><td>{dur}</td>"
                    f"<td>{'<br>'.join(params) or '—'}</td></tr>")
    ran = sum(len(r["schedule"]) for r in examples.values())
    return (f'<table id="coverage"><tr><th>fault kind</th><th>drawn</th><th>targets</th><th>triggers: offsets '
            f"drawn (declared)</th><th>durations</th><th>parameters</th></tr>{''.join(rows)}</table>"
            f'<p class="note">{sum(len(s) for s in plan)} faults drawn in {n_plan} schedules; {ran} of them in the '
            f"{len(examples)} schedules run so far. Ranges: drawn min … max, then the declared range.</p>")


def render(out: str | os.PathLike[str]) -> str:
    """The campaign report of the campaign directory ``out``, as HTML text."""
    from hil_rig.report.page import html_page

    out = pathlib.Path(out).resolve()
    plan_doc, records, summary = _load(out)
    plan = plan_doc.get("schedules", [])
    space = plan_doc.get("space")
    examples: dict[int, dict[str, Any]] = {}
    for r in records:
        if r["phase"] == "example":
            examples[r["id"]] = r
    phases = {i: fault_phases(r["run_dir"], len(r["schedule"])) if r.get("run_dir") else
              [["unknown"]] * len(r["schedule"]) for i, r in examples.items()}
    counts = Counter(r["status"] for r in examples.values())
    by_phase = Counter(r["phase"] for r in records)
    name = plan_doc.get("campaign", out.name)
    done = "ended" if summary else f"not ended (in progress or interrupted): {len(examples)} of {len(plan)} run"
    title = (f"orbit-hil campaign {name}: {len(plan)} schedules — pass {counts['pass']}, fail {counts['fail']}, "
             f"timeout {counts['timeout']}, error {counts['error']}")
    kv = [("campaign file", plan_doc.get("file", "?")), ("seed", plan_doc.get("seed", "?")),
          ("state", done),
          ("runs", ", ".join(f"{k} {v}" for k, v in by_phase.items()) or "none yet"),
          ("directory", str(out))]
    if summary:
        kv[2:2] = [("base scenario", f"{pathlib.Path(summary['base_scenario']).name}, {summary['duration']} per run"),
                   ("wall time", f"{summary['wall_s']:,.0f} s")]
    head = "".join(f"<tr><td>{e(k)}</td><td>{e(str(v))}</td></tr>" for k, v in kv)
    big = " ".join(f'<span class="verdict {c}" id="count-{s}">{e(s)} {counts[s]}</span>'
                   for s, c in (("pass", "pass"), ("fail", "fail"), ("timeout", "abort"), ("error", "abort")))
    kinds = [sp["kind"] for sp in space] if space else sorted({f["kind"] for s in plan for f in s})
    body = [f'<div>{big}</div><table class="kv">{head}</table>',
            "<h2>Fault kind × orbit phase</h2>", _matrix(examples, phases, kinds),
            "<h2>Coverage of the fault space</h2>", _coverage(space, examples, len(plan), plan)]
    # failure groups and minimal scenarios
    body.append("<h2>Failures</h2>")
    if summary and summary.get("failures"):
        rows = []
        for f in summary["failures"]:
            flakes = "; ".join(f"example {fl['id']}: first {fl['first'][0]} {fl['first'][1]}, again {fl['again'][0]} "
                               f"{fl['again'][1]}" for fl in f["flakes"])
            what = "timeout (past the run's budget)" if f.get("status") == "timeout" else ", ".join(f["failed"])
            rows.append(f"<tr><td>{e(what)}</td><td>{len(f['examples'])}</td>"
                        f"<td>{len(f['confirmed'])}</td><td>{e(flakes) or '—'}</td></tr>")
        body.append("<table><tr><th>failed requirements, or timeout</th><th>examples</th><th>confirmed</th>"
                    f"<th>flakes (determinism bugs)</th></tr>{''.join(rows)}</table>")
    elif not summary:
        fails = [r for r in examples.values() if r["status"] == "fail"]
        body.append(f"<p>{len(fails)} failing example(s) so far; confirmation and shrinking come at the end.</p>")
    else:
        body.append("<p>No schedule failed.</p>")
    for j, m in enumerate((summary or {}).get("minimal", [])):
        text = pathlib.Path(m["file"]).read_text(encoding="utf-8") if pathlib.Path(m["file"]).exists() else "(missing)"
        verdicts = "".join(f'<tr><td><span class="fail">FAIL</span></td><td>{e(v["name"])}</td>'
                           f"<td>{e(v['detail'])}</td></tr>" for v in m["verdicts"])
        faults = "".join(f"<li>{e(_fault_text(f))}</li>" for f in m["faults"])
        rel_toml = os.path.relpath(m["file"], out)
        what = "timeout" if m.get("status") == "timeout" else ", ".join(m["failed"])
        _ensure_run_report(m.get("run_dir"))
        _ensure_run_report(m.get("replay_run_dir"))
        body.append(
            f'<h3 id="minimal-{j}">Minimal: {e(what)}</h3>'
            f"<p>{len(m['faults'])} fault(s) after {m['shrink_runs']} shrink run(s); replay "
            f"{'<span class=pass>identical</span>' if m['replay_identical'] else '<span class=fail>DIFFERS</span>'} "
            f"(verdicts and archive digest {e(str(m['digest'])[:16])}). {_link(m.get('run_dir'), out)} · "
            f"{_link(m.get('replay_run_dir'), out, 'replay run report')} · "
            f'<a href="{e(rel_toml)}">{e(pathlib.Path(m["file"]).name)}</a></p>'
            f"<ul>{faults}</ul><table>{verdicts}</table>"
            f"<details><summary>scenario TOML (<code>hil run {e(rel_toml)}</code>)</summary>"
            f"<pre>{e(text)}</pre></details>")
    # timeouts, errors, every example
    bad = [r for r in examples.values() if r["status"] in ("timeout", "error")]
    if bad:
        body.append("<h2>Timeouts and errors</h2><table><tr><th>example</th><th>status</th><th>why</th>"
                    "<th>faults</th><th></th></tr>" + "".join(
                        f"<tr><td>{r['id']}</td><td>{_status(r['status'])}</td><td>{e(str(r.get('error')))}</td>"
                        f"<td>{e('; '.join(_fault_text(f) for f in r['schedule']))}</td>"
                        f"<td>{_link(r.get('run_dir'), out)}</td></tr>" for r in bad) + "</table>")
    rows = "".join(
        f"<tr><td>{i}</td><td>{_status(r['status'])}</td><td>{e(', '.join(r['failed']))}</td>"
        f"<td>{'<br>'.join(e(f['kind'] + ' @ ' + f['at'] + ' (' + ', '.join(ph) + ')') for f, ph in zip(r['schedule'], phases[i], strict=True))}</td>"
        f"<td>{r.get('wall_s', 0):.1f}</td><td>{_link(r.get('run_dir'), out)}</td></tr>"
        for i, r in sorted(examples.items()))
    body.append(f"<h2>Every example</h2><details><summary>{len(examples)} runs</summary><table id=\"examples\">"
                f"<tr><th>#</th><th>status</th><th>failed</th><th>faults (phase)</th><th>wall (s)</th><th></th></tr>"
                f"{rows}</table></details>")
    style = ("<style>td.mx{text-align:right;white-space:nowrap}td.mx.bad{background:#fde4e4}"
             "td.mx.none{color:#aaa}tr.never td{background:#fff6dd}pre{background:#f6f6f6;padding:6px;"
             "overflow-x:auto;font-size:12px}</style>")
    return html_page(title, style + "".join(body), made_by="hil campaign-report")


def write_campaign_report(out: str | os.PathLike[str]) -> pathlib.Path:
    """Write ``OUT/report.html``; returns its path."""
    out = pathlib.Path(out)
    text = render(out)
    path = out / REPORT_NAME
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise CampaignReportError(f"{path}: cannot write the report: {exc.strerror or exc}") from None
    return path
