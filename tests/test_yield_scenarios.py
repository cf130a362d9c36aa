"""The yield scenarios (issue 22, docs/yield.md): hot_case's environment no longer
overheats the battery with the payload idle (it sent the spacecraft to SAFE at
t = 1326 s whatever the payload did), and the shipped scenarios reach their yield
floor on the virtual bench (slow)."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from flight_sw.app import FswConfig
from hil_rig.archive import load_run
from hil_rig.run import run_scenario
from hil_rig.scenario import find_scenario, load_scenario


def test_hot_case_battery_stays_below_fdir_limit_with_the_payload_idle(tmp_path: pathlib.Path) -> None:
    """The shipped hot_case, its first orbit with no jobs: the environment alone must
    leave the battery below the flight software's battery limit, or no payload policy
    can compute in it. At heat_load_factor 2.0 it reached 68.5 C (limit 45 C) and FDIR
    went SAFE."""
    text = find_scenario("hot_case").read_text()
    assert 'workload = "compute"' in text and 'duration = "2 orbits"' in text
    scen = tmp_path / "hot_case_idle.toml"
    scen.write_text(text.replace('workload = "compute"', 'workload = "idle"')
                    .replace('duration = "2 orbits"', 'duration = "1 orbit"'))
    res = run_scenario(load_scenario(scen), out=tmp_path / "run")
    run = load_run(tmp_path / "run")
    tm = run["telemetry"]
    hot = float(np.nanmax(tm["temp_battery_k_true"]))
    assert hot < FswConfig().battery_temp_k[1], f"battery {hot - 273.15:.1f} C"
    modes = {run.enum_names("fsw_mode")[int(m)] for m in np.unique(tm["fsw_mode"])}
    assert "SAFE" not in modes, modes
    assert res.passed, [f"{v.name}: {v.detail}" for v in res.verdicts if not v.passed]
