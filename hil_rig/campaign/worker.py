"""One campaign run, as a Dask task: the scenario text written to the run's directory and
run by ``hil run`` in a subprocess, within a wall-clock budget.

The subprocess is what lets a run be killed: past its budget it gets SIGTERM (``hil run``
stops at the next simulated second and closes its boards), then, 10 s later, SIGKILL;
the run is recorded as a timeout, never lost. If the Dask worker itself dies, the kernel
sends the run SIGTERM (``PR_SET_PDEATHSIG``) and Dask reschedules the task elsewhere; each
attempt has its own directory, so a dying attempt never writes into the next one's.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

KILL_GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: a dead worker's run then finishes on its own


def archive_digest(run_dir: str | os.PathLike[str]) -> str | None:
    """sha256 over the archive's reproducible tables (``hil_rig.archive.REPRODUCIBLE_TABLES``:
    every table but the link's retry counts, which follow the wall clock), row for row:
    two runs with the same digest have identical archives there."""
    from hil_rig.archive import REPRODUCIBLE_TABLES as TABLES
    from hil_rig.archive import ArchiveError, table_rows

    h = hashlib.sha256()
    try:
        for table in TABLES:
            h.update(table.encode())
            for row in table_rows(run_dir, table):
                h.update(repr(row).encode())
    except (ArchiveError, OSError, Exception):  # noqa: BLE001 - no archive, or a torn one: no digest
        return None
    return h.hexdigest()


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return None


def run_one(scenario_text: str, name: str, runs_dir: str, timeout_s: float) -> dict[str, Any]:
    """Run one scenario; a result record:

    - ``status``: ``pass`` | ``fail`` (a requirement failed) | ``timeout`` (past its budget,
      killed) | ``error`` (the run could not start or the rig crashed: ``error`` says why);
    - ``failed``: the names of the failed requirements; ``verdicts``: each verdict;
    - ``digest``: :func:`archive_digest`; ``run_dir``; ``wall_s``; ``worker``.
    """
    run_dir = pathlib.Path(runs_dir) / f"{name}-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir(parents=True)
    scen = run_dir / f"{name}.toml"
    scen.write_text(scenario_text, encoding="utf-8")
    out = run_dir / "run"
    cmd = [sys.executable, "-m", "hil_rig.cli", "run", str(scen), "--out", str(out)]
    t0 = time.monotonic()
    with open(run_dir / "stdout.txt", "wb") as so, open(run_dir / "stderr.txt", "wb") as se:
        proc = subprocess.Popen(cmd, stdout=so, stderr=se, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_die_with_parent)
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
    wall = time.monotonic() - t0
    rec: dict[str, Any] = {"name": name, "run_dir": str(out), "scenario_file": str(scen), "exit_code": rc,
                           "wall_s": round(wall, 3), "worker": _worker_address(), "timeout_s": timeout_s,
                           "failed": [], "verdicts": [], "digest": None, "error": None}
    summary: dict[str, Any] = {}
    try:
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    verdicts = summary.get("verdicts") or summary.get("requirements") or []
    rec["verdicts"] = [{"name": v.get("name"), "passed": bool(v.get("passed")), "detail": v.get("detail", "")}
                       for v in verdicts if isinstance(v, dict)]
    rec["failed"] = sorted(v["name"] for v in rec["verdicts"] if not v["passed"])
    rec["sim_s"] = summary.get("sim_seconds")
    if timed_out:
        rec["status"] = "timeout"
        rec["error"] = f"no result within its budget of {timeout_s:.0f} s wall time: killed"
    elif rc in (0, 1) and rec["verdicts"] and not summary.get("error") and not summary.get("aborted"):
        rec["status"] = "pass" if rc == 0 else "fail"
        rec["digest"] = archive_digest(out)
    else:
        rec["status"] = "error"
        tail = (run_dir / "stderr.txt").read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        rec["error"] = summary.get("error") or " | ".join(tail) or f"hil run exited {rc}"
    return rec
