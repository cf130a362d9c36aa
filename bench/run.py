"""Benchmark of the main job: simulated seconds per wall second of the nominal
scenario in virtual time, with everything in the loop (environment, plant at
10 Hz, flight software with its C core, the two emulated boards behind ptys
over their serial links, the simulated Modbus supply and relays, archive,
judges).

    python bench/run.py [--json] [--duration D] [--scenario NAME] [--workload idle|compute]
                        [--repeat N] [--breakdown] [--no-pipeline] [--no-c-frames] [--no-rt]

``--breakdown`` also reports where a simulated second goes (ms of wall time per
simulated second, by part: rig sensors, plant step, record, power loop; the
flight software's ADCS frame and payload link), timed by wrapping those methods.

Baseline, measured in the same run: the rig's environment and plant alone,
stepped at 10 Hz for the same simulated span (no flight software, no boards,
no instruments). ``ratio_vs_plant_only`` says how much of the plant-only speed
the full loop keeps. Each figure is the median of ``--repeat`` runs. Also
reported: CPU ms per simulated second of this process (every thread) and of the
emulated boards (their agents, and their job workers), read from /proc.

The run loop runs at real-time priority 1 where permitted, as ``hil run`` does
(``Run.rt_priority``); ``rt_priority`` in the output says what applied (0: the
normal policy). ``--no-rt`` turns it off, to measure what it gives.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

# The project comes from wherever it is installed (editable or not): putting the
# source tree first on sys.path would shadow a non-editable install with a tree
# whose C core was never built. _figures is beside this script (sys.path[0]).
from _figures import print_figures  # noqa: E402 - bench/, the script's own directory

from hil_rig.run import DEFAULT_RT_PRIORITY, Run, RunOptions  # noqa: E402
from hil_rig.scenario import find_scenario, load_scenario, parse_duration  # noqa: E402

NS = 1_000_000_000


#: --breakdown: (class, method, part). Wall time inside each, per simulated second.
#: Nested parts: ``fsw_frames`` holds ``fsw_adcs_frame`` (which holds ``rig_sensors``)
#: and ``fsw_payload_link``; ``rig_advance`` holds ``fsw_frames`` and ``fsw_c_frames``
#: (control frames run in C through the plant's port, their plant steps included);
#: ``rig_second`` holds ``rig_record`` and ``rig_power_loop``.
def _breakdown_points() -> list[tuple[type, str, str]]:
    from flight_sw.app import FlightSoftware
    from hil_rig.plant import Plant
    from hil_rig.power_loop import PowerLoop
    from hil_rig.run.recorder import Recorder

    return [(Run, "_advance", "rig_advance"), (Run, "_second", "rig_second"), (Recorder, "second", "rig_record"),
            (PowerLoop, "update", "rig_power_loop"), (Plant, "sensors", "rig_sensors"),
            (Plant, "step_row", "rig_plant_step"), (Plant, "step", "rig_plant_step"), (FlightSoftware, "step_to", "fsw_frames"),
            (FlightSoftware, "_control", "fsw_adcs_frame"),
            (FlightSoftware, "step_frames", "fsw_c_frames"), (FlightSoftware, "_payload_step", "fsw_payload_link")]


class _Timers:
    """Wraps methods with wall-clock accumulators (a little overhead per call)."""

    def __init__(self) -> None:
        self.acc: dict[str, float] = {}
        self._saved: list[tuple[type, str, object]] = []

    def install(self) -> None:
        for cls, name, part in _breakdown_points():
            if not hasattr(cls, name):
                continue
            f = getattr(cls, name)
            self._saved.append((cls, name, f))
            self.acc.setdefault(part, 0.0)

            def w(*a, _f=f, _p=part, **k):  # type: ignore[no-untyped-def]
                t0 = time.perf_counter()
                try:
                    return _f(*a, **k)
                finally:
                    self.acc[_p] += time.perf_counter() - t0

            setattr(cls, name, w)

    def remove(self) -> None:
        for cls, name, f in self._saved:
            setattr(cls, name, f)
        self._saved.clear()


def breakdown_ms(acc: dict[str, float], sim_s: float, loop_wall_s: float) -> dict[str, float]:
    """Per simulated second, ms: each part, plus the exclusive remainders."""
    ms = {k: v / sim_s * 1e3 for k, v in acc.items()}
    out = dict(ms)
    out["fsw_other"] = ms["fsw_frames"] - ms["fsw_adcs_frame"] - ms["fsw_payload_link"]
    out["fsw_adcs_frame_excl_sensors"] = ms["fsw_adcs_frame"] - ms["rig_sensors"]
    out["rig_advance_own"] = ms["rig_advance"] - ms["fsw_frames"] - ms["fsw_c_frames"] - ms["rig_plant_step"]
    out["rig_second_other"] = ms["rig_second"] - ms["rig_record"] - ms["rig_power_loop"]
    out["rig_total"] = (ms["rig_sensors"] + ms["rig_plant_step"] + out["rig_advance_own"] + ms["rig_second"])
    out["loop_total"] = loop_wall_s / sim_s * 1e3
    return {k: round(v, 3) for k, v in sorted(out.items())}


def _children_cpu_s() -> tuple[float, float]:
    """CPU seconds (user + system) so far of this process's live children (the
    emulated boards' agents) and of their descendants (the job workers), from
    /proc; zeros where /proc is absent."""
    import os

    me = os.getpid()
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for d in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            f = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(d.name)] = int(f[1])
        cpu[int(d.name)] = (int(f[11]) + int(f[12])) / tick
    children = grandchildren = 0.0
    for pid in cpu:
        depth, p = 1, parent.get(pid)
        while p is not None and p != me and p > 1:
            depth, p = depth + 1, parent.get(p)
        if p == me:
            if depth == 1:
                children += cpu[pid]
            else:
                grandchildren += cpu[pid]
    return children, grandchildren


def full_run(scenario, tmp: pathlib.Path, breakdown: bool = False,
             c_frames: bool = True, rt: bool = True) -> dict:
    out = tmp / f"run-{time.monotonic_ns()}"
    opts = RunOptions(c_frames=c_frames)
    run = Run(scenario, out=out, options=opts, rt_priority=DEFAULT_RT_PRIORITY if rt else None)
    timers = _Timers()
    if breakdown:  # before start(): the flight software's executive binds its tasks at start
        timers.install()
    t0 = time.perf_counter()
    try:
        run.start()
    except BaseException:
        timers.remove()
        raise
    timers.acc = dict.fromkeys(timers.acc, 0.0)  # the loop only
    t1 = time.perf_counter()
    c1, k1 = time.process_time(), _children_cpu_s()
    try:
        run.run_until(run.duration_ns)
    finally:
        timers.remove()
    t2 = time.perf_counter()
    c2, k2 = time.process_time(), _children_cpu_s()
    agents_s, workers_s = k2[0] - k1[0], k2[1] - k1[1]
    commands = sum(lk.stats.commands for lk in run.links.values())
    result = run.finish()
    sim_s = run.duration_ns / NS
    shutil.rmtree(out, ignore_errors=True)
    res = {
        "sim_s": sim_s, "loop_wall_s": t2 - t1, "startup_wall_s": t1 - t0,
        # CPU per simulated second: this process (every thread) and the boards (agents + job workers)
        "main_cpu_ms_per_sim_s": (c2 - c1) * 1e3 / sim_s, "boards_cpu_ms_per_sim_s": (agents_s + workers_s) * 1e3 / sim_s,
        "agents_cpu_ms_per_sim_s": agents_s * 1e3 / sim_s, "workers_cpu_ms_per_sim_s": workers_s * 1e3 / sim_s,
        "speedup": sim_s / (t2 - t1), "speedup_incl_startup": sim_s / (t2 - t0),
        "link_commands_per_sim_s": commands / sim_s, "passed": result.passed,
        "jobs_completed": result.summary.get("fsw", {}).get("jobs_completed", 0),
        "rt_priority": run.rt_applied or 0,
    }
    if breakdown:
        res["breakdown_ms_per_sim_s"] = breakdown_ms(timers.acc, sim_s, t2 - t1)
    return res


def plant_only(scenario, duration_ns: int) -> float:
    """Environment + plant at 10 Hz, no flight software, no boards: sim s per wall s."""
    import dataclasses

    from hil_rig.environment import Environment
    from hil_rig.plant import ActuatorInputs, Plant
    from hil_rig.run import build_orbit, plant_params

    orbit = build_orbit(scenario)
    env = Environment(orbit, scenario.epoch)
    params = plant_params(scenario)
    plant = Plant(dataclasses.replace(params), seed=scenario.seed)
    act = ActuatorInputs()
    dt = NS // 10
    chunk = 6000
    t0 = time.perf_counter()
    import numpy as np

    for c0 in range(0, duration_ns // dt, chunk):
        n = min(chunk, duration_ns // dt - c0)
        s = env.sample((np.arange(n) + c0) * dt)
        for i in range(n):
            plant.step(dt, act, s.row(i), 10.0)
            if i % 10 == 0:
                plant.sensors()
    return duration_ns / NS / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object on one line")
    ap.add_argument("--scenario", default="nominal")
    ap.add_argument("--duration", default=None, help="override the scenario duration, e.g. '30 min'")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workload", choices=["compute", "idle"], default=None,
                    help="override the workload (idle: no jobs on the boards)")
    ap.add_argument("--no-pipeline", action="store_true",
                    help="links send no time sync ahead (ORBIT_HIL_LINK_PIPELINE=0; to measure what it gives)")
    ap.add_argument("--no-c-frames", action="store_true",
                    help="one Python round trip per control frame instead of the C port (to measure what it gives)")
    ap.add_argument("--no-rt", action="store_true",
                    help="run the loop at the normal scheduling policy, not real-time priority 1 "
                         "(to measure what that gives)")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time the loop's parts (ms per simulated second; slows the run a little)")
    args = ap.parse_args()
    sc = load_scenario(find_scenario(args.scenario))
    if args.duration:
        sc = sc.replace(duration=parse_duration(args.duration, "--duration"))
    if args.workload:
        import dataclasses

        sc = sc.replace(workload=dataclasses.replace(sc.workload, kind=args.workload))
    if args.no_pipeline:
        from firmware_bridge.link import PIPELINE_ENV

        os.environ[PIPELINE_ENV] = "0"
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="hil-bench-run-"))
    try:
        runs = [full_run(sc, tmp, args.breakdown, not args.no_c_frames, not args.no_rt)
                for _ in range(args.repeat)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sim_ns = int(runs[0]["sim_s"] * NS)
    base = statistics.median(plant_only(sc, min(sim_ns, 3600 * NS)) for _ in range(args.repeat))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], float | int)}
    res = {
        "scenario": sc.name, "workload": sc.workload.kind, "sim_s": round(med["sim_s"], 1),
        "speedup": round(med["speedup"], 1),
        "speedup_incl_startup": round(med["speedup_incl_startup"], 1),
        "startup_wall_s": round(med["startup_wall_s"], 2),
        "plant_only_speedup": round(base, 1),
        "ratio_vs_plant_only": round(med["speedup"] / base, 4),
        "link_commands_per_sim_s": round(med["link_commands_per_sim_s"], 2),
        "main_cpu_ms_per_sim_s": round(med["main_cpu_ms_per_sim_s"], 3),
        "boards_cpu_ms_per_sim_s": round(med["boards_cpu_ms_per_sim_s"], 3),
        "agents_cpu_ms_per_sim_s": round(med["agents_cpu_ms_per_sim_s"], 3),
        "workers_cpu_ms_per_sim_s": round(med["workers_cpu_ms_per_sim_s"], 3),
        "jobs_completed": int(med["jobs_completed"]),
        "passed": all(r["passed"] for r in runs),
        "target_speedup": 1000, "repeat": args.repeat, "link_pipeline": not args.no_pipeline, "c_frames": not args.no_c_frames,
        # the run loop's real-time priority as applied (0: the normal policy, or not permitted)
        "rt_priority": min(r["rt_priority"] for r in runs),
    }
    if args.breakdown:
        parts = runs[0]["breakdown_ms_per_sim_s"]
        res["breakdown_ms_per_sim_s"] = {k: round(statistics.median(r["breakdown_ms_per_sim_s"][k] for r in runs), 3)
                                         for k in parts}
    print_figures(res, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
