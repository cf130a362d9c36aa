"""Any well-framed packet, to a real emulated board over a pty: the board answers on.

Hypothesis builds packets with a valid CRC and a correct length field over every
value of the primary header (version, type, secondary-header flag, APID,
sequence flags and count) and of the secondary header (PUS version,
acknowledgement flags, service, subtype, source ID), with arbitrary or
function-shaped data. After each, the board must still answer a ping, and the
emulator process must still run. (Issue 18: one 13-byte TC on the idle APID
used to kill the agent.) The board runs without test mode, so no fuzzed packet
can hang it on purpose.
"""

from __future__ import annotations

import os
import struct
import time

import pytest
import serial
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from firmware_bridge import protocol as P
from firmware_bridge.emulator import EmulatorProcess, open_pty
from firmware_bridge.framing import Deframer, frame

PING_SOURCE = 0xBEEF
#: A generous bound on waiting for a board that stopped answering (a board that works
#: answers in milliseconds; this only turns a dead board into a failure, not a hang).
STUCK_S = 60.0


@pytest.fixture(scope="module")
def board():
    master, path = open_pty()
    emu = EmulatorProcess(master, kind="jetson", name="fuzz", seed=2, clock="virtual",
                          status=False).start()
    port = serial.Serial(path, timeout=0.05, exclusive=True)
    yield emu, port
    port.close()
    emu.stop()
    os.close(master)


def _packet(w0: int, w1: int, sec: bytes, data: bytes) -> bytes:
    """Primary header with the right length field, then ``sec`` and ``data``, then the CRC."""
    body = struct.pack(">HHH", w0, w1, len(sec) + len(data) + 1) + sec + data
    return body + P.crc16_ccitt(body).to_bytes(2, "big")


_fids = st.one_of(st.sampled_from(sorted(P.FUNCTION_NAMES)), st.integers(0, 0xFFFF))
_args = st.dictionaries(
    st.sampled_from(["job_id", "throttle", "t_ns", "report", "offset", "period_s", "index",
                     "duration_s", "params", "x"]),
    st.one_of(st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=6), st.none(),
              st.booleans(), st.lists(st.integers(), max_size=3)), max_size=4)
_data = st.one_of(
    st.binary(max_size=120),
    st.builds(lambda f, a: P.encode_function(f, a), _fids, _args),
    st.builds(lambda f, raw: f.to_bytes(2, "big") + raw, _fids, st.binary(max_size=60)),
)
#: APIDs drawn for well-formed packets (the any-bits headers cover every other one).
_APIDS = [*P.COMMAND_APIDS, P.APID_HK, P.APID_EVENTS, P.APID_IDLE, 0x000, 0x123, P.APID_IDLE - 1]


@st.composite
def _headers(draw) -> tuple[int, int, bytes]:
    """(word 0, word 1, secondary header). Three in four are well formed (version 0,
    secondary header flag set, unsegmented, PUS-C), so they reach the agent; the rest
    are any bits at all, so the decoder's checks see them too."""
    if draw(st.integers(0, 3)) == 0:
        return (draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF)),
                draw(st.binary(min_size=5, max_size=15)))
    ptype = draw(st.sampled_from([P.TC, P.TC, P.TM]))
    apid = draw(st.sampled_from(_APIDS))
    w0 = (ptype << 12) | 0x0800 | apid
    w1 = 0xC000 | draw(st.integers(0, P.SEQ_MODULO - 1))
    service = draw(st.sampled_from([1, 3, 5, 8, 17, 0, 200, 255]))
    sec = struct.pack(">BBBH", (P.PUS_VERSION << 4) | draw(st.integers(0, 15)), service,
                      draw(st.integers(0, 255)), draw(st.integers(0, 0xFFFF)))
    return w0, w1, sec


def _ping(emu: EmulatorProcess, port: serial.Serial, host: Deframer, seq: int,
          sent: list[bytes]) -> None:
    """A ping after the packets ``sent``: its reply must come. (The board is shared by
    all examples, so a failure names the packets before it: hypothesis's shrunk example
    is then only the first one to meet a dead board.)"""
    after = " ".join(p.hex() for p in sent[-3:])
    tc = P.encode_tc(P.APID_AGENT, seq, 17, 1, b"", P.ACK_COMPLETION, PING_SOURCE)
    port.write(b"\x00" + frame(tc))
    deadline = time.monotonic() + STUCK_S
    while True:
        for pkt, _raw in host.feed(port.read(port.in_waiting or 1)):
            if pkt.kind == P.TM_PING and pkt.data[:4] == tc[:4]:
                return
        assert emu.alive, f"the emulator exited ({emu.proc.poll()}) after {after}"
        assert time.monotonic() < deadline, f"the board stopped answering pings after {after}"


def test_the_board_answers_pings_whatever_packet_came_before(board) -> None:
    emu, port = board
    host = Deframer(lambda raw: (P.decode_packet(raw), raw), P.MAX_PACKET_BYTES)
    seqs = iter(range(1, 10**6))
    sent = []

    @settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow])
    @given(_headers(), _data)
    @example((0x1FFF, 0xC000, bytes.fromhex("2811014d2b")), b"")  # issue 18's idle-APID TC[17,1]
    def prop(header: tuple[int, int, bytes], data: bytes) -> None:
        packet = _packet(*header, data)
        sent.append(packet)
        port.write(frame(packet))
        _ping(emu, port, host, next(seqs) % P.SEQ_MODULO, sent)

    prop()
    assert len(sent) > 100
    assert host.stats.errors == 0  # everything the board sent was a valid frame and packet
