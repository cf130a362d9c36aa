"""Benchmark of the operator console (docs/console.md, issue 20's figures).

    python bench/console.py [--json] [--seconds N] [--commands N] [--duration D]

A real ``hil run --listen`` in a subprocess at real time x 1; the console (the
real Textual app, headless through ``App.run_test``) attached in this process:

- ``tm_console_ms_p50/p99``: from an HK packet reaching the console's socket to its
  values in the panels (the console's share of the telemetry latency);
- ``run_lateness_ms_p99``: how late the run produced its frames against their
  real-time deadlines (summary.json's lateness): the run's share;
- ``tm_latency_bound_ms_p99``: the sum of the two p99s, a bound on the frame's
  simulation time to on screen at speed 1 (target <= 250 ms);
- ``cmd_round_trip_ms_p50/p99``: from the key press (Enter on a typed ``noop``) to
  its completion shown (the flight software executes TCs at its 1 Hz frame; target
  p99 <= 1500 ms);
- ``console_cpu_share``: this process's CPU time over the wall time while it
  watches at speed 1 (target <= 0.10 of one core).

Load on the run: the same scenario in virtual time with ``--listen``, once with
nothing attached (baseline) and once with the console watching;
``virtual_speed_ratio`` is the watched run's simulated seconds per wall second
over the baseline's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from _figures import print_figures  # noqa: E402 - bench/, the script's own directory


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _start(run_dir: pathlib.Path, *extra: str) -> subprocess.Popen:
    from hil_rig.run.control_server import ENDPOINTS_FILE

    proc = subprocess.Popen([sys.executable, "-m", "hil_rig.cli", "run", "--listen", "--paused", "--out",
                             str(run_dir), "--rt-priority", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (run_dir / ENDPOINTS_FILE).exists():
        if proc.poll() is not None:
            raise SystemExit(f"bench/console.py: hil run failed: {proc.communicate()[1]}")
        time.sleep(0.05)
    return proc


def _attach(run_dir: pathlib.Path):  # noqa: ANN202
    from flight_sw.tc import load_key
    from hil_rig.console.app import ConsoleApp
    from hil_rig.console.stream import LiveSource
    from hil_rig.run.control_server import Endpoints

    ep = Endpoints.read(run_dir)
    return ConsoleApp(LiveSource(ep, load_key(ep.key_file)))


def _summary(run_dir: pathlib.Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def realtime(tmp: pathlib.Path, seconds: float, commands: int) -> dict:
    run_dir = tmp / "rt"
    proc = _start(run_dir, "--speed", "1", "--duration", f"{int(seconds + commands * 3 + 30)} s")
    app = _attach(run_dir)
    trips: list[float] = []
    cpu: dict[str, float] = {}

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            while not app.status.get("paused"):
                await pilot.pause(0.05)
            await pilot.press("f5")
            while not app.hk:
                await pilot.pause(0.05)
            app.latencies.clear()
            c0, w0 = time.process_time(), time.monotonic()
            await pilot.pause(seconds)
            cpu["share"] = (time.process_time() - c0) / (time.monotonic() - w0)
            for _ in range(commands):
                n = len(app.stack.items)
                await pilot.press(*"noop")
                t0 = time.monotonic()
                await pilot.press("enter")
                while len(app.stack.items) <= n or app.stack.items[n].state not in ("completed", "failed",
                                                                                    "rejected"):
                    await pilot.pause(0.005)
                trips.append(time.monotonic() - t0)
                await pilot.pause(0.3)

    asyncio.run(main())
    lat = list(app.latencies)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    late = (_summary(run_dir).get("lateness") or {})
    late_p99 = float(late.get("p99_ms", late.get("p99", 0.0)) or 0.0)
    return {
        "tm_frames": len(lat),
        "tm_console_ms_p50": round(statistics.median(lat) * 1e3, 1),
        "tm_console_ms_p99": round(_pct(lat, 0.99) * 1e3, 1),
        "run_lateness_ms_p99": round(late_p99, 1),
        "tm_latency_bound_ms_p99": round(_pct(lat, 0.99) * 1e3 + late_p99, 1),
        "cmd_round_trips": len(trips),
        "cmd_round_trip_ms_p50": round(statistics.median(trips) * 1e3, 1),
        "cmd_round_trip_ms_p99": round(_pct(trips, 0.99) * 1e3, 1),
        "console_cpu_share": round(cpu["share"], 3),
    }


def virtual(tmp: pathlib.Path, duration: str) -> dict:
    from flight_sw.tc import load_key
    from hil_rig.run.control_server import ControlClient, Endpoints

    base_dir = tmp / "v0"
    proc = _start(base_dir, "--duration", duration)
    ep = Endpoints.read(base_dir)
    ControlClient(ep.host, ep.control_port, load_key(ep.key_file)).request("resume")
    proc.wait()
    base = _summary(base_dir)

    watched_dir = tmp / "v1"
    proc = _start(watched_dir, "--duration", duration)
    app = _attach(watched_dir)

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            while not app.status.get("paused"):
                await pilot.pause(0.05)
            await pilot.press("f5")
            while proc.poll() is None:
                await pilot.pause(0.1)

    asyncio.run(main())
    watched = _summary(watched_dir)
    return {
        "virtual_speedup_alone": base["speedup"],
        "virtual_speedup_watched": watched["speedup"],
        "virtual_speed_ratio": round(watched["speedup"] / base["speedup"], 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seconds", type=float, default=30.0, help="watching at speed 1 (default 30)")
    ap.add_argument("--commands", type=int, default=10, help="noop round trips at speed 1 (default 10)")
    ap.add_argument("--duration", default="1 orbit", help="the virtual-time runs (default '1 orbit')")
    args = ap.parse_args()
    os.environ.setdefault("TERM", "xterm-256color")
    with tempfile.TemporaryDirectory(prefix="bench-console-") as d:
        tmp = pathlib.Path(d)
        res = {**realtime(tmp, args.seconds, args.commands), **virtual(tmp, args.duration)}
    print_figures(res, args.json)


if __name__ == "__main__":
    main()
