"""Bench files: the default virtual bench loads; bad files fail at load, naming file and key."""

from __future__ import annotations

import textwrap

import pytest

from hil_rig.benchfile import SupplySafeState, SwitchSafeState, load_bench
from hil_rig.instruments.errors import ConfigError

SUPPLY = """
[[instruments]]
name = "psu0"
driver = "riden-rd60xx"
url = "modbus-tcp://10.0.0.7:502?unit=2"
model = "RD6012"
limits = { voltage_v = [0.0, 14.0], current_a = [0.0, 6.0] }
safe_state = { output = false, voltage_v = 5.0 }
"""
RELAYS = """
[[instruments]]
name = "relays0"
driver = "waveshare-relay"
url = "/dev/ttyUSB1"
safe_state = { on = [7] }
"""
BOARD = """
[[boards]]
name = "jetson0"
kind = "jetson"
serial = "/dev/ttyUSB2"
supply = "psu0"
switch = "relays0"
channel = 0
"""


def _write(tmp_path, text: str):
    p = tmp_path / "bench.toml"
    p.write_text(textwrap.dedent(text))
    return p


def test_default_virtual_bench() -> None:
    b = load_bench(None)
    assert b.name == "virtual" and b.virtual and not b.has_hardware_boards
    assert [x.name for x in b.boards] == ["jetson0", "rpi0"]
    assert {(x.switch, x.channel) for x in b.boards} == {("relays0", 0), ("relays0", 1)}
    assert b.instrument("psu0").endpoint.transport == "sim-tcp"
    assert b.instrument("relays0").endpoint.transport == "sim-rtu"


def test_a_real_bench(tmp_path) -> None:
    b = load_bench(_write(tmp_path, SUPPLY + RELAYS + BOARD))
    assert not b.virtual and b.has_hardware_boards
    psu, relays = b.instrument("psu0"), b.instrument("relays0")
    assert psu.endpoint.unit == 2 and psu.limits.voltage_v == (0.0, 14.0)
    assert psu.safe_state == SupplySafeState(output=False, voltage_v=5.0)
    assert relays.endpoint.serial == "/dev/ttyUSB1" and relays.endpoint.baud == 9600
    assert relays.safe_state == SwitchSafeState(on=(7,))
    assert b.board("jetson0").min_voltage_v == 9.0  # the kind's default


@pytest.mark.parametrize(
    "text,msg",
    [
        (SUPPLY.replace('model = "RD6012"', 'model = "RD9999"'), r"instruments\[0\] \(psu0\): key 'model': profile 'riden-rd60xx' has no model 'RD9999'"),
        (SUPPLY.replace("voltage_v = [0.0, 14.0]", "voltage_v = [0.0, 61.0]"), r"\(psu0\): key 'limits' exceeds the RD6012's range"),
        (SUPPLY.replace("voltage_v = [0.0, 14.0]", "voltage_v = [14.0, 1.0]"), r"\(psu0\) limits: key 'voltage_v' must be 0 <= min <= max"),
        (SUPPLY.replace("voltage_v = 5.0", "voltage_v = 20.0"), r"\(psu0\) safe_state: key 'voltage_v' 20.0 is outside limits"),
        (SUPPLY.replace("safe_state = {", "safe_state = { outptu = true,"), r"\(psu0\) safe_state: unknown key 'outptu'"),
        (SUPPLY.replace('url = "modbus-tcp://10.0.0.7:502?unit=2"', 'url = "modbus-tcp://10.0.0.7:502?unit=2"\nunit = 3'), r"key 'unit' = 3 contradicts the unit in key 'url' \(2\)"),
        (SUPPLY.replace("modbus-tcp://10.0.0.7:502", "modbus-udp://10.0.0.7:502"), r"\(psu0\): key 'url': unsupported instrument URL"),
        (SUPPLY.replace('driver = "riden-rd60xx"', 'driver = "nope"'), r"\(psu0\): key 'driver': no supply profile named 'nope'"),
        (SUPPLY.replace("timeout_s", "x") + "timeout_s = 0\n", r"key 'timeout_s' must be in \(0, 30\]"),
        (SUPPLY + RELAYS.replace("on = [7]", "on = [8]"), r"\(relays0\) safe_state: key 'on' must list channels 0..7"),
        (SUPPLY + RELAYS + BOARD.replace("channel = 0", "channel = 9"), r"boards\[0\] \(jetson0\): key 'channel' = 9 is not in 0..7"),
        (SUPPLY + RELAYS + BOARD + BOARD.replace("jetson0", "jetson1"), r"\(jetson1\): key 'channel': relays0 channel 0 already powers 'jetson0'"),
        (SUPPLY + RELAYS + BOARD.replace('supply = "psu0"', 'supply = "relays0"'), r"\(jetson0\): key 'supply' = 'relays0' is not a supply"),
        (SUPPLY + RELAYS + BOARD.replace('kind = "jetson"', 'kind = "arduino"'), r"\(jetson0\): key 'kind' must be one of jetson, rpi, emulated"),
        (SUPPLY + RELAYS + BOARD.replace("channel = 0", ""), r"keys 'switch' and 'channel' go together"),
        (SUPPLY + RELAYS + BOARD.replace('kind = "jetson"', 'kind = "emulated"\nemulates = "jetson"').replace('serial = "/dev/ttyUSB2"\n', ""),
         r"\(jetson0\): key 'supply': an emulated board can only be fed by a simulated instrument"),
        (SUPPLY.replace("modbus-tcp://10.0.0.7:502?unit=2", "sim://tcp") + RELAYS + BOARD, r"key 'supply': a real board cannot be fed by a simulated instrument"),
        (SUPPLY + SUPPLY, r"name 'psu0' is used twice"),
        ("[bench]\nnmae = 'x'\n", r"\[bench\]: unknown key 'nmae'"),
        ("instruments = 3\n", r"key 'instruments' must be list"),
        ("[[boards]\n", r"not valid TOML"),
    ],
)
def test_bad_bench_files_name_file_and_key(tmp_path, text: str, msg: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=msg) as err:
        load_bench(path)
    assert str(err.value).startswith(str(path))


def test_missing_bench_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="bench file not found"):
        load_bench(tmp_path / "nope.toml")
