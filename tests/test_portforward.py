"""The port-forward session on its own: kubectl's side played frame by frame on a fake WebSocket,
the pod's side a server on this host's loopback (the dial's namespace switch is the real tests').

Proven here: a pair of streams (error, data) of one requestID is one connection, replied to at
once, bytes copied both ways, half-closes passed on, the end told as data FIN then an empty error
stream; a refused port ends that connection only; a pod gone is told on the error stream; pings are
answered; a stream without its pair, a flood of connections, bad stream headers, malformed frames,
a text message and a silent client each end as they should, with nothing left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
from types import SimpleNamespace

import pytest
from aiohttp import WSMsgType

from kubelite.apiserver import portforward, spdy
from kubelite.errors import RuntimeError_
from kubelite.runtime import netns


class FakeSocket:
    """kubectl's end of the WebSocket: frames in, frames out."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.encoder, self.decoder = spdy.Encoder(), spdy.Decoder()
        self.frames: list[spdy.Frame] = []
        self.closed = False
        self.changed = asyncio.Event()

    # what the session calls
    async def receive(self, timeout: float | None = None):
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def send_bytes(self, data: bytes) -> None:
        self.frames += self.decoder.feed(data)
        self.changed.set()

    async def close(self) -> None:
        self.closed = True

    def exception(self):
        return None

    # what the test does
    def send(self, *frames: spdy.Frame) -> None:
        self.inbox.put_nowait(SimpleNamespace(type=WSMsgType.BINARY, data=self.encoder.encode_all(frames)))

    def raw(self, kind: WSMsgType, data: bytes | str = b"") -> None:
        self.inbox.put_nowait(SimpleNamespace(type=kind, data=data))

    async def until(self, predicate, timeout: float = 5.0):
        async def wait():
            while not (found := predicate(self.frames)):
                self.changed.clear()
                await self.changed.wait()
            return found
        return await asyncio.wait_for(wait(), timeout)

    def data(self, stream_id: int) -> bytes:
        return b"".join(f.data for f in self.frames if isinstance(f, spdy.Data) and f.stream_id == stream_id)

    def finished(self, stream_id: int) -> bool:
        return any(isinstance(f, spdy.Data) and f.stream_id == stream_id and f.fin for f in self.frames)


def pair(request_id: str, port: int, error_id: int, data_id: int) -> list[spdy.Frame]:
    headers = {"streamtype": "error", "port": str(port), "requestid": request_id}
    return [spdy.SynStream(error_id, headers), spdy.Data(error_id, b"", fin=True),
            spdy.SynStream(data_id, {**headers, "streamtype": "data"})]


def host_socket(family: int) -> socket.socket:
    return netns.socket_in(None, family)


async def upper_server():
    """A pod's server: answers each line upper-cased, closes after the client's FIN."""
    async def handle(reader, writer):
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        writer.write(b"BYE\n")
        writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def pod_server(handle=None):
    """A pod's server on loopback (`upper_server`'s unless `handle` is given), its port; closed after."""
    if handle is None:
        server, port = await upper_server()
    else:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def session(ws: FakeSocket, open_socket=host_socket) -> portforward.Session:
    return portforward.Session(ws, open_socket, executor=None, name="default/web")  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def forwarding(open_socket=host_socket):
    """A session running on a fake WebSocket: (ws, session). At the end, unless it ended by itself,
    kubectl's GOAWAY, and the session's end awaited."""
    ws = FakeSocket()
    forward = session(ws, open_socket)
    task = asyncio.create_task(forward.run())
    try:
        yield ws, forward
        if not task.done():
            ws.send(spdy.GoAway(0))
        await asyncio.wait_for(task, 10)
    finally:
        task.cancel()


async def opened(ws: FakeSocket, request_id: str, port: int, error_id: int, data_id: int) -> None:
    """kubectl's pair of streams for one connection, and the session's two replies."""
    ws.send(*pair(request_id, port, error_id, data_id))
    await ws.until(lambda fs: {error_id, data_id} <= {f.stream_id for f in fs if isinstance(f, spdy.SynReply)})


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


def test_a_pair_of_streams_is_one_connection_copied_both_ways_then_ended_in_order():
    async def main():
        async with pod_server() as port, forwarding() as (ws, forward):
            await opened(ws, "0", port, 1, 3)
            assert [f.stream_id for f in ws.frames if isinstance(f, spdy.SynReply)] == [1, 3]
            ws.send(spdy.Data(3, b"hello\n"), spdy.Data(3, b"world\n", fin=True))
            await ws.until(lambda fs: ws.finished(1))
            assert ws.data(3) == b"HELLO\nWORLD\nBYE\n"
            ends = [(f.stream_id, f.data) for f in ws.frames if isinstance(f, spdy.Data) and f.fin]
            assert ends == [(3, b""), (1, b"")]     # data FIN, then the error stream, empty: no error
            assert forward.requests == {}             # both sides done: forgotten
            ws.send(spdy.Ping(1))
            await ws.until(lambda fs: spdy.Ping(1) in fs)
        assert ws.closed
    run(main())


def test_a_refused_port_ends_that_connection_only_and_a_pod_gone_is_told():
    def gone(family: int) -> socket.socket:
        raise RuntimeError_("the pod has no running sandbox")

    async def main():
        async with pod_server() as port, forwarding() as (ws, _):
            ws.send(*pair("0", free_port(), 1, 3))
            await ws.until(lambda fs: ws.finished(1))
            assert ws.data(1) == b"" and ws.finished(3)   # refused: an empty error stream, kubectl goes on
            ws.send(*pair("1", port, 5, 7), spdy.Data(7, b"again\n", fin=True))
            await ws.until(lambda fs: ws.finished(5))
            assert ws.data(7) == b"AGAIN\nBYE\n"
        async with forwarding(gone) as (ws, _):
            ws.send(*pair("0", 80, 1, 3))
            await ws.until(lambda fs: ws.finished(1))
            assert b"the pod has no running sandbox" in ws.data(1)
            ws.raw(WSMsgType.CLOSE)
    run(main())


def test_data_sent_before_the_dial_completes_is_held_and_delivered():
    async def main():
        async with pod_server() as port, forwarding() as (ws, _):
            ws.send(*pair("0", port, 1, 3), spdy.Data(3, b"early\n"), spdy.Data(3, b"", fin=True))
            await ws.until(lambda fs: ws.finished(1))
            assert ws.data(3) == b"EARLY\nBYE\n"
    run(main())


def test_a_reset_closes_the_pods_side():
    async def main():
        closed = asyncio.Event()

        async def handle(reader, writer):
            await reader.read()   # until the forward closes its socket
            closed.set()
        async with pod_server(handle) as port, forwarding() as (ws, forward):
            await opened(ws, "0", port, 1, 3)
            await asyncio.sleep(0.1)
            ws.send(spdy.RstStream(3, spdy.CANCEL))
            await asyncio.wait_for(closed.wait(), 5)
            assert forward.requests == {}
    run(main())


@pytest.mark.parametrize("headers", [
    {"streamtype": "video", "port": "80", "requestid": "0"},
    {"streamtype": "data", "port": "http", "requestid": "0"},
    {"streamtype": "data", "port": "70000", "requestid": "0"},
    {"streamtype": "data", "requestid": "0"},
])
def test_streams_with_bad_headers_are_reset(headers):
    async def main():
        async with forwarding() as (ws, _):
            ws.send(spdy.SynStream(1, headers))
            assert await ws.until(lambda fs: spdy.RstStream(1, spdy.PROTOCOL_ERROR) in fs)
            ws.send(spdy.SynStream(1, {"streamtype": "data", "port": "80", "requestid": "0"}))   # a reused ID
            assert await ws.until(lambda fs: fs.count(spdy.RstStream(1, spdy.PROTOCOL_ERROR)) == 2)
    run(main())


def test_a_stream_without_its_pair_is_reset_and_a_flood_refused(monkeypatch):
    monkeypatch.setattr(portforward, "PAIR_TIMEOUT_S", 0.2)
    monkeypatch.setattr(portforward, "MAX_FORWARDED", 2)

    async def main():
        async with forwarding() as (ws, forward):
            for n, sid in enumerate((1, 3, 5)):
                ws.send(spdy.SynStream(sid, {"streamtype": "error", "port": "80", "requestid": str(n)}))
            await ws.until(lambda fs: spdy.RstStream(5, spdy.REFUSED_STREAM) in fs)
            await ws.until(lambda fs: spdy.RstStream(1, spdy.CANCEL) in fs and spdy.RstStream(3, spdy.CANCEL) in fs)
            assert forward.requests == {}
    run(main())


@pytest.mark.parametrize("message", [
    SimpleNamespace(type=WSMsgType.BINARY, data=b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01"),
    SimpleNamespace(type=WSMsgType.TEXT, data="hello"),
])
def test_a_protocol_error_ends_the_forward_with_a_goaway(message):
    async def main():
        async with pod_server() as port, forwarding() as (ws, forward):
            await opened(ws, "0", port, 1, 3)
            open_one = forward.requests["0"]
            while open_one.writer is None:   # dialled
                await asyncio.sleep(0.01)
            ws.inbox.put_nowait(message)
            await ws.until(lambda fs: spdy.GoAway(3, spdy.GOAWAY_PROTOCOL_ERROR) in fs)
        assert ws.closed and forward.requests == {}
        # its connection to the pod closed, its copying task over
        assert open_one.task is not None and open_one.task.done()
        assert open_one.writer.transport.is_closing()
    run(main())


def test_a_silent_client_is_let_go(monkeypatch):
    monkeypatch.setattr(portforward, "IDLE_TIMEOUT_S", 0.2)

    async def main():
        ws = FakeSocket()
        await session(ws).run()
        assert ws.closed
    run(main())


@pytest.mark.parametrize("path, expected", [
    ("/api/v1/namespaces/default/pods/web/portforward", ("default", "web")),
    ("/api/v1/namespaces/kube-system/pods/a.b/portforward", ("kube-system", "a.b")),
    ("/api/v1/namespaces/default/pods/web/exec", None),
    ("/api/v1/pods/web/portforward", None),
    ("/api/v1/namespaces/default/pods/web/portforward/x", None),
])
def test_target(path, expected):
    assert portforward.target(path) == expected


def test_ports_of_the_query():
    assert portforward.ports_of("/x?ports=80&ports=8080,9090&ports=bad") == [80, 8080, 9090]
    assert portforward.ports_of("/x") == []


UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": portforward.PROTOCOL}
PATH = "/api/v1/namespaces/default/pods/web/portforward"


def test_the_upgrade_is_answered_by_credential_before_anything_is_dialled(tmp_path):
    from kubelite.apiserver.limits import Limits
    from tests.apinode import bare_api, get_from

    with bare_api(tmp_path) as api:
        code, _, body = get_from(api, PATH, token=None, headers=UPGRADE)
        assert code == 401
        code, _, body = get_from(api, PATH, headers=UPGRADE)   # the read-only token
        assert code == 403 and b'cannot create resource \\"pods/portforward\\"' in body
        code, _, body = get_from(api, PATH, token=api.admin_token, headers=UPGRADE)
        assert code == 404 and b'pods \\"web\\" not found' in body
        code, _, body = get_from(api, PATH, token=api.admin_token,
                                 headers={**UPGRADE, "Sec-WebSocket-Protocol": "v5.channel.k8s.io"})
        assert code == 400 and portforward.PROTOCOL.encode() in body and b"v4.channel.k8s.io" in body
        v4 = {**UPGRADE, "Sec-WebSocket-Protocol": "v5.channel.k8s.io, v4.channel.k8s.io"}   # the Python client's
        code, _, body = get_from(api, PATH, token=api.admin_token, headers=v4)
        assert code == 400 and b'query parameter \\"ports\\" is required' in body
        code, _, body = get_from(api, PATH + "?ports=80,0", token=api.admin_token, headers=v4)
        assert code == 400 and b"must be between 1 and 65535" in body
        code, _, body = get_from(api, PATH + "?ports=80", token=api.admin_token, headers=v4)
        assert code == 404 and b'pods \\"web\\" not found' in body
        raw = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}   # kubectl's fallback
        code, _, body = get_from(api, PATH, method="POST", token=api.admin_token, headers=raw)
        assert code == 400 and b"portforward.k8s.io" in body   # no stream protocol offered
        code, _, body = get_from(api, PATH, method="POST", token=api.admin_token,
                                 headers={**raw, "X-Stream-Protocol-Version": "portforward.k8s.io"})
        assert code == 404
        code, _, body = get_from(api, PATH, method="POST", headers={**raw, "X-Stream-Protocol-Version":
                                                                    "portforward.k8s.io"})
        assert code == 403   # the read-only token, raw or not
        code, _, body = get_from(api, PATH, token=api.admin_token)   # no upgrade at all
        assert code == 400 and b"Upgrade request required" in body
    (tmp_path / "full").mkdir()
    with bare_api(tmp_path / "full", limits=Limits(max_streams=1)) as api:
        watch = http.client.HTTPSConnection(api.host, api.port, context=api.client_context, timeout=10)
        try:   # a watch holds the one stream: a forward is one more
            watch.request("GET", "/api/v1/pods?watch=true", headers={"Authorization": f"Bearer {api.token}"})
            assert watch.getresponse().status == 200
            code, headers, _ = get_from(api, PATH, token=api.admin_token, headers=UPGRADE)
            assert code == 429 and headers["retry-after"] == "1"
        finally:
            watch.close()


def test_a_pod_that_reads_nothing_has_its_connection_reset(monkeypatch):
    monkeypatch.setattr(portforward, "STALLED_S", 0.3)

    async def main():
        release = asyncio.Event()

        async def handle(reader, writer):   # reads nothing until the test ends
            await release.wait()
            writer.close()
        async with pod_server(handle) as port, forwarding() as (ws, forward):
            await opened(ws, "0", port, 1, 3)
            await asyncio.sleep(0.1)
            for _ in range(400):   # 25 MiB: far more than the socket buffers hold
                ws.send(spdy.Data(3, b"z" * 65536))
            await ws.until(lambda fs: spdy.RstStream(3, spdy.CANCEL) in fs, timeout=20)
            assert forward.requests == {}
            ws.send(spdy.Ping(5))   # the forward goes on
            await ws.until(lambda fs: spdy.Ping(5) in fs)
            release.set()
    run(main())


@pytest.mark.parametrize("specs, expected", [
    (["8080:80"], [(8080, 80)]),
    (["80"], [(80, 80)]),
    ([":80", "9000:9001"], [(0, 80), (9000, 9001)]),
])
def test_kubelite_port_forward_reads_ports_as_kubectl(specs, expected):
    from kubelite.cli import portforward as cli

    assert [(p.local, p.remote) for p in cli.parse_ports(specs)] == expected


@pytest.mark.parametrize("spec", ["http", "80:", "8080:0", "70000:80", "1:2:3", "-1"])
def test_kubelite_port_forward_refuses_bad_ports(spec):
    from kubelite.cli import portforward as cli
    from kubelite.errors import UsageError

    with pytest.raises(UsageError, match="invalid port"):
        cli.parse_ports([spec])


def test_kubelite_port_forward_addresses():
    from kubelite.cli import portforward as cli
    from kubelite.errors import UsageError

    assert cli.parse_addresses("localhost") == [("127.0.0.1", False), ("::1", False)]
    assert cli.parse_addresses("0.0.0.0,::") == [("0.0.0.0", True), ("::", True)]
    for bad in ("example.com", ",", "300.1.1.1"):
        with pytest.raises(UsageError):
            cli.parse_addresses(bad)
