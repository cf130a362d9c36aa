"""The house's arrows point one way only (docs/architecture.md).

- native imports nothing of the project;
- firmware_bridge imports nothing of the project;
- flight_sw may use native and firmware_bridge, never hil_rig.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROJECT = {"native", "firmware_bridge", "flight_sw", "hil_rig"}
ALLOWED = {
    "native": {"native"},
    "firmware_bridge": {"firmware_bridge"},
    "flight_sw": {"flight_sw", "native", "firmware_bridge"},
    "hil_rig": PROJECT,
}


def _imported_top_levels(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_point_one_way(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _imported_top_levels(path) - ALLOWED[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


def test_hil_version_and_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hil_rig.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("orbit-hil ")
    out = subprocess.run(
        [sys.executable, "-m", "hil_rig.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "usage: hil" in out.stdout


def test_native_core_is_built_and_loaded() -> None:
    import native

    assert native.ABI_VERSION >= 1
