"""The board agent on recorded Jetson Orin and Raspberry Pi sysfs trees, and stand-alone."""

from __future__ import annotations

import math
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import numpy
import pytest
import serial

from firmware_bridge.emulator import open_pty
from firmware_bridge.link import Link
from firmware_bridge.sensors import SysfsSensors

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "sysfs"
K = 273.15


def test_jetson_orin_tree() -> None:
    s = SysfsSensors(str(DATA / "jetson_orin"))
    assert s.kind() == "jetson" and s.model() == "NVIDIA Jetson Orin Nano Developer Kit"
    t = s.temperatures_k()
    assert list(t) == ["cpu-thermal", "gpu-thermal", "cv0-thermal", "cv1-thermal", "cv2-thermal",
                       "soc0-thermal", "soc1-thermal", "soc2-thermal", "tj-thermal"]
    assert t["cpu-thermal"] == pytest.approx(51.062 + K)
    assert t["tj-thermal"] == pytest.approx(51.062 + K)
    assert math.isnan(t["cv0-thermal"])  # -256000: sensor absent on Orin Nano
    rails = s.rails()
    assert rails == {"VDD_IN": (5.072, 1.296), "VDD_CPU_GPU_CV": (5.064, 0.328),
                     "VDD_SOC": (5.064, 0.344)}
    assert s.power_w() == pytest.approx(5.072 * 1.296)
    assert s.memory_kib() == (7620020, 6263108)
    assert s.pi_throttled() == 0
    load = s.cpu_load()
    assert 0.0 < load < 0.1  # since-boot average of the recorded /proc/stat


def test_raspberry_pi_tree() -> None:
    s = SysfsSensors(str(DATA / "rpi"))
    assert s.kind() == "rpi" and s.model().startswith("Raspberry Pi 4 Model B")
    assert s.temperatures_k() == {"cpu-thermal": pytest.approx(48.686 + K)}
    assert s.rails() == {} and math.isnan(s.power_w())
    flags = s.pi_throttled()
    assert flags == 0x50000  # under-voltage has occurred (bit 16), throttling has occurred (18)
    assert s.memory_kib() == (3884328, 3390424)


def test_cpu_load_is_a_delta_between_reads(tmp_path) -> None:
    root = tmp_path / "pi"
    shutil.copytree(DATA / "rpi", root)
    s = SysfsSensors(str(root))
    s.cpu_load()
    stat = root / "proc" / "stat"
    lines = stat.read_text().splitlines()
    f = lines[0].split()
    f[1] = str(int(f[1]) + 300)  # +300 jiffies user
    f[4] = str(int(f[4]) + 100)  # +100 jiffies idle
    stat.write_text("\n".join([" ".join(f)] + lines[1:]) + "\n")
    assert s.cpu_load() == pytest.approx(0.75)


def test_missing_files_are_skipped_not_fatal(tmp_path) -> None:
    s = SysfsSensors(str(tmp_path))
    assert s.temperatures_k() == {} and s.rails() == {} and s.kind() == "linux"
    assert math.isnan(s.cpu_load()) and s.memory_kib() == (0, 0)


def _standalone_dir(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A directory with only firmware_bridge/, and one with only numpy + pyserial."""
    app = tmp_path / "board"
    shutil.copytree(ROOT / "firmware_bridge", app / "firmware_bridge",
                    ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    site.mkdir()
    np_dir = pathlib.Path(numpy.__file__).parent
    for p in (np_dir, np_dir.parent / "numpy.libs", pathlib.Path(serial.__file__).parent):
        if p.exists():
            (site / p.name).symlink_to(p)
    return app, site


PRELUDE = """
import sys
sys.path[:0] = [{app!r}, {site!r}]
"""


def test_agent_runs_stand_alone_with_the_project_hidden(tmp_path) -> None:
    app, site = _standalone_dir(tmp_path)
    check = PRELUDE.format(app=str(app), site=str(site)) + textwrap.dedent("""
        import importlib
        for mod in ("agent", "emulator", "link", "proxy", "protocol", "framing", "jobs", "sensors"):
            importlib.import_module("firmware_bridge." + mod)
        for other in ("hil_rig", "flight_sw", "native", "orbit_hil"):
            try:
                importlib.import_module(other)
            except ModuleNotFoundError:
                pass
            else:
                raise SystemExit(other + " is importable: the project is not hidden")
        mods = {m.split(".")[0] for m in sys.modules}
        assert not mods & {"hil_rig", "flight_sw", "native"}, mods
        import firmware_bridge
        print(firmware_bridge.__file__)
    """)
    # -I: no user site, no PYTHONPATH, no cwd; -S: no site-packages at all
    out = subprocess.run([sys.executable, "-I", "-S", "-c", check], capture_output=True,
                         text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(app))

    # and it serves a link from the recorded Jetson tree, jobs in worker processes included
    master, slave = open_pty()
    run = PRELUDE.format(app=str(app), site=str(site)) + textwrap.dedent("""
        import runpy
        sys.argv[0] = "agent"
        runpy.run_module("firmware_bridge.agent", run_name="__main__")
    """)
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", run, "--port", slave, "--sensor-root",
         str(DATA / "jetson_orin"), "--name", "orin0", "--state-dir", str(tmp_path / "state")],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        # the agent holds the pty slave; the link talks to the master through a second pty
        from firmware_bridge.proxy import FaultProxy

        with FaultProxy(master) as proxy, Link(proxy.link_path, timeout_s=1.0, retries=20) as link:
            info = link.board_info()
            assert info["kind"] == "jetson" and info["name"] == "orin0"
            assert info["model"] == "NVIDIA Jetson Orin Nano Developer Kit"
            hk = link.housekeeping()
            assert hk["temps_k"]["tj-thermal"] == pytest.approx(51.062 + K, abs=1e-3)
            assert hk["rails"]["VDD_IN"] == pytest.approx((5.072, 1.296))
            assert hk["power_w"] == pytest.approx(5.072 * 1.296, rel=1e-5)
            assert hk["mem_total_kib"] == 7620020
            jid = link.start_job("matmul", {"n": 8, "steps": 50})
            assert link.wait_job(jid, timeout_s=60)["state"] == "done"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        os.close(master)


def test_agent_cli_reports_a_bad_sensor_root(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-m", "firmware_bridge.agent", "--port", "loop://",
                          "--sensor-root", str(tmp_path / "nope")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "--sensor-root" in out.stderr and "Traceback" not in out.stderr


def test_agent_answers_any_command_exactly_once_and_never_crashes(tmp_path) -> None:
    """Arbitrary (service, subtype, data) TCs: one final report each, no exception."""
    import tty

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from firmware_bridge import protocol as P
    from firmware_bridge.agent import Agent, FdTransport, VirtualClock
    from firmware_bridge.emulator import SimBoard
    from firmware_bridge.framing import Deframer, frame

    m, s = os.openpty()
    tty.setraw(s)
    os.set_blocking(s, False)
    agent = Agent(FdTransport(m), SimBoard("jetson"), clock=VirtualClock(), name="fuzz",
                  state_dir=str(tmp_path))
    host = Deframer(P.decode_packet, P.MAX_PACKET_BYTES)
    seq = iter(range(1, 10**6))
    finals = {P.TM_PING, P.TM_HK_REPORT, P.TM_FUNCTION_REPORT, P.TM_COMPLETE_OK,
              P.TM_ACCEPT_FAIL, P.TM_COMPLETE_FAIL}
    fids = st.sampled_from(sorted(P.FUNCTION_NAMES) + [0, 999])
    data = st.one_of(
        st.binary(max_size=64),
        st.builds(lambda f, d: f.to_bytes(2, "big") + d, fids, st.binary(max_size=40)),
        st.builds(lambda f, d: P.encode_function(f, d), fids,
                  st.dictionaries(st.sampled_from(["job_id", "throttle", "t_ns", "workload",
                                                   "offset", "period_s"]),
                                  st.one_of(st.integers(-5, 10**6), st.floats(), st.text(max_size=5),
                                            st.none()), max_size=3)),
    )

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from([1, 3, 5, 8, 17, 200]), st.integers(0, 255), data)
    def prop(service: int, subtype: int, payload: bytes) -> None:
        n = next(seq) % P.SEQ_MODULO
        tc = P.encode_packet(P.Packet(P.TC, P.APID_AGENT, n, service, subtype, payload,
                                      ack=P.ACK_COMPLETION, source_id=9))
        os.write(s, frame(tc))
        got = []
        for _ in range(200):
            agent.step(0.0)
            try:
                got += host.feed(os.read(s, 65536))
            except BlockingIOError:
                pass
            replies = [p for p in got if p.apid == P.APID_AGENT and p.kind in finals]
            if replies:
                break
        assert len(replies) == 1, (service, subtype, payload, got)
        assert replies[0].data[:4] == tc[:4]  # carries the TC's request ID
        agent.hk_period_s = None  # a fuzzed TC[3,5] must not flood the next example

    try:
        prop()
    finally:
        agent.jobs.shutdown()
        os.close(s)
        os.close(m)


def test_agent_source_parses_as_python_3_10() -> None:
    """Boards run older Pythons (JetPack 6: 3.10): no newer syntax in the package.
    (Syntax only; the runtime is tested on the interpreter running this suite.)"""
    import ast

    for path in sorted((ROOT / "firmware_bridge").glob("*.py")):
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 10))


def test_time_sync_reply_bytes_are_the_json_of_the_report(tmp_path) -> None:
    """The agent assembles the time-sync report from cached or formatted per-job JSON: the
    bytes must be exactly json_bytes of the report dict, as jobs come, change and finish;
    it lists the live jobs and at most REPORT_MAX_ENDED ended ones."""
    from firmware_bridge import protocol as P
    from firmware_bridge.agent import (
        LIVE_STATES,
        REPORT_MAX_ENDED,
        REPORT_MAX_JOBS,
        Agent,
        FdTransport,
        VirtualClock,
    )
    from firmware_bridge.emulator import SimBoard
    from firmware_bridge.jobs import Job

    m, s = os.openpty()
    agent = Agent(FdTransport(m), SimBoard("rpi"), clock=VirtualClock(), state_dir=str(tmp_path))
    try:
        states = ["running", "suspended", "done", "failed", "cancelled", "deadline_missed", "starting"]
        t = 0
        for i in range(1, 3 * REPORT_MAX_JOBS + 40):
            job = Job(i, "matmul", {"n": 8, "steps": 100, "seed": 0}, None, 0,
                      state=states[i % len(states)], step=i % 100, checkpoint_step=i % 7 - 1)
            if job.state == "done":
                job.digest = f"{i:032x}"
            if job.state == "failed":
                job.error = f'worker "{i}" died: \u00e9\u2603 \\ \n'
            agent.jobs.jobs[i] = job
            if i % 5 == 0:  # a job changes under the cache
                old = agent.jobs.jobs[max(1, i - 3)]
                old.step += 1
                old.state = "done"
                old.digest = "d" * 32
            for report in (True, False):
                t += 1_000_000_000
                agent.clock.sync(t)
                prev = t - 7
                assert agent._sync_reply(t, prev, report) == P.json_bytes(
                    agent._sync_result(t, prev, report))
            # the report lists every live job (newest first), then the newest ended ones
            jobs = agent.jobs.jobs.values()
            live = sorted((j.job_id for j in jobs if j.state in LIVE_STATES), reverse=True)
            ended = sorted((j.job_id for j in jobs if j.state not in LIVE_STATES), reverse=True)
            listed = [b["job_id"] for b in agent._sync_result(t, t - 7, True)["jobs"]]
            assert listed == (live + ended[:REPORT_MAX_ENDED])[:REPORT_MAX_JOBS]
            if i % 17 == 0:
                for jid in list(agent.jobs.jobs)[:10]:
                    del agent.jobs.jobs[jid]
    finally:
        agent.jobs.shutdown()
        os.close(s)
        os.close(m)
