"""Port-forward over WebSocket channels (`v4.channel.k8s.io`) on its own: the client's side played
message by message on a fake WebSocket, the pod's side servers on this host's loopback (the dial's
namespace switch is the real tests').

Proven here: the ports of the query as the kubelet reads them; each channel's first message is its
port, little-endian; data goes both ways per port; the pod's end ends its port, and the last port's
end closes the WebSocket; a refused port is told on its error channel in the kubelet's words while
the other port goes on; data sent before the dial is held; a client that leaves closes the pod's
connections; messages on an error channel or on no port's channel are ignored.
"""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace

import pytest
from aiohttp import WSMsgType

from kubelite.apiserver import channelforward
from kubelite.errors import RuntimeError_
from tests.test_portforward import free_port, host_socket, run, upper_server


@pytest.mark.parametrize("query, expected", [
    ("ports=80", [80]),
    ("ports=80&ports=8080", [80, 8080]),
    ("ports=80,8080", [80, 8080]),     # the Python client's spelling
    ("container=x&ports=1&ports=65535", [1, 65535]),
])
def test_the_ports_of_the_query(query, expected):
    assert channelforward.ports_of(f"/api/v1/namespaces/default/pods/web/portforward?{query}") == expected


@pytest.mark.parametrize("query, message", [
    ("", 'query parameter "ports" is required'),
    ("port=80", 'query parameter "ports" is required'),
    ("ports=http", 'unable to parse "http" as a port'),
    ("ports=", 'unable to parse "" as a port'),
    ("ports=%D9%A1", 'unable to parse'),            # a non-ASCII digit
    ("ports=0", 'port "0" must be between 1 and 65535'),
    ("ports=70000", 'port "70000" must be between 1 and 65535'),
    ("ports=80,80", 'port "80" is named twice'),
    ("&".join(f"ports={p}" for p in range(1, 70)), "at most 64 ports"),
])
def test_ports_that_cannot_be_forwarded(query, message):
    with pytest.raises(channelforward.BadPorts, match=message):
        channelforward.ports_of(f"/x?{query}")


class FakeWebSocket:
    """The client's end: channel messages in, channel messages out."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.sent: list[tuple[int, bytes]] = []
        self.closed = False
        self.ws_protocol = "v4.channel.k8s.io"
        self.changed = asyncio.Event()

    async def receive(self, timeout: float | None = None):
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append((data[0], data[1:]))
        self.changed.set()

    async def close(self) -> None:
        self.closed = True
        self.changed.set()

    def send(self, channel: int, data: bytes) -> None:
        self.inbox.put_nowait(SimpleNamespace(type=WSMsgType.BINARY, data=bytes((channel,)) + data))

    def leave(self) -> None:
        self.inbox.put_nowait(SimpleNamespace(type=WSMsgType.CLOSE, data=None))

    def on(self, channel: int) -> bytes:
        """What came on `channel` after its first message (the port)."""
        return b"".join(data for ch, data in self.sent if ch == channel)[2:]

    async def until(self, predicate, timeout: float = 5.0):
        async def wait():
            while not (found := predicate()):
                self.changed.clear()
                await self.changed.wait()
            return found
        return await asyncio.wait_for(wait(), timeout)


def forward(ws: FakeWebSocket, ports: list[int], open_socket=host_socket) -> channelforward.ChannelForward:
    return channelforward.ChannelForward(ws, ports, open_socket, executor=None, name="default/web",  # type: ignore
                                         uid="u-1", early_bytes=1024, stalled_s=5)


def test_each_port_is_one_connection_its_channels_first_saying_which():
    async def main():
        first, port1 = await upper_server()
        second, port2 = await upper_server()
        ws = FakeWebSocket()
        task = asyncio.create_task(forward(ws, [port1, port2]).run())
        await ws.until(lambda: len(ws.sent) >= 4)
        assert ws.sent[:4] == [(0, port1.to_bytes(2, "little")), (1, port1.to_bytes(2, "little")),
                               (2, port2.to_bytes(2, "little")), (3, port2.to_bytes(2, "little"))]
        ws.send(0, b"one\n")
        ws.send(2, b"two\n")
        await ws.until(lambda: ws.on(0) == b"ONE\n" and ws.on(2) == b"TWO\n")
        ws.send(1, b"ignored: the error channel is the server's")
        ws.send(9, b"ignored: no port's channel")
        ws.send(0, b"again\n")
        await ws.until(lambda: ws.on(0) == b"ONE\nAGAIN\n")
        assert not ws.closed
        ws.leave()
        await asyncio.wait_for(task, 5)
        assert ws.closed and ws.on(1) == b"" and ws.on(3) == b""
        for server in (first, second):
            server.close()
    run(main())


def test_a_pod_that_closes_ends_its_port_and_then_the_forward():
    async def main():
        async def once(reader, writer):   # answers one line, then closes
            writer.write((await reader.readline()).upper())
            writer.close()
        server = await asyncio.start_server(once, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ws = FakeWebSocket()
        task = asyncio.create_task(forward(ws, [port]).run())
        ws.send(0, b"early, before the dial\n")   # held until the dial completes
        await asyncio.wait_for(task, 5)
        assert ws.on(0) == b"EARLY, BEFORE THE DIAL\n" and ws.on(1) == b""
        assert ws.closed
        server.close()
    run(main())


def test_a_refused_port_is_told_on_its_error_channel_and_the_other_goes_on():
    async def main():
        server, good = await upper_server()
        bad = free_port()
        ws = FakeWebSocket()
        task = asyncio.create_task(forward(ws, [bad, good]).run())
        await ws.until(lambda: ws.on(1))
        assert ws.on(1).decode().startswith(f"error forwarding port {bad} to pod default/web, uid u-1: dial")
        ws.send(0, b"to nowhere\n")          # the refused port's data is dropped
        ws.send(2, b"still here\n")
        await ws.until(lambda: ws.on(2) == b"STILL HERE\n")
        assert not ws.closed
        ws.leave()
        await asyncio.wait_for(task, 5)
        server.close()
    run(main())


def test_a_pod_gone_is_told_for_every_port_and_ends_the_forward():
    def gone(family: int) -> socket.socket:
        raise RuntimeError_("the pod has no running sandbox")

    async def main():
        ws = FakeWebSocket()
        await asyncio.wait_for(forward(ws, [80, 81], gone).run(), 5)
        for channel in (1, 3):
            assert b"the pod has no running sandbox" in ws.on(channel)
        assert ws.closed
    run(main())


def test_a_client_that_leaves_closes_the_pods_connections():
    async def main():
        closed = asyncio.Event()

        async def handle(reader, writer):
            await reader.read()   # until the forward closes its socket
            closed.set()
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        ws = FakeWebSocket()
        task = asyncio.create_task(forward(ws, [server.sockets[0].getsockname()[1]]).run())
        ws.send(0, b"hello")
        await asyncio.sleep(0.2)
        ws.leave()
        await asyncio.wait_for(closed.wait(), 5)
        await asyncio.wait_for(task, 5)
        server.close()
    run(main())


def test_too_much_before_the_dial_ends_that_port():
    async def main():
        ws = FakeWebSocket()
        fwd = forward(ws, [80])
        port = fwd.ports[0]
        await fwd._to_pod(port, b"x" * 1000)   # the dial not done: held
        assert not port.over and len(port.early) == 1000
        await fwd._to_pod(port, b"x" * 100)    # over early_bytes (1024)
        assert port.over and not port.early
        assert ws.sent == [(1, b"error forwarding port 80 to pod default/web, uid u-1: "
                               b"over 1024 bytes sent before the pod answered")]
    run(main())
