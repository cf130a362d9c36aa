"""The closed power loop: the simulated bus powers the real (or emulated) boards.

Each frame the runner calls :meth:`PowerLoop.update` with the simulated bus
voltage and whether the bus is up. The loop sets the supply's output to that
voltage (a write only when it moved by more than ``min_step_v``), cuts the
output when the bus collapses, and returns what the supply measured: the
boards' real draw, which the runner feeds into the simulated power balance so
that it drains the simulated battery. A caller that knows what the supply's
reading depends on (the runner in virtual time, for a simulated supply) passes
it, and the loop then reads the supply only when that changed.

It also switches boards through their relay channels (``set_board_power``,
``power_cycle``), which is how the flight software's power switches reach the
bench.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Hashable

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
        self._last: tuple[object, Measurement] | None = None  # (inputs, reading) of the last read
        self.readings_reused = 0  # updates that sent no request (see update's ``inputs``)
        if current_limit_a is not None:
            supply.set_current_limit(current_limit_a)

    def update(self, bus_voltage_v: float, bus_up: bool = True, *,
               inputs: Callable[[], Hashable] | None = None) -> PowerSample:
        """Follow the simulated bus; return the measured draw of the boards.

        A bus voltage outside the bench file's limits raises :class:`LimitError`
        before anything is sent (the caller decides: stop the run safely).

        ``inputs``: when the caller knows everything the supply's reading depends
        on (a simulated supply: ``VirtualBench.supply_inputs``), a function that
        returns a hashable summary of it, as it is after this call's writes. If
        that equals the one of the last reading and this call wrote nothing, the
        supply would answer with that reading again, so it stands and no request
        is sent. None (a real supply): always read.
        """
        m: Measurement | None = None
        sent = False
        if bus_up:
            if not math.isfinite(bus_voltage_v):
                raise LimitError(f"power loop: bus voltage {bus_voltage_v!r} is not a number")
            if self._set_v is None or abs(bus_voltage_v - self._set_v) >= self.min_step_v:
                if self._on is True:  # the common case: one request fewer
                    m = self.supply.set_voltage_and_measure(bus_voltage_v)
                else:
                    self.supply.set_voltage(bus_voltage_v)
                self._set_v, sent = bus_voltage_v, True
            if self._on is not True:
                self.supply.set_output(True)
                self._on, sent = True, True
        elif self._on is not False:
            self.supply.set_output(False)
            self._on, sent = False, True
        key = inputs() if inputs is not None else None
        if m is None:
            last = self._last
            if key is not None and not sent and last is not None and last[0] == key:
                m = last[1]
                self.readings_reused += 1
            else:
                m = self.supply.measure()
        self._last = (key, m) if key is not None else None
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
