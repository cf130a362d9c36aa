"""One QEMU arm64 payload board: its process is its power.

- **power on** starts ``qemu-system-aarch64`` (``virt`` machine, Cortex-A53, the
  image's kernel and initrd, the board's own disk on virtio-blk); the board's
  Linux boots and its systemd starts the agent on ``/dev/ttyAMA0``, the PL011;
- **power off** (relay open, brown-out) is SIGKILL: no shutdown, what the guest had
  not written is lost, its disk keeps what it had (``disk``, a sparse copy of the
  image's disk made at the first boot): checkpoints survive as on an SD card;
- **the UART** is QEMU's ``stdio`` chardev on the master side of a pty that the
  caller owns, so the board's serial path (the pty's slave) stays the same across
  power cycles, like a USB adapter's ``/dev/serial/by-id`` name;
- **the console** (the kernel and the journal, on a virtio console) goes to
  ``console.log`` in the board's directory: the boot is judged from it (the agent's
  start line), never from the UART, which belongs to the rig's link;
- **the draw** comes from what the board does: the QEMU process's host CPU use
  (``/proc/PID/stat``) mapped between the kind's idle and peak power
  (:func:`load_from_cpu`).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import time

from hil_rig.boards.image import KIND, BoardImage

QEMU = "qemu-system-aarch64"
#: the agent's start line on the console (firmware_bridge.agent.main prints it)
READY_MARK = b"firmware_bridge.agent: serving "
#: Host CPU use of one QEMU board (CPU seconds per wall second per vCPU, TCG): idle after
#: boot (the guest's timer ticks and the agent's select loop: 0.12 to 0.20 measured on the
#: developers' 2-core amd64 host) and running a job at throttle 1. The image's agent holds
#: its pace (``--hold-pace``: a paced step keeps the vCPU busy for ``image.HOLD_SHARE`` = 0.5
#: of its rated time), so a job at throttle x keeps the vCPU busy about 0.5 x of the time
#: whatever the host's speed: 0.60 at throttle 1, 0.32 at 0.5 (docs/boards.md, "Draw"). A
#: use between the two maps linearly onto the kind's idle..peak power.
CPU_IDLE = 0.15
CPU_BUSY = 0.60
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def qemu_missing() -> str | None:
    """Why no QEMU board can run here (the command that fixes it), or None."""
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (apt-get install qemu-system-arm)"
    return None


def load_from_cpu(cpu_rate: float) -> float:
    """The board's load (0..1) from its QEMU process's host CPU use (CPU s per s)."""
    return min(1.0, max(0.0, (cpu_rate - CPU_IDLE) / (CPU_BUSY - CPU_IDLE)))


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (None: gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)


class QemuBoard:
    """One board's QEMU process. ``uart_fd``: the master side of the board's pty
    (the rig opens the slave). ``workdir``: the board's directory (disk, logs)."""

    def __init__(self, name: str, image: BoardImage, uart_fd: int, workdir: pathlib.Path, *,
                 cpus: int = 1, memory_mb: int = 512, test_mode: bool = False,
                 rated_flops: int | None = None) -> None:
        self.name, self.image, self.uart_fd = name, image, uart_fd
        self.workdir = pathlib.Path(workdir)
        self.cpus, self.memory_mb, self.test_mode = cpus, memory_mb, test_mode
        self.rated_flops = rated_flops  # the agent's job pace (None: its kind's rating; 0: free-running)
        self.disk = self.workdir / "disk.img"
        self.console = self.workdir / "console.log"
        self.stderr_path = self.workdir / "qemu.stderr"
        self.proc: subprocess.Popen | None = None
        self.started_at: float | None = None
        self.ready_at: float | None = None
        self._cpu: tuple[float, float] | None = None  # (wall, cpu s) at the last sample
        self.cpu_rate = 0.0

    def _ensure_disk(self) -> None:
        """The board's own disk: a sparse copy of the image's, kept across power cycles;
        made again when the image changes (its key is kept beside it)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        stamp = self.workdir / "disk.key"
        if self.disk.exists() and stamp.exists() and stamp.read_text() == self.image.key:
            return
        tmp = self.disk.with_suffix(".tmp")
        subprocess.run(["cp", "--sparse=always", str(self.image.disk), str(tmp)], check=True)
        os.replace(tmp, self.disk)
        stamp.write_text(self.image.key)

    def command(self) -> list[str]:
        # fsck.mode=skip: no file system check at every boot (after a power loss ext4 replays
        # its journal at mount, as on the board's SD card); cryptomgr.notests: no self-test of
        # every kernel crypto algorithm at its registration (the agent hashes in user space,
        # with OpenSSL), about half a second of the boot's 5 CPU s under TCG
        append = (f"console=hvc0 root=/dev/vda rw rootwait quiet fsck.mode=skip cryptomgr.notests "
                  f"systemd.hostname={self.name}")
        if self.test_mode:
            append += " systemd.setenv=ORBIT_HIL_AGENT_TEST_MODE=--test-mode"
        if self.rated_flops is not None:
            append += f" systemd.setenv=ORBIT_HIL_AGENT_PACE=--rated-flops={int(self.rated_flops)}"
        return [
            QEMU, "-M", "virt", "-cpu", "cortex-a53", "-smp", str(self.cpus), "-m", str(self.memory_mb),
            "-accel", "tcg,thread=multi", "-nodefaults", "-display", "none", "-no-reboot", "-nic", "none",
            "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd), "-append", append,
            "-drive", f"file={self.disk},format=raw,if=none,id=root",
            "-device", "virtio-blk-device,drive=root",
            "-chardev", "stdio,id=uart,signal=off", "-serial", "chardev:uart",
            "-device", "virtio-serial-device",
            "-chardev", f"file,id=con,path={self.console}", "-device", "virtconsole,chardev=con",
        ]

    # -- power ------------------------------------------------------------------
    def power_on(self) -> None:
        if self.alive:
            return
        self._ensure_disk()
        self.console.write_bytes(b"")
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.command(), stdin=self.uart_fd, stdout=self.uart_fd, stderr=err,
                                         start_new_session=True, close_fds=True)
        self.started_at = time.monotonic()
        self.ready_at = None
        self._cpu = None
        self.cpu_rate = 0.0

    def power_off(self) -> None:
        """Power lost: SIGKILL, no shutdown."""
        p, self.proc = self.proc, None
        if p is not None:
            try:
                p.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        self.ready_at = None
        self.cpu_rate = 0.0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def died(self) -> bool:
        """Its process ended by itself (a crash, a guest poweroff): a power loss the rig did not make."""
        return self.proc is not None and self.proc.poll() is not None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def booted(self) -> bool:
        """The agent has started on the UART (its start line is on the console)."""
        if self.ready_at is None and self.alive:
            try:
                with open(self.console, "rb") as f:
                    if READY_MARK in f.read():
                        self.ready_at = time.monotonic()
            except OSError:
                pass
        return self.ready_at is not None and self.alive

    def sample_cpu(self) -> float:
        """Update and return the process's host CPU use since the last sample (CPU s per s)."""
        if not self.alive:
            self.cpu_rate = 0.0
            return 0.0
        now = time.monotonic()
        cpu = process_cpu_s(self.proc.pid)  # type: ignore[union-attr]
        if cpu is None:
            return self.cpu_rate
        if self._cpu is not None and now - self._cpu[0] > 0.05:
            self.cpu_rate = (cpu - self._cpu[1]) / (now - self._cpu[0]) / self.cpus
        if self._cpu is None or now - self._cpu[0] > 0.05:
            self._cpu = (now, cpu)
        return self.cpu_rate

    def load(self) -> float:
        return load_from_cpu(self.cpu_rate)

    def console_tail(self, lines: int = 20) -> str:
        out = []
        for p in (self.console, self.stderr_path):
            try:
                text = p.read_text(errors="replace")
            except OSError:
                continue
            out += [f"{p.name}: {ln}" for ln in text.splitlines()[-lines:]]
        return "\n".join(out) or "(console empty)"

    def close(self) -> None:
        self.power_off()


__all__ = ["KIND", "QEMU", "QemuBoard", "load_from_cpu", "process_cpu_s", "qemu_missing"]
