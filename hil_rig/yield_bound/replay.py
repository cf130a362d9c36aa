"""The bound's schedule, open-loop through the real plant: is it feasible?

The plant (``hil_rig.plant.Plant``, the C physics the run used) steps at the
run's 10 Hz under the run's own environment (recomputed from the scenario by
``hil_rig.environment``), with the run's attitude held each second from the
archive (``q_bi_*_true``), the bus's other loads of the run (base, wheels,
torquers and heaters; the part above base and wheels is applied as heater
power), the scenario's plant faults (``hot_case``) at their times, and the
payload drawing what the schedule says. Each board's own temperature comes from
the emulator's board model (``firmware_bridge.emulator.SimBoard``) running the
schedule's throttle under load. Every second the replay checks the limits the
bound was held to: SOC floor (and the end SOC), the payload node and every
board's hottest zone against the temperature limit.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hil_rig.constants import NS_PER_S
from hil_rig.yield_bound.model import Schedule, YieldProblem

PHYSICS_HZ = 10


@dataclasses.dataclass(frozen=True)
class ReplayResult:
    """What the plant did under the schedule, against the bound's limits."""

    soc_min: float
    soc_end: float
    payload_temp_max_k: float
    board_temp_max_k: dict[str, float]
    soc_floor: float
    soc_end_min: float
    temp_max_k: float | None
    work_flop: float
    solar_rms_err_w: float  # replayed generation against the run's, per second
    solar_mean_err_w: float
    violations: tuple[str, ...]
    soc_trace: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0), repr=False)  # per second
    net_trace: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0), repr=False)  # solar - load, W

    @property
    def feasible(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.endswith("_trace")}
        d["feasible"] = self.feasible
        d["violations"] = list(self.violations)
        return d


def throttle_per_second(schedule: Schedule, seconds: int) -> dict[str, np.ndarray]:
    """Each board's throttle for every second of the run (held over each step)."""
    edges = np.concatenate([[0.0], np.cumsum(schedule.dt_s)])
    k = np.searchsorted(edges, np.arange(seconds) + 0.5) - 1
    return {n: x[np.clip(k, 0, len(x) - 1)] for n, x in schedule.throttle.items()}


def replay(pr: YieldProblem, schedule: Schedule, info: dict[str, Any]) -> ReplayResult:
    """Run the schedule through the plant (module doc)."""
    from firmware_bridge.emulator import KINDS, SimBoard
    from hil_rig.environment import Environment
    from hil_rig.faults import resolve
    from hil_rig.plant import ActuatorInputs, Plant, PlantFaults
    from hil_rig.run.mission import build_orbit, orbit_events, plant_params

    sc, run, secs = info["scenario"], info["run"], int(info["seconds"])
    tm = run["telemetry"]
    qcols = ("q_bi_w_true", "q_bi_x_true", "q_bi_y_true", "q_bi_z_true")
    if any(c not in (tm.dtype.names or ()) for c in qcols):
        raise ValueError("the archive records no attitude (q_bi_*_true): it predates the yield replay; "
                         "run the scenario again")
    q = np.column_stack([np.asarray(tm[c], float) for c in qcols])
    other = np.asarray(info["other_w"], float)  # the bus's other loads per second, as the bound took them
    solar_run = np.nan_to_num(np.asarray(tm["solar_power_w_true"], float))[1:]
    params = plant_params(sc)
    plant = Plant(params, seed=sc.seed)
    orbit = build_orbit(sc)
    env = Environment(orbit, sc.epoch)
    events = orbit_events(env, sc, float(orbit.period_s))
    hot = sorted((a.t_ns, float(a.param("heat_load_factor", 1.5)) if a.phase == "start" else 1.0)
                 for a in resolve(sc.faults, events) if a.kind == "hot_case")
    fixed_w = params.bus_base_w + 3 * params.wheel_power_w
    thr = throttle_per_second(schedule, secs)
    boards = {b.name: b for b in pr.boards}
    kinds = {b.name: b.kind for b in pr.boards}
    sims = {n: SimBoard(kinds[n]) for n in boards}
    for n, sb in sims.items():
        if boards[n].thermal is not None:
            sb.temp_k = boards[n].thermal.t0_k
    offs = {n: max(KINDS[kinds[n]]["zones"].values()) for n in boards}
    dt_ns = NS_PER_S // PHYSICS_HZ
    chunk = 600
    soc_min, ptemp_max = plant.soc, plant.temps[0]
    btemp_max = dict.fromkeys(boards, -np.inf)
    solar_err = []
    socs = [plant.soc]
    nets: list[float] = []
    work = 0.0
    faults = PlantFaults()
    hi = 0
    for c0 in range(0, secs, chunk):
        c1 = min(secs, c0 + chunk)
        t = (np.arange(c0 * PHYSICS_HZ, c1 * PHYSICS_HZ, dtype=np.int64)) * dt_ns
        es = env.sample(t)
        for s in range(c0, c1):
            t_s = s * NS_PER_S
            while hi < len(hot) and hot[hi][0] <= t_s:
                faults = dataclasses.replace(faults, hot_case=hot[hi][1])
                hi += 1
            plant.q = q[s]
            plant.pi_b = (0.0, 0.0, 0.0)
            act = ActuatorInputs(heater_w=max(0.0, float(other[s]) - fixed_w))
            pw = 0.0
            for n, b in boards.items():
                x = float(thr[n][s])
                pw += b.idle_w + b.span_w * x
                work += b.rated_flops * x
                sims[n].advance(t_s, 1.0, x)
            k = (s - c0) * PHYSICS_HZ
            plant.run(es, dt_ns, act, pw, faults, start=k, stop=k + PHYSICS_HZ)
            solar_err.append(plant.solar_power_w - solar_run[s])
            soc_min = min(soc_min, plant.soc)
            socs.append(plant.soc)
            nets.append(plant.solar_power_w - plant.load_power_w)
            ptemp_max = max(ptemp_max, plant.temps[0])
            for n, sb in sims.items():
                x = float(thr[n][s])
                sb.advance(t_s + NS_PER_S, 1.0, x)
                btemp_max[n] = max(btemp_max[n], sb.temp_k + offs[n] * x)
    bat = pr.battery
    v = []
    if soc_min < bat.soc_floor:
        v.append(f"SOC {soc_min:.4f} below the floor {bat.soc_floor}")
    if plant.soc < bat.soc_end_min - 1e-9 and plant.soc < 1.0 - 1e-9:
        v.append(f"end SOC {plant.soc:.4f} below the bound's end SOC {bat.soc_end_min:.4f}")
    if pr.temp_max_k is not None:
        if ptemp_max > pr.temp_max_k:
            v.append(f"payload node {ptemp_max:.2f} K above the limit {pr.temp_max_k:.2f} K")
        for n, tb in btemp_max.items():
            if tb > pr.temp_max_k:
                v.append(f"board {n} {tb:.2f} K above the limit {pr.temp_max_k:.2f} K")
    return ReplayResult(float(soc_min), float(plant.soc), float(ptemp_max), {n: float(x) for n, x in btemp_max.items()},
                        bat.soc_floor, bat.soc_end_min, pr.temp_max_k, work,
                        float(np.sqrt(np.mean(np.square(solar_err)))), float(np.mean(solar_err)), tuple(v),
                        np.array(socs), np.array(nets))
