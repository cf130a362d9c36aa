"""The executive: rate groups from one table, overrun detection, health pings and
the software watchdog, F´-style.

The schedule is :data:`RATE_GROUPS`: the base tick is the fastest group; every
group runs on ticks that are multiples of its divisor, in table order within a
tick. Time is virtual: :meth:`Executive.step_to` runs every tick due up to a
time, so a run is deterministic whatever the wall clock does.

Overrun: a group overruns when the :class:`~flight_sw.interfaces.Clock` read
before the group ran is before the group's next release and the clock read after
it is at or past it (ticks run to catch up are late, not overruns). In virtual time
the rig's clock does not move while flight software runs, so no overrun is
possible; in real time it measures the real thing.

Health: every ``health`` period the executive pings every component with a
fresh key; the watchdog is stroked only if every component answers with that
key. A component that raised in its last run does not answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flight_sw.events import EventLog
from flight_sw.interfaces import Clock

NS = 1_000_000_000


@dataclass(frozen=True)
class RateGroup:
    name: str
    period_ns: int
    members: tuple[str, ...]


#: The whole schedule, in one place. Members run in this order within a group.
RATE_GROUPS: tuple[RateGroup, ...] = (
    RateGroup("control", NS // 10, ("adcs",)),
    RateGroup(
        "housekeeping",
        NS,
        ("nav", "eps", "thermal", "telecommand", "payload", "fdir", "modes",
         "telemetry", "health"),
    ),
    RateGroup("planning", 10 * NS, ("eclipse",)),
)


class Component:
    """Base of every scheduled component: ``run(t_ns)`` and ``ping(key)``."""

    name = "component"

    def __init__(self) -> None:
        self.healthy = True  # cleared when run() raises; set again by a clean run

    def run(self, t_ns: int) -> None:  # pragma: no cover - overridden
        pass

    def ping(self, key: int) -> int | None:
        return key if self.healthy else None


class Watchdog:
    """Software watchdog: expires when not stroked for ``timeout_ns``."""

    def __init__(self, timeout_ns: int) -> None:
        self.timeout_ns = timeout_ns
        self.last_stroke_ns = 0
        self.expired = False
        self.strokes = 0

    def stroke(self, t_ns: int) -> None:
        self.last_stroke_ns = t_ns
        self.expired = False
        self.strokes += 1

    def check(self, t_ns: int) -> bool:
        """True when it has just expired (edge)."""
        if not self.expired and t_ns - self.last_stroke_ns >= self.timeout_ns:
            self.expired = True
            return True
        return False


class Executive:
    """Runs the rate-group table over named components in virtual time."""

    def __init__(
        self,
        clock: Clock,
        components: dict[str, Callable[[int], None] | Component],
        events: EventLog,
        groups: Sequence[RateGroup] = RATE_GROUPS,
        watchdog_timeout_ns: int = 3 * NS,
        on_watchdog: Callable[[int], None] | None = None,
    ) -> None:
        self.clock = clock
        self.groups = tuple(groups)
        base = min(g.period_ns for g in self.groups)
        for g in self.groups:
            if g.period_ns % base:
                raise ValueError(f"rate group {g.name}: period {g.period_ns} ns not a multiple of {base} ns")
            for m in g.members:
                if m not in components and m != "health":
                    raise ValueError(f"rate group {g.name}: no component named {m!r}")
        self.base_ns = base
        self.divisors = {g.name: g.period_ns // base for g in self.groups}
        self._table = tuple((g, self.divisors[g.name]) for g in self.groups)  # run_tick's loop
        # solo_ticks: by group, the divisors of the other groups
        self._others = {g.name: tuple(d for n, d in self.divisors.items() if n != g.name) for g in self.groups}
        self.components = components
        self.events = events
        self.watchdog = Watchdog(watchdog_timeout_ns)
        self.on_watchdog = on_watchdog
        self.tick = 0  # next tick to run
        self.overruns = 0
        self.overruns_by_group = {g.name: 0 for g in self.groups}
        self.runs_by_group = {g.name: 0 for g in self.groups}
        self.health_missed: dict[str, int] = {}
        self._ping_key = 0x5EED
        self._ran_first: tuple[int, str | None] = (-1, None)  # (tick, group) run in a batch
        # bench/fsw.py sets this to a dict to collect wall seconds per group run;
        # measurement only, never an input to any decision
        self.profile: dict[str, list[float]] | None = None

    @property
    def next_tick_ns(self) -> int:
        return self.tick * self.base_ns

    def step_to(self, t_ns: int) -> int:
        """Run every tick with time <= ``t_ns``; return how many ticks ran."""
        n = 0
        while self.tick * self.base_ns <= t_ns:
            self.run_tick()
            n += 1
        return n

    def solo_ticks(self, group: str, t_ns: int) -> int:
        """How many ticks from the next one, up to ``t_ns``, run ``group`` and
        nothing else (the span a caller may run in one batch, see :meth:`ran_solo`)."""
        k = self.tick
        last = t_ns // self.base_ns  # the last tick at or before t_ns
        if self.divisors[group] != 1:  # a slower group is not alone on every tick: count them
            n = 0
            while k + n <= last and all(((k + n) % d == 0) == (g == group) for g, d in self.divisors.items()):
                n += 1
            return n
        # every tick runs `group`: the span ends at the next tick of any other group
        # (a plain loop: this runs before every batch of control frames)
        end = last + 1
        for d in self._others[group]:
            nxt = -(-k // d) * d
            if nxt < end:
                end = nxt
        return max(0, end - k)

    def ran_solo(self, group: str, n: int) -> None:
        """Book ``n`` ticks that ran only ``group``, in a batch outside :meth:`run_tick`
        (no clock moves inside a batch, so no overrun can be seen)."""
        self.tick += n
        self.runs_by_group[group] += n

    def leads_tick(self, group: str, t_ns: int) -> bool:
        """True when the tick after the next :meth:`solo_ticks` span is at or before
        ``t_ns`` and ``group`` runs first in it: a batch may run that tick's ``group``
        too (see :meth:`ran_first`) and leave the rest of the tick to :meth:`run_tick`."""
        k = self.tick + self.solo_ticks(group, t_ns)
        if k * self.base_ns > t_ns:
            return False
        for g, d in self._table:
            if k % d == 0:
                return g.name == group  # the first group due in tick k
        return False

    def ran_first(self, group: str) -> None:
        """Book ``group`` of the next tick as run in a batch: :meth:`run_tick` runs the
        tick's other groups."""
        self._ran_first = (self.tick, group)
        self.runs_by_group[group] += 1

    def run_tick(self) -> None:
        k = self.tick
        t = k * self.base_ns
        done_k, done_group = self._ran_first
        for g, d in self._table:
            if k % d or (done_k == k and g.name == done_group):
                continue
            started = self.clock.now_ns()
            w0 = time.perf_counter() if self.profile is not None else 0.0
            for m in g.members:
                if m == "health":
                    self._health(t)
                else:
                    self._run(m, t)
            self.runs_by_group[g.name] += 1
            if self.profile is not None:
                self.profile.setdefault(g.name, []).append(time.perf_counter() - w0)
            # an overrun is this group's own work crossing its next release; a catch-up
            # tick that was already past it when it started is late, not an overrun
            if started < t + g.period_ns <= self.clock.now_ns():
                self.overruns += 1
                self.overruns_by_group[g.name] += 1
                self.events.emit(t, "overrun", group=g.name, late_ns=self.clock.now_ns() - t - g.period_ns)
        self.tick = k + 1

    def _run(self, name: str, t: int) -> None:
        c = self.components[name]
        try:
            if isinstance(c, Component):
                c.run(t)
                c.healthy = True
            else:
                c(t)
        except Exception as e:  # a failing component must not take the executive down
            if isinstance(c, Component):
                c.healthy = False
            self.events.emit(t, "health_missed", component=name, error=repr(e)[:200])

    def _health(self, t: int) -> None:
        self._ping_key = (self._ping_key * 1103515245 + 12345) & 0x7FFFFFFF
        key = self._ping_key
        all_ok = True
        for name, c in self.components.items():
            if not isinstance(c, Component):
                continue
            try:
                ok = c.ping(key) == key
            except Exception:
                ok = False
            if not ok:
                all_ok = False
                self.health_missed[name] = self.health_missed.get(name, 0) + 1
                self.events.emit(t, "health_missed", component=name)
        if all_ok:
            self.watchdog.stroke(t)
        elif self.watchdog.check(t):
            self.events.emit(t, "watchdog_expired", since_ns=t - self.watchdog.last_stroke_ns)
            if self.on_watchdog is not None:
                self.on_watchdog(t)
