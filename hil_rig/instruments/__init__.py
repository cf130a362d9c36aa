"""Lab instruments over Modbus: drivers, register-map profiles, simulators.

Drivers sit behind two small protocols (:class:`PowerSupply`, :class:`Switch`)
and are built from a bench file with :func:`open_instruments`. The simulated
instruments in :mod:`hil_rig.instruments.sim` are real pymodbus servers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hil_rig.instruments.base import Measurement, PowerSupply, SupplyLimits, Switch
from hil_rig.instruments.errors import (
    ConfigError,
    InstrumentError,
    InstrumentTimeout,
    InstrumentUnreachable,
    LimitError,
    ModbusExceptionResponse,
    ReadBackMismatch,
    UnknownModelError,
)
from hil_rig.instruments.profiles import SupplyModel, SupplyProfile, load_profile
from hil_rig.instruments.relay import ModbusRelayBoard
from hil_rig.instruments.supply import ModbusSupply
from hil_rig.instruments.transport import ModbusConnection
from hil_rig.instruments.url import ModbusEndpoint, parse_modbus_url

if TYPE_CHECKING:
    from hil_rig.benchfile import Bench, InstrumentSpec

__all__ = [
    "ConfigError",
    "InstrumentError",
    "InstrumentTimeout",
    "InstrumentUnreachable",
    "LimitError",
    "Measurement",
    "ModbusConnection",
    "ModbusEndpoint",
    "ModbusExceptionResponse",
    "ModbusRelayBoard",
    "ModbusSupply",
    "PowerSupply",
    "ReadBackMismatch",
    "SupplyLimits",
    "SupplyModel",
    "SupplyProfile",
    "Switch",
    "UnknownModelError",
    "load_profile",
    "open_instrument",
    "open_instruments",
    "parse_modbus_url",
]


def open_instrument(spec: InstrumentSpec) -> ModbusSupply | ModbusRelayBoard:
    """The driver for one instrument of a (started) bench, after one exchange with it
    (a supply's model-ID read, a relay board's coil read): an instrument that does
    not answer is an :class:`InstrumentError` naming it and its URL here, not later
    (:class:`InstrumentUnreachable` when nothing can be connected to at all)."""
    label = f"{'supply' if spec.kind == 'supply' else 'relay board'} {spec.name!r}"
    conn = ModbusConnection(
        spec.endpoint, label=label, name=spec.name, timeout_s=spec.timeout_s, retries=spec.retries
    )
    try:
        if spec.kind == "supply":
            assert spec.profile is not None
            return ModbusSupply(conn, spec.profile, name=spec.name, model=spec.model, limits=spec.limits)
        board = ModbusRelayBoard(conn, name=spec.name, channels=spec.channels)
        board.get_all()
        return board
    except BaseException:
        conn.close()
        raise


def open_instruments(bench: Bench) -> tuple[dict[str, ModbusSupply], dict[str, ModbusRelayBoard]]:
    """Drivers for every instrument of a bench: ``(supplies, switches)`` by name.

    A bench with simulated instruments must be started first (``VirtualBench``).
    Raises :class:`InstrumentError` (naming the instrument and its URL) for the
    first instrument that does not answer as its bench file says; the drivers
    opened before it are closed.
    """
    supplies: dict[str, ModbusSupply] = {}
    switches: dict[str, ModbusRelayBoard] = {}
    try:
        for spec in bench.instruments:
            drv = open_instrument(spec)
            if isinstance(drv, ModbusSupply):
                supplies[spec.name] = drv
            else:
                switches[spec.name] = drv
    except BaseException:
        for d in (*supplies.values(), *switches.values()):
            d.close()
        raise
    return supplies, switches
