"""Real payload boards on a real bench (``pytest --bench my_bench.toml``).

Skipped on the virtual bench. The boards must be powered (relay on) and run
``python -m firmware_bridge.agent`` on the UART named in the bench file.
"""

from __future__ import annotations

import math

import pytest

from firmware_bridge.link import Link


@pytest.mark.hardware
def test_real_boards_serve_the_read_only_commands(bench) -> None:
    for name in bench.real_boards:
        spec = bench.spec.board(name)
        with Link(spec.serial, spec.baud, timeout_s=0.5, retries=3) as link:
            rtts = sorted(link.ping() for _ in range(200))
            info = link.board_info()
            assert info["kind"] in ("jetson", "rpi", "linux"), info
            hk = link.housekeeping()
            temps = [t for t in hk["temps_k"].values() if not math.isnan(t)]
            assert temps and all(250.0 < t < 380.0 for t in temps), hk["temps_k"]
            assert 0.0 <= hk["cpu_load"] <= 1.0
            assert link.stats.timeouts == 0
            print(f"{name}: {info['model']}, ping p50 {rtts[100] * 1e3:.2f} ms, "
                  f"p99 {rtts[198] * 1e3:.2f} ms over {spec.serial} at {spec.baud} baud")
