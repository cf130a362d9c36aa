"""Payload manager with two real emulated boards over ptys (firmware_bridge emulator processes)."""

from __future__ import annotations

import json
import os
import time

import pytest

from firmware_bridge.emulator import EmulatorProcess, open_pty
from firmware_bridge.link import Link
from flight_sw.app import ENERGY_HOLD_MIN_S, FlightSoftware, FswConfig
from flight_sw.modes import ModeConfig
from flight_sw.orbit import _checksum
from flight_sw.payload import BoardConfig
from flight_sw.tc import write_key
from flight_sw.testing import FakeClock, FakePlant

NS = 1_000_000_000


def _tle() -> str:
    l1 = "1 25544U 98067A   26079.50000000  .00016717  00000-0  10270-3 0  999"
    l2 = "2 25544  51.6416 247.4627 0006703 130.5360 325.0288 15.7212539156353"
    return "\n".join(["ISS", l1 + str(_checksum(l1)), l2 + str(_checksum(l2))])


class EmulatorSwitches:
    """PowerSwitch whose relay really kills and restarts the emulator process on its pty."""

    def __init__(self, emus: dict[int, EmulatorProcess]) -> None:
        self.emus = emus
        self.log: list[tuple[int, bool]] = []

    def set(self, channel: int, on: bool) -> None:
        self.log.append((channel, on))
        e = self.emus[channel]
        if on and not e.alive:
            e.start()
        elif not on and e.alive:
            e.kill()

    def get(self, channel: int) -> bool:
        return self.emus[channel].alive


@pytest.fixture
def fsw_bench(tmp_path):
    emus, links, masters = {}, {}, []
    try:
        for ch, name in ((1, "b0"), (2, "b1")):
            m, slave = open_pty()
            masters.append(m)
            emus[ch] = EmulatorProcess(m, "jetson", name, seed=ch, test_mode=True, clock="virtual",
                                       state_dir=str(tmp_path / name)).start()
            links[name] = Link(slave, timeout_s=0.3, retries=2)
        key = write_key(tmp_path / "tc.key")
        yield emus, links, EmulatorSwitches(emus), key
    finally:
        for lk in links.values():
            lk.close()
        for e in emus.values():
            e.stop()
        for m in masters:
            os.close(m)


def make_fsw(fsw_bench, tle=None, epoch="2026-03-20T12:00:00Z", soc=0.9, **cfg_kw) -> tuple[FlightSoftware, FakeClock, FakePlant]:
    emus, links, switches, key = fsw_bench
    clock = FakeClock()
    plant = FakePlant(clock)
    plant.soc = soc
    cfg = FswConfig(
        epoch_utc=epoch,
        boards=[BoardConfig("b0", 1), BoardConfig("b1", 2)],
        eps={"soc_init": soc, "soc_floor": 0.55},  # the C core's default floor: these tests set SOCs against it
        thermal={"throttle_up_per_s": 1.0},
        modes=ModeConfig(rate_persist_s=1.0),
        **cfg_kw,
    )
    return FlightSoftware(cfg, clock, plant, plant, switches, links, tle, key), clock, plant


def run_until(fsw, clock, pred, max_s=600, dt_s=1, wall_s=300.0, sleep_s=0.0) -> bool:
    end = time.monotonic() + wall_s
    for _ in range(int(max_s / dt_s)):
        clock.t_ns += dt_s * NS
        fsw.step_to(clock.t_ns)
        if pred():
            return True
        if time.monotonic() > end:
            return False
        time.sleep(sleep_s)
    return False


def queue(fsw, n=48, steps=400, verify="none", **extra) -> int:
    params = {"n": n, "steps": steps, "seed": 7, **extra}
    return fsw.command("queue_job", workload="matmul", params=json.dumps(params), deadline_s=1e6, verify=verify)


def test_jobs_complete_redundant_and_throttle_follows_budget(fsw_bench) -> None:
    fsw, clock, plant = make_fsw(fsw_bench)
    ids = [queue(fsw, verify="redundant") for _ in range(2)]
    assert run_until(fsw, clock, lambda: fsw.stats()["jobs_completed"] == 2)
    jobs = [fsw.payload.jobs[i] for i in ids]
    assert all(j.state == "done" and len(j.runs) == 2 for j in jobs)
    assert {r.board for r in jobs[0].runs} == {"b0", "b1"}  # redundant copies on both boards
    assert jobs[0].digest == jobs[1].digest  # same workload and params: same answer
    assert fsw.stats()["seu_detected"] == 0 and fsw.stats()["energy_j_per_job"] > 0
    # now lower the battery (budget drops) and cap the throttle from the ground
    plant.soc = 0.57
    fsw.eps.state["soc"] = 0.57
    fsw.command("set_throttle_cap", cap=0.8)
    queue(fsw, steps=100000)
    run_until(fsw, clock, lambda: False, max_s=20)
    for hk in fsw.hk_records:
        share = (hk["payload_budget_w"] - 10.0) / 20.0  # two boards: 5 W idle, 15 W max each
        cap = 0.8 if hk["t_ns"] >= fsw.hk_records[-20]["t_ns"] else 1.0
        want = max(0.0, min(1.0, share, hk["thermal_derate"], cap))
        assert hk["throttle_cmd"] == pytest.approx(want, abs=1e-9), hk
    last = fsw.hk_records[-1]
    assert last["payload_budget_w"] < 30.0 and last["throttle_cmd"] < 0.8  # the EPS budget binds
    # the boards got the commanded throttle
    for b in ("b0", "b1"):
        assert fsw.payload.boards[b].throttle_sent == pytest.approx(last["throttle_cmd"], abs=0.006)
    fsw.close()


def test_seu_caught_by_redundant_run_and_known_answer(fsw_bench) -> None:
    emus, links, _, _ = fsw_bench
    fsw, clock, plant = make_fsw(fsw_bench)
    ref = queue(fsw, steps=1500)
    assert run_until(fsw, clock, lambda: fsw.payload.jobs[ref].state == "done")
    good = fsw.payload.jobs[ref].digest
    # redundant job; flip a bit in b0's copy while it runs
    jid = queue(fsw, steps=1500, verify="redundant")
    job = fsw.payload.jobs[jid]
    assert run_until(fsw, clock, lambda: len([r for r in job.runs if r.state == "running"]) == 2)
    r0 = next(r for r in job.runs if r.board == "b0")
    links["b0"].inject_seu(r0.remote_id)
    assert run_until(fsw, clock, lambda: job.state in ("done", "failed"), max_s=2000)
    assert job.state == "done" and job.digest == good
    assert len(job.runs) == 3 and fsw.stats()["seu_detected"] == 1  # a tie-break run outvoted b0
    assert fsw.events.named("seu_detected")
    # known answer: the ground sends the expected digest; a flipped result is caught and rerun
    ka = queue(fsw, steps=1500, verify="known_answer", expect_digest=good)
    kjob = fsw.payload.jobs[ka]
    assert run_until(fsw, clock, lambda: any(r.state == "running" for r in kjob.runs))
    run = next(r for r in kjob.runs if r.state == "running")
    links[run.board].inject_seu(run.remote_id)
    assert run_until(fsw, clock, lambda: kjob.state in ("done", "failed"), max_s=2000)
    assert kjob.state == "done" and kjob.digest == good and kjob.seu_caught == 1
    assert fsw.stats()["seu_detected"] == 2
    fsw.close()


def test_hung_board_power_cycled_through_switch_and_job_continues(fsw_bench) -> None:
    emus, links, switches, _ = fsw_bench
    fsw, clock, plant = make_fsw(fsw_bench, checkpoint_period_s=2.0)
    ref = queue(fsw, steps=1500)
    assert run_until(fsw, clock, lambda: fsw.payload.jobs[ref].state == "done")
    good = fsw.payload.jobs[ref].digest
    jid = queue(fsw, steps=1500)
    job = fsw.payload.jobs[jid]
    assert run_until(fsw, clock, lambda: job.runs and job.runs[0].checkpoint_step > 0)
    board = job.runs[0].board
    ch = fsw.payload.boards[board].cfg.channel
    pid_before = emus[ch].pid
    links[board].inject_hang(0)  # hangs until power cycled
    t_hang = clock.t_ns
    assert run_until(fsw, clock, lambda: fsw.payload.stats["power_cycles"] == 1, max_s=60)
    acts = [(e.fields["action"], e.t_ns) for e in fsw.events.named("fdir_action") if e.fields["target"] == board]
    assert [a for a, _ in acts] == ["retry", "reset", "power_cycle"]
    # heartbeat limit 2.5 s, persistence 3, step persistence 5 (1 Hz frames)
    assert acts[0][1] - t_hang >= 5 * NS and acts[1][1] - acts[0][1] == 5 * NS
    assert (ch, False) in switches.log and (ch, True) in switches.log
    assert emus[ch].alive and emus[ch].pid != pid_before  # a new process on the same pty
    assert run_until(fsw, clock, lambda: job.state in ("done", "failed"), max_s=2000)
    assert job.state == "done" and job.digest == good
    st = fsw.stats()
    # the board keeps checkpoints in its state directory (its "disk"), which survives the
    # power cycle: the job resumes from its checkpoint, it does not start again
    assert st["resumed_from_checkpoint"] == 1 and st["restarts_from_scratch"] == 0
    resumed = [e for e in fsw.events.named("job_started") if e.fields.get("resumed")]
    assert resumed and resumed[-1].fields["checkpoint_step"] > 0
    assert fsw.mode == "COMPUTE" and not fsw.payload.boards[board].isolated
    fsw.close()


def test_a_job_that_ended_on_its_board_while_the_payload_was_suspended_does_not_hold_the_board(
        fsw_bench) -> None:
    """The payload is suspended for energy; meanwhile the job ends on its board (here cancelled
    there, on the board's own link). The resume is refused: the flight software must take the
    board's word for the job (a failed run, dispatched again), not keep a "suspended" run that
    holds the board for good."""
    emus, links, _switches, _key = fsw_bench
    fsw, clock, plant = make_fsw(fsw_bench, tle=_tle(), epoch="2026-03-20T12:30:00Z", soc=0.557)
    jid = queue(fsw, steps=10_000_000)
    job = fsw.payload.jobs[jid]
    assert run_until(fsw, clock, lambda: job.runs and job.runs[0].state == "running")
    assert run_until(fsw, clock, lambda: fsw.payload.suspended, max_s=600)
    first = job.runs[0]
    assert first.state == "suspended"
    links[first.board].cancel(first.remote_id)  # the job ends on the board
    assert run_until(fsw, clock, lambda: not fsw.payload.suspended, max_s=3000)
    # the board's report settles it: the run failed, and the job runs again
    assert run_until(fsw, clock, lambda: len(job.runs) > 1 and job.runs[-1].state == "running", max_s=60)
    assert first.state == "failed" and job.attempts == 1
    assert all(b.run is None or b.run[1] is not first for b in fsw.payload.boards.values())
    fsw.close()


def test_suspend_before_predicted_eclipse_when_energy_requires_and_resume_after(fsw_bench) -> None:
    # epoch placed so that the onboard predictor's first eclipse starts ~430 s in; the battery
    # holds ~15 kJ above the EPS floor: enough for the payload in sunlight, not through the eclipse
    fsw, clock, plant = make_fsw(fsw_bench, tle=_tle(), epoch="2026-03-20T12:30:00Z", soc=0.557)
    w = fsw.window
    assert w is not None and 300 * NS < w.entry_ns < 600 * NS
    jid = queue(fsw, steps=10_000_000)
    job = fsw.payload.jobs[jid]
    assert run_until(fsw, clock, lambda: job.runs and job.runs[0].state == "running")
    assert run_until(fsw, clock, lambda: fsw.payload.suspended, max_s=600, sleep_s=0.0)
    ev = [e for e in fsw.events.named("payload_suspended") if e.fields["reason"].startswith("energy")]
    assert ev and w.entry_ns - fsw.cfg.eclipse_lead_s * NS <= ev[0].t_ns < w.entry_ns
    assert job.runs[0].state == "suspended"
    assert run_until(fsw, clock, lambda: not fsw.payload.suspended, max_s=3000, sleep_s=0.0)
    res = fsw.events.named("payload_resumed")[-1]
    # resumed once the budget is back (in the eclipse too: suspending saves no energy,
    # the boards stay powered), never sooner than ENERGY_HOLD_MIN_S after the suspend
    act = fsw.payload.active_boards()
    min_w = sum(b.cfg.idle_w + fsw.cfg.min_run_fraction * (b.cfg.max_w - b.cfg.idle_w) for b in act)
    assert res.t_ns >= ev[0].t_ns + ENERGY_HOLD_MIN_S * NS and res.fields["runs"] == 1
    assert fsw.payload.budget_w >= 1.1 * min_w
    assert job.runs[0].state == "running"
    # the high-energy case: same orbit, full battery, no suspend
    fsw.close()
