"""The small protocols that make instrument drivers interchangeable.

A power supply: output on/off, set voltage and current limit, measure.
A switch: set or get a channel. Code above the drivers (the power loop, the
safe-state guard, tests) uses only these.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@dataclasses.dataclass(frozen=True)
class Measurement:
    """What a supply reports about its output."""

    voltage_v: float
    current_a: float
    output_on: bool
    mode: str = "cv"  # "cv" or "cc"
    protection: str = "none"  # "none", "ovp", "ocp", ...

    @property
    def power_w(self) -> float:
        return self.voltage_v * self.current_a


@dataclasses.dataclass(frozen=True)
class SupplyLimits:
    """The bench file's limits for a supply's setpoints (inclusive)."""

    voltage_v: tuple[float, float] = (0.0, float("inf"))
    current_a: tuple[float, float] = (0.0, float("inf"))


@runtime_checkable
class PowerSupply(Protocol):
    name: str

    def set_output(self, on: bool) -> None: ...

    def output_enabled(self) -> bool: ...

    def set_voltage(self, volts: float) -> None: ...

    def set_current_limit(self, amps: float) -> None: ...

    def setpoints(self) -> tuple[float, float]: ...

    def measure(self) -> Measurement: ...

    def set_voltage_and_measure(self, volts: float) -> Measurement: ...

    def close(self) -> None: ...


@runtime_checkable
class Switch(Protocol):
    name: str
    channels: int

    def set_channel(self, channel: int, on: bool) -> None: ...

    def get_channel(self, channel: int) -> bool: ...

    def get_all(self) -> list[bool]: ...

    def set_all(self, states: Sequence[bool]) -> None: ...

    def close(self) -> None: ...
