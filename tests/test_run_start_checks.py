"""What a run checks of its bench before it starts, and what it says when a
board cannot take a fault: real emulated boards on ptys and simulated
instruments on real Modbus servers, hosted by the test so that a bench file can
point a run at them (as at a lab bench), and `hil run` as a real subprocess."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCENARIO = """
[scenario]
name = "checks"
epoch = "2026-03-20T00:00:00Z"
duration = "{duration}"
seed = 2

[orbit]
altitude_km = 550
inclination_deg = "sso"
ltan = "10:30"

[payload]
workload = "compute"
{extra}
"""


@pytest.fixture
def hosted(tmp_path: pathlib.Path):  # type: ignore[no-untyped-def]
    """Emulated boards NOT in test mode, and the simulated instruments, hosted here."""
    from hil_rig.benchfile import load_bench
    from hil_rig.virtual_bench import VirtualBench

    vb = VirtualBench(load_bench(None), clock="virtual", test_mode=False).start()
    yield vb
    vb.close()


def _bench(tmp: pathlib.Path, vb, kinds: dict[str, str] | None = None,  # type: ignore[no-untyped-def]
           serial: dict[str, str] | None = None) -> pathlib.Path:
    from hosted_bench import write_bench_file

    return write_bench_file(vb, tmp / "bench.toml", kinds=kinds, serial=serial)


def _hil_run(tmp: pathlib.Path, bench: pathlib.Path, extra: str = "", duration: str = "2 min"):  # type: ignore[no-untyped-def]
    sc = tmp / "checks.toml"
    sc.write_text(SCENARIO.format(duration=duration, extra=extra))
    out = tmp / "run"
    env = dict(os.environ)
    p = subprocess.run([sys.executable, "-m", "hil_rig.cli", "run", str(sc), "--bench", str(bench), "--out", str(out),
                        "--speed", "50"], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    return p, out


def _no_traceback(p: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in p.stderr, p.stderr


def test_a_board_of_another_kind_than_the_bench_says_stops_the_run(tmp_path, hosted) -> None:
    bench = _bench(tmp_path, hosted, kinds={"jetson0": "rpi"})
    p, out = _hil_run(tmp_path, bench)
    assert p.returncode == 2, p.stderr
    assert "board jetson0: the bench file says kind 'rpi', but the board's agent reports 'jetson'" in p.stderr
    _no_traceback(p)
    summary = json.loads((out / "summary.json").read_text())  # a failure at start-up still writes it
    assert summary["started"] is False and "reports 'jetson'" in summary["error"]


def test_a_serial_port_that_does_not_exist_is_named(tmp_path, hosted) -> None:
    bench = _bench(tmp_path, hosted, serial={"rpi0": "/dev/ttyNOPE7"})
    p, _ = _hil_run(tmp_path, bench)
    assert p.returncode == 2, p.stderr
    assert "board rpi0: serial = '/dev/ttyNOPE7'" in p.stderr and "cannot open" in p.stderr
    _no_traceback(p)


def test_a_board_that_never_answers_is_named(tmp_path, hosted) -> None:
    """A pty nobody serves: the port opens, the board never answers."""
    import os as _os

    master, slave = _os.openpty()
    try:
        bench = _bench(tmp_path, hosted, serial={"rpi0": _os.ttyname(slave)})
        p, _ = _hil_run(tmp_path, bench)
    finally:
        _os.close(master)
        _os.close(slave)
    assert p.returncode == 2, p.stderr
    assert "board rpi0" in p.stderr and "no answer to board_info" in p.stderr
    _no_traceback(p)


def test_agent_faults_need_a_board_in_test_mode(tmp_path, hosted) -> None:
    """An agent not in test mode refuses inject_hang: that is said before the run
    starts, naming the board, instead of a verdict that blames FDIR."""
    bench = _bench(tmp_path, hosted)
    p, _ = _hil_run(tmp_path, bench, extra='[[fault]]\nkind = "payload_hang"\nboard = "rpi0"\nat = "30 s"\n')
    assert p.returncode == 2, p.stderr
    assert "board rpi0: the scenario injects faults through the board's agent, which is not in test mode" in p.stderr
    _no_traceback(p)


def test_a_refused_injection_by_hand_ends_the_run_naming_the_board(tmp_path, hosted) -> None:
    from hil_rig.run import Run
    from hil_rig.scenario import load_scenario

    bench = _bench(tmp_path, hosted)
    sc = tmp_path / "checks.toml"
    sc.write_text(SCENARIO.format(duration="1 min", extra="").replace('seed = 2', 'seed = 2\nspeed = 50.0'))
    run = Run(load_scenario(sc), bench=str(bench), out=tmp_path / "run")
    with run:
        run.step("5 s")
        run.inject({"kind": "payload_hang", "board": "rpi0"})
        res = run.finish()
    assert res.aborted == "error"
    assert "fault payload_hang: board rpi0 refused the injection" in res.summary["error"]
    assert "not in test mode" in res.summary["error"] or "NOT_TEST_MODE" in res.summary["error"].upper()


def test_a_bench_that_bench_check_refuses_is_refused_by_the_run_with_the_same_words(tmp_path) -> None:
    """No programmable supply: `hil bench check` and `hil run` say the same, exit 2."""
    from hil_rig.benchfile import DEFAULT_BENCH

    text = DEFAULT_BENCH.read_text()
    a = text.index('[[instruments]]\nname = "psu0"')
    b = text.index("[[instruments]]", a + 1)
    bench = tmp_path / "nosupply.toml"
    bench.write_text((text[:a] + text[b:]).replace('supply = "psu0"\n', ""))
    check = subprocess.run([sys.executable, "-m", "hil_rig.cli", "bench", "check", str(bench)],
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
    p, _ = _hil_run(tmp_path, bench)
    assert check.returncode == 2 and p.returncode == 2, (check.stderr, p.stderr)
    words = "no programmable supply to power the boards"
    assert words in check.stderr and words in p.stderr
    _no_traceback(p)


def test_an_instrument_with_nothing_listening_is_named(tmp_path, hosted) -> None:
    """The bench's supply at a loopback port nobody listens on: exit 2 naming it and its URL."""
    import socket

    with socket.socket() as s:  # a port that was free a moment ago, and is closed now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bench = _bench(tmp_path, hosted)
    text = bench.read_text()
    psu = next(i for i in hosted.bench.instruments if i.kind == "supply")
    dead = f"modbus-tcp://127.0.0.1:{port}?unit=1"
    bench.write_text(text.replace(f'url = "{psu.url}"', f'url = "{dead}"'))
    p, _ = _hil_run(tmp_path, bench)
    assert p.returncode == 2, p.stderr
    assert psu.name in p.stderr and f"127.0.0.1:{port}" in p.stderr, p.stderr
    _no_traceback(p)
