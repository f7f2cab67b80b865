"""`pods/{name}/attach` over a WebSocket, against a daemon on the simulated runtime: the real
kubectl with the admin credential, the channel protocol spoken by hand, refusals before the
upgrade, the read-only credential, and the end of the container ending the session.

The simulated process echoes what an attach writes to its stdin (`runtime.fake`); real
containers are in `test_attach_real.py`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess

import aiohttp
import pytest

from kubelite.apiserver import attach, channels
from tests.apinode import KUBECTL, ApiNode, require_kubectl, upgrade_answer, wait_for
from tests.helpers import pod_doc


@pytest.fixture(autouse=True)
def _kubectl_present():
    require_kubectl()


def fake_pod(name: str, *, containers: list[str] | None = None, **fields) -> dict:
    doc = pod_doc(name, containers=containers or ["app"])
    for c in doc["spec"]["containers"]:
        c.update({"image": "busybox:latest", "imagePullPolicy": "Never", **fields})
    return doc


def phase(node: ApiNode, name: str) -> str | None:
    return next((p.get("status", {}).get("phase") for p in node.json("/api/v1/pods")["items"]
                 if p["metadata"]["name"] == name), None)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = ApiNode(tmp_path_factory.mktemp("attach")).start()
    n.write(fake_pod("cat", stdin=True))
    n.write(fake_pod("quiet"))
    n.write(fake_pod("duo", containers=["a", "b"], stdin=True))
    wait_for(lambda: all(phase(n, p) == "Running" for p in ("cat", "quiet", "duo")), what="the pods to run")
    yield n
    n.close()


async def _open(node: ApiNode, query: str, *, pod: str = "cat", protocols=(channels.V5,), token: str | None = None):
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(f"{node.url}/api/v1/namespaces/default/pods/{pod}/attach?{query}",
                                      protocols=protocols, ssl=node.client_context,
                                      headers={"Authorization": f"Bearer {token or node.admin_token}"})
    except BaseException:
        await session.close()
        raise
    return session, ws


async def _frame(ws, timeout: float = 10) -> tuple[int, bytes]:
    message = await asyncio.wait_for(ws.receive(), timeout)
    assert message.type == aiohttp.WSMsgType.BINARY, message
    return message.data[0], message.data[1:]


@pytest.mark.parametrize("protocol", [channels.V5, channels.V4])
def test_stdin_goes_to_the_process_and_its_output_comes_back_on_stdout(node, protocol):
    async def run():
        session, ws = await _open(node, "stdin=true&stdout=true&stderr=true", protocols=(protocol,))
        try:
            assert ws.protocol == protocol
            await ws.send_bytes(b"\x00hello\n")
            first = await _frame(ws)
            await ws.send_bytes(b"\x04" + json.dumps({"Width": 80, "Height": 24}).encode())   # no terminal: ignored
            await ws.send_bytes(b"\x00again\n")
            return first, await _frame(ws)
        finally:
            await session.close()

    assert asyncio.run(run()) == ((channels.STDOUT, b"hello\n"), (channels.STDOUT, b"again\n"))


def test_kubectl_attach_i_with_the_admin_credential(node):
    proc = subprocess.Popen([KUBECTL, "attach", "cat", "-i"], env=node.env(node.admin_kubeconfig),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"through kubectl\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        assert line == b"through kubectl\n", proc.stderr.read1(4096) if proc.poll() is not None else line
    finally:
        proc.kill()
        proc.wait(timeout=10)
    wait_for(lambda: phase(node, "cat") == "Running", what="cat to run on")


def test_input_for_a_container_without_stdin_is_dropped(node):
    async def run():
        session, ws = await _open(node, "stdin=true&stdout=true", pod="quiet")
        try:
            await ws.send_bytes(b"\x00ignored\n")
            try:
                return await _frame(ws, timeout=0.5)
            except asyncio.TimeoutError:
                return None
        finally:
            await session.close()

    assert asyncio.run(run()) is None


def test_refusals_come_before_the_upgrade(node):
    cases = [("/api/v1/namespaces/default/pods/cat/attach?stdout=false&stderr=false", channels.V5, 400,
              "at least 1 of stdin, stdout, stderr"),
             ("/api/v1/namespaces/default/pods/nope/attach?stdout=true", channels.V5, 404, 'pods "nope" not found'),
             ("/api/v1/namespaces/default/pods/duo/attach?container=c", channels.V5, 400, "container c is not valid"),
             ("/api/v1/namespaces/default/pods/cat/attach?stdout=true", "v1.channel.k8s.io", 400, "subprotocols")]
    for path, protocol, code, text in cases:
        status, body = upgrade_answer(node, path, protocol)
        assert (status, text in body["message"]) == (code, True), (path, status, body)


def test_the_read_only_credential_is_refused_with_nothing_attached(node):
    async def run():
        try:
            await _open(node, "stdin=true&stdout=true", token=node.token)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        return None

    assert asyncio.run(run()) == 403
    refused = kubectl_attach(node, admin=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
    metrics = node.request("/metrics")[1].decode()
    opened = [line for line in metrics.splitlines() if line.startswith("kubelite_api_stream_sessions_total{")
              and 'verb="attach"' in line and 'user="kubelite:viewer"' in line and 'outcome="opened"' in line]
    assert opened == [], "the read-only credential opened nothing"


def kubectl_attach(node: ApiNode, *, admin: bool) -> subprocess.CompletedProcess:
    return subprocess.run([KUBECTL, "attach", "quiet"], env=node.env(node.admin_kubeconfig if admin else None),
                          capture_output=True, text=True, timeout=30)


def test_the_containers_end_ends_the_session_with_success(tmp_path):
    n = ApiNode(tmp_path).start()
    try:
        doc = fake_pod("brief", stdin=True)
        doc["metadata"]["annotations"] = {"fake.kubelite.io/app": "exit=0 after=3"}
        doc["spec"]["restartPolicy"] = "Never"
        n.write(doc)
        wait_for(lambda: phase(n, "brief") == "Running", what="brief running")

        async def run():
            session, ws = await _open(n, "stdin=true&stdout=true", pod="brief")
            try:
                frames = []
                async for message in ws:
                    frames.append((message.data[0], message.data[1:]))
                return frames
            finally:
                await session.close()

        frames = asyncio.run(asyncio.wait_for(run(), 20))
        assert frames[-1][0] == channels.ERROR and json.loads(frames[-1][1]) == {"metadata": {}, "status": "Success"}
    finally:
        n.close()


def _raw_websocket(node: ApiNode, path: str):
    """A TLS socket upgraded to a WebSocket by hand, with a small receive buffer, that this test
    then never reads: a client that falls behind."""
    import base64
    import os
    import socket

    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    raw.settimeout(10)
    raw.connect((node.host, node.port))
    sock = node.client_context.wrap_socket(raw, server_hostname=node.host)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {node.host}\r\nAuthorization: Bearer {node.admin_token}\r\n"
                  f"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: {channels.V5}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _masked_frame(payload: bytes) -> bytes:
    import os
    import struct

    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x82, 0x80 | 127)) + struct.pack(">Q", len(payload)) + mask + masked


def test_a_client_that_stops_reading_is_dropped_not_waited_for(node, monkeypatch, caplog):
    monkeypatch.setattr(attach, "MAX_BACKLOG_BYTES", 256 * 1024)
    caplog.set_level("WARNING", logger="kubelite.api")
    sock = _raw_websocket(node, "/api/v1/namespaces/default/pods/cat/attach?stdin=true&stdout=true")
    chunk = _masked_frame(b"\x00" + b"x" * (128 * 1024))
    sent = 0
    try:
        for _ in range(64):   # 8 MiB echoed back to a client that reads none of it
            sock.sendall(chunk)
            sent += 1
        wait_for(lambda: any("read too slowly" in r.getMessage() for r in caplog.records), timeout=10,
                 what="the slow client dropped")
    except OSError:
        pass   # the server dropped the client before it took everything
    finally:
        sock.close()
    assert any("read too slowly" in r.getMessage() for r in caplog.records), f"{sent} frames sent"
    assert phase(node, "cat") == "Running"
    test_stdin_goes_to_the_process_and_its_output_comes_back_on_stdout(node, channels.V5)   # and it still echoes


def test_sessions_beyond_the_cap_are_429_and_a_detach_frees_its_slot(tmp_path):
    from kubelite.apiserver.limits import Limits

    n = ApiNode(tmp_path)
    n.limits = Limits(max_sessions=1)
    n.start()
    try:
        n.write(fake_pod("cat", stdin=True))
        wait_for(lambda: phase(n, "cat") == "Running", what="cat running")

        async def run():
            held, ws = await _open(n, "stdin=true&stdout=true")
            try:
                await _open(n, "stdout=true")
            except aiohttp.WSServerHandshakeError as exc:
                second = exc.status
            else:
                second = None
            await held.close()   # the client leaves without a word: the session detaches, its slot frees
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                try:
                    again, ws = await _open(n, "stdin=true&stdout=true")
                    break
                except aiohttp.WSServerHandshakeError:
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.1)
            try:
                await ws.send_bytes(b"\x00back\n")
                return second, await _frame(ws)
            finally:
                await again.close()

        second, echoed = asyncio.run(run())
        assert second == 429
        assert echoed == (channels.STDOUT, b"back\n")
        assert phase(n, "cat") == "Running"
    finally:
        n.close()
