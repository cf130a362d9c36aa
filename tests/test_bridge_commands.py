"""One table of commands (firmware_bridge.commands): the link's methods, the flight
software's PayloadLink and the rig's gated link all follow from it."""

from __future__ import annotations

import inspect
import os

import pytest

from firmware_bridge import protocol as P
from firmware_bridge.commands import COMMANDS, FLIGHT_METHODS
from firmware_bridge.emulator import EmulatorProcess, open_pty
from firmware_bridge.link import Link, LinkTimeout


def test_every_command_is_a_link_method_with_the_tables_signature() -> None:
    for c in COMMANDS:
        for name in c.names:
            assert inspect.signature(getattr(Link, name)).parameters.keys() == c.sig.parameters.keys(), name
            for p in c.sig.parameters.values():
                assert inspect.signature(getattr(Link, name)).parameters[p.name].default == p.default, (name, p)
    # every function the board serves is a command of the table (under its own name)
    assert set(P.FUNCTIONS) <= {c.name for c in COMMANDS}


def test_payload_link_and_gated_link_are_the_flight_commands() -> None:
    import typing

    from flight_sw.interfaces import PayloadLink
    from hil_rig.run.adapters import GatedLink

    assert sorted(typing._get_protocol_attrs(PayloadLink)) == sorted(c.name for c in COMMANDS if c.flight)
    for name in FLIGHT_METHODS:
        assert name in GatedLink.__dict__, name
    assert "checkpoint_begin" in FLIGHT_METHODS and "time_sync_begin" in FLIGHT_METHODS


@pytest.fixture
def board():
    master, path = open_pty()
    emu = EmulatorProcess(master, kind="rpi", name="cmd", seed=1, clock="virtual", status=False).start()
    link = Link(path, timeout_s=1.0, read_on_wait=True)
    yield link
    link.close()
    emu.stop()
    os.close(master)


def test_generated_calls_and_the_gated_link_drive_a_real_board(board) -> None:
    from flight_sw.interfaces import PayloadLink
    from hil_rig.run.adapters import GatedLink

    up = {"b": True}
    gated = GatedLink("b", board, lambda name: up[name])
    assert isinstance(board, PayloadLink) and isinstance(gated, PayloadLink)
    assert gated.set_throttle(0.5) == {"throttle": 0.5, "effective_throttle": 0.5}
    jid = gated.start_job("matmul", {"n": 8, "steps": 1000, "seed": 1})
    assert gated.time_sync(10**9)["t_ns"] == 10**9
    assert gated.checkpoint_begin(jid).wait()["job_id"] == jid
    assert gated.job_status(jid)["checkpoint_step"] >= 0
    assert gated.cancel(job_id=jid)["state"] == "cancelled"
    up["b"] = False  # unpowered: every flight command ends at once, naming the board
    for name, args in (("ping", ()), ("job_status", (jid,)), ("time_sync_begin", (2 * 10**9,))):
        with pytest.raises(LinkTimeout, match=rf"b\.{name.removesuffix('_begin')} \(board unpowered\)"):
            getattr(gated, name)(*args)
    with pytest.raises(TypeError):
        board.set_throttle(0.5, 0.7)  # the table's signature binds the arguments
