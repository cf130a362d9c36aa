"""PUS service 1 verification reports to ground clients on the ground port: success
reports for the TCs that ask for them, failure reports for every authentic TC that
is refused or fails, none for a forged one; the console's command history shows
each report as it arrives."""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("textual")

from test_console import drive, first_noop_sent, hosted_run, step_until, until  # noqa: E402

from flight_sw.dictionary import ACK_ACCEPTANCE, ACK_ALL, ACK_COMPLETION, TmCodec  # noqa: E402
from flight_sw.ground import read_packet  # noqa: E402
from flight_sw.tc import SPI_GROUND, TcSender  # noqa: E402
from hil_rig.run.control_server import ControlClient  # noqa: E402


@pytest.fixture
def live(tmp_path):
    yield from hosted_run(tmp_path)


def _reports(sock, codec, want):
    """The next ``want`` verification reports on the downlink (HK and events skipped).
    Reports come in order, so one that should not exist shows up in the next read's
    place: the asserts on each read's exact list catch it."""
    out = []
    while len(out) < want:
        m = codec.decode(read_packet(sock))
        if m["kind"] == "verification":
            out.append(m)
    return out


def test_reports_as_asked_failures_always_and_none_for_a_forgery(live):
    hosted, key = live
    c = ControlClient("127.0.0.1", hosted.server.port, key)
    g = socket.create_connection(("127.0.0.1", hosted.endpoints.ground_port))
    g.settimeout(30)
    codec = TmCodec(hosted.endpoints.boards)
    tx = TcSender(key, spi=SPI_GROUND)
    c.request("step", duration="1 s")  # (the port has its client before the TCs go up)

    # acceptance and completion asked, start not: TM[1,1] and TM[1,7]
    pkt = tx.build("noop", ack=ACK_ACCEPTANCE | ACK_COMPLETION)
    g.sendall(pkt)
    c.request("step", duration="2 s")
    reps = _reports(g, codec, 2)
    assert [r["subtype"] for r in reps] == [1, 7]
    assert all(r["request_id"] == pkt[:4].hex() and r["spi"] == SPI_GROUND and r["arsn"] == 1 for r in reps)

    # no flags: no success report; its replay: an acceptance failure, asked or not
    pkt2 = tx.build("noop")
    g.sendall(pkt2)
    g.sendall(pkt2)
    c.request("step", duration="2 s")
    reps = _reports(g, codec, 1)
    assert [(r["subtype"], r["arsn"], r["code"]) for r in reps] == [(2, 2, 1)]
    assert reps[0]["reason"].startswith("replay")

    # a forged TC (wrong key) asking for everything: refused, and no report at all
    forged = TcSender(b"\x01" * 32, spi=SPI_GROUND, first_arsn=3).build("noop", ack=ACK_ALL)
    g.sendall(forged)
    # an authentic TC that fails in execution: a completion failure
    g.sendall(tx.build("set_mode", ack=ACK_ALL, mode="COMPUTE"))  # from DETUMBLE: no transition
    c.request("step", duration="2 s")
    reps = _reports(g, codec, 3)
    assert [r["subtype"] for r in reps] == [1, 3, 8]
    assert {r["arsn"] for r in reps} == {3}  # all the authentic one's
    assert reps[-1]["code"] == 16 and "refused" in reps[-1]["reason"]
    assert hosted.run.fsw.stats()["tc_rejected"] == {"replay": 1, "bad_mac": 1}
    g.close()
    c.close()


def test_command_history_shows_each_report(live):
    hosted, key = live

    async def script(app, pilot):
        await first_noop_sent(app, pilot)
        await step_until(pilot, lambda: app.stack.items[0].state == "completed", "completion report")
        assert app.stack.items[0].reports == ["TM[1,1]", "TM[1,3]", "TM[1,7]"]
        # hazardous, armed, executed; the flight software refuses it in execution
        await pilot.press(*"set_mode mode=COMPUTE", "enter", "enter")
        await until(pilot, lambda: len(app.stack.items) == 2 and app.stack.items[1].state == "sent", "sent")
        await step_until(pilot, lambda: app.stack.items[1].state == "failed", "completion failure report")
        it = app.stack.items[1]
        assert it.reports[-1] == "TM[1,8]" and "refused" in it.detail

    app = drive(hosted, key, script, size=(80, 24))
    hist = [str(x) for x in app.history_lines]
    for state, rep in (("accepted", "TM[1,1]"), ("started", "TM[1,3]"), ("completed", "TM[1,7]")):
        assert any(h.startswith(f"#1 {state} noop") and h.endswith(f"({rep})") for h in hist), hist
    assert any(h.startswith("#2 failed set_mode mode=COMPUTE") and h.endswith("(TM[1,8])") for h in hist), hist
