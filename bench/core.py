"""Benchmark of the C flight core: one frame = ADCS + EPS + thermal step.

    python bench/core.py [--json] [--repeats 7]

Figures (medians over repeats, ns per frame):
- step_ns_c: frames stepped in a C loop (``ohil_flight_run_n`` cycling over
  64 distinct frames, one call for 200,000 frames, timed around the call);
- step_ns_cffi: one ``FlightCore.step()`` Python call per frame (inputs
  written in place beforehand, the documented fast path);
- step_ns_batch: ``FlightCore.step_batch`` with N distinct frames per call
  (output array preallocated);
- step_ns_numpy: the same frame stepped by the pure Python/NumPy reference
  (``native.reference``), measured in this run;
- ratio_vs_numpy = step_ns_numpy / step_ns_cffi.

Timer: the benchmark thread's CPU time (``time.thread_time_ns``), so time the
process spends preempted on a busy machine is not counted. The wall-clock
medians are reported too (``wall``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np

import native
from native.reference import RefFlightCore

TARGETS = {
    "step_ns_c": 300.0,
    "step_ns_batch": 400.0,
    "step_ns_cffi": 1500.0,
    "ratio_vs_numpy": 30.0,
}


def frames(n: int, seed: int = 1) -> np.ndarray:
    """N realistic frames: sun pointing with valid sensors, EPS in sunlight, warm payload."""
    rng = np.random.default_rng(seed)
    ins = np.zeros(n, dtype=native.FLIGHT_IN_DTYPE)
    a, e, t = ins["adcs"], ins["eps"], ins["therm"]
    a["dt_s"] = 0.1
    a["mode"] = native.AdcsMode.SUN_POINT
    a["rate_rad_s"] = rng.normal(0.0, 1e-3, (n, 3))
    a["b_body_t"] = np.array([2e-5, -1e-5, 3e-5]) + rng.normal(0.0, 1e-7, (n, 3))
    sun = np.array([0.3, 0.1, -0.95]) + rng.normal(0.0, 1e-3, (n, 3))
    a["sun_body"] = sun / np.linalg.norm(sun, axis=1)[:, None]
    a["sun_valid"] = 1
    a["sun_eci"] = [0.6, 0.8, 0.0]
    a["b_eci_t"] = [1e-5, 3e-5, -2e-5]
    a["r_eci_m"] = [6.9e6, 0.0, 0.0]
    a["v_eci_m_s"] = [0.0, 1e3, 7.5e3]
    a["wheel_speed_rad_s"] = rng.normal(0.0, 50.0, (n, 3))
    e["dt_s"] = 0.1
    e["battery_voltage_v"] = 30.5 + rng.normal(0.0, 0.01, n)
    e["battery_current_a"] = 2.0 + rng.normal(0.0, 0.1, n)
    e["solar_power_w"] = 300.0
    e["load_power_w"] = 70.0
    e["time_to_eclipse_s"] = 1800.0
    e["eclipse_duration_s"] = 2100.0
    e["payload_demand_w"] = 120.0
    e["load_request_mask"] = 0xFF
    t["dt_s"] = 0.1
    t["temp_k"] = 280.0 + rng.normal(0.0, 5.0, (n, 8))
    t["payload_temp_k"] = 340.0 + rng.normal(0.0, 1.0, n)
    return ins


def as_plain(rec: np.ndarray) -> dict[str, dict[str, Any]]:
    """A record as nested dicts of floats / small arrays: the natural pure-Python input."""
    out: dict[str, dict[str, Any]] = {}
    for sub in rec.dtype.names:
        out[sub] = {}
        for name in rec[sub].dtype.names:
            v = rec[sub][name]
            out[sub][name] = np.array(v) if np.ndim(v) else v.item()
    return out


def per_frame_ns(fn, frames_per_call: int, repeats: int) -> tuple[float, float]:
    """Median (CPU, wall) ns per frame over ``repeats`` calls of ``fn``."""
    cpu, wall = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        fn()
        c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
        cpu.append((c1 - c0) / frames_per_call)
        wall.append((w1 - w0) / frames_per_call)
    return statistics.median(cpu), statistics.median(wall)


def measure(repeats: int) -> dict[str, Any]:
    ins = frames(10_000)

    core = native.FlightCore()
    core.step(ins[0])  # attitude initialized before timing
    n_c = 200_000
    c_frames = np.ascontiguousarray(ins[:64])
    step_ns_c, wall_c = per_frame_ns(lambda: core.run_n(n_c, c_frames), n_c, repeats)

    core = native.FlightCore()
    core.inputs[...] = ins[0]
    step = core.step
    n_py = 20_000

    def cffi_loop() -> None:
        for _ in range(n_py):
            step()

    step_ns_cffi, wall_cffi = per_frame_ns(cffi_loop, n_py, repeats)

    core = native.FlightCore()
    out = np.zeros(len(ins), dtype=native.FLIGHT_OUT_DTYPE)
    step_ns_batch, wall_batch = per_frame_ns(lambda: core.step_batch(ins, out), len(ins), repeats)

    ref = RefFlightCore()
    plain = [as_plain(ins[k]) for k in range(500)]

    def numpy_loop() -> None:
        for rec in plain:
            ref.step(rec)

    step_ns_numpy, wall_numpy = per_frame_ns(numpy_loop, len(plain), repeats)

    result = {
        "step_ns_c": round(step_ns_c, 1),
        "step_ns_cffi": round(step_ns_cffi, 1),
        "step_ns_batch": round(step_ns_batch, 1),
        "step_ns_numpy": round(step_ns_numpy, 1),
        "ratio_vs_numpy": round(step_ns_numpy / step_ns_cffi, 1),
        "ratio_cffi_vs_c": round(step_ns_cffi / step_ns_c, 2),
        "ratio_batch_vs_c": round(step_ns_batch / step_ns_c, 2),
        "frames": {"c": n_c, "cffi": n_py, "batch": len(ins), "numpy": len(plain)},
        "repeats": repeats,
        "statistic": "median",
        "timer": "thread_cpu",
        "wall": {
            "step_ns_c": round(wall_c, 1),
            "step_ns_cffi": round(wall_cffi, 1),
            "step_ns_batch": round(wall_batch, 1),
            "step_ns_numpy": round(wall_numpy, 1),
        },
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    result["targets"] = TARGETS
    result["meets_targets"] = {
        k: (result[k] >= v if k == "ratio_vs_numpy" else result[k] <= v) for k, v in TARGETS.items()
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on one line")
    parser.add_argument(
        "--repeats", type=int, default=7, help="timed repetitions (median reported)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    res = measure(args.repeats)
    if args.json:
        print(json.dumps(res, separators=(",", ":")))
        return 0
    print(f"flight core: ADCS + EPS + thermal per frame, median of {args.repeats}")
    print(f"{'figure':<16}{'ns/frame':>12}{'target':>12}{'met':>6}")
    for key in ("step_ns_c", "step_ns_batch", "step_ns_cffi"):
        print(
            f"{key:<16}{res[key]:>12.1f}{'<= ' + str(int(TARGETS[key])):>12}"
            f"{'yes' if res['meets_targets'][key] else 'NO':>6}"
        )
    print(f"{'step_ns_numpy':<16}{res['step_ns_numpy']:>12.1f}{'(baseline)':>12}")
    print(
        f"{'ratio_vs_numpy':<16}{res['ratio_vs_numpy']:>12.1f}{'>= 30':>12}"
        f"{'yes' if res['meets_targets']['ratio_vs_numpy'] else 'NO':>6}"
    )
    print(f"cffi/C {res['ratio_cffi_vs_c']}x, batch/C {res['ratio_batch_vs_c']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
