"""bench/core.py runs and prints one JSON object with the figures the issue names.

No timing is asserted here: the figures are benchmark output, not test bounds.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np

import native

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_bench_json_has_the_figures() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "core.py"), "--json", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    for key in ("step_ns_c", "step_ns_cffi", "step_ns_batch", "step_ns_numpy", "ratio_vs_numpy"):
        assert data[key] > 0
    ratio = data["step_ns_numpy"] / data["step_ns_cffi"]  # from the rounded figures
    assert abs(data["ratio_vs_numpy"] - ratio) <= 0.05 + 1e-3 * ratio
    assert data["statistic"] == "median"


def test_bench_rejects_bad_repeats() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "core.py"), "--repeats", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert res.returncode == 2
    assert "--repeats" in res.stderr


def test_run_n_cycles_over_frames_like_single_steps() -> None:
    frames = np.zeros(3, dtype=native.FLIGHT_IN_DTYPE)
    frames["adcs"]["dt_s"] = [0.1, 0.2, 0.3]
    frames["adcs"]["rate_rad_s"] = [[0.01, 0, 0], [0, 0.02, 0], [0, 0, 0.03]]
    frames["eps"]["dt_s"] = 1.0
    frames["eps"]["battery_voltage_v"] = 30.0
    frames["eps"]["battery_current_a"] = [1.0, -2.0, 3.0]
    frames["therm"]["dt_s"] = 1.0
    frames["therm"]["payload_temp_k"] = [300.0, 350.0, 360.0]
    looped, single = native.FlightCore(), native.FlightCore()
    out = looped.run_n(7, frames)
    for k in range(7):
        ref = single.step(frames[k % 3])
    assert native.records_equal(out, ref)
