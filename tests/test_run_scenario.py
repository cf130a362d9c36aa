"""Scenario files and fault-schedule resolution (hil_rig.scenario, hil_rig.faults)."""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil_rig.faults import FaultSchedule, FaultScheduleError, OrbitEvents, resolve
from hil_rig.scenario import (
    ScenarioError,
    find_scenario,
    load_scenario,
    parse_duration,
    parse_scenario,
    parse_trigger,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
S = 1_000_000_000

BASE = """
[scenario]
epoch = "2026-03-20T00:00:00Z"
duration = "2 orbits"
seed = 3
[orbit]
altitude_km = 550
inclination_deg = "sso"
ltan = "10:30"
"""


def test_every_shipped_scenario_loads() -> None:
    files = sorted((ROOT / "scenarios").glob("*.toml"))
    names = {f.stem for f in files}
    assert {"nominal", "eclipse_stress", "payload_hang", "link_noise", "seu", "hot_case",
            "sun_sensor_failure", "inclined_30"} <= names
    for f in files:
        sc = load_scenario(f)
        assert sc.name == f.stem and sc.requirements, f


def test_nominal_is_found_by_default() -> None:
    p = find_scenario(None)
    assert p.name == "nominal.toml"
    assert load_scenario(p).orbit.sso and load_scenario(p).orbit.ltan_h == 10.5


def test_minimal_scenario_defaults() -> None:
    sc = parse_scenario(BASE, "x.toml")
    assert sc.seed == 3 and sc.speed is None and sc.duration.in_orbits
    assert sc.duration.to_ns(period_s=5700.0) == 2 * 5700 * S
    assert sc.faults == () and sc.requirements == ()


@pytest.mark.parametrize(
    "extra, needle",
    [
        ("[spacecraft]\nsoc_initial = 1.5\n", "x.toml: [spacecraft] soc_initial: expected a value in [0.0, 1.0]"),
        ("[spacecraft]\nbatery_wh = 3\n", "x.toml: [spacecraft] batery_wh: unknown key"),
        ("[[fault]]\nkind = 'gremlins'\nat = '1 s'\n", "x.toml: fault[0].kind: expected one of"),
        ("[[fault]]\nkind = 'seu'\nat = 'eclipse_entyr + 3 s'\n", "x.toml: fault[0].at: expected a trigger"),
        ("[[fault]]\nkind = 'seu'\nat = '5 parsecs'\n", "x.toml: fault[0].at: unknown unit 'parsecs'"),
        ("[[fault]]\nkind = 'sensor_dead'\nat = '1 s'\n", "x.toml: fault[0].sensor: missing (required)"),
        ("[[fault]]\nkind = 'link_noise'\nat = '1 s'\nbyte_error_rate = 2\n", "fault[0].byte_error_rate: expected a value in"),
        ("[[requirement]]\nkind = 'soc_floor'\n", "x.toml: requirement[0].min: missing (required)"),
        ("[[requirement]]\nkind = 'soc_floor'\nmin = 'low'\n", "requirement[0].min: expected a number"),
        ("[[requirement]]\nkind = 'seu_detected'\n[[requirement]]\nkind = 'seu_detected'\n", "requirement[1].name: duplicate"),
        ("[extra]\na = 1\n", "x.toml: extra: unknown key"),
    ],
)
def test_bad_input_names_file_and_key(extra: str, needle: str) -> None:
    with pytest.raises(ScenarioError) as ei:
        parse_scenario(BASE + extra, "x.toml")
    assert needle in str(ei.value)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[scenario]\nduration='1 h'\n[orbit]\naltitude_km=500\ninclination_deg=30\nraan_deg=0\n", "[scenario] epoch: missing"),
        (BASE.replace('"2 orbits"', '"2 fortnights"'), "[scenario] duration: unknown unit 'fortnights'"),
        (BASE.replace('"2 orbits"', "90"), "[scenario] duration: expected a string"),
        (BASE.replace("2026-03-20T00:00:00Z", "2026-03-20T00:00:00"), "[scenario] epoch: the epoch must say it is UTC"),
        (BASE.replace('"sso"', "200"), "[orbit] inclination_deg: expected degrees in [0, 180] or 'sso'"),
        (BASE.replace('"10:30"', '"25:00"'), "[orbit] ltan: expected a local time"),
        (BASE.replace("[orbit]", "[orbit]\ntle_file = 'nope.tle'"), "[orbit] tle_file: cannot read"),
        ("[scenario\n", "x.toml: not valid TOML"),
    ],
)
def test_bad_files(text: str, needle: str, tmp_path: pathlib.Path) -> None:
    f = tmp_path / "x.toml"
    f.write_text(text)
    with pytest.raises(ScenarioError) as ei:
        load_scenario(f)
    assert needle in str(ei.value) and str(f) in str(ei.value)


def test_tle_file_orbit(tmp_path: pathlib.Path) -> None:
    (tmp_path / "iss.tle").write_text(
        "ISS (ZARYA)\n"
        "1 25544U 98067A   24079.50000000  .00016717  00000-0  30000-3 0  9995\n"
        "2 25544  51.6400 100.0000 0005000  90.0000 270.0000 15.50000000 10004\n"
    )
    text = BASE.replace('altitude_km = 550\ninclination_deg = "sso"\nltan = "10:30"', 'tle_file = "iss.tle"')
    (tmp_path / "s.toml").write_text(text)
    sc = load_scenario(tmp_path / "s.toml")
    assert sc.orbit.tle.splitlines()[0] == "ISS (ZARYA)" and sc.orbit.altitude_km is None


def test_triggers() -> None:
    assert parse_trigger("600 s", "at").offset_ns == 600 * S
    t = parse_trigger("eclipse_exit 2 - 10 s", "at")
    assert (t.event, t.index, t.offset_ns) == ("eclipse_exit", 2, -10 * S)
    assert parse_trigger("sunlight", "at").event == "sunlight"
    with pytest.raises(ScenarioError, match="'orbit' needs a number"):
        parse_trigger("orbit", "at")


@given(st.floats(0, 1e6, allow_nan=False), st.sampled_from(["ms", "s", "min", "h"]))
def test_duration_round_trip(value: float, unit: str) -> None:
    d = parse_duration(f"{value!r} {unit}", "k")
    factor = {"ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}[unit]
    assert abs(d.to_ns() - value * factor * 1e9) <= 1.0 + 1e-12 * value * factor * 1e9


EV = OrbitEvents(duration_ns=12000 * S, period_ns=5700 * S,
                 eclipses=((1000 * S, 3100 * S), (6700 * S, 8800 * S)))


def _sc_with_faults(faults: str):
    return parse_scenario(BASE + faults, "x.toml")


def test_resolve_orbit_events() -> None:
    sc = _sc_with_faults(
        "[[fault]]\nkind='payload_hang'\nat='eclipse_entry + 30 s'\n"
        "[[fault]]\nkind='link_noise'\nat='orbit 2'\nduration='10 min'\nbyte_error_rate=0.01\n"
        "[[fault]]\nkind='seu'\nat='eclipse_exit 2 - 100 s'\n"
        "[[fault]]\nkind='sensor_dead'\nsensor='sun'\nat='sunlight'\n"
        "[[fault]]\nkind='wheel_stuck'\nwheel='z'\nat='sunlight 2'\nduration='0.5 orbits'\n"
    )
    acts = resolve(sc.faults, EV)
    starts = {a.fault_index: a.t_ns for a in acts if a.phase == "start"}
    assert starts == {0: 1030 * S, 1: 5700 * S, 2: 8700 * S, 3: 0, 4: 3100 * S}
    ends = {a.fault_index: a.t_ns for a in acts if a.phase == "end"}
    assert ends == {1: 6300 * S, 4: 3100 * S + 2850 * S}
    assert [a.t_ns for a in acts] == sorted(a.t_ns for a in acts)
    sched = FaultSchedule(acts)
    assert [a.fault_index for a in sched.due(1030 * S)] == [3, 0]
    assert sched.remaining == len(acts) - 2


def test_resolve_event_that_never_happens() -> None:
    sc = _sc_with_faults("[[fault]]\nkind='seu'\nat='eclipse_entry 3'\n")
    with pytest.raises(FaultScheduleError, match=r"x.toml: fault\[0\].at: eclipse_entry 3 does not happen"):
        resolve(sc.faults, EV, file="x.toml")
    sc = _sc_with_faults("[[fault]]\nkind='seu'\nat='eclipse_entry - 2000 s'\n")
    with pytest.raises(FaultScheduleError, match="outside the run"):
        resolve(sc.faults, EV)


def test_starting_in_eclipse() -> None:
    ev = OrbitEvents(duration_ns=6000 * S, period_ns=5700 * S, eclipses=((None, 500 * S), (4000 * S, None)))
    sc = _sc_with_faults("[[fault]]\nkind='seu'\nat='sunlight'\n[[fault]]\nkind='seu'\nat='eclipse'\n"
                         "[[fault]]\nkind='seu'\nat='eclipse 2'\n")
    starts = [a.t_ns for a in sorted(resolve(sc.faults, ev), key=lambda a: a.fault_index)]
    assert starts == [500 * S, 0, 4000 * S]


@given(st.sampled_from(["eclipse_entry", "eclipse_exit", "sunlight", "eclipse", "orbit"]),
       st.integers(1, 3), st.integers(-4000, 4000))
def test_resolved_triggers_are_inside_the_run_or_refused(event: str, index: int, offset_s: int) -> None:
    from hil_rig.faults import resolve_trigger
    from hil_rig.scenario import Trigger

    trig = Trigger(event, index, offset_s * S)
    try:
        t = resolve_trigger(trig, EV)
    except FaultScheduleError as exc:
        assert "does not happen" in str(exc) or "outside the run" in str(exc)
        return
    assert 0 <= t <= EV.duration_ns
    # the offset moves the resolved time by exactly itself
    base = resolve_trigger(Trigger(event, index, 0), EV)
    assert t - base == offset_s * S
