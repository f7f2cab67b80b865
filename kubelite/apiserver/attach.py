"""`pods/{name}/attach`: a client joined to a container's main process, for the admin credential.

Owns the audit of each attach opened or refused (what it asks and the answers before the upgrade
are `sessions`'), and the session: the runtime's attach (`runtime.attach`, conmon's attach socket) joined to the channels of
the WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`: 0 stdin, 1 stdout, 2 stderr, 3 error,
4 resize, v5's 255 close). The serving loop counts sessions and calls `serve` only for an admin's
upgrade.

Bounds: a client message is at most `channels.MAX_MESSAGE_BYTES`; TCP keepalive finds a client
whose machine went away, and while its input waits for a process that does not read it, whether
it left is looked at each `GONE_CHECK_S` (as for exec: no ping, whose answer would wait behind
that input; decision 0021). conmon writes to an attached client with blocking writes, so the
session's output is always read at once (the loop's `add_reader`) and queued for the client; a
client that lets more than `MAX_BACKLOG_BYTES` pile up is dropped rather than let it stall the
container's output. When the client goes, the session detaches: the container runs on (with
`stdinOnce`, its stdin closes). When the container's process ends, the error channel says
Success and the WebSocket closes. Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from concurrent.futures import Executor
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from kubelite.apiserver import audit, objects, sessions
from kubelite.apiserver.channels import (CLOSE, ERROR, GONE_CHECK_S, RESIZE, STDERR, STDIN, STDOUT, V5, Channels,
                                        terminal_size)
from kubelite.apiserver.auth import Access
from kubelite.apiserver.connections import SERVER, status_response
from kubelite.errors import KubeliteError
from kubelite.runtime.attach import RESIZE_RETRY_S, RESIZE_TRIES, STDERR as CONMON_STDERR, AttachSession

if TYPE_CHECKING:
    from kubelite.apiserver.server import ApiServer

log = logging.getLogger("kubelite.api")

#: A client that lets this much output wait unsent is dropped (conmon must never wait for it).
MAX_BACKLOG_BYTES = 4 * 1024 * 1024
#: Output waiting for the client is sent in messages of up to about this size.
MESSAGE_BYTES = 64 * 1024


async def serve(api: ApiServer, request: web.BaseRequest, access: Access, namespace: str, pod: str,
                raw_query: str, threads: Executor, live: set) -> web.StreamResponse:
    """One attach, from the admin's upgrade request to the end of its WebSocket."""
    loop = asyncio.get_running_loop()
    try:
        req = sessions.parse(namespace, pod, raw_query)
        sessions.require_streams(req)
        name, container_id = await loop.run_in_executor(threads, sessions.container_id, api, req)
        ws = sessions.websocket(request, "attach")
        runtime = sessions.runtime_of(api)
        session: AttachSession = await loop.run_in_executor(
            threads, lambda: runtime.attach_container(container_id, stdin=req.stdin))
    except sessions.Refused as exc:
        audit.refused(access, "attach", namespace, pod, exc.reason)
        return status_response(exc.code, exc.body)
    except KubeliteError as exc:   # the container stopped meanwhile, or conmon is gone
        audit.refused(access, "attach", namespace, pod, str(exc))
        return status_response(500, objects.status(500, "InternalError", f"error attaching to container: {exc}"))
    audit.opened(access, "attach", namespace, pod, name)
    ws.headers["Server"] = SERVER
    bridge: Bridge | None = None
    try:
        await ws.prepare(request)
        bridge = Bridge(ws, session, req, request.transport)
        await bridge.run()
    finally:
        session.close()
        if bridge is not None and bridge.fell_behind:
            if request.transport is not None:   # it reads nothing: no goodbye waits for it
                request.transport.abort()
        elif not ws.closed and ws.prepared:
            await ws.close()
    return ws


class Bridge:
    """The session's output to the client's channels, the client's frames to the session."""

    def __init__(self, ws: web.WebSocketResponse, session: AttachSession, req: sessions.SessionRequest,
                 transport: asyncio.BaseTransport | None = None) -> None:
        self.ws, self.session, self.req = ws, session, req
        self.link = Channels(ws, transport)   # TCP keepalive on the client's socket, and `gone`
        self.resizing = False       # a size waits for conmon (one retry chain at a time)
        self.done = False
        self.v5 = ws.ws_protocol == V5
        self.loop = asyncio.get_running_loop()
        self.backlog: deque[bytes] = deque()
        self.backlog_bytes = 0
        self.news = asyncio.Event()
        self.ended = False          # the container's process ended (conmon closed the session)
        self.fell_behind = False    # the client let too much output wait: dropped
        self.dropped: asyncio.Future[None] = self.loop.create_future()

    def _readable(self) -> None:
        """On the loop, whenever conmon has sent: everything there is read now, never left waiting."""
        while True:
            piece = self.session.read()
            if piece is None:
                self.ended = True
                self.loop.remove_reader(self.session.fileno())
                break
            stream, data = piece
            if not data:
                break
            channel = STDERR if stream == CONMON_STDERR and not self.session.tty else STDOUT
            if (channel == STDOUT and not self.req.stdout) or (channel == STDERR and not self.req.stderr):
                continue
            self.backlog.append(bytes((channel,)) + data)
            self.backlog_bytes += len(data)
            if self.backlog_bytes > MAX_BACKLOG_BYTES:
                log.warning("API: an attach's client read too slowly (over %d bytes waiting): dropped",
                            MAX_BACKLOG_BYTES)
                self.loop.remove_reader(self.session.fileno())
                self.fell_behind = True
                if not self.dropped.done():
                    self.dropped.set_result(None)
                break
        self.news.set()

    async def _send(self) -> None:
        while True:
            await self.news.wait()
            self.news.clear()
            while self.backlog:   # conmon's 8 KiB packets of one stream, joined into fewer messages
                frame = bytearray(self.backlog.popleft())
                while self.backlog and self.backlog[0][0] == frame[0] and len(frame) < MESSAGE_BYTES:
                    frame += self.backlog.popleft()[1:]
                self.backlog_bytes -= len(frame) - 1
                await self.ws.send_bytes(bytes(frame))
            if self.ended:
                await self.ws.send_bytes(bytes((ERROR,)) + json.dumps(
                    {"metadata": {}, "status": "Success"}, separators=(",", ":")).encode())
                return

    async def _receive(self) -> None:
        """The client's frames until it goes."""
        while True:
            message = await self.ws.receive()
            if message.type == WSMsgType.BINARY:
                data = message.data
            elif message.type == WSMsgType.TEXT:
                data = message.data.encode()
            else:   # CLOSE, CLOSING, CLOSED, ERROR (a message over the size limit too)
                return
            if not data:
                continue
            channel, data = data[0], data[1:]
            if channel == STDIN and self.session.stdin:
                await self._write(data)
            elif channel == RESIZE:
                size = terminal_size(data)
                if size is not None and not self.session.resize(size[1], size[0]):
                    self._resize_later()
            elif channel == CLOSE and self.v5 and data[:1] == bytes((STDIN,)):
                self.session.close_stdin()

    def _resize_later(self, tries: int = RESIZE_TRIES) -> None:
        """The size waits until conmon has read the one before (`runtime.attach`): asked again
        every RESIZE_RETRY_S, at most `tries` times, by one chain of retries at a time, none after
        the session ended (the newest size is the session's to send)."""
        if self.resizing and tries == RESIZE_TRIES:
            return
        self.resizing = not (self.done or self.session.flush_resize() or tries <= 0)
        if self.resizing:
            self.loop.call_later(RESIZE_RETRY_S, self._resize_later, tries - 1)

    async def _write(self, data: bytes) -> None:
        """All of `data` to the container's stdin, as fast as it takes it (the client waits meanwhile)."""
        view = memoryview(data)
        while view:
            taken = self.session.write(bytes(view))
            view = view[taken:]
            if view:
                ready = self.loop.create_future()
                self.loop.add_writer(self.session.fileno(), lambda: ready.done() or ready.set_result(None))
                try:   # the client is not read meanwhile: whether it left is looked at instead
                    while not ready.done():
                        await asyncio.wait({ready}, timeout=GONE_CHECK_S)
                        if not ready.done() and self.link.gone():
                            raise ConnectionResetError("the client left while its input waited")
                finally:
                    self.loop.remove_writer(self.session.fileno())

    async def run(self) -> None:
        """Until the container's process ends (its output sent, then Success on the error channel),
        the client goes, or the client falls too far behind."""
        self.loop.add_reader(self.session.fileno(), self._readable)
        sender = asyncio.ensure_future(self._send())
        receiver = asyncio.ensure_future(self._receive())
        try:
            await asyncio.wait({sender, receiver, self.dropped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.done = True
            self.loop.remove_reader(self.session.fileno())
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
            self.dropped.cancel()
