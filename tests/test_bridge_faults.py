"""The link over a bad line: fault proxy, 1% corruption end to end, USB unplug/replug."""

from __future__ import annotations

import os
import threading
import time
import tty

import numpy as np
import pytest

from firmware_bridge import protocol as P
from firmware_bridge.emulator import EmulatorProcess, open_pty
from firmware_bridge.link import CommandRejected, Link, LinkError, LinkTimeout
from firmware_bridge.proxy import FaultProxy


@pytest.fixture
def rig(tmp_path):
    """emulator (own process) = pty A = fault proxy = pty B (via by-id symlink) = Link."""
    master, slave = open_pty()
    emu = EmulatorProcess(master, kind="jetson", name="b0", test_mode=True, status=False).start()
    link_path = str(tmp_path / "by-id" / "usb-FTDI_board0-if00-port0")
    os.makedirs(os.path.dirname(link_path))
    proxy = FaultProxy(slave, link_symlink=link_path, seed=1234)
    yield emu, proxy, link_path
    proxy.close()
    emu.stop()
    os.close(master)


def _read_exact(fd: int, n: int, timeout_s: float = 5.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        try:
            out += os.read(fd, n - len(out))
        except BlockingIOError:
            time.sleep(0.001)
    return out


def test_proxy_faults_are_seeded_and_at_the_requested_rate() -> None:
    m, s = os.openpty()
    tty.setraw(s)
    proxy = FaultProxy(m, seed=5)
    far = os.open(proxy.link_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(far)
    try:
        data = np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes()
        proxy.set_faults(corrupt=0.01, direction="to_link")
        for i in range(0, len(data), 1000):
            os.write(s, data[i:i + 1000])
            got = _read_exact(far, 1000)
            assert len(got) == 1000  # corruption keeps the length
        st = proxy.stats.to_link
        # The proxy's thread counts a write after it returns; the reader may have the
        # bytes first. Wait for the count (a generous limit, not a timing requirement).
        until = time.monotonic() + 5.0
        while st.bytes_out < 20000 and time.monotonic() < until:
            time.sleep(0.005)
        assert st.bytes_in == st.bytes_out == 20000
        assert 120 <= st.corrupted <= 290  # 1% of 20000, binomial 99.999% bounds
        proxy.set_faults(drop=0.1, duplicate=0.1, direction="to_link")
        os.write(s, b"\x55" * 1000)
        time.sleep(0.3)
        assert proxy.stats.to_link.dropped > 0 and proxy.stats.to_link.duplicated > 0
        proxy.set_faults(delay_s=0.2, direction="to_board")
        t0 = time.monotonic()
        os.write(far, b"late")
        os.set_blocking(s, False)
        assert _read_exact(s, 4) == b"late"
        assert time.monotonic() - t0 >= 0.2  # lower bound only: never a wall-clock ceiling
        with pytest.raises(ValueError, match="corrupt must be in 0..1"):
            proxy.set_faults(corrupt=2.0)
    finally:
        os.close(far)
        proxy.close()
        os.close(s)
        os.close(m)


def test_proxy_mangles_each_frame_by_its_bytes_not_by_timing() -> None:
    """A frame's fate depends on the seed, its bytes and how many times the same bytes
    passed before: not on how reads split the stream, nor on the order frames come in
    (a checkpoint reply waits on a job worker, so it may overtake a sync reply in one
    run and not in the next). A retry of the same bytes gets a fate of its own, and
    the delimiters are never touched (a fault never merges two frames)."""
    from firmware_bridge.framing import frame

    rng = np.random.default_rng(0)
    frames = [frame(rng.integers(1, 256, int(rng.integers(20, 400)), dtype=np.uint8).tobytes())
              for _ in range(120)]
    frames[61] = frames[60]  # a retry: the same bytes again

    def run(order: list[int], split: int) -> dict[int, list[bytes]]:
        m, s = os.openpty()
        proxy = FaultProxy(m, seed=9)
        try:
            proxy.set_faults(corrupt=0.004, drop=0.002, duplicate=0.002, direction="to_link")
            out: dict[int, list[bytes]] = {}
            for i in order:
                fr = frames[i]
                k = split % len(fr) or 1
                got = proxy._mangle("to_link", fr[:k]) + proxy._mangle("to_link", fr[k:])
                # the delimiter is kept (a flipped bit may add a zero: then the frame splits)
                assert got.endswith(b"\x00") and got.count(b"\x00") >= fr.count(b"\x00")
                out.setdefault(i, []).append(got)
            return out
        finally:
            proxy.close()
            os.close(s)

    base = run(list(range(120)), 1000)
    order = list(range(120))
    order[10], order[11] = order[11], order[10]
    order[80:90] = order[80:90][::-1]
    assert run(order, 7) == base
    damaged = [i for i in base if base[i][0] != frames[i]]
    assert 20 <= len(damaged) <= 110, len(damaged)  # the rate is per byte, not per frame
    assert base[60] != base[61] or base[60][0] == frames[60]  # a retry draws again
    m, s = os.openpty()
    retried = FaultProxy(m, seed=9)
    try:  # the same frame four times, half its bytes hit: four different fates
        retried.set_faults(corrupt=0.5, direction="to_link")
        assert len({retried._mangle("to_link", frames[60]) for _ in range(4)}) == 4
    finally:
        retried.close()
        os.close(s)
    other = run(list(range(120)), 1000)
    assert other == base  # same seed, same bytes: the same damage
    m, s = os.openpty()
    reseeded = FaultProxy(m, seed=10)
    try:
        reseeded.set_faults(corrupt=0.004, drop=0.002, duplicate=0.002, direction="to_link")
        assert [reseeded._mangle("to_link", frames[i]) for i in range(120)] != [base[i][0] for i in range(120)]
    finally:
        reseeded.close()
        os.close(s)


def _hammer(link: Link, n: int, rng: np.random.Generator) -> list[str]:
    outcomes = []
    for i in range(n):
        op = int(rng.integers(4))
        try:
            if op == 0:
                link.ping()
            elif op == 1:
                link.housekeeping()
            elif op == 2:
                link.set_throttle(float(rng.integers(0, 101)) / 100)
            else:
                link.time_sync(10**9 * i, report=False)  # the short reply, as in protocol 1.0
            outcomes.append("completed")
        except LinkTimeout:
            outcomes.append("failed")
        except LinkError as exc:  # a board-side rejection would be a bug here
            raise AssertionError(f"command {i}: {exc}") from exc
    return outcomes


def _check_exactly_once(link: Link, outcomes: list[str], n: int) -> None:
    assert len(outcomes) == n  # every command returned or raised: none lost silently
    ledger = link.test_ledger()
    sent = {(a, s): outcome for a, s, _cmd, outcome in link.history}
    mine = [k for k in ledger["keys"] if k >> 32 == link.source_id]
    executed = [((k >> 16) & 0xFFFF, k & 0xFFFF) for k in mine]
    assert len(executed) == len(set(executed)), "a command executed twice"
    assert set(executed) <= set(sent), "the board executed something never sent"
    completed = {k for k, v in sent.items() if v == "completed"}
    assert completed <= set(executed), "a completed command is missing from the board ledger"


def _run_corrupted(rig, n: int, read_on_wait: bool = False) -> None:
    emu, proxy, path = rig
    with Link(path, timeout_s=0.03, retries=16, read_on_wait=read_on_wait) as link:
        link.history = []
        link.ping()
        proxy.set_faults(corrupt=0.01)
        outcomes = _hammer(link, n, np.random.default_rng(42))
        proxy.clear_faults()
        time.sleep(0.1)
        link.timeout_s = 0.5
        _check_exactly_once(link, outcomes, n)
        assert outcomes.count("completed") >= 0.97 * n
        assert link.stats.retries > 0
        assert link.stats.crc_errors + link.stats.framing_errors > 0
        c = proxy.stats.to_board.corrupted + proxy.stats.to_link.corrupted
        b = proxy.stats.to_board.bytes_in + proxy.stats.to_link.bytes_in
        assert 0.005 < c / b < 0.015


# read_on_wait: no reader thread, the waiting thread reads the port (the runner's mode)
@pytest.mark.parametrize("read_on_wait", [False, True])
def test_commands_over_1pct_corruption_execute_exactly_once(rig, read_on_wait) -> None:
    _run_corrupted(rig, 1000, read_on_wait)


@pytest.mark.slow
def test_10000_commands_over_1pct_corruption(rig) -> None:
    _run_corrupted(rig, 10_000)


@pytest.mark.parametrize("read_on_wait", [False, True])
def test_port_vanishes_and_returns(rig, read_on_wait) -> None:
    emu, proxy, path = rig
    events = []
    with Link(path, timeout_s=0.1, retries=30, on_telemetry=events.append,
              read_on_wait=read_on_wait) as link:
        link.history = []
        assert link.ping() > 0
        outcomes: list[str] = []
        stop = threading.Event()

        def worker() -> None:
            while not stop.is_set():
                try:
                    link.set_throttle(0.25)
                    outcomes.append("completed")
                except LinkTimeout:
                    outcomes.append("failed")

        th = threading.Thread(target=worker)
        th.start()
        time.sleep(0.2)
        proxy.unplug()  # USB adapter pulled mid-run
        time.sleep(0.5)
        assert not os.path.exists(path)
        proxy.replug()  # ...and plugged back: new tty, same by-id symlink
        time.sleep(0.5)
        stop.set()
        th.join(timeout=30)
        assert not th.is_alive()
        names = [e.name for e in events if e.kind == "link"]
        assert names[:2] == ["link_down", "link_up"]
        assert link.stats.reconnects >= 1 and link.connected
        assert link.ping() > 0
        assert outcomes and outcomes[-1] == "completed"
        _check_exactly_once(link, outcomes, len(outcomes))


@pytest.mark.parametrize("read_on_wait", [False, True])
def test_acknowledged_command_whose_reply_is_lost_is_not_lost(rig, read_on_wait) -> None:
    """The board executes, the reply dies on the line, the port drops: the retry
    after reconnect gets the board's cached reply, and the command ran once."""
    emu, proxy, path = rig
    with Link(path, timeout_s=0.2, retries=20, read_on_wait=read_on_wait) as link:
        link.history = []
        link.ping()
        proxy.set_faults(drop=1.0, direction="to_link")
        result: dict = {}
        th = threading.Thread(target=lambda: result.update(link.set_throttle(0.4)))
        th.start()
        time.sleep(0.1)
        proxy.unplug()
        proxy.clear_faults()
        time.sleep(0.3)
        proxy.replug()
        th.join(timeout=30)
        assert result == {"throttle": 0.4, "effective_throttle": 0.4}
        assert link.stats.retries >= 1
        _check_exactly_once(link, ["completed"], 1)
        keys = [k for k in link.test_ledger()["keys"] if k >> 32 == link.source_id]
        assert ((P.APID_AGENT << 16) | link.history[1][1]) in [k & 0xFFFFFFFF for k in keys]


def test_unknown_port_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(LinkError, match="cannot open .*nope"):
        Link(str(tmp_path / "nope"))


def test_exclusive_open_refuses_a_second_link(rig) -> None:
    emu, proxy, path = rig
    with Link(path) as link:
        assert link.ping() > 0
        with pytest.raises(LinkError, match="cannot open"):
            Link(path)
    assert CommandRejected  # imported for the API surface


def test_lost_telemetry_is_counted_per_apid(rig) -> None:
    emu, proxy, path = rig
    with Link(path, timeout_s=0.2, retries=20) as link:
        link.enable_periodic_hk(0.005)
        time.sleep(0.2)
        before: list[int] = []
        deadline = time.monotonic() + 30
        while not before and time.monotonic() < deadline:
            before = [t.seq for t in link.events(timeout_s=0.5) if t.kind == "hk"]
        assert before, "no periodic housekeeping arrived"
        gaps0 = link.stats.tm_seq_gaps_by_apid.get(P.APID_HK, 0)
        proxy.set_faults(drop=0.02, direction="to_link")
        time.sleep(1.0)
        proxy.clear_faults()
        time.sleep(0.2)
        link.disable_periodic_hk()
        seqs = sorted({before[-1]} | {t.seq for t in link.events(timeout_s=0.5) if t.kind == "hk"})
        missing = (seqs[-1] - seqs[0] + 1) - len(seqs)
        assert missing > 0
        # exactly the reports missing from the received sequence are counted
        assert link.stats.tm_seq_gaps_by_apid[P.APID_HK] - gaps0 == missing
