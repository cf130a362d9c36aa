"""Eclipse: closed-form cylindrical-shadow durations, and properties of the illumination."""

from __future__ import annotations

import datetime as dt
import math
import pathlib

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hil_rig.clock import unix_ns
from hil_rig.constants import EARTH_RADIUS_M, SUN_RADIUS_M
from hil_rig.eclipse import beta_angle_rad, find_contacts, illumination, illumination_from_angles
from hil_rig.orbit import Orbit, sso_inclination_rad
from hil_rig.sun import sun_teme_m


def _cyl_fraction(a_m: float, beta: float, rho: float) -> float:
    """Shadow fraction of a circular orbit for a shadow boundary at angle rho from anti-Sun:
    with rho = asin(R/a) this is the textbook cylinder, (1/pi) acos(sqrt(h^2+2Rh)/(a cos beta))."""
    x = math.cos(rho) / math.cos(beta)
    return 0.0 if x >= 1 else math.acos(x) / math.pi


@pytest.mark.parametrize(("alt_km", "inc", "raan", "when"), [
    (400, 51.6, 10.0, dt.datetime(2024, 3, 20)),
    (550, 97.6, 200.0, dt.datetime(2030, 7, 1)),
    (800, 20.0, 120.0, dt.datetime(2010, 11, 5)),
])
def test_duration_vs_closed_form_cylinder(alt_km, inc, raan, when):
    """Cylinder (textbook) vs our conical shadow.

    Expected difference: with rho_s the Sun's angular radius (~0.2666 deg) the umbra
    boundary sits at rho_e - rho_s and the penumbra's outer edge at rho_e + rho_s,
    where the cylinder sits at rho_e = asin(R/a). So the umbra is shorter than the
    cylinder, and entry-to-exit longer, each by 2*rho_s over the satellite's angular
    rate (~8 s at beta = 0 for 550 km): both predicted by the same closed form with
    rho_e -+ rho_s, which is what we check to 0.5 s. The period is the synodic one
    (eclipse centre to eclipse centre), which the Sun's motion makes ~0.3 % longer.
    """
    o = Orbit.from_elements(alt_km=alt_km, inc_deg=inc, raan_deg=raan, epoch=when)
    ecl = [e for e in find_contacts(o, when, when + dt.timedelta(hours=8)) if e.umbra_s]
    assert len(ecl) >= 4
    a = EARTH_RADIUS_M + alt_km * 1e3
    rho_e = math.asin(EARTH_RADIUS_M / a)
    checked = 0
    for e0, e1 in zip(ecl, ecl[1:], strict=False):
        mid0 = (e0.penumbra_entry + e0.penumbra_exit) // 2
        mid1 = (e1.penumbra_entry + e1.penumbra_exit) // 2
        period = (mid1 - mid0) / 1e9
        r, v = o.propagate(np.array([mid1]))
        s = sun_teme_m(np.array([mid1]))
        beta = float(beta_angle_rad(r, v, s)[0])
        rho_s = math.asin(SUN_RADIUS_M / np.linalg.norm(s[0] - r[0]))
        cyl = period * _cyl_fraction(a, beta, rho_e)
        # the textbook formula, written the textbook way, agrees with the rho_e form
        h = a - EARTH_RADIUS_M
        assert cyl == pytest.approx(period / math.pi * math.acos(math.sqrt(h * h + 2 * EARTH_RADIUS_M * h) / (a * math.cos(beta))))
        umbra_expected = period * _cyl_fraction(a, beta, rho_e - rho_s)
        total_expected = period * _cyl_fraction(a, beta, rho_e + rho_s)
        assert cyl - e1.umbra_s > 5.0  # the umbra really is shorter than the cylinder
        assert e1.umbra_s == pytest.approx(umbra_expected, abs=0.5)
        assert e1.total_s == pytest.approx(total_expected, abs=0.5)
        checked += 1
    assert checked >= 3


def test_umbra_shorter_than_cylinder_by_about_8_s_at_zero_beta():
    """Worked figure for the note: 550 km, beta ~ 0."""
    a = EARTH_RADIUS_M + 550e3
    rho_e = math.asin(EARTH_RADIUS_M / a)
    rho_s = math.radians(0.2666)
    period = 2 * math.pi * math.sqrt(a**3 / 3.986004418e14)
    diff = period * (_cyl_fraction(a, 0, rho_e) - _cyl_fraction(a, 0, rho_e - rho_s))
    assert 7.5 < diff < 9.0


orbits = st.builds(
    lambda alt, inc, raan, day: Orbit.from_elements(
        alt_km=alt, inc_deg=inc, raan_deg=raan,
        epoch=dt.datetime(2000, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=day)),
    st.floats(300, 2000), st.floats(0, 180), st.floats(0, 360), st.integers(0, 365 * 50 - 1))


@settings(max_examples=25, deadline=None)
@given(orbit=orbits)
# Found by CI: the last contact's penumbra exit lies past the search window.
@example(orbit=Orbit.from_elements(
    alt_km=300.0, inc_deg=0.0, raan_deg=301.0,
    epoch=dt.datetime(2000, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=204)))
@example(orbit=Orbit.from_elements(
    alt_km=577.0, inc_deg=133.0, raan_deg=0.0,
    epoch=dt.datetime(2000, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=370)))
def test_illumination_bounded_continuous_monotone_through_contacts(orbit):
    start = orbit.epoch_ns
    end = start + int(orbit.period_s * 2.2 * 1e9)
    ecl = find_contacts(orbit, orbit.epoch, orbit.epoch + dt.timedelta(seconds=orbit.period_s * 2.2))
    for e in ecl:
        for edge, later, sign in ((e.penumbra_entry, e.umbra_entry, -1), (e.umbra_exit, e.penumbra_exit, +1)):
            if edge is None:
                continue
            stop = later if later is not None else edge + 60 * 10**9
            t = np.arange(edge - 2 * 10**9, min(stop + 2 * 10**9, end), 10**7, dtype=np.int64)
            r, _ = orbit.propagate(t)
            f = illumination(r, sun_teme_m(t))
            assert np.all((f >= 0) & (f <= 1))
            d = np.diff(f)
            # monotone to within the lens-area formula's rounding where the discs just touch
            # (f ~ 1e-6: a 1.06e-6 dip was found at alt 577 km, inc 133, day 370)
            assert np.all(sign * d >= -2e-6), "not monotone through the contact"
            assert np.max(np.abs(d)) < 0.02, "jump in illumination"
            if sign < 0:
                assert f[0] == 1.0, "not in full sun 2 s before penumbra entry"
            elif later is not None and stop + 2 * 10**9 <= end:
                # Only when the search window holds the whole exit: a contact cut
                # off by the window's end has no penumbra exit to check against.
                assert f[-1] == 1.0, "not in full sun 2 s after penumbra exit"
    # random instants: always within [0, 1]
    t = np.linspace(start, end, 500).astype(np.int64)
    r, _ = orbit.propagate(t)
    f = illumination(r, sun_teme_m(t))
    assert np.all((f >= 0) & (f <= 1)) and np.all(np.isfinite(f))


@settings(max_examples=200, deadline=None)
@given(theta=st.floats(0, math.pi), rho_e=st.floats(0.1, 1.5), rho_s=st.floats(1e-3, 0.05))
def test_fraction_bounded_and_decreasing_as_disks_overlap(theta, rho_e, rho_s):
    f = float(illumination_from_angles(np.array([theta]), np.array([rho_e]), np.array([rho_s]))[0])
    g = float(illumination_from_angles(np.array([theta * 0.999]), np.array([rho_e]), np.array([rho_s]))[0])
    assert 0.0 <= f <= 1.0 and 0.0 <= g <= 1.0
    assert g <= f + 1e-12


def test_contacts_are_bracketed_to_10_ms():
    """Each reported contact has the margin change sign within +-5 ms."""
    when = dt.datetime(2024, 3, 20, tzinfo=dt.UTC)
    o = Orbit.from_elements(alt_km=550, inc_deg="sso", ltan="10:30", epoch=when)
    for e in find_contacts(o, when, when + dt.timedelta(hours=3)):
        for t, before, after in ((e.penumbra_entry, 1.0, None), (e.umbra_entry, None, 0.0),
                                 (e.umbra_exit, 0.0, None), (e.penumbra_exit, None, 1.0)):
            tt = np.array([t - 5_000_000, t + 5_000_000], dtype=np.int64)
            r, _ = o.propagate(tt)
            f = illumination(r, sun_teme_m(tt))
            if before is not None:
                assert f[0] == before and f[1] != before
            if after is not None:
                assert f[1] == after and f[0] != after


def test_window_edges_give_null_contacts():
    when = dt.datetime(2019, 12, 10, 0, 45, tzinfo=dt.UTC)  # inside an ISS eclipse
    o = Orbit.from_tle(pathlib.Path(__file__).parent / "data" / "iss.tle")
    ecl = find_contacts(o, when, when + dt.timedelta(hours=2))
    assert ecl[0].penumbra_entry is None and ecl[0].umbra_entry is None
    assert ecl[0].umbra_exit is not None and ecl[0].to_json()["umbra_s"] is None
    assert unix_ns(when) < ecl[0].umbra_exit


def _orbit_with_beta(alt_km: float, beta_deg: float, when: dt.datetime) -> Orbit:
    """A sun-synchronous orbit (its plane follows the Sun, so beta barely drifts) whose
    RAAN puts the Sun at ``beta_deg`` from its plane at ``when``."""
    s = sun_teme_m(unix_ns(when))
    s = s / np.linalg.norm(s)
    inc = sso_inclination_rad(alt_km)

    def beta(raan: float) -> float:
        h = np.array([math.sin(inc) * math.sin(raan), -math.sin(inc) * math.cos(raan), math.cos(inc)])
        return math.degrees(math.asin(float(h @ s)))

    grid = np.linspace(0, 2 * math.pi, 721)
    vals = np.array([beta(x) for x in grid]) - beta_deg
    i = int(np.nonzero(np.sign(vals[:-1]) != np.sign(vals[1:]))[0][0])
    lo, hi = grid[i], grid[i + 1]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if np.sign(beta(mid) - beta_deg) == np.sign(vals[i]):
            lo = mid
        else:
            hi = mid
    return Orbit.from_elements(alt_km=alt_km, inc_deg=math.degrees(inc), raan_deg=math.degrees(lo), epoch=when)


@pytest.mark.parametrize("depth_deg", [0.25, 0.0002])
def test_penumbral_only_passes_found_even_when_shorter_than_the_scan_step(depth_deg):
    """Beta near the limit: the Sun's disk is only partly covered, no umbra. With the
    deepest point just 0.0002 deg inside the penumbra the pass lasts seconds, less than
    the 30 s scan step: the minimum search must find it wherever the scan grid falls
    (window starts shifted 0..27 s). A dense brute-force scan (0.2 s) is the reference."""
    when = dt.datetime(2024, 6, 20, 20, 51, tzinfo=dt.UTC)  # solstice: the Sun's declination stands still
    a = EARTH_RADIUS_M + 550e3
    rho_e = math.degrees(math.asin(EARTH_RADIUS_M / a))
    rho_s = math.degrees(math.asin(SUN_RADIUS_M / np.linalg.norm(sun_teme_m(unix_ns(when)))))
    # the least angle over an orbit between the Sun and the nadir is |beta|: aim it
    # depth_deg inside the penumbra's outer edge rho_e + rho_s (the umbra needs < rho_e - rho_s)
    orbit = _orbit_with_beta(550, -(rho_e + rho_s - depth_deg), when)  # (the SSO reaches -67 deg, not +67)
    end = when + dt.timedelta(seconds=orbit.period_s * 1.5)
    t = np.arange(unix_ns(when), unix_ns(end), 200_000_000, dtype=np.int64)
    r, _ = orbit.propagate(t)
    f = illumination(r, sun_teme_m(t))
    assert f.min() > 0.0, "reference sees an umbra: geometry not penumbral-only"
    runs = np.nonzero(np.diff((f < 1.0).astype(int)) == 1)[0]
    assert len(runs) >= 1
    for shift_s in range(0, 30, 3):
        start = when - dt.timedelta(seconds=shift_s)
        ecl = find_contacts(orbit, start, end)
        assert len(ecl) == len(runs), f"window shifted {shift_s} s: found {len(ecl)}, reference {len(runs)}"
        for e, k in zip(ecl, runs, strict=True):
            assert e.umbra_entry is None and e.umbra_exit is None
            assert e.penumbra_entry is not None and e.penumbra_exit is not None
            assert abs(e.penumbra_entry - t[k + 1]) <= 200_000_000
            assert e.to_json()["umbra_s"] is None
            assert e.to_json()["penumbra_s"] == pytest.approx(e.total_s, abs=1e-3)
            if depth_deg < 0.01:
                assert e.total_s < 30.0  # shorter than the scan step
