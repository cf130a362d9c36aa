"""The C loops and the pure Python/NumPy reference agree on the same inputs.

The reference (`native/reference.py`) is the benchmark's baseline; this makes
sure the benchmark compares the same step, and cross-checks the C code against
an independent transcription.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import native
from native.reference import RefFlightCore


def random_frames(rng: np.random.Generator, n: int, corrupt: float) -> np.ndarray:
    core = native.FlightCore()
    ins = core.empty_inputs(n)
    a, e, t = ins["adcs"], ins["eps"], ins["therm"]
    a["dt_s"] = rng.uniform(0.05, 2.0, n)
    a["mode"] = rng.choice([0, 1, 2, 1, 2], n)
    a["rate_rad_s"] = rng.normal(0.0, 0.02, (n, 3))
    a["b_body_t"] = rng.normal(0.0, 3e-5, (n, 3))
    sun = rng.normal(size=(n, 3))
    a["sun_body"] = sun / np.linalg.norm(sun, axis=1)[:, None]
    a["sun_valid"] = rng.random(n) < 0.7
    a["sun_eci"] = [0.6, 0.8, 0.0]
    a["b_eci_t"] = rng.normal(0.0, 3e-5, (n, 3))
    a["r_eci_m"] = [6.9e6, 1e5, 0.0]
    a["v_eci_m_s"] = [0.0, 1e3, 7.5e3]
    a["wheel_speed_rad_s"] = rng.uniform(-700.0, 700.0, (n, 3))
    e["dt_s"] = rng.uniform(0.05, 2.0, n)
    e["battery_voltage_v"] = rng.uniform(24.0, 34.0, n)
    e["battery_current_a"] = rng.normal(0.0, 10.0, n) * (rng.random(n) < 0.8)
    e["solar_power_w"] = rng.uniform(0.0, 400.0, n)
    e["load_power_w"] = rng.uniform(0.0, 200.0, n)
    e["time_to_eclipse_s"] = rng.uniform(0.0, 3600.0, n)
    e["eclipse_duration_s"] = rng.uniform(0.0, 2200.0, n)
    e["payload_demand_w"] = rng.uniform(0.0, 300.0, n)
    e["load_request_mask"] = rng.integers(0, 0xFFFF, n)
    t["dt_s"] = rng.uniform(0.05, 30.0, n)
    t["temp_k"] = rng.uniform(255.0, 290.0, (n, 8))
    t["payload_temp_k"] = rng.uniform(320.0, 370.0, n)
    if corrupt:
        for sub, name in [
            ("adcs", "rate_rad_s"),
            ("adcs", "b_body_t"),
            ("adcs", "wheel_speed_rad_s"),
            ("eps", "battery_current_a"),
            ("eps", "solar_power_w"),
            ("therm", "payload_temp_k"),
            ("therm", "temp_k"),
        ]:
            col = ins[sub][name]
            hit = rng.random(n) < corrupt
            col[hit] = rng.choice([np.nan, np.inf, -np.inf], hit.sum())[
                (...,) + (None,) * (col.ndim - 1)
            ]
    return ins


def compare(c_out: np.ndarray, ref: dict, k: int) -> None:
    for sub, fields in ref.items():
        for name, value in fields.items():
            got = np.asarray(c_out[sub][name])
            want = np.asarray(value)
            if np.issubdtype(got.dtype, np.integer):
                assert np.array_equal(got, want), (k, sub, name, got, want)
            else:
                np.testing.assert_allclose(
                    got, want, rtol=1e-9, atol=1e-12, err_msg=f"{k} {sub}.{name}"
                )


@pytest.mark.parametrize("corrupt", [0.0, 0.03])
def test_c_and_numpy_reference_agree(corrupt: float) -> None:
    rng = np.random.default_rng(2024)
    ins = random_frames(rng, 600, corrupt)
    core, ref = native.FlightCore(), RefFlightCore()
    outs = core.step_batch(ins)
    for k in range(len(ins)):
        compare(outs[k], ref.step(ins[k]), k)
    assert math.isfinite(float(outs["adcs"]["pointing_error_rad"][-1]))
