"""An emulated board does not outlive the bench that powers it.

A bench process that is SIGKILLed cannot clean up; its emulators notice that
the status pipe's read end is gone (the next heartbeat write gets EPIPE) and
power themselves off.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

SPAWNER = textwrap.dedent(
    """
    import sys, time
    from firmware_bridge.emulator import EmulatorProcess, open_pty
    master, path = open_pty()
    emu = EmulatorProcess(master, kind="rpi", name="orphan", clock="virtual").start()
    print(emu.pid, emu._scratch, flush=True)
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_emulator_powers_off_when_its_bench_is_sigkilled() -> None:
    spawner = subprocess.Popen([sys.executable, "-c", SPAWNER], stdout=subprocess.PIPE, text=True)
    try:
        pid, scratch = spawner.stdout.readline().split()
        emu_pid = int(pid)
        assert os.path.isdir(scratch)
        assert _alive(emu_pid)
        spawner.send_signal(signal.SIGKILL)
        spawner.wait()
        # hang guard only: the heartbeat is 1 s, so this normally ends in about a second
        for _ in range(300):
            if not _alive(emu_pid):
                break
            time.sleep(0.1)
        else:
            os.kill(emu_pid, signal.SIGKILL)
            raise AssertionError(f"emulator {emu_pid} outlived its SIGKILLed bench by 30 s")
        # and it took its power-on's scratch disk with it: nobody else is left to
        assert not os.path.exists(scratch)
    finally:
        if spawner.poll() is None:
            spawner.kill()
