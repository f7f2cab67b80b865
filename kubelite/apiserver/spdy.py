"""SPDY/3.1 framing: the frames kubectl's port-forward speaks, as bytes and back, every size bounded.

Owns: the frame types (`Data`, `SynStream`, `SynReply`, `RstStream`, `Settings`, `Ping`, `GoAway`,
`Headers`, `WindowUpdate`), the `Decoder` that cuts a byte stream into frames (message boundaries
of the tunnel mean nothing: a frame may arrive in pieces, several in one piece), and the `Encoder`
that writes them. Header blocks are zlib-compressed with SPDY/3's dictionary, one compression
context per direction for the whole connection, so the order frames are encoded in is the order
they must be sent in.

Bounds: a frame longer than `max_frame` is refused from its 8-byte head, before its payload is
buffered; a header block that decompresses past `max_header_bytes` or holds more than
`max_header_pairs` pairs, bad zlib, a truncated or inconsistent frame, a duplicate header name —
each is a `SpdyError` (the connection ends with a GOAWAY). Unknown control frame types are skipped,
as SPDY/3 asks. Pure: standard library only, no sockets; no flow control (kubectl's spdystream
sends WINDOW_UPDATE frames rarely and enforces none), decision 0022.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Iterable, Union

VERSION = 3

# control frame types
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_CLEAR_SETTINGS = 0x01

# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, UNSUPPORTED_VERSION, CANCEL, INTERNAL_ERROR = 1, 2, 3, 4, 5, 6
FLOW_CONTROL_ERROR, STREAM_IN_USE, STREAM_ALREADY_CLOSED = 7, 8, 9
# GOAWAY status codes
GOAWAY_OK, GOAWAY_PROTOCOL_ERROR, GOAWAY_INTERNAL_ERROR = 0, 1, 2

#: The largest payload of one frame read (SPDY allows 2^24 - 1; kubectl writes at most 32 KiB).
MAX_FRAME_BYTES = 1024 * 1024
#: The largest header block once decompressed (kubectl's are under 100 bytes).
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADER_PAIRS = 64
#: Header blocks inflated from one `feed` (one message) in all: many small frames that each
#: inflate to the per-block bound cannot add up to a bomb.
MAX_HEADER_BYTES_PER_FEED = 256 * 1024
#: A 31-bit stream ID.
MAX_STREAM_ID = 0x7FFFFFFF


def _dictionary() -> bytes:
    """SPDY/3's zlib dictionary (section 2.6.10.1 of the draft): length-prefixed words, then a
    run of status codes, dates and media types."""
    words = ("options head post put delete trace accept accept-charset accept-encoding accept-language "
             "accept-ranges age allow authorization cache-control connection content-base content-encoding "
             "content-language content-length content-location content-md5 content-range content-type date "
             "etag expect expires from host if-match if-modified-since if-none-match if-range "
             "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
             "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
             "user-agent vary via warning www-authenticate method get status").split()
    words += ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
    tail = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
            "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
            "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
            "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
            "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    return b"".join(struct.pack(">I", len(w)) + w.encode() for w in words) + tail.encode()


DICTIONARY = _dictionary()


class SpdyError(Exception):
    """The peer broke the protocol; the connection cannot go on (answer with a GOAWAY)."""


# ---------------------------------------------------------------------- frames

Headers_ = dict[str, str]


@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes = b""
    fin: bool = False


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: Headers_ = field(default_factory=dict)
    associated_id: int = 0
    priority: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers_ = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    entries: tuple[tuple[int, int, int], ...] = ()   # (flags, id, value)
    clear: bool = False


@dataclass(frozen=True)
class Ping:
    id: int


@dataclass(frozen=True)
class GoAway:
    last_stream_id: int
    status: int = GOAWAY_OK


@dataclass(frozen=True)
class Headers:
    stream_id: int
    headers: Headers_ = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


Frame = Union[Data, SynStream, SynReply, RstStream, Settings, Ping, GoAway, Headers, WindowUpdate]


# ---------------------------------------------------------------------- header blocks


def encode_block(headers: Headers_) -> bytes:
    """A header block before compression: names lower-cased, several values of one name joined by
    NUL (as the caller gives them)."""
    out = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        raw_name, raw_value = name.lower().encode(), value.encode()
        out += [struct.pack(">I", len(raw_name)), raw_name, struct.pack(">I", len(raw_value)), raw_value]
    return b"".join(out)


def decode_block(block: bytes, *, max_pairs: int = MAX_HEADER_PAIRS) -> Headers_:
    """A decompressed header block as a dict; SpdyError when it is malformed."""
    if len(block) < 4:
        raise SpdyError("header block too short")
    (count,) = struct.unpack_from(">I", block)
    if count > max_pairs:
        raise SpdyError(f"header block of {count} pairs (at most {max_pairs})")
    at, headers = 4, {}
    for _ in range(count):
        name, at = _string(block, at)
        value, at = _string(block, at)
        if not name:
            raise SpdyError("empty header name")
        try:
            text_name, text_value = name.decode(), value.decode()
        except UnicodeDecodeError:
            raise SpdyError("header not UTF-8") from None
        if text_name in headers:
            raise SpdyError(f"duplicate header {text_name!r}")
        headers[text_name] = text_value
    if at != len(block):
        raise SpdyError("header block longer than its pairs")
    return headers


def _string(block: bytes, at: int) -> tuple[bytes, int]:
    if at + 4 > len(block):
        raise SpdyError("header block truncated")
    (length,) = struct.unpack_from(">I", block, at)
    at += 4
    if at + length > len(block):
        raise SpdyError("header block truncated")
    return block[at:at + length], at + length


# ---------------------------------------------------------------------- decoding


class Decoder:
    """Frames from a byte stream, fed as it comes; one per connection (the header context is the
    connection's)."""

    def __init__(self, *, max_frame: int = MAX_FRAME_BYTES, max_header_bytes: int = MAX_HEADER_BYTES,
                 max_header_pairs: int = MAX_HEADER_PAIRS) -> None:
        self.max_frame, self.max_header_bytes, self.max_header_pairs = max_frame, max_header_bytes, max_header_pairs
        self._buffer = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._inflated = 0   # header bytes inflated by the current `feed`

    def feed(self, data: bytes) -> list[Frame]:
        """The frames completed by `data` (none, one or several); the rest waits for more."""
        self._buffer += data
        self._inflated = 0
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            head = bytes(self._buffer[:8])
            (length,) = struct.unpack(">I", b"\0" + head[5:8])
            if length > self.max_frame:
                raise SpdyError(f"a frame of {length} bytes (at most {self.max_frame})")
            if len(self._buffer) < 8 + length:
                break
            payload = bytes(self._buffer[8:8 + length])
            del self._buffer[:8 + length]
            frame = self._frame(head, payload)
            if frame is not None:
                frames.append(frame)
        return frames

    @property
    def pending(self) -> int:
        """Bytes held for a frame not complete yet (at most a frame head and `max_frame`)."""
        return len(self._buffer)

    def _frame(self, head: bytes, payload: bytes) -> Frame | None:
        first, flags = struct.unpack(">I", head[:4])[0], head[4]
        if not first & 0x80000000:
            stream_id = first & MAX_STREAM_ID
            if stream_id == 0:
                raise SpdyError("a data frame on stream 0")
            return Data(stream_id, payload, bool(flags & FLAG_FIN))
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise SpdyError(f"SPDY version {version} (only {VERSION})")
        fin = bool(flags & FLAG_FIN)
        if kind == SYN_STREAM:
            self._need(payload, 10, "SYN_STREAM")
            stream_id, associated = (struct.unpack_from(">I", payload)[0] & MAX_STREAM_ID,
                                     struct.unpack_from(">I", payload, 4)[0] & MAX_STREAM_ID)
            self._stream(stream_id, "SYN_STREAM")
            return SynStream(stream_id, self._headers(payload[10:]), associated, payload[8] >> 5, fin,
                             bool(flags & FLAG_UNIDIRECTIONAL))
        if kind in (SYN_REPLY, HEADERS):
            self._need(payload, 4, "SYN_REPLY" if kind == SYN_REPLY else "HEADERS")
            stream_id = struct.unpack_from(">I", payload)[0] & MAX_STREAM_ID
            self._stream(stream_id, "SYN_REPLY" if kind == SYN_REPLY else "HEADERS")
            cls = SynReply if kind == SYN_REPLY else Headers
            return cls(stream_id, self._headers(payload[4:]), fin)
        if kind == RST_STREAM:
            self._exact(payload, 8, "RST_STREAM")
            stream_id, status = struct.unpack(">II", payload)
            return RstStream(stream_id & MAX_STREAM_ID, status)
        if kind == SETTINGS:
            self._need(payload, 4, "SETTINGS")
            (count,) = struct.unpack_from(">I", payload)
            if len(payload) != 4 + 8 * count:
                raise SpdyError(f"SETTINGS of {count} entries in {len(payload)} bytes")
            entries = tuple((word >> 24, word & 0xFFFFFF, value)
                            for word, value in struct.iter_unpack(">II", payload[4:]))
            return Settings(entries, bool(flags & FLAG_CLEAR_SETTINGS))
        if kind == PING:
            self._exact(payload, 4, "PING")
            return Ping(struct.unpack(">I", payload)[0])
        if kind == GOAWAY:
            self._exact(payload, 8, "GOAWAY")
            last, status = struct.unpack(">II", payload)
            return GoAway(last & MAX_STREAM_ID, status)
        if kind == WINDOW_UPDATE:
            self._exact(payload, 8, "WINDOW_UPDATE")
            stream_id, delta = struct.unpack(">II", payload)
            return WindowUpdate(stream_id & MAX_STREAM_ID, delta & MAX_STREAM_ID)
        return None   # an unknown control frame: skipped

    def _headers(self, compressed: bytes) -> Headers_:
        try:
            block = self._inflate.decompress(compressed, self.max_header_bytes + 1)
        except zlib.error as exc:
            raise SpdyError(f"header block is not valid zlib: {exc}") from None
        if len(block) > self.max_header_bytes or self._inflate.unconsumed_tail:
            raise SpdyError(f"a header block over {self.max_header_bytes} bytes")
        self._inflated += len(block)
        if self._inflated > MAX_HEADER_BYTES_PER_FEED:
            raise SpdyError(f"header blocks over {MAX_HEADER_BYTES_PER_FEED} bytes in one message")
        return decode_block(block, max_pairs=self.max_header_pairs)

    @staticmethod
    def _need(payload: bytes, size: int, what: str) -> None:
        if len(payload) < size:
            raise SpdyError(f"{what} of {len(payload)} bytes (at least {size})")

    @staticmethod
    def _exact(payload: bytes, size: int, what: str) -> None:
        if len(payload) != size:
            raise SpdyError(f"{what} of {len(payload)} bytes ({size} expected)")

    @staticmethod
    def _stream(stream_id: int, what: str) -> None:
        if stream_id == 0:
            raise SpdyError(f"{what} on stream 0")


# ---------------------------------------------------------------------- encoding


class Encoder:
    """Frames as bytes; one per connection (the header context is the connection's): encode and
    send in the same order."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, zdict=DICTIONARY)

    def encode(self, frame: Frame) -> bytes:
        if isinstance(frame, Data):
            _check_id(frame.stream_id, allow_zero=False)
            return _data_head(frame.stream_id, len(frame.data), frame.fin) + frame.data
        if isinstance(frame, SynStream):
            _check_id(frame.stream_id, allow_zero=False)
            body = struct.pack(">IIBB", frame.stream_id, frame.associated_id, (frame.priority & 7) << 5, 0)
            flags = (FLAG_FIN if frame.fin else 0) | (FLAG_UNIDIRECTIONAL if frame.unidirectional else 0)
            return _control(SYN_STREAM, flags, body + self._compress(frame.headers))
        if isinstance(frame, (SynReply, Headers)):
            _check_id(frame.stream_id, allow_zero=False)
            kind = SYN_REPLY if isinstance(frame, SynReply) else HEADERS
            return _control(kind, FLAG_FIN if frame.fin else 0,
                            struct.pack(">I", frame.stream_id) + self._compress(frame.headers))
        if isinstance(frame, RstStream):
            return _control(RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status))
        if isinstance(frame, Settings):
            body = struct.pack(">I", len(frame.entries)) + b"".join(
                struct.pack(">II", (flags << 24) | ident, value) for flags, ident, value in frame.entries)
            return _control(SETTINGS, FLAG_CLEAR_SETTINGS if frame.clear else 0, body)
        if isinstance(frame, Ping):
            return _control(PING, 0, struct.pack(">I", frame.id))
        if isinstance(frame, GoAway):
            return _control(GOAWAY, 0, struct.pack(">II", frame.last_stream_id, frame.status))
        if isinstance(frame, WindowUpdate):
            return _control(WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id, frame.delta))
        raise TypeError(f"not a SPDY frame: {frame!r}")

    def encode_all(self, frames: Iterable[Frame]) -> bytes:
        return b"".join(self.encode(f) for f in frames)

    def _compress(self, headers: Headers_) -> bytes:
        return self._deflate.compress(encode_block(headers)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)


def _check_id(stream_id: int, *, allow_zero: bool) -> None:
    if not (0 if allow_zero else 1) <= stream_id <= MAX_STREAM_ID:
        raise ValueError(f"stream ID {stream_id} out of range")


def _data_head(stream_id: int, length: int, fin: bool) -> bytes:
    if length > 0xFFFFFF:
        raise ValueError(f"a data frame of {length} bytes (at most 2^24 - 1)")
    return struct.pack(">II", stream_id, ((FLAG_FIN if fin else 0) << 24) | length)


def _control(kind: int, flags: int, body: bytes) -> bytes:
    if len(body) > 0xFFFFFF:
        raise ValueError("a control frame over 2^24 - 1 bytes")
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(body)) + body
