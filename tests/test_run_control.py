"""The run's control API (hil_rig.run.Run): faults injected by hand, pause and
resume from another thread, telecommands through the flight software's own TC
path, status, speed; and the checks a run makes of its boards before it starts.
Everything runs on the virtual bench: emulated boards over real ptys, simulated
instruments on real Modbus servers."""

from __future__ import annotations

import json
import pathlib
import threading
import time

import pytest

from hil_rig.archive import table_rows
from hil_rig.run import Run, RunError, RunOptions
from hil_rig.scenario import load_scenario

NS = 1_000_000_000

SCENARIO = """
[scenario]
name = "{name}"
epoch = "2026-03-20T00:00:00Z"
duration = "{duration}"
seed = 3
{speed}

[orbit]
altitude_km = 550
inclination_deg = "sso"
ltan = "10:30"

[payload]
workload = "compute"

[[requirement]]
kind = "soc_floor"
min = 0.3
"""


def _scenario(tmp: pathlib.Path, name: str = "ctl", duration: str = "20 min", speed: str = "") -> pathlib.Path:
    p = tmp / f"{name}.toml"
    p.write_text(SCENARIO.format(name=name, duration=duration, speed=speed))
    return p


def _events(run_dir: pathlib.Path) -> list[tuple[int, str, str, str]]:
    return [tuple(r[1:]) for r in table_rows(run_dir, "events")]


#: (fault spec, an event kind and detail fragment that shows the fault took effect);
#: the SEU first, while the board's first job runs (a brown-out later loses it)
BY_HAND = [
    ({"kind": "seu", "board": "jetson0"}, "seu_injected", "jetson0"),
    ({"kind": "link_noise", "board": "rpi0", "byte_error_rate": 1e-3, "duration": "5 s"}, "link_noise_end", "rpi0"),
    ({"kind": "link_drop", "board": "rpi0", "byte_drop_rate": 1e-3, "duration": "5 s"}, "link_drop_end", "rpi0"),
    ({"kind": "link_disconnect", "board": "jetson0", "duration": "3 s"}, "link_disconnect_end", "jetson0"),
    ({"kind": "relay_off", "board": "rpi0", "duration": "5 s"}, "board_power", "rpi0 relay off"),
    ({"kind": "brownout", "board": "jetson0", "voltage_v": 5.0, "duration": "5 s"}, "board_power", "jetson0 browned out"),
    ({"kind": "payload_hang", "board": "rpi0"}, "payload_hang_injected", "rpi0"),
    ({"kind": "sensor_stuck", "sensor": "gyro", "duration": "5 s"}, "sensor_stuck_end", "gyro"),
    ({"kind": "sensor_dead", "sensor": "mag", "duration": "5 s"}, "sensor_dead_end", "mag"),
    ({"kind": "sensor_bias", "sensor": "gyro", "bias": 0.01, "duration": "5 s"}, "sensor_bias_end", "gyro"),
    ({"kind": "wheel_stuck", "wheel": "y", "duration": "5 s"}, "wheel_stuck_end", "y"),
    ({"kind": "hot_case", "heat_load_factor": 2.0, "duration": "5 s"}, "hot_case_end", "hot_case"),
]


def test_every_fault_kind_injected_by_hand(tmp_path: pathlib.Path) -> None:
    """Each fault kind goes in through Run.inject alone, at the current time, and
    does what a scheduled one does: its start and end are recorded, and its effect
    on the bench (a relay opened, a board browned out, a hang or an SEU delivered
    to a board's agent) shows in the archive."""
    from hil_rig.scenario import FAULT_KINDS

    assert sorted(spec["kind"] for spec, _, _ in BY_HAND) == sorted(FAULT_KINDS)  # every kind
    run = Run(load_scenario(_scenario(tmp_path)), out=tmp_path / "run", options=RunOptions(proxy_links=True))
    with run:
        while run.status()["boards"].get("jetson0") != "BUSY":  # a job running on the board
            assert run.t_ns < 600 * NS, "no job ever ran on jetson0"
            run.step("5 s")
        for spec, kind, fragment in BY_HAND:
            t0 = run.t_ns
            actions = run.inject(spec)
            assert actions[0].t_ns == t0 and actions[0].kind == spec["kind"]
            run.step("20 s")
            seen = [e for e in _events(run.run_dir) if e[0] >= t0]
            assert any(k == "fault_injected" and spec["kind"] in d for _, s, k, d in seen), spec
            assert any(k == f"{spec['kind']}_start" for _, s, k, d in seen), spec
            assert any(k == kind and fragment in d for _, s, k, d in seen), (spec, seen)
        res = run.finish()
    assert res.aborted is None, res.summary.get("error")


JUDGED = """
[[requirement]]
kind = "hang_recovered"
within_s = 300

[[requirement]]
kind = "seu_detected"
"""


def test_faults_injected_by_hand_are_judged_like_scheduled_ones(tmp_path: pathlib.Path) -> None:
    """A scenario with no [[fault]] but hang and SEU requirements: the hang and the SEU
    injected through Run.inject are what the judges see, not "not exercised"."""
    path = _scenario(tmp_path, duration="15 min")
    path.write_text(path.read_text() + JUDGED)
    run = Run(load_scenario(path), out=tmp_path / "run")
    with run:
        while run.status()["boards"].get("jetson0") != "BUSY":
            assert run.t_ns < 600 * NS, "no job ever ran on jetson0"
            run.step("5 s")
        run.inject({"kind": "seu", "board": "jetson0"})
        run.inject({"kind": "payload_hang", "board": "rpi0"})
        res = run.finish()
    by_name = {v.kind: v for v in res.verdicts}
    hang, seu = by_name["hang_recovered"], by_name["seu_detected"]
    assert "not exercised" not in hang.detail and len(hang.measured["recovery_s"]) == 1, hang.detail
    assert "not exercised" not in seu.detail and seu.measured["scheduled"] == 1, seu.detail
    assert seu.measured["injected"] == 1, seu.detail


def test_inject_bad_specs_name_what_is_wrong(tmp_path: pathlib.Path) -> None:
    run = Run(load_scenario(_scenario(tmp_path, duration="2 min")), out=tmp_path / "run")
    with run:
        with pytest.raises(RunError, match="kind"):
            run.inject({"kind": "meteor"})
        with pytest.raises(RunError, match="no board 'gpu9'"):
            run.inject({"kind": "relay_off", "board": "gpu9"})
        with pytest.raises(RunError, match="byte_error_rate"):
            run.inject({"kind": "link_noise", "board": "rpi0"})
        with pytest.raises(RunError, match="no fault proxy"):  # no proxy_links, no link fault in the file
            run.inject({"kind": "link_noise", "board": "rpi0", "byte_error_rate": 0.1})
        run.run_until(30 * NS)
        with pytest.raises(RunError, match="eclipse_entry 9"):
            run.inject({"kind": "relay_off", "board": "rpi0", "at": "eclipse_entry 9"})
        assert run.finish().aborted is None


def test_pause_resume_command_and_status_from_another_thread(tmp_path: pathlib.Path) -> None:
    """A console's view: the loop runs in one thread; another pauses it, sees time
    stand still, sends a telecommand and injects a fault while paused (both done by
    the loop at its next second), resumes, and the run goes on to its end."""
    run = Run(load_scenario(_scenario(tmp_path, duration="5 min")), out=tmp_path / "run")
    run.start()
    result: dict[str, object] = {}
    loop = threading.Thread(target=lambda: result.setdefault("res", run.finish()), daemon=True)
    loop.start()
    try:
        while run.status()["t_s"] < 20:
            assert loop.is_alive(), "the run's loop ended before 20 s"
            time.sleep(0.01)
        run.pause()
        time.sleep(0.2)  # let the loop reach its next second and hold there
        t_paused = run.status()["t_s"]
        time.sleep(0.3)
        st = run.status()
        assert st["paused"] is True and st["t_s"] == t_paused
        assert st["board_power"] == {"jetson0": "up", "rpi0": "up"} and st["clock"] == "virtual"
        arsn = run.command("set_throttle_cap", cap=0.25)  # served by the paused loop
        run.inject({"kind": "relay_off", "board": "rpi0", "duration": "10 s"})
        assert run.status()["t_s"] == t_paused  # still paused
        run.resume()
    finally:
        run.resume()
        loop.join(600)
    assert not loop.is_alive()
    res = result["res"]
    assert res.aborted is None and res.summary["sim_seconds"] == 300.0  # type: ignore[attr-defined]
    ev = _events(run.run_dir)
    sent = [e for e in ev if e[2] == "tc_sent"]
    assert sent and sent[0][0] == int(t_paused * NS) and f"arsn {arsn}" in sent[0][3]
    accepted = [e for e in ev if e[2] == "tc_accepted"]
    assert accepted and json.loads(accepted[0][3])["command"] == "set_throttle_cap"
    assert accepted[0][0] > sent[0][0]  # executed by the flight software at its next 1 Hz frame
    assert any(e[2] == "board_power" and "rpi0 relay off" in e[3] for e in ev)
    tm = table_rows(run.run_dir, "telemetry")
    assert len(tm) == 301  # every second recorded once, pause or not


def test_command_is_checked_against_the_dictionary(tmp_path: pathlib.Path) -> None:
    run = Run(load_scenario(_scenario(tmp_path, duration="1 min")), out=tmp_path / "run")
    with run:
        with pytest.raises(RunError, match="unknown command 'warp'"):
            run.command("warp")
        with pytest.raises(RunError, match="cap"):
            run.command("set_throttle_cap", cap=7.0)
        run.command("set_mode", mode="SAFE")
        run.step("3 s")
        assert run.fsw.mode == "SAFE"
        assert any(e.fields.get("command") == "set_mode" for e in run.fsw_events("tc_accepted"))
        run.finish()


def test_set_speed_and_pause_in_real_time(tmp_path: pathlib.Path) -> None:
    run = Run(load_scenario(_scenario(tmp_path, duration="40 s", speed="speed = 20.0")), out=tmp_path / "run")
    with run:
        run.run_until(10 * NS)
        run.set_speed(40)
        assert run.status()["speed"] == 40.0
        run.pause()
        run.resume()
        with pytest.raises(RunError, match="> 0"):
            run.set_speed(-1)
        res = run.finish()
    assert res.aborted is None
    assert res.summary["lateness"]["frames"] == 41


def test_set_speed_is_refused_in_virtual_time(tmp_path: pathlib.Path) -> None:
    run = Run(load_scenario(_scenario(tmp_path, duration="1 min")), out=tmp_path / "run")
    with run:
        with pytest.raises(RunError, match="virtual time"):
            run.set_speed(2.0)
