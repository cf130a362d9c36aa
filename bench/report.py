"""Benchmark of the run report (issue 21): the time to write report.html of one
run, beside that run's own wall time on the same machine, and the report's size.

    python bench/report.py [--json] [--duration D] [--repeat N]

It runs the nominal scenario (default: its full 3 orbits) in virtual time with
the report off, then writes the report ``--repeat`` times (median). Figures:
``run_s`` (the run's wall time, the baseline), ``report_s``, ``ratio``
(report_s / run_s, target <= 0.3) and ``report_mb`` (target <= 5).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

from _figures import print_figures  # noqa: E402 - bench/, the script's own directory


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--duration", default=None, help="override the scenario's duration (default: 3 orbits)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from hil_rig.report import write_report
    from hil_rig.run import Run, RunOptions
    from hil_rig.scenario import find_scenario, load_scenario, parse_duration

    sc = load_scenario(find_scenario("nominal"))
    if args.duration:
        sc = sc.replace(duration=parse_duration(args.duration, "--duration"))
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        d = pathlib.Path(tmp) / "run"
        t0 = time.perf_counter()
        with Run(sc, out=d, options=RunOptions(report=False)) as run:
            res = run.finish()
        run_s = time.perf_counter() - t0
        times = []
        for _ in range(max(args.repeat, 1)):
            t0 = time.perf_counter()
            path = write_report([d])
            times.append(time.perf_counter() - t0)
        report_s = statistics.median(times)
        print_figures({
            "sim_seconds": round(res.summary["sim_seconds"], 1),
            "run_s": round(run_s, 2),
            "report_s": round(report_s, 3),
            "ratio": round(report_s / run_s, 4),
            "report_mb": round(path.stat().st_size / 1e6, 3),
        }, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
