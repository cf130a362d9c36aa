"""Safe state on every exit path, proven with a real rig process and real signals.

The simulated instruments run in this test process (real pymodbus servers);
the rig is a separate Python process that drives them through a bench file
with ordinary modbus-tcp:// and modbus-rtu:// URLs. After the rig is gone, the
state is read back from the simulators themselves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from hil_rig.instruments import load_profile
from hil_rig.instruments.sim import SimHost, SimRelayBoard, SimSupply

RIG = textwrap.dedent(
    """
    import sys, time
    from hil_rig.benchfile import load_bench
    from hil_rig.instruments import open_instruments
    from hil_rig.power_loop import PowerLoop
    from hil_rig.safe_state import SafeState

    bench = load_bench(sys.argv[1])
    mode = sys.argv[2]
    supplies, switches = open_instruments(bench)
    with SafeState(bench, supplies, switches) as guard:
        loop = PowerLoop(supplies["psu0"], switches["relays0"], bench, current_limit_a=2.0)
        loop.set_board_power("b0", True)
        switches["relays0"].set_channel(5, True)
        n = 0
        while True:
            sample = loop.update(12.0 + 0.1 * (n % 5), bus_up=True)
            if n == 0:
                print("RUNNING", sample.voltage_v, flush=True)
            n += 1
            if mode == "raise" and n == 20:
                raise RuntimeError("scenario step failed")
            time.sleep(0.005)
    """
)


@pytest.fixture()
def wired_bench(tmp_path):
    supply = SimSupply(load_profile("riden-rd60xx"), "RD6012", load=lambda v: 0.4 if v > 0 else 0.0)
    relays = SimRelayBoard()
    psu_host, relay_host = SimHost("safe-psu"), SimHost("safe-relays")
    try:
        psu_url = psu_host.serve_tcp(supply.device()).url()
        relay_url = relay_host.serve_rtu(relays.device(), baud=9600).url()
        path = tmp_path / "bench.toml"
        path.write_text(
            textwrap.dedent(
                f"""
                [bench]
                name = "safe-state-test"
                [[instruments]]
                name = "psu0"
                driver = "riden-rd60xx"
                url = "{psu_url}"
                model = "RD6012"
                timeout_s = 0.3
                retries = 1
                limits = {{ voltage_v = [0.0, 20.0], current_a = [0.0, 5.0] }}
                safe_state = {{ output = false, voltage_v = 5.0 }}
                [[instruments]]
                name = "relays0"
                driver = "waveshare-relay"
                url = "{relay_url}"
                safe_state = {{ on = [7] }}
                [[boards]]
                name = "b0"
                kind = "rpi"
                serial = "/dev/null"
                supply = "psu0"
                switch = "relays0"
                channel = 2
                """
            )
        )
        yield path, supply, relays, psu_host
    finally:
        psu_host.close()
        relay_host.close()


def _start_rig(path, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", RIG, str(path), mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    assert line.startswith("RUNNING"), (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


SAFE_RELAYS = [False] * 7 + [True]


def _assert_running(supply: SimSupply, relays: SimRelayBoard) -> None:
    st = supply.state()
    assert st.output_on and st.voltage_v >= 12.0 and st.current_a == pytest.approx(0.4)
    assert relays.states()[2] and relays.states()[5]


def _assert_safe(supply: SimSupply, relays: SimRelayBoard) -> None:
    st = supply.state()
    assert not st.output_on and st.voltage_v == 0.0 and st.current_a == 0.0
    assert st.voltage_set_v == pytest.approx(5.0)  # the bench file's safe setpoint
    assert relays.states() == SAFE_RELAYS


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_rig_killed_by_signal_mid_run_leaves_instruments_safe(wired_bench, sig) -> None:
    path, supply, relays, _ = wired_bench
    proc = _start_rig(path, "loop")
    try:
        _assert_running(supply, relays)
        os.kill(proc.pid, sig)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # SIGTERM -> Terminated (exit 143); an uncaught KeyboardInterrupt re-raises SIGINT (-2)
    assert proc.returncode == (128 + signal.SIGTERM if sig == signal.SIGTERM else -signal.SIGINT), err
    _assert_safe(supply, relays)


def test_rig_that_raises_leaves_instruments_safe(wired_bench) -> None:
    path, supply, relays, _ = wired_bench
    proc = _start_rig(path, "raise")
    try:
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1 and "RuntimeError: scenario step failed" in err
    _assert_safe(supply, relays)


def test_dead_supply_bounded_retry_clear_error_and_the_rest_made_safe(wired_bench) -> None:
    path, supply, relays, psu_host = wired_bench
    proc = _start_rig(path, "loop")
    try:
        _assert_running(supply, relays)
        psu_host.close()  # the supply dies mid-run
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert "InstrumentTimeout: supply 'psu0'" in err and "no valid answer after 2 attempt(s) of 0.3 s" in err
    assert "supply 'psu0': could not reach its safe state" in err  # reported, not hidden
    assert relays.states() == SAFE_RELAYS  # the relays still went safe: the boards are unpowered
