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
