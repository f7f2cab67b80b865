"""The prober's http and tcp checks against servers this test starts on loopback, and its loop:
the kubelet's verdicts (200–399, redirects, 500, refused, timeout) and wording, without containers."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kubelite.core.types import ProbeResult, ProbeTarget
from kubelite.prober import checks
from kubelite.runtime.netns import Namespaces
from kubelite.prober.network import NetworkProber
from tests.helpers import free_port

SEEN: list[dict[str, str]] = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        SEEN.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        port = self.server.server_address[1]
        routes = {
            "/ok": (200, {}, b"fine"),
            "/fail": (500, {}, b"broken"),
            "/same": (302, {"Location": "/ok"}, b""),
            "/same-to-fail": (301, {"Location": f"http://127.0.0.1:{port}/fail"}, b""),
            "/elsewhere": (302, {"Location": "http://example.invalid/x"}, b"moved"),
            "/loop": (302, {"Location": "/loop"}, b""),
            "/big": (200, {}, b"x" * 100_000),
        }
        if self.path == "/slow":
            time.sleep(3)
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"4\r\nabcd\r\n0\r\n\r\n")
            return
        status, headers, body = routes.get(self.path, (404, {}, b"no"))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def tls_server():
    """HTTPS with a self-signed certificate (tests/probe-tls.pem: a throwaway key for this test only)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(Path(__file__).with_name("probe-tls.pem")))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def target(action: str, port: int, path: str = "/", **fields) -> ProbeTarget:
    return ProbeTarget(container_id="c1", kind="liveness", action=action, first_at=datetime.now(timezone.utc),
                       period_s=1, timeout_s=fields.pop("timeout_s", 1), host="127.0.0.1", port=port, path=path,
                       **fields)


def http(port: int, path: str, **fields):
    async def go():
        ns = Namespaces()
        try:
            return await checks.http_check(ns, None, target("http", port, path, **fields), user_agent="kube-probe/0.1")
        finally:
            ns.close()
    return asyncio.run(go())


def tcp(port: int):
    async def go():
        ns = Namespaces()
        try:
            return await checks.tcp_check(ns, None, target("tcp", port))
        finally:
            ns.close()
    return asyncio.run(go())


def test_http_200_succeeds_and_sends_the_kubelets_headers(server):
    SEEN.clear()
    assert http(server, "/ok", headers=(("X-Probe", "yes"),)) == (ProbeResult.SUCCESS, "fine", False)
    sent = SEEN[-1]
    assert sent["user-agent"] == "kube-probe/0.1" and sent["accept"] == "*/*" and sent["x-probe"] == "yes"
    assert sent["host"] == f"127.0.0.1:{server}"


def test_http_headers_may_replace_host_user_agent_and_accept(server):
    SEEN.clear()
    http(server, "/ok", headers=(("Host", "example.com"), ("User-Agent", "mine"), ("Accept", "")))
    assert SEEN[-1]["host"] == "example.com" and SEEN[-1]["user-agent"] == "mine" and "accept" not in SEEN[-1]


def test_http_500_fails_with_the_kubelets_message(server):
    assert http(server, "/fail") == (ProbeResult.FAILURE, "HTTP probe failed with statuscode: 500", False)
    assert http(server, "/missing")[1] == "HTTP probe failed with statuscode: 404"


def test_redirects_to_the_same_host_are_followed(server):
    assert http(server, "/same") == (ProbeResult.SUCCESS, "fine", False)
    assert http(server, "/same-to-fail")[0] is ProbeResult.FAILURE


def test_a_redirect_to_another_host_is_a_success_with_a_warning(server):
    assert http(server, "/elsewhere") == (ProbeResult.SUCCESS, "Probe terminated redirects, Response body: moved",
                                          True)


def test_endless_redirects_fail(server):
    result, output, _ = http(server, "/loop")
    assert result is ProbeResult.FAILURE and output.endswith("stopped after 10 redirects")


def test_bodies_are_read_up_to_10_kib_and_chunked_bodies_decoded(server):
    assert len(http(server, "/big")[1]) == 10 * 1024
    assert http(server, "/chunked") == (ProbeResult.SUCCESS, "abcd", False)


def test_http_refused_and_timeout_read_as_go_prints_them(server):
    port = free_port()
    assert http(port, "/healthz") == (
        ProbeResult.FAILURE,
        f'Get "http://127.0.0.1:{port}/healthz": dial tcp 127.0.0.1:{port}: connect: connection refused', False)
    started = time.monotonic()
    result, output, _ = http(server, "/slow")
    assert time.monotonic() - started < 2.5
    assert (result, output) == (ProbeResult.FAILURE, f'Get "http://127.0.0.1:{server}/slow": context deadline '
                                                     "exceeded (Client.Timeout exceeded while awaiting headers)")


def test_https_is_not_verified(tls_server):
    assert http(tls_server, "/ok", scheme="https") == (ProbeResult.SUCCESS, "fine", False)


def test_tcp_open_and_closed_ports(server):
    assert tcp(server) == (ProbeResult.SUCCESS, "", False)
    port = free_port()
    assert tcp(port) == (ProbeResult.FAILURE, f"dial tcp 127.0.0.1:{port}: connect: connection refused", False)


def test_the_network_prober_runs_every_probe_on_one_thread_and_reports_each_run(server):
    woken = threading.Event()
    prober = NetworkProber(runtime=None, hint=woken.set, user_agent="kube-probe/0.1")  # type: ignore[arg-type]
    before = threading.active_count()
    try:
        targets = [target("http", server, "/ok", timeout_s=1), target("tcp", server)]
        targets = [targets[0], ProbeTarget(**{**targets[1].__dict__, "kind": "readiness"})]
        prober.set_targets("pod1", None, targets)
        assert woken.wait(5)
        time.sleep(1.5)
        outcomes = prober.drain(datetime.now(timezone.utc))
        kinds = [(o.kind, o.result) for o in outcomes]
        assert kinds.count(("liveness", ProbeResult.SUCCESS)) >= 2
        assert kinds.count(("readiness", ProbeResult.SUCCESS)) >= 2
        assert threading.active_count() - before <= 1  # the prober's event loop; no thread per probe
        prober.forget("pod1")
        time.sleep(0.2)
        prober.drain(datetime.now(timezone.utc))
        time.sleep(1.2)
        assert prober.drain(datetime.now(timezone.utc)) == []
    finally:
        prober.close()
    assert not any(t.name == "kubelite-prober" for t in threading.enumerate())


def test_namespaces_refuses_a_namespace_it_cannot_enter(tmp_path: Path):
    ns = Namespaces()
    try:
        with open(tmp_path / "x", "w") as f:
            with pytest.raises(OSError):
                ns.socket(socket.AF_INET, f.fileno())
    finally:
        ns.close()
