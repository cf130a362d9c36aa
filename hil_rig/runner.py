"""The runner: one scenario on one bench, from start to verdicts (docs/running.md).

A :class:`Run` brings the house together:

- the orbit and environment of the scenario (``hil_rig.orbit``,
  ``hil_rig.environment``), its eclipses found before the run starts;
- the bench: the virtual bench when no bench file is given, or the bench file's
  real instruments and boards (``hil_rig.virtual_bench``, ``hil_rig.benchfile``);
- the spacecraft plant (``hil_rig.plant``) stepped at 10 Hz of simulation time;
- the flight software (``flight_sw.FlightSoftware``) with its C core, stepped
  through its own rate groups, talking to the boards over their serial links;
- the fault schedule (``hil_rig.faults``), the requirement judges
  (``hil_rig.requirements``) and the telemetry archive (``hil_rig.archive``).

Time: the run advances in chunks of one simulated second. Faults are applied at
their exact simulation time. At each whole second the archive gets a row and a
commit, the judges a sample, and the progress display an update. In virtual
time nothing waits; in real time × scale every second is paced by an absolute
deadline (``hil_rig.clock.RealTimeClock``).

>>> # typical use (see tests/test_run_example_bench.py)
>>> # with Run(load_scenario(find_scenario("nominal")), out="runs/x") as run:
>>> #     run.run_until("eclipse_entry + 60 s")
>>> #     assert run.history("payload_suspended").any()
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import hashlib
import json
import math
import os
import pathlib
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

import numpy as np

from hil_rig import __version__
from hil_rig.archive import ARCHIVE_NAME, Archive, Channel, load_run
from hil_rig.faults import (
    FaultAction,
    FaultSchedule,
    FaultScheduleError,
    OrbitEvents,
    resolve,
    resolve_trigger,
)
from hil_rig.requirements import Sample, Verdict, make_judges, write_junit, write_summary
from hil_rig.scenario import NS_PER_S, Scenario, ScenarioError, parse_trigger

NS = NS_PER_S


class RunError(RuntimeError):
    """The run cannot start or go on: bad bench file, fault that never happens..."""


class RequirementFailed(AssertionError):
    """Raised by :meth:`RunResult.check` when a requirement failed."""


# --------------------------------------------------------------------------- bench
@dataclasses.dataclass(frozen=True)
class BenchInfo:
    """What a bench holds, read from its bench file without starting anything."""

    label: str                                   # "virtual" or the bench file path
    path: pathlib.Path | None
    boards: tuple[tuple[str, str], ...]          # (name, kind): kind is jetson | rpi | emulated
    emulates: tuple[tuple[str, str], ...]        # (name, jetson | rpi)
    instruments: tuple[tuple[str, tuple[str, ...]], ...]  # (name, kinds it answers to)
    spec: Any = dataclasses.field(default=None, repr=False, compare=False)  # benchfile.Bench

    @property
    def real_boards(self) -> tuple[str, ...]:
        return tuple(n for n, k in self.boards if k != "emulated")

    @property
    def virtual(self) -> bool:
        return not self.real_boards

    def has_board(self, kind: str) -> bool:
        """A board of this kind: ``emulated``, or ``jetson``/``rpi`` (real or emulated)."""
        return any(kind in (k, e) for (_, k), (_, e) in zip(self.boards, self.emulates, strict=True))

    def has_instrument(self, kind: str) -> bool:
        return any(kind in kinds for _, kinds in self.instruments)


def describe_bench(bench_file: str | os.PathLike[str] | None) -> BenchInfo:
    """The boards and instruments of a bench file (None: the built-in virtual bench)."""
    from hil_rig.benchfile import load_bench
    from hil_rig.instruments.errors import ConfigError

    try:
        bench = load_bench(bench_file)
    except ConfigError as exc:
        raise RunError(str(exc)) from None
    path = None if bench_file is None else pathlib.Path(bench_file)
    label = f"{bench.name!r} ({'built-in virtual bench' if path is None else path})"
    boards = tuple((b.name, b.kind) for b in bench.boards)
    emulates = tuple((b.name, b.emulates) for b in bench.boards)
    aliases = {"switch": ("relay",), "supply": ("psu",)}
    instruments = tuple(
        (i.name, tuple(sorted({i.kind, i.driver, *aliases.get(i.kind, ())}))) for i in bench.instruments)
    return BenchInfo(label, path, boards, emulates, instruments, bench)


# --------------------------------------------------------------------------- orbit
def build_orbit(sc: Scenario) -> Any:
    """The rig's orbit for a scenario (``hil_rig.orbit.Orbit``)."""
    from hil_rig.orbit import Orbit, OrbitError

    o = sc.orbit
    try:
        if o.tle is not None:
            lines = o.tle.splitlines()
            name = lines[0].strip() if len(lines) == 3 else None
            return Orbit.from_tle_lines(lines[-2], lines[-1], name=name, source=o.tle_source or "<tle>")
        ltan = None
        if o.ltan_h is not None:
            ltan = f"{int(o.ltan_h):02d}:{round((o.ltan_h % 1) * 60):02d}"
        return Orbit.from_elements(
            alt_km=o.altitude_km, inc_deg="sso" if o.sso else o.inclination_deg, epoch=sc.epoch,
            ltan=ltan, raan_deg=o.raan_deg, mean_anomaly_deg=o.mean_anomaly_deg, name=sc.name,
        )
    except OrbitError as exc:
        where = f"{sc.path or sc.name}: [orbit]"
        raise RunError(f"{where}: {exc}") from None


def tle_for_fsw(orbit: Any, epoch: _dt.datetime) -> str:
    """A TLE for the flight software's onboard predictor (uploaded at start).

    A TLE orbit is uploaded as it is. For an orbit given by elements, the rig's
    state at the epoch is fitted into SGP4 mean elements (Kozai mean motion from
    the osculating semi-major axis): the onboard knowledge then differs from the
    rig's J2 truth by a few seconds per orbit in eclipse timing, as a real
    uploaded TLE does."""
    if getattr(orbit, "_sat", None) is not None:
        from sgp4.exporter import export_tle

        l1, l2 = export_tle(orbit._sat)
        return f"{l1}\n{l2}"
    from sgp4.api import WGS72, Satrec
    from sgp4.exporter import export_tle

    from hil_rig.clock import unix_ns

    el = orbit._el
    t0 = unix_ns(epoch)
    # propagate the rig's elements to the epoch; use mean elements there
    r, v = orbit.propagate(np.array([t0]))
    mu = 398600.4418e9
    rn = float(np.linalg.norm(r[0]))
    vn = float(np.linalg.norm(v[0]))
    a = 1.0 / (2.0 / rn - vn * vn / mu)
    n_rad_min = math.sqrt(mu / a**3) * 60.0
    h = np.cross(r[0], v[0])
    inc = math.acos(h[2] / np.linalg.norm(h))
    node = np.cross([0.0, 0.0, 1.0], h)
    raan = math.atan2(node[1], node[0]) % (2 * math.pi)
    nn = node / np.linalg.norm(node)
    u = math.atan2(np.dot(np.cross(nn, r[0]), h / np.linalg.norm(h)), np.dot(nn, r[0])) % (2 * math.pi)
    jd = t0 / 86400e9 + 2440587.5
    epoch_days = jd - 2433281.5
    sat = Satrec()
    sat.sgp4init(WGS72, "i", 99999, epoch_days, 0.0, 0.0, 0.0, max(el.ecc, 1e-7), 0.0, inc,
                 u, n_rad_min, raan)
    l1, l2 = export_tle(sat)
    return f"{l1}\n{l2}"


def orbit_events(env: Any, sc: Scenario, period_s: float) -> OrbitEvents:
    duration_ns = sc.duration.to_ns(period_s)
    contacts = env.find_contacts(0, duration_ns)
    ecl = []
    for c in contacts:
        if c.umbra_entry is None and c.umbra_exit is None and (c.penumbra_entry is not None
                                                              or c.penumbra_exit is not None):
            continue  # penumbral-only pass
        ecl.append((c.umbra_entry, c.umbra_exit))
    return OrbitEvents(duration_ns, int(round(period_s * NS)), tuple(ecl))


# --------------------------------------------------------------------------- progress
class Progress:
    """Progress bar and live status line on a TTY; sparse lines otherwise."""

    def __init__(self, stream: TextIO, total_ns: int, tty: bool | None = None, every_s: float = 600.0) -> None:
        self.stream, self.total_ns = stream, max(total_ns, 1)
        self.tty = stream.isatty() if tty is None else tty
        self.every_ns = int(every_s * NS)
        self._next_line_ns = 0
        self._last_draw = 0.0

    def update(self, t_ns: int, status: dict[str, Any], force: bool = False) -> None:
        if self.tty:
            now = time.monotonic()
            if not force and now - self._last_draw < 0.1:
                return
            self._last_draw = now
            frac = min(t_ns / self.total_ns, 1.0)
            bar = "#" * int(frac * 24) + "-" * (24 - int(frac * 24))
            self.stream.write(f"\r\x1b[K[{bar}] {frac * 100:5.1f}% {self._status(t_ns, status)}")
            self.stream.flush()
        elif force or t_ns >= self._next_line_ns:
            self._next_line_ns = (t_ns // self.every_ns + 1) * self.every_ns
            frac = min(t_ns / self.total_ns, 1.0)
            self.stream.write(f"hil run: {frac * 100:5.1f}% {self._status(t_ns, status)}\n")
            self.stream.flush()

    @staticmethod
    def _status(t_ns: int, s: dict[str, Any]) -> str:
        sec = t_ns // NS
        hms = f"{sec // 3600:02d}:{sec % 3600 // 60:02d}:{sec % 60:02d}"
        boards = " ".join(f"{b}:{st}" for b, st in s.get("boards", {}).items())
        temps = "/".join(f"{c:.0f}" for c in s.get("temps_c", []))
        return (f"t={hms} orbit {s.get('orbit', 0)} {'SUN' if s.get('sunlit') else 'ECL'} "
                f"soc {s.get('soc', float('nan')):.2f} T {temps}°C {s.get('mode', '')} "
                f"{boards} jobs {s.get('jobs', 0)}")

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------- result
@dataclasses.dataclass
class RunResult:
    run_dir: pathlib.Path
    passed: bool
    verdicts: list[Verdict]
    summary: dict[str, Any]
    aborted: str | None = None

    @property
    def exit_code(self) -> int:
        if self.aborted == "SIGTERM":
            return 143
        if self.aborted:
            return 130 if self.aborted == "interrupted" else 1
        return 0 if self.passed else 1

    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.passed]

    def check(self) -> RunResult:
        """Raise :class:`RequirementFailed` naming failed requirements and the run directory."""
        if not self.passed:
            lines = [f"  {v.name}: {v.detail}" for v in self.failures()]
            if self.aborted:
                lines.append(f"  run aborted: {self.aborted}")
            raise RequirementFailed(
                f"scenario {self.summary.get('scenario')!r} failed; run directory: {self.run_dir}\n"
                + "\n".join(lines))
        return self

    def load(self) -> Any:
        return load_run(self.run_dir)


def default_out_dir(sc: Scenario, base: pathlib.Path | None = None) -> pathlib.Path:
    base = base or pathlib.Path("runs")
    n = 0
    while (base / f"{sc.name}-{sc.seed}-{n}").exists():
        n += 1
    return base / f"{sc.name}-{sc.seed}-{n}"


def scenario_digest(sc: Scenario) -> str:
    if sc.path is not None and sc.path.exists():
        return hashlib.sha256(sc.path.read_bytes()).hexdigest()
    return hashlib.sha256(repr(sc).encode()).hexdigest()


# --------------------------------------------------------------------------- adapters
# The rig implements flight_sw's hardware interfaces (flight_sw/interfaces.py)
# with the simulated plant and the bench's instruments.
_HEATER_W = 10.0  # battery heater power when the flight software switches it on


class _RunClock:
    def __init__(self) -> None:
        self.t_ns = 0

    def now_ns(self) -> int:
        return self.t_ns


class _PlantSensors:
    """flight_sw Sensors over the plant's seeded sensor models."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def read(self) -> Any:
        return self.frame(self.run.plant.sensors(self.run.plant_faults), self.run.clock.t_ns)

    def frame(self, r: Any, t_ns: int) -> Any:
        from flight_sw.interfaces import SensorFrame

        return SensorFrame(
            t_ns=t_ns, omega_body_rad_s=r.gyro_rad_s, b_body_t=r.mag_body_t,
            sun_body=r.sun_body, sun_valid=r.sun_valid, wheel_speed_rad_s=r.wheel_speed_rad_s,
            battery_v=r.battery_v, battery_i_a=r.battery_a, solar_power_w=r.solar_power_w,
            load_power_w=self.run.load_power_w, temps_k=r.temps_k,  # a fresh dict per reading
        )


class _PlantControlPort:
    """flight_sw ControlPort over the plant's C sensor/actuator port (hil_rig.plant.PlantPort):
    the flight software's C ADCS steps the plant and reads its sensors without
    coming back to Python between frames."""

    def __init__(self, run: Run, port: Any, t0_ns: int) -> None:
        self.run, self.port, self.t0_ns = run, port, t0_ns
        self.sense_fn, self.actuate_fn, self.ctx = port.sense_fn, port.actuate_fn, port.ctx
        self.max_frames = port.max_frames

    def frame(self) -> Any:
        plant = self.run.plant
        t = self.t0_ns + plant.port_frames() * self.port.dt_ns
        return self.run.sensors.frame(plant.port_readings(), t)


class _PlantActuators:
    def __init__(self, run: Run) -> None:
        self.run = run

    def apply(self, cmd: Any) -> None:
        from hil_rig.plant import Actuators

        self.run.actuators = Actuators(
            wheel_torque_nm=tuple(cmd.wheel_torque_body_nm), mtq_dipole_am2=tuple(cmd.dipole_body_am2),
            heater_w=_HEATER_W if cmd.heaters.get("battery") else 0.0)


class _BenchSwitch:
    """flight_sw PowerSwitch over the bench's relay board(s).

    In virtual time the emulated boards live in wall time; to keep the run
    deterministic the switch waits (wall clock, bounded) until a board's process
    has really died after its relay opened, and the rig holds simulation time at
    the board's boot time until it has really booted."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def set(self, channel: int, on: bool) -> None:
        self.run._set_channel(channel, on, cause="flight software")

    def get(self, channel: int) -> bool:
        return self.run._channel_on.get(channel, False)


class _GatedLink:
    """The board's Link, as the flight software sees it: a board that the rig
    knows to be unpowered or still booting answers nothing (an immediate
    LinkTimeout, as a real call would end, without waiting wall-clock seconds)."""

    def __init__(self, run: Run, board: str, link: Any) -> None:
        self._run, self._board, self._link = run, board, link

    def _gate(self, command: str) -> Any:
        if not self._run._board_up(self._board):
            from firmware_bridge.link import LinkTimeout

            raise LinkTimeout(f"{self._board}.{command} (board unpowered)", 1, 0.0)
        return self._link

    def ping(self) -> Any:
        return self._gate("ping").ping()

    def housekeeping(self) -> Any:
        return self._gate("housekeeping").housekeeping()

    def set_throttle(self, x: float) -> Any:
        return self._gate("set_throttle").set_throttle(x)

    def start_job(self, workload: str, params: Any = None, deadline_s: float | None = None) -> Any:
        return self._gate("start_job").start_job(workload, params, deadline_s)

    def job_status(self, job_id: Any) -> Any:
        return self._gate("job_status").job_status(job_id)

    def checkpoint(self, job_id: Any) -> Any:
        return self._gate("checkpoint").checkpoint(job_id)

    def checkpoint_begin(self, job_id: Any) -> Any:
        return self._gate("checkpoint").checkpoint_begin(job_id)

    def suspend(self, job_id: Any) -> Any:
        return self._gate("suspend").suspend(job_id)

    def resume(self, job_id: Any) -> Any:
        return self._gate("resume").resume(job_id)

    def cancel(self, job_id: Any) -> Any:
        return self._gate("cancel").cancel(job_id)

    def reboot(self) -> Any:
        return self._gate("reboot").reboot()

    def time_sync(self, t_ns: int) -> Any:
        return self._gate("time_sync").time_sync(t_ns)

    def time_sync_begin(self, t_ns: int) -> Any:
        return self._gate("time_sync").time_sync_begin(t_ns)

    def __getattr__(self, name: str) -> Any:  # board_info, inject_*, stats, ...
        return getattr(self._link, name)


# --------------------------------------------------------------------------- channels
#: Telemetry columns: rig truth first, then the flight software's housekeeping.
TRUTH_CHANNELS: tuple[Channel, ...] = (
    Channel("orbit", "1", "orbit number (1 at t = 0, +1 every orbital period)", "INTEGER"),
    Channel("illumination", "1", "sunlit fraction of the solar disc (rig truth, conical shadow)"),
    Channel("sun_err_deg", "deg", "angle between the main array normal and the sun (rig truth)"),
    Channel("soc_true", "1", "battery state of charge (plant truth)"),
    Channel("battery_v_true", "V", "battery terminal voltage (plant truth)"),
    Channel("solar_power_w_true", "W", "array power (plant truth)"),
    Channel("load_power_w_true", "W", "bus load incl. payloads (plant truth)"),
    Channel("payload_power_w_meas", "W", "payload boards' draw measured by the bench supply"),
    Channel("temp_payload_k_true", "K", "payload thermal node (plant truth)"),
    Channel("temp_battery_k_true", "K", "battery thermal node (plant truth)"),
    Channel("temp_radiator_k_true", "K", "radiator thermal node (plant truth)"),
    Channel("temp_structure_k_true", "K", "structure thermal node (plant truth)"),
    Channel("rate_norm_rad_s_true", "rad/s", "body rate magnitude (plant truth)"),
)


def _fsw_channels(boards: list[str]) -> list[Channel]:
    from flight_sw.dictionary import hk_channels

    out = []
    for c in hk_channels(boards):
        if c.name.startswith("board."):
            continue  # per-board channels go to the payload table
        kind = "REAL" if c.fmt in ("d", "f") else "INTEGER"
        out.append(Channel(f"fsw_{c.name}", c.unit, f"flight software HK: {c.desc or c.name}", kind))
    return out


# --------------------------------------------------------------------------- the run
_PHYSICS_DT_NS = NS // 10  # 10 Hz physics
_ENV_CHUNK_S = 600  # environment precomputed for this many seconds at once
DEFAULT_RT_PRIORITY = 1  # Run.rt_priority: the lowest real-time priority, above every normal process
_BOARD_WAIT_S = 60.0  # wall-clock bound on waiting for an emulated board to die or boot
#: The closed power loop (supply setpoint from the simulated bus, measured board
#: draw into the power balance) runs every second in real time; in virtual time
#: every few simulated seconds, since each update costs Modbus round trips.
_POWER_PERIOD_S = {"realtime": 1, "virtual": 5}
_POWER_MIN_STEP_V = 0.05
#: Payload link reply timeout and retries. A board answers in about a millisecond
#: (tens of ms on a loaded machine); a lost or corrupted command waits this long
#: (wall clock) before its retry. Four attempts: a spurious timeout under CPU load
#: would change what the flight software sees, and with it the archive.
_LINK_TIMEOUT_S = 0.2
_LINK_RETRIES = 3


class Run:
    """One scenario on one bench. ``start()``, then ``run_until(...)`` any number of
    times, then ``finish()`` for the verdicts; ``close()`` (or the context manager)
    always leaves the instruments in their safe state."""

    def __init__(self, scenario: Scenario, *, bench: str | os.PathLike[str] | None = None,
                 out: str | os.PathLike[str] | None = None, progress: Progress | None = None) -> None:
        self.scenario = scenario
        self.bench_file = bench
        self.run_dir = pathlib.Path(out) if out is not None else default_out_dir(scenario)
        self.progress = progress
        self.clock = _RunClock()
        self.started = False
        self.finished: RunResult | None = None
        self.stop_reason: str | None = None  # set from a signal handler: stop at the next second
        self._closers: list[Callable[[], None]] = []
        self._channel_on: dict[int, bool] = {}
        self._board_up_at: dict[str, int | None] = {}
        self._pending_faults: list[FaultAction] = []
        self.plant_faults: Any = None
        self.actuators: Any = None
        self.fsw: Any = None
        self.vb: Any = None
        self.proxies: dict[str, Any] = {}
        self.links: dict[str, Any] = {}
        self._log: TextIO | None = None
        self._fsw_event_idx = 0
        self._jobs_seen = 0
        self._jobs_by_board: dict[str, int] = {}
        self._queued = 0
        self._hang_pending: list[FaultAction] = []
        self._seu_pending: list[tuple[FaultAction, int]] = []
        #: the flight software's lead time sync (flight_sw.payload): on in virtual time when
        #: every board is emulated (a real board's clock must not run ahead); set before start()
        self.sync_lead: bool | None = None
        #: run the control frames between two 1 Hz ticks in one C call (the flight
        #: software's ADCS through the plant's C sensor/actuator port); False: one
        #: Sensors.read / Actuators.apply per frame. Same results either way.
        self.c_frames = True
        #: virtual time on the virtual bench: the power loop reads the simulated supply
        #: only when its reading can have changed (PowerLoop.update's ``inputs``);
        #: False: at every update. Same results either way.
        self.reuse_supply_readings = True
        #: the run loop's thread at this real-time priority (SCHED_FIFO, 1-99) while
        #: run_until runs, so that it gets a core as soon as a board's reply wakes it,
        #: rather than queueing behind the boards' processes; None: the normal policy.
        #: Skipped where not permitted (``rt_applied`` says what was).
        self.rt_priority: int | None = DEFAULT_RT_PRIORITY
        self.rt_applied: int | None = None

    # ---- life cycle -----------------------------------------------------------
    def __enter__(self) -> Run:
        if not self.started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Run:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        import logging

        from hil_rig.benchfile import load_bench
        from hil_rig.environment import Environment
        from hil_rig.instruments.errors import ConfigError

        check_rt_priority(self.rt_priority)  # a bad value stops here, before anything starts
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        sc = self.scenario
        self._wall0 = time.monotonic()
        self.orbit = build_orbit(sc)
        self.period_s = float(self.orbit.period_s)
        self.env = Environment(self.orbit, sc.epoch)
        self.events = orbit_events(self.env, sc, self.period_s)
        self.duration_ns = self.events.duration_ns
        where = str(sc.path or sc.name)
        try:
            spec = load_bench(self.bench_file)
        except ConfigError as exc:
            raise RunError(str(exc)) from None
        boards = [b for b in spec.boards if not sc.workload.boards or b.name in sc.workload.boards]
        if not boards:
            raise RunError(f"{where}: bench {spec.name!r} has no board to run the payload on")
        # a board fault without a board goes to the first board of the run
        faults = tuple(dataclasses.replace(f, target=boards[0].name)
                       if f.kind in _BOARD_FAULTS and f.target is None else f for f in sc.faults)
        try:
            self.actions = resolve(faults, self.events, file=where)
        except FaultScheduleError as exc:
            raise RunError(str(exc)) from None
        self.schedule = FaultSchedule(self.actions)
        self.judges = make_judges(sc.requirements, self.events, self.actions)
        self.bench_spec = spec
        self.bench_label = describe_bench(self.bench_file).label
        unknown = set(sc.workload.boards) - {b.name for b in spec.boards}
        if unknown:
            raise RunError(f"{where}: [payload] boards: bench {spec.name!r} has no board(s) {sorted(unknown)}")
        for f in sc.faults:
            if f.target is not None and f.kind in _BOARD_FAULTS and f.target not in {b.name for b in boards}:
                raise RunError(f"{where}: fault[{f.index}].board: no board {f.target!r} in this run "
                               f"(boards: {', '.join(b.name for b in boards)})")
        self.boards = {b.name: b.emulates for b in boards}
        self._board_specs = {b.name: b for b in boards}
        self.realtime = sc.speed is not None
        if self.sync_lead is None:
            self.sync_lead = not self.realtime and not spec.has_hardware_boards
        if spec.has_hardware_boards and not self.realtime:
            print(f"hil run: warning: bench {spec.name!r} has real boards and the run is in virtual "
                  "time; real boards keep wall-clock time between time syncs (use --speed)",
                  file=sys.stderr)
        if self.realtime:
            from hil_rig.clock import RealTimeClock

            self.pacer: Any = RealTimeClock(scale=sc.speed)
        else:
            self.pacer = None

        # run directory, archive, event log
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if (self.run_dir / ARCHIVE_NAME).exists():
            raise RunError(f"{self.run_dir}: holds a run already; give a new --out directory")
        board_names = list(self.boards)
        self.channels = list(TRUTH_CHANNELS) + _fsw_channels(board_names)
        meta = {
            "scenario": sc.name, "scenario_file": sc.path.name if sc.path else "",
            "scenario_sha256": scenario_digest(sc), "seed": sc.seed, "epoch": sc.epoch_iso,
            "duration_ns": self.duration_ns, "orbit_period_s": repr(self.period_s),
            "bench": spec.name, "boards": ",".join(f"{n}:{k}" for n, k in self.boards.items()),
            "clock": "virtual" if not self.realtime else f"realtime x {sc.speed:g}",
            "orbit_hil_version": __version__,
        }
        self.archive = Archive(self.run_dir / ARCHIVE_NAME, self.channels, meta)
        self._closers.append(self.archive.close)
        self._log = (self.run_dir / "events.log").open("w", encoding="utf-8")
        self._closers.append(self._log.close)
        for i, (e, x) in enumerate(self.events.eclipses):
            self._event(0, "rig", "eclipse_predicted_truth",
                        f"eclipse {i + 1}: umbra entry {_fmt_s(e)}, exit {_fmt_s(x)}")
        for a in self.actions:
            self._event(0, "rig", "fault_scheduled", f"t = {a.t_ns / NS:.3f} s: {a.describe()}")

        # bench: the virtual parts, the instruments, the safe-state guard
        self._start_bench(spec)
        # plant and flight software
        self._start_plant()
        self._start_fsw()
        self.started = True
        self._event(0, "rig", "run_start", f"scenario {sc.name} seed {sc.seed} on bench {self.bench_label}")
        self.fsw.step_to(0)
        self._feed_jobs(0)
        self._second(0)

    def _start_bench(self, spec: Any) -> None:
        from hil_rig.instruments import open_instruments
        from hil_rig.power_loop import PowerLoop
        from hil_rig.safe_state import SafeState

        sc = self.scenario
        if spec.virtual:
            from hil_rig.virtual_bench import VirtualBench

            self.vb = VirtualBench(spec, seed=sc.seed, clock="real" if self.realtime else "virtual",
                                   test_mode=True)
            if not self.realtime:
                self.vb.as_of_ns = lambda: self.clock.t_ns
            self.vb.start()
            self._closers.append(self.vb.close)
            bench = self.vb.bench
        else:
            bench = spec
        self.bench = bench
        self.supplies, self.switches = open_instruments(bench)

        def _close_drivers() -> None:
            for d in (*self.supplies.values(), *self.switches.values()):
                d.close()

        self._closers.append(_close_drivers)
        self.guard = SafeState(bench, self.supplies, self.switches, handle_signals=False)
        self.guard.__enter__()
        self._closers.append(lambda: self.guard.__exit__(None, None, None))
        self.guard.apply()  # start from the safe state
        if not self.supplies:
            raise RunError(f"bench {spec.name!r}: no programmable supply to power the boards")
        sup_name = self._board_specs[next(iter(self._board_specs))].supply or next(iter(self.supplies))
        switch = None
        sw_name = self._board_specs[next(iter(self._board_specs))].switch
        if sw_name is not None:
            switch = self.switches[sw_name]
        self.power = PowerLoop(self.supplies[sup_name], switch, bench, min_step_v=_POWER_MIN_STEP_V)
        self._supply_name = sup_name
        self._power_period_ns = _POWER_PERIOD_S["realtime" if self.realtime else "virtual"] * NS
        self.switch = switch
        # proxies for boards whose link gets faults
        link_fault_boards = {a.target or next(iter(self.boards)) for a in self.actions
                             if a.kind in ("link_noise", "link_drop", "link_disconnect")}
        for i, (name, _) in enumerate(self.boards.items()):
            b = bench.board(name)
            self._board_up_at[name] = None
            path = b.serial
            if name in link_fault_boards:
                import shutil
                import tempfile

                from firmware_bridge.proxy import FaultProxy

                tmp = tempfile.mkdtemp(prefix="hil-link-")
                self._closers.append(lambda d=tmp: shutil.rmtree(d, ignore_errors=True))
                # a stable path, like /dev/serial/by-id/...: the link reopens it after an unplug
                px = FaultProxy(b.serial, baud=b.baud, seed=sc.seed * 1000 + i,
                                link_symlink=os.path.join(tmp, name))
                vboard = self.vb.boards.get(name) if self.vb is not None else None
                if vboard is not None:  # (not booted yet) its replies in command order: the
                    vboard.ordered_replies = True  # proxy's damage then repeats with the seed
                self.proxies[name] = px
                self._closers.append(px.close)
                path = px.link_path
            self._link_paths = getattr(self, "_link_paths", {})
            self._link_paths[name] = (path, b.baud)
        # power the bus and the boards
        self.power.update(float(self._plant_v0()), True)
        for name in self.boards:
            b = self._board_specs[name]
            if b.channel is not None and switch is not None:
                self._set_channel(b.channel, True, cause="run start")
            else:
                self._board_up_at[name] = 0
        for name in self.boards:
            self._wait_boot(name)
        from firmware_bridge.link import Link

        for name, (path, baud) in self._link_paths.items():
            link = Link(path, baud, timeout_s=_LINK_TIMEOUT_S, retries=_LINK_RETRIES,
                        source_id=1 + list(self.boards).index(name), read_on_wait=True)
            self.links[name] = link
            self._closers.append(link.close)

    def _plant_v0(self) -> float:
        from hil_rig.plant import PlantParams

        p = self._plant_params() if hasattr(self, "scenario") else PlantParams()
        return float(np.interp(p.soc0, p.battery_ocv_soc, p.battery_ocv_v))

    def _plant_params(self) -> Any:
        from hil_rig.plant import Panel, PlantParams

        c = self.scenario.spacecraft
        base = PlantParams()
        panels = (Panel(base.panels[0].normal_body, c.array_area_m2), *base.panels[1:])
        t0 = c.temp_initial_c + 273.15
        return dataclasses.replace(
            base, battery_capacity_wh=c.battery_capacity_wh, soc0=c.soc_initial, panels=panels,
            solar_efficiency=c.array_efficiency, bus_base_w=c.bus_load_w, temps0_k=(t0, t0, t0, t0))

    def _start_plant(self) -> None:
        from hil_rig.plant import Actuators, Faults, Plant

        self.params = self._plant_params()
        self.plant = Plant(self.params, seed=self.scenario.seed)
        self.plant_faults = Faults()
        self.actuators = Actuators()
        self.payload_power_w = 0.0
        self.load_power_w = 0.0  # bus load, refreshed from the plant once per second
        self._env_t0 = -1
        self._env: Any = None
        self._hk_cols: list[tuple[str, type]] | None = None
        self._board_keys: list[tuple[str, str, str, str]] = []  # (board, its hk keys: state, temp, power)
        self._board_states: tuple[str, ...] = ()  # flight_sw.dictionary.BOARD_STATES, with _hk_cols

    def _fsw_config(self) -> Any:
        import native
        from flight_sw import app as fsw_app
        from flight_sw.payload import BoardConfig

        p = self.params
        socs = np.linspace(0.0, 1.0, 11)
        ocv = np.interp(socs, p.battery_ocv_soc, p.battery_ocv_v)
        v_nom = float(np.interp(0.5, p.battery_ocv_soc, p.battery_ocv_v))
        from firmware_bridge.emulator import KINDS

        boards = []
        for name, kind in self.boards.items():
            spec = self._board_specs[name]
            k = KINDS.get(kind, KINDS["jetson"])
            boards.append(BoardConfig(name, spec.channel if spec.channel is not None else -1,
                                      idle_w=k["idle_w"], max_w=k["max_w"]))
        eps = {
            "capacity_ah": p.battery_capacity_wh / v_nom,
            "ocv_v": [float(x) for x in ocv],
            "critical_voltage_v": float(ocv[1]),
            "payload_max_w": float(sum(b.max_w for b in boards)),
        }
        d = native.default_adcs_config()
        adcs = {
            "inertia_kgm2": list(p.inertia_kg_m2), "wheel_inertia_kgm2": p.wheel_inertia_kg_m2,
            "wheel_max_torque_nm": p.wheel_max_torque_nm, "wheel_max_speed_rad_s": p.wheel_max_speed_rad_s,
            "dipole_max_am2": p.mtq_max_dipole_am2, "array_normal_body": list(p.panels[0].normal_body),
        }
        del d
        return fsw_app.FswConfig(
            epoch_utc=self.scenario.epoch_iso, boards=boards, adcs=adcs, eps=eps,
            thermal_zones=["battery", "payload", "radiator", "structure"],
            sync_lead=bool(self.sync_lead),
        )

    def _start_fsw(self) -> None:
        import secrets

        from flight_sw import app as fsw_app

        tle = tle_for_fsw(self.orbit, self.scenario.epoch)
        links = {n: _GatedLink(self, n, lk) for n, lk in self.links.items()}
        self.sensors = _PlantSensors(self)
        self.fsw = fsw_app.FlightSoftware(
            self._fsw_config(), self.clock, self.sensors, _PlantActuators(self), _BenchSwitch(self),
            links, tle, secrets.token_bytes(32))
        self._closers.append(self.fsw.close)

    # ---- board power ----------------------------------------------------------
    def _boards_on(self, channel: int) -> list[str]:
        return [n for n, b in self._board_specs.items() if b.channel == channel]

    def _set_channel(self, channel: int, on: bool, cause: str) -> None:
        if self.switch is None:
            return
        self._settle(self._boards_on(channel))
        self.switch.set_channel(channel, on)
        was = self._channel_on.get(channel)
        self._channel_on[channel] = on
        if was == on:
            return
        t = self.clock.t_ns
        for name in self._boards_on(channel):
            self._event(t, "rig", "board_power", f"{name} relay {'on' if on else 'off'} ({cause})")
            if on:
                self._board_up_at[name] = t + int(self._board_specs[name].boot_time_s * NS)
            else:
                self._board_up_at[name] = None
                if self.vb is not None and name in self.vb.boards:
                    self.vb._wake.set()
                    if not self.vb.wait_board(name, running=False, timeout_s=_BOARD_WAIT_S):
                        raise RunError(f"board {name}: still running {_BOARD_WAIT_S:.0f} s after its relay opened")

    def _settle(self, names: Iterable[str]) -> None:
        """Before the rig touches a board (power, fault, injection): let the flight
        software's lead time sync to it land first, so that what the board sees, and
        in which order, does not depend on the wall clock."""
        if self.fsw is not None:
            for name in names:
                self.fsw.payload.settle(name)

    def _board_up(self, name: str) -> bool:
        t = self._board_up_at.get(name)
        return t is not None and self.clock.t_ns >= t

    def _wait_boot(self, name: str) -> None:
        """Hold simulation time until an emulated board that is due up has booted."""
        if self.vb is None or name not in self.vb.boards:
            return
        deadline = time.monotonic() + _BOARD_WAIT_S
        board = self.vb.boards[name]
        self.vb._wake.set()
        while True:
            proc = board.proc
            if proc is not None and proc.alive and proc.last_status is not None:
                return
            if time.monotonic() > deadline:
                raise RunError(f"board {name}: did not boot within {_BOARD_WAIT_S:.0f} s (wall clock)")
            time.sleep(0.005)

    # ---- the loop ---------------------------------------------------------------
    def _env_index(self, t_ns: int) -> int:
        """Row of ``self._env`` (the precomputed environment chunk) for ``t_ns``."""
        k = t_ns // _PHYSICS_DT_NS
        chunk = _ENV_CHUNK_S * 10
        c0 = (k // chunk) * chunk
        if c0 != self._env_t0:
            t = (np.arange(chunk) + c0) * _PHYSICS_DT_NS
            self._env = self.env.sample(t)
            self._env_t0 = c0
        return int(k - c0)

    def _env_row(self, t_ns: int) -> Any:
        return self._env.row(self._env_index(t_ns))

    def resolve_time(self, target: int | str) -> int:
        """Simulation ns of a target: ns, or a trigger text ('eclipse_entry + 60 s')."""
        if isinstance(target, str):
            try:
                trig = parse_trigger(target, "run_until")
                return resolve_trigger(trig, self.events, where=f"run_until({target!r})")
            except (ScenarioError, FaultScheduleError) as exc:
                raise RunError(str(exc)) from None
        return int(target)

    def run_until(self, target: int | str) -> int:
        """Advance to a simulation time (ns) or orbit event; returns the time reached."""
        if not self.started:
            self.start()
        t_end = min(self.resolve_time(target), self.duration_ns)
        if t_end < self.clock.t_ns:
            raise RunError(f"run_until: {t_end / NS:.1f} s is before the current time "
                           f"{self.clock.t_ns / NS:.1f} s")
        with loop_priority(self.rt_priority) as applied:
            self.rt_applied = applied
            while self.clock.t_ns < t_end and self.stop_reason is None:
                t0 = self.clock.t_ns
                t1 = min((t0 // NS + 1) * NS, t_end)
                self._advance(t0, t1)
                if t1 % NS == 0:
                    self._second(t1)
        return self.clock.t_ns

    def _advance(self, t0: int, t1: int) -> None:
        """Physics at 10 Hz and flight software from t0 to t1 (within one second)."""
        plant, fsw = self.plant, self.fsw
        t = t0
        while t < t1:
            for a in self.schedule.due(t):
                self._apply_fault(a)
            if self.c_frames and t % _PHYSICS_DT_NS == 0:
                n = self._c_frames(t, t1)
                if n:
                    t += n * _PHYSICS_DT_NS
                    continue
            dt = min(_PHYSICS_DT_NS - t % _PHYSICS_DT_NS, t1 - t)
            if dt == _PHYSICS_DT_NS:  # a whole step: straight from the packed rows (no EnvSample)
                k = self._env_index(t)
                plant.step_row(self._env, k, dt, self.actuators, self.payload_power_w, self.plant_faults)
            else:
                plant.step(dt, self.actuators, self._env_row(t), self.payload_power_w, self.plant_faults)
            t += dt
            self.clock.t_ns = t
            for name, up in self._board_up_at.items():
                if up is not None and t - dt < up <= t:
                    self._wait_boot(name)
            fsw.step_to(t)

    def _c_frames(self, t: int, t1: int) -> int:
        """Run the control-only frames from ``t`` on in one C call (the flight
        software's ADCS stepping the plant through its C port), up to ``t1`` and
        stopping before the next fault or board boot; returns the frames run (0:
        take the one-step path). The same steps and frames as that path, bit for bit."""
        dt = _PHYSICS_DT_NS
        fsw = self.fsw
        if fsw.executive.next_tick_ns != t + dt:
            return 0
        n = (t1 - t) // dt
        nf = self.schedule.next_time_ns()
        if nf is not None:  # a fault at nf applies before the step that starts at or after it
            n = min(n, (nf - t - 1) // dt + 1)
        for up in self._board_up_at.values():  # a boot at `up` is waited for before that frame
            if up is not None and up > t:
                n = min(n, (up - t - 1) // dt)
        if n <= 0:
            return 0
        k = self._env_index(t)  # (re)fills self._env
        port = self.plant.port(self._env, k, n, dt, self.actuators, self.payload_power_w, self.plant_faults)
        if port is None or port.max_frames <= 0:
            return 0
        ran = fsw.step_frames(t + port.max_frames * dt, _PlantControlPort(self, port, t))
        self.actuators = self.plant.port_done(port)
        self.clock.t_ns = t + ran * dt
        if ran:
            fsw.step_to(self.clock.t_ns)  # the rest of a 1 Hz tick whose frame the batch ran
        return ran

    def _second(self, t: int) -> None:
        """Once per simulated second: power loop, faults, jobs, archive, judges."""
        if self.pacer is not None:
            self.pacer.wait_until(t)
        if t % self._power_period_ns == 0 and not getattr(self, "_brownout", False):
            v = float(self.plant.battery_v)
            up = self.plant.soc > 0.0
            # virtual time on the virtual bench: what the simulated supply's reading
            # depends on, so that the loop reads it only when that changed (9 reads
            # in 10 in the nominal scenario would return the last reading again)
            inputs = None
            if self.reuse_supply_readings and self.vb is not None and not self.realtime:
                inputs = functools.partial(self.vb.supply_inputs, self._supply_name)
            try:
                ps = self.power.update(v, up, inputs=inputs)
                self.payload_power_w = max(ps.power_w, 0.0)
            except Exception as exc:  # noqa: BLE001 - a supply error ends the run safely, with the reason
                raise RunError(f"power loop at t = {t / NS:.0f} s: {exc}") from None
        self._retry_injections(t)
        self._feed_jobs(t)
        self._record(t)

    # ---- payload workload ---------------------------------------------------------
    def _feed_jobs(self, t: int) -> None:
        w = self.scenario.workload
        if w.kind != "compute":
            return
        counts = self.fsw.payload.counts()
        want = len(self.boards)
        while counts.get("jobs_queued", 0) < want and (w.jobs == 0 or self._queued < w.jobs):
            params = json.dumps({"steps": w.job_steps, "seed": self._queued + 1})
            self.fsw.command("queue_job", workload=w.job, params=params, deadline_s=w.deadline_s,
                             verify=w.verify)
            self._queued += 1
            counts["jobs_queued"] = counts.get("jobs_queued", 0) + 1

    # ---- faults -------------------------------------------------------------------
    def _target(self, a: FaultAction) -> str:
        return a.target or next(iter(self.boards))

    def _apply_fault(self, a: FaultAction) -> None:
        t = self.clock.t_ns
        self._event(t, "fault", f"{a.kind}_{a.phase}", a.describe())
        start = a.phase == "start"
        pf = self.plant_faults
        if a.kind in ("link_noise", "link_drop", "link_disconnect"):
            self._settle([self._target(a)])
            px = self.proxies[self._target(a)]
            if a.kind == "link_disconnect":
                px.unplug() if start else px.replug()
            elif a.kind == "link_noise":
                px.set_faults(corrupt=float(a.param("byte_error_rate")) if start else 0.0)
            else:
                px.set_faults(drop=float(a.param("byte_drop_rate")) if start else 0.0)
        elif a.kind == "relay_off":
            ch = self._board_specs[self._target(a)].channel
            if ch is None or self.switch is None:
                raise RunError(f"fault relay_off: board {self._target(a)} has no relay channel on this bench")
            self._set_channel(ch, not start, cause=a.describe())
        elif a.kind == "brownout":
            self._brownout_fault(self._target(a), float(a.param("voltage_v", 0.0)), start)
        elif a.kind == "payload_hang":
            if start:
                self._hang_pending.append(a)
        elif a.kind == "seu":
            if start:
                self._seu_pending.append((a, int(a.param("count", 1))))
        elif a.kind in ("sensor_stuck", "sensor_dead", "sensor_bias"):
            key = {"sun": "css", "gyro": "gyro", "mag": "mag"}[a.target or "sun"]
            if a.kind == "sensor_bias":
                if key == "css":
                    raise RunError("fault sensor_bias: the sun sensors take no bias; use stuck or dead")
                b = float(a.param("bias")) if start else 0.0
                field = "gyro_bias_rad_s" if key == "gyro" else "mag_bias_t"
                pf = dataclasses.replace(pf, **{field: (b, b, b)})
            else:
                what = "dead" if a.kind == "sensor_dead" or key == "css" else "stuck"
                pf = dataclasses.replace(pf, **{f"{key}_{what}": start})
        elif a.kind == "wheel_stuck":
            k = "xyz".index(a.target or "x")
            ws = list(pf.wheel_stuck)
            ws[k] = start
            pf = dataclasses.replace(pf, wheel_stuck=tuple(ws))
        elif a.kind == "hot_case":
            pf = dataclasses.replace(pf, hot_case=float(a.param("heat_load_factor", 1.5)) if start else 1.0)
        self.plant_faults = pf

    def _brownout_fault(self, board: str, volts: float, start: bool) -> None:
        """The supply that feeds ``board`` sags to ``volts`` (0: output off); every
        board it feeds below its minimum voltage loses power. At the end the power
        loop takes the supply back to the simulated bus voltage."""
        t = self.clock.t_ns
        supply = self._board_specs[board].supply
        fed = [n for n, b in self._board_specs.items() if b.supply == supply]
        self._settle(fed)
        if start:
            self._brownout = True
            self.payload_power_w = max(self.power.update(volts, volts > 0).power_w, 0.0)
            for name in fed:
                if volts < self._board_specs[name].min_voltage_v and self._board_up_at.get(name) is not None:
                    self._board_up_at[name] = None
                    self._event(t, "rig", "board_power", f"{name} browned out ({volts:g} V)")
                    if self.vb is not None and name in self.vb.boards:
                        self.vb._wake.set()
                        if not self.vb.wait_board(name, running=False, timeout_s=_BOARD_WAIT_S):
                            raise RunError(f"board {name}: still running {_BOARD_WAIT_S:.0f} s into a brownout")
        else:
            self._brownout = False
            ps = self.power.update(float(self.plant.battery_v), self.plant.soc > 0.0)
            self.payload_power_w = max(ps.power_w, 0.0)
            for name in fed:
                b = self._board_specs[name]
                relay_on = b.channel is None or self._channel_on.get(b.channel, False)
                if relay_on and self._board_up_at.get(name) is None:
                    self._board_up_at[name] = t + int(b.boot_time_s * NS)
                    self._event(t, "rig", "board_power", f"{name} power back after brownout")

    def _retry_injections(self, t: int) -> None:
        """Hang and SEU go to a board's agent (test mode); an SEU needs a running job,
        so it waits for one."""
        for a in list(self._hang_pending):
            name = self._target(a)
            if self._board_up(name):
                self._settle([name])
                try:
                    self.links[name].inject_hang(0.0)
                    self._event(t, "fault", "payload_hang_injected", f"{name} hangs until power-cycled")
                    self._hang_pending.remove(a)
                except Exception as exc:  # noqa: BLE001 - try again next second
                    self._event(t, "fault", "inject_retry", f"{name}: {exc}")
        for item in list(self._seu_pending):
            a, left = item
            name = self._target(a)
            b = self.fsw.payload.boards.get(name)
            run = b.run[1] if b is not None and b.run else None
            if run is None or run.state != "running" or not self._board_up(name):
                continue
            self._settle([name])
            try:
                self.links[name].inject_seu(int(run.remote_id))
            except Exception as exc:  # noqa: BLE001
                self._event(t, "fault", "inject_retry", f"{name}: {exc}")
                continue
            self._event(t, "fault", "seu_injected", f"{name} job {run.remote_id}")
            self._seu_pending.remove(item)
            if left > 1:
                self._seu_pending.append((a, left - 1))

    # ---- records ------------------------------------------------------------------
    def _event(self, t: int, source: str, kind: str, detail: str) -> None:
        self.archive.event(t, source, kind, detail)
        if self._log is not None:
            self._log.write(f"{t / NS:12.3f} {source:<5} {kind:<24} {detail}\n")

    def _record(self, t: int) -> None:
        p, fsw = self.plant, self.fsw
        self.load_power_w = float(p.load_power_w)
        for ev in fsw.events.events[self._fsw_event_idx:]:
            self._event(ev.t_ns, "fsw", ev.name, json.dumps(ev.fields, sort_keys=True, default=str))
        self._fsw_event_idx = len(fsw.events.events)
        illum, sun_err = 0.0, float("nan")
        sb = p.sun_in_body()
        if sb is not None:
            (bx, by, bz), illum = sb
            nx, ny, nz = self.params.panels[0].normal_body
            sun_err = math.degrees(math.acos(max(-1.0, min(1.0, bx * nx + by * ny + bz * nz))))
        temps = p.temps
        orbit = int(t // self.events.period_ns) + 1
        wx, wy, wz = p.omega_body()
        row: list[Any] = [orbit, illum, sun_err, p.soc, p.battery_v, p.solar_power_w, self.load_power_w,
                          self.payload_power_w, temps[0], temps[1], temps[2], temps[3],
                          math.sqrt(wx * wx + wy * wy + wz * wz)]
        hk = fsw.hk
        if self._hk_cols is None:  # built once: (hk key, int or float) per flight-software column
            from flight_sw.dictionary import BOARD_STATES, board_channel_names

            self._board_states = BOARD_STATES
            self._hk_cols = [(c.name[4:], int if c.kind == "INTEGER" else float)
                             for c in self.channels[len(TRUTH_CHANNELS):]]
            self._board_keys = []
            for n in self.boards:
                temp_key, power_key, state_key, _throttle = board_channel_names(n)
                self._board_keys.append((n, state_key, temp_key, power_key))
        isfinite = math.isfinite
        for key, num in self._hk_cols:
            v = hk.get(key)
            row.append(None if v is None or (isinstance(v, float) and not isfinite(v)) else num(v))
        self.archive.telemetry(t, row)
        done = fsw.payload.completed  # jobs completed so far, in order: count the new ones
        for job in done[self._jobs_seen:]:
            for b in {r.board for r in job.runs}:
                self._jobs_by_board[b] = self._jobs_by_board.get(b, 0) + 1
        self._jobs_seen = len(done)
        states = {}
        temps_c = {"payload_node": temps[0] - 273.15}
        for name, state_key, temp_key, power_key in self._board_keys:
            st_i = hk.get(state_key)
            st = self._board_states[int(st_i)] if st_i is not None else "OFF"
            states[name] = st
            self.archive.payload(t, name, st, _num(hk.get(power_key)), _num(hk.get(temp_key)),
                                 self._jobs_by_board.get(name, 0))
        self.archive.commit()
        sample = Sample(
            t_ns=t, soc=p.soc, illumination=illum, sun_err_deg=sun_err, payload_temp_c=temps_c,
            board_state={n: s.lower() for n, s in states.items()},
            jobs_done=int(fsw.payload.stats["jobs_completed"]),
            seu_detected=int(fsw.payload.stats["seu_detected"]),
        )
        for j in self.judges:
            j.observe(sample)
        self._status = {
            "orbit": orbit, "sunlit": illum > 0.5, "soc": p.soc,
            "temps_c": [x - 273.15 for x in temps[:2]], "mode": fsw.mode,
            "boards": states, "jobs": sample.jobs_done,
        }
        if self.progress is not None:
            self.progress.update(t, self._status)

    # ---- history (for tests) ----------------------------------------------------------
    def history(self, column: str) -> np.ndarray:
        """A telemetry column so far (the archive, committed every second)."""
        run = load_run(self.run_dir)
        return run["telemetry"][column]

    def fsw_events(self, name: str) -> list[Any]:
        return [e for e in self.fsw.events.events if e.name == name]

    # ---- the end ------------------------------------------------------------------
    def finish(self) -> RunResult:
        """Run to the end (unless stopped), judge, write summary.json and junit.xml, close."""
        if self.finished is not None:
            return self.finished
        aborted = None
        error = None
        try:
            if not self.started:
                self.start()
            self.run_until(self.duration_ns)
            aborted = self.stop_reason
        except KeyboardInterrupt:
            aborted = "interrupted"
        except RunError as exc:
            aborted, error = "error", str(exc)
        return self._conclude(aborted, error)

    def _conclude(self, aborted: str | None, error: str | None) -> RunResult:
        t_end = self.clock.t_ns
        wall = time.monotonic() - getattr(self, "_wall0", time.monotonic())
        verdicts = [j.verdict(t_end) for j in getattr(self, "judges", [])]
        if getattr(self, "archive", None) is not None and self.archive.db is not None:
            for v in verdicts:
                self._event(t_end, "judge", "verdict", f"{v.name}: {'PASS' if v.passed else 'FAIL'}: {v.detail}")
            if aborted:
                self._event(t_end, "rig", "run_aborted", f"{aborted}{': ' + error if error else ''}")
            self._event(t_end, "rig", "run_end", f"t = {t_end / NS:.0f} s")
        if self.progress is not None:
            if getattr(self, "_status", None):
                self.progress.update(t_end, self._status, force=True)
            self.progress.close()
        stats: dict[str, Any] = {}
        if self.fsw is not None:
            stats = {k: v for k, v in self.fsw.stats().items() if isinstance(v, int | float | str)}
        self.close()
        sc = self.scenario
        props = {"scenario": sc.name, "seed": str(sc.seed), "bench": getattr(self, "bench_label", ""),
                 "boards": ",".join(f"{n}:{k}" for n, k in getattr(self, "boards", {}).items())}
        summary = write_summary(
            self.run_dir / "summary.json", verdicts, scenario=sc.name, seed=sc.seed,
            sim_seconds=t_end / NS, wall_seconds=round(wall, 3),
            speedup=round((t_end / NS) / wall, 1) if wall > 0 else None,
            clock="virtual" if sc.speed is None else f"realtime x {sc.speed:g}",
            lateness=self.pacer.lateness.summary() if getattr(self, "pacer", None) is not None else None,
            bench=props["bench"], boards=props["boards"], run_dir=str(self.run_dir),
            aborted=aborted, error=error, rt_priority=self.rt_applied, fsw=stats,
            safe_state_errors=list(getattr(getattr(self, "guard", None), "errors", []) or []),
        )
        write_junit(self.run_dir / "junit.xml", sc.name, verdicts, t_end / NS, props, error=error or aborted)
        self.finished = RunResult(self.run_dir, bool(summary["passed"]), verdicts, summary, aborted)
        return self.finished

    def close(self) -> None:
        """Safe state, then everything stopped (idempotent). The archive stays readable."""
        while self._closers:
            fn = self._closers.pop()
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - keep closing the rest
                print(f"hil run: while closing: {type(exc).__name__}: {exc}", file=sys.stderr)


_BOARD_FAULTS = ("link_noise", "link_drop", "link_disconnect", "relay_off", "brownout", "payload_hang", "seu")


def check_rt_priority(priority: Any) -> None:
    """Raise RunError unless ``priority`` is None or an integer in 1..99."""
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)
                                 or not 1 <= priority <= 99):
        raise RunError(f"rt_priority must be an integer in 1..99 (or off), got {priority!r}")


@contextlib.contextmanager
def loop_priority(priority: int | None) -> Iterator[int | None]:
    """The calling thread at real-time priority ``priority`` (``SCHED_FIFO``) for
    the block; yields the priority applied, or None: ``priority`` None, or not
    permitted here (it needs root, ``CAP_SYS_NICE`` or an ``RLIMIT_RTPRIO`` that
    allows it; Linux only). The thread's policy before is restored after.

    ``SCHED_RESET_ON_FORK``: threads and processes started meanwhile (a board
    rebooted by the virtual bench, a job worker) get the normal policy. The loop
    thread blocks at every board round trip, so the boards get the cores while it
    waits; the kernel's real-time throttling bounds it besides."""
    if priority is None:
        yield None
        return
    check_rt_priority(priority)
    before = None
    try:
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
        if policy & ~os.SCHED_RESET_ON_FORK in (os.SCHED_FIFO, os.SCHED_RR):
            applied: int | None = param.sched_priority  # real-time already (chrt): left as it is
        else:
            os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(priority))
            before, applied = (policy, param), priority
    except (OSError, AttributeError):  # EPERM; no sched_* (not Linux)
        applied = None
    try:
        yield applied
    finally:
        if before is not None:
            os.sched_setscheduler(0, *before)


def _num(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _fmt_s(t: int | None) -> str:
    return "before start" if t is None else f"{t / NS:.3f} s"


def run_scenario(scenario: Scenario, *, bench: str | os.PathLike[str] | None = None,
                 out: str | os.PathLike[str] | None = None, progress: str | Progress | None = None,
                 handle_sigterm: bool = False, rt_priority: int | None = DEFAULT_RT_PRIORITY) -> RunResult:
    """Run a scenario to its end and return the result (``hil run``)."""
    run = Run(scenario, bench=bench, out=out)
    run.rt_priority = rt_priority
    if progress == "auto":
        run.progress = None  # set once the duration is known
    elif isinstance(progress, Progress):
        run.progress = progress
    old = None
    if handle_sigterm:
        def _on_term(signum: int, frame: Any) -> None:
            run.stop_reason = "SIGTERM"

        old = signal.signal(signal.SIGTERM, _on_term)
    try:
        try:
            run.start()
        except RunError:
            raise
        if progress == "auto":
            run.progress = Progress(sys.stderr, run.duration_ns)
        return run.finish()
    finally:
        run.close()
        if old is not None:
            signal.signal(signal.SIGTERM, old)
