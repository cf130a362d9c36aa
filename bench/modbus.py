"""Supply read-back polls per second over Modbus TCP loopback and Modbus RTU on a pty.

A poll is what the power loop does every frame: ``ModbusSupply.measure()``,
one FC03 read of registers 10..18 of a simulated Riden RD6012 (request 8
bytes, answer 23 bytes on RTU). The simulators run in a separate process
(real pymodbus servers), as a real instrument would be separate hardware.

- TCP: the driver against the bare pymodbus client reading the same block
  (baseline), same server, same run.
- RTU at 115200 baud on a pty. A pty moves bytes instantly, so the RTU
  simulator holds each answer back for the time the exchange takes on a real
  line (``pace``): the wire-time limit is ``(8 + 23) bytes x 10 bits / baud
  + 2 x 3.5 characters (11 bits)`` per poll. ``rtu_wire_ratio`` is the
  measured rate over that limit (target >= 0.70). The stock pymodbus serial
  client on the same paced line, and the driver on an unpaced pty, are shown
  for comparison.

Usage: ``python bench/modbus.py [--json] [--seconds S] [--rounds N]``
Figures are medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from functools import partial

from _figures import print_figures  # bench/, the script's own directory

BAUD = 115200
REQ_BYTES, ANS_BYTES = 8, 5 + 2 * 9


def serve() -> None:
    from hil_rig.instruments import load_profile
    from hil_rig.instruments.sim import SimHost, SimSupply

    p = load_profile("riden-rd60xx")
    tcp_host, paced_host, raw_host = SimHost("tcp"), SimHost("rtu-paced"), SimHost("rtu-raw")
    out = {
        "tcp": tcp_host.serve_tcp(SimSupply(p, "RD6012", load=lambda v: 0.5).device()).url(),
        "rtu_paced": paced_host.serve_rtu(SimSupply(p, "RD6012", load=lambda v: 0.5).device(), baud=BAUD, pace=True).url(),
        "rtu_raw": raw_host.serve_rtu(SimSupply(p, "RD6012", load=lambda v: 0.5).device(), baud=BAUD).url(),
    }
    print(json.dumps(out), flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    for h in (tcp_host, paced_host, raw_host):
        h.close()


def _round(fn, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while (dt := time.perf_counter() - t0) < seconds:
        fn()
        n += 1
    return n / dt


def rates(fns: list, seconds: float, rounds: int) -> list[float]:
    """Median polls/s of each function, their rounds interleaved (fair under load)."""
    for fn in fns:
        fn()  # warm up (connect)
    got: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for k, fn in enumerate(fns):
            got[k].append(_round(fn, seconds))
    return [statistics.median(g) for g in got]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seconds", type=float, default=1.0, help="length of one round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve()
        return 0

    from pymodbus.client import ModbusSerialClient, ModbusTcpClient

    from hil_rig.instruments import ModbusConnection, ModbusSupply, load_profile, parse_modbus_url
    from hil_rig.instruments.sim import rtu_gap_s, rtu_wire_time_s

    srv = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        urls = json.loads(srv.stdout.readline())
        prof = load_profile("riden-rd60xx")

        def driver(url: str) -> ModbusSupply:
            return ModbusSupply(ModbusConnection(parse_modbus_url(url), label="supply 'bench'", timeout_s=1.0), prof, name="bench")

        tcp_ep = parse_modbus_url(urls["tcp"])
        bare = ModbusTcpClient(tcp_ep.host, port=tcp_ep.port, timeout=1.0)
        d = driver(urls["tcp"])
        tcp_rate, bare_rate = rates(
            [d.measure, lambda: bare.read_holding_registers(10, count=9, device_id=1)], args.seconds, args.rounds
        )
        bare.close()
        d.close()

        # the paced line takes one master at a time: each round opens and closes
        # its client, and the driver's and the stock client's rounds alternate
        ep = parse_modbus_url(urls["rtu_paced"])
        got: dict[str, list[float]] = {"driver": [], "stock": []}
        for _ in range(args.rounds):
            d = driver(urls["rtu_paced"])
            d.measure()
            got["driver"].append(_round(d.measure, args.seconds))
            d.close()
            stock = ModbusSerialClient(ep.serial, baudrate=BAUD, timeout=1.0)
            stock.read_holding_registers(10, count=9, device_id=1)
            got["stock"].append(_round(partial(stock.read_holding_registers, 10, count=9, device_id=1), args.seconds))
            stock.close()
        rtu_rate, stock_rate = statistics.median(got["driver"]), statistics.median(got["stock"])
        d = driver(urls["rtu_raw"])
        raw_rate, = rates([d.measure], args.seconds, args.rounds)
        d.close()
    finally:
        srv.stdin.close()
        srv.wait(10)

    limit = 1.0 / (rtu_wire_time_s(REQ_BYTES + ANS_BYTES, BAUD) + 2 * rtu_gap_s(BAUD))
    res = {
        "tcp_polls_per_s": round(tcp_rate, 1),
        "tcp_bare_pymodbus_polls_per_s": round(bare_rate, 1),
        "tcp_ratio_to_bare": round(tcp_rate / bare_rate, 3),
        "rtu_polls_per_s": round(rtu_rate, 1),
        "rtu_wire_limit_polls_per_s": round(limit, 1),
        "rtu_wire_ratio": round(rtu_rate / limit, 3),
        "rtu_stock_client_polls_per_s": round(stock_rate, 1),
        "rtu_stock_client_wire_ratio": round(stock_rate / limit, 3),
        "rtu_unpaced_pty_polls_per_s": round(raw_rate, 1),
        "baud": BAUD,
        "rounds": args.rounds,
        "seconds_per_round": args.seconds,
    }
    print_figures(res, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
