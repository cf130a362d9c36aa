"""Payload link benchmark: ping latency, framing overhead, codec throughput, HK rate.

Everything runs over a real pty pair with the emulator in its own process, next
to a baseline measured in the same run: a raw pty echo round trip (a child
process echoing bytes, no protocol) for latency and rate, and CRC-16 alone for
codec throughput.

    python bench/link.py          # table
    python bench/link.py --json   # one JSON object on one line
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time

import serial

from firmware_bridge import protocol as P
from firmware_bridge.emulator import EmulatorProcess, open_pty
from firmware_bridge.framing import Deframer, frame
from firmware_bridge.link import Link

ECHO = textwrap.dedent("""
    import os, select, sys
    fd = int(sys.argv[1])
    while True:
        select.select([fd], [], [])
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        os.write(fd, data)
""")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def echo_baseline(n: int, msg_len: int) -> tuple[list[float], float]:
    """Round trips of a ``msg_len``-byte message through a raw echo process on a pty."""
    master, path = open_pty()
    proc = subprocess.Popen([sys.executable, "-c", ECHO, str(master)], pass_fds=[master])
    ser = serial.serial_for_url(path, baudrate=921600, timeout=1.0, exclusive=True)
    msg = b"\x5a" * msg_len
    try:
        for _ in range(50):
            ser.write(msg)
            ser.read(msg_len)
        rtts = []
        for _ in range(n):
            t0 = time.perf_counter()
            ser.write(msg)
            got = ser.read(msg_len)
            rtts.append(time.perf_counter() - t0)
            assert len(got) == msg_len
        # streaming rate: messages/s of the same size one way back through the echo
        t0 = time.perf_counter()
        count = 0
        while time.perf_counter() - t0 < 1.0:
            ser.write(msg * 32)
            ser.read(msg_len * 32)
            count += 32
        rate = count / (time.perf_counter() - t0)
    finally:
        ser.close()
        proc.kill()
        proc.wait()
        os.close(master)
    return rtts, rate


def codec(payload_len: int = 1024, n: int = 4000) -> dict:
    payload = bytes(range(256)) * (payload_len // 256)
    pkts = [P.Packet(P.TM, P.APID_JOBS, i % P.SEQ_MODULO, 8, 130, payload) for i in range(n)]
    t0 = time.perf_counter()
    wires = [frame(P.encode_packet(p)) for p in pkts]
    t_enc = time.perf_counter() - t0
    stream = b"".join(wires)
    d = Deframer(P.decode_packet, P.MAX_PACKET_BYTES)
    t0 = time.perf_counter()
    for i in range(0, len(stream), 4096):
        d.feed(stream[i:i + 4096])
    t_dec = time.perf_counter() - t0
    assert d.stats.frames == n and d.stats.errors == 0
    t0 = time.perf_counter()
    for _ in range(n):
        P.crc16_ccitt(payload)
    t_crc = time.perf_counter() - t0
    mb = n * payload_len / 1e6
    tc = frame(P.encode_packet(P.Packet(P.TC, P.APID_JOBS, 1, 8, 1, payload)))
    return {
        "overhead_ratio": len(wires[0]) / payload_len,
        "overhead_ratio_tc": len(tc) / payload_len,
        "encode_mb_s": mb / t_enc,
        "decode_mb_s": mb / t_dec,
        "baseline_crc16_mb_s": mb / t_crc,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--pings", type=int, default=5000)
    a = ap.parse_args()

    res: dict = {}
    master, path = open_pty()
    emu = EmulatorProcess(master, kind="jetson", name="bench", status=False).start()
    try:
        with Link(path, timeout_s=1.0) as link:
            for _ in range(200):
                link.ping()
            rtts = [link.ping() for _ in range(a.pings)]
            res["ping_p50_ms"] = statistics.median(rtts) * 1e3
            res["ping_p99_ms"] = pct(rtts, 0.99) * 1e3
            link.board_info()
            t0 = time.perf_counter()
            k = 0
            while time.perf_counter() - t0 < 1.0:
                link.housekeeping()
                k += 1
            res["hk_req_per_s"] = k / (time.perf_counter() - t0)
            link.events()
            link.enable_periodic_hk(1e-4)
            time.sleep(0.3)
            link.events()
            gaps0 = link.stats.tm_seq_gaps
            t0 = time.perf_counter()
            got = 0
            while time.perf_counter() - t0 < 2.0:
                got += sum(1 for t in link.events(timeout_s=0.1) if t.kind == "hk")
            res["hk_per_s"] = got / (time.perf_counter() - t0)
            res["hk_stream_seq_gaps"] = link.stats.tm_seq_gaps - gaps0
            link.disable_periodic_hk()
            ping_wire = len(frame(P.encode_packet(P.Packet(P.TC, P.APID_AGENT, 0, 17, 1))))
    finally:
        emu.stop()
        os.close(master)
    echo, echo_rate = echo_baseline(a.pings, ping_wire)
    res["baseline_echo_p50_ms"] = statistics.median(echo) * 1e3
    res["baseline_echo_p99_ms"] = pct(echo, 0.99) * 1e3
    res["baseline_echo_msgs_per_s"] = echo_rate
    res["ping_p50_vs_echo"] = res["ping_p50_ms"] / res["baseline_echo_p50_ms"]
    res["ping_p99_vs_echo"] = res["ping_p99_ms"] / res["baseline_echo_p99_ms"]
    res.update(codec())
    res["encode_vs_crc16"] = res["encode_mb_s"] / res["baseline_crc16_mb_s"]
    res["decode_vs_crc16"] = res["decode_mb_s"] / res["baseline_crc16_mb_s"]
    res = {k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}
    if a.json:
        print(json.dumps(res))
        return 0
    targets = {"ping_p99_ms": "<= 1", "overhead_ratio": "<= 1.03", "hk_per_s": ">= 2000"}
    print(f"{'figure':28s} {'value':>12s}  target")
    for k, v in res.items():
        print(f"{k:28s} {v:12.4f}  {targets.get(k, '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
