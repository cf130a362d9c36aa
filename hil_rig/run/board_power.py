"""Board power, in one place: a state machine per payload board (docs/architecture.md).

Every board of a run is in one of four states:

- ``off``: its relay channel is open (or the run has not powered it);
- ``booting``: powered, until its boot time has passed in simulation time;
- ``up``: powered and booted, its link is live;
- ``browned_out``: its relay is closed but its supply is below the board's
  minimum voltage.

:class:`BoardPower` owns every transition: relay switching (for the flight
software, as its ``PowerSwitch``, for faults and for the run's start),
brown-outs, and the boot waits that keep a virtual-time run deterministic.
On the virtual bench the emulated boards live in wall time: after a board
loses power the rig waits (wall clock, bounded) until its process has really
died, and when simulation time reaches a board's boot time it waits until the
board has really booted. A real board's power needs no such waits: its
``boot_time_s`` from the bench file is the time it is given.

A QEMU arm64 board (``qemu-arm64``) is powered the same way: the virtual bench
starts its QEMU process when its relay closes and kills it when the relay opens
or the supply browns out; the wait for its boot is a wait for its agent's start
line on its console, and a board that does not boot within its budget (``BOARD_WAIT_S``
or twice its boot time, whichever is longer) is a
:class:`RunError` naming it with the tail of its console. A QEMU process that
dies by itself is a power loss (an event; the board is off until its relay is
cycled), never a hang.

Each board kind's electrical figures (idle and peak power, minimum voltage,
boot time) come from one table, ``firmware_bridge.ratings``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from hil_rig.constants import NS_PER_S as NS
from hil_rig.run.errors import RunError

OFF, BOOTING, UP, BROWNED_OUT = "off", "booting", "up", "browned_out"
STATES = (OFF, BOOTING, UP, BROWNED_OUT)
#: wall-clock bound on waiting for an emulated board to die or boot
BOARD_WAIT_S = 60.0


class BoardPower:
    """The power of a run's boards; implements flight_sw's ``PowerSwitch``.

    ``boards``: name -> bench-file board spec (``channel``, ``supply``,
    ``boot_time_s``, ``min_voltage_v``). ``switch``: the relay board driver, or
    None (boards without a relay are powered from the start). ``bench``: the
    virtual bench, whose emulated boards the waits watch, or None. ``now_ns``:
    the simulation time. ``event(t_ns, source, kind, detail)`` records what
    happens. ``before_touch(names)`` runs before the rig touches a board's power.
    """

    def __init__(self, boards: dict[str, Any], switch: Any, bench: Any, now_ns: Callable[[], int],
                 event: Callable[[int, str, str, str], None],
                 before_touch: Callable[[Iterable[str]], None] = lambda names: None) -> None:
        self.specs = boards
        self.switch = switch
        self.bench = bench
        self._now = now_ns
        self._event = event
        self.before_touch = before_touch
        self.channel_on: dict[int, bool] = {}
        self.up_at: dict[str, int | None] = dict.fromkeys(boards)  # None: not powered
        self.browned: set[str] = set()
        #: boards whose process can die by itself (QEMU boards on the virtual bench)
        self._mortal = {n for n, b in boards.items() if getattr(b, "qemu", False)}
        #: supplies sagged by a brown-out fault: supply name -> volts, until it ends
        self.sagged: dict[str | None, float] = {}

    @property
    def supply_held(self) -> bool:
        """A brown-out holds a supply: the power loop leaves it alone until it ends."""
        return bool(self.sagged)

    def _starved(self, name: str) -> float | None:
        """The sagged voltage of the board's supply if it is below the board's minimum."""
        v = self.sagged.get(self.specs[name].supply)
        return v if v is not None and v < self.specs[name].min_voltage_v else None

    # ---- flight_sw PowerSwitch ------------------------------------------------
    def set(self, channel: int, on: bool) -> None:
        self.switch_channel(channel, on, cause="flight software")

    def get(self, channel: int) -> bool:
        return self.channel_on.get(channel, False)

    # ---- state ------------------------------------------------------------------
    def state(self, name: str) -> str:
        if name in self.browned:
            return BROWNED_OUT
        t = self.up_at[name]
        if t is None:
            return OFF
        return UP if self._now() >= t else BOOTING

    def is_up(self, name: str) -> bool:
        t = self.up_at.get(name)
        if t is not None and name in self._mortal and self._emulated(name) and self.bench.board_died(name):
            self._lost(name)
            return False
        return t is not None and self._now() >= t

    def _lost(self, name: str) -> None:
        """The board's process died while powered (a QEMU board's crash): it is off."""
        self.up_at[name] = None
        tail = self.bench.board_log_tail(name, 3).replace("\n", " | ")
        self._event(self._now(), "rig", "board_power", f"{name} power lost: its process died ({tail})")

    def relay_closed(self, name: str) -> bool:
        ch = self.specs[name].channel
        return ch is None or self.switch is None or self.channel_on.get(ch, False)

    def boards_on(self, channel: int) -> list[str]:
        return [n for n, b in self.specs.items() if b.channel == channel]

    def next_boot_ns(self, after_ns: int) -> int | None:
        """The earliest boot time later than ``after_ns``, or None."""
        due = [t for t in self.up_at.values() if t is not None and t > after_ns]
        return min(due) if due else None

    def booted_between(self, t0_ns: int, t1_ns: int) -> list[str]:
        """Boards whose boot time falls in ``(t0_ns, t1_ns]``."""
        return [n for n, t in self.up_at.items() if t is not None and t0_ns < t <= t1_ns]

    # ---- transitions -------------------------------------------------------------
    def power_on_all(self, cause: str) -> None:
        """At the run's start: close each board's relay (a board without one is up at once),
        then wait until every board has booted."""
        for name, b in self.specs.items():
            if b.channel is not None and self.switch is not None:
                self.switch_channel(b.channel, True, cause=cause)
            else:
                self.up_at[name] = 0
        for name in self.specs:
            self.wait_booted(name)
            if getattr(self.specs[name], "qemu", False) and self.up_at[name] is not None:
                # a QEMU board's boot is its Linux booting, in wall time, before the run's
                # first second: it is up now (its rated boot time is a real-time figure)
                self.up_at[name] = min(self.up_at[name], self._now())

    def switch_channel(self, channel: int, on: bool, cause: str) -> None:
        if self.switch is None:
            return
        names = self.boards_on(channel)
        self.before_touch(names)
        self.switch.set_channel(channel, on)
        was = self.channel_on.get(channel)
        self.channel_on[channel] = on
        if was == on:
            return
        t = self._now()
        for name in names:
            self._event(t, "rig", "board_power", f"{name} relay {'on' if on else 'off'} ({cause})")
            if on:
                volts = self._starved(name)
                if volts is not None:  # its supply is sagged: it boots when the supply is back
                    self.browned.add(name)
                    self._event(t, "rig", "board_power", f"{name} browned out ({volts:g} V)")
                elif name not in self.browned:
                    self.up_at[name] = t + int(self.specs[name].boot_time_s * NS)
            else:
                self.up_at[name] = None
                self.browned.discard(name)
                self._wait_down(name, "after its relay opened")

    def fed_by(self, supply: str | None) -> list[str]:
        return [n for n, b in self.specs.items() if b.supply == supply]

    def brown_out(self, supply: str | None, volts: float) -> list[str]:
        """The supply ``supply`` has sagged to ``volts``: every board it feeds whose
        minimum voltage is above that loses power. Returns the boards the supply feeds."""
        fed = self.fed_by(supply)
        self.before_touch(fed)
        self.sagged[supply] = volts
        t = self._now()
        for name in fed:
            if volts < self.specs[name].min_voltage_v and self.up_at[name] is not None:
                self.up_at[name] = None
                self.browned.add(name)
                self._event(t, "rig", "board_power", f"{name} browned out ({volts:g} V)")
                self._wait_down(name, "into a brownout")
        return fed

    def restore(self, supply: str | None) -> list[str]:
        """The brown-out of ``supply`` has ended: its boards whose relay is closed boot again."""
        fed = self.fed_by(supply)
        self.before_touch(fed)
        self.sagged.pop(supply, None)
        t = self._now()
        for name in fed:
            self.browned.discard(name)
            if self.relay_closed(name) and self.up_at[name] is None:
                self.up_at[name] = t + int(self.specs[name].boot_time_s * NS)
                self._event(t, "rig", "board_power", f"{name} power back after brownout")
        return fed

    # ---- waits (emulated boards) -----------------------------------------------------
    def _emulated(self, name: str) -> bool:
        return self.bench is not None and name in self.bench.boards

    def _wait_down(self, name: str, when: str) -> None:
        if self._emulated(name):
            self.bench.wake()
            if not self.bench.wait_board(name, running=False, timeout_s=BOARD_WAIT_S):
                raise RunError(f"board {name}: still running {BOARD_WAIT_S:.0f} s {when}")

    def wait_booted(self, name: str) -> None:
        """Hold simulation time until an emulated board that is due up has booted."""
        if not self._emulated(name):
            return
        budget = max(BOARD_WAIT_S, 2 * self.specs[name].boot_time_s)  # a QEMU board boots for a minute
        deadline = time.monotonic() + budget
        self.bench.wake()
        while not self.bench.board_booted(name):
            if self.bench.board_died(name):
                raise RunError(f"board {name}: its process died while booting; its console:\n"
                               f"{self.bench.board_log_tail(name)}")
            if time.monotonic() > deadline:
                tail = self.bench.board_log_tail(name)
                raise RunError(f"board {name}: did not boot within {budget:.0f} s (wall clock)"
                               + (f"; its console:\n{tail}" if tail else ""))
            time.sleep(0.005)
