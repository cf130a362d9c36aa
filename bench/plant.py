"""Benchmark: environment + plant speed, and the cost of 24 h of eclipse contacts.

    python bench/plant.py [--json] [--repeat N]

Figures (medians over --repeat runs, all measured in this run):
- speedup_cpu: the same from this process's CPU time (less sensitive to a busy machine).
- speedup: simulated seconds per wall second for a 24 h run at 10 Hz physics:
  the environment precomputed for all 864,000 steps (batch), then the C plant
  stepped through them (batch path, actuators fixed per 1 s control frame, i.e.
  one C call per 10 physics steps, as the runner drives it).
- baseline_speedup: the same span driven the naive way, environment sampled and
  plant stepped one physics step at a time from Python; measured on 10 simulated
  minutes and extrapolated (stated in the output).
- contacts_24h_s: wall seconds to find every eclipse contact (to 1 ms) in 24 h.
- baseline_contacts_24h_s: brute-force illumination at 1 s steps over 24 h
  (resolves contacts only to 1 s).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time

import numpy as np

from hil_rig.eclipse import find_contacts_ns, illumination
from hil_rig.environment import Environment
from hil_rig.orbit import Orbit
from hil_rig.plant import ActuatorInputs, Plant, PlantParams
from hil_rig.sun import sun_teme_m

EPOCH = dt.datetime(2024, 3, 20, tzinfo=dt.UTC)
DT_NS = 100_000_000
DAY_NS = 86_400 * 10**9


def _orbit() -> Orbit:
    return Orbit.from_elements(alt_km=550, inc_deg="sso", ltan="10:30", epoch=EPOCH)


def run_batch() -> tuple[float, float]:
    """24 h at 10 Hz; returns (wall seconds, CPU seconds of this process)."""
    orbit = _orbit()
    t0 = time.perf_counter()
    c0 = time.process_time()
    env = Environment(orbit, EPOCH)
    samples = env.sample(np.arange(0, DAY_NS, DT_NS, dtype=np.int64))
    plant = Plant(PlantParams(), seed=1)
    per_frame = 10  # 1 s control frame
    for k in range(0, len(samples), per_frame):
        cmd = ActuatorInputs(wheel_torque_nm=(1e-4 * ((k // 600) % 2), 0.0, 0.0))
        plant.run(samples, DT_NS, cmd, 10.0, start=k, stop=k + per_frame)
    return time.perf_counter() - t0, time.process_time() - c0


def run_naive(span_s: int = 600) -> float:
    """Per-step env sample + plant.step from Python; returns wall seconds for ``span_s``."""
    orbit = _orbit()
    env = Environment(orbit, EPOCH)
    plant = Plant(PlantParams(), seed=1)
    t0 = time.perf_counter()
    for k in range(span_s * 10):
        row = env.sample(np.array([k * DT_NS], dtype=np.int64)).row(0)
        plant.step(DT_NS, ActuatorInputs(), row, 10.0)
    return time.perf_counter() - t0


def run_contacts() -> float:
    orbit = _orbit()
    start = orbit.epoch_ns
    t0 = time.perf_counter()
    found = find_contacts_ns(orbit, start, start + DAY_NS)
    wall = time.perf_counter() - t0
    assert len(found) >= 14
    return wall


def run_brute_contacts() -> float:
    orbit = _orbit()
    t = orbit.epoch_ns + np.arange(0, 86_400, 1, dtype=np.int64) * 10**9
    t0 = time.perf_counter()
    r, _ = orbit.propagate(t)
    f = illumination(r, sun_teme_m(t))
    np.nonzero(np.diff((f < 1).astype(np.int8)))
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    runs = [run_batch() for _ in range(a.repeat)]
    batch = statistics.median(w for w, _ in runs)
    batch_cpu = statistics.median(c for _, c in runs)
    naive_span = 600
    naive = statistics.median(run_naive(naive_span) for _ in range(a.repeat)) * (86_400 / naive_span)
    contacts = statistics.median(run_contacts() for _ in range(max(a.repeat, 5)))
    brute = statistics.median(run_brute_contacts() for _ in range(max(a.repeat, 5)))
    out = {
        "speedup": round(86_400 / batch, 1),
        "wall_24h_s": round(batch, 3),
        "speedup_cpu": round(86_400 / batch_cpu, 1),
        "baseline_speedup": round(86_400 / naive, 1),
        "baseline": "per-step Python env+plant, 600 s measured, extrapolated to 24 h",
        "speedup_ratio": round(naive / batch, 1),
        "contacts_24h_s": round(contacts, 4),
        "baseline_contacts_24h_s": round(brute, 4),
        "baseline_contacts": "brute-force illumination at 1 s steps (1 s resolution)",
        "contacts_ratio": round(brute / contacts, 2),
        "targets": {"speedup_min": 20_000, "contacts_24h_s_max": 0.5},
        "repeat": a.repeat,
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    if a.json:
        print(json.dumps(out))
        return 0
    print(f"{'figure':34} {'value':>12} {'baseline':>12} {'ratio':>8}")
    print(f"{'env+plant speedup (x real time)':34} {out['speedup']:>12} {out['baseline_speedup']:>12} {out['speedup_ratio']:>8}")
    print(f"{'contacts for 24 h (s)':34} {out['contacts_24h_s']:>12} {out['baseline_contacts_24h_s']:>12} {out['contacts_ratio']:>8}")
    print(f"{'env+plant speedup from CPU time':34} {out['speedup_cpu']:>12}")
    print(f"baselines: {out['baseline']}; {out['baseline_contacts']}. medians of {a.repeat}; "
          f"load average {out['loadavg_1min']} on {out['cpus']} CPUs.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
