"""FDIR, modes and executive under a hand-written fake plant."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flight_sw.events import EventLog
from flight_sw.executive import NS, Component, Executive, RateGroup
from flight_sw.fdir import LADDER, Fdir, MonitorDef
from flight_sw.modes import COMPUTE, DETUMBLE, SAFE, SUN_POINT, ModeConfig, ModeInputs, ModeManager

P, S, C = 3, 5, 10  # persistence, step persistence, clear persistence


def make_fdir() -> Fdir:
    mons = [
        MonitorDef("b0.heartbeat_age_s", "b0", None, 5.0, P),
        MonitorDef("b0.temp_k", "b0", None, 360.0, 4, entry="isolate"),
        MonitorDef("b1.heartbeat_age_s", "b1", None, 5.0, P),
        MonitorDef("b1.link_errors", "b1", None, 2.0, 2),
        MonitorDef("battery.soc", "spacecraft", 0.2, None, 6, entry="safe"),
    ]
    return Fdir(mons, EventLog(), step_persistence=S, clear_persistence=C)


def test_each_step_fires_at_its_persistence_and_no_earlier() -> None:
    f = make_fdir()
    fired: dict[str, int] = {}
    for cycle in range(60):
        for a in f.evaluate(cycle * NS, {"b0.heartbeat_age_s": 99.0, "b0.temp_k": 300.0}):
            assert a.target == "b0"
            fired[a.action] = cycle
    # cycle index is 0-based: the P-th violating sample is cycle P-1
    expect = {step: P - 1 + i * S for i, step in enumerate(LADDER)}
    assert fired == expect
    # escalation stopped at safe: nothing after it
    assert [a.action for a in f.actions] == list(LADDER)
    ev = [e.fields["action"] for e in f.events.named("fdir_action")]
    assert ev == list(LADDER)
    assert all("b0.heartbeat_age_s=99.0" in e.fields["cause"] for e in f.events.named("fdir_action"))


def test_short_glitch_below_persistence_does_nothing() -> None:
    f = make_fdir()
    for cycle in range(50):
        bad = cycle % P != 0  # P-1 bad samples then a good one, forever
        assert f.evaluate(cycle, {"b0.heartbeat_age_s": 99.0 if bad else 0.0}) == []


def test_severe_monitor_enters_at_its_step_and_clears() -> None:
    f = make_fdir()
    acts = []
    for cycle in range(8):
        acts += f.evaluate(cycle, {"b0.temp_k": 370.0})
    assert [(a.action, a.t_ns) for a in acts] == [("isolate", 3)]
    assert "b0" in f.isolated
    # cooled, and every monitor of b0 reports in limits: readmitted after C cycles
    out = []
    for cycle in range(8, 8 + C):
        out += f.evaluate(cycle, {"b0.temp_k": 300.0, "b0.heartbeat_age_s": 0.0})
    assert [(a.action, a.t_ns) for a in out] == [("readmit", 8 + C - 1)]
    assert "b0" not in f.isolated and f.step["b0"] == 0


def test_spacecraft_monitor_goes_to_safe_once() -> None:
    f = make_fdir()
    acts = []
    for cycle in range(100):
        acts += f.evaluate(cycle, {"battery.soc": 0.1})
    assert [(a.target, a.action, a.t_ns) for a in acts] == [("spacecraft", "safe", 5)]


def test_isolated_board_without_data_stays_isolated() -> None:
    f = make_fdir()
    for cycle in range(40):
        f.evaluate(cycle, {"b1.link_errors": 5.0})
    assert "b1" in f.isolated
    n = len(f.actions)
    for cycle in range(40, 200):  # board off: no data
        assert f.evaluate(cycle, {}) == []
    assert "b1" in f.isolated and len(f.actions) == n


monitor_values = st.sampled_from([None, 0.0, 1.0, 3.0, 9.0, 99.0, 370.0, 300.0, 0.1, 0.5])
names = ["b0.heartbeat_age_s", "b0.temp_k", "b1.heartbeat_age_s", "b1.link_errors", "battery.soc"]
histories = st.lists(st.fixed_dictionaries({n: monitor_values for n in names}), min_size=1, max_size=120)


@given(histories)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fdir_properties(history) -> None:
    f = make_fdir()
    healthy_run = {"b0": 0, "b1": 0}
    per_target_steps: dict[str, list[str]] = {"b0": [], "b1": [], "spacecraft": []}
    for cycle, samples in enumerate(history):
        acts = f.evaluate(cycle, samples)
        targets = [a.target for a in acts]
        # never two actions on one target in one cycle (no isolate+readmit, reset+cycle...)
        assert len(targets) == len(set(targets))
        for a in acts:
            per_target_steps[a.target].append(a.action)
        for b in ("b0", "b1"):
            mons = [m for m in f.monitors.values() if m.target == b]
            ok = all(samples[m.name] is not None and not m.violates(samples[m.name]) for m in mons)
            healthy_run[b] = healthy_run[b] + 1 if ok else 0
            # never leaves a healthy payload isolated
            if healthy_run[b] >= C:
                assert b not in f.isolated
    for target, steps in per_target_steps.items():
        # escalation is bounded and ordered within each episode; safe ends it
        episode: list[str] = []
        for s in steps:
            if s == "readmit":
                episode = []
                continue
            if episode:
                assert LADDER.index(s) > LADDER.index(episode[-1]) or target == "spacecraft"
            assert len(episode) < len(LADDER)
            episode.append(s)


# --- modes --------------------------------------------------------------------------


def test_mode_sequence_and_guards() -> None:
    ev = EventLog()
    m = ModeManager(ModeConfig(rate_persist_s=3.0), ev)
    t = 0
    m.update(t, ModeInputs(rate_norm_rad_s=0.1))
    assert m.mode == DETUMBLE
    for t in range(1, 5):
        m.update(t * NS, ModeInputs(rate_norm_rad_s=0.005, soc=0.4))
    assert m.mode == SUN_POINT and m.since_ns == 4 * NS  # low since t=1, 3 s persistence
    m.update(5 * NS, ModeInputs(soc=0.4))
    assert m.mode == SUN_POINT  # soc below compute_min_soc
    assert not m.request(6 * NS, COMPUTE, "commanded", "ground", ModeInputs(soc=0.4))
    assert ev.named("mode_refused")[-1].fields["cause"].startswith("soc")
    m.update(7 * NS, ModeInputs(soc=0.8))
    assert m.mode == COMPUTE
    m.update(8 * NS, ModeInputs(soc=0.8, payload_blocked=True))
    assert m.mode == SUN_POINT
    assert m.request(9 * NS, SAFE, "autonomous", "fdir: battery.soc")
    # SAFE is left only by command, and only with low rates
    assert not m.request(10 * NS, SUN_POINT, "autonomous", "try")
    assert not m.request(11 * NS, SUN_POINT, "commanded", "ground", ModeInputs(rate_norm_rad_s=0.1))
    assert m.request(12 * NS, SUN_POINT, "commanded", "ground", ModeInputs(rate_norm_rad_s=0.0))
    tr = [(e.fields["frm"], e.fields["to"], e.fields["reason"]) for e in ev.named("mode_transition")]
    assert tr == [
        ("BOOT", "DETUMBLE", "autonomous"),
        ("DETUMBLE", "SUN_POINT", "autonomous"),
        ("SUN_POINT", "COMPUTE", "autonomous"),
        ("COMPUTE", "SUN_POINT", "autonomous"),
        ("SUN_POINT", "SAFE", "autonomous"),
        ("SAFE", "SUN_POINT", "commanded"),
    ]


@given(st.lists(st.tuples(st.sampled_from(["BOOT", "DETUMBLE", "SAFE", "SUN_POINT", "COMPUTE", "X"]),
                          st.sampled_from(["commanded", "autonomous"]),
                          st.floats(0, 1), st.floats(0, 0.2)), max_size=40))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_modes_only_take_allowed_transitions(reqs) -> None:
    ev = EventLog()
    m = ModeManager(ModeConfig(), ev)
    for i, (to, reason, soc, rate) in enumerate(reqs):
        before = m.mode
        ok = m.request(i, to, reason, "prop", ModeInputs(soc=soc, rate_norm_rad_s=rate))
        if ok and to != before:
            assert before != "SAFE" or reason == "commanded"
            assert to != "COMPUTE" or soc >= m.cfg.compute_min_soc
            assert to != "BOOT"
    assert len(ev.named("mode_transition")) == m.transitions


# --- executive ---------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 0

    def now_ns(self) -> int:
        return self.t


class Recorder(Component):
    def __init__(self, name: str, log: list) -> None:
        super().__init__()
        self.name = name
        self.log = log
        self.fail = False
        self.answer = True

    def run(self, t_ns: int) -> None:
        self.log.append((t_ns, self.name))
        if self.fail:
            raise RuntimeError("boom")

    def ping(self, key: int) -> int | None:
        return key if (self.healthy and self.answer) else None


def test_rate_groups_run_on_schedule_and_watchdog_gated_by_health() -> None:
    log: list = []
    clock = FakeClock()
    comps = {n: Recorder(n, log) for n in ("fast", "slow", "plan")}
    groups = (
        RateGroup("control", NS // 10, ("fast",)),
        RateGroup("hk", NS, ("slow", "health")),
        RateGroup("planning", 10 * NS, ("plan",)),
    )
    ev = EventLog()
    expired = []
    ex = Executive(clock, comps, ev, groups, watchdog_timeout_ns=3 * NS, on_watchdog=expired.append)
    ex.step_to(20 * NS - 1)
    assert sum(1 for _, n in log if n == "fast") == 200
    assert [t for t, n in log if n == "slow"] == [i * NS for i in range(20)]
    assert [t for t, n in log if n == "plan"] == [0, 10 * NS]
    # within a tick, table order
    assert log[:3] == [(0, "fast"), (0, "slow"), (0, "plan")]
    assert ex.watchdog.strokes == 20 and not expired
    # a component that stops answering: the watchdog is no longer stroked and expires
    comps["plan"].answer = False
    ex.step_to(30 * NS)
    assert expired and expired[0] == 22 * NS  # last stroke at 19 s, timeout 3 s
    assert ev.named("watchdog_expired")
    comps["plan"].answer = True
    ex.step_to(31 * NS)
    assert ex.watchdog.last_stroke_ns == 31 * NS
    # a component that raises does not stop the executive, and fails its ping
    comps["slow"].fail = True
    ex.step_to(32 * NS)
    assert not comps["slow"].healthy and ex.health_missed["slow"] >= 1
    assert ex.overruns == 0


def test_solo_ticks_span_only_the_ticks_where_one_group_runs_alone() -> None:
    """The span a caller may batch (FlightSoftware.step_frames): ticks from the
    next one, up to a time, on which no other group is due."""
    log: list = []
    comps = {n: Recorder(n, log) for n in ("fast", "slow")}
    groups = (RateGroup("control", NS // 10, ("fast",)), RateGroup("hk", NS, ("slow",)))
    ex = Executive(FakeClock(), comps, EventLog(), groups)
    assert ex.solo_ticks("control", 5 * NS) == 0  # tick 0 runs hk too
    ex.step_to(0)
    assert ex.solo_ticks("control", 5 * NS) == 9  # 0.1 .. 0.9 s; 1 s runs hk
    assert ex.solo_ticks("control", NS // 2) == 5  # up to the time asked
    assert ex.solo_ticks("control", NS // 20) == 0
    ex.ran_solo("control", 4)
    assert ex.next_tick_ns == 5 * NS // 10 and ex.runs_by_group["control"] == 5
    assert ex.solo_ticks("control", 10 * NS) == 5
    ex.ran_solo("control", 5)
    ex.step_to(NS)  # the 1 s tick: both groups, in table order
    assert log[-2:] == [(NS, "fast"), (NS, "slow")]
    # a batch may also run the control frame that opens the next 1 Hz tick
    assert ex.leads_tick("control", 2 * NS) and not ex.leads_tick("control", NS + NS // 2)
    n_fast = sum(1 for _, name in log if name == "fast")
    ex.ran_solo("control", ex.solo_ticks("control", 2 * NS))
    ex.ran_first("control")
    ex.step_to(2 * NS)  # the rest of the 2 s tick: hk only, its control frame is booked
    assert log[-1] == (2 * NS, "slow") and sum(1 for _, name in log if name == "fast") == n_fast
    assert ex.runs_by_group["control"] == 21 and ex.next_tick_ns == 2 * NS + NS // 10
    ex.step_to(3 * NS)  # and the next 1 s tick runs whole again
    assert log[-2:] == [(3 * NS, "fast"), (3 * NS, "slow")]
    # a group that does not come first in its tick is never run ahead of the others
    assert not ex.leads_tick("hk", 10 * NS)


def test_overrun_detected_from_clock() -> None:
    clock = FakeClock()

    class Slow(Component):
        def run(self, t_ns: int) -> None:
            clock.t = t_ns + 2 * NS  # this frame took 2 s of (real) time

    ev = EventLog()
    ex = Executive(clock, {"s": Slow()}, ev, (RateGroup("hk", NS, ("s",)),))
    ex.step_to(0)
    assert ex.overruns == 1 and ev.named("overrun")[0].fields["group"] == "hk"
