"""The job manager: a board's payload jobs, their states and their workers.

A job is started by a telecommand, runs in a worker process
(``firmware_bridge.workers``) on a workload (``firmware_bridge.workloads``), can
be checkpointed, suspended, resumed and cancelled, and ends ``done`` (with its
digest), ``failed``, ``cancelled`` or ``deadline_missed``. A checkpointed job
survives a reboot or power cycle as ``suspended`` (``firmware_bridge.checkpoint``).

:class:`JobManager` holds what both clocks share; how a job's work is paced in
time is each clock's own:

- :class:`RealTimeJobs` (a board, or an emulator with ``--clock real``): one
  worker process per job, computing on its own at the throttle's duty cycle;
  deadlines are applied as the agent polls, against its clock.
- :class:`VirtualTimeJobs` (the emulator with ``--clock virtual``): workers do not
  compute on their own. Each job has a nominal rate
  (``workloads.nominal_rate_usteps``: steps per simulated second from the
  workload, its params and the board's emulated throughput); on every time sync
  the agent calls :meth:`VirtualTimeJobs.advance`, which tells each running
  worker to compute exactly up to the step the job has reached in simulation time
  (rate x throttle x dt, accumulated exactly in integers). The worker is told
  lazily (every ``ADVANCE_BATCH_STEPS`` steps, at every sync once the job is
  within two sync intervals of its end, and before anything reads its state: a
  checkpoint, an SEU, a progress query), and the reply waits for a worker only
  when its job finishes (for the digest: then only for the steps of that last
  interval). So progress, completion and deadline sim times do not depend on the
  machine's speed. The workers are pre-spawned and reused (a spawn costs a numpy
  import).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field

from . import checkpoint
from .workers import readable, recv, send, virtual_worker_main, worker_main
from .workloads import SIZE_PARAMS, nominal_rate_usteps, step_flops, validate


@dataclass
class BoardJob:
    """The board's record of one job it runs (the flight software's own job record is
    ``flight_sw.payload.Job``)."""

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


def by_job_id(job: BoardJob) -> int:
    """Sort key: a job's id."""
    return job.job_id


class JobManager:
    """Owns the jobs and their worker processes; driven from the agent's
    single-threaded loop. Use :class:`RealTimeJobs` or :class:`VirtualTimeJobs`."""

    def __init__(self, state_dir: str, emit_event, max_jobs: int = 4,
                 max_dim: int | None = None) -> None:
        self.max_dim = max_dim  # emulator: cap n/width/batch so compute stays small
        self._closing = False  # shutting down: do not replace workers that stop
        self.state_dir = state_dir
        os.makedirs(state_dir, exist_ok=True)
        self.emit_event = emit_event
        self.max_jobs = max_jobs
        self.jobs: dict[int, BoardJob] = {}
        self.throttle = 1.0
        self._next_id = 1
        self._tag = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._fds: dict = {}  # worker Connection -> its fd (see fds())
        self._load_checkpointed()

    # -- what each clock does its own way
    def _spawn(self, job: BoardJob, resume: bool, now_ns: int) -> None:
        """Give ``job`` a worker, starting at its step (resuming its checkpoint)."""
        raise NotImplementedError

    def _set_rate(self, job: BoardJob) -> None:
        """A job is known (started, or listed from its checkpoint)."""

    def _on_running(self, job: BoardJob, step: int) -> None:
        """The worker has the job and reports it at ``step``."""

    def _release_worker(self, job: BoardJob) -> None:
        """The job no longer needs its worker."""
        self._stop_worker(job)

    def _procs(self) -> list:
        return [j.proc for j in self.jobs.values() if j.proc is not None]

    def wait_ready(self, timeout_s: float = 60.0) -> bool:
        """Block until the pooled workers have started (none here)."""
        return True

    # -- persistence: a checkpointed job survives a reboot or power cycle as "suspended"
    def _forget(self, job: BoardJob) -> None:
        checkpoint.forget(self._ckpt(job))

    def _load_checkpointed(self) -> None:
        """Every job a checkpoint on the disk holds comes back as ``suspended`` at it,
        from the header of its newest whole checkpoint file (the files are the
        record: nothing else is written at a checkpoint)."""
        for jid, step, m in checkpoint.listed(self.state_dir):
            try:
                if int(m["job_id"]) != jid:
                    continue  # a record of another job in this job's file
                job = BoardJob(jid, m["workload"], validate(m["workload"], m["params"]), m["deadline_ns"],
                          int(m["started_ns"]), state="suspended", step=step, checkpoint_step=step)
            except (ValueError, KeyError, TypeError):
                continue
            self._set_rate(job)
            self.jobs[job.job_id] = job
            self._next_id = max(self._next_id, job.job_id % 65535 + 1)

    # -- helpers
    def _job(self, job_id: int) -> BoardJob:
        try:
            return self.jobs[int(job_id)]
        except (KeyError, TypeError, ValueError):
            raise JobError(5, f"no job {job_id!r}") from None

    def _ckpt(self, job: BoardJob) -> str:
        return checkpoint.path_of(self.state_dir, job.job_id)

    def _stop_worker(self, job: BoardJob) -> None:
        if job.proc is not None:
            job.proc.kill()
            job.proc.join(timeout=2)
            job.proc.close()
        if job.conn is not None:
            job.conn.close()
        job.proc = job.conn = None

    def awaited(self) -> bool:
        """Whether any request to a worker is still unanswered."""
        return any(j.waiters for j in self.jobs.values())

    def running_count(self) -> int:
        """How many jobs are running or starting (the agent asks at every tick)."""
        n = 0
        for j in self.jobs.values():
            if j.state in ACTIVE:
                n += 1
        return n

    def fds(self) -> list[int]:
        """The workers' pipe fds, for the agent's select (ints: select would call
        each Connection's fileno() every loop); :meth:`poll` takes the ready ones."""
        fd = self._fd
        return [fd(j.conn) for j in self.jobs.values() if j.conn is not None]

    def _fd(self, conn) -> int:
        n = self._fds.get(conn)
        if n is None:
            if len(self._fds) > 256:  # conns of workers long gone
                self._fds.clear()
            n = self._fds[conn] = conn.fileno()
        return n

    # -- commands
    def start(self, workload: str, params: dict, deadline_s: float | None, now_ns: int) -> BoardJob:
        try:
            p = validate(workload, params or {})
        except ValueError as exc:
            raise JobError(3, str(exc)) from None
        if self.max_dim is not None:
            p = {k: min(v, self.max_dim) if k in SIZE_PARAMS else v for k, v in p.items()}
        if deadline_s is not None and (not isinstance(deadline_s, int | float) or deadline_s <= 0):
            raise JobError(3, f"deadline_s must be a positive number of seconds, got {deadline_s!r}")
        if self.running_count() >= self.max_jobs:
            raise JobError(8, f"{self.max_jobs} jobs already running")
        job = BoardJob(self._next_id, workload, p,
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
        self._tag += 1
        job.waiters[self._tag] = callback
        send(job.conn, (op, self._tag, *args))

    def checkpoint(self, job_id: int, callback, stop: bool = False) -> None:
        job = self._job(job_id)
        meta = {"job_id": job.job_id, "workload": job.workload, "params": job.params,
                "deadline_ns": job.deadline_ns, "started_ns": job.started_ns}
        self.request(job_id, "checkpoint", (stop, meta), callback)

    def resume(self, job_id: int, now_ns: int = 0) -> BoardJob:
        job = self._job(job_id)
        if job.state != "suspended":
            raise JobError(6, f"job {job.job_id} is {job.state}, not suspended")
        self._spawn(job, resume=True, now_ns=now_ns)
        self.emit_event("job_state", {"job_id": job.job_id, "state": job.state})
        return job

    def cancel(self, job_id: int) -> BoardJob:
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
                    send(j.conn, ("throttle", x))
                except OSError:
                    pass

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
        finally:
            self._closing = False

    def _deadlines(self, now_ns: int) -> None:
        """Live or suspended jobs past their deadline are stopped."""
        late = [j for j in self.jobs.values() if j.deadline_ns is not None and now_ns > j.deadline_ns
                and j.state in LIVE_STATES]
        for job in sorted(late, key=by_job_id) if len(late) > 1 else late:
            if job.state in LIVE_STATES:  # (a stop may change others)
                self._fail_waiters(job, "deadline missed")
                self._stop_worker(job)
                job.state = "deadline_missed"
                self._forget(job)
                self.emit_event("deadline_missed", {"job_id": job.job_id, "step": job.step})

    # -- worker messages
    def _fail_waiters(self, job: BoardJob, why: str) -> None:
        waiters, job.waiters = job.waiters, {}
        for cb in waiters.values():
            cb(False, why)

    def poll(self, ready_fds, now_ns: int) -> None:
        """Drain the workers whose pipe fds (from :meth:`fds`) select found ready."""
        if ready_fds:
            fd = self._fd
            for job in list(self.jobs.values()):
                if job.conn is not None and fd(job.conn) in ready_fds:
                    self._drain(job)

    def _drain(self, job: BoardJob) -> None:
        conn = job.conn
        while conn is not None and job.conn is conn:
            try:
                if not readable(conn):
                    return
                msg = recv(conn)
            except (EOFError, OSError):
                if job.state in ACTIVE:
                    job.state, job.error = "failed", "worker process died"
                    self._fail_waiters(job, job.error)
                    self.emit_event("job_failed", {"job_id": job.job_id, "error": job.error})
                self._stop_worker(job)
                return
            op = msg[0]
            if op == "running":
                self._on_running(job, msg[1])
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


class RealTimeJobs(JobManager):
    """Jobs in real time: a worker process per job computes on its own
    (``workers.worker_main``), paced at ``flops_s`` FLOP per second x throttle (the
    board kind's rated throughput: a job takes the same time as in virtual time),
    or, with ``flops_s`` None, free-running at the throttle's duty cycle;
    deadlines are applied as the agent polls."""

    def __init__(self, state_dir: str, emit_event, max_jobs: int = 4,
                 max_dim: int | None = None, *, flops_s: int | None = None, durable: bool = False,
                 hold_pace: float = 0.0) -> None:
        self.flops_s = flops_s
        self.durable = durable  # checkpoints fsynced (a real board: see checkpoint.save)
        self.hold_pace = hold_pace  # share of a paced step held busy (workers.worker_main)
        super().__init__(state_dir, emit_event, max_jobs, max_dim)

    def _spawn(self, job: BoardJob, resume: bool, now_ns: int = 0) -> None:
        parent, child = self._ctx.Pipe()
        step_s = step_flops(job.workload, job.params) / self.flops_s if self.flops_s else None
        proc = self._ctx.Process(
            target=worker_main,
            args=(child, job.workload, job.params, self._ckpt(job), resume, self.throttle, step_s, self.durable,
                  self.hold_pace),
            daemon=True,
            name=f"job{job.job_id}",
        )
        proc.start()
        child.close()
        job.proc, job.conn, job.state = proc, parent, "starting"

    def _on_running(self, job: BoardJob, step: int) -> None:
        job.state, job.step = "running", step

    def poll(self, ready_fds, now_ns: int) -> None:
        super().poll(ready_fds, now_ns)
        self._deadlines(now_ns)


SPARE_WORKERS = 1  # virtual time: idle, warmed-up workers kept ready for the next job
#: Virtual time: workers started at boot, the pool's steady size (a job's worker goes back
#: to the pool when the job ends): the first job takes one and leaves a spare, so no worker
#: starts while the loop runs (a start is a Python with numpy: ~0.1 s of CPU, which held up
#: the first checkpoints of a run by up to 0.16 s of wall time).
POOL_AT_BOOT = SPARE_WORKERS + 1
#: Virtual time: a worker is told to compute its job's earned steps once this many
#: have accumulated (or before anything reads its state, or at the finish).
ADVANCE_BATCH_STEPS = 8
_ACC_UNIT = 10**21  # micro-steps/s x ppm throttle x ns = 1e-21 step


@dataclass
class _Worker:
    proc: object
    conn: object
    ready: bool = False


class VirtualTimeJobs(JobManager):
    """Jobs in simulation time: pooled workers compute exactly the steps a job has
    earned at ``flops_s`` FLOP per simulated second when :meth:`advance` says so
    (see the module's description). ``seed`` seeds the SEU positions."""

    def __init__(self, state_dir: str, emit_event, max_jobs: int = 4,
                 max_dim: int | None = None, *, flops_s: int, seed: int | None = None) -> None:
        self.flops_s = int(flops_s)
        self.seed = seed
        self._idle: list[_Worker] = []
        super().__init__(state_dir, emit_event, max_jobs, max_dim)
        self._ensure_spare(POOL_AT_BOOT)

    # -- a pool of reusable workers
    def _new_worker(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=virtual_worker_main, args=(child, self.seed), daemon=True,
                                 name="job-worker")
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def _ensure_spare(self, n: int = SPARE_WORKERS) -> None:
        while len(self._idle) < n:
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
                    w.ready = recv(w.conn)[0] == "ready"
                except (EOFError, OSError):
                    return False
        return True

    def _release_worker(self, job: BoardJob) -> None:
        """The job no longer needs its worker: back to the pool."""
        if job.proc is None:
            self._stop_worker(job)
            return
        if len(self._idle) < POOL_AT_BOOT:
            self._idle.append(_Worker(job.proc, job.conn, ready=True))
            job.proc = job.conn = None
        else:
            self._stop_worker(job)

    def _stop_worker(self, job: BoardJob) -> None:
        super()._stop_worker(job)
        if not self._closing:
            self._ensure_spare()

    def _set_rate(self, job: BoardJob) -> None:
        job.rate_usteps = nominal_rate_usteps(job.workload, job.params, self.flops_s)

    def _spawn(self, job: BoardJob, resume: bool, now_ns: int = 0) -> None:
        w = self._idle.pop(0) if self._idle else self._new_worker()
        job.proc, job.conn = w.proc, w.conn
        send(job.conn, ("job", job.job_id, job.workload, job.params, self._ckpt(job), resume))
        # running from now on in simulation time; the worker computes when told to
        job.state, job.acc, job.target, job.last_ns = "running", 0, job.step, now_ns
        job.sent = job.step
        self._ensure_spare()

    def _procs(self) -> list:
        return super()._procs() + [w.proc for w in self._idle]

    def fds(self) -> list[int]:
        fd = self._fd
        return super().fds() + [fd(w.conn) for w in self._idle]

    def request(self, job_id: int, op: str, args: tuple, callback) -> None:
        job = self._job(job_id)
        if job.conn is not None and job.state in ACTIVE and job.sent < job.target:
            # the steps it owes first (advance() sends them lazily; the pipe is in order)
            self._tag += 1
            send(job.conn, ("advance", self._tag, job.target))
            job.sent = job.target
        super().request(job_id, op, args, callback)

    def shutdown(self) -> None:
        self._closing = True
        try:
            super().shutdown()
        finally:
            for w in self._idle:
                w.proc.kill()
                w.proc.join(timeout=2)
                w.proc.close()
                w.conn.close()
            self._idle.clear()

    def poll(self, ready_fds, now_ns: int) -> None:
        """Drain the ready workers; deadlines are applied at time syncs (:meth:`advance`)."""
        if ready_fds:
            fd = self._fd
            for w in list(self._idle):
                if fd(w.conn) in ready_fds:
                    self._drain_idle(w)
        super().poll(ready_fds, now_ns)

    def _drain_idle(self, w: _Worker) -> None:
        try:
            while readable(w.conn):
                if recv(w.conn)[0] == "ready":
                    w.ready = True
        except (EOFError, OSError):  # an idle worker died: replace it
            self._idle.remove(w)
            w.conn.close()
            w.proc.join(timeout=1)
            if not self._closing:
                self._ensure_spare()

    # -- progress in simulation time
    def advance(self, t_ns: int, throttle: float, callback) -> None:
        """Bring every running job to the step it has earned by ``t_ns`` at ``throttle``
        (held since the previous call); ``callback()`` once every worker has computed,
        jobs that finished are ``done`` and deadlines up to ``t_ns`` are applied."""
        thr_ppm = int(round(max(0.0, min(1.0, throttle)) * 1_000_000))
        waiting = None  # {"n": count}, with ``acked``, once a job finishes in this interval
        later: list = []  # (conn, message): advances not waited for

        def acked(ok: bool = True, result=None) -> None:
            waiting["n"] -= 1
            if waiting["n"] == 0:
                self._deadlines(t_ns)
                callback()

        live = [j for j in self.jobs.values() if j.state in ACTIVE and j.conn is not None]
        if len(live) > 1:
            live.sort(key=by_job_id)
        for job in live:
            end = t_ns if job.deadline_ns is None else min(t_ns, job.deadline_ns)
            steps = job.params["steps"]
            whole = 0  # steps earned in this interval
            if end > job.last_ns and job.target < steps:
                gain = job.rate_usteps * thr_ppm  # per ns, in 1e-21 steps
                acc = job.acc
                whole, job.acc = divmod(acc + gain * (end - job.last_ns), _ACC_UNIT)
                if job.target + whole >= steps:  # finishes inside this interval: exactly when
                    need = (steps - job.target) * _ACC_UNIT - acc
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
                if waiting is None:
                    waiting = {"n": 1}
                waiting["n"] += 1  # finishes: the reply needs its digest, so wait for "done"
                job.waiters[self._tag] = acked
                try:
                    send(job.conn, msg)
                except OSError:
                    job.waiters.pop(self._tag)(False, "worker gone")
        if waiting is None:  # no job finishing: the callback (the reply) runs here
            self._deadlines(t_ns)
            callback()
        else:
            acked()  # (the callback runs here if every finishing job's worker is gone)
        for conn, msg in later:
            try:
                send(conn, msg)
            except OSError:
                pass  # a worker stopped meanwhile (deadline) or dead: the next drain sees it
