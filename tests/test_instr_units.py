"""URLs, register-map profiles and their scaling (no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil_rig.instruments.errors import ConfigError, LimitError, UnknownModelError
from hil_rig.instruments.profiles import available_profiles, load_profile, parse_profile
from hil_rig.instruments.url import parse_modbus_url

PROFILES = [load_profile(n) for n in available_profiles()]
MODELS = [(p.name, m) for p in PROFILES for m in p.models]


def test_shipped_profiles() -> None:
    assert {"riden-rd60xx", "ea-psi9000"} <= set(available_profiles())


@pytest.mark.parametrize(
    "model_id,name,cpv,cpa",
    [
        (60062, "RD6006", 100, 1000),
        (60065, "RD6006P", 1000, 10000),
        (60121, "RD6012", 100, 100),
        (60181, "RD6018", 100, 100),
    ],
)
def test_riden_model_id_selects_scaling(model_id: int, name: str, cpv: int, cpa: int) -> None:
    m = load_profile("riden-rd60xx").model_for_id(model_id)
    assert (m.name, m.counts_per_volt, m.counts_per_amp) == (name, cpv, cpa)


@pytest.mark.parametrize("model_id", [0, 60066, 60070, 60240, 65535])
def test_unknown_model_id_is_refused(model_id: int) -> None:
    with pytest.raises(UnknownModelError, match=f"unknown model ID {model_id}.*refusing to guess"):
        load_profile("riden-rd60xx").model_for_id(model_id)


def test_riden_register_map() -> None:
    p = load_profile("riden-rd60xx")
    assert p.id_register == 0
    assert p.registers == {
        "voltage_set": 8, "current_set": 9, "voltage_out": 10, "current_out": 11,
        "input_voltage": 14, "protection": 16, "mode": 17, "output": 18,
        "power_out": 13, "preset": 19, "ovp": 82, "ocp": 83,
    }
    assert p.map is not None and p.map.readable == ((0, 119),) and p.map.memories == (80, 10)
    assert p.mode_values == {0: "cv", 1: "cc"}
    assert p.protection_values == {0: "none", 1: "ovp", 2: "ocp"}


@pytest.mark.parametrize("profile,model", MODELS, ids=[f"{p}:{m.name}" for p, m in MODELS])
@settings(max_examples=60, deadline=None)
@given(frac=st.floats(0.0, 1.0))
def test_setpoints_round_trip_through_register_encoding(profile: str, model, frac: float) -> None:
    volts = frac * model.max_voltage_v
    amps = frac * model.max_current_a
    cv, ca = model.encode_voltage(volts), model.encode_current(amps)
    assert 0 <= cv <= 0xFFFF and 0 <= ca <= 0xFFFF
    # decode(encode(x)) is within half a count of x ...
    assert abs(model.decode_voltage(cv) - volts) <= 0.5 / model.counts_per_volt + 1e-12
    assert abs(model.decode_current(ca) - amps) <= 0.5 / model.counts_per_amp + 1e-12
    # ... and encode(decode(counts)) gives the same register value back
    assert model.encode_voltage(model.decode_voltage(cv)) == cv
    assert model.encode_current(model.decode_current(ca)) == ca


@pytest.mark.parametrize("profile,model", MODELS, ids=[f"{p}:{m.name}" for p, m in MODELS])
def test_setpoints_outside_model_range_are_refused(profile: str, model) -> None:
    for bad in (-0.001, model.max_voltage_v * 1.01, float("nan"), float("inf")):
        with pytest.raises(LimitError):
            model.encode_voltage(bad)


def test_profile_errors_name_the_key() -> None:
    good = {
        "name": "x", "registers": {"voltage_set": 1, "current_set": 2, "voltage_out": 3, "current_out": 4, "output": 5},
        "models": [{"name": "M", "counts_per_volt": 10, "counts_per_amp": 10, "max_voltage_v": 5, "max_current_a": 1}],
    }
    assert parse_profile(good, "x.toml").model("M").encode_voltage(2.0) == 20
    bad = dict(good, registers={"voltage_set": 1})
    with pytest.raises(ConfigError, match=r"x.toml: missing key 'registers.current_set'"):
        parse_profile(bad, "x.toml")
    bad = dict(good, registers=dict(good["registers"], output=70000))
    with pytest.raises(ConfigError, match=r"'registers.output' must be a register number"):
        parse_profile(bad, "x.toml")
    bad = dict(good, models=[dict(good["models"][0], counts_per_volt="ten")])
    with pytest.raises(ConfigError, match=r"x.toml models\[0\]: key 'counts_per_volt' must be"):
        parse_profile(bad, "x.toml")
    bad = dict(good, identify={"register": 0})
    with pytest.raises(ConfigError, match=r"key 'ids' is required"):
        parse_profile(bad, "x.toml")
    with pytest.raises(ConfigError, match="no supply profile named 'nope'"):
        load_profile("nope")


@pytest.mark.parametrize(
    "url,transport,unit,extra",
    [
        ("modbus-tcp://127.0.0.1:5020?unit=3", "tcp", 3, {"host": "127.0.0.1", "port": 5020}),
        ("modbus-tcp://bench-psu", "tcp", 1, {"port": 502}),
        ("modbus-rtu:///dev/ttyUSB0?baud=9600&unit=7", "rtu", 7, {"serial": "/dev/ttyUSB0", "baud": 9600}),
        ("modbus-rtu:///dev/ttyUSB0?baud=19200&parity=E", "rtu", 1, {"parity": "E"}),
        ("modbus-rtu://socket://10.0.0.5:4001?baud=9600&unit=2", "rtu", 2, {"serial": "socket://10.0.0.5:4001"}),
        ("/dev/ttyACM0", "rtu", 1, {"serial": "/dev/ttyACM0", "baud": 115200}),
        ("sim://rtu?baud=9600", "sim-rtu", 1, {"baud": 9600}),
    ],
)
def test_parse_modbus_url(url: str, transport: str, unit: int, extra: dict) -> None:
    ep = parse_modbus_url(url)
    assert ep.transport == transport and ep.unit == unit
    for k, v in extra.items():
        assert getattr(ep, k) == v
    if transport in ("tcp", "rtu"):
        assert parse_modbus_url(ep.url()) == ep


@pytest.mark.parametrize(
    "url,msg",
    [
        ("http://x", "unsupported instrument URL"),
        ("modbus-tcp://:502", "no host"),
        ("modbus-tcp://h:502?unit=300", "unit .* must be in 0..247"),
        ("modbus-tcp://h:502?slave=1", "unknown parameter 'slave'"),
        ("modbus-rtu:///dev/ttyUSB0?baud=12345", "baud .* must be one of"),
        ("modbus-rtu://?baud=9600", "no serial port"),
        ("sim://udp", "must be sim://tcp or sim://rtu"),
        ("", "non-empty"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        parse_modbus_url(url)


@pytest.mark.parametrize("module", ["hil_rig.instruments.url", "hil_rig.instruments.profiles"])
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
