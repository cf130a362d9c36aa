"""The virtual bench and the closed power loop: relays and supply gate emulated boards."""

from __future__ import annotations

import time

import pytest

from firmware_bridge.link import Link, LinkError
from hil_rig.benchfile import load_bench
from hil_rig.instruments import LimitError, open_instruments
from hil_rig.power_loop import PowerLoop
from hil_rig.virtual_bench import VirtualBench


@pytest.fixture(scope="module")
def vbench():
    vb = VirtualBench(load_bench(None), seed=7)
    vb.start()
    supplies, switches = open_instruments(vb.bench)
    loop = PowerLoop(supplies["psu0"], switches["relays0"], vb.bench, current_limit_a=5.0)
    try:
        yield vb, loop
    finally:
        for d in (*supplies.values(), *switches.values()):
            d.close()
        vb.close()


def _all_off(vb: VirtualBench, loop: PowerLoop) -> None:
    loop.update(0.0, bus_up=False)
    for b in ("jetson0", "rpi0"):
        loop.set_board_power(b, False)
        assert vb.wait_board(b, running=False)


def _wait_ping(link: Link, timeout_s: float = 30.0) -> float:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return link.ping(timeout_s=0.5)
        except LinkError:
            if time.monotonic() > deadline:
                raise


def test_endpoints_point_at_started_parts(vbench) -> None:
    vb, _ = vbench
    ep = vb.endpoints
    assert set(ep["boards"]) == {"jetson0", "rpi0"}
    for b in ep["boards"].values():
        assert b["serial"].startswith("/dev/pts/")
    assert ep["instruments"]["psu0"]["url"].startswith("modbus-tcp://127.0.0.1:")
    assert ep["instruments"]["relays0"]["url"].startswith("modbus-rtu:///dev/pts/")
    assert all(not i.simulated for i in vb.bench.instruments)  # resolved to real endpoints


def test_relay_power_cycle_stops_and_reboots_a_board_and_its_link_sees_it(vbench) -> None:
    vb, loop = vbench
    _all_off(vb, loop)
    loop.update(12.0)
    loop.set_board_power("jetson0", True)
    assert vb.wait_board("jetson0", running=True)
    link = Link(vb.endpoints["boards"]["jetson0"]["serial"], timeout_s=0.3, retries=1)
    try:
        _wait_ping(link)
        pid_before = vb.boards["jetson0"].proc.pid
        boots_before = vb.boards["jetson0"].boots

        loop.set_board_power("jetson0", False)  # relay off: power lost
        assert vb.wait_board("jetson0", running=False)
        with pytest.raises(LinkError):
            link.ping(timeout_s=0.3)  # the link sees it go

        loop.set_board_power("jetson0", True)  # relay on: boots after boot_time_s
        assert vb.wait_board("jetson0", running=True)
        _wait_ping(link)  # ... and come back
        assert vb.boards["jetson0"].proc.pid != pid_before
        assert vb.boards["jetson0"].boots == boots_before + 1
        assert vb.boards["jetson0"].power_losses >= 1
        assert link.board_info()["uptime_s"] < 30  # a fresh boot: state was lost
    finally:
        link.close()


def test_checkpoint_on_the_boards_disk_survives_a_relay_power_cycle(vbench) -> None:
    vb, loop = vbench
    _all_off(vb, loop)
    loop.update(12.0)
    loop.set_board_power("rpi0", True)
    assert vb.wait_board("rpi0", running=True)
    link = Link(vb.endpoints["boards"]["rpi0"]["serial"], timeout_s=0.5, retries=2)
    try:
        _wait_ping(link)
        jid = link.start_job("matmul", {"n": 16, "steps": 10_000_000, "seed": 3})
        ck = link.checkpoint(jid)
        assert ck["checkpoint_step"] >= 0
        loop.set_board_power("rpi0", False)  # power lost mid-job: RAM gone, disk kept
        assert vb.wait_board("rpi0", running=False)
        loop.set_board_power("rpi0", True)
        assert vb.wait_board("rpi0", running=True)
        _wait_ping(link)
        st = link.job_status(jid)
        assert st["state"] == "suspended" and st["checkpoint_step"] == ck["checkpoint_step"]
        link.resume(jid)
        link.cancel(jid)
    finally:
        link.close()


def test_measured_current_is_the_boards_draw(vbench) -> None:
    vb, loop = vbench
    _all_off(vb, loop)
    assert loop.update(12.0).current_a == 0.0  # nothing connected
    for b in ("jetson0", "rpi0"):
        loop.set_board_power(b, True)
    for b in ("jetson0", "rpi0"):
        assert vb.wait_board(b, running=True)
    time.sleep(0.1)  # let the emulators report their power
    sample = loop.update(12.0)
    draw_w = sum(vb.boards[b].proc.power_w for b in ("jetson0", "rpi0"))
    assert sample.output_on and sample.mode == "cv"
    assert sample.current_a == pytest.approx(draw_w / 12.0, abs=0.011)  # RD6012: 10 mA counts
    assert sample.power_w == pytest.approx(draw_w, abs=0.15)

    sample = loop.update(12.0, bus_up=False)  # the simulated bus collapses: output cut
    assert not sample.output_on and sample.voltage_v == 0.0 and sample.current_a == 0.0
    for b in ("jetson0", "rpi0"):
        assert vb.wait_board(b, running=False)


def test_power_loop_reads_the_supply_only_when_its_reading_can_change(vbench) -> None:
    """Given what the simulated supply's reading depends on (``supply_inputs``), the
    loop keeps its last reading while that stays the same and it sends nothing;
    anything else (a relay switched, a setpoint written, no inputs given) reads."""
    vb, loop = vbench
    _all_off(vb, loop)
    sim = vb.sim_supplies["psu0"]
    first = loop.update(12.0, inputs=lambda: vb.supply_inputs("psu0"))  # output on, setpoint: sent, read
    reads, kept = sim.reads, loop.readings_reused
    again = loop.update(12.001, inputs=lambda: vb.supply_inputs("psu0"))  # below min_step_v: nothing sent
    assert (sim.reads, loop.readings_reused) == (reads, kept + 1)
    assert (again.voltage_v, again.current_a, again.output_on) == (first.voltage_v, first.current_a, True)
    loop.set_board_power("rpi0", True)  # its relay: the load the supply sees may change
    loop.update(12.0, inputs=lambda: vb.supply_inputs("psu0"))
    assert (sim.reads, loop.readings_reused) == (reads + 1, kept + 1)
    loop.update(12.0)  # no inputs (a real supply): always read
    loop.update(12.0)
    assert (sim.reads, loop.readings_reused) == (reads + 3, kept + 1)
    loop.update(13.0, inputs=lambda: vb.supply_inputs("psu0"))  # a new setpoint: written, then read
    assert sim.reads > reads + 3 and loop.readings_reused == kept + 1
    assert sim.state().voltage_set_v == pytest.approx(13.0)
    assert vb.wait_board("rpi0", running=True)
    _all_off(vb, loop)


def test_low_bus_voltage_browns_out_only_the_board_that_needs_more(vbench) -> None:
    vb, loop = vbench
    _all_off(vb, loop)
    for b in ("jetson0", "rpi0"):
        loop.set_board_power(b, True)
    loop.update(8.0)  # jetson0 needs >= 9 V, rpi0 >= 4.75 V
    assert vb.wait_board("rpi0", running=True)
    time.sleep(1.0)  # longer than jetson0's boot time
    assert not vb.board_running("jetson0")
    loop.update(12.0)
    assert vb.wait_board("jetson0", running=True)


def test_bus_voltage_outside_bench_limits_is_refused_before_sending(vbench) -> None:
    vb, loop = vbench
    loop.update(12.0)
    sim = vb.sim_supplies["psu0"]
    before = sim.writes
    with pytest.raises(LimitError, match="outside the bench file's limits 0..30 V"):
        loop.update(31.0)
    assert sim.writes == before
    assert sim.state().voltage_set_v == pytest.approx(12.0)
