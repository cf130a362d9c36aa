"""Python flight software: executive, modes, FDIR, payload manager, TM/TC.

Uses ``native`` and ``firmware_bridge``; never imports ``hil_rig``.
"""

from flight_sw.app import CommandError, FlightSoftware, FswConfig  # noqa: E402,F401
from flight_sw.payload import BoardConfig  # noqa: E402,F401
