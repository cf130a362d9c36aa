"""The payload link judged by independent implementations, against a real emulated board.

`spacepackets` (PyPI) builds the telecommands and parses every packet the board
sends; the `cobs` package frames and deframes them. Both directions are checked
field by field against docs/protocol.md, over a real pty to a board emulator in
its own process. The board agent itself uses neither package (it runs with
Python, pyserial and numpy only: tests/test_bridge_agent.py runs it stand-alone).
"""

from __future__ import annotations

import base64
import json
import os
import struct
import time

import pytest
import serial
from cobs import cobs
from hypothesis import given
from hypothesis import strategies as st
from spacepackets.ccsds.spacepacket import PacketType, SequenceFlags
from spacepackets.ecss import PusTc, PusTm, RequestId
from spacepackets.ecss.pus_1_verification import (
    ManagedParams,
    ManagedParamsVerification,
    Service1Tm,
)

from firmware_bridge import protocol as P
from firmware_bridge.emulator import EmulatorProcess, open_pty
from firmware_bridge.framing import cobs_decode, cobs_encode

#: The record of TM[3,25] as docs/protocol.md gives it (big-endian, packed).
HK_RECORD = ">HIfffIIfBHBfIBB"
#: Reports that end a request's verification (the data reports are completion reports).
FINALS = {(17, 2), (3, 25), (8, 130), (1, 2), (1, 7), (1, 8)}
ALL_FLAGS = 0b1111  # acceptance, start, progress, completion: spacepackets' default
#: A generous bound on waiting for a board that stopped answering (never reached by a
#: board that works; it only turns a hang into a failure naming what was awaited).
STUCK_S = 60.0


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE, bit by bit, as docs/protocol.md specifies it."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


class Ground:
    """A ground station of independent parts: frames with `cobs`, packets with
    spacepackets. ``frames`` keeps every frame body the board sent."""

    def __init__(self, path: str) -> None:
        self.port = serial.Serial(path, timeout=0.05, exclusive=True)
        self.buf = b""
        self.frames: list[bytes] = []
        self.seen: list[PusTm] = []  # every TM, in the order it came
        self.seq = {P.APID_AGENT: 0, P.APID_JOBS: 0}

    def send(self, packet: bytes) -> None:
        self.port.write(cobs.encode(bytes(packet)) + b"\x00")

    def tc(self, service: int, subtype: int, app_data: bytes = b"", *, apid: int = P.APID_AGENT,
           ack: int = ALL_FLAGS, source_id: int = 0x0A0B) -> PusTc:
        seq = self.seq.get(apid, 0)
        self.seq[apid] = seq + 1
        return PusTc(service=service, message_subtype=subtype, apid=apid, app_data=app_data,
                     seq_count=seq, source_id=source_id, ack_flags=ack)

    def read(self) -> list[bytes]:
        """Packets that arrived since the last call, each parsed by :func:`parse_tm`."""
        self.buf += self.port.read(self.port.in_waiting or 1)
        *bodies, self.buf = self.buf.split(b"\x00")
        out = []
        for body in bodies:
            if body:
                self.frames.append(body)
                tm = parse_tm(cobs.decode(body))
                self.seen.append(tm)
                out.append(tm)
        return out

    def request(self, tc: PusTc) -> list[PusTm]:
        """Send ``tc``; every TM until its final report (the reports of ``tc`` and any
        telemetry between), each parsed by spacepackets (which checks the CRC)."""
        raw_tc = tc.pack()
        self.send(raw_tc)
        got: list[PusTm] = []
        deadline = time.monotonic() + STUCK_S
        while True:
            for tm in self.read():
                got.append(tm)
                if tm.tm_data[:4] == raw_tc[:4] and (tm.service, tm.message_subtype) in FINALS:
                    return got
            assert time.monotonic() < deadline, f"no final report for {tc} (got {got})"

    def quiet(self, polls: int = 10) -> list[PusTm]:
        """What the board sends while nothing is asked of it (``polls`` reads in a row
        with nothing new)."""
        got, idle = [], 0
        while idle < polls:
            new = self.read()
            got += new
            idle = 0 if new else idle + 1
        return got

    def close(self) -> None:
        self.port.close()


def parse_tm(raw: bytes) -> PusTm:
    """One TM parsed by spacepackets, checked field by field against the project's
    decoder and re-packed by spacepackets to the same bytes."""
    tm = PusTm.unpack(raw, timestamp_len=8)  # raises on a bad CRC
    sp = tm.space_packet_header
    assert (sp.ccsds_version, sp.packet_type, sp.sec_header_flag, sp.seq_flags) == (
        0, PacketType.TM, True, SequenceFlags.UNSEGMENTED)
    assert sp.data_len == len(raw) - 7 and len(raw) <= P.MAX_PACKET_BYTES
    sec = tm.pus_tm_sec_header
    assert (sec.pus_version, sec.spacecraft_time_ref) == (2, 0)
    ours = P.decode_packet(raw)
    assert (ours.ptype, ours.apid, ours.seq, ours.service, ours.subtype, ours.msg_counter,
            ours.source_id, ours.time_ns, bytes(ours.data)) == (
        P.TM, tm.apid, tm.seq_count, tm.service, tm.message_subtype, sec.message_counter,
        sec.dest_id, int.from_bytes(tm.timestamp, "big", signed=True), bytes(tm.source_data))
    again = PusTm(service=tm.service, message_subtype=tm.message_subtype, timestamp=tm.timestamp,
                  source_data=tm.source_data, apid=tm.apid, seq_count=tm.seq_count,
                  message_counter=sec.message_counter, destination_id=sec.dest_id)
    assert again.pack() == raw
    return tm


def verification(tm: PusTm) -> Service1Tm:
    return Service1Tm.from_tm(tm, ManagedParamsVerification(bytes_err_code=2))


def kinds(tms: list[PusTm]) -> list[tuple[int, int, int]]:
    return [(tm.apid, tm.service, tm.message_subtype) for tm in tms]


def function(fid: int, args: dict) -> bytes:
    """TC[8,1] application data as docs/protocol.md gives it: uint16 id, sorted JSON."""
    return struct.pack(">H", fid) + json.dumps(args, sort_keys=True, separators=(",", ":")).encode()


def result(tm: PusTm, tc: PusTc) -> dict:
    assert (tm.service, tm.message_subtype) == (8, 130) and tm.tm_data[:4] == RequestId.from_pus_tc(tc).pack()
    return json.loads(tm.tm_data[4:])


def hk_record(data: bytes) -> dict:
    head = struct.calcsize(HK_RECORD)
    f = struct.unpack_from(HK_RECORD, data)
    nt, nr = f[-2], f[-1]
    assert len(data) == head + 4 * (nt + 2 * nr)
    vals = struct.unpack_from(f">{nt + 2 * nr}f", data, head)
    return {"layout_id": f[0], "uptime_s": f[1], "throttle": f[2], "throttle_cmd": f[3], "flags": f[12],
            "temps": vals[:nt],
            "rails": list(zip(vals[nt::2], vals[nt + 1::2], strict=True))}


@pytest.fixture(scope="module")
def ground():
    master, path = open_pty()
    emu = EmulatorProcess(master, kind="jetson", name="conformance", seed=3, clock="virtual",
                          status=False).start()
    g = Ground(path)
    g.quiet()  # the boot event, if it came after the port opened
    yield g, emu
    g.close()
    emu.stop()
    os.close(master)


def test_a_ping_with_spacepackets_default_flags_gets_every_report_in_order(ground) -> None:
    g, _ = ground
    tc = g.tc(17, 1)
    assert tc.pack() == P.encode_tc(P.APID_AGENT, tc.seq_count, 17, 1, b"", ALL_FLAGS, 0x0A0B)
    got = g.request(tc)
    assert kinds(got) == [(P.APID_AGENT, 1, 1), (P.APID_AGENT, 1, 3), (P.APID_AGENT, 17, 2)]
    rid = RequestId.from_pus_tc(tc)
    for tm in got[:2]:
        v = verification(tm)
        assert v.tc_req_id == rid and not v.has_failure_notice and tm.tm_data == rid.pack()
    assert got[2].tm_data == rid.pack()  # the data report is the completion report
    assert [tm.pus_tm_sec_header.dest_id for tm in got] == [0x0A0B] * 3
    assert [tm.seq_count for tm in got] == list(range(got[0].seq_count, got[0].seq_count + 3))
    # the host's flags (completion only): the data report alone
    tc = g.tc(17, 1, ack=0b1000)
    assert kinds(g.request(tc)) == [(P.APID_AGENT, 17, 2)]


def test_board_info_and_one_shot_housekeeping_as_the_document_gives_them(ground) -> None:
    g, _ = ground
    tc = g.tc(8, 1, function(1, {}), ack=0b1000)
    info = result(g.request(tc)[-1], tc)
    assert (info["protocol_version"], info["protocol_minor"]) == (2, 0)
    assert info["max_packet_bytes"] == 4096
    layout = info["hk_layout"]
    text = "|".join(layout["temps"]) + "#" + "|".join(layout["rails"])
    assert layout["layout_id"] == crc16_ccitt_false(text.encode())
    tc = g.tc(3, 27, ack=0b1000)
    (tm,) = g.request(tc)
    assert (tm.apid, tm.service, tm.message_subtype) == (P.APID_AGENT, 3, 25)
    assert tm.tm_data[:4] == RequestId.from_pus_tc(tc).pack()  # this carrier: request ID first
    hk = hk_record(tm.tm_data[4:])
    assert hk["layout_id"] == layout["layout_id"]
    assert len(hk["temps"]) == len(layout["temps"]) and len(hk["rails"]) == len(layout["rails"])
    assert all(250.0 < t < 400.0 for t in hk["temps"])
    assert hk["throttle"] == hk["throttle_cmd"] == 1.0  # (cool: the governor holds back nothing)


def test_time_sync_report_periodic_housekeeping_and_events(ground) -> None:
    g, _ = ground
    tc = g.tc(3, 5, json.dumps({"period_s": 1}).encode())
    got = g.request(tc)
    assert kinds(got) == [(P.APID_AGENT, 1, 1), (P.APID_AGENT, 1, 3), (P.APID_AGENT, 1, 7)]
    assert verification(got[2]).tc_req_id == RequestId.from_pus_tc(tc)
    t_ns = 5_000_000_000
    tc = g.tc(8, 1, function(4, {"t_ns": t_ns, "report": True}), ack=0b1000)
    got = g.request(tc)
    periodic = [tm for tm in got if tm.apid == P.APID_HK]
    assert len(periodic) == 1 and (periodic[0].service, periodic[0].message_subtype) == (3, 25)
    assert periodic[0].pus_tm_sec_header.dest_id == 0  # unsolicited: no request ID either
    assert int.from_bytes(periodic[0].timestamp, "big", signed=True) == t_ns
    rec = hk_record(periodic[0].tm_data)
    res = result(got[-1], tc)
    assert res["t_ns"] == t_ns and isinstance(res["previous_ns"], int)
    assert hk_record(base64.b64decode(res["hk"], validate=True))["layout_id"] == rec["layout_id"]
    assert res["jobs"] == []
    assert int.from_bytes(got[-1].timestamp, "big", signed=True) == t_ns
    tc = g.tc(8, 1, function(4, {"t_ns": t_ns + 1_000_000_000}), ack=0b1000)
    got = g.request(tc)  # one period later: the next periodic report, its count the next
    assert kinds(got) == [(P.APID_HK, 3, 25), (P.APID_AGENT, 8, 130)]
    assert got[0].seq_count == (periodic[0].seq_count + 1) % P.SEQ_MODULO
    tc = g.tc(3, 6, ack=0b0000)  # no flags: nothing to report for a TC without a data report
    g.send(tc.pack())
    tc = g.tc(8, 1, function(2, {"throttle": 0.5}))
    got = g.request(tc)
    assert kinds(got) == [(P.APID_AGENT, 1, 1), (P.APID_AGENT, 1, 3), (P.APID_EVENTS, 5, 1),
                          (P.APID_AGENT, 8, 130)]
    event = got[2].tm_data
    assert struct.unpack_from(">H", event)[0] == P.EVENTS["throttle_changed"]
    assert json.loads(event[2:]) == {"throttle": 0.5, "effective_throttle": 0.5}
    assert result(got[3], tc) == {"throttle": 0.5, "effective_throttle": 0.5}


def test_a_job_on_the_jobs_apid_runs_to_its_digest(ground) -> None:
    g, _ = ground
    params = {"n": 8, "steps": 20, "seed": 1}
    tc = g.tc(8, 1, function(10, {"workload": "matmul", "params": params}), apid=P.APID_JOBS)
    got = g.request(tc)
    assert {tm.apid for tm in got if tm.service != 5} == {P.APID_JOBS}
    job_id = result(got[-1], tc)["job_id"]
    t = 5_000_000_000
    for _ in range(20):
        t += 60_000_000_000
        tc = g.tc(8, 1, function(4, {"t_ns": t, "report": True}), ack=0b1000)
        jobs = {j["job_id"]: j for j in result(g.request(tc)[-1], tc)["jobs"]}
        if jobs[job_id]["state"] == "done":
            break
    assert jobs[job_id]["state"] == "done", jobs
    tc = g.tc(8, 1, function(11, {"job_id": job_id}), apid=P.APID_JOBS, ack=0b1000)
    status = result(g.request(tc)[-1], tc)
    assert status["state"] == "done" and status["step"] == 20 and len(status["digest"]) == 32
    assert status["digest"] == jobs[job_id]["digest"]


@pytest.mark.parametrize(("service", "subtype", "app_data", "apid", "report", "code"), [
    (200, 1, b"", P.APID_AGENT, (1, 2), P.ERR_UNKNOWN_SERVICE),
    (8, 1, struct.pack(">H", 999), P.APID_AGENT, (1, 2), P.ERR_UNKNOWN_FUNCTION),
    (8, 1, function(2, {"throttle": 7}), P.APID_AGENT, (1, 2), P.ERR_BAD_ARGUMENTS),
    (8, 1, function(21, {}), P.APID_AGENT, (1, 2), P.ERR_NOT_TEST_MODE),
    (8, 1, function(11, {"job_id": 999}), P.APID_JOBS, (1, 8), P.ERR_NO_SUCH_JOB),
    (17, 1, b"", P.APID_EVENTS, (1, 2), P.ERR_UNKNOWN_APID),
    (17, 1, b"", 0x123, (1, 2), P.ERR_UNKNOWN_APID),
])
def test_failures_are_reported_once_with_a_uint16_code(ground, service, subtype, app_data, apid,
                                                       report, code) -> None:
    g, _ = ground
    tc = g.tc(service, subtype, app_data, apid=apid)
    got = g.request(tc)
    reply_apid = apid if apid in P.COMMAND_APIDS else P.APID_AGENT
    want = [] if report == (1, 2) else [(reply_apid, 1, 1), (reply_apid, 1, 3)]
    assert kinds(got) == [*want, (reply_apid, *report)]
    v = verification(got[-1])
    assert v.tc_req_id == RequestId.from_pus_tc(tc) and v.has_failure_notice
    assert v.failure_notice.code.val == code and v.failure_notice.data.decode()


def test_an_idle_packet_is_discarded_and_sequence_counts_are_per_stream(ground) -> None:
    g, _ = ground
    idle = PusTc(service=17, message_subtype=1, apid=P.APID_IDLE, seq_count=0, ack_flags=0b0001)
    g.send(idle.pack())
    before = g.request(g.tc(17, 1, ack=0b1000))[-1].seq_count
    g.request(g.tc(17, 1, apid=P.APID_EVENTS))  # refused on 0x050: the event stream's count stays
    after = g.request(g.tc(17, 1, ack=0b1000))[-1].seq_count
    assert after == before + 2
    last_event = [tm for tm in g.seen if tm.apid == P.APID_EVENTS][-1]
    tc = g.tc(8, 1, function(2, {"throttle": 1.0}), ack=0b1000)
    event = [tm for tm in g.request(tc) if tm.apid == P.APID_EVENTS]
    assert event and event[0].seq_count == last_event.seq_count + 1


def test_counts_restart_at_zero_after_a_reboot(ground) -> None:
    g, _ = ground
    tc = g.tc(8, 1, function(3, {}), ack=0b1000)
    assert result(g.request(tc)[-1], tc) == {"rebooting": True}
    (boot,) = g.quiet()
    assert (boot.apid, boot.service, boot.message_subtype, boot.seq_count) == (P.APID_EVENTS, 5, 1, 0)
    assert boot.pus_tm_sec_header.message_counter == 0
    assert struct.unpack_from(">H", boot.tm_data)[0] == P.EVENTS["boot"]
    (pong,) = g.request(g.tc(17, 1, ack=0b1000))
    assert (pong.seq_count, pong.pus_tm_sec_header.message_counter) == (0, 0)


def test_each_stream_counts_on_its_own_with_no_gap(ground) -> None:
    """Over everything the board sent in this module: each APID's sequence count goes
    up by one per TM, and restarts at 0 only at a boot (the boot event first)."""
    g, _ = ground
    expect: dict[int, int] = {}
    checked = set()
    for tm in g.seen:
        if tm.apid == P.APID_EVENTS and tm.tm_data[:2] == struct.pack(">H", P.EVENTS["boot"]):
            expect = {}
            assert tm.seq_count == 0
        if tm.apid in expect:
            assert tm.seq_count == expect[tm.apid], (hex(tm.apid), tm.seq_count, expect)
            checked.add(tm.apid)
        expect[tm.apid] = (tm.seq_count + 1) % P.SEQ_MODULO
    assert checked >= {P.APID_AGENT, P.APID_JOBS, P.APID_HK, P.APID_EVENTS}


def test_every_frame_the_board_sent_is_the_cobs_package_s_encoding(ground) -> None:
    """The board's frames decode with `cobs` (checked as they came); each is byte for
    byte what `cobs` encodes, or that and a final 0x01 where a zero-free run of a
    multiple of 254 bytes ends the packet (docs/protocol.md, Framing)."""
    g, _ = ground
    assert len(g.frames) > 30
    for body in g.frames:
        assert body in _cobs_forms(cobs.decode(body))


def _cobs_forms(data: bytes) -> tuple[bytes, ...]:
    plain = cobs.encode(data)
    last_run = len(data) - (data.rfind(b"\x00") + 1)
    return (plain, plain + b"\x01") if last_run and last_run % 254 == 0 else (plain,)


@given(st.one_of(st.binary(max_size=1200),
                 st.builds(lambda n, z: b"\x05" * n + b"\x00" * z, st.integers(0, 1100),
                           st.integers(0, 3)),
                 st.builds(lambda z, n: b"\x00" * z + b"\x05" * (254 * n), st.integers(0, 3),
                           st.integers(1, 4))))
def test_project_cobs_and_the_cobs_package_agree(data: bytes) -> None:
    assert cobs.decode(cobs_encode(data)) == data
    assert cobs_decode(cobs.encode(data)) == data
    assert cobs_encode(data) == _cobs_forms(data)[-1]


@given(st.integers(0, P.APID_IDLE - 1), st.integers(0, P.SEQ_MODULO - 1), st.integers(0, 255),
       st.integers(0, 255), st.integers(0, 15), st.integers(0, 0xFFFF), st.binary(max_size=300))
def test_project_tc_is_the_spacepackets_tc(apid, seq, service, subtype, ack, source, data) -> None:
    ours = P.encode_tc(apid, seq, service, subtype, data, ack, source)
    theirs = PusTc(service=service, message_subtype=subtype, apid=apid, app_data=data,
                   seq_count=seq, source_id=source, ack_flags=ack)
    assert theirs.pack() == ours
    back = PusTc.unpack(ours)
    assert (back.apid, back.seq_count, back.service, back.message_subtype, back.source_id,
            back.app_data, back.pus_tc_sec_header.ack_flags) == (
        apid, seq, service, subtype, source, data, ack)


def test_the_sizes_match_a_maximal_spacepackets_tm() -> None:
    data = bytes(range(1, 256)) * 16
    tm = PusTm(service=8, message_subtype=130, timestamp=bytes(8),
               source_data=data[:P.MAX_TM_DATA_BYTES], apid=P.APID_JOBS)
    raw = tm.pack()
    assert len(raw) == P.MAX_PACKET_BYTES
    assert P.decode_packet(bytes(raw)).data == data[:4073]
    assert len(cobs.encode(bytes(raw))) + 1 <= P.MAX_PACKET_BYTES + 18
    with pytest.raises(P.PacketError, match="exceeds the maximum"):
        P.encode_tm(P.APID_JOBS, 0, 8, 130, data[:4074])


def test_managed_params_parse_the_board_s_tm_generically() -> None:
    """spacepackets' generic reader with this mission's managed parameters (an 8-byte
    time field) reads a board TM as PusTm.unpack does."""
    raw = P.encode_tm(P.APID_AGENT, 3, 17, 2, b"\x18\x50\xc0\x05", 7, 9, -1)
    tm = PusTm.unpack_generic(raw, ManagedParams(timestamp_len=8))
    assert tm.timestamp == b"\xff" * 8 and tm.pus_tm_sec_header.dest_id == 7


def test_the_agent_and_the_emulator_load_neither_package() -> None:
    """The independent implementations are the judges only: the board code imports
    neither (it must run with Python, pyserial and numpy)."""
    import subprocess
    import sys

    code = ("import sys, firmware_bridge.agent, firmware_bridge.emulator, firmware_bridge.link; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cobs', 'spacepackets')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
