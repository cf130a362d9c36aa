"""A programmable DC supply driven through a register-map profile.

>>> # driver = ModbusSupply(conn, load_profile("riden-rd60xx"), name="psu0")
>>> # driver.set_voltage(12.0); driver.set_output(True); driver.measure()
"""

from __future__ import annotations

import math

from hil_rig.instruments.base import Measurement, SupplyLimits
from hil_rig.instruments.errors import (
    InstrumentError,
    LimitError,
    UnknownModelError,
)
from hil_rig.instruments.profiles import SupplyModel, SupplyProfile
from hil_rig.instruments.transport import ModbusConnection

_SPAN_REGS = 32  # registers this close together are read in one request


class ModbusSupply:
    """A supply described by a :class:`SupplyProfile`, on one Modbus connection.

    On construction it identifies the model (from the model-ID register when the
    profile has one; an unknown ID is an error, never a guessed scaling). Every
    setpoint is checked against the bench file's ``limits`` and the model's
    range *before* anything is sent, and every write is read back.
    """

    def __init__(
        self,
        conn: ModbusConnection,
        profile: SupplyProfile,
        *,
        name: str,
        model: str | None = None,
        limits: SupplyLimits | None = None,
    ) -> None:
        self.name = name
        self.conn = conn
        self.profile = profile
        self.limits = limits or SupplyLimits()
        conn.names.update(profile.names())
        self.model: SupplyModel = self._identify(model)
        self.regs = profile.registers
        #: the registers a measurement reads
        self._poll_keys = [k for k in ("voltage_out", "current_out", "protection", "mode", "output") if k in self.regs]

    def _identify(self, expected: str | None) -> SupplyModel:
        p = self.profile
        if p.id_register is None:
            if expected is None:
                raise UnknownModelError(
                    f"supply {self.name!r}: profile {p.name!r} has no model-ID register; "
                    "the bench file must name the model (key 'model')"
                )
            return p.model(expected)
        model_id = self.conn.read_registers(p.id_register, 1)[0]
        try:
            found = p.model_for_id(model_id)
        except UnknownModelError as exc:
            raise UnknownModelError(f"supply {self.name!r}: {exc}") from None
        if expected is not None and found.name.lower() != expected.lower():
            raise UnknownModelError(
                f"supply {self.name!r}: the bench file says model {expected!r} but the "
                f"instrument reports ID {model_id} ({found.name})"
            )
        return found

    # -- setpoints ----------------------------------------------------------
    def check_voltage(self, volts: float) -> int:
        lo, hi = self.limits.voltage_v
        if not math.isfinite(volts) or not lo <= volts <= hi:
            raise LimitError(
                f"supply {self.name!r}: voltage setpoint {volts!r} V is outside the bench "
                f"file's limits {lo:g}..{hi:g} V; nothing was sent"
            )
        return self.model.encode_voltage(volts)

    def check_current(self, amps: float) -> int:
        lo, hi = self.limits.current_a
        if not math.isfinite(amps) or not lo <= amps <= hi:
            raise LimitError(
                f"supply {self.name!r}: current limit {amps!r} A is outside the bench "
                f"file's limits {lo:g}..{hi:g} A; nothing was sent"
            )
        return self.model.encode_current(amps)

    def set_voltage(self, volts: float) -> None:
        self.conn.write_register(self.regs["voltage_set"], self.check_voltage(volts))

    def set_current_limit(self, amps: float) -> None:
        self.conn.write_register(self.regs["current_set"], self.check_current(amps))

    def set_output(self, on: bool) -> None:
        p = self.profile
        self.conn.write_register(self.regs["output"], p.output_on if on else p.output_off)

    def output_enabled(self) -> bool:
        value = self.conn.read_registers(self.regs["output"], 1)[0]
        return self._decode_output(value)

    def _decode_output(self, value: int) -> bool:
        p = self.profile
        if value == p.output_on:
            return True
        if value == p.output_off:
            return False
        raise InstrumentError(
            f"supply {self.name!r} register {self.regs['output']} (OUTPUT): unexpected value {value}"
        )

    def setpoints(self) -> tuple[float, float]:
        """(voltage_v, current_a) setpoints, read from the instrument."""
        v = self.conn.read_registers(self.regs["voltage_set"], 1)[0]
        i = self.conn.read_registers(self.regs["current_set"], 1)[0]
        return self.model.decode_voltage(v), self.model.decode_current(i)

    # -- measurement --------------------------------------------------------
    def measure(self) -> Measurement:
        """Measured output voltage and current, mode, protection and output state.

        Reads the whole span in one request when the registers are close
        together (10..18 on a Riden), else one request per register.
        """
        return self._measured(self._read_keys(self._poll_keys))

    def set_voltage_and_measure(self, volts: float) -> Measurement:
        """:meth:`set_voltage` then :meth:`measure`, in two requests instead of three
        when the voltage setpoint register lies in the measurement span (8..18 on a
        Riden): the setpoint is read back with the measurement. A read-back that
        differs is an error, as it is for every write."""
        counts = self.check_voltage(volts)
        reg = self.regs["voltage_set"]
        keys = self._poll_keys
        addrs = [self.regs[k] for k in keys] + [reg]
        if max(addrs) - min(addrs) >= _SPAN_REGS:
            self.set_voltage(volts)
            return self.measure()
        self.conn.write_register(reg, counts, verify=False)
        values = self._read_keys([*keys, "voltage_set"])
        self.conn.check_read_back("register", reg, counts, values["voltage_set"])
        return self._measured(values)

    def _read_keys(self, keys: list[str]) -> dict[str, int]:
        """Registers by key: one request for the span when they are close together."""
        addrs = [self.regs[k] for k in keys]
        lo, hi = min(addrs), max(addrs)
        if hi - lo < _SPAN_REGS:
            block = self.conn.read_registers(lo, hi - lo + 1)
            return {k: block[self.regs[k] - lo] for k in keys}
        return {k: self.conn.read_registers(self.regs[k], 1)[0] for k in keys}

    def _measured(self, values: dict[str, int]) -> Measurement:
        p = self.profile
        mode = p.mode_values.get(values["mode"], f"unknown({values['mode']})") if "mode" in values else "cv"
        prot = (
            p.protection_values.get(values["protection"], f"unknown({values['protection']})")
            if "protection" in values
            else "none"
        )
        return Measurement(
            voltage_v=self.model.decode_voltage(values["voltage_out"]),
            current_a=self.model.decode_current(values["current_out"]),
            output_on=self._decode_output(values["output"]),
            mode=mode,
            protection=prot,
        )

    def input_voltage(self) -> float:
        if "input_voltage" not in self.regs:
            raise InstrumentError(f"supply {self.name!r}: profile {self.profile.name!r} has no input-voltage register")
        counts = self.conn.read_registers(self.regs["input_voltage"], 1)[0]
        return counts / self.profile.input_voltage_counts_per_volt

    def close(self) -> None:
        self.conn.close()

    def __repr__(self) -> str:
        return f"ModbusSupply({self.name!r}, {self.model.name}, {self.conn.endpoint.url()})"
