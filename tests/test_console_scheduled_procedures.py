"""Scenario files schedule procedures ([[procedure]]): the console's procedure file,
checked at load, run by the run's own loop in simulation time through its TC path and
fault injection, its steps archived as events and judged."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from test_console_scheduled_commands import HEAD as SCHEDULED_COMMANDS_HEAD

from hil_rig.archive import load_run
from hil_rig.run import Run, RunError
from hil_rig.scenario import ScenarioError, load_scenario

# the short scenario of tests/test_console_scheduled_commands.py, with the compute payload
HEAD = SCHEDULED_COMMANDS_HEAD.replace('duration = "20 min"', 'duration = "{duration}"') + \
    '[payload]\nworkload = "compute"\n'

RECOVER = """# take the sun sensors away, see FDIR go to SAFE, then command it back
inject sensor_dead sensor=sun duration="3 min"
wait mode == SAFE
wait 120 s     # a relative time tag, in simulation time
set_mode mode=SUN_POINT
wait ack
wait mode == COMPUTE
"""


def _scenario(tmp_path, proc: str, table: str = 'file = "p.proc"\nat = "300 s"\n', duration: str = "20 min",
              extra: str = ""):
    (tmp_path / "p.proc").write_text(proc)
    f = tmp_path / "x.toml"
    f.write_text(HEAD.format(duration=duration) + "[[procedure]]\n" + table + extra)
    return f


def test_a_scheduled_procedure_runs_in_simulation_time_and_is_archived_and_judged(tmp_path):
    f = _scenario(tmp_path, RECOVER, extra="""
[[requirement]]
kind = "mode_reached"
name = "compute_after_procedure"
mode = "COMPUTE"
after = "450 s"
within = "5 min"
[[requirement]]
kind = "event_seen"
name = "procedure_done"
event = "procedure_done"
source = "rig"
""")
    with Run(load_scenario(f), out=tmp_path / "run", rt_priority=None) as run:
        res = run.finish()
    assert res.passed, [v.detail for v in res.verdicts]
    data = load_run(tmp_path / "run")
    ev = data["events"]
    rows = list(zip(ev["t_ns"], ev["source"], ev["kind"], ev["detail"], strict=True))
    rig = [(t, k, d) for t, s, k, d in rows if s == "rig" and k.startswith(("procedure", "command_sent",
                                                                            "fault_injected"))]
    kinds = [k for _t, k, _d in rig]
    assert kinds[:4] == ["procedure_scheduled", "procedure_started", "procedure_step", "fault_injected"]
    assert kinds[-1] == "procedure_done" and "procedure_unfinished" not in kinds
    t_start = rig[1][0]
    assert t_start == 300 * 10**9
    # the wait on telemetry ends at the frame that reports SAFE; the time wait 120 s after it, exactly
    safe_at = next(t for t, s, k, d in rows if k == "mode_transition" and '"to": "SAFE"' in d)
    met = [(t, d) for t, k, d in rig if k == "procedure_step" and " met after " in d]
    assert met[0][0] == safe_at and "'wait mode == SAFE'" in met[0][1]
    assert met[1][0] == safe_at + 120 * 10**9 and "'wait 120 s' met after 120.000 s" in met[1][1]
    sent = [(t, d) for t, k, d in rig if k == "command_sent"]
    assert len(sent) == 1 and sent[0][0] == met[1][0]
    assert sent[0][1].startswith("set_mode arsn 1 (procedure[0] p.proc, line 5)")
    acc = [t for t, s, k, d in rows if k == "tc_accepted" and '"spi": 1' in d]
    assert len(acc) == 1 and met[2][0] == acc[0]  # wait ack: the frame that accepted it
    # the effect, in the archived telemetry: SAFE from FDIR's trip until the procedure's TC, then COMPUTE
    tm = data["telemetry"]
    t, mode = np.asarray(tm["t_ns"]), np.asarray(tm["fsw_mode"])
    assert (mode[(t >= safe_at) & (t < acc[0])] == 2).all()
    assert (mode[t > acc[0] + 10**9] == 4).all()


def test_a_procedure_still_waiting_at_the_end_is_recorded_unfinished(tmp_path):
    f = _scenario(tmp_path, "noop\nwait soc < 0.01\nnoop\n", duration="8 min")
    with Run(load_scenario(f), out=tmp_path / "run", rt_priority=None) as run:
        run.finish()
    ev = load_run(tmp_path / "run")["events"]
    un = [d for k, d in zip(ev["kind"], ev["detail"], strict=True) if k == "procedure_unfinished"]
    assert len(un) == 1 and "waiting at line 2 ('wait soc < 0.01') since t = 300.000 s" in un[0]
    assert list(ev["kind"]).count("command_sent") == 1


@pytest.mark.parametrize("proc, table, expected", [
    ("noop\nset_mod mode=SAFE\n", None,
     "x.toml: procedure[0].file: procedure {tmp}/p.proc, line 2: unknown command 'set_mod'"),
    ("set_mode mode=BOGUS\n", None,
     "x.toml: procedure[0].file: procedure {tmp}/p.proc, line 1: set_mode.mode: expected one of"),
    ("noop\n\npause\n", None,
     "x.toml: procedure[0].file: procedure {tmp}/p.proc, line 3: 'pause' is not allowed in a procedure "
     "that a scenario schedules"),
    ("step 10 s\n", None, "line 1: 'step' is not allowed in a procedure that a scenario schedules"),
    ("wait sooc > 0.5\n", None, "x.toml: procedure[0].file: procedure {tmp}/p.proc, line 1: no housekeeping "
     "channel 'sooc'"),
    ("wait board.jetson0.tmp_k > 300\n", None, "line 1: no housekeeping channel 'board.jetson0.tmp_k'"),
    ("wait 10 parsecs\n", None, "line 1"),
    ("inject solar_flare\n", None, "line 1: inject: give a fault kind"),
    ("# only a comment\n", None, "x.toml: procedure[0].file: procedure {tmp}/p.proc: no steps"),
    ("noop\n", 'file = "none.proc"\nat = "300 s"\n', "x.toml: procedure[0].file: procedure {tmp}/none.proc: "),
    ("noop\n", 'at = "300 s"\n', "x.toml: procedure[0].file: missing (required)"),
    ("noop\n", 'file = "p.proc"\n', "x.toml: procedure[0].at: missing (required)"),
    ("noop\n", 'file = "p.proc"\nat = "eclipse_exot"\n', "x.toml: procedure[0].at: expected a trigger"),
    ("noop\n", 'file = "p.proc"\nat = "300 s"\nwhen = 1\n', "x.toml: procedure[0].when: unknown key"),
])
def test_a_bad_procedure_names_the_file_key_and_line(tmp_path, proc, table, expected):
    f = _scenario(tmp_path, proc, **({"table": table} if table else {}))
    with pytest.raises(ScenarioError) as ei:
        load_scenario(f)
    assert expected.format(tmp=tmp_path) in str(ei.value).replace(str(f), "x.toml")


@pytest.mark.parametrize("proc, expected", [
    ("isolate_board board=jetson9\n", r"procedure\[0\]\.file: .*p\.proc: names board\(s\) jetson9, not in this run"),
    ("wait board.rpi7.temp_k > 300\n", r"names board\(s\) rpi7, not in this run"),
])
def test_a_board_the_run_does_not_have_is_refused_at_start(tmp_path, proc, expected):
    f = _scenario(tmp_path, proc)
    with pytest.raises(RunError, match=expected):
        Run(load_scenario(f), out=tmp_path / "run", rt_priority=None).start()


def test_a_procedure_after_the_run_is_refused_at_start(tmp_path):
    f = _scenario(tmp_path, "noop\n", table='file = "p.proc"\nat = "orbit 5"\n')
    with pytest.raises(RunError, match=r"procedure\[0\]\.at"):
        Run(load_scenario(f), out=tmp_path / "run", rt_priority=None).start()


def test_hil_run_refuses_a_bad_procedure_with_exit_2(tmp_path):
    f = _scenario(tmp_path, "noop\nwait mode == SAFE\nresume\n")
    r = subprocess.run([sys.executable, "-m", "hil_rig.cli", "run", str(f), "--out", str(tmp_path / "run")],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "x.toml: procedure[0].file: procedure" in r.stderr and "line 3: 'resume'" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "telemetry.sqlite").exists()
