"""Run reports (issue 21, docs/report.md): every run writes report.html and
ctrf.json, the plots agree with the archive they draw from, a comparison shows
every run, a stopped run still gets its report, and a real browser (Debian's
headless Chromium) renders the page with no request outside it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from hil_rig.archive import load_run
from hil_rig.report import ReportError, write_report
from hil_rig.report.ctrf import ctrf_doc

HIL = [sys.executable, "-m", "hil_rig.cli"]
ENV_ON = {**os.environ, "ORBIT_HIL_REPORT": "1"}


def _hil(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*HIL, *args], capture_output=True, text=True, env=env or ENV_ON)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two real runs of 40 simulated minutes (an eclipse entered), seeds 1 and 2,
    written by `hil run` with its default (the report on)."""
    base = tmp_path_factory.mktemp("report")
    out = {}
    for seed in (1, 2):
        d = base / f"s{seed}"
        r = _hil("run", "nominal", "--duration", "40 min", "--seed", str(seed), "--out", str(d))
        assert r.returncode in (0, 1), r.stderr
        out[seed] = (d, r.returncode)
    return out


def _svg(html: str, plot_id: str) -> str:
    m = re.search(rf'<svg class="plot" id="svg-{plot_id}".*?</svg>', html, re.S)
    assert m, f"no plot {plot_id}"
    return m.group(0)


def _runs_of(mask: np.ndarray) -> int:
    return int(np.sum(mask[1:] & ~mask[:-1]) + (1 if len(mask) and mask[0] else 0))


def test_a_run_writes_its_report_and_ctrf(runs):
    d, code = runs[1]
    summary = json.loads((d / "summary.json").read_text())
    assert code == (0 if summary["passed"] else 1)
    html = (d / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "default-src 'none'" in html
    # no reference outside the file: no src or href to another origin, no @import, no url()
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "@import" not in html and "url(http" not in html
    for pid in ("soc", "power", "temps", "throttle", "jobs", "pointing", "wheels", "link"):
        _svg(html, pid)
    # the header: scenario, seed, bench and boards, clock, verdict, links to the files
    for text in ("nominal", "jetson0:jetson", "virtual", 'href="telemetry.sqlite"', 'href="junit.xml"',
                 'href="ctrf.json"'):
        assert text in html
    # ctrf.json: one test per requirement, the same verdicts as junit.xml
    ctrf = json.loads((d / "ctrf.json").read_text())
    assert ctrf["reportFormat"] == "CTRF"
    tests = {t["name"]: t["status"] for t in ctrf["results"]["tests"]}
    junit = ET.parse(d / "junit.xml").getroot()
    expect = {tc.get("name"): "failed" if tc.find("failure") is not None else "passed" for tc in junit.iter("testcase")}
    assert tests == expect
    assert ctrf["results"]["summary"]["tests"] == len(summary["requirements"])
    assert ctrf["results"]["summary"]["failed"] == sum(not v["passed"] for v in summary["requirements"])


def test_no_report_flag_and_the_suite_default(tmp_path):
    r = _hil("run", "nominal", "--duration", "2 min", "--no-report", "--out", str(tmp_path / "a"))
    assert r.returncode in (0, 1), r.stderr
    assert not (tmp_path / "a" / "report.html").exists()
    assert (tmp_path / "a" / "ctrf.json").exists()
    off = {**os.environ, "ORBIT_HIL_REPORT": "0"}
    r = _hil("run", "nominal", "--duration", "2 min", "--out", str(tmp_path / "b"), env=off)
    assert not (tmp_path / "b" / "report.html").exists()


def test_plots_agree_with_the_archive(runs):
    d, _ = runs[1]
    run = load_run(d)
    html = (d / "report.html").read_text()
    tm = run["telemetry"]
    # eclipse bands: one per umbra of the archive's illumination
    umbra = _runs_of(tm["illumination"] == 0.0)
    assert umbra >= 1
    for pid in ("soc", "pointing", "link"):
        assert _svg(html, pid).count('class="eclipse"') == umbra
    # the mode strip: one segment per run of equal fsw_mode, named from the enums table
    names = run.enum_names("fsw_mode")
    assert names[4] == "COMPUTE"
    mode = tm["fsw_mode"]
    changes = [names[int(m)] for i, m in enumerate(mode) if i == 0 or m != mode[i - 1]]
    strip = re.findall(r'<rect class="state"[^>]*><title>mode (\w+):', _svg(html, "pointing"))
    assert strip == changes
    # the flight-software markers: one per mode transition (and other marked events)
    ev = run["events"]
    transitions = int(np.sum((ev["source"] == "fsw") & (ev["kind"] == "mode_transition")))
    assert _svg(html, "pointing").count("mode_transition") == transitions
    # jobs per orbit bars: the jobs completed in each orbit of the archive
    bars = [int(float(x)) for x in re.findall(r"<title>jobs per orbit: ([0-9.]+)</title>", _svg(html, "jobs"))]
    done = tm["fsw_jobs_completed"]
    assert bars == [int(done[-1])]  # 40 min: one (partial) orbit
    # the SOC floor of the scenario's soc_floor requirement is drawn
    assert "SOC floor 0.3 (soc_floor)" in _svg(html, "soc")
    # one series per board in the throttle and temperature plots
    for b in ("jetson0", "rpi0"):
        assert f"<title>{b} throttle</title>" in _svg(html, "throttle")
        assert f"<title>{b} (hottest zone)</title>" in _svg(html, "temps")


def test_faults_are_marked(tmp_path):
    d = tmp_path / "hang"
    r = _hil("run", "payload_hang", "--duration", "30 min", "--out", str(d))
    assert r.returncode in (0, 1), r.stderr
    run = load_run(d)
    ev = run["events"]
    faults = int(np.sum(ev["source"] == "fault"))
    assert faults >= 1
    html = (d / "report.html").read_text()
    for pid in ("soc", "temps", "link"):
        assert _svg(html, pid).count('class="marker fault"') == faults


def test_a_failed_requirement_links_to_its_moment(runs):
    d, _ = runs[1]
    summary = json.loads((d / "summary.json").read_text())
    failed = [v for v in summary["requirements"] if not v["passed"]]
    html = (d / "report.html").read_text()
    # the 40-minute run cannot complete an orbit: jobs_per_orbit fails without a moment;
    # a failure with a time gets a link to a marker drawn at that time
    for v in failed:
        link = re.search(rf'<a href="#(fail-\d+)">{v["name"]}</a>', html)
        if re.search(r"t = [0-9.]+ s", v["detail"]) or "at_s" in v["measured"]:
            assert link and f'id="{link.group(1)}"' in html


def test_comparison_shows_both_runs(runs, tmp_path):
    out = tmp_path / "cmp.html"
    r = _hil("report", str(runs[1][0]), str(runs[2][0]), "--out", str(out))
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    assert "nominal seed 1" in html and "nominal seed 2" in html
    soc = _svg(html, "soc")
    assert "run 1: SOC (plant truth)" in soc and "run 2: SOC (plant truth)" in soc
    # a key figure is highlighted exactly when its cells differ (two seeds may agree on
    # every one at this length, the wall time included, so none is assumed to differ);
    # the tables: the verdicts (highlighted when PASS/FAIL differ), then the key figures
    _verdicts, figure_table = re.findall(r'<table class="diff">.*?</table>', html, re.S)[:2]
    rows = re.findall(r"<tr><td>([^<]*)</td>((?:<td[^>]*>.*?</td>){2})</tr>", figure_table)
    assert len(rows) > 5
    for name, cells in rows:
        tds = re.findall(r"<td( class=\"d\")?>(.*?)</td>", cells)
        assert (tds[0][1] != tds[1][1]) == bool(tds[0][0]) == bool(tds[1][0]), (name, tds)
    # and a figure that does differ is highlighted: the same run with another wall time
    import shutil

    twin = tmp_path / "twin"
    shutil.copytree(runs[1][0], twin)
    summary = json.loads((twin / "summary.json").read_text())
    summary["wall_seconds"] = summary["wall_seconds"] + 1.0
    (twin / "summary.json").write_text(json.dumps(summary))
    r = _hil("report", str(runs[1][0]), str(twin), "--out", str(tmp_path / "twin.html"))
    assert r.returncode == 0, r.stderr
    wall = re.search(r"<tr><td>wall \(s\)</td>(.*?)</tr>", (tmp_path / "twin.html").read_text())
    assert wall and wall.group(1).count('<td class="d">') == 2


def test_bad_input(tmp_path):
    r = _hil("report", str(tmp_path / "nope"))
    assert r.returncode == 2 and "nope" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "empty").mkdir()
    r = _hil("report", str(tmp_path / "empty"))
    assert r.returncode == 2 and "no telemetry archive" in r.stderr
    with pytest.raises(ReportError):
        write_report([])


def test_a_stopped_run_gets_a_report(tmp_path):
    d = tmp_path / "stopped"
    p = subprocess.Popen([*HIL, "run", "nominal", "--duration", "1 orbit", "--out", str(d)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV_ON)
    # stop it once it has archived some seconds
    while True:
        if (d / "telemetry.sqlite").exists():
            try:
                if len(load_run(d)["telemetry"]) > 30:
                    break
            except Exception:  # noqa: BLE001 - the archive is being created
                pass
        if p.poll() is not None:
            pytest.fail(f"the run ended before it was stopped: {p.stderr.read()}")
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate()
    assert p.returncode == 143, err
    html = (d / "report.html").read_text()
    assert "ABORTED (SIGTERM)" in html
    n = len(load_run(d)["telemetry"])
    assert f"{n - 1:,.1f} s" in html  # the simulated time it archived
    ctrf = json.loads((d / "ctrf.json").read_text())
    assert any(t["name"] == "run" and t["status"] == "failed" for t in ctrf["results"]["tests"])


def test_a_report_that_fails_to_draw_keeps_the_result(tmp_path, monkeypatch):
    """A failure to draw is a line on stderr and in events.log: the result, summary and
    archive are those of the run."""
    import hil_rig.report as report
    from hil_rig.run import Run, RunOptions
    from hil_rig.scenario import find_scenario, load_scenario

    def boom(*a, **k):
        raise RuntimeError("no pens left")

    monkeypatch.setattr(report, "write_report", boom)
    sc = load_scenario(find_scenario("nominal"))
    from hil_rig.scenario import parse_duration

    sc = sc.replace(duration=parse_duration("30 s", "t"))
    with Run(sc, out=tmp_path / "r", options=RunOptions(report=True), rt_priority=None) as run:
        res = run.finish()
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["passed"] == res.passed
    assert "report_failed" in (tmp_path / "r" / "events.log").read_text()
    assert len(load_run(tmp_path / "r")["telemetry"]) == 31


def test_ctrf_of_an_aborted_run():
    doc = ctrf_doc({"scenario": "x", "aborted": "error", "error": "supply gone", "wall_seconds": 2.0,
                    "requirements": [{"name": "a", "kind": "soc_floor", "passed": True, "detail": "ok"}]},
                   stop_ms=10_000)
    res = doc["results"]
    assert res["summary"] == {"tests": 2, "passed": 1, "failed": 1, "pending": 0, "skipped": 0, "other": 0,
                              "start": 8000, "stop": 10_000}
    assert res["tests"][1]["message"].endswith("error: supply gone")


# ---- a real browser ---------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
browser = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    ud = tmp_path / f"chromium-profile-{len(list(tmp_path.iterdir()))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-default-apps",
           f"--user-data-dir={ud}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _console_errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "CONSOLE" in ln or "Refused to" in ln]


@browser
def test_the_browser_renders_the_report(runs, tmp_path):
    """Chromium loads the page: the script ran under the page's CSP (the event filter
    filled its count), nothing was refused or logged to the console, and every plot
    area holds drawn pixels."""
    from PIL import Image

    d, _ = runs[1]
    page = d / "report.html"
    r = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    n_events = len(load_run(d)["events"])
    assert f"{n_events} of {n_events} events" in dom  # the inline script ran (its hash is in the CSP)
    assert _console_errors(r.stderr) == []
    # every plot, laid out one under another at known places, holds coloured pixels
    html = page.read_text()
    ids = re.findall(r'<svg class="plot" id="svg-(\w+)"[^>]*height="(\d+)"', html)
    top, css = 0, ["body{margin:0}body>*{display:none!important}"]
    places = []
    for pid, h in ids:
        css.append(f"body>#svg-{pid}{{display:block!important;position:absolute;left:0;top:{top}px}}")
        places.append((pid, top, int(h)))
        top += int(h)
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</head>", f"<style>{''.join(css)}</style></head>"), encoding="utf-8")
    shot = tmp_path / "plots.png"
    r = _chromium(tmp_path, f"--screenshot={shot}", f"--window-size=1100,{top}", "--hide-scrollbars",
                  probe.as_uri())
    assert shot.exists(), r.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    for pid, y, h in places:
        if pid == "lateness":
            continue
        area = img[y + 16:y + h - 30, 72:1028]
        sat = area.max(axis=2) - area.min(axis=2)
        assert int((sat > 80).sum()) > 300, f"plot {pid}: no drawn series"


@browser
def test_the_page_cannot_reach_outside(runs, tmp_path):
    """The page's CSP holds in this browser: a copy of the report with an image from
    a loopback HTTP server added is refused, and the server sees no request."""
    import http.server
    import threading

    hits: list[str] = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_port}/leak.png"
        html = (runs[1][0] / "report.html").read_text()
        probe = tmp_path / "leak.html"
        probe.write_text(html.replace("<h1>", f'<img src="{url}"><h1>', 1), encoding="utf-8")
        r = _chromium(tmp_path, "--dump-dom", probe.as_uri())
        assert r.returncode == 0
        assert hits == []
        assert any("Refused to load" in ln or "Content Security Policy" in ln for ln in r.stderr.splitlines()), \
            r.stderr[-2000:]
    finally:
        srv.shutdown()
