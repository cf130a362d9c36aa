"""`hil dictionary export --xtce`: the dictionary through yamcs-pymdb, checked three
independent ways: valid against the XTCE 1.2 schema (OMG's SpaceSystem.xsd, as
space-packet-parser ships it; no yamcs jar is reachable here), read back element by
element (every parameter, command, argument, type and range), and used by an independent
XTCE decoder (space-packet-parser) to decode the flight software's real packets."""

from __future__ import annotations

import importlib.resources
import struct
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET

import pytest

from flight_sw.dictionary import (
    ACK_ALL,
    BOARD_STATES,
    COMMANDS,
    EVENTS,
    MODE_NAMES,
    TmCodec,
    hk_channels,
)

pytest.importorskip("yamcs.pymdb")
xmlschema = pytest.importorskip("xmlschema")
spp = pytest.importorskip("space_packet_parser")

from flight_sw.xtce import ALIAS_NS, XTCE_NS, xtce_name  # noqa: E402

NS = {"x": XTCE_NS}
BOARDS = ["jetson0", "rpi0"]  # the virtual bench's


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    out = tmp_path_factory.mktemp("xtce") / "mdb.xml"
    r = subprocess.run([sys.executable, "-m", "hil_rig.cli", "dictionary", "export", "--xtce", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def test_the_export_is_valid_xtce_1_2(export):
    xsd = importlib.resources.files("space_packet_parser.xtce") / "schemas" / "SpaceSystem.xsd"
    schema = xmlschema.XMLSchema(str(xsd))
    assert schema.target_namespace == XTCE_NS and \
        ET.parse(str(xsd)).getroot().get("version") == "1.2"
    errors = [f"{e.path}: {e.reason}" for e in schema.iter_errors(str(export))]
    assert errors == []


def test_the_export_holds_every_parameter_with_its_type_and_limits(export):
    tm = ET.parse(export).getroot().find("x:TelemetryMetaData", NS)
    types = {t.get("name"): t for t in tm.find("x:ParameterTypeSet", NS)}
    params = {p.get("name"): p for p in tm.find("x:ParameterSet", NS)}
    for c in hk_channels(BOARDS):
        p = params[xtce_name(c.name)]
        assert p.find("x:AliasSet/x:Alias", NS).attrib == {"nameSpace": ALIAS_NS, "alias": c.name}
        t = types[p.get("parameterTypeRef")]
        bits = struct.calcsize(">" + c.fmt) * 8
        if c.name == "mode" or c.name.endswith(".state"):
            assert t.tag == f"{{{XTCE_NS}}}EnumeratedParameterType"
            labels = [e.get("label") for e in t.findall("x:EnumerationList/x:Enumeration", NS)]
            assert labels == list(MODE_NAMES if c.name == "mode" else BOARD_STATES)
        elif c.fmt == "d":
            assert t.tag == f"{{{XTCE_NS}}}FloatParameterType"
            assert t.find("x:FloatDataEncoding", NS).get("encoding") == "IEEE754_1985"
        else:
            assert t.tag == f"{{{XTCE_NS}}}IntegerParameterType" and t.get("signed") == "false"
        enc = t.find("x:IntegerDataEncoding", NS) if c.fmt != "d" else t.find("x:FloatDataEncoding", NS)
        assert int(enc.get("sizeInBits")) == bits
        if c.unit not in ("", "1", "enum", "bool"):
            assert t.find("x:UnitSet/x:Unit", NS).text == c.unit
        crit = t.find("x:DefaultAlarm/x:StaticAlarmRanges/x:CriticalRange", NS)
        warn = t.find("x:DefaultAlarm/x:StaticAlarmRanges/x:WarningRange", NS)
        for rng, lo, hi in ((crit, c.lo, c.hi), (warn, c.warn_lo, c.warn_hi)):
            got = {} if rng is None else rng.attrib
            want = {k: v for k, v in (("minInclusive", lo), ("maxInclusive", hi)) if v is not None}
            assert {k: float(v) for k, v in got.items()} == want, c.name


def test_the_export_holds_every_command_argument_range_and_verifier(export):
    cm = ET.parse(export).getroot().find("x:CommandMetaData", NS)
    atypes = {t.get("name"): t for t in cm.find("x:ArgumentTypeSet", NS)}
    mcs = {m.get("name"): m for m in cm.find("x:MetaCommandSet", NS)}
    assert set(mcs) - {"ccsds_space_packet", "orbit_hil_tc"} == {c.name for c in COMMANDS}
    # the TC's layout up to the arguments: primary header, SPI, ARSN, flags, opcode (flight_sw/tc.py)
    base = mcs["orbit_hil_tc"]
    assert [a.get("name") for a in base.findall("x:ArgumentList/x:Argument", NS)] == ["spi", "arsn", "ack_flags"]
    sizes = {t.get("name"): int(t.find("x:IntegerDataEncoding", NS).get("sizeInBits"))
             for t in atypes.values() if t.find("x:IntegerDataEncoding", NS) is not None}
    assert [sizes[f"orbit_hil_tc__{n}"] for n in ("spi", "arsn", "ack_flags")] == [16, 32, 4]
    flags = atypes["orbit_hil_tc__ack_flags"]
    assert int(flags.get("initialValue")) == ACK_ALL
    for c in COMMANDS:
        m = mcs[c.name]
        assert m.find("x:BaseMetaCommand", NS).get("metaCommandRef") == "orbit_hil_tc"
        fixed = m.find("x:CommandContainer/x:EntryList/x:FixedValueEntry", NS)
        assert int(fixed.get("binaryValue"), 16) == c.opcode and fixed.get("sizeInBits") == "12"
        sig = m.find("x:DefaultSignificance", NS)
        assert (sig is not None and sig.get("consequenceLevel") == "critical") == c.hazardous
        assert [a.get("name") for a in m.findall("x:ArgumentList/x:Argument", NS)] == [a.name for a in c.args]
        for a in c.args:
            t = atypes[f"{c.name}__{a.name}"]
            kind = {"str": "String", "f64": "Float", "u8": "Integer", "u32": "Integer"}[a.type]
            assert t.tag == f"{{{XTCE_NS}}}{kind}ArgumentType"
            if a.type == "str":
                assert t.find("x:StringDataEncoding/x:Variable/x:LeadingSize", NS).get("sizeInBitsOfSizeTag") == "16"
                continue
            vr = t.find("x:ValidRangeSet/x:ValidRange", NS)
            top = {"u8": 0xFF, "u32": 0xFFFFFFFF, "f64": None}[a.type]
            lo = a.lo if a.lo is not None else (0 if top else None)
            hi = a.hi if a.hi is not None else top
            assert (float(vr.get("minInclusive")) if vr.get("minInclusive") else None) == lo
            assert (float(vr.get("maxInclusive")) if vr.get("maxInclusive") else None) == hi
        verifiers = {v.tag.split("}")[1]: v.find("x:ContainerRef", NS).get("containerRef")
                     for v in m.find("x:VerifierSet", NS)}
        assert verifiers == {"AcceptedVerifier": "verify_acceptance_success",
                             "ExecutionVerifier": "verify_start_success",
                             "CompleteVerifier": "verify_completion_success",
                             "FailedVerifier": "verify_failure"}


def _decoder(export):
    return spp.XtcePacketDefinition.from_xtce(export, root_container_name="ccsds_space_packet")


def test_an_independent_xtce_decoder_reads_the_flight_softwares_packets(export):
    """space-packet-parser, given only the export, decodes housekeeping, events and every
    verification report as the flight software encodes them."""
    d = _decoder(export)
    codec = TmCodec(BOARDS)
    values = {}
    for i, c in enumerate(hk_channels(BOARDS)):
        values[c.name] = i % 4 if c.fmt == "B" else (1000 + i if c.fmt == "I" else i * 0.25 - 3.0)
    got = dict(d.parse_bytes(codec.encode_hk(123_456_789_000, values)))
    assert got["ccsds_apid"] == 0x100 and got["hk_time_ns"] == 123_456_789_000
    for c in hk_channels(BOARDS):
        want = values[c.name]
        if c.name == "mode":
            want = MODE_NAMES[want]
        elif c.name.endswith(".state"):
            want = BOARD_STATES[want]
        assert got[xtce_name(c.name)] == want, c.name

    rid = b"\x18\x80\xc0\x07"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an event's JSON, a failure's reason: outside XTCE
        ev = EVENTS[3]
        got = dict(d.parse_bytes(codec.encode_event(5, ev.name, {"x": 1})))
        assert (got["event_id"], got["event_severity"]) == (ev.name, ev.severity)
        for sub, label, reason in ((1, "acceptance_success", ""), (2, "acceptance_failure", "replay"),
                                   (3, "start_success", ""), (7, "completion_success", ""),
                                   (8, "completion_failure", "execution: no such board")):
            got = dict(d.parse_bytes(codec.encode_verification(77, sub, rid, 2, 4242, reason)))
            assert (got["verify_subtype"], got["verify_request_id"], got["verify_spi"], got["verify_arsn"]) \
                == (label, rid, 2, 4242)
            assert got.get("verify_failure_code") == (reason.split(":")[0] if reason else None)


def test_the_export_without_yamcs_pymdb_is_one_line_and_exit_2(tmp_path):
    """yamcs-pymdb missing (hidden by a stub that fails to import): a clear error, exit 2."""
    stub = tmp_path / "stub" / "yamcs"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('hidden for the test')\n")
    import os
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "stub"), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "hil_rig.cli", "dictionary", "export", "--xtce",
                        str(tmp_path / "x.xml")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "yamcs-pymdb" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "x.xml").exists()
