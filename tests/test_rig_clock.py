"""Clock: integer-ns time, virtual mode, real time x scale with absolute deadlines."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil_rig.clock import RealTimeClock, from_unix_ns, iso_ms, parse_iso, unix_ns


@given(st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2099, 1, 1)))
def test_unix_ns_round_trip(d):
    d = d.replace(tzinfo=dt.UTC)
    assert from_unix_ns(unix_ns(d)) == d


def test_iso_ms_and_parse():
    t = unix_ns(parse_iso("2024-03-20T03:06:07.1234Z"))
    assert iso_ms(t) == "2024-03-20T03:06:07.123Z"
    assert parse_iso("2024-03-20T05:06:07+02:00") == parse_iso("2024-03-20T03:06:07Z")


class FakeWall:
    """A wall clock that advances only when slept on, plus injected scheduling delay."""

    def __init__(self, overshoot_ns: int = 0) -> None:
        self.now = 1_000_000
        self.overshoot = overshoot_ns
        self.sleeps: list[float] = []

    def mono(self) -> int:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += int(round(s * 1e9)) + self.overshoot


def test_realtime_deadlines_are_absolute_so_lateness_does_not_accumulate():
    wall = FakeWall(overshoot_ns=2_000_000)  # every sleep oversleeps 2 ms
    c = RealTimeClock(scale=10.0, monotonic_ns=wall.mono, sleep=wall.sleep)
    c.start()
    start = wall.now
    for k in range(1, 101):
        late = c.wait_until(k * 100_000_000)  # 0.1 s sim = 10 ms wall at x10
        assert late == 2_000_000  # each frame 2 ms late, never more: no drift
    assert wall.now == start + 100 * 10_000_000 + 2_000_000
    s = c.lateness.summary()
    assert s["frames"] == 100 and s["late_frames"] == 100 and s["max_ms"] == pytest.approx(2.0)


def test_realtime_real_wall_clock_small_run():
    c = RealTimeClock(scale=100.0)
    c.start()
    for k in range(1, 6):
        c.wait_until(k * 100_000_000)  # 1 ms wall each
    assert c.lateness.frames == 5 and c.now_ns == 500_000_000


def test_realtime_rejects_bad_scale():
    with pytest.raises(ValueError, match="scale"):
        RealTimeClock(scale=0)


def test_wake_up_jitter_is_no_lateness():
    """Waking from a sleep takes a little; a frame is late only past LATE_AFTER_NS
    (hil run's summary said every frame was late)."""
    from hil_rig.clock import LATE_AFTER_NS

    wall = FakeWall(overshoot_ns=LATE_AFTER_NS // 10)
    c = RealTimeClock(scale=10.0, monotonic_ns=wall.mono, sleep=wall.sleep)
    c.start()
    for k in range(1, 51):
        c.wait_until(k * 100_000_000)
    s = c.lateness.summary()
    assert s["frames"] == 50 and s["late_frames"] == 0 and s["max_ms"] > 0


def test_pause_and_new_scale_move_later_deadlines_only():
    wall = FakeWall(overshoot_ns=0)
    c = RealTimeClock(scale=10.0, monotonic_ns=wall.mono, sleep=wall.sleep)
    c.start()
    t0 = wall.now
    assert c.deadline_wall_ns(1_000_000_000) == t0 + 100_000_000
    c.shift(0.5)  # paused half a second
    assert c.deadline_wall_ns(1_000_000_000) == t0 + 600_000_000
    c.set_scale(20.0, 1_000_000_000)  # from t = 1 s on, twice as fast
    assert c.deadline_wall_ns(1_000_000_000) == t0 + 600_000_000
    assert c.deadline_wall_ns(3_000_000_000) == t0 + 600_000_000 + 100_000_000
    with pytest.raises(ValueError, match="scale"):
        c.set_scale(0.0, 0)
