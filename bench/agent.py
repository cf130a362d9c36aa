"""The board agent's CPU per time sync, in-process, over a real pty, with a job running.

An :class:`firmware_bridge.agent.Agent` as the emulator builds it (virtual clock,
simulated jetson board, a status writer on a real pipe, real job workers, jobs
capped at 64) runs one long matmul job. Each sync, the link's exact time-sync TC
(``{"report":true,"t_ns":N}``, one simulated second on) is written to the pty's
other end and one ``Agent.step`` is timed: the read, the deframe, the dispatch,
the job advance, the board tick, the reply with its report, the write, and what
the step does after the reply (job poll, status writer) -- all of what a board's
agent does per simulated second. The figures, medians over ``--repeat`` rounds of
the per-sync medians:

- ``agent_sync_cpu_us``: CPU (this thread) of the step that serves the sync;
- ``agent_sync_cpu_p10_us``: the 10th percentile of that CPU (the syncs least
  disturbed by other processes on a shared machine);
- ``agent_sync_wall_us``: its wall time;
- ``pty_roundtrip_cpu_us``: the baseline, measured in the same run on another pty
  pair: a TC-sized write, a select and read on the other end, a reply-sized write
  back and its read -- the system calls any agent needs per sync;
- ``ratio``: ``agent_sync_cpu_us / pty_roundtrip_cpu_us``.

    python bench/agent.py          # table
    python bench/agent.py --json   # one JSON object on one line
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import sys
import tempfile
import time
import tty

from _figures import print_figures  # bench/, the script's own directory

from firmware_bridge import protocol as P
from firmware_bridge.agent import Agent, FdTransport, VirtualClock
from firmware_bridge.emulator import EMULATOR_MAX_JOB_DIM, KINDS, SimBoard, StatusWriter
from firmware_bridge.framing import frame

NS = 1_000_000_000
_SYNC_FID = P.FUNCTIONS["time_sync"][0].to_bytes(2, "big")


def _pty() -> tuple[int, int]:
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(slave, False)
    return master, slave


def _drain(fd: int) -> bytes:
    out = b""
    while True:
        try:
            got = os.read(fd, 65536)
        except BlockingIOError:
            return out
        if not got:
            return out
        out += got


def _agent_round(agent: Agent, slave: int, status_r: int, t_s: int, n: int) -> tuple[int, float, float, float, int]:
    """``n`` syncs from simulated second ``t_s``: (next second, median CPU us, 10th
    percentile CPU us, median wall us, the last reply's length)."""
    cpu, wall = [], []
    thread_ns, perf_ns = time.thread_time_ns, time.perf_counter_ns
    for _ in range(n):
        t_s += 1
        tc = frame(P.encode_tc(P.APID_AGENT, t_s % P.SEQ_MODULO, *P.TC_FUNCTION,
                               _SYNC_FID + b'{"report":true,"t_ns":%d}' % (t_s * NS), P.ACK_COMPLETION, 1))
        os.write(slave, tc)
        c0, w0 = thread_ns(), perf_ns()
        agent.step(1.0)
        c1, w1 = thread_ns(), perf_ns()
        while agent.jobs.awaited():  # (not with a long job: no sync waits on its worker)
            agent.step(1.0)
        reply = _drain(slave)
        if not reply:
            raise RuntimeError(f"no reply to the time sync to {t_s} s")
        cpu.append(c1 - c0)
        wall.append(w1 - w0)
        _drain(status_r)
    return (t_s, statistics.median(cpu) / 1e3, statistics.quantiles(cpu, n=10)[0] / 1e3,
            statistics.median(wall) / 1e3, len(reply))


def _pty_round(a: int, b: int, n: int, tc_len: int, reply_len: int) -> float:
    """Median CPU (us) of the bare round trip: ``tc_len`` bytes a -> b, ``reply_len`` back."""
    tc, reply = b"\x01" * (tc_len - 1) + b"\x00", b"\x02" * (reply_len - 1) + b"\x00"
    cpu = []
    thread_ns = time.thread_time_ns
    for _ in range(n):
        c0 = thread_ns()
        os.write(a, tc)
        select.select([b], [], [], 1.0)
        os.read(b, 65536)
        os.write(b, reply)
        select.select([a], [], [], 1.0)
        os.read(a, 65536)
        cpu.append(thread_ns() - c0)
    return statistics.median(cpu) / 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--syncs", type=int, default=500, help="time syncs per round")
    ap.add_argument("--repeat", type=int, default=5, help="rounds (figures are their medians)")
    ap.add_argument("--json", action="store_true", help="one JSON object on one line")
    a = ap.parse_args()
    if a.syncs < 1 or a.repeat < 1:
        ap.error("--syncs and --repeat must be at least 1")
    master, slave = _pty()
    status_r, status_w = os.pipe()
    os.set_blocking(status_r, False)
    pa, pb = _pty()
    os.set_blocking(pa, False)
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as state:
        status = StatusWriter(status_w, "b0", "jetson")
        agent = Agent(FdTransport(master), SimBoard("jetson", 1), clock=VirtualClock(), name="b0",
                      state_dir=state, max_job_dim=EMULATOR_MAX_JOB_DIM,
                      job_flops_s=KINDS["jetson"]["job_flops_s"], seed=1, on_tick=status.write)
        try:
            agent.jobs.wait_ready()
            agent._tick()
            status.write(agent, force=True)
            job = frame(P.encode_tc(P.APID_JOBS, 1, *P.TC_FUNCTION, P.FUNCTIONS["start_job"][0].to_bytes(2, "big")
                                    + P.json_bytes({"workload": "matmul", "params": {"n": 64, "steps": 10**7},
                                                    "deadline_s": None}), P.ACK_COMPLETION, 1))
            os.write(slave, job)
            agent.step(1.0)
            t_s, _c, _p, _w, reply = _agent_round(agent, slave, status_r, 0, 50)  # warm up
            rounds = []
            for _ in range(a.repeat):
                t_s, c, p10, w, _n = _agent_round(agent, slave, status_r, t_s, a.syncs)
                base = _pty_round(pa, pb, a.syncs, len(job) // 2, reply)
                rounds.append((c, w, base, p10))
            if agent.jobs.jobs[1].state != "running":
                raise RuntimeError(f"the job is {agent.jobs.jobs[1].state}, not running")
        finally:
            agent.jobs.shutdown()
            for fd in (master, slave, status_r, status_w, pa, pb):
                os.close(fd)
    c, w, base, p10 = (statistics.median(r[i] for r in rounds) for i in range(4))
    print_figures({"agent_sync_cpu_us": round(c, 1), "agent_sync_cpu_p10_us": round(p10, 1),
                   "agent_sync_wall_us": round(w, 1),
                   "pty_roundtrip_cpu_us": round(base, 1), "ratio": round(c / base, 2),
                   "syncs": a.syncs, "repeat": a.repeat}, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
