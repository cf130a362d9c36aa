"""Scenario files: one mission test case, in TOML (docs/scenarios.md).

A scenario is portable between benches. It says which orbit to fly, from which
epoch and for how long, how fast, with which seed, which spacecraft and payload
workload, which faults to inject when, and which requirements to judge.

``load_scenario(path)`` reads and validates a file. Every error is a
:class:`ScenarioError` whose message names the file, the key (``[orbit]
altitude_km``, ``fault[2].at``) and what was expected. Nothing here reads the
wall clock or depends on the bench.

Durations and triggers are strings with units, resolved later when the orbit
period and eclipse times are known (``hil_rig.faults``):

>>> parse_duration("90 min", "duration")
Duration(value=90.0, unit='min')
>>> parse_trigger("eclipse_entry + 30 s", "at")
Trigger(event='eclipse_entry', index=1, offset_ns=30000000000)
>>> parse_trigger("orbit 2", "at")
Trigger(event='orbit', index=2, offset_ns=0)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import math
import pathlib
import re
import tomllib
from typing import Any

from hil_rig.constants import NS_PER_S

#: Unit name -> seconds. ``orbit``/``orbits`` are resolved with the orbit period.
_TIME_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "d": 86400.0,
}
_ORBIT_UNITS = ("orbit", "orbits")

#: Orbit events a fault may be triggered on.
TRIGGER_EVENTS = ("eclipse_entry", "eclipse_exit", "sunlight", "eclipse", "orbit", "t")


class ScenarioError(ValueError):
    """A scenario file is malformed: the message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class Duration:
    """A span of time: ``value`` in ``unit`` (a time unit, or ``orbit``)."""

    value: float
    unit: str

    @property
    def in_orbits(self) -> bool:
        return self.unit in _ORBIT_UNITS

    def to_ns(self, period_s: float | None = None) -> int:
        """Nanoseconds; orbit durations need the orbit period in seconds."""
        if self.in_orbits:
            if period_s is None:
                raise ValueError("a duration in orbits needs the orbit period")
            return int(round(self.value * period_s * NS_PER_S))
        return int(round(self.value * _TIME_UNITS[self.unit] * NS_PER_S))


@dataclasses.dataclass(frozen=True)
class Trigger:
    """When a fault starts: an orbit event (its ``index``-th occurrence, 1-based)
    plus an offset. ``event == 't'`` means simulation time ``offset_ns``.

    - ``eclipse_entry`` / ``eclipse_exit``: umbra entry / exit;
    - ``eclipse``: the first instant in umbra (t = 0 if the run starts there);
    - ``sunlight``: the first instant sunlit (t = 0 if the run starts sunlit);
    - ``orbit N``: the start of orbit N (orbit 1 starts at t = 0).
    """

    event: str
    index: int
    offset_ns: int


@dataclasses.dataclass(frozen=True)
class OrbitSpec:
    """Either a TLE (``tle`` holds its 2 or 3 lines) or mean elements."""

    tle: str | None = None
    tle_source: str | None = None
    altitude_km: float | None = None
    inclination_deg: float | None = None  # None with sso=True
    sso: bool = False
    ltan_h: float | None = None  # local time of ascending node, hours
    raan_deg: float | None = None
    #: Where the satellite is on its (circular) orbit at the epoch: 0 = ascending node.
    mean_anomaly_deg: float = 0.0


@dataclasses.dataclass(frozen=True)
class Spacecraft:
    """Spacecraft parameters handed to the plant (``hil_rig.plant.PlantParams``)."""

    battery_capacity_wh: float = 80.0
    soc_initial: float = 0.9
    #: Area of the main (nadir-opposite) solar panel.
    array_area_m2: float = 0.3
    array_efficiency: float = 0.29
    #: Platform load besides the payload boards and attitude actuators.
    bus_load_w: float = 6.0
    #: Every thermal node's temperature at t = 0.
    temp_initial_c: float = 20.0


@dataclasses.dataclass(frozen=True)
class Workload:
    """The payload workload: jobs the ground queues for the compute boards."""

    kind: str = "compute"  # compute (keep the job queue full) | idle (no jobs)
    job: str = "matmul"  # a firmware_bridge.workloads workload: matmul | mlp
    job_steps: int = 200
    #: Board-side deadline of each job, simulation seconds.
    deadline_s: float = 3600.0
    #: How results are verified: none | redundant (two boards; catches SEUs).
    verify: str = "none"
    #: Number of jobs queued in all; 0 keeps the queue full.
    jobs: int = 0
    boards: tuple[str, ...] = ()  # empty: every board on the bench


@dataclasses.dataclass(frozen=True)
class FaultSpec:
    """One scheduled fault. ``params`` are kind-specific (see FAULT_KINDS)."""

    index: int
    kind: str
    at: Trigger
    duration: Duration | None
    target: str | None
    params: dict[str, float | str]


@dataclasses.dataclass(frozen=True)
class CommandSpec:
    """One scheduled telecommand (``[[command]]``): its dictionary ``name`` and
    ``args`` (checked against flight_sw.dictionary at load), sent through the run's
    own TC path (``Run.command``) at ``at``; ``at_text`` as the file wrote it."""

    index: int
    name: str
    args: dict[str, Any]
    at: Trigger
    at_text: str


@dataclasses.dataclass(frozen=True)
class ProcedureSpec:
    """One scheduled procedure (``[[procedure]]``): a procedure file (the console's
    format, docs/console.md), read and checked at load, started at ``at`` and run by
    the run in simulation time: telecommands through its own TC path, faults through
    its injection, waits on time, acknowledgements and housekeeping. ``steps`` are
    :class:`hil_rig.procedure.Line`; ``digest`` the file's SHA-256."""

    index: int
    file: pathlib.Path
    at: Trigger
    at_text: str
    steps: tuple[Any, ...]
    digest: str


@dataclasses.dataclass(frozen=True)
class RequirementSpec:
    """One requirement, judged throughout the run (see REQUIREMENT_KINDS). Window
    parameters are parsed: ``after`` a Trigger, ``within`` a Duration."""

    index: int
    kind: str
    name: str
    params: dict[str, float | str | Duration | Trigger]


@dataclasses.dataclass(frozen=True)
class Scenario:
    path: pathlib.Path | None
    name: str
    description: str
    epoch: _dt.datetime
    duration: Duration
    #: None: virtual time (as fast as possible); a float: real time × scale.
    speed: float | None
    seed: int
    orbit: OrbitSpec
    spacecraft: Spacecraft
    workload: Workload
    faults: tuple[FaultSpec, ...]
    requirements: tuple[RequirementSpec, ...]
    commands: tuple[CommandSpec, ...] = ()
    procedures: tuple[ProcedureSpec, ...] = ()

    @property
    def epoch_iso(self) -> str:
        return self.epoch.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def replace(self, **changes: Any) -> Scenario:
        return dataclasses.replace(self, **changes)


# --- fault and requirement kinds ---------------------------------------------------
# kind -> (target domain, {param: (type, required, default, (lo, hi) or choices)})
_P = tuple[type, bool, Any, Any]

FAULT_KINDS: dict[str, tuple[str, dict[str, _P]]] = {
    # link (fault proxy between flight software and one board)
    "link_noise": ("board", {"byte_error_rate": (float, True, None, (0.0, 1.0))}),
    "link_drop": ("board", {"byte_drop_rate": (float, True, None, (0.0, 1.0))}),
    "link_disconnect": ("board", {}),
    # power (relay board and programmable supply)
    "relay_off": ("board", {}),
    "brownout": ("board", {"voltage_v": (float, False, 0.0, (0.0, 60.0))}),
    # payload (agent inject commands, test mode)
    "payload_hang": ("board", {}),
    "seu": ("board", {"count": (int, False, 1, (1, 1000))}),
    # sensors and actuators (plant inputs)
    "sensor_stuck": ("sensor", {}),
    "sensor_bias": ("sensor", {"bias": (float, True, None, (-1e6, 1e6))}),
    "sensor_dead": ("sensor", {}),
    "wheel_stuck": ("wheel", {}),
    # environment
    "hot_case": ("none", {"heat_load_factor": (float, False, 1.5, (1.0, 10.0))}),
}
SENSORS = ("sun", "gyro", "mag")
WHEELS = ("x", "y", "z")


def _mode_names() -> list[str]:
    # imported when needed: it brings the flight software with it
    from flight_sw.dictionary import MODE_NAMES

    return list(MODE_NAMES)


#: Where a requirement's event comes from: the flight software's event log, the rig,
#: or fault injection (the ``source`` column of the archive's events table).
EVENT_SOURCES = ("fsw", "rig", "fault")
#: The events the run records that a requirement may name, besides the flight
#: software's (``flight_sw.dictionary.EVENTS``). The run's own recorder must keep to
#: these names (tests/test_run_judges.py checks a real run's events against them).
RIG_EVENTS = ("run_start", "fault_scheduled", "eclipse_predicted_truth", "board_power", "command_scheduled",
              "command_sent", "procedure_scheduled", "procedure_started", "procedure_step", "procedure_done",
              "procedure_unfinished")
FAULT_EVENTS = tuple(sorted({f"{k}_{ph}" for k in FAULT_KINDS for ph in ("start", "end")}
                            | {"payload_hang_injected", "seu_injected", "inject_retry"}))


def known_events() -> dict[str, frozenset[str]]:
    """Event names by source, as ``event_seen`` / ``event_never_seen`` accept them."""
    from flight_sw.dictionary import EVENTS

    return {"fsw": frozenset(e.name for e in EVENTS), "rig": frozenset(RIG_EVENTS),
            "fault": frozenset(FAULT_EVENTS)}


#: A requirement's window: from ``after`` (a trigger) or from the start of fault
#: ``after_fault`` (its index, as in ``fault[0]``), else from t = 0; for ``within``.
_WINDOW: dict[str, _P] = {
    "after": (Trigger, False, None, None),
    "after_fault": (int, False, None, (0, 10**6)),
    "within": (Duration, False, None, None),
}
_EVENT: dict[str, _P] = {
    "event": (str, True, None, None),
    "source": (str, False, None, list(EVENT_SOURCES)),
    **_WINDOW,
}

REQUIREMENT_KINDS: dict[str, dict[str, _P]] = {
    "soc_floor": {"min": (float, True, None, (0.0, 1.0))},
    "payload_temp_max": {"max_c": (float, True, None, (-100.0, 200.0))},
    "hang_recovered": {"within_s": (float, True, None, (0.0, 1e6))},
    "sun_pointing": {
        "within_deg": (float, True, None, (0.0, 180.0)),
        "within_min": (float, True, None, (0.0, 1e4)),
    },
    "jobs_per_orbit": {"min": (int, True, None, (0, 10**6))},
    "yield_min": {"min": (float, True, None, (0.0, 1.0))},
    "seu_detected": {},
    "mode_reached": {"mode": (str, True, None, _mode_names), **_WINDOW,
                     "within": (Duration, True, None, None)},
    "event_seen": _EVENT,
    "event_never_seen": _EVENT,
}


# --- parsing -----------------------------------------------------------------------
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_DUR_RE = re.compile(rf"^\s*({_NUM})\s*([a-z]+)\s*$")
_TRIG_RE = re.compile(
    rf"^\s*(?P<event>[a-z_]+)(?:\s+(?P<index>\d+))?\s*(?:(?P<sign>[-+])\s*(?P<off>{_NUM}\s*[a-z]+))?\s*$"
)


def parse_duration(text: object, where: str, allow_orbits: bool = True) -> Duration:
    """``"90 min"``, ``"5400 s"``, ``"3 orbits"`` -> Duration (non-negative)."""
    units = "/".join(list(_TIME_UNITS) + (list(_ORBIT_UNITS) if allow_orbits else []))
    example = "'90 min' or '3 orbits'" if allow_orbits else "'90 min' or '30 s'"
    expect = f"a duration with a unit such as {example} (units: {units})"
    if not isinstance(text, str):
        raise ScenarioError(f"{where}: expected {expect}, got {text!r}")
    m = _DUR_RE.match(text)
    if not m:
        raise ScenarioError(f"{where}: expected {expect}, got {text!r}")
    value, unit = float(m.group(1)), m.group(2)
    if unit not in _TIME_UNITS and not (allow_orbits and unit in _ORBIT_UNITS):
        raise ScenarioError(f"{where}: unknown unit {unit!r} in {text!r}; expected {expect}")
    if not math.isfinite(value) or value < 0:
        raise ScenarioError(f"{where}: a duration must be finite and >= 0, got {text!r}")
    return Duration(value, unit)


#: The last instant a run can reach: simulation and archive times are signed 64-bit
#: counts of nanoseconds (since 1970 for absolute times), which end here.
LAST_INSTANT_NS = 2**63 - 1
LAST_INSTANT_ISO = "2262-04-11T23:47:16Z"


def check_run_duration(duration: Duration, text: str, epoch: _dt.datetime, where: str,
                       period_s: float | None = None) -> int:
    """A run's length in ns, or :class:`ScenarioError` naming ``where`` unless it is longer than
    zero and the run ends by :data:`LAST_INSTANT_NS`. A duration in orbits is checked only
    with the orbit's period."""
    if duration.in_orbits and period_s is None:
        return 0
    ns = duration.to_ns(period_s)
    if ns <= 0:
        raise ScenarioError(f"{where}: {text!r}: a run must be longer than zero")
    from hil_rig.clock import unix_ns

    epoch_ns = unix_ns(epoch)
    if epoch_ns + ns > LAST_INSTANT_NS:
        most_h = (LAST_INSTANT_NS - epoch_ns) / 3600 / NS_PER_S
        raise ScenarioError(
            f"{where}: {text!r} is too long: times are signed 64-bit nanosecond counts, which end "
            f"at {LAST_INSTANT_ISO}; from the epoch {epoch.isoformat()} a run lasts at most "
            f"{most_h:,.0f} h")
    return ns


def parse_trigger(text: object, where: str) -> Trigger:
    """``"600 s"``, ``"t + 600 s"``, ``"orbit 2"``, ``"eclipse_entry + 30 s"``,
    ``"eclipse_exit 2 - 10 s"``, ``"sunlight"``, ``"eclipse"``."""
    expect = (
        "a trigger such as '600 s', 'orbit 2', 'eclipse_entry + 30 s', "
        f"'eclipse_exit 2 - 10 s' or 'sunlight' (events: {', '.join(TRIGGER_EVENTS)})"
    )
    if not isinstance(text, str):
        raise ScenarioError(f"{where}: expected {expect}, got {text!r}")
    if _DUR_RE.match(text):
        d = parse_duration(text, where, allow_orbits=False)
        return Trigger("t", 1, d.to_ns())
    m = _TRIG_RE.match(text)
    if not m or m.group("event") not in TRIGGER_EVENTS:
        raise ScenarioError(f"{where}: expected {expect}, got {text!r}")
    event = m.group("event")
    index = int(m.group("index") or 1)
    if index < 1:
        raise ScenarioError(f"{where}: event numbers start at 1, got {text!r}")
    offset_ns = 0
    if m.group("off"):
        offset_ns = parse_duration(m.group("off"), where, allow_orbits=False).to_ns()
        if m.group("sign") == "-":
            offset_ns = -offset_ns
    if event == "orbit" and m.group("index") is None:
        raise ScenarioError(f"{where}: 'orbit' needs a number, e.g. 'orbit 2'; got {text!r}")
    return Trigger(event, index, offset_ns)


def parse_epoch(text: object, where: str) -> _dt.datetime:
    if isinstance(text, _dt.datetime):
        dt = text
    elif isinstance(text, str):
        try:
            dt = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ScenarioError(
                f"{where}: expected an ISO-8601 UTC time such as '2026-03-20T00:00:00Z', got {text!r}"
            ) from None
    else:
        raise ScenarioError(f"{where}: expected an ISO-8601 UTC time, got {text!r}")
    if dt.tzinfo is None:
        raise ScenarioError(f"{where}: the epoch must say it is UTC (end it with 'Z'), got {text!r}")
    return dt.astimezone(_dt.UTC)


class _Table:
    """Typed access to one TOML table; every error names file and key."""

    def __init__(self, file: str, prefix: str, data: object) -> None:
        self.file, self.prefix = file, prefix
        if not isinstance(data, dict):
            raise ScenarioError(f"{file}: {prefix}: expected a table, got {data!r}")
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self.file}: {self.prefix}{key}"

    def get(self, key: str, kind: type, default: Any = None, required: bool = False,
            bounds: Any = None) -> Any:
        self.used.add(key)
        if key not in self.data:
            if required:
                raise ScenarioError(f"{self.where(key)}: missing (required)")
            return default
        value = self.data[key]
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ScenarioError(f"{self.where(key)}: expected a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise ScenarioError(f"{self.where(key)}: expected a finite number, got {value!r}")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ScenarioError(f"{self.where(key)}: expected an integer, got {value!r}")
        elif kind is str:
            if not isinstance(value, str):
                raise ScenarioError(f"{self.where(key)}: expected a string, got {value!r}")
        elif kind is bool:
            if not isinstance(value, bool):
                raise ScenarioError(f"{self.where(key)}: expected true or false, got {value!r}")
        if isinstance(bounds, tuple) and kind in (int, float):
            lo, hi = bounds
            if not lo <= value <= hi:
                raise ScenarioError(f"{self.where(key)}: expected a value in [{lo}, {hi}], got {value!r}")
        elif isinstance(bounds, list) and value not in bounds:
            raise ScenarioError(f"{self.where(key)}: expected one of {bounds}, got {value!r}")
        return value

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ScenarioError(
                f"{self.where(unknown[0])}: unknown key; expected one of {sorted(self.used)}"
            )


def _parse_orbit(file: str, base: pathlib.Path | None, data: object) -> OrbitSpec:
    t = _Table(file, "[orbit] ", data)
    tle = t.get("tle", str)
    tle_file = t.get("tle_file", str)
    alt = t.get("altitude_km", float, bounds=(100.0, 50000.0))
    inc = t.raw("inclination_deg")
    ltan = t.get("ltan", str)
    raan = t.get("raan_deg", float, bounds=(-360.0, 360.0))
    anomaly = t.get("mean_anomaly_deg", float, default=None, bounds=(-360.0, 360.0))
    t.finish()
    if tle is not None and tle_file is not None:
        raise ScenarioError(f"{t.where('tle_file')}: give either tle or tle_file, not both")
    source = None
    if tle_file is not None:
        p = pathlib.Path(tle_file)
        if not p.is_absolute() and base is not None:
            p = base / p
        try:
            tle = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError(f"{t.where('tle_file')}: cannot read {str(p)!r}: {exc.strerror}") from None
        source = str(p)
    if tle is not None:
        if alt is not None or inc is not None or ltan is not None or raan is not None or anomaly is not None:
            raise ScenarioError(f"{t.where('tle')}: a TLE orbit takes no elements (altitude_km, ...)")
        from hil_rig.orbit import OrbitError, parse_tle

        # line numbers as in `hil orbit --tle`: of the TLE file, or of the tle string
        try:
            parse_tle(tle, f"{t.where('tle_file')}: {source}" if source else t.where("tle"))
        except OrbitError as exc:
            raise ScenarioError(str(exc)) from None
        lines = [ln for ln in tle.strip().splitlines() if ln.strip()]
        return OrbitSpec(tle="\n".join(lines), tle_source=source or "inline")
    if alt is None:
        raise ScenarioError(f"{t.where('altitude_km')}: missing; give tle, tle_file, or elements")
    sso = False
    inc_deg = None
    if inc == "sso":
        sso = True
    elif isinstance(inc, int | float) and not isinstance(inc, bool) and 0 <= inc <= 180:
        inc_deg = float(inc)
    else:
        raise ScenarioError(
            f"{t.where('inclination_deg')}: expected degrees in [0, 180] or 'sso', got {inc!r}"
        )
    if ltan is not None and raan is not None:
        raise ScenarioError(f"{t.where('ltan')}: give either ltan or raan_deg, not both")
    ltan_h = None
    if ltan is not None:
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", ltan)
        if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
            raise ScenarioError(f"{t.where('ltan')}: expected a local time 'HH:MM', got {ltan!r}")
        ltan_h = int(m.group(1)) + int(m.group(2)) / 60.0
    if ltan_h is None and raan is None:
        raise ScenarioError(f"{t.where('ltan')}: missing; give ltan ('10:30') or raan_deg")
    return OrbitSpec(altitude_km=alt, inclination_deg=inc_deg, sso=sso, ltan_h=ltan_h,
                     raan_deg=raan, mean_anomaly_deg=anomaly or 0.0)


def _parse_params(t: _Table, spec: dict[str, _P]) -> dict[str, Any]:
    """A kind's parameters. A key neither read so far (kind, name, ...) nor in ``spec``
    is an error naming that key, before any "missing" one: ``max_cc = 50`` is a
    misspelled ``max_c``, not a missing one."""
    allowed = t.used | set(spec)
    unknown = sorted(set(t.data) - allowed)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(allowed), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ScenarioError(f"{t.where(unknown[0])}: unknown key{hint} (expected one of {sorted(allowed)})")
    out = {}
    for key, (kind, required, default, bounds) in spec.items():
        if kind is Duration or kind is Trigger:
            text = t.get(key, str, required=required)
            if text is not None:
                out[key] = (parse_duration(text, t.where(key)) if kind is Duration
                            else parse_trigger(text, t.where(key)))
            continue
        v = t.get(key, kind, default=default, required=required,
                  bounds=list(bounds()) if callable(bounds) else bounds)
        if v is not None:
            out[key] = v
    return out


def _parse_fault(file: str, i: int, data: object) -> FaultSpec:
    t = _Table(file, f"fault[{i}].", data)
    kind = t.get("kind", str, required=True, bounds=sorted(FAULT_KINDS))
    domain, spec = FAULT_KINDS[kind]
    at = parse_trigger(t.get("at", str, required=True), t.where("at"))
    dur = t.raw("duration")
    duration = None if dur is None else parse_duration(dur, t.where("duration"), allow_orbits=True)
    target = None
    if domain == "board":
        target = t.get("board", str)  # None: the first board of the bench
    elif domain == "sensor":
        target = t.get("sensor", str, required=True, bounds=list(SENSORS))
    elif domain == "wheel":
        target = t.get("wheel", str, required=True, bounds=list(WHEELS))
    params = _parse_params(t, spec)
    t.finish()
    return FaultSpec(i, kind, at, duration, target, params)


def _parse_command(file: str, i: int, data: object) -> CommandSpec:
    """``[[command]] name = "set_mode", args = {mode = "COMPUTE"}, at = "eclipse_exit + 60 s"``:
    the name and arguments are checked against the flight software's dictionary."""
    from flight_sw.dictionary import COMMAND_BY_NAME, DictionaryError, check_command

    t = _Table(file, f"command[{i}].", data)
    name = t.get("name", str, required=True)
    if name not in COMMAND_BY_NAME:
        close = difflib.get_close_matches(name, sorted(COMMAND_BY_NAME), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ScenarioError(f"{t.where('name')}: unknown telecommand {name!r}{hint} "
                            f"(known: {', '.join(sorted(COMMAND_BY_NAME))})")
    at_text = t.get("at", str, required=True)
    at = parse_trigger(at_text, t.where("at"))
    args = t.raw("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ScenarioError(f"{t.where('args')}: expected a table such as {{mode = \"COMPUTE\"}}, got {args!r}")
    t.finish()
    try:
        checked = check_command(name, args)
    except DictionaryError as exc:
        raise ScenarioError(f"{t.where('args')}: {exc}") from None
    return CommandSpec(i, name, checked, at, at_text)


def _parse_procedure(file: str, base: pathlib.Path | None, i: int, data: object) -> ProcedureSpec:
    """``[[procedure]] file = "recover.proc", at = "eclipse_exit + 60 s"``: the file
    (relative to the scenario file) is read and every line checked now; an error names
    the scenario file, the key, and the procedure's file and line."""
    import hashlib

    from hil_rig.procedure import LineError, parse_procedure

    t = _Table(file, f"procedure[{i}].", data)
    path_text = t.get("file", str, required=True)
    at_text = t.get("at", str, required=True)
    at = parse_trigger(at_text, t.where("at"))
    t.finish()
    path = pathlib.Path(path_text)
    if not path.is_absolute() and base is not None:
        path = base / path
    try:
        steps = parse_procedure(path, None, scheduled=True)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except LineError as exc:
        raise ScenarioError(f"{t.where('file')}: {exc}") from None
    if not steps:
        raise ScenarioError(f"{t.where('file')}: procedure {path}: no steps (only comments or blank lines)")
    return ProcedureSpec(i, path.resolve(), at, at_text, tuple(steps), digest)


def _parse_requirement(file: str, i: int, data: object) -> RequirementSpec:
    t = _Table(file, f"requirement[{i}].", data)
    kind = t.get("kind", str, required=True, bounds=sorted(REQUIREMENT_KINDS))
    name = t.get("name", str, default=kind)
    params = _parse_params(t, REQUIREMENT_KINDS[kind])
    t.finish()
    if "after" in params and "after_fault" in params:
        raise ScenarioError(f"{t.where('after_fault')}: give either after or after_fault, not both")
    if "event" in params:
        known = known_events()
        src = params.get("source")
        names = known[src] if src else frozenset().union(*known.values())
        if params["event"] not in names:
            close = difflib.get_close_matches(params["event"], sorted(names), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ScenarioError(f"{t.where('event')}: no {src + ' ' if src else ''}event {params['event']!r}"
                                f"{hint} (known: {', '.join(sorted(names))})")
    return RequirementSpec(i, kind, name, params)


def parse_scenario(text: str, file: str = "<scenario>", base: pathlib.Path | None = None) -> Scenario:
    """Parse scenario TOML text. ``file`` names it in errors; ``base`` resolves tle_file."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{file}: not valid TOML: {exc}") from None
    top = _Table(file, "", doc)
    sc = _Table(file, "[scenario] ", top.raw("scenario") if "scenario" in doc else {})
    name = sc.get("name", str, default=pathlib.Path(file).stem)
    description = sc.get("description", str, default="")
    epoch = parse_epoch(sc.get("epoch", str, required=True), sc.where("epoch"))
    duration_text = sc.get("duration", str, required=True)
    duration = parse_duration(duration_text, sc.where("duration"))
    if duration.to_ns(period_s=1.0) <= 0:
        raise ScenarioError(f"{sc.where('duration')}: must be longer than zero")
    check_run_duration(duration, duration_text, epoch, sc.where("duration"))
    speed_raw = sc.raw("speed")
    if speed_raw is None or speed_raw == "virtual":
        speed = None
    elif isinstance(speed_raw, int | float) and not isinstance(speed_raw, bool) and 0 < speed_raw <= 1e6:
        speed = float(speed_raw)
    else:
        raise ScenarioError(
            f"{sc.where('speed')}: expected 'virtual' or a real-time scale factor in (0, 1e6], got {speed_raw!r}"
        )
    seed = sc.get("seed", int, default=0, bounds=(0, 2**63 - 1))
    sc.finish()

    if "orbit" not in doc:
        raise ScenarioError(f"{file}: [orbit]: missing (required)")
    orbit = _parse_orbit(file, base, top.raw("orbit"))

    st = _Table(file, "[spacecraft] ", top.raw("spacecraft") or {})
    defaults = Spacecraft()
    bounds = {
        "battery_capacity_wh": (0.1, 1e5), "soc_initial": (0.0, 1.0), "array_area_m2": (0.0, 100.0),
        "array_efficiency": (0.0, 1.0), "bus_load_w": (0.0, 1e4), "temp_initial_c": (-100.0, 150.0),
    }
    craft = Spacecraft(**{
        f.name: st.get(f.name, float, default=getattr(defaults, f.name), bounds=bounds[f.name])
        for f in dataclasses.fields(Spacecraft)
    })
    st.finish()

    wt = _Table(file, "[payload] ", top.raw("payload") or {})
    boards = wt.raw("boards")
    if boards is None:
        boards = []
    if not isinstance(boards, list) or not all(isinstance(b, str) for b in boards):
        raise ScenarioError(f"{wt.where('boards')}: expected a list of board names, got {boards!r}")
    workload = Workload(
        kind=wt.get("workload", str, default="compute", bounds=["compute", "idle"]),
        job=wt.get("job", str, default="matmul", bounds=["matmul", "mlp"]),
        job_steps=wt.get("job_steps", int, default=200, bounds=(1, 10_000_000)),
        deadline_s=wt.get("deadline_s", float, default=3600.0, bounds=(1.0, 1e7)),
        verify=wt.get("verify", str, default="none", bounds=["none", "redundant"]),
        jobs=wt.get("jobs", int, default=0, bounds=(0, 10**7)),
        boards=tuple(boards),
    )
    wt.finish()

    faults_raw = top.raw("fault") or []
    if not isinstance(faults_raw, list):
        raise ScenarioError(f"{file}: fault: expected [[fault]] tables, got {faults_raw!r}")
    faults = tuple(_parse_fault(file, i, f) for i, f in enumerate(faults_raw))
    cmds_raw = top.raw("command") or []
    if not isinstance(cmds_raw, list):
        raise ScenarioError(f"{file}: command: expected [[command]] tables, got {cmds_raw!r}")
    commands = tuple(_parse_command(file, i, c) for i, c in enumerate(cmds_raw))
    procs_raw = top.raw("procedure") or []
    if not isinstance(procs_raw, list):
        raise ScenarioError(f"{file}: procedure: expected [[procedure]] tables, got {procs_raw!r}")
    procedures = tuple(_parse_procedure(file, base, i, x) for i, x in enumerate(procs_raw))
    reqs_raw = top.raw("requirement") or []
    if not isinstance(reqs_raw, list):
        raise ScenarioError(f"{file}: requirement: expected [[requirement]] tables, got {reqs_raw!r}")
    reqs = tuple(_parse_requirement(file, i, r) for i, r in enumerate(reqs_raw))
    names = [r.name for r in reqs]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise ScenarioError(f"{file}: requirement[{i}].name: duplicate name {n!r}")
    for r in reqs:
        if "after_fault" in r.params and int(r.params["after_fault"]) >= len(faults):
            raise ScenarioError(f"{file}: requirement[{r.index}].after_fault: no fault[{r.params['after_fault']}] "
                                f"in this file ({len(faults)} [[fault]] table(s), numbered from 0)")
    top.finish()
    return Scenario(
        path=None, name=name, description=description, epoch=epoch, duration=duration,
        speed=speed, seed=seed, orbit=orbit, spacecraft=craft, workload=workload,
        faults=faults, requirements=reqs, commands=commands, procedures=procedures,
    )


def load_scenario(path: str | pathlib.Path) -> Scenario:
    """Read and validate a scenario file; raises ScenarioError naming file and key."""
    p = pathlib.Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read scenario file: {exc.strerror}") from None
    sc = parse_scenario(text, file=str(p), base=p.parent)
    return sc.replace(path=p.resolve())


def scenario_dirs() -> list[pathlib.Path]:
    """Where shipped scenarios live: ``hil_rig/scenarios`` (package data) first,
    then ``scenarios/`` at the repository root (editable installs)."""
    here = pathlib.Path(__file__).resolve().parent
    return [d for d in (here / "scenarios", here.parent / "scenarios") if d.is_dir()]


def find_scenario(name_or_path: str | None, extra_dirs: list[pathlib.Path] | None = None) -> pathlib.Path:
    """A path as given if it exists, else ``NAME.toml`` in the scenario dirs."""
    name = name_or_path or "nominal"
    p = pathlib.Path(name)
    if p.exists():
        return p
    dirs = list(extra_dirs or []) + scenario_dirs()
    stem = p.name[:-5] if p.name.endswith(".toml") else p.name
    for d in dirs:
        cand = d / f"{stem}.toml"
        if cand.exists():
            return cand
    known = sorted({f.stem for d in dirs for f in d.glob("*.toml")})
    raise ScenarioError(f"{name}: no such scenario file; shipped scenarios: {', '.join(known) or 'none'}")
