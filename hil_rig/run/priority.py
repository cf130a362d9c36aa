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
