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
settings.load_profile("orbit-hil")
