"""Ground interop beyond our console (the XTCE export: tests/test_xtce.py): a TC built
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

import pytest

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
