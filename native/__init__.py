"""orbit-hil native layer: the C flight core (ADCS, EPS, thermal) through cffi.

This package imports nothing else of the project. The Python API is in
``native.core`` and re-exported here; see docs/native.md.
"""

from native._core import ffi, lib  # noqa: F401  (compiled at install time)
from native.core import (  # noqa: F401
    ADCS_IN_DTYPE,
    ADCS_OUT_DTYPE,
    EPS_IN_DTYPE,
    EPS_OUT_DTYPE,
    FLIGHT_IN_DTYPE,
    FLIGHT_OUT_DTYPE,
    MAX_LOADS,
    MAX_ZONES,
    THERMAL_IN_DTYPE,
    THERMAL_OUT_DTYPE,
    Adcs,
    AdcsFault,
    AdcsMode,
    ConfigError,
    Eps,
    EpsFault,
    FlightCore,
    PowerMode,
    Thermal,
    ThermalFault,
    default_adcs_config,
    default_eps_config,
    default_thermal_config,
    records_equal,
    struct_dtype,
)

ABI_VERSION = lib.ohil_core_abi_version()
