"""Telecommands a scenario file schedules (``[[command]]``): resolved to simulation
times once the orbit's events are known, handed out as time passes them, and sent
by the run through its own TC path (``Run.command``'s), like a fault's start is
applied by its handler."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from hil_rig.constants import NS_PER_S as NS
from hil_rig.faults import FaultScheduleError, OrbitEvents, resolve_trigger
from hil_rig.scenario import CommandSpec

#: telecommands whose ``board`` argument must name a board of the run
BOARD_ARG_COMMANDS = ("isolate_board", "readmit_board")


@dataclasses.dataclass(frozen=True, order=True)
class ScheduledCommand:
    t_ns: int
    index: int          # command[index] in the scenario file
    name: str
    args: tuple[tuple[str, Any], ...]
    at_text: str

    def describe(self) -> str:
        args = " ".join(f"{k}={v}" for k, v in self.args)
        return f"command[{self.index}] {self.name}{' ' + args if args else ''} (at {self.at_text!r})"


def resolve_commands(commands: Sequence[CommandSpec], ev: OrbitEvents, boards: Sequence[str],
                     file: str = "<scenario>") -> list[ScheduledCommand]:
    """Every scheduled command at its simulation time, in order; a trigger outside the
    run or a board the run does not have is a :class:`FaultScheduleError` naming the
    file, the table and the key."""
    out = []
    for c in commands:
        t = resolve_trigger(c.at, ev, where=f"{file}: command[{c.index}].at")
        if c.name in BOARD_ARG_COMMANDS and c.args.get("board") not in boards:
            raise FaultScheduleError(f"{file}: command[{c.index}].args: {c.name}.board: no board "
                                     f"{c.args.get('board')!r} in this run (boards: {', '.join(boards)})")
        out.append(ScheduledCommand(t, c.index, c.name, tuple(c.args.items()), c.at_text))
    out.sort()
    return out


def describe_at(c: ScheduledCommand) -> str:
    return f"t = {c.t_ns / NS:.3f} s: {c.describe()}"
