"""The virtual bench: simulated instruments and emulated boards, wired as a bench file says.

One process hosts it all: the simulated instruments are real pymodbus servers
in threads (Modbus TCP on 127.0.0.1, ephemeral ports; Modbus RTU on ptys), and
every emulated board is a child process (``firmware_bridge.emulator``) on a pty
that this process owns, so the board's serial path stays the same across power
cycles.

Power is physical: a board runs while its relay channel is on *and* its supply
delivers at least the board's minimum voltage. When that stops, the board's
process is killed (SIGKILL: power lost, state lost); when it comes back, the
board boots again after its ``boot_time_s`` of wall time on the real clock; on the
virtual clock its process starts at once and the boot time passes in simulation
time (the run holds the board booting). The supply's measured current is
the boards' draw (``power_w`` from each emulator, ``idle_power_w`` while it
boots) divided by the output voltage; with ``as_of_ns`` set, the draw each
board reported as of that simulation time.

A QEMU arm64 board (kind ``qemu-arm64``, :mod:`hil_rig.boards.qemu`) is wired the
same way: its UART is a pty this process owns, power on starts its QEMU process at
once (its Linux boot is its boot time), power off kills it, its disk persists for
the bench's life. Its draw is its QEMU process's host CPU use mapped between its
kind's idle and peak power. A QEMU process that dies by itself is a power loss
(``power_losses``), never a hang.

>>> # with VirtualBench(load_bench()) as vb:
>>> #     vb.endpoints  -> {"boards": {"jetson0": {"serial": "/dev/pts/3", ...}}, "instruments": {...}}
>>> #     supplies, switches = open_instruments(vb.bench)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import queue
import shutil
import tempfile
import threading
import time
import tty
from collections.abc import Callable
from typing import Any

from hil_rig.benchfile import Bench, BoardSpec, load_bench
from hil_rig.instruments.sim import SimHost, SimRelayBoard, SimSupply
from hil_rig.instruments.url import ModbusEndpoint

_BOOT_POLL_S = 0.02  # supervisor wake-up while a board is booting ...
_IDLE_POLL_S = 0.25  # ... and otherwise (instrument changes wake it at once)

log = logging.getLogger("hil_rig.virtual_bench")


@dataclasses.dataclass(frozen=True)
class BrownOut:
    """A board's relay and supply output are on, but the supply holds it below its
    minimum voltage: typically the supply is in CC at its current limit. One per
    onset (a board that browns out while running, or cannot come up at all)."""

    board: str
    supply: str
    voltage_v: float  # at the supply's output
    current_a: float
    mode: str  # "cv" or "cc"
    current_limit_a: float
    min_voltage_v: float
    was_running: bool  # its process was killed (state lost); False: it never came up

    def describe(self) -> str:
        what = "browned out (power lost, state lost)" if self.was_running else "cannot power up"
        return (f"board {self.board} {what}: supply {self.supply} gives {self.voltage_v:.2f} V at "
                f"{self.current_a:.2f} A ({self.mode.upper()}, current limit {self.current_limit_a:.2f} A), "
                f"below the board's {self.min_voltage_v:.2f} V minimum")

    def as_dict(self) -> dict[str, Any]:
        return {"event": "brownout", **dataclasses.asdict(self), "detail": self.describe()}


class _Board:
    """One emulated board: its pty, its process and its power state."""

    def __init__(self, spec: BoardSpec, seed: int, clock: str, test_mode: bool) -> None:
        self.spec = spec
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.seed, self.clock, self.test_mode = seed, clock, test_mode
        self.proc: Any = None  # firmware_bridge.emulator.EmulatorProcess
        self.ordered_replies = False  # set before a boot: its link has a fault proxy
        self.powered = False  # electrically powered (relay on and voltage present)
        self.browned_out = False  # relay and supply on, voltage below its minimum
        self.boot_at: float | None = None
        self.boots = 0
        self.power_losses = 0
        # the board's "disk": job checkpoints there survive a power cycle, as on
        # a real board's eMMC; RAM state (running jobs, throttle) does not
        self.disk = tempfile.mkdtemp(prefix=f"orbit-hil-{spec.name}-disk-")

    def draw_w(self, as_of_ns: int | None = None) -> float:
        if not self.powered:
            return 0.0
        if self.proc is not None and self.proc.alive:
            p = self.proc.power_w if as_of_ns is None else self.proc.power_w_at(as_of_ns)
            if p is not None:
                return float(p)
        return self.spec.idle_power_w

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.alive

    @property
    def started(self) -> bool:
        """Its process was started since it was last powered off (it may have died since)."""
        return self.proc is not None

    def start(self) -> None:
        from firmware_bridge.emulator import EmulatorProcess

        proc = EmulatorProcess(
            self.master, kind=self.spec.emulates, name=self.spec.name, seed=self.seed,
            test_mode=self.test_mode, clock=self.clock, state_dir=self.disk,
            ordered_replies=self.ordered_replies,
        )
        proc.start()  # returns once the board reported ready (with its power draw)
        self.proc = proc
        self.boots += 1

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # SIGKILL: power lost
            self.proc.stop()  # the process is gone already: this only releases its status pipe
            self.proc = None

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.disk, ignore_errors=True)


def qemu_image() -> Any:
    """The cached QEMU board image, verified (hil_rig.boards.image.ImageError if none)."""
    from hil_rig.boards.image import ImageError, find_image
    from hil_rig.boards.qemu import qemu_missing

    why = qemu_missing()
    if why:
        raise ImageError(f"qemu-arm64 boards cannot run here: {why}")
    return find_image()


class _QemuSlot:
    """One QEMU arm64 board: its pty (the slave is the board's serial path) and its QEMU process."""

    def __init__(self, spec: BoardSpec, image: Any, workdir: str, test_mode: bool) -> None:
        from firmware_bridge.ratings import rating
        from hil_rig.boards.qemu import QemuBoard

        self.spec = spec
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.workdir = workdir
        self.qemu = QemuBoard(spec.name, image, self.master, pathlib.Path(workdir),
                              cpus=spec.cpus, memory_mb=spec.memory_mb, test_mode=test_mode)
        self.rating = rating(spec.emulates)
        self.proc = None  # (no emulator process)
        self.ordered_replies = False
        self.powered = False
        self.browned_out = False
        self.boot_at: float | None = None
        self.boots = 0
        self.power_losses = 0
        self.dead_reported = False

    def draw_w(self, as_of_ns: int | None = None) -> float:
        if not self.powered or not self.qemu.alive:
            return 0.0
        r = self.rating
        return r.idle_w + (r.peak_w - r.idle_w) * self.qemu.load()

    @property
    def running(self) -> bool:
        return self.qemu.alive

    @property
    def started(self) -> bool:
        return self.qemu.proc is not None

    def poll(self) -> None:
        self.qemu.sample_cpu()

    def start(self) -> None:
        self.qemu.power_on()
        self.boots += 1
        self.dead_reported = False

    def kill(self) -> None:
        self.qemu.power_off()

    def booted(self) -> bool:
        return self.qemu.booted()

    def close(self) -> None:
        self.qemu.close()
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class PowerLoss:
    """A board's QEMU process died with its power on (a crash, a kernel panic): power lost."""

    board: str
    detail: str


class VirtualBench:
    """Starts the simulated parts of a bench; use as a context manager.

    ``bench`` (after start) is the bench description pointing at the started
    endpoints, ``endpoints`` the same as a JSON-able dict. ``pace_rtu`` makes
    the RTU simulators answer at wire speed for their baud rate.
    """

    def __init__(
        self,
        bench: Bench | None = None,
        *,
        seed: int = 0,
        clock: str = "real",
        test_mode: bool = False,
        pace_rtu: bool = False,
        emulate_boards: bool = True,
    ) -> None:
        self.spec = bench if bench is not None else load_bench(None)
        self.seed, self.clock, self.test_mode = seed, clock, test_mode
        self.pace_rtu = pace_rtu
        self.emulate_boards = emulate_boards
        self.sim_supplies: dict[str, SimSupply] = {}
        self.sim_switches: dict[str, SimRelayBoard] = {}
        self.boards: dict[str, _Board | _QemuSlot] = {}
        #: :class:`PowerLoss` events of QEMU boards whose process died by itself
        self.power_losses: queue.SimpleQueue[PowerLoss] = queue.SimpleQueue()
        self._hosts: list[SimHost] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self.bench: Bench = self.spec
        self.errors: list[str] = []
        #: :class:`BrownOut` events, in order (the reader drains it: ``hil bench up`` prints them)
        self.brownouts: queue.SimpleQueue[BrownOut] = queue.SimpleQueue()
        #: the simulation time the supplies measure at (a runner in virtual time sets it):
        #: each board's draw is then the one it reported as of that time, even when its
        #: virtual clock has already been synced ahead of it
        self.as_of_ns: Callable[[], int] | None = None
        #: called with the pid of each emulated board's process as it starts (the run
        #: gives its agent the loop's real-time priority: docs/running.md, "Performance")
        self.on_board_start: Callable[[int], object] | None = None

    # -- wiring ---------------------------------------------------------------
    def _relay_on(self, b: BoardSpec) -> bool:
        if b.switch is None:
            return True
        sw = self.sim_switches.get(b.switch)
        return True if sw is None else sw.states()[b.channel or 0]

    def _fed(self, supply: str) -> list[_Board | _QemuSlot]:
        """The boards ``supply`` feeds."""
        return [board for board in self.boards.values() if board.spec.supply == supply]

    def _as_of(self) -> int | None:
        return self.as_of_ns() if self.as_of_ns is not None else None

    def _load_fn(self, supply: str):  # type: ignore[no-untyped-def]
        def load(volts: float) -> float:
            if volts <= 0:
                return 0.0
            amps = 0.0
            as_of = self._as_of()
            for board in self._fed(supply):
                b = board.spec
                if self._relay_on(b) and volts >= b.min_voltage_v:
                    amps += (board.draw_w(as_of) if board.powered else b.idle_power_w) / volts
            return amps

        return load

    def supply_inputs(self, supply: str) -> tuple | None:
        """Everything the simulated ``supply``'s reading depends on now: its settings,
        and for each board it feeds the relay, the power state and the draw, as its
        load function would read them (at ``as_of_ns``). Equal tuples, equal readings,
        so a reader may keep the last one (the power loop in virtual time: most of
        its reads would return the last reading again). None for a supply not
        simulated."""
        sim = self.sim_supplies.get(supply)
        if sim is None:
            return None
        as_of = self._as_of()
        boards = tuple((board.spec.name, self._relay_on(board.spec), board.powered, board.draw_w(as_of))
                       for board in self._fed(supply))
        return sim.settings(), boards

    def _supply_ok(self, b: BoardSpec) -> bool:
        return self._supply_check(b)[0]

    def _supply_check(self, b: BoardSpec) -> tuple[bool, Any]:
        """(the supply powers the board, the supply's state or None)."""
        if b.supply is None:
            return True, None
        sim = self.sim_supplies.get(b.supply)
        if sim is None:
            return True, None
        st = sim.state()
        return st.output_on and st.voltage_v >= b.min_voltage_v, st

    def _notify(self) -> None:
        self._wake.set()

    # -- life cycle -----------------------------------------------------------
    def start(self) -> VirtualBench:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        urls: dict[str, ModbusEndpoint] = {}
        tcp_host: SimHost | None = None
        for spec in self.spec.instruments:
            if not spec.simulated:
                continue
            ep = spec.endpoint
            if spec.kind == "supply":
                assert spec.profile is not None and spec.model is not None
                sim: SimSupply | SimRelayBoard = SimSupply(
                    spec.profile, spec.model, name=spec.name, unit=ep.unit,
                    load=self._load_fn(spec.name), on_change=self._notify,
                )
                self.sim_supplies[spec.name] = sim  # type: ignore[assignment]
            else:
                sim = SimRelayBoard(name=spec.name, unit=ep.unit, channels=spec.channels, on_change=self._notify)
                self.sim_switches[spec.name] = sim
            if ep.transport == "sim-tcp":
                if tcp_host is None:
                    tcp_host = SimHost("modbus-tcp")
                    self._hosts.append(tcp_host)
                urls[spec.name] = tcp_host.serve_tcp(sim.device(), unit=ep.unit)
            else:
                host = SimHost(f"modbus-rtu-{spec.name}")  # one loop per RTU line
                self._hosts.append(host)
                urls[spec.name] = host.serve_rtu(sim.device(), unit=ep.unit, baud=ep.baud, pace=self.pace_rtu)
        serials: dict[str, str] = {}
        if self.emulate_boards:
            image = None
            for k, b in enumerate(self.spec.boards):
                if b.emulated:
                    board: _Board | _QemuSlot = _Board(b, self.seed + k, self.clock, self.test_mode)
                elif b.qemu:
                    if image is None:
                        image = qemu_image()  # an ImageError names the command that builds it
                    board = _QemuSlot(b, image, tempfile.mkdtemp(prefix=f"orbit-hil-{b.name}-qemu-"),
                                      self.test_mode)
                else:
                    continue
                self.boards[b.name] = board
                serials[b.name] = board.path
        self.bench = self.spec.resolved(urls, serials)
        self._thread = threading.Thread(target=self._supervise, name="hil-virtual-bench", daemon=True)
        self._thread.start()
        self._wake.set()

    def _supervise(self) -> None:
        while not self._stop.is_set():
            # The instruments wake it on every change; between changes it only has
            # boot timers to keep (and status lines to drain), so it sleeps longer
            # then: it shares the interpreter with the run's loop.
            with self._lock:
                booting = [b.boot_at for b in self.boards.values() if b.boot_at is not None]
            wait = _BOOT_POLL_S if booting else _IDLE_POLL_S
            if booting:
                wait = max(0.0, min(wait, min(booting) - time.monotonic()))
            self._wake.wait(wait)
            self._wake.clear()
            try:
                self.reconcile()
            except Exception as exc:  # noqa: BLE001 - keep supervising; report
                msg = f"virtual bench: {type(exc).__name__}: {exc}"
                log.error(msg)
                self.errors.append(msg)
                time.sleep(0.1)

    def reconcile(self) -> None:
        """Apply the instruments' state to the boards' power (called continuously)."""
        now = time.monotonic()
        with self._lock:
            for board in self.boards.values():
                if self._stop.is_set():
                    return
                b = board.spec
                relay = self._relay_on(b)
                ok, st = self._supply_check(b)
                want = relay and ok
                brown = relay and st is not None and st.output_on and not ok
                if brown and not board.browned_out:
                    ev = BrownOut(b.name, b.supply or "", st.voltage_v, st.current_a, st.mode, st.current_set_a,
                                  b.min_voltage_v, board.running)
                    log.info("%s", ev.describe())
                    self.brownouts.put(ev)
                board.browned_out = brown
                if isinstance(board, _QemuSlot):
                    board.poll()
                    if board.powered and board.qemu.died and not board.dead_reported:
                        board.dead_reported = True
                        board.power_losses += 1
                        ev = PowerLoss(b.name, f"board {b.name}: its QEMU process died (exit "
                                               f"{board.qemu.proc.returncode}): power lost\n{board.qemu.console_tail(5)}")
                        log.warning("%s", ev.detail)
                        self.power_losses.put(ev)
                elif board.proc is not None:
                    board.proc.poll_status()
                if want and not board.powered:
                    board.powered = True
                    # A QEMU board starts at once: its Linux boot is its boot time. So does an
                    # emulated board on the virtual clock: its boot time passes in simulation
                    # time (the run's BoardPower holds it booting that long), and a wall-clock
                    # delay as well would only stall the run.
                    at_once = isinstance(board, _QemuSlot) or self.clock == "virtual"
                    board.boot_at = now + (0.0 if at_once else b.boot_time_s)
                    log.info("board %s: power on, boots in %.2f s%s", b.name, b.boot_time_s,
                             " of simulation time" if self.clock == "virtual" and not isinstance(board, _QemuSlot)
                             else "")
                elif not want and board.powered:
                    board.powered = False
                    board.boot_at = None
                    board.power_losses += 1
                    log.info("board %s: power lost", b.name)
                    board.kill()
                if board.powered and not board.started and board.boot_at is not None and now >= board.boot_at:
                    board.boot_at = None
                    board.start()
                    hook = self.on_board_start
                    if hook is not None and isinstance(board, _Board) and board.proc is not None:
                        hook(board.proc.pid)
                    log.info("board %s: started (pid %s)", b.name,
                             board.qemu.pid if isinstance(board, _QemuSlot) else board.proc.pid)

    def close(self) -> None:
        """Stop the boards and the servers; idempotent."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None
        with self._lock:
            for board in self.boards.values():
                board.close()
        for host in self._hosts:
            host.close()
        self._hosts.clear()

    def __enter__(self) -> VirtualBench:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- views --------------------------------------------------------------
    @property
    def endpoints(self) -> dict[str, Any]:
        return self.bench.endpoints()

    def wake(self) -> None:
        """Apply the instruments' state to the boards now, not at the next poll."""
        self._wake.set()

    def board_pids(self) -> list[int]:
        """The processes of the emulated boards that run now (not QEMU boards)."""
        with self._lock:
            return [b.proc.pid for b in self.boards.values()
                    if isinstance(b, _Board) and b.running and b.proc.pid is not None]

    def board_booted(self, name: str) -> bool:
        """The board's emulator runs and has reported its first status line (a QEMU
        board: its agent's start line is on its console)."""
        board = self.boards[name]
        if isinstance(board, _QemuSlot):
            return board.booted()
        proc = board.proc
        return proc is not None and proc.alive and proc.last_status is not None

    def board_died(self, name: str) -> bool:
        """A QEMU board's process ended by itself while powered (a power loss the rig did not make)."""
        board = self.boards[name]
        return isinstance(board, _QemuSlot) and board.powered and board.qemu.died

    def board_log_tail(self, name: str, lines: int = 20) -> str:
        """The end of a QEMU board's console log and QEMU's stderr ('' for an emulated board)."""
        board = self.boards[name]
        return board.qemu.console_tail(lines) if isinstance(board, _QemuSlot) else ""

    def board_running(self, name: str) -> bool:
        return self.boards[name].running

    def wait_board(self, name: str, running: bool, timeout_s: float = 30.0) -> bool:
        """Wait until the board's process is (not) running; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.boards[name].running == running:
                return True
            time.sleep(0.01)
        return False
