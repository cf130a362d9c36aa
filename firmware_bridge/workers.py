"""A job's worker process and the pipe between it and the agent.

Each job computes in a worker process (multiprocessing, spawn); the agent's job
manager (``firmware_bridge.jobs``) talks to it over a pipe. The worker exits
when the pipe closes (the agent died).

**The pipe.** Each message is a tuple of plain data, pickled (:func:`send`,
:func:`recv`). ``tag`` matches an answer to its request.

Agent to worker:

- ``("job", job_id, workload, params, ckpt_path, resume)``: take this job
  (virtual-time workers only; a real-time worker gets its job as arguments);
- ``("advance", tag, target)``: compute up to step ``target`` (virtual time);
- ``("throttle", x)``: the duty cycle from now on (real time);
- ``("checkpoint", tag, stop, job_record)``: save (:mod:`firmware_bridge.checkpoint`),
  and with ``stop`` end the job;
- ``("seu", tag, index, bit)``: flip a bit of the working memory (random where None);
- ``("progress",)`` or ``("progress", tag)``: report the step reached;
- ``("drop",)``: forget the job (virtual time).

Worker to agent: ``("ready",)`` (a pooled worker has started), ``("running",
step, steps)``, ``("progress", step, steps)``, ``("checkpointed", tag, step,
stop)``, ``("seu_done", tag, details)``, ``("done", digest, step)``,
``("error", message)``.

**Two entry points.** :func:`worker_main` runs one job on its own (real time).
Paced (``step_s`` given: the seconds one step takes at the board kind's rated
throughput, ``firmware_bridge.ratings``), each step starts no earlier than the
previous one's start plus ``step_s / x`` at throttle ``x``, so a job progresses at
its rated FLOP/s x throttle of wall time, as it does in simulation time in
virtual time; a board slower than its rating runs flat out, behind. Free-running
(``step_s`` None), it is throttled by duty cycle: after computing for a slice of
wall time ``t`` it sleeps ``t * (1 - x) / x``. At throttle 0 it pauses.
:func:`virtual_worker_main` is a pooled worker that computes only when told to
(virtual time), up to the step the job has reached in simulation time.
"""

from __future__ import annotations

import os
import pickle
import select
import time

from .workloads import Work

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core per job; deterministic reductions

SLICE_S = 0.005  # compute slice between duty-cycle sleeps and control polls
PROGRESS_EVERY_S = 0.05
JOB_NICE = 10  # a job's process niceness (a real-time worker): the agent's link comes first


def send(conn, msg: tuple) -> None:
    """``conn.send(msg)`` without building a ForkingPickler per message (our messages
    carry only plain data); a ``conn.recv()`` at the other end reads it as before."""
    conn.send_bytes(pickle.dumps(msg, pickle.HIGHEST_PROTOCOL))


def recv(conn) -> tuple:
    """``conn.recv()``: what :func:`send` (or ``conn.send``) sent."""
    return pickle.loads(conn.recv_bytes())


def readable(conn) -> bool:
    """``conn.poll()`` (no timeout) as one select call: Connection.poll builds and
    registers a selector every time, and the agent asks after every worker message."""
    return bool(select.select((conn,), (), (), 0)[0])


def _serve(conn, work: Work, msg: tuple, ckpt_path: str, rng, durable: bool = False) -> bool:
    """A checkpoint, SEU or progress request, answered; True if the job ends here
    (a stopping checkpoint)."""
    op = msg[0]
    if op == "checkpoint":
        work.save(ckpt_path, msg[3] if len(msg) > 3 else None, durable)
        send(conn, ("checkpointed", msg[1], work.step, msg[2]))
        return bool(msg[2])
    if op == "seu":
        send(conn, ("seu_done", msg[1], work.flip_bit(msg[2], msg[3], rng)))
    elif op == "progress":
        send(conn, ("progress", work.step, work.p["steps"]))
    return False


def worker_main(conn, workload: str, params: dict, ckpt_path: str, resume: bool,
                throttle: float, step_s: float | None = None,
                durable: bool = False, hold_pace: float = 0.0) -> None:  # pragma: no cover - child process
    """One job in real time: paced at ``step_s`` per step / ``throttle``, or free-running
    at the duty cycle ``throttle`` (``step_s`` None).

    With ``hold_pace`` (a share, 0 < h <= 1) a paced step keeps the CPU busy for
    ``h x step_s`` (at least its own compute) before the pause: a board that computes
    faster than its rating spends that time instead of sleeping it, so its CPU use is
    ``h x throttle`` whatever the host's speed. That is for a board whose draw is read
    from its CPU use (a QEMU board, docs/boards.md "Draw")."""
    import numpy as np

    try:  # the agent serving the link gets the CPU before the job does
        os.nice(JOB_NICE)
    except OSError:
        pass

    try:
        work = Work(workload, params, np)
        if resume:
            work.load(ckpt_path)
    except Exception as exc:  # noqa: BLE001 - reported to the agent, never raised
        send(conn, ("error", f"{type(exc).__name__}: {exc}"))
        return
    rng = np.random.default_rng()
    steps = params["steps"]
    send(conn, ("running", work.step, steps))
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
                msg = recv(conn)
            except (EOFError, OSError):
                return  # agent gone: stop computing
            if msg[0] == "throttle":
                throttle = float(msg[1])
            elif _serve(conn, work, msg, ckpt_path, rng, durable):
                return  # stopped after a checkpoint (suspend)
        if work.step >= steps:
            send(conn, ("done", work.digest(), work.step))
            return
        t0 = time.monotonic()
        if step_s is not None:  # paced: one step, the next one due step_s / throttle after this one's start
            work.run_step()
            pause_until = max(pause_until, t0 - SLICE_S) + step_s / throttle
            t1 = time.monotonic()
            if hold_pace > 0.0:  # busy for its share of the step; a control message cuts it short
                busy_until = t0 + step_s * hold_pace
                while t1 < busy_until and not conn.poll(0):
                    t1 = time.monotonic()
        else:
            while work.step < steps:
                work.run_step()
                if time.monotonic() - t0 >= SLICE_S:
                    break
            t1 = time.monotonic()
            busy = t1 - t0
            pause_until = t1 + (busy * (1.0 - throttle) / throttle if throttle < 1.0 else 0.0)
        if t1 - last_progress >= PROGRESS_EVERY_S:
            send(conn, ("progress", work.step, steps))
            last_progress = t1


def virtual_worker_main(conn, seed: int | None) -> None:  # pragma: no cover - child process
    """A reusable worker that computes only when told to (virtual time).

    Idle until ``("job", ...)``; then serves ``("advance", tag, target)`` (compute
    up to ``target`` steps; silent unless the job is then ``done``), checkpoint,
    seu and progress; after ``done``, an error or a stopping checkpoint it is idle
    again."""
    import numpy as np

    send(conn, ("ready",))
    work = None
    ckpt = ""
    steps = 0
    rng = None
    while True:
        try:
            msg = recv(conn)
        except (EOFError, OSError):
            return  # agent gone
        op = msg[0]
        if op == "job":
            _, job_id, workload, params, ckpt, resume = msg
            try:
                work = Work(workload, params, np)
                if resume:
                    work.load(ckpt)
            except Exception as exc:  # noqa: BLE001 - reported to the agent
                work = None
                send(conn, ("error", f"{type(exc).__name__}: {exc}"))
                continue
            steps = params["steps"]
            rng = np.random.default_rng(None if seed is None else [seed, job_id])
            send(conn, ("running", work.step, steps))
        elif work is None:
            continue  # a request for a job this worker no longer holds: its waiter was failed
        elif op == "advance":
            target = min(int(msg[2]), steps)
            while work.step < target:
                work.run_step()
            if work.step >= steps:
                send(conn, ("done", work.digest(), work.step))
                work = None
        elif op == "drop":
            work = None
        elif _serve(conn, work, msg, ckpt, rng):
            work = None
