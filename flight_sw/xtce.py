"""The TM/TC dictionary (:mod:`flight_sw.dictionary`) as XTCE 1.2, built through
yamcs-pymdb (the ``console`` extra; imported only here, when an export is asked for).

What the export holds:

* the CCSDS primary header as yamcs-pymdb's ``ccsds_space_packet`` container and
  command;
* ``housekeeping`` (APID ``HK_APID``): ``hk_time_ns`` then every HK channel in
  dictionary order, each a parameter with its unit, red limits as critical and yellow
  limits as warning alarm thresholds (names with ``.`` get ``_``; the original is an
  alias in the ``orbit-hil`` namespace), enumerations for the mode and board states;
* the PUS service 1 verification reports (APID ``VERIFY_APID``): one container per
  subtype (``verify_acceptance_success`` TM[1,1], ``verify_acceptance_failure``
  TM[1,2], ``verify_start_success`` TM[1,3], ``verify_completion_success`` TM[1,7],
  ``verify_completion_failure`` TM[1,8]), the failures with their code;
* every command as a MetaCommand derived from ``orbit_hil_tc`` (the TC's secondary
  header: SPI, ARSN, the four acknowledgement flag bits, then the 12-bit opcode and the
  arguments), its arguments' types, encodings and valid ranges, hazardous ones at level
  ``critical``, and the command verifiers: accepted on TM[1,1], executing on TM[1,3],
  complete on TM[1,7], failed on TM[1,2] or TM[1,8].

Outside XTCE: the 16-byte MAC that ends every TC (a ground system appends it as its
link's post-processing, docs/console.md gives the bytes), a failure report's reason
(UTF-8 to the packet's end) and the event packets' JSON fields. A container check
matches any report of its subtype; a ground system pairs a report with its TC by the
SPI and ARSN (or the request ID), as the console does.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from flight_sw.dictionary import (
    ACK_ALL,
    BOARD_STATES,
    COMMANDS,
    EVENT_APID,
    EVENTS,
    FAILURE_CODES,
    HK_APID,
    MODE_NAMES,
    SEVERITIES,
    TC_APID,
    VERIFY_APID,
    VERIFY_SUBTYPES,
    Arg,
    Channel,
    board_channel_names,
    hk_channels,
)

XTCE_NS = "http://www.omg.org/spec/XTCE/20180204"
#: the namespace of the aliases that keep the dictionary's own names
ALIAS_NS = "orbit-hil"
#: how long YAMCS waits for each verification report: a TC executes at the flight
#: software's next 1 Hz frame, so 10 s of real time covers speed 1 with a wide margin
VERIFY_TIMEOUT_S = 10.0


class XtceUnavailable(RuntimeError):
    """yamcs-pymdb is not installed."""


def xtce_name(name: str) -> str:
    """A dictionary name as an XTCE NameType (no '.', '/', ':', '[', ']' or spaces);
    the original is kept as an alias in the ``orbit-hil`` namespace."""
    return "".join("_" if ch in "./:[] " else ch for ch in name)


def _units(unit: str) -> str | None:
    return None if unit in ("", "1", "enum", "bool") else unit


def build_system(boards: Sequence[str], name: str = "orbit-hil"):  # -> yamcs.pymdb.System
    """The dictionary as a yamcs-pymdb ``System`` for a spacecraft carrying ``boards``."""
    try:
        from yamcs import pymdb as m
    except ImportError:
        raise XtceUnavailable("the XTCE export needs yamcs-pymdb: python -m pip install -e '.[console]'") from None

    sys_ = m.System(name, short_description="orbit-hil TM/TC dictionary (flight_sw/dictionary.py)")
    # the CCSDS primary header, as flat parameters (yamcs-pymdb's own ccsds header uses
    # aggregate parameters, which simpler XTCE readers such as space-packet-parser lack)
    def uint(name: str, bits: int, desc: str | None = None):
        return m.IntegerParameter(system=sys_, name=name, signed=False, bits=max(bits, 8),
                                  encoding=m.IntegerEncoding(bits=bits), short_description=desc)

    tm_apid = uint("ccsds_apid", 11)
    tm_header = m.Container(
        system=sys_, name="ccsds_space_packet", abstract=True, bits=48,
        short_description="CCSDS 133.0-B-2 Space Packet: the 6-byte primary header",
        entries=[m.ParameterEntry(uint("ccsds_version", 3)), m.ParameterEntry(uint("ccsds_type", 1, "0 TM, 1 TC")),
                 m.ParameterEntry(uint("ccsds_secondary_header", 1)), m.ParameterEntry(tm_apid),
                 m.ParameterEntry(uint("ccsds_sequence_flags", 2)),
                 m.ParameterEntry(uint("ccsds_sequence_count", 14)),
                 m.ParameterEntry(uint("ccsds_packet_length", 16, "octets in the data field minus 1"))])
    tc_header = m.Command(
        system=sys_, name="ccsds_space_packet", abstract=True,
        short_description="CCSDS 133.0-B-2 Space Packet: the 6-byte primary header of a TC",
        entries=[m.FixedValueEntry(f"{(1 << 12) | (1 << 11) | TC_APID:04X}", name="ccsds_packet_id", bits=16,
                                   short_description=f"version 0, type 1 (TC), secondary header, APID {TC_APID:#x}"),
                 m.FixedValueEntry("C000", name="ccsds_sequence", bits=16,
                                   short_description="unsegmented; the count is the link's post-processing"),
                 m.FixedValueEntry("0000", name="ccsds_packet_length", bits=16,
                                   short_description="set by the link's post-processing")])

    # --- housekeeping --------------------------------------------------------------------
    enums = {"mode": MODE_NAMES}
    enums.update({n: BOARD_STATES for b in boards for n in board_channel_names(b)[2:3]})

    def parameter(c: Channel):
        bits = struct.calcsize(">" + c.fmt) * 8
        common = dict(system=sys_, name=xtce_name(c.name), aliases={ALIAS_NS: c.name},
                      short_description=c.desc or None, units=_units(c.unit))
        if c.name in enums:
            return m.EnumeratedParameter(choices=list(enumerate(enums[c.name])),
                                         encoding=m.IntegerEncoding(bits=bits), **common)
        alarm = None
        if any(x is not None for x in (c.lo, c.hi, c.warn_lo, c.warn_hi)):
            alarm = m.ThresholdAlarm(warning_low=c.warn_lo, warning_high=c.warn_hi,
                                     critical_low=c.lo, critical_high=c.hi)
        if c.fmt == "d":
            return m.FloatParameter(bits=64, encoding=m.float64_t, alarm=alarm, **common)
        return m.IntegerParameter(signed=False, bits=bits, encoding=m.IntegerEncoding(bits=bits),
                                  alarm=alarm, **common)

    t_ns = m.IntegerParameter(system=sys_, name="hk_time_ns", signed=False, bits=64, encoding=m.IntegerEncoding(bits=64),
                              units="ns", short_description="simulation time of the HK frame, "
                              "ns since the scenario epoch")
    m.Container(system=sys_, name="housekeeping", base=tm_header,
                condition=m.eq(tm_apid, HK_APID),
                short_description=f"APID {HK_APID:#x}: the flight software's 1 Hz housekeeping",
                entries=[m.ParameterEntry(t_ns)] + [m.ParameterEntry(parameter(c)) for c in hk_channels(boards)])

    # --- events: the id and severity (the fields follow as UTF-8 JSON, outside XTCE) ----
    m.Container(system=sys_, name="event", base=tm_header, condition=m.eq(tm_apid, EVENT_APID),
                short_description=f"APID {EVENT_APID:#x}: an event; its fields follow as UTF-8 JSON",
                entries=[m.ParameterEntry(m.IntegerParameter(
                             system=sys_, name="event_time_ns", signed=False, bits=64,
                             encoding=m.IntegerEncoding(bits=64), units="ns")),
                         m.ParameterEntry(m.EnumeratedParameter(
                             system=sys_, name="event_id", encoding=m.uint16_t,
                             choices=[(e.id, e.name) for e in EVENTS])),
                         m.ParameterEntry(m.EnumeratedParameter(
                             system=sys_, name="event_severity", encoding=m.uint8_t,
                             choices=list(enumerate(SEVERITIES))))])

    # --- PUS service 1 verification reports ----------------------------------------------
    v_t = m.IntegerParameter(system=sys_, name="verify_time_ns", signed=False, bits=64, encoding=m.IntegerEncoding(bits=64),
                             units="ns", short_description="the frame's simulation time")
    v_service = m.IntegerParameter(system=sys_, name="verify_service", signed=False, bits=8, encoding=m.uint8_t)
    v_subtype = m.EnumeratedParameter(system=sys_, name="verify_subtype", encoding=m.uint8_t,
                                      choices=sorted(VERIFY_SUBTYPES.items()))
    v_request = m.BinaryParameter(system=sys_, name="verify_request_id", encoding=m.BinaryEncoding(bits=32),
                                  short_description="the TC's first 4 bytes: packet ID and sequence control")
    v_spi = m.IntegerParameter(system=sys_, name="verify_spi", signed=False, bits=16, encoding=m.uint16_t,
                               short_description="the TC's SPI")
    v_arsn = m.IntegerParameter(system=sys_, name="verify_arsn", signed=False, bits=32, encoding=m.uint32_t,
                                short_description="the TC's ARSN")
    v_code = m.EnumeratedParameter(system=sys_, name="verify_failure_code", encoding=m.uint16_t,
                                   choices=sorted((v, k) for k, v in FAILURE_CODES.items()),
                                   short_description="failures only; the reason follows as UTF-8 "
                                   "to the packet's end")
    report = m.Container(system=sys_, name="verification_report", base=tm_header, abstract=True,
                         condition=m.eq(tm_apid, VERIFY_APID),
                         short_description=f"APID {VERIFY_APID:#x}: PUS service 1 request verification",
                         entries=[m.ParameterEntry(p) for p in (v_t, v_service, v_subtype, v_request, v_spi,
                                                                v_arsn)])
    by_subtype = {sub: m.Container(system=sys_, name=f"verify_{VERIFY_SUBTYPES[sub]}", base=report,
                                   condition=m.eq(v_subtype, VERIFY_SUBTYPES[sub]), short_description=f"TM[1,{sub}]")
                  for sub in (1, 3, 7)}
    failure = m.Container(system=sys_, name="verify_failure", base=report, abstract=True,
                          condition=m.OrExpression(*(m.eq(v_subtype, VERIFY_SUBTYPES[s]) for s in (2, 8))),
                          short_description="TM[1,2] or TM[1,8]", entries=[m.ParameterEntry(v_code)])
    for sub in (2, 8):
        by_subtype[sub] = m.Container(system=sys_, name=f"verify_{VERIFY_SUBTYPES[sub]}", base=failure,
                                      condition=m.eq(v_subtype, VERIFY_SUBTYPES[sub]),
                                      short_description=f"TM[1,{sub}]")

    # --- telecommands --------------------------------------------------------------------
    spi = m.IntegerArgument(name="spi", signed=False, bits=16, encoding=m.uint16_t, default=2, minimum=1,
                            maximum=2, short_description="security association: 2 ground clients, "
                            "1 the rig's Run.command")
    arsn = m.IntegerArgument(name="arsn", signed=False, bits=32, encoding=m.uint32_t, default=0,
                             short_description="anti-replay sequence number (the link's post-processing "
                             "sets it, 1 to 1024 ahead of the last accepted on this SPI)")
    flags = m.IntegerArgument(name="ack_flags", signed=False, bits=4, encoding=m.uint4_t, default=ACK_ALL,
                              minimum=0, maximum=15, short_description="verification reports asked for: "
                              "bit 0 acceptance, 1 start, 2 progress (never sent), 3 completion")
    base = m.Command(system=sys_, name="orbit_hil_tc", abstract=True, base=tc_header,
                     short_description="a TC's security header and opcode word; a 16-byte MAC follows "
                     "the arguments (HMAC-SHA256, outside XTCE)",
                     arguments=[spi, arsn, flags],
                     entries=[m.ArgumentEntry(spi), m.ArgumentEntry(arsn), m.ArgumentEntry(flags)])

    def argument(cmd_name: str, a: Arg):
        desc = f"one of {', '.join(a.choices)}" if a.choices else None
        if a.type == "str":
            return m.StringArgument(name=a.name, short_description=desc, max_length=0xFFFF,
                                    encoding=m.StringEncoding(length_bits=16, charset=m.Charset.UTF_8,
                                                              termination=None, max_bits=0xFFFF * 8))
        if a.type == "f64":
            return m.FloatArgument(name=a.name, bits=64, minimum=a.lo, maximum=a.hi, units=_units(a.unit),
                                   short_description=desc, encoding=m.float64_t)
        bits = {"u8": 8, "u32": 32}[a.type]
        return m.IntegerArgument(name=a.name, signed=False, bits=bits, units=_units(a.unit),
                                 minimum=int(a.lo) if a.lo is not None else 0,
                                 maximum=int(a.hi) if a.hi is not None else (1 << bits) - 1,
                                 short_description=desc, encoding=m.IntegerEncoding(bits=bits))

    def check(sub: int):
        return m.ContainerCheck(by_subtype[sub])

    for cmd in COMMANDS:
        args = [argument(cmd.name, a) for a in cmd.args]
        c = m.Command(system=sys_, name=cmd.name, base=base, short_description=cmd.desc, arguments=args,
                      level=m.CommandLevel.CRITICAL if cmd.hazardous else m.CommandLevel.NORMAL,
                      warning_message="hazardous: a console arms it before it executes" if cmd.hazardous
                      else None,
                      entries=[m.FixedValueEntry(f"{cmd.opcode:04X}", name="opcode", bits=12)]
                      + [m.ArgumentEntry(a) for a in args])
        c.accepted_verifier = m.AcceptedVerifier(check=check(1), timeout=VERIFY_TIMEOUT_S)
        c.execution_verifiers.append(m.ExecutionVerifier(check=check(3), timeout=VERIFY_TIMEOUT_S))
        c.complete_verifiers.append(m.CompleteVerifier(check=check(7), timeout=VERIFY_TIMEOUT_S))
        c.failed_verifier = m.FailedVerifier(check=m.ContainerCheck(failure), timeout=VERIFY_TIMEOUT_S)
    return sys_


def to_xtce(boards: Sequence[str], name: str = "orbit-hil") -> str:
    """The dictionary as an XTCE 1.2 document (see the module's doc)."""
    return build_system(boards, name).dumps(format="xtce-1.2", top_comment=True)
