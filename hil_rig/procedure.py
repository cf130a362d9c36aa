"""Console lines and procedures, shared by the console (typed or run from a file) and
by the run (a scenario's ``[[procedure]]``): the command line's grammar
(:func:`parse_line`), checked against the one TM/TC dictionary, and procedure files
(:func:`parse_procedure`): one line per step, and waits on acknowledgements, a
telemetry condition or simulation time."""

from __future__ import annotations

import dataclasses
import math
import pathlib
import shlex
from typing import Any

from flight_sw.dictionary import (
    COMMAND_BY_NAME,
    MODE_NAMES,
    DictionaryError,
    board_channel_names,
    check_command,
    hk_channels,
)
from hil_rig.constants import NS_PER_S as NS

CONTROL_WORDS = ("pause", "resume", "step", "speed", "inject", "run", "filter", "help", "quit")


class LineError(ValueError):
    """A command line (or a procedure line) that does not parse or validate."""


@dataclasses.dataclass(frozen=True)
class Line:
    kind: str                 # tc | inject | pause | resume | step | speed | run | filter | wait | help | quit
    name: str = ""            # tc: command name; inject: fault kind; wait: ack | time | tm
    args: dict[str, Any] = dataclasses.field(default_factory=dict)
    text: str = ""
    lineno: int = 0           # in its procedure file (0: typed)

    @property
    def hazardous(self) -> bool:
        return self.kind == "tc" and COMMAND_BY_NAME[self.name].hazardous


def _value(text: str) -> Any:
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _pairs(tokens: list[str], where: str) -> dict[str, str]:
    out = {}
    for tok in tokens:
        if "=" not in tok:
            raise LineError(f"{where}: expected key=value, got {tok!r}")
        k, v = tok.split("=", 1)
        out[k] = v
    return out


def parse_line(text: str) -> Line:
    """One console command line. A telecommand is checked against the dictionary
    (types and ranges) here, before anything is sent."""
    from hil_rig.scenario import FAULT_KINDS, ScenarioError, parse_duration

    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise LineError(f"{text!r}: {exc}") from None
    if not tokens:
        raise LineError("an empty line")
    word, rest = tokens[0], tokens[1:]
    if word in COMMAND_BY_NAME:
        cmd = COMMAND_BY_NAME[word]
        raw = _pairs(rest, word)
        types = {a.name: a.type for a in cmd.args}
        args: dict[str, Any] = {}
        for k, v in raw.items():
            t = types.get(k)
            if t in ("u8", "u32"):
                try:
                    args[k] = int(v)
                except ValueError:
                    raise LineError(f"{word}.{k}: expected an integer, got {v!r}") from None
            elif t == "f64":
                try:
                    args[k] = float(v)
                except ValueError:
                    raise LineError(f"{word}.{k}: expected a number, got {v!r}") from None
            else:
                args[k] = v
        try:
            args = check_command(word, args)
        except DictionaryError as exc:
            raise LineError(str(exc)) from None
        return Line("tc", word, args, text)
    if word == "inject":
        if not rest or rest[0] not in FAULT_KINDS:
            raise LineError(f"inject: give a fault kind: {', '.join(sorted(FAULT_KINDS))}")
        spec: dict[str, Any] = {"kind": rest[0]}
        for k, v in _pairs(rest[1:], "inject").items():
            spec[k] = v if k in ("duration", "at", "board", "sensor", "wheel") else _value(v)
        return Line("inject", rest[0], spec, text)
    if word in ("pause", "resume", "help", "quit") and not rest:
        return Line(word, text=text)
    if word == "step":
        d = " ".join(rest) or "1 s"
        try:
            parse_duration(d, "step", allow_orbits=False)
        except ScenarioError as exc:
            raise LineError(str(exc)) from None
        return Line("step", args={"duration": d}, text=text)
    if word == "speed":
        try:
            x = float(rest[0]) if len(rest) == 1 else math.nan
        except ValueError:
            x = math.nan
        if not x > 0 or math.isinf(x):
            raise LineError("speed: give one number > 0, e.g. 'speed 2'")
        return Line("speed", args={"speed": x}, text=text)
    if word == "run" and len(rest) == 1:
        return Line("run", args={"path": rest[0]}, text=text)
    if word == "filter":
        return Line("filter", args={"words": rest}, text=text)
    known = sorted(COMMAND_BY_NAME) + list(CONTROL_WORDS)
    raise LineError(f"unknown command {word!r}; known: {', '.join(known)}")


def completions() -> list[str]:
    """What the command line completes to: every telecommand with its arguments, the
    fault kinds and the console's own words."""
    from hil_rig.scenario import FAULT_KINDS

    out = []
    for c in COMMAND_BY_NAME.values():
        out.append(" ".join([c.name] + [f"{a.name}=" for a in c.args]).rstrip())
    for k, (domain, params) in FAULT_KINDS.items():
        target = {"board": " board=", "sensor": " sensor=", "wheel": " wheel="}.get(domain, "")
        out.append(f"inject {k}{target}" + "".join(f" {p}=" for p, (_t, req, *_r) in params.items() if req))
    out += ["pause", "resume", "step 1 s", "speed 1", "run ", "filter ", "help", "quit"]
    return out


# ---- procedures --------------------------------------------------------------------------
_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


#: what a procedure that a scenario file schedules may not do: time control is the
#: operator's (such a procedure runs inside the run's own loop, in simulation time)
NOT_SCHEDULABLE = ("pause", "resume", "step", "speed")


def parse_procedure(path: str | pathlib.Path, boards: list[str] | None, *,
                    scheduled: bool = False) -> list[Line]:
    """A procedure file: one console command per line, and waits:
    ``wait 30 s`` (simulation time from here: a relative time tag), ``wait ack``
    (until every command sent has its acknowledgement), ``wait CHANNEL OP VALUE``
    (a housekeeping condition, e.g. ``wait soc > 0.5`` or ``wait mode == SAFE``).
    ``#`` starts a comment. Any error refuses the whole file, naming the line.

    ``boards``: the run's boards (their HK channels may be waited on); None when they
    are not known yet (a scenario file at load): any ``board.NAME.…`` channel passes
    here and :func:`boards_named` gives the names for the run to check.
    ``scheduled``: for a scenario's ``[[procedure]]``, which may not pause, resume,
    step or change the speed."""
    from hil_rig.scenario import ScenarioError, parse_duration

    p = pathlib.Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LineError(f"procedure {p}: {getattr(exc, 'strerror', None) or exc}") from None
    names = {c.name for c in hk_channels(boards or [])}
    board_suffixes = {n.split(".", 2)[2] for n in board_channel_names("x")}
    out = []
    for i, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"procedure {p}, line {i}"
        words = line.split()
        if words[0] == "wait":
            if words[1:] == ["ack"]:
                out.append(Line("wait", "ack", text=line, lineno=i))
                continue
            if len(words) == 4 and words[2] in _OPS:
                ch, op, v = words[1], words[2], words[3]
                parts = ch.split(".")
                board_ch = boards is None and len(parts) == 3 and parts[0] == "board" and parts[2] in board_suffixes
                if ch not in names and not board_ch:
                    raise LineError(f"{where}: no housekeeping channel {ch!r}")
                value: Any = MODE_NAMES.index(v) if ch == "mode" and v in MODE_NAMES else _value(v)
                if isinstance(value, str):
                    raise LineError(f"{where}: {v!r} is not a number")
                out.append(Line("wait", "tm", {"channel": ch, "op": op, "value": value}, line, i))
                continue
            try:
                d = parse_duration(" ".join(words[1:]), where, allow_orbits=False)
            except ScenarioError as exc:
                raise LineError(f"{exc} (or 'wait ack', or 'wait CHANNEL OP VALUE')") from None
            out.append(Line("wait", "time", {"s": d.to_ns(None) / NS}, line, i))
            continue
        try:
            parsed = parse_line(line)
        except LineError as exc:
            raise LineError(f"{where}: {exc}") from None
        if parsed.kind in ("run", "quit", "help", "filter"):
            raise LineError(f"{where}: {parsed.kind!r} is not allowed in a procedure")
        if scheduled and parsed.kind in NOT_SCHEDULABLE:
            raise LineError(f"{where}: {parsed.kind!r} is not allowed in a procedure that a scenario "
                            "schedules (time control is the operator's)")
        out.append(dataclasses.replace(parsed, lineno=i))
    return out


def boards_named(steps: list[Line]) -> set[str]:
    """The boards that ``steps`` name: in a waited-on channel, a telecommand's or a
    fault's ``board`` argument."""
    out = set()
    for s in steps:
        if s.kind == "wait" and s.name == "tm" and s.args["channel"].startswith("board."):
            out.add(s.args["channel"].split(".")[1])
        elif s.kind in ("tc", "inject") and isinstance(s.args.get("board"), str):
            out.add(s.args["board"])
    return out


def condition_met(line: Line, hk: dict[str, Any]) -> bool:
    v = hk.get(line.args["channel"])
    return v is not None and _OPS[line.args["op"]](v, line.args["value"])
