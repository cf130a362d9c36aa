"""A run's yield: work delivered / the bound, overall and per orbit (docs/yield.md).

The bound is one optimum over the whole run, so it is not split into per-orbit
bounds: an orbit's figure is its **share** of that bound (delivered in the orbit
over the whole run's bound; the shares add up to the run's ratio), beside the
bound's own share of its work in that orbit. (A ratio of the two could exceed 1:
the bound may move work between orbits through the battery and the heat it holds.)

:func:`run_yield` is what ``summary.json`` gets at the end of every run and what
``hil yield RUN_DIR`` prints.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import numpy as np

from hil_rig.yield_bound.from_run import DEFAULT_DT_S, YieldInputError, problem_from_run
from hil_rig.yield_bound.model import BoundError, Schedule, solve

#: the bound's grid is coarsened beyond this many steps (a long run): dt = ceil(seconds / MAX_STEPS)
MAX_STEPS = 10_000


def delivered_per_second(run: Any) -> np.ndarray:
    """Work delivered in each second of the run (FLOP; second i is [i, i+1))."""
    tm = run["telemetry"]
    if "work_flop" not in (tm.dtype.names or ()):
        raise YieldInputError("the archive has no work_flop column: it predates the work count (docs/yield.md)")
    w = np.nan_to_num(np.asarray(tm["work_flop"], float))
    return np.diff(w)


def _by_orbit(per_second: np.ndarray, period_s: float) -> list[float]:
    orbit = (np.arange(len(per_second)) // period_s).astype(int)
    return [float(x) for x in np.bincount(orbit, weights=per_second)]


def bound_per_second(schedule: Schedule, seconds: int) -> np.ndarray:
    """The bound's work spread over the seconds of each of its steps."""
    rate = schedule.work_by_step / schedule.dt_s
    return np.repeat(rate, schedule.dt_s.astype(int))[:seconds]


def _ratio(a: float, b: float) -> float | None:
    return None if b <= 0 else a / b


def by_orbit(delivered: list[float], bound: list[float], total_bound: float) -> list[dict[str, Any]]:
    """Each orbit's work, delivered and in the bound's schedule, and their shares of
    the whole run's bound (module doc)."""
    return [{"orbit": i + 1, "delivered": d, "bound": b, "share": _ratio(d, total_bound),
             "bound_share": _ratio(b, total_bound)}
            for i, (d, b) in enumerate(zip(delivered, bound, strict=False))]


def binding_by_phase(sched: Schedule, solar_w: np.ndarray) -> dict[str, dict[str, int]]:
    """How many of the bound's steps each limit binds at, in the sun (a step with any
    generation) and in eclipse: where energy and where heat limit the compute."""
    sun = np.asarray(solar_w) > 0.0
    out: dict[str, dict[str, int]] = {}
    for phase, sel in (("sun", sun), ("eclipse", ~sun)):
        out[phase] = {name: int(np.count_nonzero(b & sel)) for name, b in sched.binding.items()
                      if np.any(b & sel)}
    return out


def run_yield(run_dir: str | pathlib.Path, scenario: Any = None, *, scenario_path: str | None = None,
              dt_s: float | None = None, end_soc: str | float = "run", replay: bool = False) -> dict[str, Any]:
    """Delivered, bound and their ratio, overall and per orbit; the plain energy
    bound; the solver's time; with ``replay`` the replay's verdict."""
    run_dir = pathlib.Path(run_dir)
    if dt_s is None:
        from hil_rig.archive import load_run

        secs = max(1, len(load_run(run_dir)["telemetry"]) - 1)
        dt_s = float(max(DEFAULT_DT_S, math.ceil(secs / MAX_STEPS)))
    pr, info = problem_from_run(run_dir, scenario, scenario_path=scenario_path, dt_s=dt_s, end_soc=end_soc)
    try:
        delivered = delivered_per_second(info["run"])
    except YieldInputError as exc:
        raise YieldInputError(f"{run_dir}: {exc}") from None
    sched = solve(pr)
    secs = int(info["seconds"])
    period = info["period_s"]
    bound_s = bound_per_second(sched, secs)
    d_orb, b_orb = _by_orbit(delivered, period), _by_orbit(bound_s, period)
    out: dict[str, Any] = {
        "unit": "FLOP",
        "delivered": float(delivered.sum()),
        "bound": sched.work_flop,
        "ratio": _ratio(float(delivered.sum()), sched.work_flop),
        "energy_bound": pr.energy_bound_flop(),
        "by_orbit": by_orbit(d_orb, b_orb, sched.work_flop),
        "binding": binding_by_phase(sched, pr.solar_w),
        "dt_s": dt_s,
        "steps": pr.steps,
        "solve_s": round(sched.solve_s, 4),
        "soc_floor": pr.battery.soc_floor,
        "soc_end_min": pr.battery.soc_end_min,
        "temp_max_k": pr.temp_max_k,
        "bound_throttle_mean": {n: float(np.average(x, weights=sched.dt_s)) for n, x in sched.throttle.items()},
    }
    if replay:
        from hil_rig.yield_bound.replay import replay as do_replay

        out["replay"] = do_replay(pr, sched, info).as_dict()
    out["_schedule"] = sched
    return out


def summary_yield(run_dir: pathlib.Path, scenario: Any) -> dict[str, Any]:
    """``summary.json``'s ``yield``; an error is reported there, never raised: a run's
    verdicts do not depend on the bound (but yield_min, which fails on an error)."""
    try:
        import scipy.optimize  # noqa: F401 - the bound's solver, an extra
    except ImportError:
        return {"error": "the bound needs scipy: pip install 'orbit-hil[yield]'"}
    try:
        y = run_yield(run_dir, scenario)
    except (YieldInputError, BoundError, ValueError, OSError) as exc:
        return {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - never a run's failure: said in summary.json instead
        return {"error": f"the bound could not be computed: {type(exc).__name__}: {exc}"}
    sched = y.pop("_schedule", None)
    if sched is not None:  # the bound's own schedule, for the report's throttle plot
        edges = np.concatenate([[0.0], np.cumsum(sched.dt_s)])
        y["schedule"] = {"t_s": [float(x) for x in edges[:-1]],
                         "throttle": {n: [round(float(v), 4) for v in x] for n, x in sched.throttle.items()}}
    return y
