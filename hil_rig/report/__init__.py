"""Run reports (docs/report.md): ``report.html``, one self-contained page with
the run's header, requirement verdicts, plots on one shared time axis, frame
timing and event log; with several run directories, the runs compared side by
side. Also ``ctrf.json``, the verdicts in the Common Test Report Format.

>>> # write_report(["runs/nominal-1-0"])                  # -> runs/nominal-1-0/report.html
>>> # write_report(["runs/a", "runs/b"], "compare.html")  # two runs overlaid
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

from hil_rig.report.ctrf import write_ctrf, write_lateness
from hil_rig.report.data import ReportError, RunData, load

REPORT_NAME = "report.html"


def write_report(run_dirs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Write the report of one run (default ``RUN_DIR/report.html``) or the comparison
    of several (default ``compare.html`` in the current directory); returns its path.
    A run directory that cannot be read is a :class:`ReportError` naming it."""
    from hil_rig.report.page import to_file

    if not run_dirs:
        raise ReportError("give at least one run directory")
    runs = [load(d) for d in run_dirs]
    if out is None:
        path = runs[0].path / REPORT_NAME if len(runs) == 1 else pathlib.Path("compare.html")
    else:
        path = pathlib.Path(out)
        if path.is_dir():
            path = path / (REPORT_NAME if len(runs) == 1 else "compare.html")
    try:
        to_file(runs, path)
    except OSError as exc:
        raise ReportError(f"{exc.filename or path}: cannot write the report: {exc.strerror or exc}") from None
    return path


__all__ = ["REPORT_NAME", "ReportError", "RunData", "load", "write_ctrf", "write_lateness", "write_report"]
