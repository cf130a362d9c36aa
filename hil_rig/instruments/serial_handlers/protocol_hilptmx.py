"""pyserial URL handler ``hilptmx://FD``: a serial port on an already-open pty master.

A pty master has no path (re-opening ``/dev/ptmx`` makes a *new* pty), but
pymodbus' serial server opens its port by URL through ``serial_for_url``. This
handler, registered through pyserial's documented ``protocol_handler_packages``
list, wraps a duplicate of the inherited master fd in pyserial's POSIX
``Serial``; the virtual bench keeps the original open, so the slave path that
clients open stays valid across server restarts.
"""

from __future__ import annotations

import fcntl
import os

import serial
from serial.serialposix import Serial as _PosixSerial


class Serial(_PosixSerial):
    def open(self) -> None:  # noqa: D102 - pyserial API
        if self._port is None:
            raise serial.SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise serial.SerialException("Port is already open.")
        url = str(self._port)
        if not url.startswith("hilptmx://"):
            raise serial.SerialException(f"expected hilptmx://FD, got {url!r}")
        try:
            src = int(url[len("hilptmx://") :])
            self.fd = os.dup(src)
        except (ValueError, OSError) as exc:
            raise serial.SerialException(f"could not open {url}: {exc}") from None
        fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        # every pty master shares the inode of /dev/ptmx, so flock() on one
        # would lock them all: the bench owns this fd, no lock is needed
        self._exclusive = None
        try:
            self._reconfigure_port(force_update=True)
            self.pipe_abort_read_r, self.pipe_abort_read_w = os.pipe()
            self.pipe_abort_write_r, self.pipe_abort_write_w = os.pipe()
            fcntl.fcntl(self.pipe_abort_read_r, fcntl.F_SETFL, os.O_NONBLOCK)
            fcntl.fcntl(self.pipe_abort_write_r, fcntl.F_SETFL, os.O_NONBLOCK)
        except BaseException:
            os.close(self.fd)
            self.fd = None
            raise
        self.is_open = True


def register() -> None:
    """Make ``hilptmx://`` known to ``serial.serial_for_url`` (idempotent)."""
    pkg = "hil_rig.instruments.serial_handlers"
    if pkg not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(pkg)
