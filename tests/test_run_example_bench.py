"""How an engineer writes a bench test with the orbit-hil pytest plugin.

The ``rig`` fixture runs scenarios on the bench given by ``--bench`` (the
virtual bench by default): the same test runs unchanged against real boards.
Run directories of passing tests are removed; a failing test keeps its own and
names it in the failure report.
"""

from __future__ import annotations

import numpy as np

SOC_FLOOR = 0.2


def test_payload_is_suspended_through_the_eclipse(rig) -> None:  # noqa: ANN001 - pytest fixture
    run = rig.start("eclipse_stress")  # half-charged small battery, long eclipses
    entry_s = run.resolve_time("eclipse_entry") / 1e9
    run.run_until("eclipse_entry + 60 s")

    # the flight software checkpointed and suspended the payload before the eclipse ...
    suspends = [e for e in run.fsw_events("payload_suspended") if e.fields.get("reason", "").startswith("energy")]
    assert suspends, "the payload was never suspended for energy"
    assert suspends[0].t_ns / 1e9 < entry_s
    tm = run.history("fsw_payload_suspended")
    assert tm[-1] == 1, "the payload is not suspended 60 s into the eclipse"

    # ... and the battery never went below its floor
    soc = run.history("soc_true")
    assert np.nanmin(soc) >= SOC_FLOOR, f"battery went down to {np.nanmin(soc):.3f}"
