"""Every shipped scenario: its orbit, eclipses and fault triggers resolve (fast),
and it runs to the end on the virtual bench in virtual time and passes (slow)."""

from __future__ import annotations

import pathlib

import pytest

from hil_rig.environment import Environment
from hil_rig.faults import resolve
from hil_rig.requirements import make_judges
from hil_rig.runner import build_orbit, orbit_events, run_scenario
from hil_rig.scenario import load_scenario

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.stem for p in (ROOT / "scenarios").glob("*.toml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_resolves(name: str) -> None:
    sc = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    orbit = build_orbit(sc)
    ev = orbit_events(Environment(orbit, sc.epoch), sc, orbit.period_s)
    assert ev.eclipses, "every shipped scenario sees at least one eclipse"
    actions = resolve(sc.faults, ev, file=name)
    assert len([a for a in actions if a.phase == "start"]) == len(sc.faults)
    assert len(make_judges(sc.requirements, ev, actions)) == len(sc.requirements)


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_passes(name: str, tmp_path: pathlib.Path) -> None:
    sc = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    result = run_scenario(sc, out=tmp_path / "run")
    result.check()
    assert result.summary["sim_seconds"] > 0 and not result.aborted
