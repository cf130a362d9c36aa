"""Orbit-synchronized environment, computed for whole time arrays at once.

Nothing here depends on control, so a run precomputes it for all physics steps
(``Environment.sample``) and the plant reads one row per step. Frame: TEME of
date for every inertial vector (the orbit's frame; the Sun is in it too).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt

import numpy as np

from hil_rig.clock import as_utc, unix_ns
from hil_rig.constants import (
    AU_M,
    EARTH_ALBEDO,
    EARTH_IR_W_M2,
    EARTH_MU_M3_S2,
    EARTH_RADIUS_M,
    IGRF13_EPOCH_YEAR,
    IGRF13_G10_NT,
    IGRF13_G10_SV_NT_YR,
    IGRF13_G11_NT,
    IGRF13_G11_SV_NT_YR,
    IGRF13_H11_NT,
    IGRF13_H11_SV_NT_YR,
    NS_PER_S,
    SOLAR_CONSTANT_W_M2,
)
from hil_rig.eclipse import Eclipse, beta_angle_rad, find_contacts_ns, illumination
from hil_rig.orbit import Orbit
from hil_rig.sun import gmst_rad, sun_teme_m

#: The Sun is evaluated on this grid and interpolated for dense time arrays: it turns
#: 1.2e-5 rad per minute, so a linear chord is off by < 3 m of 1 AU (2e-11 rad).
SUN_GRID_NS = 60 * NS_PER_S


def sun_teme_dense_m(t_unix_ns: np.ndarray) -> np.ndarray:
    """``sun_teme_m`` for a dense time array: exact on a 60 s grid, linear in between."""
    t = np.asarray(t_unix_ns, dtype=np.int64)
    lo, hi = int(t.min()), int(t.max())
    n = (hi - lo) // SUN_GRID_NS + 2
    if t.size < 64 or 4 * n > t.size:
        return sun_teme_m(t)
    grid = lo + np.arange(n, dtype=np.int64) * SUN_GRID_NS
    s = sun_teme_m(grid)
    x = (t - lo).astype(float)
    xg = (grid - lo).astype(float)
    out = np.empty((t.size, 3))
    for k in range(3):
        out[:, k] = np.interp(x, xg, s[:, k])
    return out


def dipole_field_teme_t(r_teme_m: np.ndarray, t_unix_ns: np.ndarray) -> np.ndarray:
    """Tilted-dipole geomagnetic field (T) in TEME from IGRF-13 degree-1 coefficients
    with secular variation: B = (a/r)^3 [3 (g.r^) r^ - g], g = (g11, h11, g10) in ECEF."""
    t = np.asarray(t_unix_ns, dtype=np.int64)
    years = (t / 1e9 / 86400.0 / 365.25 + 1970.0) - IGRF13_EPOCH_YEAR
    g_ecef = np.stack(
        [IGRF13_G11_NT + IGRF13_G11_SV_NT_YR * years,
         IGRF13_H11_NT + IGRF13_H11_SV_NT_YR * years,
         IGRF13_G10_NT + IGRF13_G10_SV_NT_YR * years], axis=-1) * 1e-9
    th = gmst_rad(t)  # ECEF -> TEME: rotate by +GMST about z
    c, s = np.cos(th), np.sin(th)
    g = np.stack([c * g_ecef[:, 0] - s * g_ecef[:, 1], s * g_ecef[:, 0] + c * g_ecef[:, 1], g_ecef[:, 2]], -1)
    rn = np.linalg.norm(r_teme_m, axis=-1, keepdims=True)
    rh = r_teme_m / rn
    return (EARTH_RADIUS_M / rn) ** 3 * (3 * np.sum(g * rh, -1, keepdims=True) * rh - g)


def gravity_gradient_torque_nm(r_body_unit: np.ndarray, r_m: float, inertia_diag: np.ndarray) -> np.ndarray:
    """Gravity-gradient torque (N m, body): 3 mu / r^3 * n x (I n), n the body-frame radial unit vector."""
    n = np.asarray(r_body_unit, dtype=float)
    i_n = np.asarray(inertia_diag) * n
    return 3 * EARTH_MU_M3_S2 / r_m**3 * np.cross(n, i_n)


@dataclasses.dataclass
class EnvSamples:
    """Environment at N instants; arrays have leading dimension N. Vectors in TEME."""

    t_ns: np.ndarray                 # simulation ns since the environment epoch
    r_teme_m: np.ndarray             # (N, 3)
    v_teme_m_s: np.ndarray           # (N, 3)
    sun_teme_m: np.ndarray           # (N, 3) geocentric apparent Sun
    sun_unit_teme: np.ndarray        # (N, 3) from the satellite (parallax included)
    illumination: np.ndarray         # (N,) 0..1
    b_teme_t: np.ndarray             # (N, 3)
    beta_rad: np.ndarray             # (N,)
    solar_flux_w_m2: np.ndarray      # (N,) normal-incidence flux incl. shadow and 1/d^2
    albedo_flux_w_m2: np.ndarray     # (N,) on a nadir-facing plate
    earth_ir_flux_w_m2: np.ndarray   # (N,) on a nadir-facing plate

    def __len__(self) -> int:
        return len(self.t_ns)

    def slice(self, a: int, b: int) -> EnvSamples:
        """Rows a..b-1 as views (no copy), e.g. the physics steps of one control frame."""
        return EnvSamples(**{f.name: getattr(self, f.name)[a:b] for f in dataclasses.fields(self)})

    def row(self, i: int) -> EnvSample:
        return EnvSample(
            int(self.t_ns[i]), self.r_teme_m[i].tolist(), self.v_teme_m_s[i].tolist(),
            self.sun_unit_teme[i].tolist(), float(self.illumination[i]), self.b_teme_t[i].tolist(),
            float(self.beta_rad[i]),
            float(self.solar_flux_w_m2[i]), float(self.albedo_flux_w_m2[i]),
            float(self.earth_ir_flux_w_m2[i]),
        )


@dataclasses.dataclass
class EnvSample:
    """The environment at one instant (one row of :class:`EnvSamples`)."""

    t_ns: int
    r_teme_m: list[float]
    v_teme_m_s: list[float]
    sun_unit_teme: list[float]
    illumination: float
    b_teme_t: list[float]
    beta_rad: float
    solar_flux_w_m2: float
    albedo_flux_w_m2: float
    earth_ir_flux_w_m2: float


class Environment:
    """Environment for an orbit; times are simulation ns since ``epoch`` (UTC)."""

    frame = "TEME"

    def __init__(self, orbit: Orbit, epoch: _dt.datetime) -> None:
        self.orbit = orbit
        self.epoch = as_utc(epoch)
        self.epoch_ns = unix_ns(self.epoch)

    def sample(self, t_ns: np.ndarray) -> EnvSamples:
        t_rel = np.atleast_1d(np.asarray(t_ns, dtype=np.int64))
        t = t_rel + self.epoch_ns
        r, v = self.orbit.propagate(t)
        sun = sun_teme_dense_m(t)
        to_sun = sun - r
        d_sun = np.linalg.norm(to_sun, axis=-1)
        s_unit = to_sun / d_sun[:, None]
        illum = illumination(r, sun)
        flux = SOLAR_CONSTANT_W_M2 * (AU_M / d_sun) ** 2 * illum
        rn = np.linalg.norm(r, axis=-1)
        view = (EARTH_RADIUS_M / rn) ** 2  # nadir plate's view factor to the Earth
        cos_zenith = np.clip(np.sum(r / rn[:, None] * s_unit, -1), 0.0, None)
        albedo = SOLAR_CONSTANT_W_M2 * (AU_M / d_sun) ** 2 * EARTH_ALBEDO * view * cos_zenith
        ir = EARTH_IR_W_M2 * view
        return EnvSamples(
            t_ns=t_rel, r_teme_m=r, v_teme_m_s=v, sun_teme_m=sun, sun_unit_teme=s_unit,
            illumination=illum, b_teme_t=dipole_field_teme_t(r, t), beta_rad=beta_angle_rad(r, v, sun),
            solar_flux_w_m2=flux, albedo_flux_w_m2=albedo, earth_ir_flux_w_m2=ir,
        )

    def find_contacts(self, t0_ns: int, t1_ns: int) -> list[Eclipse]:
        """Eclipses between two simulation times; contact times in simulation ns. The search
        goes through the window in chunks: its memory does not grow with the window's length,
        only the list of eclipses does."""
        return find_contacts_ns(self.orbit, self.epoch_ns + int(t0_ns), self.epoch_ns + int(t1_ns),
                                epoch_ns=self.epoch_ns)
