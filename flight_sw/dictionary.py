"""The one telemetry and telecommand dictionary.

Housekeeping channels, events and commands are defined here once, with units
and limits. The flight software encodes from it, the ground port and ground
tools decode with it, and the archive reads it for units and limits.

Packets are CCSDS Space Packets (big-endian):

* housekeeping, APID ``HK_APID``: primary header, secondary header (``t_ns``
  u64), then every channel in dictionary order, each in its declared format;
* events, APID ``EVENT_APID``: primary header, ``t_ns`` u64, event id u16,
  severity u8, then the event's fields as UTF-8 JSON;
* verification reports (PUS service 1), APID ``VERIFY_APID``: primary header,
  ``t_ns`` u64, service u8 (1), subtype u8 (1 acceptance success, 2 acceptance
  failure, 3 start success, 7 completion success, 8 completion failure), the
  request ID (the TC's first 4 bytes: packet ID and sequence control, as PUS-C),
  the TC's SPI u16 and ARSN u32, then on a failure a code u16 (``FAILURE_CODES``)
  and the reason as UTF-8;
* telecommands, APID ``TC_APID``: see :mod:`flight_sw.tc`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

HK_APID = 0x100
EVENT_APID = 0x101
#: PUS service 1 (request verification) reports to the ground
VERIFY_APID = 0x102
TC_APID = 0x080
TM_MAX_PACKET = 4096

MODE_NAMES = ("BOOT", "DETUMBLE", "SAFE", "SUN_POINT", "COMPUTE")


@dataclass(frozen=True)
class Channel:
    """A housekeeping channel: name, struct format, unit, red limits (``lo``, ``hi``)
    and yellow limits (``warn_lo``, ``warn_hi``: inside the red ones, a warning)."""

    name: str
    fmt: str  # struct code: "d" f64, "I" u32, "B" u8
    unit: str
    lo: float | None = None
    hi: float | None = None
    desc: str = ""
    warn_lo: float | None = None
    warn_hi: float | None = None

    def in_limits(self, value: float) -> bool:
        if self.lo is not None and value < self.lo:
            return False
        return not (self.hi is not None and value > self.hi)

    def limit_state(self, value: float) -> str:
        """'red' outside the red limits, 'yellow' outside the yellow ones, else 'green'."""
        if value != value:
            return "green"
        if not self.in_limits(value):
            return "red"
        if self.warn_lo is not None and value < self.warn_lo or self.warn_hi is not None and value > self.warn_hi:
            return "yellow"
        return "green"


#: Limits: red ones where leaving them is an off-nominal state, yellow ones where the
#: value is still fine but near its edge. Checked against a nominal run
#: (tests/test_console_limits.py: the nominal scenario's telemetry stays inside every
#: red limit). The battery is the plant's 4S Li-ion (OCV 12.0 V empty to 16.8 V full,
#: hil_rig.plant.PlantParams): red below the EPS's critical voltage (the OCV at SOC
#: 0.1, 13.6 V) and above 17.8 V (charging at the plant's 60 W limit lifts the
#: terminal ~0.3 V above the full OCV, and the plant models no constant-voltage
#: phase; a nominal run peaks at 17.3 V); yellow below the OCV at SOC 0.3 (14.4 V,
#: the SOC's own yellow limit) and above 17.5 V. Counters of things that should not
#: happen in a nominal run (failed jobs, SEUs, isolated boards, recovery actions,
#: refused TCs) are yellow from the first one.
_SPACECRAFT_CHANNELS: tuple[Channel, ...] = (
    Channel("mode", "B", "enum", desc="flight mode, index into MODE_NAMES"),
    Channel("soc", "d", "1", 0.15, 1.0, "battery state of charge (C core estimate)", warn_lo=0.3),
    Channel("battery_v", "d", "V", 13.6, 17.8, "battery voltage (4S Li-ion)", warn_lo=14.4, warn_hi=17.5),
    Channel("battery_i_a", "d", "A", -5.0, 5.0, "battery current, positive charging", warn_lo=-3.5, warn_hi=4.5),
    Channel("solar_power_w", "d", "W", desc="array generation"),
    Channel("load_power_w", "d", "W", desc="bus load"),
    Channel("eps_mode", "B", "enum", None, 1, "EPS power mode (C core): 0 NOMINAL, 1 LOW, 2 CRITICAL",
            warn_hi=0),
    Channel("payload_budget_w", "d", "W", 0.0, None, "EPS payload power budget (C core)"),
    Channel("thermal_derate", "d", "1", 0.0, 1.0, "thermal payload derating (C core)", warn_lo=0.5),
    Channel("throttle_cmd", "d", "1", 0.0, 1.0, "throttle commanded to the payloads"),
    Channel("rate_norm_rad_s", "d", "rad/s", None, 0.2, "body rate magnitude", warn_hi=0.05),
    Channel("pointing_error_rad", "d", "rad", desc="ADCS pointing error (C core; -1: not known yet)",
            warn_hi=0.1745),  # 10 degrees: the scenarios' sun_pointing bound; slews exceed it
    Channel("temp_battery_k", "d", "K", 268.15, 318.15, "battery temperature", warn_lo=273.15, warn_hi=313.15),
    Channel("temp_payload_max_k", "d", "K", 243.15, 363.15, "hottest payload zone", warn_lo=263.15,
            warn_hi=353.15),
    Channel("in_eclipse_pred", "B", "bool", desc="onboard predictor says eclipse now"),
    Channel("t_to_eclipse_s", "d", "s", desc="time to next predicted eclipse entry (-1: none)"),
    Channel("eclipse_duration_s", "d", "s", desc="predicted duration of next/current eclipse"),
    Channel("payload_suspended", "B", "bool", desc="payload suspended for energy"),
    Channel("jobs_queued", "I", "1"),
    Channel("jobs_running", "I", "1"),
    Channel("jobs_completed", "I", "1"),
    Channel("jobs_failed", "I", "1", warn_hi=0),
    Channel("seu_detected", "I", "1", desc="results caught corrupted", warn_hi=0),
    Channel("boards_isolated", "I", "1", warn_hi=0),
    Channel("tc_accepted", "I", "1"),
    Channel("tc_rejected", "I", "1", warn_hi=0),
    Channel("overruns", "I", "1", None, 0, "rate-group overruns since boot"),
    Channel("watchdog_ok", "B", "bool", 1, 1, "software watchdog stroked"),
    Channel("fdir_actions", "I", "1", desc="recovery actions taken since boot", warn_hi=0),
    # the reaction wheels, as the ADCS reads them: red at 6000 rpm (628 rad/s, where the
    # C core's default stops adding torque), yellow from 80 % of it; a nominal run
    # stays below 100 rad/s
    *(Channel(f"wheel_{a}_rad_s", "d", "rad/s", -628.0, 628.0, f"reaction wheel {a} speed",
              warn_lo=-500.0, warn_hi=500.0) for a in "xyz"),
    Channel("wheel_momentum_nms", "d", "N m s", desc="the wheels' stored angular momentum |J w| "
            "(the ADCS's wheel inertia)"),
    Channel("heater_mask", "I", "1", desc="heaters on: bit i is the heater of thermal zone i "
            "(the flight software's configured thermal_zones)"),
    # the spacecraft's other thermal nodes as the sensors read them (NaN where a sensor
    # set has none); no limits: the thermal design gives none for them, only the battery
    # and the payload have operating limits
    Channel("temp_radiator_k", "d", "K", desc="radiator temperature"),
    Channel("temp_structure_k", "d", "K", desc="structure temperature"),
)


def _board_channels(board: str) -> tuple[Channel, ...]:
    return (
        Channel(f"board.{board}.temp_k", "d", "K", 243.15, 363.15, f"{board} hottest zone", warn_lo=263.15,
                warn_hi=353.15),
        Channel(f"board.{board}.power_w", "d", "W", desc=f"{board} power"),
        Channel(f"board.{board}.state", "B", "enum", desc=f"{board} state, index into BOARD_STATES"),
        Channel(f"board.{board}.throttle", "d", "1", 0.0, 1.0, f"{board} throttle"),
    )


def board_channel_names(board: str) -> tuple[str, ...]:
    """The names of a board's housekeeping channels: temp_k, power_w, state, throttle."""
    return tuple(c.name for c in _board_channels(board))


BOARD_STATES = ("OFF", "IDLE", "BUSY", "SUSPENDED", "FAULT", "ISOLATED")


def hk_channels(boards: Sequence[str]) -> tuple[Channel, ...]:
    """Every housekeeping channel for a spacecraft carrying ``boards``."""
    out = list(_SPACECRAFT_CHANNELS)
    for b in boards:
        out.extend(_board_channels(b))
    return tuple(out)


@dataclass(frozen=True)
class EventDef:
    id: int
    name: str
    severity: str  # "info", "warning", "error", "security"
    desc: str


EVENTS: tuple[EventDef, ...] = (
    EventDef(1, "mode_transition", "info", "mode change: from, to, reason (commanded|autonomous), cause"),
    EventDef(2, "mode_refused", "warning", "transition refused by its guard: from, to, cause"),
    EventDef(3, "fdir_trip", "warning", "a monitor crossed its limit for its persistence"),
    EventDef(4, "fdir_action", "error", "a recovery step: target, action, cause, step"),
    EventDef(5, "fdir_cleared", "info", "a monitor back in limits; ladder reset"),
    EventDef(6, "overrun", "warning", "a rate group finished after its next release"),
    EventDef(7, "health_missed", "warning", "a component did not answer its health ping"),
    EventDef(8, "watchdog_expired", "error", "the software watchdog was not stroked in time"),
    EventDef(9, "tc_accepted", "info", "telecommand accepted and executed"),
    EventDef(10, "tc_rejected", "security", "telecommand refused: reason"),
    EventDef(11, "tc_failed", "warning", "authenticated telecommand failed in execution"),
    EventDef(12, "job_started", "info", "job dispatched to a board"),
    EventDef(13, "job_completed", "info", "job finished and its digest verified"),
    EventDef(14, "job_failed", "warning", "job failed or timed out"),
    EventDef(15, "seu_detected", "error", "a result digest did not verify"),
    EventDef(16, "payload_suspended", "info", "payload checkpointed and suspended before eclipse"),
    EventDef(17, "payload_resumed", "info", "payload resumed after eclipse"),
    EventDef(18, "board_power", "info", "board power switched"),
    EventDef(19, "eclipse_predicted", "info", "next eclipse entry and exit from onboard TLE"),
    EventDef(20, "tle_loaded", "info", "TLE uploaded"),
    EventDef(21, "link_error", "warning", "payload link error"),
)
EVENT_BY_NAME = {e.name: e for e in EVENTS}
EVENT_BY_ID = {e.id: e for e in EVENTS}


@dataclass(frozen=True)
class Arg:
    name: str
    type: str  # "u8", "u32", "f64", "str"
    unit: str = ""
    lo: float | None = None
    hi: float | None = None
    #: a string argument's allowed values, checked by :func:`check_command` (a ground
    #: tool's check before sending; the flight software refuses others in execution)
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class CommandDef:
    opcode: int
    name: str
    args: tuple[Arg, ...]
    desc: str
    #: a ground console arms it before it executes (mode changes, power switching,
    #: payload isolation, protection changes)
    hazardous: bool = False


COMMANDS: tuple[CommandDef, ...] = (
    CommandDef(1, "noop", (), "no operation; proves the uplink"),
    CommandDef(2, "set_mode", (Arg("mode", "str", choices=MODE_NAMES),), "request a mode (guarded)", hazardous=True),
    CommandDef(3, "upload_tle", (Arg("tle", "str"),), "upload the orbit as a 2- or 3-line TLE"),
    CommandDef(
        4,
        "queue_job",
        (
            Arg("workload", "str"),
            Arg("params", "str"),
            Arg("deadline_s", "f64", "s", 0.0, 1e7),
            Arg("verify", "str", choices=("none", "redundant", "known_answer")),
        ),
        "queue a payload job; params is JSON; verify is 'none', 'redundant' or 'known_answer'",
    ),
    CommandDef(5, "cancel_job", (Arg("job_id", "u32"),), "cancel a queued or running job"),
    CommandDef(6, "isolate_board", (Arg("board", "str"),), "isolate a board (power off)", hazardous=True),
    CommandDef(7, "readmit_board", (Arg("board", "str"),), "readmit an isolated board (power on)", hazardous=True),
    CommandDef(8, "set_throttle_cap", (Arg("cap", "f64", "1", 0.0, 1.0),), "cap the payload throttle"),
    CommandDef(9, "fdir_enable", (Arg("monitor", "str"), Arg("enable", "u8", "", 0, 1)), "enable or disable a monitor",
               hazardous=True),
)
COMMAND_BY_NAME = {c.name: c for c in COMMANDS}
COMMAND_BY_OPCODE = {c.opcode: c for c in COMMANDS}


class DictionaryError(ValueError):
    """A command or packet that does not match the dictionary."""


def check_args(cmd: CommandDef, args: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``args`` against ``cmd``; return them converted to their types."""
    names = {a.name for a in cmd.args}
    extra = set(args) - names
    if extra:
        raise DictionaryError(f"{cmd.name}: unknown argument(s) {sorted(extra)}")
    out: dict[str, Any] = {}
    for a in cmd.args:
        if a.name not in args:
            raise DictionaryError(f"{cmd.name}: missing argument {a.name!r}")
        v = args[a.name]
        if a.type == "str":
            if not isinstance(v, str):
                raise DictionaryError(f"{cmd.name}.{a.name}: expected a string, got {type(v).__name__}")
        elif a.type in ("u8", "u32"):
            if isinstance(v, bool) or not isinstance(v, int):
                raise DictionaryError(f"{cmd.name}.{a.name}: expected an integer, got {v!r}")
            top = 0xFF if a.type == "u8" else 0xFFFFFFFF
            if not 0 <= v <= top:
                raise DictionaryError(f"{cmd.name}.{a.name}: {v} outside {a.type}")
        elif a.type == "f64":
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise DictionaryError(f"{cmd.name}.{a.name}: expected a number, got {v!r}")
            v = float(v)
            if v != v or v in (float("inf"), float("-inf")):
                raise DictionaryError(f"{cmd.name}.{a.name}: not finite")
        if a.lo is not None and v < a.lo or a.hi is not None and v > a.hi:
            raise DictionaryError(f"{cmd.name}.{a.name}: {v} outside [{a.lo}, {a.hi}] {a.unit}")
        out[a.name] = v
    return out


def check_command(name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """A ground tool's check of a telecommand before it is sent (the console's command
    line, a scenario file's ``[[command]]``): a known name, the arguments' types and
    ranges (:func:`check_args`) and the allowed values of string arguments. Returns
    the arguments converted to their types; raises :class:`DictionaryError`."""
    cmd = COMMAND_BY_NAME.get(name)
    if cmd is None:
        raise DictionaryError(f"unknown command {name!r}; known: {', '.join(sorted(COMMAND_BY_NAME))}")
    out = check_args(cmd, args)
    for a in cmd.args:
        if a.choices and out[a.name] not in a.choices:
            raise DictionaryError(f"{cmd.name}.{a.name}: expected one of {', '.join(a.choices)}, "
                                  f"got {out[a.name]!r}")
    return out


def encode_args(cmd: CommandDef, args: Mapping[str, Any]) -> bytes:
    args = check_args(cmd, args)
    parts = []
    for a in cmd.args:
        v = args[a.name]
        if a.type == "str":
            b = v.encode("utf-8")
            if len(b) > 0xFFFF:
                raise DictionaryError(f"{cmd.name}.{a.name}: string too long")
            parts.append(struct.pack(">H", len(b)) + b)
        else:
            parts.append(struct.pack({"u8": ">B", "u32": ">I", "f64": ">d"}[a.type], v))
    return b"".join(parts)


def decode_args(cmd: CommandDef, data: bytes) -> dict[str, Any]:
    """Inverse of :func:`encode_args`; raises DictionaryError on any mismatch."""
    out: dict[str, Any] = {}
    pos = 0
    for a in cmd.args:
        try:
            if a.type == "str":
                (n,) = struct.unpack_from(">H", data, pos)
                pos += 2
                if pos + n > len(data):
                    raise DictionaryError(f"{cmd.name}.{a.name}: string runs past the packet")
                out[a.name] = data[pos : pos + n].decode("utf-8")
                pos += n
            else:
                fmt = {"u8": ">B", "u32": ">I", "f64": ">d"}[a.type]
                (out[a.name],) = struct.unpack_from(fmt, data, pos)
                pos += struct.calcsize(fmt)
        except (struct.error, UnicodeDecodeError) as e:
            raise DictionaryError(f"{cmd.name}.{a.name}: {e}") from None
    if pos != len(data):
        raise DictionaryError(f"{cmd.name}: {len(data) - pos} trailing byte(s)")
    return check_args(cmd, out)


# --- CCSDS space packet primary header -------------------------------------------------


def primary_header(apid: int, seq: int, data_len: int, *, tc: bool) -> bytes:
    """6-byte CCSDS primary header; ``data_len`` is the data field length in bytes."""
    if not 1 <= data_len <= 65536:
        raise DictionaryError(f"data field length {data_len} outside 1..65536")
    word0 = (0 << 13) | ((1 if tc else 0) << 12) | (1 << 11) | (apid & 0x7FF)
    word1 = (0b11 << 14) | (seq & 0x3FFF)
    return struct.pack(">HHH", word0, word1, data_len - 1)


def parse_primary_header(buf: bytes) -> tuple[int, bool, int, int]:
    """Return (apid, is_tc, seq, total packet length). Raises DictionaryError."""
    if len(buf) < 6:
        raise DictionaryError("shorter than a primary header")
    w0, w1, ln = struct.unpack_from(">HHH", buf, 0)
    if w0 >> 13 != 0:
        raise DictionaryError(f"packet version {w0 >> 13}, expected 0")
    return w0 & 0x7FF, bool(w0 & 0x1000), w1 & 0x3FFF, ln + 7


class TmCodec:
    """Encodes and decodes housekeeping and event packets from the dictionary."""

    def __init__(self, boards: Iterable[str]) -> None:
        self.boards = tuple(boards)
        self.channels = hk_channels(self.boards)
        self._fmt = struct.Struct(">Q" + "".join(c.fmt for c in self.channels))
        self._seq = {HK_APID: 0, EVENT_APID: 0, VERIFY_APID: 0}

    def _next(self, apid: int) -> int:
        s = self._seq[apid]
        self._seq[apid] = (s + 1) & 0x3FFF
        return s

    def encode_hk(self, t_ns: int, values: Mapping[str, float]) -> bytes:
        vals = []
        for c in self.channels:
            v = values.get(c.name, 0)
            if c.fmt == "d":
                vals.append(float(v))
            else:
                top = 0xFF if c.fmt == "B" else 0xFFFFFFFF
                vals.append(min(max(int(v), 0), top))
        body = self._fmt.pack(int(t_ns), *vals)
        return primary_header(HK_APID, self._next(HK_APID), len(body), tc=False) + body

    def encode_event(self, t_ns: int, name: str, fields: Mapping[str, Any]) -> bytes:
        ev = EVENT_BY_NAME[name]
        text = json.dumps(dict(fields), sort_keys=True, default=str).encode("utf-8")
        text = text[: TM_MAX_PACKET - 32]
        body = struct.pack(">QHB", int(t_ns), ev.id, SEVERITIES.index(ev.severity)) + text
        return primary_header(EVENT_APID, self._next(EVENT_APID), len(body), tc=False) + body

    def encode_verification(self, t_ns: int, subtype: int, request_id: bytes, spi: int, arsn: int,
                            reason: str = "") -> bytes:
        return encode_verification(self._next(VERIFY_APID), t_ns, subtype, request_id, spi, arsn, reason)

    def decode(self, pkt: bytes) -> dict[str, Any]:
        """Decode one TM packet into a dict with ``kind`` 'hk', 'event' or 'verification'."""
        apid, is_tc, _seq, n = parse_primary_header(pkt)
        if is_tc or n != len(pkt):
            raise DictionaryError("not a complete TM packet")
        body = pkt[6:]
        if apid == HK_APID:
            if len(body) != self._fmt.size:
                raise DictionaryError(f"hk packet of {len(body)} bytes, expected {self._fmt.size}")
            t, *vals = self._fmt.unpack(body)
            return {"kind": "hk", "t_ns": t, **{c.name: v for c, v in zip(self.channels, vals, strict=True)}}
        if apid == EVENT_APID:
            t, eid, sev = struct.unpack_from(">QHB", body, 0)
            ev = EVENT_BY_ID.get(eid)
            if ev is None:
                raise DictionaryError(f"unknown event id {eid}")
            return {"kind": "event", "t_ns": t, "name": ev.name, "severity": SEVERITIES[sev],
                    "fields": json.loads(body[11:].decode("utf-8"))}
        if apid == VERIFY_APID:
            if len(body) < _VERIFY.size:
                raise DictionaryError(f"verification packet of {len(body)} bytes")
            t, service, sub, rid, spi, arsn = _VERIFY.unpack_from(body, 0)
            if service != 1 or sub not in VERIFY_SUBTYPES:
                raise DictionaryError(f"verification report TM[{service},{sub}] unknown")
            out = {"kind": "verification", "t_ns": t, "subtype": sub, "report": VERIFY_SUBTYPES[sub],
                   "request_id": rid.hex(), "spi": spi, "arsn": arsn, "code": 0, "reason": ""}
            if sub in (2, 8):
                if len(body) < _VERIFY.size + 2:
                    raise DictionaryError("failure report without its code")
                (out["code"],) = struct.unpack_from(">H", body, _VERIFY.size)
                out["reason"] = body[_VERIFY.size + 2:].decode("utf-8", "replace")
            return out
        raise DictionaryError(f"unknown TM APID {apid:#x}")


#: an event's severity byte indexes this
SEVERITIES = ("info", "warning", "error", "security")

# --- PUS service 1: request verification -------------------------------------------------
#: a TC's acknowledgement flags (PUS-C's order: acceptance is the least significant bit)
ACK_ACCEPTANCE, ACK_START, ACK_PROGRESS, ACK_COMPLETION = 0b0001, 0b0010, 0b0100, 0b1000
ACK_ALL = ACK_ACCEPTANCE | ACK_START | ACK_COMPLETION  # (no progress reports: a TC runs in one frame)
#: service 1 subtypes the flight software sends
VERIFY_SUBTYPES = {1: "acceptance_success", 2: "acceptance_failure", 3: "start_success",
                   7: "completion_success", 8: "completion_failure"}
#: a failure report's code, by the flight software's reason
FAILURE_CODES = {"replay": 1, "outside_window": 2, "unknown_opcode": 3, "bad_args": 4, "execution": 16}
_VERIFY = struct.Struct(">QBB4sHI")


def encode_verification(seq: int, t_ns: int, subtype: int, request_id: bytes, spi: int, arsn: int,
                        reason: str = "") -> bytes:
    """One service 1 report (see the module's doc); ``reason`` on failures only."""
    body = _VERIFY.pack(int(t_ns), 1, subtype, bytes(request_id[:4]).ljust(4, b"\0"), spi, arsn)
    if subtype in (2, 8):
        body += struct.pack(">H", FAILURE_CODES.get(reason.split(":", 1)[0], FAILURE_CODES["execution"]))
        body += reason.encode("utf-8")[: TM_MAX_PACKET - 64]
    return primary_header(VERIFY_APID, seq, len(body), tc=False) + body


# The XTCE export of this dictionary is flight_sw/xtce.py (through yamcs-pymdb).
