"""A hand-written fake plant (clock, sensors, actuators, switches) for tests and benchmarks.

Not flight code: the rig implements the same interfaces with its real plant.
"""
from __future__ import annotations

import numpy as np

from flight_sw.interfaces import ActuatorCommand, SensorFrame

_SOC_GRID = np.linspace(0.0, 1.0, 11)


class FakeClock:
    def __init__(self) -> None:
        self.t_ns = 0

    def now_ns(self) -> int:
        return self.t_ns


class FakePlant:
    """Sensors and actuators of a calm spacecraft whose battery state is set by the test."""

    OCV_CELL = [3.00, 3.45, 3.55, 3.62, 3.68, 3.74, 3.82, 3.92, 4.00, 4.08, 4.18]

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.soc = 0.9
        self.rate = (0.001, 0.0, 0.0)
        self.sun_valid = True
        self.solar_power_w = 200.0
        self.load_power_w = 40.0
        self.temps_k = {"battery": 293.0, "obc": 300.0, "propulsion": 290.0, "payload_plate": 300.0}
        self.commands: list[ActuatorCommand] = []
        self._reads = 0

    def read(self) -> SensorFrame:
        v = 8.0 * float(np.interp(self.soc, _SOC_GRID, self.OCV_CELL))
        # a live gyro's noise, 1e-12 rad/s: a reading repeated bit for bit is a frozen gyro
        # to the flight software (FswConfig.gyro_frozen_frames)
        self._reads += 1
        d = 1e-12 if self._reads % 2 else 0.0
        return SensorFrame(
            t_ns=self.clock.t_ns, omega_body_rad_s=(self.rate[0] + d, self.rate[1], self.rate[2]), b_body_t=(2e-5, 1e-5, -3e-5),
            sun_body=(0.0, 0.0, -1.0), sun_valid=self.sun_valid, battery_v=v, battery_i_a=0.0,
            solar_power_w=self.solar_power_w if self.sun_valid else 0.0, load_power_w=self.load_power_w,
            temps_k=dict(self.temps_k),
        )

    def apply(self, cmd: ActuatorCommand) -> None:
        if len(self.commands) > 100:
            del self.commands[:50]
        self.commands.append(cmd)


class FakeSwitches:
    def __init__(self) -> None:
        self.state: dict[int, bool] = {}
        self.log: list[tuple[int, bool]] = []

    def set(self, channel: int, on: bool) -> None:
        self.state[channel] = on
        self.log.append((channel, on))

    def get(self, channel: int) -> bool:
        return self.state.get(channel, True)
