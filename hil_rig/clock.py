"""Simulation time and the two clock modes (docs/architecture.md; docs/rig.md).

Simulation time is an integer count of nanoseconds since the scenario epoch
(UTC). Absolute instants inside the rig are "Unix ns": integer nanoseconds since
1970-01-01T00:00:00 UTC on the POSIX scale (no leap seconds counted), which is
what ``datetime`` does too. Models never read the wall clock; only
:class:`RealTimeClock` does, to pace a run.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import time
from collections.abc import Callable

import numpy as np

from hil_rig.constants import JD_J2000, JD_UNIX_EPOCH, NS_PER_DAY, NS_PER_S, TT_MINUS_TAI_S

_UNIX0 = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)

# TAI - UTC (s) from the given UTC date onward (IERS Bulletin C). Enough for 1999-2050
# as far as it is known; later leap seconds, if any, are not in this table.
_LEAP_TABLE: tuple[tuple[_dt.datetime, int], ...] = (
    (_dt.datetime(1999, 1, 1, tzinfo=_dt.UTC), 32),
    (_dt.datetime(2006, 1, 1, tzinfo=_dt.UTC), 33),
    (_dt.datetime(2009, 1, 1, tzinfo=_dt.UTC), 34),
    (_dt.datetime(2012, 7, 1, tzinfo=_dt.UTC), 35),
    (_dt.datetime(2015, 7, 1, tzinfo=_dt.UTC), 36),
    (_dt.datetime(2017, 1, 1, tzinfo=_dt.UTC), 37),
)
_LEAP_NS = np.array([int((d - _UNIX0).total_seconds()) * NS_PER_S for d, _ in _LEAP_TABLE])
_LEAP_S = np.array([s for _, s in _LEAP_TABLE], dtype=float)


def as_utc(when: _dt.datetime) -> _dt.datetime:
    """A timezone-aware UTC datetime; naive datetimes are taken as UTC."""
    if when.tzinfo is None:
        return when.replace(tzinfo=_dt.UTC)
    return when.astimezone(_dt.UTC)


def unix_ns(when: _dt.datetime) -> int:
    """Integer ns since 1970-01-01 UTC of a datetime (microsecond resolution)."""
    delta = as_utc(when) - _UNIX0
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1_000


def from_unix_ns(ns: int) -> _dt.datetime:
    """Datetime (UTC, microseconds, rounded to nearest) of Unix ns."""
    us = (int(ns) + 500) // 1_000
    return _UNIX0 + _dt.timedelta(microseconds=us)


def iso_ms(ns: int) -> str:
    """ISO-8601 UTC with milliseconds, e.g. ``2024-03-20T03:06:07.123Z``."""
    ms = (int(ns) + 500_000) // 1_000_000
    d = _UNIX0 + _dt.timedelta(milliseconds=ms)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> _dt.datetime:
    """Parse an ISO-8601 time (``Z`` or offset allowed; naive means UTC)."""
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    return as_utc(_dt.datetime.fromisoformat(t))


def jd_utc(ns: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """Two-part Julian date (whole, fraction) on the UTC scale for Unix ns (arrays ok)."""
    ns = np.asarray(ns, dtype=np.int64)
    days = ns // NS_PER_DAY
    frac = (ns - days * NS_PER_DAY) / NS_PER_DAY
    return JD_UNIX_EPOCH + days.astype(float), frac


def tai_minus_utc_s(ns: np.ndarray | int) -> np.ndarray:
    """TAI - UTC in seconds for Unix ns (from the leap-second table; 32 s before 1999)."""
    idx = np.searchsorted(_LEAP_NS, np.asarray(ns, dtype=np.int64), side="right") - 1
    return np.where(idx >= 0, _LEAP_S[np.clip(idx, 0, None)], 32.0)


def centuries_tt(ns: np.ndarray | int) -> np.ndarray:
    """Julian centuries of TT since J2000.0 for Unix ns (UT1 = UTC assumed elsewhere)."""
    whole, frac = jd_utc(ns)
    dt_days = (tai_minus_utc_s(ns) + TT_MINUS_TAI_S) / 86_400.0
    return ((whole - JD_J2000) + (frac + dt_days)) / 36_525.0


def centuries_ut1(ns: np.ndarray | int) -> np.ndarray:
    """Julian centuries of UT1 (taken equal to UTC, |UT1-UTC| < 0.9 s) since J2000.0."""
    whole, frac = jd_utc(ns)
    return ((whole - JD_J2000) + frac) / 36_525.0


# --------------------------------------------------------------------------- clocks


#: A frame counts as late when it starts more than this after its deadline: waking from a
#: sleep always takes a little (tens of microseconds here), which is no lateness.
LATE_AFTER_NS = 1_000_000


@dataclasses.dataclass
class LatenessStats:
    """How late frames were (wall ns after their deadline); ``late_frames`` counts
    those more than ``LATE_AFTER_NS`` late."""

    frames: int = 0
    late_frames: int = 0
    max_ns: int = 0
    sum_ns: int = 0
    samples: list[int] = dataclasses.field(default_factory=list)

    def add(self, late_ns: int) -> None:
        self.frames += 1
        if late_ns > LATE_AFTER_NS:
            self.late_frames += 1
        self.max_ns = max(self.max_ns, late_ns)
        self.sum_ns += late_ns
        if len(self.samples) < 1_000_000:
            self.samples.append(late_ns)

    def summary(self) -> dict[str, float]:
        arr = np.asarray(self.samples or [0], dtype=float)
        return {
            "frames": self.frames,
            "late_frames": self.late_frames,
            "mean_ms": float(self.sum_ns / max(self.frames, 1) / 1e6),
            "p50_ms": float(np.percentile(arr, 50) / 1e6),
            "p99_ms": float(np.percentile(arr, 99) / 1e6),
            "max_ms": float(self.max_ns / 1e6),
        }


class RealTimeClock:
    """Real time x ``scale``: simulation ns ``t`` is due at wall ``start + t/scale``.

    Deadlines are absolute (computed from the start, never by adding sleeps), so
    no drift accumulates. Each ``wait_until`` records how late it returned.
    ``monotonic_ns`` and ``sleep`` may be replaced (tests), default to ``time``.
    """

    mode = "realtime"

    def __init__(
        self,
        scale: float = 1.0,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not scale > 0:
            raise ValueError(f"time scale must be > 0, got {scale!r}")
        self.scale = float(scale)
        self._mono = monotonic_ns
        self._sleep = sleep
        self._start_wall_ns: int | None = None
        self.now_ns = 0
        self.lateness = LatenessStats()

    def start(self) -> None:
        """Anchor simulation time 0 at the current wall time."""
        self._start_wall_ns = self._mono()

    def deadline_wall_ns(self, t_ns: int) -> int:
        if self._start_wall_ns is None:
            self.start()
        assert self._start_wall_ns is not None
        return self._start_wall_ns + int(round(t_ns / self.scale))

    def shift(self, wall_s: float) -> None:
        """Every deadline ``wall_s`` later (a pause of that long)."""
        if self._start_wall_ns is not None:
            self._start_wall_ns += int(round(wall_s * 1e9))

    def set_scale(self, scale: float, t_ns: int) -> None:
        """Real time x ``scale`` from simulation time ``t_ns`` on: ``t_ns`` stays due
        when it was, the deadlines after it follow the new scale."""
        if not scale > 0:
            raise ValueError(f"time scale must be > 0, got {scale!r}")
        anchor = self.deadline_wall_ns(t_ns)
        self.scale = float(scale)
        self._start_wall_ns = anchor - int(round(t_ns / self.scale))

    def wait_until(self, t_ns: int) -> int:
        """Sleep until simulation time ``t_ns`` is due; return lateness in wall ns."""
        if t_ns < self.now_ns:
            raise ValueError(f"time went backwards: {t_ns} < {self.now_ns}")
        deadline = self.deadline_wall_ns(t_ns)
        while True:
            remaining = deadline - self._mono()
            if remaining <= 0:
                break
            self._sleep(remaining / 1e9)
        late = max(0, self._mono() - deadline)
        self.now_ns = int(t_ns)
        self.lateness.add(late)
        return late
