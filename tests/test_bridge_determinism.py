"""Virtual-clock boards are deterministic: job progress follows simulation time only.

Two emulator processes get the same command sequence; every reply (time-sync
reports with housekeeping and job states, job status with completion sim times
and digests, checkpoints, SEU positions) must be identical, also when CPU hogs
compete for the machine. No wall-clock bounds are asserted anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from firmware_bridge.emulator import KINDS, EmulatorProcess, open_pty
from firmware_bridge.link import Link
from firmware_bridge.workloads import nominal_rate_usteps

NS = 1_000_000_000
HOG = "import time\nwhile True:\n    sum(i * i for i in range(10000))\n"


def _script(link: Link) -> list:
    """One fixed command sequence; returns every reply (wall-clock free fields only)."""
    out: list = []
    out.append(link.time_sync(0))
    out.append(link.set_throttle(0.7))
    j1 = link.start_job("matmul", {"n": 32, "steps": 300, "seed": 4}, deadline_s=1000)
    j2 = link.start_job("mlp", {"batch": 8, "width": 16, "layers": 2, "steps": 1500, "seed": 9})
    j3 = link.start_job("matmul", {"n": 48, "steps": 10_000, "seed": 2}, deadline_s=7.5)
    j4 = link.start_job("matmul", {"n": 16, "steps": 10_000_000, "seed": 1})
    out.append([j1, j2, j3, j4])
    for s in range(1, 41):
        t = s * NS + (s % 3) * 123_456_789  # uneven steps: exercises the exact accumulation
        out.append(link.time_sync(t))
        if s == 3:
            out.append(link.checkpoint(j1))
            out.append(link.inject_seu(j4))  # position drawn from the board's seed
        if s == 5:
            out.append(link.suspend(j2))
        if s == 9:
            out.append(link.resume(j2))
            out.append(link.set_throttle(0.3))
        if s == 12:
            out.append(link.cancel(j4))
        if s == 15:
            out.append(link.set_throttle(1.0))
    out.append([link.job_status(j) for j in (j1, j2, j3, j4)])
    out.append(link.housekeeping())
    return out


def _run(tmp, name: str, hogs: int = 0) -> list:
    master, path = open_pty()
    procs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(hogs)]
    emu = EmulatorProcess(master, kind="jetson", name="det", seed=5, test_mode=True, clock="virtual",
                          state_dir=str(tmp / name))
    try:
        emu.start()
        with Link(path, timeout_s=2.0, retries=5) as link:
            return _script(link)
    finally:
        emu.stop()
        for p in procs:
            p.kill()
            p.wait()
        os.close(master)


def test_same_commands_give_identical_replies_even_under_cpu_load(tmp_path) -> None:
    a = _run(tmp_path, "a")
    b = _run(tmp_path, "b", hogs=2)
    assert len(a) == len(b)
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x == y, f"reply {k} differs:\n{x}\n{y}"
    status = {s["job_id"]: s for s in a[-2]}
    j1, j2, j3, j4 = a[2]
    # j1 ran at throttle 0.7, 0.3, 1.0 and finished at an exact, predictable sim time
    assert status[j1]["state"] == "done" and len(status[j1]["digest"]) == 32
    assert status[j2]["state"] == "done"  # suspended and resumed on the way
    assert status[j3]["state"] == "deadline_missed" and status[j3]["step"] < 10_000
    assert status[j4]["state"] == "cancelled"
    rate = nominal_rate_usteps("matmul", {"n": 32}, KINDS["jetson"]["job_flops_s"]) / 1e6
    # steps done by the end of throttle 0.7 (up to t=9.0 s) and 0.3 (to 15.0 s), rest at 1.0
    s1 = rate * 0.7 * 9.0 + rate * 0.3 * 6.0
    expect_s = 15.0 + (300 - s1) / rate
    assert status[j1]["done_ns"] == pytest.approx(expect_s * NS, abs=0.01 * NS)
    # time-sync reports carry housekeeping and job states in the same reply
    reports = [r for r in a if isinstance(r, dict) and "hk" in r]
    assert reports and all(r["hk"]["time_ns"] == r["t_ns"] for r in reports)
    assert any(r["hk"]["jobs_running"] == 3 for r in reports)
    # power follows job states and throttle only: full load at 0.7 then idle at the end
    cfg = KINDS["jetson"]
    assert reports[1]["hk"]["power_w"] == pytest.approx(cfg["idle_w"] + (cfg["max_w"] - cfg["idle_w"]) * 0.7,
                                                         rel=1e-6)
    assert a[-1]["power_w"] == pytest.approx(cfg["idle_w"])


def test_virtual_jobs_do_not_move_without_time_sync(tmp_path) -> None:
    master, path = open_pty()
    emu = EmulatorProcess(master, kind="rpi", name="still", clock="virtual").start()
    try:
        with Link(path, timeout_s=2.0, retries=3) as link:
            link.time_sync(10 * NS)
            jid = link.start_job("matmul", {"n": 16, "steps": 1000})
            time.sleep(0.3)  # wall time passes; simulation time does not
            assert link.job_status(jid)["step"] == 0
            rate = nominal_rate_usteps("matmul", {"n": 16}, KINDS["rpi"]["job_flops_s"])
            res = link.time_sync(11 * NS)
            [brief] = [j for j in res["jobs"] if j["job_id"] == jid]
            assert brief["step"] == rate // 1_000_000 and brief["state"] == "running"
            assert link.job_status(jid)["step"] == rate // 1_000_000
            assert res["hk"]["uptime_s"] == pytest.approx(1.0)  # sim time since the first sync
    finally:
        emu.stop()
        os.close(master)


def test_finishing_sync_waits_only_for_its_last_interval(tmp_path) -> None:
    """The worker is told lazily, in batches of ADVANCE_BATCH_STEPS steps, but at every
    sync near the job's end: so the sync that finishes a job waits for the steps of
    its own interval only (then for the digest), not for a whole batch. The digest is
    that of exactly ``steps`` steps, computed here independently of the worker."""
    import select

    import numpy as np

    from firmware_bridge.jobs import ADVANCE_BATCH_STEPS, VirtualTimeJobs
    from firmware_bridge.workloads import Work, step_flops, validate

    params = validate("matmul", {"n": 16, "steps": 40, "seed": 3})
    per_sync = 3  # steps earned per simulated second at this emulated throughput
    flops = per_sync * step_flops("matmul", params)
    assert nominal_rate_usteps("matmul", params, flops) == per_sync * 1_000_000
    assert per_sync < ADVANCE_BATCH_STEPS
    jm = VirtualTimeJobs(str(tmp_path), lambda *a: None, flops_s=flops, seed=1)
    try:
        assert jm.wait_ready(60.0)
        job = jm.start("matmul", params, None, 0)
        owed_at_finish = None
        for s in range(1, 30):
            sent_before = job.sent
            replied: list = []
            jm.advance(s * NS, 1.0, lambda r=replied, s=s: r.append(s))
            if job.target >= params["steps"] and owed_at_finish is None:
                owed_at_finish = params["steps"] - sent_before  # what the finishing reply waits for
            deadline = time.monotonic() + 30.0
            while not replied and time.monotonic() < deadline:
                ready = select.select(jm.fds(), [], [], 0.5)[0]
                jm.poll(ready, s * NS)
            assert replied, f"sync {s}: no reply"
            if job.state == "done":
                break
        assert job.state == "done" and job.step == params["steps"]
        assert owed_at_finish is not None and owed_at_finish <= per_sync
        ref = Work("matmul", params, np)
        for _ in range(params["steps"]):
            ref.run_step()
        assert job.digest == ref.digest()
    finally:
        jm.shutdown()


def test_ended_jobs_are_forgotten_oldest_first_never_a_suspended_one(tmp_path) -> None:
    """The agent keeps at least ENDED_KEPT and at most 2 * ENDED_KEPT ended jobs for
    job_status (it passes over every kept job at each sync); the oldest ended ones go
    first, and a suspended job, however old, is never forgotten."""
    import select

    from firmware_bridge.jobs import ENDED_KEPT, JobError, VirtualTimeJobs
    from firmware_bridge.workloads import step_flops, validate

    short = validate("matmul", {"n": 8, "steps": 1, "seed": 1})
    flops = step_flops("matmul", short)  # one step per simulated second
    jm = VirtualTimeJobs(str(tmp_path), lambda *a: None, flops_s=flops, seed=1)

    def pump(done, t_ns: int) -> None:
        deadline = time.monotonic() + 30.0
        while not done() and time.monotonic() < deadline:
            jm.poll(select.select(jm.fds(), [], [], 0.5)[0], t_ns)
        assert done()

    try:
        assert jm.wait_ready(60.0)
        old = jm.start("matmul", {"n": 8, "steps": 1000, "seed": 2}, None, 0)
        got: list = []
        jm.checkpoint(old.job_id, lambda ok, res: got.append(ok), stop=True)
        pump(lambda: bool(got), 0)
        assert got == [True] and old.state == "suspended"
        t, ids = 0, []
        for _ in range(3 * ENDED_KEPT + 1):
            job = jm.start("matmul", short, None, t)
            ids.append(job.job_id)
            t += NS
            replied: list = []
            jm.advance(t, 1.0, lambda r=replied: r.append(1))
            pump(lambda r=replied: bool(r), t)
            assert job.state == "done"
            ended = [j for j in jm.jobs.values() if j.state == "done"]
            assert len(ended) <= 2 * ENDED_KEPT
            assert [j.job_id for j in ended][-ENDED_KEPT:] == ids[-ENDED_KEPT:]
        assert jm.jobs[old.job_id].state == "suspended"  # the oldest job of all, still there
        assert ENDED_KEPT <= len(jm.jobs) - 1 <= 2 * ENDED_KEPT
        with pytest.raises(JobError) as e:
            jm._job(ids[0])
        assert e.value.code == 5
    finally:
        jm.shutdown()


def test_replies_leave_in_command_order_while_a_worker_is_asked(tmp_path) -> None:
    """Virtual clock with ordered replies (the emulator behind a fault proxy): a
    checkpoint waits on the job's worker (it saves the working state), a time sync
    does not. Sent back to back, the checkpoint's reply still leaves first, every
    time: the agent executes no command while one waits on a worker, so the bytes
    on the link do not depend on the worker's timing."""
    import tty

    from firmware_bridge import protocol as P
    from firmware_bridge.framing import Deframer, frame

    master, path = open_pty()
    emu = EmulatorProcess(master, kind="jetson", name="order", seed=1, clock="virtual",
                          state_dir=str(tmp_path / "state"), ordered_replies=True)
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    seq = 0

    def tc(name: str, args: dict) -> tuple[int, bytes]:
        nonlocal seq
        seq += 1
        fid, apid, _ = P.FUNCTIONS[name]
        data = fid.to_bytes(2, "big") + P.json_bytes(args)
        return seq, b"\x00" + frame(P.encode_tc(apid, seq, *P.TC_FUNCTION, data, P.ACK_COMPLETION, 1))

    deframer = Deframer(P.decode_packet, P.MAX_PACKET_BYTES)

    def replies(want: set[int]) -> list[tuple[int, dict]]:
        got: list[tuple[int, dict]] = []
        deadline = time.monotonic() + 30.0
        while {s for s, _ in got} < want and time.monotonic() < deadline:
            for pkt in deframer.feed(os.read(fd, 65536)):
                if pkt.kind == P.TM_FUNCTION_REPORT:
                    s = int.from_bytes(pkt.data[2:4], "big") & 0x3FFF
                    got.append((s, P.decode_json(pkt.data[4:], "reply")))
        assert {s for s, _ in got} >= want, f"replies {got} for {want}"
        return got

    try:
        emu.start()
        s, wire = tc("start_job", {"workload": "matmul", "params": {"n": 64, "steps": 10_000_000, "seed": 3}})
        os.write(fd, wire)
        job_id = replies({s})[0][1]["job_id"]
        t = 0
        for _ in range(20):
            t += NS
            s_ck, ck = tc("checkpoint", {"job_id": job_id})
            s_sync, sync = tc("time_sync", {"t_ns": t, "report": True})
            os.write(fd, ck + sync)  # one write: the agent may read both at once
            order = [s for s, _ in replies({s_ck, s_sync})]
            assert order == [s_ck, s_sync], order
    finally:
        os.close(fd)
        emu.stop()
        os.close(master)
