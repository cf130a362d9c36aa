"""Live requirement verdicts: each judge's verdict so far reaches the console
through the control endpoint's status while the run goes, not only at its end."""

from __future__ import annotations

import pytest

pytest.importorskip("textual")

from test_console import drive, hosted_run, until  # noqa: E402

from hil_rig.scenario import find_scenario, parse_scenario  # noqa: E402


@pytest.fixture
def live_safe(tmp_path):
    """scenarios/safe_recovery.toml (SAFE at t = 722 s) plus a SOC floor that fails at once."""
    path = find_scenario("safe_recovery")
    text = path.read_text() + '\n[[requirement]]\nkind = "soc_floor"\nname = "soc_high"\nmin = 0.95\n'
    yield from hosted_run(tmp_path, parse_scenario(text, file=str(path)))


def _states(app):
    return {v["name"]: v["state"] for v in app.status.get("verdicts") or []}


def test_verdicts_so_far_on_screen_while_the_run_goes(live_safe):
    hosted, key = live_safe

    async def script(app, pilot):
        await until(pilot, lambda: app.status.get("paused") and app.status.get("verdicts"), "status with verdicts")
        await pilot.press(*"step 700 s", "enter")
        await until(pilot, lambda: app.status.get("t_s", 0) >= 700, "t = 700 s")
        st = _states(app)
        assert st["soc_floor"] == "pass"          # would pass if the run ended now
        assert st["soc_high"] == "fail"           # below 0.95 from the start: failed for good
        assert st["safe_on_sun_loss"] == "pending"  # its window is open, SAFE not reached yet
        assert st["compute_after_commands"] == "pending"  # its window opens after the eclipse
        panel = str(app.query_one("#verdicts").render())
        assert "FAIL soc_high" in panel and ".. " in panel and "ok   soc_floor" in panel
        await pilot.press(*"step 60 s", "enter")
        await until(pilot, lambda: app.status.get("t_s", 0) >= 760, "t = 760 s")
        assert _states(app)["safe_on_sun_loss"] == "pass"  # SAFE at t = 722 s
        await until(pilot, lambda: any("verdict_pass" in e and "safe_on_sun_loss" in e for e in app.event_lines),
                    "the change in the event log")
        assert not app.status.get("ended")  # all of it before the run's end

    drive(hosted, key, script, size=(80, 24))
