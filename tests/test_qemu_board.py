"""QEMU arm64 boards (docs/boards.md): the image cache's answers when there is no
image, a stale one or a corrupt one (through the real ``hil`` in a subprocess), the
bench file's ``qemu-arm64`` kind, the draw mapped from host CPU use; and, with QEMU
and the image (``-m hardware --bench hil_rig/benches/qemu.toml``), a QEMU process
that dies is a power loss, and a busy board draws more than an idle one."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from hil_rig.benchfile import load_bench, parse_bench
from hil_rig.boards import image as I
from hil_rig.boards.qemu import CPU_BUSY, CPU_IDLE, load_from_cpu
from hil_rig.instruments.errors import ConfigError

QEMU_BENCH = pathlib.Path(__file__).resolve().parent.parent / "hil_rig" / "benches" / "qemu.toml"


def _hil(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hil_rig.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_no_image_names_the_command_that_builds_it(tmp_path) -> None:
    r = _hil("board", "image", "--check", "--cache", str(tmp_path))
    assert r.returncode == 2, r
    assert f"no qemu-arm64 board image in {tmp_path}" in r.stderr
    assert f"`hil board image --cache {tmp_path}`" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_stale_image_is_detected_and_the_rebuild_named(tmp_path) -> None:
    (tmp_path / "qemu-arm64-0123456789abcdef").mkdir()  # built for another agent or recipe
    r = _hil("board", "image", "--check", "--cache", str(tmp_path))
    assert r.returncode == 2, r
    assert "is stale" in r.stderr and "qemu-arm64-0123456789abcdef" in r.stderr
    assert f"`hil board image --cache {tmp_path}`" in r.stderr


def _fake_image(cache: pathlib.Path) -> pathlib.Path:
    d = I.image_dir(cache)
    d.mkdir(parents=True)
    files = {}
    for name in ("vmlinuz", "initrd.img", "disk.img"):
        (d / name).write_bytes(name.encode() * 100)
        files[name] = {"size": (d / name).stat().st_size, "sha256": I._sha256(d / name)}
    (d / "manifest.json").write_text(json.dumps({"kind": I.KIND, "key": I.cache_key(), "files": files}))
    return d


def test_a_corrupt_image_is_detected_and_the_rebuild_named(tmp_path) -> None:
    d = _fake_image(tmp_path)
    assert I.find_image(tmp_path, full=True).path == d  # whole: found
    disk = d / "disk.img"
    raw = bytearray(disk.read_bytes())
    raw[7] ^= 0x10  # one bit flipped on the disk: same size, another hash
    disk.write_bytes(bytes(raw))
    r = _hil("board", "image", "--check", "--cache", str(tmp_path))
    assert r.returncode == 2, r
    assert "is corrupt (disk.img does not match its manifest)" in r.stderr
    assert f"`hil board image --cache {tmp_path} --force`" in r.stderr
    (d / "manifest.json").write_text("{")
    r = _hil("board", "image", "--check", "--cache", str(tmp_path))
    assert r.returncode == 2 and "manifest.json" in r.stderr and "--force" in r.stderr, r


def test_the_cache_key_follows_the_agent_and_the_recipe(tmp_path, monkeypatch) -> None:
    key = I.cache_key()
    assert key == I.cache_key()  # stable
    fake = tmp_path / "firmware_bridge"
    fake.mkdir()
    for p in I._agent_files():
        rel = p.relative_to(I.agent_dir())
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_bytes(p.read_bytes())
    monkeypatch.setattr(I, "agent_dir", lambda: fake)
    assert I.cache_key() == key  # the same files: the same image
    (fake / "agent.py").write_bytes((fake / "agent.py").read_bytes() + b"\n# changed\n")
    assert I.cache_key() != key  # the agent changed: a new image


def test_the_base_key_follows_the_base_recipe(monkeypatch) -> None:
    before = I.base_key()
    monkeypatch.setattr(I, "PACKAGES", (*I.PACKAGES, "less"))
    assert I.base_key() != before
    monkeypatch.undo()
    monkeypatch.setattr(I, "INITRD_MODULES", (*I.INITRD_MODULES, "virtio_net"))
    assert I.base_key() != before


def test_a_build_keeps_the_images_used_lately_in_a_shared_cache(tmp_path) -> None:
    """Three images in use lately (other worktrees' boards booting from a shared cache)
    survive a build into it, not only the two newest; an old unused one is dropped."""
    old = time.time() - 2 * I.KEEP_USED_S
    unused = tmp_path / f"{I.KIND}-{'a' * 16}"
    unused.mkdir()
    os.utime(unused, (old, old))
    used = []
    for name in ("b", "c", "d"):
        d = tmp_path / f"{I.KIND}-{name * 16}"
        d.mkdir()
        used.append(d)
        os.utime(d, (time.time() - 3600, time.time() - 3600))  # found an hour ago
    keep = tmp_path / f"{I.KIND}-{'e' * 16}"
    keep.mkdir()
    assert I.drop_old_images(tmp_path, keep) == [unused]
    assert all(d.is_dir() for d in used) and keep.is_dir() and not unused.exists()
    # a use is a find: it stamps the image's time
    img = _fake_image(tmp_path)
    os.utime(img, (old, old))
    I.find_image(tmp_path)
    assert time.time() - img.stat().st_mtime < 60


def test_a_run_and_bench_up_without_the_image_say_how_to_build_it(tmp_path) -> None:
    env = {"ORBIT_HIL_IMAGE_CACHE": str(tmp_path / "empty")}
    r = _hil("bench", "up", "--bench", str(QEMU_BENCH), env=env)
    assert r.returncode == 2, r
    assert "hil board image" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = _hil("run", "nominal", "--bench", str(QEMU_BENCH), "--speed", "1", "--duration", "10 s",
             "--out", str(tmp_path / "run"), env=env)
    assert r.returncode == 2, r
    assert "hil board image" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_the_bench_file_knows_the_qemu_kind() -> None:
    b = load_bench(QEMU_BENCH)
    assert [x.kind for x in b.boards] == ["qemu-arm64", "qemu-arm64"]
    assert all(x.qemu and x.bench_started and not x.emulated for x in b.boards)
    assert b.virtual and b.has_hardware_boards

    def bench(board: dict) -> None:
        parse_bench({"instruments": [{"name": "psu0", "driver": "riden-rd60xx", "url": "sim://tcp",
                                      "model": "RD6012", "limits": {"voltage_v": [0, 30], "current_a": [0, 10]}}],
                     "boards": [{"name": "arm0", "kind": "qemu-arm64", "supply": "psu0", **board}]}, "b.toml")

    bench({"cpus": 2, "memory_mb": 1024})
    for extra, msg in [({"serial": "/dev/ttyUSB0"}, "key 'serial' is assigned by the virtual bench for qemu-arm64"),
                       ({"emulates": "rpi"}, "key 'emulates' applies to kind = \"emulated\" only"),
                       ({"cpus": 0}, "key 'cpus' must be 1..8, got 0"),
                       ({"memory_mb": 64}, "key 'memory_mb' must be 128..8192, got 64")]:
        with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            bench(extra)
    with pytest.raises(ConfigError, match="key 'cpus' applies to kind = \"qemu-arm64\" only"):
        parse_bench({"boards": [{"name": "j", "kind": "emulated", "emulates": "jetson", "cpus": 2}]}, "b.toml")


def test_the_draw_follows_host_cpu_use_between_idle_and_peak() -> None:
    assert load_from_cpu(0.0) == 0.0 and load_from_cpu(CPU_IDLE) == 0.0
    assert load_from_cpu(CPU_BUSY) == 1.0 and load_from_cpu(2 * CPU_BUSY) == 1.0
    mid = (CPU_IDLE + CPU_BUSY) / 2
    assert load_from_cpu(mid) == pytest.approx(0.5)


# ---- with QEMU and the image ---------------------------------------------------------

def _need_qemu(bench) -> None:  # type: ignore[no-untyped-def]
    """Skip (or, with ORBIT_HIL_REQUIRE_HARDWARE=1, fail) unless --bench has QEMU boards that can run here."""
    if not any(b.qemu for b in bench.spec.boards):
        pytest.skip(f"needs qemu-arm64 boards; bench {bench.label} has none")
    from tests.test_bridge_hardware import _unavailable

    why = _unavailable(bench.spec)
    if why:
        if os.environ.get("ORBIT_HIL_REQUIRE_HARDWARE") == "1":
            pytest.fail(f"bench {bench.label}: {why}", pytrace=False)
        pytest.skip(f"bench {bench.label}: {why}")


@pytest.fixture
def qemu_bench(bench):  # type: ignore[no-untyped-def]
    """A started virtual bench with the QEMU boards of --bench, powered."""
    _need_qemu(bench)
    from hil_rig.instruments import open_instruments
    from hil_rig.virtual_bench import VirtualBench

    vb = VirtualBench(bench.spec, test_mode=True).start()
    supplies, switches = open_instruments(vb.bench)
    try:
        yield vb, next(iter(supplies.values())), next(iter(switches.values()))
    finally:
        for d in (*supplies.values(), *switches.values()):
            d.close()
        vb.close()


def power_up_first_board(vb, supply, switch):  # type: ignore[no-untyped-def]
    """Power the bench's first board (supply at 12 V, its relay closed) and wait for its
    agent's start line on its console; returns its (resolved) spec."""
    b = vb.bench.boards[0]
    supply.set_voltage(12.0)
    supply.set_output(True)
    switch.set_channel(b.channel, True)
    vb.wake()
    deadline = time.monotonic() + 240
    while not vb.board_booted(b.name):
        assert time.monotonic() < deadline, vb.board_log_tail(b.name)
        time.sleep(0.1)
    return b


@pytest.mark.hardware
def test_a_qemu_process_that_dies_is_a_power_loss_and_a_busy_board_draws_more(qemu_bench) -> None:
    import signal

    from firmware_bridge.link import Link

    vb, supply, switch = qemu_bench
    b = power_up_first_board(*qemu_bench)
    slot = vb.boards[b.name]

    def mean_draw(seconds: float) -> float:
        xs = []
        for _ in range(int(seconds / 0.5)):
            time.sleep(0.5)
            xs.append(slot.draw_w())
        return sum(xs) / len(xs)

    with Link(b.serial, b.baud, timeout_s=5.0, retries=5) as link:
        link.ping()
        time.sleep(10.0)  # the boot's tail settles
        idle = mean_draw(6.0)
        jid = link.start_job("matmul", {"n": 32, "steps": 100000, "seed": 1})  # paced: 0.11 s a step
        time.sleep(2.0)
        busy = mean_draw(6.0)
        link.cancel(jid)
    r = slot.rating
    print(f"{b.name}: mean draw idle {idle:.2f} W, busy {busy:.2f} W (rating {r.idle_w}..{r.peak_w} W)")
    # A held pace keeps the vCPU busy at throttle 1 on a host of any speed (docs/boards.md
    # "Draw"; a fast CI host once drew less busy than idle). How much of its share the host
    # gives it depends on the host's load: 3.9 W at load 2 here, 2.6 W at load 14; so the
    # check is "clearly above idle", not "at peak".
    # (1e-9: the mean of samples at idle_w is 1.8999999999999997, not 1.9)
    assert r.idle_w - 1e-9 <= idle and idle + 0.1 * (r.peak_w - r.idle_w) < busy <= r.peak_w + 1e-9
    os.kill(slot.qemu.pid, signal.SIGKILL)  # the board dies by itself, power still on
    loss = vb.power_losses.get(timeout=30)
    assert loss.board == b.name and "power lost" in loss.detail
    assert vb.board_died(b.name) and slot.draw_w() == 0.0


REALTIME = """
[scenario]
name = "qemu_realtime"
description = "5 simulated minutes at speed 1 on QEMU boards, small jobs"
epoch = "2026-03-20T00:00:00Z"
duration = "300 s"
speed = 1
seed = 1

[orbit]
altitude_km = 550
inclination_deg = "sso"
ltan = "10:30"

[spacecraft]
battery_capacity_wh = 80
soc_initial = 0.9

# 7 s per job at the qemu-arm64 rating (0.6 MFLOP/s)
[payload]
workload = "compute"
job = "matmul"
job_steps = 60

[[requirement]]
kind = "soc_floor"
min = 0.3

[[requirement]]
kind = "event_seen"
name = "jobs_complete"
event = "job_completed"

[[requirement]]
kind = "event_never_seen"
name = "no_link_errors"
event = "link_error"
after = "60 s"
"""


@pytest.mark.hardware
def test_a_real_time_scenario_passes_on_the_qemu_bench(bench, rig, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """At speed 1 the run paces itself on absolute deadlines with the boards computing in
    wall time; the requirements pass and the pacing is reported."""
    _need_qemu(bench)
    path = tmp_path / "qemu_realtime.toml"
    path.write_text(REALTIME)
    result = rig.run(str(path), speed=1.0)
    summary = result.summary
    print(f"fsw {summary['fsw']}; lateness {summary['lateness']}")
    assert summary["fsw"]["jobs_completed"] >= 1


# ---- FDIR and a board that boots for a long time (virtual bench) ----------------------

LONG_BOOT_S = 8.0  # rpi0's boot on this bench: longer than the heartbeat ladder's steps (5 s)

FAULT = """
[[fault]]
kind = "{fault}"
board = "rpi0"
at = "20 s"
"""


def _long_boot_bench(tmp_path: pathlib.Path) -> pathlib.Path:
    """The shipped virtual bench, with rpi0 booting for LONG_BOOT_S (a bench file's
    boot_time_s: what the rig waits and what the flight software is told)."""
    from hil_rig.benches import __file__ as benches

    text = (pathlib.Path(benches).parent / "virtual.toml").read_text()
    text = text.replace("boot_time_s = 0.3", f"boot_time_s = {LONG_BOOT_S}")
    assert f"boot_time_s = {LONG_BOOT_S}" in text
    path = tmp_path / "long_boot.toml"
    path.write_text(text)
    return path


def _fdir_of(tmp_path: pathlib.Path, fault: str, duration: str) -> list[tuple[float, str]]:
    """Run the scenario with ``fault`` on rpi0 at 20 s in virtual time on the long-boot
    bench; rpi0's FDIR actions as (s, action)."""
    from hil_rig.archive import load_run
    from hil_rig.run import Run
    from hil_rig.scenario import load_scenario
    from tests.test_run_runner import SCENARIO

    sc_path = tmp_path / f"{fault}.toml"
    sc_path.write_text(SCENARIO.format(name=f"long_boot_{fault}", duration=duration, seed=1, workload="compute",
                                       floor=0.3) + FAULT.format(fault=fault))
    out = tmp_path / fault
    with Run(load_scenario(sc_path), bench=_long_boot_bench(tmp_path), out=out) as run:
        run.run_until(run.duration_ns)
        run.finish()
    ev = load_run(out)["events"]
    acts = []
    for t, s, k, d in zip(ev["t_ns"], ev["source"], ev["kind"], ev["detail"], strict=True):
        if s == "fsw" and k == "fdir_action":
            f = json.loads(d)
            if f["target"] == "rpi0":
                acts.append((t / 1e9, f["action"]))
    return acts


def test_fdir_lets_a_power_cycled_board_boot_and_it_comes_back(tmp_path) -> None:
    """A hung board is power-cycled once; while it boots for its boot time FDIR takes no
    step (before: isolated 5 s into its boot), and it comes back."""
    acts = _fdir_of(tmp_path, "payload_hang", "90 s")
    assert [a for _, a in acts] == ["retry", "reset", "power_cycle"], acts


def test_fdir_power_cycles_a_board_that_never_comes_up_and_isolates_it_after_its_boot_time(tmp_path) -> None:
    """rpi0's link is unplugged for good, so it never answers again: the ladder reaches a
    power cycle; the board gets its whole boot time, then, still silent, is isolated
    (before: isolated 5 s into its boot)."""
    acts = _fdir_of(tmp_path, "link_disconnect", "60 s")
    names = [a for _, a in acts]
    assert names[:4] == ["retry", "reset", "power_cycle", "isolate"], acts
    t_cycle, t_isolate = acts[2][0], acts[3][0]
    assert t_isolate >= t_cycle + LONG_BOOT_S, acts
