"""Sun ephemeris in TEME of date, and Greenwich sidereal time.

The Sun's apparent geocentric position follows Meeus, *Astronomical Algorithms*
(2nd ed.) ch. 25 (mean elements of the solar orbit, equation of centre,
aberration) with the IAU 1980 nutation's two largest terms, and is given in the
frame SGP4 uses, TEME: true equator, mean equinox of date. The TOD -> TEME step is
a rotation by the equation of the equinoxes about z. Both the satellite and the
Sun are therefore in one inertial frame before any geometry. Checked against
JPL DE421 via skyfield in ``tests/test_rig_sun.py`` (see docs/rig.md).
"""

from __future__ import annotations

import numpy as np

from hil_rig.clock import centuries_tt, centuries_ut1
from hil_rig.constants import AU_M

_DEG = np.pi / 180.0
_ARCSEC = _DEG / 3600.0


def _nutation(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(delta psi, delta epsilon, mean obliquity) in rad, IAU 1980 leading terms."""
    omega = (125.04452 - 1934.136261 * t) * _DEG
    lsun = (280.4665 + 36000.7698 * t) * _DEG
    lmoon = (218.3165 + 481267.8813 * t) * _DEG
    dpsi = (
        -17.20 * np.sin(omega)
        - 1.32 * np.sin(2 * lsun)
        - 0.23 * np.sin(2 * lmoon)
        + 0.21 * np.sin(2 * omega)
    ) * _ARCSEC
    deps = (
        9.20 * np.cos(omega) + 0.57 * np.cos(2 * lsun) + 0.10 * np.cos(2 * lmoon) - 0.09 * np.cos(2 * omega)
    ) * _ARCSEC
    eps0 = (23.0 + 26.0 / 60.0 + 21.448 / 3600.0) * _DEG + (
        -46.8150 * t - 0.00059 * t**2 + 0.001813 * t**3
    ) * _ARCSEC
    return dpsi, deps, eps0


def sun_teme_m(ns: np.ndarray | int) -> np.ndarray:
    """Apparent geocentric Sun position (m) in TEME of date, shape (..., 3), for Unix ns."""
    t = centuries_tt(ns)
    l0 = 280.46646 + 36000.76983 * t + 0.0003032 * t**2
    m = (357.52911 + 35999.05029 * t - 0.0001537 * t**2) * _DEG
    e = 0.016708634 - 0.000042037 * t - 0.0000001267 * t**2
    c = (
        (1.914602 - 0.004817 * t - 0.000014 * t**2) * np.sin(m)
        + (0.019993 - 0.000101 * t) * np.sin(2 * m)
        + 0.000289 * np.sin(3 * m)
    )
    true_lon = (l0 + c) * _DEG
    nu = m + c * _DEG
    r_au = 1.000001018 * (1 - e**2) / (1 + e * np.cos(nu))
    dpsi, deps, eps0 = _nutation(t)
    aberration = -20.4898 * _ARCSEC / r_au
    # the geocentre's monthly wobble about the Earth-Moon barycentre (Meeus ch. 25 note)
    d_moon = (297.85036 + 445267.111480 * t) * _DEG
    lam = true_lon + dpsi + aberration + 6.454 * _ARCSEC * np.sin(d_moon)  # apparent longitude, true equinox of date
    eps = eps0 + deps  # true obliquity
    # true-of-date equatorial unit vector
    x = np.cos(lam)
    y = np.cos(eps) * np.sin(lam)
    z = np.sin(eps) * np.sin(lam)
    # TOD -> TEME: rotate by the equation of the equinoxes (alpha_TEME = alpha_TOD - EqE)
    eqe = dpsi * np.cos(eps)
    ce, se = np.cos(eqe), np.sin(eqe)
    xt = ce * x + se * y
    yt = -se * x + ce * y
    return np.stack([xt, yt, z], axis=-1) * (r_au * AU_M)[..., None]


def sun_unit_teme(ns: np.ndarray | int) -> np.ndarray:
    """Apparent Sun direction (unit) in TEME of date."""
    s = sun_teme_m(ns)
    return s / np.linalg.norm(s, axis=-1, keepdims=True)


def mean_sun_ra_rad(ns: np.ndarray | int) -> np.ndarray:
    """Right ascension of the fictitious mean Sun (rad), for local mean solar time (LTAN)."""
    t = centuries_tt(ns)
    return np.mod((280.46646 + 36000.76983 * t + 0.0003032 * t**2) * _DEG, 2 * np.pi)


def gmst_rad(ns: np.ndarray | int) -> np.ndarray:
    """Greenwich mean sidereal time (IAU 1982, as SGP4 uses it), UT1 = UTC, rad."""
    tu = centuries_ut1(ns)
    sec = (
        67310.54841
        + (876600.0 * 3600.0 + 8640184.812866) * tu
        + 0.093104 * tu**2
        - 6.2e-6 * tu**3
    )
    return np.mod(sec / 240.0 * _DEG, 2 * np.pi)
