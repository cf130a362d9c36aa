"""Sun ephemeris in TEME of date, and Greenwich sidereal time.

The Sun's apparent geocentric position comes from Earth's VSOP87D series as
truncated in Meeus, *Astronomical Algorithms* (2nd ed.) Appendix III, with FK5
correction, the IAU 1980 nutation's leading terms and annual aberration, and is
given in the frame SGP4 uses, TEME: true equator, mean equinox of date. The TOD -> TEME step is
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


# Earth's heliocentric VSOP87D series (Bretagnon & Francou 1988; ecliptic and equinox
# of date), truncated as in Meeus, Astronomical Algorithms, 2nd ed., Appendix III.
# Each term: (amplitude 1e-8 rad or AU, phase rad, frequency rad per Julian millennium).
_L0 = [(175347046,0,0),(3341656,4.6692568,6283.07585),(34894,4.6261,12566.1517),(3497,2.7441,5753.3849),
(3418,2.8289,3.5231),(3136,3.6277,77713.7715),(2676,4.4181,7860.4194),(2343,6.1352,3930.2097),(1324,0.7425,11506.7698),
(1273,2.0371,529.691),(1199,1.1096,1577.3435),(990,5.233,5884.927),(902,2.045,26.298),(857,3.508,398.149),
(780,1.179,5223.694),(753,2.533,5507.553),(505,4.583,18849.228),(492,4.205,775.523),(357,2.92,0.067),
(317,5.849,11790.629),(284,1.899,796.298),(271,0.315,10977.079),(243,0.345,5486.778),(206,4.806,2544.314),
(205,1.869,5573.143),(202,2.458,6069.777),(156,0.833,213.299),(132,3.411,2942.463),(126,1.083,20.775),
(115,0.645,0.98),(103,0.636,4694.003),(102,0.976,15720.839),(102,4.267,7.114),(99,6.21,2146.17),(98,0.68,155.42),
(86,5.98,161000.69),(85,1.3,6275.96),(85,3.67,71430.7),(80,1.81,17260.15)]
_L1 = [(628331966747,0,0),(206059,2.678235,6283.07585),(4303,2.6351,12566.1517),(425,1.59,3.523),(119,5.796,26.298),
(109,2.966,1577.344),(93,2.59,18849.23),(72,1.14,529.69),(68,1.87,398.15),(67,4.41,5507.55),(59,2.89,5223.69),
(56,2.17,155.42),(45,0.40,796.30),(36,0.47,775.52),(29,2.65,7.11),(21,5.34,0.98),(19,1.85,5486.78),(19,4.97,213.30),
(17,2.99,6275.96),(16,0.03,2544.31),(16,1.43,2146.17),(15,1.21,10977.08),(12,2.83,1748.02),(12,3.26,5088.63),
(12,5.27,1194.45),(12,2.08,4694.00),(11,0.77,553.57),(10,1.30,6286.60),(10,4.24,1349.87),(9,2.70,242.73),
(9,5.64,951.72),(8,5.30,2352.87),(6,2.65,9437.76),(6,4.67,4690.48)]
_L2 = [(52919,0,0),(8720,1.0721,6283.0758),(309,0.867,12566.152),(27,0.05,3.52),(16,5.19,26.30),(16,3.68,155.42),
(10,0.76,18849.23),(9,2.06,77713.77),(7,0.83,775.52),(5,4.66,1577.34),(4,1.03,7.11),(4,3.44,5573.14),(3,5.14,796.30),
(3,6.05,5507.55),(3,1.19,242.73),(3,6.12,529.69),(3,0.31,398.15),(3,2.28,553.57),(2,4.38,5223.69),(2,3.75,0.98)]
_L3 = [(289,5.844,6283.076),(35,0,0),(17,5.49,12566.15),(3,5.20,155.42),(1,4.72,3.52),(1,5.30,18849.23),(1,5.97,242.73)]
_L4 = [(114,3.142,0),(8,4.13,6283.08),(1,3.84,12566.15)]
_L5 = [(1,3.14,0)]
_R0 = [(100013989,0,0),(1670700,3.0984635,6283.07585),(13956,3.05525,12566.1517),(3084,5.1985,77713.7715),
(1628,1.1739,5753.3849),(1576,2.8469,7860.4194),(925,5.453,11506.770),(542,4.564,3930.210),(472,3.661,5884.927),
(346,0.964,5507.553),(329,5.900,5223.694),(307,0.299,5573.143),(243,4.273,11790.629),(212,5.847,1577.344),
(186,5.022,10977.079),(175,3.012,18849.228),(110,5.055,5486.778),(98,0.89,6069.78),(86,5.69,15720.84),
(86,1.27,161000.69),(65,0.27,17260.15),(63,0.92,529.69),(57,2.01,83996.85),(56,5.24,71430.70),(49,3.25,2544.31),
(47,2.58,775.52),(45,5.54,9437.76),(43,6.01,6275.96),(39,5.36,4694.00),(38,2.39,8827.39),(37,0.83,19651.05),
(37,4.90,12139.55),(36,1.67,12036.46),(35,1.84,2942.46),(33,0.24,7084.90),(32,0.18,5088.63),(32,1.78,398.15),
(28,1.21,6286.60),(28,1.90,6279.55),(26,4.59,10447.39)]
_R1 = [(103019,1.107490,6283.075850),(1721,1.0644,12566.1517),(702,3.142,0),(32,1.02,18849.23),(31,2.84,5507.55),
(25,1.32,5223.69),(18,1.42,1577.34),(10,5.91,10977.08),(9,1.42,6275.96),(9,0.27,5486.78)]
_R2 = [(4359,5.7846,6283.0758),(124,5.579,12566.152),(12,3.14,0),(9,3.63,77713.77),(6,1.87,5573.14),(3,5.47,18849.23)]
_R3 = [(145,4.273,6283.076),(7,3.92,12566.15)]
_R4 = [(4,2.56,6283.08)]
_B0 = [(280,3.199,84334.662),(102,5.422,5507.553),(80,3.88,5223.69),(44,3.70,2352.87),(32,4.00,1577.34)]
_B1 = [(9,3.90,5507.55),(6,1.73,5223.69)]



def _series(terms: list[tuple[float, float, float]], tau: np.ndarray) -> np.ndarray:
    a = np.array([t[0] for t in terms])
    b = np.array([t[1] for t in terms])
    c = np.array([t[2] for t in terms])
    return np.cos(b + np.multiply.outer(tau, c)) @ a


def _poly(series: list, tau: np.ndarray) -> np.ndarray:
    out = np.zeros_like(tau)
    for k, terms in enumerate(series):
        out = out + _series(terms, tau) * tau**k
    return out * 1e-8


def sun_teme_m(ns: np.ndarray | int) -> np.ndarray:
    """Apparent geocentric Sun position (m) in TEME of date, shape (..., 3), for Unix ns.

    Earth's heliocentric longitude, latitude and distance from truncated VSOP87D,
    turned geocentric, FK5 correction, nutation (IAU 1980 leading terms) and
    annual aberration; then true-of-date equatorial, rotated into TEME by the
    equation of the equinoxes.
    """
    t = np.atleast_1d(centuries_tt(ns)).astype(float)
    tau = t / 10.0
    lon = _poly([_L0, _L1, _L2, _L3, _L4, _L5], tau) + np.pi
    lat = -_poly([_B0, _B1], tau)
    r_au = _poly([_R0, _R1, _R2, _R3, _R4], tau)
    lp = lon - (1.397 * t + 0.00031 * t**2) * _DEG
    lon = lon - 0.09033 * _ARCSEC
    lat = lat + 0.03916 * _ARCSEC * (np.cos(lp) - np.sin(lp))
    dpsi, deps, eps0 = _nutation(t)
    lam = lon + dpsi - 20.4898 * _ARCSEC / r_au  # apparent longitude, true equinox of date
    eps = eps0 + deps  # true obliquity
    cb = np.cos(lat)
    x = cb * np.cos(lam)
    y_ecl = cb * np.sin(lam)
    z_ecl = np.sin(lat)
    y = np.cos(eps) * y_ecl - np.sin(eps) * z_ecl
    z = np.sin(eps) * y_ecl + np.cos(eps) * z_ecl
    # TOD -> TEME: rotate by the equation of the equinoxes (alpha_TEME = alpha_TOD - EqE)
    eqe = dpsi * np.cos(eps)
    ce, se = np.cos(eqe), np.sin(eqe)
    out = np.stack([ce * x + se * y, -se * x + ce * y, z], axis=-1) * (r_au * AU_M)[..., None]
    return out if np.ndim(ns) else out[0]


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
