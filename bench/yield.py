"""Benchmark: compute yield of the shipped scenarios, and the bound's solver time.

    python bench/yield.py [--json] [--repeat N] [--scenarios a,b,...]

Figures (all measured in this run, on the virtual bench in virtual time):
- yield_ratio_<scenario>: work delivered / the bound (summary.json ``yield.ratio``);
- bound_s: median HiGHS time of the bound for the nominal run (3 orbits) at 60 s;
- baseline_bound_s: the same LP at 240 s steps (a quarter of the variables);
  bound_vs_baseline: their ratio;
- bound_build_s: median time to build the bound's problem from the archive;
- replay_s: the open-loop replay of the bound's schedule through the plant;
- planner_us: the flight software's sun budget (``flight_sw.payload.sun_budget_w``,
  once a second in the EPS step), median time per call; baseline_planner_us: an
  empty call of the same arity, and planner_vs_baseline their ratio.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

from flight_sw.payload import sun_budget_w
from hil_rig.run import run_scenario
from hil_rig.scenario import find_scenario, load_scenario
from hil_rig.yield_bound import solve
from hil_rig.yield_bound.from_run import problem_from_run
from hil_rig.yield_bound.replay import replay

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _figures import print_figures  # noqa: E402

SCENARIOS = ("nominal", "eclipse_stress", "hot_case", "inclined_30", "energy_heat")


def _planner_us(repeat: int, calls: int = 20_000) -> dict:
    def empty(a: float, b: float, c: float, d: float, e: float, f: float) -> float:
        return 0.0

    times = {}
    for name, fn in (("planner_us", sun_budget_w), ("baseline_planner_us", empty)):
        per = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            for i in range(calls):
                fn(95.0, 12.0, 0.9 + i * 1e-7, 2.8e5, 0.98, 1200.0)
            per.append((time.perf_counter() - t0) / calls * 1e6)
        times[name] = round(statistics.median(per), 3)
    times["planner_vs_baseline"] = round(times["planner_us"] / times["baseline_planner_us"], 2)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    a = ap.parse_args()
    res: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-yield-") as tmp:
        runs = {}
        for name in a.scenarios.split(","):
            sc = load_scenario(find_scenario(name))
            r = run_scenario(sc, out=pathlib.Path(tmp) / name)
            y = r.summary["yield"]
            res[f"yield_ratio_{name}"] = None if "error" in y else round(y["ratio"], 4)
            res[f"passed_{name}"] = r.passed
            runs[name] = (sc, pathlib.Path(tmp) / name)
        if "nominal" in runs:
            sc, d = runs["nominal"]
            build, fine, coarse = [], [], []
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                pr, info = problem_from_run(d, sc, dt_s=60.0)
                build.append(time.perf_counter() - t0)
                fine.append(solve(pr).solve_s)
                pr4, _ = problem_from_run(d, sc, dt_s=240.0)
                coarse.append(solve(pr4).solve_s)
            res["bound_s"] = round(statistics.median(fine), 4)
            res["baseline_bound_s"] = round(statistics.median(coarse), 4)
            res["bound_vs_baseline"] = round(res["bound_s"] / res["baseline_bound_s"], 2)
            res["bound_build_s"] = round(statistics.median(build), 3)
            t0 = time.perf_counter()
            rp = replay(pr, solve(pr), info)
            res["replay_s"] = round(time.perf_counter() - t0, 3)
            res["replay_feasible"] = rp.feasible
    res.update(_planner_us(a.repeat))
    print_figures(res, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
