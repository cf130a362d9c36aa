"""Cost of one virtual-clock time sync with report, the loop's per-board, per-second round trip.

One emulated board (its own process, virtual clock) behind a real pty, one long
matmul job running and ``--ended`` finished jobs in its report. The figures, per
sync, medians of ``--repeat`` rounds:

- ``link_main_cpu_us``: CPU of this process through ``Link.time_sync`` (the
  calling thread and the link's reader thread);
- ``agent_cpu_us``: CPU of the board's agent process (its job worker excluded);
- ``link_wall_us``: wall time of one ``Link.time_sync``;
- ``read_on_wait_main_cpu_us``, ``read_on_wait_wall_us``: the same through a
  ``Link(read_on_wait=True)``, which has no reader thread (the calling thread
  reads the reply itself: the runner's mode).

Baseline measured in the same run, on the same board and pty: the same request
bytes written and the reply read, deframed and decoded (JSON, base64) by the
calling thread alone, without a reader thread (``threadless_*``; no retries,
no telemetry, the housekeeping record left binary). It bounds what handing the
reply over from a reader thread costs.

    python bench/sync.py          # table
    python bench/sync.py --json   # one JSON object on one line
"""

from __future__ import annotations

import argparse
import base64
import os
import select
import statistics
import sys
import time

import serial
from _figures import print_figures  # bench/, the script's own directory

from firmware_bridge import protocol as P
from firmware_bridge.emulator import EmulatorProcess, open_pty
from firmware_bridge.framing import Deframer, frame
from firmware_bridge.link import Link, _time_sync_data

NS = 1_000_000_000


def _cpu_s(pid: int) -> float:
    """utime + stime of one process (not its children), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _link_round(link: Link, agent_pid: int, t: int, n: int, prefix: str) -> tuple[int, dict]:
    for _ in range(50):  # warm up
        t += NS
        link.time_sync(t)
    c0, a0, w0 = time.process_time(), _cpu_s(agent_pid), time.perf_counter()
    for _ in range(n):
        t += NS
        link.time_sync(t)
    w1, c1, a1 = time.perf_counter(), time.process_time(), _cpu_s(agent_pid)
    fig = {f"{prefix}_main_cpu_us": 1e6 * (c1 - c0) / n, f"{prefix}_wall_us": 1e6 * (w1 - w0) / n}
    if prefix == "link":
        fig["agent_cpu_us"] = 1e6 * (a1 - a0) / n
    return t, fig


def _threadless_round(path: str, t: int, n: int, seq: int) -> tuple[int, int, dict]:
    ser = serial.serial_for_url(path, baudrate=921600, timeout=2.0, exclusive=True)
    fd = ser.fd
    deframer = Deframer(P.decode_packet, P.MAX_PACKET_BYTES)
    _fid, apid, _ = P.FUNCTIONS["time_sync"]
    try:
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            t += NS
            seq = (seq + 1) % P.SEQ_MODULO
            tc = P.encode_packet(P.Packet(P.TC, apid, seq, *P.TC_FUNCTION, _time_sync_data(t, True),
                                          ack=P.ACK_COMPLETION, source_id=0x51))
            rid = P.request_id(tc)
            os.write(fd, frame(tc))
            reply = None
            while reply is None:
                if not select.select([fd], [], [], 2.0)[0]:
                    raise SystemExit(f"bench/sync.py: no reply to the time sync at t = {t / NS:.0f} s")
                for pkt in deframer.feed(os.read(fd, 65536)):
                    if pkt.data[:4] != rid:
                        continue  # telemetry, or a reply to someone else
                    if pkt.kind != P.TM_FUNCTION_REPORT:
                        raise SystemExit(f"bench/sync.py: time sync refused: {P.decode_failure(pkt.data[4:])}")
                    reply = pkt
            res = P.decode_json(reply.data[4:], "time_sync")
            base64.b64decode(res["hk"])
        w1, c1 = time.perf_counter(), time.process_time()
    finally:
        ser.close()
    return t, seq, {"threadless_main_cpu_us": 1e6 * (c1 - c0) / n, "threadless_wall_us": 1e6 * (w1 - w0) / n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--syncs", type=int, default=2000, help="time syncs per round")
    ap.add_argument("--repeat", type=int, default=3, help="rounds (figures are their medians)")
    ap.add_argument("--ended", type=int, default=16, help="finished jobs in the board's report")
    ap.add_argument("--kind", default="jetson", choices=["jetson", "rpi"])
    a = ap.parse_args()
    for name in ("syncs", "repeat"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} must be at least 1")
    if a.ended < 0:
        ap.error("--ended must be >= 0")

    master, path = open_pty()
    emu = EmulatorProcess(master, kind=a.kind, name="bench", clock="virtual", status=False).start()
    rounds: list[dict] = []
    t, seq = 0, 0
    try:
        reply_bytes = 0
        for r in range(a.repeat):
            with Link(path, timeout_s=2.0) as link:
                if r == 0:  # the board's jobs: `ended` finished ones, then one that runs on
                    for k in range(a.ended):
                        link.start_job("matmul", {"n": 64, "steps": 2, "seed": k + 5})
                        for _ in range(5):
                            t += NS
                            link.time_sync(t)
                    link.start_job("matmul", {"n": 64, "steps": 10_000_000, "seed": 1})
                    t += NS
                    reply_bytes = len(P.json_bytes({k: v for k, v in link.time_sync(t).items() if k != "hk"}))
                t, fig = _link_round(link, emu.pid, t, a.syncs, "link")
            with Link(path, timeout_s=2.0, read_on_wait=True) as link:
                t, row = _link_round(link, emu.pid, t, a.syncs, "read_on_wait")
            t, seq, base = _threadless_round(path, t, a.syncs, seq + 5000)
            rounds.append({**fig, **row, **base})
    finally:
        emu.stop()
        os.close(master)
    res: dict = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    res["link_vs_threadless_cpu"] = res["link_main_cpu_us"] / res["threadless_main_cpu_us"]
    res["read_on_wait_vs_threadless_cpu"] = (res["read_on_wait_main_cpu_us"]
                                             / res["threadless_main_cpu_us"])
    res["report_json_bytes_without_hk"] = reply_bytes
    res.update(syncs=a.syncs, repeat=a.repeat, ended=a.ended, kind=a.kind)
    res = {k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}
    print_figures(res, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
