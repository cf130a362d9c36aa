"""Drivers against the simulated instruments, over Modbus TCP and over RTU on a pty."""

from __future__ import annotations

import dataclasses
import os
import select
import socket
import time
import tty

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil_rig.instruments import (
    InstrumentTimeout,
    InstrumentUnreachable,
    LimitError,
    ModbusConnection,
    ModbusExceptionResponse,
    ModbusRelayBoard,
    ModbusSupply,
    PowerSupply,
    ReadBackMismatch,
    SupplyLimits,
    Switch,
    UnknownModelError,
    load_profile,
)
from hil_rig.instruments.sim import SimHost, SimRelayBoard, SimSupply
from hil_rig.instruments.url import ModbusEndpoint

RIDEN = load_profile("riden-rd60xx")
TRANSPORTS = ["tcp", "rtu"]


@pytest.fixture(scope="module")
def host():
    with SimHost("test-drivers") as h:
        yield h


def serve(host: SimHost, sim, transport: str) -> ModbusEndpoint:
    if transport == "tcp":
        return host.serve_tcp(sim.device(), unit=sim.unit)
    return host.serve_rtu(sim.device(), unit=sim.unit, baud=115200)


LIMITS = SupplyLimits((0.0, 30.0), (0.0, 5.0))


def supply_driver(ep: ModbusEndpoint, limits: SupplyLimits = LIMITS, **kw) -> ModbusSupply:
    conn = ModbusConnection(ep, label="supply 'psu0'", name="psu0", timeout_s=1.0, retries=1)
    return ModbusSupply(conn, RIDEN, name="psu0", limits=limits, **kw)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("model", ["RD6006", "RD6006P", "RD6012", "RD6018"])
def test_supply_every_register_and_scaling(host: SimHost, transport: str, model: str) -> None:
    sim = SimSupply(RIDEN, model, load=lambda v: 0.5 if v > 0 else 0.0, input_voltage_v=48.0)
    drv = supply_driver(serve(host, sim, transport))
    try:
        assert isinstance(drv, PowerSupply)
        m = RIDEN.model(model)
        assert drv.model == m  # identified from register 0
        drv.set_voltage(12.34)
        drv.set_current_limit(1.5)
        regs = drv.conn.read_registers(0, 19)
        assert regs[0] == m.sim_id and m.sim_id in m.ids
        assert regs[8] == round(12.34 * m.counts_per_volt)
        assert regs[9] == round(1.5 * m.counts_per_amp)
        assert regs[10] == 0 and regs[11] == 0 and regs[18] == 0  # output off reads 0 V
        assert drv.setpoints() == (pytest.approx(12.34), pytest.approx(1.5))
        assert drv.input_voltage() == pytest.approx(48.0)
        assert drv.measure().voltage_v == 0.0 and not drv.output_enabled()

        drv.set_output(True)
        meas = drv.measure()
        assert meas.output_on and meas.mode == "cv" and meas.protection == "none"
        assert meas.voltage_v == pytest.approx(12.34) and meas.current_a == pytest.approx(0.5)
        assert drv.conn.read_registers(17, 2) == [0, 1]

        drv.set_current_limit(0.2)  # the 0.5 A load now exceeds the limit: CC
        meas = drv.measure()
        assert meas.mode == "cc" and drv.conn.read_registers(17, 1) == [1]
        assert meas.current_a == pytest.approx(0.2)
        assert meas.voltage_v == pytest.approx(12.34 * 0.2 / 0.5, abs=1.0 / m.counts_per_volt)

        drv.set_output(False)
        assert drv.measure() == dataclasses.replace(meas, voltage_v=0.0, current_a=0.0, output_on=False, mode="cv")
    finally:
        drv.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_modbus_exceptions_are_surfaced_with_names(host: SimHost, transport: str) -> None:
    sim = SimSupply(RIDEN, "RD6006")
    drv = supply_driver(serve(host, sim, transport))
    try:
        with pytest.raises(ModbusExceptionResponse) as err:
            drv.conn.write_register(8, 6001)  # 60.01 V on a 60 V supply
        assert str(err.value) == "supply 'psu0' register 8 (V-SET): IllegalDataValue (exception code 3)"
        assert err.value.code == 3
        with pytest.raises(ModbusExceptionResponse, match=r"register 10 \(V-OUT\): IllegalDataAddress \(exception code 2\)"):
            drv.conn.write_register(10, 5)  # measured voltage is read-only
        with pytest.raises(ModbusExceptionResponse, match=r"registers 118..121: IllegalDataAddress"):
            drv.conn.read_registers(118, 4)  # the documented map ends at 119 (M9 OCP)
        with pytest.raises(ModbusExceptionResponse, match=r"register 18 \(OUTPUT\): IllegalDataValue"):
            drv.conn.write_register(18, 7)
        with pytest.raises(ModbusExceptionResponse, match=r"coil 0: IllegalFunction \(exception code 1\)"):
            drv.conn.read_coils(0, 1)
        assert drv.measure().voltage_v == 0.0  # the connection is still fine
    finally:
        drv.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_setpoints_outside_bench_limits_are_refused_before_sending(host: SimHost, transport: str) -> None:
    sim = SimSupply(RIDEN, "RD6012")
    drv = supply_driver(serve(host, sim, transport), limits=SupplyLimits((0.0, 14.0), (0.0, 3.0)))
    try:
        before = sim.writes
        for bad in (14.01, -1.0, float("nan")):
            with pytest.raises(LimitError, match=r"supply 'psu0': voltage setpoint .* outside the bench file's limits 0..14 V; nothing was sent"):
                drv.set_voltage(bad)
        with pytest.raises(LimitError, match="current limit 3.5 A"):
            drv.set_current_limit(3.5)
        assert sim.writes == before
        drv.set_voltage(14.0)
        assert sim.writes == before + 1
    finally:
        drv.close()


class _QuantizingSupply(SimSupply):
    """A supply firmware that acknowledges V-SET but stores one count less."""

    def _write(self, address: int, value: int):
        err = super()._write(address, value)
        if address == self.profile.registers["voltage_set"] and err is None and value > 0:
            self._vset = value - 1
        return err


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_write_is_verified_by_read_back(host: SimHost, transport: str) -> None:
    sim = _QuantizingSupply(RIDEN, "RD6006")
    drv = supply_driver(serve(host, sim, transport))
    try:
        with pytest.raises(ReadBackMismatch, match=r"register 8 \(V-SET\): wrote 1234, read back 1233"):
            drv.set_voltage(12.34)
        drv.set_current_limit(1.0)  # other registers are stored as written
        # the power loop's write-then-measure reads the setpoint back with the measurement
        with pytest.raises(ReadBackMismatch, match=r"register 8 \(V-SET\): wrote 1200, read back 1199"):
            drv.set_voltage_and_measure(12.0)
    finally:
        drv.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_set_voltage_and_measure_is_set_voltage_then_measure_in_two_requests(
        host: SimHost, transport: str) -> None:
    sim = SimSupply(RIDEN, "RD6006", load=lambda v: 0.25 * v)
    drv = supply_driver(serve(host, sim, transport))
    calls: list[str] = []
    for name in ("read_registers", "write_register"):  # count the Modbus requests sent
        real = getattr(drv.conn, name)
        setattr(drv.conn, name, lambda *a, _f=real, _n=name, **k: calls.append(_n) or _f(*a, **k))
    try:
        drv.set_current_limit(5.0)
        drv.set_output(True)
        calls.clear()
        m = drv.set_voltage_and_measure(7.5)
        assert calls == ["write_register", "read_registers"]
        assert drv.conn.read_registers(8, 1) == [750]
        assert m == drv.measure() and m.voltage_v == pytest.approx(7.5) and m.current_a == pytest.approx(1.875)
        with pytest.raises(LimitError, match="outside"):
            drv.set_voltage_and_measure(float("nan"))
        assert drv.conn.read_registers(8, 1) == [750]  # nothing was sent
    finally:
        drv.close()


def test_unknown_model_id_is_an_error_never_a_guess(host: SimHost) -> None:
    sim = SimSupply(RIDEN, "RD6006")
    sim.model = dataclasses.replace(sim.model, sim_id=60070)  # no RD60xx reports 60070
    ep = serve(host, sim, "tcp")
    with pytest.raises(UnknownModelError, match="supply 'psu0'.*unknown model ID 60070 in register 0; refusing to guess"):
        supply_driver(ep)
    sim2 = SimSupply(RIDEN, "RD6018")
    with pytest.raises(UnknownModelError, match="bench file says model 'RD6006' but the instrument reports ID 60181"):
        supply_driver(serve(host, sim2, "tcp"), model="RD6006")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_relay_board_fc05_fc01_fc0f(host: SimHost, transport: str) -> None:
    sim = SimRelayBoard(name="r0")
    ep = serve(host, sim, transport)
    drv = ModbusRelayBoard(ModbusConnection(ep, label="relay board 'r0'", timeout_s=1.0), name="r0")
    try:
        assert isinstance(drv, Switch)
        assert drv.get_all() == [False] * 8
        for ch in range(8):
            drv.set_channel(ch, True)  # FC05 + FC01 read-back
            assert drv.get_channel(ch) and sim.states()[ch]
        pattern = [bool(i % 3) for i in range(8)]
        drv.set_all(pattern)  # FC0F + read-back
        assert sim.states() == pattern == drv.get_all()
        drv.set_channel(4, False)
        assert sim.states()[4] is False
        before = sim.writes
        with pytest.raises(ValueError, match=r"channel 8 is not in 0..7"):
            drv.set_channel(8, True)
        assert sim.writes == before
        with pytest.raises(ModbusExceptionResponse, match=r"relay board 'r0' coil 9: IllegalDataAddress \(exception code 2\)"):
            drv.conn.write_coil(9, True)
        with pytest.raises(ModbusExceptionResponse, match=r"register 0: IllegalDataAddress"):
            drv.conn.read_registers(0, 1)  # its only holding registers: 0x4000 and 0x8000
        assert drv.conn.read_registers(0x4000, 1) == [ep.unit]
        with pytest.raises(ModbusExceptionResponse, match=r"register 16384: IllegalDataAddress"):
            drv.conn.write_register(0x4000, 5)  # moving the board to another unit: not simulated
        with pytest.raises(ModbusExceptionResponse, match=r"input registers? 0: IllegalFunction|register 0: IllegalFunction"):
            drv.conn._call("register", 0, 1, lambda c: c.read_input_registers(0, count=1, device_id=ep.unit))
    finally:
        drv.close()


def test_dead_tcp_instrument_bounded_retry_then_clear_error() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    conn = ModbusConnection(
        ModbusEndpoint("tcp", host="127.0.0.1", port=port), label="supply 'psu9'", timeout_s=0.2, retries=2,
        names={8: "V-SET"},
    )
    with pytest.raises(InstrumentUnreachable, match=rf"supply 'psu9': nothing answers at modbus-tcp://127.0.0.1:{port}\?unit=1: could not connect in 3 attempt\(s\) \(nothing listening on that port\)"):
        conn.write_register(8, 100)
    assert issubclass(InstrumentUnreachable, InstrumentTimeout)
    conn.close()


def test_dead_rtu_instrument_is_retried_a_bounded_number_of_times() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    try:
        conn = ModbusConnection(ModbusEndpoint("rtu", serial=path), label="supply 'psu9'", timeout_s=0.2, retries=2)
        with pytest.raises(InstrumentTimeout, match=r"supply 'psu9' register 10: no valid answer after 3 attempt"):
            conn.read_registers(10, 1)
        conn.close()
        seen = b""
        while select.select([master], [], [], 0.2)[0]:
            seen += os.read(master, 1024)
        request = bytes.fromhex("01 03 00 0a 00 01 a4 08")  # read register 10 of unit 1, with CRC
        assert seen.count(request) == 3  # exactly retries + 1 requests went out
    finally:
        os.close(master)
        os.close(slave)


@settings(max_examples=25, deadline=None)
@given(volts=st.floats(0.0, 30.0), amps=st.floats(0.0, 5.0))
def test_setpoints_round_trip_through_a_real_server(host_rd6006p, volts: float, amps: float) -> None:
    drv, m = host_rd6006p
    drv.set_voltage(volts)
    drv.set_current_limit(amps)
    v, i = drv.setpoints()
    assert abs(v - volts) <= 0.5 / m.counts_per_volt + 1e-9
    assert abs(i - amps) <= 0.5 / m.counts_per_amp + 1e-9


@pytest.fixture(scope="module")
def host_rd6006p(host: SimHost):
    sim = SimSupply(RIDEN, "RD6006P")
    drv = supply_driver(serve(host, sim, "tcp"))
    yield drv, drv.model
    drv.close()


def test_rtu_answers_paced_at_wire_speed() -> None:
    """With pacing, an RTU exchange takes at least its wire time at the baud rate."""
    sim = SimSupply(RIDEN, "RD6006")
    with SimHost("paced") as h:
        ep = h.serve_rtu(sim.device(), baud=9600, pace=True)
        conn = ModbusConnection(ep, label="supply 'p'", timeout_s=1.0)
        t0 = time.perf_counter()
        conn.read_registers(10, 9)
        dt = time.perf_counter() - t0
        conn.close()
    # request 8 bytes + answer 23 bytes at 10 bits/char, plus two 3.5-char gaps
    assert dt >= (31 * 10 + 2 * 3.5 * 11) / 9600
