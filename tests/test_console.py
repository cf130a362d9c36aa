"""hil console against a real run (virtual time): Textual's headless pilot presses
the keys an engineer would; the control endpoint refuses a client without the key."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

pytest.importorskip("textual")

from flight_sw.tc import SPI_GROUND, TcSender  # noqa: E402
from hil_rig.console.app import ConsoleApp  # noqa: E402
from hil_rig.console.stream import LiveSource, ReplaySource  # noqa: E402
from hil_rig.procedure import LineError, parse_line, parse_procedure  # noqa: E402
from hil_rig.run import Run, RunOptions  # noqa: E402
from hil_rig.run.control_server import ControlClient, ControlError, Hosted, run_key  # noqa: E402
from hil_rig.scenario import find_scenario, load_scenario, parse_duration  # noqa: E402

GUARD = 1200  # pilot pauses of 0.05 s before a wait is declared hung (a hang guard, not a bound)


def hosted_run(tmp_path, sc=None):
    """A real run (the nominal scenario, 30 min, unless ``sc``) hosted paused with its
    ground port and control endpoint; yields (hosted, key). The fixtures' body."""
    run_dir = tmp_path / "run"
    key, key_path = run_key(run_dir, None)
    if sc is None:
        sc = load_scenario(find_scenario("nominal")).replace(duration=parse_duration("30 min", "test"))
    run = Run(sc, out=run_dir, options=RunOptions(tc_key=key, ground_port=0), rt_priority=None)
    hosted = Hosted(run, key, key_path, paused=True)
    hosted.start_thread()
    try:
        yield hosted, key
    finally:
        hosted.close()


@pytest.fixture
def live(tmp_path):
    yield from hosted_run(tmp_path)


async def step_until(pilot, cond, what):
    """Step (F6) until ``cond``: a TC goes up the ground port and the step request the
    control endpoint, two connections, so the frame that takes the TC may be a later one."""
    for _ in range(GUARD // 10):
        if cond():
            return
        await pilot.press("f6")
        await pilot.pause(0.3)
    raise AssertionError(f"never happened: {what}")


async def until(pilot, cond, what):
    for _ in range(GUARD):
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"never happened: {what}")


async def first_noop_sent(app, pilot):
    """In a paused run: type ``noop``, Enter, and wait until it has gone up."""
    await until(pilot, lambda: app.status.get("paused"), "status: paused")
    await pilot.press(*"noop", "enter")
    await until(pilot, lambda: app.stack.items and app.stack.items[0].state == "sent", "noop sent")


def drive(hosted, key, script, size=(100, 30)):
    app = ConsoleApp(LiveSource(hosted.endpoints, key))

    async def main():
        async with app.run_test(size=size) as pilot:
            await script(app, pilot)

    asyncio.run(main())
    return app


def test_telemetry_appears_and_step_moves_exactly_one_second(live):
    hosted, key = live

    async def script(app, pilot):
        await until(pilot, lambda: app.status.get("paused"), "status: run paused")
        t0 = app.status["t_s"]
        assert not app.hk  # paused before its first frame reached the port
        await pilot.press("f6")
        await until(pilot, lambda: app.status.get("t_s") == t0 + 1, "one step")
        await until(pilot, lambda: app.hk.get("t_ns") == (t0 + 1) * 1e9, "HK of the stepped second")
        soc0 = app.hk["soc"]
        await pilot.press(*"step 30 s", "enter")
        await until(pilot, lambda: app.hk.get("t_ns") == (t0 + 31) * 1e9, "HK after 30 s")
        await until(pilot, lambda: app.status["t_s"] == t0 + 31, "status after 30 s")
        assert app.status["paused"]
        assert app.hk["soc"] != soc0  # telemetry changes
        assert "SOC" in str(app.query_one("#power").render())

    drive(hosted, key, script)


def test_command_validated_armed_sent_acknowledged(live):
    hosted, key = live

    async def script(app, pilot):
        await until(pilot, lambda: app.status.get("paused"), "status: run paused")
        await pilot.press(*"set_throttle_cap cap=2", "enter")
        assert any("outside" in m for m in app.messages), app.messages  # range checked, nothing sent
        assert not app.stack.items
        await pilot.press(*"set_mode mode=SAFE", "enter")
        assert app.armed is not None and not app.stack.items  # hazardous: armed, not sent
        await pilot.press("enter")  # execute
        assert app.armed is None and app.stack.items[0].state == "sent"
        # the flight software executes TCs at its next 1 Hz frame
        await step_until(pilot, lambda: app.stack.items[0].state == "completed", "completion")
        await until(pilot, lambda: app.hk.get("mode") == 2, "mode SAFE in HK")
        await pilot.press(*"noop", "enter")
        await until(pilot, lambda: app.stack.items[-1].state == "sent", "noop sent")
        await step_until(pilot, lambda: app.stack.items[-1].state == "completed", "noop completed")
        assert app.stack.items[-1].arsn == app.stack.items[0].arsn + 1

    drive(hosted, key, script)


def test_fault_injected_and_its_event_appears(live):
    hosted, key = live

    async def script(app, pilot):
        await until(pilot, lambda: app.status.get("paused"), "status: run paused")
        await pilot.press(*'inject hot_case duration="60 s"', "enter")
        await until(pilot, lambda: any(m.startswith("injected") for m in app.messages), "injection answer")
        await pilot.press("f6")
        await until(pilot, lambda: any("fault_injected" in e for e in app.event_lines), "fault_injected event")
        await until(pilot, lambda: any("hot_case_start" in e for e in app.event_lines), "hot_case_start event")
        await pilot.press(*"inject no_such_fault", "enter")
        assert any("give a fault kind" in m for m in app.messages)

    drive(hosted, key, script)


def test_endpoint_refuses_wrong_key_and_counts(live):
    hosted, key = live
    port = hosted.server.port
    bad = ControlClient("127.0.0.1", port, b"\x01" * 32)
    with pytest.raises(ControlError, match="refused"):
        bad.request("pause")
    # no key at all: a line without a MAC; then bytes that are not JSON
    for junk in (b'{"seq": 1, "req": {"op": "pause"}}\n', b"\xff\x00garbage\n"):
        s = socket.create_connection(("127.0.0.1", port))
        f = s.makefile("rb")
        json.loads(f.readline())  # hello
        s.sendall(junk)
        assert json.loads(f.readline())["ok"] is False
        assert f.readline() == b""  # closed
        s.close()
    # a request recorded on one connection is refused on another (fresh nonce)
    good = ControlClient("127.0.0.1", port, key)
    st = good.request("status")
    assert st["control"]["wrong_key"] == 1 and st["control"]["malformed"] == 2
    assert st["paused"]  # nothing the refused clients asked happened
    ev = good.request("step", duration="1 s") and good.request("events", after=0)
    kinds = [e[3] for e in ev]
    assert kinds.count("control_auth_failed") == 1 and kinds.count("control_malformed") == 2


def test_console_tc_and_run_command_share_the_key_without_collision(live):
    """Run.command (SPI 1) and a ground client (SPI 2) each keep their own ARSNs."""
    hosted, key = live
    c = ControlClient("127.0.0.1", hosted.server.port, key)
    assert c.request("command", name="noop", args={}) == 1
    g = socket.create_connection(("127.0.0.1", hosted.endpoints.ground_port))
    stats = hosted.run.fsw.stats

    def step_until(done) -> None:
        # The ground TC crosses a socket to the ground port's reader while the run steps in
        # virtual time, where a simulated second takes well under a millisecond: step a
        # second at a time until the flight software has dealt with it (a loaded machine
        # can take many steps), then one more second to see nothing else follows.
        for _ in range(600):
            c.request("step", duration="1 s")
            if done():
                break
        c.request("step", duration="1 s")

    g.sendall(TcSender(key, spi=SPI_GROUND).build("noop"))  # ARSN 1 too, on its own SA
    step_until(lambda: c.request("status")["ground_last_arsn"] == 1)
    assert c.request("status")["ground_last_arsn"] == 1
    assert stats()["tc_accepted"] == 2 and stats()["tc_rejected"] == {}
    g.sendall(TcSender(key, spi=SPI_GROUND).build("noop"))  # replayed ARSN 1: refused
    step_until(lambda: stats()["tc_rejected"])
    assert stats()["tc_rejected"] == {"replay": 1}
    assert stats()["tc_accepted"] == 2
    g.close()


def test_parse_line_and_procedure_errors(tmp_path):
    with pytest.raises(LineError, match="set_mode.mode"):
        parse_line("set_mode mode=WARP")
    assert parse_line("set_mode mode=SAFE").hazardous
    assert not parse_line("noop").hazardous
    p = tmp_path / "p.txt"
    p.write_text("noop\nwait 10 s\nwait soc > 0.5\nset_throttle_cap cap=7\n")
    with pytest.raises(LineError, match="line 4"):
        parse_procedure(p, ["jetson0"])
    p.write_text("noop\nwait ack\nwait 10 s\nwait mode == SAFE\nstep 5 s\n")
    assert [x.kind for x in parse_procedure(p, ["jetson0"])] == ["tc", "wait", "wait", "wait", "step"]


def test_replay_seeks(live, tmp_path):
    hosted, key = live
    c = ControlClient("127.0.0.1", hosted.server.port, key)
    c.request("step", duration="120 s")
    src = ReplaySource(hosted.run.run_dir, speed=1.0)
    src.paused = True
    app = ConsoleApp(src)

    async def main():
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.hk, "first frame")
            assert app.status["t_s"] == 0
            await pilot.press("f10")
            await until(pilot, lambda: app.status["t_s"] == 60, "seek +60 s")
            await pilot.press("f9")
            await until(pilot, lambda: app.status["t_s"] == 0, "seek -60 s")

    asyncio.run(main())


def test_attach_to_hil_run_listen_and_the_run_ends_under_the_console(tmp_path):
    """The real `hil run --listen --paused` in a subprocess; the console attaches
    through RUN_DIR/endpoints.json, steps it, and keeps its last state on screen
    when the run ends (SIGTERM)."""
    import signal
    import subprocess
    import sys
    import time

    from hil_rig.run.control_server import ENDPOINTS_FILE, Endpoints

    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "hil_rig.cli", "run", "--listen", "--paused",
                             "--duration", "10 min", "--out", str(run_dir), "--rt-priority", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(GUARD):
            if (run_dir / ENDPOINTS_FILE).exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert (run_dir / ENDPOINTS_FILE).exists(), proc.communicate()
        assert oct((run_dir / "tc.key").stat().st_mode & 0o777) == "0o600"
        ep = Endpoints.read(run_dir)
        from flight_sw.tc import load_key

        app = ConsoleApp(LiveSource(ep, load_key(ep.key_file)))

        async def main():
            async with app.run_test(size=(80, 24)) as pilot:
                await until(pilot, lambda: app.status.get("paused"), "status: paused")
                await pilot.press("f6")
                await until(pilot, lambda: app.hk.get("t_ns") == 1e9, "HK of second 1")
                proc.send_signal(signal.SIGTERM)
                await until(pilot, lambda: app.status.get("ended"), "the console sees the end")
                assert any("ended" in m for m in app.messages)
                assert app.hk.get("t_ns") == 1e9  # the last state stays on screen
                assert "ENDED" in str(app.query_one("#status").render())

        asyncio.run(main())
        assert proc.wait() == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_lost_ground_connection_reconnects_and_the_tc_executes_once(live):
    hosted, key = live

    async def script(app, pilot):
        await first_noop_sent(app, pilot)
        app.source.resend(b"\xe0\x00\x00\x00\x00\x00")  # an unframeable header: the port drops us
        await until(pilot, lambda: any("re-sent" in m for m in app.messages), "reconnect and re-send")
        await step_until(pilot, lambda: app.stack.items[0].state == "completed", "noop completed")
        await pilot.press("f6")
        await until(pilot, lambda: "replay" in hosted.run.fsw.stats()["tc_rejected"] or
                    hosted.run.fsw.stats()["tc_accepted"] > 1, "the copy's fate")

    drive(hosted, key, script)
    stats = hosted.run.fsw.stats()
    assert stats["tc_accepted"] == 1 and stats["tc_rejected"] == {"replay": 1}  # executed once
