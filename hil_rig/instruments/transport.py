"""One Modbus connection to one instrument, on the synchronous pymodbus client.

Every call is bounded: a per-attempt timeout and a fixed number of retries. A
Modbus exception response is not retried (the instrument answered: asking again
gets the same answer) and becomes a :class:`ModbusExceptionResponse` naming the
instrument, the register and the exception. Writes are verified by read-back.

pymodbus >= 3.10 API: ``device_id=`` (not ``slave=``/``unit=``), and every
argument after ``address`` is keyword-only.
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from hil_rig.instruments.errors import (
    InstrumentError,
    InstrumentTimeout,
    InstrumentUnreachable,
    ModbusExceptionResponse,
    ReadBackMismatch,
)
from hil_rig.instruments.url import ModbusEndpoint

#: Modbus exception codes and their names (Modbus Application Protocol v1.1b3, 7).
EXCEPTION_NAMES: dict[int, str] = {
    1: "IllegalFunction",
    2: "IllegalDataAddress",
    3: "IllegalDataValue",
    4: "ServerDeviceFailure",
    5: "Acknowledge",
    6: "ServerDeviceBusy",
    7: "NegativeAcknowledge",
    8: "MemoryParityError",
    10: "GatewayPathUnavailable",
    11: "GatewayTargetDeviceFailedToRespond",
}

T = TypeVar("T")


def exception_name(code: int) -> str:
    return EXCEPTION_NAMES.get(code, f"UnknownException{code}")


class LowLatencySerialClient(ModbusSerialClient):
    """pymodbus' serial client, waiting for the answer with ``select()``.

    The stock client polls the port in 1 ms sleeps and needs one more poll after
    the last byte to decide that a frame is complete; the RTU framer can tell a
    complete frame by itself (length from the function code, then the CRC), so
    this client hands every byte to it as soon as it arrives.
    """

    def recv(self, size: int | None) -> bytes:
        if size is not None or not self.socket:
            return super().recv(size)
        try:
            ready, _, _ = select.select([self.socket.fileno()], [], [], self.comm_params.timeout_connect)
            if not ready:
                return b""
            waiting = self.socket.in_waiting
            return self.socket.read(waiting) if waiting else b""
        except OSError:
            self.close()
            raise ConnectionException(str(self)) from None


class ModbusConnection:
    """A bounded, thread-safe Modbus client for one instrument.

    ``label`` names the instrument in every error (``"supply 'psu0'"``);
    ``names`` maps register numbers to their names (``{8: "V-SET"}``).
    """

    def __init__(
        self,
        endpoint: ModbusEndpoint,
        *,
        label: str,
        name: str = "",
        timeout_s: float = 0.5,
        retries: int = 2,
        names: dict[int, str] | None = None,
        coil_names: dict[int, str] | None = None,
    ) -> None:
        if endpoint.transport not in ("tcp", "rtu"):
            raise InstrumentError(f"{label}: endpoint {endpoint.url()} is not started (simulated?)")
        if not 0 < timeout_s <= 30:
            raise ValueError(f"{label}: timeout_s must be in (0, 30], got {timeout_s}")
        if not 0 <= retries <= 10:
            raise ValueError(f"{label}: retries must be in 0..10, got {retries}")
        self.endpoint = endpoint
        self.label = label
        self.timeout_s = timeout_s
        self.retries = retries
        self.names = dict(names or {})
        self.coil_names = dict(coil_names or {})
        self.log = logging.getLogger(f"hil_rig.instruments.{name or 'modbus'}")
        self._lock = threading.RLock()
        self._client: ModbusTcpClient | ModbusSerialClient | None = None

    # -- life cycle ---------------------------------------------------------
    def _make_client(self) -> ModbusTcpClient | ModbusSerialClient:
        ep = self.endpoint
        if ep.transport == "tcp":
            return ModbusTcpClient(
                ep.host, port=ep.port, timeout=self.timeout_s, retries=0, reconnect_delay=0.0
            )
        return LowLatencySerialClient(
            ep.serial,
            framer=FramerType.RTU,
            baudrate=ep.baud,
            parity=ep.parity,
            stopbits=ep.stopbits,
            timeout=self.timeout_s,
            retries=0,
            reconnect_delay=0.0,
        )

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> ModbusConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _what(self, kind: str, address: int, count: int = 1) -> str:
        name = (self.names if kind == "register" else self.coil_names).get(address)
        where = f"{kind} {address}" if count == 1 else f"{kind}s {address}..{address + count - 1}"
        return f"{self.label} {where}" + (f" ({name})" if name else "")

    def _call(self, kind: str, address: int, count: int, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(client)`` with bounded retries; map every failure to a named error
        (naming the ``kind`` of item, ``address`` and ``count``; built only on failure)."""
        attempts = self.retries + 1
        last: Exception | None = None
        connected = False
        with self._lock:
            for attempt in range(attempts):
                if self._client is None:
                    self._client = self._make_client()
                client = self._client
                try:
                    if not client.connect():
                        raise ConnectionException(f"cannot connect to {self.endpoint.url()}")
                    connected = True
                    rr = fn(client)
                except (ModbusIOException, ConnectionException, OSError) as exc:
                    last = exc
                    self.log.warning("%s: attempt %d/%d failed: %s", self._what(kind, address, count), attempt + 1,
                                     attempts, exc)
                    self.close()
                    continue
                except ModbusException as exc:
                    last = exc
                    self.close()
                    continue
                if rr.isError():
                    code = int(getattr(rr, "exception_code", 0) or 0)
                    raise ModbusExceptionResponse(
                        f"{self._what(kind, address, count)}: {exception_name(code)} (exception code {code})", code
                    )
                return rr
        if not connected:
            raise InstrumentUnreachable(
                f"{self.label}: nothing answers at {self.endpoint.url()}: could not connect in {attempts} "
                f"attempt(s) ({'nothing listening on that port' if self.endpoint.transport == 'tcp' else 'cannot open the serial port'})"
            )
        raise InstrumentTimeout(
            f"{self._what(kind, address, count)}: no valid answer after {attempts} attempt(s) of {self.timeout_s:g} s "
            f"at {self.endpoint.url()}: {type(last).__name__}: {last}"
        )

    # -- registers ----------------------------------------------------------
    def read_registers(self, address: int, count: int = 1) -> list[int]:
        """FC03: read ``count`` holding registers."""
        unit = self.endpoint.unit
        rr = self._call(
            "register", address, count,
            lambda c: c.read_holding_registers(address, count=count, device_id=unit),
        )
        regs = list(rr.registers)
        if len(regs) < count:
            raise InstrumentError(
                f"{self._what('register', address, count)}: short answer ({len(regs)} of {count})"
            )
        return regs[:count]

    def check_read_back(self, kind: str, address: int, wrote: Any, back: Any) -> None:
        """``ReadBackMismatch`` naming the register(s) or coil(s) when ``back`` differs
        from what was written (one value, or a list from ``address`` on)."""
        if back != wrote:
            count = len(wrote) if isinstance(wrote, list) else 1
            raise ReadBackMismatch(f"{self._what(kind, address, count)}: wrote {wrote}, read back {back}")

    def write_register(self, address: int, value: int, *, verify: bool = True) -> None:
        """FC06: write one holding register, then read it back (FC03)."""
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"{self._what('register', address)}: value {value} is not a 16-bit word")
        unit = self.endpoint.unit
        self._call("register", address, 1, lambda c: c.write_register(address, value, device_id=unit))
        if verify:
            self.check_read_back("register", address, value, self.read_registers(address, 1)[0])

    def write_registers(self, address: int, values: Sequence[int], *, verify: bool = True) -> None:
        """FC16: write several holding registers, then read them back."""
        vals = [int(v) for v in values]
        unit = self.endpoint.unit
        self._call("register", address, len(vals), lambda c: c.write_registers(address, vals, device_id=unit))
        if verify:
            self.check_read_back("register", address, vals, self.read_registers(address, len(vals)))

    # -- coils --------------------------------------------------------------
    def read_coils(self, address: int, count: int = 1) -> list[bool]:
        """FC01: read ``count`` coils."""
        unit = self.endpoint.unit
        rr = self._call(
            "coil", address, count,
            lambda c: c.read_coils(address, count=count, device_id=unit),
        )
        return [bool(b) for b in rr.bits[:count]]

    def write_coil(self, address: int, value: bool, *, verify: bool = True) -> None:
        """FC05: write one coil, then read it back (FC01)."""
        unit = self.endpoint.unit
        self._call("coil", address, 1, lambda c: c.write_coil(address, bool(value), device_id=unit))
        if verify:
            self.check_read_back("coil", address, bool(value), self.read_coils(address, 1)[0])

    def write_coils(self, address: int, values: Sequence[bool], *, verify: bool = True) -> None:
        """FC15 (0x0F): write several coils, then read them back."""
        vals = [bool(v) for v in values]
        unit = self.endpoint.unit
        self._call("coil", address, len(vals), lambda c: c.write_coils(address, vals, device_id=unit))
        if verify:
            self.check_read_back("coil", address, vals, self.read_coils(address, len(vals)))
