"""Board emulator: the real agent code with a simulated board, behind a pty.

Run as its own process (the virtual bench does this through
:class:`EmulatorProcess`)::

    python -m firmware_bridge.emulator --fd 5 --status-fd 7 --kind jetson --name b0 \\
        --seed 1 --test-mode --clock virtual

``--fd N`` is an inherited descriptor of the master side of a pty pair whose
owner keeps it open across emulator restarts (the UART stays when the board
power-cycles); ``--port PATH`` opens a serial path with pyserial instead.
``--status-fd M`` receives JSON lines ``{"name", "kind", "pid", "power_w",
"temp_k", "t_ns", "ready"}`` at boot, at once whenever the electrical power
changes, and at least every ``STATUS_HEARTBEAT_S``, so a simulated supply can
draw the board's real load.

Simulated physics (per board kind, see ``KINDS``; the electrical figures and a job's
throughput are the kind's ratings, ``firmware_bridge.ratings``):

- power ``P = idle_w + (max_w - idle_w) * load * throttle`` (load is 1 while a
  job computes, else 0);
- jobs run the real workloads with their size params (n, width, batch) capped
  at ``--max-job-dim`` (64): job_status reports the params actually used;
- one-node thermal RC model ``C dT/dt = P - (T - T_amb) / R``, integrated
  exactly for piecewise-constant power; zone temperatures are fixed offsets
  from the node; rails split ``P`` at fixed voltages.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tty

from .agent import Agent, FdTransport, RealClock, SerialTransport, VirtualClock
from .ratings import RATINGS

EMULATOR_MAX_JOB_DIM = 64  # jobs on an emulated board: matrices at most 64 x 64
STATUS_HEARTBEAT_S = 1.0  # a status line at least this often (real time)
AMBIENT_K = 298.15

KINDS = {
    "jetson": {
        "model": f"{RATINGS['jetson'].model} (emulated)",
        "idle_w": RATINGS["jetson"].idle_w, "max_w": RATINGS["jetson"].peak_w, "r_k_w": 2.2, "c_j_k": 60.0,
        # a job's throughput at throttle 1 (FLOP per simulated second): the kind's rating
        "job_flops_s": RATINGS["jetson"].rated_flops,
        # zone name -> offset from the thermal node (K) per unit of load
        "zones": {"cpu-thermal": 1.5, "gpu-thermal": 0.5, "cv0-thermal": 0.0,
                  "soc0-thermal": 0.8, "tj-thermal": 2.0},
        # rail name -> (voltage V, share of total power)
        "rails": {"VDD_IN": (5.0, 1.0), "VDD_CPU_GPU_CV": (5.0, 0.45), "VDD_SOC": (5.0, 0.3)},
        "mem_total_kib": 7_620_000,
    },
    "rpi": {
        "model": f"{RATINGS['rpi'].model} (emulated)",
        "idle_w": RATINGS["rpi"].idle_w, "max_w": RATINGS["rpi"].peak_w, "r_k_w": 7.0, "c_j_k": 20.0,
        "job_flops_s": RATINGS["rpi"].rated_flops,
        "zones": {"cpu-thermal": 0.0},
        "rails": {},
        "mem_total_kib": 3_884_000,
    },
}


class SimBoard:
    """Simulated sensors of one board kind."""

    def __init__(self, kind: str = "jetson", seed: int = 0, ambient_k: float = AMBIENT_K) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown board kind {kind!r}; expected one of {sorted(KINDS)}")
        self.cfg = KINDS[kind]
        self.kind = kind
        self.model = self.cfg["model"]
        self.temp_names = list(self.cfg["zones"])
        self.rail_names = list(self.cfg["rails"])
        self._zones = tuple(self.cfg["zones"].items())  # (name, offset K per unit of load)
        self._rails = tuple(self.cfg["rails"].items())  # (name, (voltage V, share of power))
        self.ambient_k = ambient_k
        self.temp_k = ambient_k + self.cfg["idle_w"] * self.cfg["r_k_w"]  # idle steady state
        self.load = 0.0
        self.throttle = 1.0
        self.t_ns: int | None = None
        self.seed = seed
        # the kind's figures the physics uses at every tick, looked up once
        self._idle_w, self._span_w = self.cfg["idle_w"], self.cfg["max_w"] - self.cfg["idle_w"]
        self._r_k_w, self._tau_s = self.cfg["r_k_w"], self.cfg["r_k_w"] * self.cfg["c_j_k"]
        self._read: tuple[tuple, dict] | None = None  # (state it was read in, reading)
        self._rails_at: tuple[float, dict] | None = None  # (power, the rails at that power)

    def power_w(self, load: float | None = None, throttle: float | None = None) -> float:
        load = self.load if load is None else load
        throttle = self.throttle if throttle is None else throttle
        return self._idle_w + self._span_w * load * throttle

    def advance(self, now_ns: int, load: float, throttle: float) -> None:
        """Integrate the thermal node to ``now_ns`` with the power held since the last call."""
        if self.t_ns is not None and now_ns > self.t_ns:
            dt = (now_ns - self.t_ns) * 1e-9
            t_ss = self.ambient_k + self.power_w() * self._r_k_w
            self.temp_k = t_ss + (self.temp_k - t_ss) * math.exp(-dt / self._tau_s)
        self.t_ns = now_ns if self.t_ns is None else max(self.t_ns, now_ns)
        self.load, self.throttle = load, throttle

    def read(self, now_ns: int) -> dict:
        key = (self.temp_k, self.load, self.throttle)
        if self._read is not None and self._read[0] == key:
            return self._read[1]  # nothing changed: the same reading, not built again
        out = self._reading()
        self._read = (key, out)
        return out

    def _reading(self) -> dict:
        p = self.power_w()
        lt = self.load * self.throttle
        node = self.temp_k
        temps = {n: round(node + off * lt, 3) for n, off in self._zones}
        if self._rails_at is None or self._rails_at[0] != p:  # the rails follow the power only
            self._rails_at = (p, {n: (v, round(p * share / v, 3)) for n, (v, share) in self._rails})
        total = self.cfg["mem_total_kib"]
        return {
            "temps_k": temps,
            "rails": self._rails_at[1],  # (shared by readings at one power: nobody changes a reading)
            "cpu_load": 0.02 + 0.9 * lt,
            "mem_total_kib": total,
            "mem_available_kib": int(total * (0.8 - 0.2 * self.load)),
            "power_w": p,
            "pi_throttled": 0,
        }


class StatusWriter:
    """JSON lines to the bench: power changes, rate-limited, never blocking the agent."""

    def __init__(self, fd: int, name: str, kind: str) -> None:
        self.fd, self.name, self.kind = fd, name, kind
        os.set_blocking(fd, False)
        self.last_sent: float | None = None
        self._power: tuple[float, float] | None = None  # (board power, rounded as sent)
        self.last_mono = 0.0
        self.pending = False
        self._head = json.dumps({"name": name, "kind": kind, "pid": os.getpid()})[:-1]

    def write(self, agent: Agent, force: bool = False) -> None:
        board = agent.board
        raw = board.power_w()
        if self._power is None or self._power[0] != raw:  # the same power, rounded once
            self._power = (raw, round(raw, 6))
        p = self._power[1]
        now = time.monotonic()
        if p != self.last_sent:
            self.pending = True  # a change goes out at once (changes follow commands)
        if not (self.pending or force or now - self.last_mono >= STATUS_HEARTBEAT_S):
            return
        # json.dumps of {"name", "kind", "pid", "power_w", "temp_k", "t_ns", "ready": true},
        # the same text, with the fixed part encoded once (a line per time sync)
        line = (f'{self._head}, "power_w": {json.dumps(p)}, "temp_k": {json.dumps(round(board.temp_k, 3))}, '
                f'"t_ns": {int(agent.clock.now_ns())}, "ready": true}}\n')
        try:
            os.write(self.fd, line.encode())
        except BrokenPipeError:
            # Nobody holds the read end any more: the bench that powers this board
            # is gone (even SIGKILLed). A board without power does not run on.
            print(f"emulator {self.name}: bench status pipe closed; powering off",
                  file=sys.stderr)
            agent.running = False
            return
        except (BlockingIOError, OSError):
            return  # the bench is not reading; the next change retries
        self.last_sent, self.last_mono, self.pending = p, now, False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m firmware_bridge.emulator",
                                 description="orbit-hil board emulator (agent + simulated board)")
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--fd", type=int, help="inherited fd of the pty master")
    where.add_argument("--port", help="serial path or pyserial URL to open instead")
    ap.add_argument("--baud", type=int, default=921600)
    ap.add_argument("--status-fd", type=int, default=None)
    ap.add_argument("--kind", choices=sorted(KINDS), default="jetson")
    ap.add_argument("--name", default="emulated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-mode", action="store_true")
    ap.add_argument("--ordered-replies", action="store_true",
                    help="virtual clock: replies in command order, whatever the job workers' timing "
                         "(for a link with faults: see Agent._holding)")
    ap.add_argument("--clock", choices=["virtual", "real"], default="real")
    ap.add_argument("--state-dir", default=None, help="job checkpoints (survive a power cycle)")
    ap.add_argument("--scratch-state-dir", action="store_true",
                    help="remove --state-dir at exit (its spawner made it for this power-on only)")
    ap.add_argument("--max-job-dim", type=int, default=EMULATOR_MAX_JOB_DIM,
                    help="cap of the n/width/batch job params: smaller, still real, compute")
    a = ap.parse_args(argv)
    if a.max_job_dim < 2:
        ap.error(f"--max-job-dim must be at least 2, got {a.max_job_dim}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    transport = FdTransport(a.fd) if a.fd is not None else SerialTransport(a.port, a.baud)
    board = SimBoard(a.kind, a.seed)
    status = StatusWriter(a.status_fd, a.name, a.kind) if a.status_fd is not None else None
    # a disk for this power-on only, removed at exit (a SIGKILL leaves it to the spawner)
    if a.scratch_state_dir and not a.state_dir:
        ap.error("--scratch-state-dir needs --state-dir")
    scratch = a.state_dir if a.scratch_state_dir else (
        None if a.state_dir else tempfile.mkdtemp(prefix="orbit-hil-board-"))
    try:
        agent = Agent(transport, board, clock=VirtualClock() if a.clock == "virtual" else RealClock(),
                      name=a.name, test_mode=a.test_mode, state_dir=a.state_dir or scratch,
                      max_job_dim=a.max_job_dim, job_flops_s=KINDS[a.kind]["job_flops_s"], seed=a.seed,
                      ordered_replies=a.ordered_replies,
                      on_tick=(lambda ag: status.write(ag)) if status else None)
        agent.jobs.wait_ready()  # warm workers before "ready": a first job never waits
        if status:
            agent._tick()
            status.write(agent, force=True)
        agent.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


# --- helpers for the side that spawns emulators -------------------------------------


def open_pty() -> tuple[int, str]:
    """A pty pair in raw mode (no echo): (master fd, slave path). The slave fd is closed."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    return master, path


class EmulatorProcess:
    """One emulated board as a child process on ``master_fd`` (kept open by the caller)."""

    def __init__(self, master_fd: int, kind: str = "jetson", name: str = "emulated", seed: int = 0,
                 test_mode: bool = False, clock: str = "real", status: bool = True,
                 state_dir: str | None = None, ordered_replies: bool = False) -> None:
        self.master_fd, self.kind, self.name, self.seed = master_fd, kind, name, seed
        self.test_mode, self.clock, self.status, self.state_dir = test_mode, clock, status, state_dir
        self.ordered_replies = ordered_replies
        self.proc: subprocess.Popen | None = None
        self._power_w: float | None = None
        self._status_lock = threading.RLock()
        self.last_status: dict | None = None
        self._status_r: int | None = None
        self._buf = b""
        self._power_hist: collections.deque[tuple[int, float]] = collections.deque(maxlen=64)
        self._scratch: str | None = None  # no state_dir: this power-on's disk, removed at power-off

    def start(self, ready_timeout_s: float = 30.0) -> EmulatorProcess:
        if self.alive:
            raise RuntimeError(f"emulator {self.name} is already running (pid {self.pid})")
        cmd = [sys.executable, "-m", "firmware_bridge.emulator", "--fd", str(self.master_fd),
               "--kind", self.kind, "--name", self.name, "--seed", str(self.seed),
               "--clock", self.clock]
        if self.test_mode:
            cmd.append("--test-mode")
        if self.ordered_replies:
            cmd.append("--ordered-replies")
        state_dir = self.state_dir
        if not state_dir:  # a board without persistent storage: an empty disk at every power-on
            self._drop_scratch()
            state_dir = self._scratch = tempfile.mkdtemp(prefix="orbit-hil-board-")
            cmd.append("--scratch-state-dir")  # it removes it itself if it outlives us
        cmd += ["--state-dir", state_dir]
        # the status pipe also tells us when the board is ready, so it is always there;
        # ``status=False`` only means nobody is expected to read it (lines are dropped)
        self._close_status()
        self._status_r, w = os.pipe()
        cmd += ["--status-fd", str(w)]
        fds = [self.master_fd, w]
        env = dict(os.environ)
        pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = pkg_parent + os.pathsep + env.get("PYTHONPATH", "")
        # its own process group: the board's job workers are in it too, so a power
        # loss (kill) takes the whole board down at once, frozen workers included
        self.proc = subprocess.Popen(cmd, pass_fds=fds, env=env, start_new_session=True)
        os.close(w)
        os.set_blocking(self._status_r, False)
        deadline = time.monotonic() + ready_timeout_s
        while self.last_status is None:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.kill()
                raise RuntimeError(f"emulator {self.name} did not report ready within "
                                   f"{ready_timeout_s} s (exit code {self.proc.poll()})")
            select.select([self._status_r], [], [], 0.1)
            self.poll_status()
        return self

    @property
    def power_w(self) -> float | None:
        """The board's draw as last reported, reading pending status lines first.

        The emulator writes a changed power before it replies to the command that
        changed it, so a reader that got the reply sees the new power here: the
        value does not depend on when a supervising thread last polled."""
        self.poll_status()
        return self._power_w

    def power_w_at(self, t_ns: int) -> float | None:
        """The draw the board reported as of its clock time ``t_ns``: the last status
        line stamped at or before it. For a bench whose boards' virtual clocks may run
        ahead of it (a time sync in flight), so that what it reads at ``t_ns`` does not
        depend on how far a board has got."""
        with self._status_lock:
            self._poll_status()
            for t, p in reversed(self._power_hist):
                if t <= t_ns:
                    return p
            return self._power_hist[0][1] if self._power_hist else self._power_w

    def poll_status(self) -> list[dict]:
        """Read status lines reported since the last call (updates ``power_w``)."""
        with self._status_lock:
            return self._poll_status()

    def _poll_status(self) -> list[dict]:
        if self._status_r is None:
            return []
        try:
            while True:
                chunk = os.read(self._status_r, 65536)
                if not chunk:
                    break
                self._buf += chunk
        except BlockingIOError:
            pass
        except OSError:
            return []
        out = []
        *lines, self._buf = self._buf.split(b"\n")
        for ln in lines:
            try:
                msg = json.loads(ln)
            except ValueError:
                continue
            out.append(msg)
            self.last_status = msg
            self._power_w = msg.get("power_w", self._power_w)
            if isinstance(msg.get("t_ns"), int) and self._power_w is not None:
                self._power_hist.append((msg["t_ns"], float(self._power_w)))
        return out

    @property
    def status_fd(self) -> int | None:
        """Readable end of the status pipe (for the caller's select loop)."""
        return self._status_r

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Power lost: SIGKILL to the whole board (agent and job workers), nothing saved."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self._power_w = 0.0
        self._close_status()
        self._drop_scratch()

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._power_w = 0.0
        self._close_status()
        self._drop_scratch()

    def _drop_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _close_status(self) -> None:
        with self._status_lock:
            if self._status_r is not None:
                os.close(self._status_r)
                self._status_r = None
            self.last_status = None
            self._buf = b""

    def __enter__(self) -> EmulatorProcess:
        return self.start() if not self.alive else self

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
