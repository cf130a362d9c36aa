"""The flight-core step written again in pure Python/NumPy.

Not flight code. It exists for two jobs:
- the benchmark baseline (`bench/core.py`: `ratio_vs_numpy`), and
- an independent cross-check of the C loops (tests/test_native_reference.py
  steps both on the same random inputs and compares every output).

It follows the C sources line by line (`native/src/adcs.c`, `eps.c`,
`thermal.c`); see those for the design notes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from native.core import (
    MAX_ZONES,
    default_adcs_config,
    default_eps_config,
    default_thermal_config,
)

_MAX_RATE, _MAX_FIELD, _MAX_POS, _MAX_VEL = 100.0, 1e-3, 1e9, 1e5


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3-vector cross product (np.cross is ~10x slower on single 3-vectors)."""
    return np.array(
        [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
    )


def _finite(v: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(v)))


def _bounded(v: np.ndarray, lim: float) -> bool:
    return _finite(v) and bool(np.all(np.abs(v) <= lim))


def _unit(v: np.ndarray, tol: float) -> bool:
    return _finite(v) and abs(float(np.linalg.norm(v)) - 1.0) <= tol


def _pos(x: float) -> bool:
    return math.isfinite(x) and x > 0.0


def _nonneg(x: float) -> bool:
    return math.isfinite(x) and x >= 0.0


def _dt(i: Any, c: dict[str, Any]) -> tuple[float, bool]:
    dt = float(i["dt_s"])
    return dt, math.isfinite(dt) and 0.0 < dt <= c["max_dt_s"]


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else (hi if x > hi else x)


def qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array(
        [
            a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3],
            a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2],
            a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1],
            a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0],
        ]
    )


def qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    t = 2.0 * cross(q[1:], v)
    return v + q[0] * t + cross(q[1:], t)


def q_from_dcm(m: np.ndarray) -> np.ndarray:
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0.0:
        s = math.sqrt(tr + 1.0) * 2.0
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2.0
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2.0
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2.0
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    qa = np.array(q)
    if qa[0] < 0.0:
        qa = -qa
    return qa / np.linalg.norm(qa)


def _sat_vec(v: np.ndarray, lim: float) -> tuple[np.ndarray, bool]:
    m = float(np.max(np.abs(v)))
    if m > lim:
        return np.clip(v * (lim / m), -lim, lim), True
    return v, False


def _sat_norm(v: np.ndarray, lim: float) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v * (lim / n) if n > lim else v


class RefAdcs:
    def __init__(self, config: dict[str, Any] | None = None) -> None:
        c = {**default_adcs_config(), **(config or {})}
        self.c = c
        self.j = np.array(c["inertia_kgm2"], dtype=float)
        self.n = np.array(c["array_normal_body"], dtype=float)
        self.search = np.array(c["search_axis_body"], dtype=float)
        self.reset()

    def reset(self) -> None:
        self.q = np.array([1.0, 0.0, 0.0, 0.0])
        self.bias = np.zeros(3)
        self.rate = np.zeros(3)
        self.b_prev = np.zeros(3)
        self.have_b_prev = False
        self.att_init = False
        self.tss = math.inf

    def _sun_error(self, s: np.ndarray) -> tuple[float, np.ndarray]:
        x = cross(self.n, s)
        sn = float(np.linalg.norm(x))
        cs = float(np.dot(self.n, s))
        ang = math.atan2(sn, cs)
        if sn > 1e-9:
            return ang, x / sn
        return ang, (self.search.copy() if cs < 0.0 else np.zeros(3))

    def step(self, i: Any) -> dict[str, Any]:
        c = self.c
        f = 0
        mode = int(i["mode"])
        if mode not in (0, 1, 2):
            f |= 64
            mode = 0
        dt = float(i["dt_s"])
        dt_ok = math.isfinite(dt) and 0.0 < dt <= c["max_dt_s"]
        if not dt_ok:
            f |= 1
        rate_in = np.asarray(i["rate_rad_s"], dtype=float)
        gyro_ok = _bounded(rate_in, _MAX_RATE)
        if not gyro_ok:
            f |= 2
        b_in = np.asarray(i["b_body_t"], dtype=float)
        mag_ok = _bounded(b_in, _MAX_FIELD)
        b_b, bn = np.zeros(3), 0.0
        if mag_ok:
            b_b = b_in.copy()
            bn = float(np.linalg.norm(b_b))
            mag_ok = bn > 1e-12
        bhat_b = b_b / bn if mag_ok else np.zeros(3)
        if not mag_ok:
            f |= 4
        s_b, sun_ok = np.zeros(3), False
        if int(i["sun_valid"]):
            sb = np.asarray(i["sun_body"], dtype=float)
            if _unit(sb, 0.1):
                s_b, sun_ok = sb / np.linalg.norm(sb), True
            else:
                f |= 8
        sun_eci = np.asarray(i["sun_eci"], dtype=float)
        b_eci = np.asarray(i["b_eci_t"], dtype=float)
        r, v = np.asarray(i["r_eci_m"], dtype=float), np.asarray(i["v_eci_m_s"], dtype=float)
        bref_in = _bounded(b_eci, _MAX_FIELD)
        orbit_in = _bounded(r, _MAX_POS) and _bounded(v, _MAX_VEL)
        sref_ok = _unit(sun_eci, 0.1)
        if (not sref_ok and bool(np.any(sun_eci != 0.0))) or not bref_in or not orbit_in:
            f |= 16
        s_i = sun_eci / np.linalg.norm(sun_eci) if sref_ok else np.zeros(3)
        bref_ok, bhat_i = False, np.zeros(3)
        if bref_in:
            nb = float(np.linalg.norm(b_eci))
            if nb > 1e-12:
                bhat_i, bref_ok = b_eci / nb, True
        wheels = np.asarray(i["wheel_speed_rad_s"], dtype=float)
        wheel_ok = _bounded(wheels, 10.0 * c["wheel_max_speed_rad_s"])
        if not wheel_ok:
            f |= 32
        tw, dip, perr = np.zeros(3), np.zeros(3), -1.0

        if dt_ok:
            if gyro_ok:
                w = rate_in - self.bias
                self.rate = w.copy()
            else:
                w = self.rate.copy()
            if not self.att_init and sun_ok and mag_ok and sref_ok and bref_ok:
                t1b, t1i = s_b, s_i
                t2b, t2i = cross(s_b, bhat_b), cross(s_i, bhat_i)
                nb2, ni2 = float(np.linalg.norm(t2b)), float(np.linalg.norm(t2i))
                if nb2 >= 0.05 and ni2 >= 0.05:
                    t2b, t2i = t2b / nb2, t2i / ni2
                    tb = np.array([t1b, t2b, cross(t1b, t2b)])
                    ti = np.array([t1i, t2i, cross(t1i, t2i)])
                    self.q = q_from_dcm(tb.T @ ti)
                    self.att_init = True
            corr = np.zeros(3)
            if self.att_init:
                if sun_ok and sref_ok:
                    corr = corr + c["k_sun"] * cross(s_b, qrot(self.q, s_i))
                if mag_ok and bref_ok:
                    corr = corr + c["k_mag"] * cross(bhat_b, qrot(self.q, bhat_i))
                if gyro_ok:
                    mb = c["max_bias_rad_s"]
                    self.bias = np.clip(self.bias - c["k_bias"] * corr * dt, -mb, mb)
            wp = w + corr
            wn = float(np.linalg.norm(wp))
            half = 0.5 * wn * dt
            k = -math.sin(half) / wn if wn > 0.0 else -0.5 * dt
            self.q = qmul(np.concatenate([[math.cos(half)], wp * k]), self.q)
            self.q = self.q / np.linalg.norm(self.q)
            self.tss = 0.0 if sun_ok else self.tss + dt
            att_valid = self.att_init and self.tss <= c["att_hold_s"]
            s_use, s_known = np.zeros(3), False
            if sun_ok:
                s_use, s_known = s_b, True
            elif att_valid and sref_ok:
                s_use, s_known = qrot(self.q, s_i), True

            if mode == 0:
                have, bdot = False, np.zeros(3)
                if gyro_ok and mag_ok:
                    bdot, have = cross(b_b, w), True
                elif mag_ok and self.have_b_prev:
                    bdot, have = (b_b - self.b_prev) / dt, True
                if have:
                    dip, sat = _sat_vec(-c["bdot_gain"] * bdot, c["dipole_max_am2"])
                    f |= 256 if sat else 0
                if s_known:
                    perr = self._sun_error(s_use)[0]
            elif gyro_ok and wheel_ok:
                kw = c["att_wn_rad_s"] / (2.0 * c["att_zeta"])
                kd = 2.0 * c["att_zeta"] * c["att_wn_rad_s"]
                wdes = np.zeros(3)
                if mode == 1:
                    if s_known:
                        perr, ax = self._sun_error(s_use)
                        wdes = _sat_norm(ax * (kw * perr), c["max_slew_rate_rad_s"])
                    else:
                        wdes = self.search * c["search_rate_rad_s"]
                else:
                    ref = self._lvlh(r, v) if (self.att_init and orbit_in) else None
                    if ref is not None:
                        q_ri, w_r = ref
                        q_br = qmul(self.q, q_ri * np.array([1.0, -1.0, -1.0, -1.0]))
                        if q_br[0] < 0.0:
                            q_br = -q_br
                        qv = q_br[1:]
                        perr = 2.0 * math.atan2(float(np.linalg.norm(qv)), q_br[0])
                        corr_w = _sat_norm(qv * (2.0 * kw), c["max_slew_rate_rad_s"])
                        wdes = qrot(q_br, w_r) + corr_w
                hw = c["wheel_inertia_kgm2"] * wheels
                gyro = cross(w, self.j * w + hw)
                tw = -(self.j * kd * (wdes - w)) - gyro
                tw, sat = _sat_vec(tw, c["wheel_max_torque_nm"])
                f |= 128 if sat else 0
                mx = c["wheel_max_speed_rad_s"]
                for k in range(3):
                    if (wheels[k] >= mx and tw[k] > 0.0) or (wheels[k] <= -mx and tw[k] < 0.0):
                        tw[k] = 0.0
                        f |= 128
                if mag_ok and c["unload_gain_per_s"] > 0.0:
                    dip = cross(hw, b_b) * (c["unload_gain_per_s"] / (bn * bn))
                    dip, sat = _sat_vec(dip, c["dipole_max_am2"])
                    f |= 256 if sat else 0
            elif mode == 1 and s_known:
                perr = self._sun_error(s_use)[0]
            if mag_ok:
                self.b_prev, self.have_b_prev = b_b.copy(), True
            else:
                self.have_b_prev = False
        else:
            att_valid = self.att_init and self.tss <= c["att_hold_s"]
        if not (_finite(tw) and _finite(dip)):
            tw, dip = np.zeros(3), np.zeros(3)
            f |= 512
        if not math.isfinite(perr):
            perr = -1.0
        return {
            "q_bi": self.q.copy(),
            "rate_rad_s": self.rate.copy(),
            "bias_rad_s": self.bias.copy(),
            "wheel_torque_cmd_nm": tw,
            "dipole_cmd_am2": dip,
            "pointing_error_rad": perr,
            "sun_valid": int(sun_ok),
            "att_valid": int(att_valid),
            "mode": mode,
            "fault_flags": f,
        }

    @staticmethod
    def _lvlh(r: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        if not (_finite(r) and _finite(v)):
            return None
        rn = float(np.linalg.norm(r))
        h = cross(r, v)
        hn = float(np.linalg.norm(h))
        if not rn > 1.0 or not hn > 1e-9 * rn:
            return None
        z = -r / rn
        y = -h / hn
        e = np.array([cross(y, z), y, z])
        return q_from_dcm(e), np.array([0.0, -hn / (rn * rn), 0.0])


class RefEps:
    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.c = {**default_eps_config(), **(config or {})}
        ocv = np.array(self.c["ocv_v"], dtype=float)
        self.ocv = ocv
        self.e_cap = (
            self.c["capacity_ah"] * 3600.0 * (0.5 * (ocv[0] + ocv[-1]) + ocv[1:-1].sum()) / 10.0
        )
        self.reset()

    def reset(self) -> None:
        self.soc, self.rest, self.valid, self.mode = 0.0, 0.0, False, 0
        if self.c["soc_init"] >= 0.0:
            self.soc, self.valid = float(self.c["soc_init"]), True

    def _soc_ocv(self, v: float) -> float:
        ocv = self.ocv
        if v <= ocv[0]:
            return 0.0
        if v >= ocv[-1]:
            return 1.0
        for k in range(1, 11):
            if v <= ocv[k]:
                return ((k - 1) + (v - ocv[k - 1]) / (ocv[k] - ocv[k - 1])) / 10.0
        return 1.0

    def step(self, i: Any) -> dict[str, Any]:
        c = self.c
        dt, dt_ok = _dt(i, c)
        f = 0 if dt_ok else 1
        v, cur = float(i["battery_voltage_v"]), float(i["battery_current_a"])
        v_ok, i_ok = math.isfinite(v), math.isfinite(cur)
        f |= (0 if v_ok else 2) | (0 if i_ok else 4)
        if not self.valid and v_ok:
            self.soc, self.valid = self._soc_ocv(v), True
        elif self.valid and dt_ok and i_ok:
            dq = cur * dt / (3600.0 * c["capacity_ah"])
            if cur > 0.0:
                dq *= c["charge_eff"]
            self.soc += dq
            self.rest = self.rest + dt if abs(cur) < c["rest_current_a"] else 0.0
            if v_ok and self.rest >= c["rest_time_s"]:
                a = 1.0 - math.exp(-dt / c["ocv_tau_s"])
                self.soc += a * (self._soc_ocv(v) - self.soc)
            self.soc = _clamp(self.soc, 0.0, 1.0)
        elif not i_ok:
            self.rest = 0.0
        if not self.valid:
            f |= 128
        uv = v_ok and v < c["critical_voltage_v"]
        f |= 64 if uv else 0
        soc, known = self.soc, self.valid
        if self.mode == 0:
            if uv or (known and soc < c["critical_enter_soc"]):
                self.mode = 2
            elif known and soc < c["low_enter_soc"]:
                self.mode = 1
        elif self.mode == 1:
            if uv or (known and soc < c["critical_enter_soc"]):
                self.mode = 2
            elif known and soc > c["low_exit_soc"]:
                self.mode = 0
        elif not uv and known and soc > c["critical_exit_soc"]:
            self.mode = 1
        req = int(i["load_request_mask"])
        mask = 0
        for k, shed in enumerate(c["load_shed_mode"]):
            if (req >> k) & 1 and self.mode < shed:
                mask |= 1 << k
        pg, pl = float(i["solar_power_w"]), float(i["load_power_w"])
        ts, te = float(i["time_to_eclipse_s"]), float(i["eclipse_duration_s"])
        p_ok = _nonneg(pg) and _nonneg(pl)
        e_ok = _nonneg(ts) and _nonneg(te)
        f |= (0 if p_ok else 8) | (0 if e_ok else 16)
        budget = 0.0
        if p_ok and e_ok and known and self.mode != 2:
            ecap = self.e_cap
            e_now, e_floor = soc * ecap, c["soc_floor"] * ecap
            net = pg - pl
            horizon = ts + te
            if horizon > 0.0:
                a = e_now + (net * c["charge_eff"] if net > 0.0 else net) * ts
                p = (a - pl * te - e_floor) / horizon
                if te > 0.0:
                    p = min(p, (ecap - e_floor) / te - pl)
            else:
                p = net
            budget = _clamp(p * c["budget_margin"], 0.0, c["payload_max_w"])
            if not math.isfinite(budget):
                budget = 0.0
        demand = float(i["payload_demand_w"])
        if _nonneg(demand):
            grant = min(demand, budget)
        else:
            grant = 0.0
            f |= 32
        return {
            "soc": self.soc,
            "payload_budget_w": budget,
            "payload_grant_w": grant,
            "power_mode": self.mode,
            "load_switch_mask": mask,
            "fault_flags": f,
        }


class RefThermal:
    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.c = {**default_thermal_config(), **(config or {})}
        self.n = len(self.c["heater_on_k"])
        self.reset()

    def reset(self) -> None:
        self.since = [math.inf] * MAX_ZONES
        self.throttle, self.mask, self.tripped = 0.0, 0, False

    def step(self, i: Any) -> dict[str, Any]:
        c = self.c
        dt, dt_ok = _dt(i, c)
        f = 0 if dt_ok else 512
        temps = i["temp_k"]
        mask, hp = self.mask, 0.0
        for k in range(self.n):
            bit = 1 << k
            on = bool(mask & bit)
            t = float(temps[k])
            if dt_ok:
                self.since[k] += dt
            if not math.isfinite(t):
                f |= bit
                if on:
                    mask &= ~bit
                    self.since[k] = 0.0
            elif not on and t < c["heater_on_k"][k] and self.since[k] >= c["min_off_s"]:
                mask |= bit
                self.since[k] = 0.0
            elif on and t > c["heater_off_k"][k] and self.since[k] >= c["min_on_s"]:
                mask &= ~bit
                self.since[k] = 0.0
            if mask & bit:
                hp += c["heater_power_w"][k]
        self.mask = mask
        tp = float(i["payload_temp_k"])
        if not math.isfinite(tp):
            f |= 256
        else:
            if tp > c["trip_k"]:
                self.tripped = True
            if self.tripped and tp < c["trip_reset_k"]:
                self.tripped = False
            if self.tripped:
                self.throttle = 0.0
            elif dt_ok:
                span = c["derate_end_k"] - c["derate_start_k"]
                target = _clamp((c["derate_end_k"] - tp) / span, 0.0, 1.0)
                up, down = c["throttle_up_per_s"] * dt, c["throttle_down_per_s"] * dt
                self.throttle = _clamp(target, self.throttle - down, self.throttle + up)
                self.throttle = _clamp(self.throttle, 0.0, 1.0)
        f |= 1024 if self.tripped else 0
        return {
            "payload_throttle": self.throttle,
            "heater_power_w": hp,
            "heater_mask": mask,
            "trip": int(self.tripped),
            "fault_flags": f,
        }


class RefFlightCore:
    """All three reference loops; ``step(record)`` takes a FLIGHT_IN_DTYPE record."""

    def __init__(self, adcs=None, eps=None, thermal=None) -> None:
        self.adcs, self.eps, self.therm = RefAdcs(adcs), RefEps(eps), RefThermal(thermal)

    def reset(self) -> None:
        self.adcs.reset()
        self.eps.reset()
        self.therm.reset()

    def step(self, rec: Any) -> dict[str, dict[str, Any]]:
        return {
            "adcs": self.adcs.step(rec["adcs"]),
            "eps": self.eps.step(rec["eps"]),
            "therm": self.therm.step(rec["therm"]),
        }
