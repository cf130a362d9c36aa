"""Telecommand security: forged MACs, replays, sequence wrap, fuzzing, key files."""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flight_sw.dictionary import COMMANDS, TmCodec, check_args, decode_args, encode_args
from flight_sw.ground import GroundPort, read_packet
from flight_sw.tc import (
    MAC_LEN,
    KeyFileError,
    TcRejected,
    TcSender,
    TcVerifier,
    load_key,
    write_key,
)


@pytest.fixture
def key(tmp_path) -> bytes:
    return write_key(tmp_path / "tc.key")


def test_key_file_rules(tmp_path) -> None:
    p = tmp_path / "k.key"
    k = write_key(p)
    assert load_key(p) == k and len(k) == 32
    os.chmod(p, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key(p)
    short = tmp_path / "short.key"
    short.write_text("abcd")
    os.chmod(short, 0o600)
    with pytest.raises(KeyFileError, match="2 bytes"):
        load_key(short)
    with pytest.raises(KeyFileError, match="missing.key"):
        load_key(tmp_path / "missing.key")


def test_authentic_command_accepted(key: bytes) -> None:
    tx, rx = TcSender(key), TcVerifier(key)
    tc = rx.verify(tx.build("set_throttle_cap", cap=0.5))
    assert tc.name == "set_throttle_cap" and tc.args == {"cap": 0.5}
    tc = rx.verify(tx.build("queue_job", workload="matmul", params="{}", deadline_s=60.0, verify="redundant"))
    assert tc.args["workload"] == "matmul"
    assert rx.accepted == 2


def test_forged_mac_refused(key: bytes) -> None:
    tx, rx = TcSender(key), TcVerifier(key)
    pkt = bytearray(tx.build("noop"))
    pkt[-1] ^= 0x01
    with pytest.raises(TcRejected) as e:
        rx.verify(bytes(pkt))
    assert e.value.reason == "bad_mac"
    # a different key forges nothing either
    other = TcSender(os.urandom(32))
    with pytest.raises(TcRejected, match="bad_mac"):
        rx.verify(other.build("set_mode", mode="SAFE"))
    # a tampered argument with the old MAC
    good = bytearray(tx.build("set_throttle_cap", cap=0.25))
    good[-MAC_LEN - 8 : -MAC_LEN] = struct.pack(">d", 1.0)
    with pytest.raises(TcRejected, match="bad_mac"):
        rx.verify(bytes(good))
    assert rx.rejected["bad_mac"] == 3 and rx.accepted == 0
    # the forgeries did not move the anti-replay window
    assert rx.last_arsn == 0
    assert rx.verify(tx.build("noop")).arsn == 3


def test_replay_refused(key: bytes) -> None:
    tx, rx = TcSender(key), TcVerifier(key)
    p1, p2 = tx.build("noop"), tx.build("noop")
    rx.verify(p1)
    rx.verify(p2)
    for p in (p1, p2):
        with pytest.raises(TcRejected) as e:
            rx.verify(p)
        assert e.value.reason == "replay"
    assert rx.rejected["replay"] == 2


def test_window_and_sequence_wrap(key: bytes) -> None:
    top = (1 << 32) - 1
    tx = TcSender(key, first_arsn=top - 1)
    rx = TcVerifier(key, last_arsn=top - 2, window=16)
    a, b, c, d = (tx.build("noop") for _ in range(4))  # arsn top-1, top, 0, 1
    assert [rx.verify(p).arsn for p in (a, b, c, d)] == [top - 1, top, 0, 1]
    for p in (a, b, c):
        with pytest.raises(TcRejected, match="replay"):
            rx.verify(p)
    # too far ahead is refused, in the window is accepted (a lost packet is fine)
    with pytest.raises(TcRejected, match="outside_window"):
        rx.verify(tx.build("noop", arsn=1 + 17))
    assert rx.verify(tx.build("noop", arsn=1 + 16)).arsn == 17


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzzed_bytes_never_crash(data: bytes) -> None:
    rx = TcVerifier(b"k" * 32)
    try:
        rx.verify(data)
    except TcRejected as e:
        assert e.reason
    assert rx.accepted + sum(rx.rejected.values()) == 1


@given(st.data())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_authentic_packets_never_crash(data) -> None:
    key = b"\x11" * 32
    tx, rx = TcSender(key), TcVerifier(key)
    pkt = bytearray(tx.build("queue_job", workload="mlp", params='{"n": 3}', deadline_s=5.0, verify="none"))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(pkt) - 1))
        pkt[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        pkt = pkt[: data.draw(st.integers(0, len(pkt)))]
    try:
        rx.verify(bytes(pkt))
    except TcRejected:
        pass


@given(st.sampled_from(COMMANDS), st.data())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_args_round_trip(cmd, data) -> None:
    args = {}
    for a in cmd.args:
        if a.type == "str":
            args[a.name] = data.draw(st.text(max_size=40))
        elif a.type == "u8":
            args[a.name] = data.draw(st.integers(int(a.lo or 0), int(a.hi if a.hi is not None else 255)))
        elif a.type == "u32":
            args[a.name] = data.draw(st.integers(0, 2**32 - 1))
        else:
            args[a.name] = data.draw(st.floats(a.lo if a.lo is not None else -1e9, a.hi if a.hi is not None else 1e9))
    assert decode_args(cmd, encode_args(cmd, args)) == check_args(cmd, args)


def test_tm_round_trip() -> None:
    codec = TmCodec(["b0", "b1"])
    pkt = codec.encode_hk(123, {"soc": 0.7, "mode": 3, "board.b1.temp_k": 330.0})
    hk = codec.decode(pkt)
    assert hk["t_ns"] == 123 and hk["soc"] == 0.7 and hk["mode"] == 3 and hk["board.b1.temp_k"] == 330.0
    ev = codec.decode(codec.encode_event(5, "tc_rejected", {"reason": "bad_mac"}))
    assert ev["name"] == "tc_rejected" and ev["severity"] == "security" and ev["fields"] == {"reason": "bad_mac"}


def _wait(pred, timeout=5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_ground_port_over_tcp(key: bytes) -> None:
    port = GroundPort()
    try:
        assert port.address[0] == "127.0.0.1"
        tx = TcSender(key)
        with socket.create_connection(port.address, timeout=5) as s:
            s.sendall(tx.build("noop") + tx.build("set_throttle_cap", cap=0.3))
            assert _wait(lambda: port.uplink.qsize() == 2)
            rx = TcVerifier(key)
            assert [rx.verify(p).name for p in port.drain()] == ["noop", "set_throttle_cap"]
            codec = TmCodec([])
            assert _wait(lambda: port._clients)
            port.send(codec.encode_hk(7, {"soc": 0.5}))
            s.settimeout(5)
            assert codec.decode(read_packet(s))["soc"] == 0.5
        # garbage closes that connection only; the port keeps serving
        with socket.create_connection(port.address, timeout=5) as s:
            s.sendall(b"\xff" * 64)
            assert _wait(lambda: port.framing_errors == 1)
        with socket.create_connection(port.address, timeout=5) as s:
            s.sendall(tx.build("noop"))
            assert _wait(lambda: port.uplink.qsize() == 1)
    finally:
        port.close()
