"""Live progress of a run: a bar and status line on a TTY, sparse lines otherwise."""

from __future__ import annotations

import time
from typing import Any, TextIO

from hil_rig.constants import NS_PER_S as NS


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

    def notice(self, text: str) -> None:
        """A line of its own (the bar, on a TTY, is drawn again at the next update)."""
        clear = "\r\x1b[K" if self.tty else ""
        self.stream.write(f"{clear}hil run: {text}\n")
        self.stream.flush()
        self._last_draw = 0.0

    @staticmethod
    def _status(t_ns: int, s: dict[str, Any]) -> str:
        sec = t_ns // NS
        hms = f"{sec // 3600:02d}:{sec % 3600 // 60:02d}:{sec % 60:02d}"
        boards = " ".join(f"{b}:{st}" for b, st in s.get("boards", {}).items())
        temps = "/".join(f"{c:.0f}" for c in s.get("temps_c", []))
        line = (f"t={hms} orbit {s.get('orbit', 0)} {'SUN' if s.get('sunlit') else 'ECL'} "
                f"soc {s.get('soc', float('nan')):.2f} T {temps}°C {s.get('mode', '')} "
                f"{boards} jobs {s.get('jobs', 0)}")
        if s.get("speed") is not None:  # real time: the speed achieved against the speed asked
            got = s.get("achieved_speed")
            line += f" x{got:.3g}/{s['speed']:g}" if got is not None else f" x?/{s['speed']:g}"
            if not s.get("speed_kept", True):
                line += f" SPEED NOT KEPT ({s.get('behind_s', 0.0):.2f} s behind)"
        return line

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
