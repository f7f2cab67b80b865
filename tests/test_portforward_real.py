"""Port-forward on real containers: `kubectl port-forward` (SPDY/3.1 in a WebSocket) through the
node's API with the admin credential, and `kubelite port-forward` on the node, to a busybox httpd.

Proven here: a file served in the pod arrives whole through the forward, also for 20 requests at
once; a pod listening on its loopback only is reachable (the dial is made inside the pod's network
namespace); a port nothing listens on fails that connection while the forward goes on serving; the
read-only credential is refused (403) and nothing is dialled; the forward's end leaves no socket in
the pod; a pod gone ends both forwards ("lost connection to pod"). The pods have no network of their own (loopback only), so the tests touch no bridge.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kubelite.apiserver import auth
from tests.apinode import KUBECTL, require_kubectl
from tests.real import REPO, container, pod, wait_for
from tests.test_apiserver_real import Served as ApiServed

pytestmark = pytest.mark.real

#: The file the pods serve: the numbers 1..N, a line each (about 1.3 MB).
LINES = 200_000


@pytest.fixture
def busybox(busybox):   # the shared image (conftest), once kubectl is known to be there
    require_kubectl()
    return busybox


class Served(ApiServed):
    """A real node, its API with both kubeconfigs (`admin`, `viewer`), and its passes in a thread."""

    def __init__(self, tmp_path: Path, busybox: Path) -> None:
        super().__init__(tmp_path, busybox)
        self.admin, self.viewer = self.admin_kubeconfig, self.kubeconfig

    def forward(self, *args: str, config: Path | None = None, websocket: bool = True) -> "Forward":
        env = self.env(config or self.admin)
        if not websocket:   # kubectl's fallback: a raw SPDY/3.1 upgrade
            env["KUBECTL_PORT_FORWARD_WEBSOCKETS"] = "false"
        return Forward(subprocess.Popen([KUBECTL, "port-forward", *args], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))


class Forward:
    """A running port-forward (kubectl's or kubelite's): its output read in the background."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, lines in ((proc.stdout, self.out), (proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, lines), daemon=True).start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def ports(self, count: int, timeout: float = 30) -> list[int]:
        """The local ports it listens on, from its 'Forwarding from 127.0.0.1:L -> R' lines."""
        def found():
            ports = [int(m.group(1)) for line in self.out if (m := re.match(r"Forwarding from 127\.0\.0\.1:(\d+)",
                                                                              line))]
            if self.proc.poll() is not None:
                raise AssertionError(f"port-forward ended: {self.out} {self.err}")
            return ports if len(ports) >= count else None
        return wait_for(found, timeout=timeout, what=f"{count} forwarded ports")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def served(tmp_path, busybox):
    s = Served(tmp_path, busybox)
    yield s
    left = s.close()
    assert left == [], f"left behind: {left}"


def web_pod(name: str, listen: str) -> dict:
    """A busybox httpd serving /www/lines (the numbers 1..LINES, made in the pod) on `listen`."""
    script = f"mkdir -p /www && seq 1 {LINES} > /www/lines && exec httpd -f -p {listen} -h /www"
    return pod(name, container("web", script))


def fetch(port: int, path: str, timeout: float = 20) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
        return answer.read()


EXPECTED = "".join(f"{i}\n" for i in range(1, LINES + 1)).encode()


def _running(served: Served, name: str) -> None:
    wait_for(lambda: served.node.running(name, "web"), timeout=60, what=f"{name} running")
    # the file is made before httpd starts: wait until httpd runs
    wait_for(lambda: served.node.exec(name, "web", "pidof", "httpd")[0] == 0, timeout=60, what=f"{name}'s httpd")


def test_kubectl_port_forward_fetches_a_file_and_twenty_at_once(served):
    served.node.write(web_pod("web", "80"))
    _running(served, "web")
    forward = served.forward("pod/web", ":80")
    try:
        (port,) = forward.ports(1)
        assert fetch(port, "/lines") == EXPECTED
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(lambda _: fetch(port, "/lines"), range(20)))
        assert all(a == EXPECTED for a in answers)
        assert forward.proc.poll() is None
    finally:
        forward.close()
    # kubectl gone: the session ended and closed its sockets in the pod
    wait_for(lambda: "ESTAB" not in served.node.exec("web", "web", "netstat", "-tn")[1], timeout=20,
             what="no connection left in the pod")


def test_kubectl_port_forward_over_a_raw_spdy_upgrade(served, caplog):
    caplog.set_level("DEBUG", logger="kubelite.api")
    served.node.write(web_pod("lo", "127.0.0.1:8080"))
    _running(served, "lo")
    forward = served.forward("pod/lo", ":8080", ":8081", websocket=False)
    try:
        good, bad = forward.ports(2)
        assert fetch(good, "/lines") == EXPECTED
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            assert all(a == EXPECTED for a in pool.map(lambda _: fetch(good, "/lines"), range(20)))
        assert _refused(bad)
        assert fetch(good, "/lines") == EXPECTED
        assert forward.proc.poll() is None, forward.err
    finally:
        forward.close()
    # kubectl asked for no WebSocket: the forward ran on the raw upgrade
    assert any("port-forward default/lo over raw SPDY/3.1" in r.getMessage() for r in caplog.records)


def _refused(port: int) -> bool:
    """A fetch through a forwarded port whose pod side refused: the local connection ends empty."""
    try:
        fetch(port, "/lines", timeout=10)
    except (OSError, urllib.error.URLError, ConnectionError, http.client.HTTPException):
        return True
    return False


def test_kubectl_port_forward_reaches_a_loopback_only_pod_and_survives_a_refused_port(served):
    served.node.write(web_pod("lo", "127.0.0.1:8080"))
    _running(served, "lo")
    forward = served.forward("pod/lo", ":8080", ":8081")   # nothing listens on 8081
    try:
        good, bad = forward.ports(2)
        assert fetch(good, "/lines") == EXPECTED
        for _ in range(2):
            assert _refused(bad)
            assert fetch(good, "/lines") == EXPECTED
        assert forward.proc.poll() is None, forward.err
        # the same forwarded port works once something listens behind it
        served.node.exec("lo", "web", "httpd", "-p", "127.0.0.1:8081", "-h", "/www")
        assert wait_for(lambda: not _refused(bad), timeout=20, what="8081 answering")
        assert fetch(bad, "/lines") == EXPECTED
    finally:
        forward.close()


def test_the_read_only_credential_is_refused_and_nothing_is_dialled(served, caplog):
    caplog.set_level("INFO", logger="kubelite.audit")
    served.node.write(pod("quiet", container("web", "nc -l -p 9000 > /in; touch /dialled; sleep 3600")))
    wait_for(lambda: served.node.running("quiet", "web"), timeout=60, what="quiet running")
    wait_for(lambda: "9000" in served.node.exec("quiet", "web", "netstat", "-ltn")[1], timeout=20,
             what="nc listening")
    refused = served.forward("pod/quiet", ":9000", config=served.viewer)
    assert refused.proc.wait(timeout=30) != 0
    time.sleep(0.5)
    assert "forbidden" in " ".join(refused.err).lower(), refused.err
    assert served.node.exec("quiet", "web", "test", "-e", "/dialled")[0] != 0
    assert any("kubelite:viewer portforward pod default/quiet refused" in r.getMessage() for r in caplog.records)
    # the admin's forward does reach it: the check above could have failed
    forward = served.forward("pod/quiet", ":9000")
    try:
        (port,) = forward.ports(1)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"hello\n")
        wait_for(lambda: served.node.exec("quiet", "web", "cat", "/dialled", "/in")[1] == "hello\n", timeout=20,
                 what="the admin's bytes in the pod")
    finally:
        forward.close()
    assert any("kubelite:admin portforward pod default/quiet" in r.getMessage() for r in caplog.records)
    # a broken handshake (no Sec-WebSocket-Key) is a 400, never a 500
    context = ssl.create_default_context(cafile=str(auth.api_dir(served.node.root) / "ca.crt"))
    host, port = served.api.url.removeprefix("https://").rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    try:
        conn.request("GET", "/api/v1/namespaces/default/pods/quiet/portforward", headers={
            "Authorization": f"Bearer {served.api.admin_token}", "Connection": "Upgrade", "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13", "Sec-WebSocket-Protocol": "SPDY/3.1+portforward.k8s.io"})
        answer = conn.getresponse()
        assert answer.status == 400 and b"not a valid WebSocket handshake" in answer.read()
    finally:
        conn.close()


def test_kubelite_port_forward_on_the_node(served):
    served.node.write(web_pod("lo", "127.0.0.1:8080"))
    _running(served, "lo")
    proc = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "port-forward", "pod/lo", ":8080", ":8081"],
                            env=served.node.env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    forward = Forward(proc)
    try:
        good, bad = forward.ports(2)
        assert fetch(good, "/lines") == EXPECTED
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(lambda _: fetch(good, "/lines"), range(20)))
        assert all(a == EXPECTED for a in answers)
        assert _refused(bad)
        assert fetch(good, "/lines") == EXPECTED
        assert proc.poll() is None
        wait_for(lambda: any("error forwarding port 8081" in line for line in forward.err), timeout=10,
                 what="the refused dial told")
    finally:
        forward.close()
    assert proc.returncode == 0, forward.err
    assert "ESTAB" not in served.node.exec("lo", "web", "netstat", "-tn")[1]


def test_kubelite_port_forward_refuses_what_it_cannot_forward(served):
    missing = served.node.cli("port-forward", "nothere", "80")
    assert missing.returncode != 0 and 'pods "nothere" not found' in missing.stderr
    bad = served.node.cli("port-forward", "nothere", "80:http")
    assert bad.returncode != 0 and "invalid port" in bad.stderr


def test_a_forward_ends_when_its_pod_is_gone(served):
    served.node.write(web_pod("brief", "80"))
    _running(served, "brief")
    kubectl = served.forward("pod/brief", ":80")
    kubelite = Forward(subprocess.Popen(
        [sys.executable, "-m", "kubelite.cli.main", "port-forward", "brief", ":80"], env=served.node.env(), cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        (through_kubectl,) = kubectl.ports(1)
        (through_kubelite,) = kubelite.ports(1)
        assert fetch(through_kubectl, "/lines") == EXPECTED and fetch(through_kubelite, "/lines") == EXPECTED
        (served.node.manifests / "brief.yaml").unlink()
        served.node.agent.hint_manifests()
        wait_for(lambda: not any(e.pod.metadata.name == "brief" for e in list(served.node.agent.pods.values())),
                 timeout=60, what="brief removed")
        for port in (through_kubectl, through_kubelite):
            assert _refused(port)
        assert kubectl.proc.wait(timeout=20) != 0
        assert kubelite.proc.wait(timeout=20) == 1
        time.sleep(0.3)
        assert "lost connection to pod" in " ".join(kubectl.err), kubectl.err
        assert "lost connection to pod default/brief" in " ".join(kubelite.err), kubelite.err
    finally:
        kubectl.close()
        kubelite.close()


def test_an_idle_forward_stays_open_while_kubectl_pings(served, monkeypatch):
    from kubelite.apiserver import portforward

    monkeypatch.setattr(portforward, "IDLE_TIMEOUT_S", 15.0)   # kubectl pings every 10 s
    served.node.write(web_pod("lo", "127.0.0.1:8080"))
    _running(served, "lo")
    forward = served.forward("pod/lo", ":8080")
    try:
        (port,) = forward.ports(1)
        assert fetch(port, "/lines") == EXPECTED
        time.sleep(32)   # more than twice the idle bound, with no connection at all
        assert fetch(port, "/lines") == EXPECTED
        assert forward.proc.poll() is None, forward.err
    finally:
        forward.close()


# ---------------------------------------------------------------------- the Python client

PYTHON_CLIENT = """
import hashlib, json, sys
from kubernetes import client, config
from kubernetes.stream import portforward

api = client.CoreV1Api(config.new_client_from_config(sys.argv[1]))
ports = [int(p) for p in sys.argv[3:]]
forward = portforward(api.connect_get_namespaced_pod_portforward, sys.argv[2], "default",
                      ports=",".join(str(p) for p in ports))
sockets = {}
for port in ports:   # every request sent first: the connections run side by side
    sock = forward.socket(port)
    sock.setblocking(True)
    sock.settimeout(30)
    sock.sendall(b"GET /lines HTTP/1.0\\r\\nHost: pod\\r\\n\\r\\n")
    sockets[port] = sock
found = {}
for port, sock in sockets.items():
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:   # the client's own end of a port the pod refused: it resets what was unread
        pass
    sock.close()
    head, _, body = answer.partition(b"\\r\\n\\r\\n")
    found[port] = {"status": head.split(b"\\r\\n")[0].decode() if head else "",
                   "sha256": hashlib.sha256(body).hexdigest(), "error": forward.error(port)}
print(json.dumps(found))
"""


def python_client_forward(kubeconfig: Path, pod_name: str, *ports: int) -> dict[int, dict]:
    """The Python client's `portforward()` (WebSocket `v4.channel.k8s.io`) fetching /lines through
    each port in one call, in a process of its own (its websocket modules stay out of this one):
    per port the status line, the body's SHA-256 and the forward's error."""
    import json

    out = subprocess.run([sys.executable, "-c", PYTHON_CLIENT, str(kubeconfig), pod_name, *map(str, ports)],
                         capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    return {int(port): found for port, found in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def test_the_python_clients_portforward_over_v4_channels(served, caplog):
    import hashlib

    caplog.set_level("DEBUG", logger="kubelite")
    expected = hashlib.sha256(EXPECTED).hexdigest()
    script = (f"mkdir -p /www && seq 1 {LINES} > /www/lines && httpd -p 127.0.0.1:8080 -h /www && "
              "exec httpd -f -p 80 -h /www")
    served.node.write(pod("pyweb", container("web", script)))
    _running(served, "pyweb")
    wait_for(lambda: "8080" in served.node.exec("pyweb", "web", "netstat", "-ltn")[1], timeout=20,
             what="both httpds listening")

    one = python_client_forward(served.admin, "pyweb", 80)
    assert one == {80: {"status": "HTTP/1.1 200 OK", "sha256": expected, "error": None}}
    two = python_client_forward(served.admin, "pyweb", 80, 8080)   # two ports in one call, one WebSocket
    assert two == {port: {"status": "HTTP/1.1 200 OK", "sha256": expected, "error": None} for port in (80, 8080)}
    assert any("port-forward default/pyweb over a WebSocket (v4.channel.k8s.io)" in r.getMessage()
               for r in caplog.records)
    assert any("kubelite:admin portforward pod default/pyweb container -: ports 80,8080" in r.getMessage()
               for r in caplog.records)
    # a port nothing listens on: the kubelet's words on its error channel, nothing read
    refused = python_client_forward(served.admin, "pyweb", 8081)[8081]
    assert refused["status"] == "" and refused["error"].startswith("error forwarding port 8081 to pod default/pyweb")
    # the client gone, its connections in the pod are closed
    wait_for(lambda: "ESTAB" not in served.node.exec("pyweb", "web", "netstat", "-tn")[1], timeout=20,
             what="no connection left in the pod")
    # the read-only credential: refused before anything is dialled
    out = subprocess.run([sys.executable, "-c", PYTHON_CLIENT, str(served.viewer), "pyweb", "80"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "403" in out.stderr, out.stderr
