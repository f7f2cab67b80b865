"""Port-forward through the API: kubectl's SPDY/3.1 streams tunnelled in a WebSocket, each pair of
streams one TCP connection dialled inside the pod's network namespace.

Owns: `pods/{name}/portforward` for the admin credential — `target` tells the request path's pod,
`serve` upgrades the request to a WebSocket of the protocol `SPDY/3.1+portforward.k8s.io`
(KEP-4006), or to kubectl's fallback, a raw `Upgrade: SPDY/3.1` (`RawSpdy`), and runs a `Session`
until kubectl leaves; other requests of the path are left to the `Call`, which refuses them. The kubelet's protocol over the streams: kubectl opens, for each local connection,
an error stream and a data stream with the headers `streamType`, `port` and `requestID`; once both
are there the port is dialled on localhost in the pod (`runtime.netns.connect`, in a worker thread)
and bytes are copied both ways; the end of the pod's side ends the data stream, then the error
stream, empty. A dial the pod refuses ends that connection only (its error stream stays empty, so
kubectl keeps the forward: decision 0022); a pod whose sandbox is gone writes why on the error
stream, and kubectl ends the forward. A client that offers no SPDY but `v4.channel.k8s.io` (the
Python `kubernetes` client) gets the kubelet's channel forward instead (`channelforward`: one
connection per port named in the query), behind the same checks, dial, audit and stream slot.

Bounds: one WebSocket message at most `MAX_MESSAGE_BYTES`; frames and header blocks as `spdy`
bounds them; at most `MAX_FORWARDED` connections at once in one forward (more streams are reset,
REFUSED_STREAM); a stream whose pair does not come within `PAIR_TIMEOUT_S` is reset; data sent
before the dial completes is held up to `MAX_EARLY_BYTES`; a forward that hears nothing for
`IDLE_TIMEOUT_S` (kubectl pings every 10 s) ends; a pod that reads nothing of what is sent to it
for `STALLED_S` has that connection reset (until then the forward's other connections wait: the
WebSocket is read in order). The session counts as one of the server's
streams (`max_streams`, 429 beyond). Everything runs on the API's event loop except the dial's
namespace switch and the reads of the store and the sandbox records (threads).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from concurrent.futures import Executor
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import WSMsgType, web

from kubelite.apiserver import audit, channelforward, channels, objects, sessions, spdy
from kubelite.apiserver.auth import Access
from kubelite.apiserver.connections import status_response
from kubelite.apiserver.routes import path_parts
from kubelite.errors import RuntimeError_
from kubelite.runtime import netns, targets
from kubelite.runtime.view import RuntimeView

if TYPE_CHECKING:
    from kubelite.apiserver.serving import Serving

log = logging.getLogger("kubelite.api")

PROTOCOL = "SPDY/3.1+portforward.k8s.io"
#: kubectl's fallback when the WebSocket is refused: `Upgrade: SPDY/3.1` with this stream protocol.
RAW_UPGRADE = "spdy/3.1"
STREAM_PROTOCOL = "portforward.k8s.io"
#: Bytes of a raw SPDY connection read ahead of the session before reading pauses.
RAW_READ_AHEAD = 1024 * 1024
VERB = "portforward"
#: One WebSocket message: kubectl sends each write of its SPDY connection as one (at most a frame).
MAX_MESSAGE_BYTES = spdy.MAX_FRAME_BYTES + 64 * 1024
#: Connections forwarded at once through one forward (each holds a socket in the pod).
MAX_FORWARDED = 128
#: The kubelet's streamCreationTimeout: a stream whose partner has not come by then is reset.
PAIR_TIMEOUT_S = 30.0
#: kubectl pings every 10 s: a forward silent this long has lost its client.
IDLE_TIMEOUT_S = 60.0
#: A pod that reads nothing of what is forwarded to it for this long has that connection reset:
#: waiting on it holds the forward's other connections (one WebSocket, read in order).
STALLED_S = 60.0
#: What kubectl may send on a data stream before its dial completes.
MAX_EARLY_BYTES = 256 * 1024
READ_BYTES = 64 * 1024


def target(path: str) -> tuple[str, str] | None:
    """(namespace, pod) when `path` is a pod's portforward subresource."""
    parts = path_parts(path)
    if len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods" \
            and parts[6] == VERB:
        return parts[3], parts[5]
    return None


def wants(request: web.BaseRequest, path: str) -> bool:
    """An upgrade of a pod's portforward subresource — a WebSocket, or kubectl's fallback, a raw
    SPDY/3.1 connection (only these reach `serve`)."""
    upgrade = request.headers.get("Upgrade", "").lower()
    return target(path) is not None and (
        (upgrade == "websocket" and request.method == "GET") or (upgrade == RAW_UPGRADE and request.method == "POST"))


def ports_of(raw_path: str) -> list[int]:
    """The `ports` query parameters (kubectl's websocket client may send none), as numbers."""
    found = []
    for value in parse_qs(urlsplit(raw_path).query).get("ports", []):
        for item in value.split(","):
            if item.strip().isdigit():
                found.append(int(item))
    return found


async def serve(serving: Serving, request: web.BaseRequest, path: str, access: Access) -> web.StreamResponse:
    """Answer a portforward upgrade of the admin credential: a refusal (`Status`), or the forward,
    until the client leaves. The protocol is the client's: SPDY/3.1 in a WebSocket (kubectl), a raw
    SPDY/3.1 upgrade (kubectl's fallback), or WebSocket channels, `v4.channel.k8s.io`
    (`channelforward`: the Python client), picked in that order among those it offers."""
    assert access >= Access.ADMIN
    namespace, name = target(path) or ("", "")
    raw = request.headers.get("Upgrade", "").lower() == RAW_UPGRADE
    ports: list[int] | None = None
    if raw:
        offered = [p.strip() for value in request.headers.getall("X-Stream-Protocol-Version", [])
                   for p in value.split(",")]
        if STREAM_PROTOCOL not in offered:
            audit.refused(access, VERB, namespace, name, "no portforward.k8s.io stream protocol")
            return _status(400, "BadRequest", f"port-forward speaks the stream protocol {STREAM_PROTOCOL} only")
        protocol = RAW_UPGRADE
    else:
        offered = channels.offered(request.headers.get("Sec-WebSocket-Protocol"))
        protocol = next((p for p in (PROTOCOL, channels.V4) if p in offered), "")
        if not protocol:
            audit.refused(access, VERB, namespace, name, "no port-forward WebSocket protocol")
            return _status(400, "BadRequest", f"port-forward speaks the WebSocket protocols {PROTOCOL} and "
                                              f"{channels.V4} only")
        if protocol == channels.V4:
            try:
                ports = channelforward.ports_of(request.raw_path)
            except channelforward.BadPorts as exc:
                audit.refused(access, VERB, namespace, name, str(exc))
                return _status(400, "BadRequest", str(exc))
    if serving.streams >= serving.limits.max_streams:
        return status_response(429, objects.status(
            429, "TooManyRequests", f"too many streams open ({serving.limits.max_streams})", retry_after=1),
            headers={"Retry-After": "1"})
    serving.streams += 1   # taken before any wait: concurrent upgrades cannot all pass the check
    try:
        return await _serve(serving, request, access, namespace, name, protocol, ports)
    finally:
        serving.streams -= 1


async def _serve(serving: Serving, request: web.BaseRequest, access: Access, namespace: str, name: str,
                 protocol: str, ports: list[int] | None) -> web.StreamResponse:
    api, loop = serving.api, serving.loop
    view = RuntimeView(root=api.root, run_dir=api.run_dir) if api.run_dir is not None else None
    try:
        pod = await loop.run_in_executor(serving.reads, _pod, api, namespace, name)
        uid = str(pod["metadata"]["uid"])
        try:
            if view is None:
                raise RuntimeError_("the simulated runtime's pods have no network namespace")
            await loop.run_in_executor(serving.reads, view.pod_netns, uid)
        except RuntimeError_:
            raise targets.no_sandbox(pod) from None
    except targets.TargetError as exc:
        refused = sessions.refusal(exc, name)
        audit.refused(access, VERB, namespace, name, refused.reason)
        return status_response(refused.code, refused.body)
    raw = protocol == RAW_UPGRADE
    ws: Any
    if raw:
        ws = RawSpdy(request)
    elif protocol == channels.V4:
        ws = channelforward.websocket(protocol)
    else:
        ws = web.WebSocketResponse(protocols=[PROTOCOL], max_msg_size=MAX_MESSAGE_BYTES, autoclose=True,
                                   autoping=True)
    if not raw and not ws.can_prepare(request).ok:   # e.g. no Sec-WebSocket-Key, or a version other than 13
        audit.refused(access, VERB, namespace, name, "not a valid WebSocket handshake")
        return _status(400, "BadRequest", "not a valid WebSocket handshake")
    await ws.prepare(request)
    audit.opened(access, VERB, namespace, name, None, ports=ports or ports_of(request.raw_path) or None)
    log.debug("API: port-forward %s/%s over %s", namespace, name,
              "raw SPDY/3.1" if raw else f"a WebSocket ({protocol})")
    opener = lambda family: _pod_socket(view, uid, family)   # noqa: E731
    if ports is not None:
        await channelforward.ChannelForward(
            ws, ports, opener, executor=serving.reads, name=f"{namespace}/{name}", uid=uid,
            transport=request.transport, early_bytes=MAX_EARLY_BYTES, stalled_s=STALLED_S).run()
        return ws
    session = Session(ws, opener, executor=serving.reads, name=f"{namespace}/{name}")
    await session.run()
    return ws.response if raw else ws


def _status(code: int, reason: str, message: str) -> web.Response:
    return status_response(code, objects.status(code, reason, message))


def _pod(api: Any, namespace: str, name: str) -> Any:
    """The record of the pod a forward reaches (`runtime.targets.pick_pod`); TargetError when none."""
    pods, _ = api.items("pods", namespace, name)
    return targets.pick_pod(pods, name)


def _pod_socket(view: RuntimeView, uid: str, family: int):   # -> socket.socket
    """A socket in the pod's network namespace as it is now (a restarted sandbox's new one): the
    sandbox's record read for each connection; RuntimeError_ when the pod has none running."""
    path = view.pod_netns(uid)
    return netns.socket_at(path, family)


class RawSpdy:
    """kubectl's fallback, a raw SPDY/3.1 connection after a `101 Switching Protocols`, with what
    the session uses of a WebSocket (`receive`, `send_bytes`, `closed`, `close`): the bytes after
    the answer come in as they arrive. aiohttp's parser treats only WebSocket upgrades as upgrades,
    so this takes the connection's bytes as its payload parser (`set_parser`, as aiohttp's own
    WebSocket does); reading pauses while `RAW_READ_AHEAD` bytes wait for the session."""

    def __init__(self, request: web.BaseRequest) -> None:
        self.request = request
        self.response = web.StreamResponse(status=101, headers={
            "Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": STREAM_PROTOCOL})
        self.chunks: collections.deque[bytes] = collections.deque()
        self.waiting = 0
        self.eof = self.paused = self.closed = False
        self.arrived = asyncio.Event()

    async def prepare(self, request: web.BaseRequest) -> None:
        await self.response.prepare(request)
        request.protocol.set_parser(self)   # type: ignore[arg-type]

    # ---- aiohttp's side: the connection's bytes

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.chunks.append(bytes(data))
        self.waiting += len(data)
        self.arrived.set()
        transport = self.request.transport
        if self.waiting > RAW_READ_AHEAD and not self.paused and transport is not None:
            transport.pause_reading()
            self.paused = True
        return False, b""

    def feed_eof(self) -> None:
        self.eof = True
        self.arrived.set()

    # ---- the session's side

    async def receive(self, timeout: float | None = None) -> Any:
        while not self.chunks:
            if self.eof or self.closed:
                return SimpleNamespace(type=WSMsgType.CLOSED, data=None)
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), timeout)
        data = self.chunks.popleft()
        self.waiting -= len(data)
        transport = self.request.transport
        if self.paused and self.waiting < RAW_READ_AHEAD // 2 and transport is not None:
            transport.resume_reading()
            self.paused = False
        return SimpleNamespace(type=WSMsgType.BINARY, data=data)

    async def send_bytes(self, data: bytes) -> None:
        if self.closed or self.request.transport is None or self.request.transport.is_closing():
            raise ConnectionResetError("the client left")
        await self.response.write(data)

    async def close(self) -> None:
        self.closed = True
        if self.request.transport is not None:
            self.request.transport.close()

    def exception(self) -> BaseException | None:
        return None


# ---------------------------------------------------------------------- the session


@dataclass
class Forwarded:
    """One forwarded connection: kubectl's error and data streams of one requestID."""

    request_id: str
    port: int
    error_id: int = 0
    data_id: int = 0
    writer: asyncio.StreamWriter | None = None
    task: asyncio.Task | None = None
    early: bytearray = field(default_factory=bytearray)
    client_done: bool = False
    expiry: asyncio.TimerHandle | None = None

    @property
    def paired(self) -> bool:
        return bool(self.error_id and self.data_id)


class Session:
    """One forward: the frames of one WebSocket, the connections they open."""

    def __init__(self, ws: web.WebSocketResponse, open_socket: Any, *, executor: Executor | None,
                 name: str = "") -> None:
        self.ws, self.open_socket, self.executor, self.name = ws, open_socket, executor, name
        self.decoder, self.encoder = spdy.Decoder(), spdy.Encoder()
        self.sending = asyncio.Lock()
        self.requests: dict[str, Forwarded] = {}
        self.streams: dict[int, Forwarded] = {}
        self.last_stream = 0
        self.loop = asyncio.get_running_loop()

    async def run(self) -> None:
        try:
            while True:
                message = await self.ws.receive(timeout=IDLE_TIMEOUT_S)
                if message.type == WSMsgType.BINARY:
                    for frame in self.decoder.feed(message.data):
                        if not await self.on(frame):
                            return
                elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    return
                elif message.type == WSMsgType.ERROR:
                    log.debug("API: port-forward %s: %s", self.name, self.ws.exception())
                    return
                else:
                    raise spdy.SpdyError(f"a WebSocket message of type {message.type.name} (binary only)")
        except spdy.SpdyError as exc:
            log.info("API: port-forward %s ended: %s", self.name, exc)
            try:
                await self._send(spdy.GoAway(self.last_stream, spdy.GOAWAY_PROTOCOL_ERROR))
            except (ConnectionError, OSError):
                pass
        except asyncio.TimeoutError:
            log.info("API: port-forward %s ended: nothing heard for %gs", self.name, IDLE_TIMEOUT_S)
        except ConnectionError:
            log.debug("API: port-forward %s: the client left", self.name)
        finally:
            await self.close()

    async def close(self) -> None:
        tasks = [f.task for f in self.requests.values() if f.task is not None]
        for forwarded in list(self.requests.values()):
            self._drop(forwarded)
        self.requests.clear()
        self.streams.clear()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if not self.ws.closed:
            try:
                await asyncio.wait_for(self.ws.close(), 5)
            except (asyncio.TimeoutError, ConnectionError):
                pass

    # ---- frames from kubectl

    async def on(self, frame: spdy.Frame) -> bool:
        """Handle one frame; False when the forward is over (a GOAWAY)."""
        if isinstance(frame, spdy.SynStream):
            await self._stream(frame)
        elif isinstance(frame, spdy.Data):
            await self._data(frame)
        elif isinstance(frame, spdy.RstStream):
            forwarded = self.streams.get(frame.stream_id)
            if forwarded is not None:
                self._drop(forwarded)
        elif isinstance(frame, spdy.Ping):
            await self._send(spdy.Ping(frame.id))
        elif isinstance(frame, spdy.GoAway):
            return False
        return True   # SETTINGS, WINDOW_UPDATE, HEADERS, SYN_REPLY: nothing to do

    async def _stream(self, frame: spdy.SynStream) -> None:
        sid = frame.stream_id
        if sid in self.streams or sid <= self.last_stream:
            await self._send(spdy.RstStream(sid, spdy.PROTOCOL_ERROR))
            return
        self.last_stream = sid
        headers = frame.headers
        kind = headers.get("streamtype", "")
        port = headers.get("port", "")
        request_id = headers.get("requestid") or str(sid if kind == "error" else sid - 2)
        if kind not in ("error", "data") or not port.isdigit() or not 0 < int(port) < 65536:
            log.debug("API: port-forward %s: stream %d refused: type %r, port %r", self.name, sid, kind, port)
            await self._send(spdy.RstStream(sid, spdy.PROTOCOL_ERROR))
            return
        forwarded = self.requests.get(request_id)
        if forwarded is None:
            if len(self.requests) >= MAX_FORWARDED:
                log.info("API: port-forward %s: more than %d connections at once: stream refused", self.name,
                         MAX_FORWARDED)
                await self._send(spdy.RstStream(sid, spdy.REFUSED_STREAM))
                return
            forwarded = self.requests[request_id] = Forwarded(request_id, int(port))
            forwarded.expiry = self.loop.call_later(PAIR_TIMEOUT_S, self._expire, forwarded)
        if (forwarded.error_id if kind == "error" else forwarded.data_id) or forwarded.port != int(port):
            await self._send(spdy.RstStream(sid, spdy.PROTOCOL_ERROR))
            return
        if kind == "error":
            forwarded.error_id = sid
        else:
            forwarded.data_id = sid
        self.streams[sid] = forwarded
        await self._send(spdy.SynReply(sid))
        if forwarded.paired:
            if forwarded.expiry is not None:
                forwarded.expiry.cancel()
            forwarded.task = self.loop.create_task(self._forward(forwarded))

    async def _data(self, frame: spdy.Data) -> None:
        forwarded = self.streams.get(frame.stream_id)
        if forwarded is None or frame.stream_id != forwarded.data_id:
            return   # the error stream (kubectl writes nothing on it), or a stream gone
        if forwarded.client_done:
            return
        writer = forwarded.writer
        if writer is None:
            forwarded.early += frame.data
            if len(forwarded.early) > MAX_EARLY_BYTES:
                log.info("API: port-forward %s: over %d bytes before the pod answered: reset", self.name,
                         MAX_EARLY_BYTES)
                await self._send(spdy.RstStream(forwarded.data_id, spdy.FLOW_CONTROL_ERROR))
                self._drop(forwarded)
                return
        else:
            try:
                if frame.data:
                    writer.write(frame.data)
                    async with asyncio.timeout(STALLED_S):
                        await writer.drain()
                if frame.fin and writer.can_write_eof():
                    writer.write_eof()
            except TimeoutError:
                log.info("API: port-forward %s: port %d read nothing for %gs: connection reset", self.name,
                         forwarded.port, STALLED_S)
                await self._send(spdy.RstStream(forwarded.data_id, spdy.CANCEL))
                self._drop(forwarded)
                return
            except (ConnectionError, OSError):
                self._drop(forwarded)
                return
        if frame.fin:
            forwarded.client_done = True

    def _expire(self, forwarded: Forwarded) -> None:
        if not forwarded.paired and self.requests.get(forwarded.request_id) is forwarded:
            log.info("API: port-forward %s: request %s got one stream of two in %gs: reset", self.name,
                     forwarded.request_id, PAIR_TIMEOUT_S)
            for sid in (forwarded.error_id, forwarded.data_id):
                if sid:
                    self.loop.create_task(self._quietly(spdy.RstStream(sid, spdy.CANCEL)))
            self._drop(forwarded)

    def _drop(self, forwarded: Forwarded) -> None:
        """Forget a connection: its socket closed, its copying task cancelled."""
        if self.requests.get(forwarded.request_id) is forwarded:
            del self.requests[forwarded.request_id]
        for sid in (forwarded.error_id, forwarded.data_id):
            if self.streams.get(sid) is forwarded:
                del self.streams[sid]
        if forwarded.expiry is not None:
            forwarded.expiry.cancel()
        if forwarded.writer is not None:
            forwarded.writer.transport.abort()
        if forwarded.task is not None and forwarded.task is not asyncio.current_task():
            forwarded.task.cancel()

    # ---- the pod's side

    async def _forward(self, forwarded: Forwarded) -> None:
        """Dial the port in the pod, then copy what the pod sends to the data stream until it ends."""
        data_id, error_id = forwarded.data_id, forwarded.error_id
        log.debug("API: port-forward %s: connection %s to port %d", self.name, forwarded.request_id, forwarded.port)
        try:
            try:
                reader, writer = await netns.connect(self.open_socket, forwarded.port, executor=self.executor)
            except RuntimeError_ as exc:   # the pod's sandbox is gone: kubectl ends the forward
                log.info("API: port-forward %s: port %d: %s", self.name, forwarded.port, exc)
                await self._finish(data_id, error_id, f"error forwarding port {forwarded.port} to pod "
                                                      f"{self.name}: {exc}")
                self._drop(forwarded)
                return
            except OSError as exc:   # refused: this connection ends, the forward goes on
                log.info("API: port-forward %s: %s", self.name, exc)
                await self._finish(data_id, error_id, "")
                self._drop(forwarded)
                return
            if self.streams.get(data_id) is not forwarded:   # reset while dialling
                writer.transport.abort()
                return
            forwarded.writer = writer
            if forwarded.early:
                writer.write(bytes(forwarded.early))
                forwarded.early.clear()
            if forwarded.client_done and writer.can_write_eof():
                writer.write_eof()
            await writer.drain()
            while chunk := await reader.read(READ_BYTES):
                await self._send(spdy.Data(data_id, chunk))
            await self._finish(data_id, error_id, "")
            if forwarded.client_done:
                self._drop(forwarded)
        except (ConnectionError, OSError) as exc:
            log.debug("API: port-forward %s: port %d: %s", self.name, forwarded.port, exc)
            try:
                await self._finish(data_id, error_id, "")
            except (ConnectionError, OSError):
                pass
            self._drop(forwarded)

    async def _finish(self, data_id: int, error_id: int, message: str) -> None:
        """The end of one connection: the data stream's FIN, then the error stream with `message`
        (empty: no error)."""
        await self._send(spdy.Data(data_id, b"", fin=True),
                         spdy.Data(error_id, message.encode(), fin=True))

    async def _quietly(self, *frames: spdy.Frame) -> None:
        try:
            await self._send(*frames)
        except (ConnectionError, OSError):
            pass

    async def _send(self, *frames: spdy.Frame) -> None:
        """Encode and send frames in one order (the header compression context is shared)."""
        if self.ws.closed:
            raise ConnectionResetError("the client left")
        async with self.sending:
            await self.ws.send_bytes(self.encoder.encode_all(frames))
