"""The closed power loop: the simulated bus powers the real (or emulated) boards.

Each frame the runner calls :meth:`PowerLoop.update` with the simulated bus
voltage and whether the bus is up. The loop sets the supply's output to that
voltage (a write only when it moved by more than ``min_step_v``), cuts the
output when the bus collapses, and returns what the supply measured: the
boards' real draw, which the runner feeds into the simulated power balance so
that it drains the simulated battery.

It also switches boards through their relay channels (``set_board_power``,
``power_cycle``), which is how the flight software's power switches reach the
bench.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

from hil_rig.benchfile import Bench
from hil_rig.instruments.base import Measurement, PowerSupply, Switch
from hil_rig.instruments.errors import ConfigError, LimitError

log = logging.getLogger("hil_rig.power_loop")


@dataclasses.dataclass(frozen=True)
class PowerSample:
    """What the boards drew in this frame, as measured by the supply."""

    bus_voltage_v: float  # the setpoint asked for
    voltage_v: float  # measured at the supply output
    current_a: float  # measured: the boards' draw
    output_on: bool
    mode: str

    @property
    def power_w(self) -> float:
        return self.voltage_v * self.current_a


class PowerLoop:
    """Couples one supply (and the relay board that switches its boards) to the simulation."""

    def __init__(
        self,
        supply: PowerSupply,
        switch: Switch | None,
        bench: Bench,
        *,
        current_limit_a: float | None = None,
        min_step_v: float = 0.01,
    ) -> None:
        self.supply = supply
        self.switch = switch
        self.bench = bench
        self.min_step_v = min_step_v
        self.boards = {b.name: b for b in bench.boards if b.supply in (None, supply.name)}
        for b in self.boards.values():
            if b.switch is not None and (switch is None or b.switch != switch.name):
                raise ConfigError(
                    f"{bench.path}: board {b.name!r} is switched by {b.switch!r}, not by the power loop's switch"
                )
        spec = bench.instrument(supply.name)
        self.limits = spec.limits
        self._set_v: float | None = None
        self._on: bool | None = None
        if current_limit_a is not None:
            supply.set_current_limit(current_limit_a)

    def update(self, bus_voltage_v: float, bus_up: bool = True) -> PowerSample:
        """Follow the simulated bus; return the measured draw of the boards.

        A bus voltage outside the bench file's limits raises :class:`LimitError`
        before anything is sent (the caller decides: stop the run safely).
        """
        m: Measurement | None = None
        if bus_up:
            if not math.isfinite(bus_voltage_v):
                raise LimitError(f"power loop: bus voltage {bus_voltage_v!r} is not a number")
            if self._set_v is None or abs(bus_voltage_v - self._set_v) >= self.min_step_v:
                if self._on is True:  # the common case: one request fewer
                    m = self.supply.set_voltage_and_measure(bus_voltage_v)
                else:
                    self.supply.set_voltage(bus_voltage_v)
                self._set_v = bus_voltage_v
            if self._on is not True:
                self.supply.set_output(True)
                self._on = True
        elif self._on is not False:
            self.supply.set_output(False)
            self._on = False
        if m is None:
            m = self.supply.measure()
        return PowerSample(bus_voltage_v, m.voltage_v, m.current_a, m.output_on, m.mode)

    def _board(self, board: str):  # type: ignore[no-untyped-def]
        b = self.boards.get(board)
        if b is None:
            raise KeyError(f"power loop: no board {board!r} on supply {self.supply.name!r} (have: {', '.join(self.boards)})")
        if b.switch is None or b.channel is None or self.switch is None:
            raise ConfigError(f"{self.bench.path}: board {board!r} has no relay channel (keys 'switch', 'channel')")
        return b

    def set_board_power(self, board: str, on: bool) -> None:
        """Switch one board's relay channel (read back)."""
        b = self._board(board)
        assert self.switch is not None
        self.switch.set_channel(b.channel, on)

    def board_power(self, board: str) -> bool:
        b = self._board(board)
        assert self.switch is not None
        return self.switch.get_channel(b.channel)

    def power_cycle(self, board: str, off_s: float = 0.5) -> None:
        """Relay off, wait ``off_s`` (wall clock: a real relay), relay on."""
        self.set_board_power(board, False)
        time.sleep(max(0.0, off_s))
        self.set_board_power(board, True)
