"""Protocol and framing: round trips, resynchronization, robustness (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import protocol as P
from firmware_bridge.framing import Deframer, FramingError, cobs_decode, cobs_encode, frame

packets = st.builds(
    lambda ptype, apid, seq, svc, sub, ack, src, mc, t, data: P.Packet(
        ptype, apid, seq, svc, sub, data,
        ack=ack if ptype == P.TC else 0,
        source_id=src,
        msg_counter=mc if ptype == P.TM else 0,
        time_ns=t if ptype == P.TM else 0,
    ),
    st.sampled_from([P.TM, P.TC]),
    st.integers(0, 0x7FE),
    st.integers(0, P.SEQ_MODULO - 1),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 15),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(-(2**63), 2**63 - 1),
    st.binary(max_size=P.MAX_TM_DATA_BYTES),
)


@given(packets)
def test_round_trip_returns_any_valid_packet_unchanged(p: P.Packet) -> None:
    raw = P.encode_packet(p)
    assert len(raw) <= P.MAX_PACKET_BYTES
    assert P.decode_packet(raw) == p
    d = Deframer(P.decode_packet, P.MAX_PACKET_BYTES)
    assert d.feed(frame(raw)) == [p]
    assert d.stats.errors == 0


@given(st.binary(max_size=3000))
def test_cobs_round_trip_and_no_zero(data: bytes) -> None:
    enc = cobs_encode(data)
    assert b"\x00" not in enc
    assert cobs_decode(enc) == data
    assert len(enc) <= len(data) + len(data) // 254 + 1


@given(st.lists(packets, min_size=1, max_size=4), st.binary(max_size=600), st.integers(1, 64))
@settings(max_examples=150)
def test_decoder_resynchronizes_after_arbitrary_garbage(pkts, garbage, chunk) -> None:
    """Whatever precedes it, every packet after the next delimiter is decoded."""
    d = Deframer(P.decode_packet, P.MAX_PACKET_BYTES)
    wire = garbage + b"\x00" + b"".join(frame(P.encode_packet(p)) for p in pkts)
    got = []
    for i in range(0, len(wire), chunk):  # arbitrary split into reads
        got += d.feed(wire[i : i + chunk])
    # the garbage can at most produce (vanishingly unlikely) extra packets before ours
    assert got[len(got) - len(pkts):] == pkts


@given(st.binary(max_size=5000), st.integers(1, 512))
@settings(max_examples=200)
def test_random_byte_stream_never_raises_only_counts(data: bytes, chunk: int) -> None:
    d = Deframer(P.decode_packet, P.MAX_PACKET_BYTES)
    for i in range(0, len(data), chunk):
        for item in d.feed(data[i : i + chunk]):
            assert isinstance(item, P.Packet)  # a valid CRC by chance is still a packet
    s = d.stats
    assert s.bytes_in == len(data)
    assert s.frames + s.errors + s.empty <= data.count(0) + 1 + s.oversize


def test_oversize_run_is_dropped_and_next_frame_decodes() -> None:
    d = Deframer(P.decode_packet, P.MAX_PACKET_BYTES)
    p = P.Packet(P.TC, P.APID_AGENT, 1, 17, 1)
    assert d.feed(b"\x01" * (P.MAX_PACKET_BYTES * 2)) == []
    assert d.feed(b"\x05" * 100 + b"\x00" + frame(P.encode_packet(p))) == [p]
    assert d.stats.oversize >= 1


def test_crc_is_ccsds_crc16_ccitt_false() -> None:
    assert P.crc16_ccitt(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value


def test_every_single_bit_flip_is_detected() -> None:
    raw = P.encode_packet(P.Packet(P.TM, P.APID_HK, 5, 3, 25, bytes(range(64)), time_ns=123))
    for i in range(len(raw) * 8):
        bad = bytearray(raw)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(P.PacketError):
            P.decode_packet(bytes(bad))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("apid", 0x7FF, "APID"), ("seq", P.SEQ_MODULO, "sequence count"), ("service", 256, "service"),
     ("ack", 16, "ack flags"), ("source_id", -1, "source")],
)
def test_encoder_names_the_bad_field(field, value, message) -> None:
    kw = {"ptype": P.TC, "apid": 1, "seq": 0, "service": 17, "subtype": 1, field: value}
    with pytest.raises(P.PacketError, match=message):
        P.encode_packet(P.Packet(**kw))


def test_maximum_packet_size_is_enforced_both_ways() -> None:
    ok = P.Packet(P.TM, 1, 0, 8, 130, b"x" * P.MAX_TM_DATA_BYTES)
    assert len(P.encode_packet(ok)) == P.MAX_PACKET_BYTES
    with pytest.raises(P.PacketError, match="exceeds the maximum"):
        P.encode_packet(P.Packet(P.TM, 1, 0, 8, 130, b"x" * (P.MAX_TM_DATA_BYTES + 1)))
    with pytest.raises(P.PacketError, match="exceeds the maximum"):
        P.decode_packet(b"\x00" * (P.MAX_PACKET_BYTES + 1))


def test_cobs_decode_rejects_truncated_frame() -> None:
    with pytest.raises(FramingError, match="runs past"):
        cobs_decode(b"\x05\x01\x02")


@given(packets.filter(lambda p: p.ptype == P.TM))
def test_encode_tm_gives_the_bytes_of_encode_packet(p: P.Packet) -> None:
    """The agent's reply encoder (no Packet built) against the general one."""
    assert P.encode_tm(p.apid, p.seq, p.service, p.subtype, p.data, p.source_id, p.msg_counter,
                       p.time_ns) == P.encode_packet(p)


@given(packets.filter(lambda p: p.ptype == P.TC))
def test_encode_tc_decodes_to_the_packet_it_was_given(p: P.Packet) -> None:
    """The link's request encoder (no Packet built; encode_packet's TC path)."""
    raw = P.encode_tc(p.apid, p.seq, p.service, p.subtype, p.data, p.ack, p.source_id)
    assert P.decode_packet(raw) == p


@pytest.mark.parametrize("field, value", [
    ("apid", 0x7FF), ("apid", -1), ("seq", P.SEQ_MODULO), ("service", 256), ("subtype", -1),
    ("source_id", 0x10000), ("msg_counter", 0x10000), ("time_ns", 2**63),
    ("data", bytes(P.MAX_TM_DATA_BYTES + 1)),
])
def test_encode_tm_rejects_what_encode_packet_rejects(field: str, value) -> None:
    fields = {"apid": P.APID_AGENT, "seq": 1, "service": 8, "subtype": 130, "data": b"x",
              "source_id": 7, "msg_counter": 2, "time_ns": 3, field: value}
    with pytest.raises(P.PacketError) as general:
        P.encode_packet(P.Packet(P.TM, **fields))
    with pytest.raises(P.PacketError) as lean:
        P.encode_tm(*fields.values())
    assert str(lean.value) == str(general.value)


@given(st.lists(st.floats(width=32), min_size=0, max_size=6),
       st.lists(st.tuples(st.floats(width=32), st.floats(width=32)), max_size=4),
       st.floats(0, 2**32), st.floats(width=32), st.integers(0, 255), st.integers(0, 2**32 - 1))
def test_encode_hk_gives_the_bytes_of_its_head_then_its_values(temps, rails, uptime, x, n, flags):
    """encode_hk packs the whole record with one Struct per layout (cached): the bytes are
    HK_HEAD's, then the temperatures and rails as big-endian f32."""
    import struct

    tn, rn = [f"t{i}" for i in range(len(temps))], [f"r{i}" for i in range(len(rails))]
    hk = {"temps_k": dict(zip(tn, temps, strict=True)), "rails": dict(zip(rn, rails, strict=True)), "uptime_s": uptime,
          "throttle": x, "throttle_cmd": x, "cpu_load": x, "mem_total_kib": 7, "mem_available_kib": 2**33 + 5,
          "power_w": x, "jobs_running": n, "last_job_id": 9, "last_job_state": "done",
          "last_job_progress": x, "flags": flags}
    hk["temps_k"].pop("t0", None)  # a missing zone: NaN
    vals = [hk["temps_k"].get(t, float("nan")) for t in tn] + [v for r in rails for v in r]
    want = P.HK_HEAD.pack(P.layout_id(tn, rn), int(uptime) & 0xFFFFFFFF, x, x, x, 7, 5, x, n, 9,
                          P.JOB_STATE_CODES["done"], x, flags, len(tn), len(rn))
    want += struct.pack(f">{len(vals)}f", *vals)
    assert P.encode_hk(hk, tn, rn) == want


def test_framing_overhead_of_1kib_payload_is_under_3_percent() -> None:
    payload = bytes(range(256)) * 4
    for ptype in (P.TC, P.TM):
        wire = frame(P.encode_packet(P.Packet(ptype, P.APID_JOBS, 1, 8, 130, payload)))
        assert len(wire) / len(payload) <= 1.03


def test_hk_codec_round_trip_with_layout_names() -> None:
    temps, rails = ["cpu-thermal", "tj-thermal"], ["VDD_IN"]
    hk = {"temps_k": {"cpu-thermal": 320.5, "tj-thermal": 321.0}, "rails": {"VDD_IN": (5.0, 1.5)},
          "uptime_s": 12.7, "throttle": 0.5, "throttle_cmd": 1.0, "cpu_load": 0.25, "mem_total_kib": 1000,
          "mem_available_kib": 600, "power_w": 7.5, "jobs_running": 1, "last_job_id": 3,
          "last_job_state": "running", "last_job_progress": 0.5,
          "flags": P.pack_pi_throttled(0x50005) << P.HK_FLAG_PI_SHIFT}
    out = P.decode_hk(P.encode_hk(hk, temps, rails), {P.layout_id(temps, rails): (temps, rails)})
    assert out["temps_k"] == {"cpu-thermal": 320.5, "tj-thermal": 321.0}
    assert out["rails"] == {"VDD_IN": (5.0, 1.5)}
    assert out["pi_throttled"] == 0x50005
    assert out["last_job_state"] == "running" and out["jobs_running"] == 1
    assert (out["throttle"], out["throttle_cmd"]) == (0.5, 1.0)  # effective, commanded


def test_hk_codec_without_layout_names_uses_generic_names() -> None:
    temps, rails = ["a", "b", "c"], ["r0", "r1"]
    hk = {"temps_k": {"a": 300.0, "b": 301.0, "c": 302.0}, "rails": {"r0": (5.0, 1.0), "r1": (3.3, 0.5)},
          "uptime_s": 1, "throttle": 1.0, "throttle_cmd": 1.0, "cpu_load": 0.0, "mem_total_kib": 1, "mem_available_kib": 1,
          "power_w": 5.0, "jobs_running": 0, "last_job_id": 0, "last_job_state": "none",
          "last_job_progress": 0.0, "flags": 0}
    raw = P.encode_hk(hk, temps, rails)
    for layouts in (None, {}, {P.layout_id(["x"], []): (["x"], [])}):
        out = P.decode_hk(raw, layouts)
        assert out["temps_k"] == {"temp0": 300.0, "temp1": 301.0, "temp2": 302.0}
        assert out["rails"] == {"rail0": (5.0, 1.0), "rail1": (3.299999952316284, 0.5)}
    with pytest.raises(P.PacketError, match="length"):
        P.decode_hk(raw[:-1])


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids), max_leaves=20))
def test_json_bytes_is_compact_sorted_json(obj) -> None:
    import json

    assert P.json_bytes(obj) == json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


@given(st.integers(0, 2**63 - 1), st.booleans())
def test_time_sync_tc_data_is_the_generic_function_encoding(t_ns: int, report: bool) -> None:
    from firmware_bridge.link import _time_sync_data

    args = {"t_ns": t_ns, **({"report": True} if report else {})}
    assert _time_sync_data(t_ns, report) == P.encode_function(P.FUNCTIONS["time_sync"][0], args)


def test_the_sizes_docs_protocol_md_states_are_the_code_s() -> None:
    """Issue 18, finding 4: the document said 4,075 bytes of TM data and + 17 on the wire."""
    import pathlib

    from firmware_bridge.framing import max_frame_bytes

    doc = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    assert P.MAX_TM_DATA_BYTES == 4073 and "4073 bytes of TM application data" in doc
    assert P.MAX_TC_DATA_BYTES == 4083 and "4083 of TC" in doc
    assert max_frame_bytes(P.MAX_PACKET_BYTES) == P.MAX_PACKET_BYTES + 18
    assert "4096 + 18 bytes" in doc and "4096 + 17" not in doc
    # the worst case is reached: a zero-free packet of the largest size
    worst = P.encode_tc(P.APID_JOBS, 1, 8, 1, b"\x01" * P.MAX_TC_DATA_BYTES, 0, 0x0101)
    assert b"\x00" not in worst and len(frame(worst)) == P.MAX_PACKET_BYTES + 18
    # a zero-free run of a multiple of 254 bytes costs one more than "one per started run"
    for n in (254, 508, 253, 255, 0):
        assert len(cobs_encode(b"\x07" * n)) == n + n // 254 + 1
    assert len(cobs_encode(b"\x07" * 254 + b"\x00" + b"\x07" * 254)) == 509 + 3


@pytest.mark.parametrize(("temps", "rails", "text", "lid"), [
    (["cpu-thermal", "gpu-thermal", "cv0-thermal", "soc0-thermal", "tj-thermal"],
     ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"],
     "cpu-thermal|gpu-thermal|cv0-thermal|soc0-thermal|tj-thermal#VDD_IN|VDD_CPU_GPU_CV|VDD_SOC",
     0xE998),
    (["cpu-thermal"], [], "cpu-thermal#", 0x21A9),
    ([], [], "#", 0xF5F1),
])
def test_layout_id_is_derived_as_the_document_says(temps, rails, text, lid) -> None:
    import pathlib

    doc = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    assert P.layout_id(temps, rails) == P.crc16_ccitt(text.encode()) == lid
    assert f'crc16("{text}")' in doc and f"0x{lid:04X}" in doc


_BRIEF_INTS = st.one_of(st.integers(-2, 70_000), st.integers(-(2**70), 2**70))
_BRIEF_TEXT = st.one_of(st.none(), st.just(""), st.text(max_size=12),
                        st.text("0123456789abcdef", min_size=32, max_size=32))


def _brief(job_id, state, step, checkpoint_step, digest, error) -> dict:
    out = {"job_id": job_id, "state": state, "step": step, "checkpoint_step": checkpoint_step}
    out.update({k: v for k, v in (("digest", digest), ("error", error)) if v})
    return out


@given(_BRIEF_INTS, st.one_of(st.sampled_from(P.JOB_STATES), st.text(max_size=8)), _BRIEF_INTS,
       _BRIEF_INTS, _BRIEF_TEXT, _BRIEF_TEXT)
def test_encode_job_brief_is_the_plain_json_of_the_brief(job_id, state, step, ckpt, digest, error):
    """The fast encoder (formatted bytes for a plain live job) equals the JSON encoding."""
    assert P.encode_job_brief(job_id, state, step, ckpt, digest, error) == P.json_bytes(
        _brief(job_id, state, step, ckpt, digest, error))


@given(st.integers(0, 2**63 - 1), st.integers(-(2**63), 2**63 - 1),
       st.one_of(st.none(), st.binary(max_size=200)),
       st.lists(st.tuples(_BRIEF_INTS, st.sampled_from(P.JOB_STATES), _BRIEF_INTS, _BRIEF_INTS,
                          _BRIEF_TEXT, _BRIEF_TEXT), max_size=4))
def test_encode_time_sync_reply_is_the_plain_json_of_the_result(t_ns, prev, hk, jobs) -> None:
    import base64

    want = {"t_ns": t_ns, "previous_ns": prev}
    if hk is not None:
        want["hk"] = base64.b64encode(hk).decode()
        want["jobs"] = [_brief(*j) for j in jobs]
    got = P.encode_time_sync_reply(t_ns, prev, hk, [P.encode_job_brief(*j) for j in jobs])
    assert got == P.json_bytes(want)
