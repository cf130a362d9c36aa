"""Simulation time and the two clock modes (docs/architecture.md; docs/rig.md).

Simulation time is an integer count of nanoseconds since the scenario epoch
(UTC). Absolute instants inside the rig are "Unix ns": integer nanoseconds since
1970-01-01T00:00:00 UTC on the POSIX scale (no leap seconds counted), which is
what ``datetime`` does too. Models never read the wall clock; only
:class:`RealTimeClock` does, to pace a run.
"""

from __future__ import annotations

import collections
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

#: Speed kept or not (docs/running.md, "Real time: pacing"). The run is *behind* when a
#: frame returns more than one frame's wall time after its deadline, and never less than
#: ``SPEED_BEHIND_MIN_S`` (at x 500 a frame is 2 ms: a loop a few ms behind while the
#: boards start their first jobs has not lost its speed). Behind, the requested speed
#: counts as not kept when either
#:
#: - the achieved speed (simulated over wall time) across the frames of the last
#:   ``SPEED_WINDOW_S`` of wall time (never fewer than ``SPEED_WINDOW_FRAMES`` frames) is
#:   more than ``SPEED_LOST_MARGIN`` below it: a clear shortfall, said within a few frames;
#: - or the run has been behind for at least ``SPEED_WINDOW_S`` of wall time and achieved,
#:   since it was last on schedule, more than ``SPEED_SLOW_MARGIN`` less than requested: a
#:   small shortfall that would otherwise pile up unseen (on absolute deadlines any
#:   shortfall grows without bound; a hiccup is caught up).
#:
#: It counts as kept again when a frame is back on schedule (not behind), or when the
#: window's achieved speed is back within ``SPEED_SLOW_MARGIN`` of the requested: a lag
#: that no longer grows (``behind_s`` still says how far behind the run is; the slow check
#: counts from there). Between two changes at least ``SPEED_WINDOW_S`` of wall time
#: passes, so a run at the edge cannot flap: at most one event each way per window.
SPEED_WINDOW_S = 2.0
SPEED_WINDOW_FRAMES = 5
SPEED_BEHIND_MIN_S = 0.010
SPEED_LOST_MARGIN = 0.10
SPEED_SLOW_MARGIN = 0.01


@dataclasses.dataclass
class LatenessStats:
    """How a real-time run kept its pace (``summary.json``'s ``lateness``).

    Per frame (one ``RealTimeClock.wait_until``): how late it returned, in wall ns
    after its deadline (``late_frames`` counts those more than ``LATE_AFTER_NS``
    late), and whether it was an overrun (the loop came back to wait for it after
    its deadline had passed: the work since the last frame took longer than a
    frame). The clock sets the run-level figures: ``drift_ns`` (the last deadline
    against the ideal schedule, 0 on absolute deadlines), the requested and
    achieved speed, and the episodes in which the speed was not kept."""

    frames: int = 0
    late_frames: int = 0
    overruns: int = 0
    max_ns: int = 0
    sum_ns: int = 0
    samples: list[int] = dataclasses.field(default_factory=list)
    drift_ns: int = 0
    requested_speed: float = 0.0
    achieved_speed: float | None = None  # over the whole run (pauses excluded)
    recent_speed: float | None = None    # over the last window (SPEED_WINDOW_S)
    behind_ns: int = 0
    keeping: bool = True  # the speed is kept as of the last frame
    not_kept_episodes: int = 0
    not_kept_frames: int = 0

    def add(self, late_ns: int, overrun: bool = False) -> None:
        self.frames += 1
        if late_ns > LATE_AFTER_NS:
            self.late_frames += 1
        if overrun:
            self.overruns += 1
        self.max_ns = max(self.max_ns, late_ns)
        self.sum_ns += late_ns
        if len(self.samples) < 1_000_000:
            self.samples.append(late_ns)

    def summary(self) -> dict[str, float | int | bool | None]:
        arr = np.asarray(self.samples or [0], dtype=float)
        return {
            "frames": self.frames,
            "late_frames": self.late_frames,
            "overruns": self.overruns,
            "mean_ms": float(self.sum_ns / max(self.frames, 1) / 1e6),
            "p50_ms": float(np.percentile(arr, 50) / 1e6),
            "p99_ms": float(np.percentile(arr, 99) / 1e6),
            "max_ms": float(self.max_ns / 1e6),
            "pacing_drift_s": self.drift_ns / 1e9,
            "behind_s": self.behind_ns / 1e9,
            "requested_speed": self.requested_speed,
            "achieved_speed": None if self.achieved_speed is None else float(f"{self.achieved_speed:.4g}"),
            # kept for the whole run: no frame in a not-kept episode
            "speed_kept": self.not_kept_episodes == 0,
            "speed_not_kept_episodes": self.not_kept_episodes,
            "speed_not_kept_frames": self.not_kept_frames,
        }


@dataclasses.dataclass(frozen=True)
class SpeedChange:
    """The requested speed stopped (``kept`` False) or started again (True) being kept,
    at simulation time ``t_ns``: ``achieved`` over the window, ``behind_s`` of wall time
    behind the schedule."""

    t_ns: int
    kept: bool
    requested: float
    achieved: float
    behind_s: float
    window_s: float

    def describe(self) -> str:
        return (f"real time x {self.requested:g} {'kept again' if self.kept else 'not kept'}: achieved x "
                f"{self.achieved:.4g} over the last {self.window_s:.3g} s of wall time, "
                f"{self.behind_s:.3f} s behind schedule")


class RealTimeClock:
    """Real time x ``scale``: simulation ns ``t`` is due at wall ``start + t/scale``.

    Deadlines are absolute (computed from the start, never by adding sleeps), so
    no drift accumulates. Each ``wait_until`` records how late it returned and
    whether it overran, and checks whether the speed is kept (:class:`SpeedChange`,
    taken with :meth:`speed_change`). ``monotonic_ns`` and ``sleep`` may be
    replaced (tests), default to ``time``.

    The drift is kept honestly apart from the deadlines: the clock also keeps the
    ideal schedule (the start, plus each speed segment's simulated time over its
    speed, plus the pauses) with its own arithmetic, and ``lateness.drift_ns`` is the
    last frame's deadline minus that. A change of speed re-anchors both at the
    frame where it takes effect (that frame stays due when it was).
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
        self.lateness = LatenessStats(requested_speed=self.scale)
        # the ideal schedule: wall ns (pauses excluded) of simulation ns _ideal_t, the speed since
        self._ideal_wall_ns = 0
        self._ideal_t_ns = 0
        self._paused_ns = 0
        # achieved speed: (simulation ns, wall ns) of the recent frames' returns
        self._window: collections.deque[tuple[int, int]] = collections.deque()
        self._first: tuple[int, int] | None = None  # (sim, wall) of the first frame of the current segment
        self._run_sim_ns = 0    # simulated / wall ns paced in earlier segments (speed changes, pauses)
        self._run_wall_ns = 0
        self._change: SpeedChange | None = None
        self._on_schedule: tuple[int, int] | None = None  # (sim, wall) ns of the last frame on schedule
        self._last_change_ns: int | None = None  # wall ns of the last change of kept / not kept

    def start(self) -> None:
        """Anchor simulation time 0 at the current wall time."""
        self._start_wall_ns = self._mono()
        self._ideal_wall_ns, self._ideal_t_ns = self._start_wall_ns, 0

    def deadline_wall_ns(self, t_ns: int) -> int:
        if self._start_wall_ns is None:
            self.start()
        assert self._start_wall_ns is not None
        return self._start_wall_ns + int(round(t_ns / self.scale))

    def ideal_wall_ns(self, t_ns: int) -> int:
        """When ``t_ns`` is ideally due: the start, each speed segment at its speed, the pauses."""
        return self._ideal_wall_ns + int(round((t_ns - self._ideal_t_ns) / self.scale)) + self._paused_ns

    def shift(self, wall_s: float) -> None:
        """Every deadline ``wall_s`` later (a pause of that long)."""
        if self._start_wall_ns is not None:
            ns = int(round(wall_s * 1e9))
            self._start_wall_ns += ns
            self._paused_ns += ns
            self._new_segment(ns)

    def set_scale(self, scale: float, t_ns: int) -> None:
        """Real time x ``scale`` from simulation time ``t_ns`` on: ``t_ns`` stays due
        when it was, the deadlines after it follow the new scale."""
        if not scale > 0:
            raise ValueError(f"time scale must be > 0, got {scale!r}")
        anchor = self.deadline_wall_ns(t_ns)
        ideal = self.ideal_wall_ns(t_ns) - self._paused_ns
        self.scale = float(scale)
        self._start_wall_ns = anchor - int(round(t_ns / self.scale))
        self._ideal_wall_ns, self._ideal_t_ns = ideal, int(t_ns)
        self.lateness.requested_speed = self.scale
        self._new_segment()
        self._on_schedule = None  # the slow-shortfall check starts afresh at the new speed

    def _new_segment(self, paused_ns: int = 0) -> None:
        """A pause (of ``paused_ns``) or a new speed: the achieved speed is measured
        afresh from the last frame (moved by the pause); the wall time of a pause is
        not counted."""
        if self._first is None or not self._window:
            return
        t_last, w_last = self._window[-1]
        self._run_sim_ns += t_last - self._first[0]
        self._run_wall_ns += w_last - self._first[1]
        self._first = (t_last, w_last + paused_ns)
        self._window.clear()
        self._window.append(self._first)
        if self._on_schedule is not None:
            self._on_schedule = (self._on_schedule[0], self._on_schedule[1] + paused_ns)

    def wait_until(self, t_ns: int) -> int:
        """Sleep until simulation time ``t_ns`` is due; return lateness in wall ns."""
        if t_ns < self.now_ns:
            raise ValueError(f"time went backwards: {t_ns} < {self.now_ns}")
        deadline = self.deadline_wall_ns(t_ns)
        overrun = self._mono() > deadline and self.lateness.frames > 0
        while True:
            remaining = deadline - self._mono()
            if remaining <= 0:
                break
            self._sleep(remaining / 1e9)
        now = self._mono()
        late = max(0, now - deadline)
        self.now_ns = int(t_ns)
        st = self.lateness
        st.add(late, overrun)
        st.drift_ns = deadline - self.ideal_wall_ns(t_ns)
        st.behind_ns = late
        self._check_speed(int(t_ns), now, late)
        return late

    def _check_speed(self, t_ns: int, wall_ns: int, late_ns: int) -> None:
        st = self.lateness
        win = self._window
        win.append((t_ns, wall_ns))
        if self._first is None:
            self._first = (t_ns, wall_ns)
        while len(win) > SPEED_WINDOW_FRAMES and wall_ns - win[1][1] >= SPEED_WINDOW_S * 1e9:
            win.popleft()
        sim = self._run_sim_ns + t_ns - self._first[0]
        wall = self._run_wall_ns + wall_ns - self._first[1]
        if wall > 0:
            st.achieved_speed = sim / wall
        t0, w0 = win[0]
        dw = wall_ns - w0
        if dw > 0:
            st.recent_speed = (t_ns - t0) / dw
        behind = late_ns > max(NS_PER_S / self.scale, SPEED_BEHIND_MIN_S * 1e9)
        if not behind or self._on_schedule is None:
            self._on_schedule = (t_ns, wall_ns)
        settled = self._last_change_ns is None or wall_ns - self._last_change_ns >= SPEED_WINDOW_S * 1e9
        change: tuple[float, int] | None = None  # (achieved speed, over wall ns)
        if st.keeping and behind and settled:
            ts, ws = self._on_schedule
            if len(win) >= SPEED_WINDOW_FRAMES and dw > 0 and (t_ns - t0) / dw < self.scale * (1 - SPEED_LOST_MARGIN):
                change = ((t_ns - t0) / dw, dw)
            elif wall_ns - ws >= SPEED_WINDOW_S * 1e9 and (t_ns - ts) / (wall_ns - ws) < self.scale * (1 - SPEED_SLOW_MARGIN):
                change = ((t_ns - ts) / (wall_ns - ws), wall_ns - ws)
            if change is not None:
                st.keeping = False
                st.not_kept_episodes += 1
        elif not st.keeping and settled:
            full = len(win) >= SPEED_WINDOW_FRAMES and dw > 0
            if not behind or (full and (t_ns - t0) / dw >= self.scale * (1 - SPEED_SLOW_MARGIN)):
                st.keeping = True
                change = (st.recent_speed or 0.0, dw)
                self._on_schedule = (t_ns, wall_ns)  # a lag that no longer grows is the new baseline
        if change is not None:
            self._last_change_ns = wall_ns
            self._change = SpeedChange(t_ns, st.keeping, self.scale, change[0], late_ns / 1e9, change[1] / 1e9)
        if not st.keeping:
            st.not_kept_frames += 1

    def speed_change(self) -> SpeedChange | None:
        """The change of kept / not kept at the last frame, if any (once: taken here)."""
        change, self._change = self._change, None
        return change
