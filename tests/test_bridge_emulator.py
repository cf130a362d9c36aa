"""An emulated board in its own process, behind a real pty, serving every command."""

from __future__ import annotations

import math
import os
import pathlib
import time

import pytest

from firmware_bridge import protocol as P
from firmware_bridge.emulator import KINDS, EmulatorProcess, open_pty
from firmware_bridge.link import CommandFailed, CommandRejected, Link, LinkTimeout

JOB = {"n": 16, "steps": 300, "seed": 3}  # 2.7 s at the jetson's rated 1 MFLOP/s (paced in real time)


def _board(clock: str, read_on_wait: bool = False):
    master, path = open_pty()
    emu = EmulatorProcess(master, kind="jetson", name="b0", seed=1, test_mode=True,
                          clock=clock).start()
    link = Link(path, timeout_s=1.0, retries=3, read_on_wait=read_on_wait)
    yield emu, link
    link.close()
    emu.stop()
    os.close(master)


@pytest.fixture(scope="module")
def board():
    """A real-clock board: jobs compute on their own, paced by wall time (a real board)."""
    yield from _board("real")


@pytest.fixture(scope="module")
def vboard():
    """A virtual-clock board: jobs compute only as time syncs move simulation time."""
    yield from _board("virtual")


def _wait_state(link: Link, job_id: int, states: tuple[str, ...], timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        st = link.job_status(job_id)
        if st["state"] in states:
            return st
        assert time.monotonic() < deadline, f"job {job_id} stuck in {st['state']}"
        time.sleep(0.02)


def test_ping_info_and_housekeeping(board) -> None:
    emu, link = board
    assert link.ping() > 0
    info = link.board_info()
    assert info["kind"] == "jetson" and info["name"] == "b0" and info["test_mode"]
    assert info["protocol_version"] == P.PROTOCOL_VERSION
    assert info["max_packet_bytes"] == P.MAX_PACKET_BYTES
    assert {"ping", "housekeeping", "checkpoint", "inject"} <= set(info["capabilities"])
    hk = link.housekeeping()
    assert set(hk["temps_k"]) == set(KINDS["jetson"]["zones"])
    assert set(hk["rails"]) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}
    assert 0.0 <= hk["cpu_load"] <= 1.0 and hk["mem_available_kib"] < hk["mem_total_kib"]
    v, i = hk["rails"]["VDD_IN"]
    assert v * i == pytest.approx(hk["power_w"], rel=1e-3)


def test_bad_commands_are_rejected_naming_the_command(board) -> None:
    _, link = board
    with pytest.raises(CommandRejected, match="set_throttle rejected: bad arguments"):
        link.set_throttle(1.5)
    with pytest.raises(CommandRejected, match="start_job.*unknown workload 'fft'"):
        link.start_job("fft")
    with pytest.raises(CommandRejected, match="param 'n' must be an integer"):
        link.start_job("matmul", {"n": "big"})
    with pytest.raises(CommandFailed, match="job_status failed: no such job"):
        link.job_status(999)
    with pytest.raises(CommandRejected, match="time_sync.*t_ns"):
        link.time_sync(-5)


def test_jobs_digest_checkpoint_resume_and_seu(board) -> None:
    emu, link = board
    link.set_throttle(1.0)
    clean = link.start_job("matmul", JOB, deadline_s=3600)
    ref = link.wait_job(clean, timeout_s=120)
    assert ref["state"] == "done" and len(ref["digest"]) == 32 and ref["progress"] == 1.0

    # suspended (checkpointed, worker stopped) and resumed: the same digest
    jid = link.start_job("matmul", JOB)
    _wait_state(link, jid, ("running",))
    assert link.checkpoint(jid)["checkpoint_step"] >= 0
    sus = link.suspend(jid)
    assert sus["state"] == "suspended"
    assert link.job_status(jid)["state"] == "suspended"
    assert link.resume(jid)["state"] == "starting"
    assert link.wait_job(jid, timeout_s=120)["digest"] == ref["digest"]

    # an SEU in the job's working memory (exponent bit of A[0,0]) changes the digest
    jid = link.start_job("matmul", JOB)
    _wait_state(link, jid, ("running",))
    hit = link.inject_seu(jid, index=7, bit=6)
    assert hit["array"] == "a" and hit["bit"] == 6
    assert link.wait_job(jid, timeout_s=120)["digest"] != ref["digest"]

    # mlp inference batches: deterministic too
    a = link.wait_job(link.start_job("mlp", {"batch": 8, "width": 16, "steps": 50}))
    b = link.wait_job(link.start_job("mlp", {"batch": 8, "width": 16, "steps": 50}))
    assert a["state"] == b["state"] == "done" and a["digest"] == b["digest"]

    jid = link.start_job("matmul", {"n": 16, "steps": 10_000_000})
    _wait_state(link, jid, ("running",))
    assert link.cancel(jid)["state"] == "cancelled"
    with pytest.raises(CommandFailed, match="already cancelled"):
        link.cancel(jid)


def test_virtual_clock_thermal_model_and_status_power(vboard) -> None:
    emu, link = vboard
    cfg = KINDS["jetson"]
    link.set_throttle(0.5)
    t0 = 10**12
    link.time_sync(t0)
    temp0 = link.housekeeping()["temps_k"]["cv0-thermal"]  # zone with no load offset
    jid = link.start_job("matmul", {"n": 16, "steps": 10_000_000})
    p = cfg["idle_w"] + (cfg["max_w"] - cfg["idle_w"]) * 0.5
    deadline = time.monotonic() + 10
    while emu.power_w != pytest.approx(p):
        assert time.monotonic() < deadline, f"status power {emu.power_w}, expected {p}"
        time.sleep(0.01)
        emu.poll_status()
    dt = 120.0
    link.time_sync(t0 + int(dt * 1e9))
    hk = link.housekeeping()
    assert hk["time_ns"] == t0 + int(dt * 1e9)  # TM time stamps follow simulation time
    tss = 298.15 + p * cfg["r_k_w"]
    expect = tss + (temp0 - tss) * math.exp(-dt / (cfg["r_k_w"] * cfg["c_j_k"]))
    assert hk["temps_k"]["cv0-thermal"] == pytest.approx(expect, abs=2e-3)
    assert hk["power_w"] == pytest.approx(p)
    link.cancel(jid)
    link.set_throttle(1.0)
    deadline = time.monotonic() + 10
    while emu.power_w != pytest.approx(cfg["idle_w"]):
        assert time.monotonic() < deadline
        time.sleep(0.01)
        emu.poll_status()


def test_periodic_housekeeping_stream_and_events(board) -> None:
    _, link = board
    link.events()
    link.enable_periodic_hk(0.01)
    time.sleep(0.3)
    link.disable_periodic_hk()
    items = [t for t in link.events(timeout_s=1.0) if t.kind == "hk"]
    assert len(items) >= 5
    assert "tj-thermal" in items[-1].data["temps_k"]
    seqs = [t.seq for t in items]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # one APID, its own count


def test_reboot_resets_state_and_reports_boot(board) -> None:
    _, link = board
    link.events()
    jid = link.start_job("matmul", {"n": 16, "steps": 10_000_000})
    assert link.reboot() == {"rebooting": True}
    with pytest.raises(CommandFailed, match="no such job"):
        link.job_status(jid)
    assert link.board_info()["uptime_s"] < 5
    names = [t.name for t in link.events(timeout_s=1.0)]
    assert "boot" in names


def test_hang_then_recover(board) -> None:
    _, link = board
    link.inject_hang(duration_s=0.5)
    with pytest.raises(LinkTimeout, match="ping: no reply"):
        link.ping(timeout_s=0.1)
    time.sleep(0.6)
    assert link.ping() > 0


def test_inject_is_refused_outside_test_mode() -> None:
    master, path = open_pty()
    emu = EmulatorProcess(master, kind="rpi", name="flight", status=False).start()
    try:
        with Link(path) as link:
            info = link.board_info()
            assert info["kind"] == "rpi" and not info["test_mode"]
            with pytest.raises(CommandRejected, match="inject_hang rejected: not in test mode"):
                link.inject_hang()
            with pytest.raises(CommandRejected, match="not in test mode"):
                link.inject_seu(1)
            assert link.housekeeping()["rails"] == {}
    finally:
        emu.stop()
        os.close(master)


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def test_power_loss_kills_compute_and_board_comes_back() -> None:
    master, path = open_pty()
    emu = EmulatorProcess(master, kind="jetson", name="pw", test_mode=True).start()
    try:
        with Link(path, timeout_s=0.5, retries=2) as link:
            jid = link.start_job("matmul", {"n": 16, "steps": 10_000_000})
            _wait_state(link, jid, ("running",))
            workers = _children(emu.pid)
            assert workers
            emu.kill()  # relay off: SIGKILL, state lost
            with pytest.raises(LinkTimeout):
                link.ping(timeout_s=0.1)
            deadline = time.monotonic() + 10
            while any(os.path.exists(f"/proc/{w}") and _state(w) != "Z" for w in workers):
                assert time.monotonic() < deadline, "job workers outlived their board"
                time.sleep(0.05)
            emu.start()  # relay on: same pty (the UART stayed), fresh board
            assert link.ping() > 0
            with pytest.raises(CommandFailed, match="no such job"):
                link.job_status(jid)
    finally:
        emu.stop()
        os.close(master)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


def test_deadline_in_simulation_time(vboard) -> None:
    _, link = vboard
    link.events()
    t0 = 2 * 10**12
    link.time_sync(t0)
    jid = link.start_job("matmul", {"n": 16, "steps": 10_000_000}, deadline_s=30)
    _wait_state(link, jid, ("running",))
    link.time_sync(t0 + 29 * 10**9)
    assert link.job_status(jid)["state"] == "running"
    link.time_sync(t0 + 31 * 10**9)
    st = _wait_state(link, jid, ("deadline_missed",), timeout_s=10)
    assert st["deadline_ns"] == t0 + 30 * 10**9
    evs = link.events(timeout_s=1.0)
    assert any(e.name == "deadline_missed" and e.data["job_id"] == jid for e in evs)


@pytest.fixture(params=[False, True], ids=["reader-thread", "read-on-wait"])
def any_link(request, board):
    """The module's board through its reader-thread link, and through a link with no
    reader thread (the waiting threads read the port themselves)."""
    if not request.param:
        yield board[1]
        return
    yield from (lk for _, lk in _board("real", read_on_wait=True))


def test_concurrent_threads_each_get_their_own_reply(any_link) -> None:
    import threading

    link = any_link
    errors: list[str] = []

    def worker(k: int) -> None:
        for i in range(60):
            try:
                if i % 3 == 0:
                    assert link.time_sync(10**15 + k * 1000 + i)["t_ns"] == 10**15 + k * 1000 + i
                elif i % 3 == 1:
                    link.housekeeping()
                else:
                    link.ping()
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(f"thread {k}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert link.stats.late_replies == 0


def test_read_on_wait_link_gets_telemetry_when_asked() -> None:
    """With no reader thread, asynchronous housekeeping waits in the port until a
    command, :meth:`Link.poll` or :meth:`Link.events` reads it; nothing is lost."""
    for _, link in _board("real", read_on_wait=True):
        assert link._reader is None
        link.enable_periodic_hk(0.02)
        time.sleep(0.3)
        link.disable_periodic_hk()  # reads (and queues) what arrived meanwhile
        hk = [t for t in link.events() if t.kind == "hk"]
        assert len(hk) >= 5
        seqs = [t.seq for t in hk]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # none missing
        assert link.stats.tm_seq_gaps == 0
        link.enable_periodic_hk(0.02)
        got = link.events(timeout_s=5.0)  # waits, reading the port, for the next one
        link.disable_periodic_hk()
        assert any(t.kind == "hk" for t in got)


def test_emulator_on_a_serial_path_and_link_over_socket(tmp_path) -> None:
    """--port PATH (pyserial) on the board side; socket:// (a ser2net-like TCP
    bridge on 127.0.0.1) on the host side."""
    import select
    import socket
    import subprocess
    import sys
    import threading

    master, slave = open_pty()
    emu = subprocess.Popen([sys.executable, "-m", "firmware_bridge.emulator", "--port", slave,
                            "--name", "ser", "--kind", "rpi"])
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    stop = threading.Event()

    def bridge() -> None:
        conn, _ = srv.accept()
        os.set_blocking(master, False)
        while not stop.is_set():
            r = select.select([conn, master], [], [], 0.05)[0]
            if conn in r:
                data = conn.recv(65536)
                if not data:
                    break
                os.write(master, data)
            if master in r:
                try:
                    conn.sendall(os.read(master, 65536))
                except BlockingIOError:
                    pass
                except OSError:  # EIO: the emulator has not opened its side yet
                    stop.wait(0.02)
        conn.close()

    th = threading.Thread(target=bridge, daemon=True)
    th.start()
    try:
        with Link(f"socket://127.0.0.1:{port}", timeout_s=0.5, retries=40) as link:
            info = link.board_info()
            assert info["kind"] == "rpi" and info["name"] == "ser"
            assert link.ping() > 0
    finally:
        stop.set()
        emu.terminate()
        emu.wait(timeout=10)
        th.join(timeout=5)
        srv.close()
        os.close(master)


def test_throttle_zero_pauses_compute_and_one_resumes_it(board) -> None:
    _, link = board
    jid = link.start_job("matmul", {"n": 16, "steps": 10_000_000})
    _wait_state(link, jid, ("running",))
    try:
        link.set_throttle(0.0)
        time.sleep(0.5)  # let the current compute slice and its progress report land
        a = link.job_status(jid)["step"]
        time.sleep(0.3)
        assert link.job_status(jid)["step"] == a  # paused: no progress at all
        link.set_throttle(1.0)
        deadline = time.monotonic() + 30
        while link.job_status(jid)["step"] == a:
            assert time.monotonic() < deadline, "compute did not resume"
            time.sleep(0.02)
    finally:
        link.set_throttle(1.0)
        link.cancel(jid)


def test_checkpoint_survives_power_loss_and_resumes_to_the_same_digest(tmp_path) -> None:
    """A board with persistent storage (--state-dir, like its flash) loses power
    mid-job; after power-on the job is back as suspended at its checkpoint, and
    resuming it gives the digest of an uninterrupted run."""
    params = {"n": 16, "steps": 300, "seed": 11}
    master, path = open_pty()
    emu = EmulatorProcess(master, kind="jetson", name="ck", state_dir=str(tmp_path / "flash"),
                          clock="real").start()
    try:
        with Link(path, timeout_s=1.0, retries=3) as link:
            ref = link.wait_job(link.start_job("matmul", params), timeout_s=120)
            assert ref["state"] == "done"
            jid = link.start_job("matmul", params)
            _wait_state(link, jid, ("running",))
            ck = link.checkpoint(jid)["checkpoint_step"]
            emu.kill()  # power lost mid-job: the worker's progress after ck is gone
            emu.start()
            st = link.job_status(jid)
            assert st["state"] == "suspended" and st["checkpoint_step"] == ck
            link.resume(jid)
            assert link.wait_job(jid, timeout_s=120)["digest"] == ref["digest"]
            # done: the checkpoint is gone, so the next power cycle forgets the job
            assert not list((tmp_path / "flash" / "jobs").glob("job*"))
    finally:
        emu.stop()
        os.close(master)


def test_emulated_jobs_are_capped_to_small_compute(board) -> None:
    _, link = board
    jid = link.start_job("matmul", {"n": 1024, "steps": 3})
    st = link.wait_job(jid, timeout_s=60)
    assert st["params"]["n"] == 64 and st["state"] == "done"  # emulator default cap
    same = link.wait_job(link.start_job("matmul", {"n": 64, "steps": 3}), timeout_s=60)
    assert same["digest"] == st["digest"]


def test_disabling_periodic_housekeeping_while_it_streams_keeps_the_agent_alive() -> None:
    """Found by bench/link.py: a disable that arrived in the same agent step as a due
    report crashed the agent (TypeError adding None to the next report time). Now the
    agent checks the period where it uses it; at a 0.1 ms period a report is due on
    nearly every step, so each of these disables lands on one."""
    master, path = open_pty()
    emu = EmulatorProcess(master, kind="jetson", name="hk", seed=1, clock="real").start()
    link = Link(path)
    try:
        for _ in range(20):
            link.enable_periodic_hk(1e-4)
            time.sleep(0.01)
            link.disable_periodic_hk()
            assert emu.alive, "the agent died when periodic housekeeping was disabled"
        assert link.ping() > 0 and emu.alive
    finally:
        link.close()
        emu.stop()
        os.close(master)


def test_sim_board_readings_and_status_lines_equal_freshly_computed_ones() -> None:
    """SimBoard keeps the rails of the last power and StatusWriter the rounded power: every
    reading must equal a fresh board's in the same state, and every status line the
    json.dumps of its fields, as load and throttle come and go."""
    import json

    from firmware_bridge.emulator import SimBoard, StatusWriter

    class _Agent:  # what StatusWriter reads of an agent
        def __init__(self, board) -> None:
            self.board, self.running, self.t = board, True, 0
            self.clock = type("C", (), {"now_ns": lambda _: self.t})()

    r, w = os.pipe()
    try:
        for kind in KINDS:
            board = SimBoard(kind, 1)
            status = StatusWriter(w, "b", kind)
            agent = _Agent(board)
            for i, (load, throttle) in enumerate([(0.0, 1.0), (1.0, 1.0), (1.0, 1.0), (1.0, 0.3),
                                                  (0.0, 0.3), (1.0, 0.3), (1.0, 1.0)] * 2):
                agent.t = (i + 1) * 10**9
                board.advance(agent.t, load, throttle)
                fresh = SimBoard(kind, 1)
                fresh.temp_k, fresh.load, fresh.throttle = board.temp_k, load, throttle
                assert board.read(agent.t) == fresh.read(agent.t)
                status.write(agent, force=True)
                line = os.read(r, 65536).decode()
                assert line == json.dumps({"name": "b", "kind": kind, "pid": os.getpid(),
                                           "power_w": round(fresh.power_w(), 6),
                                           "temp_k": round(board.temp_k, 3), "t_ns": agent.t,
                                           "ready": True}) + "\n"
    finally:
        os.close(r)
        os.close(w)


def test_a_long_finished_job_leaves_the_report_but_job_status_still_answers() -> None:
    """A time-sync report lists at most REPORT_MAX_ENDED ended jobs (the newest): an older
    finished job drops out of it, and job_status still gives its state and digest."""
    from firmware_bridge.agent import REPORT_MAX_ENDED

    gen = _board("virtual")
    _, link = next(gen)
    try:
        t = 10**9
        link.time_sync(t)

        def run_one(seed: int) -> int:
            nonlocal t
            jid = link.start_job("matmul", {"n": 8, "steps": 3, "seed": seed})
            t += 10**9  # a few steps: done within this simulated second
            report = {j["job_id"]: j for j in link.time_sync(t)["jobs"]}
            assert report[jid]["state"] == "done" and report[jid]["digest"]
            return jid

        first = run_one(1)
        digest = link.job_status(first)["digest"]
        later = [run_one(2 + k) for k in range(REPORT_MAX_ENDED)]
        t += 10**9
        listed = [j["job_id"] for j in link.time_sync(t)["jobs"]]
        assert listed == later[::-1]  # the newest ended ones, newest first
        status = link.job_status(first)
        assert status["state"] == "done" and status["digest"] == digest
    finally:
        next(gen, None)  # the fixture's teardown: close the link, stop the emulator


def test_a_board_without_a_state_dir_gets_an_empty_disk_per_power_on_and_leaves_none(tmp_path) -> None:
    """No --state-dir: each power-on gets a fresh scratch directory (nothing survives a
    power cycle, as before), and power-off removes it, SIGKILL included: nothing
    accumulates in the temp directory over a test suite or a long bench session."""
    master, _path = open_pty()
    emu = EmulatorProcess(master, kind="rpi", name="nodisk", clock="virtual")
    try:
        emu.start()
        first = emu._scratch
        assert first is not None and os.path.isdir(first)
        with open(f"/proc/{emu.pid}/cmdline", "rb") as f:
            assert first.encode() in f.read().split(b"\0")  # the agent really uses it
        (pathlib.Path(first) / "jobs" / "job1.json").write_text("{}")  # something on the disk
        emu.kill()  # power lost: SIGKILL, the agent cleans nothing up itself
        assert not os.path.exists(first)
        emu.start()
        second = emu._scratch
        assert second != first and os.listdir(os.path.join(second, "jobs")) == []
        emu.stop()
        assert not os.path.exists(second) and emu._scratch is None
    finally:
        emu.stop()
        os.close(master)


def test_an_idle_packet_and_a_tc_on_a_foreign_apid_leave_the_board_serving() -> None:
    """Issue 18, finding 1: this 13-byte TC[17,1] on the idle APID 0x7FF made the agent
    raise in its error handler, and the emulator exited with code 1. Now the board
    discards it, refuses a TC on an APID that takes no commands (TM[1,2] on the agent
    APID, which the link ignores as a reply it did not ask for), and serves on."""
    import serial

    from firmware_bridge.framing import frame

    idle_ping = bytes.fromhex("1fffc0000006281101 4d2bb4ac".replace(" ", ""))
    foreign = P.encode_tc(P.APID_EVENTS, 0, 17, 1, b"", 0xF, 1)
    master, path = open_pty()
    emu = EmulatorProcess(master, kind="jetson", name="idle", clock="virtual", status=False).start()
    try:
        with serial.Serial(path, exclusive=True) as raw:
            raw.write(frame(idle_ping) + frame(foreign))
        with Link(path, timeout_s=1.0, retries=3) as link:
            assert link.ping() > 0  # the frames above were served before it, in order
            assert link.board_info()["protocol_minor"] == P.PROTOCOL_MINOR
        assert emu.alive
    finally:
        emu.stop()
        os.close(master)
