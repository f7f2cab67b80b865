"""Answers read from a registry, bounded: a streamed body decoded (gzip, deflate) at most a limit's
worth, never whole; URLs and network errors as messages show them.

Owns: `read_body` and its `Decoder`; the bounds of the small answers (`ANSWER_MAX`, `ERROR_MAX`).
"""

from __future__ import annotations

import zlib

import httpx

from kubelite.runtime.images import format_size
from kubelite.runtime.registry.config import PullError

#: The answers to `GET /v2/` and from a token service: a `{}` and a token of a few KiB in practice.
ANSWER_MAX = 1 << 20
#: An error answer's body is read this far for its message (beyond it, the message is left out).
ERROR_MAX = 64 << 10
#: Raw bytes decoded at a time: a deflate stream expands at most ~1032:1, and decoding stops at the limit.
_RAW_CHUNK = 64 << 10


def read_body(response: httpx.Response, limit: int, what: str, *, limit_text: str | None = None) -> bytes:
    """The body of a streamed `response`, decoded, if it is at most `limit` bytes once decoded; closes it.

    PullError ("<what> is larger than <limit> once decompressed: refusing it") as soon as one byte
    more arrives: never more than `limit` + one raw chunk's expansion is held, whatever the
    registry sends.
    """
    try:
        decoder = Decoder(response.headers.get("content-encoding", ""), what)
        body = bytearray()
        for raw in response.iter_raw(_RAW_CHUNK):
            body += decoder.decode(raw, limit + 1 - len(body))
            if len(body) > limit:
                break
        else:
            body += decoder.decode(b"", limit + 1 - len(body))
    except httpx.HTTPError as e:
        raise PullError(f"{what}: the download broke off ({network_error(e)})") from None
    finally:
        response.close()
    if len(body) > limit:
        raise PullError(f"{what} is larger than {limit_text or format_size(limit)} once decompressed: refusing it")
    return bytes(body)


class Decoder:
    """A `Content-Encoding` undone a bounded piece at a time (zlib's `max_length`): identity, gzip
    (members one after another, as gzip reads them) or deflate (zlib-wrapped, or raw as some servers
    send it). Any other encoding — one kubelite did not ask for — is refused."""

    def __init__(self, encoding: str, what: str) -> None:
        self.encoding = encoding.strip().lower()
        if self.encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            raise PullError(f"{what} is sent with Content-Encoding {encoding!r}, which kubelite did not ask for "
                            "(gzip and deflate only)")
        self.what = what
        self.wbits = 16 + zlib.MAX_WBITS if "gzip" in self.encoding else zlib.MAX_WBITS
        self.zlib = zlib.decompressobj(self.wbits) if self.encoding not in ("", "identity") else None
        self.pending = b""   # input not decoded yet: the decoder stopped at the room it was given
        self.started = False

    def decode(self, raw: bytes, room: int) -> bytes:
        """Up to `room` more decoded bytes from what arrived so far plus `raw`."""
        if self.zlib is None:
            return raw
        data, self.pending = self.pending + raw, b""
        out = bytearray()
        try:
            while len(out) < room:
                if self.zlib.eof:
                    rest, data = self.zlib.unused_data + data, b""
                    if self.wbits <= zlib.MAX_WBITS or not rest.startswith(b"\x1f\x8b"):
                        break   # what follows the stream is ignored, as httpx and browsers do
                    self.zlib, data = zlib.decompressobj(self.wbits), rest   # the next gzip member
                if not data:
                    break
                try:
                    out += self.zlib.decompress(data, room - len(out))
                except zlib.error:
                    if self.started or self.wbits != zlib.MAX_WBITS:
                        raise
                    self.wbits = -zlib.MAX_WBITS   # "deflate" sent raw, without the zlib wrapper
                    self.zlib = zlib.decompressobj(self.wbits)
                    continue
                self.started = True
                data = self.zlib.unconsumed_tail
        except zlib.error as e:
            raise PullError(f"{self.what} is not valid {self.encoding} ({e})") from None
        self.pending = data
        return bytes(out)


def url_origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port (the default one for the scheme when none is written)."""
    return url.scheme, url.host, url.port or {"http": 80, "https": 443}.get(url.scheme)


def shown_url(url: httpx.URL) -> str:
    """A URL for a message: without its query (a CDN's signed URL holds its signature there) or user info."""
    return str(url.copy_with(query=None, fragment=None, username=None, password=None))


def network_error(e: Exception) -> str:
    text = str(e) or type(e).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"the TLS certificate cannot be verified ({text}); trust its CA in certs.d/<host:port>/ca.crt"
    return text
