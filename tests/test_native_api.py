"""The Python API of the flight core: construction, config errors, views, batch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import native
from native import lib


def test_enums_match_the_c_constants() -> None:
    assert native.AdcsMode.DETUMBLE == lib.OHIL_ADCS_MODE_DETUMBLE
    assert native.AdcsMode.SUN_POINT == lib.OHIL_ADCS_MODE_SUN_POINT
    assert native.AdcsMode.NADIR_POINT == lib.OHIL_ADCS_MODE_NADIR_POINT
    assert native.PowerMode.NOMINAL == lib.OHIL_EPS_MODE_NOMINAL
    assert native.PowerMode.LOW == lib.OHIL_EPS_MODE_LOW
    assert native.PowerMode.CRITICAL == lib.OHIL_EPS_MODE_CRITICAL
    for flag in native.AdcsFault:
        assert flag.value == getattr(lib, f"OHIL_ADCS_F_{flag.name}")
    for flag in native.EpsFault:
        assert flag.value == getattr(lib, f"OHIL_EPS_F_{flag.name}")
    for name in ("PAYLOAD", "DT", "TRIP", "ZONE0"):
        assert native.ThermalFault[name].value == getattr(lib, f"OHIL_THERM_F_{name}")


def test_dtypes_match_the_c_struct_sizes() -> None:
    for dtype, cname in [
        (native.ADCS_IN_DTYPE, "ohil_adcs_in"),
        (native.ADCS_OUT_DTYPE, "ohil_adcs_out"),
        (native.EPS_IN_DTYPE, "ohil_eps_in"),
        (native.EPS_OUT_DTYPE, "ohil_eps_out"),
        (native.THERMAL_IN_DTYPE, "ohil_therm_in"),
        (native.THERMAL_OUT_DTYPE, "ohil_therm_out"),
        (native.FLIGHT_IN_DTYPE, "ohil_flight_in"),
        (native.FLIGHT_OUT_DTYPE, "ohil_flight_out"),
    ]:
        assert dtype.itemsize == native.ffi.sizeof(cname)


def test_default_configs_construct() -> None:
    for cls in (native.Adcs, native.Eps, native.Thermal):
        loop = cls()
        assert loop.outputs.flags.writeable is False
    core = native.FlightCore()
    assert set(core.outputs.dtype.names) == {"adcs", "eps", "therm"}


@pytest.mark.parametrize(
    ("cls", "override", "field"),
    [
        (native.Adcs, {"inertia_kgm2": [1.0, -2.0, 3.0]}, "inertia_kgm2"),
        (native.Adcs, {"att_zeta": float("nan")}, "att_zeta"),
        (native.Adcs, {"search_axis_body": [0.0, 0.0, 1.0]}, "search_axis_body"),
        (native.Adcs, {"array_normal_body": [0.0, 0.0, 2.0]}, "array_normal_body"),
        (native.Adcs, {"search_rate_rad_s": 1.0}, "search_rate_rad_s"),
        (native.Adcs, {"wheel_max_torque_nm": 0.0}, "wheel_max_torque_nm"),
        (native.Adcs, {"inertia_kgm2": [1.0, 2.0]}, "inertia_kgm2"),
        (native.Adcs, {"bdot_gain": "fast"}, "bdot_gain"),
        (native.Adcs, {"no_such_field": 1}, "no_such_field"),
        (native.Eps, {"capacity_ah": -1.0}, "capacity_ah"),
        (native.Eps, {"ocv_v": list(range(11, 0, -1))}, "ocv_v"),
        (native.Eps, {"low_exit_soc": 0.3}, "low_exit_soc"),
        (native.Eps, {"critical_enter_soc": 0.45}, "critical_enter_soc"),
        (native.Eps, {"load_shed_mode": [1, 2, 7]}, "load_shed_mode"),
        (native.Eps, {"load_shed_mode": [1] * 17}, "load_shed_mode"),
        (native.Eps, {"budget_margin": 1.5}, "budget_margin"),
        (native.Eps, {"soc_init": 1.2}, "soc_init"),
        (
            native.Thermal,
            {"heater_on_k": [300.0], "heater_off_k": [290.0], "heater_power_w": [1.0]},
            "heater_off_k",
        ),
        (native.Thermal, {"heater_on_k": [300.0]}, "heater_off_k"),
        (native.Thermal, {"derate_end_k": 300.0}, "derate_end_k"),
        (native.Thermal, {"trip_reset_k": 400.0}, "trip_reset_k"),
        (native.Thermal, {"throttle_up_per_s": float("inf")}, "throttle_up_per_s"),
    ],
)
def test_invalid_config_raises_naming_the_field(cls, override, field) -> None:
    with pytest.raises(native.ConfigError) as info:
        cls(override)
    assert info.value.field == field
    assert f"'{field}'" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_flight_core_config_error_names_loop_and_field() -> None:
    with pytest.raises(native.ConfigError, match=r"thermal config field 'trip_k'"):
        native.FlightCore(thermal={"trip_k": 300.0})
    with pytest.raises(native.ConfigError, match=r"eps config field 'capacity_ah'"):
        native.FlightCore(eps={"capacity_ah": 0})


def test_dataclass_config_is_accepted() -> None:
    @dataclasses.dataclass
    class Small:
        capacity_ah: float = 5.0
        payload_max_w: float = 20.0

    eps = native.Eps(Small())
    assert eps.config["capacity_ah"] == 5.0
    assert eps.config["payload_max_w"] == 20.0


def test_step_with_dict_sets_inputs_and_returns_view() -> None:
    th = native.Thermal()
    out = th.step({"dt_s": 1.0, "temp_k": [250.0] * 8, "payload_temp_k": 300.0})
    assert out is th.outputs
    assert int(out["heater_mask"]) == 0b1111  # four zones, all cold
    with pytest.raises(KeyError, match="no_such"):
        th.step({"no_such": 1.0})


def test_batch_equals_single_steps() -> None:
    rng = np.random.default_rng(7)
    n = 200
    batch_core = native.FlightCore()
    single_core = native.FlightCore()
    ins = batch_core.empty_inputs(n)
    ins["adcs"]["dt_s"] = 0.5
    ins["adcs"]["mode"] = native.AdcsMode.SUN_POINT
    ins["adcs"]["rate_rad_s"] = rng.normal(0, 0.01, (n, 3))
    ins["adcs"]["b_body_t"] = rng.normal(0, 3e-5, (n, 3))
    sun = rng.normal(size=(n, 3))
    ins["adcs"]["sun_body"] = sun / np.linalg.norm(sun, axis=1)[:, None]
    ins["adcs"]["sun_valid"] = 1
    ins["adcs"]["sun_eci"] = [1.0, 0.0, 0.0]
    ins["adcs"]["b_eci_t"] = [0.0, 2e-5, 1e-5]
    ins["eps"]["dt_s"] = 0.5
    ins["eps"]["battery_voltage_v"] = 30.0
    ins["eps"]["battery_current_a"] = rng.normal(0, 5, n)
    ins["eps"]["solar_power_w"] = 200.0
    ins["eps"]["load_power_w"] = 60.0
    ins["eps"]["time_to_eclipse_s"] = 1800.0
    ins["eps"]["eclipse_duration_s"] = 2100.0
    ins["eps"]["payload_demand_w"] = 100.0
    ins["therm"]["dt_s"] = 0.5
    ins["therm"]["temp_k"] = rng.uniform(250, 300, (n, 8))
    ins["therm"]["payload_temp_k"] = rng.uniform(320, 370, n)
    outs = batch_core.step_batch(ins)
    assert outs.shape == (n,)
    for k in range(n):
        single = single_core.step(ins[k])
        assert native.records_equal(single, outs[k])


def test_reset_restores_power_on_state() -> None:
    eps = native.Eps()
    eps.step({"dt_s": 1.0, "battery_voltage_v": 30.0})
    assert int(eps.state["soc_valid"]) == 1
    eps.reset()
    assert int(eps.state["soc_valid"]) == 0


def test_abi_version() -> None:
    assert native.ABI_VERSION == 2


@pytest.mark.parametrize(
    "normal",
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.6, 0.0, 0.8], [0.5, 0.5, 0.70710678118]],
)
def test_search_axis_follows_a_given_array_normal(normal) -> None:
    adcs = native.Adcs({"array_normal_body": normal})
    axis = np.array(adcs.config["search_axis_body"])
    assert abs(float(np.linalg.norm(axis)) - 1.0) < 1e-12
    assert abs(float(np.dot(axis, np.asarray(normal) / np.linalg.norm(normal)))) < 1e-12
    # an explicit search axis is kept, and still checked
    with pytest.raises(native.ConfigError, match="search_axis_body"):
        native.Adcs({"array_normal_body": normal, "search_axis_body": normal})
