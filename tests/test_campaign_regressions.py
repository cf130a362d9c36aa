"""Regressions from the real campaign of issue 23 (campaigns/nominal_all_kinds.toml, 24
schedules over the nominal scenario's first eclipse; docs/campaigns.md "A real campaign").
Each scenario under tests/campaign_regressions/ runs through ``hil run``.

- gyro_dead_in_umbra.toml: the campaign's minimal scenario. The gyro reads zero for 206 s
  of umbra; the ADCS closed its rate loop on the zero reading and spun the spacecraft up to
  0.13 rad/s, 144° off the sun 12 minutes after the eclipse exit. Fixed in the flight
  software (FswConfig.gyro_frozen_frames): every requirement passes.
- gyro_stuck_after_exit.toml: the second failure, reduced by hand to its stuck gyro
  (599 s from 71 s after the exit). Before the fix the stuck reading spun the spacecraft up
  to 0.16 rad/s; now it coasts at its residual rate and is back on the sun within a minute
  of the gyro reading again. sun_pointing still fails: coasting 10 minutes in sunlight
  drifts 16° and the flight software has no gyro-less rate estimate (a known limit, left
  open; this test says so when it changes).
- power_cycle_in_brownout.toml: a rig bug the campaign found. FDIR power-cycled the boards
  while a brown-out still held their supply low; the rig booted them anyway and its
  wall-clock boot wait aborted the run. Now a relay closed on a sagged supply leaves the
  board browned out until the supply is back (hil_rig/run/board_power.py).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

HERE = pathlib.Path(__file__).parent / "campaign_regressions"


def _run(name: str, out: pathlib.Path) -> tuple[int, dict]:
    r = subprocess.run([sys.executable, "-m", "hil_rig.cli", "run", str(HERE / name), "--out", str(out),
                        "--no-report"], capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert (out / "summary.json").exists(), r.stderr[-2000:]
    return r.returncode, {v["name"]: v for v in json.loads((out / "summary.json").read_text())["requirements"]}


def _fsw_events(out: pathlib.Path, kind: str) -> list[tuple[float, dict]]:
    from hil_rig.archive import load_run

    ev = load_run(out)["events"]
    sel = ev[(ev["source"] == "fsw") & (ev["kind"] == kind)]
    return [(t / 1e9, json.loads(d)) for t, d in zip(sel["t_ns"].tolist(), sel["detail"].tolist(), strict=True)]


def test_gyro_dead_in_umbra_passes(tmp_path: pathlib.Path) -> None:
    rc, verdicts = _run("gyro_dead_in_umbra.toml", tmp_path / "run")
    assert rc == 0, {k: v["detail"] for k, v in verdicts.items() if not v["passed"]}
    trips = [(t, f) for t, f in _fsw_events(tmp_path / "run", "fdir_trip") if f["monitor"] == "adcs.gyro_frozen"]
    assert [round(t) for t, _ in trips] == [3509]  # 10 frames after the gyro died at 3508 s


@pytest.mark.slow
def test_gyro_stuck_after_exit_coasts_instead_of_spinning_up(tmp_path: pathlib.Path) -> None:
    from hil_rig.archive import load_run

    rc, verdicts = _run("gyro_stuck_after_exit.toml", tmp_path / "run")
    tm = load_run(tmp_path / "run")["telemetry"]
    t_s = tm["t_ns"] / 1e9
    rate = tm["rate_norm_rad_s_true"]
    stuck = (t_s >= 3913) & (t_s <= 4512)  # the gyro stuck: the spacecraft coasts
    assert float(np.max(rate[stuck])) < 2e-3  # before the fix it spun up to 0.16 rad/s here
    after = t_s >= 3800  # from the eclipse exit on (the run starts with its own detumble): the
    assert float(np.max(rate[after])) < 0.02  # slew back to the sun once the gyro reads again
    back = t_s >= 4512 + 60  # a minute after the gyro reads again (stuck from 3913 s for 599 s)
    assert float(np.max(tm["sun_err_deg"][back])) < 1.0
    assert rc == 1 and not verdicts["sun_pointing"]["passed"], "the known limit is gone: update this test"
    assert verdicts["soc_floor"]["passed"] and verdicts["payload_temp_max"]["passed"]


def test_a_power_cycle_during_a_brownout_waits_for_the_supply(tmp_path: pathlib.Path) -> None:
    rc, verdicts = _run("power_cycle_in_brownout.toml", tmp_path / "run")
    assert rc == 0, {k: v["detail"] for k, v in verdicts.items() if not v["passed"]}
    from hil_rig.archive import load_run

    ev = load_run(tmp_path / "run")["events"]
    rig = [(t / 1e9, d) for t, s, d in zip(ev["t_ns"].tolist(), ev["source"].tolist(), ev["detail"].tolist(),
                                            strict=True) if s == "rig"]
    cycled = [t for t, d in rig if d == "rpi0 relay on (flight software)"]
    back = [t for t, d in rig if d == "rpi0 power back after brownout"]
    assert cycled and back and cycled[0] < back[0]  # power-cycled inside the brown-out, up after it
    assert any(t == cycled[0] and d.startswith("rpi0 browned out") for t, d in rig)
