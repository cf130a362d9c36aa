"""A board's serial port shared over the network the way labs do it: Debian's
``ser2net`` in front of the port, serving it as RFC 2217 (telnet with the serial
port's settings carried in-band), and the bench file naming the board's port as an
``rfc2217://HOST:PORT`` URL, which the rig's link opens with pyserial's
``serial_for_url`` like any other port (docs/boards.md, "A port shared with ser2net").

:class:`Ser2net` starts a real ``ser2net`` (4.x, its YAML configuration written
to a file of the caller's directory) on one serial device, listening on loopback
only, in the foreground under this process (``-n``, no UUCP lock file, its own pid
file), and stops it with SIGTERM. Used by ``tests/test_rfc2217.py`` and
``bench/boards.py`` (ping over RFC 2217 against the same port read directly).
"""

from __future__ import annotations

import pathlib
import shutil
import signal
import socket
import subprocess
import time

SER2NET = "ser2net"
#: how long ser2net gets to listen before its start is judged failed
START_BUDGET_S = 30.0

#: ser2net 4.x's YAML: one connection, RFC 2217 over telnet over TCP on HOST:PORT, to the
#: serial device at BAUD 8N1 ("local": ignore modem lines, a pty has none); kickolduser:
#: a new client (the link reconnecting after an unplug) takes the port over. For latency:
#: tcp(nodelay), no Nagle (a QEMU board's reply comes from its UART in pieces; the second
#: waited for the client's delayed ACK: ping p50 48 ms, against 8-12 ms with nodelay or
#: direct); chardelay false: send what the port gave at once (ser2net's default waits some
#: character times for more: an emulated board's ping p50 5.0-5.8 ms, 0.8-1.0 ms without)
CONFIG = """\
%YAML 1.1
---
# written by hil_rig.boards.ser2net: {device} served as RFC 2217 on {host}:{port}
connection: &{name}
  accepter: telnet(rfc2217),tcp(nodelay),{host},{port}
  enable: on
  connector: serialdev,{device},{baud}n81,local
  options:
    kickolduser: true
    chardelay: false
"""


class Ser2netError(Exception):
    """ser2net is missing or did not start: the message says which and why."""


def ser2net_missing() -> str | None:
    """Why no ser2net can run here (the command that fixes it), or None."""
    if shutil.which(SER2NET) is None:
        return f"{SER2NET} is not installed (apt-get install ser2net)"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Ser2net:
    """One ``ser2net`` serving ``device`` as ``rfc2217://host:port`` (``url``)."""

    def __init__(self, device: str, workdir: pathlib.Path, *, baud: int = 115200, host: str = "127.0.0.1",
                 port: int | None = None, name: str = "board") -> None:
        self.device, self.baud, self.host, self.name = device, baud, host, name
        self.workdir = pathlib.Path(workdir)
        self.port = port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rfc2217://{self.host}:{self.port}?ign_set_control"

    def config(self) -> str:
        return CONFIG.format(name=self.name, host=self.host, port=self.port, device=self.device, baud=self.baud)

    def start(self) -> Ser2net:
        why = ser2net_missing()
        if why:
            raise Ser2netError(why)
        self.workdir.mkdir(parents=True, exist_ok=True)
        fixed = self.port is not None
        for _ in range(1 if fixed else 3):  # a free port picked here may be taken before ser2net binds it
            if not fixed:
                self.port = free_port(self.host)
            if self._try_start():
                return self
        raise Ser2netError(f"ser2net did not listen on {self.host}:{self.port} for {self.device}: "
                           f"{self.log_tail()}")

    def _try_start(self) -> bool:
        cfg = self.workdir / f"ser2net-{self.name}.yaml"
        cfg.write_text(self.config())
        self.log = self.workdir / f"ser2net-{self.name}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [SER2NET, "-n", "-u", "-c", str(cfg), "-P", str(self.workdir / f"ser2net-{self.name}.pid")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_BUDGET_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    return True
            except OSError:
                time.sleep(0.05)
        self.stop()
        return False

    def log_tail(self, lines: int = 10) -> str:
        try:
            text = self.log.read_text(errors="replace").strip()
        except (OSError, AttributeError):
            return "(no log)"
        return " | ".join(text.splitlines()[-lines:]) or "(log empty)"

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __enter__(self) -> Ser2net:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["SER2NET", "Ser2net", "Ser2netError", "free_port", "ser2net_missing"]
