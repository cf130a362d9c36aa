"""A board's serial port shared over the network as labs share it: a real ``ser2net``
(Debian's, its YAML configuration generated in tmp_path, listening on loopback only)
in front of the board's port, and the bench file naming the board's port as an
``rfc2217://`` URL (docs/boards.md, "A port shared with ser2net"). The rig's link
opens it with pyserial's ``serial_for_url``; ping, housekeeping and a job to its
digest go through it. On the default suite the board is an emulated one on a pty;
with ``-m hardware --bench hil_rig/benches/qemu.toml`` a QEMU arm64 board's UART.

Without ser2net the tests skip, naming the package; with
``ORBIT_HIL_REQUIRE_HARDWARE=1`` (CI, which installs it) that is a failure."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from firmware_bridge.emulator import EmulatorProcess, open_pty
from firmware_bridge.link import Link
from firmware_bridge.workloads import Work
from hil_rig.benchfile import load_bench, parse_bench
from hil_rig.boards.ser2net import Ser2net, ser2net_missing
from hil_rig.instruments.errors import ConfigError
from tests.test_qemu_board import power_up_first_board, qemu_bench  # noqa: F401 - a fixture

JOB = ("matmul", {"n": 24, "steps": 8, "seed": 5})

BENCH = """
[bench]
name = "shared-port"

[[boards]]
name = "rpi0"
kind = "rpi"
serial = "{url}"
baud = 115200
"""


def _need_ser2net() -> None:
    why = ser2net_missing()
    if why:
        if os.environ.get("ORBIT_HIL_REQUIRE_HARDWARE") == "1":
            pytest.fail(f"the rfc2217 path needs ser2net: {why}", pytrace=False)
        pytest.skip(f"the rfc2217 path needs ser2net: {why}")


def _host_digest() -> str:
    w = Work(JOB[0], JOB[1], np)
    for _ in range(JOB[1]["steps"]):
        w.run_step()
    return w.digest()


def _exercise(url: str, baud: int) -> tuple[dict, dict, dict]:
    """Ping, board_info, housekeeping and a job to its end through ``url``."""
    with Link(url, baud, timeout_s=5.0, retries=3) as link:
        for _ in range(5):
            link.ping()
        info = link.board_info()
        hk = link.housekeeping()
        jid = link.start_job(*JOB)
        st = link.wait_job(jid, timeout_s=300.0, poll_s=0.1)
        assert link.stats.timeouts == 0, link.stats
    return info, hk, st


def test_an_emulated_board_behind_ser2net_answers_through_its_rfc2217_url(tmp_path) -> None:
    _need_ser2net()
    master, pty = open_pty()
    emu = EmulatorProcess(master, kind="rpi", name="rpi0", status=False).start()
    try:
        with Ser2net(pty, tmp_path) as server:
            cfg = (tmp_path / "ser2net-board.yaml").read_text()
            assert f"tcp(nodelay),127.0.0.1,{server.port}" in cfg and f"serialdev,{pty}," in cfg  # loopback only
            bench_file = tmp_path / "bench.toml"
            bench_file.write_text(BENCH.format(url=server.url))
            board = load_bench(bench_file).board("rpi0")  # the rig's way to a board's port
            assert board.serial.startswith("rfc2217://127.0.0.1:")
            info, hk, st = _exercise(board.serial, board.baud)
    finally:
        emu.stop()
        os.close(master)
    assert info["kind"] == "rpi" and info["name"] == "rpi0", info
    assert 0 < hk["mem_available_kib"] <= hk["mem_total_kib"] and hk["temps_k"], hk
    assert st["state"] == "done" and st["step"] == JOB[1]["steps"], st
    assert st["digest"] == _host_digest()  # every byte of the job's traffic came through


def test_a_board_behind_ser2net_that_stops_is_a_lost_link_not_a_hang(tmp_path) -> None:
    """ser2net going away (the lab's server restarted) is a link error the link reports
    and recovers from when the port is served again, as for an unplugged USB adapter."""
    _need_ser2net()
    from firmware_bridge.link import LinkError

    master, pty = open_pty()
    emu = EmulatorProcess(master, kind="rpi", name="rpi0", status=False).start()
    try:
        server = Ser2net(pty, tmp_path).start()
        try:
            with Link(server.url, 115200, timeout_s=1.0, retries=1) as link:
                link.ping()
                server.stop()
                with pytest.raises(LinkError):
                    for _ in range(20):  # the server's end is seen at the next exchange or two
                        link.ping()
                server.start()  # the same port again
                deadline = time.monotonic() + 60
                while True:
                    try:
                        link.ping()
                        break
                    except LinkError:
                        assert time.monotonic() < deadline, "the link did not come back through ser2net"
                assert link.stats.disconnects >= 1
        finally:
            server.stop()
    finally:
        emu.stop()
        os.close(master)


@pytest.mark.parametrize(("serial", "msg"), [
    ("rfc2217://127.0.0.1", "must be rfc2217://HOST:PORT with a port number 1..65535"),
    ("rfc2217://127.0.0.1:99999", "must be rfc2217://HOST:PORT with a port number 1..65535"),
    ("socket://:7000", "must be socket://HOST:PORT"),
    ("rfc2271://127.0.0.1:7000", "unknown URL scheme 'rfc2271'"),
])
def test_a_bad_serial_url_in_the_bench_file_names_the_key(serial: str, msg: str) -> None:
    with pytest.raises(ConfigError, match=r"bench\.toml.*rpi0.*key 'serial'") as exc:
        parse_bench({"boards": [{"name": "rpi0", "kind": "rpi", "serial": serial}]}, "bench.toml")
    assert msg in str(exc.value)


@pytest.mark.hardware
def test_a_qemu_board_behind_ser2net_answers_through_its_rfc2217_url(qemu_bench, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The same through a QEMU arm64 board's UART (its pty, as the virtual bench holds it)."""
    _need_ser2net()
    b = power_up_first_board(*qemu_bench)
    with Ser2net(b.serial, tmp_path, baud=b.baud, name=b.name) as server:
        (tmp_path / "bench.toml").write_text(BENCH.format(url=server.url).replace("rpi0", b.name))
        spec = load_bench(tmp_path / "bench.toml").board(b.name)
        info, hk, st = _exercise(spec.serial, spec.baud)
    assert info["machine"] == "aarch64" and info["kind"] == "qemu-arm64" and info["name"] == b.name, info
    assert hk["temps_k"] == {} and 0 < hk["mem_available_kib"] <= hk["mem_total_kib"], hk
    assert st["state"] == "done" and st["step"] == JOB[1]["steps"], st
    print(f"{b.name} through {spec.serial}: digest {st['digest']} (host's {_host_digest()})")
