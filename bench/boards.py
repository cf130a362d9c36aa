"""Benchmark of the QEMU arm64 payload boards (docs/boards.md, issue 19's figures).

    python bench/boards.py [--json] [--boots N] [--pings N] [--job-steps N] [--cache DIR]

Each of ``--boots`` boots (default 3) powers one QEMU board on (``hil_rig.boards.qemu``,
the cached image, its UART on a pty held as the virtual bench holds it) and measures:

- ``boot_to_agent_s``: power on (QEMU started) to the first ping answered on the UART
  (the board is pinged every 0.2 s from the start; target <= 10 s); ``boot_cpu_s``: the
  host CPU seconds QEMU used until then, the boot's work whatever else the host runs
  (on a quiet host with a core free for QEMU the two are close); and on the way,
  from the board's console as the host saw it appear: ``boot_console_s`` (the first
  console byte: the initrd has loaded virtio_console), ``boot_systemd_s`` (systemd's
  first line), ``boot_agent_unit_s`` (the agent's unit started), ``boot_agent_ready_s``
  (the agent's start line, after its imports); ``guest_kernel_s`` / ``guest_userspace_s``:
  systemd's "Startup finished" split on the guest's clock (kernel and initrd; systemd to
  multi-user.target, which the agent does not wait for). The trimmed image (no journal,
  a quiet kernel) puts only the agent's start line on the console: then only
  ``boot_console_s`` and ``boot_agent_ready_s`` are reported;
- ``idle_draw_w`` / ``idle_host_cpu``: after ``--settle`` s, the QEMU process's host CPU
  use (CPU s per s) over 4 s and the draw mapped from it;
- ``ping_p50_ms`` / ``ping_p99_ms`` over the emulated PL011 (``--pings`` pings);
  ``rfc2217_ping_p50_ms`` / ``rfc2217_ping_p99_ms``: the same port served by a real
  ``ser2net`` as ``rfc2217://127.0.0.1:PORT`` (a lab's network-shared port), after the
  direct pings, with ``rfc2217_p50_vs_direct`` / ``rfc2217_p99_vs_direct`` (the emulated
  baseline board gets the same: ``baseline_rfc2217_*``); left out without ser2net;
- ``job_wall_s`` against ``job_rated_s`` (a matmul job, n = 32, ``--job-steps`` steps,
  at the kind's rated throughput: steps x step FLOP / rated FLOP/s) and
  ``busy_draw_w`` / ``busy_host_cpu`` while it runs.

Every figure is the median over the boots (the per-boot values are in ``boots``).
The baseline, measured in the same run: an emulated board (``firmware_bridge.emulator``,
kind ``rpi``) on a pty, from its process start to its first ping answered
(``baseline_first_ping_s``), its ping latency and the same job's wall time against
its own rated time; ratios: ``boot_vs_baseline``, ``ping_p50_vs_baseline``,
``job_pace_vs_baseline`` (each board's wall over rated time, arm64 over emulated).

Needs qemu-system-aarch64 and the image (``hil board image``); exits 2 naming the
command otherwise. Runs from any install: it uses only the installed packages.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import statistics
import sys
import tempfile
import time
import tty

from _figures import print_figures  # noqa: E402 - bench/, the script's own directory

from firmware_bridge.emulator import EmulatorProcess, open_pty
from firmware_bridge.link import Link, LinkError
from firmware_bridge.ratings import rating
from firmware_bridge.workloads import step_flops

JOB = {"n": 32, "seed": 1}
KIND = "qemu-arm64"
#: console lines (as the host saw them appear) that mark the boot's stages
MILESTONES = {
    "boot_systemd_s": b"systemd[1]:",
    "boot_agent_unit_s": b"Started orbit-hil-agent",
    "boot_agent_ready_s": b"firmware_bridge.agent: serving ",
}
#: systemd's own account, on the guest's clock: "Startup finished in 4.2s (kernel) + 9.1s (userspace)"
STARTUP = re.compile(rb"Startup finished in (?:(\d+)min )?([\d.]+)s \(kernel\) \+ (?:(\d+)min )?([\d.]+)s \(userspace\)")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _draw(cpu_rate: float) -> float:
    from hil_rig.boards.qemu import load_from_cpu

    r = rating(KIND)
    return r.idle_w + (r.peak_w - r.idle_w) * load_from_cpu(cpu_rate)


def _cpu_over(board, seconds: float) -> float:  # type: ignore[no-untyped-def]
    """The QEMU process's host CPU use (CPU s per s per vCPU) over the next ``seconds``."""
    from hil_rig.boards.qemu import process_cpu_s

    c0, t0 = process_cpu_s(board.pid), time.monotonic()
    time.sleep(seconds)
    c1, t1 = process_cpu_s(board.pid), time.monotonic()
    if c0 is None or c1 is None:
        raise RuntimeError(f"the QEMU board died during the measurement:\n{board.console_tail(10)}")
    return (c1 - c0) / (t1 - t0) / board.cpus


def _job(link: Link, steps: int, flops_s: int) -> tuple[float, float]:
    """(wall s, rated s) of a matmul job of ``steps`` steps, to its end."""
    params = {**JOB, "steps": steps}
    rated = steps * step_flops("matmul", params) / flops_s
    t0 = time.monotonic()
    jid = link.start_job("matmul", params)
    st = link.wait_job(jid, timeout_s=20 * rated + 60, poll_s=0.02)
    wall = time.monotonic() - t0
    if st["state"] != "done":
        raise RuntimeError(f"the job ended {st['state']}: {st}")
    return wall, rated


def rfc2217_pings(path: str, a: argparse.Namespace, workdir: pathlib.Path) -> dict:
    """Ping p50 / p99 through a real ser2net serving the board's port as RFC 2217 on
    loopback (``hil_rig.boards.ser2net``; the lab's network-shared port), measured after the
    direct pings on the same port; {} when ser2net is not installed."""
    from hil_rig.boards.ser2net import Ser2net, ser2net_missing

    if ser2net_missing():
        return {}
    with Ser2net(path, workdir) as server, Link(server.url, 115200, timeout_s=5.0, retries=3) as link:
        for _ in range(20):
            link.ping()
        rtts = [link.ping() for _ in range(a.pings)]
    return {"rfc2217_ping_p50_ms": statistics.median(rtts) * 1e3, "rfc2217_ping_p99_ms": pct(rtts, 0.99) * 1e3}


def one_boot(image, workdir: pathlib.Path, a: argparse.Namespace, k: int) -> dict:  # type: ignore[no-untyped-def]
    from hil_rig.boards.qemu import QemuBoard, process_cpu_s

    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)  # the slave stays open: QEMU drops output nobody holds
    board = QemuBoard(f"arm{k}", image, master, workdir, test_mode=True)
    out: dict = {}
    try:
        board.power_on()
        t0 = board.started_at
        seen: dict[str, float] = {}
        deadline = t0 + a.boot_budget
        with Link(path, 115200, timeout_s=0.2, retries=1) as link:
            while True:
                now = time.monotonic()
                try:
                    text = board.console.read_bytes()
                except OSError:
                    text = b""
                if text and "boot_console_s" not in seen:
                    seen["boot_console_s"] = now - t0
                for key, mark in MILESTONES.items():
                    if key not in seen and mark in text:
                        seen[key] = now - t0
                try:
                    link.ping()
                    out["boot_to_agent_s"] = time.monotonic() - t0
                    out["boot_cpu_s"] = process_cpu_s(board.pid) or 0.0
                    break
                except LinkError:
                    pass
                if not board.alive:
                    raise RuntimeError(f"board arm{k} died while booting:\n{board.console_tail(15)}")
                if now > deadline:
                    raise RuntimeError(f"board arm{k} did not answer a ping within {a.boot_budget} s:\n"
                                       f"{board.console_tail(15)}")
            out.update({k2: round(v, 2) for k2, v in seen.items()})
            link.timeout_s, link.retries = 5.0, 3
            link.board_info()
            time.sleep(a.settle)
            cpu = _cpu_over(board, 4.0)
            out["idle_host_cpu"], out["idle_draw_w"] = cpu, _draw(cpu)
            for _ in range(20):
                link.ping()
            rtts = [link.ping() for _ in range(a.pings)]
            out["ping_p50_ms"] = statistics.median(rtts) * 1e3
            out["ping_p99_ms"] = pct(rtts, 0.99) * 1e3
            params = {**JOB, "steps": a.job_steps}
            rated_flops = rating(KIND).rated_flops
            out["job_rated_s"] = a.job_steps * step_flops("matmul", params) / rated_flops
            t_job = time.monotonic()
            jid = link.start_job("matmul", params)
            time.sleep(min(1.0, out["job_rated_s"] / 4))
            cpu = _cpu_over(board, out["job_rated_s"] / 2)
            out["busy_host_cpu"], out["busy_draw_w"] = cpu, _draw(cpu)
            st = link.wait_job(jid, timeout_s=20 * out["job_rated_s"] + 60, poll_s=0.02)
            out["job_wall_s"] = time.monotonic() - t_job
            if st["state"] != "done":
                raise RuntimeError(f"board arm{k}: the job ended {st['state']}: {st}")
        out.update(rfc2217_pings(path, a, workdir))
        m = STARTUP.search(board.console.read_bytes())
        if m:  # the guest's split (kernel and initrd, then systemd to multi-user.target)
            out["guest_kernel_s"] = 60 * int(m[1] or 0) + float(m[2])
            out["guest_userspace_s"] = 60 * int(m[3] or 0) + float(m[4])
    finally:
        board.power_off()
        for fd in (master, slave):
            os.close(fd)
    return out


def baseline(a: argparse.Namespace) -> dict:
    """An emulated board (kind rpi) on a pty: first ping, ping latency, the same job's pace."""
    master, path = open_pty()
    t0 = time.monotonic()
    emu = EmulatorProcess(master, kind="rpi", name="baseline", status=False).start()
    out: dict = {}
    try:
        with Link(path, timeout_s=0.2, retries=1) as link:
            while True:
                try:
                    link.ping()
                    break
                except LinkError:
                    if time.monotonic() - t0 > 60:
                        raise RuntimeError("the emulated baseline board did not answer within 60 s") from None
            out["baseline_first_ping_s"] = time.monotonic() - t0
            link.timeout_s, link.retries = 5.0, 3
            for _ in range(20):
                link.ping()
            rtts = [link.ping() for _ in range(a.pings)]
            out["baseline_ping_p50_ms"] = statistics.median(rtts) * 1e3
            out["baseline_ping_p99_ms"] = pct(rtts, 0.99) * 1e3
            wall, rated = _job(link, a.job_steps, rating("rpi").rated_flops)
            out["baseline_job_wall_s"], out["baseline_job_rated_s"] = wall, rated
        with tempfile.TemporaryDirectory(prefix="orbit-hil-bench-ser2net-") as tmp:
            out.update({f"baseline_{k}": v for k, v in rfc2217_pings(path, a, pathlib.Path(tmp)).items()})
    finally:
        emu.stop()
        os.close(master)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="one JSON object on one line")
    ap.add_argument("--boots", type=int, default=3, help="boots to take the medians of (default 3)")
    ap.add_argument("--pings", type=int, default=300)
    ap.add_argument("--job-steps", type=int, default=40, help="steps of the matmul job (n = 32)")
    ap.add_argument("--settle", type=float, default=5.0, help="s after the first ping before the idle draw")
    ap.add_argument("--boot-budget", type=float, default=240.0, help="s to wait for the first ping")
    ap.add_argument("--cache", type=pathlib.Path, default=None, help="the image cache (hil board image --cache)")
    a = ap.parse_args()
    if a.boots < 1 or a.pings < 10 or a.job_steps < 1:
        print("bench/boards.py: --boots >= 1, --pings >= 10 and --job-steps >= 1", file=sys.stderr)
        return 2

    from hil_rig.boards.image import ImageError, find_image
    from hil_rig.boards.qemu import qemu_missing

    why = qemu_missing()
    try:
        if why:
            raise ImageError(f"qemu-arm64 boards cannot run here: {why}")
        image = find_image(a.cache)
    except ImageError as exc:
        print(f"bench/boards.py: {exc}", file=sys.stderr)
        return 2

    res: dict = {"kind": KIND, "image": image.key, "boots_n": a.boots,
                 "load_avg_1m": round(os.getloadavg()[0], 2)}
    res.update(baseline(a))
    boots = []
    with tempfile.TemporaryDirectory(prefix="orbit-hil-bench-boards-") as tmp:
        for k in range(a.boots):
            boots.append(one_boot(image, pathlib.Path(tmp) / f"arm{k}", a, k))
            if not a.json:
                print(f"boot {k + 1}/{a.boots}: " + ", ".join(f"{x}={v:.3g}" for x, v in boots[-1].items()),
                      file=sys.stderr)
    for key in dict.fromkeys(k for b in boots for k in b):
        res[key] = statistics.median(b[key] for b in boots if key in b)
    res["job_pace"] = res["job_wall_s"] / res["job_rated_s"]
    res["baseline_job_pace"] = res["baseline_job_wall_s"] / res["baseline_job_rated_s"]
    res["boot_vs_baseline"] = res["boot_to_agent_s"] / res["baseline_first_ping_s"]
    res["ping_p50_vs_baseline"] = res["ping_p50_ms"] / res["baseline_ping_p50_ms"]
    res["ping_p99_vs_baseline"] = res["ping_p99_ms"] / res["baseline_ping_p99_ms"]
    res["job_pace_vs_baseline"] = res["job_pace"] / res["baseline_job_pace"]
    for who in ("", "baseline_"):  # the port shared by ser2net against the same port read directly
        if f"{who}rfc2217_ping_p50_ms" in res:
            for q in ("p50", "p99"):
                res[f"{who}rfc2217_{q}_vs_direct"] = res[f"{who}rfc2217_ping_{q}_ms"] / res[f"{who}ping_{q}_ms"]
    res["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    res = {k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}
    res["boots"] = [{k: round(v, 3) for k, v in b.items()} for b in boots]
    print_figures(res, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
