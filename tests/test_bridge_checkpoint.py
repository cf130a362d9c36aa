"""A job's checkpoint file (firmware_bridge.jobs): the working state round-trips
bit for bit, a damaged file is refused with the reason, and a checkpoint an older
agent left as ``job<N>.npz`` still resumes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from firmware_bridge.jobs import CKPT_MAGIC, JobManager, _Work, legacy_ckpt_path

WORKLOADS = [("matmul", {"n": 16, "steps": 50, "seed": 4}),
             ("mlp", {"width": 24, "layers": 2, "batch": 4, "steps": 50, "seed": 5})]


def _worked(workload: str, params: dict, steps: int = 3) -> _Work:
    w = _Work(workload, params, np)
    for _ in range(steps):
        w.run_step()
    return w


@pytest.mark.parametrize("workload, params", WORKLOADS)
def test_checkpoint_round_trips_the_working_state_bit_for_bit(tmp_path, workload, params) -> None:
    w = _worked(workload, params)
    path = str(tmp_path / "job1.ckpt")
    w.save(path)
    assert open(path, "rb").read().startswith(CKPT_MAGIC)
    back = _Work(workload, params, np)
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
    path = tmp_path / "job1.ckpt"
    w.save(str(path))
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
            _Work(*WORKLOADS[0], np).load(str(path))
        assert str(path) in str(exc.value)


def test_a_crash_while_saving_leaves_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    w = _worked(*WORKLOADS[0])
    path = str(tmp_path / "job1.ckpt")
    w.save(path)
    w.run_step()

    def crash(src: str, dst: str) -> None:
        raise OSError("power lost")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        w.save(path)  # the new state written beside it, never over it
    monkeypatch.undo()
    back = _Work(*WORKLOADS[0], np)
    back.load(path)
    assert back.step == 3


def test_an_older_agents_npz_checkpoint_still_resumes(tmp_path) -> None:
    """An agent before the ``.ckpt`` format left ``job7.npz`` and ``job7.json`` on the
    board's disk: after the update the job is listed as suspended at its checkpoint,
    and its worker loads the ``.npz``."""
    workload, params = WORKLOADS[1]
    w = _worked(workload, params, steps=5)
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    with open(jobs_dir / "job7.npz", "wb") as f:  # as the older agent wrote it
        np.savez(f, __step=np.array(w.step), **w.arrays)
    (jobs_dir / "job7.json").write_text(json.dumps(
        {"job_id": 7, "workload": workload, "params": params, "deadline_ns": None,
         "started_ns": 0, "checkpoint_step": 5}))
    jm = JobManager(str(jobs_dir), lambda *a: None)
    job = jm.jobs[7]
    assert job.state == "suspended" and job.checkpoint_step == 5
    ckpt = jm._ckpt(job)
    assert ckpt.endswith("job7.ckpt") and legacy_ckpt_path(ckpt) == str(jobs_dir / "job7.npz")
    back = _Work(workload, params, np)
    back.load(ckpt)
    assert back.step == 5 and back.digest() == w.digest()
    jm._forget(job)  # the job ended: every file of it goes, the old one too
    assert not list(jobs_dir.iterdir())
