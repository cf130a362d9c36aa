"""``hil archive``: read a run's telemetry archive (docs/archive.md).

    hil archive export RUN --csv DIR     one CSV per table
    hil archive info RUN                 tables, row counts, channels
"""

from __future__ import annotations

import argparse
import sys

from hil_rig.archive import ArchiveError, export_csv, load_run
from hil_rig.cli import UsageError


def _export(args: argparse.Namespace) -> int:
    if not args.csv:
        raise UsageError("archive export: give --csv DIR")
    try:
        written = export_csv(args.run, args.csv)
    except ArchiveError as exc:
        raise UsageError(str(exc)) from None
    for p in written:
        print(p)
    return 0


def _info(args: argparse.Namespace) -> int:
    try:
        run = load_run(args.run)
    except ArchiveError as exc:
        raise UsageError(str(exc)) from None
    for k, v in run.meta.items():
        print(f"{k}: {v}")
    for table in ("telemetry", "payload", "events"):
        print(f"{table}: {len(run[table])} rows")
    for row in run["channels"]:
        print(f"  {row['name']:<24} [{row['unit']}] {row['description']}")
    sys.stdout.flush()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("archive", help="read or export a run's telemetry archive")
    sub = p.add_subparsers(dest="archive_command", metavar="ACTION", required=True)
    e = sub.add_parser("export", help="export every table of a run to CSV")
    e.add_argument("run", metavar="RUN", help="run directory (or its telemetry.sqlite)")
    e.add_argument("--csv", metavar="DIR", required=True, help="directory for the CSV files")
    e.set_defaults(func=_export)
    i = sub.add_parser("info", help="tables, row counts and channels of a run")
    i.add_argument("run", metavar="RUN")
    i.set_defaults(func=_info)
