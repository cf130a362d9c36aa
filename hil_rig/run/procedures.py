"""Procedures a scenario file schedules (``[[procedure]]``): resolved to a start time
once the orbit's events are known, then run by the run's loop in simulation time,
step by step, as the console runs one (the same file format, hil_rig.procedure):

- a telecommand goes through the run's own TC path (``Run.command``'s, SPI 1);
- ``inject`` through the run's fault injection (``Run.inject``'s);
- ``wait D`` holds until D of simulation time has passed (exact, like a fault's start);
- ``wait ack`` until the flight software has accepted every TC this procedure sent
  (its ``tc_accepted`` event with that SPI and ARSN; it then executes it in the same
  frame, ``tc_failed`` reporting a failure);
- ``wait CHANNEL OP VALUE`` until the flight software's housekeeping meets it (checked
  every time the loop comes here, at least once a simulated second).

Each start, step, met wait and end is an event of the run (source ``rig``), so it is
archived and judged like a scheduled command; a procedure still waiting when the run
ends is ``procedure_unfinished``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from hil_rig.constants import NS_PER_S as NS
from hil_rig.faults import FaultScheduleError, OrbitEvents, resolve_trigger
from hil_rig.procedure import boards_named, condition_met
from hil_rig.run.commands import BOARD_ARG_COMMANDS
from hil_rig.scenario import ProcedureSpec


@dataclasses.dataclass
class ProcedureRun:
    """One scheduled procedure and where it is."""

    t_ns: int                 # its start
    spec: ProcedureSpec
    pc: int = 0               # the next step
    started: bool = False
    done: bool = False
    wait_since_ns: int = 0    # the current wait's start
    wait_until_ns: int | None = None  # a time wait's end
    pending_arsns: set[int] = dataclasses.field(default_factory=set)

    @property
    def name(self) -> str:
        return f"procedure[{self.spec.index}] {self.spec.file.name}"

    @property
    def waiting(self) -> Any:
        """The wait step it is in, or None."""
        if self.started and not self.done and self.pc > 0:
            s = self.spec.steps[self.pc - 1]
            if s.kind == "wait":
                return s
        return None


@dataclasses.dataclass
class ProcedureIO:
    """What a procedure drives, given by the run (its control API's own paths)."""

    send_tc: Callable[[str, dict[str, Any], str], int]  # name, args, note -> ARSN (SPI 1)
    inject: Callable[[dict[str, Any], str], Any]        # fault spec, note
    hk: Callable[[], dict[str, Any]]                    # the flight software's housekeeping now
    accepted: Callable[[], set[int]]                    # SPI 1 ARSNs accepted since the last call
    event: Callable[[int, str, str], None]              # t, kind, detail


def resolve_procedures(procs: Sequence[ProcedureSpec], ev: OrbitEvents, boards: Sequence[str],
                       file: str = "<scenario>") -> list[ProcedureRun]:
    """Every scheduled procedure at its start time; a trigger outside the run, or a
    board the run does not have, is a :class:`FaultScheduleError` naming the file,
    the table and the key."""
    out = []
    for p in procs:
        t = resolve_trigger(p.at, ev, where=f"{file}: procedure[{p.index}].at")
        missing = sorted(boards_named(list(p.steps)) - set(boards))
        if missing:
            raise FaultScheduleError(f"{file}: procedure[{p.index}].file: {p.file}: names board(s) "
                                     f"{', '.join(missing)}, not in this run (boards: {', '.join(boards)})")
        for s in p.steps:
            if s.kind == "tc" and s.name in BOARD_ARG_COMMANDS and s.args.get("board") not in boards:
                raise FaultScheduleError(f"{file}: procedure[{p.index}].file: {p.file}, line {s.lineno}: "
                                         f"no board {s.args.get('board')!r} in this run")
        out.append(ProcedureRun(t, p))
    out.sort(key=lambda r: (r.t_ns, r.spec.index))
    return out


def describe_at(r: ProcedureRun) -> str:
    return (f"t = {r.t_ns / NS:.3f} s: {r.name} ({len(r.spec.steps)} steps, sha256 {r.spec.digest[:12]}) "
            f"(at {r.spec.at_text!r})")


class Procedures:
    """The scenario's procedures, advanced by the run's loop (:meth:`advance`)."""

    def __init__(self, runs: Sequence[ProcedureRun]) -> None:
        self.runs = list(runs)
        #: some procedure is not done (a plain attribute: the loop reads it every step)
        self.active = bool(self.runs)

    def next_time_ns(self) -> int | None:
        """The next simulation time at which a procedure must act on the dot (a start,
        a time wait's end); waits on telemetry and acknowledgements are checked
        whenever :meth:`advance` runs."""
        times = [r.t_ns if not r.started else r.wait_until_ns for r in self.runs if not r.done]
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def advance(self, t: int, io: ProcedureIO) -> None:
        """Run every procedure as far as it goes at simulation time ``t``."""
        accepted = io.accepted()
        for r in self.runs:
            if r.done or r.t_ns > t:
                continue
            r.pending_arsns -= accepted
            if not r.started:
                r.started = True
                io.event(t, "procedure_started", f"{r.name}: {len(r.spec.steps)} steps")
            self._run(r, t, io)
        self.active = any(not r.done for r in self.runs)

    def _run(self, r: ProcedureRun, t: int, io: ProcedureIO) -> None:
        steps = r.spec.steps
        while True:
            w = r.waiting
            if w is not None:
                if w.name == "time" and t < (r.wait_until_ns or 0):
                    return
                if w.name == "ack" and r.pending_arsns:
                    return
                if w.name == "tm" and not condition_met(w, io.hk()):
                    return
                io.event(t, "procedure_step", f"{r.name}, line {w.lineno}: {w.text!r} met after "
                         f"{(t - r.wait_since_ns) / NS:.3f} s")
                r.wait_until_ns = None
            if r.pc >= len(steps):
                r.done = True
                io.event(t, "procedure_done", f"{r.name}: {len(steps)} steps, {(t - r.t_ns) / NS:.3f} s")
                return
            s = steps[r.pc]
            r.pc += 1
            note = f"{r.name}, line {s.lineno}"
            io.event(t, "procedure_step", f"{note}: {s.text}")
            if s.kind == "wait":
                r.wait_since_ns = t
                if s.name == "time":
                    r.wait_until_ns = t + round(s.args["s"] * NS)
            elif s.kind == "tc":
                r.pending_arsns.add(io.send_tc(s.name, dict(s.args), f" ({note})"))
            elif s.kind == "inject":
                io.inject(dict(s.args), note)
            else:  # parse_procedure(scheduled=True) lets nothing else through
                raise AssertionError(f"{note}: {s.kind!r} in a scheduled procedure")

    def finish(self, t: int, io: ProcedureIO) -> None:
        """At the run's end: each procedure not done, and where it stopped."""
        for r in self.runs:
            if r.done:
                continue
            if not r.started:
                where = "not started"
            else:
                w = r.waiting
                where = (f"waiting at line {w.lineno} ({w.text!r}) since t = {r.wait_since_ns / NS:.3f} s"
                         if w is not None else f"at step {r.pc}")
            io.event(t, "procedure_unfinished", f"{r.name}: {where}")
