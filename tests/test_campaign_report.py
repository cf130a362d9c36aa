"""The campaign report (issue 23): ``report.html`` of a real small campaign (a LocalCluster
of 2 workers, real ``hil run`` runs across an eclipse entry), read back by headless
Debian chromium.

The base orbit starts 109° past the ascending node, so the umbra entry comes 47 s into
each 2-minute run, after a penumbra from 38 s: faults drawn over 10-110 s fall in sunlit,
penumbra and umbra, and near the eclipse entry. A planted requirement (any stuck wheel
breaks it) gives a confirmed failure and a minimal scenario.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections import Counter

import numpy as np
import pytest
from test_campaign import BASE as _BASE  # tests/ is on sys.path (as for hosted_bench)
from test_campaign import _hil
from test_report import _chromium, browser

pytest.importorskip("distributed")

# test_campaign.py's base scenario, 2 minutes long, 109° past the ascending node at t = 0
BASE = (_BASE.replace('duration = "1 min"', 'duration = "2 min"')
        .replace('ltan = "10:30"', 'ltan = "10:30"\nmean_anomaly_deg = 109'))
assert "mean_anomaly_deg = 109" in BASE and 'duration = "2 min"' in BASE

CAMPAIGN = """
[campaign]
name = "phases"
scenario = "base.toml"
duration = "2 min"
examples = 6
seed = 6  # its 6 schedules draw every kind, 2 with a stuck wheel, 2 faults at the eclipse entry
faults_per_schedule = [1, 2]
timeout_s = 300
timeout_per_sim_s = 0
shrink_runs = 8

[[space]]
kind = "sensor_bias"
sensor = ["gyro", "mag"]
at = [{ event = "t", from = "5 s", to = "110 s" },
      { event = "eclipse_entry", from = "-30 s", to = "30 s" }]
duration = ["1 s", "20 s"]
bias = [-0.01, 0.01]

[[space]]
kind = "wheel_stuck"
wheel = ["x", "y", "z"]
at = [{ event = "t", from = "10 s", to = "110 s" }]
duration = ["1 s", "10 s"]

[[space]]
kind = "seu"
board = ["jetson0", "rpi0"]
at = [{ event = "t", from = "10 s", to = "110 s" }]
count = [1, 5]

[[requirement]]
kind = "event_never_seen"
name = "planted"
event = "wheel_stuck_start"
source = "fault"
"""

@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    tmp = tmp_path_factory.mktemp("campaign_report")
    (tmp / "base.toml").write_text(BASE)
    (tmp / "phases.toml").write_text(CAMPAIGN)
    out = tmp / "out"
    res = _hil("campaign", str(tmp / "phases.toml"), "--workers", "2", "--out", str(out))
    assert res.returncode == 1, res.stderr[-3000:]  # the planted weakness fails
    assert (out / "report.html").exists(), res.stderr[-3000:]
    return out


def _chromium_dom(tmp: pathlib.Path, page: pathlib.Path) -> tuple[str, str]:
    r = _chromium(tmp, "--dump-dom", page.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout, r.stderr


def _expected_phases(run_dir: str, faults: list[dict]) -> list[set[str]]:
    """Each fault's phases, worked out here from its ``at`` (whole seconds after t = 0 or
    after the umbra entry) and the run's own archive: the entry event's time and the
    illumination column."""
    from hil_rig.archive import load_run

    run = load_run(run_dir)
    ev = run["events"]
    [detail] = ev["detail"][ev["kind"] == "eclipse_predicted_truth"].tolist()
    entry = float(re.search(r"umbra entry ([0-9.]+) s", detail).group(1))
    tm = run["telemetry"]
    t_s, illum = tm["t_ns"] / 1e9, tm["illumination"]
    out = []
    for f in faults:
        m = re.fullmatch(r"(?:eclipse_entry 1 ([+-]) )?(\d+) s", f["at"])
        t = float(m.group(2)) * (-1 if m.group(1) == "-" else 1) + (entry if m.group(1) else 0.0)
        il = illum[np.searchsorted(t_s, t, side="right") - 1]
        ph = {"sunlit" if il == 1.0 else "umbra" if il == 0.0 else "penumbra"}
        if abs(t - entry) <= 60.0:
            ph.add("eclipse entry")
        out.append(ph)
    return out


@browser
def test_chromium_shows_counts_phase_matrix_coverage_and_the_minimal_scenario(campaign, tmp_path) -> None:
    dom, stderr = _chromium_dom(tmp_path, campaign / "report.html")
    assert [ln for ln in stderr.splitlines() if "CONSOLE" in ln or "Refused to" in ln] == []
    s = json.loads((campaign / "summary.json").read_text())
    for status in ("pass", "fail", "timeout", "error"):
        assert re.search(rf'id="count-{status}">{status} {s["results"].get(status, 0)}<', dom), status
    # the matrix, cell by cell, against phases worked out here from each run's archive
    recs = [json.loads(x) for x in (campaign / "results.jsonl").read_text().splitlines()]
    want: dict[tuple[str, str], Counter] = {}
    for r in recs:
        if r["phase"] != "example":
            continue
        for f, phases in zip(r["schedule"], _expected_phases(r["run_dir"], r["schedule"]), strict=True):
            for p in phases:
                want.setdefault((f["kind"], p), Counter())["faults"] += 1
                want[(f["kind"], p)]["fail"] += r["status"] == "fail"
    cells = {(k, p): text for k, p, text in
             re.findall(r'<td class="mx[^"]*" data-kind="([^"]+)" data-phase="([^"]+)">(.*?)</td>', dom)}
    assert {p for _, p in want} >= {"sunlit", "umbra"}, want  # the draws reach both sides of the entry
    for (k, p), c in want.items():
        text = cells[(k, p)]
        assert text.startswith(str(c["faults"])), (k, p, text, c)
        assert (f"{c['fail']} fail" in text) == bool(c["fail"]), (k, p, text, c)
    for key, text in cells.items():
        if key not in want:
            assert text == "—", (key, text)
    # coverage: every kind of the space, its targets and declared ranges
    cov = re.search(r'<table id="coverage">.*?</table>', dom, re.S).group(0)
    for kind in ("sensor_bias", "wheel_stuck", "seu"):
        assert f"<td>{kind}</td>" in cov
    assert "of 1 … 20 s" in cov and "of -0.01 … 0.01" in cov
    # the minimal failing scenario: its verdict, its TOML, a link to its run report that exists
    [m] = s["minimal"]
    assert "Minimal: planted" in dom
    assert "planted" in dom and m["verdicts"][0]["detail"][:40] in dom.replace("&gt;", ">").replace("&#x27;", "'")
    assert 'kind = "wheel_stuck"' in dom.replace("&quot;", '"')
    links = re.findall(r'<a href="([^"]+)">run report</a>', dom)
    assert links and all((campaign / href).resolve().is_file() for href in links)
    assert any((campaign / href).resolve() == pathlib.Path(m["run_dir"], "report.html").resolve() for href in links)


def test_campaign_report_rewrites_the_page_from_the_directory(campaign) -> None:
    page = campaign / "report.html"
    before = re.sub(r"Written [^<]* by", "", page.read_text())
    page.unlink()
    res = _hil("campaign-report", str(campaign), timeout=300)
    assert res.returncode == 0, res.stderr
    assert re.sub(r"Written [^<]* by", "", page.read_text()) == before


def test_campaign_report_of_a_directory_without_a_campaign_is_refused(tmp_path) -> None:
    res = _hil("campaign-report", str(tmp_path), timeout=120)
    assert res.returncode == 2 and f"{tmp_path}: not a campaign directory" in res.stderr
    assert "Traceback" not in res.stderr
    res = _hil("campaign-report", str(tmp_path / "nowhere"), timeout=120)
    assert res.returncode == 2 and "nowhere: not a directory" in res.stderr
