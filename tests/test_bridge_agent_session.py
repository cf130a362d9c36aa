"""The agent's time-sync fast path changes no byte on the wire.

bench/agent_session.py records every byte an agent (real pty, virtual clock, real
job workers, a status writer on a real pipe) writes in a scripted session of good
and bad telecommands. Against another tree it is compared by hand (its docstring);
here the session is recorded with the fast path and with every time sync read by
the general path (json.loads, the function table), and the two must be equal.
"""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

from firmware_bridge import agent as agent_mod
from firmware_bridge import protocol as P

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "bench"))
import agent_session  # noqa: E402 - bench/agent_session.py

FID = P.FUNCTIONS["time_sync"][0].to_bytes(2, "big")


@pytest.mark.parametrize("test_mode", [False, True])
def test_the_session_is_the_same_bytes_without_the_fast_path(test_mode, monkeypatch) -> None:
    fast = agent_session.record(test_mode)
    calls = []
    real = agent_mod._sync_args

    def general(data):
        calls.append(real(data))
        return None  # every time sync through json.loads and _fn_time_sync

    monkeypatch.setattr(agent_mod, "_sync_args", general)
    slow = agent_session.record(test_mode)
    assert sum(c is not None for c in calls) > 50  # the session's syncs do take the fast path
    assert fast == slow
    tms = b"".join(b for tag, b in fast if tag == "tm")
    assert b"t_ns must be a non-negative integer" in tms and b"\"digest\":\"" in tms  # a job finished
    assert sum(tag == "status" for tag, _b in fast) > 3


@pytest.mark.parametrize("body", [
    b'{"report":true,"t_ns":0}', b'{"report":true,"t_ns":5000000000}', b'{"t_ns":7}',
    b'{"report":true,"t_ns":9223372036854775807}',
])
def test_sync_args_reads_what_json_reads(body) -> None:
    args = json.loads(body)
    assert agent_mod._sync_args(FID + body) == (args["t_ns"], args.get("report", False))


@pytest.mark.parametrize("body", [
    b'{"report":true,"t_ns":-1}', b'{"report":true,"t_ns":01}', b'{"report":true,"t_ns":1.0}',
    b'{"report":true,"t_ns":9223372036854775808}', b'{"report":true,"t_ns":}', b'{"report":true,"t_ns":1',
    b'{"report":true,"t_ns":1}}', b'{"report":true,"t_ns": 1}', b'{"report":false,"t_ns":1}',
    b'{"t_ns":1,"report":true}', b'{"report":true,"t_ns":\xd9\xa1}', b'{"report":true,"t_ns":1e3}',
    b'{"report":true,"t_ns":+1}', b'{"t_ns":"1"}',
])
def test_sync_args_leaves_every_other_form_to_the_general_path(body) -> None:
    assert agent_mod._sync_args(FID + body) is None
