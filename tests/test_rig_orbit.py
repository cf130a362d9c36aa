"""Orbit: TLE parsing and checksums, SGP4 errors, element orbits with J2, SSO solve."""

from __future__ import annotations

import datetime as dt
import math
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil_rig.clock import unix_ns
from hil_rig.constants import EARTH_MU_M3_S2, EARTH_RADIUS_M
from hil_rig.orbit import (
    Orbit,
    OrbitError,
    max_sso_altitude_km,
    parse_tle,
    sso_inclination_rad,
    tle_checksum,
)
from hil_rig.sun import sun_teme_m

DATA = pathlib.Path(__file__).parent / "data"
L1 = "1 25544U 98067A   19343.69339541  .00001764  00000-0  38792-4 0  9991"
L2 = "2 25544  51.6439 211.2001 0007417  17.6667  85.6398 15.50103472202482"


def _fix(line: str) -> str:
    return line[:68] + str(tle_checksum(line))


def test_checksum_of_published_lines():
    assert tle_checksum(L1) == 1 and tle_checksum(L2) == 2


def test_two_and_three_line_files_give_same_orbit():
    a = Orbit.from_tle(DATA / "iss.tle")
    b = Orbit.from_tle(DATA / "iss_2line.tle")
    assert a.name == "ISS (ZARYA)"
    t = a.epoch_ns + np.arange(0, 3600, 60, dtype=np.int64) * 10**9
    assert np.array_equal(a.propagate(t)[0], b.propagate(t)[0])
    assert a.period_s == pytest.approx(86400 / 15.50103472, rel=1e-3)


def test_tle_text_accepted():
    o = Orbit.from_tle(f"{L1}\n{L2}\n")
    r, v = o.propagate(o.epoch_ns)
    assert 6.6e6 < np.linalg.norm(r) < 6.9e6 and 7.5e3 < np.linalg.norm(v) < 7.8e3


def test_bad_checksum_names_line_and_column():
    bad = L2[:68] + "7"
    with pytest.raises(OrbitError, match=r"line 3, column 69: bad checksum 7"):
        parse_tle(f"ISS\n{L1}\n{bad}\n", "f.tle")


def test_malformed_field_names_line_and_column():
    bad = _fix(L2[:8] + " 51.6x39" + L2[16:])
    with pytest.raises(OrbitError, match=r"line 2, column 10: inclination \(columns 9-16\)"):
        parse_tle(f"{L1}\n{bad}\n", "f.tle")


def test_short_line_and_wrong_line_number():
    with pytest.raises(OrbitError, match=r"line 2, column 61: TLE line is 60 characters"):
        parse_tle(f"{L1}\n{L2[:60]}\n")
    with pytest.raises(OrbitError, match=r"line 1, column 1: expected TLE line 1"):
        parse_tle(f"{L2}\n{L1}\n")
    with pytest.raises(OrbitError, match=r"2 or 3 non-empty lines, found 1"):
        parse_tle(L1)


def test_satellite_numbers_must_match():
    other = _fix(L2[:2] + "25545" + L2[7:])
    with pytest.raises(OrbitError, match=r"line 2, column 3: satellite number"):
        parse_tle(f"{L1}\n{other}")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(OrbitError, match="not found"):
        Orbit.from_tle(tmp_path / "nope.tle")


@settings(max_examples=60, deadline=None)
@given(col=st.integers(min_value=0, max_value=67), digit=st.sampled_from("0123456789"))
def test_any_single_digit_change_is_caught(col, digit):
    """A changed digit in columns 1-68 makes the checksum fail, unless it is a no-op."""
    if not L2[col].isdigit() or L2[col] == digit:
        return
    bad = L2[:col] + digit + L2[col + 1:]
    with pytest.raises(OrbitError, match=r"line 2, column"):
        parse_tle(f"{L1}\n{bad}")


def test_decayed_orbit_is_a_clear_error_not_nan():
    l1 = _fix(L1[:53] + " 38792-1" + L1[61:])  # huge drag
    o = Orbit.from_tle_lines(l1, L2)
    t = o.epoch_ns + np.arange(0, 60 * 86400, 600, dtype=np.int64) * 10**9
    with pytest.raises(OrbitError, match=r"decayed"):
        o.propagate(t)


def test_elements_circular_radius_speed_and_period():
    epoch = dt.datetime(2024, 3, 20, tzinfo=dt.UTC)
    o = Orbit.from_elements(alt_km=550, inc_deg=53.0, raan_deg=40.0, epoch=epoch)
    t = o.epoch_ns + np.arange(0, 6000, 10, dtype=np.int64) * 10**9
    r, v = o.propagate(t)
    a = EARTH_RADIUS_M + 550e3
    assert np.allclose(np.linalg.norm(r, axis=1), a, rtol=1e-12)
    assert np.allclose(np.linalg.norm(v, axis=1), math.sqrt(EARTH_MU_M3_S2 / a), rtol=2e-3)
    # velocity is the derivative of position (central differences)
    dv = (r[2:] - r[:-2]) / 20.0
    assert np.max(np.linalg.norm(dv - v[1:-1], axis=1)) < 1.0  # m/s, finite-difference error
    # mean inclination: the highest latitude reached is the inclination
    assert math.degrees(math.asin(np.max(r[:, 2]) / a)) == pytest.approx(53.0, abs=2e-3)


def test_sso_inclination_and_precession_follows_the_sun():
    epoch = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    inc = math.degrees(sso_inclination_rad(700))
    assert 98.0 < inc < 98.4  # published: ~98.2 deg at 700 km
    o = Orbit.from_elements(alt_km=700, inc_deg="sso", ltan="10:30", epoch=epoch)
    # the node's local time stays put over 90 days: angle between node and Sun RA constant
    def node_minus_sun(t_ns):
        r, v = o.propagate(np.array([t_ns]))
        h = np.cross(r[0], v[0])
        node = math.atan2(h[0], -h[1])
        s = sun_teme_m(t_ns).ravel()
        return (math.degrees(node - math.atan2(s[1], s[0])) + 540) % 360 - 180
    d0 = node_minus_sun(o.epoch_ns)
    d90 = node_minus_sun(o.epoch_ns + 90 * 86400 * 10**9)
    # the true Sun wanders against the mean Sun by the equation of time (< 4.5 deg)
    assert abs(d90 - d0) < 4.5
    assert abs(d0 - (-22.5)) < 4.5  # 10:30 LTAN = node 22.5 deg west of the mean Sun


def test_impossible_sso_rejected_with_reason():
    with pytest.raises(OrbitError, match=r"no sun-synchronous orbit at 7000 km.*only below about 59\d\d km"):
        Orbit.from_elements(alt_km=7000, inc_deg="sso", ltan="10:30", epoch=dt.datetime(2024, 1, 1))
    assert 5900 < max_sso_altitude_km() < 6100


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"alt_km": 90, "inc_deg": 50, "raan_deg": 0}, "at least 120 km"),
     ({"alt_km": 500, "inc_deg": 190, "raan_deg": 0}, r"inclination 190"),
     ({"alt_km": 500, "inc_deg": "polar", "raan_deg": 0}, r"'sso'"),
     ({"alt_km": 500, "inc_deg": 50}, "exactly one of ltan"),
     ({"alt_km": 500, "inc_deg": 50, "ltan": "25:00"}, r"LTAN '25:00'"),
     ({"alt_km": float("nan"), "inc_deg": 50, "raan_deg": 0}, "altitude nan")],
)
def test_bad_elements_rejected(kwargs, match):
    with pytest.raises(OrbitError, match=match):
        Orbit.from_elements(epoch=dt.datetime(2024, 1, 1), **kwargs)


def test_epoch_round_trip():
    o = Orbit.from_tle(DATA / "iss.tle")
    assert abs(o.epoch_ns - unix_ns(dt.datetime(2019, 12, 9, 16, 38, 29, 363441))) < 2000


def test_three_line_with_zero_prefix_and_crlf(tmp_path):
    f = tmp_path / "iss.tle"
    f.write_bytes(f"0 ISS (ZARYA)\r\n{L1}\r\n{L2}\r\n".encode())
    o = Orbit.from_tle(f)
    assert o.name == "ISS (ZARYA)"
    assert o.propagate(o.epoch_ns)[0].shape == (1, 3)
