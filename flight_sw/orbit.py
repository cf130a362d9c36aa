"""Onboard orbit knowledge: an uploaded TLE, SGP4, a simple sun model, a shadow.

This is the flight software's own model, deliberately simple and separate from
the rig's reference environment (flight code never imports ``hil_rig``):

* orbit: SGP4 (the ``sgp4`` package) from the uploaded TLE, position in TEME;
* sun: the Astronomical Almanac low-precision formula (about 0.01 deg), giving
  the sun in the equator and equinox of date, which is TEME to well under that;
* shadow: a spherical Earth (R = 6378.137 km). The spacecraft is in eclipse
  when the sun's centre is behind the Earth's limb as seen from the spacecraft
  (the middle of the penumbra), so predicted edges sit between the rig's
  penumbra and umbra contacts.

Times are integer nanoseconds since the scenario epoch (UTC), passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sgp4.api import Satrec, SatrecArray, jday

from flight_sw.executive import NS

EARTH_RADIUS_M = 6378137.0  # a spherical Earth of the equatorial radius, as the rig's shadow model
AU_M = 149_597_870_700.0


class TleError(ValueError):
    """A TLE that cannot be used; the message names the line and column."""


def _checksum(line: str) -> int:
    return sum(int(c) if c.isdigit() else (1 if c == "-" else 0) for c in line[:68]) % 10


def parse_tle(text: str) -> tuple[str, str, str]:
    """Split a 2- or 3-line TLE into (name, line1, line2); check layout and checksums."""
    lines = [ln.rstrip() for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) == 3:
        name, l1, l2 = lines[0].strip(), lines[1], lines[2]
        off = 2
    elif len(lines) == 2:
        name, l1, l2 = "", lines[0], lines[1]
        off = 1
    else:
        raise TleError(f"TLE: expected 2 or 3 non-empty lines, got {len(lines)}")
    for n, (ln, want) in enumerate(((l1, "1"), (l2, "2")), start=off):
        if len(ln) != 69:
            raise TleError(f"TLE line {n}: {len(ln)} characters, expected 69")
        if ln[0] != want:
            raise TleError(f"TLE line {n}, column 1: expected {want!r}, got {ln[0]!r}")
        if not ln[68].isdigit():
            raise TleError(f"TLE line {n}, column 69: checksum is not a digit")
        if _checksum(ln) != int(ln[68]):
            raise TleError(f"TLE line {n}, column 69: checksum {ln[68]} but the line sums to {_checksum(ln)}")
    if l1[2:7] != l2[2:7]:
        raise TleError(f"TLE line {off + 1}, column 3: catalogue number {l2[2:7]!r} differs from line {off}")
    return name, l1, l2


def sun_teme_m(jd: np.ndarray) -> np.ndarray:
    """Sun position (m), equator and equinox of date ~ TEME; jd may be an array."""
    n = np.asarray(jd, dtype=float) - 2451545.0
    L = np.radians(280.460 + 0.9856474 * n)
    g = np.radians(357.528 + 0.9856003 * n)
    lam = L + np.radians(1.915) * np.sin(g) + np.radians(0.020) * np.sin(2 * g)
    eps = np.radians(23.439 - 0.0000004 * n)
    r = (1.00014 - 0.01671 * np.cos(g) - 0.00014 * np.cos(2 * g)) * AU_M
    return np.stack([r * np.cos(lam), r * np.cos(eps) * np.sin(lam), r * np.sin(eps) * np.sin(lam)], axis=-1)


_RAD_1P915, _RAD_0P020 = math.radians(1.915), math.radians(0.020)  # sun_teme_unit's constants


def sun_teme_unit(jd: float) -> tuple[float, float, float]:
    """Scalar form of :func:`sun_teme_m`, as a unit vector (the 1 Hz navigation frame)."""
    n = jd - 2451545.0
    g = math.radians(357.528 + 0.9856003 * n)
    lam = math.radians(280.460 + 0.9856474 * n) + _RAD_1P915 * math.sin(g) + _RAD_0P020 * math.sin(2 * g)
    eps = math.radians(23.439 - 0.0000004 * n)
    sl = math.sin(lam)
    return (math.cos(lam), math.cos(eps) * sl, math.sin(eps) * sl)


def sunlit(r_teme_m: np.ndarray, sun_m: np.ndarray) -> np.ndarray:
    """True where the sun's centre is above the Earth's limb seen from r."""
    r = np.atleast_2d(r_teme_m)
    s = np.atleast_2d(sun_m)
    rn = np.linalg.norm(r, axis=-1)
    d = s - r
    dn = np.linalg.norm(d, axis=-1)
    # angle between the direction to the Earth's centre (-r) and to the sun
    cos_c = np.einsum("ij,ij->i", -r, d) / (rn * dn)
    c = np.arccos(np.clip(cos_c, -1.0, 1.0))
    a = np.arcsin(np.clip(EARTH_RADIUS_M / rn, -1.0, 1.0))
    return c >= a


@dataclass(frozen=True)
class EclipseWindow:
    entry_ns: int
    exit_ns: int

    @property
    def duration_s(self) -> float:
        return (self.exit_ns - self.entry_ns) / NS


class EclipsePredictor:
    """Predicts eclipse entry and exit from an uploaded TLE."""

    def __init__(self, epoch_utc: tuple[int, int, int, int, int, float]) -> None:
        jd, fr = jday(*epoch_utc)
        self.epoch_jd = jd
        self.epoch_fr = fr
        self.sat: Satrec | None = None
        self.name = ""

    def load_tle(self, text: str) -> None:
        name, l1, l2 = parse_tle(text)
        try:
            sat = Satrec.twoline2rv(l1, l2)
        except Exception as e:  # sgp4 raises ValueError on unparsable fields
            raise TleError(f"TLE: sgp4 cannot read it: {e}") from None
        if sat.error:
            raise TleError(f"TLE: sgp4 error code {sat.error}")
        self.sat, self.name = sat, name
        self._arr = SatrecArray([sat])

    @property
    def loaded(self) -> bool:
        return self.sat is not None

    def position_teme_m(self, t_ns: np.ndarray) -> np.ndarray:
        if self.sat is None:
            raise TleError("no TLE uploaded")
        t = np.atleast_1d(np.asarray(t_ns, dtype=np.int64))
        days = t / (86400 * NS)
        jd = np.full(t.shape, self.epoch_jd)
        fr = self.epoch_fr + days
        e, r, _v = self._arr.sgp4(jd, fr)
        if np.any(e[0]):
            bad = int(np.flatnonzero(e[0])[0])
            raise TleError(f"SGP4 error {int(e[0][bad])} at t = {t[bad] / NS:.1f} s (decayed orbit?)")
        return r[0] * 1000.0

    def state_teme(self, t_ns: int) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """Scalar SGP4: (r_teme_m, v_teme_m_s) at one time."""
        if self.sat is None:
            raise TleError("no TLE uploaded")
        e, r, v = self.sat.sgp4(self.epoch_jd, self.epoch_fr + t_ns / (86400 * NS))
        if e:
            raise TleError(f"SGP4 error {e} at t = {t_ns / NS:.1f} s (decayed orbit?)")
        return (r[0] * 1e3, r[1] * 1e3, r[2] * 1e3), (v[0] * 1e3, v[1] * 1e3, v[2] * 1e3)

    def in_sun(self, t_ns: np.ndarray) -> np.ndarray:
        t = np.atleast_1d(np.asarray(t_ns, dtype=np.int64))
        jd = self.epoch_jd + self.epoch_fr + t / (86400 * NS)
        return sunlit(self.position_teme_m(t), sun_teme_m(jd))

    def next_eclipse(self, t_ns: int, horizon_s: float = 7200.0, step_s: float = 30.0,
                     tol_ns: int = 100_000_000) -> EclipseWindow | None:
        """The eclipse in progress at ``t_ns`` or the next one within ``horizon_s``.

        Coarse samples every ``step_s``, edges refined by bisection to ``tol_ns``.
        An eclipse in progress reports ``entry_ns <= t_ns``. Returns None when no
        eclipse starts within the horizon (e.g. a full-sun orbit).
        """
        step = int(step_s * NS)
        ts = t_ns + step * np.arange(int(horizon_s / step_s) + 2, dtype=np.int64)
        lit = self.in_sun(ts)
        if lit.all():
            return None
        if not lit[0]:
            entry = self._edge(t_ns - int(3000 * NS), t_ns, into_shadow=True, tol_ns=tol_ns, step=step)
            i_exit = int(np.argmax(lit))
            if lit[i_exit]:
                exit_ = self._bisect(int(ts[i_exit - 1]), int(ts[i_exit]), tol_ns, want_lit_at_hi=True)
            else:
                exit_ = int(ts[-1])
            return EclipseWindow(entry, exit_)
        i_in = int(np.argmax(~lit))
        entry = self._bisect(int(ts[i_in - 1]), int(ts[i_in]), tol_ns, want_lit_at_hi=False)
        rest = lit[i_in:]
        if rest.any():
            j = i_in + int(np.argmax(rest))
            exit_ = self._bisect(int(ts[j - 1]), int(ts[j]), tol_ns, want_lit_at_hi=True)
        else:
            exit_ = int(self._edge_forward(int(ts[-1]), tol_ns, step))
        return EclipseWindow(entry, exit_)

    def _bisect(self, lo: int, hi: int, tol_ns: int, *, want_lit_at_hi: bool) -> int:
        # invariant: state(lo) != state(hi); state(hi) == want_lit_at_hi
        while hi - lo > tol_ns:
            mid = (lo + hi) // 2
            if bool(self.in_sun(mid)[0]) == want_lit_at_hi:
                hi = mid
            else:
                lo = mid
        return hi

    def _edge(self, lo: int, t_ns: int, *, into_shadow: bool, tol_ns: int, step: int) -> int:
        """Entry of the eclipse in progress at t_ns: scan back for the last sunlit sample."""
        ts = t_ns - step * np.arange(int(3000 * NS // step) + 1, dtype=np.int64)
        lit = self.in_sun(ts)
        if not lit.any():
            return int(ts[-1])
        i = int(np.argmax(lit))
        return self._bisect(int(ts[i]), int(ts[i - 1]), tol_ns, want_lit_at_hi=False)

    def _edge_forward(self, t0: int, tol_ns: int, step: int) -> int:
        ts = t0 + step * np.arange(int(3000 * NS // step) + 1, dtype=np.int64)
        lit = self.in_sun(ts)
        if not lit.any():
            return int(ts[-1])
        j = int(np.argmax(lit))
        return self._bisect(int(ts[j - 1]), int(ts[j]), tol_ns, want_lit_at_hi=True)


def epoch_tuple(iso: str) -> tuple[int, int, int, int, int, float]:
    """'2026-03-20T12:00:00Z' -> (2026, 3, 20, 12, 0, 0.0) for :class:`EclipsePredictor`."""
    from datetime import UTC, datetime

    s = iso.strip().replace("Z", "+00:00")
    try:
        d = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"epoch {iso!r}: not an ISO-8601 UTC time") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    d = d.astimezone(UTC)
    return (d.year, d.month, d.day, d.hour, d.minute, d.second + d.microsecond / 1e6)

