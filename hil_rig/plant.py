"""Spacecraft plant: attitude, wheels, magnetorquers, sensors, power and thermal.

Conventions: SI units; body axes are the principal axes
(diagonal inertia); ``q_bi`` is scalar-first Hamilton and rotates inertial (TEME)
to body: ``v_body = R(q_bi) v_inertial`` with ``R(q)`` the Hamilton rotation
matrix, i.e. ``v_b = q (x) v_i (x) q*``. Wheels 0, 1, 2 spin about body x, y, z.

The physics step is C (``native/plant/plant.c`` built as ``native._plant``: ground
code, kept apart from the flight core) so a day at 10 Hz runs in well under a
second; the sensor models are C too (``ohil_plant_sense``), read from its state at the rate
they are read, with noise drawn in blocks from per-sensor numpy Generators.

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
from typing import Any

import numpy as np
from native._plant import ffi, lib  # the C plant (ground code, native/plant)

from hil_rig.constants import (
    EARTH_MU_M3_S2,
    NS_PER_S,
    SOLAR_CONSTANT_W_M2,
    SPACE_TEMP_K,
    STEFAN_BOLTZMANN_W_M2_K4,
)
from hil_rig.environment import EnvSample, EnvSamples

_NOISE_BLOCK = 1000  # sensor-noise rows drawn per Generator call (100 s of 10 Hz reads)
NODES = ("payload", "battery", "radiator", "structure")
LEDGER_KEYS = ("solar_j", "load_j", "shunt_j", "unmet_j", "battery_heat_j", "stored_j")


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
class ActuatorInputs:
    wheel_torque_nm: tuple[float, float, float] = (0.0, 0.0, 0.0)  # motor torque on each wheel
    mtq_dipole_am2: tuple[float, float, float] = (0.0, 0.0, 0.0)
    heater_w: float = 0.0  # battery heater


@dataclasses.dataclass(frozen=True)
class PlantFaults:
    """Faults of the plant are inputs like any other: pass a new PlantFaults to step()/sensors()."""

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


NO_FAULTS = PlantFaults()


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


# ------------------------------------------------------------------ C plant

#: Addresses of the plant's port functions (``ohil_adcs_sense_fn`` and
#: ``ohil_adcs_actuate_fn`` of the flight core, native/include/ohil_adcs.h).
_PORT_SENSE = int(ffi.cast("uintptr_t", ffi.addressof(lib, "ohil_plant_port_sense")))
_PORT_ACTUATE = int(ffi.cast("uintptr_t", ffi.addressof(lib, "ohil_plant_port_actuate")))


@dataclasses.dataclass(frozen=True)
class PlantPort:
    """A C sensor/actuator port (flight_sw.interfaces.ControlPort) over the plant:
    addresses of the C functions and their context, and how many frames it can run."""

    sense_fn: int
    actuate_fn: int
    ctx: int
    max_frames: int
    env: EnvSamples
    k: int
    dt_ns: int



def rotation_matrix(q_bi) -> np.ndarray:
    """R(q_bi): v_body = R @ v_inertial (Hamilton, scalar first)."""
    w, x, y, z = (float(c) for c in q_bi)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def env_rows(env: EnvSamples) -> np.ndarray:
    """Pack environment samples into the C plant's row layout (N, ENV_STRIDE), C-contiguous."""
    return np.ascontiguousarray(np.column_stack([
        env.r_teme_m, env.sun_unit_teme, env.b_teme_t,
        env.solar_flux_w_m2, env.albedo_flux_w_m2, env.earth_ir_flux_w_m2]), dtype=np.float64)


_CONFIG_ERRORS = {
    lib.OHIL_PLANT_E_INERTIA: "inertia_kg_m2", lib.OHIL_PLANT_E_WHEEL: "wheel_* parameters",
    lib.OHIL_PLANT_E_MTQ: "mtq_max_dipole_am2", lib.OHIL_PLANT_E_PANELS: "panels",
    lib.OHIL_PLANT_E_OCV: "battery_ocv_soc/_v", lib.OHIL_PLANT_E_BATTERY: "battery_* parameters",
    lib.OHIL_PLANT_E_THERMAL: "heat_capacity_j_k", lib.OHIL_PLANT_E_LINKS: "conductance_w_k",
    lib.OHIL_PLANT_E_SURFACES: "surfaces", lib.OHIL_PLANT_E_CONSTANTS: "constants",
}


class Plant:
    """The spacecraft. Drive it with :meth:`step`; read :meth:`sensors` and :meth:`truth`.

    The physics and the sensor models run in C (``native._plant``); noise and faults come from here.
    """

    def __init__(self, params: PlantParams | None = None, seed: int = 0) -> None:
        self.p = params or PlantParams()
        self.p.validate()
        p = self.p
        ss = np.random.SeedSequence(seed)
        self._rng_bias, self._rng_gyro, self._rng_mag, self._rng_css, self._rng_meas = (
            np.random.default_rng(s) for s in ss.spawn(5))
        self.gyro_bias_rad_s = self._rng_bias.normal(0.0, p.gyro_bias_sigma_rad_s, 3)
        self.t_ns = 0
        self._cfg = ffi.new("ohil_plant_config_t *")
        self._st = ffi.new("ohil_plant_state_t *")
        self._cmd = ffi.new("ohil_plant_cmd_t *")
        self._envbuf = ffi.new("double[]", lib.OHIL_PLANT_ENV_STRIDE)
        self.q_cap_c = p.battery_capacity_wh * 3600.0 / float(np.interp(0.5, p.battery_ocv_soc, p.battery_ocv_v))
        self._fill_config()
        st = self._st
        q = np.asarray(p.q_bi0, dtype=float)
        st.q_bi = list(q / np.linalg.norm(q))
        st.pi_body_nms = [p.inertia_kg_m2[k] * p.omega0_rad_s[k] for k in range(3)]
        st.charge_c = p.soc0 * self.q_cap_c
        st.temps_k = list(p.temps0_k)
        self.faults = NO_FAULTS
        self._set_cmd(ActuatorInputs(), NO_FAULTS)
        st.battery_v = self.ocv(p.soc0)
        self._env_src: EnvSample | tuple[EnvSamples, int] | None = None
        self._env_view: tuple[EnvSamples, int] | None = None  # before the first step (set_initial_view)
        self._pw_buf = ffi.new("double[]", 16)
        self._rows_cache: tuple[EnvSamples, np.ndarray, object] | None = None  # keeps the buffer alive
        self._pw_fill: tuple[float, int] | None = None
        self.payload_power_w = 0.0
        self._last_gyro: tuple[float, float, float] | None = None
        self._last_mag: tuple[float, float, float] | None = None
        sc = self._sense_cfg = ffi.new("ohil_plant_sensor_config_t *")
        sc.gyro_noise_rad_s = p.gyro_noise_rad_s
        sc.gyro_bias_rad_s = self.gyro_bias_rad_s.tolist()
        sc.mag_noise_t = p.mag_noise_t
        sc.css_full_scale_a = p.css_full_scale_a
        sc.css_noise_frac = p.css_noise_frac
        sc.temp_noise_k = p.temp_noise_k
        sc.power_noise_frac = p.power_noise_frac
        self._sense_out = ffi.new("double[]", lib.OHIL_PLANT_READINGS)
        self._noise_src = {"gyro": (self._rng_gyro, 3), "mag": (self._rng_mag, 3), "css": (self._rng_css, 6),
                           "meas": (self._rng_meas, 7)}
        # per sensor: (block of rows, C pointer to it); index of the next row
        self._noise_blocks: dict[str, tuple[np.ndarray, Any]] = {}
        self._noise_idx = dict.fromkeys(self._noise_src, _NOISE_BLOCK)
        self._fault_args: tuple[PlantFaults, Any, Any] | None = None
        # the C sensor/actuator port (see port()): one per plant, re-aimed for each batch
        self._illum_cache: tuple[EnvSamples, np.ndarray, Any] | None = None
        c = self._port_c = ffi.new("ohil_plant_port_t *")
        c.cfg, c.st, c.cmd, c.sc = self._cfg, self._st, self._cmd, sc
        self._port_addr = int(ffi.cast("uintptr_t", c))

    def _fill_config(self) -> None:
        p, c = self.p, self._cfg
        if len(p.panels) > lib.OHIL_PLANT_MAX_PANELS or len(p.surfaces) > lib.OHIL_PLANT_MAX_SURFACES \
                or len(p.conductance_w_k) > lib.OHIL_PLANT_MAX_LINKS or len(p.battery_ocv_soc) > lib.OHIL_PLANT_MAX_OCV:
            raise ValueError("plant parameters: too many panels/surfaces/links/OCV points for the C plant")
        c.inertia_kg_m2 = list(p.inertia_kg_m2)
        c.wheel_inertia_kg_m2 = p.wheel_inertia_kg_m2
        c.wheel_max_torque_nm = p.wheel_max_torque_nm
        c.wheel_max_speed_rad_s = p.wheel_max_speed_rad_s
        c.wheel_viscous_nm_s = p.wheel_viscous_nm_s
        c.wheel_coulomb_nm = p.wheel_coulomb_nm
        c.wheel_power_w = p.wheel_power_w
        c.mtq_max_dipole_am2 = p.mtq_max_dipole_am2
        c.mtq_power_w = p.mtq_power_w
        c.gravity_gradient = int(p.gravity_gradient)
        c.n_panels = len(p.panels)
        for i, pan in enumerate(p.panels):
            c.panels[i].normal = list(pan.normal_body)
            c.panels[i].area_m2 = pan.area_m2
        c.solar_efficiency = p.solar_efficiency
        c.solar_temp_coeff_per_k = p.solar_temp_coeff_per_k
        c.solar_ref_temp_k = p.solar_ref_temp_k
        c.n_ocv = len(p.battery_ocv_soc)
        for i, (s_, v_) in enumerate(zip(p.battery_ocv_soc, p.battery_ocv_v, strict=True)):
            c.ocv_soc[i] = s_
            c.ocv_v[i] = v_
        c.battery_r_ohm = p.battery_r_ohm
        c.charge_efficiency = p.battery_charge_efficiency
        c.max_charge_w = p.battery_max_charge_w
        c.capacity_c = self.q_cap_c
        c.bus_base_w = p.bus_base_w
        c.heat_capacity_j_k = list(p.heat_capacity_j_k)
        idx = {n: i for i, n in enumerate(NODES)}
        c.n_links = len(p.conductance_w_k)
        for i, (a, b, g) in enumerate(p.conductance_w_k):
            c.links[i].a, c.links[i].b, c.links[i].g_w_k = idx[a], idx[b], g
        c.n_surfaces = len(p.surfaces)
        for i, sf in enumerate(p.surfaces):
            c.surfaces[i].node = idx[sf.node]
            c.surfaces[i].normal = list(sf.normal_body)
            c.surfaces[i].area_m2 = sf.area_m2
            c.surfaces[i].absorptivity = sf.absorptivity
            c.surfaces[i].emissivity = sf.emissivity
        c.mu_m3_s2 = EARTH_MU_M3_S2
        c.sigma_w_m2_k4 = STEFAN_BOLTZMANN_W_M2_K4
        c.space_temp_k = SPACE_TEMP_K
        c.solar_constant_w_m2 = SOLAR_CONSTANT_W_M2
        err = lib.ohil_plant_check(c)
        if err:
            raise ValueError(f"plant parameters: {_CONFIG_ERRORS.get(err, err)} out of range")

    def _set_cmd(self, a: ActuatorInputs, f: PlantFaults) -> None:
        cmd = self._cmd
        cmd.wheel_torque_nm = list(a.wheel_torque_nm)
        cmd.mtq_dipole_am2 = list(a.mtq_dipole_am2)
        cmd.heater_w = a.heater_w
        cmd.wheel_stuck = [int(bool(x)) for x in f.wheel_stuck]
        cmd.hot_case = f.hot_case
        cmd.capacity_ratio = f.battery_capacity_ratio
        self._cmd_key = (a, f)

    # --- state views -------------------------------------------------------------
    @property
    def env(self) -> EnvSample | None:
        """The environment of the last step (materialized lazily after a batch run)."""
        src = self._env_src
        if isinstance(src, tuple):
            src = self._env_src = src[0].row(src[1])
        return src

    def set_initial_view(self, env: EnvSamples, k: int) -> None:
        """The environment the truth view (:meth:`sun_in_body`) reads before the first
        step: row ``k`` of ``env``, t = 0's. The sensors still read no environment
        until the first step, as the flight software's first frame always has (giving
        it the sun at t = 0 changes every run's attitude estimate, and so its archive)."""
        self._env_view = (env, k)

    def sun_in_body(self) -> tuple[tuple[float, float, float], float] | None:
        """(unit vector to the sun in body axes, illumination) under the environment
        of the last step (before the first: of :meth:`set_initial_view`, else None). Pure Python: read once a
        simulated second by the recorder, where a numpy rotation costs more than
        the arithmetic."""
        src = self._env_src if self._env_src is not None else self._env_view
        if src is None:
            return None
        if isinstance(src, tuple):
            env, k = src
            sx, sy, sz = env.sun_unit_teme[k].tolist()
            illum = float(env.illumination[k])
        else:
            sx, sy, sz = src.sun_unit_teme
            illum = float(src.illumination)
        w, x, y, z = self._st.q_bi
        return ((1 - 2 * (y * y + z * z)) * sx + 2 * (x * y - w * z) * sy + 2 * (x * z + w * y) * sz,
                2 * (x * y + w * z) * sx + (1 - 2 * (x * x + z * z)) * sy + 2 * (y * z - w * x) * sz,
                2 * (x * z - w * y) * sx + 2 * (y * z + w * x) * sy + (1 - 2 * (x * x + y * y)) * sz), illum

    @property
    def q(self) -> list[float]:
        return list(self._st.q_bi)

    @q.setter
    def q(self, value) -> None:
        """Set the attitude (normalized): an open-loop replay holds a recorded attitude."""
        q = np.asarray(value, dtype=float)
        self._st.q_bi = list(q / np.linalg.norm(q))

    @property
    def pi_b(self) -> list[float]:
        """Total angular momentum (body + wheels) in body axes, N m s."""
        return list(self._st.pi_body_nms)

    @pi_b.setter
    def pi_b(self, value) -> None:
        self._st.pi_body_nms = [float(x) for x in value]

    @property
    def wheel_speed(self) -> list[float]:
        return list(self._st.wheel_speed_rad_s)

    @wheel_speed.setter
    def wheel_speed(self, value) -> None:
        self._st.wheel_speed_rad_s = [float(x) for x in value]

    @property
    def temps(self) -> list[float]:
        return list(self._st.temps_k)

    @property
    def ledger(self) -> dict[str, float]:
        return dict(zip(LEDGER_KEYS, self._st.ledger_j, strict=True))

    @property
    def soc(self) -> float:
        return self._st.charge_c / (self.q_cap_c * self.faults.battery_capacity_ratio)

    @property
    def battery_a(self) -> float:
        return self._st.battery_a

    @property
    def battery_v(self) -> float:
        return self._st.battery_v

    @property
    def solar_power_w(self) -> float:
        return self._st.solar_w

    @property
    def load_power_w(self) -> float:
        """Bus load of the last step (incl. payloads), W."""
        return self._st.load_w

    def ocv(self, soc: float) -> float:
        return float(lib.ohil_plant_ocv(self._cfg, soc))

    def omega_body(self) -> list[float]:
        p, st = self.p, self._st
        jw, inertia = p.wheel_inertia_kg_m2, p.inertia_kg_m2
        pi, ws = st.pi_body_nms, st.wheel_speed_rad_s
        return [(pi[k] - jw * ws[k]) / inertia[k] for k in range(3)]

    def h_inertial(self) -> np.ndarray:
        """Total angular momentum (body + wheels) in the inertial frame, N m s."""
        return rotation_matrix(self.q).T @ np.array(self.pi_b)

    # --- dynamics --------------------------------------------------------------
    def step(self, dt_ns: int, actuators: ActuatorInputs, env: EnvSample, payload_power_w: float,
             faults: PlantFaults | None = None) -> None:
        """Advance the plant by ``dt_ns`` under ``env`` (the environment at the step's start)."""
        if faults is not None:
            self.faults = faults
        if self._cmd_key != (actuators, self.faults):
            self._set_cmd(actuators, self.faults)
        buf = self._envbuf
        buf[0:3] = env.r_teme_m
        buf[3:6] = env.sun_unit_teme
        buf[6:9] = env.b_teme_t
        buf[9] = env.solar_flux_w_m2
        buf[10] = env.albedo_flux_w_m2
        buf[11] = env.earth_ir_flux_w_m2
        lib.ohil_plant_step(self._cfg, self._st, self._cmd, buf, payload_power_w, dt_ns / NS_PER_S)
        self._env_src = env
        self.payload_power_w = payload_power_w
        self.t_ns += int(dt_ns)

    def run(self, env: EnvSamples, dt_ns: int, actuators: ActuatorInputs, payload_power_w: float | np.ndarray,
            faults: PlantFaults | None = None, start: int = 0, stop: int | None = None) -> None:
        """Batch path: one step per environment row ``start..stop-1`` with fixed actuators,
        in one C call. The packed rows of ``env`` are cached, so a runner can precompute
        the environment for a whole run and call ``run(env, ..., start=k, stop=k + 10)``
        once per control frame."""
        if faults is not None:
            self.faults = faults
        if self._cmd_key != (actuators, self.faults):
            self._set_cmd(actuators, self.faults)
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        stop = len(env) if stop is None else min(stop, len(env))
        n = stop - start
        if n <= 0:
            return
        env_ptr = self._rows(env)[2] + start * lib.OHIL_PLANT_ENV_STRIDE
        if isinstance(payload_power_w, (int, float)):
            last_pw = float(payload_power_w)
            if self._pw_fill != (last_pw, n):  # refill the constant-power buffer only on change
                if len(self._pw_buf) < n:
                    self._pw_buf = ffi.new("double[]", n)
                self._pw_buf[0:n] = [last_pw] * n
                self._pw_fill = (last_pw, n)
            pw_ptr = self._pw_buf
        else:
            pw = np.ascontiguousarray(np.broadcast_to(np.asarray(payload_power_w, dtype=np.float64), (n,)))
            pw_ptr = ffi.from_buffer("double[]", pw)
            last_pw = float(pw[-1])
        lib.ohil_plant_run(self._cfg, self._st, self._cmd, env_ptr, pw_ptr, n, dt_ns / NS_PER_S)
        self._env_src = (env, stop - 1)
        self.payload_power_w = last_pw
        self.t_ns += int(dt_ns) * n

    def step_row(self, env: EnvSamples, k: int, dt_ns: int, actuators: ActuatorInputs, payload_power_w: float,
                 faults: PlantFaults | None = None) -> None:
        """One step under row ``k`` of ``env``: the same as ``run(env, dt_ns, ..., start=k,
        stop=k + 1)`` with a constant power (bit for bit), with less per-call work: the
        runner's 10 Hz path (its flight software runs between two physics steps)."""
        if faults is not None:
            self.faults = faults
        key = self._cmd_key
        if key[0] is not actuators or key[1] is not self.faults:
            self._set_cmd(actuators, self.faults)
        cache = self._rows(env)
        if not 0 <= k < len(cache[1]):
            raise ValueError(f"row {k} outside the environment's {len(cache[1])} rows")
        pw = float(payload_power_w)
        lib.ohil_plant_step(self._cfg, self._st, self._cmd, cache[2] + k * lib.OHIL_PLANT_ENV_STRIDE, pw,
                            dt_ns / NS_PER_S)
        self._env_src = (env, k)
        self.payload_power_w = pw
        self.t_ns += int(dt_ns)

    def port(self, env: EnvSamples, k: int, n: int, dt_ns: int, actuators: ActuatorInputs, payload_power_w: float,
             faults: PlantFaults | None = None) -> PlantPort | None:
        """A C sensor/actuator port for the flight core's ADCS (``ohil_adcs_run_port``)
        for up to ``n`` frames: frame j steps the plant under row ``k + j`` of ``env``
        (as :meth:`step_row`), then reads the sensors (as :meth:`sensors`); the ADCS
        commands go straight into the plant's command. Bit for bit the frames the
        Python path would run. None when the port cannot serve: a stuck or dead gyro
        or magnetometer (their last readings are Python's). Call :meth:`port_done`
        after the frames ran."""
        if faults is not None:
            self.faults = faults
        f = self.faults
        if f.gyro_stuck or f.gyro_dead or f.mag_stuck or f.mag_dead:
            return None
        key = self._cmd_key
        if key[0] is not actuators or key[1] is not f:
            self._set_cmd(actuators, f)
        cache = self._rows(env)
        rows = len(cache[1])
        if not 0 <= k < rows:
            raise ValueError(f"row {k} outside the environment's {rows} rows")
        illum = self._illum_cache
        if illum is None or illum[0] is not env:
            arr = np.ascontiguousarray(env.illumination, dtype=np.float64)
            illum = self._illum_cache = (env, arr, ffi.from_buffer("double[]", arr))
        fa = self._fault_c(f)
        i = self._noise_idx["gyro"]
        if i >= _NOISE_BLOCK:  # every stream is read once a frame: all four run out together
            for which in self._noise_src:
                self._noise_refill(which)
            i = 0
        n = min(n, rows - k, _NOISE_BLOCK - i)
        c = self._port_c
        c.env = cache[2] + k * lib.OHIL_PLANT_ENV_STRIDE
        c.illum = illum[2] + k
        c.payload_w = float(payload_power_w)
        c.dt_s = dt_ns / NS_PER_S
        c.gyro_bias, c.mag_bias, c.css_dead = fa[1], fa[2], int(f.css_dead)
        nb = self._noise_blocks
        c.n_gyro = nb["gyro"][1] + 3 * i
        c.n_mag = nb["mag"][1] + 3 * i
        c.n_css = nb["css"][1] + 6 * i
        c.n_meas = nb["meas"][1] + 7 * i
        c.frames = 0
        return PlantPort(_PORT_SENSE, _PORT_ACTUATE, self._port_addr, n, env, k, dt_ns)

    def port_done(self, port: PlantPort) -> ActuatorInputs:
        """Book the frames a port ran (time, environment, noise rows, last readings);
        returns the actuator command in force after them."""
        c = self._port_c
        n = int(c.frames)
        if n == 0:
            return self._cmd_key[0]
        for which in self._noise_idx:
            self._noise_idx[which] += n
        o = c.out
        self._last_gyro = (o[0], o[1], o[2])
        self._last_mag = (o[3], o[4], o[5])
        self._env_src = (port.env, port.k + n - 1)
        self.payload_power_w = float(c.payload_w)
        self.t_ns += port.dt_ns * n
        cmd = self._cmd
        act = ActuatorInputs(wheel_torque_nm=tuple(cmd.wheel_torque_nm), mtq_dipole_am2=tuple(cmd.mtq_dipole_am2),
                        heater_w=cmd.heater_w)
        self._cmd_key = (act, self.faults)
        return act

    def port_frames(self) -> int:
        """Frames run through the port since :meth:`port` aimed it."""
        return int(self._port_c.frames)

    def port_readings(self) -> Readings:
        """The readings of a port's last frame (what :meth:`sensors` returned there)."""
        o = ffi.unpack(self._port_c.out, lib.OHIL_PLANT_READINGS)
        return self._readings(o, (o[0], o[1], o[2]), (o[3], o[4], o[5]))

    # --- outputs ---------------------------------------------------------------
    def truth(self) -> dict:
        return {
            "t_ns": self.t_ns,
            "q_bi": tuple(float(x) for x in self.q),
            "omega_body_rad_s": tuple(float(x) for x in self.omega_body()),
            "wheel_speed_rad_s": tuple(float(x) for x in self.wheel_speed),
            "h_inertial_nms": tuple(float(x) for x in self.h_inertial()),
            "soc": float(self.soc),
            "battery_v": float(self.battery_v),
            "battery_a": float(self.battery_a),
            "solar_power_w": float(self.solar_power_w),
            "load_power_w": self._st.load_w,
            "temps_k": {n: float(t) for n, t in zip(NODES, self.temps, strict=True)},
            "illumination": None if self.env is None else self.env.illumination,
            "ledger_j": self.ledger,
        }

    def _noise_ptr(self, which: str) -> Any:
        """C pointer to the next row of one sensor's standard-normal noise (see
        :meth:`_noise_next`)."""
        blk, ptr, i = self._noise_next(which)
        return ptr + i * blk.shape[1]

    def _noise_next(self, which: str) -> tuple[np.ndarray, Any, int]:
        """(block, C pointer to it, row index) of the next noise row of one sensor.

        Drawn in blocks of ``_NOISE_BLOCK`` rows from that sensor's own Generator:
        the values, in order, are exactly those of one ``normal(0, 1, k)`` draw per
        reading (each Generator feeds one sensor only), so block size never changes
        the stream."""
        i = self._noise_idx[which]
        if i >= _NOISE_BLOCK:
            self._noise_refill(which)
            i = 0
        self._noise_idx[which] = i + 1
        blk, ptr = self._noise_blocks[which]
        return blk, ptr, i

    def _noise_refill(self, which: str) -> None:
        """The next ``_NOISE_BLOCK`` rows of one sensor's noise, from row 0."""
        rng, k = self._noise_src[which]
        blk = np.ascontiguousarray(rng.standard_normal((_NOISE_BLOCK, k)))
        self._noise_blocks[which] = (blk, ffi.from_buffer("double[]", blk))
        self._noise_idx[which] = 0

    def _rows(self, env: EnvSamples) -> tuple[EnvSamples, np.ndarray, Any]:
        """(env, its packed rows, C pointer to them), packed once per environment."""
        cache = self._rows_cache
        if cache is None or cache[0] is not env:
            packed = env_rows(env)
            cache = self._rows_cache = (env, packed, ffi.from_buffer("double[]", packed))
        return cache

    def _fault_c(self, f: PlantFaults) -> tuple[PlantFaults, Any, Any]:
        """(faults, C gyro bias, C magnetometer bias), built once per PlantFaults value."""
        fa = self._fault_args
        if fa is None or fa[0] is not f:
            fa = self._fault_args = (f, ffi.new("double[3]", list(f.gyro_bias_rad_s)),
                                     ffi.new("double[3]", list(f.mag_bias_t)))
        return fa

    def _env_ptr(self) -> tuple[Any, float]:
        """(pointer to the environment row of the last step, or NULL; its illumination)."""
        src = self._env_src
        if src is None:
            return ffi.NULL, 0.0
        if isinstance(src, tuple):
            env, k = src
            cache = self._rows_cache
            if cache is not None and cache[0] is env:
                return cache[2] + k * lib.OHIL_PLANT_ENV_STRIDE, float(env.illumination[k])
            src = self.env
        row = self._envbuf
        row[3:6] = list(src.sun_unit_teme)
        row[6:9] = list(src.b_teme_t)
        row[9] = float(src.solar_flux_w_m2)
        return row, float(src.illumination)

    def sensors(self, faults: PlantFaults | None = None) -> Readings:
        """Sensor readings now, with seeded noise and bias; faults as inputs.

        The model is C (``ohil_plant_sense``, next to the physics) on the state of
        the last step; noise comes in blocks from per-sensor Generators (see
        :meth:`_noise_next`); stuck and dead gyro and magnetometer are applied here."""
        if faults is not None:
            self.faults = faults
        f, out = self.faults, self._sense_out
        fa = self._fault_c(f)
        env_ptr, illum = self._env_ptr()
        noise = self._noise_ptr
        lib.ohil_plant_sense(self._cfg, self._st, self._sense_cfg, env_ptr, illum, fa[1], fa[2], f.css_dead,
                             noise("gyro"), noise("mag"),
                             noise("css"),  # drawn even when dead: the stream does not depend on faults
                             noise("meas"), out)
        o = ffi.unpack(out, lib.OHIL_PLANT_READINGS)
        gyro = (o[0], o[1], o[2])
        if f.gyro_stuck and self._last_gyro is not None:
            gyro = self._last_gyro
        self._last_gyro = gyro
        if f.gyro_dead:
            gyro = (0.0, 0.0, 0.0)
        mag = (o[3], o[4], o[5])
        if f.mag_stuck and self._last_mag is not None:
            mag = self._last_mag
        self._last_mag = mag
        if f.mag_dead:
            mag = (0.0, 0.0, 0.0)
        return self._readings(o, gyro, mag)

    def _readings(self, o: Any, gyro: tuple[float, float, float], mag: tuple[float, float, float]) -> Readings:
        f = self.faults
        ws = self._st.wheel_speed_rad_s
        return Readings(
            gyro_rad_s=gyro, gyro_valid=not f.gyro_dead,
            mag_body_t=mag, mag_valid=not f.mag_dead,
            css_a=tuple(o[6:12]), sun_body=(o[12], o[13], o[14]), sun_valid=o[15] != 0.0,
            wheel_speed_rad_s=(ws[0], ws[1], ws[2]),
            battery_v=o[16], battery_a=o[17], solar_power_w=o[18],
            temps_k={NODES[0]: o[19], NODES[1]: o[20], NODES[2]: o[21], NODES[3]: o[22]},
        )
