"""The board agent on recorded Jetson Orin and Raspberry Pi sysfs trees, and stand-alone."""

from __future__ import annotations

import base64
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


def test_agent_source_parses_as_python_3_10() -> None:
    """Boards run older Pythons (JetPack 6: 3.10): no newer syntax in the package.
    (Syntax only; the runtime is tested on the interpreter running this suite.)"""
    import ast

    for path in sorted((ROOT / "firmware_bridge").glob("*.py")):
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 10))


def _brief(job) -> dict:
    """A job's entry in a time-sync report, as docs/protocol.md gives it."""
    out = {"job_id": job.job_id, "state": job.state, "step": job.step,
           "checkpoint_step": job.checkpoint_step}
    out.update({k: v for k, v in (("digest", job.digest), ("error", job.error)) if v})
    return out


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
    from firmware_bridge.jobs import BoardJob

    m, s = os.openpty()
    agent = Agent(FdTransport(m), SimBoard("rpi"), clock=VirtualClock(), state_dir=str(tmp_path))
    try:
        states = ["running", "suspended", "done", "failed", "cancelled", "deadline_missed", "starting"]
        t = 0
        for i in range(1, 3 * REPORT_MAX_JOBS + 40):
            job = BoardJob(i, "matmul", {"n": 8, "steps": 100, "seed": 0}, None, 0,
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
            # the report lists every live job (newest first), then the newest ended ones
            jobs = agent.jobs.jobs
            live = sorted((j.job_id for j in jobs.values() if j.state in LIVE_STATES), reverse=True)
            ended = sorted((j.job_id for j in jobs.values() if j.state not in LIVE_STATES),
                           reverse=True)
            listed = (live + ended[:REPORT_MAX_ENDED])[:REPORT_MAX_JOBS]
            for report in (True, False):
                t += 1_000_000_000
                agent.clock.sync(t)
                prev = t - 7
                want = {"t_ns": t, "previous_ns": prev}
                if report:
                    want["hk"] = base64.b64encode(agent._hk_bytes()).decode()
                    want["jobs"] = [_brief(jobs[jid]) for jid in listed]
                assert agent._sync_reply(t, prev, report) == P.json_bytes(want)
            if i % 17 == 0:
                for jid in list(agent.jobs.jobs)[:10]:
                    del agent.jobs.jobs[jid]
    finally:
        agent.jobs.shutdown()
        os.close(s)
        os.close(m)


# --- what the agent does with a packet: APIDs, verification reports ------------------


@pytest.fixture
def agent_on_pty(tmp_path):
    """An in-process virtual-clock agent on a real pty; ``talk(frames)`` writes raw frames
    and returns the packets the agent sent until it is quiet."""
    import tty

    from firmware_bridge import protocol as P
    from firmware_bridge.agent import Agent, FdTransport, VirtualClock
    from firmware_bridge.emulator import SimBoard
    from firmware_bridge.framing import Deframer

    m, s = os.openpty()
    tty.setraw(s)
    os.set_blocking(s, False)
    agent = Agent(FdTransport(m), SimBoard("jetson"), clock=VirtualClock(), name="t",
                  state_dir=str(tmp_path))
    host = Deframer(P.decode_packet, P.MAX_PACKET_BYTES)

    def talk(wire: bytes, quiet_steps: int = 5) -> list:
        os.write(s, wire)
        got, quiet = [], 0
        while quiet < quiet_steps:
            agent.step(0.002)
            try:
                new = host.feed(os.read(s, 65536))
            except BlockingIOError:
                new = []
            got += new
            quiet = 0 if new else quiet + 1
        return got

    yield agent, talk
    agent.jobs.shutdown()
    os.close(s)
    os.close(m)


#: The packet of issue 18's first finding: TC[17,1] on the idle APID, correct CRC.
IDLE_PING = bytes.fromhex("1fffc000000628110 14d2bb4ac".replace(" ", ""))


def test_an_idle_packet_is_discarded_and_the_agent_answers_on(agent_on_pty) -> None:
    """CCSDS 133.0-B-2: idle packets are discarded. (The agent used to answer on APID
    0x7FF, which encode_tm refuses: the exception escaped and the agent died.)"""
    from firmware_bridge import protocol as P
    from firmware_bridge.framing import frame

    agent, talk = agent_on_pty
    assert P.decode_packet(IDLE_PING).apid == P.APID_IDLE
    assert talk(frame(IDLE_PING)) == []
    assert agent.stats["idle"] == 1 and agent.stats["commands"] == 0
    ping = P.encode_tc(P.APID_AGENT, 1, 17, 1, b"", P.ACK_COMPLETION, 7)
    (reply,) = talk(frame(ping))
    assert (reply.apid, reply.kind, reply.data, reply.seq) == (P.APID_AGENT, P.TM_PING, ping[:4], 0)


@pytest.mark.parametrize("apid", [0x000, 0x052, 0x053, 0x123, 0x7FE])
def test_a_tc_on_a_foreign_apid_is_refused_on_the_agent_apid(agent_on_pty, apid: int) -> None:
    """A TC on an APID that takes no commands: TM[1,2] code 9 on the agent APID (whatever
    its flags), nothing executed, and no other stream's sequence count moves: the next
    event is still the event stream's count 0."""
    from firmware_bridge import protocol as P
    from firmware_bridge.framing import frame

    agent, talk = agent_on_pty
    for seq, ack in enumerate((0, 0xF)):
        tc = P.encode_tc(apid, seq, 8, 1, P.encode_function(2, {"throttle": 0.5}), ack, 7)
        (reply,) = talk(frame(tc))
        assert (reply.apid, reply.kind, reply.source_id, reply.seq) == (
            P.APID_AGENT, P.TM_ACCEPT_FAIL, 7, seq)
        assert reply.data[:4] == tc[:4]
        code, msg = P.decode_failure(reply.data[4:])
        assert code == P.ERR_UNKNOWN_APID and f"APID 0x{apid:03x}" in msg
    assert agent.throttle == 1.0 and agent.stats["commands"] == 0
    tc = P.encode_tc(P.APID_AGENT, 5, 8, 1, P.encode_function(2, {"throttle": 0.5}), 0, 7)
    event, reply = talk(frame(tc))
    assert (event.apid, event.seq, reply.apid, reply.seq) == (P.APID_EVENTS, 0, P.APID_AGENT, 2)
    assert P.decode_event(event.data)[0] == "throttle_changed"


def test_telemetry_sent_to_a_board_is_ignored(agent_on_pty) -> None:
    from firmware_bridge import protocol as P
    from firmware_bridge.framing import frame

    agent, talk = agent_on_pty
    assert talk(frame(P.encode_tm(P.APID_AGENT, 0, 17, 1, b"", 7))) == []
    assert agent.stats["ignored_tm"] == 1 and agent.stats["commands"] == 0


def test_deeply_nested_json_arguments_are_bad_arguments(agent_on_pty) -> None:
    from firmware_bridge import protocol as P
    from firmware_bridge.framing import frame

    agent, talk = agent_on_pty
    tc = P.encode_tc(P.APID_AGENT, 1, 8, 1, (4).to_bytes(2, "big") + b"[" * 4000, 0, 7)
    (reply,) = talk(frame(tc))
    assert reply.kind == P.TM_ACCEPT_FAIL
    assert P.decode_failure(reply.data[4:])[0] == P.ERR_BAD_ARGUMENTS


#: Reports that end a request's verification (the data reports are completion reports).
FINALS = {(17, 2), (3, 25), (8, 130), (1, 2), (1, 7), (1, 8)}


def test_any_command_gets_its_verification_reports_as_its_flags_ask(agent_on_pty) -> None:
    """Arbitrary (APID, service, subtype, flags, data) TCs, the agent in process.

    For a TC on a command APID, in this order: TM[1,1] iff the acceptance flag is set
    and the TC was accepted, TM[1,3] iff the start flag is set and it was accepted,
    then one final report; none only for TC[3,5]/[3,6] done without the completion
    flag. An acceptance failure (TM[1,2]) is never preceded by TM[1,1] or TM[1,3]. A TC
    on any other APID gets TM[1,2] on the agent APID. Every report carries the TC's
    request ID, and nothing the agent does raises."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from firmware_bridge import protocol as P
    from firmware_bridge.framing import frame

    agent, talk = agent_on_pty
    seq = iter(range(1, 10**6))
    fids = st.sampled_from(sorted(P.FUNCTION_NAMES) + [0, 999])
    data = st.one_of(
        st.binary(max_size=64),
        st.builds(lambda f, d: f.to_bytes(2, "big") + d, fids, st.binary(max_size=40)),
        st.builds(lambda f, d: P.encode_function(f, d), fids,
                  st.dictionaries(st.sampled_from(["job_id", "throttle", "t_ns", "workload",
                                                   "offset", "period_s", "report"]),
                                  st.one_of(st.integers(-5, 10**6), st.floats(), st.text(max_size=5),
                                            st.none(), st.booleans()), max_size=3)),
    )
    apids = st.one_of(st.sampled_from(P.COMMAND_APIDS), st.integers(0, P.APID_IDLE))

    @settings(max_examples=300, deadline=None)
    @given(apids, st.sampled_from([1, 3, 5, 8, 17, 200]), st.integers(0, 255), st.integers(0, 15),
           data)
    def prop(apid: int, service: int, subtype: int, ack: int, payload: bytes) -> None:
        tc = P.encode_tc(min(apid, P.APID_IDLE - 1), next(seq) % P.SEQ_MODULO, service, subtype,
                         payload, ack, 9)
        if apid == P.APID_IDLE:  # encode_tc refuses the idle APID: set it by hand, CRC anew
            body = bytearray(tc[:-2])
            body[0], body[1] = (body[0] & 0xF8) | (apid >> 8), apid & 0xFF
            tc = bytes(body) + P.crc16_ccitt(bytes(body)).to_bytes(2, "big")
        got = [p for p in talk(frame(tc), quiet_steps=2) if p.apid in P.COMMAND_APIDS
               and p.service != P.ST_EVENT]
        assert all(p.data[:4] == tc[:4] and p.source_id == 9 for p in got), got
        kinds = [p.kind for p in got]
        if apid == P.APID_IDLE:
            assert kinds == []
            return
        if apid not in P.COMMAND_APIDS:
            assert kinds == [P.TM_ACCEPT_FAIL] and got[0].apid == P.APID_AGENT
            assert P.decode_failure(got[0].data[4:])[0] == P.ERR_UNKNOWN_APID
            return
        assert all(p.apid == apid for p in got)
        if kinds[-1:] == [P.TM_ACCEPT_FAIL]:
            assert kinds == [P.TM_ACCEPT_FAIL], kinds  # refused: never first accepted
            return
        verification = [k for k, flag in ((P.TM_ACCEPT_OK, P.ACK_ACCEPTANCE),
                                          (P.TM_START_OK, P.ACK_START)) if ack & flag]
        assert kinds[:len(verification)] == verification, (ack, kinds)
        final = kinds[len(verification):]
        if not final:  # done, nothing to report: only a TC[3,5]/[3,6] without the flag
            assert (service, subtype) in (P.TC_HK_ENABLE_PERIODIC, P.TC_HK_DISABLE_PERIODIC)
            assert not ack & P.ACK_COMPLETION
        else:
            assert len(final) == 1 and final[0] in FINALS, kinds
        agent.hk_period_s = None  # a fuzzed TC[3,5] must not flood the next example

    prop()
    assert agent.stats["internal_errors"] == 0


def test_an_unsupported_service_is_refused_without_first_being_accepted(agent_on_pty) -> None:
    """Issue 18, finding 2: TC[200,1] with the acceptance flag got TM[1,1], then TM[1,2]."""
    from firmware_bridge import protocol as P
    from firmware_bridge.framing import frame

    _, talk = agent_on_pty
    tc = P.encode_tc(P.APID_AGENT, 1, 200, 1, b"", P.ACK_ACCEPTANCE | P.ACK_START, 7)
    (reply,) = talk(frame(tc))
    assert reply.kind == P.TM_ACCEPT_FAIL
    assert P.decode_failure(reply.data[4:]) == (P.ERR_UNKNOWN_SERVICE, "unsupported service (200,1)")


def test_each_flag_gets_its_report_in_order_and_a_repeat_replays_them(agent_on_pty) -> None:
    """Issue 18, finding 3: with all four flags (the default of common PUS libraries) a
    ping got TM[1,1] and TM[17,2] but no TM[1,3]. An event the command causes follows
    its acceptance and start reports; TM[1,7] only when the completion flag asks."""
    from firmware_bridge import protocol as P
    from firmware_bridge.framing import frame

    _, talk = agent_on_pty
    ping = P.encode_tc(P.APID_AGENT, 1, 17, 1, b"", 0xF, 7)
    first = talk(frame(ping))
    assert [p.kind for p in first] == [P.TM_ACCEPT_OK, P.TM_START_OK, P.TM_PING]
    assert [p.seq for p in first] == [0, 1, 2] and {p.data for p in first} == {ping[:4]}
    assert talk(frame(ping)) == first  # a repeat: the same reports, not executed again
    throttle = P.encode_tc(P.APID_AGENT, 2, 8, 1, P.encode_function(2, {"throttle": 0.5}), 0xF, 7)
    got = talk(frame(throttle))
    assert [(p.apid, p.kind) for p in got] == [
        (P.APID_AGENT, P.TM_ACCEPT_OK), (P.APID_AGENT, P.TM_START_OK), (P.APID_EVENTS, (5, 1)),
        (P.APID_AGENT, P.TM_FUNCTION_REPORT)]
    for seq, ack, kinds in ((3, P.ACK_COMPLETION, [P.TM_COMPLETE_OK]),
                            (4, P.ACK_ACCEPTANCE, [P.TM_ACCEPT_OK]),
                            (5, 0, [])):
        tc = P.encode_tc(P.APID_AGENT, seq, 3, 6, b"", ack, 7)
        assert [p.kind for p in talk(frame(tc))] == kinds
    bad = P.encode_tc(P.APID_JOBS, 6, 8, 1, P.encode_function(11, {"job_id": 3}), 0xF, 7)
    got = talk(frame(bad))  # accepted, started, failed in execution (no such job)
    assert [(p.apid, p.kind) for p in got] == [
        (P.APID_JOBS, P.TM_ACCEPT_OK), (P.APID_JOBS, P.TM_START_OK), (P.APID_JOBS, P.TM_COMPLETE_FAIL)]
    assert P.decode_failure(got[-1].data[4:])[0] == P.ERR_NO_SUCH_JOB


def test_housekeeping_reports_the_commanded_and_the_effective_throttle(agent_on_pty) -> None:
    """A hot board's governor halves the duty cycle: the record carries the throttle the
    host commanded (``throttle_cmd``) beside the one in effect (``throttle``), so the
    host compares what it sent without knowing the governor's factor (protocol 2.0)."""
    from firmware_bridge import protocol as P
    from firmware_bridge.agent import THERMAL_LIMIT_K
    from firmware_bridge.framing import frame

    agent, talk = agent_on_pty
    agent.board.ambient_k = agent.board.temp_k = THERMAL_LIMIT_K + 20.0
    set_tc = P.encode_tc(P.APID_AGENT, 1, 8, 1, P.encode_function(2, {"throttle": 0.6}), P.ACK_COMPLETION, 7)
    talk(frame(set_tc))
    assert agent.thermal_throttle
    hk_tc = P.encode_tc(P.APID_AGENT, 2, *P.TC_HK_ONE_SHOT, b"", P.ACK_COMPLETION, 7)
    (reply,) = [p for p in talk(frame(hk_tc)) if p.kind == P.TM_HK_REPORT]
    hk = P.decode_hk(reply.data[4:])
    assert hk["throttle_cmd"] == pytest.approx(0.6) and hk["throttle"] == pytest.approx(0.3)
    assert hk["thermal_throttle"]
