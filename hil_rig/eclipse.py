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


@dataclasses.dataclass(frozen=True, slots=True)
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


#: Contacts are searched through the window in chunks of this many grid steps (about
#: 22 days at the 28.7 s step of a 550 km orbit): the search's memory is bounded by one
#: chunk, whatever the window's length; what it keeps between chunks is a few numbers
#: per contact.
CONTACT_CHUNK_STEPS = 1 << 16
#: The search takes the Sun from a cubic interpolation of exact values this far apart.
SUN_NODE_NS = 3600 * NS_PER_S
#: A bound (rad) on how far a margin from the interpolated Sun and ``Orbit.positions``
#: may be from the exact one (``orbit.propagate`` and ``sun_teme_m``); the error measured
#: over a century is below 1e-13 rad (tests/test_rig_eclipse.py). Wherever a decision of
#: the search is within this bound of going the other way, it is taken again on exact
#: values, so the contacts are those of the exact margins, bit for bit.
MARGIN_TOL_RAD = 1e-9


class _Margins:
    """Penumbra and umbra margins (rad, negative inside that shadow region) at Unix ns.

    ``exact(t)`` is the definition. ``fast(t)`` is the same to within MARGIN_TOL_RAD, at a
    fraction of the cost: the Sun's series is evaluated once an hour instead of at every
    instant (``cover`` sets the span of that table)."""

    def __init__(self, orbit, span_ns: int, exact_only: bool = False) -> None:
        self.orbit = orbit
        self.span_ns = span_ns  # the search's chunk: a Sun table at most this long
        self.exact_only = exact_only
        self._t0 = self._t1 = 0
        self._nodes: np.ndarray | None = None

    def exact(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r, _ = self.orbit.propagate(t)
        theta, rho_e, rho_s = shadow_angles(r, sun_teme_m(t))
        return theta - (rho_e + rho_s), theta - (rho_e - rho_s)

    def cover(self, t_lo: int, t_hi: int) -> None:
        """Tabulate the Sun at the hourly nodes around [t_lo, t_hi]."""
        self._t0 = (t_lo // SUN_NODE_NS - 1) * SUN_NODE_NS
        n = (t_hi - self._t0) // SUN_NODE_NS + 3
        self._t1 = self._t0 + (n - 2) * SUN_NODE_NS
        self._nodes = sun_teme_m(self._t0 + np.arange(n, dtype=np.int64) * SUN_NODE_NS)

    def _sun(self, t: np.ndarray) -> np.ndarray:
        if self._nodes is None or int(t.min()) < self._t0 + SUN_NODE_NS or int(t.max()) >= self._t1:
            self.cover(int(t.min()), int(t.max()))
        assert self._nodes is not None
        k = (t - self._t0) // SUN_NODE_NS
        x = ((t - self._t0 - k * SUN_NODE_NS) / SUN_NODE_NS)[:, None]
        s = self._nodes
        # 4-point Lagrange cubic through nodes k-1 .. k+2
        return (s[k - 1] * (-x * (x - 1) * (x - 2) / 6) + s[k] * ((x + 1) * (x - 1) * (x - 2) / 2)
                + s[k + 1] * (-(x + 1) * x * (x - 2) / 2) + s[k + 2] * ((x + 1) * x * (x - 1) / 6))

    def fast(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.exact_only:
            return self.exact(t)
        theta, rho_e, rho_s = shadow_angles(self.orbit.positions(t), self._sun(t))
        return theta - (rho_e + rho_s), theta - (rho_e - rho_s)

    def refine(self, t: np.ndarray, f: np.ndarray, which: int, unsure: np.ndarray) -> np.ndarray:
        """``f`` (margin ``which`` at ``t``, fast) with its ``unsure`` entries exact."""
        if self.exact_only or not unsure.any():
            return f
        f = f.copy()
        f[unsure] = self.exact(t[unsure])[which]
        return f

    def negative(self, t: np.ndarray, which: int) -> np.ndarray:
        """Where margin ``which`` is < 0 at ``t``, as the exact margin says."""
        f = self.fast(t)[which]
        return self.refine(t, f, which, np.abs(f) <= MARGIN_TOL_RAD) < 0

    def settled(self, t: np.ndarray, f: np.ndarray, which: int, dip_rad: float) -> np.ndarray:
        """``f`` (fast) refined wherever a decision of the grid scan is unsure: a sign, the
        comparison with ``dip_rad``, the comparison of neighbours."""
        tol = MARGIN_TOL_RAD
        unsure = (np.abs(f) <= tol) | (np.abs(f - dip_rad) <= tol)
        close = np.abs(np.diff(f)) <= 2 * tol
        unsure[:-1] |= close
        unsure[1:] |= close
        return self.refine(t, f, which, unsure)


class _Brackets:
    """Sign-change brackets of one margin, bisected each to its own width (<= 1 ms)."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, m: _Margins, which: int, lo: np.ndarray, hi: np.ndarray, lo_neg: np.ndarray) -> None:
        lo, hi, k = _bisect(m, which, lo.astype(np.int64), hi.astype(np.int64), lo_neg, None)
        self.parts.append((lo, hi, lo_neg, k))

    def roots(self, m: _Margins, which: int) -> tuple[np.ndarray, np.ndarray]:
        """(roots, lo_neg) in the order added. A single bisection of every bracket at once
        would run as many steps as the widest bracket needs, and every bracket takes them
        all: the brackets that stopped earlier take the rest now."""
        if not self.parts:
            return np.zeros(0, np.int64), np.zeros(0, bool)
        lo, hi, lo_neg, k = (np.concatenate(x) for x in zip(*self.parts, strict=True))
        for g in _behind(k, lo, m.span_ns):
            lo[g], hi[g], _ = _bisect(m, which, lo[g], hi[g], lo_neg[g], k.max() - k[g])
        return lo + (hi - lo) // 2, lo_neg


def _behind(k: np.ndarray, t: np.ndarray, span_ns: int) -> list[np.ndarray]:
    """The searches that took fewer steps (``k``) than the most, in groups whose times
    ``t`` fall in one ``span_ns`` window each (one Sun table each)."""
    if k.size == 0:
        return []
    behind = np.nonzero(k < k.max())[0]
    key = t[behind] // span_ns
    return np.split(behind, np.nonzero(np.diff(key))[0] + 1) if behind.size else []


def _bisect(m: _Margins, which: int, lo: np.ndarray, hi: np.ndarray, lo_neg: np.ndarray,
            steps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorized bisection of margin ``which`` over ns brackets [lo, hi] with a sign change:
    each bracket ``steps`` times, or (None) until it is at most CONTACT_BRACKET_NS wide.
    Returns (lo, hi, steps taken)."""
    lo, hi = lo.copy(), hi.copy()
    done = np.zeros(lo.size, np.int64)
    while True:
        act = np.nonzero(hi - lo > CONTACT_BRACKET_NS if steps is None else done < steps)[0]
        if act.size == 0:
            return lo, hi, done
        a, b = lo[act], hi[act]
        mid = a + (b - a) // 2
        same_as_lo = m.negative(mid, which) == lo_neg[act]
        lo[act] = np.where(same_as_lo, mid, a)
        hi[act] = np.where(same_as_lo, b, mid)
        done[act] += 1


_GOLDEN = 0.6180339887498949
_GOLDEN_STEPS = 40


def _golden(m: _Margins, which: int, a: np.ndarray, b: np.ndarray,
            steps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Golden-section search for the minimum of margin ``which`` in each [a, b]: ``steps``
    times each, or (None) until at most CONTACT_BRACKET_NS wide (at most 40 steps)."""
    a, b = a.copy(), b.copy()
    done = np.zeros(a.size, np.int64)
    while True:
        if steps is None:
            act = np.nonzero((b - a > CONTACT_BRACKET_NS) & (done < _GOLDEN_STEPS))[0]
        else:
            act = np.nonzero(done < steps)[0]
        if act.size == 0:
            return a, b, done
        aa, bb = a[act], b[act]
        c = bb - ((bb - aa) * _GOLDEN).astype(np.int64)
        d = aa + ((bb - aa) * _GOLDEN).astype(np.int64)
        tc = np.concatenate([c, d])
        f = m.fast(tc)[which]
        fc, fd = f[: c.size], f[c.size :]
        unsure = np.abs(fc - fd) <= 2 * MARGIN_TOL_RAD
        f = m.refine(tc, f, which, np.concatenate([unsure, unsure]))
        left = f[: c.size] < f[c.size :]
        b[act] = np.where(left, d, bb)
        a[act] = np.where(left, aa, c)
        done[act] += 1


class _Dips:
    """Local minima of a positive sampled margin that may dip below zero between samples,
    searched for their minimum (golden section); a negative minimum gives two brackets."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, m: _Margins, which: int, t_before: np.ndarray, t_after: np.ndarray) -> None:
        a, b, k = _golden(m, which, t_before, t_after, None)
        self.parts.append((t_before, t_after, a, b, k))

    def brackets(self, m: _Margins, which: int) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) of the dips' brackets, in pairs (entry, exit)."""
        if not self.parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        t_before, t_after, a, b, k = (np.concatenate(x) for x in zip(*self.parts, strict=True))
        for g in _behind(k, a, m.span_ns):  # as in _Brackets.roots
            a[g], b[g], _ = _golden(m, which, a[g], b[g], k.max() - k[g])
        tmin = a + (b - a) // 2
        neg = np.nonzero(m.negative(tmin, which))[0] if tmin.size else np.zeros(0, np.int64)
        lo = np.stack([t_before[neg], tmin[neg]], axis=1).ravel()
        hi = np.stack([tmin[neg], t_after[neg]], axis=1).ravel()
        return lo, hi


def _grid(start_ns: int, end_ns: int, n: int, i0: int, i1: int) -> np.ndarray:
    """Entries i0..i1-1 of ``np.linspace(start_ns, end_ns, n).round().astype(np.int64)``,
    computed the way numpy computes them."""
    step = (float(end_ns) - float(start_ns)) / (n - 1)
    y = np.arange(i0, i1, dtype=float) * step + float(start_ns)
    if i1 == n:
        y[-1] = float(end_ns)
    return y.round().astype(np.int64)


def find_contacts_ns(orbit, start_ns: int, end_ns: int, step_s: float | None = None, *,
                     epoch_ns: int = 0, exact_sun: bool = False) -> list[Eclipse]:
    """Eclipses between two Unix-ns instants, each contact bracketed to <= 1 ms; contact
    times in ns since ``epoch_ns`` (0: Unix ns).

    The margins are sampled on a grid (``step_s``, default min(30 s, period / 200)); a sign
    change between two samples, or a local minimum close enough to zero to dip below it in
    between, is bisected. The grid is searched in chunks of CONTACT_CHUNK_STEPS steps.
    ``exact_sun``: evaluate every margin exactly (slow; the reference that the default
    equals, see MARGIN_TOL_RAD)."""
    if end_ns <= start_ns:
        raise ValueError("end must be after start")
    step = step_s if step_s is not None else min(30.0, orbit.period_s / 200.0)
    n = int(np.ceil((end_ns - start_ns) / (step * NS_PER_S))) + 1
    t01 = _grid(start_ns, end_ns, n, 0, 2)
    # the margin changes at most ~ (orbital rate) * step between samples: only close dips matter
    dip_rad = 2 * np.pi * (t01[1] - t01[0]) / NS_PER_S / orbit.period_s * 2.0
    m = _Margins(orbit, CONTACT_CHUNK_STEPS * int(t01[1] - t01[0]), exact_only=exact_sun)
    found = [(_Brackets(), _Dips()), (_Brackets(), _Dips())]
    first_inside = False
    for a in range(0, n - 1, CONTACT_CHUNK_STEPS):
        # grid intervals [j, j + 1] for a <= j < b; local minima at a <= i < b; samples a-1 .. b+1
        b = min(a + CONTACT_CHUNK_STEPS, n - 1)
        g0, g1 = max(a - 1, 0), min(b + 1, n - 1)
        t = _grid(start_ns, end_ns, n, g0, g1 + 1)
        m.cover(int(t[0]), int(t[-1]))
        for which, f in enumerate(m.fast(t)):
            f = m.settled(t, f, which, dip_rad)
            if which == 0 and a == 0:
                first_inside = bool(f[0] < 0)
            brackets, dips = found[which]
            neg = f < 0
            j = np.arange(a, b) - g0  # local index of each interval's start
            j = j[neg[j] != neg[j + 1]]
            brackets.add(m, which, t[j], t[j + 1], neg[j])
            i = np.arange(max(a, 1), min(b, n - 1)) - g0  # local minima, interior of the grid
            fi = f[i]
            i = i[(fi > 0) & (fi <= f[i - 1]) & (fi <= f[i + 1]) & (fi < dip_rad)]
            if i.size:
                dips.add(m, which, t[i - 1], t[i + 1])
    crossings = []
    for which in (0, 1):
        brackets, dips = found[which]
        lo, hi = dips.brackets(m, which)
        if lo.size:
            brackets.add(m, which, lo, hi, np.arange(lo.size) % 2 == 1)
        roots, lo_neg = brackets.roots(m, which)
        order = np.argsort(roots, kind="stable")
        crossings.append((roots[order], np.where(lo_neg, 1, -1)[order]))
    return _pair(crossings[0], crossings[1], first_inside, start_ns, end_ns, epoch_ns)


def _pair(pen: tuple[np.ndarray, np.ndarray], umb: tuple[np.ndarray, np.ndarray], first_inside: bool,
          start_ns: int, end_ns: int, epoch_ns: int) -> list[Eclipse]:
    """Eclipses from the penumbra and umbra crossings (time, +1 exit / -1 entry), each in
    time order: each penumbra interval holds zero or one umbra interval (the last entry and
    the last exit inside it)."""
    tt, kind = pen
    exits = np.nonzero(kind > 0)[0]
    after_entry = exits > 0
    after_entry[after_entry] = kind[exits[after_entry] - 1] < 0
    none = np.iinfo(np.int64).min  # no such contact
    pe = np.where(after_entry, tt[np.maximum(exits - 1, 0)], none)
    px = tt[exits]
    if kind.size == 0 and first_inside:
        pe, px = np.array([none]), np.array([none])
    elif kind.size and kind[-1] < 0:
        pe, px = np.append(pe, tt[-1]), np.append(px, none)
    lo = np.where(pe == none, start_ns - 1, pe)
    hi = np.where(px == none, end_ns + 1, px)
    ut, uk = umb
    inside = []
    for kind_sel in (-1, 1):
        times = ut[uk == kind_sel]
        k = np.searchsorted(times, hi, side="right") - 1
        ok = k >= 0
        ok[ok] = times[k[ok]] >= lo[ok]
        inside.append(np.where(ok, times[np.maximum(k, 0)] if times.size else none, none))
    rows = np.stack([pe, inside[0], inside[1], px], axis=1)
    rows = np.where(rows == none, none, rows - epoch_ns)
    return [Eclipse(*(None if x == none else x for x in row), epoch_ns=epoch_ns) for row in rows.tolist()]


def find_contacts(orbit, start: _dt.datetime, end: _dt.datetime) -> list[Eclipse]:
    """Eclipses between two datetimes (UTC); contact times are Unix ns (``hil_rig.clock``)."""
    return find_contacts_ns(orbit, unix_ns(as_utc(start)), unix_ns(as_utc(end)))
