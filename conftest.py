"""Repository-level pytest configuration.

The orbit-hil pytest plugin (``hil_rig.pytest_plugin``) is registered for users
through the ``pytest11`` entry point; this repository's own tests use it too.
When the package is installed (``pip install -e .``) the entry point loads it;
only when it is not (a bare source tree, or plugin autoloading disabled) does
this file load it, so it is never registered twice.
"""

import os
from importlib.metadata import entry_points


def _entry_point_loads_it() -> bool:
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.value == "hil_rig.pytest_plugin" for ep in entry_points(group="pytest11"))


pytest_plugins = [] if _entry_point_loads_it() else ["hil_rig.pytest_plugin"]

# Hypothesis: no per-example wall-clock deadline. The machines that run this
# suite are shared and noisy, and a deadline is a wall-clock bound in disguise
# (a test that fails because the machine was busy says nothing about the code).
from hypothesis import settings  # noqa: E402

settings.register_profile("orbit-hil", deadline=None, print_blob=True)
# CI (``.ci/run`` sets ORBIT_HIL_HYPOTHESIS_PROFILE=ci) draws the same examples
# every time, so a landing is decided by the change and not by the draw; a
# developer's run keeps exploring new examples, and any failure it finds is
# pinned with ``@example`` so that CI checks it from then on.
settings.register_profile("ci", parent=settings.get_profile("orbit-hil"), derandomize=True,
                          database=None)
settings.load_profile(os.environ.get("ORBIT_HIL_HYPOTHESIS_PROFILE", "orbit-hil"))
