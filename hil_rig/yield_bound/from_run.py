"""A finished run's bound problem, from its archive and its scenario (docs/yield.md).

What the bound takes from the run, per second of its archive, averaged over
each step of the bound's grid:

- the array's generation (``solar_power_w_true``) and the bus's other loads
  (``load_power_w_true - payload_power_w_meas``: base, wheels, torquers, heaters;
  never less than base and wheels);
- every other heat input of the payload, radiator and structure nodes, from the
  plant's own energy balance on the archived temperatures: ``C dT/dt`` minus the
  payload's draw, plus what the links and the radiating surfaces took away
  (absorbed sunlight, albedo and Earth IR, bus electronics); the battery node's
  temperature, which links to the structure;
- the temperatures the radiation is linearized at.

From the scenario and the project's tables: the plant's parameters
(``hil_rig.run.mission.plant_params``: battery, thermal network, surfaces), the
limits (the scenario's ``soc_floor`` and ``payload_temp_max`` requirements; the
flight software's ``battery_min_soc`` when there is no floor), each board's
power and throughput (``firmware_bridge.ratings``) and its thermal node (the
emulator's, ``firmware_bridge.emulator.KINDS``: the one board thermal model the
project has; a real board's would come from its bench file).
"""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any

import numpy as np

from hil_rig.archive import load_run
from hil_rig.constants import NS_PER_S, SPACE_TEMP_K, STEFAN_BOLTZMANN_W_M2_K4, ZERO_CELSIUS_K
from hil_rig.plant import NODES
from hil_rig.yield_bound.model import (
    Battery,
    BoardModel,
    BoardThermal,
    ThermalNet,
    YieldProblem,
    inner_dip_j,
    mixing_loss_w,
)

#: the plant nodes the bound models as states (payload first); the battery node is exogenous
MODELLED_NODES = ("payload", "radiator", "structure")
DEFAULT_DT_S = 60.0
#: "run": the bound ends with the battery at least as full as the run left it, or as it
#: started if the run left it fuller (less this: the LP's safe-side battery cannot
#: retrace the run's own SOC exactly)
END_SOC_TOLERANCE = 0.005


class YieldInputError(ValueError):
    """A run directory or an option the bound cannot use, named."""


def scenario_of(run_dir: pathlib.Path, meta: dict[str, str], path: str | None) -> Any:
    """The run's scenario: ``path`` if given, else the shipped file of the archive's
    ``scenario_file``; either must match the archive's ``scenario_sha256``."""
    from hil_rig.scenario import ScenarioError, find_scenario, load_scenario

    try:
        p = pathlib.Path(path) if path else find_scenario(meta.get("scenario_file") or meta.get("scenario"))
        sc = load_scenario(p)
    except ScenarioError as exc:
        raise YieldInputError(f"{run_dir}: the run's scenario: {exc} (give it with --scenario FILE)") from None
    want = meta.get("scenario_sha256")
    got = hashlib.sha256(p.read_bytes()).hexdigest()
    if want and got != want:
        raise YieldInputError(f"{p}: not the scenario {run_dir} ran (sha256 {got[:12]} differs from the "
                              f"archive's {want[:12]}); give the run's own file with --scenario FILE")
    return sc


def limits(sc: Any) -> tuple[float, float | None]:
    """(SOC floor, payload temperature limit in K or None) from the scenario's requirements."""
    from flight_sw.app import FswConfig

    floor, tmax = None, None
    for r in sc.requirements:
        if r.kind == "soc_floor":
            v = float(r.params["min"])
            floor = v if floor is None else max(floor, v)
        elif r.kind == "payload_temp_max":
            v = float(r.params["max_c"]) + ZERO_CELSIUS_K
            tmax = v if tmax is None else min(tmax, v)
    return (FswConfig().battery_min_soc if floor is None else floor), tmax


def board_models(boards: dict[str, str], temps0: dict[str, float]) -> tuple[BoardModel, ...]:
    from firmware_bridge.emulator import AMBIENT_K, KINDS
    from firmware_bridge.ratings import rating

    out = []
    for name, kind in boards.items():
        r = rating(kind)
        if kind not in KINDS:
            raise YieldInputError(f"board {name}: kind {kind!r} has no thermal model (firmware_bridge.emulator.KINDS: "
                                  f"{', '.join(sorted(KINDS))}); the bound needs one")
        k = KINDS[kind]
        t0 = temps0.get(name, AMBIENT_K + r.idle_w * k["r_k_w"])
        thermal = BoardThermal(k["r_k_w"], k["c_j_k"], AMBIENT_K, max(k["zones"].values()), t0)
        out.append(BoardModel(name, r.idle_w, r.peak_w, float(r.rated_flops), thermal, kind))
    return tuple(out)


def _grid(seconds: int, dt_s: float) -> np.ndarray:
    """Step edges (s) over ``0..seconds``: whole steps of ``dt_s``, the last one shorter."""
    if not dt_s >= 1.0 or dt_s != int(dt_s):
        raise YieldInputError(f"--dt: the bound's step must be a whole number of seconds >= 1, got {dt_s!r}")
    edges = np.arange(0, seconds, int(dt_s))
    return np.append(edges, seconds)


def _step_mean(per_second: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of per-second values (second i is [i, i+1)) over each step."""
    cum = np.concatenate([[0.0], np.cumsum(per_second, axis=0)]) if per_second.ndim == 1 else \
        np.vstack([np.zeros((1, per_second.shape[1])), np.cumsum(per_second, axis=0)])
    tot = cum[edges[1:]] - cum[edges[:-1]]
    width = np.diff(edges).astype(float)
    return tot / (width if per_second.ndim == 1 else width[:, None])


def problem_from_run(run_dir: str | pathlib.Path, scenario: Any = None, *, scenario_path: str | None = None,
                     dt_s: float = DEFAULT_DT_S, end_soc: str | float = "run") -> tuple[YieldProblem, dict]:
    """The bound's problem for a finished run, and what it was built from (seconds, orbit period, grid)."""
    from hil_rig.run.mission import plant_params

    run_dir = pathlib.Path(run_dir)
    try:
        run = load_run(run_dir)
    except Exception as exc:  # noqa: BLE001 - any unreadable archive is named
        raise YieldInputError(f"{run_dir}: no readable telemetry archive ({exc})") from None
    meta = dict(run.meta)
    sc = scenario if scenario is not None else scenario_of(run_dir, meta, scenario_path)
    tm = run["telemetry"]
    need = ("solar_power_w_true", "load_power_w_true", "payload_power_w_meas", "soc_true",
            "temp_payload_k_true", "temp_battery_k_true", "temp_radiator_k_true", "temp_structure_k_true")
    missing = [c for c in need if c not in (tm.dtype.names or ())]
    if missing:
        raise YieldInputError(f"{run_dir}: the archive has no {', '.join(missing)} column(s)")
    t = tm["t_ns"]
    if len(t) < 3 or np.any(np.diff(t) != NS_PER_S) or t[0] != 0:
        raise YieldInputError(f"{run_dir}: the telemetry must be one row a second from t = 0 "
                              f"({len(t)} rows)")
    secs = len(t) - 1  # second i is [t_i, t_i+1], its row i + 1 recorded at its end

    def col(name: str) -> np.ndarray:
        return np.nan_to_num(np.asarray(tm[name], float), nan=0.0)

    solar = col("solar_power_w_true")[1:]
    # the payload's draw in second i is the supply reading recorded at its start (row
    # i): the rig reads the supply at the second's boundary, after the physics of
    # the second before; the row's load (row i + 1) is the plant's, in second i
    payload = col("payload_power_w_meas")[:-1]
    temps = np.column_stack([np.asarray(tm[f"temp_{n}_k_true"], float) for n in NODES])
    params = plant_params(sc)
    # never below what the plant's bus always draws (base and wheels)
    other = np.maximum(col("load_power_w_true")[1:] - payload, params.bus_base_w + 3 * params.wheel_power_w)

    # the thermal network, the modelled nodes first
    idx = {n: i for i, n in enumerate(NODES)}
    mi = [idx[n] for n in MODELLED_NODES]
    bi = idx["battery"]
    g = np.zeros((len(NODES), len(NODES)))
    for a, b, w in params.conductance_w_k:
        g[idx[a], idx[b]] += w
        g[idx[b], idx[a]] += w
    ea = np.zeros(len(NODES))
    for sf in params.surfaces:
        ea[idx[sf.node]] += sf.emissivity * sf.area_m2
    cap = np.asarray(params.heat_capacity_j_k, float)
    # exogenous heat per second, from the plant's balance on the archived temperatures
    tmid = 0.5 * (temps[1:] + temps[:-1])
    lap = np.diag(g.sum(axis=1)) - g
    links_out = tmid @ lap.T  # heat each node gives to its links
    rad = STEFAN_BOLTZMANN_W_M2_K4 * ea * (tmid ** 4 - SPACE_TEMP_K ** 4)
    exo = cap * np.diff(temps, axis=0) + links_out + rad
    exo[:, idx["payload"]] -= payload
    edges = _grid(secs, dt_s)
    dts = np.diff(edges).astype(float)
    soc_floor, tmax = limits(sc)
    ptab = run["payload"]
    temps0: dict[str, float] = {}
    for name in (meta.get("boards") or "").split(","):
        if ":" in name:
            b = name.split(":", 1)[0]
            sel = ptab[ptab["board"] == b]["temp_k"].astype(float)
            ok = sel[np.isfinite(sel)]
            if len(ok):
                temps0[b] = float(ok[0])
    kinds = dict(x.split(":", 1) for x in (meta.get("boards") or "").split(",") if ":" in x)
    if not kinds:
        raise YieldInputError(f"{run_dir}: the archive's meta names no boards")
    soc = col("soc_true")
    soc0 = float(params.soc0)
    if end_soc == "run":
        end = max(0.0, min(soc0, float(soc[-1])) - END_SOC_TOLERANCE)
    elif end_soc == "initial":
        end = soc0
    elif end_soc == "free":
        end = 0.0
    else:
        try:
            end = float(end_soc)
        except (TypeError, ValueError):
            raise YieldInputError(f"--end-soc: expected run, initial, free or a SOC in [0, 1], got {end_soc!r}") \
                from None
        if not 0.0 <= end <= 1.0:
            raise YieldInputError(f"--end-soc: a SOC must be in [0, 1], got {end}")
    v_nom = float(np.interp(0.5, params.battery_ocv_soc, params.battery_ocv_v))
    battery = Battery(params.battery_capacity_wh * 3600.0 / v_nom, tuple(params.battery_ocv_soc),
                      tuple(params.battery_ocv_v), params.battery_r_ohm, params.battery_charge_efficiency,
                      params.battery_max_charge_w, soc0, soc_floor, 1.0, end)
    net = ThermalNet(
        names=MODELLED_NODES, heat_capacity_j_k=cap[mi], conductance_w_k=g[np.ix_(mi, mi)],
        sink_w_k=g[mi, bi], sink_temp_k=_step_mean(tmid[:, bi], edges), rad_ea_m2=ea[mi],
        exo_w=_step_mean(exo[:, mi], edges), tangent_k=_step_mean(tmid[:, mi], edges), t0_k=temps[0, mi],
    )
    boards = board_models(kinds, temps0)
    peak = sum(b.peak_w for b in boards)
    max_dis = float(np.max(other)) + peak
    draws = np.linspace(0.0, peak, int(peak / 0.5) + 2)
    mix = mixing_loss_w(battery, solar - other, edges, draws, max_dis)
    dip = inner_dip_j(battery, solar - other, edges, draws, max_dis)
    pr = YieldProblem(dts, _step_mean(solar, edges), _step_mean(other, edges), boards, battery, net, tmax,
                      mixing_loss_w=mix, inner_dip_j=dip, solar_temp_coeff_per_k=params.solar_temp_coeff_per_k,
                      solar_ref_temp_k=params.solar_ref_temp_k)
    info = {"seconds": secs, "edges_s": edges, "period_s": float(meta.get("orbit_period_s", "nan")),
            "scenario": sc, "soc_end_run": float(soc[-1]), "run": run, "other_w": other}
    return pr, info
