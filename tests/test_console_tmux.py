"""The real ``hil run --console`` in a real terminal: tmux runs it, send-keys types,
capture-pane reads the screen. Fails in CI without tmux (.ci/run installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

pytest.importorskip("textual")
if shutil.which("tmux") is None:
    if os.environ.get("CI"):
        pytest.fail("tmux is not installed (.ci/run installs it)", pytrace=False)
    pytest.skip("tmux is not installed", allow_module_level=True)

GUARD = 600  # screen reads, 0.1 s apart, before a wait is declared hung (a hang guard)


def test_hil_run_console_in_tmux(tmp_path):
    sock = str(tmp_path / "tmux.sock")
    out = tmp_path / "run"
    hil = f"{sys.executable} -m hil_rig.cli"
    cmd = f"{hil} run --console --duration '30 min' --out {out} --rt-priority 0; echo EXIT=$?; sleep 30"
    tmux = ["tmux", "-S", sock]
    env = {**os.environ, "TERM": "xterm-256color"}
    subprocess.run([*tmux, "new-session", "-d", "-x", "80", "-y", "24", "-s", "c", cmd], check=True, env=env)

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "c"], capture_output=True, text=True).stdout

    def wait_for(text: str) -> str:
        for _ in range(GUARD):
            s = screen()
            if text in s:
                return s
            time.sleep(0.1)
        raise AssertionError(f"never on screen: {text!r}\n{screen()}")

    try:
        s = wait_for("PAUSED")
        assert "power" in s and "boards" in s and "events" in s  # the panels, at 80x24
        subprocess.run([*tmux, "send-keys", "-t", "c", "F6"], check=True)
        wait_for("t=       1 s")
        s = wait_for("SOC")
        subprocess.run([*tmux, "send-keys", "-t", "c", "-l", "set_mode mode=SAFE"], check=True)
        subprocess.run([*tmux, "send-keys", "-t", "c", "Enter"], check=True)
        wait_for("ARMED")
        subprocess.run([*tmux, "send-keys", "-t", "c", "Enter"], check=True)
        wait_for("sent")
        for _ in range(GUARD):  # step until the flight software's frame has taken the TC
            subprocess.run([*tmux, "send-keys", "-t", "c", "F6"], check=True)
            time.sleep(0.3)
            if "completed" in screen():
                break
        wait_for("completed")
        wait_for("SAFE")
        subprocess.run([*tmux, "send-keys", "-t", "c", "-l", "quit"], check=True)
        subprocess.run([*tmux, "send-keys", "-t", "c", "Enter"], check=True)
        s = wait_for("EXIT=")
        assert "nominal:" in s  # the run's verdict line after the console quit
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
