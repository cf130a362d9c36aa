"""The rig: orbit and environment, plant, clock, instruments, faults, scenarios,
runner, CLI (``hil``) and pytest plugin."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("orbit-hil")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
