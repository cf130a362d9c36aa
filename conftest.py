"""Repository-level pytest configuration.

The orbit-hil pytest plugin (``hil_rig.pytest_plugin``) is registered for users
through the ``pytest11`` entry point; this repository's own tests use it too.
"""
