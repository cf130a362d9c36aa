"""The panels' newer contents against a real run: the beta angle in the orbit panel,
wheel speeds and momentum in attitude, heaters in thermal."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("textual")

from test_console import drive, hosted_run, until  # noqa: E402

from hil_rig.archive import load_run  # noqa: E402
from hil_rig.console.app import ConsoleApp  # noqa: E402


@pytest.fixture
def live(tmp_path):
    yield from hosted_run(tmp_path)


def test_beta_wheels_momentum_and_heaters_on_screen(live):
    hosted, key = live
    run = hosted.run

    async def script(app, pilot):
        await until(pilot, lambda: app.status.get("paused"), "status: run paused")
        await pilot.press(*"step 120 s", "enter")
        await until(pilot, lambda: app.hk.get("t_ns", 0) >= 120e9 and app.status.get("t_s", 0) >= 120,
                    "HK and status after 120 s")
        t_ns = int(app.status["t_s"] * 1e9)
        # the beta angle: the orbit's own, at the status's time (rig truth)
        beta = math.degrees(run.parts.env.sample(np.array([t_ns])).beta_rad[0])
        assert app.status["beta_deg"] == pytest.approx(beta, abs=1e-9)
        assert f"β {beta:.1f}°" in str(app.query_one("#orbit").render())
        # the wheels as the flight software reads them, against the plant's truth
        hk = app.hk
        tm = load_run(run.run_dir)["telemetry"]
        row = np.searchsorted(tm["t_ns"], hk["t_ns"])
        assert tm["t_ns"][row] == hk["t_ns"]
        for a in "xyz":
            assert hk[f"wheel_{a}_rad_s"] == pytest.approx(tm[f"wheel_{a}_rad_s_true"][row], abs=1.0)
        speeds = [hk[f"wheel_{a}_rad_s"] for a in "xyz"]
        assert max(abs(w) for w in speeds) > 1.0  # the wheels turn: the check above is not of zeros
        j = run.parts.params.wheel_inertia_kg_m2
        assert hk["wheel_momentum_nms"] == pytest.approx(j * math.sqrt(sum(w * w for w in speeds)))
        att = str(app.query_one("#attitude").render())
        assert f"{speeds[1]:.0f}" in att and "ω rad/s" in att and f"{hk['wheel_momentum_nms']:.4f} Nms" in att
        # heaters: the flight software's mask, named by the run's thermal zones
        assert app.status["thermal_zones"] == list(run.fsw.cfg.thermal_zones)
        mask = int(hk["heater_mask"])
        thermal = str(app.query_one("#thermal").render())
        on = [z for i, z in enumerate(app.status["thermal_zones"]) if mask >> i & 1]
        assert ("heaters  " + (" ".join(on) if on else "all off")) in thermal

    drive(hosted, key, script, size=(80, 24))


def test_heater_names_from_the_mask():
    zones = ["battery", "payload", "radiator", "structure"]
    assert str(ConsoleApp._heaters(0, zones)) == "all off"
    assert str(ConsoleApp._heaters(0b1001, zones)) == "battery structure"
    assert str(ConsoleApp._heaters(0b10000, zones)) == "#4"  # a bit with no zone name
    assert str(ConsoleApp._heaters(float("nan"), zones)) == "--"
