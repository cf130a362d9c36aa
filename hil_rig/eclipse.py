"""Conical shadow of a spherical Earth, eclipse contacts and beta angle.

Geometry (all vectors in one inertial frame, TEME): seen from the satellite, the
Sun is a disk of angular radius ``rho_s = asin(R_sun/|r_sun - r|)`` and the Earth
a disk of angular radius ``rho_e = asin(R_e/|r|)`` (R_e = 6378.137 km, no
atmosphere); their centres are ``theta`` apart. The illumination fraction is the
unobscured fraction of the Sun's disk (uniform disk, no limb darkening), from the
overlap area of the two disks in the tangent plane. The four contacts are where
``theta = rho_e + rho_s`` (penumbra) and ``theta = rho_e - rho_s`` (umbra): these
tangency conditions are exact on the sphere; only the penumbral fraction between
them uses the flat-overlap approximation.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt

import numpy as np

from hil_rig.clock import as_utc, iso_ms, unix_ns
from hil_rig.constants import EARTH_RADIUS_M, NS_PER_S, SUN_RADIUS_M
from hil_rig.sun import sun_teme_m

#: Contacts are bisected until their bracket is at most this wide (ns).
CONTACT_BRACKET_NS = 1_000_000


def shadow_angles(r_m: np.ndarray, sun_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(theta, rho_e, rho_s) in rad for satellite and Sun positions (same frame), shape (N,)."""
    r_m = np.asarray(r_m, dtype=float)
    to_sun = np.asarray(sun_m, dtype=float) - r_m
    d_sun = np.linalg.norm(to_sun, axis=-1)
    d_sat = np.linalg.norm(r_m, axis=-1)
    rho_s = np.arcsin(np.clip(SUN_RADIUS_M / d_sun, -1.0, 1.0))
    rho_e = np.arcsin(np.clip(EARTH_RADIUS_M / d_sat, -1.0, 1.0))
    # angle between (Sun - sat) and (Earth centre - sat), robust atan2 form
    cross = np.linalg.norm(np.cross(to_sun, -r_m), axis=-1)
    dot = np.sum(to_sun * -r_m, axis=-1)
    theta = np.arctan2(cross, dot)
    return theta, rho_e, rho_s


def illumination_from_angles(theta: np.ndarray, rho_e: np.ndarray, rho_s: np.ndarray) -> np.ndarray:
    """Visible fraction of the solar disk, in [0, 1]."""
    theta = np.asarray(theta, dtype=float)
    a, b, d = rho_s, rho_e, theta
    full = d >= a + b
    inside = d <= b - a  # Sun disk wholly behind the Earth (umbra)
    annular = d <= a - b  # Earth disk wholly inside the Sun's (not in LEO, kept for completeness)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ca = np.clip((d * d + a * a - b * b) / (2 * d * a), -1.0, 1.0)
        cb = np.clip((d * d + b * b - a * a) / (2 * d * b), -1.0, 1.0)
        area = (
            a * a * np.arccos(ca)
            + b * b * np.arccos(cb)
            - 0.5 * np.sqrt(np.clip((-d + a + b) * (d + a - b) * (d - a + b) * (d + a + b), 0.0, None))
        )
        frac = 1.0 - area / (np.pi * a * a)
    frac = np.where(annular, 1.0 - (b * b) / (a * a), frac)
    frac = np.where(inside, 0.0, frac)
    frac = np.where(full, 1.0, frac)
    return np.clip(frac, 0.0, 1.0)


def illumination(r_m: np.ndarray, sun_m: np.ndarray) -> np.ndarray:
    """Illumination fraction 0..1 (0 umbra, 1 full sun) for positions in one frame."""
    return illumination_from_angles(*shadow_angles(r_m, sun_m))


def beta_angle_rad(r_m: np.ndarray, v_m_s: np.ndarray, sun_m: np.ndarray) -> np.ndarray:
    """Angle between the Sun direction and the orbit plane (rad, + on the angular-momentum side)."""
    h = np.cross(r_m, v_m_s)
    h /= np.linalg.norm(h, axis=-1, keepdims=True)
    s = sun_m / np.linalg.norm(sun_m, axis=-1, keepdims=True)
    return np.arcsin(np.clip(np.sum(h * s, axis=-1), -1.0, 1.0))


# ------------------------------------------------------------------------- contacts


@dataclasses.dataclass(frozen=True)
class Eclipse:
    """One pass through the Earth's shadow. Times are ns since ``epoch_ns`` (0: Unix ns,
    as :func:`find_contacts` gives; ``Environment.find_contacts`` gives simulation ns),
    or None when the contact falls outside the searched window or does not happen
    (penumbral-only pass)."""

    penumbra_entry: int | None
    umbra_entry: int | None
    umbra_exit: int | None
    penumbra_exit: int | None
    epoch_ns: int = 0

    @property
    def umbra_s(self) -> float | None:
        if self.umbra_entry is None or self.umbra_exit is None:
            return None
        return (self.umbra_exit - self.umbra_entry) / NS_PER_S

    @property
    def penumbra_s(self) -> float | None:
        """Time in partial shadow (both penumbral phases), s."""
        pe, px = self.penumbra_entry, self.penumbra_exit
        if pe is None or px is None:
            return None
        if self.umbra_entry is None and self.umbra_exit is None:
            return (px - pe) / NS_PER_S
        if self.umbra_entry is None or self.umbra_exit is None:
            return None
        return ((self.umbra_entry - pe) + (px - self.umbra_exit)) / NS_PER_S

    @property
    def total_s(self) -> float | None:
        """Penumbra entry to penumbra exit, s."""
        if self.penumbra_entry is None or self.penumbra_exit is None:
            return None
        return (self.penumbra_exit - self.penumbra_entry) / NS_PER_S

    def to_json(self) -> dict:
        def iso(x: int | None) -> str | None:
            return None if x is None else iso_ms(x + self.epoch_ns)

        return {
            "penumbra_entry": iso(self.penumbra_entry),
            "umbra_entry": iso(self.umbra_entry),
            "umbra_exit": iso(self.umbra_exit),
            "penumbra_exit": iso(self.penumbra_exit),
            "penumbra_s": None if self.penumbra_s is None else round(self.penumbra_s, 3),
            "umbra_s": None if self.umbra_s is None else round(self.umbra_s, 3),
        }


def _margins(orbit, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Penumbra and umbra margins (rad): negative inside that shadow region."""
    r, _ = orbit.propagate(t)
    theta, rho_e, rho_s = shadow_angles(r, sun_teme_m(t))
    return theta - (rho_e + rho_s), theta - (rho_e - rho_s)


def _bisect(orbit, which: int, lo: np.ndarray, hi: np.ndarray, f_lo_neg: np.ndarray) -> np.ndarray:
    """Vectorized bisection of margin ``which`` between ns brackets [lo, hi] with a sign change."""
    lo, hi = lo.copy(), hi.copy()
    while lo.size and np.max(hi - lo) > CONTACT_BRACKET_NS:
        mid = lo + (hi - lo) // 2
        f_mid = _margins(orbit, mid)[which]
        same_as_lo = (f_mid < 0) == f_lo_neg
        lo = np.where(same_as_lo, mid, lo)
        hi = np.where(same_as_lo, hi, mid)
    return lo + (hi - lo) // 2


def _dip_brackets(orbit, which: int, t: np.ndarray, f: np.ndarray) -> list[tuple[int, int]]:
    """Local minima of a positive sampled margin that may dip below zero between samples:
    golden-section search for the minimum; if negative, return the two sub-brackets."""
    i = np.nonzero((f[1:-1] > 0) & (f[1:-1] <= f[:-2]) & (f[1:-1] <= f[2:]))[0] + 1
    # the margin changes at most ~ (orbital rate) * step between samples: only close dips matter
    step_rad = 2 * np.pi * (t[1] - t[0]) / NS_PER_S / orbit.period_s * 2.0
    i = i[f[i] < step_rad]
    out: list[tuple[int, int]] = []
    if i.size == 0:
        return out
    a, b = t[i - 1].astype(np.int64), t[i + 1].astype(np.int64)
    g = 0.6180339887498949
    for _ in range(40):
        if np.max(b - a) <= CONTACT_BRACKET_NS:
            break
        c = b - ((b - a) * g).astype(np.int64)
        d = a + ((b - a) * g).astype(np.int64)
        fc = _margins(orbit, c)[which]
        fd = _margins(orbit, d)[which]
        left = fc < fd
        b = np.where(left, d, b)
        a = np.where(left, a, c)
    tmin = a + (b - a) // 2
    fmin = _margins(orbit, tmin)[which]
    for k in np.nonzero(fmin < 0)[0]:
        out.append((int(t[i[k] - 1]), int(tmin[k])))
        out.append((int(tmin[k]), int(t[i[k] + 1])))
    return out


def _crossings(orbit, which: int, t: np.ndarray, f: np.ndarray) -> list[tuple[int, int]]:
    """All (time ns, +1 exit / -1 entry) crossings of margin ``which`` on the grid ``t``."""
    neg = f < 0
    idx = np.nonzero(neg[:-1] != neg[1:])[0]
    lo = t[idx]
    hi = t[idx + 1]
    lo_neg = neg[idx]
    extra = _dip_brackets(orbit, which, t, f)
    if extra:
        lo = np.concatenate([lo, [a for a, _ in extra]]).astype(np.int64)
        hi = np.concatenate([hi, [b for _, b in extra]]).astype(np.int64)
        lo_neg = np.concatenate([lo_neg, [k % 2 == 1 for k in range(len(extra))]])
    roots = _bisect(orbit, which, lo, hi, lo_neg)
    kinds = np.where(lo_neg, 1, -1)
    order = np.argsort(roots, kind="stable")
    return [(int(roots[k]), int(kinds[k])) for k in order]


def find_contacts_ns(orbit, start_ns: int, end_ns: int, step_s: float | None = None) -> list[Eclipse]:
    """Eclipses between two Unix-ns instants, each contact bracketed to <= 1 ms."""
    if end_ns <= start_ns:
        raise ValueError("end must be after start")
    step = step_s if step_s is not None else min(30.0, orbit.period_s / 200.0)
    n = int(np.ceil((end_ns - start_ns) / (step * NS_PER_S))) + 1
    t = np.linspace(start_ns, end_ns, n).round().astype(np.int64)
    f_pen, f_umb = _margins(orbit, t)
    pen = _crossings(orbit, 0, t, f_pen)
    umb = _crossings(orbit, 1, t, f_umb)
    eclipses: list[Eclipse] = []
    # walk penumbra intervals; each holds zero or one umbra interval
    intervals: list[tuple[int | None, int | None]] = []
    cur: int | None = None
    inside = bool(f_pen[0] < 0)
    for tt, kind in pen:
        if kind < 0:
            cur, inside = tt, True
        else:
            intervals.append((cur if inside else None, tt))
            cur, inside = None, False
    if inside:
        intervals.append((cur, None))
    for pe, px in intervals:
        lo = pe if pe is not None else start_ns - 1
        hi = px if px is not None else end_ns + 1
        ue = ux = None
        for tt, kind in umb:
            if lo <= tt <= hi:
                if kind < 0:
                    ue = tt
                else:
                    ux = tt
        eclipses.append(Eclipse(pe, ue, ux, px))
    return eclipses


def find_contacts(orbit, start: _dt.datetime, end: _dt.datetime) -> list[Eclipse]:
    """Eclipses between two datetimes (UTC); contact times are Unix ns (``hil_rig.clock``)."""
    return find_contacts_ns(orbit, unix_ns(as_utc(start)), unix_ns(as_utc(end)))
