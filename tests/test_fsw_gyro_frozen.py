"""The flight software's frozen-gyro check (FswConfig.gyro_frozen_frames), found by the
campaign of issue 23: a dead or stuck gyro repeats its reading bit for bit, and the ADCS
closed its rate loop on it and spun the spacecraft up. Now the ADCS gets no rate (NaN: the
C core flags the gyro and coasts, no wheel torque) while the reading is frozen, and the
change is an fdir_trip / fdir_cleared event of the monitor adcs.gyro_frozen."""

from __future__ import annotations

from flight_sw import FlightSoftware, FswConfig
from flight_sw.interfaces import SensorFrame
from flight_sw.modes import ModeConfig
from flight_sw.testing import FakeClock, FakePlant, FakeSwitches

NS = 1_000_000_000
KEY = bytes(range(32))


class FreezablePlant(FakePlant):
    """The fake plant whose gyro can freeze: ``frozen`` makes it read ``self.rate`` bit
    for bit, as the rig's stuck or dead gyro does."""

    frozen = False

    def read(self) -> SensorFrame:
        f = super().read()
        if self.frozen:
            f.omega_body_rad_s = self.rate
        return f


def _fsw(**kw) -> tuple[FlightSoftware, FakeClock, FreezablePlant]:
    clock = FakeClock()
    plant = FreezablePlant(clock)
    cfg = FswConfig(modes=ModeConfig(rate_persist_s=1.0), eps={"soc_init": 0.9}, **kw)
    return FlightSoftware(cfg, clock, plant, plant, FakeSwitches(), {}, None, KEY), clock, plant


def _advance(fsw: FlightSoftware, clock: FakeClock, seconds: float) -> None:
    clock.t_ns += int(seconds * NS)
    fsw.step_to(clock.t_ns)


def _torques(plant: FakePlant, n: int) -> list[tuple[float, float, float]]:
    return [c.wheel_torque_body_nm for c in plant.commands[-n:]]


def test_a_frozen_gyro_is_flagged_and_the_adcs_coasts_until_it_reads_again() -> None:
    fsw, clock, plant = _fsw()
    _advance(fsw, clock, 5)
    assert fsw.mode in ("SUN_POINT", "COMPUTE"), fsw.mode
    # a live gyro: the rate loop commands wheel torque (the sun is off the pointing axis)
    assert any(any(t) for t in _torques(plant, 10)), _torques(plant, 10)
    assert not fsw.events.named("fdir_trip")
    plant.frozen = True
    _advance(fsw, clock, 0.8)  # 8 frames of the same reading: not yet frozen
    assert not fsw.gyro_frozen
    _advance(fsw, clock, 0.3)
    assert fsw.gyro_frozen
    [trip] = [e for e in fsw.events.named("fdir_trip") if e.fields["monitor"] == "adcs.gyro_frozen"]
    assert trip.fields["persistence"] == 10
    _advance(fsw, clock, 5)
    assert all(t == (0.0, 0.0, 0.0) for t in _torques(plant, 40)), _torques(plant, 40)
    plant.frozen = False  # it reads again
    _advance(fsw, clock, 1)
    assert not fsw.gyro_frozen
    assert [e.fields["target"] for e in fsw.events.named("fdir_cleared")] == ["adcs"]
    assert any(any(t) for t in _torques(plant, 5))


def test_the_check_is_off_with_zero_frames() -> None:
    fsw, clock, plant = _fsw(gyro_frozen_frames=0)
    plant.frozen = True
    _advance(fsw, clock, 10)
    assert not fsw.gyro_frozen and not fsw.events.named("fdir_trip")
    assert any(any(t) for t in _torques(plant, 10))
