"""``hil console``: the operator console (docs/console.md).

    hil console [TARGET] [--key-file FILE] [--replay RUN_DIR] [--speed X]

TARGET is the run directory of a running ``hil run --listen`` (or ``--console``):
the run writes its endpoints (``endpoints.json``) and, unless given one, its key
(``tc.key``, mode 0600) there. With no TARGET: the nominal scenario, started here
with the console in front (as ``hil run --console``). ``--replay RUN_DIR`` plays a
run's archive through the same panels.
"""

from __future__ import annotations

import argparse
import pathlib

from hil_rig.cli import UsageError


def need_textual() -> None:
    try:
        import textual  # noqa: F401
    except ImportError:
        raise UsageError("the console needs Textual: python -m pip install -e '.[console]'") from None


def _console(args: argparse.Namespace) -> int:
    need_textual()
    from hil_rig.run.control_server import ENDPOINTS_FILE, ControlError, Endpoints

    if args.replay is not None:
        if args.target is not None:
            raise UsageError("give either TARGET or --replay, not both")
        from hil_rig.console.app import ConsoleApp
        from hil_rig.console.stream import ReplaySource

        try:
            src = ReplaySource(args.replay, speed=args.speed or 10.0)
        except ControlError as exc:
            raise UsageError(str(exc)) from None
        ConsoleApp(src, title=f"replay {args.replay}").run()
        return 0
    if args.target is None:
        from hil_rig.run_cli import main_console

        return main_console(args.key_file, args.speed)
    target = pathlib.Path(args.target)
    how = ("start one with 'hil run --listen' (or 'hil run --console'), or give no TARGET "
           "to start the nominal scenario here")
    if not (target / ENDPOINTS_FILE).exists():
        raise UsageError(f"{target}: no live run there (no {ENDPOINTS_FILE}); {how}")
    from flight_sw.tc import KeyFileError, load_key

    try:
        ep = Endpoints.read(target)
        key = load_key(args.key_file or ep.key_file)
    except (ControlError, KeyFileError) as exc:
        raise UsageError(str(exc)) from None
    from hil_rig.console.app import ConsoleApp
    from hil_rig.console.stream import LiveSource

    try:
        src = LiveSource(ep, key)
    except ControlError as exc:
        raise UsageError(f"{target}: the run is not running ({exc}); {how}") from None
    ConsoleApp(src, title=f"{ep.scenario}: {target}").run()
    return 0


def _dictionary(args: argparse.Namespace) -> int:
    from flight_sw.xtce import XtceUnavailable, to_xtce
    from hil_rig.benchfile import load_bench
    from hil_rig.instruments.errors import ConfigError

    try:
        boards = [b.name for b in load_bench(args.bench).boards]
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    try:
        text = to_xtce(boards)
    except XtceUnavailable as exc:
        raise UsageError(str(exc)) from None
    out = pathlib.Path(args.xtce)
    if out.is_dir():
        raise UsageError(f"--xtce {out}: is a directory; give a file name")
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--xtce {out}: {exc.strerror or exc}") from None
    print(f"wrote {out}: XTCE 1.2 for boards {', '.join(boards)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    d = subparsers.add_parser("dictionary", help="the TM/TC dictionary: export as XTCE",
                              description="Export the one TM/TC dictionary (flight_sw/dictionary.py).")
    dsub = d.add_subparsers(dest="dictionary_command", metavar="COMMAND", required=True)
    e = dsub.add_parser("export", help="export as XTCE 1.2 (for YAMCS and other ground systems)")
    e.add_argument("--xtce", metavar="FILE", required=True, help="the XTCE file to write")
    e.add_argument("--bench", metavar="FILE", default=None,
                   help="bench file whose boards get per-board channels (default: the virtual bench)")
    e.set_defaults(func=_dictionary)
    p = subparsers.add_parser(
        "console", help="operator console: attach to a live run, start one, or replay one",
        description="A terminal console (Textual) for a live run: telemetry panels with limits, "
                    "telecommands checked against the dictionary, fault injection, pause/step/speed, "
                    "procedures and replay. See docs/console.md.")
    p.add_argument("target", nargs="?", metavar="TARGET", default=None,
                   help="run directory of a running 'hil run --listen' (default: start the nominal scenario)")
    p.add_argument("--key-file", metavar="FILE", default=None,
                   help="the run's key (default: the key file named in TARGET/endpoints.json)")
    p.add_argument("--replay", metavar="RUN_DIR", default=None, help="replay a run's archive")

    def _pos(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not 0 < x < float("inf"):
            raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
        return x

    p.add_argument("--speed", metavar="X", type=_pos, default=None,
                   help="replay speed (default 10), or the started run's real time x X (default: virtual)")
    p.set_defaults(func=_console)
