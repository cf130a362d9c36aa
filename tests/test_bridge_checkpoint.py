"""A job's checkpoint files (firmware_bridge.checkpoint): the working state
round-trips bit for bit, two slots written in turn so that a torn save leaves the
last whole checkpoint, and a damaged file is refused with the reason."""

from __future__ import annotations

import os

import numpy as np
import pytest

from firmware_bridge.checkpoint import CKPT_MAGIC
from firmware_bridge.checkpoint import slots as ckpt_slots
from firmware_bridge.jobs import RealTimeJobs
from firmware_bridge.workloads import Work

WORKLOADS = [("matmul", {"n": 16, "steps": 50, "seed": 4}),
             ("mlp", {"width": 24, "layers": 2, "batch": 4, "steps": 50, "seed": 5})]


def _worked(workload: str, params: dict, steps: int = 3) -> Work:
    w = Work(workload, params, np)
    for _ in range(steps):
        w.run_step()
    return w


@pytest.mark.parametrize("workload, params", WORKLOADS)
def test_checkpoint_round_trips_the_working_state_bit_for_bit(tmp_path, workload, params) -> None:
    w = _worked(workload, params)
    path = str(tmp_path / "job1.ckpt")
    w.save(path)
    assert open(ckpt_slots(path)[0], "rb").read().startswith(CKPT_MAGIC)
    back = Work(workload, params, np)
    back.load(path)
    assert back.step == 3 and sorted(back.arrays) == sorted(w.arrays)
    for k, a in w.arrays.items():
        assert back.arrays[k].dtype == a.dtype and back.arrays[k].tobytes() == a.tobytes()
        assert back.arrays[k].flags.writeable  # the job computes on in place
    # and it computes on to the digest of an uninterrupted run
    for _ in range(4):
        w.run_step()
        back.run_step()
    assert back.digest() == w.digest()


def test_a_damaged_checkpoint_is_refused_with_the_reason(tmp_path) -> None:
    w = _worked(*WORKLOADS[0])
    base = str(tmp_path / "job1.ckpt")
    w.save(base)
    path = tmp_path / "job1.ckpt.0"  # the only checkpoint: nothing whole to fall back on
    good = path.read_bytes()
    cases = {
        "bad magic": b"PK\x03\x04" + good[4:],
        "CRC mismatch": good[:-10] + bytes([good[-10] ^ 0x01]) + good[-9:],  # one bit in the data
        "truncated": good[:-1],
        "bytes after the last array": good + b"\x00",
        "bad checkpoint header": good[:len(CKPT_MAGIC) + 4] + b"[" + good[len(CKPT_MAGIC) + 5:],
    }
    for why, raw in cases.items():
        path.write_bytes(raw)
        with pytest.raises(ValueError, match=why) as exc:
            Work(*WORKLOADS[0], np).load(base)
        assert str(path) in str(exc.value)
    path.unlink()
    with pytest.raises(ValueError, match="no checkpoint"):
        Work(*WORKLOADS[0], np).load(base)


def test_saves_alternate_slots_and_a_torn_save_leaves_the_last_whole_checkpoint(tmp_path) -> None:
    w = _worked(*WORKLOADS[0])
    path = str(tmp_path / "job1.ckpt")
    slot0, slot1 = ckpt_slots(path)
    w.save(path)  # step 3 -> slot 0
    w.run_step()
    w.save(path)  # step 4 -> slot 1
    assert os.path.exists(slot0) and os.path.exists(slot1)
    back = Work(*WORKLOADS[0], np)
    back.load(path)
    assert back.step == 4 and back.digest() == w.digest()  # the newest
    # power lost while writing step 5 over the older slot (0): a torn file there
    w.run_step()
    w.save(path)
    torn = open(slot0, "rb").read()
    with open(slot0, "wb") as f:
        f.write(torn[: len(torn) // 2])
    back = Work(*WORKLOADS[0], np)
    back.load(path)
    assert back.step == 4  # the last whole checkpoint, from slot 1
    # and the next save goes to the torn slot, never over the one it resumed from
    back.run_step()
    back.save(path)
    assert _step_in(slot0) == 5 and _step_in(slot1) == 4


def _step_in(slot: str) -> int:
    w = Work(*WORKLOADS[0], np)
    other = slot[:-1] + ("1" if slot.endswith("0") else "0")
    os.rename(other, other + ".aside")  # load that slot alone
    try:
        w.load(slot[:-2])
    finally:
        os.rename(other + ".aside", other)
    return w.step


def test_a_fresh_job_never_resumes_files_left_under_its_id(tmp_path) -> None:
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    stale = _worked(*WORKLOADS[0], steps=9)
    stale.save(str(jobs_dir / "job1.ckpt"))  # an earlier job 1, gone without clean-up
    stale.next_slot = 1
    stale.save(str(jobs_dir / "job1.ckpt"))
    jm = RealTimeJobs(str(jobs_dir), lambda *a: None)  # (no job record in the files: nothing listed)
    try:
        job = jm.start("matmul", {"n": 8, "steps": 10**6, "seed": 1}, None, 0)
        assert job.job_id == 1
        assert not any(os.path.exists(p) for p in ckpt_slots(jm._ckpt(job)))
    finally:
        jm.shutdown()


def test_after_a_power_cycle_the_job_is_listed_from_its_newest_whole_checkpoint(tmp_path) -> None:
    """No separate record is written at a checkpoint: the agent lists a job from the
    header of its newest whole checkpoint file, so what it lists and what the worker
    resumes are the same checkpoint, torn save or not."""
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    workload, params = WORKLOADS[0]
    meta = {"job_id": 4, "workload": workload, "params": params, "deadline_ns": 9 * 10**12,
            "started_ns": 5 * 10**9}
    w = _worked(workload, params, steps=3)
    path = str(jobs_dir / "job4.ckpt")
    w.save(path, meta)
    w.run_step()
    w.save(path, meta)  # step 4, slot 1
    assert sorted(os.listdir(jobs_dir)) == ["job4.ckpt.0", "job4.ckpt.1"]

    def listed() -> tuple[str, int, int | None, int]:
        jm = RealTimeJobs(str(jobs_dir), lambda *a: None)
        job = jm.jobs[4]
        return job.state, job.checkpoint_step, job.deadline_ns, job.started_ns

    assert listed() == ("suspended", 4, 9 * 10**12, 5 * 10**9)
    with open(ckpt_slots(path)[1], "r+b") as f:  # the newest one torn by a power loss
        f.truncate(100)
    assert listed()[1] == 3
    back = Work(workload, params, np)
    back.load(path)
    assert back.step == 3  # the worker resumes the very checkpoint listed
    with open(ckpt_slots(path)[0], "r+b") as f:
        f.truncate(100)
    assert 4 not in RealTimeJobs(str(jobs_dir), lambda *a: None).jobs  # nothing whole: not listed
