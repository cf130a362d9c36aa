"""The report's plots, each built from the archive of one or more runs
(docs/report.md lists what each draws from). With several runs, each plot keeps
its main series and draws them once per run, one colour per run."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from hil_rig.constants import ZERO_CELSIUS_K
from hil_rig.report.data import RunData
from hil_rig.report.svg import PALETTE, Limit, Plot, Series, Strip

MODE_COLORS = {"BOOT": "#bdbdbd", "DETUMBLE": "#fdae6b", "SAFE": "#fb6a4a", "SUN_POINT": "#9ecae1",
               "COMPUTE": "#a1d99b"}
RUN_DASH = ("", "5,3", "2,2", "8,3,2,3")


def _hk_limit(name: str) -> tuple[float | None, float | None]:
    """The flight software's red limits of a housekeeping channel (flight_sw.dictionary)."""
    from flight_sw.dictionary import hk_channels

    for c in hk_channels([]):
        if c.name == name:
            return c.lo, c.hi
    return None, None


def _c(k: np.ndarray) -> np.ndarray:
    return k - ZERO_CELSIUS_K


class _Builder:
    """Adds series to a plot: for one run in the palette's colours; for several, each
    run in its own colour (and dash), the series label prefixed with the run."""

    def __init__(self, runs: Sequence[RunData]) -> None:
        self.runs = runs
        self.multi = len(runs) > 1

    def add(self, plot: Plot, i_run: int, label: str, t: np.ndarray, y: np.ndarray, k: int, *,
            main: bool = True, **kw: object) -> None:
        if self.multi and not main:
            return
        if self.multi:
            color = PALETTE[i_run % len(PALETTE)]
            kw.setdefault("dash", RUN_DASH[k % len(RUN_DASH)])
            label = f"run {i_run + 1}: {label}"
        else:
            color = PALETTE[k % len(PALETTE)]
        plot.series.append(Series(label, t, y, color=color, **kw))  # type: ignore[arg-type]


def build_plots(runs: Sequence[RunData]) -> list[Plot]:
    b = _Builder(runs)
    first = runs[0]
    plots: list[Plot] = []

    # 1. SOC and battery voltage, with the floor
    p = Plot("soc", "Battery: state of charge and voltage", "SOC (0..1)", "battery voltage (V)")
    for i, r in enumerate(runs):
        b.add(p, i, "SOC (plant truth)", r.t_s, r.col("soc_true"), 0)
        b.add(p, i, "SOC (flight software estimate)", r.t_s, r.col("fsw_soc"), 2, main=False, dash="4,2", width=1)
        b.add(p, i, "battery voltage", r.t_s, r.col("battery_v_true"), 1, axis="right")
    floor = first.requirement_param("soc_floor", "min")
    if floor is not None:
        p.limits.append(Limit(f"SOC floor {floor:g} (soc_floor)", floor))
    lo, hi = _hk_limit("battery_v")
    if lo is not None:
        p.limits.append(Limit(f"battery voltage red limit {lo:g} V", lo, axis="right", color="#e07000"))
    p.left_range = (min(floor or 1.0, float(np.nanmin([np.nanmin(r.col("soc_true")) for r in runs] + [1.0]))) - 0.05,
                    1.02)
    plots.append(p)

    # 2. solar generation against consumption, with the payload budget
    p = Plot("power", "Power: solar generation, bus load, payload draw and budget", "power (W)")
    for i, r in enumerate(runs):
        b.add(p, i, "solar generation", r.t_s, r.col("solar_power_w_true"), 2)
        b.add(p, i, "bus load (incl. payload)", r.t_s, r.col("load_power_w_true"), 1)
        b.add(p, i, "payload draw (bench supply)", r.t_s, r.col("payload_power_w_meas"), 3, main=False, width=1)
        b.add(p, i, "payload budget (EPS)", r.t_s, r.col("fsw_payload_budget_w"), 4, main=False, step=True,
              dash="5,3")
    plots.append(p)

    # 3. temperatures
    p = Plot("temps", "Temperatures: payload node, each board, battery", "°C")
    for i, r in enumerate(runs):
        b.add(p, i, "payload node", r.t_s, _c(r.col("temp_payload_k_true")), 0)
        b.add(p, i, "battery", r.t_s, _c(r.col("temp_battery_k_true")), 1, main=False)
        for j, board in enumerate(r.boards):
            rows = r.board_rows(board)
            b.add(p, i, f"{board} (hottest zone)", rows["t_ns"] / 1e9, _c(rows["temp_k"].astype(float)), 2 + j)
    tmax = first.requirement_param("payload_temp_max", "max_c")
    if tmax is not None:
        p.limits.append(Limit(f"payload limit {tmax:g} °C (payload_temp_max)", tmax))
    lo, hi = _hk_limit("temp_battery_k")
    if lo is not None and hi is not None:
        p.limits.append(Limit(f"battery low {lo - ZERO_CELSIUS_K:g} °C", lo - ZERO_CELSIUS_K, color="#e07000"))
        p.limits.append(Limit(f"battery high {hi - ZERO_CELSIUS_K:g} °C", hi - ZERO_CELSIUS_K, color="#e07000"))
    plots.append(p)

    # 4. throttle against the EPS budget and the thermal derating, per board
    p = Plot("throttle", "Payload throttle per board, thermal derating and EPS budget", "throttle, derating (0..1)",
             "EPS payload budget (W)")
    for i, r in enumerate(runs):
        for j, board in enumerate(r.boards):
            rows = r.board_rows(board)
            if rows.dtype.names and "throttle" in rows.dtype.names:
                b.add(p, i, f"{board} throttle", rows["t_ns"] / 1e9, rows["throttle"].astype(float), j, step=True)
            bound = (r.summary.get("yield") or {}).get("schedule") or {}
            if board in bound.get("throttle", {}):  # the yield bound's throttle (docs/yield.md)
                b.add(p, i, f"{board} bound", np.asarray(bound["t_s"], float),
                      np.asarray(bound["throttle"][board], float), j, main=False, step=True, dash="2,3")
        b.add(p, i, "thermal derating", r.t_s, r.col("fsw_thermal_derate"), 3, main=False, step=True, dash="4,2")
        b.add(p, i, "EPS payload budget", r.t_s, r.col("fsw_payload_budget_w"), 4, main=False, step=True,
              axis="right", width=1)
    p.left_range = (-0.05, 1.08)
    plots.append(p)

    # 5. jobs: cumulative and per orbit
    p = Plot("jobs", "Jobs completed: cumulative (lines) and per orbit (bars)", "jobs (cumulative)", "jobs per orbit")
    for i, r in enumerate(runs):
        done = r.col("fsw_jobs_completed")
        b.add(p, i, "jobs completed", r.t_s, done, 0, step=True)
        for j, board in enumerate(r.boards):
            rows = r.board_rows(board)
            b.add(p, i, f"{board}", rows["t_ns"] / 1e9, rows["jobs_done"].astype(float), 2 + j, main=False,
                  step=True, width=1)
        if i == 0:
            starts, ends, counts = jobs_per_orbit(r)
            if len(counts):
                p.series.append(Series("jobs per orbit" + (" (run 1)" if b.multi else ""), starts, counts,
                                       color="#555", axis="right", bars=ends))
    jmin = first.requirement_param("jobs_per_orbit", "min")
    if jmin is not None:
        p.limits.append(Limit(f"{jmin:g} jobs per orbit (jobs_per_orbit)", jmin, axis="right"))
    plots.append(p)

    # 6. pointing error with the flight mode
    p = Plot("pointing", "Pointing error, with the flight mode", "pointing error (deg)", height=230)
    for i, r in enumerate(runs):
        b.add(p, i, "sun to array normal (plant truth)", r.t_s, r.col("sun_err_deg"), 0)
        b.add(p, i, "ADCS pointing error (flight software)", r.t_s, np.degrees(r.col("fsw_pointing_error_rad")), 1,
              main=False, width=1)
    within = first.requirement_param("sun_pointing", "within_deg")
    if within is not None:
        p.limits.append(Limit(f"{within:g}° (sun_pointing)", within))
    p.strip = Strip("mode", first.segments("fsw_mode"), MODE_COLORS)
    worst = max(float(np.nanmax(np.r_[r.col("sun_err_deg"), 0.0])) for r in runs)
    p.left_range = (0.0, min(max(worst, (within or 10.0) * 1.5) * 1.05, 185.0))
    plots.append(p)

    # 7. wheels
    p = Plot("wheels", "Reaction wheels: speeds and angular momentum", "wheel speed (rad/s)", "momentum (N m s)")
    for i, r in enumerate(runs):
        for j, ax in enumerate("xyz"):
            b.add(p, i, f"wheel {ax}", r.t_s, r.col(f"wheel_{ax}_rad_s_true"), j, main=(j == 0) or not b.multi)
        b.add(p, i, "wheel momentum |h_w|", r.t_s, r.col("wheel_momentum_nms_true"), 3, axis="right", dash="4,2")
        b.add(p, i, "total momentum |h|", r.t_s, r.col("momentum_nms_true"), 4, main=False, axis="right", dash="1,2")
    plots.append(p)

    # 8. link errors and retries per board
    p = Plot("link", "Payload links: errors and retries per board (cumulative)", "count")
    for i, r in enumerate(runs):
        for j, board in enumerate(r.boards):
            rows = r.link_rows(board)
            if not len(rows):
                continue
            # counts change in steps: a row where they changed, held to the run's end
            t = np.append(rows["t_ns"] / 1e9, r.t_s[-1] if len(r.t_s) else rows["t_ns"][-1] / 1e9)
            b.add(p, i, f"{board} link errors", t, np.append(rows["errors"], rows["errors"][-1]).astype(float),
                  2 * j + 1, step=True)
            b.add(p, i, f"{board} retries", t, np.append(rows["retries"], rows["retries"][-1]).astype(float),
                  2 * j, step=True, dash="4,2")
        ev = r.events()
        for j, board in enumerate(r.boards):
            sel = (ev["source"] == "fsw") & (ev["kind"] == "link_error")
            mine = [t / 1e9 for t, d in zip(ev["t_ns"][sel].tolist(), ev["detail"][sel].tolist(), strict=True)
                    if f'"board": "{board}"' in d]
            if mine:
                tt = np.r_[0.0, np.array(mine), r.end_s]
                yy = np.r_[0.0, np.arange(1, len(mine) + 1), len(mine)].astype(float)
                b.add(p, i, f"{board} link_error events (flight software)", tt, yy, 2 * j + 4, main=False, step=True,
                      width=1, dash="1,2")
    p.left_range = None
    plots.append(p)
    return plots


def jobs_per_orbit(r: RunData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each orbit's start and end (s) and the jobs completed in it (``fsw_jobs_completed``)."""
    orbit = r.col("orbit")
    done = r.col("fsw_jobs_completed")
    if not len(orbit) or np.all(np.isnan(orbit)):
        return np.zeros(0), np.zeros(0), np.zeros(0)
    starts, ends, counts = [], [], []
    for o in np.unique(orbit[~np.isnan(orbit)]):
        idx = np.flatnonzero(orbit == o)
        d = done[idx]
        before = done[idx[0] - 1] if idx[0] > 0 else 0.0
        last = d[~np.isnan(d)]
        n = (last[-1] if len(last) else before) - (before if before == before else 0.0)
        starts.append(r.t_s[idx[0]])
        ends.append(r.t_s[idx[-1]] + 1.0)
        counts.append(n)
    return np.array(starts), np.array(ends), np.array(counts, dtype=float)


def lateness_histogram(lat: dict) -> tuple[list[tuple[float, float, int]], list[tuple[float, float]]]:
    """Log-spaced bins of frame lateness (ms) with their counts, and the worst frames (t_s, ms)."""
    ms = np.asarray(lat.get("late_ms", []), dtype=float)
    if not len(ms):
        return [], []
    edges = [0.0] + [10 ** k for k in np.arange(-2, math.log10(max(ms.max(), 0.01)) + 0.5, 0.5)]
    edges = sorted(set(edges)) + [math.inf]
    hist = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        n = int(((ms >= a) & (ms < b)).sum())
        hist.append((a, b, n))
    t0 = float(lat.get("t0_s", 0.0))
    worst = np.argsort(-ms)[:10]
    return hist, [(t0 + float(i), float(ms[i])) for i in worst]
