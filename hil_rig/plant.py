"""Spacecraft plant: attitude, wheels, magnetorquers, sensors, power and thermal.

Conventions (../shared/DESIGN.md): SI units; body axes are the principal axes
(diagonal inertia); ``q_bi`` is scalar-first Hamilton and rotates inertial (TEME)
to body: ``v_body = R(q_bi) v_inertial`` with ``R(q)`` the Hamilton rotation
matrix, i.e. ``v_b = q (x) v_i (x) q*``. Wheels 0, 1, 2 spin about body x, y, z.

Attitude integrator: Strang splitting of the free rigid body (with wheel momentum)
into exact rotations about the three body axes (1/2, 1/2, 1, 1/2, 1/2), between
two half-kicks of external torque. Every sub-step is an exact rotation, so
without external torque the inertial angular momentum is conserved to rounding.
Thermal: explicit Euler on lumped nodes. Battery: equivalent circuit (OCV(soc) +
R), coulomb counting with charge efficiency; every joule is booked in a ledger.

The plant never reads the wall clock or a global RNG: sensor noise comes from
numpy Generators spawned from the seed.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from hil_rig.constants import EARTH_MU_M3_S2, NS_PER_S, SPACE_TEMP_K, STEFAN_BOLTZMANN_W_M2_K4
from hil_rig.environment import EnvSample, EnvSamples

NODES = ("payload", "battery", "radiator", "structure")
_SIGMA = STEFAN_BOLTZMANN_W_M2_K4


@dataclasses.dataclass(frozen=True)
class Panel:
    """A body-mounted solar panel."""

    normal_body: tuple[float, float, float]
    area_m2: float


@dataclasses.dataclass(frozen=True)
class Surface:
    """An external surface of a thermal node."""

    node: str
    normal_body: tuple[float, float, float]
    area_m2: float
    absorptivity: float
    emissivity: float


@dataclasses.dataclass(frozen=True)
class PlantParams:
    # attitude
    inertia_kg_m2: tuple[float, float, float] = (0.9, 1.0, 0.6)
    wheel_inertia_kg_m2: float = 2.0e-4
    wheel_max_torque_nm: float = 4.0e-3
    wheel_max_speed_rad_s: float = 650.0
    wheel_viscous_nm_s: float = 2.0e-7
    wheel_coulomb_nm: float = 1.0e-5
    wheel_power_w: float = 0.6  # per wheel, electronics
    mtq_max_dipole_am2: float = 0.3
    mtq_power_w: float = 0.5  # per axis at full dipole
    gravity_gradient: bool = True
    q_bi0: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    omega0_rad_s: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # sensors
    gyro_noise_rad_s: float = 1.0e-4
    gyro_bias_sigma_rad_s: float = 5.0e-4
    mag_noise_t: float = 1.0e-7
    css_noise_frac: float = 0.01
    css_full_scale_a: float = 1.0e-3
    temp_noise_k: float = 0.05
    power_noise_frac: float = 0.005
    # power
    panels: tuple[Panel, ...] = (Panel((0.0, 0.0, -1.0), 0.30), Panel((1.0, 0.0, 0.0), 0.06),
                                 Panel((-1.0, 0.0, 0.0), 0.06))
    solar_efficiency: float = 0.29
    solar_temp_coeff_per_k: float = -0.0035
    solar_ref_temp_k: float = 301.15
    battery_capacity_wh: float = 80.0
    battery_ocv_soc: tuple[float, ...] = (0.0, 0.1, 0.2, 0.5, 0.8, 0.9, 1.0)
    battery_ocv_v: tuple[float, ...] = (12.0, 13.6, 14.2, 14.8, 15.6, 16.1, 16.8)
    battery_r_ohm: float = 0.08
    battery_charge_efficiency: float = 0.96
    battery_max_charge_w: float = 60.0
    soc0: float = 0.8
    bus_base_w: float = 6.0
    # thermal
    heat_capacity_j_k: tuple[float, float, float, float] = (600.0, 900.0, 1200.0, 6000.0)
    conductance_w_k: tuple[tuple[str, str, float], ...] = (
        ("payload", "radiator", 1.5), ("payload", "structure", 0.3),
        ("battery", "structure", 0.5), ("radiator", "structure", 0.8))
    surfaces: tuple[Surface, ...] = (
        Surface("radiator", (0.0, 1.0, 0.0), 0.12, 0.2, 0.85),
        Surface("structure", (0.0, 0.0, -1.0), 0.30, 0.9, 0.85),
        Surface("structure", (0.0, 0.0, 1.0), 0.30, 0.5, 0.6),
        Surface("structure", (1.0, 0.0, 0.0), 0.06, 0.9, 0.85),
        Surface("structure", (-1.0, 0.0, 0.0), 0.06, 0.9, 0.85),
        Surface("structure", (0.0, -1.0, 0.0), 0.12, 0.5, 0.6))
    temps0_k: tuple[float, float, float, float] = (293.15, 293.15, 283.15, 288.15)

    def validate(self) -> None:
        if any(i <= 0 for i in self.inertia_kg_m2):
            raise ValueError("inertia_kg_m2: principal inertias must be > 0")
        if not 0 <= self.soc0 <= 1:
            raise ValueError("soc0: must be in [0, 1]")
        if len(self.battery_ocv_soc) != len(self.battery_ocv_v) or list(self.battery_ocv_soc) != sorted(self.battery_ocv_soc):
            raise ValueError("battery_ocv_soc/_v: same length, soc increasing")
        for s in self.surfaces:
            if s.node not in NODES:
                raise ValueError(f"surfaces: unknown node {s.node!r}, expected one of {NODES}")
        for a, b, _ in self.conductance_w_k:
            if a not in NODES or b not in NODES:
                raise ValueError(f"conductance_w_k: unknown node in ({a!r}, {b!r})")


@dataclasses.dataclass(frozen=True)
class Actuators:
    wheel_torque_nm: tuple[float, float, float] = (0.0, 0.0, 0.0)  # motor torque on each wheel
    mtq_dipole_am2: tuple[float, float, float] = (0.0, 0.0, 0.0)
    heater_w: float = 0.0  # battery heater


@dataclasses.dataclass(frozen=True)
class Faults:
    """Faults are inputs like any other: pass a new Faults to step()/sensors()."""

    gyro_dead: bool = False
    gyro_stuck: bool = False
    gyro_bias_rad_s: tuple[float, float, float] = (0.0, 0.0, 0.0)
    mag_dead: bool = False
    mag_stuck: bool = False
    mag_bias_t: tuple[float, float, float] = (0.0, 0.0, 0.0)
    css_dead: bool = False
    wheel_stuck: tuple[bool, bool, bool] = (False, False, False)
    hot_case: float = 1.0  # multiplier on environmental heat loads
    battery_capacity_ratio: float = 1.0


NO_FAULTS = Faults()


@dataclasses.dataclass(frozen=True)
class Readings:
    """What the flight software's sensors report."""

    gyro_rad_s: tuple[float, float, float]
    gyro_valid: bool
    mag_body_t: tuple[float, float, float]
    mag_valid: bool
    css_a: tuple[float, ...]  # +x, -x, +y, -y, +z, -z
    sun_body: tuple[float, float, float]
    sun_valid: bool
    wheel_speed_rad_s: tuple[float, float, float]
    battery_v: float
    battery_a: float
    solar_power_w: float
    temps_k: dict[str, float]


# ------------------------------------------------------------------ small vector math


def _rotmat(q: list[float]) -> tuple[tuple[float, float, float], ...]:
    w, x, y, z = q
    return ((1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
            (2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
            (2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)))


def _mv(m, v) -> list[float]:
    return [m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
            m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
            m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2]]


def _cross(a, b) -> list[float]:
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def rotation_matrix(q_bi) -> np.ndarray:
    """R(q_bi): v_body = R @ v_inertial."""
    return np.array(_rotmat(list(q_bi)))


class Plant:
    """The spacecraft. Drive it with :meth:`step`; read :meth:`sensors` and :meth:`truth`."""

    def __init__(self, params: PlantParams | None = None, seed: int = 0) -> None:
        self.p = params or PlantParams()
        self.p.validate()
        p = self.p
        ss = np.random.SeedSequence(seed)
        self._rng_bias, self._rng_gyro, self._rng_mag, self._rng_css, self._rng_meas = (
            np.random.default_rng(s) for s in ss.spawn(5))
        self.gyro_bias_rad_s = self._rng_bias.normal(0.0, p.gyro_bias_sigma_rad_s, 3)
        self.t_ns = 0
        self.q = [float(x) for x in p.q_bi0]
        n = math.sqrt(sum(x * x for x in self.q))
        self.q = [x / n for x in self.q]
        self.inertia = [float(x) for x in p.inertia_kg_m2]
        self.wheel_speed = [0.0, 0.0, 0.0]
        omega0 = p.omega0_rad_s
        self.pi_b = [self.inertia[k] * omega0[k] for k in range(3)]  # total body momentum
        self.q_cap_c = p.battery_capacity_wh * 3600.0 / float(np.interp(0.5, p.battery_ocv_soc, p.battery_ocv_v))
        self.charge_c = p.soc0 * self.q_cap_c
        self.temps = [float(x) for x in p.temps0_k]
        self._node_idx = {n: i for i, n in enumerate(NODES)}
        self._cond = [(self._node_idx[a], self._node_idx[b], g) for a, b, g in p.conductance_w_k]
        self._surf = [(self._node_idx[s.node], tuple(s.normal_body), s.area_m2, s.absorptivity, s.emissivity)
                      for s in p.surfaces]
        self.faults = NO_FAULTS
        self.ledger = dict.fromkeys(("solar_j", "load_j", "shunt_j", "unmet_j", "battery_heat_j",
                                     "stored_j"), 0.0)
        # last-step values
        self.env: EnvSample | None = None
        self.battery_a = 0.0
        self.battery_v = self.ocv(self.soc)
        self.solar_power_w = 0.0
        self.load_power_w = 0.0
        self.payload_power_w = 0.0
        self._last_gyro: tuple[float, float, float] | None = None
        self._last_mag: tuple[float, float, float] | None = None

    # --- helpers ---------------------------------------------------------------
    @property
    def soc(self) -> float:
        return self.charge_c / (self.q_cap_c * self.faults.battery_capacity_ratio)

    def ocv(self, soc: float) -> float:
        return float(np.interp(soc, self.p.battery_ocv_soc, self.p.battery_ocv_v))

    def omega_body(self) -> list[float]:
        jw = self.p.wheel_inertia_kg_m2
        return [(self.pi_b[k] - jw * self.wheel_speed[k]) / self.inertia[k] for k in range(3)]

    def h_inertial(self) -> np.ndarray:
        """Total angular momentum (body + wheels) in the inertial frame, N m s."""
        return rotation_matrix(self.q).T @ np.array(self.pi_b)

    # --- dynamics --------------------------------------------------------------
    def _rotate_about(self, k: int, dt: float) -> None:
        jw = self.p.wheel_inertia_kg_m2
        w = (self.pi_b[k] - jw * self.wheel_speed[k]) / self.inertia[k]
        phi = w * dt
        c, s = math.cos(phi), math.sin(phi)
        i, j = (k + 1) % 3, (k + 2) % 3
        # body-frame components of the fixed inertial momentum rotate by -phi about k
        pi, pj = self.pi_b[i], self.pi_b[j]
        self.pi_b[i] = c * pi + s * pj
        self.pi_b[j] = -s * pi + c * pj
        # q' = q_k(-phi) (x) q
        h = -0.5 * phi
        a0, av = math.cos(h), math.sin(h)
        w0, x0, y0, z0 = self.q
        qv = [x0, y0, z0]
        e = [0.0, 0.0, 0.0]
        e[k] = av
        cr = _cross(e, qv)
        self.q = [a0 * w0 - av * qv[k],
                  a0 * x0 + w0 * e[0] + cr[0],
                  a0 * y0 + w0 * e[1] + cr[1],
                  a0 * z0 + w0 * e[2] + cr[2]]

    def step(self, dt_ns: int, actuators: Actuators, env: EnvSample, payload_power_w: float,
             faults: Faults | None = None) -> None:
        """Advance the plant by ``dt_ns`` under ``env`` (the environment at the step's start)."""
        if faults is not None:
            self.faults = faults
        f = self.faults
        p = self.p
        dt = dt_ns / NS_PER_S
        self.env = env
        rot = _rotmat(self.q)
        r_i = env.r_teme_m
        r_norm = math.sqrt(r_i[0] ** 2 + r_i[1] ** 2 + r_i[2] ** 2)
        n_b = _mv(rot, [-r_i[0] / r_norm, -r_i[1] / r_norm, -r_i[2] / r_norm])  # nadir, body
        s_b = _mv(rot, env.sun_unit_teme)
        b_b = _mv(rot, env.b_teme_t)
        # external torques: gravity gradient + magnetorquers
        k_gg = 3 * EARTH_MU_M3_S2 / r_norm**3 if p.gravity_gradient else 0.0
        i_n = [self.inertia[k] * n_b[k] for k in range(3)]
        t_gg = _cross(n_b, i_n)
        m = [max(-p.mtq_max_dipole_am2, min(p.mtq_max_dipole_am2, x)) for x in actuators.mtq_dipole_am2]
        t_mtq = _cross(m, b_b)
        t_ext = [k_gg * t_gg[k] + t_mtq[k] for k in range(3)]
        # wheels: motor torque limited, friction, speed limit, stuck
        jw = p.wheel_inertia_kg_m2
        w_torque = [0.0, 0.0, 0.0]
        for k in range(3):
            ws = self.wheel_speed[k]
            if f.wheel_stuck[k]:
                continue
            tm = max(-p.wheel_max_torque_nm, min(p.wheel_max_torque_nm, actuators.wheel_torque_nm[k]))
            if (ws >= p.wheel_max_speed_rad_s and tm > 0) or (ws <= -p.wheel_max_speed_rad_s and tm < 0):
                tm = 0.0
            fr = p.wheel_viscous_nm_s * ws + (math.copysign(p.wheel_coulomb_nm, ws) if ws != 0.0 else 0.0)
            net = tm - fr
            if ws != 0.0 and tm == 0.0 and abs(net) * dt / jw > abs(ws):
                net = -ws * jw / dt  # friction stops the wheel, never reverses it
            w_torque[k] = net
        half = 0.5 * dt
        for k in range(3):
            self.pi_b[k] += t_ext[k] * half
            if not f.wheel_stuck[k]:
                self.wheel_speed[k] += w_torque[k] / jw * half
        self._rotate_about(0, half)
        self._rotate_about(1, half)
        self._rotate_about(2, dt)
        self._rotate_about(1, half)
        self._rotate_about(0, half)
        for k in range(3):
            self.pi_b[k] += t_ext[k] * half
            if not f.wheel_stuck[k]:
                self.wheel_speed[k] += w_torque[k] / jw * half
        # ---- power
        ts = self.temps[3]
        solar = 0.0
        flux = env.solar_flux_w_m2
        if flux > 0.0:
            eff = p.solar_efficiency * (1.0 + p.solar_temp_coeff_per_k * (ts - p.solar_ref_temp_k))
            for pan in p.panels:
                c = pan.normal_body[0] * s_b[0] + pan.normal_body[1] * s_b[1] + pan.normal_body[2] * s_b[2]
                if c > 0:
                    solar += flux * pan.area_m2 * c * max(eff, 0.0)
        mtq_w = sum(abs(x) for x in m) / p.mtq_max_dipole_am2 * p.mtq_power_w
        load = p.bus_base_w + payload_power_w + actuators.heater_w + 3 * p.wheel_power_w + mtq_w
        net = solar - load  # + charges
        cap = self.q_cap_c * f.battery_capacity_ratio
        soc = self.charge_c / cap
        ocv = self.ocv(soc)
        r = p.battery_r_ohm
        shunt = unmet = 0.0
        if net > 0:
            charge_w = min(net, p.battery_max_charge_w) if soc < 1.0 else 0.0
            shunt = net - charge_w
            net = charge_w
        else:
            pmax = ocv * ocv / (4 * r)  # deepest discharge the cell can deliver
            if soc <= 0.0:
                unmet, net = -net, 0.0
            elif -net > pmax:
                unmet, net = -net - pmax, -pmax
        current = (-ocv + math.sqrt(max(ocv * ocv + 4 * r * net, 0.0))) / (2 * r) if net != 0 else 0.0
        eta = p.battery_charge_efficiency if current > 0 else 1.0
        dq = eta * current * dt
        if self.charge_c + dq > cap:
            dq = cap - self.charge_c
        if self.charge_c + dq < 0:
            dq = -self.charge_c
        # stored (chemical) energy change = integral of OCV dq, trapezoid over the step
        soc1 = (self.charge_c + dq) / cap
        stored = 0.5 * (ocv + self.ocv(soc1)) * dq
        self.charge_c += dq
        batt_heat = current * current * r + (1 - eta) * ocv * current
        L = self.ledger
        L["solar_j"] += solar * dt
        L["load_j"] += (load - unmet) * dt
        L["shunt_j"] += shunt * dt
        L["unmet_j"] += unmet * dt
        L["battery_heat_j"] += batt_heat * dt
        L["stored_j"] += stored
        self.battery_a = current
        self.battery_v = ocv + current * r
        self.solar_power_w = float(solar)
        self.load_power_w = load - unmet
        self.payload_power_w = payload_power_w
        # ---- thermal (explicit Euler)
        T = self.temps
        q_in = [payload_power_w, batt_heat + actuators.heater_w,
                0.0, p.bus_base_w + 3 * p.wheel_power_w + mtq_w]
        hot = f.hot_case
        alb, ir = env.albedo_flux_w_m2, env.earth_ir_flux_w_m2
        for node, nrm, area, alpha, emis in self._surf:
            cs = nrm[0] * s_b[0] + nrm[1] * s_b[1] + nrm[2] * s_b[2]
            cn = nrm[0] * n_b[0] + nrm[1] * n_b[1] + nrm[2] * n_b[2]
            absorbed = 0.0
            if cs > 0:
                absorbed += alpha * area * flux * cs
            if cn > 0:
                absorbed += (alpha * alb + emis * ir) * area * cn
            t4 = T[node] ** 4
            q_in[node] += hot * absorbed - emis * _SIGMA * area * (t4 - SPACE_TEMP_K**4)
        for a, b, g in self._cond:
            qq = g * (T[a] - T[b])
            q_in[a] -= qq
            q_in[b] += qq
        caps = p.heat_capacity_j_k
        self.temps = [T[i] + q_in[i] / caps[i] * dt for i in range(4)]
        self.t_ns += int(dt_ns)

    def run(self, env: EnvSamples, dt_ns: int, actuators: Actuators, payload_power_w: float | np.ndarray,
            faults: Faults | None = None) -> None:
        """Batch path: one step per environment row with fixed actuators (e.g. between control frames)."""
        pw = np.broadcast_to(np.asarray(payload_power_w, dtype=float), (len(env),))
        for i in range(len(env)):
            self.step(dt_ns, actuators, env.row(i), float(pw[i]), faults)

    # --- outputs ---------------------------------------------------------------
    def truth(self) -> dict:
        return {
            "t_ns": self.t_ns,
            "q_bi": tuple(self.q),
            "omega_body_rad_s": tuple(float(x) for x in self.omega_body()),
            "wheel_speed_rad_s": tuple(self.wheel_speed),
            "h_inertial_nms": tuple(float(x) for x in self.h_inertial()),
            "soc": self.soc,
            "battery_v": self.battery_v,
            "battery_a": self.battery_a,
            "solar_power_w": self.solar_power_w,
            "load_power_w": self.load_power_w,
            "temps_k": {n: float(t) for n, t in zip(NODES, self.temps, strict=True)},
            "illumination": None if self.env is None else self.env.illumination,
            "ledger_j": {k: float(v) for k, v in self.ledger.items()},
        }

    def sensors(self, faults: Faults | None = None) -> Readings:
        """Sensor readings now, with seeded noise and bias; faults as inputs."""
        if faults is not None:
            self.faults = faults
        f, p = self.faults, self.p
        w = np.array(self.omega_body())
        gyro = tuple(w + self.gyro_bias_rad_s + np.array(f.gyro_bias_rad_s)
                     + self._rng_gyro.normal(0.0, p.gyro_noise_rad_s, 3))
        if f.gyro_stuck and self._last_gyro is not None:
            gyro = self._last_gyro
        self._last_gyro = gyro
        if f.gyro_dead:
            gyro = (0.0, 0.0, 0.0)
        rot = rotation_matrix(self.q)
        if self.env is None:
            b_b = np.zeros(3)
            s_b = np.zeros(3)
            illum = flux_ratio = 0.0
        else:
            b_b = rot @ self.env.b_teme_t
            s_b = rot @ self.env.sun_unit_teme
            illum = self.env.illumination
            flux_ratio = self.env.solar_flux_w_m2 / max(illum, 1e-12) / 1361.0 if illum > 0 else 0.0
        mag = tuple(b_b + np.array(f.mag_bias_t) + self._rng_mag.normal(0.0, p.mag_noise_t, 3))
        if f.mag_stuck and self._last_mag is not None:
            mag = self._last_mag
        self._last_mag = mag
        if f.mag_dead:
            mag = (0.0, 0.0, 0.0)
        normals = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
        cosines = np.clip(normals @ s_b, 0.0, None)
        noise = self._rng_css.normal(0.0, p.css_noise_frac, 6)
        css = p.css_full_scale_a * cosines * illum * flux_ratio * np.clip(1.0 + noise, 0.0, None)
        if f.css_dead:
            css = np.zeros(6)
        vec = np.array([css[0] - css[1], css[2] - css[3], css[4] - css[5]])
        nv = float(np.linalg.norm(vec))
        sun_valid = nv > 0.1 * p.css_full_scale_a
        sun_body = tuple(vec / nv) if sun_valid else (0.0, 0.0, 0.0)
        meas = self._rng_meas.normal(0.0, 1.0, 7)
        temps = {n: float(t + p.temp_noise_k * meas[i]) for i, (n, t) in enumerate(zip(NODES, self.temps, strict=True))}
        return Readings(
            gyro_rad_s=tuple(float(x) for x in gyro), gyro_valid=not f.gyro_dead,
            mag_body_t=tuple(float(x) for x in mag), mag_valid=not f.mag_dead,
            css_a=tuple(float(x) for x in css), sun_body=tuple(float(x) for x in sun_body),
            sun_valid=bool(sun_valid),
            wheel_speed_rad_s=tuple(self.wheel_speed),
            battery_v=float(self.battery_v * (1 + p.power_noise_frac * meas[4])),
            battery_a=float(self.battery_a * (1 + p.power_noise_frac * meas[5])),
            solar_power_w=float(self.solar_power_w * (1 + p.power_noise_frac * meas[6])),
            temps_k=temps,
        )
