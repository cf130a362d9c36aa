"""Scenario files schedule telecommands ([[command]]): checked against the
dictionary at load, sent through the run's own TC path at their time, recorded."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from hil_rig.archive import load_run
from hil_rig.run import Run, RunError
from hil_rig.scenario import ScenarioError, find_scenario, load_scenario, parse_scenario

HEAD = """
[scenario]
epoch = "2026-03-20T00:00:00Z"
duration = "20 min"
[orbit]
altitude_km = 550
inclination_deg = "sso"
ltan = "10:30"
"""


def _cmd(body: str) -> str:
    return HEAD + "[[command]]\n" + body


@pytest.mark.parametrize("body, expected", [
    ('name = "set_mod"\nat = "60 s"\n', "x.toml: command[0].name: unknown telecommand 'set_mod'; did you mean 'set_mode'?"),
    ('name = "set_mode"\nargs = {mode = "BOGUS"}\nat = "60 s"\n',
     "x.toml: command[0].args: set_mode.mode: expected one of BOOT, DETUMBLE, SAFE, SUN_POINT, COMPUTE, got 'BOGUS'"),
    ('name = "set_throttle_cap"\nargs = {cap = 2.0}\nat = "60 s"\n',
     "x.toml: command[0].args: set_throttle_cap.cap: 2.0 outside [0.0, 1.0]"),
    ('name = "set_throttle_cap"\nargs = {cap = "half"}\nat = "60 s"\n',
     "x.toml: command[0].args: set_throttle_cap.cap: expected a number, got 'half'"),
    ('name = "set_throttle_cap"\nargs = {cap = 0.5, limit = 1}\nat = "60 s"\n',
     "x.toml: command[0].args: set_throttle_cap: unknown argument(s) ['limit']"),
    ('name = "set_mode"\nargs = {}\nat = "60 s"\n', "x.toml: command[0].args: set_mode: missing argument 'mode'"),
    ('name = "noop"\n', "x.toml: command[0].at: missing (required)"),
    ('name = "noop"\nat = "eclipse_exot"\n', "x.toml: command[0].at: expected a trigger"),
    ('name = "noop"\nat = "60 s"\nargs = "mode=SAFE"\n', "x.toml: command[0].args: expected a table"),
    ('name = "noop"\nat = "60 s"\nwhen = 3\n', "x.toml: command[0].when: unknown key"),
])
def test_a_bad_command_names_file_table_and_key(body, expected):
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(_cmd(body), file="x.toml")
    assert str(exc.value).startswith(expected), str(exc.value)


def test_the_second_command_table_is_named_by_its_index():
    text = _cmd('name = "noop"\nat = "60 s"\n') + '[[command]]\nname = "cancel_job"\nargs = {job_id = -1}\nat = "1 s"\n'
    with pytest.raises(ScenarioError, match=r"command\[1\]\.args: cancel_job\.job_id: -1 outside u32"):
        parse_scenario(text, file="x.toml")


def test_hil_run_refuses_a_bad_command_with_exit_2(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(_cmd('name = "set_mode"\nargs = {mode = "BOGUS"}\nat = "60 s"\n'))
    r = subprocess.run([sys.executable, "-m", "hil_rig.cli", "run", str(f), "--out", str(tmp_path / "run")],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "bad.toml: command[0].args: set_mode.mode" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_board_the_run_does_not_have_is_refused_at_start(tmp_path):
    sc = parse_scenario(_cmd('name = "isolate_board"\nargs = {board = "jetson9"}\nat = "60 s"\n'), file="x.toml")
    with pytest.raises(RunError, match=r"x: command\[0\]\.args: isolate_board.board: no board 'jetson9'"):
        Run(sc, out=tmp_path / "run", rt_priority=None).start()


def test_a_scheduled_command_brings_the_flight_software_out_of_safe(tmp_path):
    """scenarios/safe_recovery.toml: FDIR latches SAFE when the sun sensors die;
    only the scheduled set_mode SUN_POINT at the first eclipse exit + 60 s ends it."""
    sc = load_scenario(find_scenario("safe_recovery"))
    with Run(sc, out=tmp_path / "run", rt_priority=None) as run:
        t_cmd = run.resolve_time("eclipse_exit + 60 s")
        res = run.finish()
    assert res.passed, [v.detail for v in res.verdicts]
    data = load_run(tmp_path / "run")
    ev = data["events"]
    kinds = list(ev["kind"])
    sent = [i for i, k in enumerate(kinds) if k == "command_sent"]
    assert len(sent) == 1 and ev["source"][sent[0]] == "rig"
    assert ev["t_ns"][sent[0]] >= t_cmd and "set_mode arsn 1" in ev["detail"][sent[0]]
    assert "command_scheduled" in kinds
    acc = [i for i, k in enumerate(kinds) if k == "tc_accepted"]
    assert len(acc) == 1 and '"spi": 1' in ev["detail"][acc[0]]  # the run's own TC path (SPI 1)
    tm = data["telemetry"]
    t, mode = tm["t_ns"], np.asarray(tm["fsw_mode"])
    safe = mode == 2
    assert safe.any()
    # SAFE holds until the command, and not a second after its frame
    assert t[safe].max() < t_cmd + 2 * 10**9
    assert (mode[(t > t[safe].min()) & (t < t_cmd)] == 2).all()
    assert mode[-1] == 4  # COMPUTE again
