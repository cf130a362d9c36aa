"""The built wheel carries everything `hil run` needs: installed without the source
tree (not editable), it still finds the shipped scenarios, builds its C core and
runs a scenario from an unrelated directory."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installed_elsewhere_runs_a_shipped_scenario(tmp_path: pathlib.Path) -> None:
    wheels = tmp_path / "wheels"
    # an isolated build, as any user's `pip install` does (the build backend and
    # cffi come from the build requirements, not from this environment)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", str(ROOT), "--no-deps",
                          "-w", str(wheels)],
                         capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    (whl,) = wheels.glob("orbit_hil-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    shipped = sorted(p.name for p in (ROOT / "scenarios").glob("*.toml"))
    assert sorted(n.split("/")[-1] for n in names if n.startswith("hil_rig/scenarios/")) == shipped
    target = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                          str(target), str(whl)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target))
    out = cwd / "run"
    res = subprocess.run([sys.executable, "-m", "hil_rig.cli", "run", "nominal", "--duration", "20 s",
                          "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=cwd, env=env)
    # 20 s is too short for jobs_per_orbit (no complete orbit): judged, and reported as such
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sim_seconds"] == 20.0, res.stderr[-3000:]
    assert summary["scenario"] == "nominal"
    probe = subprocess.run([sys.executable, "-c", "import hil_rig, native; print(hil_rig.__file__, native.__file__)"],
                           capture_output=True, text=True, cwd=cwd, env=env)
    assert str(target) in probe.stdout and str(ROOT) not in probe.stdout, probe.stdout
