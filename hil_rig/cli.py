"""The ``hil`` command line.

Each subcommand lives in its own module, which provides ``register(subparsers)``:
it adds its parser and sets ``func`` (called with the parsed namespace, returns
the exit code). Add a module to ``COMMANDS`` to add a subcommand.

Bad input exits 2 with a message naming what was wrong, never a stack trace.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from hil_rig import __version__

# Modules that provide `register(subparsers)`, in the order they appear in --help.
COMMANDS: tuple[str, ...] = (
    # one module per line
    "hil_rig.run_cli",
    "hil_rig.bench_cli",
    "hil_rig.archive_cli",
    "hil_rig.orbit_cli",
    "hil_rig.report_cli",
    "hil_rig.yield_cli",
    "hil_rig.board_cli",
    "hil_rig.campaign_cli",
    "hil_rig.console_cli",
)


class UsageError(Exception):
    """Bad input from the user: printed as ``hil: error: ...`` and exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hil",
        description="orbit-hil: hardware-in-the-loop testbed for compute-payload satellites.",
    )
    parser.add_argument("--version", action="version", version=f"orbit-hil {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_usage(sys.stderr)
        print("hil: error: give a command (hil --help lists them)", file=sys.stderr)
        return 2
    try:
        code = int(func(args) or 0)
        sys.stdout.flush()  # here, where a full disk or a closed pipe is still answered below
        return code
    except UsageError as exc:
        print(f"hil: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hil: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`hil ... | head`): stop quietly, as a tool killed by SIGPIPE
        # does; stdout goes to /dev/null so that the interpreter's last flush stays quiet too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:
        # the last resort: a disk full, a permission refused, anywhere a command did not expect
        what = f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else (exc.strerror or str(exc))
        print(f"hil: error: {what}", file=sys.stderr)
        return 2

if __name__ == "__main__":
    # Run the importable module's main: subcommands raise hil_rig.cli.UsageError,
    # which is not this __main__ module's class under `python -m hil_rig.cli`.
    from hil_rig.cli import main as _main

    sys.exit(_main())
