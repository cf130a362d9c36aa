"""Modbus conformance: a stock master drives the simulated instruments as a lab tool does.

The master is ``mbpoll`` (libmodbus, from Debian; ``.ci/run`` installs it), run as a
subprocess against the simulators on their real pymodbus servers: Modbus TCP on
127.0.0.1 and Modbus RTU over a pty. It reads and writes the simulated Riden's whole
documented register map (the profile's ``[map]``) and the Waveshare relay board's.
Without mbpoll these tests fail in CI (``CI`` set) and skip, saying why, elsewhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from hil_rig.instruments import load_profile
from hil_rig.instruments.sim import SimHost, SimRelayBoard, SimSupply
from hil_rig.instruments.url import ModbusEndpoint

RIDEN = load_profile("riden-rd60xx")
assert RIDEN.map is not None
MAP = RIDEN.map
REGS = RIDEN.registers
READABLE = sorted(MAP.addresses(MAP.readable))
HELD = sorted(MAP.addresses(MAP.writable))
#: registers with behaviour that take writes
SETTABLE = {REGS[k] for k in ("voltage_set", "current_set", "output", "preset", "ovp", "ocp")}
READ_ONLY = [a for a in READABLE if a not in HELD and a not in SETTABLE]
LOAD_A = 0.5  # the simulated supply's load: a constant 0.5 A while the output is up


@pytest.fixture(scope="module")
def mbpoll() -> str:
    exe = shutil.which("mbpoll")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("mbpoll is not installed: .ci/run installs it (apt-get install mbpoll)")
        pytest.skip("mbpoll is not installed (apt-get install mbpoll); in CI this fails")
    return exe


class Master:
    """mbpoll against one endpoint, with 0-based (PDU) addresses, polling once."""

    def __init__(self, exe: str, ep: ModbusEndpoint) -> None:
        if ep.transport == "tcp":
            self.args = [exe, "-m", "tcp", "-p", str(ep.port), "-a", str(ep.unit), "-0", "-1", "-o", "2"]
            self.target = ep.host
        else:
            self.args = [exe, "-m", "rtu", "-b", str(ep.baud), "-P", "none", "-d", "8", "-s", "1",
                         "-a", str(ep.unit), "-0", "-1", "-o", "2"]
            self.target = ep.serial

    def run(self, table: str, ref: int, count: int | None, values: tuple[int, ...]) -> subprocess.CompletedProcess:
        cmd = [*self.args, "-t", table, "-r", str(ref)]
        if count is not None:
            cmd += ["-c", str(count)]
        return subprocess.run([*cmd, self.target, *map(str, values)], capture_output=True, text=True, timeout=30)

    def read(self, ref: int, count: int = 1, table: str = "4") -> list[int]:
        p = self.run(table, ref, count, ())
        assert p.returncode == 0, p.stdout + p.stderr
        found = {int(a): int(v) for a, v in re.findall(r"^\[(\d+)\]:\s+(-?\d+)", p.stdout, re.M)}
        assert sorted(found) == list(range(ref, ref + count)), p.stdout
        return [found[a] for a in range(ref, ref + count)]

    def write(self, ref: int, *values: int, table: str = "4") -> None:
        p = self.run(table, ref, None, values)
        assert p.returncode == 0 and f"Written {len(values)} references" in p.stdout, p.stdout + p.stderr

    def refused(self, ref: int, *values: int, count: int | None = None, table: str = "4") -> str:
        """The exception mbpoll reports (``Illegal data address``, ...)."""
        p = self.run(table, ref, count if not values else None, values)
        assert p.returncode != 0, p.stdout
        m = re.search(r"failed: (.+)$", p.stderr, re.M)
        assert m, p.stderr
        return m.group(1).strip()


def _serve(host: SimHost, sim, transport: str) -> ModbusEndpoint:
    if transport == "tcp":
        return host.serve_tcp(sim.device(), unit=sim.unit)
    return host.serve_rtu(sim.device(), unit=sim.unit, baud=115200)


@pytest.fixture(params=["tcp", "rtu"])
def supply(request, mbpoll):
    sim = SimSupply(RIDEN, "RD6012", load=lambda v: LOAD_A if v > 0 else 0.0, input_voltage_v=48.0)
    with SimHost("conformance-supply") as host:
        yield sim, Master(mbpoll, _serve(host, sim, request.param))


@pytest.fixture(params=["tcp", "rtu"])
def relays(request, mbpoll):
    sim = SimRelayBoard(unit=3)
    with SimHost("conformance-relays") as host:
        yield sim, Master(mbpoll, _serve(host, sim, request.param))


def test_status_block_and_the_whole_map_read_as_the_device_answers(supply) -> None:
    sim, mb = supply
    status = mb.read(0, 20)  # the block lab tools poll: 0..19
    assert status[0] == 60121 and status[3] == 141  # RD6012, firmware 1.41
    assert (status[8], status[9]) == (0, 100)  # 0.00 V, 1.00 A at power-up
    assert status[14] == 4800 and status[18] == 0  # input 48.00 V, output off
    whole = mb.read(0, len(READABLE))  # 0..119 in one request, gaps included
    assert READABLE == list(range(120))
    assert whole[:20] == status
    assert whole[20:32] == [0] * 12 and whole[42:48] == [0] * 6  # undocumented gaps read 0
    assert whole[82:84] == [6000, 1200]  # OVP/OCP limits: the model's range, 60 V / 12 A
    values = sim._register_values()
    assert whole == [values[a] for a in READABLE]
    for a in range(0, 120, 7):  # single reads agree with the block
        assert mb.read(a) == [whole[a]]


def test_outside_the_map_is_illegal_data_address_and_input_registers_illegal_function(supply) -> None:
    _, mb = supply
    assert mb.refused(118, count=4) == "Illegal data address"  # runs past M9 OCP
    for a in (120, 255, 256, 65535):
        assert mb.refused(a, count=1) == "Illegal data address"
    assert mb.refused(120, 1) == "Illegal data address"
    assert mb.refused(8, count=1, table="3") == "Illegal function"  # holding registers only


def test_every_held_register_takes_writes_and_every_read_only_one_refuses_them(supply) -> None:
    _, mb = supply
    before = mb.read(0, 120)
    for lo, hi in MAP.writable:  # FC16 over each span, then FC06 to each register
        n = hi - lo + 1
        vals = tuple(100 + (lo + k) % 7 for k in range(n))  # in range for memory groups too
        mb.write(lo, *vals) if n > 1 else mb.write(lo, vals[0])
        assert mb.read(lo, n) == list(vals)
    for a in HELD:
        mb.write(a, 11)
        assert mb.read(a) == [11]
    after_writes = mb.read(0, 120)
    for a in READ_ONLY:
        assert mb.refused(a, 1) == "Illegal data address", a
    assert mb.read(0, 120) == after_writes
    assert [after_writes[a] for a in READ_ONLY] == [before[a] for a in READ_ONLY]


def test_setpoints_output_and_measurements_behave(supply) -> None:
    sim, mb = supply
    mb.write(8, 1200, 300)  # FC16: 12.00 V, 3.00 A
    mb.write(18, 1)  # FC06: output on
    block = mb.read(8, 12)
    assert block[:4] == [1200, 300, 1200, 50]  # V-OUT 12.00 V, I-OUT 0.50 A (the load)
    assert block[13 - 8] == 600  # P-OUT 6.00 W
    assert block[17 - 8] == 0 and block[18 - 8] == 1  # CV, on
    assert sim.state().voltage_v == 12.0
    mb.write(9, 20)  # I-SET 0.20 A: below the load, CC
    assert mb.read(10, 8) == [480, 20, 0, 96, 4800, 0, 0, 1]  # 4.80 V at 0.20 A, 0.96 W, CC
    assert mb.refused(8, 6001) == "Illegal data value"  # above 60 V
    assert mb.refused(9, 1201) == "Illegal data value"  # above 12 A
    assert mb.refused(18, 2) == "Illegal data value"
    assert mb.refused(8, 1000, 1201) == "Illegal data value"  # one bad value: nothing written
    assert mb.read(8, 2) == [1200, 20]


def test_memory_groups_preset_and_protection_trips(supply) -> None:
    sim, mb = supply
    mb.write(92, 500, 200, 600, 300)  # M3: 5.00 V, 2.00 A, OVP 6.00 V, OCP 3.00 A
    mb.write(19, 3)  # load M3
    assert mb.read(8, 2) == [500, 200] and mb.read(82, 2) == [600, 300]
    assert mb.read(19) == [0]  # the preset register reads 0
    assert mb.refused(19, 10) == "Illegal data value"  # M0..M9 only
    assert mb.refused(96, 6001) == "Illegal data value"  # a memory voltage above range
    mb.write(18, 1)
    assert mb.read(16, 3) == [0, 0, 1]
    mb.write(82, 400)  # OVP 4.00 V below the 5.00 V output: trips
    assert mb.read(16, 3) == [1, 0, 0]  # OVP latched, output off
    assert not sim.state().output_on
    mb.write(82, 6000)
    mb.write(83, 40)  # OCP 0.40 A below the 0.50 A load
    mb.write(18, 1)  # switching on clears the latch, then OCP trips
    assert mb.read(16, 3) == [2, 0, 0]
    mb.write(83, 1200)
    mb.write(18, 1)
    assert mb.read(16, 3) == [0, 0, 1]


def test_relay_board_coils_all_relays_and_identity(relays) -> None:
    sim, mb = relays
    assert mb.read(0, 8, table="0") == [0] * 8
    mb.write(3, 1, table="0")  # FC05
    assert sim.states() == [False, False, False, True, False, False, False, False]
    mb.write(0, 1, 0, 1, 0, 0, 0, 0, 1, table="0")  # FC0F
    assert mb.read(0, 8, table="0") == [1, 0, 1, 0, 0, 0, 0, 1]
    mb.write(0xFF, 1, table="0")  # every relay at once
    assert sim.states() == [True] * 8
    mb.write(0xFF, 0, table="0")
    assert mb.read(0, 8, table="0") == [0] * 8
    assert mb.read(0x4000) == [3]  # its unit address
    assert mb.read(0x8000) == [SimRelayBoard.VERSION]
    assert mb.refused(8, 1, table="0") == "Illegal data address"
    assert mb.refused(8, count=1, table="0") == "Illegal data address"
    assert mb.refused(0x4000, 5) == "Illegal data address"  # readdressing: not simulated
    assert mb.refused(0, count=1) == "Illegal data address"
    assert mb.refused(0, count=1, table="3") == "Illegal function"
    assert sim.states() == [False] * 8
