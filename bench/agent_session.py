"""Every byte a board agent writes in a scripted session: the byte-identity check.

An in-process :class:`firmware_bridge.agent.Agent` on a real pty, with a virtual
clock, a simulated board, a status writer on a real pipe and real job workers, is
sent one telecommand at a time (board_info, time syncs with and without report,
start_job, checkpoint, set_throttle, periodic housekeeping, a duplicate TC, bad TCs
of every kind, a job that finishes, suspend/resume, cancel, test-mode commands...).
After each command the agent runs until it has answered and its workers are idle;
every byte it wrote on the pty and on the status pipe is recorded, in order.

Two trees must give the same recording: a change to the agent's encode or dispatch
paths that is meant to change nothing on the wire is checked with ::

    PYTHONPATH=/path/to/tree-a python bench/agent_session.py --out a.bin
    PYTHONPATH=/path/to/tree-b python bench/agent_session.py --out b.bin
    cmp a.bin b.bin

(``--out -`` prints the recording as one line per chunk, hex, for reading a
difference.) The recording is the same in every run of one tree: the clock is
virtual, the job workers are seeded, the status heartbeat is off and the status
line's pid is replaced by ``PID``. tests/test_bridge_agent_session.py runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import tty

from firmware_bridge import emulator
from firmware_bridge import protocol as P
from firmware_bridge.agent import Agent, FdTransport, VirtualClock
from firmware_bridge.emulator import KINDS, SimBoard, StatusWriter
from firmware_bridge.framing import frame

NS = 1_000_000_000


def _fn(name: str, args: dict | None = None, raw: bytes | None = None,
        ack: int = P.ACK_COMPLETION) -> tuple:
    """A TC[8,1] calling ``name`` on its APID."""
    fid, apid, _test = P.FUNCTIONS[name]
    body = raw if raw is not None else (P.json_bytes(args) if args is not None else b"")
    return (apid, *P.TC_FUNCTION, fid.to_bytes(2, "big") + body, ack)


def _sync(t_s: float, report: bool = True, ack: int = P.ACK_COMPLETION) -> tuple:
    """A time sync with the link's exact bytes (link._time_sync_data)."""
    t = int(t_s * NS)
    return _fn("time_sync", raw=b'{"report":true,"t_ns":%d}' % t if report else b'{"t_ns":%d}' % t, ack=ack)


def script(test_mode: bool) -> list:
    """The session: (apid, service, subtype, data, ack) per TC, or ("raw", bytes), or
    ("dup",) to repeat the previous TC's exact frame (a link retry)."""
    fn, sync = P.TC_FUNCTION, _sync
    ack_all = P.ACK_ACCEPTANCE | P.ACK_START | P.ACK_COMPLETION
    mm = {"workload": "matmul", "params": {"n": 16, "steps": 2500}, "deadline_s": None}
    long = {"workload": "mlp", "params": {"width": 16, "batch": 4, "steps": 10**6}, "deadline_s": 5000}
    s: list = [
        (P.APID_AGENT, *P.TC_PING, b"", P.ACK_COMPLETION),
        sync(1, False),
        _fn("board_info"),
        sync(2),
        sync(3, ack=ack_all),
        (P.APID_AGENT, *P.TC_HK_ONE_SHOT, b"", P.ACK_COMPLETION),
        _fn("start_job", mm),
    ]
    s += [sync(4 + i) for i in range(3)]
    s += [("dup",), sync(7, False, ack=0)]
    s += [_fn("checkpoint", {"job_id": 1}), sync(8)]
    s += [_fn("set_throttle", {"throttle": 0.5}, ack=ack_all), sync(9),
          _fn("set_throttle", {"throttle": 0.5})]
    s += [sync(10 + i) for i in range(40)]  # the job finishes
    s += [_fn("job_status", {"job_id": 1}),
          _fn("set_throttle", {"throttle": 1}),
          (P.APID_HK, *P.TC_HK_ENABLE_PERIODIC, b'{"period_s":2}', P.ACK_COMPLETION)]
    s += [sync(50 + i) for i in range(4)]  # periodic HK in sim time
    s += [(P.APID_AGENT, *P.TC_HK_DISABLE_PERIODIC, b"", P.ACK_COMPLETION),
          _fn("start_job", long), sync(55),
          _fn("suspend", {"job_id": 2}), sync(56),
          _fn("resume", {"job_id": 2}), sync(57),
          sync(58), _fn("cancel", {"job_id": 2}),
          sync(59)]
    # bad input: every refusal the agent has, the time sync's first
    bad = [b'{"report":true,"t_ns":-1}', b'{"report":true,"t_ns":1.5}', b'{"report":1,"t_ns":70000000000}',
           b'{"report":true,"t_ns":true}', b'{"report":true,"t_ns":9223372036854775808}',
           b'{"report":true,"t_ns":"5"}', b'{"report":true}', b'{"report":true,"t_ns":6e10}',
           b'{"report":true,"t_ns":60000000000', b'[1]', b'\xff\xfe', b'{"t_ns":60000000000,"report":true}',
           b'{"report":true, "t_ns":60000000000}', b'{"report":true,"t_ns":060000000000}',
           b'{"report":false,"t_ns":60000000000}', b'{"report":true,"t_ns":60000000000,"x":1}',
           b'{"report":true,"t_ns":61000000000}{}', b'{"report":true,"t_ns":61000000000} ',
           b'{"report":true,"t_ns":+62000000000}', b'{"report":true,"t_ns":62000000000}']
    s += [_fn("time_sync", raw=b) for b in bad]
    s += [_fn("time_sync", raw=b'{"report":true,"t_ns":63000000000}', ack=ack_all),
          (P.APID_JOBS, *_fn("time_sync", raw=b'{"report":true,"t_ns":64000000000}')[1:]),
          _fn("time_sync", raw=b'{"report":true,"t_ns":65000000000}', ack=0)]
    s += [(P.APID_AGENT, *fn, b"\x00", P.ACK_COMPLETION),
          (P.APID_AGENT, *fn, b"\x00\x63{}", P.ACK_COMPLETION),
          (P.APID_AGENT, 9, 9, b"", P.ACK_COMPLETION),
          (0x123, *P.TC_PING, b"", P.ACK_COMPLETION),
          _fn("set_throttle", {"throttle": 2}),
          _fn("start_job", {"workload": "nope", "params": {}}),
          _fn("job_status", {"job_id": 99}),
          _fn("test_ledger", {}),
          _fn("inject_seu", {"job_id": 1}),
          (P.APID_HK, *P.TC_HK_ENABLE_PERIODIC, b'{"period_s":0}', P.ACK_COMPLETION),
          ("raw", b"\x01\x02\x03\x00"),  # garbage on the line: no reply
          sync(66), ("dup",)]
    if test_mode:
        s += [_fn("start_job", mm), sync(67),
              _fn("inject_seu", {"job_id": 3, "index": 1, "bit": 3}),
              sync(68), ("dup",), _fn("test_ledger", {}),
              _fn("test_ledger", {"offset": -1})]
        s += [sync(69 + i) for i in range(30)]
    return s


def record(test_mode: bool = False, kind: str = "jetson") -> list[tuple[str, bytes]]:
    """Run the session; every chunk the agent wrote: ("tm", bytes) on the pty,
    ("status", bytes) on the status pipe, in order, one list entry per command."""
    emulator.STATUS_HEARTBEAT_S = float("inf")  # only changes: no wall clock in the recording
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(slave, False)
    status_r, status_w = os.pipe()
    os.set_blocking(status_r, False)
    out: list[tuple[str, bytes]] = []
    with tempfile.TemporaryDirectory(prefix="agent-session-") as state:
        status = StatusWriter(status_w, "b0", kind)
        agent = Agent(FdTransport(master), SimBoard(kind, 1), clock=VirtualClock(), name="b0",
                      test_mode=test_mode, state_dir=state, max_job_dim=emulator.EMULATOR_MAX_JOB_DIM,
                      job_flops_s=KINDS[kind]["job_flops_s"], seed=1, on_tick=status.write)
        try:
            agent.jobs.wait_ready()
            agent._tick()
            status.write(agent, force=True)
            agent.event("boot", {"name": agent.name, "reason": "power_on"})
            pid = str(os.getpid()).encode()
            seq = {}
            last = b""

            def drain() -> None:
                for tag, fd in (("status", status_r), ("tm", slave)):
                    chunk = b""
                    while True:
                        try:
                            got = os.read(fd, 65536)
                        except BlockingIOError:
                            break
                        if not got:
                            break
                        chunk += got
                    if chunk:
                        out.append((tag, chunk.replace(pid, b"PID") if tag == "status" else chunk))

            drain()
            for item in script(test_mode):
                if item[0] == "raw":
                    wire = item[1]
                elif item[0] == "dup":
                    wire = last
                else:
                    apid, service, subtype, data, ack = item
                    seq[apid] = seq.get(apid, 0) + 1
                    wire = last = frame(P.encode_tc(apid, seq[apid], service, subtype, data, ack, 7))
                os.write(slave, wire)
                agent.step(1.0)  # reads and executes it (a pty delivers a small write at once)
                while agent.jobs.awaited() or agent._inbox:
                    agent.step(1.0)
                drain()
        finally:
            agent.jobs.shutdown()
            for fd in (master, slave, status_r, status_w):
                os.close(fd)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="file for the recording (- : hex lines on stdout)")
    ap.add_argument("--kind", choices=sorted(KINDS), default="jetson")
    a = ap.parse_args()
    rec = record(False, a.kind) + [("mode", b"test")] + record(True, a.kind)
    if a.out == "-":
        for tag, b in rec:
            print(tag, b.hex())
        return 0
    with open(a.out, "wb") as f:
        f.write(json.dumps([[t, b.hex()] for t, b in rec]).encode())
    print(f"{len(rec)} chunks, {sum(len(b) for _t, b in rec)} bytes -> {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
