"""``hil report``: a run directory's report, or several runs compared (docs/report.md).

    hil report RUN_DIR                     writes RUN_DIR/report.html
    hil report RUN_A RUN_B [...] [--out F] writes compare.html (or F): the runs overlaid
"""

from __future__ import annotations

import argparse

from hil_rig.cli import UsageError


def _report(args: argparse.Namespace) -> int:
    from hil_rig.report import ReportError, load, write_ctrf, write_report

    try:
        path = write_report(args.run_dirs, args.out)
        if len(args.run_dirs) == 1:
            run = load(args.run_dirs[0])
            if run.summary and not (run.path / "ctrf.json").exists():
                write_ctrf(run.path, run.summary)
    except ReportError as exc:
        raise UsageError(f"report: {exc}") from None
    print(f"{path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help="write a run's report.html, or compare several runs",
        description="Write a self-contained HTML report of a run directory (RUN_DIR/report.html), "
                    "or, given several, one page that overlays the runs and tabulates their differences "
                    "(compare.html). The page opens offline and makes no request outside itself.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (hil run's --out)")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="where to write (default: RUN_DIR/report.html for one run, ./compare.html for several)")
    p.set_defaults(func=_report)
