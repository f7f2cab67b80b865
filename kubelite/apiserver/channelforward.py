"""Port-forward over WebSocket channels (`v4.channel.k8s.io`), as the kubelet serves it to clients
that do not tunnel SPDY — the Python `kubernetes` client's `portforward()` among them.

Owns: the ports a request names (`ports`, repeated or comma-separated: at least one, each 1-65535,
none twice) and `ChannelForward`, one forward: for the i-th port, channel 2i carries its data both
ways and channel 2i+1 its errors, from the server only; the server's first message on each channel
is the port, two bytes little-endian (the client checks it). Each port is one TCP connection,
dialled when the WebSocket opens, on localhost inside the pod's network namespace, by the dial the
SPDY path uses (`runtime.netns.connect`, the namespace switch in a worker thread). What the pod
sends goes to the port's data channel; the pod's side ending ends that port, its error channel
silent. A dial that fails, or a pod gone, is told on the error channel in the kubelet's words
(`error forwarding port P to pod NS/NAME, uid UID: why`), and the client closes that port. The
WebSocket closes once every port is over; the client's leaving closes every connection in the pod.
The protocol has no half-close: a client's end of input is its closing the WebSocket.

Bounds: a client message is at most `MAX_MESSAGE_BYTES`; data for a port whose dial is not done
yet is held up to `portforward.MAX_EARLY_BYTES`; a pod that reads nothing for `portforward.STALLED_S`
has its connection closed and the error channel says so (until then the other ports wait: the
WebSocket is read in order); TCP keepalive finds a client whose machine went away (`channels`).
Everything runs on the API's event loop but the dial's namespace switch.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from kubelite.apiserver.channels import Channels
from kubelite.errors import RuntimeError_
from kubelite.runtime import netns

log = logging.getLogger("kubelite.api")

#: The largest client message: the Python client sends what one read of its socket gives (1 MiB).
MAX_MESSAGE_BYTES = 1024 * 1024 + 64 * 1024
READ_BYTES = 64 * 1024
#: The most ports one request may name (each holds a socket in the pod).
MAX_PORTS = 64


class BadPorts(ValueError):
    """The request's ports cannot be forwarded: the message says why (a 400's)."""


def ports_of(raw_path: str) -> list[int]:
    """The ports of a channel forward's query, in order; BadPorts naming the first problem."""
    ports: list[int] = []
    for key, value in parse_qsl(urlsplit(raw_path).query, keep_blank_values=True):
        if key != "ports":
            continue
        for item in value.split(","):
            item = item.strip()
            if not item.isascii() or not item.isdigit():
                raise BadPorts(f'unable to parse "{item}" as a port')
            port = int(item)
            if not 0 < port < 65536:
                raise BadPorts(f'port "{item}" must be between 1 and 65535')
            if port in ports:
                raise BadPorts(f'port "{item}" is named twice')
            ports.append(port)
    if not ports:
        raise BadPorts('query parameter "ports" is required')
    if len(ports) > MAX_PORTS:
        raise BadPorts(f"at most {MAX_PORTS} ports may be forwarded at once")
    return ports


def websocket(protocol: str) -> web.WebSocketResponse:
    return web.WebSocketResponse(protocols=(protocol,), max_msg_size=MAX_MESSAGE_BYTES, autoclose=True,
                                 autoping=True)


@dataclass
class Port:
    """One forwarded port: its channels, its connection in the pod."""

    index: int
    number: int
    writer: asyncio.StreamWriter | None = None
    early: bytearray = field(default_factory=bytearray)
    over: bool = False

    @property
    def data(self) -> int:
        return 2 * self.index

    @property
    def error(self) -> int:
        return 2 * self.index + 1


class ChannelForward:
    """One forward over one WebSocket: every port's connection, until all are over or the client leaves."""

    def __init__(self, ws: web.WebSocketResponse, ports: list[int], open_socket: Callable[[int], Any], *,
                 executor: Executor | None, name: str, uid: str, transport: asyncio.BaseTransport | None = None,
                 early_bytes: int, stalled_s: float) -> None:
        self.link = Channels(ws, transport)
        self.ports = [Port(i, number) for i, number in enumerate(ports)]
        self.open_socket, self.executor, self.name, self.uid = open_socket, executor, name, uid
        self.early_bytes, self.stalled_s = early_bytes, stalled_s
        self.sending = asyncio.Lock()

    async def run(self) -> None:
        pods: list[asyncio.Task] = []
        client: asyncio.Task | None = None
        try:
            for port in self.ports:   # the kubelet's first messages: each channel's port
                prefix = port.number.to_bytes(2, "little")
                await self._send(port.data, prefix)
                await self._send(port.error, prefix)
            pods = [asyncio.create_task(self._pod_side(port)) for port in self.ports]
            client = asyncio.create_task(self._client_side())
            every = asyncio.gather(*pods)
            await asyncio.wait({client, every}, return_when=asyncio.FIRST_COMPLETED)
        except (ConnectionError, OSError):
            log.debug("API: port-forward %s: the client left", self.name)
        finally:
            for port in self.ports:
                self._end(port)
            for task in [*pods, *([client] if client else [])]:
                task.cancel()
            await asyncio.gather(*pods, *([client] if client else []), return_exceptions=True)
            try:
                await asyncio.wait_for(self.link.close(), 5)
            except (asyncio.TimeoutError, ConnectionError):
                pass

    # ---- the client's side

    async def _client_side(self) -> None:
        """The client's messages to the pods, in order, until it leaves."""
        while (frame := await self.link.receive()) is not None:
            channel, data = frame
            if channel % 2 or channel // 2 >= len(self.ports):   # an error channel, or no port's
                log.debug("API: port-forward %s: a message on channel %d ignored", self.name, channel)
                continue
            await self._to_pod(self.ports[channel // 2], data)

    async def _to_pod(self, port: Port, data: bytes) -> None:
        if port.over or not data:
            return
        if port.writer is None:
            port.early += data
            if len(port.early) > self.early_bytes:
                await self._fail(port, f"over {self.early_bytes} bytes sent before the pod answered")
            return
        try:
            port.writer.write(data)
            async with asyncio.timeout(self.stalled_s):
                await port.writer.drain()
        except TimeoutError:
            await self._fail(port, f"the pod read nothing for {self.stalled_s:g}s")
        except (ConnectionError, OSError):
            self._end(port)

    # ---- the pod's side

    async def _pod_side(self, port: Port) -> None:
        """Dial the port in the pod, then send what the pod sends until it ends."""
        try:
            reader, writer = await netns.connect(self.open_socket, port.number, executor=self.executor)
        except (RuntimeError_, OSError) as exc:
            log.info("API: port-forward %s: port %d: %s", self.name, port.number, exc)
            await self._fail(port, str(exc))
            return
        if port.over:
            writer.transport.abort()
            return
        port.writer = writer
        try:
            if port.early:
                writer.write(bytes(port.early))
                port.early.clear()
                await writer.drain()
            while chunk := await reader.read(READ_BYTES):
                await self._send(port.data, chunk)
        except (ConnectionError, OSError) as exc:
            log.debug("API: port-forward %s: port %d: %s", self.name, port.number, exc)
            self._end(port)
            return
        port.over = True   # the pod's side ended: closed in order, what was written to it sent first
        writer.close()

    async def _fail(self, port: Port, why: str) -> None:
        """End a port with the kubelet's message on its error channel."""
        if port.over:
            return
        self._end(port)
        try:
            await self._send(port.error, f"error forwarding port {port.number} to pod {self.name}, uid {self.uid}: "
                                         f"{why}".encode())
        except (ConnectionError, OSError):
            pass

    def _end(self, port: Port) -> None:
        port.over = True
        port.early.clear()
        if port.writer is not None:
            port.writer.transport.abort()

    async def _send(self, channel: int, data: bytes) -> None:
        if self.link.ws.closed:
            raise ConnectionResetError("the client left")
        async with self.sending:
            await self.link.send(channel, data)
