"""FDIR: monitors with limits and persistence, and a bounded recovery ladder.

Each monitor watches one sampled value against ``[lo, hi]``. A sample outside
counts toward its persistence; a sample inside resets the count; ``None`` (no
data, e.g. a board that is powered off) neither counts nor resets. When the
count reaches ``persistence`` the monitor trips.

Recovery is per *target* (a payload board, or ``"spacecraft"``), so two
monitors on one board never command two actions in one cycle. The ladder is
:data:`LADDER`: retry, reset, power_cycle, isolate, safe. When a monitor trips,
the target's episode starts at the monitor's ``entry`` step (a heartbeat starts
at retry, an over-temperature at isolate, a low battery at safe) and fires it.
While any monitor of the target stays tripped, the next step fires every
``step_persistence`` cycles. After ``safe`` nothing more fires: escalation is
bounded by the ladder's length.

An episode clears when no monitor of the target violates for
``clear_persistence`` cycles. An isolated target is readmitted only on positive
evidence: every one of its monitors reported an in-limit value (not ``None``)
for ``clear_persistence`` cycles. At most one action per target per cycle.

A target may be *held* for a cycle (``evaluate(..., held=...)``): a payload board
that is still booting after a power on (within its ``boot_time_s``). Its monitors
neither count nor reset and its episode neither advances, nor clears, nor counts
evidence: FDIR judges a booting board neither dead nor healthy. So a board with a
long boot is not power-cycled again while it boots, and one that never comes up
meets the ladder where it stood once its boot time has passed (after a
power_cycle, isolate).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from flight_sw.events import EventLog

LADDER = ("retry", "reset", "power_cycle", "isolate", "safe")
SPACECRAFT = "spacecraft"


@dataclass(frozen=True)
class MonitorDef:
    name: str
    target: str
    lo: float | None
    hi: float | None
    persistence: int
    entry: str = "retry"  # ladder step the episode starts at
    unit: str = ""

    def violates(self, v: float) -> bool:
        return (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi) or v != v


@dataclass(frozen=True)
class Action:
    t_ns: int
    target: str
    action: str  # one of LADDER, or "readmit"
    cause: str
    step: int


class Fdir:
    def __init__(
        self,
        monitors: Iterable[MonitorDef],
        events: EventLog,
        step_persistence: int = 5,
        clear_persistence: int = 10,
    ) -> None:
        self.monitors = {m.name: m for m in monitors}
        for m in self.monitors.values():
            if m.entry not in LADDER:
                raise ValueError(f"monitor {m.name}: entry {m.entry!r} not in {LADDER}")
            if m.persistence < 1:
                raise ValueError(f"monitor {m.name}: persistence must be >= 1")
        self.events = events
        self.step_persistence = step_persistence
        self.clear_persistence = clear_persistence
        self.enabled = {n: True for n in self.monitors}
        self.count = {n: 0 for n in self.monitors}
        self.last_value: dict[str, float | None] = {n: None for n in self.monitors}
        self.targets: dict[str, list[MonitorDef]] = {}
        for m in self.monitors.values():
            self.targets.setdefault(m.target, []).append(m)
        self.step = {t: 0 for t in self.targets}  # next ladder index
        self.active = {t: False for t in self.targets}
        self.since_action = {t: 0 for t in self.targets}
        self.clean = {t: 0 for t in self.targets}  # cycles with no violation
        self.evidence = {t: 0 for t in self.targets}  # cycles with every monitor in limits
        self.isolated: set[str] = set()
        self.actions: list[Action] = []

    def tripped(self, name: str) -> bool:
        return self.count[name] >= self.monitors[name].persistence

    def isolate(self, t_ns: int, target: str, cause: str) -> None:
        """Ground-commanded isolation (no ladder)."""
        self.isolated.add(target)
        self.evidence[target] = 0

    def readmit(self, t_ns: int, target: str, cause: str) -> None:
        """Ground-commanded readmission: resets the target's ladder."""
        self.isolated.discard(target)
        self._reset(target)

    def _reset(self, target: str) -> None:
        self.step[target] = 0
        self.active[target] = False
        self.since_action[target] = 0
        for m in self.targets.get(target, ()):
            self.count[m.name] = 0

    def evaluate(self, t_ns: int, samples: Mapping[str, float | None],
                 held: Collection[str] = ()) -> list[Action]:
        """One FDIR cycle: update monitors from ``samples``; return the actions to take.
        ``held``: targets whose judgement waits this cycle (a board still booting)."""
        status: dict[str, bool | None] = {}
        count, enabled, last_value = self.count, self.enabled, self.last_value
        # per target, gathered in the one pass over the monitors (in table order):
        violating: set[str] = set()  # some monitor violates
        not_all_in: set[str] = set()  # some monitor is not in limits (violates, no data, disabled)
        tripped: dict[str, list[MonitorDef]] = {}  # enabled monitors at or past their persistence
        for name, m in self.monitors.items():
            v = samples.get(name)
            if v is not None:
                v = float(v)
            last_value[name] = v
            if m.target in held:
                continue
            if not enabled[name]:
                status[name] = None
                not_all_in.add(m.target)
                continue
            if v is None:  # no data: the count stands
                status[name] = None
                not_all_in.add(m.target)
            elif m.violates(v):
                status[name] = True
                violating.add(m.target)
                not_all_in.add(m.target)
                count[name] += 1
                if count[name] == m.persistence:
                    self.events.emit(t_ns, "fdir_trip", monitor=name, target=m.target, value=v,
                                     lo=m.lo, hi=m.hi, persistence=m.persistence)
            else:
                status[name] = False
                count[name] = 0
                continue  # in limits: not tripped
            if self.tripped(name):
                tripped.setdefault(m.target, []).append(m)
        out: list[Action] = []
        for target in self.targets:
            if target in held:
                continue
            act = self._target_cycle(t_ns, target, target in violating, target not in not_all_in,
                                     tripped.get(target, []), status)
            if act is not None:
                out.append(act)
                self.actions.append(act)
                self.events.emit(t_ns, "fdir_action", target=target, action=act.action,
                                 cause=act.cause, step=act.step)
        return out

    def _target_cycle(self, t_ns: int, target: str, violating: bool, all_in: bool,
                      tripped: list[MonitorDef], status: Mapping[str, bool | None]) -> Action | None:
        """One target's cycle; ``tripped``: its enabled monitors at or past their persistence."""
        self.clean[target] = 0 if violating else self.clean[target] + 1
        self.evidence[target] = self.evidence[target] + 1 if all_in else 0
        if target in self.isolated and self.evidence[target] >= self.clear_persistence:
            self.isolated.discard(target)
            self._reset(target)
            self.events.emit(t_ns, "fdir_cleared", target=target, readmitted=True)
            return Action(t_ns, target, "readmit", "monitors in limits while isolated", -1)
        if self.active[target] and not tripped and self.clean[target] >= self.clear_persistence:
            if target not in self.isolated:
                self._reset(target)
                self.events.emit(t_ns, "fdir_cleared", target=target, readmitted=False)
            return None
        if not tripped:
            if self.active[target]:
                self.since_action[target] += 1
            return None
        entry = max(LADDER.index(m.entry) for m in tripped)
        cause = ", ".join(f"{m.name}={self.last_value[m.name]}" for m in tripped)
        if not self.active[target]:
            self.active[target] = True
            step = max(entry, self.step[target])
        else:
            self.since_action[target] += 1
            if entry >= self.step[target]:
                step = entry  # a more severe monitor tripped: go straight to its step
            elif self.since_action[target] >= self.step_persistence and any(status[m.name] for m in tripped):
                step = self.step[target]
            else:
                return None
        if step >= len(LADDER):
            return None  # escalation is over: safe was the last step
        self.step[target] = step + 1
        self.since_action[target] = 0
        action = LADDER[step]
        if action == "isolate":
            self.isolated.add(target)
            self.evidence[target] = 0
        return Action(t_ns, target, action, cause, step)
