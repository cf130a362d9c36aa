"""``hil bench`` as a new user meets it: what a run refuses, dead instruments, the
current limit of --power-on and brown-outs. Every case runs the CLI as a real
subprocess and checks the message and the exit code."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys

import pytest
from pymodbus.client import ModbusTcpClient

from hil_rig.benchfile import load_bench
from hil_rig.instruments import InstrumentUnreachable, open_instruments
from hil_rig.instruments.url import parse_modbus_url

PSU = '''
[[instruments]]
name = "{name}"
driver = "riden-rd60xx"
url = "{url}"
model = "RD6012"
limits = {{ voltage_v = [0.0, 30.0], current_a = [0.0, 10.0] }}
{extra}
'''
RELAYS = '''
[[instruments]]
name = "{name}"
driver = "waveshare-relay"
url = "{url}"
'''
BOARD = '''
[[boards]]
name = "{name}"
kind = "emulated"
emulates = "{kind}"
{wiring}
'''


def _hil(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hil_rig.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@contextlib.contextmanager
def _bench_up(path, *args: str):
    """``hil bench up --bench PATH --power-on 12 ARGS`` running; killed if the test fails."""
    proc = subprocess.Popen([sys.executable, "-m", "hil_rig.cli", "bench", "up", "--bench", str(path),
                             "--power-on", "12", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def _closed_port():
    """A loopback port where nothing listens, for the block: bound and not listening
    (a connection is refused), so no server started meanwhile (the bench's own
    simulated instruments take ephemeral ports) can be given it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def _bench(tmp_path, text: str):
    path = tmp_path / "bench.toml"
    path.write_text(text)
    return path


RUN_REFUSES = {
    "no supply": (
        RELAYS.format(name="relays0", url="sim://tcp")
        + BOARD.format(name="rpi0", kind="rpi", wiring='switch = "relays0"\nchannel = 0'),
        "{path}: bench 'bench': no programmable supply to power the boards",
    ),
    "no board": (
        PSU.format(name="psu0", url="sim://tcp", extra=""),
        "{path}: bench 'bench' has no board to run the payload on",
    ),
    "two relay boards": (
        PSU.format(name="psu0", url="sim://tcp", extra="")
        + RELAYS.format(name="relays0", url="sim://tcp") + RELAYS.format(name="relays1", url="sim://tcp")
        + BOARD.format(name="rpi0", kind="rpi", wiring='supply = "psu0"\nswitch = "relays0"\nchannel = 0')
        + BOARD.format(name="rpi1", kind="rpi", wiring='supply = "psu0"\nswitch = "relays1"\nchannel = 0'),
        "{path}: board 'rpi1' is switched by 'relays1', not by 'relays0': "
        "a run switches its boards through one relay board",
    ),
    "two supplies": (
        PSU.format(name="psu0", url="sim://tcp", extra="") + PSU.format(name="psu1", url="sim://tcp", extra="")
        + BOARD.format(name="rpi0", kind="rpi", wiring='supply = "psu0"')
        + BOARD.format(name="rpi1", kind="rpi", wiring='supply = "psu1"'),
        "{path}: board 'rpi1' is fed by 'psu1', not by 'psu0': a run powers its boards from one supply",
    ),
    "current limit outside the limits": (
        PSU.format(name="psu0", url="sim://tcp", extra="current_limit_a = 12.0")
        + BOARD.format(name="rpi0", kind="rpi", wiring='supply = "psu0"'),
        "{path} instruments[0] (psu0): key 'current_limit_a' 12 is outside limits.current_a (0.0, 10.0)",
    ),
}


@pytest.mark.parametrize("case", list(RUN_REFUSES))
def test_bench_check_refuses_what_a_run_refuses(tmp_path, case: str) -> None:
    text, message = RUN_REFUSES[case]
    path = _bench(tmp_path, text)
    p = _hil("bench", "check", str(path))
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr == f"hil: error: {message.format(path=path)}\n"
    assert p.stdout == ""


def test_bench_check_accepts_the_default_bench() -> None:
    bench = load_bench(None)
    p = _hil("bench", "check", bench.path)
    assert p.returncode == 0, p.stderr
    assert "bench 'virtual' is valid" in p.stdout


@pytest.mark.parametrize("kind", ["supply", "relay board"])
def test_bench_up_with_nothing_listening_names_the_instrument_and_url_exit_2(tmp_path, kind: str) -> None:
    with _closed_port() as port:
        url = f"modbus-tcp://127.0.0.1:{port}?unit=1"
        dead = PSU.format(name="dead0", url=url, extra="") if kind == "supply" else RELAYS.format(name="dead0", url=url)
        path = _bench(tmp_path, PSU.format(name="psu0", url="sim://tcp", extra="") + dead
                      + BOARD.format(name="rpi0", kind="rpi", wiring='supply = "psu0"'))
        p = _hil("bench", "up", "--bench", str(path))
    assert p.returncode == 2, p.stdout + p.stderr
    assert (f"hil: error: {path}: {kind} 'dead0': nothing answers at {url}: could not connect in 3 attempt(s) "
            "(nothing listening on that port)\n") in p.stderr
    assert "Traceback" not in p.stderr
    assert "is up" not in p.stdout  # it never came up


def test_open_instruments_raises_instrument_unreachable(tmp_path) -> None:
    with _closed_port() as port:
        url = f"modbus-tcp://127.0.0.1:{port}?unit=1"
        bench = load_bench(_bench(tmp_path, RELAYS.format(name="relays9", url=url)))
        with pytest.raises(InstrumentUnreachable,
                           match=rf"relay board 'relays9': nothing answers at {url.replace('?', '[?]')}"):
            open_instruments(bench)


def test_power_on_takes_the_current_limit_from_the_bench_file_and_reports_a_brownout(tmp_path) -> None:
    path = _bench(tmp_path, PSU.format(name="psu0", url="sim://tcp", extra="current_limit_a = 3.0")
                  + RELAYS.format(name="relays0", url="sim://tcp")
                  + BOARD.format(name="jetson0", kind="jetson", wiring='supply = "psu0"\nswitch = "relays0"\nchannel = 0'))
    with _bench_up(path, "--json") as proc:
        info = json.loads(proc.stdout.readline())
        psu = parse_modbus_url(info["instruments"]["psu0"]["url"])
        client = ModbusTcpClient(psu.host, port=psu.port, timeout=2)
        assert client.connect()
        try:
            rr = client.read_holding_registers(8, count=11, device_id=psu.unit)
            assert not rr.isError()
            assert rr.registers[0] == 1200 and rr.registers[1] == 300  # 12.00 V, I-SET 3.00 A (not 1.00 A)
            assert rr.registers[18 - 8] == 1
            # the Jetson draws 7 W (0.58 A at 12 V); a limit of 0.30 A holds it in CC below 9 V
            assert not client.write_register(9, 30, device_id=psu.unit).isError()
        finally:
            client.close()
        event = json.loads(proc.stdout.readline())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert event["event"] == "brownout" and event["board"] == "jetson0" and event["supply"] == "psu0"
    assert event["mode"] == "cc" and event["current_limit_a"] == pytest.approx(0.3)
    assert event["voltage_v"] < 9.0 == event["min_voltage_v"]
    assert event["detail"].startswith("board jetson0 ") and "below the board's 9.00 V minimum" in event["detail"]
    assert proc.returncode == 0, err
    assert out == "" and "Traceback" not in err


def test_power_on_text_mode_prints_the_brownout_as_an_event_line(tmp_path) -> None:
    # a limit the board's idle draw is over from the start: it cannot come up, and says so
    path = _bench(tmp_path, PSU.format(name="psu0", url="sim://tcp", extra="current_limit_a = 0.2")
                  + BOARD.format(name="jetson0", kind="jetson", wiring='supply = "psu0"'))
    with _bench_up(path) as proc:
        lines = [proc.stdout.readline() for _ in range(3)]  # the banner, 2 endpoints
        event = proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert "is up" in lines[0]
    assert event.startswith("event: board jetson0 cannot power up: supply psu0 gives ")
    assert "(CC, current limit 0.20 A), below the board's 9.00 V minimum" in event
    assert proc.returncode == 0, err
    assert "Traceback" not in err
