"""Benchmark: Python cost of one flight-software frame at each rate group.

The whole flight software runs (C core loops included) against the fake plant,
with in-process payload links that answer at once: payload I/O is excluded.
Each rate group is timed where the executive runs it. Baseline, measured in the
same run: the bare C-core steps that the 1 Hz frame calls (native.Eps.step and
native.Thermal.step through cffi), so the ratio shows what the Python flight
software costs on top of its C loops.

    python bench/fsw.py [--json] [--seconds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import native
from flight_sw.app import FlightSoftware, FswConfig
from flight_sw.modes import ModeConfig
from flight_sw.payload import BoardConfig
from flight_sw.testing import FakeClock, FakePlant, FakeSwitches

NS = 1_000_000_000
TLE = (
    "ISS\n"
    "1 25544U 98067A   26079.50000000  .00016717  00000-0  10270-3 0  9994\n"
    "2 25544  51.6416 247.4627 0006703 130.5360 325.0288 15.72125391563537"
)


class InstantLink:
    """A PayloadLink that answers at once: the benchmark excludes payload I/O."""

    def __init__(self) -> None:
        self.jobs: dict[int, int] = {}
        self.n = 0

    def ping(self): return 0.0
    def housekeeping(self): return {"temps_k": {"cpu": 320.0}, "power_w": 10.0}
    def set_throttle(self, x): return {"throttle": x}
    def time_sync(self, t_ns): return {"t_ns": t_ns}
    def start_job(self, workload, params, deadline_s):
        self.n += 1
        self.jobs[self.n] = 0
        return self.n
    def job_status(self, job_id):
        self.jobs[job_id] += 1
        done = self.jobs[job_id] > 30
        return {"state": "done" if done else "running", "digest": "ab" if done else "", "checkpoint_step": 1}
    def checkpoint(self, job_id): return {"checkpoint_step": 1}
    def suspend(self, job_id): return {"checkpoint_step": 1}
    def resume(self, job_id): return {}
    def cancel(self, job_id): return {}
    def reboot(self): return {}


def measure(seconds: int) -> dict:
    clock = FakeClock()
    plant = FakePlant(clock)
    boards = [BoardConfig("b0", 1), BoardConfig("b1", 2)]
    links = {"b0": InstantLink(), "b1": InstantLink()}
    cfg = FswConfig(boards=boards, eps={"soc_init": 0.9}, modes=ModeConfig(rate_persist_s=1.0))
    fsw = FlightSoftware(cfg, clock, plant, plant, FakeSwitches(), links, TLE, b"k" * 32)
    for _ in range(5000):
        fsw.command("queue_job", workload="matmul", params="{}", deadline_s=1e6, verify="redundant")
    fsw.step_to(60 * NS)  # warm up: reach COMPUTE, jobs flowing
    fsw.executive.profile = {}
    t0 = time.perf_counter()
    fsw.step_to((60 + seconds) * NS)
    wall = time.perf_counter() - t0
    prof = fsw.executive.profile
    med = {g: statistics.median(v) * 1e6 for g, v in prof.items()}
    # baseline: the C steps of the 1 Hz frame alone, through cffi
    eps, th = native.Eps({"soc_init": 0.9}), native.Thermal()
    eps.inputs["dt_s"] = 1.0
    eps.inputs["battery_voltage_v"] = 32.0
    th.inputs["dt_s"] = 1.0
    base = []
    for _ in range(2000):
        a = time.perf_counter()
        eps.step()
        th.step()
        base.append(time.perf_counter() - a)
    base_us = statistics.median(base) * 1e6
    st = fsw.stats()
    fsw.close()
    return {
        "frame_us_10hz": round(med["control"], 2),
        "frame_us_1hz": round(med["housekeeping"], 2),
        "frame_us_0p1hz": round(med["planning"], 2),
        "baseline_c_steps_us": round(base_us, 3),
        "ratio_1hz_vs_c_steps": round(med["housekeeping"] / base_us, 1),
        "target_frame_us_1hz": 200.0,
        "speedup_vs_realtime": round(seconds / wall, 1),
        "simulated_s": seconds,
        "jobs_completed": st["jobs_completed"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object on one line")
    ap.add_argument("--seconds", type=int, default=600, help="simulated seconds to time (default 600)")
    a = ap.parse_args(argv)
    r = measure(a.seconds)
    if a.json:
        print(json.dumps(r))
        return 0
    print(f"{'figure':<24}{'value':>12}")
    for k, v in r.items():
        print(f"{k:<24}{v:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
