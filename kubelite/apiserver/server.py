"""The HTTP server: connections, routing, authentication, content negotiation and streaming.

Owns: one aiohttp server on its own asyncio event loop, in one thread beside the agent, on a
loopback address (or the one `--api-address` names). An idle connection costs a descriptor and a
little memory, not a thread, so clients that send nothing cannot lock others out: at most
MAX_CONNECTIONS connections (lowered to fit the process's descriptor limit), each of which must
finish its TLS handshake and its first request head within HEADERS_TIMEOUT_S of being accepted,
and each later request head within HEADERS_TIMEOUT_S of its first byte; a kept-alive connection
idle for IDLE_TIMEOUT_S is closed, and an answer to a request without the token (a 401, or a public
path such as /healthz) closes its connection, so only the token buys a connection's keep-alive.
Bodies (only the SelfSubjectAccessReview has one) are read up to MAX_BODY_BYTES, never past.
Malformed requests are answered with a 400 `Status` and the connection closed, without a traceback.

Routing: the bearer-token check (`/healthz`, `/readyz`, `/livez` and `/version` are public, as the
API server's `system:public-info-viewer` makes them), GET-only access (any other method on a
resource is 405 MethodNotAllowed; exec, attach, port-forward and proxy are 403 Forbidden; the one
POST answered is a SelfSubjectAccessReview, which creates nothing), `Status` errors, the Table form
when the client asks for `as=Table`, `limit`/`continue`, and chunked streams for watches and followed
logs (at most MAX_STREAMS at once; more are 429 TooManyRequests).

The event loop never blocks: every read of the state database, the watch feed's generator and the
log files runs in a thread (a small pool for plain reads, one thread per open stream), and the loop
only moves bytes. Every request reads the state database through its own read-only connection;
nothing here writes.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto as sslproto
import base64
import binascii
import json
import logging
import re
import resource
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Generator
from urllib.parse import parse_qsl, unquote, urlsplit

from aiohttp import web, web_protocol
from aiohttp.http import HttpVersion11

from kubelite.apiserver import auth, feed, logs, metrics, objects, protobuf, selectors, tls
from kubelite.apiserver import node as nodes
from kubelite.errors import KubeliteError
from kubelite.store.reader import Reader, one_per_name

log = logging.getLogger("kubelite.api")

PUBLIC = {"/healthz", "/readyz", "/livez", "/version"}
FORBIDDEN_SUBRESOURCES = {"exec", "attach", "portforward", "proxy", "eviction", "binding", "ephemeralcontainers"}
NAMESPACED = {"pods", "events", "configmaps", "secrets", "persistentvolumeclaims"}
CLUSTER = {"nodes", "namespaces", "persistentvolumes"}
#: A watch without timeoutSeconds ends after this long, as the API server's --min-request-timeout.
WATCH_TIMEOUT_S = 1800
#: A connection's TLS handshake and first request head, and each later request head from its first
#: byte, must arrive within this long; else the connection is closed and nothing is routed.
HEADERS_TIMEOUT_S = 10.0
#: A kept-alive connection with no request for this long is closed (Go's clients keep idle
#: connections 90 s and retry on a fresh one).
IDLE_TIMEOUT_S = 60.0
#: Connections open at once (a descriptor and some kilobytes each); more are closed at accept.
MAX_CONNECTIONS = 2048
#: Descriptors left to the agent (database, logs, inotify, runtimes) when the limit lowers the cap.
RESERVED_DESCRIPTORS = 256
#: Watches and followed logs open at once (a thread each while they wait for news); more are 429.
MAX_STREAMS = 100
#: The largest request body read, as the API server's own bound (3 MiB); larger is 413.
MAX_BODY_BYTES = 3 * 1024 * 1024
#: The longest request line and header line; longer is 400.
MAX_LINE_BYTES = 8190
#: The largest request head (line and headers; kubectl sends about 1 KiB); a connection whose head
#: grows past it is dropped. Go's default is 1 MiB; this bounds what a silent client can make the
#: server hold to MAX_CONNECTIONS times 64 KiB.
MAX_HEAD_BYTES = 64 * 1024
#: Threads for plain reads (lists, gets, logs without follow, /metrics).
READ_THREADS = 4
#: An unread request body (a refused write) is never read: the connection closes after the answer.
LINGER_S = 0.0
#: A refusal that closes its connection (or leaves a body unread) has this long to reach the client
#: before the socket is dropped; nothing more is read meanwhile.
CLOSE_GRACE_S = 1.0
LISTEN_BACKLOG = 1024
#: The largest value an integer query parameter may have (int64, as the API server parses them).
INT64_MAX = 2**63 - 1
#: The `Server` header: no software or version for a scanner to match.
SERVER = "kubelite"
#: What /readyz answers when not ready: public, so the reason stays in the Node's Ready condition.
NOT_READY = "not ready"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
_END = object()
_INTEGER = re.compile(r"[+-]?[0-9]+")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Health:
    ready: bool
    message: str


class ApiError(Exception):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body["message"])
        self.body = body


def _bad_request(message: str) -> ApiError:
    return ApiError(objects.status(400, "BadRequest", message))


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server bound to host:port; a wildcard address
    (0.0.0.0, ::) is reached, and covered by the certificate, as the loopback address."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


class ApiServer:
    """The API of one node; `start()` it beside the agent, `notify()` it after each pass."""

    def __init__(self, *, root: Path, node_name: str, runtime: str, host: str, port: int,
                 health: Callable[[], Health], node_ip: str | None = None) -> None:
        self.root, self.node_name, self.health = root, node_name, health
        self.token = auth.ensure_token(root)
        directory = auth.api_dir(root)
        names = ["127.0.0.1", "::1", "localhost", node_name, socket.gethostname(), node_ip or nodes.internal_ip()]
        if host not in ("", "0.0.0.0", "::"):
            names.append(host)
        tls.ensure_certificates(directory, names)
        created = datetime.fromtimestamp((auth.api_dir(root) / auth.TOKEN_FILE).stat().st_mtime, timezone.utc)
        self.facts = nodes.host_facts(name=node_name, created=_rfc3339(created), root=str(root), runtime=runtime,
                                      node_ip=node_ip)
        self.started = _rfc3339(_now())
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # OSError: cannot listen
        self.socket = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
        try:
            self.socket.setblocking(False)
            self.context = tls.server_context(directory)
            self.feed = feed.PodFeed(self.reader)
            self.registry = metrics.node_registry(self.reader, lambda: self.feed.watchers)
        except BaseException:
            self.socket.close()
            if hasattr(self, "feed"):
                self.feed.stop()
            raise
        self.closing = threading.Event()
        bound_host, bound_port = self.socket.getsockname()[:2]
        self.url = client_url(str(bound_host), bound_port)
        self.address = self.url.removeprefix("https://")
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serving: _Serving | None = None

    def reader(self) -> Reader:
        return Reader(self.root)

    def start(self) -> str:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_loop_error)

        failure: list[BaseException] = []

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._serving = self._loop.run_until_complete(_Serving.start(self))
            except BaseException as exc:  # noqa: BLE001 — told to the starting thread, which raises it
                failure.append(exc)
                return
            finally:
                ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="kubelite-api", daemon=True)
        self._thread.start()
        ready.wait(30)
        if self._serving is None:
            self.close()
            raise failure[0] if failure else RuntimeError("the API's event loop did not start within 30 s")
        auth.record_server(self.root, self.url)
        log.info("API serving on %s (kubectl: kubelite kubeconfig > ~/.kube/config)", self.url)
        return self.url

    def notify(self) -> None:
        self.feed.notify()

    def close(self) -> None:
        self.closing.set()
        self.feed.stop()
        loop, serving = self._loop, self._serving
        if loop is not None and serving is not None and self._thread is not None and self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(serving.stop(), loop).result(timeout=10)
            except Exception:  # noqa: BLE001 — stopping goes on: the loop ends below either way
                log.debug("API: stopping the server failed", exc_info=True)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                loop.close()
        elif loop is not None and not loop.is_running() and not loop.is_closed():
            loop.close()   # it never served
        self.socket.close()

    # ------------------------------------------------------------------ reads

    def node(self) -> dict[str, Any]:
        health = self.health()
        return nodes.node(self.facts, ready=health.ready, ready_message=health.message,
                            heartbeat=_rfc3339(_now()), since=self.started)

    def items(self, resource: str, namespace: str | None, name: str | None = None) -> tuple[list[dict], int]:
        """The objects of a resource and the resourceVersion they were read at."""
        reader = self.reader()
        try:
            with reader.snapshot():
                rv = reader.resource_version()
                if resource == "pods":
                    found = one_per_name(reader.pods(namespace, name))
                elif resource == "events":
                    found = [objects.api_event(e, self.node_name) for e in reader.events(namespace)]
                    if name is not None:
                        found = [e for e in found if e["metadata"]["name"] == name]
                elif resource in ("configmaps", "secrets"):
                    kind = "ConfigMap" if resource == "configmaps" else "Secret"
                    found = [{"apiVersion": "v1", "kind": kind, **o} for o in
                             reader.config_objects(kind, namespace, name)]
                elif resource == "persistentvolumeclaims":
                    found = reader.config_objects("PersistentVolumeClaim", namespace, name)
                elif resource == "persistentvolumes":
                    found = reader.persistent_volumes(name)
                elif resource == "storageclasses":
                    found = reader.storage_classes(name)
                elif resource == "nodes":
                    found = [self.node()] if name in (None, self.node_name) else []
                else:
                    found = self._namespaces(reader)
                    if name is not None:
                        found = [n for n in found if n["metadata"]["name"] == name]
        finally:
            reader.close()
        return found, rv

    def _namespaces(self, reader: Reader) -> list[dict[str, Any]]:
        seen: dict[str, str] = {"default": self.facts.created}
        for pod in reader.pods():
            meta = pod["metadata"]
            created = meta.get("creationTimestamp") or self.facts.created
            seen[meta["namespace"]] = min(seen.get(meta["namespace"], created), created)
        for kind in ("ConfigMap", "Secret", "PersistentVolumeClaim"):
            for obj in reader.config_objects(kind):
                seen.setdefault(obj["metadata"].get("namespace", "default"), self.facts.created)
        return [objects.namespace(ns, created) for ns, created in sorted(seen.items())]


# ---------------------------------------------------------------------- connections


def connection_cap() -> int:
    """MAX_CONNECTIONS, or fewer when the process's descriptor limit would not hold them beside the
    agent's own files (RESERVED_DESCRIPTORS)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(16, min(MAX_CONNECTIONS, soft - RESERVED_DESCRIPTORS))


def _loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """What asyncio reports about a connection (a reset, a failed handshake) is the client's doing:
    one line at debug level, never a traceback."""
    exc = context.get("exception")
    if exc is None or isinstance(exc, (OSError, asyncio.CancelledError, asyncio.TimeoutError)):
        log.debug("API: %s: %s", context.get("message"), exc)
    else:
        log.warning("API: %s: %s: %s", context.get("message"), type(exc).__name__, exc)


class _Connection(web_protocol.RequestHandler):
    """One client connection: aiohttp's HTTP/1.1 handling plus the deadline for request heads
    (aiohttp has none: a slow client could trickle a head forever) and Status-shaped errors."""

    def __init__(self, manager: web.Server, *, release: Callable[[], None], accepted_at: float,
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._release, self._accepted_at = release, accepted_at
        self._head_timer: asyncio.TimerHandle | None = None
        self._awaiting_head = True
        self._head_bytes = 0
        self._made = False

    # ---- the head deadline: armed at accept and at a request's first byte, disarmed by the head

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._made = True
        super().connection_made(transport)
        self._arm(self._accepted_at + HEADERS_TIMEOUT_S)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            if self._head_timer is None:
                self._arm(self._loop.time() + HEADERS_TIMEOUT_S)
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES + MAX_LINE_BYTES and self.transport is not None:
                log.debug("API: %s sent a request head over %d bytes: closed", _peer(self.peername), MAX_HEAD_BYTES)
                self.transport.abort()
                return
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:   # a whole head arrived (what follows is its body)
            self.head_received()

    def head_received(self) -> None:
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
            if ((resp.status >= 400 and not resp.keep_alive) or not request.content.is_eof()) \
                    and self.transport is not None:
                # a refusal that closes, or a body left unread: read nothing more, and do not wait
                # on a TLS goodbye from a client that may still be sending
                transport = self.transport
                transport.pause_reading()
                self._loop.call_later(CLOSE_GRACE_S, transport.abort)

    def _arm(self, when: float) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self._loop.call_at(when, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._awaiting_head and self.transport is not None:
            log.debug("API: %s sent no complete request within %gs: closed", _peer(self.peername), HEADERS_TIMEOUT_S)
            self.transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        try:
            if self._made:   # asyncio tells a failed handshake's protocol too, which aiohttp never saw
                super().connection_lost(exc)
        finally:
            self._release()

    # ---- errors: a Status, one debug line, the connection closed

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        reason = {400: "BadRequest", 413: "RequestEntityTooLarge", 431: "BadRequest"}.get(status, "InternalError")
        text = _first_line(message or (str(exc) if exc is not None else "")) or reason
        if status == 500:
            log.error("API: %r %r failed: %s: %r", request.method, request.path, type(exc).__name__, text)
        else:   # one line, whatever the client sent: the parser's message is quoted, not copied
            log.debug("API: bad request from %s: %r", request.remote, text)
        if request.writer.output_size > 0:
            raise ConnectionResetError("the response began: the connection is closed instead")
        if status != 500:
            text = f"the request could not be parsed: {text}"
        if request.version < HttpVersion11:   # a head that could not be parsed: answer as HTTP/1.1, as Go does
            request._version = HttpVersion11   # noqa: SLF001
            request._cache.pop("version", None)   # noqa: SLF001 — the property caches what it read
        response = _json_response(status, objects.status(status, reason, text))
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        log.debug("API: " + str(args[0]) + (f": {exc!r}" if exc is not None else ""), *args[1:])


def _first_line(text: str) -> str:
    """The first non-blank line of a message, at most 200 characters."""
    return next((line.strip()[:200] for line in text.splitlines() if line.strip()), "")


def _peer(address: Any) -> str:
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) and len(address) >= 2 else str(address)


class _Manager(web.Server):
    """aiohttp's server, making `_Connection`s."""

    def connection(self, *, release: Callable[[], None], accepted_at: float) -> _Connection:
        return _Connection(self, loop=self._loop, release=release, accepted_at=accepted_at, **self._kwargs)


class _Accept(asyncio.Protocol):
    """The listening socket's protocol: counts the connection, then hands it to a TLS handshake."""

    def __init__(self, serving: "_Serving") -> None:
        self.serving = serving

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.serving.accepted(transport)   # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:   # reading is paused until the handshake starts
        pass


class _TlsProtocol(sslproto.SSLProtocol):
    """asyncio's TLS layer with a 32 KiB read buffer instead of 256 KiB: an idle connection costs a
    tenth of the memory (a TLS record is at most 16 KiB; reads stay whole-record)."""

    max_size = 32 * 1024


async def _start_tls(loop: asyncio.AbstractEventLoop, transport: asyncio.Transport,
                     connection: "_Connection", context: ssl.SSLContext) -> asyncio.Transport:
    """The server side of a TLS handshake on an accepted connection (as `loop.start_tls`, with
    `_TlsProtocol`), bounded by HEADERS_TIMEOUT_S; the connection is told `connection_made` by the
    caller. Closing the TLS transport (answer flushed, goodbye exchanged) takes at most HEADERS_TIMEOUT_S."""
    waiter = loop.create_future()
    layer = _TlsProtocol(loop, connection, context, waiter, server_side=True, call_connection_made=False,
                         ssl_handshake_timeout=HEADERS_TIMEOUT_S, ssl_shutdown_timeout=HEADERS_TIMEOUT_S)
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


class _Serving:
    """What lives on the API's event loop: the listener, the open connections and streams, the
    thread pools for blocking reads."""

    def __init__(self, api: ApiServer) -> None:
        self.api = api
        self.loop = asyncio.get_running_loop()
        self.cap = connection_cap()
        self.open = 0
        self.streams = 0
        self.handshakes: set[asyncio.Task] = set()
        self.reads = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="kubelite-api-read")
        self.stream_threads = ThreadPoolExecutor(max_workers=MAX_STREAMS, thread_name_prefix="kubelite-api-stream")
        self.manager = _Manager(self.handle, loop=self.loop, keepalive_timeout=IDLE_TIMEOUT_S, access_log=None,
                                lingering_time=LINGER_S, max_line_size=MAX_LINE_BYTES,
                                max_field_size=MAX_LINE_BYTES)
        self.listener: asyncio.AbstractServer | None = None

    @classmethod
    async def start(cls, api: ApiServer) -> "_Serving":
        serving = cls(api)
        serving.listener = await serving.loop.create_server(lambda: _Accept(serving), sock=api.socket,
                                                            backlog=LISTEN_BACKLOG)
        return serving

    async def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
        for task in list(self.handshakes):
            task.cancel()
        for connection in list(self.manager.connections):
            if connection.transport is not None:
                connection.transport.abort()
        await asyncio.sleep(0)
        self.reads.shutdown(wait=False, cancel_futures=True)
        self.stream_threads.shutdown(wait=False, cancel_futures=True)

    # ---- connections

    def accepted(self, transport: asyncio.Transport) -> None:
        if self.open >= self.cap:
            log.debug("API: connection refused: %d connections open", self.open)
            transport.abort()
            return
        transport.pause_reading()
        self.open += 1
        task = self.loop.create_task(self._handshake(transport, self.loop.time()))
        self.handshakes.add(task)
        task.add_done_callback(self.handshakes.discard)

    async def _handshake(self, transport: asyncio.Transport, accepted_at: float) -> None:
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.open -= 1

        connection = self.manager.connection(release=release, accepted_at=accepted_at)
        try:
            secure = await _start_tls(self.loop, transport, connection, self.api.context)
        except asyncio.CancelledError:
            transport.abort()
            release()
            raise
        except Exception as exc:  # noqa: BLE001 — a failed handshake (plain HTTP, a scan, a timeout) is the client's
            log.debug("API: TLS handshake failed: %s: %s", type(exc).__name__, exc)
            transport.abort()
            release()
            return
        if secure is None or secure.is_closing():
            release()
            return
        connection.connection_made(secure)

    # ---- requests

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        connection = request.protocol
        if isinstance(connection, _Connection):
            connection.head_received()
        api = self.api
        authorized = auth.authorized(request.headers.get("Authorization"), api.token)
        response = await self._answer(request, authorized)
        response.headers["Server"] = SERVER
        if not authorized:   # only the token buys keep-alive: an anonymous client holds nothing after its answer
            response.force_close()
        return response

    async def _answer(self, request: web.BaseRequest, authorized: bool) -> web.StreamResponse:
        try:
            split = urlsplit(request.raw_path)
            query = dict(parse_qsl(split.query, keep_blank_values=True))
        except ValueError as exc:
            return _closing(_json_response(400, objects.status(400, "BadRequest", f"invalid request target: {exc}")))
        path = split.path.rstrip("/") or "/"
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            return _closing(_json_response(413, objects.status(
                413, "RequestEntityTooLarge", f"the request body is larger than {MAX_BODY_BYTES} bytes")))
        body = b""
        if authorized and request.method == "POST" and path == ACCESS_REVIEWS and request.body_exists:
            try:
                async with asyncio.timeout(HEADERS_TIMEOUT_S):
                    body = await _read_body(request)
            except ApiError as exc:
                return _closing(_json_response(exc.body["code"], exc.body))
            except TimeoutError:
                return _closing(_json_response(400, objects.status(
                    400, "BadRequest", f"the request body did not arrive within {HEADERS_TIMEOUT_S:g}s")))
            except (ConnectionError, asyncio.IncompleteReadError, web.HTTPException):
                return _closing(_json_response(400, objects.status(400, "BadRequest", "the request body was cut off")))
        call = _Call(self.api, request.method, path, query, request.headers, body, authorized)
        result = await self.loop.run_in_executor(self.reads, call.answer)
        if isinstance(result, _Stream):
            return await self._stream(request, result)
        response = web.Response(status=result.code, body=result.body, headers={
            "Content-Type": result.content_type, "Cache-Control": "no-cache, private"})
        return _closing(response) if result.close else response

    async def _stream(self, request: web.BaseRequest, stream: "_Stream") -> web.StreamResponse:
        if self.streams >= MAX_STREAMS:
            self.loop.run_in_executor(self.reads, stream.close)
            return _json_response(429, objects.status(429, "TooManyRequests",
                                                      f"too many watches and followed logs open ({MAX_STREAMS})",
                                                      retry_after=1), headers={"Retry-After": "1"})
        self.streams += 1
        response = web.StreamResponse(status=200, headers={"Content-Type": stream.content_type,
                                                           "Cache-Control": "no-cache, private", "Server": SERVER})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            while True:
                chunk = await self.loop.run_in_executor(self.stream_threads, next, stream.chunks, _END)
                if chunk is _END:
                    await response.write_eof()
                    break
                if request.transport is None or request.transport.is_closing():
                    break
                if chunk:
                    await response.write(chunk.encode())
        except ConnectionError:
            log.debug("API: a client left its stream")
        except Exception as exc:  # noqa: BLE001 — the stream began: it ends here, the connection with it
            log.warning("API: a stream failed: %s: %s", type(exc).__name__, exc)
        finally:
            self.streams -= 1
            stream.gone.set()
            self.loop.run_in_executor(self.stream_threads, stream.close)
        if not response.prepared or request.transport is None or request.transport.is_closing():
            request.protocol.force_close()
        return response


async def _read_body(request: web.BaseRequest) -> bytes:
    """The request body, up to MAX_BODY_BYTES and never a byte past (413 beyond)."""
    length = request.content_length
    if length is not None:
        return await request.content.readexactly(length)
    data = bytearray()
    while chunk := await request.content.readany():
        data += chunk
        if len(data) > MAX_BODY_BYTES:
            raise ApiError(objects.status(413, "RequestEntityTooLarge",
                                          f"the request body is larger than {MAX_BODY_BYTES} bytes"))
    return bytes(data)


def _json_response(code: int, obj: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=code, body=json.dumps(obj, separators=(",", ":")).encode(),
                        headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private",
                                 "Server": SERVER, **(headers or {})})


def _closing(response: web.StreamResponse) -> web.StreamResponse:
    response.force_close()
    return response


# ---------------------------------------------------------------------- one request, off the loop


@dataclass
class _Reply:
    code: int
    content_type: str
    body: bytes
    close: bool = False


@dataclass
class _Stream:
    content_type: str
    chunks: Generator[str, None, None]
    gone: threading.Event = field(default_factory=threading.Event)
    #: What else to close when the stream ends (a log file's reader, begun before the stream).
    also: Generator[str, None, None] | None = None

    def close(self) -> None:
        for generator in (self.chunks, self.also):
            if generator is None:
                continue
            try:
                generator.close()
            except (ValueError, RuntimeError):   # still running in another thread: it ends at its next tick
                pass


class _Call:
    """One request's answer, computed in a thread (it reads the store): a `_Reply`, or a `_Stream`
    whose chunks the loop sends as they come."""

    def __init__(self, api: ApiServer, method: str, path: str, query: dict[str, str], headers: Any,
                 body: bytes, authorized: bool) -> None:
        self.api, self.method, self.path, self.query = api, method, path, query
        self.headers, self.body, self.authorized = headers, body, authorized

    def answer(self) -> "_Reply | _Stream":
        try:
            return self._answer()
        except Exception as exc:  # noqa: BLE001 — one failing request answers 500; the server goes on
            if isinstance(exc, ApiError):
                body = exc.body
            elif isinstance(exc, selectors.SelectorError):
                body = objects.status(400, "BadRequest", str(exc))
            elif isinstance(exc, KubeliteError):
                body = objects.status(500, "InternalError", str(exc))
            else:
                log.exception("API: %s %s failed", self.method, self.path)
                body = objects.status(500, "InternalError", f"{type(exc).__name__}: {exc}")
            return _Reply(body["code"], "application/json", _dumps(body), close=body["code"] >= 500)

    def _answer(self) -> "_Reply | _Stream":
        path, method = self.path, self.method
        if path not in PUBLIC and not self.authorized:
            raise ApiError(objects.status(401, "Unauthorized", "Unauthorized"))
        if method == "POST" and path == ACCESS_REVIEWS:
            return _json(201, objects.access_review(self._review()))
        if method not in ("GET", "HEAD"):
            parts = [unquote(p) for p in path.split("/") if p]
            if len(parts) >= 6 and parts[-1] in FORBIDDEN_SUBRESOURCES:
                raise ApiError(objects.status(403, "Forbidden", f'{parts[-3]} "{parts[-2]}" is forbidden: '
                                              f"kubelite serves a read-only API ({parts[-1]}: use kubelite on "
                                              "the node)", kind=parts[-3], name=parts[-2]))
            raise ApiError(objects.status(405, "MethodNotAllowed",
                                          "the server does not allow this method on the requested resource"))
        return self._route(path, self.query)

    def _review(self) -> dict[str, Any]:
        content_type = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if content_type not in ("application/json", "application/vnd.kubernetes.protobuf"):
            raise ApiError(objects.status(415, "UnsupportedMediaType",
                                          f"the body of the request was in an unknown format - accepted media "
                                          f"types include: application/json (got {content_type})"))
        try:
            data = self.body
            body = protobuf.access_review(data) if content_type != "application/json" else json.loads(data or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise _bad_request("the request body cannot be decoded") from None
        if not isinstance(body, dict):
            raise _bad_request("the request body is not a JSON object")
        return body

    # ------------------------------------------------------------------ routing

    def _route(self, path: str, query: dict[str, str]) -> "_Reply | _Stream":
        api = self.api
        if path in ("/healthz", "/livez"):
            return _text(200, "ok")
        if path == "/readyz":
            health = api.health()
            return _text(200 if health.ready else 500, "ok" if health.ready else NOT_READY)
        if path == "/version":
            return _json(200, objects.version())
        if path == "/api":
            return _json(200, objects.api_versions(api.address))
        if path == "/apis":
            return _json(200, objects.api_groups())
        if path == "/api/v1":
            return _json(200, objects.api_resources())
        if path == f"/apis/{objects.AUTHORIZATION}":
            return _json(200, objects.api_group(objects.AUTHORIZATION) | {"kind": "APIGroup", "apiVersion": "v1"})
        if path == f"/apis/{objects.STORAGE}":
            return _json(200, objects.api_group(objects.STORAGE) | {"kind": "APIGroup", "apiVersion": "v1"})
        if path == f"/apis/{objects.STORAGE}/v1":
            return _json(200, objects.storage_resources())
        if path == f"/apis/{objects.AUTHORIZATION}/v1":
            return _json(200, objects.authorization_resources())
        if path == "/metrics":
            return _Reply(200, metrics.CONTENT_TYPE, metrics.exposition(api.registry))
        parts = [unquote(p) for p in path.split("/") if p]
        if parts[:4] == ["apis", objects.STORAGE, "v1", "storageclasses"] and len(parts) <= 5:
            return self._list("storageclasses", None, query) if len(parts) == 4 else \
                self._get("storageclasses", None, parts[4])
        if parts[:2] != ["api", "v1"] or len(parts) < 3:
            raise ApiError(objects.status(404, "NotFound", "the server could not find the requested resource"))
        rest = parts[2:]
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
            if rest[0] not in NAMESPACED:
                raise self._no_resource()
        elif rest[0] not in NAMESPACED | CLUSTER:
            raise self._no_resource()
        resource = rest[0]
        if len(rest) == 1:
            return self._list(resource, namespace, query)
        name = rest[1]
        if resource in NAMESPACED and namespace is None:
            raise self._no_resource()
        if len(rest) == 2 or (len(rest) == 3 and rest[2] == "status" and resource == "pods"):
            return self._get(resource, namespace, name)
        if len(rest) == 3 and resource == "pods" and rest[2] == "log":
            return self._log(namespace or "default", name, query)
        if len(rest) == 3 and resource == "pods" and rest[2] in FORBIDDEN_SUBRESOURCES:
            raise ApiError(objects.status(403, "Forbidden", f'pods "{name}" is forbidden: kubelite serves a read-only '
                                          f"API ({rest[2]}: use kubelite on the node)", kind="pods", name=name))
        raise self._no_resource()

    @staticmethod
    def _no_resource() -> ApiError:
        return ApiError(objects.status(404, "NotFound", "the server could not find the requested resource"))

    def _wants_table(self) -> bool:
        return "as=Table" in (self.headers.get("Accept") or "")

    def _get(self, resource: str, namespace: str | None, name: str) -> _Reply:
        found, rv = self.api.items(resource, namespace, name)
        if not found:
            raise ApiError(objects.not_found(f"{resource}.{objects.STORAGE}" if resource == "storageclasses"
                                             else resource, name))
        if self._wants_table():
            columns, rows = objects.TABLES[resource]
            return _json(200, objects.table(columns, rows(found, _now()), rv))
        return _json(200, found[0])

    def _list(self, resource: str, namespace: str | None, query: dict[str, str]) -> "_Reply | _Stream":
        match = selectors.matcher(query.get("labelSelector"), query.get("fieldSelector"), resource)
        limit = _positive_int(query.get("limit"), "limit")
        start = _continue_offset(query.get("continue"))
        if query.get("watch") in ("true", "1"):
            return self._watch(resource, namespace, query, match)
        found, rv = self.api.items(resource, namespace)
        items = [o for o in found if match(o)]
        meta_extra: dict[str, Any] = {}
        items = items[start:]
        if limit and len(items) > limit:
            meta_extra = {"continue": _continue_token(rv, start + limit), "remainingItemCount": len(items) - limit}
            items = items[:limit]
        if self._wants_table():
            columns, rows = objects.TABLES[resource]
            body = objects.table(columns, rows(items, _now()), rv)
        else:
            kind = {"pods": "Pod", "events": "Event", "configmaps": "ConfigMap", "secrets": "Secret",
                    "persistentvolumeclaims": "PersistentVolumeClaim", "persistentvolumes": "PersistentVolume",
                    "storageclasses": "StorageClass", "nodes": "Node", "namespaces": "Namespace"}[resource]
            body = objects.object_list(kind, items, rv)
            if resource == "storageclasses":
                body["apiVersion"] = f"{objects.STORAGE}/v1"
        body["metadata"].update(meta_extra)
        return _json(200, body)

    # ------------------------------------------------------------------ watch

    def _watch(self, resource: str, namespace: str | None, query: dict[str, str],
               match: Callable[[dict[str, Any]], bool]) -> _Stream:
        if resource != "pods":
            raise ApiError(objects.status(405, "MethodNotAllowed", f"watch is not supported on {resource} by kubelite"))
        api = self.api
        since_text = query.get("resourceVersion") or ""
        since = None if since_text in ("", "0") else _positive_int(since_text, "resourceVersion")
        timeout = _positive_int(query.get("timeoutSeconds"), "timeoutSeconds") or WATCH_TIMEOUT_S
        bookmarks = query.get("allowWatchBookmarks") == "true"
        table = self._wants_table()
        if since is not None:
            try:
                api.feed.check(since)
            except feed.TooLarge as exc:
                raise ApiError(objects.status(504, "Timeout", str(exc), retry_after=1)) from None
        return _Stream("application/json", self._watch_chunks(namespace, since, timeout, match, bookmarks, table))

    def _watch_chunks(self, namespace: str | None, since: int | None, timeout: int,
                      match: Callable[[dict[str, Any]], bool], bookmarks: bool,
                      table: bool) -> Generator[str, None, None]:
        api = self.api

        def in_namespace(obj: dict[str, Any]) -> bool:
            return namespace is None or obj["metadata"].get("namespace") == namespace

        events = api.feed.watch(since, in_namespace, tick_s=min(feed.TICK_S, max(0.2, timeout / 10)))
        deadline = _monotonic() + timeout
        try:
            try:
                yield from self._watch_lines(events, match, deadline, bookmarks, table)
            except (feed.Expired, feed.TooLarge) as exc:
                code, reason = (410, "Expired") if isinstance(exc, feed.Expired) else (504, "Timeout")
                yield json.dumps({"type": "ERROR", "object": objects.status(code, reason, str(exc))}) + "\n"
            except Exception as exc:  # noqa: BLE001 — the stream began: the error goes in it, as a watch ERROR event
                log.exception("API: watch of pods failed")
                yield json.dumps({"type": "ERROR", "object": objects.status(
                    500, "InternalError", f"{type(exc).__name__}: {exc}")}) + "\n"
        finally:
            events.close()

    def _watch_lines(self, events: Any, match: Callable[[dict[str, Any]], bool], deadline: float,
                     bookmarks: bool, table: bool) -> Generator[str, None, None]:
        api = self.api
        event: Any = next(events, _END)
        while event is not _END:
            if event is None:
                if api.closing.is_set() or _monotonic() > deadline:
                    break
                if bookmarks:
                    yield json.dumps({"type": "BOOKMARK", "object": {
                        "kind": "Pod", "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(api.feed.resource_version)}}}) + "\n"
                else:
                    yield ""   # a tick: the loop looks whether the client is still there
            elif (kind := seen_as(event, match)) is not None:
                obj = event.object
                if table:
                    columns, rows = objects.TABLES["pods"]
                    obj = objects.table(columns, rows([obj], _now()), event.resource_version)
                yield json.dumps({"type": kind, "object": obj}) + "\n"
                if _monotonic() > deadline:
                    break
            event = next(events, _END)

    # ------------------------------------------------------------------ logs

    def _log(self, namespace: str, name: str, query: dict[str, str]) -> "_Reply | _Stream":
        api = self.api
        pods, _ = api.items("pods", namespace, name)
        if not pods:
            raise ApiError(objects.not_found("pods", name))
        reader = api.reader()
        try:
            live = [p for p in reader.pods(namespace, name) if not p["metadata"].get("deletionTimestamp")]
        finally:
            reader.close()
        pod = live[0] if live else pods[0]
        uid = pod["metadata"]["uid"]

        def current_pod() -> dict[str, Any] | None:
            reader = api.reader()
            try:
                found = [p for p in reader.pods(namespace, name) if p["metadata"]["uid"] == uid]
            finally:
                reader.close()
            return found[0] if found else None

        gone = threading.Event()
        try:
            _, chunks = logs.stream(api.root, pod, query, current_pod=current_pod,
                                    closed=lambda: gone.is_set() or api.closing.is_set())
            first = next(chunks, "")
        except logs.LogRequestError as exc:
            raise _bad_request(str(exc)) from None
        if query.get("follow") != "true" or query.get("previous") == "true":
            return _Reply(200, "text/plain", (first + "".join(chunks)).encode())

        def followed() -> Generator[str, None, None]:
            yield first
            yield from chunks

        return _Stream("text/plain", followed(), gone, also=chunks)   # type: ignore[arg-type]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _json(code: int, obj: Any) -> _Reply:
    return _Reply(code, "application/json", _dumps(obj))


def _text(code: int, text: str) -> _Reply:
    return _Reply(code, "text/plain; charset=utf-8", text.encode())


def seen_as(event: feed.WatchEvent, match: Callable[[dict[str, Any]], bool]) -> str | None:
    """The event type a filtered watch sees, from the object before and after, as the API server's
    cacher decides it: matched before and not now is DELETED, not before and now is ADDED, both is
    MODIFIED; None: not for this client."""
    now = event.type != "DELETED" and match(event.object)
    before = event.previous is not None and match(event.previous)
    if event.type == "DELETED":
        return "DELETED" if before or match(event.object) else None
    if before and now:
        return "MODIFIED"
    if now:
        return "ADDED"
    return "DELETED" if before else None


def _monotonic() -> float:
    return time.monotonic()


def _positive_int(text: str | None, name: str) -> int:
    """A query parameter as the API server parses it: a decimal int64 (ASCII digits, an optional
    sign), here also not negative; anything else is 400 BadRequest, never a 500."""
    if not text:
        return 0
    shown = text if len(text) <= 40 else text[:40] + "..."
    if not _INTEGER.fullmatch(text):
        raise _bad_request(f"{name}: invalid value {shown!r}: must be an integer")
    value = int(text) if len(text) <= 21 else (INT64_MAX + 1) * (-1 if text.startswith("-") else 1)
    if value < 0:
        raise _bad_request(f"{name}: invalid value {shown!r}: must not be negative")
    if value > INT64_MAX:
        raise _bad_request(f"{name}: invalid value {shown!r}: must be at most {INT64_MAX}")
    return value


def _continue_token(rv: int, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"rv": rv, "start": offset}).encode()).decode()


def _continue_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        start = json.loads(base64.urlsafe_b64decode(token.encode()))["start"]
    except (ValueError, KeyError, TypeError, binascii.Error, RecursionError):
        raise _bad_request("continue: invalid token") from None
    if not isinstance(start, int) or isinstance(start, bool) or not 0 <= start <= INT64_MAX:
        raise _bad_request("continue: invalid token")
    return start
