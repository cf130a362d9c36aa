"""Each payload board kind's rated figures, in one table: read by the board
emulator, the bench file's defaults, the rig and the flight software's config.

- ``idle_w`` / ``peak_w``: the board's draw idle and at full load, throttle 1 (W);
  in between, ``idle_w + (peak_w - idle_w) * load * throttle``;
- ``min_voltage_v``: below this input voltage the board browns out (V);
- ``boot_time_s``: from power on to its agent answering (s);
- ``rated_flops``: the throughput a job gets at throttle 1 (FLOP per second).

**A job's size is physical.** Its work is ``steps * step_flops(workload, params)``
floating-point operations (``firmware_bridge.workloads``). On a board of kind K at
throttle x it progresses at ``RATINGS[K].rated_flops * x`` FLOP per second: of
simulation time in virtual time, of wall time x speed in real time. So a job
takes the same simulated time on an emulated board, a QEMU board and a real one.
The emulated boards' rated throughputs are deliberately low (the real compute
behind an emulated job stays cheap at 1,000x real time); a bench that runs real
silicon at its real throughput states that in its scenario's job sizes.

Stdlib only: the board agent imports nothing beyond Python, pyserial and numpy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BoardRating:
    kind: str
    model: str
    idle_w: float
    peak_w: float
    min_voltage_v: float
    boot_time_s: float
    rated_flops: int


RATINGS: dict[str, BoardRating] = {
    "jetson": BoardRating("jetson", "NVIDIA Jetson Orin Nano Developer Kit", idle_w=5.0, peak_w=15.0,
                          min_voltage_v=9.0, boot_time_s=2.0, rated_flops=1_000_000),
    "rpi": BoardRating("rpi", "Raspberry Pi 4 Model B Rev 1.4", idle_w=2.7, peak_w=6.4,
                       min_voltage_v=4.75, boot_time_s=1.0, rated_flops=400_000),
    # A QEMU arm64 board (hil_rig.boards): one Cortex-A53 vCPU under TCG on the test PC. Its
    # power figures are a Cortex-A53 board's (a Raspberry Pi 3 B+: 1.9 W idle, 5.1 W busy); its
    # draw is its QEMU process's host CPU use mapped between them. Measured on the developers'
    # 2-core host under load (docs/boards.md, "Ratings"): a matmul job flat out ran 0.8 MFLOP/s,
    # rated at 3/4 of that so that a paced job keeps its pace. Boot (bench/boards.py, power on
    # to the first ping, docs/boards.md "Boot time"): with the board's own initrd, no udev and
    # no journal, the agent's unit started early, 5 CPU s of QEMU and 5-21 s of wall time at
    # load average 4-8 on the 2-core host (26-30 s at load 1.5-3, 53 s median at load 7-13,
    # before); rated 20 s, the slowest boots seen under load, so that the flight software
    # does not judge a board that is still booting.
    "qemu-arm64": BoardRating("qemu-arm64", "linux,dummy-virt", idle_w=1.9, peak_w=5.1,
                              min_voltage_v=4.75, boot_time_s=20.0, rated_flops=600_000),
}


def rating(kind: str) -> BoardRating:
    """The rated figures of a board kind; a kind not in the table is a ValueError naming the known ones."""
    try:
        return RATINGS[kind]
    except KeyError:
        raise ValueError(f"unknown board kind {kind!r}; expected one of {sorted(RATINGS)}") from None
