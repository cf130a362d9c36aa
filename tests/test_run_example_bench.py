"""How an engineer writes a bench test with the orbit-hil pytest plugin.

The ``rig`` fixture runs scenarios on the bench given by ``--bench`` (the
virtual bench by default): the same test runs unchanged against real boards.
Run directories of passing tests are removed; a failing test keeps its own and
names it in the failure report.
"""

from __future__ import annotations

import numpy as np

SOC_FLOOR = 0.2


def test_payload_computes_through_the_eclipse_within_its_energy(rig) -> None:  # noqa: ANN001 - pytest fixture
    run = rig.start("eclipse_stress")  # half-charged small battery, long eclipses
    entry_s = run.resolve_time("eclipse_entry") / 1e9
    run.run_until("eclipse_entry + 600 s")

    # the flight software kept computing in the eclipse, on what the battery could spare ...
    t = run.history("t_ns") / 1e9
    work = run.history("work_flop")
    in_eclipse = t >= entry_s
    assert work[in_eclipse][-1] > work[in_eclipse][0], "no work delivered in the eclipse"
    assert not [e for e in run.fsw_events("mode_transition") if e.fields.get("frm") == "COMPUTE"], \
        "the flight software left COMPUTE"

    # ... and the battery never went below its floor
    soc = run.history("soc_true")
    assert np.nanmin(soc) >= SOC_FLOOR, f"battery went down to {np.nanmin(soc):.3f}"
