"""Payload jobs: real NumPy compute in worker processes, with deterministic digests.

Workloads:

- ``matmul``: ``x <- tanh(A @ x + 0.1)`` for ``steps`` steps, ``A`` and ``x0``
  drawn from ``seed``; params ``n`` (matrix size), ``steps``, ``seed``.
- ``mlp``: inference of a seeded multilayer perceptron over ``steps`` seeded
  input batches, accumulating the logits; params ``batch``, ``width``,
  ``layers``, ``steps``, ``seed``.

Both compute in float32, as inference does on the boards' accelerators (and
at a third of float64's cost on the host that runs emulated boards).

The result digest is SHA-256 over the final working state, so the same
workload and params give the same digest on the same machine and NumPy,
whether or not the job was suspended, checkpointed and resumed in between, and
a flipped bit (SEU) in its working memory changes it. (Across machines it can
differ in the last bits, as float64 could: BLAS kernels and SIMD paths differ
by CPU, so a known answer is computed on the kind of board that checks it.)

Each job runs in its own process (multiprocessing, spawn), throttled by duty
cycle: after computing for a slice of wall time ``t`` it sleeps
``t * (1 - x) / x`` at throttle ``x``; at 0 it pauses. The parent talks to it
over a pipe; the worker exits when the pipe closes (the agent died).

Virtual clock (the emulator with ``--clock virtual``): workers do not compute
on their own. Each job has a nominal rate (:func:`nominal_rate_usteps`, steps
per simulated second from the workload, its params and the board's emulated
throughput); on every time sync the agent calls :meth:`JobManager.advance`,
which tells each running worker to compute exactly up to the step the job has
reached in simulation time (rate x throttle x dt, accumulated exactly in
integers). The worker is told lazily (every ``ADVANCE_BATCH_STEPS`` steps, at
every sync once the job is within two sync intervals of its end, and before
anything reads its state: a checkpoint, an SEU, a progress query), and the reply
waits for a worker only when its job finishes (for the digest: then only for
the steps of that last interval). So progress,
completion and deadline sim times do not depend on the machine's speed. The
workers are pre-spawned and reused (a spawn costs a numpy import).

A checkpoint is a ``job<N>.ckpt.0`` or ``.1`` in the agent's state directory:
two slots written in turn (see :meth:`_Work.save`), each with the job's working
state and what the job is (:data:`CKPT_MAGIC`). A ``job<N>.npz`` and
``job<N>.json`` that an older agent left there still resume. After a reboot or
a power cycle, each checkpointed job comes back as ``suspended`` at its
checkpoint, ready to resume. Finishing, failing, cancelling or missing the
deadline deletes the files.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pickle
import re
import select
import signal
import time
import zlib
from dataclasses import dataclass, field

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core per job; deterministic reductions

WORKLOADS = ("matmul", "mlp")
SIZE_PARAMS = ("n", "width", "batch")  # what an emulator's max_dim caps
SLICE_S = 0.005  # compute slice between duty-cycle sleeps and control polls
PROGRESS_EVERY_S = 0.05

_LIMITS = {
    "matmul": {"n": (2, 1024, 64), "steps": (1, 10_000_000, 200), "seed": (0, 2**63 - 1, 0)},
    "mlp": {
        "batch": (1, 4096, 32),
        "width": (2, 2048, 64),
        "layers": (1, 16, 3),
        "steps": (1, 10_000_000, 100),
        "seed": (0, 2**63 - 1, 0),
    },
}


def validate(workload: str, params: dict) -> dict:
    """Checked, completed params; raises ValueError naming the bad field."""
    if workload not in _LIMITS:
        raise ValueError(f"unknown workload {workload!r}; expected one of {', '.join(WORKLOADS)}")
    if not isinstance(params, dict):
        raise ValueError("params must be an object")
    limits = _LIMITS[workload]
    extra = set(params) - set(limits)
    if extra:
        raise ValueError(f"{workload}: unknown param(s) {sorted(extra)}; expected {sorted(limits)}")
    out = {}
    for key, (lo, hi, default) in limits.items():
        v = params.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{workload}: param {key!r} must be an integer in {lo}..{hi}, got {v!r}")
        out[key] = v
    return out


# --- the pipe between the agent and a worker -----------------------------------


def _send(conn, msg: tuple) -> None:
    """``conn.send(msg)`` without building a ForkingPickler per message (our messages
    carry only plain data); a ``conn.recv()`` at the other end reads it as before."""
    conn.send_bytes(pickle.dumps(msg, pickle.HIGHEST_PROTOCOL))


def _recv(conn) -> tuple:
    """``conn.recv()``: what :func:`_send` (or ``conn.send``) sent."""
    return pickle.loads(conn.recv_bytes())


# --- the worker process -------------------------------------------------------


class _Work:
    """Working state of one job; ``arrays`` is its working memory."""

    def __init__(self, workload: str, p: dict, np) -> None:
        self.np = np
        self.workload = workload
        self.p = p
        self.step = 0
        self.next_slot = 0  # the checkpoint slot the next save writes (ckpt_slots)
        f32 = np.float32  # inference precision: every array and every step in float32
        self.c01, self.zero = f32(0.1), f32(0.0)
        rng = np.random.default_rng(p["seed"])
        if workload == "matmul":
            n = p["n"]
            self.arrays = {
                "a": rng.standard_normal((n, n), dtype=f32) / f32(np.sqrt(n)),
                "x": rng.standard_normal((n, n), dtype=f32),
            }
        else:
            w = p["width"]
            dims = [w] * (p["layers"] + 1) + [10]
            self.arrays = {f"w{i}": rng.standard_normal((dims[i], dims[i + 1]), dtype=f32) / f32(np.sqrt(dims[i]))
                           for i in range(len(dims) - 1)}
            self.arrays["acc"] = np.zeros(10, dtype=f32)

    def run_step(self) -> None:
        np = self.np
        a = self.arrays
        if self.workload == "matmul":
            a["x"] = np.tanh(a["a"] @ a["x"] + self.c01)
        else:
            rng = np.random.default_rng([self.p["seed"], self.step])
            h = rng.standard_normal((self.p["batch"], self.p["width"]), dtype=np.float32)
            nl = self.p["layers"]
            for i in range(nl):
                h = np.maximum(h @ a[f"w{i}"], self.zero)
            a["acc"] = a["acc"] + (h @ a[f"w{nl}"]).sum(axis=0)
        self.step += 1

    def digest(self) -> str:
        h = hashlib.sha256()
        for k in sorted(self.arrays):
            h.update(k.encode())
            h.update(self.arrays[k].tobytes())
        return h.hexdigest()[:32]

    def flip_bit(self, index: int | None, bit: int | None, rng) -> dict:
        names = sorted(self.arrays)
        sizes = [self.arrays[k].nbytes for k in names]
        total = sum(sizes)
        index = int(rng.integers(total)) if index is None else int(index) % total
        bit = int(rng.integers(8)) if bit is None else int(bit) % 8
        off = index
        for k, s in zip(names, sizes, strict=True):
            if off < s:
                view = self.arrays[k].reshape(-1).view(self.np.uint8)
                view[off] ^= 1 << bit
                return {"array": k, "byte": off, "bit": bit, "index": index}
            off -= s
        raise AssertionError("unreachable")

    def save(self, path: str, job: dict | None = None) -> None:
        """The working state to one of ``path``'s two slots (:func:`ckpt_slots`), in
        turn: the slot written is the older one, removed first and written as a new
        file, so the other slot keeps the last checkpoint whole until this one is
        (a power loss mid-save leaves a torn file that :meth:`load` passes over).
        No rename over an existing file: on ext4 that forces the new data to disk
        (``auto_da_alloc``), which cost more CPU than the rest of a save. ``job``:
        what the agent needs to list the job after a power cycle (its id,
        workload, params, deadline and start), kept in the header."""
        names = sorted(self.arrays)
        arrays = [self.np.ascontiguousarray(self.arrays[k]) for k in names]
        crc = 0
        for a in arrays:
            crc = zlib.crc32(a.data, crc)
        head = {"step": self.step, "crc32": crc,
                "arrays": [[k, a.dtype.str, list(a.shape)] for k, a in zip(names, arrays, strict=True)]}
        if job is not None:
            head["job"] = job
        head = json.dumps(head, separators=(",", ":")).encode()
        target = ckpt_slots(path)[self.next_slot]
        try:
            os.unlink(target)
        except FileNotFoundError:
            pass
        with open(target, "wb") as f:
            f.write(CKPT_MAGIC + len(head).to_bytes(4, "big") + head)
            for a in arrays:
                f.write(a.data)
        self.next_slot ^= 1

    def load(self, path: str) -> None:
        """Working state from the newest whole checkpoint in ``path``'s slots, or from
        an older agent's ``job<N>.npz`` beside them. ValueError naming the files if
        none is a whole checkpoint."""
        best, errors = newest_checkpoint(path)
        if best is not None:
            slot, raw, head, off = best
            self.step, self.arrays = int(head["step"]), checkpoint_arrays(raw, head, off, self.np)
            self.next_slot = slot ^ 1  # the next save leaves this one alone
            return
        legacy = legacy_ckpt_path(path)
        if os.path.exists(legacy):
            with self.np.load(legacy) as z:
                self.step = int(z["__step"])
                self.arrays = {k: z[k].copy() for k in z.files if k != "__step"}
            return
        raise ValueError("; ".join(errors) or f"{path}: no checkpoint")


#: First bytes of a job checkpoint file (``job<N>.ckpt.0`` or ``.1``): then a 4-byte
#: big-endian header length, a JSON header (``step``; ``crc32`` of the data; ``arrays``:
#: each array's name, NumPy dtype and shape, by name; ``job``: its id, workload,
#: params, deadline and start) and the arrays' bytes, C order, in that order. One
#: write of the raw arrays: ``np.savez``'s zip container cost ~0.7 ms of CPU a save,
#: and a separate JSON record renamed over the last one ~0.3 ms of the agent's.
CKPT_MAGIC = b"OHILCKPT1\n"


_CKPT_NAME = re.compile(r"job(\d+)\.ckpt\.[01]")


def ckpt_slots(path: str) -> tuple[str, str]:
    """The two files a job's checkpoints go to in turn (``job<N>.ckpt.0``, ``.1``)."""
    return path + ".0", path + ".1"


def legacy_ckpt_path(path: str) -> str:
    """Where an agent before the ``.ckpt`` format kept the same checkpoint (``.npz``)."""
    return path[: -len(".ckpt")] + ".npz" if path.endswith(".ckpt") else path + ".npz"


def checkpoint_header(raw: bytes, where: str = "checkpoint") -> tuple[dict, int]:
    """(header, offset of the arrays' bytes) of a checkpoint file's bytes, checked
    whole: magic, header, each array's size, the total length and the data's
    CRC-32. Stdlib only (the agent lists checkpoints with it); ValueError saying
    what is wrong."""
    m = len(CKPT_MAGIC)
    if raw[:m] != CKPT_MAGIC or len(raw) < m + 4:
        raise ValueError(f"{where}: not a job checkpoint (bad magic)")
    n = int.from_bytes(raw[m:m + 4], "big")
    try:
        head = json.loads(raw[m + 4:m + 4 + n])
        int(head["step"])
        size = 0
        for _name, dt, shape in head["arrays"]:
            count = 1
            for x in shape:
                count *= int(x)
            size += int(dt[2:]) * count  # a NumPy dtype.str: '<f4', '|u1', ...
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"{where}: bad checkpoint header ({exc})") from None
    off = m + 4 + n
    if len(raw) < off + size:
        raise ValueError(f"{where}: checkpoint truncated ({len(raw) - off} of {size} data bytes)")
    if len(raw) > off + size:
        raise ValueError(f"{where}: {len(raw) - off - size} bytes after the last array")
    if zlib.crc32(memoryview(raw)[off:]) != head.get("crc32"):
        raise ValueError(f"{where}: checkpoint data CRC mismatch (corrupted)")
    return head, off


def checkpoint_arrays(raw: bytes, head: dict, off: int, np) -> dict:
    """The arrays, by name, of a whole checkpoint (:func:`checkpoint_header`'s result)."""
    arrays = {}
    for k, dt, shape in head["arrays"]:
        dtype = np.dtype(dt)
        count = int(np.prod(shape, dtype=np.int64))
        arrays[str(k)] = np.frombuffer(raw, dtype=dtype, count=count, offset=off).reshape(shape).copy()
        off += dtype.itemsize * count
    return arrays


def newest_checkpoint(path: str) -> tuple[tuple[int, bytes, dict, int] | None, list[str]]:
    """The newest whole checkpoint in ``path``'s slots as (slot, its bytes, header,
    offset of the arrays), or None; and why each other file there is not whole.
    The agent lists jobs with it and the worker resumes from it: the same one."""
    best, errors = None, []
    for slot, p in enumerate(ckpt_slots(path)):
        try:
            with open(p, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            continue
        except OSError as exc:  # unreadable: as good as torn
            errors.append(f"{p}: {exc.strerror or exc}")
            continue
        try:
            head, off = checkpoint_header(raw, p)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        if best is None or int(head["step"]) > int(best[2]["step"]):
            best = (slot, raw, head, off)
    return best, errors


def worker_main(conn, workload: str, params: dict, ckpt_path: str, resume: bool,
                throttle: float) -> None:  # pragma: no cover - runs in a child process
    import numpy as np

    try:
        work = _Work(workload, params, np)
        if resume:
            work.load(ckpt_path)
    except Exception as exc:  # noqa: BLE001 - reported to the agent, never raised
        _send(conn, ("error", f"{type(exc).__name__}: {exc}"))
        return
    rng = np.random.default_rng()
    steps = params["steps"]
    _send(conn, ("running", work.step, steps))
    last_progress = time.monotonic()
    pause_until = 0.0
    while True:
        # control messages (and duty-cycle sleep, which is also a control poll)
        while True:
            now = time.monotonic()
            wait = 0.1 if throttle <= 0.0 else max(0.0, pause_until - now)
            if not conn.poll(wait):
                if throttle > 0.0 and time.monotonic() >= pause_until:
                    break
                continue
            try:
                msg = _recv(conn)
            except (EOFError, OSError):
                return  # agent gone: stop computing
            op = msg[0]
            if op == "throttle":
                throttle = float(msg[1])
            elif op == "checkpoint":
                work.save(ckpt_path, msg[3] if len(msg) > 3 else None)
                _send(conn, ("checkpointed", msg[1], work.step, msg[2]))
                if msg[2]:  # stop after checkpoint (suspend)
                    return
            elif op == "seu":
                _send(conn, ("seu_done", msg[1], work.flip_bit(msg[2], msg[3], rng)))
            elif op == "progress":
                _send(conn, ("progress", work.step, steps))
        if work.step >= steps:
            _send(conn, ("done", work.digest(), work.step))
            return
        t0 = time.monotonic()
        while work.step < steps:
            work.run_step()
            if time.monotonic() - t0 >= SLICE_S:
                break
        t1 = time.monotonic()
        busy = t1 - t0
        pause_until = t1 + (busy * (1.0 - throttle) / throttle if throttle < 1.0 else 0.0)
        if t1 - last_progress >= PROGRESS_EVERY_S:
            _send(conn, ("progress", work.step, steps))
            last_progress = t1


def virtual_worker_main(conn, seed: int | None) -> None:  # pragma: no cover - child process
    """A reusable worker that computes only when told to (virtual clock).

    Idle until ``("job", job_id, workload, params, ckpt_path, resume)``; then serves
    ``("advance", tag, target)`` (compute up to ``target`` steps; silent unless the
    job is then ``done``), checkpoint, seu and
    progress; after ``done``, an error or a stopping checkpoint it is idle again."""
    import numpy as np

    _send(conn, ("ready",))
    work = None
    ckpt = ""
    steps = 0
    rng = None
    while True:
        try:
            msg = _recv(conn)
        except (EOFError, OSError):
            return  # agent gone
        op = msg[0]
        if op == "job":
            _, job_id, workload, params, ckpt, resume = msg
            try:
                work = _Work(workload, params, np)
                if resume:
                    work.load(ckpt)
            except Exception as exc:  # noqa: BLE001 - reported to the agent
                work = None
                _send(conn, ("error", f"{type(exc).__name__}: {exc}"))
                continue
            steps = params["steps"]
            rng = np.random.default_rng(None if seed is None else [seed, job_id])
            _send(conn, ("running", work.step, steps))
        elif work is None:
            continue  # a request for a job this worker no longer holds: its waiter was failed
        elif op == "advance":
            target = min(int(msg[2]), steps)
            while work.step < target:
                work.run_step()
            if work.step >= steps:
                _send(conn, ("done", work.digest(), work.step))
                work = None
        elif op == "checkpoint":
            work.save(ckpt, msg[3] if len(msg) > 3 else None)
            _send(conn, ("checkpointed", msg[1], work.step, msg[2]))
            if msg[2]:
                work = None
        elif op == "seu":
            _send(conn, ("seu_done", msg[1], work.flip_bit(msg[2], msg[3], rng)))
        elif op == "progress":
            _send(conn, ("progress", work.step, steps))
        elif op == "drop":
            work = None


def step_flops(workload: str, p: dict) -> int:
    """Floating-point operations of one step of a job (the nominal cost model)."""
    if workload == "matmul":
        n = p["n"]
        return 2 * n**3 + 3 * n * n
    b, w, nl = p["batch"], p["width"], p["layers"]
    return b * (2 * w * w * nl + 2 * w * 10 + w)


def nominal_rate_usteps(workload: str, p: dict, flops_s: int) -> int:
    """Steps per simulated second at throttle 1, in micro-steps (an exact integer)."""
    return max(1, int(flops_s) * 1_000_000 // step_flops(workload, p))


#: Virtual clock: a worker is told to compute its job's earned steps once this many
#: have accumulated (or before anything reads its state, or at the finish).
ADVANCE_BATCH_STEPS = 8
_ACC_UNIT = 10**21  # micro-steps/s x ppm throttle x ns = 1e-21 step


# --- the agent side -------------------------------------------------------------


def _readable(conn) -> bool:
    """``conn.poll()`` (no timeout) as one select call: Connection.poll builds and
    registers a selector every time, and the agent asks after every worker message."""
    return bool(select.select((conn,), (), (), 0)[0])


@dataclass
class Job:
    job_id: int
    workload: str
    params: dict
    deadline_ns: int | None
    started_ns: int
    state: str = "starting"
    step: int = 0
    digest: str = ""
    error: str = ""
    checkpoint_step: int = -1
    proc: object = None
    conn: object = None
    waiters: dict = field(default_factory=dict)  # tag -> callback(ok, result)
    # virtual clock: exact progress accounting in simulation time
    rate_usteps: int = 0
    acc: int = 0  # fraction of a step earned but not yet computed, in 1e-21 steps
    target: int = 0  # steps earned up to last_ns
    sent: int = 0  # the target last sent to the worker (it computes lazily, see advance())
    last_ns: int = 0
    done_ns: int | None = None

    def status(self) -> dict:
        steps = self.params["steps"]
        return {
            "job_id": self.job_id,
            "workload": self.workload,
            "params": self.params,
            "state": self.state,
            "step": self.step,
            "steps": steps,
            "progress": self.step / steps if steps else 1.0,
            "digest": self.digest,
            "error": self.error,
            "checkpoint_step": self.checkpoint_step,
            "started_ns": self.started_ns,
            "deadline_ns": self.deadline_ns,
            "done_ns": self.done_ns,
        }

    def brief(self) -> dict:
        """The short status carried by a time-sync report."""
        out = {"job_id": self.job_id, "state": self.state, "step": self.step,
               "checkpoint_step": self.checkpoint_step}
        if self.digest:
            out["digest"] = self.digest
        if self.error:
            out["error"] = self.error
        return out


class JobError(Exception):
    """A job command that cannot be carried out; ``code`` is a protocol error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


ACTIVE = ("starting", "running")
LIVE_STATES = (*ACTIVE, "suspended")  # not ended: a worker or a checkpoint still holds it
#: Ended jobs kept for job_status: once twice this many have ended, the next job started
#: forgets all but the newest this many. (The agent passes over every kept job at each
#: time sync, so a long list costs every sync.)
ENDED_KEPT = 8


def by_job_id(job: Job) -> int:
    """Sort key: a job's id."""
    return job.job_id


SPARE_WORKERS = 1  # virtual clock: idle, warmed-up workers kept ready for the next job


@dataclass
class _Worker:
    proc: object
    conn: object
    ready: bool = False


class JobManager:
    """Owns the worker processes. Driven from the agent's single-threaded loop."""

    def __init__(self, state_dir: str, emit_event, max_jobs: int = 4,
                 max_dim: int | None = None, *, virtual_flops_s: int | None = None,
                 seed: int | None = None) -> None:
        self.max_dim = max_dim  # emulator: cap n/width/batch so compute stays small
        # virtual clock: jobs progress in simulation time at this emulated throughput
        self.virtual = virtual_flops_s is not None
        self.flops_s = int(virtual_flops_s or 0)
        self.seed = seed  # seeds the SEU position of virtual-clock workers
        self._idle: list[_Worker] = []
        self._closing = False  # shutting down: do not replace workers that stop
        self.state_dir = state_dir
        os.makedirs(state_dir, exist_ok=True)
        self.emit_event = emit_event
        self.max_jobs = max_jobs
        self.jobs: dict[int, Job] = {}
        self.throttle = 1.0
        self._next_id = 1
        self._tag = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._fds: dict = {}  # worker Connection -> its fd (see fds())
        self._load_checkpointed()
        if self.virtual:
            self._ensure_spare()

    # -- virtual clock: a pool of reusable workers
    def _new_worker(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=virtual_worker_main, args=(child, self.seed), daemon=True,
                                 name="job-worker")
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def _ensure_spare(self) -> None:
        while len(self._idle) < SPARE_WORKERS:
            self._idle.append(self._new_worker())

    def wait_ready(self, timeout_s: float = 60.0) -> bool:
        """Block until the spare workers have started (so a first job does not wait)."""
        deadline = time.monotonic() + timeout_s
        for w in self._idle:
            while not w.ready:
                left = deadline - time.monotonic()
                if left <= 0 or not w.conn.poll(left):
                    return False
                try:
                    w.ready = _recv(w.conn)[0] == "ready"
                except (EOFError, OSError):
                    return False
        return True

    def _release_worker(self, job: Job) -> None:
        """The job no longer needs its worker: back to the pool (virtual) or stopped."""
        if not self.virtual or job.proc is None:
            self._stop_worker(job)
            return
        if len(self._idle) < SPARE_WORKERS + 1:
            self._idle.append(_Worker(job.proc, job.conn, ready=True))
            job.proc = job.conn = None
        else:
            self._stop_worker(job)

    # -- persistence: a checkpointed job survives a reboot or power cycle as "suspended"
    def _meta(self, job: Job) -> str:
        """An older agent's record of a checkpointed job (read, never written now)."""
        return os.path.join(self.state_dir, f"job{job.job_id}.json")

    def _forget(self, job: Job) -> None:
        for path in (self._meta(job), *ckpt_slots(self._ckpt(job)), legacy_ckpt_path(self._ckpt(job))):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def _load_checkpointed(self) -> None:
        """Every job a checkpoint on the disk holds comes back as ``suspended`` at it:
        from the header of its newest whole checkpoint file (the files are the
        record: nothing else is written at a checkpoint), or from an older agent's
        ``job<N>.json`` beside its ``job<N>.npz``. Torn or foreign files are passed over."""
        ids, legacy = set(), []
        for name in os.listdir(self.state_dir):
            m = _CKPT_NAME.fullmatch(name)
            if m:
                ids.add(int(m.group(1)))
            elif name.startswith("job") and name.endswith(".json"):
                legacy.append(name)
        for jid in sorted(ids):
            best, _ = newest_checkpoint(os.path.join(self.state_dir, f"job{jid}.ckpt"))
            if best is None:
                continue
            head = best[2]
            try:
                self._add_suspended(head["job"], int(head["step"]), jid)
            except (ValueError, KeyError, TypeError):
                continue
        for name in sorted(legacy):
            try:
                with open(os.path.join(self.state_dir, name), encoding="utf-8") as f:
                    m = json.load(f)
                jid = int(m["job_id"])
                if jid in self.jobs or not os.path.exists(
                        legacy_ckpt_path(os.path.join(self.state_dir, f"job{jid}.ckpt"))):
                    continue  # a newer checkpoint in the slots, or no working state
                self._add_suspended(m, int(m["checkpoint_step"]), jid)
            except (OSError, ValueError, KeyError, TypeError):
                continue

    def _add_suspended(self, m: dict, step: int, jid: int) -> None:
        if int(m["job_id"]) != jid:
            raise ValueError(f"job {m['job_id']} in a file of job {jid}")
        job = Job(jid, m["workload"], validate(m["workload"], m["params"]), m["deadline_ns"],
                  int(m["started_ns"]), state="suspended", step=step, checkpoint_step=step)
        self._set_rate(job)
        self.jobs[job.job_id] = job
        self._next_id = max(self._next_id, job.job_id % 65535 + 1)

    # -- helpers
    def _job(self, job_id: int) -> Job:
        try:
            return self.jobs[int(job_id)]
        except (KeyError, TypeError, ValueError):
            raise JobError(5, f"no job {job_id!r}") from None

    def _ckpt(self, job: Job) -> str:
        return os.path.join(self.state_dir, f"job{job.job_id}.ckpt")

    def _set_rate(self, job: Job) -> None:
        if self.virtual:
            job.rate_usteps = nominal_rate_usteps(job.workload, job.params, self.flops_s)

    def _spawn(self, job: Job, resume: bool, now_ns: int = 0) -> None:
        if self.virtual:
            w = self._idle.pop(0) if self._idle else self._new_worker()
            job.proc, job.conn = w.proc, w.conn
            _send(job.conn, ("job", job.job_id, job.workload, job.params, self._ckpt(job), resume))
            # running from now on in simulation time; the worker computes when told to
            job.state, job.acc, job.target, job.last_ns = "running", 0, job.step, now_ns
            job.sent = job.step
            self._ensure_spare()
            return
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=worker_main,
            args=(child, job.workload, job.params, self._ckpt(job), resume, self.throttle),
            daemon=True,
            name=f"job{job.job_id}",
        )
        proc.start()
        child.close()
        job.proc, job.conn, job.state = proc, parent, "starting"

    def _stop_worker(self, job: Job) -> None:
        if job.proc is not None:
            job.proc.kill()
            job.proc.join(timeout=2)
            job.proc.close()
        if job.conn is not None:
            job.conn.close()
        job.proc = job.conn = None
        if self.virtual and not self._closing:
            self._ensure_spare()

    def awaited(self) -> bool:
        """Whether any request to a worker is still unanswered."""
        return any(j.waiters for j in self.jobs.values())

    def running(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.state in ACTIVE]

    def fds(self) -> list[int]:
        """The workers' pipe fds, for the agent's select (ints: select would call
        each Connection's fileno() every loop); :meth:`poll` takes the ready ones."""
        fd = self._fd
        return [fd(j.conn) for j in self.jobs.values() if j.conn is not None] + [fd(w.conn) for w in self._idle]

    def _fd(self, conn) -> int:
        n = self._fds.get(conn)
        if n is None:
            if len(self._fds) > 256:  # conns of workers long gone
                self._fds.clear()
            n = self._fds[conn] = conn.fileno()
        return n

    # -- commands
    def start(self, workload: str, params: dict, deadline_s: float | None, now_ns: int) -> Job:
        try:
            p = validate(workload, params or {})
        except ValueError as exc:
            raise JobError(3, str(exc)) from None
        if self.max_dim is not None:
            p = {k: min(v, self.max_dim) if k in SIZE_PARAMS else v for k, v in p.items()}
        if deadline_s is not None and (not isinstance(deadline_s, int | float) or deadline_s <= 0):
            raise JobError(3, f"deadline_s must be a positive number of seconds, got {deadline_s!r}")
        if len(self.running()) >= self.max_jobs:
            raise JobError(8, f"{self.max_jobs} jobs already running")
        job = Job(self._next_id, workload, p,
                  None if deadline_s is None else now_ns + int(deadline_s * 1e9), now_ns)
        self._next_id = self._next_id % 65535 + 1
        self._set_rate(job)
        self.jobs[job.job_id] = job
        ended = [jid for jid, j in self.jobs.items() if j.state not in LIVE_STATES]  # oldest first
        if len(ended) >= 2 * ENDED_KEPT:  # forget the oldest ended jobs (never a suspended one)
            for jid in ended[:-ENDED_KEPT]:
                del self.jobs[jid]
        self._forget(job)  # a fresh job: no file under its id from an earlier one may resume it
        self._spawn(job, resume=False, now_ns=now_ns)
        return job

    def request(self, job_id: int, op: str, args: tuple, callback) -> None:
        """Ask a live worker; ``callback(ok, result)`` runs when it answers."""
        job = self._job(job_id)
        if job.conn is None or job.state not in ACTIVE:
            raise JobError(6, f"job {job.job_id} is {job.state}, not running")
        if job.sent < job.target:  # the steps it owes first (advance() sends them lazily)
            self._tag += 1
            _send(job.conn, ("advance", self._tag, job.target))
            job.sent = job.target
        self._tag += 1
        job.waiters[self._tag] = callback
        _send(job.conn, (op, self._tag, *args))

    def checkpoint(self, job_id: int, callback, stop: bool = False) -> None:
        job = self._job(job_id)
        meta = {"job_id": job.job_id, "workload": job.workload, "params": job.params,
                "deadline_ns": job.deadline_ns, "started_ns": job.started_ns}
        self.request(job_id, "checkpoint", (stop, meta), callback)

    def resume(self, job_id: int, now_ns: int = 0) -> Job:
        job = self._job(job_id)
        if job.state != "suspended":
            raise JobError(6, f"job {job.job_id} is {job.state}, not suspended")
        self._spawn(job, resume=True, now_ns=now_ns)
        self.emit_event("job_state", {"job_id": job.job_id, "state": job.state})
        return job

    def cancel(self, job_id: int) -> Job:
        job = self._job(job_id)
        if job.state in ("done", "failed", "cancelled", "deadline_missed"):
            raise JobError(6, f"job {job.job_id} already {job.state}")
        self._fail_waiters(job, "job cancelled")
        self._stop_worker(job)
        job.state = "cancelled"
        self._forget(job)
        self.emit_event("job_state", {"job_id": job.job_id, "state": job.state})
        return job

    def set_throttle(self, x: float) -> None:
        self.throttle = x
        for j in self.jobs.values():
            if j.conn is not None:
                try:
                    _send(j.conn, ("throttle", x))
                except OSError:
                    pass

    def _procs(self) -> list:
        return [j.proc for j in self.jobs.values() if j.proc is not None] + [
            w.proc for w in self._idle]

    def _signal_all(self, sig: int) -> None:
        for proc in self._procs():
            if proc.pid is not None:
                try:
                    os.kill(proc.pid, sig)
                except ProcessLookupError:
                    pass

    def freeze(self) -> None:
        """The board hangs: every worker stops where it is (SIGSTOP), as on a locked-up SoC."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        """A timed hang ends: the workers carry on (SIGCONT)."""
        self._signal_all(signal.SIGCONT)

    def shutdown(self) -> None:
        self._closing = True
        try:
            for j in list(self.jobs.values()):
                self._fail_waiters(j, "agent reboot")
                self._stop_worker(j)
            self.jobs.clear()
            for w in self._idle:
                w.proc.kill()
                w.proc.join(timeout=2)
                w.proc.close()
                w.conn.close()
            self._idle.clear()
        finally:
            self._closing = False

    # -- virtual clock: progress in simulation time
    def advance(self, t_ns: int, throttle: float, callback) -> None:
        """Bring every running job to the step it has earned by ``t_ns`` at ``throttle``
        (held since the previous call); ``callback()`` once every worker has computed,
        jobs that finished are ``done`` and deadlines up to ``t_ns`` are applied."""
        thr_ppm = int(round(max(0.0, min(1.0, throttle)) * 1_000_000))
        waiting = {"n": 1}
        later: list = []  # (conn, message): advances not waited for

        def acked(ok: bool = True, result=None) -> None:
            waiting["n"] -= 1
            if waiting["n"] == 0:
                self._deadlines(t_ns)
                callback()

        live = [j for j in self.jobs.values() if j.state in ACTIVE and j.conn is not None]
        for job in sorted(live, key=by_job_id) if len(live) > 1 else live:
            end = t_ns if job.deadline_ns is None else min(t_ns, job.deadline_ns)
            steps = job.params["steps"]
            whole = 0  # steps earned in this interval
            if end > job.last_ns and job.target < steps:
                gain = job.rate_usteps * thr_ppm  # per ns, in 1e-21 steps
                need = (steps - job.target) * _ACC_UNIT - job.acc
                whole, job.acc = divmod(job.acc + gain * (end - job.last_ns), _ACC_UNIT)
                if job.target + whole >= steps:  # finishes inside this interval: exactly when
                    job.done_ns = job.last_ns + -(-need // gain)
                    whole, job.acc = steps - job.target, 0
                job.target += whole
            job.last_ns = max(job.last_ns, end)
            if job.target > job.step:
                self._tag += 1
                msg = ("advance", self._tag, job.target)
                if job.target < steps:
                    # Not waited for: the step the worker will reach is known now. Nothing
                    # outside the worker sees its state but a checkpoint, an SEU, a progress
                    # query (request() sends the advance first: the pipe is in order) and
                    # the finish, so it is told only every ADVANCE_BATCH_STEPS steps, after
                    # the reply is out (it does not compete with the reply for the CPU).
                    # Near the end (within two intervals like this one) it is told at
                    # every sync, so that the reply that finishes the job waits only for
                    # the steps of its own interval, not for a whole batch.
                    job.step = job.target
                    if job.target - job.sent >= ADVANCE_BATCH_STEPS or steps - job.target <= 2 * whole:
                        job.sent = job.target
                        later.append((job.conn, msg))
                    continue
                job.sent = job.target
                waiting["n"] += 1  # finishes: the reply needs its digest, so wait for "done"
                job.waiters[self._tag] = acked
                try:
                    _send(job.conn, msg)
                except OSError:
                    job.waiters.pop(self._tag)(False, "worker gone")
        acked()  # with no job finishing, the callback (the reply) runs here
        for conn, msg in later:
            try:
                _send(conn, msg)
            except OSError:
                pass  # a worker stopped meanwhile (deadline) or dead: the next drain sees it

    def _deadlines(self, now_ns: int) -> None:
        """Live or suspended jobs past their deadline (simulation time) are stopped."""
        late = [j for j in self.jobs.values() if j.deadline_ns is not None and now_ns > j.deadline_ns
                and j.state in LIVE_STATES]
        for job in sorted(late, key=by_job_id) if len(late) > 1 else late:
            if job.state in LIVE_STATES:  # (a stop may change others)
                self._fail_waiters(job, "deadline missed")
                self._stop_worker(job)
                job.state = "deadline_missed"
                self._forget(job)
                self.emit_event("deadline_missed", {"job_id": job.job_id, "step": job.step})

    # -- worker messages and deadlines
    def _fail_waiters(self, job: Job, why: str) -> None:
        waiters, job.waiters = job.waiters, {}
        for cb in waiters.values():
            cb(False, why)

    def poll(self, ready_fds, now_ns: int) -> None:
        """Drain the workers whose pipe fds (from :meth:`fds`) select found ready."""
        if ready_fds:
            fd = self._fd
            for w in list(self._idle):
                if fd(w.conn) in ready_fds:
                    self._drain_idle(w)
            for job in list(self.jobs.values()):
                if job.conn is not None and fd(job.conn) in ready_fds:
                    self._drain(job)
        if not self.virtual:  # virtual clock: deadlines are applied at time syncs (advance)
            self._deadlines(now_ns)

    def _drain_idle(self, w: _Worker) -> None:
        try:
            while _readable(w.conn):
                if _recv(w.conn)[0] == "ready":
                    w.ready = True
        except (EOFError, OSError):  # an idle worker died: replace it
            self._idle.remove(w)
            w.conn.close()
            w.proc.join(timeout=1)
            if not self._closing:
                self._ensure_spare()

    def _drain(self, job: Job) -> None:
        conn = job.conn
        while conn is not None and job.conn is conn:
            try:
                if not _readable(conn):
                    return
                msg = _recv(conn)
            except (EOFError, OSError):
                if job.state in ACTIVE:
                    job.state, job.error = "failed", "worker process died"
                    self._fail_waiters(job, job.error)
                    self.emit_event("job_failed", {"job_id": job.job_id, "error": job.error})
                self._stop_worker(job)
                return
            op = msg[0]
            if op == "running":
                if not self.virtual:
                    job.state, job.step = "running", msg[1]
            elif op == "ready":
                pass
            elif op == "progress":
                job.step = msg[1]
            elif op == "checkpointed":
                _, tag, step, stop = msg
                job.step = job.checkpoint_step = step  # (the file holds what a reboot needs)
                if stop:
                    self._release_worker(job)
                    job.state = "suspended"
                    self.emit_event("job_state", {"job_id": job.job_id, "state": job.state})
                cb = job.waiters.pop(tag, None)
                if cb:
                    cb(True, {"job_id": job.job_id, "checkpoint_step": step, "state": job.state})
            elif op == "seu_done":
                cb = job.waiters.pop(msg[1], None)
                if cb:
                    cb(True, {"job_id": job.job_id, **msg[2]})
            elif op == "done":
                job.digest, job.step, job.state = msg[1], msg[2], "done"
                self._release_worker(job)
                self._forget(job)
                self.emit_event("job_done", {"job_id": job.job_id, "digest": job.digest})
                self._fail_waiters(job, "job finished")  # last: a time sync may complete here
            elif op == "error":
                job.state, job.error = "failed", msg[1]
                self._release_worker(job)
                self._forget(job)
                self.emit_event("job_failed", {"job_id": job.job_id, "error": job.error})
                self._fail_waiters(job, job.error)
