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
  resistive loss ``I^2 R`` is convex in the terminal power, so the power stored
  (``eta * (P - I^2 R)``, concave) and the power drawn (``P + I^2 R``, convex) are
  replaced by their chords over ``SEGMENTS`` pieces of the power range, which lie
  on the safe side (less stored, more drawn), at the OCV of the SOC floor (the
  lowest OCV the bound allows: the most current, the most loss);
- **radiation**: ``eps sigma A T^4`` is convex, so its tangent at the run's own
  temperature of that step is below it everywhere: the LP sheds less heat than the
  plant at any temperature, and its temperatures are upper bounds of the plant's
  for the same schedule (the network is cooperative). The error is on the safe
  side: the bound may be lower than the true optimum, never higher because of it;
- **boards**: powered all the time, as the flight software keeps them (its
  power switch is FDIR's); with ``power_off`` a board may be off for part of any
  step (``on`` in [0, 1], its idle draw times ``on``, throttle ``x <= on`` on
  average): a relaxation of every schedule that powers boards off, an upper bound
  that ignores boot time and lost progress, and is not replayed;
- **discretization**: each step is integrated exactly (matrix exponential) for
  inputs held over the step; the battery sees the step's mean net power, but the
  plant sees it second by second, and the battery's response is concave (charging
  stores less than discharging draws): by Jensen the plant ends lower. So each
  step books a loss, the largest gap, over every payload draw the step may have,
  between the response to the mean and the mean response to the run's own
  per-second generation and loads (``mixing_loss_w``: exact for the data, zero at
  1 s steps); limits are checked at every step's ends with margins
  (``temp_margin_k``, ``soc_margin``) that cover what varies inside a step.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from hil_rig.constants import SPACE_TEMP_K, STEFAN_BOLTZMANN_W_M2_K4

#: pieces of the battery's charging and discharging power ranges (chords of the loss)
SEGMENTS = 8


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
    # the SOC whose OCV the loss chords take (None: the floor, the safe choice). A lower
    # floor makes the chords more pessimistic, so the bound is not monotone in the
    # floor by up to ~0.1 %; tests hold this fixed to check monotonicity otherwise
    loss_soc: float | None = None

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

    def charge_segments(self, pieces: int = SEGMENTS) -> tuple[np.ndarray, np.ndarray]:
        """(width W, chemical J stored per terminal J) of each piece of the charging
        power range ``0..max_charge_w``: the chords of the stored power, which is
        concave in the terminal power (module doc), at the OCV of the SOC floor."""
        v = self.ocv(self.soc_floor if self.loss_soc is None else self.loss_soc)
        p = np.linspace(0.0, self.max_charge_w, pieces + 1)
        current = (-v + np.sqrt(v * v + 4.0 * self.r_ohm * p)) / (2.0 * self.r_ohm)
        stored = self.charge_efficiency * (p - current ** 2 * self.r_ohm)
        return np.diff(p), np.diff(stored) / np.maximum(np.diff(p), 1e-300)

    def discharge_segments(self, max_w: float, pieces: int = SEGMENTS) -> tuple[np.ndarray, np.ndarray]:
        """(width W, chemical J drawn per terminal J) of each piece of the discharging
        power range ``0..max_w``: the chords of the drawn power, convex in the terminal
        power, at the OCV of the SOC floor (the most loss)."""
        v = self.ocv(self.soc_floor if self.loss_soc is None else self.loss_soc)
        disc = v * v - 4.0 * self.r_ohm * max_w
        if disc <= 0:
            raise ValueError(f"battery: {max_w:.1f} W is more than the battery can deliver at "
                             f"its floor (OCV {v:.2f} V, R {self.r_ohm} ohm)")
        p = np.linspace(0.0, max_w, pieces + 1)
        current = (v - np.sqrt(v * v - 4.0 * self.r_ohm * p)) / (2.0 * self.r_ohm)
        drawn = v * current
        return np.diff(p), np.diff(drawn) / np.maximum(np.diff(p), 1e-300)


def battery_response_w(bat: Battery, net_w: np.ndarray, max_discharge_w: float) -> np.ndarray:
    """The LP's battery response to a net terminal power: chemical power stored
    (``net > 0``, up to the charge limit; the rest is shunted) or drawn (``net < 0``),
    by the same chords as the LP (concave in ``net``)."""
    cw, cg = bat.charge_segments()
    dw, dc = bat.discharge_segments(max_discharge_w)
    ce = np.concatenate([[0.0], np.cumsum(cw)])
    cs = np.concatenate([[0.0], np.cumsum(cw * cg)])
    de = np.concatenate([[0.0], np.cumsum(dw)])
    ds = np.concatenate([[0.0], np.cumsum(dw * dc)])
    net = np.asarray(net_w, float)
    up = np.interp(np.clip(net, 0.0, None), ce, cs)
    down = np.interp(np.clip(-net, 0.0, None), de, ds, right=np.inf)
    return np.where(net >= 0, up, -down)


def mixing_loss_w(bat: Battery, net_per_second: np.ndarray, edges: np.ndarray, draws_w: np.ndarray,
                  max_discharge_w: float) -> np.ndarray:
    """Per step, the largest Jensen gap of the battery's response between the step's
    mean and its seconds, over payload draws ``draws_w`` (module doc), in W."""
    out = np.zeros(len(edges) - 1)
    for k in range(len(out)):
        d = net_per_second[edges[k]:edges[k + 1]]
        if len(d) < 2 or np.ptp(d) == 0.0:
            continue
        x = d[None, :] - draws_w[:, None]
        gap = battery_response_w(bat, x.mean(axis=1), max_discharge_w) - \
            battery_response_w(bat, x, max_discharge_w).mean(axis=1)
        out[k] = max(0.0, float(gap.max()))
    return out


def inner_dip_j(bat: Battery, net_per_second: np.ndarray, edges: np.ndarray, draws_w: np.ndarray,
                max_discharge_w: float) -> np.ndarray:
    """Per step, how far the battery's chemical energy can go inside the step below
    the lower of its two ends (J), over payload draws ``draws_w`` held through the
    step: the step that holds an eclipse's exit first discharges in the dark, then
    charges in the sun, and its lowest SOC lies inside it (module doc)."""
    out = np.zeros(len(edges) - 1)
    for k in range(len(out)):
        d = net_per_second[edges[k]:edges[k + 1]]
        if len(d) < 2 or np.ptp(d) == 0.0:
            continue
        r = battery_response_w(bat, d[None, :] - draws_w[:, None], max_discharge_w)
        path = np.cumsum(r, axis=1)  # J after each second (1 s each)
        low_end = np.minimum(0.0, path[:, -1])
        out[k] = max(0.0, float(np.max(low_end[:, None] - path)))
    return out


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
    power_off: bool = False  # boards may be off for part of a step (module doc)
    mixing_loss_w: np.ndarray | None = None  # per step (module doc); None: no loss booked
    # per step, the battery's deepest dip inside it below its lower end (J; module
    # doc): both ends are held that much above the floor. None: none
    inner_dip_j: np.ndarray | None = None
    # the array's efficiency falls as the structure warms (the plant's temperature
    # coefficient): the generation of a step is the run's, corrected linearly for the
    # LP's structure temperature against the run's (``thermal.tangent_k``)
    solar_temp_coeff_per_k: float = 0.0
    solar_ref_temp_k: float = 298.15
    solar_node: str = "structure"

    @property
    def steps(self) -> int:
        return len(self.solar_w)

    @property
    def dts(self) -> np.ndarray:
        """Each step's length (s)."""
        return np.broadcast_to(np.asarray(self.dt_s, float), (self.steps,))

    def energy_bound_flop(self) -> float:
        """The plain energy bound: generation, minus the bus's other loads (and the
        boards' idle draw when they stay powered), plus the battery's allowed
        depletion, all turned into work at the best board's FLOP per joule (above
        idle; or of its whole draw when boards may be off); and never more than
        every board at throttle 1 all the time. No losses, no limits."""
        dt, bat = self.dts, self.battery
        idle = 0.0 if self.power_off else sum(b.idle_w for b in self.boards)
        avail = float(np.sum((self.solar_w - self.other_load_w - idle) * dt))
        depletion = float(bat.energy_j(bat.soc0) - bat.energy_j(bat.soc_end_min))
        best = max(b.rated_flops / (b.peak_w if self.power_off else b.span_w) for b in self.boards)
        full = sum(b.rated_flops for b in self.boards) * float(dt.sum())
        return max(0.0, min(full, (avail + depletion) * best))


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The LP's answer: throttle per board per step, and what it predicts."""

    dt_s: np.ndarray
    throttle: dict[str, np.ndarray]  # mean throttle over the step (x <= on)
    on: dict[str, np.ndarray]  # the fraction of the step the board is powered
    work_flop: float
    work_by_step: np.ndarray
    soc: np.ndarray
    payload_temp_k: np.ndarray | None
    board_temp_k: dict[str, np.ndarray]
    status: str
    solve_s: float
    #: the limits that bind at the end of each step (a nonzero dual of the limit's
    #: bound): "soc_floor", "soc_end" (the last step's end SOC), "payload_node",
    #: "board:<name>" (its hottest zone); name -> bool per step
    binding: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


#: a limit binds where its dual exceeds this (the objective is scaled to about 1 FLOP
#: per step of the fastest board at throttle 1: the solver's tolerance is far below)
BINDING_DUAL = 1e-7


class BoundError(RuntimeError):
    """The bound could not be computed (infeasible problem, solver failure)."""


def solve(pr: YieldProblem) -> Schedule:
    """Maximize work over per-board throttles and power (module doc); HiGHS via linprog."""
    from scipy import sparse
    from scipy.optimize import linprog

    n, dts = pr.steps, pr.dts
    nb = len(pr.boards)
    bat = pr.battery
    th = pr.thermal
    hot_boards = [i for i, b in enumerate(pr.boards) if b.thermal is not None and pr.temp_max_k is not None]
    nn = 0 if th is None else len(th.names)
    max_dis = float(np.max(pr.other_load_w)) + sum(b.peak_w for b in pr.boards)
    ch_w, ch_gain = bat.charge_segments()
    dis_w, dis_cost = bat.discharge_segments(max_dis)
    ns_ch, ns_dis = len(ch_w), len(dis_w)
    # variable layout: blocks of consecutive columns
    sizes = {"x": nb * n, "on": nb * n, "e": n + 1, "ch": ns_ch * n, "dis": ns_dis * n, "sh": n,
             "t": nn * (n + 1), "tb": len(hot_boards) * (n + 1)}
    at: dict[str, int] = {}
    nv = 0
    for name, size in sizes.items():
        at[name] = nv
        nv += size

    def xv(b: int, k: int) -> int:
        return at["x"] + b * n + k

    def onv(b: int, k: int) -> int:
        return at["on"] + b * n + k

    lo_soc = min(bat.soc_floor + pr.soc_margin, bat.soc0)
    e_lo, e_hi = float(bat.energy_j(lo_soc)), float(bat.energy_j(bat.soc_ceiling))
    e_start = float(bat.energy_j(bat.soc0))
    e_end = float(bat.energy_j(max(bat.soc_end_min, lo_soc)))

    bounds = [(0.0, 1.0)] * (nb * n) + [(0.0 if pr.power_off else 1.0, 1.0)] * (nb * n)
    lows = np.full(n, e_lo)  # the end of step k: held above the floor by the dips of k and k + 1
    if pr.inner_dip_j is not None:
        dip = np.asarray(pr.inner_dip_j, float)
        lows += np.maximum(dip, np.append(dip[1:], 0.0))
    lows = np.minimum(lows, e_hi)
    lows[-1] = max(lows[-1], e_end)
    bounds += [(e_start, e_start)] + [(float(lo), e_hi) for lo in lows]
    bounds += [(0.0, float(w)) for w in ch_w for _ in range(n)]
    bounds += [(0.0, float(w)) for w in dis_w for _ in range(n)]
    bounds += [(0.0, None)] * n
    tmax = None if pr.temp_max_k is None else pr.temp_max_k - pr.temp_margin_k
    if th is not None:
        for i in range(nn):
            hi = tmax if (i == 0 and tmax is not None) else None
            bounds += [(float(th.t0_k[i]), float(th.t0_k[i]))] + [(None, hi)] * n
    for i in hot_boards:
        bt = pr.boards[i].thermal
        # the hottest zone (node + offset x load x throttle) at any throttle: the node
        # stays below the limit less the offset
        hi = None if tmax is None else tmax - bt.zone_offset_k
        bounds += [(bt.t0_k, bt.t0_k)] + [(None, hi)] * n

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

    def payload_w(k: int, scale: float) -> list[tuple[int, float]]:
        """The boards' draw in step k (idle x on + span x throttle), times ``scale``."""
        out = []
        for b, bd in enumerate(pr.boards):
            out += [(onv(b, k), scale * bd.idle_w), (xv(b, k), scale * bd.span_w)]
        return out

    sn = th.names.index(pr.solar_node) if (th is not None and pr.solar_temp_coeff_per_k
                                           and pr.solar_node in th.names) else None
    for k in range(n):
        dt = float(dts[k])
        # power balance: boards + charge - discharge + shunt = solar - other loads,
        # solar = run's + g (mean structure temperature of the step - the run's)
        solar_t: list[tuple[int, float]] = []
        solar = float(pr.solar_w[k])
        if sn is not None:
            t_run = float(th.tangent_k[k, sn])
            c = pr.solar_temp_coeff_per_k
            g = solar * c / (1.0 + c * (t_run - pr.solar_ref_temp_k))
            col = at["t"] + sn * (n + 1) + k
            solar_t = [(col, -0.5 * g), (col + 1, -0.5 * g)]
            solar -= g * t_run
        add(payload_w(k, 1.0) + solar_t
            + [(at["ch"] + s * n + k, 1.0) for s in range(ns_ch)]
            + [(at["dis"] + s * n + k, -1.0) for s in range(ns_dis)] + [(at["sh"] + k, 1.0)],
            solar - float(pr.other_load_w[k]))
        # battery: e(k+1) = e(k) + dt (stored - drawn)
        add([(at["e"] + k + 1, 1.0), (at["e"] + k, -1.0)]
            + [(at["ch"] + s * n + k, -dt * float(ch_gain[s])) for s in range(ns_ch)]
            + [(at["dis"] + s * n + k, dt * float(dis_cost[s])) for s in range(ns_dis)],
            0.0 if pr.mixing_loss_w is None else -dt * float(pr.mixing_loss_w[k]))
    if th is not None:
        for k in range(n):
            phi, gp, c = th.step_matrices(k, float(dts[k]))
            for i in range(nn):
                ent = [(at["t"] + i * (n + 1) + k + 1, 1.0)]
                ent += [(at["t"] + j * (n + 1) + k, -phi[i, j]) for j in range(nn)]
                add(ent + payload_w(k, -gp[i]), float(c[i]))
    for j, i in enumerate(hot_boards):
        bt, bd = pr.boards[i].thermal, pr.boards[i]
        base = at["tb"] + j * (n + 1)
        for k in range(n):
            a = float(np.exp(-dts[k] / (bt.r_k_w * bt.c_j_k)))
            g = (1 - a) * bt.r_k_w
            add([(base + k + 1, 1.0), (base + k, -a), (onv(i, k), -g * bd.idle_w), (xv(i, k), -g * bd.span_w)],
                (1 - a) * bt.ambient_k)
    a_eq = sparse.csr_matrix((vals, (rows, cols)), shape=(r, nv))
    b_eq = np.array(rhs)
    rows, cols, vals, rhs = [], [], [], []
    r = 0
    for b in range(nb):  # a board computes only while on
        for k in range(n):
            add([(xv(b, k), 1.0), (onv(b, k), -1.0)], 0.0)
    a_ub = sparse.csr_matrix((vals, (rows, cols)), shape=(r, nv))
    b_ub = np.array(rhs)

    scale = max(b.rated_flops for b in pr.boards) * float(dts.max())
    cost = np.zeros(nv)
    for b, bd in enumerate(pr.boards):
        cost[xv(b, 0): xv(b, 0) + n] = -bd.rated_flops * dts / scale
    # among the schedules of most work, the one that keeps the battery fullest: a
    # reward on the energy stored at every step, so small that keeping a joule
    # through the whole run is worth a thousandth of the work it would buy; the
    # predicted SOC is then what the replay sees, not an arbitrary optimum among equals
    per_j = min(bd.rated_flops / bd.span_w for bd in pr.boards) / scale
    cost[at["e"] + 1: at["e"] + n + 1] = -1e-3 * per_j / n
    t_start = time.perf_counter()
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    solve_s = time.perf_counter() - t_start
    if res.status != 0:
        raise BoundError(f"the bound's linear program: {res.message} (status {res.status})")
    sol = res.x
    thr = {bd.name: np.clip(sol[xv(b, 0): xv(b, 0) + n], 0.0, 1.0) for b, bd in enumerate(pr.boards)}
    on = {bd.name: np.clip(sol[onv(b, 0): onv(b, 0) + n], 0.0, 1.0) for b, bd in enumerate(pr.boards)}
    per_step = sum(bd.rated_flops * dts * thr[bd.name] for bd in pr.boards)
    soc = bat.soc_of_energy(sol[at["e"]: at["e"] + n + 1])
    ptemp = sol[at["t"]: at["t"] + n + 1] if th is not None else None
    btemp = {pr.boards[i].name: sol[at["tb"] + j * (n + 1): at["tb"] + (j + 1) * (n + 1)]
             for j, i in enumerate(hot_boards)}
    lo_dual, hi_dual = np.abs(res.lower.marginals), np.abs(res.upper.marginals)
    e_dual = lo_dual[at["e"] + 1: at["e"] + n + 1] > BINDING_DUAL
    # a step's end at its lower bound: the floor (with the dips), or for the last the end SOC
    end_is_floor = lows[-1] > e_end
    binding = {"soc_floor": e_dual.copy(), "soc_end": np.zeros(n, bool)}
    binding["soc_floor"][-1] = bool(e_dual[-1] and end_is_floor)
    binding["soc_end"][-1] = bool(e_dual[-1] and not end_is_floor)
    if th is not None and tmax is not None:
        binding["payload_node"] = hi_dual[at["t"] + 1: at["t"] + n + 1] > BINDING_DUAL
    for j, i in enumerate(hot_boards):
        base = at["tb"] + j * (n + 1)
        binding[f"board:{pr.boards[i].name}"] = hi_dual[base + 1: base + n + 1] > BINDING_DUAL
    return Schedule(dts.copy(), thr, on, float(per_step.sum()), per_step, soc, ptemp, btemp, res.message, solve_s,
                    binding)
