"""The SPDY/3.1 framing of port-forward: each frame type both ways, byte for byte where the layout
is fixed, frames cut anywhere, the shared header compression context, and hostile input — every
bound holds and every malformed frame is a SpdyError, never another exception."""

from __future__ import annotations

import hashlib
import struct
import zlib

import pytest

from kubelite.apiserver import spdy


def test_the_dictionary_is_spdy3s():
    # the draft's dictionary: 1423 bytes; the digest pins every byte of it
    assert len(spdy.DICTIONARY) == 1423
    assert hashlib.sha256(spdy.DICTIONARY).hexdigest() == \
        "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"


@pytest.mark.parametrize("frame, wire", [
    (spdy.Data(1, b"hi"), b"\x00\x00\x00\x01\x00\x00\x00\x02hi"),
    (spdy.Data(3, b"", fin=True), b"\x00\x00\x00\x03\x01\x00\x00\x00"),
    (spdy.RstStream(5, spdy.CANCEL), b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x05\x00\x00\x00\x05"),
    (spdy.Ping(7), b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x07"),
    (spdy.GoAway(9, spdy.GOAWAY_PROTOCOL_ERROR),
     b"\x80\x03\x00\x07\x00\x00\x00\x08\x00\x00\x00\x09\x00\x00\x00\x01"),
    (spdy.WindowUpdate(1, 65536), b"\x80\x03\x00\x09\x00\x00\x00\x08\x00\x00\x00\x01\x00\x01\x00\x00"),
    (spdy.Settings(((0, 7, 65536),)),
     b"\x80\x03\x00\x04\x00\x00\x00\x0c\x00\x00\x00\x01\x00\x00\x00\x07\x00\x01\x00\x00"),
])
def test_fixed_layout_frames_byte_for_byte_and_back(frame, wire):
    assert spdy.Encoder().encode(frame) == wire
    assert spdy.Decoder().feed(wire) == [frame]


def test_header_frames_round_trip_through_one_compression_context_and_any_cut():
    frames = [spdy.SynStream(1, {"streamtype": "error", "port": "80", "requestid": "0"}),
              spdy.SynStream(3, {"streamtype": "data", "port": "80", "requestid": "0"}, priority=2),
              spdy.SynReply(1), spdy.Headers(3, {"x": "a\x00b"}, fin=True),
              spdy.SynStream(5, {"streamtype": "error", "port": "8080", "requestid": "1"}, fin=True,
                             unidirectional=True),
              spdy.Data(3, b"x" * 70000, fin=True)]
    wire = spdy.Encoder().encode_all(frames)
    # the second SYN_STREAM's block is smaller: it leans on the first's in the shared zlib window
    assert spdy.Decoder().feed(wire) == frames
    for step in (1, 7, 4096):
        decoder, got = spdy.Decoder(), []
        for at in range(0, len(wire), step):
            got += decoder.feed(wire[at:at + step])
        assert got == frames and decoder.pending == 0


def test_kubectl_style_header_names_are_lowercased():
    wire = spdy.Encoder().encode(spdy.SynStream(1, {"StreamType": "data", "Port": "80"}))
    assert spdy.Decoder().feed(wire)[0].headers == {"streamtype": "data", "port": "80"}


def test_an_unknown_control_frame_is_skipped():
    unknown = struct.pack(">HHI", 0x8003, 0x00FF, 4) + b"abcd"
    assert spdy.Decoder().feed(unknown + spdy.Encoder().encode(spdy.Ping(1))) == [spdy.Ping(1)]


def _control(kind: int, body: bytes, flags: int = 0, version: int = 3) -> bytes:
    return struct.pack(">HHI", 0x8000 | version, kind, (flags << 24) | len(body)) + body


def _compressed(block: bytes) -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, zdict=spdy.DICTIONARY)
    return deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH)


@pytest.mark.parametrize("wire, why", [
    (struct.pack(">II", 1, 2 * 1024 * 1024), "a frame of"),                       # oversized, refused from its head
    (_control(spdy.PING, b"\0\0\0\1", version=2), "version 2"),
    (_control(spdy.PING, b"\0\0\1"), "PING of 3"),
    (_control(spdy.RST_STREAM, b"\0" * 7), "RST_STREAM of 7"),
    (_control(spdy.GOAWAY, b"\0" * 4), "GOAWAY of 4"),
    (_control(spdy.WINDOW_UPDATE, b"\0" * 9), "WINDOW_UPDATE of 9"),
    (_control(spdy.SETTINGS, struct.pack(">I", 1000)), "SETTINGS of 1000"),
    (_control(spdy.SYN_STREAM, b"\0" * 5), "SYN_STREAM of 5"),
    (_control(spdy.SYN_STREAM, b"\0" * 10 + _compressed(struct.pack(">I", 0))), "on stream 0"),
    (_control(spdy.SYN_REPLY, b"\0\0\0\1" + b"not zlib at all"), "not valid zlib"),
    (_control(spdy.SYN_STREAM, b"\0\0\0\1" + b"\0" * 6 + _compressed(b"\0\0\0\1\0\0\0\5ab")), "truncated"),
    (_control(spdy.SYN_STREAM, b"\0\0\0\1" + b"\0" * 6 + _compressed(
        struct.pack(">I", 2) + (struct.pack(">I", 1) + b"a" + struct.pack(">I", 1) + b"b") * 2)), "duplicate"),
    (_control(spdy.SYN_STREAM, b"\0\0\0\1" + b"\0" * 6 + _compressed(struct.pack(">I", 10 ** 6))), "pairs"),
    (_control(spdy.SYN_STREAM, b"\0\0\0\1" + b"\0" * 6 + _compressed(
        struct.pack(">I", 1) + struct.pack(">I", 0) + struct.pack(">I", 0))), "empty header name"),
    (_control(spdy.SYN_STREAM, b"\0\0\0\1" + b"\0" * 6 + _compressed(
        struct.pack(">I", 0) + b"trailing")), "longer than its pairs"),
    (struct.pack(">II", 0, 0), "stream 0"),
])
def test_malformed_frames_are_spdy_errors(wire, why):
    with pytest.raises(spdy.SpdyError, match=why):
        spdy.Decoder().feed(wire)


def test_a_header_block_that_decompresses_huge_is_refused_without_inflating_it():
    bomb = struct.pack(">I", 1) + struct.pack(">I", 1) + b"a" + struct.pack(">I", 50 * 1024 * 1024) + \
        b"\0" * (50 * 1024 * 1024)
    compressed = _compressed(bomb)
    assert len(compressed) < 100 * 1024   # small on the wire
    decoder = spdy.Decoder()
    with pytest.raises(spdy.SpdyError, match="over 16384 bytes"):
        decoder.feed(_control(spdy.SYN_STREAM, b"\0\0\0\1" + b"\0" * 6 + compressed))


def test_bounds_are_the_decoders_own():
    small = spdy.Decoder(max_frame=16)
    with pytest.raises(spdy.SpdyError):
        small.feed(spdy.Encoder().encode(spdy.Data(1, b"x" * 17)))
    # a frame not complete yet is held, up to its head and max_frame
    decoder = spdy.Decoder()
    part = spdy.Encoder().encode(spdy.Data(1, b"y" * 1000))[:500]
    assert decoder.feed(part) == [] and decoder.pending == 500


def test_the_encoder_refuses_what_spdy_cannot_say():
    encoder = spdy.Encoder()
    with pytest.raises(ValueError):
        encoder.encode(spdy.Data(0, b""))
    with pytest.raises(ValueError):
        encoder.encode(spdy.Data(1, b"x" * (1 << 24)))
    with pytest.raises(TypeError):
        encoder.encode("not a frame")   # type: ignore[arg-type]


def test_header_blocks_of_one_message_have_a_budget_in_all(monkeypatch):
    # small blocks that each pass the per-block bound cannot add up past the message's budget
    big = {"x": "y" * 8000}   # ~8 KiB inflated, a few bytes once the shared context has seen it
    frames = [spdy.SynStream(2 * i + 1, big) for i in range(40)]   # ~320 KiB inflated in all
    wire = spdy.Encoder().encode_all(frames)
    assert len(wire) < 64 * 1024   # compressed, a small message
    with pytest.raises(spdy.SpdyError, match="in one message"):
        spdy.Decoder().feed(wire)
    assert len(spdy.Decoder().feed(spdy.Encoder().encode_all(frames[:20]))) == 20   # ~160 KiB: within it
