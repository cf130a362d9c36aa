"""Requirement judges over a nominal history, summary.json and junit.xml
(hil_rig.requirements). Each judge's pass and fail cases: tests/test_run_judges.py."""

from __future__ import annotations

import json
import pathlib
import xml.etree.ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st
from test_run_judges import BASE, END, EV, S, _sample

from hil_rig.faults import resolve
from hil_rig.requirements import make_judges, write_junit, write_summary
from hil_rig.scenario import parse_scenario


def _judges(text: str):
    sc = parse_scenario(BASE + text, "x.toml")
    acts = resolve(sc.faults, EV)
    return make_judges(sc.requirements, EV, acts)


def _run(judges, fn=lambda t: {}):
    for t in range(END + 1):  # the runner samples t = 0 .. duration inclusive
        s = _sample(t, **fn(t))
        for j in judges:
            j.observe(s)
    return {v.name: v for v in (j.verdict(END * S) for j in judges)}


REQS = """
[[requirement]]
kind = "soc_floor"
min = 0.3
[[requirement]]
kind = "payload_temp_max"
max_c = 60
[[requirement]]
kind = "sun_pointing"
within_deg = 5
within_min = 10
[[requirement]]
kind = "jobs_per_orbit"
min = 30
"""


def test_nominal_history_passes() -> None:
    v = _run(_judges(REQS))
    assert all(x.passed for x in v.values()), v
    assert v["jobs_per_orbit"].measured["per_orbit"] == [30, 30]


@given(st.integers(0, 5999), st.floats(0.0, 0.299))
def test_one_low_soc_sample_fails_the_floor(t_bad: int, soc: float) -> None:
    v = _run(_judges(REQS), lambda t: {"soc": soc} if t == t_bad else {})
    assert not v["soc_floor"].passed and f"t = {t_bad} s" in v["soc_floor"].detail
    assert v["payload_temp_max"].passed


def test_summary_and_junit(tmp_path: pathlib.Path) -> None:
    v = _run(_judges(REQS), lambda t: {"board_temp_c": {"b0": 80.0, "b1": 50.0}} if t == 10 else {})
    doc = write_summary(tmp_path / "summary.json", list(v.values()), sim_seconds=6000.0, wall_seconds=1.5)
    assert doc["passed"] is False
    back = json.loads((tmp_path / "summary.json").read_text())
    assert back["sim_seconds"] == 6000.0 and len(back["requirements"]) == 4
    write_junit(tmp_path / "junit.xml", "nominal", list(v.values()), 6000.0, {"bench": "virtual"})
    root = ET.parse(tmp_path / "junit.xml").getroot()
    cases = root.findall("testcase")
    assert [c.get("name") for c in cases] == list(v)
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == ["payload_temp_max"] and root.get("failures") == "1"
    assert root.find("properties/property").get("value") == "virtual"


def test_progress_display() -> None:
    import io

    from hil_rig.run import Progress

    status = {"orbit": 2, "sunlit": False, "soc": 0.71, "temps_c": [31.0, 12.0], "mode": "COMPUTE",
              "boards": {"jetson0": "BUSY", "rpi0": "SUSPENDED"}, "jobs": 42}
    tty = io.StringIO()
    p = Progress(tty, 6000 * S, tty=True)
    p.update(3000 * S, status, force=True)
    out = tty.getvalue()
    assert out.startswith("\r\x1b[K[############------------]  50.0% t=00:50:00 orbit 2 ECL soc 0.71")
    assert "T 31/12°C COMPUTE jetson0:BUSY rpi0:SUSPENDED jobs 42" in out
    log = io.StringIO()
    p = Progress(log, 6000 * S, tty=False, every_s=600)
    for t in range(0, 6001):
        p.update(t * S, status)
    lines = log.getvalue().splitlines()
    assert len(lines) == 11 and lines[0].startswith("hil run:   0.0% t=00:00:00")
