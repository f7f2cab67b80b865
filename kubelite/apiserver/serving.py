"""What runs on the API's event loop: the listener, each request's way to its route, and streams.

Owns: the listening socket's server, the guard of open connections, the TLS handshake of each
accepted one, and for each request: the token check that decides keep-alive (only a token buys
it: an answer to a request without it closes its connection), the body (only a
SelfSubjectAccessReview has one) read up to the body limit and never past, the `Call` that computes
the answer in a thread, and the chunks of a watch or a followed log written as they come (at most
`max_streams` at once; more are 429 TooManyRequests). An admin's upgrade of a pod's
streaming subresource is taken before any `Call`: a portforward's (WebSocket or SPDY) by
`portforward` (a stream too), an exec's or an attach's by the handler `SESSIONS` names for it (`podexec`,
`attach`), at
most `max_sessions` at once (429 beyond); anyone else's upgrade goes to the `Call`, which refuses
it. An error of the server's own anywhere in it is a `Status` 500 and one error line naming the
request, never aiohttp's own error page.

The loop never blocks: every read of the state database, the watch feed's generator and the log
files runs in a thread (a small pool for plain reads, one thread per open stream); the loop only
moves bytes.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from kubelite.apiserver import attach, auth, objects, podexec, portforward
from kubelite.apiserver.connections import (SERVER, Accept, Connection, Guard, Manager, Slot, closing,
                                            internal_error, request_line, start_tls, status_response)
from kubelite.apiserver.routes import ACCESS_REVIEWS, END, ApiError, Call, Stream, path_parts

if TYPE_CHECKING:
    from kubelite.apiserver.server import ApiServer

log = logging.getLogger("kubelite.api")

#: Threads for plain reads (lists, gets, logs without follow, /metrics).
READ_THREADS = 4
#: An unread request body (a refused write) is never read: the connection closes after the answer.
LINGER_S = 0.0
LISTEN_BACKLOG = 1024
#: The streaming subresources of a pod taken as an admin's WebSocket upgrade, and their handlers:
#: `handler(api, request, access, namespace, pod, raw_query, threads, live)`.
SESSIONS = {"exec": podexec.serve, "attach": attach.serve}


class Serving:
    """What lives on the API's event loop: the listener, the open connections and streams, the
    thread pools for blocking reads."""

    def __init__(self, api: ApiServer) -> None:
        self.api, self.limits = api, api.limits
        self.loop = asyncio.get_running_loop()
        self.guard = Guard(self.limits.cap())
        self.streams = 0
        self.handshakes: set[asyncio.Task] = set()
        self.reads = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="kubelite-api-read")
        self.stream_threads = ThreadPoolExecutor(max_workers=self.limits.max_streams,
                                                 thread_name_prefix="kubelite-api-stream")
        self.sessions = 0
        #: The processes of open sessions, killed when the server stops.
        self.live: set = set()
        # a session's wait for its exit, and its kill beside it
        self.session_threads = ThreadPoolExecutor(max_workers=2 * self.limits.max_sessions + 2,
                                                  thread_name_prefix="kubelite-api-session")
        self.manager = Manager(self.handle, limits=self.limits, loop=self.loop,
                               keepalive_timeout=self.limits.idle_timeout_s, access_log=None,
                               lingering_time=LINGER_S, max_line_size=self.limits.max_line_bytes,
                               max_field_size=self.limits.max_line_bytes)
        self.listener: asyncio.AbstractServer | None = None

    @classmethod
    async def start(cls, api: ApiServer) -> "Serving":
        serving = cls(api)
        serving.listener = await serving.loop.create_server(lambda: Accept(serving.accepted), sock=api.socket,
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
        if self.live:   # the commands of open sessions end with the server, as when their clients leave
            await asyncio.wait([self.loop.run_in_executor(self.session_threads, s.kill) for s in list(self.live)],
                               timeout=10)
        await asyncio.sleep(0)
        self.reads.shutdown(wait=False, cancel_futures=True)
        self.stream_threads.shutdown(wait=False, cancel_futures=True)
        self.session_threads.shutdown(wait=False, cancel_futures=True)

    # ---- connections

    def accepted(self, transport: asyncio.Transport) -> None:
        slot = self.guard.admit(transport)
        if slot is None:
            transport.abort()
            return
        transport.pause_reading()
        task = self.loop.create_task(self._handshake(slot, self.loop.time()))
        self.handshakes.add(task)
        task.add_done_callback(self.handshakes.discard)

    async def _handshake(self, slot: Slot, accepted_at: float) -> None:
        transport = slot.transport
        connection = self.manager.connection(slot=slot, accepted_at=accepted_at)
        try:
            secure = await start_tls(self.loop, transport, connection, self.api.context,
                                     self.limits.headers_timeout_s)
        except asyncio.CancelledError:
            transport.abort()
            slot.release()
            raise
        except Exception as exc:  # noqa: BLE001 — a failed handshake (plain HTTP, a scan, a timeout) is the client's
            log.debug("API: TLS handshake failed: %s: %s", type(exc).__name__, exc)
            transport.abort()
            slot.release()
            return
        if secure is None or secure.is_closing():
            slot.release()
            return
        connection.connection_made(secure)

    # ---- requests

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        connection = request.protocol
        access = auth.Access.NONE
        try:
            if isinstance(connection, Connection):
                connection.head_received()
            access = auth.access(request.headers.get("Authorization"), self.api.token, self.api.admin_token)
            if access and isinstance(connection, Connection):
                connection.authenticated = True
            response = await self._answer(request, access)
        except Exception as exc:  # noqa: BLE001 — an error of this server's own: a Status 500, never aiohttp's page
            if request.writer.output_size > 0:
                raise
            response = internal_error(request, exc)
        response.headers["Server"] = SERVER
        if not access:   # only a token buys keep-alive: an anonymous client holds nothing after its answer
            response.force_close()
        return response

    async def _answer(self, request: web.BaseRequest, access: auth.Access) -> web.StreamResponse:
        limits = self.limits
        try:
            split = urlsplit(request.raw_path)
            query = dict(parse_qsl(split.query, keep_blank_values=True))
        except ValueError as exc:
            return closing(status_response(400, objects.status(400, "BadRequest", f"invalid request target: {exc}")))
        path = split.path.rstrip("/") or "/"
        if access >= auth.Access.ADMIN and portforward.wants(request, path):   # port-forward's upgrade
            return await portforward.serve(self, request, path, access)
        if access >= auth.Access.ADMIN and (target := session_target(request, path)) is not None:
            return await self._session(request, access, target, split.query)
        length = request.content_length
        if length is not None and length > limits.max_body_bytes:
            return closing(status_response(413, objects.status(
                413, "RequestEntityTooLarge", f"the request body is larger than {limits.max_body_bytes} bytes")))
        body = b""
        if access and request.method == "POST" and path == ACCESS_REVIEWS and request.body_exists:
            try:
                async with asyncio.timeout(limits.headers_timeout_s):
                    body = await self._read_body(request)
            except ApiError as exc:
                return closing(status_response(exc.body["code"], exc.body))
            except TimeoutError:
                return closing(status_response(400, objects.status(
                    400, "BadRequest", f"the request body did not arrive within {limits.headers_timeout_s:g}s")))
            except (ConnectionError, asyncio.IncompleteReadError, web.HTTPException):
                return closing(status_response(400, objects.status(400, "BadRequest", "the request body was cut off")))
        call = Call(self.api, request.method, path, query, request.headers, body, access,
                    request_line=request_line(request))
        result = await self.loop.run_in_executor(self.reads, call.answer)
        if isinstance(result, Stream):
            return await self._stream(request, result)
        response = web.Response(status=result.code, body=result.body, headers={
            "Content-Type": result.content_type, "Cache-Control": "no-cache, private"})
        return closing(response) if result.close else response

    async def _session(self, request: web.BaseRequest, access: auth.Access, target: tuple[str, str, str],
                       raw_query: str) -> web.StreamResponse:
        subresource, namespace, pod = target
        if self.sessions >= self.limits.max_sessions:
            return closing(status_response(429, objects.status(
                429, "TooManyRequests", f"too many exec, attach and port-forward sessions open "
                f"({self.limits.max_sessions})", retry_after=1), headers={"Retry-After": "1"}))
        self.sessions += 1
        try:
            response = await SESSIONS[subresource](self.api, request, access, namespace, pod, raw_query,
                                                   self.session_threads, self.live)
        finally:
            self.sessions -= 1
        return response if isinstance(response, web.WebSocketResponse) else closing(response)

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        """The request body, up to the body limit and never a byte past (413 beyond)."""
        limit = self.limits.max_body_bytes
        length = request.content_length
        if length is not None:
            return await request.content.readexactly(length)
        data = bytearray()
        while chunk := await request.content.readany():
            data += chunk
            if len(data) > limit:
                raise ApiError(objects.status(413, "RequestEntityTooLarge",
                                              f"the request body is larger than {limit} bytes"))
        return bytes(data)

    async def _stream(self, request: web.BaseRequest, stream: Stream) -> web.StreamResponse:
        if self.streams >= self.limits.max_streams:
            self.loop.run_in_executor(self.reads, stream.close)
            return status_response(429, objects.status(
                429, "TooManyRequests", f"too many watches and followed logs open ({self.limits.max_streams})",
                retry_after=1), headers={"Retry-After": "1"})
        self.streams += 1
        response = web.StreamResponse(status=200, headers={"Content-Type": stream.content_type,
                                                           "Cache-Control": "no-cache, private", "Server": SERVER})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            while True:
                chunk = await self.loop.run_in_executor(self.stream_threads, next, stream.chunks, END)
                if chunk is END:
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


def session_target(request: web.BaseRequest, path: str) -> tuple[str, str, str] | None:
    """(subresource, namespace, pod) of an upgrade of a pod's streaming subresource
    (`/api/v1/namespaces/NS/pods/NAME/exec`); None for any other request. Any upgrade counts (a
    client that falls back to SPDY gets the same answers about the pod, then one that says
    WebSocket); only a WebSocket one is taken."""
    if not request.headers.get("Upgrade", "").strip():
        return None
    parts = path_parts(path)
    if len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods" and parts[6] in SESSIONS:
        return parts[6], parts[3], parts[5]
    return None
