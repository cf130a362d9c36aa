"""Every shipped scenario: its orbit, eclipses and fault triggers resolve (fast),
and it runs to the end on the virtual bench in virtual time and passes (slow)."""

from __future__ import annotations

import pathlib

import pytest

from hil_rig.environment import Environment
from hil_rig.faults import resolve
from hil_rig.requirements import make_judges
from hil_rig.run import build_orbit, orbit_events, run_scenario
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


@pytest.mark.slow
def test_link_noise_is_reproducible_from_its_seed(tmp_path: pathlib.Path) -> None:
    """Byte corruption and loss on a link, retries and all: the same seed gives
    identical archives, row for row (the fault proxy draws each frame's damage from
    the seed and the frame's bytes, not from when the bytes happen to pass)."""
    from hil_rig.archive import REPRODUCIBLE_TABLES, table_rows

    sc = load_scenario(ROOT / "scenarios" / "link_noise.toml")
    results = [run_scenario(sc, out=tmp_path / name) for name in ("a", "b")]
    for r in results:
        r.check()
    assert results[0].summary["fsw"]["link_errors"] > 0  # the noise cost the flight software commands
    for table in REPRODUCIBLE_TABLES:
        a, b = (table_rows(tmp_path / name, table) for name in ("a", "b"))
        assert len(a) == len(b), f"table {table}: {len(a)} rows vs {len(b)}"
        for i, (ra, rb) in enumerate(zip(a, b, strict=True)):
            assert ra == rb, f"table {table} row {i} differs:\n{ra}\n{rb}"
