"""The event log: every mode transition, FDIR step and security event."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flight_sw.dictionary import EVENT_BY_NAME


@dataclass(frozen=True)
class Event:
    t_ns: int
    name: str
    severity: str
    fields: dict[str, Any] = field(default_factory=dict)


class EventLog:
    """Append-only list of events; names must be in the dictionary."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self.events: list[Event] = []
        self.maxlen = maxlen
        self.dropped = 0
        self.listeners: list[Callable[[Event], None]] = []

    def emit(self, t_ns: int, name: str, **fields: Any) -> Event:
        ev = Event(int(t_ns), name, EVENT_BY_NAME[name].severity, fields)
        if len(self.events) >= self.maxlen:
            del self.events[: self.maxlen // 10]
            self.dropped += self.maxlen // 10
        self.events.append(ev)
        for fn in self.listeners:
            fn(ev)
        return ev

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]

    def __iter__(self):  # noqa: ANN204
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)
