"""`pods/{name}/exec` over a WebSocket, against a daemon on the simulated runtime: the real kubectl
and the Python `kubernetes` client with the admin credential, the channel protocol spoken by hand,
refusals before the upgrade, the session cap, and a client that leaves mid-session.

The simulated exec echoes its stdin to stdout (or writes its command line) and exits with the
container's `exec-exit` code (`runtime.fake`); real containers are in `test_exec_real.py`.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import time

import aiohttp
import pytest

from kubelite.apiserver import channels
from kubelite.apiserver.limits import Limits
from tests.apinode import KUBECTL, ApiNode, require_kubectl, upgrade_answer, wait_for
from tests.helpers import pod_doc


@pytest.fixture(autouse=True)
def _kubectl_present():
    require_kubectl()


def fake_pod(name: str, exec_exit: int = 0, containers: list[str] | None = None) -> dict:
    doc = pod_doc(name, containers=containers or ["app"])
    for c in doc["spec"]["containers"]:
        c["image"], c["imagePullPolicy"] = "busybox:latest", "Never"
    doc["metadata"]["annotations"] = {f"fake.kubelite.io/{c}": f"exec-exit={exec_exit}"
                                      for c in (containers or ["app"])}
    return doc


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = ApiNode(tmp_path_factory.mktemp("exec")).start()
    n.write(fake_pod("web"))
    n.write(fake_pod("three", exec_exit=3))
    n.write(fake_pod("duo", containers=["a", "b"]))

    def running():
        pods = n.json("/api/v1/pods")["items"]
        return sorted(p["metadata"]["name"] for p in pods if p.get("status", {}).get("phase") == "Running") == \
            ["duo", "three", "web"]

    wait_for(running, what="the pods to run")
    yield n
    n.close()


def kubectl(node: ApiNode, *args: str, input: str | None = None, admin: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([KUBECTL, *args], env=node.env(node.admin_kubeconfig if admin else None), input=input,
                          capture_output=True, text=True, timeout=30)


def test_kubectl_exec_with_the_admin_credential_runs_the_command_and_exits_with_its_code(node):
    out = kubectl(node, "exec", "web", "--", "echo", "hi")
    assert (out.returncode, out.stdout) == (0, "echo hi\n"), out.stderr
    out = kubectl(node, "exec", "three", "--", "false")
    assert out.returncode == 3, (out.stdout, out.stderr)
    out = kubectl(node, "exec", "-i", "web", "--", "cat", input="from stdin\n")
    assert (out.returncode, out.stdout) == (0, "from stdin\n"), out.stderr


def test_kubectl_exec_chooses_the_container_as_kubectl_does(node):
    out = kubectl(node, "exec", "duo", "-c", "b", "--", "id")
    assert (out.returncode, out.stdout) == (0, "id\n"), out.stderr
    out = kubectl(node, "exec", "duo", "-c", "nope", "--", "id")
    assert out.returncode != 0 and "container nope is not valid for pod duo" in out.stderr, out.stderr
    out = kubectl(node, "exec", "gone", "--", "id")
    assert out.returncode == 1 and 'pods "gone" not found' in out.stderr, out.stderr


def test_the_read_only_credential_cannot_exec(node):
    out = kubectl(node, "exec", "web", "--", "echo", "hi", admin=False)
    assert out.returncode != 0 and "forbidden" in out.stderr.lower() and out.stdout == "", out.stderr


PYTHON_CLIENT = """
import json, sys
from kubernetes import client, config
from kubernetes.stream import stream

api = client.CoreV1Api(config.new_client_from_config(sys.argv[1]))
print(json.dumps(stream(api.connect_get_namespaced_pod_exec, sys.argv[2], "default", command=sys.argv[3:],
                       stderr=True, stdin=False, stdout=True, tty=False)))
session = stream(api.connect_get_namespaced_pod_exec, sys.argv[2], "default", command=sys.argv[3:], stderr=True,
                 stdin=False, stdout=True, tty=False, _preload_content=False)
session.run_forever(timeout=20)
print(session.returncode)
"""


def python_client_exec(kubeconfig, pod: str, *command: str) -> tuple[str, int]:
    """The Python client's `stream()` exec (v4.channel.k8s.io), run in a process of its own (its
    websocket modules stay out of this one, where other tests freeze the clock), twice: the output,
    then the exit code."""
    import sys

    out = subprocess.run([sys.executable, "-c", PYTHON_CLIENT, str(kubeconfig), pod, *command],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    output, code = out.stdout.strip().splitlines()[-2:]
    return json.loads(output), int(code)


def test_the_python_client_streams_an_exec_over_v4(node):
    assert python_client_exec(node.admin_kubeconfig, "web", "echo", "x") == ("echo x\n", 0)
    assert python_client_exec(node.admin_kubeconfig, "three", "false")[1] == 3


# ---------------------------------------------------------------------- the protocol by hand


@pytest.mark.parametrize("header, chosen", [
    ("v5.channel.k8s.io, v4.channel.k8s.io, v3.channel.k8s.io", channels.V5),
    ("v4.channel.k8s.io", channels.V4),
    ("base64.channel.k8s.io, v4.channel.k8s.io", channels.V4),
    ("channel.k8s.io", None), ("", None), (None, None)])
def test_the_subprotocol_is_the_first_offered_that_is_served(header, chosen):
    assert channels.choose(header) == chosen


def test_exit_statuses_are_the_kubelets():
    assert channels.exit_status(0) == {"metadata": {}, "status": "Success"}
    failed = channels.exit_status(137, ["sh", "-c", "kill -9 $$"])
    assert (failed["status"], failed["reason"]) == ("Failure", "NonZeroExitCode")
    assert failed["details"] == {"causes": [{"reason": "ExitCode", "message": "137"}]}
    assert failed["message"].endswith("exit code 137")


def _ssl(node: ApiNode) -> ssl.SSLContext:
    return node.client_context


async def _open(node: ApiNode, query: str, *, protocols=(channels.V5,), token: str | None = None,
                pod: str = "web"):
    session = aiohttp.ClientSession()
    url = f"{node.url}/api/v1/namespaces/default/pods/{pod}/exec?{query}"
    ws = await session.ws_connect(url, protocols=protocols, ssl=_ssl(node),
                                  headers={"Authorization": f"Bearer {token or node.admin_token}"})
    return session, ws


async def _collect(ws) -> dict[int, bytes]:
    got: dict[int, bytes] = {}
    async for message in ws:
        if message.type == aiohttp.WSMsgType.BINARY:
            got[message.data[0]] = got.get(message.data[0], b"") + message.data[1:]
    return got


def test_v5_stdin_close_signal_ends_the_input_and_the_status_says_success(node):
    async def run():
        session, ws = await _open(node, "command=cat&stdin=true&stdout=true&stderr=true")
        try:
            assert ws.protocol == channels.V5
            await ws.send_bytes(b"\x00abc")
            await ws.send_bytes(b"\x00def")
            await ws.send_bytes(bytes((channels.CLOSE, channels.STDIN)))
            return await asyncio.wait_for(_collect(ws), 10)
        finally:
            await session.close()

    got = asyncio.run(run())
    assert got[channels.STDOUT] == b"abcdef"
    assert json.loads(got[channels.ERROR]) == {"metadata": {}, "status": "Success"}


def test_the_exit_status_carries_the_code_as_kubectl_reads_it(node):
    async def run():
        session, ws = await _open(node, "command=false&stdout=true", protocols=(channels.V4,), pod="three")
        try:
            assert ws.protocol == channels.V4
            return await asyncio.wait_for(_collect(ws), 10)
        finally:
            await session.close()

    status = json.loads(asyncio.run(run())[channels.ERROR])
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


def test_refusals_come_before_the_upgrade(node):
    cases = [("/api/v1/namespaces/default/pods/web/exec?stdout=true", channels.V5, 400, "at least one command"),
             ("/api/v1/namespaces/default/pods/nope/exec?command=x", channels.V5, 404, 'pods "nope" not found'),
             ("/api/v1/namespaces/default/pods/web/exec?command=x", "v1.channel.k8s.io", 400, "subprotocols")]
    for path, protocol, code, text in cases:
        status, body = upgrade_answer(node, path, protocol)
        assert (status, text in body["message"]) == (code, True), (path, status, body)


def test_a_read_only_upgrade_is_refused_with_nothing_run(node):
    async def run():
        try:
            await _open(node, "command=echo&command=x&stdout=true", token=node.token)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        return None

    assert asyncio.run(run()) == 403


def test_sessions_beyond_the_cap_are_429_and_a_client_that_leaves_frees_its_slot(tmp_path):
    n = ApiNode(tmp_path)
    n.limits = Limits(max_sessions=2)
    n.start()
    try:
        n.write(fake_pod("web"))
        wait_for(lambda: any(p.get("status", {}).get("phase") == "Running"
                             for p in n.json("/api/v1/pods")["items"]), what="web running")

        async def run():
            held = [await _open(n, "command=cat&stdin=true&stdout=true") for _ in range(2)]
            try:
                await _open(n, "command=cat&stdin=true&stdout=true")
            except aiohttp.WSServerHandshakeError as exc:
                third = exc.status
            else:
                third = None
            for session, ws in held:   # they leave without a word: their sessions end, their slots free
                await session.close()
            deadline = time.monotonic() + 10
            while True:
                try:
                    session, ws = await _open(n, "command=echo&command=again&stdout=true")
                    break
                except aiohttp.WSServerHandshakeError:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            try:
                got = await asyncio.wait_for(_collect(ws), 10)
            finally:
                await session.close()
            return third, got

        third, got = asyncio.run(run())
        assert third == 429
        assert got[channels.STDOUT] == b"echo again\n"
    finally:
        n.close()


def test_a_message_over_the_size_limit_ends_the_session(node):
    async def run():
        session, ws = await _open(node, "command=cat&stdin=true&stdout=true")
        try:
            await ws.send_bytes(b"\x00" + b"x" * (channels.MAX_MESSAGE_BYTES + 1))
            await asyncio.wait_for(_collect(ws), 10)
            return ws.close_code
        finally:
            await session.close()

    # ended within the bound, not echoed: the server drops the connection (1009 or an abnormal close)
    assert asyncio.run(run()) in (aiohttp.WSCloseCode.MESSAGE_TOO_BIG, aiohttp.WSCloseCode.ABNORMAL_CLOSURE)


def test_an_idle_session_has_no_timeout_and_its_socket_is_kept_alive_by_tcp(node, monkeypatch):
    proc = subprocess.Popen([KUBECTL, "exec", "-i", "web", "--", "cat"], env=node.env(node.admin_kubeconfig),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)   # nothing sent either way: the session waits, as an idle shell's does
    out, err = proc.communicate("late\n", timeout=20)
    assert (proc.returncode, out) == (0, "late\n"), err


def test_gone_sees_a_peer_that_closed_behind_unread_data():
    import socket as sockets

    listener = sockets.create_server(("127.0.0.1", 0))
    client = sockets.create_connection(listener.getsockname())
    server, _ = listener.accept()

    class Transport:
        def get_extra_info(self, name):
            return server if name == "socket" else None

        def is_closing(self):
            return False

    class Ws:
        closed = False
        ws_protocol = channels.V5

    try:
        link = channels.Channels(Ws(), Transport())   # type: ignore[arg-type]
        assert server.getsockopt(sockets.SOL_SOCKET, sockets.SO_KEEPALIVE) == 1
        assert server.getsockopt(sockets.IPPROTO_TCP, sockets.TCP_KEEPIDLE) == channels.KEEPALIVE_IDLE_S
        client.sendall(b"x" * 1000)   # unread by the server, as stdin the command does not read
        assert not link.gone()
        client.close()
        wait_for(link.gone, what="the FIN to be seen", timeout=5)
    finally:
        server.close()
        listener.close()


@pytest.mark.parametrize("verb", ["exec", "attach"])
def test_a_handshake_aiohttp_would_refuse_is_refused_before_anything_runs(node, caplog, verb):
    caplog.set_level("INFO", logger="kubelite.audit")
    status, body = upgrade_answer(node, f"/api/v1/namespaces/default/pods/web/{verb}?command=touch&command=/x"
                                  "&stdout=true", channels.V5, key=False)
    assert (status, body["message"]) == (400, "unable to upgrade connection: not a valid WebSocket handshake"), body
    lines = [r.getMessage() for r in caplog.records if r.name == "kubelite.audit"]
    assert any(f"{verb} pod default/web refused: bad handshake" in line for line in lines), lines
    assert not any(f"{verb} pod default/web container" in line for line in lines), lines   # never opened


def test_the_audit_line_is_one_line_whatever_the_names_hold(caplog):
    from kubelite.apiserver import audit
    from kubelite.apiserver.auth import Access

    caplog.set_level("INFO", logger="kubelite.audit")
    audit.refused(Access.READ, "exec", "default", "x\naudit: kubelite:admin exec pod default/web", "why\r\n")
    audit.opened(Access.ADMIN, "exec", "default", "web", "app\n", command=["sh", "-c", "echo\nhi"])
    lines = [r.getMessage() for r in caplog.records if r.name == "kubelite.audit"]
    assert len(lines) == 2 and all("\n" not in line and "\r" not in line for line in lines), lines
    assert "x\\naudit: kubelite:admin" in lines[0]


@pytest.mark.parametrize("data, size", [(b'{"Width": 80, "Height": 24}', (80, 24)), (b'{"Width": 1e999}', None),
                                        (b'{"Width": 70000, "Height": 24}', None), (b'[1, 2]', None),
                                        (b'{"Width": 0, "Height": 24}', None), (b"not json", None)])
def test_a_resize_is_a_terminal_size_or_nothing(data, size):
    assert channels.terminal_size(data) == size
