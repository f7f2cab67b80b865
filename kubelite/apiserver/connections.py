"""Connections: accepting, counting, TLS, the head deadline, and closing what does not complete.

Owns: every client connection from accept to close. The listener hands each accepted socket to
`Guard`, which counts it before any TLS work, at most the cap at once; when full, the oldest
connection that has not yet completed a request head (anonymous by definition: it has sent no
token) is closed to make room, so clients that send nothing can never hold the cap. `start_tls`
runs the server side of the handshake with a small read buffer. `Connection` is aiohttp's HTTP/1.1
handling plus what aiohttp lacks: a deadline for each request head, a bound on a head's size,
`Status`-shaped answers to requests that cannot be parsed (one debug line, never a traceback) and
to errors of the server's own (a 500 and one error line naming the request), and a short close for
connections that are not kept alive: an anonymous client's connection is dropped `close_grace_s`
after its answer, whether or not it sends its TLS goodbye.

Depends on two details inside asyncio and aiohttp, kept to these and checked by
`tests/test_apiserver_abuse.py`: `asyncio.sslproto.SSLProtocol` (its constructor, `max_size` and
`_get_app_transport`; without them `start_tls` falls back to `loop.start_tls` and its larger
buffer) and `aiohttp.web_protocol.RequestHandler` (`data_received`, `finish_response`,
`handle_error`, `log_exception` and its `_request_count`).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto as sslproto
import inspect
import json
import logging
import ssl
from typing import Any, Callable

from aiohttp import web, web_protocol
from aiohttp.http import HttpVersion11

from kubelite.apiserver import objects
from kubelite.apiserver.limits import Limits

log = logging.getLogger("kubelite.api")

#: The `Server` header: no software or version for a scanner to match.
SERVER = "kubelite"
#: The read buffer of a connection's TLS layer (asyncio's is 256 KiB; a TLS record is at most 16 KiB).
TLS_BUFFER_BYTES = 32 * 1024


def status_response(code: int, obj: Any, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer (a `Status`, mostly) with the headers every answer carries."""
    return web.Response(status=code, body=json.dumps(obj, separators=(",", ":")).encode(),
                        headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private",
                                 "Server": SERVER, **(headers or {})})


def closing(response: web.StreamResponse) -> web.StreamResponse:
    response.force_close()
    return response


def loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """What asyncio reports about a connection (a reset, a failed handshake) is the client's doing:
    one line at debug level, never a traceback."""
    exc = context.get("exception")
    if exc is None or isinstance(exc, (OSError, asyncio.CancelledError, asyncio.TimeoutError)):
        log.debug("API: %s: %s", context.get("message"), exc)
    else:
        log.warning("API: %s: %s: %s", context.get("message"), type(exc).__name__, exc)


def peer(address: Any) -> str:
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) and len(address) >= 2 else str(address)


def request_line(request: web.BaseRequest) -> str:
    """The request line as the client sent it, quoted, its non-printable characters escaped: one line
    in the log whatever the client sent."""
    version = request.version
    line = f"{request.method} {request.raw_path} HTTP/{version.major}.{version.minor}"
    return '"' + repr(line)[1:-1] + '"'


def internal_error(request: web.BaseRequest, exc: BaseException) -> web.Response:
    """The answer to an error of this server's own inside a request: a `Status` 500 without a
    traceback, the connection closed, and one error line naming the request (the traceback only at
    debug level)."""
    body = objects.internal_error(exc)
    log.error("API: %s failed: %s", request_line(request), repr(body["message"])[1:-1])
    log.debug("API: %s failed", request_line(request), exc_info=exc)
    return closing(status_response(500, body))


# ---------------------------------------------------------------------- the cap


class Slot:
    """One accepted connection's place under the cap, from accept to close."""

    def __init__(self, guard: "Guard", transport: asyncio.Transport) -> None:
        self.guard, self.transport = guard, transport
        self.released = False

    def head_completed(self) -> None:
        """The connection sent a whole request head: it is no longer evicted to make room."""
        self.guard.waiting.pop(self, None)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.guard.open -= 1
            self.guard.waiting.pop(self, None)

    def evict(self) -> None:
        log.debug("API: %s closed before its first request: %d connections open, room made for a new one",
                  peer(self.transport.get_extra_info("peername")), self.guard.open)
        self.transport.abort()   # the TCP socket itself: no TLS goodbye to wait for
        self.release()


class Guard:
    """The open connections of one server: at most `cap`, counted from accept. When full, the oldest
    connection that has not completed a request head is closed for the newcomer; when every slot
    holds a connection that has (a token holder's), the newcomer is closed at accept."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open = 0
        #: Connections without a complete request head yet, oldest first (a dict keeps insertion order).
        self.waiting: dict[Slot, None] = {}

    def admit(self, transport: asyncio.Transport) -> Slot | None:
        if self.open >= self.cap:
            if not self.waiting:
                log.debug("API: connection refused: %d connections open, each past its first request", self.open)
                return None
            next(iter(self.waiting)).evict()
        slot = Slot(self, transport)
        self.open += 1
        self.waiting[slot] = None
        return slot


# ---------------------------------------------------------------------- TLS


def _small_buffers_possible() -> bool:
    """Whether asyncio's TLS layer still has what `TlsProtocol` changes and `start_tls` calls."""
    layer = getattr(sslproto, "SSLProtocol", None)
    if layer is None or not isinstance(getattr(layer, "max_size", None), int) \
            or not callable(getattr(layer, "_get_app_transport", None)):
        return False
    try:
        wanted = inspect.signature(layer.__init__).parameters
    except (TypeError, ValueError):
        return False
    return {"loop", "app_protocol", "sslcontext", "waiter", "server_side", "call_connection_made",
            "ssl_handshake_timeout", "ssl_shutdown_timeout"} <= set(wanted)


#: False when asyncio's TLS internals changed: connections then use `loop.start_tls` as it is.
SMALL_TLS_BUFFERS = _small_buffers_possible()


class TlsProtocol(sslproto.SSLProtocol):
    """asyncio's TLS layer with a 32 KiB read buffer instead of 256 KiB: an idle connection costs a
    tenth of the memory (a TLS record is at most 16 KiB; reads stay whole-record)."""

    max_size = TLS_BUFFER_BYTES


async def start_tls(loop: asyncio.AbstractEventLoop, transport: asyncio.Transport, connection: "Connection",
                    context: ssl.SSLContext, timeout_s: float) -> asyncio.Transport | None:
    """The server side of a TLS handshake on an accepted connection (as `loop.start_tls`, with
    `TlsProtocol`), bounded by `timeout_s`, as is closing the TLS transport later (answer flushed,
    goodbye exchanged); the caller tells the connection `connection_made`."""
    if not SMALL_TLS_BUFFERS:
        return await loop.start_tls(transport, connection, context, server_side=True,
                                    ssl_handshake_timeout=timeout_s, ssl_shutdown_timeout=timeout_s)
    waiter = loop.create_future()
    layer = TlsProtocol(loop, connection, context, waiter, server_side=True, call_connection_made=False,
                        ssl_handshake_timeout=timeout_s, ssl_shutdown_timeout=timeout_s)
    transport.set_protocol(layer)
    made = loop.call_soon(layer.connection_made, transport)
    resumed = loop.call_soon(transport.resume_reading)
    try:
        await waiter
    except BaseException:
        made.cancel()
        resumed.cancel()
        raise
    return layer._get_app_transport()   # noqa: SLF001 — what loop.start_tls returns


class Accept(asyncio.Protocol):
    """The listening socket's protocol: hands each accepted connection on, reading paused."""

    def __init__(self, accepted: Callable[[asyncio.Transport], None]) -> None:
        self.accepted = accepted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.accepted(transport)   # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:   # reading is paused until the handshake starts
        pass


# ---------------------------------------------------------------------- HTTP


class Connection(web_protocol.RequestHandler):
    """One client connection: aiohttp's HTTP/1.1 handling plus the deadline for request heads
    (aiohttp has none: a slow client could trickle a head forever) and Status-shaped errors."""

    def __init__(self, manager: web.Server, *, slot: Slot, accepted_at: float, limits: Limits,
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.slot, self.limits, self._accepted_at = slot, limits, accepted_at
        #: Whether a request on this connection carried the token (only then is it kept alive).
        self.authenticated = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._awaiting_head = True
        self._head_bytes = 0
        self._made = False

    # ---- the head deadline: armed at accept and at a request's first byte, disarmed by the head

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._made = True
        super().connection_made(transport)
        # TLS 1.3 can deliver the first request with the handshake, before this call: its head may be
        # parsed (and, where tasks start eagerly, already answered); the deadline is for a first
        # head still awaited, never for a kept-alive connection's idle time
        if self._awaiting_head and self._request_count == 0:
            self._arm(self._accepted_at + self.limits.headers_timeout_s)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            if self._head_timer is None:
                self._arm(self._loop.time() + self.limits.headers_timeout_s)
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head_bytes + self.limits.max_line_bytes \
                    and self.transport is not None:
                log.debug("API: %s sent a request head over %d bytes: closed", peer(self.peername),
                          self.limits.max_head_bytes)
                self.transport.abort()
                return
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:   # a whole head arrived (what follows is its body)
            self.head_received()

    def head_received(self) -> None:
        self.slot.head_completed()
        self._awaiting_head = False
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    async def finish_response(self, request: web.BaseRequest, resp: web.StreamResponse,
                              start_time: float | None) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._awaiting_head = True   # the next request's deadline starts with its first byte
            closes = not resp.keep_alive and (resp.status >= 400 or not self.authenticated)
            if (closes or not request.content.is_eof()) and self.transport is not None:
                # a refusal or an anonymous answer that closes, or a body left unread: read nothing
                # more, and do not wait on a TLS goodbye from a client that may never send it
                transport = self.transport
                transport.pause_reading()
                self._loop.call_later(self.limits.close_grace_s, transport.abort)

    def _arm(self, when: float) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self._loop.call_at(when, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._awaiting_head and self.transport is not None:
            log.debug("API: %s sent no complete request within %gs: closed", peer(self.peername),
                      self.limits.headers_timeout_s)
            self.transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        try:
            if self._made:   # asyncio tells a failed handshake's protocol too, which aiohttp never saw
                super().connection_lost(exc)
        finally:
            self.slot.release()

    # ---- errors: a Status, one debug line, the connection closed

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            log.debug("API: %s failed after its answer began: %r", request_line(request), exc)
            raise ConnectionResetError("the response began: the connection is closed instead")
        if status >= 500:
            return internal_error(request, exc or RuntimeError(message or "the request failed"))
        reason = {413: "RequestEntityTooLarge"}.get(status, "BadRequest")
        text = objects.first_line(message or (str(exc) if exc is not None else "")) or reason
        # one line, whatever the client sent: the parser's message is quoted, not copied
        log.debug("API: bad request from %s: %r", request.remote, text)
        if request.version < HttpVersion11:   # a head that could not be parsed: answer as HTTP/1.1, as Go does
            try:
                request._version = HttpVersion11   # noqa: SLF001
                request._cache.pop("version", None)   # noqa: SLF001 — the property caches what it read
            except AttributeError:   # aiohttp changed: the answer says the version the parser left
                pass
        return closing(status_response(status, objects.status(
            status, reason, f"the request could not be parsed: {text}")))

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        log.debug("API: " + str(args[0]) + (f": {exc!r}" if exc is not None else ""), *args[1:])


class Manager(web.Server):
    """aiohttp's server, making `Connection`s."""

    def __init__(self, handler: Any, *, limits: Limits, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.limits = limits
        self.connection_kwargs = {k: v for k, v in kwargs.items() if k != "loop"}

    def connection(self, *, slot: Slot, accepted_at: float) -> Connection:
        return Connection(self, loop=asyncio.get_running_loop(), slot=slot, accepted_at=accepted_at,
                          limits=self.limits, **self.connection_kwargs)
