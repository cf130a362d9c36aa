"""The flight software as a whole under the fake plant: TC path, ground port, watchdog,
FDIR to SAFE, determinism, bad config, and the onboard eclipse predictor against the rig."""

from __future__ import annotations

import datetime as dt
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import native
from flight_sw import CommandError, FlightSoftware, FswConfig
from flight_sw.dictionary import TmCodec
from flight_sw.ground import read_packet
from flight_sw.modes import ModeConfig
from flight_sw.orbit import EclipsePredictor, TleError, _checksum, epoch_tuple, parse_tle
from flight_sw.tc import TcSender
from flight_sw.testing import FakeClock, FakePlant, FakeSwitches

NS = 1_000_000_000
KEY = bytes(range(32))


def _tle() -> str:
    l1 = "1 25544U 98067A   26079.50000000  .00016717  00000-0  10270-3 0  999"
    l2 = "2 25544  51.6416 247.4627 0006703 130.5360 325.0288 15.7212539156353"
    return "\n".join(["ISS", l1 + str(_checksum(l1)), l2 + str(_checksum(l2))])


def make(tle: str | None = None, **kw) -> tuple[FlightSoftware, FakeClock, FakePlant]:
    clock = FakeClock()
    plant = FakePlant(clock)
    kw.setdefault("eps", {"soc_init": 0.9})
    cfg = FswConfig(modes=ModeConfig(rate_persist_s=1.0), **kw)
    return FlightSoftware(cfg, clock, plant, plant, FakeSwitches(), {}, tle, KEY), clock, plant


def advance(fsw: FlightSoftware, clock: FakeClock, seconds: float) -> None:
    clock.t_ns += int(seconds * NS)
    fsw.step_to(clock.t_ns)


def test_authenticated_tc_executes_and_bad_ones_are_security_events() -> None:
    fsw, clock, _ = make()
    tx = TcSender(KEY)
    good = tx.build("set_throttle_cap", cap=0.25)
    forged = bytearray(tx.build("set_mode", mode="SAFE"))
    forged[-3] ^= 0x40
    fsw.submit_tc(good)
    fsw.submit_tc(bytes(forged))
    fsw.submit_tc(good)  # replay
    advance(fsw, clock, 1)
    assert fsw.throttle_cap == 0.25 and fsw.mode != "SAFE"
    rej = [e.fields["reason"] for e in fsw.events.named("tc_rejected")]
    assert rej == ["bad_mac", "replay"]
    assert all(e.severity == "security" for e in fsw.events.named("tc_rejected"))
    assert fsw.telemetry()["tc_accepted"] == 1 and fsw.telemetry()["tc_rejected"] == 2
    # an authentic command that fails in execution is logged, not a crash
    fsw.submit_tc(tx.build("isolate_board", board="nope"))
    advance(fsw, clock, 1)
    assert fsw.events.named("tc_failed")[-1].fields["command"] == "isolate_board"


@given(st.lists(st.binary(max_size=120), max_size=8))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzzed_uplink_never_crashes_the_flight_software(packets) -> None:
    fsw, clock, _ = make()
    for p in packets:
        fsw.submit_tc(p)
    advance(fsw, clock, 1)
    n = len(fsw.events.named("tc_rejected")) + len(fsw.events.named("tc_accepted"))
    assert n == len(packets)
    assert fsw.executive.health_missed == {}


def test_ground_port_uplink_and_downlink() -> None:
    fsw, clock, _ = make(ground_port=0)
    try:
        with socket.create_connection(fsw.ground.address, timeout=5) as s:
            end = time.monotonic() + 10
            while not fsw.ground._clients and time.monotonic() < end:
                time.sleep(0.01)
            s.sendall(TcSender(KEY).build("set_throttle_cap", cap=0.5))
            end = time.monotonic() + 10
            while fsw.throttle_cap != 0.5 and time.monotonic() < end:
                advance(fsw, clock, 1)
                time.sleep(0.01)
            assert fsw.throttle_cap == 0.5
            s.settimeout(5)
            advance(fsw, clock, 3)
            codec = TmCodec([])
            got = []
            while not ({"hk", "event"} <= {g["kind"] for g in got}) and len(got) < 50:
                got.append(codec.decode(read_packet(s)))
            hk = next(g for g in got if g["kind"] == "hk")
            assert 0.0 < hk["soc"] <= 1.0
            ev = [g for g in got if g["kind"] == "event"]
            assert ev and all(e["name"] and e["severity"] for e in ev)
            s.sendall(b"\xff" * 6)  # not a CCSDS header: counted, that connection closed
            end = time.monotonic() + 10
            while fsw.ground.framing_errors == 0 and time.monotonic() < end:
                time.sleep(0.01)
            assert fsw.ground.framing_errors == 1
    finally:
        fsw.close()


def test_watchdog_expiry_commands_safe() -> None:
    fsw, clock, _ = make()
    advance(fsw, clock, 5)
    assert fsw.mode in ("SUN_POINT", "COMPUTE", "DETUMBLE")
    fsw.executive.components["thermal"].ping = lambda key: None  # a component stops answering
    advance(fsw, clock, 10)
    assert fsw.events.named("watchdog_expired")
    assert fsw.mode == "SAFE"
    tr = fsw.events.named("mode_transition")[-1]
    assert tr.fields["to"] == "SAFE" and tr.fields["reason"] == "autonomous"


def test_low_battery_goes_safe_through_fdir_at_its_persistence() -> None:
    fsw, clock, plant = make()
    advance(fsw, clock, 5)
    fsw.eps.state["soc"] = 0.1
    fsw.eps.state["rest_time_s"] = 0.0
    plant.soc = 0.1
    t0 = clock.t_ns
    advance(fsw, clock, 30)
    act = [e for e in fsw.events.named("fdir_action") if e.fields["target"] == "spacecraft"]
    assert [e.fields["action"] for e in act] == ["safe"]
    assert act[0].t_ns == t0 + 10 * NS  # soc monitor persistence 10 (first low sample at t0+1 s)
    assert fsw.mode == "SAFE" and "battery.soc" in fsw.events.named("mode_transition")[-1].fields["cause"]


def test_same_inputs_same_telemetry() -> None:
    runs = []
    for _ in range(2):
        fsw, clock, _ = make(tle=_tle())
        fsw.command("set_throttle_cap", cap=0.7)
        advance(fsw, clock, 120)
        runs.append([repr(sorted(h.items())) for h in fsw.hk_records])  # repr: NaN == NaN
    assert runs[0] == runs[1] and len(runs[0]) == 121


def test_bad_config_and_commands_are_named() -> None:
    with pytest.raises(ValueError, match="bogus"):
        FswConfig.from_mapping({"bogus": 1})
    with pytest.raises(native.ConfigError, match="capacity_ah"):
        make(eps={"capacity_ah": -1.0})
    fsw, _, _ = make()
    with pytest.raises(CommandError, match="unknown command"):
        fsw.command("self_destruct")
    with pytest.raises(CommandError, match="cap"):
        fsw.command("set_throttle_cap", cap=2.0)
    with pytest.raises(CommandError, match="mode"):
        fsw.command("set_mode", mode="COMPUTE")  # BOOT -> COMPUTE is not a transition


def test_tle_errors_name_line_and_column() -> None:
    good = _tle()
    lines = good.splitlines()
    bad = "\n".join([lines[0], lines[1][:68] + str((int(lines[1][68]) + 1) % 10), lines[2]])
    with pytest.raises(TleError, match="line 2, column 69"):
        parse_tle(bad)
    with pytest.raises(TleError, match="line 3"):
        parse_tle("\n".join([lines[0], lines[1], lines[2][:40]]))
    fsw, _, _ = make()
    with pytest.raises(CommandError, match="column 69"):
        fsw.command("upload_tle", tle=bad)


def test_onboard_eclipse_edges_lie_inside_the_rigs_penumbra() -> None:
    """The onboard (simple) predictor against the rig's conical-shadow contact finder."""
    from hil_rig.eclipse import find_contacts_ns
    from hil_rig.orbit import Orbit

    epoch = "2026-03-20T12:00:00Z"
    epoch_unix_ns = int(dt.datetime(2026, 3, 20, 12, tzinfo=dt.UTC).timestamp()) * NS
    pred = EclipsePredictor(epoch_tuple(epoch))
    pred.load_tle(_tle())
    rig = find_contacts_ns(Orbit.from_tle(_tle()), epoch_unix_ns, epoch_unix_ns + 6 * 3600 * NS)
    assert len(rig) >= 3
    t = 0
    for ecl in rig:
        if ecl.penumbra_entry is None or ecl.penumbra_exit is None or ecl.umbra_entry is None:
            continue
        w = pred.next_eclipse(t)
        assert w is not None
        pe, ue = ecl.penumbra_entry - epoch_unix_ns, ecl.umbra_entry - epoch_unix_ns
        ux, px = ecl.umbra_exit - epoch_unix_ns, ecl.penumbra_exit - epoch_unix_ns
        # mid-penumbra edges; 1 s allowance for the low-precision sun and the 0.1 s bisection
        assert pe - NS <= w.entry_ns <= ue + NS, (pe, w.entry_ns, ue)
        assert ux - NS <= w.exit_ns <= px + NS, (ux, w.exit_ns, px)
        t = w.exit_ns + 60 * NS


def _to_predicted_sun(fsw: FlightSoftware, clock: FakeClock, need_s: float) -> None:
    """Advance until the onboard prediction gives ``need_s`` of full sun ahead."""
    for _ in range(2000):
        w = fsw.window
        if w is None or (clock.t_ns > w.exit_ns + 70 * NS) or clock.t_ns + (need_s + 70) * NS < w.entry_ns:
            return
        advance(fsw, clock, 10)
    raise AssertionError("no sunlit stretch found")


def test_dead_sun_sensors_in_predicted_sun_go_safe() -> None:
    """Sun sensors that see nothing while the onboard eclipse prediction says full
    sun: after sun_missing_max_s the spacecraft goes SAFE, with the cause logged."""
    fsw, clock, plant = make(tle=_tle())
    advance(fsw, clock, 20)
    _to_predicted_sun(fsw, clock, 200)
    plant.sun_valid = False
    t0 = clock.t_ns
    advance(fsw, clock, 150)
    act = [e for e in fsw.events.named("fdir_action") if e.fields["target"] == "spacecraft"]
    assert [e.fields["action"] for e in act] == ["safe"]
    assert t0 + 120 * NS < act[0].t_ns <= t0 + 123 * NS
    assert fsw.mode == "SAFE" and "adcs.sun_missing_s" in fsw.events.named("mode_transition")[-1].fields["cause"]


def test_no_sun_in_a_predicted_eclipse_is_not_a_fault() -> None:
    fsw, clock, plant = make(tle=_tle())
    advance(fsw, clock, 20)
    for _ in range(2000):  # to just inside the next predicted eclipse
        w = fsw.window
        if w is not None and w.entry_ns + 5 * NS <= clock.t_ns < w.exit_ns:
            break
        advance(fsw, clock, 10)
    w = fsw.window
    plant.sun_valid = False  # dark all through the eclipse, and 30 s past the predicted exit
    advance(fsw, clock, (w.exit_ns - clock.t_ns) / NS + 30)
    plant.sun_valid = True
    advance(fsw, clock, 200)
    assert not [e for e in fsw.events.named("fdir_action") if e.fields["target"] == "spacecraft"]
    assert fsw.mode != "SAFE"
