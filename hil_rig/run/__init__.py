"""The run: one scenario on one bench, from start to verdicts (docs/running.md,
docs/architecture.md).

Each module has one job:

- ``run``: the thin :class:`Run` (start; ``run_until`` / ``step``; finish) and its
  control API (``inject``, ``command``, ``pause`` / ``resume``, ``set_speed``,
  ``status``);
- ``builder``: assembles every part into :class:`RunParts`, so nothing is born late;
- ``adapters``: the flight software's hardware (clock, sensors, actuators, links);
- ``board_power``: each board's power state machine, the flight software's ``PowerSwitch``;
- ``fault_handlers``: one function per fault kind;
- ``recorder``: archive, event log, judges, live status and progress;
- ``mission``: the orbit, its events and the plant's parameters from a scenario;
- ``commands``: a scenario's scheduled telecommands, at their simulation times;
- ``priority``: the loop's real-time priority;
- ``bench_info``: what a bench file holds, without starting it;
- ``errors``: :class:`RunError` and the :class:`RunResult`.
"""

from hil_rig.run.bench_info import BenchInfo, describe_bench
from hil_rig.run.builder import RunOptions, RunParts
from hil_rig.run.errors import RequirementFailed, RunError, RunResult
from hil_rig.run.mission import build_orbit, orbit_events, plant_params, tle_for_fsw
from hil_rig.run.priority import DEFAULT_RT_PRIORITY, check_rt_priority, loop_priority
from hil_rig.run.progress import Progress
from hil_rig.run.run import Run, default_out_dir, run_scenario

__all__ = [
    "DEFAULT_RT_PRIORITY", "BenchInfo", "Progress", "RequirementFailed", "Run", "RunError", "RunOptions",
    "RunParts", "RunResult", "build_orbit", "check_rt_priority", "default_out_dir", "describe_bench",
    "loop_priority", "orbit_events", "plant_params", "run_scenario", "tle_for_fsw",
]
