"""The channel protocol of streaming subresources (exec, attach) over a WebSocket, and its bridge.

Owns: the subprotocols served (`v5.channel.k8s.io`, `v4.channel.k8s.io`) and the choice among
those a client offers; `Channels`, which reads and writes channel frames on an aiohttp
`WebSocketResponse` (each binary message is one byte of channel — 0 stdin, 1 stdout, 2 stderr,
3 error, 4 resize — then the data; v5 adds channel 255, whose one-byte message closes the channel
it names: kubectl closes stdin so); the `Status` the error channel carries at the end (Success, or
Failure with reason NonZeroExitCode and the exit code as the cause kubectl turns into its own exit
code); and `bridge`, which joins a session's descriptors to the channels until the command exits
or the client leaves.

The bridge never blocks the event loop: descriptors are non-blocking and waited on with the loop's
`add_reader`/`add_writer`; the blocking wait for the exit code and the kill run in the caller's
threads. Backpressure both ways: output is read only as fast as the client takes it, and the
client's input only as fast as the command reads it. When the client's connection goes — it
closes, its TCP connection ends (seen even behind input the command has not read), or keepalive
finds its machine gone — the session is killed. No ping and no idle timeout: an idle shell lives
as long as its client. Nothing here knows pods or containers: the routes (`podexec`) do.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import socket
from concurrent.futures import Executor
from typing import Any, Callable, Sequence

from aiohttp import WSMsgType, web

from kubelite.runtime.streaming import ExecSession

log = logging.getLogger("kubelite.api")

V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"
#: What the server speaks, best first; v5 adds the close signal (channel 255).
PROTOCOLS = (V5, V4)
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
#: The largest message a client may send (a stdin chunk, a resize); larger ends the session.
MAX_MESSAGE_BYTES = 1024 * 1024
#: The largest read from a session's descriptor, sent as one message.
CHUNK_BYTES = 32 * 1024
#: A session's connection is probed by TCP keepalive after this long without traffic, then every
#: KEEPALIVE_INTERVAL_S; after KEEPALIVE_COUNT probes unanswered the peer is gone (its machine or
#: network vanished without a FIN). The kernel answers probes, so a live client that sends nothing
#: (an idle shell) or cannot be read (its command reads no stdin) is never taken for gone; a
#: WebSocket ping would be, as its pong waits behind the unread input.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 30, 10, 3
#: While the command does not read its stdin (and so the client is not read), whether the client
#: has gone is looked at this often.
GONE_CHECK_S = 1.0
#: Linux's TCP_ESTABLISHED in `tcp_info.tcpi_state`: any other state means the peer has closed.
TCP_ESTABLISHED = 1
#: After the command exits, what it left in its output is still sent for at most this long (a
#: process it started in the background may hold the pipe open forever).
DRAIN_S = 2.0


def offered(header: str | None) -> list[str]:
    """The subprotocols a client offers in `Sec-WebSocket-Protocol`, in its order."""
    return [p.strip() for p in (header or "").split(",") if p.strip()]


def choose(header: str | None) -> str | None:
    """The subprotocol to speak: the first the client offers that this server speaks; None if none."""
    for protocol in offered(header):
        if protocol in PROTOCOLS:
            return protocol
    return None


def exit_status(code: int, command: Sequence[str] = ()) -> dict[str, Any]:
    """The `Status` of the error channel for an exit code, as the kubelet writes it."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command {list(command)}, "
                       f"exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def failure(message: str) -> dict[str, Any]:
    """The error channel's `Status` for a session that failed without an exit code."""
    return {"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500}


def terminal_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a resize message (`{"Width": 80, "Height": 24}`), each 1 to 65535; None
    (and one debug line) for anything else."""
    try:
        size = json.loads(data)
        width, height = int(size.get("Width", 0)), int(size.get("Height", 0))
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError):
        width = height = 0
    if 0 < width <= 0xFFFF and 0 < height <= 0xFFFF:
        return width, height
    log.debug("API: a resize message that is no terminal size: %r", data[:100])
    return None


def websocket(protocol: str, *, heartbeat: float | None = None) -> web.WebSocketResponse:
    """The response that upgrades to a channel WebSocket speaking `protocol` (see `choose`); with
    `heartbeat`, a ping that often, and a client that answers none is gone."""
    return web.WebSocketResponse(protocols=(protocol,), max_msg_size=MAX_MESSAGE_BYTES, heartbeat=heartbeat,
                                 autoclose=True, autoping=True)


class ClientGone(Exception):
    """The client's connection closed while the bridge waited on the command."""


class Channels:
    """Channel frames on a prepared WebSocket; `transport` is its request's (TCP keepalive is
    turned on for its socket, and `gone` looks at it)."""

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None = None) -> None:
        self.ws, self.transport = ws, transport
        self.v5 = ws.ws_protocol == V5
        self._socket = transport.get_extra_info("socket") if transport is not None else None
        if self._socket is not None:
            try:
                self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
                self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
                self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)
            except (OSError, AttributeError):
                pass

    def gone(self) -> bool:
        """Whether the client has gone, without reading from it: the WebSocket closed, the
        transport closing, or the TCP connection past ESTABLISHED (a FIN arrived behind unread data,
        or keepalive gave up)."""
        if self.ws.closed or (self.transport is not None and self.transport.is_closing()):
            return True
        if self._socket is None:
            return False
        try:
            return self._socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != TCP_ESTABLISHED
        except (OSError, AttributeError):
            return False

    async def send(self, channel: int, data: bytes) -> None:
        await self.ws.send_bytes(bytes((channel,)) + data)

    async def error(self, status: dict[str, Any]) -> None:
        """The final `Status` on the error channel."""
        await self.send(ERROR, json.dumps(status, separators=(",", ":")).encode())

    async def receive(self) -> tuple[int, bytes] | None:
        """The next frame from the client, (channel, data); None when the client has gone (closed,
        broken, or sent what the protocol does not allow). A v5 close signal is (CLOSE, b"<channel>")."""
        while True:
            message = await self.ws.receive()
            if message.type == WSMsgType.BINARY:
                data = message.data
            elif message.type == WSMsgType.TEXT:   # not in v4/v5 (their base64 twins are not served)
                data = message.data.encode()
            else:   # CLOSE, CLOSING, CLOSED, ERROR (a message over the size limit too)
                return None
            if not data:
                continue
            return data[0], data[1:]

    async def close(self) -> None:
        if not self.ws.closed:
            await self.ws.close()


# ---------------------------------------------------------------------- descriptors on the loop


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, *, write: bool, timeout: float | None = None) -> None:
    future = loop.create_future()

    def ready() -> None:
        if not future.done():
            future.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, ready)
    try:
        await asyncio.wait_for(future, timeout)
    except asyncio.TimeoutError:
        pass
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


async def read_fd(loop: asyncio.AbstractEventLoop, fd: int) -> bytes:
    """Up to CHUNK_BYTES from a non-blocking descriptor; b"" at its end (a terminal whose other
    side closed says EIO: its end too)."""
    while True:
        try:
            return os.read(fd, CHUNK_BYTES)
        except BlockingIOError:
            await _ready(loop, fd, write=False)
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise


async def write_fd(loop: asyncio.AbstractEventLoop, fd: int, data: bytes,
                   gone: Callable[[], bool] | None = None) -> None:
    """All of `data` to a non-blocking descriptor, as fast as its reader takes it; `ClientGone`
    when `gone()` says so while waiting (looked at every GONE_CHECK_S)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            if gone is not None and gone():
                raise ClientGone() from None
            await _ready(loop, fd, write=True, timeout=GONE_CHECK_S if gone is not None else None)


# ---------------------------------------------------------------------- the bridge


async def _pump_out(loop: asyncio.AbstractEventLoop, fd: int, channel: int, channels: Channels) -> None:
    while data := await read_fd(loop, fd):
        await channels.send(channel, data)


async def _pump_in(loop: asyncio.AbstractEventLoop, session: ExecSession, channels: Channels) -> None:
    """The client's frames into the session until the client goes (returns then)."""
    while (frame := await channels.receive()) is not None:
        channel, data = frame
        if channel == STDIN and session.stdin is not None:
            try:
                await write_fd(loop, session.stdin, data, channels.gone)
            except ClientGone:
                return
            except OSError:   # the command closed its stdin (or exited): what the client sends is dropped
                session.close_stdin()
        elif channel == RESIZE:
            size = terminal_size(data)
            try:
                if size is not None:
                    session.resize(*size)
            except OSError:
                log.debug("API: a resize the session could not take: %r", data[:100])
        elif channel == CLOSE and channels.v5 and data[:1] == bytes((STDIN,)):
            session.close_stdin()


async def bridge(channels: Channels, session: ExecSession, threads: Executor,
                 command: Sequence[str] = ()) -> int | None:
    """Join the session to the channels until the command exits (its output sent, then its exit
    `Status` on the error channel) or the client goes (the session killed). The exit code, or
    None when the client left first. The session is closed either way; the WebSocket is not."""
    loop = asyncio.get_running_loop()
    outputs = [asyncio.ensure_future(_pump_out(loop, fd, channel, channels))
               for fd, channel in ((session.stdout, STDOUT), (session.stderr, STDERR)) if fd is not None]
    client = asyncio.ensure_future(_pump_in(loop, session, channels))
    exited = loop.run_in_executor(threads, session.wait)
    code: int | None = None
    try:
        done, _ = await asyncio.wait({client, exited}, return_when=asyncio.FIRST_COMPLETED)
        if exited in done:
            code = exited.result()
            if outputs:   # the rest of its output; a background child holding the pipe gets DRAIN_S
                _, late = await asyncio.wait(outputs, timeout=DRAIN_S)
                for task in late:
                    task.cancel()
            for task in outputs:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.debug("API: a session's output ended: %r", task.exception())
            if not channels.ws.closed:
                await channels.error(exit_status(code, command))
        return code
    finally:
        for task in (client, *outputs):
            task.cancel()
        await asyncio.gather(client, *outputs, return_exceptions=True)
        if code is None:   # the client left (or this failed): the command goes too
            await loop.run_in_executor(threads, session.kill)
            try:
                await asyncio.wait_for(asyncio.shield(exited), timeout=10)
            except (asyncio.TimeoutError, Exception):   # noqa: BLE001 — it was killed; its code no longer matters
                pass
        session.close()
