"""The run loop's real-time priority (docs/running.md, "Performance")."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from hil_rig.run.errors import RunError

DEFAULT_RT_PRIORITY = 1  # Run.rt_priority: the lowest real-time priority, above every normal process


def check_rt_priority(priority: Any) -> None:
    """Raise RunError unless ``priority`` is None or an integer in 1..99."""
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)
                                 or not 1 <= priority <= 99):
        raise RunError(f"rt_priority must be an integer in 1..99 (or off), got {priority!r}")


@contextlib.contextmanager
def loop_priority(priority: int | None) -> Iterator[int | None]:
    """The calling thread at real-time priority ``priority`` (``SCHED_FIFO``) for
    the block; yields the priority applied, or None: ``priority`` None, or not
    permitted here (it needs root, ``CAP_SYS_NICE`` or an ``RLIMIT_RTPRIO`` that
    allows it; Linux only). The thread's policy before is restored after.

    ``SCHED_RESET_ON_FORK``: threads and processes started meanwhile (a board
    rebooted by the virtual bench, a job worker) get the normal policy. The loop
    thread blocks at every board round trip, so the boards get the cores while it
    waits; the kernel's real-time throttling bounds it besides."""
    if priority is None:
        yield None
        return
    check_rt_priority(priority)
    before = None
    try:
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
        if policy & ~os.SCHED_RESET_ON_FORK in (os.SCHED_FIFO, os.SCHED_RR):
            applied: int | None = param.sched_priority  # real-time already (chrt): left as it is
        else:
            os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(priority))
            before, applied = (policy, param), priority
    except (OSError, AttributeError):  # EPERM; no sched_* (not Linux)
        applied = None
    try:
        yield applied
    finally:
        if before is not None:
            os.sched_setscheduler(0, *before)


def process_priority(pid: int, priority: int | None) -> bool:
    """Process ``pid`` at real-time priority ``priority`` (``SCHED_FIFO``, with
    ``SCHED_RESET_ON_FORK``: what it starts gets the normal policy), or back at the
    normal policy with None. False where that is not permitted or ``pid`` is gone."""
    try:
        if priority is None:
            os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))
        else:
            check_rt_priority(priority)
            os.sched_setscheduler(pid, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(priority))
    except (OSError, AttributeError):  # EPERM, ESRCH; no sched_* (not Linux)
        return False
    return True


@contextlib.contextmanager
def boards_priority(vb: Any, priority: int | None) -> Iterator[None]:
    """The virtual bench ``vb``'s emulated boards at the loop's real-time priority
    for the block (those that start meanwhile too), then back at the normal policy.

    The loop waits on a board's reply at every simulated second; on a busy machine a
    board's agent at the normal policy queues behind other work while the loop, at
    its real-time priority, waits for it. The agents block between commands; their
    job workers start at the normal policy (``SCHED_RESET_ON_FORK``), so a job's
    compute never takes a core at real-time priority. QEMU boards are left as they
    are (a QEMU process computes all the time)."""
    if vb is None or priority is None:
        yield
        return
    vb.on_board_start = lambda pid: process_priority(pid, priority)
    for pid in vb.board_pids():
        process_priority(pid, priority)
    try:
        yield
    finally:
        vb.on_board_start = None
        for pid in vb.board_pids():
            process_priority(pid, None)
