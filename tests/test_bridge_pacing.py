"""Real-time job pacing on a host-process worker (firmware_bridge.workers.worker_main):
a paced job with ``hold_pace`` keeps its CPU busy for each step's rated time, so a
board whose draw is read from its CPU use (a QEMU board) draws more when busy on any
host, however fast (the CI failure this pins: a fast host sleeping what it saved)."""

from __future__ import annotations

import time

from firmware_bridge.jobs import RealTimeJobs
from firmware_bridge.workloads import step_flops
from hil_rig.boards.qemu import process_cpu_s

PARAMS = {"n": 8, "steps": 10**6, "seed": 1}
STEP_S = 0.05  # a step's rated time; numpy does an n=8 step in microseconds


def _job_cpu_s(tmp_path, hold: bool, wall_s: float = 1.5) -> float:
    """CPU seconds a paced job's worker process uses over ``wall_s`` of running."""
    flops_s = int(step_flops("matmul", PARAMS) / STEP_S)
    jm = RealTimeJobs(str(tmp_path / f"jobs-{hold}"), lambda *a: None, flops_s=flops_s, hold_pace=1.0 if hold else 0.0)
    try:
        job = jm.start("matmul", dict(PARAMS), None, 0)
        while job.state != "running":  # the worker has imported numpy and computes
            assert job.conn is not None, f"the worker ended: {job.state} {job.error}"
            jm.poll(jm.fds(), 0)
            time.sleep(0.01)
        pid = job.proc.pid
        time.sleep(0.2)
        jm.poll(jm.fds(), 0)  # (its progress messages read: the pipe never fills)
        c0 = process_cpu_s(pid)
        time.sleep(wall_s)
        c1 = process_cpu_s(pid)
        assert c0 is not None and c1 is not None, "the worker died"
        return c1 - c0
    finally:
        jm.shutdown()


def test_a_held_pace_keeps_the_worker_busy_and_a_plain_one_sleeps(tmp_path) -> None:
    plain = _job_cpu_s(tmp_path, hold=False)
    held = _job_cpu_s(tmp_path, hold=True)
    print(f"worker CPU over 1.5 s: plain {plain:.3f} s, held {held:.3f} s")
    assert held > 4 * max(plain, 0.01)
