"""Hypothesis properties of the three flight-core loops.

Quaternion norm, command limits, SOC bounds, no mode chatter inside a
hysteresis band, throttle bounds and monotonicity, NaN/Inf never reaching an
actuator, and two instances in one process never interfering.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import native
from native import AdcsFault, AdcsMode, EpsFault, PowerMode, ThermalFault

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ADCS_CFG = native.default_adcs_config()
EPS_CFG = native.default_eps_config()
TH_CFG = native.default_thermal_config()


finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)
bad = st.sampled_from([math.nan, math.inf, -math.inf])
# ADCS sensors also have plausibility bounds: an absurd finite reading is a fault too
adcs_bad = st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300])
vec3 = st.lists(st.floats(-1.0, 1.0), min_size=3, max_size=3)
field3 = st.lists(st.floats(-6e-5, 6e-5), min_size=3, max_size=3)


def unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [1.0, 0.0, 0.0] if n < 1e-6 else [x / n for x in v]


adcs_frame = st.fixed_dictionaries(
    {
        "dt_s": st.floats(1e-3, 10.0),
        "rate_rad_s": vec3,
        "b_body_t": field3,
        "sun_body": vec3.map(unit),
        "sun_valid": st.integers(0, 1),
        "mode": st.sampled_from([0, 1, 2]),
        "sun_eci": vec3.map(unit),
        "b_eci_t": field3,
        "r_eci_m": st.lists(st.floats(-7e6, 7e6), min_size=3, max_size=3),
        "v_eci_m_s": st.lists(st.floats(-8e3, 8e3), min_size=3, max_size=3),
        "wheel_speed_rad_s": st.lists(st.floats(-700.0, 700.0), min_size=3, max_size=3),
    }
)


def check_adcs_actuators(out: np.ndarray) -> None:
    tw = np.asarray(out["wheel_torque_cmd_nm"])
    dip = np.asarray(out["dipole_cmd_am2"])
    assert np.all(np.isfinite(tw)) and np.all(np.isfinite(dip))
    assert np.all(np.abs(tw) <= ADCS_CFG["wheel_max_torque_nm"])
    assert np.all(np.abs(dip) <= ADCS_CFG["dipole_max_am2"])
    q = np.asarray(out["q_bi"])
    assert abs(math.sqrt(float(q @ q)) - 1.0) <= 1e-12
    assert math.isfinite(float(out["pointing_error_rad"]))
    assert not int(out["fault_flags"]) & AdcsFault.INTERNAL  # the last-resort guard never fires


@SETTINGS
@given(st.lists(adcs_frame, min_size=1, max_size=40))
def test_adcs_quaternion_unit_and_commands_within_limits(frames) -> None:
    adcs = native.Adcs()
    for frame in frames:
        out = adcs.step(frame)
        check_adcs_actuators(out)
        speeds = frame["wheel_speed_rad_s"]
        for i in range(3):  # a saturated wheel is never pushed further
            if abs(speeds[i]) >= ADCS_CFG["wheel_max_speed_rad_s"]:
                assert float(out["wheel_torque_cmd_nm"][i]) * speeds[i] <= 0.0


ADCS_SENSORS = {
    "rate_rad_s": AdcsFault.GYRO,
    "b_body_t": AdcsFault.MAG,
    "sun_body": AdcsFault.SUN,
    "sun_eci": AdcsFault.REF,
    "b_eci_t": AdcsFault.REF,
    "r_eci_m": AdcsFault.REF,
    "v_eci_m_s": AdcsFault.REF,
    "wheel_speed_rad_s": AdcsFault.WHEEL_SPEED,
    "dt_s": AdcsFault.DT,
}


@SETTINGS
@given(
    st.lists(adcs_frame, min_size=2, max_size=20),
    st.lists(
        st.tuples(st.sampled_from(sorted(ADCS_SENSORS)), st.integers(0, 2), adcs_bad),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, 19),
)
def test_adcs_nan_inf_never_reach_actuators(frames, corruptions, at) -> None:
    adcs = native.Adcs()
    at = at % len(frames)
    for k, frame in enumerate(frames):
        frame = dict(frame)
        expected = AdcsFault(0)
        if k == at:
            for name, idx, value in corruptions:
                if name == "dt_s":
                    frame["dt_s"] = value
                else:
                    vec = list(frame[name])
                    vec[idx] = value
                    frame[name] = vec
                    if name == "sun_body":
                        frame["sun_valid"] = 1
                expected |= ADCS_SENSORS[name]
        out = adcs.step(frame)
        check_adcs_actuators(out)
        flags = AdcsFault(int(out["fault_flags"]))
        assert expected & flags == expected
        if k == at and expected & (AdcsFault.DT | AdcsFault.GYRO | AdcsFault.WHEEL_SPEED):
            if expected & AdcsFault.DT or frame["mode"] != AdcsMode.DETUMBLE:
                assert np.all(np.asarray(out["wheel_torque_cmd_nm"]) == 0.0)


# ----------------------------------------------------------------------- EPS


@SETTINGS
@given(
    st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=60),
    st.floats(0.0, 1.0),
    st.floats(1e-3, 60.0),
)
def test_eps_soc_stays_in_unit_interval(currents, soc0, dt) -> None:
    eps = native.Eps({"soc_init": soc0})
    for cur in currents:
        out = eps.step({"dt_s": dt, "battery_voltage_v": 29.0, "battery_current_a": cur})
        assert 0.0 <= float(out["soc"]) <= 1.0


BANDS = {
    # transition: (from, to, condition on the SOC at the step of the change)
    (PowerMode.NOMINAL, PowerMode.LOW): lambda s: s < EPS_CFG["low_enter_soc"],
    (PowerMode.LOW, PowerMode.NOMINAL): lambda s: s > EPS_CFG["low_exit_soc"],
    (PowerMode.NOMINAL, PowerMode.CRITICAL): lambda s: s < EPS_CFG["critical_enter_soc"],
    (PowerMode.LOW, PowerMode.CRITICAL): lambda s: s < EPS_CFG["critical_enter_soc"],
    (PowerMode.CRITICAL, PowerMode.LOW): lambda s: s > EPS_CFG["critical_exit_soc"],
}


@SETTINGS
@given(st.floats(0.0, 1.0), st.lists(st.floats(-40.0, 40.0), min_size=1, max_size=200))
def test_eps_modes_change_only_outside_hysteresis_bands(soc0, currents) -> None:
    eps = native.Eps({"soc_init": soc0, "capacity_ah": 1.0})
    mode = PowerMode(int(eps.step({"dt_s": 1.0, "battery_voltage_v": 30.0})["power_mode"]))
    for cur in currents:
        out = eps.step({"dt_s": 10.0, "battery_voltage_v": 30.0, "battery_current_a": cur})
        new = PowerMode(int(out["power_mode"]))
        if new != mode:
            assert BANDS[(mode, new)](float(out["soc"])), (mode, new, float(out["soc"]))
        mode = new


@SETTINGS
@given(
    st.floats(EPS_CFG["low_enter_soc"] + 1e-3, EPS_CFG["low_exit_soc"] - 1e-3),
    st.sampled_from([PowerMode.NOMINAL, PowerMode.LOW]),
    st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=100),
)
def test_eps_no_chatter_inside_the_low_band(soc0, start_mode, currents) -> None:
    eps = native.Eps({"soc_init": soc0})
    eps.state["mode"] = int(start_mode)
    for cur in currents:
        out = eps.step({"dt_s": 1.0, "battery_voltage_v": 30.0, "battery_current_a": cur})
        soc = float(out["soc"])
        if EPS_CFG["low_enter_soc"] <= soc <= EPS_CFG["low_exit_soc"]:
            assert int(out["power_mode"]) == start_mode


eps_frame = st.fixed_dictionaries(
    {
        "dt_s": st.floats(1e-3, 60.0),
        "battery_voltage_v": st.floats(20.0, 34.0),
        "battery_current_a": st.floats(-20.0, 20.0),
        "solar_power_w": st.floats(0.0, 400.0),
        "load_power_w": st.floats(0.0, 200.0),
        "time_to_eclipse_s": st.floats(0.0, 4000.0),
        "eclipse_duration_s": st.floats(0.0, 2200.0),
        "payload_demand_w": st.floats(0.0, 300.0),
        "load_request_mask": st.integers(0, 0xFFFF),
    }
)
EPS_BAD = {
    "dt_s": EpsFault.DT,
    "battery_voltage_v": EpsFault.VOLTAGE,
    "battery_current_a": EpsFault.CURRENT,
    "solar_power_w": EpsFault.POWER,
    "load_power_w": EpsFault.POWER,
    "time_to_eclipse_s": EpsFault.ECLIPSE,
    "eclipse_duration_s": EpsFault.ECLIPSE,
    "payload_demand_w": EpsFault.DEMAND,
}


@SETTINGS
@given(
    st.lists(eps_frame, min_size=1, max_size=30),
    st.lists(st.tuples(st.sampled_from(sorted(EPS_BAD)), bad), max_size=3),
)
def test_eps_commands_bounded_and_nan_safe(frames, corruptions) -> None:
    eps = native.Eps()
    n_loads = len(EPS_CFG["load_shed_mode"])
    for k, frame in enumerate(frames):
        frame = dict(frame)
        expected = EpsFault(0)
        if k == len(frames) - 1:
            for name, value in corruptions:
                frame[name] = value
                expected |= EPS_BAD[name]
        out = eps.step(frame)
        budget, grant = float(out["payload_budget_w"]), float(out["payload_grant_w"])
        assert 0.0 <= budget <= EPS_CFG["payload_max_w"]
        assert 0.0 <= grant <= budget
        mask = int(out["load_switch_mask"])
        assert mask & ~frame["load_request_mask"] == 0 and mask >> n_loads == 0
        assert 0.0 <= float(out["soc"]) <= 1.0
        assert EpsFault(int(out["fault_flags"])) & expected == expected
        if expected & (EpsFault.POWER | EpsFault.ECLIPSE):
            assert budget == 0.0
        if int(out["power_mode"]) == PowerMode.CRITICAL:
            assert budget == 0.0
            for i, shed in enumerate(EPS_CFG["load_shed_mode"]):
                if shed <= PowerMode.CRITICAL:
                    assert not mask >> i & 1


# ------------------------------------------------------------------- thermal


@SETTINGS
@given(
    st.lists(st.floats(250.0, 400.0), min_size=1, max_size=30),
    st.floats(250.0, 400.0),
    st.floats(250.0, 400.0),
    st.floats(1e-3, 60.0),
)
def test_throttle_in_unit_interval_and_monotone_in_temperature(history, t1, t2, dt) -> None:
    lo, hi = min(t1, t2), max(t1, t2)
    a, b = native.Thermal(), native.Thermal()
    for temp in history:  # same history: same state
        for th in (a, b):
            out = th.step({"dt_s": dt, "temp_k": [290.0] * 8, "payload_temp_k": temp})
            assert 0.0 <= float(out["payload_throttle"]) <= 1.0
    cold = float(a.step({"dt_s": dt, "payload_temp_k": lo})["payload_throttle"])
    hot = float(b.step({"dt_s": dt, "payload_temp_k": hi})["payload_throttle"])
    assert 0.0 <= hot <= cold <= 1.0


@SETTINGS
@given(st.lists(st.floats(300.0, 340.0), min_size=2, max_size=60), st.floats(0.1, 20.0))
def test_throttle_is_rate_limited(temps, dt) -> None:
    th = native.Thermal()
    prev = float(th.outputs["payload_throttle"])
    for temp in temps:  # below the trip: only the rate limits move it
        now = float(th.step({"dt_s": dt, "payload_temp_k": temp})["payload_throttle"])
        assert now - prev <= TH_CFG["throttle_up_per_s"] * dt + 1e-12
        assert prev - now <= TH_CFG["throttle_down_per_s"] * dt + 1e-12
        prev = now


@SETTINGS
@given(
    st.lists(
        st.tuples(st.floats(0.5, 30.0), st.floats(250.0, 300.0)),
        min_size=1,
        max_size=80,
    )
)
def test_heater_hysteresis_and_minimum_times(frames) -> None:
    th = native.Thermal()
    on_k, off_k = TH_CFG["heater_on_k"][0], TH_CFG["heater_off_k"][0]
    on, since = False, math.inf
    for dt, temp in frames:
        out = th.step({"dt_s": dt, "temp_k": [temp] * 8, "payload_temp_k": 300.0})
        since += dt
        now = bool(int(out["heater_mask"]) & 1)
        if now != on:
            assert (temp < on_k) if now else (temp > off_k)  # never inside the band
            assert since >= (TH_CFG["min_off_s"] if now else TH_CFG["min_on_s"])
            since = 0.0
        on = now
        assert int(out["heater_mask"]) >> len(TH_CFG["heater_on_k"]) == 0


@SETTINGS
@given(
    st.lists(st.floats(250.0, 300.0), min_size=8, max_size=8),
    st.sets(st.integers(0, 3), min_size=1),
    bad,
)
def test_thermal_nan_sensor_turns_its_heater_off(temps, broken, value) -> None:
    th = native.Thermal()
    th.step({"dt_s": 1.0, "temp_k": [200.0] * 8, "payload_temp_k": 300.0})  # all heaters on
    before = float(th.outputs["payload_throttle"])
    temps = list(temps)
    for i in broken:
        temps[i] = value
    out = th.step({"dt_s": 1.0, "temp_k": temps, "payload_temp_k": value})
    flags = ThermalFault(int(out["fault_flags"]))
    for i in broken:
        assert not int(out["heater_mask"]) >> i & 1
        assert flags & ThermalFault(1 << i)
    assert flags & ThermalFault.PAYLOAD
    assert float(out["payload_throttle"]) == before  # held
    assert math.isfinite(float(out["heater_power_w"]))


def test_over_temperature_trip_latches_and_clears() -> None:
    th = native.Thermal()
    for _ in range(200):
        th.step({"dt_s": 1.0, "payload_temp_k": 300.0})
    assert float(th.outputs["payload_throttle"]) == 1.0
    out = th.step({"dt_s": 1.0, "payload_temp_k": TH_CFG["trip_k"] + 0.5})
    assert int(out["trip"]) == 1 and float(out["payload_throttle"]) == 0.0
    out = th.step({"dt_s": 1.0, "payload_temp_k": TH_CFG["trip_reset_k"] + 1.0})
    assert int(out["trip"]) == 1 and float(out["payload_throttle"]) == 0.0  # latched
    out = th.step({"dt_s": 1.0, "payload_temp_k": TH_CFG["trip_reset_k"] - 1.0})
    assert int(out["trip"]) == 0
    assert 0.0 < float(out["payload_throttle"]) <= TH_CFG["throttle_up_per_s"] * 1.0 + 1e-12


# -------------------------------------------------------- no shared state


@settings(max_examples=20, deadline=None)
@given(st.lists(adcs_frame, min_size=1, max_size=15), st.lists(adcs_frame, min_size=1, max_size=15))
def test_two_instances_never_interfere(frames_a, frames_b) -> None:
    alone_a, alone_b = native.FlightCore(), native.FlightCore()
    ref_a = [alone_a.step({"adcs": f}).copy() for f in frames_a]
    ref_b = [alone_b.step({"adcs": f}).copy() for f in frames_b]
    a = native.FlightCore()
    b = native.FlightCore(eps={"capacity_ah": 3.0})
    got_a, got_b = [], []
    for k in range(max(len(frames_a), len(frames_b))):
        if k < len(frames_b):
            got_b.append(b.step({"adcs": frames_b[k]}).copy())
        if k < len(frames_a):
            got_a.append(a.step({"adcs": frames_a[k]}).copy())
    for x, y in zip(ref_a, got_a, strict=True):
        assert native.records_equal(x, y)
    for x, y in zip(ref_b, got_b, strict=True):
        assert native.records_equal(x["adcs"], y["adcs"])
