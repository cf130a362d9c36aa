"""The C plant under the address and undefined-behaviour sanitizers, and its config checks.

A small C driver (written here, compiled with gcc -fsanitize=address,undefined)
steps the plant through a tumbling, wheel-saturating, battery-draining day so
every branch runs; any sanitizer report fails the test.
"""

from __future__ import annotations

import math
import pathlib
import shutil
import subprocess

import pytest

from hil_rig.plant import NODES, ActuatorInputs, Plant, PlantFaults, PlantParams, Readings

ROOT = pathlib.Path(__file__).resolve().parents[1]
PLANT = ROOT / "native" / "plant"

DRIVER = r"""
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "ohil_plant.h"

int main(void)
{
    ohil_plant_config_t c;
    ohil_plant_state_t s;
    ohil_plant_cmd_t cmd;
    double env[OHIL_PLANT_ENV_STRIDE * 100];
    double pw[100];
    int i, k;
    memset(&c, 0, sizeof c);
    memset(&s, 0, sizeof s);
    memset(&cmd, 0, sizeof cmd);
    c.inertia_kg_m2[0] = 0.9; c.inertia_kg_m2[1] = 1.0; c.inertia_kg_m2[2] = 0.6;
    c.wheel_inertia_kg_m2 = 2e-4; c.wheel_max_torque_nm = 4e-3; c.wheel_max_speed_rad_s = 650;
    c.wheel_viscous_nm_s = 2e-7; c.wheel_coulomb_nm = 1e-5; c.wheel_power_w = 0.6;
    c.mtq_max_dipole_am2 = 0.3; c.mtq_power_w = 0.5; c.gravity_gradient = 1;
    c.n_panels = 1; c.panels[0].normal[2] = -1; c.panels[0].area_m2 = 0.3;
    c.solar_efficiency = 0.29; c.solar_temp_coeff_per_k = -0.0035; c.solar_ref_temp_k = 301;
    c.n_ocv = 3; c.ocv_soc[0] = 0; c.ocv_soc[1] = 0.5; c.ocv_soc[2] = 1;
    c.ocv_v[0] = 12; c.ocv_v[1] = 14.8; c.ocv_v[2] = 16.8;
    c.battery_r_ohm = 0.08; c.charge_efficiency = 0.96; c.max_charge_w = 60; c.capacity_c = 2000;
    c.bus_base_w = 6;
    for (k = 0; k < OHIL_PLANT_NODES; ++k) c.heat_capacity_j_k[k] = 500;
    c.n_links = 1; c.links[0].a = 0; c.links[0].b = 2; c.links[0].g_w_k = 1.5;
    c.n_surfaces = 1; c.surfaces[0].node = 2; c.surfaces[0].normal[1] = 1; c.surfaces[0].area_m2 = 0.1;
    c.surfaces[0].absorptivity = 0.2; c.surfaces[0].emissivity = 0.85;
    c.mu_m3_s2 = 3.986004418e14; c.sigma_w_m2_k4 = 5.670374e-8; c.space_temp_k = 2.7;
    c.solar_constant_w_m2 = 1361.0;
    if (ohil_plant_check(&c) != OHIL_PLANT_OK) { printf("config rejected\n"); return 1; }
    c.n_ocv = 99;
    if (ohil_plant_check(&c) != OHIL_PLANT_E_OCV) { printf("bad OCV accepted\n"); return 1; }
    c.n_ocv = 3;
    s.q_bi[0] = 1; s.pi_body_nms[0] = 0.05; s.pi_body_nms[2] = -0.03; s.charge_c = 1000;
    for (k = 0; k < OHIL_PLANT_NODES; ++k) s.temps_k[k] = 290;
    cmd.hot_case = 1; cmd.capacity_ratio = 1;
    for (i = 0; i < 100; ++i) {
        double *e = env + i * OHIL_PLANT_ENV_STRIDE;
        e[0] = 7e6 * cos(i * 0.06); e[1] = 7e6 * sin(i * 0.06); e[2] = 0;
        e[3] = 0; e[4] = 0; e[5] = -1; e[6] = 1e-5; e[7] = -2e-5; e[8] = 3e-5;
        e[9] = (i % 60) < 35 ? 1361 : 0; e[10] = 100; e[11] = 200;
        pw[i] = (i % 7) * 10.0;
    }
    for (i = 0; i < 2000; ++i) {
        cmd.wheel_torque_nm[0] = (i % 500) < 400 ? 1.0 : 0.0;
        cmd.wheel_torque_nm[1] = -1.0;
        cmd.mtq_dipole_am2[2] = (i % 2) ? 5.0 : -5.0;
        cmd.wheel_stuck[2] = (i / 100) % 2;
        ohil_plant_run(&c, &s, &cmd, env, pw, 100, 0.1);
    }
    {
        ohil_plant_sensor_config_t sc;
        double out[OHIL_PLANT_READINGS], n[7] = {0.3, -1.2, 2.5, -0.4, 0.9, -3.0, 1.1}, fb[3] = {1e-3, 0, 0};
        memset(&sc, 0, sizeof sc);
        sc.gyro_noise_rad_s = 1e-4; sc.mag_noise_t = 1e-7; sc.css_full_scale_a = 1e-3;
        sc.css_noise_frac = 0.5; sc.temp_noise_k = 0.1; sc.power_noise_frac = 0.01;
        for (i = 0; i < 100; ++i) {
            ohil_plant_sense(&c, &s, &sc, (i % 3) ? env + i * OHIL_PLANT_ENV_STRIDE : NULL,
                             (i % 60) < 35 ? 1.0 : 0.0, fb, fb, i % 5 == 0, n, n, n, n, out);
            for (k = 0; k < OHIL_PLANT_READINGS; ++k)
                if (!isfinite(out[k])) { printf("non-finite reading\n"); return 1; }
        }
    }
    for (k = 0; k < 4; ++k) if (!isfinite(s.q_bi[k])) { printf("non-finite\n"); return 1; }
    printf("ok %.6f %.3f\n", s.charge_c, s.temps_k[0]);
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
def test_plant_under_asan_ubsan(tmp_path):
    src = tmp_path / "driver.c"
    src.write_text(DRIVER)
    exe = tmp_path / "driver"
    flags = ["-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
             "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
    build = subprocess.run(["gcc", *flags, f"-I{PLANT}", str(src), str(PLANT / "plant.c"), "-lm", "-o", str(exe)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300,
                         env={"ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("ok ") and "runtime error" not in run.stderr


def test_c_plant_has_no_mutable_statics():
    text = (PLANT / "plant.c").read_text()
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("static") and "(" not in s:
            pytest.fail(f"file-scope static data in plant.c: {s}")


def test_bad_parameters_rejected_with_field_name():
    with pytest.raises(ValueError, match="inertia_kg_m2"):
        Plant(PlantParams(inertia_kg_m2=(1.0, 0.0, 1.0)))
    with pytest.raises(ValueError, match="battery_\\* parameters"):
        Plant(PlantParams(battery_r_ohm=0.0))
    with pytest.raises(ValueError, match="surfaces: unknown node 'wing'"):
        from hil_rig.plant import Surface
        Plant(PlantParams(surfaces=(Surface("wing", (1.0, 0.0, 0.0), 1.0, 0.5, 0.5),)))


def _noise(plant: Plant, which: str) -> list[float]:
    blk, _ptr, i = plant._noise_next(which)
    return blk[i].tolist()


def _reference_sensors(plant: Plant, f) -> Readings:  # noqa: ANN001
    """The sensor model as it was in Python (hil_rig/plant.py before the C model),
    kept verbatim here as the reference the C model must match bit for bit."""
    p, st = plant.p, plant._st
    jw, inertia = p.wheel_inertia_kg_m2, p.inertia_kg_m2
    pi, ws = st.pi_body_nms, st.wheel_speed_rad_s
    bias, fb = plant.gyro_bias_rad_s.tolist(), f.gyro_bias_rad_s
    sg = p.gyro_noise_rad_s
    ng = _noise(plant, "gyro")
    gyro = ((pi[0] - jw * ws[0]) / inertia[0] + bias[0] + fb[0] + sg * ng[0],
            (pi[1] - jw * ws[1]) / inertia[1] + bias[1] + fb[1] + sg * ng[1],
            (pi[2] - jw * ws[2]) / inertia[2] + bias[2] + fb[2] + sg * ng[2])
    env, k = plant._env_src
    row = plant._rows_cache[1][k]
    b_i, s_i, illum, flux = row[6:9].tolist(), row[3:6].tolist(), float(env.illumination[k]), float(row[9])
    w, x, y, z = st.q_bi
    r00, r01, r02 = 1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)
    r10, r11, r12 = 2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)
    r20, r21, r22 = 2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)
    b_b = (r00 * b_i[0] + r01 * b_i[1] + r02 * b_i[2], r10 * b_i[0] + r11 * b_i[1] + r12 * b_i[2],
           r20 * b_i[0] + r21 * b_i[1] + r22 * b_i[2])
    s_b = (r00 * s_i[0] + r01 * s_i[1] + r02 * s_i[2], r10 * s_i[0] + r11 * s_i[1] + r12 * s_i[2],
           r20 * s_i[0] + r21 * s_i[1] + r22 * s_i[2])
    flux_ratio = flux / max(illum, 1e-12) / 1361.0 if illum > 0 else 0.0
    mb, sm = f.mag_bias_t, p.mag_noise_t
    nm = _noise(plant, "mag")
    mag = (b_b[0] + mb[0] + sm * nm[0], b_b[1] + mb[1] + sm * nm[1], b_b[2] + mb[2] + sm * nm[2])
    nc = _noise(plant, "css")
    if f.css_dead:
        css = (0.0,) * 6
    else:
        scale, sc, out = p.css_full_scale_a, p.css_noise_frac, []
        for c, n in zip((s_b[0], -s_b[0], s_b[1], -s_b[1], s_b[2], -s_b[2]), nc, strict=True):
            if c <= 0.0 or illum <= 0.0:
                out.append(0.0)
            else:
                g = 1.0 + sc * n
                out.append(scale * c * illum * flux_ratio * g if g > 0.0 else 0.0)
        css = tuple(out)
    vx, vy, vz = css[0] - css[1], css[2] - css[3], css[4] - css[5]
    nv = math.sqrt(vx * vx + vy * vy + vz * vz)
    sun_valid = nv > 0.1 * p.css_full_scale_a
    sun_body = (vx / nv, vy / nv, vz / nv) if sun_valid else (0.0, 0.0, 0.0)
    meas = _noise(plant, "meas")
    tn, pn = p.temp_noise_k, p.power_noise_frac
    temps = st.temps_k
    return Readings(
        gyro_rad_s=gyro, gyro_valid=True, mag_body_t=mag, mag_valid=True,
        css_a=css, sun_body=sun_body, sun_valid=sun_valid,
        wheel_speed_rad_s=(ws[0], ws[1], ws[2]),
        battery_v=st.battery_v * (1 + pn * meas[4]),
        battery_a=st.battery_a * (1 + pn * meas[5]),
        solar_power_w=st.solar_w * (1 + pn * meas[6]),
        temps_k={NODES[i]: temps[i] + tn * meas[i] for i in range(4)},
    )


def test_c_sensor_model_reads_exactly_as_the_python_model_did() -> None:
    """Two plants, same seed, same steps through sunlight and eclipse while tumbling
    and spinning wheels: the C model's readings equal the Python reference's, bit for
    bit (so a seed still gives the readings it gave), also with biases and dead sun
    sensors."""
    import datetime as dt

    import numpy as np

    from hil_rig.environment import Environment
    from hil_rig.orbit import Orbit

    orbit = Orbit.from_elements(alt_km=550, inc_deg=97.6, raan_deg=40.0,
                                epoch=dt.datetime(2026, 3, 20, tzinfo=dt.UTC))
    env = Environment(orbit, orbit.epoch).sample(np.arange(0, 6000 * 10**9, 10**9, dtype=np.int64))
    assert 0 < float(np.mean(env.illumination)) < 1  # sunlight and eclipse both
    params = PlantParams(omega0_rad_s=(0.02, -0.05, 0.03))
    a, b = Plant(params, seed=5), Plant(params, seed=5)
    faults = [PlantFaults(), PlantFaults(gyro_bias_rad_s=(1e-3, -2e-3, 0.0), mag_bias_t=(1e-6, 0.0, -2e-6)),
              PlantFaults(css_dead=True)]
    checked = 0
    for k in range(6000):
        act = ActuatorInputs(wheel_torque_nm=(1e-3 * math.sin(k / 50), -5e-4, 2e-4), mtq_dipole_am2=(0.1, 0.0, -0.1))
        for pl in (a, b):
            pl.step_row(env, k, 10**9, act, 12.0)
        f = faults[(k // 700) % 3]
        ra, rb = a.sensors(f), _reference_sensors(b, f)
        assert ra == rb, f"step {k}: {ra} != {rb}"
        checked += ra.sun_valid
    assert 1000 < checked < 5000  # the sun was seen, and not always


def test_c_port_runs_the_frames_of_the_python_path_bit_for_bit() -> None:
    """The plant's C sensor/actuator port driven by the flight core's
    ``Adcs.run_port`` runs exactly the frames of the Python path (step_row,
    sensors, Adcs.step, apply the commands): same plant state, same ADCS outputs,
    same noise streams, over 3,000 frames in batches of 1-9 (crossing the noise
    blocks), through sunlight and eclipse, with a gyro bias and dead sun sensors."""
    import datetime as dt

    import numpy as np
    from native._plant import ffi, lib  # the plant's own module (the flight core's is core_ffi)

    from hil_rig.environment import Environment
    from hil_rig.orbit import Orbit
    from native import ffi as core_ffi
    from native import lib as core_lib
    from native.core import Adcs

    assert lib.OHIL_PLANT_PORT_SENSE_N == core_lib.OHIL_ADCS_SENSE_N
    assert lib.OHIL_PLANT_PORT_ACT_N == core_lib.OHIL_ADCS_ACT_N
    orbit = Orbit.from_elements(alt_km=550, inc_deg=97.6, raan_deg=40.0,
                                epoch=dt.datetime(2026, 3, 20, tzinfo=dt.UTC))
    n_frames = 3000
    env = Environment(orbit, orbit.epoch).sample(np.arange(0, n_frames * 10**9, 10**9, dtype=np.int64))
    params = PlantParams(omega0_rad_s=(0.02, -0.05, 0.03))
    plants = {"py": Plant(params, seed=9), "c": Plant(params, seed=9)}
    adcs = {k: Adcs() for k in plants}
    acts = dict.fromkeys(plants, ActuatorInputs(heater_w=10.0))
    faults = [PlantFaults(), PlantFaults(gyro_bias_rad_s=(1e-3, -2e-3, 0.0)), PlantFaults(css_dead=True)]
    rng = np.random.default_rng(3)
    k = 0
    while k < n_frames:
        f = faults[(k // 400) % 3]
        n = min(int(rng.integers(1, 10)), n_frames - k)
        for name in plants:
            inp = adcs[name].inputs
            inp["dt_s"], inp["mode"] = 1.0, 1
            inp["sun_eci"], inp["b_eci_t"] = env.sun_unit_teme[k], env.b_teme_t[k]
        # the Python path, frame by frame
        pl, ad = plants["py"], adcs["py"]
        for j in range(n):
            pl.step_row(env, k + j, 10**9, acts["py"], 12.0, f)
            r = pl.sensors(f)
            out = ad.step({"rate_rad_s": r.gyro_rad_s, "b_body_t": r.mag_body_t, "sun_body": r.sun_body,
                           "sun_valid": int(r.sun_valid), "wheel_speed_rad_s": r.wheel_speed_rad_s})
            acts["py"] = ActuatorInputs(wheel_torque_nm=tuple(out["wheel_torque_cmd_nm"].tolist()),
                                   mtq_dipole_am2=tuple(out["dipole_cmd_am2"].tolist()), heater_w=10.0)
        # the port, in one call
        port = plants["c"].port(env, k, n, 10**9, acts["c"], 12.0, f)
        assert port is not None
        ran = port.max_frames
        adcs["c"].run_port(ran, port.sense_fn, port.actuate_fn, port.ctx)
        acts["c"] = plants["c"].port_done(port)
        if ran < n:  # the noise block ran out: the rest of the batch in a second call
            port = plants["c"].port(env, k + ran, n - ran, 10**9, acts["c"], 12.0, f)
            adcs["c"].run_port(port.max_frames, port.sense_fn, port.actuate_fn, port.ctx)
            acts["c"] = plants["c"].port_done(port)
            assert port.max_frames == n - ran
        assert plants["c"].port_readings() == r, f"frame {k + n}"  # what sensors() read there
        assert acts["c"] == acts["py"], f"frame {k + n}"
        a, b = (bytes(ffi.buffer(p._st)) for p in plants.values())
        assert a == b, f"plant state differs after frame {k + n}"
        assert bytes(core_ffi.buffer(adcs["py"]._state)) == bytes(core_ffi.buffer(adcs["c"]._state))
        assert plants["c"].t_ns == plants["py"].t_ns
        k += n
    assert plants["c"].sensors() == plants["py"].sensors()  # the noise streams are where they should be


def test_c_port_is_refused_with_a_stuck_or_dead_gyro_or_magnetometer() -> None:
    import datetime as dt

    import numpy as np

    from hil_rig.environment import Environment
    from hil_rig.orbit import Orbit

    orbit = Orbit.from_elements(alt_km=550, inc_deg=97.6, raan_deg=40.0,
                                epoch=dt.datetime(2026, 3, 20, tzinfo=dt.UTC))
    env = Environment(orbit, orbit.epoch).sample(np.arange(0, 20 * 10**9, 10**9, dtype=np.int64))
    pl = Plant(PlantParams(), seed=1)
    for f in (PlantFaults(gyro_stuck=True), PlantFaults(gyro_dead=True), PlantFaults(mag_stuck=True), PlantFaults(mag_dead=True)):
        assert pl.port(env, 0, 5, 10**9, ActuatorInputs(), 0.0, f) is None
    assert pl.port(env, 18, 5, 10**9, ActuatorInputs(), 0.0, PlantFaults()).max_frames == 2  # the rows left
