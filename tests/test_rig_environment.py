"""Environment: batch sampling, dipole field, heat loads, dense-Sun interpolation."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from hil_rig.clock import unix_ns
from hil_rig.constants import EARTH_IR_W_M2, EARTH_RADIUS_M, SOLAR_CONSTANT_W_M2
from hil_rig.environment import Environment, dipole_field_teme_t, sun_teme_dense_m
from hil_rig.orbit import Orbit
from hil_rig.sun import sun_teme_m

EPOCH = dt.datetime(2024, 3, 20, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def env():
    return Environment(Orbit.from_elements(alt_km=550, inc_deg="sso", ltan="10:30", epoch=EPOCH), EPOCH)


def test_sample_shapes_ranges_and_row(env):
    t = np.arange(0, 6000 * 10**9, 10**9, dtype=np.int64)
    s = env.sample(t)
    assert s.r_teme_m.shape == (6000, 3) and s.b_teme_t.shape == (6000, 3)
    assert np.all((s.illumination >= 0) & (s.illumination <= 1))
    assert (s.illumination == 0).any() and (s.illumination == 1).any()
    assert np.allclose(np.linalg.norm(s.sun_unit_teme, axis=1), 1)
    assert np.all(s.solar_flux_w_m2 <= SOLAR_CONSTANT_W_M2 * 1.04)
    assert np.all(s.solar_flux_w_m2[s.illumination == 0] == 0)
    view = (EARTH_RADIUS_M / (EARTH_RADIUS_M + 550e3)) ** 2
    assert np.allclose(s.earth_ir_flux_w_m2, EARTH_IR_W_M2 * view, rtol=1e-9)
    assert np.all(s.albedo_flux_w_m2 >= 0) and np.all(s.albedo_flux_w_m2[s.illumination == 0] < 100)
    row = s.row(10)
    assert row.t_ns == 10 * 10**9 and row.r_teme_m == s.r_teme_m[10].tolist()
    sub = s.slice(100, 110)
    assert len(sub) == 10 and np.shares_memory(sub.r_teme_m, s.r_teme_m)


def test_dipole_field_strength_and_poles():
    t = np.full(2, unix_ns(EPOCH), dtype=np.int64)
    r = np.array([[0, 0, EARTH_RADIUS_M], [0, 0, -EARTH_RADIUS_M]], dtype=float)
    b = dipole_field_teme_t(r, t)
    # surface field near the poles ~ 2 x B0 ~ 60 uT: into the ground in the north
    assert 50e-6 < np.linalg.norm(b[0]) < 65e-6 and b[0, 2] < 0 and b[1, 2] < 0
    eq = dipole_field_teme_t(np.array([[EARTH_RADIUS_M, 0, 0]]), t[:1])
    assert 25e-6 < np.linalg.norm(eq) < 35e-6 and eq[0, 2] > 0  # points north at the equator


def test_dense_sun_matches_exact_sun():
    t = unix_ns(EPOCH) + np.arange(0, 86400 * 10**9, 10**8, dtype=np.int64)[::7]
    a, b = sun_teme_dense_m(t), sun_teme_m(t)
    ang = np.linalg.norm(np.cross(a, b), axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert ang.max() < 1e-10


def test_environment_contacts_in_simulation_ns(env):
    ecl = env.find_contacts(0, 4 * 3600 * 10**9)
    assert len(ecl) >= 2
    e = ecl[0]
    assert 0 < e.penumbra_entry < e.umbra_entry < e.umbra_exit < e.penumbra_exit < 4 * 3600 * 10**9
    s = env.sample(np.array([e.umbra_entry + 10**9, e.penumbra_entry - 10**9]))
    assert s.illumination[0] == 0.0 and s.illumination[1] == 1.0
    assert e.to_json()["umbra_entry"].startswith("2024-03-20T")
