"""``hil yield RUN_DIR``: a finished run's work delivered against its bound (docs/yield.md)."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from hil_rig.cli import UsageError


def register(subparsers) -> None:
    p = subparsers.add_parser("yield", help="work delivered by a run against the energy- and thermal-limited bound")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (telemetry.sqlite)")
    p.add_argument("--scenario", metavar="FILE",
                   help="the run's scenario file (default: the shipped one the archive names; its sha256 must match)")
    p.add_argument("--dt", metavar="S", type=float, default=None,
                   help="the bound's time step, whole seconds (default 60; coarser for runs over 10,000 steps)")
    p.add_argument("--end-soc", metavar="WHEN", default="run",
                   help="the SOC the bound must end with: run (the lower of the run's initial and final "
                        "SOC, default), initial, free, or a number in [0, 1]")
    p.add_argument("--replay", action="store_true",
                   help="replay the bound's schedule open-loop through the plant and check every limit")
    p.add_argument("--json", action="store_true", help="machine-readable JSON")
    p.set_defaults(func=cmd_yield)


def _flop(x: float) -> str:
    return f"{x / 1e9:,.2f} GFLOP"


def cmd_yield(a: argparse.Namespace) -> int:
    from hil_rig.yield_bound.analysis import run_yield
    from hil_rig.yield_bound.from_run import YieldInputError
    from hil_rig.yield_bound.model import BoundError

    run_dir = pathlib.Path(a.run_dir)
    if not (run_dir / "telemetry.sqlite").is_file():
        raise UsageError(f"{run_dir}: not a run directory (no telemetry.sqlite)")
    try:
        y = run_yield(run_dir, scenario_path=a.scenario, dt_s=a.dt, end_soc=a.end_soc, replay=a.replay)
    except (YieldInputError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    except BoundError as exc:
        print(f"hil yield: {run_dir}: {exc}", file=sys.stderr)
        return 1
    y.pop("_schedule")
    if a.json:
        print(json.dumps(y, indent=2))
    else:
        ratio = y["ratio"]
        tmax = "none" if y["temp_max_k"] is None else f"{y['temp_max_k'] - 273.15:.1f} C"
        shown = "n/a" if ratio is None else f"{ratio:.3f}"
        print(f"{run_dir}: yield {shown}  delivered {_flop(y['delivered'])}"
              f"  bound {_flop(y['bound'])}  (energy bound {_flop(y['energy_bound'])})")
        print(f"  bound: LP over {y['steps']} steps of {y['dt_s']:g} s, HiGHS {y['solve_s']:.3f} s; SOC floor "
              f"{y['soc_floor']:g}, end SOC >= {y['soc_end_min']:.3f}, temperature limit "
              f"{tmax}")
        print("  bound's mean throttle: " + ", ".join(f"{n} {x:.3f}" for n, x in y["bound_throttle_mean"].items()))
        for o in y["by_orbit"]:  # shares of the whole run's bound (docs/yield.md)
            r = "n/a" if o["share"] is None else f"{o['share']:.3f}"
            bs = "n/a" if o["bound_share"] is None else f"{o['bound_share']:.3f}"
            print(f"  orbit {o['orbit']}: share {r} of the bound (the bound's own {bs}; "
                  f"{_flop(o['delivered'])} delivered, {_flop(o['bound'])} in the bound)")
        for phase, lims in y["binding"].items():
            shown = ", ".join(f"{n} at {k} steps" for n, k in lims.items()) or "none"
            print(f"  bound's binding limits in the {phase}: {shown}")
        rp = y.get("replay")
        if rp is not None:
            verdict = "feasible" if rp["feasible"] else "INFEASIBLE: " + "; ".join(rp["violations"])
            boards = ", ".join(f"{n} {t - 273.15:.2f} C" for n, t in rp["board_temp_max_k"].items())
            print(f"  replay through the plant: {verdict}; SOC min {rp['soc_min']:.4f} (floor {rp['soc_floor']:g}), "
                  f"end {rp['soc_end']:.4f}; payload node max {rp['payload_temp_max_k'] - 273.15:.2f} C; "
                  f"boards max {boards}")
    if a.replay and not y["replay"]["feasible"]:
        return 1
    return 0
