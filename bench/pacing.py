"""Benchmark of real-time pacing (issue 19, item 3; docs/running.md, "Real time:
pacing"): the nominal scenario on the virtual bench (two emulated boards behind
ptys, the simulated supply and relays) paced at real time x 1, 10, 60 and the
highest speed that holds.

    python bench/pacing.py [--json] [--wall S] [--probe-wall S] [--speeds 1,10,60] [--search-from X]

Each speed point is one run of ``--wall`` seconds of wall time (``speed x wall``
simulated; at x 60 at least 10 simulated minutes, the drift figure's span). Per
point: frames, lateness p50 / p99 / max, late frames (> 1 ms), overruns, the
pacing drift, the achieved speed and whether the speed was kept (the run's own
``summary.json`` ``lateness``, docs/running.md).

The highest speed that holds: from ``--search-from`` (default 120) the speed
doubles, one run of ``--probe-wall`` seconds each (stopped as soon as it says
the speed is not kept), until a run says ``speed_kept: false``; the last speed kept is reported with its figures. If
the first probe is not kept, the speed halves instead until one is (or until
it reaches a fixed point already kept).

Baseline, measured in the same run: the bare ``RealTimeClock`` waiting with no
work in between, at a 1/60 s frame (x 60) for 5 s of wall time, at the run
loop's real-time priority where permitted: the wake-up latency that any paced
loop on this host pays. ``ratio_p99_vs_bare`` is a
point's lateness p99 over the bare clock's. Also in the baseline: what a pacer on
relative sleeps (``time.sleep(frame)`` after each frame's work) would have
drifted over the same frames; absolute deadlines drift 0.

Runs from any install (the project as installed; nothing from the source tree).
"""

from __future__ import annotations

import argparse
import itertools
import pathlib
import sys
import tempfile
import time

from _figures import print_figures  # noqa: E402 - bench/, the script's own directory

from hil_rig.clock import RealTimeClock  # noqa: E402
from hil_rig.run import DEFAULT_RT_PRIORITY, Run, RunOptions, loop_priority  # noqa: E402
from hil_rig.scenario import find_scenario, load_scenario  # noqa: E402

NS = 1_000_000_000
_RUNS = itertools.count()
FIGURES = ("frames", "p50_ms", "p99_ms", "max_ms", "late_frames", "overruns", "pacing_drift_s",
           "achieved_speed", "speed_kept")


def paced_run(speed: float, sim_s: float, base: pathlib.Path, stop_when_lost: bool = False) -> dict:
    """The nominal scenario at real time x ``speed`` for ``sim_s`` simulated seconds
    (``stop_when_lost``: stopped as soon as the run says the speed is not kept, a
    probe's answer): its summary.json ``lateness``, and its wall time."""
    from hil_rig.scenario import Duration

    sc = load_scenario(find_scenario("nominal"))
    sc = sc.replace(speed=float(speed), duration=Duration(float(sim_s), "s"))
    out = base / f"x{speed:g}-{next(_RUNS)}"
    t0 = time.monotonic()
    with Run(sc, out=out, options=RunOptions(report=False)) as run:
        if stop_when_lost:
            chunk = max(NS, int(speed * 0.25 * NS))  # a quarter of a second of wall time
            while run.t_ns < run.duration_ns:
                run.step(min(chunk, run.duration_ns - run.t_ns))
                if not run.status()["speed_kept"]:
                    run.stop("speed not kept")
                    break
        res = run.finish()
    lat = dict(res.summary["lateness"] or {})
    lat["wall_s"] = round(time.monotonic() - t0, 1)
    lat["sim_s"] = res.summary["sim_seconds"]
    return lat


def bare_clock(speed: float, wall_s: float) -> dict:
    """The bare clock waiting with no work, for ``wall_s`` of wall time at x ``speed``;
    and a relative-sleep pacer's drift over as many frames."""
    frames = max(3, int(wall_s * speed))
    c = RealTimeClock(scale=speed)
    frame_s = 1.0 / speed
    with loop_priority(DEFAULT_RT_PRIORITY):  # as the run's loop waits (hil_rig.run.priority)
        c.wait_until(0)
        for k in range(1, frames + 1):
            c.wait_until(k * NS)
        t0 = time.monotonic()
        for _ in range(frames):
            time.sleep(frame_s)
    s = c.lateness.summary()
    s["relative_sleep_drift_s"] = round(time.monotonic() - t0 - frames * frame_s, 6)
    return s


def _point(lat: dict, bare_p99: float) -> dict:
    out = {k: lat.get(k) for k in FIGURES}
    for k in ("p50_ms", "p99_ms", "max_ms"):
        out[k] = round(out[k], 3) if out[k] is not None else None
    out["ratio_p99_vs_bare"] = round(lat["p99_ms"] / bare_p99, 1) if bare_p99 > 0 else None
    out["sim_s"], out["wall_s"] = lat.get("sim_s"), lat.get("wall_s")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="one JSON object on one line")
    ap.add_argument("--wall", type=float, default=30.0, help="wall seconds per speed point (default 30)")
    ap.add_argument("--probe-wall", type=float, default=5.0, help="wall seconds per search probe (default 5)")
    ap.add_argument("--speeds", default="1,10,60", help="the fixed speed points (default 1,10,60)")
    ap.add_argument("--search-from", type=float, default=120.0, help="first speed of the search (default 120)")
    ap.add_argument("--search-max", type=float, default=1e6, help="stop the search here (default 1e6)")
    args = ap.parse_args(argv)
    try:
        speeds = [float(x) for x in args.speeds.split(",") if x.strip()]
    except ValueError:
        print(f"bench/pacing.py: --speeds: expected numbers separated by commas, got {args.speeds!r}", file=sys.stderr)
        return 2
    for name, v in (("--wall", args.wall), ("--probe-wall", args.probe_wall), ("--search-from", args.search_from)):
        if not v > 0:
            print(f"bench/pacing.py: {name}: expected a number > 0, got {v!r}", file=sys.stderr)
            return 2
    if not speeds or any(not s > 0 for s in speeds):
        print(f"bench/pacing.py: --speeds: expected numbers > 0, got {args.speeds!r}", file=sys.stderr)
        return 2

    bare = bare_clock(60.0, 5.0)
    bare_p99 = bare["p99_ms"]
    res: dict = {"baseline_bare_clock_x60": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in bare.items()
                                             if k in ("frames", "p50_ms", "p99_ms", "max_ms", "pacing_drift_s",
                                                      "relative_sleep_drift_s")}}
    with tempfile.TemporaryDirectory(prefix="bench-pacing-") as tmp:
        base = pathlib.Path(tmp)
        for sp in speeds:
            sim_s = max(sp * args.wall, 600.0 if sp >= 60 else 0.0, 20.0)
            res[f"x{sp:g}"] = _point(paced_run(sp, sim_s, base), bare_p99)
        kept = {sp: res[f"x{sp:g}"] for sp in speeds if res[f"x{sp:g}"]["speed_kept"]}
        probes, runs = [], {}

        def probe(sp: float) -> bool:
            lat = paced_run(sp, max(sp * args.probe_wall, 20.0), base, stop_when_lost=True)
            probes.append([sp, lat["speed_kept"], lat["achieved_speed"]])
            runs[sp] = lat
            return bool(lat["speed_kept"])

        sp = args.search_from
        if probe(sp):  # up, doubling, while kept
            while sp * 2 <= args.search_max and probe(sp * 2):
                sp *= 2
        else:  # down, halving, to the first kept (no lower than the fixed points kept)
            while sp / 2 > max(kept, default=0.0) and not probe(sp / 2):
                sp /= 2
        held = [s for s, lat in runs.items() if lat["speed_kept"]]
        best = max(held + list(kept), default=None)
        res["search_probes"] = probes  # [speed, kept, achieved]
        res["highest_speed_kept"] = best
        if best is not None and best in runs:
            res[f"x{best:g}"] = _point(runs[best], bare_p99)
    print_figures(res, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
