"""orbit-hil native layer: the C flight core (ADCS, EPS, thermal) through cffi.

This package imports nothing else of the project.
"""

from native._core import ffi, lib  # noqa: F401  (compiled at install time)

ABI_VERSION = lib.ohil_core_abi_version()
