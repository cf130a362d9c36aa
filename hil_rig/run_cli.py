"""``hil run``: run a scenario on a bench (docs/running.md).

    hil run [SCENARIO] [--bench FILE] [--virtual | --speed X] [--duration D]
            [--seed N] [--out DIR] [--scenario-dir DIR] [--rt-priority N] [--no-report]
            [--console | --listen [--paused]] [--key-file FILE]

With no arguments: the nominal scenario on the virtual bench in virtual time.
Exit code 0 when every requirement passed, 1 when one failed, 2 on bad input,
143 when stopped by SIGTERM (the archive stays readable, instruments go to
their safe state).

The options shared with the pytest plugin (``--bench``, ``--speed``,
``--scenario-dir``) are defined once, in :data:`SHARED_OPTIONS`, F´-style.
"""

from __future__ import annotations

import argparse
import pathlib
import signal
import sys
from typing import Any

from hil_rig.cli import UsageError


def _positive_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (x > 0 and x < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return x


#: One definition of the options that ``hil run`` and the pytest plugin share:
#: (flag, argparse/pytest keyword arguments).
SHARED_OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--bench", {"metavar": "FILE", "default": None,
                 "help": "bench file describing the wiring (default: the virtual bench)"}),
    ("--speed", {"metavar": "X", "type": _positive_float, "default": None,
                 "help": "run in real time x X (default: virtual time, as fast as possible)"}),
    ("--scenario-dir", {"metavar": "DIR", "default": None,
                        "help": "directory searched first for scenario names"}),
)


def add_shared_options(add: Any) -> None:
    """Add the shared options with ``add(flag, **kwargs)``: an argparse parser's
    ``add_argument`` or a pytest group's ``addoption``."""
    for flag, kwargs in SHARED_OPTIONS:
        add(flag, dest=_dest(flag), **kwargs)


def _dest(flag: str) -> str:
    return "hil_" + flag.lstrip("-").replace("-", "_")


def _run(args: argparse.Namespace) -> int:
    from hil_rig.archive import ArchiveError
    from hil_rig.orbit import OrbitError
    from hil_rig.run import DEFAULT_RT_PRIORITY, Progress, Run, RunError, RunOptions, build_orbit
    from hil_rig.scenario import (
        ScenarioError,
        check_run_duration,
        find_scenario,
        load_scenario,
        parse_duration,
    )

    if args.virtual and args.hil_speed is not None:
        raise UsageError("give either --virtual or --speed, not both")
    if args.console and args.listen:
        raise UsageError("give either --console or --listen, not both")
    if args.key_file is not None and not (args.console or args.listen):
        raise UsageError("--key-file: only with --console or --listen (the endpoints use the key)")
    if args.paused and not args.listen:
        raise UsageError("--paused: only with --listen (--console always starts paused)")
    extra = [pathlib.Path(args.hil_scenario_dir)] if args.hil_scenario_dir else []
    try:
        path = find_scenario(args.scenario, extra)
        scenario = load_scenario(path)
        changes: dict[str, Any] = {}
        if args.duration is not None:
            changes["duration"] = parse_duration(args.duration, "--duration")
        if args.seed is not None:
            changes["seed"] = args.seed
        if args.virtual:
            changes["speed"] = None
        elif args.hil_speed is not None:
            changes["speed"] = args.hil_speed
        scenario = scenario.replace(**changes)
        # the run's length, with the orbit's period for a duration in orbits: longer than
        # zero, within 64-bit nanoseconds, and where the orbit can be propagated
        orbit = build_orbit(scenario)
        where, text = ("--duration", args.duration) if args.duration is not None else \
            (f"{path}: [scenario] duration", f"{scenario.duration.value:g} {scenario.duration.unit}")
        duration_ns = check_run_duration(scenario.duration, text, scenario.epoch, where, orbit.period_s)
        orbit.propagate(orbit_end_ns(orbit, scenario.epoch, duration_ns))
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    except RunError as exc:
        raise UsageError(str(exc)) from None
    except OrbitError as exc:
        raise UsageError(f"{where} {text!r}: the orbit cannot be propagated to the run's end: {exc}") from None
    out = pathlib.Path(args.out) if args.out is not None else None
    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory; give a directory for the run")
    run = Run(scenario, bench=args.hil_bench, out=out, progress=Progress(sys.stderr, duration_ns),
              options=RunOptions(report=False) if args.no_report else RunOptions(), rt_priority=DEFAULT_RT_PRIORITY if args.rt_priority is None else args.rt_priority or None)

    if args.console or args.listen:
        return run_live(run, args.key_file, console=args.console, paused=args.paused or args.console)

    def _on_term(signum: int, frame: Any) -> None:
        run.stop("SIGTERM")  # the loop stops at the next simulated second
        if not run.started:
            raise KeyboardInterrupt  # in set-up nothing looks at stop(): stop it here

    old = signal.signal(signal.SIGTERM, _on_term)
    try:
        try:
            run.start()
        except RunError as exc:
            raise UsageError(f"{exc} (run directory: {run.run_dir})") from None
        except KeyboardInterrupt:
            if run.stop_reason != "SIGTERM":
                raise
            print(f"hil run: stopped by SIGTERM while setting up; run directory: {run.run_dir}",
                  file=sys.stderr)
            return 128 + signal.SIGTERM
        try:
            result = run.finish()
        except (ArchiveError, OSError) as exc:  # a full disk, a run directory gone
            what = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.filename else exc
            print(f"hil run: error: {what}\nhil run: the run stopped there; run directory: {run.run_dir}",
                  file=sys.stderr)
            return 1
    finally:
        run.close()
        signal.signal(signal.SIGTERM, old)
    return _print_result(result)


def main_console(key_file: str | None, speed: float | None) -> int:
    """``hil console`` with no target: ``hil run --console`` of the nominal scenario."""
    args = build_run_parser().parse_args(["--console"] + (["--key-file", key_file] if key_file else [])
                                         + (["--speed", repr(speed)] if speed else []))
    return _run(args)


def build_run_parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="hil")
    register(root.add_subparsers())
    return root._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]


def run_live(run: Any, key_file: str | None, *, console: bool, paused: bool) -> int:
    """A run that can be attached to (docs/console.md): the ground port and the control
    endpoint on 127.0.0.1 under the run's key, ``endpoints.json`` in the run directory.
    With ``console``: the run loop in a thread, the console in front; otherwise the
    run in this thread until its end, SIGTERM or Ctrl-C."""
    from hil_rig.run import RunError
    from hil_rig.run.control_server import Hosted, run_key

    try:
        key, key_path = run_key(run.run_dir, key_file)
    except RunError as exc:
        raise UsageError(str(exc)) from None
    run.options.tc_key = key
    run.options.ground_port = 0
    hosted = Hosted(run, key, key_path, paused=paused)
    if console:
        from hil_rig.console_cli import need_textual

        need_textual()
        from hil_rig.console.app import ConsoleApp
        from hil_rig.console.stream import LiveSource

        try:
            hosted.start_thread()
        except RunError as exc:
            raise UsageError(f"{exc} (run directory: {run.run_dir})") from None
        try:
            assert hosted.endpoints is not None
            ConsoleApp(LiveSource(hosted.endpoints, key), title=f"{run.scenario.name}: {run.run_dir}").run()
        finally:
            hosted.close()
        result = hosted.live.result
    else:
        old = signal.signal(signal.SIGTERM, lambda signum, frame: run.stop("SIGTERM"))
        try:
            print(f"hil run: listening; attach with: hil console {run.run_dir}", file=sys.stderr, flush=True)
            result = hosted.serve()
        except RunError as exc:
            raise UsageError(f"{exc} (run directory: {run.run_dir})") from None
        finally:
            hosted.close()
            run.close()
            signal.signal(signal.SIGTERM, old)
    if result is None:
        print(f"hil run: the run did not finish; run directory: {run.run_dir}", file=sys.stderr)
        return 1
    return _print_result(result)


def _print_result(result: Any) -> int:
    for v in result.verdicts:
        print(f"{'PASS' if v.passed else 'FAIL'}  {v.name}: {v.detail}")
    s = result.summary
    verdict = "PASSED" if result.passed else ("ABORTED (" + str(result.aborted) + ")" if result.aborted else "FAILED")
    print(f"{s['scenario']}: {verdict}  {s['sim_seconds']:.0f} s simulated in {s['wall_seconds']:.1f} s "
          f"({s['speedup']}x)  run directory: {result.run_dir}")
    lat = s.get("lateness")
    if lat:  # real time: the pace, and whether the speed asked for was kept (docs/running.md)
        kept = "kept" if lat.get("speed_kept") else (
            f"NOT KEPT ({lat.get('speed_not_kept_frames')} of {lat.get('frames')} frames)")
        print(f"pacing: real time x {lat.get('requested_speed'):g} {kept}, achieved x {lat.get('achieved_speed')}; "
              f"lateness p50 {lat.get('p50_ms', 0):.3f} ms, p99 {lat.get('p99_ms', 0):.3f} ms, "
              f"max {lat.get('max_ms', 0):.3f} ms; overruns {lat.get('overruns')}; drift {lat.get('pacing_drift_s')} s")
    if s.get("error"):
        print(f"error: {s['error']}")
    return result.exit_code


def orbit_end_ns(orbit: Any, epoch: Any, duration_ns: int) -> Any:
    """The run's last instant, Unix ns, as the orbit takes it (a one-element array)."""
    import numpy as np

    from hil_rig.clock import unix_ns

    return np.array([unix_ns(epoch) + duration_ns], dtype=np.int64)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="run a mission scenario on a bench (default: nominal, virtual bench)",
        description="Run a scenario on a bench and judge its requirements. Writes a run "
                    "directory with telemetry.sqlite, summary.json, junit.xml, ctrf.json, events.log "
                    "and report.html.",
    )
    p.add_argument("scenario", nargs="?", metavar="SCENARIO", default=None,
                   help="scenario file or shipped scenario name (default: nominal)")
    add_shared_options(p.add_argument)
    p.add_argument("--virtual", action="store_true", help="virtual time (the default)")
    p.add_argument("--duration", metavar="D", default=None,
                   help="override the scenario duration, e.g. '20 min' or '1 orbit'")

    def _seed(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if n < 0:
            raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
        return n

    p.add_argument("--seed", metavar="N", type=_seed, default=None, help="override the seed")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="run directory (default: runs/<scenario>-<seed>-<n>)")

    def _rt(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer in 0..99, got {text!r}") from None
        if not 0 <= n <= 99:
            raise argparse.ArgumentTypeError(f"expected an integer in 0..99, got {text!r}")
        return n

    p.add_argument("--rt-priority", metavar="N", type=_rt, default=None,
                   help="the run loop's real-time priority (SCHED_FIFO, 1-99) where permitted; 0: off "
                        "(default: 1, the lowest; summary.json's rt_priority says what applied)")
    p.add_argument("--no-report", action="store_true",
                   help="do not write report.html at the end (ctrf.json is written either way)")
    p.add_argument("--console", action="store_true",
                   help="the console in front (the run starts paused; F5 resumes); see docs/console.md")
    p.add_argument("--listen", action="store_true",
                   help="open the ground port and the control endpoint on 127.0.0.1 so that "
                        "'hil console RUN_DIR' can attach")
    p.add_argument("--paused", action="store_true", help="with --listen: start paused")
    p.add_argument("--key-file", metavar="FILE", default=None,
                   help="with --console/--listen: the key (mode 0600, >= 32 bytes as hex or raw); "
                        "default: a new key written to RUN_DIR/tc.key (mode 0600)")
    p.set_defaults(func=_run)
