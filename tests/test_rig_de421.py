"""Validation: eclipse contacts, illumination and the Sun against a JPL DE421 pipeline.

The reference is independent of hil_rig's ephemeris and frames: skyfield computes
the apparent Sun from DE421 (shipped in skyfield-data, nothing downloaded) and
the satellite in GCRS (skyfield's own SGP4 wrapper and TEME->GCRS rotation with
its built-in timescale), and this file finds the contacts with its own shadow
test and bisection. Target: every contact within 0.25 s.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import warnings

import numpy as np
import pytest

skyfield_api = pytest.importorskip("skyfield.api")
skyfield_data = pytest.importorskip("skyfield_data")
from skyfield.sgp4lib import TEME  # noqa: E402

from hil_rig.clock import unix_ns  # noqa: E402
from hil_rig.constants import EARTH_RADIUS_M, SUN_RADIUS_M  # noqa: E402
from hil_rig.eclipse import find_contacts, illumination  # noqa: E402
from hil_rig.orbit import Orbit  # noqa: E402
from hil_rig.sun import sun_teme_m  # noqa: E402

DATA = pathlib.Path(__file__).parent / "data"
TOLERANCE_S = 0.25  # the bar
ACHIEVED_S = 0.05  # measured worst is ~0.01 s; fail on a regression well before the bar


@pytest.fixture(scope="module")
def ref():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts = skyfield_api.load.timescale(builtin=True)
        eph = skyfield_api.Loader(skyfield_data.get_skyfield_data_path(), verbose=False)("de421.bsp")
    return ts, eph


def _times(ts, ns: np.ndarray):
    """skyfield Time for Unix ns: whole days + seconds of day, so the leap-second table
    is looked up on the right date (seconds overflowing from 1970 would not be)."""
    ns = np.asarray(ns, dtype=np.int64)
    days, rem = np.divmod(ns, 86_400 * 10**9)
    return ts.utc(1970, 1, 1 + days, 0, 0, rem / 1e9)


class RefPipeline:
    """Satellite and apparent Sun in GCRS from skyfield/DE421; shadow by plain geometry."""

    def __init__(self, ref, sat_gcrs):
        self.ts, eph = ref
        self.earth, self.sun = eph["earth"], eph["sun"]
        self.sat_gcrs = sat_gcrs  # callable: (skyfield Time, Unix ns) -> (3, N) metres

    def geometry(self, ns):
        t = _times(self.ts, ns)
        r = self.sat_gcrs(t, ns).T
        s = self.earth.at(t).observe(self.sun).apparent().position.m.T
        to_sun = s - r
        cos_sep = np.sum(to_sun * -r, 1) / np.linalg.norm(to_sun, axis=1) / np.linalg.norm(r, axis=1)
        sep = np.arccos(np.clip(cos_sep, -1, 1))
        a_e = np.arcsin(EARTH_RADIUS_M / np.linalg.norm(r, axis=1))
        a_s = np.arcsin(SUN_RADIUS_M / np.linalg.norm(to_sun, axis=1))
        return sep, a_e, a_s

    def margin(self, ns, kind):
        sep, a_e, a_s = self.geometry(ns)
        return sep - (a_e + a_s) if kind == "penumbra" else sep - (a_e - a_s)

    def root(self, lo, hi, kind):
        """Bisection on each bracket (ns arrays) to 0.1 ms."""
        lo, hi = np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64)
        f_lo = self.margin(lo, kind) < 0
        while np.max(hi - lo) > 100_000:
            mid = (lo + hi) // 2
            f_mid = self.margin(mid, kind) < 0
            lo, hi = np.where(f_mid == f_lo, mid, lo), np.where(f_mid == f_lo, hi, mid)
        return (lo + hi) // 2


def _compare(pipe: RefPipeline, eclipses, min_count: int) -> tuple[float, int]:
    """Reference root near each of our contacts (bracket +-20 s); returns max |error| in s."""
    worst = 0.0
    n = 0
    for ec in eclipses:
        for name, kind in (("penumbra_entry", "penumbra"), ("umbra_entry", "umbra"),
                           ("umbra_exit", "umbra"), ("penumbra_exit", "penumbra")):
            ours = getattr(ec, name)
            if ours is None:
                continue
            lo, hi = ours - 20 * 10**9, ours + 20 * 10**9
            f = pipe.margin(np.array([lo, hi]), kind)
            assert (f[0] < 0) != (f[1] < 0), f"reference finds no {name} within 20 s of ours"
            theirs = int(pipe.root([lo], [hi], kind)[0])
            worst = max(worst, abs(ours - theirs) / 1e9)
            n += 1
    assert n >= min_count
    return worst, n


def test_sun_direction_within_0015_deg_of_de421_2000_2050(ref):
    ts, eph = ref
    ns = np.linspace(unix_ns(dt.datetime(2000, 1, 1)), unix_ns(dt.datetime(2050, 1, 1)), 3000).astype(np.int64)
    t = _times(ts, ns)
    theirs = eph["earth"].at(t).observe(eph["sun"]).apparent().frame_xyz(TEME).m.T
    ours = sun_teme_m(ns)
    cos = np.sum(ours * theirs, 1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    err_deg = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    print(f"Sun vs DE421 2000-2050: max {err_deg.max():.5f} deg")
    assert err_deg.max() <= 0.015, err_deg.max()  # the bar
    assert err_deg.max() <= 0.001, err_deg.max()  # what truncated VSOP87 gives (0.0004): keep it
    dist = np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1) - 1
    assert np.abs(dist).max() < 1e-5


def test_tle_contacts_match_de421_within_quarter_second(ref):
    orbit = Orbit.from_tle(DATA / "iss.tle")
    lines = (DATA / "iss.tle").read_text().splitlines()
    sat = skyfield_api.EarthSatellite(lines[1], lines[2], lines[0], ref[0])
    pipe = RefPipeline(ref, lambda t, ns: sat.at(t).position.m)
    eclipses = find_contacts(orbit, dt.datetime(2019, 12, 10), dt.datetime(2019, 12, 11))
    assert len(eclipses) >= 15
    worst, n = _compare(pipe, eclipses, min_count=60)
    print(f"worst contact error vs DE421: {worst:.3f} s over {n} contacts")
    assert worst <= min(TOLERANCE_S, ACHIEVED_S), f"worst contact error {worst:.3f} s"


@pytest.mark.parametrize(
    ("epoch", "ltan"),
    [(dt.datetime(2003, 6, 21), "10:30"), (dt.datetime(2024, 3, 20), "08:00"),
     (dt.datetime(2047, 12, 21), "13:30")],
)
def test_element_orbit_contacts_match_de421(ref, epoch, ltan):
    """Element orbits live in TEME too: rotate them into GCRS with skyfield's own TEME frame."""
    orbit = Orbit.from_elements(alt_km=550, inc_deg="sso", ltan=ltan, epoch=epoch)

    def sat_gcrs(t, ns):
        r_teme, _ = orbit.propagate(ns)
        rot = TEME.rotation_at(t)  # GCRS -> TEME
        return np.einsum("ji...,...j->i...", rot, r_teme)

    pipe = RefPipeline(ref, sat_gcrs)
    eclipses = find_contacts(orbit, epoch, epoch + dt.timedelta(hours=6))
    worst, n = _compare(pipe, eclipses, min_count=1)
    print(f"worst contact error vs DE421: {worst:.3f} s over {n} contacts")
    assert worst <= min(TOLERANCE_S, ACHIEVED_S), f"worst contact error {worst:.3f} s"


def test_illumination_profile_matches_de421_through_penumbra(ref):
    orbit = Orbit.from_tle(DATA / "iss.tle")
    lines = (DATA / "iss.tle").read_text().splitlines()
    sat = skyfield_api.EarthSatellite(lines[1], lines[2], lines[0], ref[0])
    pipe = RefPipeline(ref, lambda t, ns: sat.at(t).position.m)
    ec = find_contacts(orbit, dt.datetime(2019, 12, 10), dt.datetime(2019, 12, 10, 2))[0]
    ns = np.linspace(ec.penumbra_entry - 5 * 10**9, ec.umbra_entry + 5 * 10**9, 200).astype(np.int64)
    r, _ = orbit.propagate(ns)
    ours = illumination(r, sun_teme_m(ns))
    sep, a_e, a_s = pipe.geometry(ns)
    # reference fraction: uniform disk, overlap area by numerical integration over the sun's disk
    x = np.linspace(-1, 1, 801)
    xx, yy = np.meshgrid(x, x)
    disk = xx**2 + yy**2 <= 1
    theirs = []
    for s_, e_, r_ in zip(sep, a_e, a_s, strict=True):
        # point of the solar disk at offset (x, y)*r_ from its centre is hidden if within a_e of Earth centre
        d = np.hypot(s_ + xx[disk] * r_, yy[disk] * r_)
        theirs.append(1.0 - np.mean(d < e_))
    theirs = np.array(theirs)
    assert np.max(np.abs(ours - theirs)) < 0.02
