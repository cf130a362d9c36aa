"""The C plant under the address and undefined-behaviour sanitizers, and its config checks.

A small C driver (written here, compiled with gcc -fsanitize=address,undefined)
steps the plant through a tumbling, wheel-saturating, battery-draining day so
every branch runs; any sanitizer report fails the test.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

from hil_rig.plant import Plant, PlantParams

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
