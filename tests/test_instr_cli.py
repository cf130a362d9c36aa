"""``hil bench up`` in a subprocess: stock clients talk to it, SIGINT stops it cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from pymodbus.client import ModbusSerialClient, ModbusTcpClient

from firmware_bridge.link import Link, LinkError
from hil_rig.instruments.url import parse_modbus_url


def _hil(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hil_rig.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_bench_up_json_stock_clients_then_clean_exit(sig) -> None:
    proc = _hil("bench", "up", "--json", "--power-on", "12")
    try:
        line = proc.stdout.readline()
        info = json.loads(line)  # exactly one JSON object on one line
        psu = parse_modbus_url(info["instruments"]["psu0"]["url"])
        relays = parse_modbus_url(info["instruments"]["relays0"]["url"])

        tcp = ModbusTcpClient(psu.host, port=psu.port, timeout=2)
        assert tcp.connect()
        rr = tcp.read_holding_registers(0, count=19, device_id=psu.unit)
        tcp.close()
        assert not rr.isError()
        assert rr.registers[0] == 60121  # an RD6012
        assert rr.registers[8] == 1200 and rr.registers[18] == 1  # --power-on 12: 12.00 V, output on

        rtu = ModbusSerialClient(relays.serial, baudrate=relays.baud, timeout=2)
        assert rtu.connect()
        rr = rtu.read_coils(0, count=8, device_id=relays.unit)
        rtu.close()
        assert not rr.isError() and rr.bits[:2] == [True, True]  # both boards switched on

        link = Link(info["boards"]["rpi0"]["serial"], timeout_s=0.5, retries=1)
        try:  # the emulated board answers on its pty once it has booted
            deadline = time.monotonic() + 60
            while True:
                try:
                    assert link.ping() >= 0.0
                    break
                except LinkError:
                    if time.monotonic() > deadline:
                        raise
        finally:
            link.close()

        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out == ""  # nothing after the one JSON line
    assert "Traceback" not in err


def test_bench_up_rejects_a_bad_bench_file_naming_the_key(tmp_path) -> None:
    bad = tmp_path / "bench.toml"
    bad.write_text('[[instruments]]\nname = "psu0"\ndriver = "riden-rd60xx"\nurl = "sim://tcp"\nmodel = "RD6012"\n')
    proc = _hil("bench", "up", "--bench", str(bad))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert f"{bad} instruments[0] (psu0): missing key 'limits'" in err
    assert "Traceback" not in err
