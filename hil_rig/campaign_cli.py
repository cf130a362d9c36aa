"""``hil campaign``: a fault campaign on a Dask cluster (docs/campaigns.md).

    hil campaign FILE [--workers N | --scheduler tcp://HOST:PORT] [--out DIR] [--resume]
    hil campaign-report DIR      # (re)write DIR/report.html from a campaign directory

Default: a ``LocalCluster`` on 127.0.0.1, one single-threaded worker process per core.
``--scheduler`` uses a running cluster (``dask scheduler`` / ``dask worker``, or
dask-jobqueue on a batch system); its workers must import this package and see ``--out``.
Exit 0 when no schedule failed, 1 when one did (or timed out, or could not run), 2 on bad
input.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

from hil_rig.cli import UsageError


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return n


def _campaign(args: argparse.Namespace) -> int:
    from hil_rig.campaign import CampaignError, load_campaign

    try:
        spec = load_campaign(args.file)
    except CampaignError as exc:
        raise UsageError(str(exc)) from None
    out = pathlib.Path(args.out) if args.out else pathlib.Path("campaigns-out") / spec.name
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    if args.scheduler and not args.scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        raise UsageError(f"--scheduler {args.scheduler!r}: expected an address such as tcp://127.0.0.1:8786")
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError("hil campaign needs Dask distributed: pip install 'orbit-hil[campaign]'") from None
    from hil_rig.campaign.engine import Campaign

    cluster = None
    try:
        if args.scheduler:
            try:
                client = Client(args.scheduler, timeout="10s")
            except OSError as exc:
                raise UsageError(f"--scheduler {args.scheduler}: cannot reach the scheduler: {exc}") from None
        else:
            n = args.workers or os.cpu_count() or 1
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0")
            client = Client(cluster)
        with client:
            try:
                summary = Campaign(spec, out, client, resume=args.resume).run()
            except CampaignError as exc:
                raise UsageError(str(exc)) from None
    finally:
        if cluster is not None:
            cluster.close()
    from hil_rig.campaign.engine import summary_text

    sys.stdout.write(summary_text(summary))
    print(f"campaign directory: {out}")
    r = summary["results"]
    return 1 if (r.get("fail") or r.get("timeout") or r.get("error")) else 0


def _campaign_report(args: argparse.Namespace) -> int:
    from hil_rig.campaign.report import CampaignReportError, write_campaign_report

    out = pathlib.Path(args.dir)
    if not out.is_dir():
        raise UsageError(f"{out}: not a directory (give a campaign directory, the --out of hil campaign)")
    try:
        path = write_campaign_report(out)
    except CampaignReportError as exc:
        raise UsageError(str(exc)) from None
    print(f"campaign report: {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("campaign", help="run a fault campaign on a Dask cluster and shrink its failures",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="campaign file (TOML; see docs/campaigns.md)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive_int, metavar="N",
                       help="local cluster of N worker processes (default: one per core)")
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="use a running Dask scheduler")
    p.add_argument("--out", metavar="DIR", help="campaign directory (default: campaigns-out/NAME)")
    p.add_argument("--resume", action="store_true", help="go on with the campaign in --out, skipping finished runs")
    p.set_defaults(func=_campaign)
    r = sub.add_parser("campaign-report", help="write a campaign directory's report.html again",
                       description="Write DIR/report.html from a campaign directory (schedules.json, "
                                   "results.jsonl, summary.json and the runs): at any time, also while the "
                                   "campaign runs or after it was interrupted.")
    r.add_argument("dir", metavar="DIR", help="campaign directory (the --out of hil campaign)")
    r.set_defaults(func=_campaign_report)
