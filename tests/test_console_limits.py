"""The dictionary's limits match the plant: a nominal run's telemetry stays inside
every red limit, and the battery's limits are the plant's 4S battery's."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flight_sw.dictionary import hk_channels
from hil_rig.archive import load_run
from hil_rig.plant import PlantParams
from hil_rig.run import Run
from hil_rig.scenario import find_scenario, load_scenario, parse_duration


def _chan(name):
    return {c.name: c for c in hk_channels([])}[name]


def test_battery_limits_are_the_plant_battery_s():
    p = PlantParams()
    v = _chan("battery_v")
    ocv = lambda soc: float(np.interp(soc, p.battery_ocv_soc, p.battery_ocv_v))  # noqa: E731
    # red below the EPS's critical voltage (the OCV at SOC 0.1, hil_rig/run/builder.py)
    assert v.lo == pytest.approx(ocv(0.1))
    # yellow where the SOC's own yellow limit is
    assert v.warn_lo == pytest.approx(ocv(_chan("soc").warn_lo))
    # a full battery charging at the plant's limit is inside the yellow limit
    assert ocv(1.0) + p.battery_max_charge_w / ocv(1.0) * p.battery_r_ohm < v.warn_hi < v.hi
    i = _chan("battery_i_a")
    assert p.battery_max_charge_w / ocv(0.3) < i.warn_hi < i.hi


def test_every_yellow_limit_is_inside_its_red_one():
    for c in hk_channels(["jetson0"]):
        if c.warn_lo is not None and c.lo is not None:
            assert c.lo <= c.warn_lo, c.name
        if c.warn_hi is not None and c.hi is not None:
            assert c.warn_hi <= c.hi, c.name
        for w in (c.warn_lo, c.warn_hi):
            if w is not None:
                assert c.limit_state(w) != "red", c.name


def _red_violations(run_dir):
    """Every (channel, value, t) of the run's housekeeping outside a red limit."""
    data = load_run(run_dir)
    tm, pl = data["telemetry"], data["payload"]
    boards = sorted(set(pl["board"].tolist()))
    out = []
    checked = 0
    for c in hk_channels(boards):
        if c.lo is None and c.hi is None:
            continue
        if c.name.startswith("board."):
            _, b, key = c.name.split(".")
            if key not in pl.dtype.names:
                continue
            m = pl["board"] == b
            vals, ts = np.asarray(pl[key][m], float), pl["t_ns"][m]
        else:
            vals, ts = np.asarray(tm[f"fsw_{c.name}"], float), tm["t_ns"]
        checked += 1
        for v, t in zip(vals, ts, strict=True):
            if not math.isnan(v) and c.limit_state(v) == "red":
                out.append((c.name, float(v), int(t) / 1e9))
    assert checked >= 10
    return out


@pytest.mark.parametrize("duration", [
    "1 orbits",
    pytest.param(None, marks=pytest.mark.slow),  # the whole scenario, 3 orbits
])
def test_nominal_telemetry_stays_inside_the_red_limits(tmp_path, duration):
    sc = load_scenario(find_scenario("nominal"))
    if duration is not None:
        sc = sc.replace(duration=parse_duration(duration, "test"))
    with Run(sc, out=tmp_path / "run", rt_priority=None) as run:
        res = run.finish()
    assert res.passed
    bad = _red_violations(tmp_path / "run")
    assert not bad, bad[:20]
