"""Work delivered and yield in real runs on the virtual bench (docs/yield.md):
the archive's work columns against the jobs the flight software completed,
summary.json's work and yield, ``hil yield`` as a real subprocess (its replay
through the plant, its bad input), and on the nominal scenario (slow) the
bound's replay and its convergence as the step is refined."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from firmware_bridge.ratings import RATINGS
from firmware_bridge.workloads import step_flops
from hil_rig.archive import load_run
from hil_rig.run import run_scenario
from hil_rig.scenario import load_scenario

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCENARIO = """
[scenario]
name = "yield_short"
epoch = "2026-03-20T00:00:00Z"
duration = "{duration}"
seed = 3

[orbit]
altitude_km = 550
inclination_deg = "sso"
ltan = "10:30"

[payload]
workload = "compute"
job_steps = 50

[[requirement]]
kind = "soc_floor"
min = 0.3

[[requirement]]
kind = "payload_temp_max"
max_c = 70
"""


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, pathlib.Path, dict]:
    d = tmp_path_factory.mktemp("yield")
    scen = d / "yield_short.toml"
    scen.write_text(SCENARIO.format(duration="20 min"))
    res = run_scenario(load_scenario(scen), out=d / "run")
    return scen, d / "run", res.summary


def hil(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "hil_rig.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT)


def test_work_columns_count_every_completed_job_and_partial_progress(short_run) -> None:
    _scen, run_dir, summary = short_run
    tm = load_run(run_dir)["telemetry"]
    w = np.asarray(tm["work_flop"], float)
    per_board = {b: np.asarray(tm[f"work_flop_{b}"], float) for b in ("jetson0", "rpi0")}
    assert np.all(np.diff(w) >= 0)
    assert np.allclose(w, sum(per_board.values()))
    job_flop = 50 * step_flops("matmul", {"n": 64})
    done = summary["fsw"]["jobs_completed"]
    assert done >= 5
    # every completed job's steps, plus the running jobs' partial progress (< 1 job per board)
    assert done * job_flop <= w[-1] < (done + 2) * job_flop
    # never faster than the boards' rated throughput at throttle 1
    secs = len(w) - 1
    assert w[-1] <= secs * (RATINGS["jetson"].rated_flops + RATINGS["rpi"].rated_flops)
    work = summary["work"]
    assert work["unit"] == "FLOP" and work["delivered"] == pytest.approx(w[-1])
    assert sum(work["by_orbit"]) == pytest.approx(w[-1])
    assert work["by_board"] == pytest.approx({b: v[-1] for b, v in per_board.items()})


def test_summary_reports_yield_against_the_bound(short_run) -> None:
    _scen, _run_dir, summary = short_run
    y = summary["yield"]
    assert "error" not in y, y
    assert y["delivered"] == pytest.approx(summary["work"]["delivered"])
    assert 0 < y["bound"] <= y["energy_bound"] * (1 + 1e-9)
    assert 0.3 < y["ratio"] <= 1.0
    assert y["ratio"] == pytest.approx(y["delivered"] / y["bound"])
    assert [o["orbit"] for o in y["by_orbit"]] == [1]
    # an orbit's figure is its share of the whole run's bound (no per-orbit ratio above 1)
    assert "ratio" not in y["by_orbit"][0]
    assert sum(o["share"] for o in y["by_orbit"]) == pytest.approx(y["ratio"])
    assert sum(o["bound_share"] for o in y["by_orbit"]) == pytest.approx(1.0)
    assert set(y["binding"]) == {"sun", "eclipse"}


def test_hil_yield_replays_the_bound_through_the_plant(short_run) -> None:
    scen, run_dir, summary = short_run
    r = hil("yield", str(run_dir), "--scenario", str(scen), "--replay", "--json")
    assert r.returncode == 0, r.stderr
    y = json.loads(r.stdout)
    assert y["bound"] == pytest.approx(summary["yield"]["bound"], rel=1e-6)
    rp = y["replay"]
    assert rp["feasible"], rp["violations"]
    assert rp["soc_min"] >= rp["soc_floor"]
    assert max(rp["board_temp_max_k"].values()) <= rp["temp_max_k"]
    assert rp["work_flop"] == pytest.approx(y["bound"], rel=1e-9)
    assert rp["solar_rms_err_w"] < 2.0  # the replay's generation is the run's


@pytest.mark.parametrize(("args", "message"), [
    (["--dt", "0.5"], "--dt: the bound's step must be a whole number of seconds"),
    (["--end-soc", "full"], "--end-soc: expected run, initial, free or a SOC"),
    (["--end-soc", "1.5"], "--end-soc: a SOC must be in [0, 1]"),
    (["--scenario", str(ROOT / "scenarios" / "hot_case.toml")], "not the scenario"),
    (["--scenario", "/nonexistent/x.toml"], "x.toml"),
])
def test_hil_yield_bad_input_is_exit_2_naming_it(short_run, args, message) -> None:
    scen, run_dir, _ = short_run
    extra = [] if "--scenario" in args else ["--scenario", str(scen)]
    r = hil("yield", str(run_dir), *extra, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr


def test_hil_yield_on_a_directory_without_an_archive(tmp_path: pathlib.Path) -> None:
    r = hil("yield", str(tmp_path))
    assert r.returncode == 2 and f"{tmp_path}: not a run directory" in r.stderr


@pytest.mark.slow
def test_nominal_bound_replays_feasibly_and_converges(tmp_path: pathlib.Path) -> None:
    from hil_rig.yield_bound import solve
    from hil_rig.yield_bound.from_run import problem_from_run
    from hil_rig.yield_bound.replay import replay

    sc = load_scenario(ROOT / "scenarios" / "nominal.toml")
    res = run_scenario(sc, out=tmp_path / "run")
    assert "error" not in res.summary["yield"]
    works = []
    for dt in (240.0, 120.0, 60.0, 30.0):
        pr, info = problem_from_run(tmp_path / "run", sc, dt_s=dt)
        s = solve(pr)
        works.append(s.work_flop)
        rp = replay(pr, s, info)
        assert rp.feasible, (dt, rp.violations)
        assert s.work_flop <= pr.energy_bound_flop() * (1 + 1e-9)
    d = np.abs(np.diff(works))
    assert d[-1] <= d[0] + 1e-6 * works[-1] and d[-1] / works[-1] < 5e-3, works
