"""The run: one scenario on one bench, from start to verdicts (docs/running.md).

:class:`Run` is thin: :func:`hil_rig.run.builder.build` assembles every part at
``start()``, and the run steps them. Its public control API is all that the CLI,
the pytest plugin, the console and campaigns use:

- ``start()``; ``run_until(target)`` / ``step(duration)``; ``finish()``; ``close()``;
- ``inject(fault)``: a fault spec, the same table as a scenario file's ``[[fault]]``;
- ``command(name, **args)``: a telecommand through the flight software's own TC path;
- ``pause()`` / ``resume()``, and ``set_speed(x)`` in real time;
- ``status()``: a live snapshot; ``log_event(source, kind, detail)``: a client's event.

The control calls are safe from any thread: while another thread is inside
``run_until``, a call is handed to the loop and done at the next simulated
second (a pause holds the loop there), and the caller waits for its result.

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

import concurrent.futures
import contextlib
import functools
import gc
import json
import os
import pathlib
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hil_rig.archive import ArchiveError, load_run
from hil_rig.constants import NS_PER_S as NS
from hil_rig.faults import FaultAction, FaultScheduleError, resolve_trigger
from hil_rig.requirements import write_junit, write_summary
from hil_rig.run import fault_handlers
from hil_rig.run.adapters import PlantControlPort
from hil_rig.run.bench_info import boards_text
from hil_rig.run.builder import RunOptions, RunParts, build, close_all
from hil_rig.run.errors import RunError, RunResult
from hil_rig.run.priority import (
    DEFAULT_RT_PRIORITY,
    boards_priority,
    check_rt_priority,
    loop_priority,
)
from hil_rig.run.progress import Progress
from hil_rig.scenario import Scenario, ScenarioError, parse_trigger
from hil_rig.yield_bound.analysis import summary_yield

PHYSICS_DT_NS = NS // 10  # 10 Hz physics
ENV_CHUNK_S = 600  # environment precomputed for this many seconds at once


def default_out_dir(sc: Scenario, base: pathlib.Path | None = None) -> pathlib.Path:
    base = base or pathlib.Path("runs")
    n = 0
    while (base / f"{sc.name}-{sc.seed}-{n}").exists():
        n += 1
    return base / f"{sc.name}-{sc.seed}-{n}"


class Run:
    """One scenario on one bench. ``start()``, then ``run_until(...)`` any number of
    times, then ``finish()`` for the verdicts; ``close()`` (or the context manager)
    always leaves the instruments in their safe state."""

    def __init__(self, scenario: Scenario, *, bench: str | os.PathLike[str] | None = None,
                 out: str | os.PathLike[str] | None = None, progress: Progress | None = None,
                 options: RunOptions | None = None, rt_priority: int | None = DEFAULT_RT_PRIORITY) -> None:
        self.scenario = scenario
        self.bench_file = bench
        self.run_dir = pathlib.Path(out) if out is not None else default_out_dir(scenario)
        self.progress = progress
        self.options = options if options is not None else RunOptions()
        #: the run loop's thread at this real-time priority (SCHED_FIFO, 1-99) while
        #: run_until runs, so that it gets a core as soon as a board's reply wakes it,
        #: rather than queueing behind the boards' processes; None: the normal policy.
        #: Skipped where not permitted (``rt_applied`` says what was).
        self.rt_priority = rt_priority
        self.rt_applied: int | None = None
        self.parts: RunParts | None = None
        self.finished: RunResult | None = None
        #: set from a signal handler or another thread: stop at the next second
        self.stop_reason: str | None = None
        self._closers: list[Callable[[], None]] = []
        self._wall0 = time.monotonic()
        self._env_t0 = -1
        self._env: Any = None
        self._queued = 0
        # control from other threads
        self._requests: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future]] = queue.SimpleQueue()
        self._loop_lock = threading.Lock()   # held while a thread runs the loop
        self._loop_thread: int | None = None
        self._resumed = threading.Event()
        self._resumed.set()
        #: real time: wall time (monotonic s) since which no frame has been due (a pause, or
        #: no thread in run_until); the pacer's deadlines move by it when the loop goes on
        self._held_wall: float | None = None
        self._hold_lock = threading.Lock()
        self._injected = 0
        self._tc_sender: Any = None
        self._proc_io: Any = None

    # ---- life cycle -----------------------------------------------------------
    def __enter__(self) -> Run:
        if not self.started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def started(self) -> bool:
        return self.parts is not None

    def start(self) -> Run:
        """Build every part, power the boards, and take the first second's records.
        A failure leaves ``summary.json`` with the error in the run directory, closes
        what was started, and raises :class:`RunError`."""
        if self.parts is not None:
            return self
        try:
            check_rt_priority(self.rt_priority)  # a bad value stops here, before anything starts
            self._wall0 = time.monotonic()
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RunError(f"run directory {self.run_dir}: {exc.strerror or exc}") from None
            self.parts = build(self.scenario, self.bench_file, self.run_dir, self.options,
                               self.progress, self._closers)
            p = self.parts
            p.recorder.event(0, "rig", "run_start",
                             f"scenario {self.scenario.name} seed {self.scenario.seed} on bench {p.bench_label}")
            k = self._env_index(0)  # (fills self._env)
            p.plant.set_initial_view(self._env, k)  # t = 0 is recorded in its own light
            p.fsw.step_to(0)
            self._feed_jobs(0)
            self._second(0)
            self._hold()  # until a run_until: the pace starts there
            # Everything built so far lives as long as the run: out of the garbage
            # collector's sight until the run closes, so that its full collections in
            # the loop (each one walked every object of the process: ~0.1 s, a frame
            # 40x its usual length) walk only what the loop made. Cyclic garbage the
            # loop makes is still collected.
            gc.freeze()
            self._closers.append(gc.unfreeze)
        except BaseException as exc:
            close_all(self._closers)
            self.parts = None
            if isinstance(exc, RunError | KeyboardInterrupt):
                self._write_startup_failure(exc)
            raise
        return self

    def _write_startup_failure(self, exc: BaseException) -> None:
        error = str(exc) if isinstance(exc, RunError) else None
        aborted = "error" if error else "interrupted"
        if self.stop_reason == "SIGTERM":
            aborted = "SIGTERM"
        try:
            if self.run_dir.is_dir():
                sc = self.scenario
                write_summary(self.run_dir / "summary.json", [], scenario=sc.name, seed=sc.seed,
                              sim_seconds=0.0, wall_seconds=round(time.monotonic() - self._wall0, 3),
                              speedup=None, clock="virtual" if sc.speed is None else f"realtime x {sc.speed:g}",
                              lateness=None, speed_kept=None, achieved_speed=None,
                              bench=str(self.bench_file or "virtual"), boards="",
                              run_dir=str(self.run_dir), aborted=aborted, error=error, rt_priority=None,
                              fsw={}, safe_state_errors=[], started=False)
        except OSError:
            pass  # the run directory itself is what failed: the error is raised to the caller

    # ---- what a client may read ---------------------------------------------------
    def _need(self) -> RunParts:
        if self.parts is None:
            self.start()
        assert self.parts is not None
        return self.parts

    @property
    def fsw(self) -> Any:
        return self._need().fsw

    @property
    def boards(self) -> dict[str, str]:
        return self._need().boards

    @property
    def links(self) -> dict[str, Any]:
        return self._need().links

    @property
    def bench_label(self) -> str:
        return self._need().bench_label

    @property
    def duration_ns(self) -> int:
        return self._need().duration_ns

    @property
    def events(self) -> Any:
        return self._need().events

    @property
    def t_ns(self) -> int:
        return self.parts.clock.t_ns if self.parts is not None else 0

    @property
    def tc_key(self) -> bytes:
        return self._need().tc_key

    # ---- the loop -------------------------------------------------------------------
    def resolve_time(self, target: int | str) -> int:
        """Simulation ns of a target: ns, or a trigger text ('eclipse_entry + 60 s')."""
        if isinstance(target, str):
            try:
                trig = parse_trigger(target, "run_until")
                return resolve_trigger(trig, self._need().events, where=f"run_until({target!r})")
            except (ScenarioError, FaultScheduleError) as exc:
                raise RunError(str(exc)) from None
        return int(target)

    def run_until(self, target: int | str) -> int:
        """Advance to a simulation time (ns) or orbit event; returns the time reached."""
        p = self._need()
        t_end = min(self.resolve_time(target), p.duration_ns)
        if t_end < p.clock.t_ns:
            raise RunError(f"run_until: {t_end / NS:.1f} s is before the current time "
                           f"{p.clock.t_ns / NS:.1f} s")
        if not self._loop_lock.acquire(blocking=False):
            raise RunError("run_until: another thread is running this run")
        try:
            self._loop_thread = threading.get_ident()
            with loop_priority(self.rt_priority) as applied, boards_priority(p.vb, applied):
                self.rt_applied = applied
                while p.clock.t_ns < t_end and self.stop_reason is None:
                    self._serve_requests()
                    if self.stop_reason is not None:
                        break
                    if self._held_wall is not None and self._resumed.is_set():
                        self._unhold()
                    t0 = p.clock.t_ns
                    t1 = min((t0 // NS + 1) * NS, t_end)
                    self._advance(t0, t1)
                    if t1 % NS == 0:
                        self._second(t1)
        finally:
            self._hold()
            self._commit()  # everything up to here is in the file when control comes back
            self._loop_thread = None
            self._loop_lock.release()
            self._serve_requests(block=False)  # anything handed over as the loop ended
        return p.clock.t_ns

    def _commit(self) -> None:
        archive = self.parts.recorder.archive if self.parts is not None else None
        if archive is not None and archive.db is not None and archive.failed is None:
            try:
                archive.commit()
            except ArchiveError:
                pass  # archive.failed says why; the run's end reports it

    def step(self, duration: int | str = NS) -> int:
        """Advance by ``duration`` (ns, or a text such as ``"10 s"``); returns the time reached."""
        if isinstance(duration, str):
            from hil_rig.scenario import parse_duration

            try:
                d = parse_duration(duration, "step", allow_orbits=True).to_ns(self._need().period_s)
            except ScenarioError as exc:
                raise RunError(str(exc)) from None
        else:
            d = int(duration)
        if d <= 0:
            raise RunError(f"step: the duration must be > 0, got {duration!r}")
        return self.run_until(self._need().clock.t_ns + d)

    def _env_index(self, t_ns: int) -> int:
        """Row of ``self._env`` (the precomputed environment chunk) for ``t_ns``."""
        k = t_ns // PHYSICS_DT_NS
        chunk = ENV_CHUNK_S * 10
        c0 = (k // chunk) * chunk
        if c0 != self._env_t0:
            t = (np.arange(chunk) + c0) * PHYSICS_DT_NS
            self._env = self.parts.env.sample(t)
            self._env_t0 = c0
        return int(k - c0)

    def _advance(self, t0: int, t1: int) -> None:
        """Physics at 10 Hz and flight software from t0 to t1 (within one second)."""
        p = self.parts
        plant, fsw, power = p.plant, p.fsw, p.power
        t = t0
        while t < t1:
            if p.procedures.active:  # (first: a fault one injects now applies just below)
                p.procedures.advance(t, self._procedure_io())
            for a in p.schedule.due(t):
                fault_handlers.apply(p, a)
            for c in p.commands.due(t):
                self._submit_tc(c.name, dict(c.args), "rig", "command_sent", f" ({c.describe()})")
            if p.options.c_frames and t % PHYSICS_DT_NS == 0:
                n = self._c_frames(t, t1)
                if n:
                    t += n * PHYSICS_DT_NS
                    continue
            dt = min(PHYSICS_DT_NS - t % PHYSICS_DT_NS, t1 - t)
            if dt == PHYSICS_DT_NS:  # a whole step: straight from the packed rows (no EnvSample)
                k = self._env_index(t)
                plant.step_row(self._env, k, dt, p.actuators, p.payload_power_w, p.plant_faults)
            else:
                k = self._env_index(t)
                plant.step(dt, p.actuators, self._env.row(k), p.payload_power_w, p.plant_faults)
            t += dt
            p.clock.t_ns = t
            for name in power.booted_between(t - dt, t):
                power.wait_booted(name)
            fsw.step_to(t)

    def _c_frames(self, t: int, t1: int) -> int:
        """Run the control-only frames from ``t`` on in one C call (the flight
        software's ADCS stepping the plant through its C port), up to ``t1`` and
        stopping before the next fault or board boot; returns the frames run (0:
        take the one-step path). The same steps and frames as that path, bit for bit."""
        dt = PHYSICS_DT_NS
        p = self.parts
        fsw = p.fsw
        if fsw.executive.next_tick_ns != t + dt:
            return 0
        n = (t1 - t) // dt
        if p.procedures.active and p.procedures.next_time_ns() is None:
            return 0  # a procedure waits on telemetry or an acknowledgement: look at every step
        for nf in (p.schedule.next_time_ns(), p.commands.next_time_ns(), p.procedures.next_time_ns()):
            if nf is not None:  # a fault, command or procedure step at nf applies before the step that starts at or after it
                n = min(n, (nf - t - 1) // dt + 1)
        up = p.power.next_boot_ns(t)
        if up is not None:  # a boot at `up` is waited for before that frame
            n = min(n, (up - t - 1) // dt)
        if n <= 0:
            return 0
        k = self._env_index(t)  # (re)fills self._env
        port = p.plant.port(self._env, k, n, dt, p.actuators, p.payload_power_w, p.plant_faults)
        if port is None or port.max_frames <= 0:
            return 0
        ran = fsw.step_frames(t + port.max_frames * dt, PlantControlPort(p.sensors, port, t))
        p.actuators = p.plant.port_done(port)
        p.clock.t_ns = t + ran * dt
        if ran:
            fsw.step_to(p.clock.t_ns)  # the rest of a 1 Hz tick whose frame the batch ran
        return ran

    def _second(self, t: int) -> None:
        """Once per simulated second: power loop, injections, jobs, records."""
        p = self.parts
        if p.pacer is not None:
            p.pacer.wait_until(t)
            change = p.pacer.speed_change()
            if change is not None:
                self._speed_change(change)
        if t % p.power_period_ns == 0 and not p.power.supply_held:
            v = float(p.plant.battery_v)
            up = p.plant.soc > 0.0
            # virtual time on the virtual bench: what the simulated supply's reading
            # depends on, so that the loop reads it only when that changed (9 reads
            # in 10 in the nominal scenario would return the last reading again)
            inputs = None
            if p.options.reuse_supply_readings and p.vb is not None and not p.realtime:
                inputs = functools.partial(p.vb.supply_inputs, p.supply_name)
            try:
                ps = p.power_loop.update(v, up, inputs=inputs)
                p.payload_power_w = max(ps.power_w, 0.0)
            except Exception as exc:  # noqa: BLE001 - a supply error ends the run safely, with the reason
                raise RunError(f"power loop at t = {t / NS:.0f} s: {exc}") from None
        if p.vb is not None:
            self._unplanned_brownouts(t)
        p.injections.retry(p, t)
        self._feed_jobs(t)
        p.load_power_w = float(p.plant.load_power_w)
        p.recorder.second(p, t, float(self._env.beta_rad[self._env_index(t)]))

    def _speed_change(self, change: Any) -> None:
        """The requested speed stopped or started again being kept: an event
        (``speed_not_kept`` / ``speed_kept``) and a line on stderr, as it happens."""
        rec = self.parts.recorder
        rec.event(change.t_ns, "rig", "speed_kept" if change.kept else "speed_not_kept", change.describe())
        rec.notice(f"t = {change.t_ns / NS:.0f} s: {change.describe()}")

    def _unplanned_brownouts(self, t: int) -> None:
        """A board the simulated supply could not carry (in CC at its current limit)
        lost power: never silently. (A brown-out fault's own boards are recorded by
        the fault; the supply then holds them below their minimum on purpose.)"""
        p = self.parts
        while not p.vb.brownouts.empty():
            try:
                ev = p.vb.brownouts.get_nowait()
            except queue.Empty:
                return
            if p.power.supply_held or ev.board not in p.boards:
                continue
            p.recorder.event(t, "rig", "brownout_unplanned", ev.describe())

    def _feed_jobs(self, t: int) -> None:
        w = self.scenario.workload
        if w.kind != "compute":
            return
        fsw = self.parts.fsw
        counts = fsw.payload.counts()
        want = len(self.parts.boards)
        while counts.get("jobs_queued", 0) < want and (w.jobs == 0 or self._queued < w.jobs):
            params = json.dumps({"steps": w.job_steps, "seed": self._queued + 1})
            fsw.command("queue_job", workload=w.job, params=params, deadline_s=w.deadline_s, verify=w.verify)
            self._queued += 1
            counts["jobs_queued"] = counts.get("jobs_queued", 0) + 1

    # ---- control API -----------------------------------------------------------------
    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the loop's thread at its next second if another thread is
        inside run_until; here and now otherwise."""
        self._need()
        if self._loop_thread is None or self._loop_thread == threading.get_ident():
            with self._loop_lock if self._loop_thread is None else contextlib.nullcontext():
                return fn()
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._requests.put((fn, fut))
        if self._loop_thread is None:  # the loop ended meanwhile: nobody will serve it
            self._serve_requests(block=False)
        return fut.result()

    def _serve_requests(self, block: bool = True) -> None:
        """Do what other threads asked for; while paused, wait here for more."""
        if self._resumed.is_set() and self._requests.empty():  # the common case, once a second
            return
        while True:
            try:
                fn, fut = self._requests.get_nowait()
            except queue.Empty:
                if block and not self._resumed.is_set() and self.stop_reason is None:
                    if self.parts is not None and self.parts.recorder.archive.dirty:
                        self._commit()  # paused: what ran so far is in the file
                    self._resumed.wait(0.05)
                    continue
                return
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    fut.set_exception(exc)

    def inject(self, fault: Mapping[str, Any]) -> list[FaultAction]:
        """Inject a fault now (or at its ``at``, if given and not in the past). ``fault``
        is a table like a scenario file's ``[[fault]]`` (``kind``, ``board`` or
        ``sensor`` or ``wheel``, ``duration``, the kind's parameters). Returns the
        scheduled actions; a bad spec is a :class:`RunError` naming the key."""
        return self._call(lambda: self._inject(fault, "control", ""))

    def _inject(self, fault: Mapping[str, Any], source: str, note: str) -> list[FaultAction]:
        """In the loop's thread: :meth:`inject`'s work (and a scheduled procedure's)."""
        from hil_rig.scenario import _parse_fault

        p = self.parts
        now = p.clock.t_ns
        data = dict(fault)
        data.setdefault("at", "t + 0 s")
        index = len(self.scenario.faults) + self._injected
        try:
            spec = _parse_fault("inject", index, data)
        except ScenarioError as exc:
            raise RunError(str(exc)) from None
        if spec.target is None and spec.kind in fault_handlers.BOARD_FAULTS:
            spec = type(spec)(**{**spec.__dict__, "target": next(iter(p.boards))})
        if spec.kind in fault_handlers.BOARD_FAULTS and spec.target not in p.boards:
            raise RunError(f"inject: board: no board {spec.target!r} in this run "
                           f"(boards: {', '.join(p.boards)})")
        if spec.kind in fault_handlers.LINK_FAULTS and spec.target not in p.proxies:
            raise RunError(f"inject: {spec.kind} on board {spec.target}: its link has no fault proxy "
                           "in this run (a scenario with a link fault on that board sets one up)")
        try:
            t0 = max(resolve_trigger(spec.at, p.events, where="inject: at"), now)
        except FaultScheduleError as exc:
            raise RunError(str(exc)) from None
        params = tuple(sorted(spec.params.items()))
        acts = [FaultAction(t0, 2 * index + 1, "start", spec.kind, spec.target, params, index)]
        if spec.duration is not None:
            t1 = min(t0 + spec.duration.to_ns(p.period_s), p.duration_ns)
            acts.append(FaultAction(t1, 2 * index, "end", spec.kind, spec.target, params, index))
        self._injected += 1
        p.schedule.add(acts)
        for judge in p.recorder.judges:  # judged like the scenario's own faults
            judge.add_faults(acts)
        p.recorder.event(now, source, "fault_injected", f"t = {t0 / NS:.3f} s: {acts[0].describe()}{note}")
        return acts

    def command(self, name: str, **args: Any) -> int:
        """Send a telecommand to the flight software through its own TC path (an
        authenticated packet under the run's key, checked and executed at its next
        1 Hz frame). Returns the packet's anti-replay sequence number."""
        from flight_sw.dictionary import COMMAND_BY_NAME, DictionaryError, check_args

        cmd = COMMAND_BY_NAME.get(name)
        if cmd is None:
            raise RunError(f"command: unknown command {name!r}; known: {', '.join(sorted(COMMAND_BY_NAME))}")
        try:
            check_args(cmd, args)
        except DictionaryError as exc:
            raise RunError(f"command {name}: {exc}") from None

        return self._call(lambda: self._submit_tc(name, args, "control", "tc_sent", ""))

    def _submit_tc(self, name: str, args: Mapping[str, Any], source: str, kind: str, note: str) -> int:
        """In the loop's thread: the TC under the run's key (SPI 1) to the flight
        software, and an event; returns its ARSN. ``Run.command`` and a scenario's
        scheduled commands both come here."""
        from flight_sw.tc import TcSender

        p = self.parts
        if self._tc_sender is None:
            self._tc_sender = TcSender(p.tc_key)
        arsn = self._tc_sender.arsn
        p.fsw.submit_tc(self._tc_sender.build(name, **args))
        p.recorder.event(p.clock.t_ns, source, kind, f"{name} arsn {arsn}{note}")
        return arsn

    def _procedure_io(self) -> Any:
        """What a scenario's procedures drive: this run's own TC path and injection."""
        if self._proc_io is None:
            from hil_rig.run.procedures import ProcedureIO

            p = self.parts
            seen = {"i": 0}

            def accepted() -> set[int]:
                evs = p.fsw.events.events
                out = {e.fields.get("arsn") for e in evs[seen["i"]:]
                       if e.name == "tc_accepted" and e.fields.get("spi") == 1}
                seen["i"] = len(evs)
                return out

            def inject(spec: dict[str, Any], note: str) -> Any:
                try:
                    return self._inject(spec, "rig", f" ({note})")
                except RunError as exc:  # a fault the run cannot apply now: recorded, the procedure goes on
                    p.recorder.event(p.clock.t_ns, "rig", "procedure_step", f"{note}: inject refused: {exc}")
                    return []

            self._proc_io = ProcedureIO(
                send_tc=lambda name, args, note: self._submit_tc(name, args, "rig", "command_sent", note),
                inject=inject, hk=lambda: p.fsw.hk, accepted=accepted,
                event=lambda t, kind, detail: p.recorder.event(t, "rig", kind, detail))
        return self._proc_io

    def pause(self) -> None:
        """Hold the loop at its next simulated second (until :meth:`resume`)."""
        self._need()
        if self._resumed.is_set():
            self._hold()
            self._resumed.clear()

    def resume(self) -> None:
        """Go on after :meth:`pause`; in real time the pace picks up where it stopped."""
        self._resumed.set()

    def _hold(self) -> None:
        """Real time: from now no frame is due (a pause, or no thread in run_until), so
        that the run does not race to catch up afterwards (docs/running.md, "Real time")."""
        with self._hold_lock:
            if self._held_wall is None:
                self._held_wall = time.monotonic()

    def _unhold(self) -> None:
        """In the loop's thread: the pace goes on; every deadline moves by the hold."""
        with self._hold_lock:
            held, self._held_wall = self._held_wall, None
        pacer = self.parts.pacer if self.parts is not None else None
        if pacer is not None and held is not None:
            pacer.shift(time.monotonic() - held)

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    def set_speed(self, speed: float) -> None:
        """Real time × ``speed`` from now on (real-time runs only)."""
        p = self._need()
        if p.pacer is None:
            raise RunError("set_speed: this run is in virtual time (as fast as possible); "
                           "start it with a speed to pace it")
        if isinstance(speed, bool) or not isinstance(speed, int | float) or not speed > 0 or speed != speed:
            raise RunError(f"set_speed: expected a number > 0, got {speed!r}")
        self._call(lambda: p.pacer.set_scale(float(speed), p.clock.t_ns))

    def status(self) -> dict[str, Any]:
        """A live snapshot: simulation time, orbit, sun, SOC, temperatures, mode, board
        states and power, jobs, pause and speed, the beta angle, the thermal zones (the
        bits of HK ``heater_mask``), and each requirement's verdict so far (``verdicts``:
        name, kind, state pass/fail/pending, detail)."""
        p = self._need()
        s = dict(p.recorder.status)
        # in the loop's thread (the judges change there): at its next second if it runs
        pace = p.pacer.lateness if p.pacer is not None else None
        s["verdicts"], pace_now = self._call(lambda: (
            [j.provisional(p.clock.t_ns) for j in p.recorder.judges],
            pace.summary() if pace is not None else None))
        # the orbit's beta angle (rig truth), as the archive has it at the status's second
        s.setdefault("beta_deg", None)
        s["thermal_zones"] = list(p.fsw.cfg.thermal_zones)  # the bits of HK heater_mask, in order
        s.update({
            "t_s": p.clock.t_ns / NS, "duration_s": p.duration_ns / NS, "paused": self.paused,
            "clock": "virtual" if p.pacer is None else "realtime", "speed": None if p.pacer is None else p.pacer.scale,
            "board_power": {n: p.power.state(n) for n in p.boards},
            "stopped": self.stop_reason,
        })
        if pace is not None:
            # the pace so far (summary.json's lateness), and whether the speed is kept now
            s["lateness"] = pace_now
            s.update(speed_kept=pace.keeping, achieved_speed=pace.recent_speed, behind_s=pace.behind_ns / 1e9)
        return s

    def log_event(self, source: str, kind: str, detail: str) -> None:
        """Write an event into the run's event log and archive at the current time
        (a client's own events: the control endpoint's refused clients)."""
        p = self._need()
        self._call(lambda: p.recorder.event(p.clock.t_ns, source, kind, detail))

    def stop(self, reason: str = "stopped") -> None:
        """Stop at the next simulated second (safe from a signal handler or a thread)."""
        self.stop_reason = reason
        self._resumed.set()

    # ---- history (for tests) ----------------------------------------------------------
    def history(self, column: str) -> np.ndarray:
        """A telemetry column so far (the archive, committed when the loop hands back control)."""
        return load_run(self.run_dir)["telemetry"][column]

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
            self._need()
            self.run_until(self.parts.duration_ns)
            failed = self.parts.recorder.archive.failed
            if failed is not None:  # the archive's writer thread failed on the last rows: run_until's
                raise ArchiveError(failed)  # final commit saw it, and left it to the run's end
            aborted = self.stop_reason
        except KeyboardInterrupt:
            aborted = "interrupted"
        except RunError as exc:
            aborted, error = "error", str(exc)
        except (ArchiveError, OSError) as exc:  # a full disk, a run directory gone
            what = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.filename else str(exc)
            try:  # the verdicts and summary.json, if the disk still takes them
                return self._conclude("error", f"run directory {self.run_dir}: {what}")
            except OSError:
                raise exc from None  # it does not: the caller names the first failure
        except Exception as exc:  # noqa: BLE001 - a fault of the rig itself: judged, recorded, closed
            import traceback

            traceback.print_exc(file=sys.stderr)
            aborted, error = "error", f"internal error: {type(exc).__name__}: {exc}"
        return self._conclude(aborted, error)

    def _conclude(self, aborted: str | None, error: str | None) -> RunResult:
        p = self.parts
        assert p is not None
        t_end = p.clock.t_ns
        wall = time.monotonic() - self._wall0
        rec = p.recorder
        sc = self.scenario
        # the bound, from the archive as committed: before the verdicts, which yield_min
        # gives from it, and before close(), which ends the archive
        self._commit()
        run_yield = summary_yield(self.run_dir, sc)
        verdicts = rec.verdicts(t_end, run_yield)
        if rec.archive.db is not None and rec.archive.failed is None:
            if p.procedures.active:
                p.procedures.finish(t_end, self._procedure_io())
            for v in verdicts:
                rec.event(t_end, "judge", "verdict", f"{v.name}: {'PASS' if v.passed else 'FAIL'}: {v.detail}")
            if aborted:
                rec.event(t_end, "rig", "run_aborted", f"{aborted}{': ' + error if error else ''}")
            rec.event(t_end, "rig", "run_end", f"t = {t_end / NS:.0f} s")
        rec.close_progress(t_end)
        stats = {k: v for k, v in p.fsw.stats().items() if isinstance(v, int | float | str)}
        self.close()
        boards = boards_text(p.boards)
        props = {"scenario": sc.name, "seed": str(sc.seed), "bench": p.bench_label, "boards": boards}
        pace = p.pacer.lateness.summary() if p.pacer is not None else None
        if pace is not None:  # real time: whether the speed was kept, in the JUnit file too
            props.update(speed_kept=str(pace["speed_kept"]).lower(), requested_speed=f"{pace['requested_speed']:g}",
                         achieved_speed=str(pace["achieved_speed"]))
        summary = write_summary(
            self.run_dir / "summary.json", verdicts, scenario=sc.name, seed=sc.seed,
            sim_seconds=t_end / NS, wall_seconds=round(wall, 3),
            speedup=round((t_end / NS) / wall, 1) if wall > 0 else None,
            clock="virtual" if sc.speed is None else f"realtime x {sc.speed:g}",
            lateness=pace, speed_kept=None if pace is None else pace["speed_kept"],
            achieved_speed=None if pace is None else pace["achieved_speed"], bench=p.bench_label, boards=boards, run_dir=str(self.run_dir),
            aborted=aborted, error=error, rt_priority=self.rt_applied, fsw=stats,
            safe_state_errors=list(p.guard.errors or []), work=rec.work_summary(),
            **{"yield": run_yield},
        )
        write_junit(self.run_dir / "junit.xml", sc.name, verdicts, t_end / NS, props, error=error or aborted)
        self._write_report(summary, p.pacer)
        self.finished = RunResult(self.run_dir, bool(summary["passed"]), verdicts, summary, aborted)
        return self.finished

    def _write_report(self, summary: dict[str, Any], pacer: Any) -> None:
        """ctrf.json, lateness.json in real time, and report.html (``RunOptions.report``).
        A failure here is a line on stderr and in events.log; it never changes the
        run's result, and the files written before stay as they are."""
        try:
            from hil_rig.report import write_ctrf, write_lateness, write_report

            write_ctrf(self.run_dir, summary)
            if pacer is not None:
                write_lateness(self.run_dir, pacer.lateness)
            if self.options.report:
                write_report([self.run_dir])
        except Exception as exc:  # noqa: BLE001 - a report that cannot be drawn must not fail the run
            msg = f"could not write the report: {type(exc).__name__}: {exc}"
            print(f"hil run: {msg}", file=sys.stderr)
            try:
                with (self.run_dir / "events.log").open("a", encoding="utf-8") as fh:
                    fh.write(f"{self.parts.clock.t_ns / NS:12.3f} {'rig':<5} {'report_failed':<24} {msg}\n")
            except OSError:
                pass

    def close(self) -> None:
        """Safe state, then everything stopped (idempotent). The archive stays readable."""
        self._resumed.set()
        close_all(self._closers)


def run_scenario(scenario: Scenario, *, bench: str | os.PathLike[str] | None = None,
                 out: str | os.PathLike[str] | None = None, progress: str | Progress | None = None,
                 handle_sigterm: bool = False, rt_priority: int | None = DEFAULT_RT_PRIORITY) -> RunResult:
    """Run a scenario to its end and return the result (``hil run``)."""
    run = Run(scenario, bench=bench, out=out, rt_priority=rt_priority)
    if isinstance(progress, Progress):
        run.progress = progress
    old = None
    if handle_sigterm:
        def _on_term(signum: int, frame: Any) -> None:
            run.stop("SIGTERM")
            if not run.started:
                raise KeyboardInterrupt  # in set-up nothing looks at stop(): stop it here

        old = signal.signal(signal.SIGTERM, _on_term)
    try:
        run.start()
        if progress == "auto":
            run.parts.recorder.progress = Progress(sys.stderr, run.duration_ns)
        return run.finish()
    finally:
        run.close()
        if old is not None:
            signal.signal(signal.SIGTERM, old)
