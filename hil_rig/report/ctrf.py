"""Files written beside ``summary.json`` at a run's end: ``ctrf.json`` (the
verdicts in the Common Test Report Format, https://ctrf.io: one test per
requirement) and, in real time, ``lateness.json`` (each frame's lateness)."""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any


def ctrf_doc(summary: Mapping[str, Any], *, stop_ms: int | None = None) -> dict[str, Any]:
    """The CTRF document of a run's ``summary.json``. A run that ended on an error or
    was stopped gets one more test, ``run``, failed with the reason."""
    from hil_rig import __version__

    stop = int(time.time() * 1000) if stop_ms is None else int(stop_ms)
    wall_ms = int(round(float(summary.get("wall_seconds") or 0.0) * 1000))
    suite = str(summary.get("scenario", "scenario"))
    tests = []
    for v in summary.get("requirements", []):
        t: dict[str, Any] = {
            "name": v["name"], "status": "passed" if v["passed"] else "failed", "duration": 0,
            "suite": suite, "type": v.get("kind", ""),
            "extra": {"kind": v.get("kind", ""), "measured": v.get("measured", {})},
        }
        t["message" if not v["passed"] else "stdout"] = v["detail"] if not v["passed"] else [v["detail"]]
        tests.append(t)
    if summary.get("aborted"):
        why = str(summary["aborted"]) + (f": {summary['error']}" if summary.get("error") else "")
        tests.append({"name": "run", "status": "failed", "duration": wall_ms, "suite": suite,
                      "message": f"the run did not end normally: {why}"})
    passed = sum(t["status"] == "passed" for t in tests)
    return {
        "reportFormat": "CTRF",
        "specVersion": "0.0.0",
        "results": {
            "tool": {"name": "orbit-hil", "version": __version__},
            "summary": {"tests": len(tests), "passed": passed, "failed": len(tests) - passed, "pending": 0,
                        "skipped": 0, "other": 0, "start": stop - wall_ms, "stop": stop},
            "tests": tests,
            "environment": {"appName": "orbit-hil", "appVersion": __version__,
                            "extra": {k: summary.get(k) for k in ("scenario", "seed", "bench", "boards", "clock",
                                                                  "sim_seconds", "run_dir")}},
        },
    }


def write_ctrf(run_dir: pathlib.Path, summary: Mapping[str, Any], *, stop_ms: int | None = None) -> pathlib.Path:
    path = pathlib.Path(run_dir) / "ctrf.json"
    path.write_text(json.dumps(ctrf_doc(summary, stop_ms=stop_ms), indent=2) + "\n", encoding="utf-8")
    return path


def write_lateness(run_dir: pathlib.Path, stats: Any, t0_s: float = 0.0) -> pathlib.Path:
    """``lateness.json``: the summary figures and every frame's lateness (ms, one frame
    per simulated second from ``t0_s``), from a ``hil_rig.clock.LatenessStats``."""
    path = pathlib.Path(run_dir) / "lateness.json"
    doc = {**stats.summary(), "t0_s": t0_s, "late_ms": [round(x / 1e6, 4) for x in stats.samples]}
    path.write_text(json.dumps(doc) + "\n", encoding="utf-8")
    return path


__all__: Sequence[str] = ["ctrf_doc", "write_ctrf", "write_lateness"]
