"""Simulated instruments: real pymodbus servers with real behaviour.

- :class:`SimSupply` follows a register-map profile (same registers, same
  scaling, same model ID as the real supply). Its output has CV and CC modes;
  an output that is off reads 0 V and 0 A; the measured current is whatever
  its ``load(volts) -> amps`` callback says (the virtual bench wires it to the
  emulated boards that the supply feeds).
- :class:`SimRelayBoard` is a Waveshare-style board: coils 0..7 over
  FC01/FC05/FC0F; a change calls ``on_change`` (the virtual bench gates the
  boards' power with it).
- :class:`SimHost` serves them: Modbus TCP on 127.0.0.1 (ephemeral ports) and
  Modbus RTU over a pty, from an asyncio loop in a daemon thread.

The models are driven through pymodbus' ``SimDevice(action=...)`` hook
(pymodbus >= 3.13): the hook refreshes the measured registers before a read,
and validates and applies writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time
import tty
from collections.abc import Callable

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from hil_rig.instruments.profiles import SupplyModel, SupplyProfile
from hil_rig.instruments.serial_handlers import protocol_hilptmx
from hil_rig.instruments.url import ModbusEndpoint

log = logging.getLogger("hil_rig.instruments.sim")

LoadFn = Callable[[float], float]
_READ_FCS = (3, 4)
_WRITE_FCS = (6, 16)


def _no_load(_volts: float) -> float:
    return 0.0


@dataclasses.dataclass(frozen=True)
class SupplyState:
    """A snapshot of a simulated supply."""

    output_on: bool
    voltage_set_v: float
    current_set_a: float
    voltage_v: float
    current_a: float
    mode: str


class SimSupply:
    """A simulated DC supply with CV/CC behaviour, following a profile.

    With the profile's ``[map]`` it serves the device's whole documented register
    map: the driver's registers and the power, protection-limit and preset
    registers behave; the rest of the map holds values (written ones where the
    device takes writes, the profile's ``[map.values]`` otherwise). Without one it
    serves the profile's registers only.
    """

    def __init__(
        self,
        profile: SupplyProfile,
        model: str,
        *,
        name: str = "sim-supply",
        unit: int = 1,
        input_voltage_v: float = 65.0,
        load: LoadFn | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.profile = profile
        self.model: SupplyModel = profile.model(model)
        self.name = name
        self.unit = unit
        self.input_voltage_v = input_voltage_v
        self.load: LoadFn = load or _no_load
        self.on_change = on_change
        self._lock = threading.Lock()
        m = self.model
        self._vmax = round(m.max_voltage_v * m.counts_per_volt)
        self._imax = round(m.max_current_a * m.counts_per_amp)
        self._vset = 0
        self._iset = self.model.encode_current(min(1.0, self.model.max_current_a))
        self._output = False
        self._ovp, self._ocp = self._vmax, self._imax  # protection limits: the model's range
        self._protection = 0  # latched trip: the profile's protection code (0 none)
        self.writes = 0
        self.reads = 0  # read requests answered
        regs = profile.registers
        rmap = profile.map
        addrs = set(regs.values())
        if profile.id_register is not None:
            addrs.add(profile.id_register)
        if rmap is not None:
            addrs |= rmap.addresses(rmap.readable)
            self._held: dict[int, int] = dict(rmap.values)
            self._holds = frozenset(rmap.addresses(rmap.writable))
            self._memories = rmap.memories
        else:
            if profile.id_register is not None:  # the identity block is contiguous
                addrs.update(range(profile.id_register, max(addrs) + 1))
            # Riden-like identity words: 1..2 serial number, 3 firmware version x100
            self._held = {profile.id_register + off: v for off, v in ((2, 12345), (3, 141))
                          if profile.id_register is not None}
            self._holds = frozenset()
            self._memories = None
        self.addresses = sorted(addrs)
        self._address_set = frozenset(addrs)
        codes = {v: k for k, v in profile.protection_values.items()}
        self._trip_codes = (codes.get("ovp", 1), codes.get("ocp", 2))
        # what each behaving register reads, from the state of one request
        r: dict[int, Callable[[SupplyState], int]] = {
            regs["voltage_set"]: lambda st: self._vset,
            regs["current_set"]: lambda st: self._iset,
            regs["voltage_out"]: lambda st: min(0xFFFF, round(st.voltage_v * m.counts_per_volt)),
            regs["current_out"]: lambda st: min(0xFFFF, round(st.current_a * m.counts_per_amp)),
            regs["output"]: lambda st: profile.output_on if st.output_on else profile.output_off,
        }
        if profile.id_register is not None:
            r[profile.id_register] = lambda st: self.model.sim_id or (self.model.ids[0] if self.model.ids else 0)
        if "input_voltage" in regs:
            r[regs["input_voltage"]] = lambda st: round(self.input_voltage_v * profile.input_voltage_counts_per_volt)
        if "mode" in regs:
            inv = {v: k for k, v in profile.mode_values.items()}
            r[regs["mode"]] = lambda st: inv.get(st.mode, 0)
        if "protection" in regs:
            r[regs["protection"]] = lambda st: self._protection
        if "power_out" in regs:
            r[regs["power_out"]] = lambda st: min(0xFFFF, round(st.voltage_v * st.current_a * m.counts_per_watt))
        if "ovp" in regs:
            r[regs["ovp"]] = lambda st: self._ovp
        if "ocp" in regs:
            r[regs["ocp"]] = lambda st: self._ocp
        if "preset" in regs:
            r[regs["preset"]] = lambda st: 0  # reads 0 on the device (ShayBox/Riden)
        self._readers = r

    # -- model --------------------------------------------------------------
    def state(self) -> SupplyState:
        with self._lock:
            st, tripped = self._evaluate()
        if tripped:
            self._changed()
        return st

    def _state(self) -> SupplyState:
        vset = self.model.decode_voltage(self._vset)
        iset = self.model.decode_current(self._iset)
        if not self._output:
            return SupplyState(False, vset, iset, 0.0, 0.0, "cv")
        demand = max(0.0, float(self.load(vset)))
        if demand <= iset:
            return SupplyState(True, vset, iset, vset, demand, "cv")
        # current limit: the load sees the voltage at which a resistor drawing
        # `demand` at `vset` would draw `iset` (a browning-out load collapses)
        return SupplyState(True, vset, iset, vset * iset / demand, iset, "cc")

    def _evaluate(self) -> tuple[SupplyState, bool]:
        """The state now (lock held); an output above its OVP/OCP limit trips: the
        output goes off and the protection register latches the cause until the
        output is switched on again. True when it tripped."""
        st = self._state()
        if not st.output_on:
            return st, False
        m = self.model
        if st.voltage_v > m.decode_voltage(self._ovp) + 1e-9:
            self._protection = self._trip_codes[0]
        elif st.current_a > m.decode_current(self._ocp) + 1e-9:
            self._protection = self._trip_codes[1]
        else:
            return st, False
        self._output = False
        log.info("%s: output tripped (%s)", self.name, "OVP" if self._protection == self._trip_codes[0] else "OCP")
        return self._state(), True

    def settings(self) -> tuple[int, int, bool, float]:
        """(voltage setpoint counts, current limit counts, output on, input voltage):
        with its load, all that its registers follow."""
        with self._lock:
            return self._vset, self._iset, self._output, self.input_voltage_v

    def set_output_local(self, on: bool) -> None:
        """Front-panel output switch (also used by tests)."""
        with self._lock:
            self._output = bool(on)
            if on:
                self._protection = 0
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _register_values(self) -> dict[int, int]:
        """Every register's value now (for tests and tools; a request reads its span only)."""
        with self._lock:
            st, _ = self._evaluate()
            return {a: self._value(a, st) for a in self.addresses}

    def _value(self, address: int, st: SupplyState) -> int:
        reader = self._readers.get(address)
        return reader(st) if reader is not None else self._held.get(address, 0)

    def _write(self, address: int, value: int) -> ExcCodes | None:
        """Validate and apply one register write (lock held)."""
        p, regs = self.profile, self.profile.registers
        if address not in self._address_set:
            return ExcCodes.ILLEGAL_ADDRESS
        if address == regs["voltage_set"]:
            if value > self._vmax:
                return ExcCodes.ILLEGAL_VALUE
            self._vset = value
        elif address == regs["current_set"]:
            if value > self._imax:
                return ExcCodes.ILLEGAL_VALUE
            self._iset = value
        elif address == regs["output"]:
            if value not in (p.output_on, p.output_off):
                return ExcCodes.ILLEGAL_VALUE
            self._output = value == p.output_on
            if self._output:
                self._protection = 0
        elif address == regs.get("ovp"):
            if value > self._vmax:
                return ExcCodes.ILLEGAL_VALUE
            self._ovp = value
        elif address == regs.get("ocp"):
            if value > self._imax:
                return ExcCodes.ILLEGAL_VALUE
            self._ocp = value
        elif address == regs.get("preset"):
            return self._load_memory(value)
        elif address in self._holds:
            if (err := self._check_memory(address, value)) is not None:
                return err
            self._held[address] = value
        else:
            return ExcCodes.ILLEGAL_ADDRESS  # read-only (identity, measurements, status)
        return None

    def _check_memory(self, address: int, value: int) -> ExcCodes | None:
        """A memory group's V/OVP word is a voltage, its I/OCP word a current: within range."""
        if self._memories is None:
            return None
        first, groups = self._memories
        if not first <= address < first + 4 * groups:
            return None
        return ExcCodes.ILLEGAL_VALUE if value > (self._vmax, self._imax)[(address - first) % 2] else None

    def _load_memory(self, n: int) -> ExcCodes | None:
        """``preset`` = N: memory group MN becomes the setpoints and protection limits."""
        if self._memories is None or not 0 <= n < self._memories[1]:
            return ExcCodes.ILLEGAL_VALUE
        regs = self.profile.registers
        base = self._memories[0] + 4 * n
        v, i, ovp, ocp = (self._value(base + k, _OFF) for k in range(4))
        if v > self._vmax or i > self._imax:
            return ExcCodes.ILLEGAL_VALUE
        self._vset, self._iset = v, i
        if "ovp" in regs and base + 2 != regs["ovp"]:
            self._ovp, self._ocp = ovp, ocp
        return None

    async def action(
        self,
        func_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus SimDevice hook: refresh before reads, validate/apply writes."""
        if func_code not in _READ_FCS + _WRITE_FCS:
            return ExcCodes.ILLEGAL_FUNCTION
        if func_code == 4:
            return ExcCodes.ILLEGAL_FUNCTION  # the Riden serves holding registers only
        span = range(address, address + (len(values) if values else count))
        if not self._address_set.issuperset(span):
            return ExcCodes.ILLEGAL_ADDRESS
        with self._lock:
            if values:
                # validate all first: a rejected multi-write changes nothing
                saved = (self._vset, self._iset, self._output, self._ovp, self._ocp, self._protection,
                         dict(self._held))
                for a, v in zip(span, values, strict=True):
                    if (err := self._write(a, int(v))) is not None:
                        (self._vset, self._iset, self._output, self._ovp, self._ocp, self._protection,
                         self._held) = saved
                        return err
                self.writes += 1
            else:
                self.reads += 1
            st, tripped = self._evaluate()
            for a in span:
                registers[a - start_address] = self._value(a, st)
            if values:
                # pymodbus stores `values` after this hook: keep them coherent
                for i, a in enumerate(span):
                    values[i] = registers[a - start_address]  # type: ignore[index]
        if values or tripped:
            self._changed()
        return None

    def device(self) -> SimDevice:
        """The pymodbus SimDevice serving this model."""
        blocks: list[SimData] = []
        run: list[int] = []
        for a in self.addresses:
            if run and a != run[-1] + 1:
                blocks.append(SimData(run[0], values=[0] * len(run), datatype=DataType.REGISTERS))
                run = []
            run.append(a)
        blocks.append(SimData(run[0], values=[0] * len(run), datatype=DataType.REGISTERS))
        return SimDevice(self.unit, simdata=blocks, action=self.action)


_OFF = SupplyState(False, 0.0, 0.0, 0.0, 0.0, "cv")  # for reading held registers only


class SimRelayBoard:
    """A Waveshare Modbus RTU Relay board: its documented map, as far as Modbus carries it.

    - coils 0..channels-1: FC01 reads, FC05 writes one, FC0F writes several;
    - coil 0x00FF with FC05: every relay at once;
    - holding register 0x4000 (FC03): the board's unit address; 0x8000: the
      software version (x100).

    Not simulated, and refused: writing the unit address (0x4000) or the baud
    rate (0x2000) with FC06 -- the simulated board keeps the bench file's unit
    and baud -- (``IllegalDataAddress``), and every other function code
    (``IllegalFunction``). FC05's toggle value 0x5500 and the flash on/off
    commands (coils 0x0200/0x0400 + channel) cannot be told apart by the
    server: pymodbus decodes any non-zero FC05 value as ON.
    """

    ALL_COILS = 0x00FF
    UNIT_REGISTER = 0x4000
    VERSION_REGISTER = 0x8000
    VERSION = 200  # V2.00, the "V2" Modbus protocol Waveshare ships since 2021

    def __init__(
        self,
        *,
        name: str = "sim-relays",
        unit: int = 1,
        channels: int = 8,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if not 1 <= channels <= 16:
            raise ValueError("a simulated relay board has 1..16 channels")
        self.name = name
        self.unit = unit
        self.channels = channels
        self.on_change = on_change
        self._lock = threading.Lock()
        self._coils = [False] * channels
        self.writes = 0

    def states(self) -> list[bool]:
        with self._lock:
            return list(self._coils)

    def set_local(self, channel: int, on: bool) -> None:
        with self._lock:
            self._coils[channel] = bool(on)
        if self.on_change is not None:
            self.on_change()

    async def action(
        self,
        func_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if func_code == 3:
            if count != 1 or address not in (self.UNIT_REGISTER, self.VERSION_REGISTER):
                return ExcCodes.ILLEGAL_ADDRESS
            registers[address - start_address] = self.unit if address == self.UNIT_REGISTER else self.VERSION
            return None
        if func_code in (6, 16):
            return ExcCodes.ILLEGAL_ADDRESS  # unit address and baud rate: not simulated
        if func_code not in (1, 5, 15):
            return ExcCodes.ILLEGAL_FUNCTION
        everything = func_code == 5 and address == self.ALL_COILS
        if not everything and (address >= self.channels or (values and address + len(values) > self.channels)):
            return ExcCodes.ILLEGAL_ADDRESS
        with self._lock:
            if values:
                if everything:
                    self._coils = [bool(values[0])] * self.channels
                else:
                    for i, v in enumerate(values):
                        self._coils[address + i] = bool(v)
                self.writes += 1
            bits = self._coils + [False] * (16 - self.channels)
            registers[0] = sum(1 << i for i, b in enumerate(bits) if b)
        if values and self.on_change is not None:
            self.on_change()
        return None

    def device(self) -> SimDevice:
        coils = SimData(0, values=[False] * (self.ALL_COILS + 1), datatype=DataType.BITS)
        holding = [SimData(a, values=[0], datatype=DataType.REGISTERS)
                   for a in (self.UNIT_REGISTER, self.VERSION_REGISTER)]
        return SimDevice(
            self.unit,
            simdata=([coils], [SimData(0, values=[False] * 16, datatype=DataType.BITS)], holding,
                     [SimData(0, values=[0], datatype=DataType.REGISTERS)]),
            action=self.action,
        )


def rtu_wire_time_s(n_bytes: int, baud: int, bits_per_char: int = 10) -> float:
    """Time ``n_bytes`` take on an RTU line (8N1 = 10 bits per character)."""
    return n_bytes * bits_per_char / baud


def rtu_gap_s(baud: int) -> float:
    """The silent interval between RTU frames: 3.5 characters of 11 bits.

    (The Modbus serial-line spec recommends a fixed 1.75 ms above 19200 baud to
    spare slow devices; the true 3.5 characters is the stricter, faster limit.)
    """
    return 3.5 * 11 / baud


class _WirePacer:
    """Holds each RTU answer back for the time the exchange takes on a real line.

    The pty moves bytes instantly; a wire at ``baud`` does not. With pacing on,
    the server answers ``wire(request) + wire(answer) + 2 gaps`` after the
    request arrived, so what a client measures over the pty is what it would
    get over a real line. (It blocks its own loop: one pacer per RTU host.)
    """

    def __init__(self, baud: int) -> None:
        self.baud = baud
        self._rx_at = 0.0
        self._rx_len = 0

    def trace(self, sending: bool, data: bytes) -> bytes:
        now = time.perf_counter()
        if not sending:
            self._rx_at, self._rx_len = now, len(data)
            return data
        due = self._rx_at + rtu_wire_time_s(self._rx_len + len(data), self.baud) + 2 * rtu_gap_s(self.baud)
        if (left := due - time.perf_counter()) > 0:
            time.sleep(left)  # overshoots by ~0.1 ms: conservative, and no busy wait
        return data


@dataclasses.dataclass
class _Served:
    server: object
    endpoint: ModbusEndpoint
    task: asyncio.Task | None = None
    fds: tuple[int, ...] = ()


def _on_loop(handler):  # type: ignore[no-untyped-def]
    """pymodbus (3.13 to 3.16) passes each decoded request from its connection's data
    callback to ``handle_later``, which schedules it with
    ``asyncio.run_coroutine_threadsafe`` as if from another thread: a self-pipe write
    and two more turns of the loop per request. The callback runs on the loop's own
    thread, so the request is scheduled there directly: the same requests, handled in
    the same order, about a fifth less time per request (``bench/modbus.py``: TCP
    polls per second 4,365 -> 5,475 and 3,916 -> 4,978 in two alternating pairs).
    A handler without that hop is left as it is."""
    later, handle = getattr(handler, "handle_later", None), getattr(handler, "handle_request", None)
    if callable(later) and callable(handle):
        tasks: set[asyncio.Task] = set()  # strong references until each request is done

        def handle_later() -> None:
            task = handler.loop.create_task(handle())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        handler.handle_later = handle_later
    return handler


class _OnLoop:
    """Mixin for a pymodbus server: its connections' handlers go through :func:`_on_loop`."""

    def callback_new_connection(self):  # type: ignore[no-untyped-def]
        return _on_loop(super().callback_new_connection())  # type: ignore[misc]


class _TcpServer(_OnLoop, ModbusTcpServer):
    pass


class _SerialServer(_OnLoop, ModbusSerialServer):
    pass


class SimHost:
    """Hosts simulated instruments on real pymodbus servers, in a daemon thread.

    ``serve_tcp(device)`` -> ``modbus-tcp://127.0.0.1:PORT``;
    ``serve_rtu(device, baud)`` -> ``modbus-rtu:///dev/pts/N`` (a pty whose
    master the host keeps; ``pace=True`` emulates the wire time at ``baud``).
    Use one host per paced RTU line: pacing blocks the host's loop.
    """

    def __init__(self, name: str = "sim") -> None:
        self.name = name
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"hil-{name}", daemon=True)
        self._served: list[_Served] = []
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _submit(self, coro, timeout: float = 10.0):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self, server, wait_port: bool) -> asyncio.Task:  # type: ignore[no-untyped-def]
        task = asyncio.ensure_future(server.serve_forever())
        for _ in range(500):
            if getattr(server, "transport", None) is not None:
                break
            if task.done():
                task.result()
                raise RuntimeError("Modbus server stopped while starting")
            await asyncio.sleep(0.005)
        else:
            raise RuntimeError("Modbus server did not start listening")
        return task

    def serve_tcp(self, device: SimDevice, unit: int = 1) -> ModbusEndpoint:
        async def start() -> _Served:
            server = _TcpServer(device, address=("127.0.0.1", 0))
            task = await self._start(server, True)
            port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
            return _Served(server, ModbusEndpoint("tcp", host="127.0.0.1", port=port, unit=unit), task)

        served = self._submit(start())
        self._served.append(served)
        return served.endpoint

    def serve_rtu(self, device: SimDevice, unit: int = 1, baud: int = 115200, *, pace: bool = False) -> ModbusEndpoint:
        protocol_hilptmx.register()
        master, slave = os.openpty()
        tty.setraw(slave)
        path = os.ttyname(slave)
        pacer = _WirePacer(baud) if pace else None

        async def start() -> _Served:
            kwargs = {"trace_packet": pacer.trace} if pacer else {}
            server = _SerialServer(
                device, framer=FramerType.RTU, port=f"hilptmx://{master}", baudrate=baud, **kwargs
            )
            task = await self._start(server, False)
            ep = ModbusEndpoint("rtu", serial=path, baud=baud, unit=unit)
            return _Served(server, ep, task, (master, slave))

        try:
            served = self._submit(start())
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        self._served.append(served)
        return served.endpoint

    def close(self) -> None:
        """Stop every server and the loop; close the ptys."""
        if not self._thread.is_alive():
            return

        async def stop() -> None:
            for s in self._served:
                try:
                    await s.server.shutdown()  # type: ignore[attr-defined]
                except Exception as exc:  # noqa: BLE001 - best effort at shutdown
                    log.debug("shutdown of %s: %s", s.endpoint.url(), exc)
                if s.task is not None and not s.task.done():
                    s.task.cancel()

        try:
            self._submit(stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
            for s in self._served:
                for fd in s.fds:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._served.clear()

    def __enter__(self) -> SimHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
