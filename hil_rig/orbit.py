"""Orbits: from a TLE (SGP4) or from mean elements (Kepler + J2 secular rates).

Every orbit gives position and velocity in **TEME** (true equator, mean equinox
of date), SI units, for whole numpy arrays of absolute times in Unix ns (see
``hil_rig.clock``). The Sun from ``hil_rig.sun`` is in the same frame.

Bad input raises :class:`OrbitError` with a message that names what was wrong:
for a TLE the line and the column; for SGP4 the satellite, time and SGP4's own
reason (decay included); for elements the reason none exists.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import pathlib
import re

import numpy as np
from sgp4.api import SGP4_ERRORS, Satrec

from hil_rig.clock import as_utc, from_unix_ns, iso_ms, jd_utc, unix_ns
from hil_rig.constants import (
    EARTH_J2,
    EARTH_MU_M3_S2,
    EARTH_RADIUS_M,
    JD_UNIX_EPOCH,
    NS_PER_DAY,
    NS_PER_S,
    SECONDS_PER_DAY,
    TROPICAL_YEAR_DAYS,
)
from hil_rig.sun import mean_sun_ra_rad

#: Below this altitude a circular orbit decays within hours; rejected.
MIN_ALTITUDE_KM = 120.0
#: Julian date of SGP4's epoch origin, 1949-12-31 00:00 UT (sgp4init takes epochs in days from it).
SGP4_EPOCH_JD = 2_433_281.5
#: Sun-synchronous nodal precession rate (rad/s): one turn per tropical year.
SSO_RAAN_RATE_RAD_S = 2 * math.pi / (TROPICAL_YEAR_DAYS * SECONDS_PER_DAY)


class OrbitError(ValueError):
    """An orbit could not be made or propagated; the message says why."""


# ----------------------------------------------------------------------------- TLE


def tle_checksum(line: str) -> int:
    """Modulo-10 checksum of columns 1-68: digits count their value, '-' counts 1."""
    total = 0
    for ch in line[:68]:
        if ch.isdigit():
            total += int(ch)
        elif ch == "-":
            total += 1
    return total % 10


# (first column, last column) 1-based inclusive, field name, kind
_L1_FIELDS = (
    (3, 7, "satellite number", "int"),
    (19, 20, "epoch year", "int"),
    (21, 32, "epoch day", "float"),
    (34, 43, "first derivative of mean motion", "float"),
    (45, 52, "second derivative of mean motion", "exp"),
    (54, 61, "BSTAR drag term", "exp"),
)
_L2_FIELDS = (
    (3, 7, "satellite number", "int"),
    (9, 16, "inclination", "float"),
    (18, 25, "right ascension of the ascending node", "float"),
    (27, 33, "eccentricity", "int"),
    (35, 42, "argument of perigee", "float"),
    (44, 51, "mean anomaly", "float"),
    (53, 63, "mean motion", "float"),
)
_EXP_RE = re.compile(r"^[ +-]?\d{0,5}[+-]\d$")


def _check_field(text: str, lineno: int, first: int, last: int, name: str, kind: str, src: str) -> None:
    field = text[first - 1 : last]
    stripped = field.strip()
    ok = bool(stripped)
    if ok:
        if kind == "int":
            ok = stripped.isalnum() if name == "satellite number" else stripped.isdigit()
        elif kind == "float":
            try:
                float(stripped)
            except ValueError:
                ok = False
        else:
            ok = bool(_EXP_RE.match(field.rstrip()))
    if not ok:
        col = first + next((i for i, ch in enumerate(field) if ch != " "), 0)
        raise OrbitError(
            f"{src}: line {lineno}, column {col}: {name} (columns {first}-{last}) "
            f"is not a valid number: {field!r}"
        )


def _check_line(text: str, lineno: int, expected: str, src: str) -> None:
    if not text.startswith(expected + " "):
        raise OrbitError(f"{src}: line {lineno}, column 1: expected TLE line {expected} "
                         f"starting with '{expected} ', got {text[:10]!r}")
    if len(text) < 69:
        raise OrbitError(f"{src}: line {lineno}, column {len(text) + 1}: TLE line is "
                         f"{len(text)} characters long, expected 69")
    for i, ch in enumerate(text[:69]):
        if not (ch.isalnum() or ch in " .+-"):
            raise OrbitError(f"{src}: line {lineno}, column {i + 1}: unexpected character {ch!r}")
    fields = _L1_FIELDS if expected == "1" else _L2_FIELDS
    for first, last, name, kind in fields:
        _check_field(text, lineno, first, last, name, kind, src)
    if not text[68].isdigit():
        raise OrbitError(f"{src}: line {lineno}, column 69: checksum is {text[68]!r}, not a digit")
    want = tle_checksum(text)
    if int(text[68]) != want:
        raise OrbitError(f"{src}: line {lineno}, column 69: bad checksum {text[68]}, "
                         f"columns 1-68 sum to {want} (mod 10)")


def parse_tle(text: str, source: str = "<tle>") -> tuple[str | None, str, str]:
    """Parse a 2-line or 3-line TLE: returns (name or None, line1, line2).

    Raises :class:`OrbitError` naming the line (in ``text``) and column on any error.
    """
    raw = text.splitlines()
    lines = [(i + 1, ln.rstrip()) for i, ln in enumerate(raw) if ln.strip()]
    if len(lines) not in (2, 3):
        raise OrbitError(f"{source}: a TLE has 2 or 3 non-empty lines, found {len(lines)}")
    name = None
    if len(lines) == 3:
        lineno, name_line = lines[0]
        name = name_line[2:].strip() if name_line.startswith("0 ") else name_line.strip()
        if name_line.startswith(("1 ", "2 ")) and len(name_line) >= 69:
            raise OrbitError(f"{source}: line {lineno}, column 1: 3-line TLE must start with a name line")
        lines = lines[1:]
    (n1, l1), (n2, l2) = lines
    _check_line(l1, n1, "1", source)
    _check_line(l2, n2, "2", source)
    if l1[2:7] != l2[2:7]:
        raise OrbitError(f"{source}: line {n2}, column 3: satellite number {l2[2:7].strip()!r} "
                         f"differs from line {n1}'s {l1[2:7].strip()!r}")
    return name, l1[:69], l2[:69]


# ------------------------------------------------------------------------- orbits


@dataclasses.dataclass(frozen=True)
class MeanElements:
    """Circular-or-elliptic mean elements at ``epoch_ns`` (TEME, rad, m)."""

    a_m: float
    ecc: float
    inc_rad: float
    raan_rad: float
    argp_rad: float
    mean_anomaly_rad: float
    epoch_ns: int


class Orbit:
    """An orbit that propagates to TEME position/velocity for arrays of Unix ns.

    Build with :meth:`from_tle`, :meth:`from_tle_lines` or :meth:`from_elements`.
    """

    frame = "TEME"

    def __init__(self, *, satrec: Satrec | None = None, elements: MeanElements | None = None,
                 name: str = "satellite", source: str = "") -> None:
        if (satrec is None) == (elements is None):
            raise ValueError("give exactly one of satrec or elements")
        self._sat = satrec
        self._el = elements
        self.name = name
        self.source = source
        if satrec is not None:
            whole = satrec.jdsatepoch + satrec.jdsatepochF
            self.epoch_ns = int(round((whole - JD_UNIX_EPOCH) * SECONDS_PER_DAY * 1e6)) * 1000
            n = satrec.no_kozai / 60.0  # rad/s
            self.inc_rad = float(satrec.inclo)
            self._n = n
        else:
            assert elements is not None
            self.epoch_ns = elements.epoch_ns
            self.inc_rad = elements.inc_rad
            self._rates = _j2_rates(elements.a_m, elements.ecc, elements.inc_rad)
            self._n = self._rates[2]

    # --- construction ------------------------------------------------------
    @classmethod
    def from_tle(cls, text_or_path: str | pathlib.Path) -> Orbit:
        """From a 2- or 3-line TLE given as text or a file path."""
        src = "<tle>"
        text = str(text_or_path)
        if isinstance(text_or_path, pathlib.Path) or ("\n" not in text and len(text) < 4096):
            path = pathlib.Path(text_or_path)
            try:
                text = path.read_text(encoding="ascii")
            except FileNotFoundError:
                raise OrbitError(f"{path}: TLE file not found") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise OrbitError(f"{path}: cannot read TLE file: {exc}") from None
            src = str(path)
        name, l1, l2 = parse_tle(text, src)
        return cls.from_tle_lines(l1, l2, name=name, source=src)

    @classmethod
    def from_tle_lines(cls, line1: str, line2: str, name: str | None = None, source: str = "<tle>") -> Orbit:
        parse_tle(f"{line1}\n{line2}", source)
        sat = Satrec.twoline2rv(line1, line2)
        if sat.error:
            raise OrbitError(f"{source}: SGP4 rejects this TLE: {SGP4_ERRORS.get(sat.error, sat.error)}")
        orbit = cls(satrec=sat, name=name or f"NORAD {line1[2:7].strip()}", source=source)
        orbit.propagate(np.array([orbit.epoch_ns]))  # fail now on an orbit SGP4 cannot start
        return orbit

    @classmethod
    def from_elements(
        cls,
        *,
        alt_km: float,
        inc_deg: float | str,
        epoch: _dt.datetime,
        ltan: str | None = None,
        raan_deg: float | None = None,
        ecc: float = 0.0,
        argp_deg: float = 0.0,
        mean_anomaly_deg: float = 0.0,
        name: str = "elements",
    ) -> Orbit:
        """Mean elements with J2 secular rates. ``inc_deg='sso'`` solves for sun-synchronous.

        Give the node as ``raan_deg`` or as ``ltan='HH:MM'`` (local mean solar time
        of the ascending node: RAAN = RA of the mean Sun + (LTAN - 12 h) x 15 deg/h).
        """
        if not (math.isfinite(alt_km) and alt_km >= MIN_ALTITUDE_KM):
            raise OrbitError(f"altitude {alt_km} km: must be at least {MIN_ALTITUDE_KM:g} km "
                             "(lower orbits decay within hours)")
        if not 0.0 <= ecc < 1.0:
            raise OrbitError(f"eccentricity {ecc}: must be in [0, 1)")
        a_m = EARTH_RADIUS_M + alt_km * 1e3
        if a_m * (1 - ecc) < EARTH_RADIUS_M + MIN_ALTITUDE_KM * 1e3:
            raise OrbitError(f"perigee altitude {(a_m * (1 - ecc) - EARTH_RADIUS_M) / 1e3:.1f} km "
                             f"is below {MIN_ALTITUDE_KM:g} km")
        if isinstance(inc_deg, str):
            if inc_deg.strip().lower() != "sso":
                raise OrbitError(f"inclination {inc_deg!r}: give degrees or 'sso'")
            inc = sso_inclination_rad(alt_km, ecc)
        else:
            if not 0.0 <= inc_deg <= 180.0:
                raise OrbitError(f"inclination {inc_deg} deg: must be in [0, 180]")
            inc = math.radians(inc_deg)
        epoch_ns = unix_ns(as_utc(epoch))
        if (ltan is None) == (raan_deg is None):
            raise OrbitError("give exactly one of ltan (HH:MM) or raan_deg")
        if ltan is not None:
            hours = parse_ltan_hours(ltan)
            raan = float(mean_sun_ra_rad(epoch_ns)) + math.radians((hours - 12.0) * 15.0)
        else:
            assert raan_deg is not None
            raan = math.radians(raan_deg)
        el = MeanElements(a_m, ecc, inc, raan % (2 * math.pi), math.radians(argp_deg),
                          math.radians(mean_anomaly_deg), epoch_ns)
        return cls(elements=el, name=name, source="elements")

    # --- properties -------------------------------------------------------
    @property
    def period_s(self) -> float:
        """Anomalistic period from the mean motion (s)."""
        return 2 * math.pi / self._n

    @property
    def epoch(self) -> _dt.datetime:
        return from_unix_ns(self.epoch_ns)

    def onboard_tle(self, epoch: _dt.datetime) -> tuple[str, str]:
        """The two TLE lines to upload to the flight software's onboard predictor.

        A TLE orbit is uploaded as it is. For an orbit given by elements, the
        state at ``epoch`` is fitted into SGP4 mean elements (Kozai mean motion
        from the osculating semi-major axis): the onboard knowledge then differs
        from the J2 truth by a few seconds per orbit in eclipse timing, as a real
        uploaded TLE does."""
        from sgp4.api import WGS72
        from sgp4.exporter import export_tle

        if self._sat is not None:
            return export_tle(self._sat)
        el = self._el
        assert el is not None
        t0 = unix_ns(epoch)
        r, v = self.propagate(np.array([t0]))
        mu = EARTH_MU_M3_S2
        rn = float(np.linalg.norm(r[0]))
        vn = float(np.linalg.norm(v[0]))
        a = 1.0 / (2.0 / rn - vn * vn / mu)
        n_rad_min = math.sqrt(mu / a**3) * 60.0
        h = np.cross(r[0], v[0])
        inc = math.acos(h[2] / np.linalg.norm(h))
        node = np.cross([0.0, 0.0, 1.0], h)
        raan = math.atan2(node[1], node[0]) % (2 * math.pi)
        nn = node / np.linalg.norm(node)
        u = math.atan2(np.dot(np.cross(nn, r[0]), h / np.linalg.norm(h)), np.dot(nn, r[0])) % (2 * math.pi)
        jd = t0 / (NS_PER_DAY * 1.0) + JD_UNIX_EPOCH
        sat = Satrec()
        sat.sgp4init(WGS72, "i", 99999, jd - SGP4_EPOCH_JD, 0.0, 0.0, 0.0, max(el.ecc, 1e-7), 0.0, inc,
                     u, n_rad_min, raan)
        return export_tle(sat)

    # --- propagation ------------------------------------------------------
    def propagate(self, t_unix_ns: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """Position (m) and velocity (m/s) in TEME, shapes (N, 3), for Unix ns times."""
        t = np.atleast_1d(np.asarray(t_unix_ns, dtype=np.int64))
        if self._sat is not None:
            return self._propagate_sgp4(t)
        return self._propagate_j2(t)

    def positions(self, t_unix_ns: np.ndarray) -> np.ndarray:
        """Positions (m, TEME), shape (N, 3): ``propagate``'s, to rounding, without the
        velocities (about half the work for a circular orbit given by elements)."""
        t = np.atleast_1d(np.asarray(t_unix_ns, dtype=np.int64))
        el = self._el
        if el is None or el.ecc != 0.0:
            return self.propagate(t)[0]
        raan_dot, argp_dot, m_dot = self._rates
        dt = (t - el.epoch_ns).astype(float) / NS_PER_S
        raan = el.raan_rad + raan_dot * dt
        argp = el.argp_rad + argp_dot * dt
        m = np.mod(el.mean_anomaly_rad + m_dot * dt, 2 * np.pi)  # = the eccentric anomaly
        # argument of latitude u = argp + m, by the angle-sum formulas on propagate's own angles
        cw, sw, cm, sm = np.cos(argp), np.sin(argp), np.cos(m), np.sin(m)
        cu, su = cm * cw - sm * sw, sm * cw + cm * sw
        co, so = np.cos(raan), np.sin(raan)
        a, ci, si = el.a_m, math.cos(el.inc_rad), math.sin(el.inc_rad)
        r = np.empty((t.size, 3))
        r[:, 0] = a * (co * cu - so * ci * su)
        r[:, 1] = a * (so * cu + co * ci * su)
        r[:, 2] = a * si * su
        return r

    def _propagate_sgp4(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        whole, frac = jd_utc(t)
        err, r, v = self._sat.sgp4_array(whole, frac)
        bad = (err != 0) | ~np.isfinite(r).all(axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            code = int(err[i])
            why = SGP4_ERRORS.get(code, "non-finite state") if code else "non-finite state"
            raise OrbitError(f"{self.name}: SGP4 cannot propagate to {iso_ms(int(t[i]))} "
                             f"({(t[i] - self.epoch_ns) / NS_PER_S / 86400:+.2f} days from the TLE epoch): {why}")
        return r * 1e3, v * 1e3

    def _propagate_j2(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        el = self._el
        assert el is not None
        raan_dot, argp_dot, m_dot = self._rates
        dt = (t - el.epoch_ns).astype(float) / NS_PER_S
        raan = el.raan_rad + raan_dot * dt
        argp = el.argp_rad + argp_dot * dt
        m = np.mod(el.mean_anomaly_rad + m_dot * dt, 2 * np.pi)
        e = el.ecc
        ecc_anom = m.copy()
        for _ in range(12 if e > 0 else 0):
            ecc_anom = ecc_anom - (ecc_anom - e * np.sin(ecc_anom) - m) / (1 - e * np.cos(ecc_anom))
        cos_e, sin_e = np.cos(ecc_anom), np.sin(ecc_anom)
        sq = math.sqrt(1 - e * e)
        a = el.a_m
        # perifocal position, velocity (mean-motion consistent with the J2-corrected rate)
        xp = a * (cos_e - e)
        yp = a * sq * sin_e
        edot = m_dot / (1 - e * cos_e)
        vxp = -a * sin_e * edot
        vyp = a * sq * cos_e * edot
        co, so = np.cos(raan), np.sin(raan)
        cw, sw = np.cos(argp), np.sin(argp)
        ci, si = math.cos(el.inc_rad), math.sin(el.inc_rad)
        # perifocal unit vectors P, Q in TEME, and the rotating-frame velocity terms
        px, py, pz = co * cw - so * sw * ci, so * cw + co * sw * ci, sw * si
        qx, qy, qz = -co * sw - so * cw * ci, -so * sw + co * cw * ci, cw * si
        r = np.empty((t.size, 3))
        v = np.empty((t.size, 3))
        r[:, 0] = xp * px + yp * qx
        r[:, 1] = xp * py + yp * qy
        r[:, 2] = xp * pz + yp * qz
        # the node turns about z at raan_dot and the perigee about the orbit normal W = P x Q
        wx, wy, wz = si * so, -si * co, ci
        ox, oy, oz = argp_dot * wx, argp_dot * wy, raan_dot + argp_dot * wz
        v[:, 0] = vxp * px + vyp * qx + (oy * r[:, 2] - oz * r[:, 1])
        v[:, 1] = vxp * py + vyp * qy + (oz * r[:, 0] - ox * r[:, 2])
        v[:, 2] = vxp * pz + vyp * qz + (ox * r[:, 1] - oy * r[:, 0])
        return r, v


def _j2_rates(a_m: float, ecc: float, inc_rad: float) -> tuple[float, float, float]:
    """(RAAN rate, argument-of-perigee rate, mean-anomaly rate) in rad/s, J2 secular."""
    n = math.sqrt(EARTH_MU_M3_S2 / a_m**3)
    p = a_m * (1 - ecc**2)
    k = 1.5 * n * EARTH_J2 * (EARTH_RADIUS_M / p) ** 2
    ci = math.cos(inc_rad)
    raan_dot = -k * ci
    argp_dot = 0.5 * k * (5 * ci**2 - 1)
    m_dot = n + 0.5 * k * math.sqrt(1 - ecc**2) * (3 * ci**2 - 1)
    return raan_dot, argp_dot, m_dot


def sso_inclination_rad(alt_km: float, ecc: float = 0.0) -> float:
    """Sun-synchronous inclination for an altitude; :class:`OrbitError` if none exists."""
    a_m = EARTH_RADIUS_M + alt_km * 1e3
    n = math.sqrt(EARTH_MU_M3_S2 / a_m**3)
    p = a_m * (1 - ecc**2)
    cos_i = -SSO_RAAN_RATE_RAD_S / (1.5 * n * EARTH_J2 * (EARTH_RADIUS_M / p) ** 2)
    if cos_i < -1.0:
        raise OrbitError(
            f"no sun-synchronous orbit at {alt_km:g} km: J2 precession there is too weak "
            f"(would need cos(i) = {cos_i:.3f} < -1; sun-synchronous orbits exist only below "
            f"about {max_sso_altitude_km():.0f} km)"
        )
    return math.acos(cos_i)


def max_sso_altitude_km() -> float:
    """Highest circular altitude with a sun-synchronous solution (retrograde polar)."""
    # cos i = -1 <=> 1.5 n J2 (R/a)^2 = rate ; n (R/a)^2 ∝ a^-3.5
    k = 1.5 * math.sqrt(EARTH_MU_M3_S2) * EARTH_J2 * EARTH_RADIUS_M**2
    a = (k / SSO_RAAN_RATE_RAD_S) ** (1 / 3.5)
    return (a - EARTH_RADIUS_M) / 1e3


def parse_ltan_hours(text: str) -> float:
    """'HH:MM' -> hours, rejecting anything else with a reason."""
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", text)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise OrbitError(f"LTAN {text!r}: expected HH:MM with HH 00-23 and MM 00-59")
    return int(m.group(1)) + int(m.group(2)) / 60.0
