"""Compute yield: work delivered against the energy- and thermal-limited optimum
of the run's own orbit (docs/yield.md).

- ``model``: the bound's problem and its linear program (HiGHS via scipy);
- ``from_run``: a finished run's problem, from its archive and scenario;
- ``replay``: the bound's schedule open-loop through the real plant, every limit checked.
"""

from hil_rig.yield_bound.model import (
    Battery,
    BoardModel,
    BoardThermal,
    BoundError,
    Schedule,
    ThermalNet,
    YieldProblem,
    solve,
)

__all__ = ["Battery", "BoardModel", "BoardThermal", "BoundError", "Schedule", "ThermalNet", "YieldProblem",
           "solve"]
