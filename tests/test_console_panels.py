"""The panels' newer contents against a real run: the beta angle in the orbit panel,
wheel speeds and momentum in attitude, heaters in thermal."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("textual")

from test_console import drive, hosted_run, until  # noqa: E402

from hil_rig.archive import ARCHIVE_NAME, load_run  # noqa: E402
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
        # every thermal zone's temperature, as the flight software's sensors read them, against
        # the plant's truth (the sensors add noise)
        for zone in ("battery", "radiator", "structure"):
            assert hk[f"temp_{zone}_k"] == pytest.approx(tm[f"temp_{zone}_k_true"][row], abs=2.0)
        bat, pay, rad, struct = (hk[f"temp_{z}_k"] - 273.15 for z in ("battery", "payload_max", "radiator",
                                                                      "structure"))
        assert f"bat/pay  {bat:.1f}/{pay:.1f} °C" in thermal
        assert f"rad/str  {rad:.1f}/{struct:.1f} °C" in thermal

    drive(hosted, key, script, size=(80, 24))


def test_heater_names_from_the_mask():
    zones = ["battery", "payload", "radiator", "structure"]
    assert str(ConsoleApp._heaters(0, zones)) == "all off"
    assert str(ConsoleApp._heaters(0b1001, zones)) == "battery structure"
    assert str(ConsoleApp._heaters(0b10000, zones)) == "#4"  # a bit with no zone name
    assert str(ConsoleApp._heaters(float("nan"), zones)) == "--"


def test_replay_shows_the_archived_beta_angle_as_the_live_panel_did(live, tmp_path):
    """The archive stores the beta angle per telemetry row; a replay shows, at a
    second, the β the live panel showed at that second; an archive from before the
    column existed replays with β '--'."""
    import asyncio
    import sqlite3

    from hil_rig.console.stream import ReplaySource
    from hil_rig.run.control_server import ControlClient

    hosted, key = live
    c = ControlClient("127.0.0.1", hosted.server.port, key)
    c.request("step", duration="120 s")
    live_status = c.request("status")
    assert live_status["t_s"] == 120
    tm = load_run(hosted.run.run_dir)["telemetry"]
    t = np.asarray(tm["t_ns"])
    beta = np.asarray(tm["beta_deg"])
    want = np.degrees(hosted.run.parts.env.sample(t).beta_rad)
    assert np.array_equal(beta, want)  # every row: the orbit's own beta angle (rig truth)
    assert beta[t == 120 * 10**9][0] == live_status["beta_deg"]

    def replay(run_dir):
        src = ReplaySource(run_dir, speed=1.0)
        src.paused = True
        app = ConsoleApp(src)
        shown = {}

        async def main():
            async with app.run_test(size=(80, 24)) as pilot:
                await until(pilot, lambda: app.hk, "first frame")
                await pilot.press("f10", "f10")
                await until(pilot, lambda: app.status["t_s"] == 120, "seek to 120 s")
                await pilot.pause()
                shown["beta"] = app.status["beta_deg"]
                shown["orbit"] = str(app.query_one("#orbit").render())

        asyncio.run(main())
        return shown

    shown = replay(hosted.run.run_dir)
    assert shown["beta"] == live_status["beta_deg"]
    assert f"β {live_status['beta_deg']:.1f}°" in shown["orbit"]
    old = tmp_path / "old"
    old.mkdir()
    with sqlite3.connect(hosted.run.run_dir / ARCHIVE_NAME) as src, sqlite3.connect(old / ARCHIVE_NAME) as db:
        src.backup(db)  # (the live archive is in WAL mode: a file copy could miss the latest pages)
        db.execute("ALTER TABLE telemetry DROP COLUMN beta_deg")
    shown = replay(old)
    assert shown["beta"] is None and "β --" in shown["orbit"]
