"""The offline bound's problem and its linear program (docs/yield.md).

A :class:`YieldProblem` is everything the bound knows about one run, on a grid of
``dt_s`` steps: the array's generation and the bus's other loads per step, the
battery, each board's power and throughput as a function of throttle and its own
thermal node, and the plant's payload thermal network (payload, radiator and
structure nodes) with its radiative sink linearized. :func:`solve` finds the
per-board throttles, constant over each step, that maximize the work (FLOP)
delivered, with HiGHS through ``scipy.optimize.linprog``.

Everything nonlinear is made linear on the safe side, so that a schedule the LP
finds feasible is feasible in the plant (the replay, ``hil_rig.yield_bound.replay``,
checks it):

- **battery**: the state is the chemical energy ``E(soc) = Q * integral OCV`` (an
  exact, monotone map of the SOC, so SOC limits are exact energy limits); the
  resistive loss ``I^2 R`` is convex in power, so it is bounded by its secant over
  the step's power range: charging stores at least ``eta * (1 - P_max R / OCV_lo^2)``
  of the terminal power, discharging takes at most ``1 / (1 - I_max R / OCV_lo)``
  of it, ``OCV_lo`` the OCV at the SOC floor;
- **radiation**: ``eps sigma A T^4`` is convex, so its tangent at the run's own
  temperature of that step is below it everywhere: the LP sheds less heat than the
  plant at any temperature, and its temperatures are upper bounds of the plant's
  for the same schedule (the network is cooperative). The error is on the safe
  side: the bound may be lower than the true optimum, never higher because of it;
- **discretization**: each step is integrated exactly (matrix exponential) for
  inputs held over the step; limits are checked at every step's ends with margins
  (``temp_margin_k``, ``soc_margin``) that cover what varies inside a step.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from hil_rig.constants import SPACE_TEMP_K, STEFAN_BOLTZMANN_W_M2_K4


@dataclasses.dataclass(frozen=True)
class BoardThermal:
    """A board's own thermal node (the emulator's one-node RC model): ``C dT/dt =
    P - (T - T_amb) / R``; its hottest reported zone is ``T + zone_offset_k * x``."""

    r_k_w: float
    c_j_k: float
    ambient_k: float
    zone_offset_k: float
    t0_k: float


@dataclasses.dataclass(frozen=True)
class BoardModel:
    """A payload board: draw ``idle_w + (peak_w - idle_w) * x`` and throughput
    ``rated_flops * x`` at throttle ``x`` in [0, 1] (firmware_bridge.ratings)."""

    name: str
    idle_w: float
    peak_w: float
    rated_flops: float
    thermal: BoardThermal | None = None
    kind: str = ""  # firmware_bridge.ratings kind (the replay's board model)

    @property
    def span_w(self) -> float:
        return self.peak_w - self.idle_w


@dataclasses.dataclass(frozen=True)
class Battery:
    """The plant's battery: coulomb capacity ``capacity_c``, OCV(soc) table,
    internal resistance, charge efficiency and limit; the SOC limits of the bound."""

    capacity_c: float
    ocv_soc: tuple[float, ...]
    ocv_v: tuple[float, ...]
    r_ohm: float
    charge_efficiency: float
    max_charge_w: float
    soc0: float
    soc_floor: float
    soc_ceiling: float = 1.0
    soc_end_min: float = 0.0

    def energy_j(self, soc: float | np.ndarray) -> np.ndarray:
        """Chemical energy stored at ``soc`` (J above soc 0): ``Q * integral_0^soc OCV``."""
        xs = np.asarray(self.ocv_soc, float)
        vs = np.asarray(self.ocv_v, float)
        grid = np.linspace(0.0, 1.0, 2001)
        v = np.interp(grid, xs, vs)
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * np.diff(grid))])
        return self.capacity_c * np.interp(np.asarray(soc, float), grid, cum)

    def soc_of_energy(self, e_j: np.ndarray) -> np.ndarray:
        grid = np.linspace(0.0, 1.0, 2001)
        return np.interp(np.asarray(e_j, float), self.energy_j(grid), grid)

    def ocv(self, soc: float) -> float:
        return float(np.interp(soc, self.ocv_soc, self.ocv_v))

    def factors(self, max_discharge_w: float) -> tuple[float, float]:
        """(chemical J stored per terminal J charged, chemical J drawn per terminal J
        discharged): the safe-side secants of the resistive loss (module doc)."""
        v_lo = self.ocv(self.soc_floor)
        charge = self.charge_efficiency * max(0.0, 1.0 - self.max_charge_w * self.r_ohm / (v_lo * v_lo))
        disc = v_lo * v_lo - 4.0 * self.r_ohm * max_discharge_w
        if disc <= 0:
            raise ValueError(f"battery: {max_discharge_w:.1f} W is more than the battery can deliver at "
                             f"its floor (OCV {v_lo:.2f} V, R {self.r_ohm} ohm)")
        i_max = (v_lo - np.sqrt(disc)) / (2.0 * self.r_ohm)
        return charge, 1.0 / (1.0 - i_max * self.r_ohm / v_lo)


@dataclasses.dataclass(frozen=True)
class ThermalNet:
    """The plant's payload-side thermal nodes (payload first), linearized per step.

    ``conductance_w_k`` (n x n, symmetric) links the nodes; ``sink_w_k`` (n) links
    each to the exogenous node whose temperature per step is ``sink_temp_k``
    (the battery node); ``rad_ea_m2`` is each node's sum of emissivity x area;
    ``exo_w`` (N x n) is every other heat input per step (absorbed sunlight,
    albedo and Earth IR, bus electronics), and the payload boards' draw goes into
    node 0. Radiation is linearized at ``tangent_k`` (N x n)."""

    names: tuple[str, ...]
    heat_capacity_j_k: np.ndarray
    conductance_w_k: np.ndarray
    sink_w_k: np.ndarray
    sink_temp_k: np.ndarray
    rad_ea_m2: np.ndarray
    exo_w: np.ndarray
    tangent_k: np.ndarray
    t0_k: np.ndarray

    def step_matrices(self, k: int, dt_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(Phi, Gamma_payload, c): ``T(k+1) = Phi T(k) + Gamma_payload * P_payload + c``
        for the payload draw ``P_payload`` held over step ``k`` (exact for the
        linearized network)."""
        from scipy.linalg import expm

        cap = self.heat_capacity_j_k
        t0 = self.tangent_k[k]
        sigma = STEFAN_BOLTZMANN_W_M2_K4
        h = 4.0 * sigma * self.rad_ea_m2 * t0 ** 3
        lap = np.diag(self.conductance_w_k.sum(axis=1)) - self.conductance_w_k
        m = -(lap + np.diag(self.sink_w_k + h)) / cap[:, None]
        rad0 = sigma * self.rad_ea_m2 * (t0 ** 4 - SPACE_TEMP_K ** 4)
        b = (self.sink_w_k * self.sink_temp_k[k] + h * t0 - rad0 + self.exo_w[k]) / cap
        phi = expm(m * dt_s)
        gam = np.linalg.solve(m, phi - np.eye(len(cap)))
        return phi, gam[:, 0] / cap[0], gam @ b


@dataclasses.dataclass(frozen=True)
class YieldProblem:
    """One run's bound problem on a grid of ``len(solar_w)`` steps of ``dt_s``
    seconds each (one figure, or one per step: a run's last step may be shorter)."""

    dt_s: float | np.ndarray
    solar_w: np.ndarray
    other_load_w: np.ndarray
    boards: tuple[BoardModel, ...]
    battery: Battery
    thermal: ThermalNet | None = None
    temp_max_k: float | None = None  # the payload node and every board's zones
    temp_margin_k: float = 0.5
    soc_margin: float = 0.01

    @property
    def steps(self) -> int:
        return len(self.solar_w)

    @property
    def dts(self) -> np.ndarray:
        """Each step's length (s)."""
        return np.broadcast_to(np.asarray(self.dt_s, float), (self.steps,))

    def energy_bound_flop(self) -> float:
        """The plain energy bound: generation, minus the bus's other loads and the
        boards' idle draw, plus the battery's allowed depletion, all turned into
        work at the best board's FLOP per joule; and never more than every board at
        throttle 1 all the time."""
        dt, bat = self.dts, self.battery
        idle = sum(b.idle_w for b in self.boards)
        avail = float(np.sum((self.solar_w - self.other_load_w - idle) * dt))
        depletion = float(bat.energy_j(bat.soc0) - bat.energy_j(bat.soc_end_min))
        best = max(b.rated_flops / b.span_w for b in self.boards)
        full = sum(b.rated_flops for b in self.boards) * float(dt.sum())
        return max(0.0, min(full, (avail + depletion) * best))


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The LP's answer: throttle per board per step, and what it predicts."""

    dt_s: np.ndarray
    throttle: dict[str, np.ndarray]
    work_flop: float
    work_by_step: np.ndarray
    soc: np.ndarray
    payload_temp_k: np.ndarray | None
    board_temp_k: dict[str, np.ndarray]
    status: str
    solve_s: float


class BoundError(RuntimeError):
    """The bound could not be computed (infeasible problem, solver failure)."""


def solve(pr: YieldProblem) -> Schedule:
    """Maximize work over per-board throttles (module doc); HiGHS via linprog."""
    from scipy import sparse
    from scipy.optimize import linprog

    n, dts = pr.steps, pr.dts
    nb = len(pr.boards)
    bat = pr.battery
    th = pr.thermal
    hot_boards = [i for i, b in enumerate(pr.boards) if b.thermal is not None and pr.temp_max_k is not None]
    nn = 0 if th is None else len(th.names)
    # variable layout
    ix = 0
    x0 = ix
    ix += nb * n
    e0 = ix
    ix += n + 1
    ch0 = ix
    ix += n
    dis0 = ix
    ix += n
    sh0 = ix
    ix += n
    t0i = ix
    ix += nn * (n + 1)
    tb0 = ix
    ix += len(hot_boards) * (n + 1)
    nv = ix

    def xv(b: int, k: int) -> int:
        return x0 + b * n + k

    idle = sum(b.idle_w for b in pr.boards)
    max_dis = float(np.max(pr.other_load_w)) + sum(b.peak_w for b in pr.boards)
    f_ch, f_dis = bat.factors(max_dis)
    lo_soc = min(bat.soc_floor + pr.soc_margin, bat.soc0)
    e_lo, e_hi = float(bat.energy_j(lo_soc)), float(bat.energy_j(bat.soc_ceiling))
    e_start = float(bat.energy_j(bat.soc0))
    e_end = float(bat.energy_j(max(bat.soc_end_min, lo_soc)))

    bounds = [(0.0, 1.0)] * (nb * n)
    bounds += [(e_start, e_start)] + [(e_lo, e_hi)] * (n - 1) + [(max(e_lo, e_end), e_hi)]
    bounds += [(0.0, bat.max_charge_w)] * n + [(0.0, None)] * n + [(0.0, None)] * n
    tmax = None if pr.temp_max_k is None else pr.temp_max_k - pr.temp_margin_k
    if th is not None:
        for i in range(nn):
            hi = tmax if (i == 0 and tmax is not None) else None
            bounds += [(float(th.t0_k[i]), float(th.t0_k[i]))] + [(None, hi)] * n
    for i in hot_boards:
        t0 = pr.boards[i].thermal.t0_k
        bounds += [(t0, t0)] + [(None, None)] * n

    rows, cols, vals, rhs = [], [], [], []
    r = 0

    def add(entries: list[tuple[int, float]], value: float) -> None:
        nonlocal r
        for c, v in entries:
            rows.append(r)
            cols.append(c)
            vals.append(v)
        rhs.append(value)
        r += 1

    for k in range(n):
        dt = float(dts[k])
        # power balance: sum span x + ch - dis + shunt = solar - other - idle
        add([(xv(b, k), pr.boards[b].span_w) for b in range(nb)]
            + [(ch0 + k, 1.0), (dis0 + k, -1.0), (sh0 + k, 1.0)],
            float(pr.solar_w[k] - pr.other_load_w[k] - idle))
        # battery: e(k+1) = e(k) + dt (f_ch ch - f_dis dis)
        add([(e0 + k + 1, 1.0), (e0 + k, -1.0), (ch0 + k, -dt * f_ch), (dis0 + k, dt * f_dis)], 0.0)
    if th is not None:
        for k in range(n):
            phi, gp, c = th.step_matrices(k, float(dts[k]))
            for i in range(nn):
                ent = [(t0i + i * (n + 1) + k + 1, 1.0)]
                ent += [(t0i + j * (n + 1) + k, -phi[i, j]) for j in range(nn)]
                ent += [(xv(b, k), -gp[i] * pr.boards[b].span_w) for b in range(nb)]
                add(ent, float(c[i] + gp[i] * idle))
    for j, i in enumerate(hot_boards):
        bt = pr.boards[i].thermal
        base = tb0 + j * (n + 1)
        for k in range(n):
            a = float(np.exp(-dts[k] / (bt.r_k_w * bt.c_j_k)))
            add([(base + k + 1, 1.0), (base + k, -a), (xv(i, k), -(1 - a) * bt.r_k_w * pr.boards[i].span_w)],
                (1 - a) * (bt.ambient_k + bt.r_k_w * pr.boards[i].idle_w))
    a_eq = sparse.csr_matrix((vals, (rows, cols)), shape=(r, nv))
    b_eq = np.array(rhs)
    rows, cols, vals, rhs = [], [], [], []
    r = 0
    for j, i in enumerate(hot_boards):
        off = pr.boards[i].thermal.zone_offset_k
        base = tb0 + j * (n + 1)
        for k in range(n):
            add([(base + k, 1.0), (xv(i, k), off)], tmax)
            add([(base + k + 1, 1.0), (xv(i, k), off)], tmax)
    a_ub = sparse.csr_matrix((vals, (rows, cols)), shape=(r, nv)) if r else None
    b_ub = np.array(rhs) if r else None

    scale = max(b.rated_flops for b in pr.boards) * float(dts.max())
    cost = np.zeros(nv)
    for b, bd in enumerate(pr.boards):
        cost[x0 + b * n: x0 + (b + 1) * n] = -bd.rated_flops * dts / scale
    # among the schedules of most work, the one that keeps the battery fullest: a
    # reward on the energy stored at every step, so small that keeping a joule
    # through the whole run is worth a thousandth of the work it would buy; the
    # predicted SOC is then what the replay sees, not an arbitrary optimum among equals
    per_j = min(bd.rated_flops / bd.span_w for bd in pr.boards) / scale
    cost[e0 + 1: e0 + n + 1] = -1e-3 * per_j / n
    t_start = time.perf_counter()
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    solve_s = time.perf_counter() - t_start
    if res.status != 0:
        raise BoundError(f"the bound's linear program: {res.message} (status {res.status})")
    sol = res.x
    thr = {bd.name: np.clip(sol[x0 + b * n: x0 + (b + 1) * n], 0.0, 1.0) for b, bd in enumerate(pr.boards)}
    per_step = sum(bd.rated_flops * dts * thr[bd.name] for bd in pr.boards)
    soc = bat.soc_of_energy(sol[e0: e0 + n + 1])
    ptemp = sol[t0i: t0i + n + 1] if th is not None else None
    btemp = {pr.boards[i].name: sol[tb0 + j * (n + 1): tb0 + (j + 1) * (n + 1)] for j, i in enumerate(hot_boards)}
    return Schedule(dts.copy(), thr, float(per_step.sum()), per_step, soc, ptemp, btemp, res.message, solve_s)
