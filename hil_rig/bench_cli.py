"""``hil bench``: bring up the virtual bench, or check a bench file.

``hil bench up [--bench FILE] [--json] [--power-on VOLTS]`` starts the
simulated instruments and emulated boards of a bench file (the default virtual
bench when none is given) in the foreground, prints every endpoint (each
board's serial path, each instrument's Modbus URL; with ``--json`` one JSON
object on one line), and runs until Ctrl-C or SIGTERM. On the way out every
instrument is put in its safe state, then everything stops. ``--power-on``
sets each supply's current limit from the bench file (``current_limit_a``)
before its voltage. A board that browns out (its supply cannot hold its minimum
voltage, typically in CC at the current limit) is reported as it happens: a
line ``event: board ... browned out ...``, or with ``--json`` one more JSON
object per event (``{"event": "brownout", ...}``). An instrument that does not
answer as the bench file says is an error naming it and its URL, exit code 2.

``hil bench check FILE`` validates a bench file, including what a run needs of
it (:func:`hil_rig.benchfile.check_runnable`), and prints what it describes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from hil_rig.benchfile import Bench, check_runnable, load_bench
from hil_rig.boards.image import ImageError
from hil_rig.cli import UsageError
from hil_rig.instruments.errors import ConfigError, InstrumentError


def _load(path: str | None) -> Bench:
    try:
        return load_bench(path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _print_endpoints(info: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(info, separators=(",", ":"), sort_keys=True), flush=True)
        return
    print(f"bench {info['bench']!r} is up (pid {info['pid']}); Ctrl-C to stop")
    for name, b in info["boards"].items():
        print(f"  board       {name:<12} {b['serial']}  ({b['kind']}, {b['baud']} baud)")
    for name, i in info["instruments"].items():
        print(f"  instrument  {name:<12} {i['url']}  ({i['driver']})")
    sys.stdout.flush()


def _print_events(vb, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    """Print the virtual bench's brown-outs since the last call."""
    while not vb.brownouts.empty():
        ev = vb.brownouts.get()
        if as_json:
            print(json.dumps(ev.as_dict(), separators=(",", ":"), sort_keys=True), flush=True)
        else:
            print(f"event: {ev.describe()}", flush=True)
    while not vb.power_losses.empty():
        loss = vb.power_losses.get()
        if as_json:
            print(json.dumps({"event": "power_loss", "board": loss.board, "detail": loss.detail},
                             separators=(",", ":"), sort_keys=True), flush=True)
        else:
            print(f"event: {loss.detail}", flush=True)


def _up(args: argparse.Namespace) -> int:
    from hil_rig.instruments import open_instruments
    from hil_rig.safe_state import SafeState, Terminated
    from hil_rig.virtual_bench import VirtualBench

    bench = _load(args.bench)
    if not bench.virtual:
        raise UsageError(f"{bench.path}: nothing to bring up: no sim:// instrument and no emulated board")
    if args.power_on is not None and args.power_on < 0:
        raise UsageError(f"--power-on must be a voltage >= 0, got {args.power_on}")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    vb = VirtualBench(bench, seed=args.seed)
    rc = 0
    try:
        try:
            vb.start()
        except ImageError as exc:  # a qemu-arm64 board without QEMU or its image
            raise UsageError(f"{bench.path}: {exc}") from None
        try:
            supplies, switches = open_instruments(vb.bench)
        except InstrumentError as exc:
            raise UsageError(f"{bench.path}: {exc}") from None
        try:
            with SafeState(vb.bench, supplies, switches) as guard:
                guard.apply()  # start from the safe state
                if args.power_on is not None:
                    for name, ps in supplies.items():
                        limit = vb.bench.instrument(name).current_limit_a
                        if limit is not None:
                            ps.set_current_limit(limit)
                        ps.set_voltage(args.power_on)
                        ps.set_output(True)
                    for b in vb.bench.boards:
                        if b.switch in switches and b.channel is not None:
                            switches[b.switch].set_channel(b.channel, True)
                # release the ports: an RTU line takes one master at a time, and a
                # stock client must be able to open it (reconnects on demand)
                for d in (*supplies.values(), *switches.values()):
                    d.close()
                info = dict(vb.endpoints, pid=os.getpid())
                _print_endpoints(info, args.json)
                while True:
                    _print_events(vb, args.json)
                    time.sleep(0.1)
        except (KeyboardInterrupt, Terminated):
            pass
        finally:
            for d in (*supplies.values(), *switches.values()):
                d.close()
        if guard.errors:
            for e in guard.errors:
                print(f"hil: error: {e}", file=sys.stderr)
            rc = 1
    except (InstrumentError, ConfigError) as exc:
        print(f"hil: error: {exc}", file=sys.stderr)
        rc = 1
    finally:
        vb.close()
    if not args.json:
        print("bench stopped; instruments left in their safe state" if rc == 0 else "bench stopped with errors")
    return rc


def _check(args: argparse.Namespace) -> int:
    bench = _load(args.file)
    try:
        check_runnable(bench)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    print(f"{bench.path}: bench {bench.name!r} is valid")
    for i in bench.instruments:
        print(f"  instrument  {i.name:<12} {i.kind:<7} {i.driver:<16} {i.url}")
    for b in bench.boards:
        relay = f"{b.switch}/{b.channel}" if b.switch else "-"
        print(f"  board       {b.name:<12} {b.kind:<7} supply={b.supply or '-'} relay={relay} {b.serial or ('(QEMU, started by the bench)' if b.qemu else '(emulated)')}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="bring up the virtual bench; check a bench file")
    sub = p.add_subparsers(dest="bench_command", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="start the (virtual) bench in the foreground and print its endpoints")
    up.add_argument("--bench", metavar="FILE", default=None, help="bench file (default: the virtual bench)")
    up.add_argument("--json", action="store_true", help="print the endpoints as one JSON object on one line")
    up.add_argument("--power-on", metavar="VOLTS", type=float, default=None,
                    help="set every supply to VOLTS, output on, and switch every board's relay on")
    up.add_argument("--seed", type=int, default=0, help="seed of the emulated boards")
    up.set_defaults(func=_up)
    check = sub.add_parser("check", help="validate a bench file (and that a run can power its boards)")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(func=_check)
