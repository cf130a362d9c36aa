"""One builder assembles every part of a run, in order, into :class:`RunParts`.

Nothing is born late: once :func:`build` returns, every part exists, and the
:class:`hil_rig.run.Run` only steps them. If any step fails, what was already
started is closed again (instruments left in their safe state) and the error is
a :class:`RunError` naming the file, key, port or instrument.

The order: orbit and its events; the bench file, boards and fault schedule;
the run directory and its recorder; the bench (virtual parts, instruments, the
safe-state guard, the power loop, fault proxies); board power, then each
board's link, checked against the bench file; the plant; the flight software.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

from hil_rig import __version__
from hil_rig.archive import ARCHIVE_NAME
from hil_rig.constants import NS_PER_S as NS
from hil_rig.faults import FaultAction, FaultSchedule, FaultScheduleError, OrbitEvents, resolve
from hil_rig.requirements import make_judges
from hil_rig.run.adapters import GatedLink, PlantActuators, PlantSensors, SimClock
from hil_rig.run.bench_info import bench_label, boards_text
from hil_rig.run.board_power import BoardPower
from hil_rig.run.errors import RunError
from hil_rig.run.fault_handlers import AGENT_FAULTS, BOARD_FAULTS, LINK_FAULTS, Injections
from hil_rig.run.mission import battery_v0, build_orbit, orbit_events, plant_params, tle_for_fsw
from hil_rig.run.progress import Progress
from hil_rig.run.recorder import Recorder, fmt_s
from hil_rig.scenario import Scenario

#: The closed power loop (supply setpoint from the simulated bus, measured board
#: draw into the power balance) runs every second in real time; in virtual time
#: every few simulated seconds, since each update costs Modbus round trips.
POWER_PERIOD_S = {"realtime": 1, "virtual": 5}
POWER_MIN_STEP_V = 0.05
#: Payload link reply timeout and retries. A board answers in about a millisecond
#: (tens of ms on a loaded machine); a lost or corrupted command waits this long
#: (wall clock) before its retry. Four attempts: a spurious timeout under CPU load
#: would change what the flight software sees, and with it the archive.
LINK_TIMEOUT_S = 0.2
LINK_RETRIES = 3
#: the eclipses a run lists at t = 0 as events, at most (a century-long run has 600,000)
ECLIPSE_EVENTS_MAX = 1000
#: wall-clock seconds, beyond its boot time, that a board has to answer its first board_info
BOARD_ANSWER_S = 10.0
HK_HISTORY = 60  # FswConfig.hk_history: the flight software keeps a minute of HK records (the archive has all)



@dataclasses.dataclass
class RunOptions:
    """How to run, beside the scenario and the bench."""

    #: run the control frames between two 1 Hz ticks in one C call (the flight
    #: software's ADCS through the plant's C sensor/actuator port); False: one
    #: Sensors.read / Actuators.apply per frame. Same results either way.
    c_frames: bool = True
    #: virtual time on the virtual bench: the power loop reads the simulated supply
    #: only when its reading can have changed (PowerLoop.update's ``inputs``);
    #: False: at every update. Same results either way.
    reuse_supply_readings: bool = True
    #: telecommand key (32 bytes); None: a fresh random key for the run
    tc_key: bytes | None = None
    #: every board's link through a fault proxy, so that link faults can be injected
    #: by hand (``Run.inject``); False: only the boards the scenario's link faults name
    proxy_links: bool = False
    #: write the run's report (report.html, hil_rig.report) when it ends; False: not
    #: (ctrf.json is written either way). The default is True unless the environment
    #: sets ORBIT_HIL_REPORT=0, as the test suite does for its many short runs
    #: (tests/conftest.py); ``hil run --no-report`` sets False.
    report: bool = dataclasses.field(default_factory=lambda: os.environ.get("ORBIT_HIL_REPORT", "1") != "0")
    #: the flight software's ground port (authenticated TCs up, HK and events down) on
    #: 127.0.0.1: a TCP port, 0 for a free one; None: no ground port (docs/console.md)
    ground_port: int | None = None


@dataclasses.dataclass(eq=False)
class RunParts:
    """Every part of one run (see the module's doc for the order they are made in)."""

    scenario: Scenario
    options: RunOptions
    run_dir: pathlib.Path
    clock: SimClock
    # orbit and its events
    orbit: Any
    period_s: float
    env: Any
    events: OrbitEvents
    duration_ns: int
    # faults and judges
    actions: list[FaultAction]
    schedule: FaultSchedule
    commands: FaultSchedule         # of hil_rig.run.commands.ScheduledCommand: the scenario's [[command]]s
    procedures: Any                 # hil_rig.run.procedures.Procedures: the scenario's [[procedure]]s
    injections: Injections
    # bench
    bench_spec: Any
    bench_label: str
    boards: dict[str, str]          # name -> what it is (jetson | rpi)
    board_specs: dict[str, Any]     # name -> bench-file board
    realtime: bool
    pacer: Any                      # hil_rig.clock.RealTimeClock in real time, else None
    recorder: Recorder
    vb: Any                         # hil_rig.virtual_bench.VirtualBench, or None
    bench: Any                      # the bench, with the virtual parts' endpoints resolved
    supplies: dict[str, Any]
    switches: dict[str, Any]
    guard: Any                      # hil_rig.safe_state.SafeState
    power_loop: Any                 # hil_rig.power_loop.PowerLoop
    supply_name: str
    power_period_ns: int
    switch: Any
    proxies: dict[str, Any]
    power: BoardPower
    links: dict[str, Any]
    board_info: dict[str, dict[str, Any]]
    # spacecraft
    params: Any
    plant: Any
    sensors: PlantSensors
    fsw: Any
    tc_key: bytes
    closers: list[Callable[[], None]]
    # what changes as the run goes
    plant_faults: Any
    actuators: Any
    payload_power_w: float = 0.0
    load_power_w: float = 0.0  # bus load, refreshed from the plant once per second

    def quiesce(self, names: Iterable[str]) -> None:
        """Before the rig touches a board (its power, its line, a fault injected through
        its agent): the link finishes whatever is in flight to it first, so that what
        the board sees, and in which order, does not depend on the wall clock."""
        for name in names:
            self.links[name].quiesce()

    def close(self) -> None:
        """Safe state, then everything stopped (idempotent). The archive stays readable."""
        close_all(self.closers)


def close_all(closers: list[Callable[[], None]]) -> None:
    while closers:
        fn = closers.pop()
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - keep closing the rest
            print(f"hil run: while closing: {type(exc).__name__}: {exc}", file=sys.stderr)


def scenario_digest(sc: Scenario) -> str:
    import hashlib

    if sc.path is not None and sc.path.exists():
        return hashlib.sha256(sc.path.read_bytes()).hexdigest()
    return hashlib.sha256(repr(sc).encode()).hexdigest()


def build(scenario: Scenario, bench_file: str | os.PathLike[str] | None, run_dir: pathlib.Path,
          options: RunOptions, progress: Progress | None, closers: list[Callable[[], None]]) -> RunParts:
    """Assemble a run; ``closers`` gets what must be closed, in order (close in reverse)."""
    from hil_rig.benchfile import check_runnable, load_bench
    from hil_rig.environment import Environment
    from hil_rig.instruments.errors import ConfigError

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    sc = scenario
    where = str(sc.path or sc.name)
    clock = SimClock()
    orbit = build_orbit(sc)
    period_s = float(orbit.period_s)
    env = Environment(orbit, sc.epoch)
    events = orbit_events(env, sc, period_s)
    try:
        spec = load_bench(bench_file)
    except ConfigError as exc:
        raise RunError(str(exc)) from None
    boards = [b for b in spec.boards if not sc.workload.boards or b.name in sc.workload.boards]
    if not boards:
        raise RunError(f"{where}: bench {spec.name!r} has no board to run the payload on")
    faults = tuple(dataclasses.replace(f, target=boards[0].name)
                   if f.kind in BOARD_FAULTS and f.target is None else f for f in sc.faults)
    try:
        actions = resolve(faults, events, file=where)
    except FaultScheduleError as exc:
        raise RunError(str(exc)) from None
    from hil_rig.run.commands import describe_at, resolve_commands
    from hil_rig.run.procedures import Procedures, resolve_procedures
    from hil_rig.run.procedures import describe_at as describe_procedure

    try:
        commands = resolve_commands(sc.commands, events, [b.name for b in boards], file=where)
        procedures = resolve_procedures(sc.procedures, events, [b.name for b in boards], file=where)
    except FaultScheduleError as exc:
        raise RunError(str(exc)) from None
    judges = make_judges(sc.requirements, events, actions)
    label = bench_label(spec, None if bench_file is None else pathlib.Path(bench_file))
    unknown = set(sc.workload.boards) - {b.name for b in spec.boards}
    if unknown:
        raise RunError(f"{where}: [payload] boards: bench {spec.name!r} has no board(s) {sorted(unknown)}")
    for f in sc.faults:
        if f.target is not None and f.kind in BOARD_FAULTS and f.target not in {b.name for b in boards}:
            raise RunError(f"{where}: fault[{f.index}].board: no board {f.target!r} in this run "
                           f"(boards: {', '.join(b.name for b in boards)})")
    try:  # what `hil bench check` refuses, a run refuses first, with the same message
        check_runnable(spec, [b.name for b in boards])
    except ConfigError as exc:
        raise RunError(str(exc)) from None
    board_kinds = {b.name: b.emulates for b in boards}
    board_specs = {b.name: b for b in boards}
    realtime = sc.speed is not None
    if spec.has_hardware_boards and not realtime:
        print(f"hil run: warning: bench {spec.name!r} has real boards and the run is in virtual "
              "time; real boards keep wall-clock time between time syncs (use --speed)", file=sys.stderr)
    pacer = None
    if realtime:
        from hil_rig.clock import RealTimeClock

        pacer = RealTimeClock(scale=sc.speed)

    # run directory: archive, event log, judges, progress
    if (run_dir / ARCHIVE_NAME).exists():
        raise RunError(f"{run_dir}: holds a run already; give a new --out directory")
    duration_ns = events.duration_ns
    meta = {
        "scenario": sc.name, "scenario_file": sc.path.name if sc.path else "",
        "scenario_sha256": scenario_digest(sc), "seed": sc.seed, "epoch": sc.epoch_iso,
        "duration_ns": duration_ns, "orbit_period_s": repr(period_s),
        "bench": spec.name, "boards": boards_text(board_kinds),
        "clock": "virtual" if not realtime else f"realtime x {sc.speed:g}",
        "orbit_hil_version": __version__,
        # the requirements and their parameters (the report draws their limits)
        "requirements": json.dumps([{"name": r.name, "kind": r.kind, "params": r.params} for r in sc.requirements],
                                   default=str, sort_keys=True),
    }
    recorder = Recorder(run_dir, list(board_kinds), meta, judges, progress)
    closers.append(recorder.close)
    for i, (e, x) in enumerate(events.eclipses[:ECLIPSE_EVENTS_MAX]):
        recorder.event(0, "rig", "eclipse_predicted_truth", f"eclipse {i + 1}: umbra entry {fmt_s(e)}, exit {fmt_s(x)}")
    if len(events.eclipses) > ECLIPSE_EVENTS_MAX:
        recorder.event(0, "rig", "eclipse_predicted_truth",
                       f"and {len(events.eclipses) - ECLIPSE_EVENTS_MAX} more eclipses, not listed")
    for a in actions:
        recorder.event(0, "rig", "fault_scheduled", f"t = {a.t_ns / NS:.3f} s: {a.describe()}")
    for c in commands:
        recorder.event(0, "rig", "command_scheduled", describe_at(c))
    for r in procedures:
        recorder.event(0, "rig", "procedure_scheduled", describe_procedure(r))

    # the bench: virtual parts, instruments, safe-state guard, power loop, proxies
    from hil_rig.instruments import open_instruments
    from hil_rig.instruments.errors import InstrumentError
    from hil_rig.power_loop import PowerLoop
    from hil_rig.safe_state import SafeState

    vb = None
    if spec.virtual:
        from hil_rig.virtual_bench import VirtualBench

        vb = VirtualBench(spec, seed=sc.seed, clock="real" if realtime else "virtual", test_mode=True)
        if not realtime:
            vb.as_of_ns = lambda: clock.t_ns
        from hil_rig.boards.image import ImageError

        closers.append(vb.close)
        try:
            vb.start()
        except ImageError as exc:  # a qemu-arm64 board without QEMU or its image
            raise RunError(f"bench {spec.name!r}: {exc}") from None
        bench = vb.bench
    else:
        bench = spec
    try:
        supplies, switches = open_instruments(bench)
    except (InstrumentError, OSError) as exc:
        raise RunError(f"bench {spec.name!r}: {exc}") from None

    def _close_drivers() -> None:
        for d in (*supplies.values(), *switches.values()):
            d.close()

    closers.append(_close_drivers)
    guard = SafeState(bench, supplies, switches, handle_signals=False)
    guard.__enter__()
    closers.append(lambda: guard.__exit__(None, None, None))
    guard.apply()  # start from the safe state
    if not supplies:
        raise RunError(f"bench {spec.name!r}: no programmable supply to power the boards")
    first = board_specs[next(iter(board_specs))]
    supply_name = first.supply or next(iter(supplies))
    switch = switches[first.switch] if first.switch is not None else None
    # I-SET from the bench file (the simulated supply's own default is 1.00 A, which a
    # Jetson at full load on a low bus would exceed and brown out silently)
    power_loop = PowerLoop(supplies[supply_name], switch, bench, min_step_v=POWER_MIN_STEP_V,
                           current_limit_a=bench.instrument(supply_name).current_limit_a)
    link_fault_boards = {a.target or next(iter(board_kinds)) for a in actions if a.kind in LINK_FAULTS}
    if options.proxy_links:
        link_fault_boards = set(board_kinds)
    proxies: dict[str, Any] = {}
    link_paths: dict[str, tuple[str, int]] = {}
    for i, name in enumerate(board_kinds):
        b = bench.board(name)
        path = b.serial
        if name in link_fault_boards:
            from firmware_bridge.proxy import FaultProxy

            tmp = tempfile.mkdtemp(prefix="hil-link-")
            closers.append(lambda d=tmp: shutil.rmtree(d, ignore_errors=True))
            # a stable path, like /dev/serial/by-id/...: the link reopens it after an unplug
            px = FaultProxy(b.serial, baud=b.baud, seed=sc.seed * 1000 + i, link_symlink=os.path.join(tmp, name))
            vboard = vb.boards.get(name) if vb is not None else None
            if vboard is not None:  # (not booted yet) its replies in command order: the
                vboard.ordered_replies = True  # proxy's damage then repeats with the seed
            proxies[name] = px
            closers.append(px.close)
            path = px.link_path
        link_paths[name] = (path, b.baud)

    # board power: the bus and the boards on, every board booted
    power = BoardPower(board_specs, switch, vb, clock.now_ns, recorder.event)  # (before_touch: at the end)
    params = plant_params(sc)
    try:
        power_loop.update(battery_v0(params), True)
    except InstrumentError as exc:
        raise RunError(f"bench {spec.name!r}: supply {supply_name!r}: {exc}") from None
    power.power_on_all(cause="run start")

    # the boards' links, each board checked against the bench file
    from firmware_bridge.link import Link, LinkError

    links: dict[str, Any] = {}
    infos: dict[str, dict[str, Any]] = {}
    for name, (path, baud) in link_paths.items():
        try:
            link = Link(path, baud, timeout_s=LINK_TIMEOUT_S, retries=LINK_RETRIES,
                        source_id=1 + list(board_kinds).index(name), read_on_wait=True)
        except LinkError as exc:
            raise RunError(f"bench {spec.name!r}: board {name}: serial = {bench.board(name).serial!r}: {exc}") from None
        links[name] = link
        closers.append(link.close)
    for name, link in links.items():
        infos[name] = check_board(spec.name, name, board_specs[name], link,
                                  needs_test_mode=any(a.kind in AGENT_FAULTS and (a.target or next(iter(board_kinds))) == name
                                                      for a in actions))

    # the spacecraft: plant and flight software
    from hil_rig.plant import ActuatorInputs, Plant, PlantFaults

    plant = Plant(params, seed=sc.seed)
    parts_box: dict[str, RunParts] = {}
    sensors = PlantSensors(plant, clock, lambda: parts_box["p"].plant_faults,
                           lambda: parts_box["p"].load_power_w)

    def _actuate(cmd: Any) -> None:
        parts_box["p"].actuators = cmd

    from flight_sw import app as fsw_app

    tc_key = options.tc_key if options.tc_key is not None else secrets.token_bytes(32)
    gated = {n: GatedLink(n, lk, power.is_up) for n, lk in links.items()}
    try:
        fsw = fsw_app.FlightSoftware(
            fsw_config(sc, params, board_kinds, board_specs, options.ground_port), clock, sensors,
            PlantActuators(_actuate), power, gated, tle_for_fsw(orbit, sc.epoch), tc_key)
    except OSError as exc:  # the ground port's TCP port cannot be bound
        raise RunError(f"ground port 127.0.0.1:{options.ground_port}: {exc.strerror or exc}") from None
    closers.append(fsw.close)
    parts = RunParts(
        scenario=sc, options=options, run_dir=run_dir, clock=clock, orbit=orbit, period_s=period_s, env=env,
        events=events, duration_ns=duration_ns, actions=actions, schedule=FaultSchedule(actions),
        commands=FaultSchedule(commands), procedures=Procedures(procedures),
        injections=Injections(), bench_spec=spec, bench_label=label, boards=board_kinds,
        board_specs=board_specs, realtime=realtime, pacer=pacer, recorder=recorder, vb=vb, bench=bench,
        supplies=supplies, switches=switches, guard=guard, power_loop=power_loop, supply_name=supply_name,
        power_period_ns=POWER_PERIOD_S["realtime" if realtime else "virtual"] * NS, switch=switch,
        proxies=proxies, power=power, links=links, board_info=infos, params=params, plant=plant,
        sensors=sensors, fsw=fsw, tc_key=tc_key, closers=closers, plant_faults=PlantFaults(), actuators=ActuatorInputs(),
    )
    parts_box["p"] = parts
    power.before_touch = parts.quiesce  # the links exist now: before that there is nothing in flight
    return parts


def check_board(bench: str, name: str, spec: Any, link: Any, needs_test_mode: bool) -> dict[str, Any]:
    """Ask a board what it is; a board that does not answer, or answers as another
    kind than the bench file says, is an error before the run starts."""
    import time

    from firmware_bridge.link import LinkError

    # a real board boots in wall time: ask until its boot time (and a margin) has passed
    deadline = time.monotonic() + spec.boot_time_s + BOARD_ANSWER_S
    while True:
        try:
            info = link.board_info()
            break
        except LinkError as exc:
            if time.monotonic() > deadline:
                raise RunError(f"bench {bench!r}: board {name} ({spec.serial}): no answer to board_info "
                               f"within {spec.boot_time_s + BOARD_ANSWER_S:g} s of power-on: {exc}") from None
    kind = info.get("kind")
    if kind != spec.emulates:
        raise RunError(f"bench {bench!r}: board {name}: the bench file says kind {spec.emulates!r}, "
                       f"but the board's agent reports {kind!r} ({info.get('model', 'unknown model')})")
    if needs_test_mode and not info.get("test_mode"):
        raise RunError(f"bench {bench!r}: board {name}: the scenario injects faults through the board's "
                       "agent, which is not in test mode (start it with --test-mode)")
    return info


def fsw_config(sc: Scenario, params: Any, boards: dict[str, str], specs: dict[str, Any],
               ground_port: int | None = None) -> Any:
    """The flight software's configuration: the spacecraft's battery and ADCS from
    the plant's parameters, the boards' power from their kinds' ratings (firmware_bridge.ratings)."""
    import numpy as np

    from firmware_bridge.ratings import rating
    from flight_sw import app as fsw_app
    from flight_sw.payload import BoardConfig

    p = params
    socs = np.linspace(0.0, 1.0, 11)
    ocv = np.interp(socs, p.battery_ocv_soc, p.battery_ocv_v)
    v_nom = float(np.interp(0.5, p.battery_ocv_soc, p.battery_ocv_v))
    cfgs = []
    for name, kind in boards.items():
        r = rating(kind)
        ch = specs[name].channel
        cfgs.append(BoardConfig(name, ch if ch is not None else -1, idle_w=r.idle_w, max_w=r.peak_w,
                                boot_time_s=specs[name].boot_time_s, rated_flops=float(r.rated_flops)))
    eps = {
        "capacity_ah": p.battery_capacity_wh / v_nom,
        "ocv_v": [float(x) for x in ocv],
        "critical_voltage_v": float(ocv[1]),
        "payload_max_w": float(sum(b.max_w for b in cfgs)),
    }
    adcs = {
        "inertia_kgm2": list(p.inertia_kg_m2), "wheel_inertia_kgm2": p.wheel_inertia_kg_m2,
        "wheel_max_torque_nm": p.wheel_max_torque_nm, "wheel_max_speed_rad_s": p.wheel_max_speed_rad_s,
        "dipole_max_am2": p.mtq_max_dipole_am2, "array_normal_body": list(p.panels[0].normal_body),
    }
    return fsw_app.FswConfig(
        epoch_utc=sc.epoch_iso, boards=cfgs, adcs=adcs, eps=eps,
        thermal_zones=["battery", "payload", "radiator", "structure"], ground_port=ground_port,
        hk_history=HK_HISTORY,
    )
