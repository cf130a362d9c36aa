"""Payload boards on a bench with boards of their own (``pytest --bench FILE -m hardware``).

Skipped on the virtual bench (emulated boards only). On the QEMU bench
(``hil_rig/benches/qemu.toml``: QEMU arm64 boards booting the real agent under
its systemd unit, docs/boards.md) the suite powers the boards itself through the
bench's supply and relay board; on a real bench too. The QEMU boards need
``qemu-system-aarch64`` and the board image (``hil board image``): without them
the tests skip, naming the bench and the command, unless
``ORBIT_HIL_REQUIRE_HARDWARE=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
from collections.abc import Iterator
from typing import Any

import pytest

from firmware_bridge.link import Link, LinkError

#: bench supply voltage while the suite powers the boards (above every kind's minimum)
SUPPLY_V = 12.0
#: wall-clock bound on a board's boot (a QEMU board answered 72 s after power on on a loaded 2-core host)
BOOT_BUDGET_S = 240.0
#: 4.1 MFLOP: 7 s at the qemu-arm64 rating (0.6 MFLOP/s), 4 s on a Jetson's (paced in real time)
JOB = ("matmul", {"n": 32, "steps": 60, "seed": 11})


@dataclasses.dataclass
class Powered:
    bench: Any  # benchfile.Bench, resolved (serial paths of the started boards)
    supply: Any
    switch: Any
    vb: Any  # VirtualBench or None

    def serial(self, name: str) -> tuple[str, int]:
        b = self.bench.board(name)
        return b.serial, b.baud

    def link(self, name: str, **kw: Any) -> Link:
        path, baud = self.serial(name)
        return Link(path, baud, timeout_s=kw.pop("timeout_s", 5.0), retries=kw.pop("retries", 3), **kw)

    def relay(self, name: str, on: bool) -> None:
        b = self.bench.board(name)
        if self.switch is not None and b.channel is not None:
            self.switch.set_channel(b.channel, on)

    def wait_down(self, name: str) -> None:
        if self.vb is not None and name in self.vb.boards:
            assert self.vb.wait_board(name, running=False, timeout_s=30.0), f"{name} still running"

    def wait_up(self, name: str, budget_s: float = BOOT_BUDGET_S) -> float:
        """Poll with pings until the board's agent answers; returns the seconds it took."""
        t0 = time.monotonic()
        if self.vb is not None:
            self.vb.wake()
        path, baud = self.serial(name)
        with Link(path, baud, timeout_s=0.5, retries=0) as link:
            while True:
                try:
                    link.ping()
                    return time.monotonic() - t0
                except LinkError:
                    pass
                if self.vb is not None and name in self.vb.boards and self.vb.board_died(name):
                    pytest.fail(f"board {name}: its process died while booting:\n{self.vb.board_log_tail(name)}")
                if time.monotonic() - t0 > budget_s:
                    tail = self.vb.board_log_tail(name) if self.vb is not None and name in self.vb.boards else ""
                    pytest.fail(f"board {name}: no answer within {budget_s:.0f} s of power on\n{tail}")


def _unavailable(bench: Any) -> str | None:
    if not any(b.qemu for b in bench.boards):
        return None
    from hil_rig.boards.image import ImageError, find_image
    from hil_rig.boards.qemu import qemu_missing

    why = qemu_missing()
    if why is None:
        try:
            find_image()
        except ImageError as exc:
            why = str(exc)
    return why


@pytest.fixture(scope="module")
def powered(bench: Any) -> Iterator[Powered]:
    """The bench's boards powered (supply on, every relay closed) and answering."""
    if not bench.real_boards:
        pytest.skip(f"needs real boards; bench {bench.label} has only emulated boards")
    why = _unavailable(bench.spec)
    if why is not None:
        msg = f"bench {bench.label}: {why}"
        if os.environ.get("ORBIT_HIL_REQUIRE_HARDWARE") == "1":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    from hil_rig.instruments import open_instruments
    from hil_rig.safe_state import SafeState
    from hil_rig.virtual_bench import VirtualBench

    vb = VirtualBench(bench.spec, test_mode=True).start() if bench.spec.virtual else None
    try:
        b = vb.bench if vb is not None else bench.spec
        supplies, switches = open_instruments(b)
        supply = next(iter(supplies.values()))
        switch = next(iter(switches.values()), None)
        with SafeState(b, supplies, switches, handle_signals=False) as guard:
            guard.apply()
            limit = b.supplies[0].current_limit_a
            if limit is not None:
                supply.set_current_limit(limit)
            supply.set_voltage(SUPPLY_V)
            supply.set_output(True)
            p = Powered(b, supply, switch, vb)
            names = [x.name for x in b.boards]
            for n in names:
                p.relay(n, True)
            p.boot_s = {n: p.wait_up(n) for n in names}  # type: ignore[attr-defined]
            yield p
        for d in (*supplies.values(), *switches.values()):
            d.close()
    finally:
        if vb is not None:
            vb.close()


@pytest.mark.hardware
def test_boards_boot_and_say_what_they_are(powered: Powered) -> None:
    for b in powered.bench.boards:
        with powered.link(b.name) as link:
            info = link.board_info()
        assert info["kind"] == b.emulates, info
        assert info["clock"] == "real" and info["test_mode"], info
        if b.qemu:
            assert info["machine"] == "aarch64", info
            assert info["name"] == b.name, info  # the hostname its kernel command line set
        print(f"{b.name}: {info['model']} ({info['machine']}), agent up {powered.boot_s[b.name]:.1f} s "  # type: ignore[attr-defined]
              f"after power on, agent uptime {info['uptime_s']:.1f} s")


@pytest.mark.hardware
def test_ping_and_housekeeping_come_from_the_board(powered: Powered) -> None:
    for b in powered.bench.boards:
        with powered.link(b.name) as link:
            rtts = sorted(link.ping() for _ in range(200))
            info = link.board_info()
            hk = link.housekeeping()
            hk2 = link.housekeeping()
            assert link.stats.timeouts == 0
        assert 0.0 <= hk["cpu_load"] <= 1.0
        assert 0 < hk["mem_available_kib"] <= hk["mem_total_kib"]
        if b.qemu:
            # QEMU's virt machine has no thermal zones and no power monitor: reported absent,
            # never invented
            assert info["hk_layout"]["temps"] == [] and hk["temps_k"] == {}, hk
            assert info["hk_layout"]["rails"] == [] and math.isnan(hk["power_w"]), hk
            # the kernel's view of the RAM QEMU gave it (less what the kernel keeps)
            assert 0.7 * b.memory_mb * 1024 < hk["mem_total_kib"] <= b.memory_mb * 1024, hk
            assert hk2["uptime_s"] >= hk["uptime_s"]
        else:
            temps = [t for t in hk["temps_k"].values() if not math.isnan(t)]
            assert temps and all(250.0 < t < 380.0 for t in temps), hk["temps_k"]
        print(f"{b.name}: ping p50 {rtts[100] * 1e3:.2f} ms, p99 {rtts[198] * 1e3:.2f} ms over "
              f"{b.serial}; mem {hk['mem_total_kib']} KiB, cpu load {hk['cpu_load']:.2f}")


def _run_job(link: Link, timeout_s: float = 300.0) -> dict:
    jid = link.start_job(*JOB)
    st = link.wait_job(jid, timeout_s=timeout_s, poll_s=0.2)
    assert st["state"] == "done", st
    return st


@pytest.mark.hardware
def test_a_job_runs_to_its_digest_on_every_board(powered: Powered) -> None:
    """The same job gives the same digest on every board of one architecture; against the
    host's numpy (the emulated boards' digest) it is only compared, and said."""
    import numpy as np

    from firmware_bridge.workloads import Work

    digests = {}
    for b in powered.bench.boards:
        with powered.link(b.name) as link:
            digests[b.name] = _run_job(link)["digest"]
    assert len(set(digests.values())) == 1, digests
    w = Work(JOB[0], JOB[1], np)
    for _ in range(JOB[1]["steps"]):
        w.run_step()
    same = w.digest() == next(iter(digests.values()))
    print(f"digest on the boards {next(iter(digests.values()))}; on this host ({platform.machine()}) "
          f"{w.digest()}: {'the same' if same else 'DIFFERENT'}")


@pytest.mark.hardware
def test_a_power_cycle_mid_job_resumes_from_its_checkpoint(powered: Powered) -> None:
    name = powered.bench.boards[0].name
    with powered.link(name) as link:
        reference = _run_job(link)["digest"]
        jid = link.start_job(*JOB)
        while link.job_status(jid)["step"] < 20:
            time.sleep(0.1)
        ck = link.checkpoint(jid)
    assert ck["checkpoint_step"] >= 20, ck
    powered.relay(name, False)  # power lost: the QEMU process is killed, no shutdown
    powered.wait_down(name)
    powered.relay(name, True)
    powered.wait_up(name)
    with powered.link(name) as link:
        st = link.job_status(jid)
        assert st["state"] == "suspended" and st["checkpoint_step"] == ck["checkpoint_step"], st
        assert link.board_info()["uptime_s"] < 120  # it really rebooted
        link.resume(jid)
        done = link.wait_job(jid, timeout_s=300.0, poll_s=0.2)
    assert done["state"] == "done" and done["digest"] == reference, done


@pytest.mark.hardware
def test_a_brownout_takes_the_boards_down_and_they_boot_again(powered: Powered) -> None:
    b0 = powered.bench.boards[0]
    powered.supply.set_voltage(b0.min_voltage_v * 0.8)  # below every board's minimum
    try:
        for b in powered.bench.boards:
            powered.wait_down(b.name)
        with powered.link(b0.name, timeout_s=0.3, retries=1) as link:
            with pytest.raises(LinkError):
                link.ping()
    finally:
        powered.supply.set_voltage(SUPPLY_V)
    for b in powered.bench.boards:
        powered.wait_up(b.name)
        with powered.link(b.name) as link:
            assert link.board_info()["uptime_s"] < 120


@pytest.mark.hardware
def test_an_seu_is_caught_by_comparing_boards(powered: Powered) -> None:
    boards = [b.name for b in powered.bench.boards]
    if len(boards) < 2:
        pytest.skip("needs two boards to compare")
    digests = {}
    for k, name in enumerate(boards[:2]):
        with powered.link(name) as link:
            jid = link.start_job(*JOB)
            if k == 1:
                while link.job_status(jid)["step"] < 10:
                    time.sleep(0.05)
                link.inject_seu(jid, index=3, bit=30)
            digests[name] = link.wait_job(jid, timeout_s=300.0, poll_s=0.2)["digest"]
    assert digests[boards[0]] != digests[boards[1]], digests


@pytest.mark.hardware
def test_the_link_survives_an_unplug_and_replug(powered: Powered, tmp_path) -> None:
    from firmware_bridge.proxy import FaultProxy

    b = powered.bench.boards[0]
    px = FaultProxy(b.serial, baud=b.baud, seed=1, link_symlink=str(tmp_path / b.name))
    try:
        with Link(px.link_path, b.baud, timeout_s=5.0, retries=3) as link:
            link.ping()
            px.unplug()
            with pytest.raises(LinkError):
                link.ping()
            px.replug()
            assert link.ping() > 0
            assert link.board_info()["kind"] == b.emulates
    finally:
        px.close()
