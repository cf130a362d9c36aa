"""Fault schedule: scenario triggers resolved to simulation times, and the actions
they deliver (docs/scenarios.md, "Faults").

Resolution is a pure function of the scenario's faults and the orbit's events
(eclipse times from the rig's orbit/shadow model, the orbit period): nothing
here reads a clock or owns a model. The runner asks :class:`FaultSchedule` which
actions are due at each step and hands each one to the part that owns it:

- ``link_*`` -> the firmware_bridge fault proxy of that board;
- ``relay_off`` / ``brownout`` -> the relay board / programmable supply;
- ``payload_hang`` / ``seu`` -> the board agent's inject commands (test mode);
- ``sensor_*`` / ``wheel_stuck`` / ``hot_case`` -> plant inputs.

A fault with a ``duration`` gets a matching ``end`` action; one without lasts to
the end of the run (``relay_off`` without duration is a power-cycle: the relay
is switched back on by the flight software, not by the rig).
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence

from hil_rig.scenario import FaultSpec, Trigger


class FaultScheduleError(ValueError):
    """A trigger names an event that does not happen within the run."""


@dataclasses.dataclass(frozen=True)
class OrbitEvents:
    """What triggers resolve against, all in integer ns since the epoch.

    ``eclipses`` are umbra intervals ``(entry_ns, exit_ns)``; an entry of None
    means the run starts in eclipse, an exit of None that it ends in eclipse.
    """

    duration_ns: int
    period_ns: int
    eclipses: tuple[tuple[int | None, int | None], ...]

    def entries(self) -> list[int]:
        return [e for e, _ in self.eclipses if e is not None]

    def exits(self) -> list[int]:
        return [x for _, x in self.eclipses if x is not None]

    def in_eclipse_at_start(self) -> bool:
        return bool(self.eclipses) and self.eclipses[0][0] is None


@dataclasses.dataclass(frozen=True, order=True)
class FaultAction:
    """One thing to do at ``t_ns``: ``phase`` is ``start`` or ``end``."""

    t_ns: int
    seq: int  # order of actions at the same time: scenario order, ends first
    phase: str
    kind: str
    target: str | None
    params: tuple[tuple[str, float | str], ...]
    fault_index: int

    def param(self, key: str, default: float | str | None = None) -> float | str | None:
        return dict(self.params).get(key, default)

    def describe(self) -> str:
        tgt = f" {self.target}" if self.target else ""
        ps = "".join(f" {k}={v}" for k, v in self.params)
        return f"fault[{self.fault_index}] {self.kind}{tgt} {self.phase}{ps}"


def resolve_trigger(trig: Trigger, ev: OrbitEvents, where: str = "at") -> int:
    """Simulation time (ns) of a trigger; raises FaultScheduleError if it never happens."""
    n = trig.index
    if trig.event == "t":
        base = 0
    elif trig.event == "orbit":
        base = (n - 1) * ev.period_ns
    elif trig.event in ("eclipse_entry", "eclipse_exit"):
        times = ev.entries() if trig.event == "eclipse_entry" else ev.exits()
        if len(times) < n:
            raise FaultScheduleError(
                f"{where}: {trig.event} {n} does not happen within the run "
                f"({len(times)} found in {ev.duration_ns / 1e9:.0f} s)"
            )
        base = times[n - 1]
    elif trig.event == "eclipse":
        starts = ([0] if ev.in_eclipse_at_start() else []) + ev.entries()
        if len(starts) < n:
            raise FaultScheduleError(f"{where}: eclipse {n} does not happen within the run")
        base = starts[n - 1]
    elif trig.event == "sunlight":
        starts = ([] if ev.in_eclipse_at_start() else [0]) + ev.exits()
        if len(starts) < n:
            raise FaultScheduleError(f"{where}: sunlight {n} does not happen within the run")
        base = starts[n - 1]
    else:  # parse_trigger only lets known events through
        raise FaultScheduleError(f"{where}: unknown event {trig.event!r}")
    t = base + trig.offset_ns
    if t < 0 or t > ev.duration_ns:
        raise FaultScheduleError(
            f"{where}: resolves to t = {t / 1e9:.1f} s, outside the run [0, {ev.duration_ns / 1e9:.0f}] s"
        )
    return t


def resolve(faults: Sequence[FaultSpec], ev: OrbitEvents, file: str = "<scenario>") -> list[FaultAction]:
    """All start/end actions of a scenario's faults, sorted by time."""
    actions: list[FaultAction] = []
    for f in faults:
        t0 = resolve_trigger(f.at, ev, where=f"{file}: fault[{f.index}].at")
        params = tuple(sorted(f.params.items()))
        actions.append(FaultAction(t0, 2 * f.index + 1, "start", f.kind, f.target, params, f.index))
        if f.duration is not None:
            t1 = min(t0 + f.duration.to_ns(ev.period_ns / 1e9), ev.duration_ns)
            actions.append(FaultAction(t1, 2 * f.index, "end", f.kind, f.target, params, f.index))
    actions.sort()
    return actions


class FaultSchedule:
    """Hands out resolved actions as simulation time passes them."""

    def __init__(self, actions: Sequence[FaultAction]) -> None:
        self.actions = sorted(actions)
        self._next = 0

    def due(self, t_ns: int) -> list[FaultAction]:
        """Actions with ``t_ns`` at or before ``t_ns`` not handed out yet."""
        out = []
        while self._next < len(self.actions) and self.actions[self._next].t_ns <= t_ns:
            out.append(self.actions[self._next])
            self._next += 1
        return out

    def add(self, actions: Sequence[FaultAction]) -> None:
        """More actions (a fault injected during the run): none may be due before the
        last one handed out."""
        for a in actions:
            if self._next and a < self.actions[self._next - 1]:
                raise ValueError(f"{a.describe()} at t = {a.t_ns / 1e9:.3f} s is before the "
                                 f"schedule's current time")
            bisect.insort(self.actions, a, lo=self._next)

    def next_time_ns(self) -> int | None:
        return self.actions[self._next].t_ns if self._next < len(self.actions) else None

    @property
    def remaining(self) -> int:
        return len(self.actions) - self._next
