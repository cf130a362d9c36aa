"""Campaign throughput: runs per minute on a LocalCluster of N workers against 1 worker.

    python bench/campaign.py [--json] [--workers N] [--examples K] [--duration D]

The same campaign (K schedules of sensor and wheel faults on a D idle-payload scenario,
no failures, so no confirm or shrink runs) is run twice in this invocation: with one
worker (the baseline) and with N workers, each in a fresh output directory.

Figures: ``runs_per_min_1`` and ``runs_per_min_N``; ``speedup`` (their ratio);
``parallel_efficiency`` = speedup / N; ``median_run_wall_s`` (a run's own wall time, as
its worker measured it, ``hil run`` start-up included); ``per_run_overhead_s`` = campaign
wall time x workers / runs - the median run's wall time (scheduling, generation, the
cluster's start excluded: the clock starts when the client is connected).
"""

from __future__ import annotations

import argparse
import io
import os
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _figures import print_figures  # noqa: E402

BASE = """
[scenario]
name = "bench_base"
epoch = "2026-03-20T00:00:00Z"
duration = "1 min"
seed = 3

[orbit]
altitude_km = 550
inclination_deg = "sso"
ltan = "10:30"

[payload]
workload = "idle"

[[requirement]]
kind = "soc_floor"
min = 0.3
"""

CAMPAIGN = """
[campaign]
name = "bench"
scenario = "base.toml"
duration = "{duration}"
examples = {examples}
seed = 11
faults_per_schedule = [1, 2]

[[space]]
kind = "sensor_bias"
sensor = ["gyro", "mag"]
at = [{{ event = "t", from = "0 s", to = "50 s" }}]
duration = ["1 s", "20 s"]
bias = [-0.01, 0.01]

[[space]]
kind = "wheel_stuck"
wheel = ["x", "y", "z"]
at = [{{ event = "t", from = "10 s", to = "50 s" }}]
duration = ["1 s", "10 s"]
"""


def one(workers: int, tmp: pathlib.Path, examples: int, duration: str) -> tuple[float, list[float]]:
    from distributed import Client, LocalCluster

    from hil_rig.campaign import load_campaign
    from hil_rig.campaign.engine import Campaign

    (tmp / "base.toml").write_text(BASE)
    (tmp / "c.toml").write_text(CAMPAIGN.format(examples=examples, duration=duration))
    spec = load_campaign(tmp / "c.toml")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        t0 = time.monotonic()
        s = Campaign(spec, tmp / "out", client, log=io.StringIO()).run()
        wall = time.monotonic() - t0
    if s["results"] != {"pass": s["schedules"]}:
        raise SystemExit(f"bench/campaign.py: the bench campaign must pass every run, got {s['results']}")
    import json

    runs = [json.loads(x)["wall_s"] for x in (tmp / "out" / "results.jsonl").read_text().splitlines()]
    return wall, runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--examples", type=int, default=8)
    ap.add_argument("--duration", default="1 min")
    a = ap.parse_args()
    res: dict[str, object] = {"workers": a.workers, "examples": a.examples, "duration": a.duration}
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as dn:
        w1, r1 = one(1, pathlib.Path(d1), a.examples, a.duration)
        wn, rn = one(a.workers, pathlib.Path(dn), a.examples, a.duration)
    pm1, pmn = len(r1) / w1 * 60, len(rn) / wn * 60
    med = statistics.median(rn)
    res.update({
        "runs_per_min_1": round(pm1, 2), f"runs_per_min_{a.workers}": round(pmn, 2),
        "speedup": round(pmn / pm1, 3), "parallel_efficiency": round(pmn / pm1 / a.workers, 3),
        "median_run_wall_s_1": round(statistics.median(r1), 2), f"median_run_wall_s_{a.workers}": round(med, 2),
        "per_run_overhead_s": round(wn * a.workers / len(rn) - med, 2),
    })
    print_figures(res, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
