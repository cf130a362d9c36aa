"""orbit-hil payload link protocol: CCSDS Space Packets with PUS-C-like services.

Stdlib only (the board agent runs with nothing but Python, pyserial and numpy).
The wire format is specified in docs/protocol.md; this module is its reference
implementation.

Packet = primary header (6 B) + PUS-C secondary header (TC 5 B, TM 15 B)
+ application data + packet error control (CRC-16-CCITT, 2 B).

>>> p = Packet(ptype=TC, apid=APID_AGENT, seq=7, service=17, subtype=1, source_id=42)
>>> decode_packet(encode_packet(p)) == p
True
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import struct
from dataclasses import dataclass

PROTOCOL_VERSION = 2
#: Minor version: additions an old peer safely ignores (1: time_sync "report";
#: 2: verification reports by the TC's acknowledgement flags, TCs on other APIDs refused).
PROTOCOL_MINOR = 0
PUS_VERSION = 2  # PUS-C

TM = 0
TC = 1

#: Largest space packet (primary header through CRC), in bytes. Anything larger
#: is rejected by encoder and decoder. On the wire a frame is at most
#: MAX_PACKET_BYTES + 18 bytes: COBS adds at most 4096 // 254 + 1 = 17 code bytes
#: (``framing.max_frame_bytes``), then the delimiter.
MAX_PACKET_BYTES = 4096

PRIMARY_HEADER_BYTES = 6
TC_SECONDARY_HEADER_BYTES = 5
TM_SECONDARY_HEADER_BYTES = 15
CRC_BYTES = 2
MAX_TC_DATA_BYTES = MAX_PACKET_BYTES - PRIMARY_HEADER_BYTES - TC_SECONDARY_HEADER_BYTES - CRC_BYTES
MAX_TM_DATA_BYTES = MAX_PACKET_BYTES - PRIMARY_HEADER_BYTES - TM_SECONDARY_HEADER_BYTES - CRC_BYTES

# Application process identifiers. Each APID counts its own 14-bit sequence.
APID_AGENT = 0x050  # TC: agent commands; TM: their replies
APID_JOBS = 0x051  # TC: job commands; TM: their replies
APID_HK = 0x052  # TM: periodic housekeeping reports
APID_EVENTS = 0x053  # TM: event reports
APID_NAMES = {APID_AGENT: "agent", APID_JOBS: "jobs", APID_HK: "hk", APID_EVENTS: "events"}
#: The APIDs a board takes telecommands on; a TC on any other is refused (see the agent).
COMMAND_APIDS = (APID_AGENT, APID_JOBS)
#: CCSDS idle packets (133.0-B-2): never sent; a board discards one it receives.
APID_IDLE = 0x7FF

SEQ_MODULO = 1 << 14

# PUS acknowledgement flags (TC secondary header, low 4 bits).
ACK_ACCEPTANCE = 0x1
ACK_START = 0x2
ACK_PROGRESS = 0x4
ACK_COMPLETION = 0x8

# Services / subtypes used.
ST_VERIFICATION = 1
ST_HK = 3
ST_EVENT = 5
ST_FUNCTION = 8
ST_TEST = 17
TM_ACCEPT_OK = (1, 1)
TM_ACCEPT_FAIL = (1, 2)
TM_START_OK = (1, 3)
TM_START_FAIL = (1, 4)  # never sent: nothing can fail between acceptance and start
TM_COMPLETE_OK = (1, 7)
TM_COMPLETE_FAIL = (1, 8)
TC_HK_ENABLE_PERIODIC = (3, 5)
TC_HK_DISABLE_PERIODIC = (3, 6)
TM_HK_REPORT = (3, 25)
TC_HK_ONE_SHOT = (3, 27)
TC_FUNCTION = (8, 1)
TM_FUNCTION_REPORT = (8, 130)  # mission-specific: function result (JSON)
TC_PING = (17, 1)
TM_PING = (17, 2)
EVENT_SEVERITY_SUBTYPES = {"info": 1, "low": 2, "medium": 3, "high": 4}

# Function identifiers for TC[8,1]: name -> (id, apid, test_mode_only)
FUNCTIONS: dict[str, tuple[int, int, bool]] = {
    "board_info": (1, APID_AGENT, False),
    "set_throttle": (2, APID_AGENT, False),
    "reboot": (3, APID_AGENT, False),
    "time_sync": (4, APID_AGENT, False),
    "start_job": (10, APID_JOBS, False),
    "job_status": (11, APID_JOBS, False),
    "checkpoint": (12, APID_JOBS, False),
    "suspend": (13, APID_JOBS, False),
    "resume": (14, APID_JOBS, False),
    "cancel": (15, APID_JOBS, False),
    "inject_seu": (20, APID_JOBS, True),
    "inject_hang": (21, APID_AGENT, True),
    "test_ledger": (22, APID_AGENT, True),
}
FUNCTION_NAMES = {fid: name for name, (fid, _a, _t) in FUNCTIONS.items()}

# Failure codes (uint16) in TM[1,2] / TM[1,8].
ERR_UNKNOWN_SERVICE = 1
ERR_UNKNOWN_FUNCTION = 2
ERR_BAD_ARGUMENTS = 3
ERR_NOT_TEST_MODE = 4
ERR_NO_SUCH_JOB = 5
ERR_BAD_STATE = 6
ERR_INTERNAL = 7
ERR_BUSY = 8
ERR_UNKNOWN_APID = 9
ERROR_NAMES = {
    ERR_UNKNOWN_SERVICE: "unknown service",
    ERR_UNKNOWN_FUNCTION: "unknown function",
    ERR_BAD_ARGUMENTS: "bad arguments",
    ERR_NOT_TEST_MODE: "not in test mode",
    ERR_NO_SUCH_JOB: "no such job",
    ERR_BAD_STATE: "bad state",
    ERR_INTERNAL: "internal error",
    ERR_BUSY: "busy",
    ERR_UNKNOWN_APID: "not a command APID",
}

# Event identifiers (TM[5,x]).
EVENTS = {
    "boot": 1,
    "job_done": 2,
    "job_failed": 3,
    "deadline_missed": 4,
    "thermal_throttle": 5,
    "throttle_changed": 6,
    "job_state": 7,
    "link_down": 100,  # generated locally by the Link, never sent by a board
    "link_up": 101,
}
EVENT_NAMES = {v: k for k, v in EVENTS.items()}

_PRIMARY = struct.Struct(">HHH")
_TC_SEC = struct.Struct(">BBBH")
_TM_SEC = struct.Struct(">BBBHHq")
_TM_HEAD = struct.Struct(">HHH" + _TM_SEC.format[1:])  # primary + TM secondary header


class PacketError(ValueError):
    """Bytes that are not a valid packet of this protocol."""


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16-CCITT as used by CCSDS (poly 0x1021, init 0xFFFF, no reflection).

    >>> hex(crc16_ccitt(b"123456789"))
    '0x29b1'
    """
    return binascii.crc_hqx(data, crc)


@dataclass(slots=True)
class Packet:
    """One space packet. ``source_id`` is the TC source ID or TM destination ID.

    A value: nothing changes a packet once it is built. (Not a frozen dataclass:
    a frozen one's ``__init__`` costs three times as much, and every frame on the
    link builds one.)"""

    ptype: int
    apid: int
    seq: int
    service: int
    subtype: int
    data: bytes = b""
    ack: int = 0
    source_id: int = 0
    msg_counter: int = 0
    time_ns: int = 0

    @property
    def kind(self) -> tuple[int, int]:
        return (self.service, self.subtype)


def encode_packet(p: Packet) -> bytes:
    """Serialize a packet (with CRC). Raises PacketError for out-of-range fields."""
    if p.ptype not in (TM, TC):
        raise PacketError(f"packet type must be 0 (TM) or 1 (TC), got {p.ptype}")
    if p.ptype == TM:
        return encode_tm(p.apid, p.seq, p.service, p.subtype, p.data, p.source_id,
                         p.msg_counter, p.time_ns)
    return encode_tc(p.apid, p.seq, p.service, p.subtype, p.data, p.ack, p.source_id)


def encode_tc(apid: int, seq: int, service: int, subtype: int, data: bytes, ack: int = 0,
              source_id: int = 0) -> bytes:
    """``encode_packet(Packet(TC, apid, seq, service, subtype, data, ack=ack,
    source_id=source_id))``, the same bytes and checks, without building the Packet
    (the host sends one per board per frame).

    >>> encode_tc(APID_AGENT, 3, 17, 1, b"x", ACK_COMPLETION, 9) == encode_packet(Packet(
    ...     TC, APID_AGENT, 3, 17, 1, b"x", ack=ACK_COMPLETION, source_id=9))
    True
    """
    _check_header(apid, seq, service, subtype, source_id)
    if not 0 <= ack <= 0xF:
        raise PacketError(f"ack flags must be in 0..15, got {ack}")
    sec = _TC_SEC.pack((PUS_VERSION << 4) | ack, service, subtype, source_id)
    data = bytes(data)
    body = _PRIMARY.pack(_word0(TC, apid), 0xC000 | seq, _body_len(len(sec), data) - 1) + sec + data
    return body + crc16_ccitt(body).to_bytes(2, "big")


def encode_tm(apid: int, seq: int, service: int, subtype: int, data: bytes, dest: int = 0,
              msg_counter: int = 0, time_ns: int = 0) -> bytes:
    """``encode_packet(Packet(TM, apid, seq, service, subtype, data, source_id=dest,
    msg_counter=msg_counter, time_ns=time_ns))``, the same bytes and checks, without
    building the Packet (the agent sends one per reply).

    >>> encode_tm(APID_AGENT, 3, 17, 2, b"", 9, 1, 5) == encode_packet(Packet(
    ...     TM, APID_AGENT, 3, 17, 2, source_id=9, msg_counter=1, time_ns=5))
    True
    """
    _check_header(apid, seq, service, subtype, dest)
    if not 0 <= msg_counter <= 0xFFFF:
        raise PacketError(f"message type counter must be in 0..65535, got {msg_counter}")
    if not -(1 << 63) <= time_ns < (1 << 63):
        raise PacketError("time_ns does not fit in a signed 64-bit integer")
    data = bytes(data)
    body = _TM_HEAD.pack(
        _word0(TM, apid), 0xC000 | seq, _body_len(_TM_SEC.size, data) - 1,
        PUS_VERSION << 4, service, subtype, msg_counter, dest, time_ns,
    ) + data
    return body + crc16_ccitt(body).to_bytes(2, "big")


def _check_header(apid: int, seq: int, service: int, subtype: int, source_id: int) -> None:
    """The range checks every packet type shares (see :func:`encode_packet`)."""
    if not 0 <= apid < APID_IDLE:
        raise PacketError(f"APID must be in 0..0x7fe, got {apid}")
    if not 0 <= seq < SEQ_MODULO:
        raise PacketError(f"sequence count must be in 0..16383, got {seq}")
    if not 0 <= service <= 255:
        raise PacketError(f"service must be in 0..255, got {service}")
    if not 0 <= subtype <= 255:
        raise PacketError(f"subtype must be in 0..255, got {subtype}")
    if not 0 <= source_id <= 0xFFFF:
        raise PacketError(f"source/destination id must be in 0..65535, got {source_id}")


def _word0(ptype: int, apid: int) -> int:
    return (ptype << 12) | 0x0800 | apid  # version 0, secondary header flag 1


def _body_len(sec_bytes: int, data: bytes) -> int:
    """Secondary header + data + CRC, in bytes; checks the packet size."""
    body_len = sec_bytes + len(data) + CRC_BYTES
    total = PRIMARY_HEADER_BYTES + body_len
    if total > MAX_PACKET_BYTES:
        raise PacketError(f"packet of {total} bytes exceeds the maximum of {MAX_PACKET_BYTES}")
    return body_len


def decode_packet(raw: bytes) -> Packet:
    """Parse and check one packet. Raises PacketError naming what is wrong."""
    n = len(raw)
    if n < PRIMARY_HEADER_BYTES + TC_SECONDARY_HEADER_BYTES + CRC_BYTES:
        raise PacketError(f"packet too short ({n} bytes)")
    if n > MAX_PACKET_BYTES:
        raise PacketError(f"packet of {n} bytes exceeds the maximum of {MAX_PACKET_BYTES}")
    w0, w1, length = _PRIMARY.unpack_from(raw)
    if length + 7 != n:
        raise PacketError(f"data length field says {length + 7} bytes, frame has {n}")
    if binascii.crc_hqx(raw, 0xFFFF):  # (the CRC over the packet and its CRC is 0 if they agree)
        raise PacketError("CRC mismatch")
    if w0 >> 13:
        raise PacketError(f"packet version {w0 >> 13} is not 0")
    if not w0 & 0x0800:
        raise PacketError("secondary header flag is not set")
    if w1 >> 14 != 3:
        raise PacketError("segmented packets are not supported")
    ptype = (w0 >> 12) & 1
    apid = w0 & 0x7FF
    seq = w1 & 0x3FFF
    if ptype == TC:
        b0, service, subtype, source = _TC_SEC.unpack_from(raw, 6)
        if b0 >> 4 != PUS_VERSION:
            raise PacketError(f"PUS version {b0 >> 4} is not {PUS_VERSION}")
        return Packet(TC, apid, seq, service, subtype, raw[11:-2], ack=b0 & 0xF, source_id=source)
    if n < PRIMARY_HEADER_BYTES + TM_SECONDARY_HEADER_BYTES + CRC_BYTES:
        raise PacketError(f"TM packet too short ({n} bytes)")
    b0, service, subtype, counter, dest, t_ns = _TM_SEC.unpack_from(raw, 6)
    if b0 >> 4 != PUS_VERSION:
        raise PacketError(f"PUS version {b0 >> 4} is not {PUS_VERSION}")
    return Packet(
        TM, apid, seq, service, subtype, raw[21:-2],
        source_id=dest, msg_counter=counter, time_ns=t_ns,
    )


# --- application data codecs ------------------------------------------------


def request_id(tc_raw: bytes) -> bytes:
    """PUS request ID of a TC: its packet ID and sequence control (4 bytes)."""
    return tc_raw[:4]


def split_request_id(data: bytes) -> tuple[int, int, bytes]:
    """(apid, seq, rest) from reply application data that starts with a request ID."""
    if len(data) < 4:
        raise PacketError("reply shorter than its request ID")
    w0, w1 = struct.unpack_from(">HH", data)
    return w0 & 0x7FF, w1 & 0x3FFF, data[4:]


def encode_function(fid: int, args: dict) -> bytes:
    return fid.to_bytes(2, "big") + json_bytes(args)


#: json.dumps(obj, separators=(",", ":"), sort_keys=True), without a new encoder per call
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def json_bytes(obj: object) -> bytes:
    return _JSON_ENCODER.encode(obj).encode()


def decode_json(data: bytes, what: str) -> dict:
    if not data:
        return {}
    try:
        obj = json.loads(data.decode())
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep
        raise PacketError(f"{what}: application data is not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise PacketError(f"{what}: application data must be a JSON object")
    return obj


def encode_job_brief(job_id: int, state: str, step: int, checkpoint_step: int,
                     digest: str | None = None, error: str | None = None) -> bytes:
    """One job in a time-sync report: ``json_bytes`` of ``{job_id, state, step,
    checkpoint_step}``, plus ``digest`` and ``error`` when set (not empty). A job
    without either, with int fields and a known state (every live job, every sync) is
    formatted directly, the same bytes without the JSON encoder.

    >>> encode_job_brief(3, "running", 10, -1)
    b'{"checkpoint_step":-1,"job_id":3,"state":"running","step":10}'
    """
    state_json = _JOB_STATE_JSON.get(state)
    if (digest or error or state_json is None or type(job_id) is not int or type(step) is not int
            or type(checkpoint_step) is not int):
        out = {"job_id": job_id, "state": state, "step": step, "checkpoint_step": checkpoint_step}
        if digest:
            out["digest"] = digest
        if error:
            out["error"] = error
        return json_bytes(out)
    # keys in json_bytes' (sorted) order: checkpoint_step, job_id, state, step
    return b'{"checkpoint_step":%d,"job_id":%d,"state":"%s","step":%d}' % (
        checkpoint_step, job_id, state_json, step)


def encode_time_sync_reply(t_ns: int, previous_ns: int, hk: bytes | None = None,
                           jobs: list[bytes] | None = None) -> bytes:
    """The result of ``time_sync`` (TM[8,130] JSON): ``json_bytes`` of ``{t_ns,
    previous_ns}``, and with a report (``hk`` given) ``hk``, the housekeeping record in
    base64, and ``jobs``, the jobs already encoded by :func:`encode_job_brief`. The
    same bytes, formatted directly (a board sends one every simulated second).

    >>> encode_time_sync_reply(5, 2, b"\\x01", [encode_job_brief(1, "done", 4, 4, "ab")])
    b'{"hk":"AQ==","jobs":[{"checkpoint_step":4,"digest":"ab","job_id":1,"state":"done","step":4}],"previous_ns":2,"t_ns":5}'
    """
    if type(t_ns) is not int or type(previous_ns) is not int:
        raise TypeError(f"time_sync times must be ints, got {t_ns!r}, {previous_ns!r}")
    if hk is None:
        return b'{"previous_ns":%d,"t_ns":%d}' % (previous_ns, t_ns)
    # keys in json_bytes' (sorted) order: hk, jobs, previous_ns, t_ns; base64 needs no escape
    return b'{"hk":"%s","jobs":[%s],"previous_ns":%d,"t_ns":%d}' % (
        base64.b64encode(hk), b",".join(jobs or ()), previous_ns, t_ns)


def encode_failure(code: int, message: str) -> bytes:
    return code.to_bytes(2, "big") + message.encode()[:512]


def decode_failure(data: bytes) -> tuple[int, str]:
    if len(data) < 2:
        return ERR_INTERNAL, "malformed failure report"
    return int.from_bytes(data[:2], "big"), data[2:].decode(errors="replace")


# Housekeeping report (TM[3,25]) binary layout. Names of temperatures and rails
# come from board_info()["hk_layout"]; layout_id identifies that list.
JOB_STATES = ["none", "starting", "running", "suspended", "done", "failed", "cancelled",
              "deadline_missed"]
JOB_STATE_CODES = {s: i for i, s in enumerate(JOB_STATES)}
_JOB_STATE_JSON = {s: s.encode() for s in JOB_STATES}  # (no character JSON escapes)
HK_HEAD = struct.Struct(">HIfffIIfBHBfIBB")
# layout_id, uptime_s(u32), throttle (effective), throttle_cmd (commanded), cpu_load,
# mem_total_kib, mem_available_kib,
# power_w, jobs_running, last_job_id, last_job_state, last_job_progress, flags,
# n_temps, n_rails; then n_temps f32 temps (K), n_rails x (f32 V, f32 A).
HK_FLAG_THERMAL_THROTTLE = 1 << 0  # agent reduced the duty cycle for temperature
HK_FLAG_TEST_MODE = 1 << 1
HK_FLAG_PI_SHIFT = 8  # Raspberry Pi get_throttled bits 0..3 and 16..19 packed here


def pack_pi_throttled(raw: int) -> int:
    """Pi get_throttled bits 0..3 and 16..19 packed into one byte (low, high nibble)."""
    return (raw & 0xF) | (((raw >> 16) & 0xF) << 4)


def unpack_pi_throttled(packed: int) -> int:
    return (packed & 0xF) | (((packed >> 4) & 0xF) << 16)


def layout_id(temps: list[str], rails: list[str]) -> int:
    return crc16_ccitt(("|".join(temps) + "#" + "|".join(rails)).encode())


@functools.lru_cache(maxsize=64)
def hk_encoder(temps: tuple[str, ...], rails: tuple[str, ...]):
    """The housekeeping record's encoder for one layout (``temps``, ``rails``: tuples),
    the layout's part (its id, the record's Struct) computed once: a function of
    ``(reading, uptime_s, throttle, throttle_cmd, jobs_running, last_job_id,
    last_job_state, last_job_progress, flags)``, ``reading`` holding ``temps_k``,
    ``rails``, ``cpu_load``, ``mem_total_kib``, ``mem_available_kib`` and ``power_w``
    (a board's reading). :func:`encode_hk` is it for a whole housekeeping dict; a board
    agent calls it without building that dict (a report every simulated second)."""
    lid = layout_id(list(temps), list(rails))
    pack = struct.Struct(f"{HK_HEAD.format}{len(temps) + 2 * len(rails)}f").pack
    nt, nr = len(temps), len(rails)
    nan = float("nan")
    no_rail = (nan, nan)
    codes = JOB_STATE_CODES

    def encode(r: dict, uptime_s: float, throttle: float, throttle_cmd: float, jobs_running: int,
               last_job_id: int, last_job_state: str, last_job_progress: float, flags: int) -> bytes:
        tk, rk = r["temps_k"], r["rails"]
        vals = [float(tk.get(n, nan)) for n in temps]
        for name in rails:
            v, i = rk.get(name, no_rail)
            vals += (float(v), float(i))
        return pack(
            lid, int(uptime_s) & 0xFFFFFFFF, throttle, throttle_cmd, r["cpu_load"],
            int(r["mem_total_kib"]) & 0xFFFFFFFF, int(r["mem_available_kib"]) & 0xFFFFFFFF,
            r["power_w"], jobs_running, last_job_id, codes.get(last_job_state, 0),
            last_job_progress, flags, nt, nr, *vals,
        )

    return encode


def encode_hk(hk: dict, temps: list[str], rails: list[str]) -> bytes:
    return hk_encoder(tuple(temps), tuple(rails))(
        hk, hk["uptime_s"], hk["throttle"], hk["throttle_cmd"], hk["jobs_running"], hk["last_job_id"],
        hk["last_job_state"], hk["last_job_progress"], hk["flags"])


def decode_hk(data: bytes, layouts: dict[int, tuple[list[str], list[str]]] | None = None) -> dict:
    if len(data) < HK_HEAD.size:
        raise PacketError("housekeeping report too short")
    (lid, up, thr, cmd, load, mtot, mav, pw, nrun, jid, jst, jprog, flags, nt, nr) = (
        HK_HEAD.unpack_from(data)
    )
    if len(data) != HK_HEAD.size + 4 * (nt + 2 * nr):
        raise PacketError("housekeeping report length does not match its counts")
    vals = _hk_values(nt + 2 * nr).unpack_from(data, HK_HEAD.size)
    names = layouts.get(lid) if layouts else None
    tn = names[0] if names and len(names[0]) == nt else [f"temp{i}" for i in range(nt)]
    rn = names[1] if names and len(names[1]) == nr else [f"rail{i}" for i in range(nr)]
    return {
        "layout_id": lid,
        "uptime_s": up,
        "throttle": thr,
        "throttle_cmd": cmd,
        "cpu_load": load,
        "mem_total_kib": mtot,
        "mem_available_kib": mav,
        "power_w": pw,
        "jobs_running": nrun,
        "last_job_id": jid,
        "last_job_state": JOB_STATES[jst] if jst < len(JOB_STATES) else "none",
        "last_job_progress": jprog,
        "flags": flags,
        "thermal_throttle": bool(flags & HK_FLAG_THERMAL_THROTTLE),
        "pi_throttled": unpack_pi_throttled((flags >> HK_FLAG_PI_SHIFT) & 0xFF),
        "temps_k": dict(zip(tn, vals[:nt], strict=True)),
        "rails": dict(zip(rn, zip(vals[nt::2], vals[nt + 1::2], strict=True), strict=True)),
    }


@functools.lru_cache(maxsize=64)
def _hk_values(n: int) -> struct.Struct:
    """The ``n`` big-endian f32 after the housekeeping head (compiled once per count)."""
    return struct.Struct(f">{n}f")


def encode_event(name: str, details: dict) -> bytes:
    return EVENTS[name].to_bytes(2, "big") + json_bytes(details)


def decode_event(data: bytes) -> tuple[str, dict]:
    if len(data) < 2:
        raise PacketError("event report too short")
    eid = int.from_bytes(data[:2], "big")
    return EVENT_NAMES.get(eid, f"event{eid}"), decode_json(data[2:], "event")
