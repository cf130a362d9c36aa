"""Ground interop beyond our console: the dictionary as XTCE, read back; a TC built
by an independent library (spacepackets) with the standard library's hmac, from the
layout in docs/console.md alone, is accepted by a real run's ground port; a forged
one is refused."""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from flight_sw.dictionary import COMMANDS, XTCE_NS, hk_channels, xtce_name

NS = {"x": XTCE_NS}


def test_xtce_export_reads_back_every_parameter_command_and_range(tmp_path):
    out = tmp_path / "mdb.xml"
    r = subprocess.run([sys.executable, "-m", "hil_rig.cli", "dictionary", "export", "--xtce", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    root = ET.parse(out).getroot()
    assert root.tag == f"{{{XTCE_NS}}}SpaceSystem"
    tm = root.find("x:TelemetryMetaData", NS)
    types = {t.get("name"): t for t in tm.find("x:ParameterTypeSet", NS)}
    params = {p.get("name"): p for p in tm.find("x:ParameterSet", NS)}
    for c in hk_channels(["jetson0", "rpi0"]):
        p = params[xtce_name(c.name)]
        assert p.find("x:AliasSet/x:Alias", NS).get("alias") == c.name
        t = types[p.get("parameterTypeRef")]
        crit = t.find("x:DefaultAlarm/x:StaticAlarmRanges/x:CriticalRange", NS)
        warn = t.find("x:DefaultAlarm/x:StaticAlarmRanges/x:WarningRange", NS)
        if c.lo is not None:
            assert float(crit.get("minInclusive")) == c.lo
        if c.hi is not None:
            assert float(crit.get("maxInclusive")) == c.hi
        if c.warn_lo is not None:
            assert float(warn.get("minInclusive")) == c.warn_lo
        if c.warn_hi is not None:
            assert float(warn.get("maxInclusive")) == c.warn_hi
    entries = [e.get("parameterRef") for e in tm.find("x:ContainerSet/x:SequenceContainer/x:EntryList", NS)]
    assert entries == ["hk_time_ns"] + [xtce_name(c.name) for c in hk_channels(["jetson0", "rpi0"])]
    cm = root.find("x:CommandMetaData", NS)
    atypes = {t.get("name"): t for t in cm.find("x:ArgumentTypeSet", NS)}
    mcs = {m.get("name"): m for m in cm.find("x:MetaCommandSet", NS)}
    assert set(mcs) == {c.name for c in COMMANDS}
    for c in COMMANDS:
        m = mcs[c.name]
        fixed = m.find("x:CommandContainer/x:EntryList/x:FixedValueEntry", NS)
        assert int(fixed.get("binaryValue"), 16) == c.opcode
        assert (m.find("x:DefaultSignificance", NS) is not None) == c.hazardous
        args = [a.get("name") for a in m.findall("x:ArgumentList/x:Argument", NS)]
        assert args == [a.name for a in c.args]
        for a in c.args:
            t = atypes[f"{c.name}_{a.name}_Type"]
            vr = t.find("x:ValidRangeSet/x:ValidRange", NS)
            if a.lo is not None:
                assert float(vr.get("minInclusive")) == a.lo
            if a.hi is not None:
                assert float(vr.get("maxInclusive")) == a.hi


spacepackets = pytest.importorskip("spacepackets")


def _tc(key: bytes, spi: int, arsn: int, opcode: int, args: bytes) -> bytes:
    """docs/console.md, "The TC security header and MAC", with spacepackets for the
    primary header and hmac for the MAC; nothing from flight_sw.tc."""
    from spacepackets.ccsds.spacepacket import PacketType, SequenceFlags, SpacePacketHeader

    data = struct.pack(">HIH", spi, arsn, opcode) + args
    hdr = SpacePacketHeader(packet_type=PacketType.TC, apid=0x080, seq_count=7, data_len=len(data) + 16 - 1,
                            sec_header_flag=True, seq_flags=SequenceFlags.UNSEGMENTED).pack()
    mac = hmac.new(key, bytes(hdr) + data, hashlib.sha256).digest()[:16]
    return bytes(hdr) + data + mac


def test_independent_tc_accepted_forged_refused(tmp_path):
    from hil_rig.run import Run, RunOptions
    from hil_rig.run.control_server import ControlClient, Hosted, run_key
    from hil_rig.scenario import find_scenario, load_scenario, parse_duration

    run_dir = tmp_path / "run"
    key, key_path = run_key(run_dir, None)
    sc = load_scenario(find_scenario("nominal")).replace(duration=parse_duration("10 min", "test"))
    hosted = Hosted(Run(sc, out=run_dir, options=RunOptions(tc_key=key, ground_port=0), rt_priority=None),
                    key, key_path, paused=True)
    hosted.start_thread()
    try:
        c = ControlClient("127.0.0.1", hosted.server.port, key)
        g = socket.create_connection(("127.0.0.1", hosted.endpoints.ground_port))
        cap = struct.pack(">d", 0.5)
        g.sendall(_tc(key, 2, 1, 8, cap))                       # set_throttle_cap cap=0.5
        g.sendall(_tc(b"\x00" * 32, 2, 2, 8, struct.pack(">d", 0.1)))  # forged: another key
        g.sendall(_tc(key, 2, 1, 8, cap))                       # replayed
        t = c.request("status")["t_s"]
        while hosted.run.fsw.stats()["tc_accepted"] + sum(hosted.run.fsw.stats()["tc_rejected"].values()) < 3:
            t = c.request("step", duration="1 s")["t_s"]
            assert t < 60, "the ground port never delivered the three TCs"
        stats = hosted.run.fsw.stats()
        assert stats["tc_accepted"] == 1 and stats["tc_rejected"] == {"bad_mac": 1, "replay": 1}
        assert hosted.run.fsw.throttle_cap == 0.5
        g.close()
    finally:
        hosted.close()


@pytest.mark.parametrize("argv, message", [
    (["console", "{tmp}"], "no live run there"),
    (["console", "--key-file", "{tmp}/none.key"], "--key-file: TC key file"),
    (["console", "--replay", "{tmp}"], "no telemetry archive there"),
    (["run", "--key-file", "{tmp}/k"], "only with --console or --listen"),
    (["dictionary", "export", "--xtce", "{tmp}"], "is a directory"),
])
def test_bad_console_input_is_exit_2_naming_it(tmp_path, argv, message):
    r = subprocess.run([sys.executable, "-m", "hil_rig.cli", *[a.format(tmp=tmp_path) for a in argv]],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
