"""The API under abuse: clients that send nothing, trickle a head, lie about a body's length, put
huge numbers in the query, or vanish mid-request and mid-stream. The node must go on answering
others at once, close what does not complete, answer a `Status` (never a 500), and log no
traceback.

Most tests run against `kubelite serve --runtime fake --debug` as a process (its API on a free
loopback port, its log captured and searched for tracebacks at the end); a few that need shorter
timeouts run an `ApiServer` in this process with its constants lowered. Every test is bounded in
time and closes what it opened.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kubelite.apiserver import auth, limits
from kubelite.apiserver.limits import Limits
from tests.apinode import REPO, bare_api, fake_api_options, get_from, tls_to, wait_for
from tests.helpers import pod_doc

HEADERS_TIMEOUT_S = limits.HEADERS_TIMEOUT_S   # the served daemon's deadline


def _usual_descriptor_limit() -> None:
    """The soft open-files limit most systems start a service with (1024), the hard one kept."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Served:
    """`kubelite serve` as a process, its API on a loopback port."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.root = tmp, tmp / "state"
        manifests = tmp / "m"
        manifests.mkdir()
        doc = pod_doc("web")
        for c in doc["spec"]["containers"]:
            c["image"], c["imagePullPolicy"] = "busybox:latest", "Never"
        (manifests / "web.yaml").write_text(json.dumps(doc))
        env = {**os.environ, "KUBELITE_ROOT": str(self.root), "KUBELITE_RUN_DIR": str(tmp / "run"),
               "KUBELITE_MANIFESTS": str(manifests), "PYTHONPATH": str(REPO), "HOME": str(tmp)}
        self.log_path = tmp / "serve.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "serve", "--runtime", "fake",
                                         "--node-name", "edge", "--api-address", "127.0.0.1:0", "--debug"],
                                        env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO,
                                        preexec_fn=_usual_descriptor_limit)
        self.url = wait_for(lambda: auth.read_server(self.root), what="the API", timeout=30)
        self.token = auth.read_token(self.root) or ""
        host, port = self.url.removeprefix("https://").rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.client_context = ssl.create_default_context(cafile=str(auth.api_dir(self.root) / "ca.crt"))
        wait_for(lambda: self.get("/api/v1/namespaces/default/pods/web")[0] == 200, what="the pod", timeout=30)

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            assert self.process.wait(timeout=30) == 0
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)
            self.log.close()

    # ---- clients

    def tcp(self, timeout: float = 20) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def tls(self, timeout: float = 20) -> ssl.SSLSocket:
        return tls_to(self, timeout)

    def get(self, path: str, *, token: bool = True, **kw) -> tuple[int, dict[str, str], bytes]:
        return get_from(self, path, token="" if token else None, **kw)

    def raw(self, data: bytes, *, timeout: float = 10) -> bytes:
        """Send bytes over TLS as they are; everything the server answers until it closes."""
        sock = self.tls(timeout)
        try:
            sock.sendall(data)
            return read_all(sock)
        finally:
            sock.close()


def read_all(sock: socket.socket) -> bytes:
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        pass
    return got


def closed_by_peer(sock: socket.socket) -> bytes | None:
    """What the peer sent before closing (b"" for nothing), or None when it still holds the socket
    open at the socket's timeout."""
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
        return got
    except TimeoutError:
        return None
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return got


def status_of(answer: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    code = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        size, _, rest = body.partition(b"\r\n")
        body = rest[:int(size, 16)]
    return code, headers, json.loads(body)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    s = Served(tmp_path_factory.mktemp("abuse"))
    s.rss_start = rss_kib(s.process.pid)
    yield s
    rss_end = rss_kib(s.process.pid)
    s.close()
    text = s.log_path.read_text()
    print(f"\nAPI abuse: daemon RSS {s.rss_start / 1024:.1f} MiB at start, {rss_end / 1024:.1f} MiB after the tests")
    assert "Traceback" not in text, text[-5000:]
    assert "Error handling request" not in text and "Unhandled exception" not in text
    for line in text.splitlines():   # one line per event: nothing a client sent splits the log
        assert line[:4].isdigit(), f"a continuation line in the daemon's log: {line!r}"


# ------------------------------------------------------------------ connections that send nothing


def test_healthz_answers_at_once_with_600_silent_or_half_open_connections_which_close_at_the_deadline(served):
    """200 TCP connections that never start TLS, 200 that finished the handshake and sent nothing,
    200 that sent half a request head: /healthz answers within seconds, and all 600 are closed by
    the header deadline, none of them answered."""
    held: list[socket.socket] = []
    try:
        opened = time.monotonic()
        held += [served.tcp() for _ in range(200)]
        held += [served.tls() for _ in range(200)]
        for _ in range(200):
            sock = served.tls()
            sock.sendall(b"GET /api/v1/pods HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ")
            held.append(sock)
        started = time.monotonic()
        code, _, body = served.get("/healthz", token=False)
        took = time.monotonic() - started
        print(f"\nAPI abuse: /healthz answered in {took * 1000:.1f} ms with 600 silent connections open")
        assert (code, body) == (200, b"ok") and took < 5
        code, _, body = served.get("/api/v1/namespaces/default/pods/web")
        assert code == 200 and json.loads(body)["metadata"]["name"] == "web"
        for sock in held:
            sock.settimeout(max(0.1, opened + HEADERS_TIMEOUT_S + 8 - time.monotonic()))
            assert closed_by_peer(sock) == b"", "a silent connection outlived the header deadline, or was answered"
        assert time.monotonic() - opened >= HEADERS_TIMEOUT_S - 1   # not cut before the deadline either
    finally:
        for sock in held:
            sock.close()


def test_a_client_trickling_a_head_a_byte_a_second_is_cut_at_the_deadline_and_never_routed(served):
    results: dict[str, tuple[float, bytes | None]] = {}

    def trickle(name: str, sock: ssl.SSLSocket, head: bytes) -> None:
        started = time.monotonic()
        sock.settimeout(1.0)
        answer: bytes | None = None
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            try:
                answer = sock.recv(4096)
                break   # an answer or EOF
            except TimeoutError:
                continue
            except (ssl.SSLError, ConnectionResetError):
                answer = b""
                break
        results[name] = (time.monotonic() - started, answer)
        sock.close()

    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"y" * 40 + b"\r\n\r\n"
    first = served.tls()
    kept = served.tls()
    # a kept-alive connection: one complete authenticated request, then the next head trickles
    kept.sendall(f"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {served.token}\r\n\r\n".encode())
    kept.settimeout(5)
    assert kept.recv(4096).startswith(b"HTTP/1.1 200 ")
    threads = [threading.Thread(target=trickle, args=("first", first, head)),
               threading.Thread(target=trickle, args=("kept", kept, head))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for name in ("first", "kept"):
        took, answer = results[name]
        assert answer == b"", f"{name}: the trickled head was answered: {answer!r}"
        assert HEADERS_TIMEOUT_S - 1.5 <= took <= HEADERS_TIMEOUT_S + 3, f"{name}: cut after {took:.1f}s"


# ------------------------------------------------------------------ malformed requests


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "0x10", "+5", " ", "99999999999999999999999999999999"])
def test_a_content_length_that_is_not_a_small_non_negative_integer_is_refused(served, length):
    review = b'{"spec": {}}'
    answer = served.raw(b"POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews HTTP/1.1\r\nHost: x\r\n"
                        + f"Authorization: Bearer {served.token}\r\nContent-Type: application/json\r\n".encode()
                        + f"Content-Length: {length}\r\n\r\n".encode() + review)
    code, headers, status = status_of(answer)
    assert code in (400, 413) and status["kind"] == "Status" and status["code"] == code, answer
    assert headers.get("connection") == "close" and headers["server"] == "kubelite"


def test_a_body_over_the_limit_is_refused_unread(served):
    """A client announcing 300 MiB gets 413 at once; the server reads none of it (it never waits for
    the body, and closes), and the daemon's memory does not grow by the body."""
    before = rss_kib(served.process.pid)
    sock = served.tls()
    try:
        sock.sendall(b"POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews HTTP/1.1\r\nHost: x\r\n"
                     + f"Authorization: Bearer {served.token}\r\nContent-Type: application/json\r\n".encode()
                     + f"Content-Length: {300 << 20}\r\n\r\n".encode())
        started = time.monotonic()
        sock.settimeout(5)
        answer = sock.recv(65536)
        assert time.monotonic() - started < 3
        code, headers, status = status_of(answer)
        assert (code, status["reason"]) == (413, "RequestEntityTooLarge") and headers.get("connection") == "close"
        sent = 0
        try:
            while sent < 64 << 20:
                sock.sendall(b"x" * (1 << 20))
                sent += 1 << 20
        except OSError:
            pass
        assert sent < 64 << 20, "the server went on reading a refused body"
    finally:
        sock.close()
    # the same over chunked transfer encoding: refused once past the limit
    chunk = b"x" * (1 << 20)
    body = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"
    answer = served.raw(b"POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews HTTP/1.1\r\nHost: x\r\n"
                        + f"Authorization: Bearer {served.token}\r\nContent-Type: application/json\r\n".encode()
                        + b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert status_of(answer)[0] == 413
    assert rss_kib(served.process.pid) - before < 32 * 1024


@pytest.mark.parametrize("request_bytes", [
    b"NONSENSE\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n",                       # a header without a colon
    b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",       # an over-long request line
    b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n",    # an over-long header
    b"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET /he\x00lthz HTTP/1.1\r\nHost: x\r\n\r\n",
])
def test_a_malformed_request_is_a_bad_request_status_and_the_connection_closes(served, request_bytes):
    answer = served.raw(request_bytes)
    code, headers, status = status_of(answer)
    assert code in (400, 413, 431) and status["kind"] == "Status" and status["code"] == code, answer
    assert headers.get("connection") == "close" and headers["server"] == "kubelite"


def test_a_request_head_over_64_kib_is_dropped_and_one_of_20_kib_is_served(served):
    def head(headers: int) -> bytes:
        return (b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                + b"".join(f"X-Pad-{i}: ".encode() + b"p" * 1000 + b"\r\n" for i in range(headers)) + b"\r\n")

    sock = served.tls()
    try:
        started = time.monotonic()
        try:
            sock.sendall(head(100))
        except OSError:
            pass
        assert closed_by_peer(sock) == b"" and time.monotonic() - started < 5
    finally:
        sock.close()
    assert served.raw(head(20)).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("query", [
    "limit=" + "1" * 401, "limit=9223372036854775808", "limit=-1", "limit=1_0", "limit=%D9%A1", "limit=+1e3",
    "watch=true&timeoutSeconds=" + "9" * 401, "watch=true&timeoutSeconds=9223372036854775808",
    "watch=true&resourceVersion=99999999999999999999", "watch=true&resourceVersion=-5",
])
def test_integer_query_parameters_out_of_range_are_400(served, query):
    code, headers, body = served.get(f"/api/v1/namespaces/default/pods?{query}")
    status = json.loads(body)
    assert code == 400 and status["reason"] == "BadRequest" and len(status["message"]) < 300, body


@pytest.mark.parametrize("query", ["tailLines=" + "9" * 401, "tailLines=-1", "limitBytes=0",
                                   "limitBytes=9223372036854775808", "sinceSeconds=" + "9" * 30, "sinceSeconds=0"])
def test_log_options_out_of_range_are_400(served, query):
    code, _, body = served.get(f"/api/v1/namespaces/default/pods/web/log?{query}")
    assert code == 400 and json.loads(body)["reason"] == "BadRequest", body


def test_the_largest_int64_values_are_still_accepted(served):
    assert served.get("/api/v1/namespaces/default/pods?limit=9223372036854775807")[0] == 200
    assert served.get("/api/v1/namespaces/default/pods/web/log?sinceSeconds=9223372036854775807")[0] == 200


# ------------------------------------------------------------------ who holds a connection, and what it says


def test_anonymous_answers_close_the_connection_and_name_no_software(served):
    for path, want in (("/healthz", 200), ("/api/v1/pods", 401)):
        code, headers, _ = served.get(path, token=False)
        assert code == want and headers.get("connection") == "close", headers
        assert headers["server"] == "kubelite"
    code, headers, _ = served.get("/api/v1/pods")
    assert code == 200 and headers.get("connection") != "close" and headers["server"] == "kubelite"
    for headers in (served.get("/api/v1/pods")[1], served.get("/nope", token=False)[1]):
        assert "python" not in json.dumps(headers).lower() and "aiohttp" not in json.dumps(headers).lower()


# ------------------------------------------------------------------ clients that vanish


def _abort(sock: socket.socket) -> None:
    """Close with a reset, as a killed client does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def watches(served: Served) -> float:
    _, _, body = served.get("/metrics")
    for line in body.decode().splitlines():
        if line.startswith("kubelite_api_watches "):
            return float(line.split()[1])
    raise AssertionError("no kubelite_api_watches")


def test_clients_vanishing_mid_request_and_mid_stream_leave_nothing_behind(served):
    auth_header = f"Authorization: Bearer {served.token}\r\n".encode()
    # mid-head, mid-body
    for data in (b"GET /api/v1/pods HTTP/1.1\r\nHost: x\r\n",
                 b"POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews HTTP/1.1\r\nHost: x\r\n" + auth_header
                 + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"spec\":"):
        for close in (_abort, socket.socket.close):
            sock = served.tls()
            sock.sendall(data)
            time.sleep(0.1)
            close(sock)
    # mid-stream: a watch and a followed log, each left with a reset and with a clean close
    for path in ("/api/v1/pods?watch=true", "/api/v1/namespaces/default/pods/web/log?follow=true"):
        for close in (_abort, socket.socket.close):
            sock = served.tls()
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode() + auth_header + b"\r\n")
            sock.settimeout(10)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
            close(sock)
    assert served.get("/healthz", token=False)[0] == 200
    wait_for(lambda: watches(served) == 0, what="the left watches to end", timeout=20)
    # a response the client never reads: a large list to a client that resets at once
    sock = served.tls()
    sock.sendall(b"GET /api/v1/pods HTTP/1.1\r\nHost: x\r\n" + auth_header + b"\r\n")
    _abort(sock)
    assert served.get("/api/v1/namespaces/default/pods/web")[0] == 200


# ------------------------------------------------------------------ in-process: short timeouts, small caps


@pytest.fixture
def quick(tmp_path):
    """An ApiServer in this process with a 1 s idle timeout, a 2 s header deadline and room for one
    stream."""
    with bare_api(tmp_path, limits=Limits(idle_timeout_s=1.0, headers_timeout_s=2.0, max_streams=1)) as api:
        yield api


def _request(api, sock: ssl.SSLSocket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.token}\r\n\r\n".encode())
    return sock.recv(65536)


def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout(quick):
    sock = tls_to(quick)
    try:
        assert _request(quick, sock, "/healthz").startswith(b"HTTP/1.1 200 ")
        time.sleep(0.5)
        assert _request(quick, sock, "/healthz").startswith(b"HTTP/1.1 200 ")   # within the idle time: kept
        started = time.monotonic()
        sock.settimeout(5)
        assert closed_by_peer(sock) == b""
        assert 0.5 <= time.monotonic() - started < 3
    finally:
        sock.close()


def test_a_body_trickled_by_a_token_holder_is_cut_at_the_deadline(quick):
    sock = tls_to(quick)
    try:
        sock.sendall(b"POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews HTTP/1.1\r\nHost: x\r\n"
                     + f"Authorization: Bearer {quick.token}\r\nContent-Type: application/json\r\n".encode()
                     + b"Content-Length: 100\r\n\r\n{")
        started = time.monotonic()
        answer = read_all(sock)
        code, headers, status = status_of(answer)
        assert (code, status["reason"], headers.get("connection")) == (400, "BadRequest", "close"), answer
        assert "did not arrive within 2s" in status["message"] and 1.5 < time.monotonic() - started < 5
    finally:
        sock.close()


def test_streams_are_capped_apart_from_connections(quick):
    first = tls_to(quick)
    try:
        assert _request(quick, first, "/api/v1/pods?watch=true").startswith(b"HTTP/1.1 200 ")
        second = tls_to(quick)
        try:
            code, headers, status = status_of(_request(quick, second, "/api/v1/pods?watch=true"))
            assert (code, status["reason"], headers.get("retry-after")) == (429, "TooManyRequests", "1")
            assert _request(quick, second, "/api/v1/pods").startswith(b"HTTP/1.1 200 ")   # plain reads go on
        finally:
            second.close()
    finally:
        first.close()
    wait_for(lambda: quick._serving.streams == 0, what="the stream to end", timeout=10)


def test_the_connection_cap_follows_the_descriptor_limit(monkeypatch):
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 4096))
    assert limits.connection_cap() == 1024 - limits.RESERVED_DESCRIPTORS
    assert limits.connection_cap(2) == 2
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1 << 20, 1 << 20))
    assert limits.connection_cap() == limits.MAX_CONNECTIONS
    monkeypatch.setattr(resource, "getrlimit", lambda which: (100, 100))
    assert limits.connection_cap() == limits.MIN_CONNECTIONS


# ------------------------------------------------------------------ in-process: the cap, closing, errors


def _open_count(api) -> int:
    return api._serving.guard.open


def test_silent_clients_at_the_cap_give_way_to_a_token_holder(tmp_path):
    """With room for 4 connections, held full by clients that send nothing (without TLS, or after
    the handshake), /healthz with the token answers at once, again and again: each newcomer closes
    the oldest silent connection, and only that one."""
    with bare_api(tmp_path, limits=Limits(max_connections=4, headers_timeout_s=10.0)) as api:
        held: list[socket.socket] = []
        try:
            for _ in range(3):
                while len(held) < 3 or _open_count(api) < 4:
                    held.append(socket.create_connection((api.host, api.port), timeout=10) if len(held) % 2
                                else tls_to(api))
                    wait_for(lambda: _open_count(api) == min(4, len(held)), what="the connection counted",
                             timeout=5)
                started = time.monotonic()
                code, _, body = get_from(api, "/healthz")
                assert (code, body) == (200, b"ok") and time.monotonic() - started < 2
                wait_for(lambda: _open_count(api) == 3, what="the request's connection to close", timeout=5)
            for sock in held[:3]:   # the oldest three made room
                sock.settimeout(2)
                assert closed_by_peer(sock) == b""
            for sock in held[3:]:   # the others still wait for their deadline
                sock.settimeout(0.3)
                assert closed_by_peer(sock) is None
        finally:
            for sock in held:
                sock.close()


def test_a_connection_that_completed_a_request_is_not_evicted_and_the_newcomer_is_refused(tmp_path):
    with bare_api(tmp_path, limits=Limits(max_connections=2, headers_timeout_s=10.0)) as api:
        kept = [tls_to(api) for _ in range(2)]
        try:
            for sock in kept:   # token holders, kept alive after their first request
                assert _request(api, sock, "/healthz").startswith(b"HTTP/1.1 200 ")
            extra = socket.create_connection((api.host, api.port), timeout=5)
            try:
                assert closed_by_peer(extra) == b""   # closed at accept, without a handshake
            finally:
                extra.close()
            for sock in kept:
                assert _request(api, sock, "/healthz").startswith(b"HTTP/1.1 200 ")
        finally:
            for sock in kept:
                sock.close()
        wait_for(lambda: _open_count(api) == 0, what="the slots to be freed", timeout=10)
        assert get_from(api, "/healthz")[0] == 200


@pytest.mark.parametrize("goodbye", [False, True])
def test_an_anonymous_connection_frees_its_slot_at_once_or_within_the_grace(tmp_path, goodbye):
    """An answer without the token closes its connection. A client that then closes its side frees
    the slot at once; one that neither reads nor closes holds it for the close grace (1 s here), not
    for the TLS shutdown timeout."""
    with bare_api(tmp_path, limits=Limits(close_grace_s=1.0, headers_timeout_s=10.0)) as api:
        sock = tls_to(api)
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
            started = time.monotonic()
            if goodbye:
                sock.close()
            wait_for(lambda: _open_count(api) == 0, what="the slot to be freed", timeout=8)
            took = time.monotonic() - started
            assert took < 0.5 if goodbye else 0.5 < took < 3, took
        finally:
            sock.close()


def test_the_descriptor_limit_is_raised_to_the_hard_limit():
    script = ("import json, resource; from kubelite.apiserver import limits\n"
              "_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
              "resource.setrlimit(resource.RLIMIT_NOFILE, (min(512, hard), hard))\n"
              "print(json.dumps([limits.raise_descriptor_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE)]))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert out.returncode == 0, out.stderr
    raised, soft, hard = json.loads(out.stdout)
    assert raised == soft == hard, out.stdout


def test_the_served_daemon_runs_with_its_soft_descriptor_limit_raised(served):
    limits_text = Path(f"/proc/{served.process.pid}/limits").read_text()
    soft, hard = next(line.split()[3:5] for line in limits_text.splitlines() if line.startswith("Max open files"))
    assert soft == hard, limits_text


class _EarlyRequestClient:
    """A TLS 1.3 client that sends its Finished and its first request in one segment, as a client with
    data ready does: the server's TLS layer hands the request on before the handshake's waiter wakes."""

    def __init__(self, api) -> None:
        self.sock = socket.create_connection((api.host, api.port), timeout=10)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        context = ssl.create_default_context(cafile=str(auth.api_dir(api.root) / "ca.crt"))
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=api.host)

    def handshake_and_send(self, data: bytes) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if pending := self.outgoing.read():
                    self.sock.sendall(pending)
                self.incoming.write(self.sock.recv(65536))
        self.tls.write(data)
        self.sock.sendall(self.outgoing.read())   # Finished and the request together

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self.sock.sendall(self.outgoing.read())

    def answer(self) -> bytes:
        """One answer (status line through a Content-Length body); b"" when the server closed."""
        got = b""
        while True:
            try:
                chunk = self.tls.read(65536)
                got += chunk
                head, sep, body = got.partition(b"\r\n\r\n")
                if sep:
                    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    if len(body) >= length:
                        return got
            except ssl.SSLWantReadError:
                data = self.sock.recv(65536)
                if not data:
                    return got
                self.incoming.write(data)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return got

    def close(self) -> None:
        self.sock.close()


def test_a_kept_alive_tls_connection_whose_first_request_came_with_the_handshake_outlives_the_deadline(tmp_path):
    with bare_api(tmp_path, limits=Limits(headers_timeout_s=1.0, idle_timeout_s=30.0)) as api:
        client = _EarlyRequestClient(api)
        request = f"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.token}\r\n\r\n".encode()
        try:
            client.handshake_and_send(request)
            assert client.answer().startswith(b"HTTP/1.1 200 ")
            time.sleep(1.6)   # past the head deadline, well within the idle time
            client.send(request)
            assert client.answer().startswith(b"HTTP/1.1 200 "), "the kept-alive connection was cut"
        finally:
            client.close()


def test_a_first_head_parsed_before_connection_made_arms_no_deadline():
    """What the test above does over the network, step by step: asyncio's TLS layer hands a request
    that came with the handshake to the connection before `connection_made`; the deadline for a
    first head must then not be armed, or it would cut the kept-alive connection later."""
    from kubelite.apiserver import connections

    class Transport(asyncio.Transport):
        def get_extra_info(self, name, default=None):
            return default

        def is_closing(self):
            return False

        def close(self):
            pass

        def abort(self):
            pass

    async def early() -> tuple[object, bool]:
        async def handler(request):
            return connections.status_response(200, {})

        manager = connections.Manager(handler, limits=Limits(headers_timeout_s=1.0))
        transport = Transport()
        slot = connections.Guard(4).admit(transport)
        connection = manager.connection(slot=slot, accepted_at=asyncio.get_running_loop().time())
        connection.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        connection.connection_made(transport)
        armed = connection._head_timer
        evictable = slot in slot.guard.waiting
        connection.connection_lost(None)
        return armed, evictable

    armed, evictable = asyncio.run(early())
    assert armed is None and not evictable


def test_the_asyncio_and_aiohttp_internals_the_server_relies_on_are_still_there(tmp_path):
    """Fails loudly when Python or aiohttp change what `connections` relies on (see its docstring):
    the small TLS buffer would silently fall back to asyncio's 256 KiB, the head deadline or the
    Status answers to unparsable heads would stop working."""
    import inspect

    from aiohttp import web_protocol

    from kubelite.apiserver import connections

    assert connections.SMALL_TLS_BUFFERS, "asyncio.sslproto.SSLProtocol changed: TLS falls back to loop.start_tls"
    handler = web_protocol.RequestHandler
    assert "_request_count" in handler.__slots__, "aiohttp's RequestHandler no longer counts parsed heads"
    for method, parameters in (("data_received", ["self", "data"]),
                               ("finish_response", ["self", "request", "resp", "start_time"]),
                               ("handle_error", ["self", "request", "status", "exc", "message"]),
                               ("connection_made", ["self", "transport"]),
                               ("connection_lost", ["self", "exc"])):
        assert list(inspect.signature(getattr(handler, method)).parameters) == parameters, method
    with bare_api(tmp_path) as api:
        sock = tls_to(api)
        try:
            assert _request(api, sock, "/healthz").startswith(b"HTTP/1.1 200 ")
            (connection,) = api._serving.manager.connections
            layer = connection.transport._ssl_protocol
            assert type(layer) is connections.TlsProtocol and len(layer._ssl_buffer) == connections.TLS_BUFFER_BYTES
        finally:
            sock.close()
    # an unparsable head is answered as HTTP/1.1 with a Status (aiohttp's request keeps its version)
    with bare_api(tmp_path / "again") as api:
        sock = tls_to(api)
        try:
            sock.sendall(b"NONSENSE\r\n\r\n")
            assert read_all(sock).startswith(b"HTTP/1.1 400 ")
        finally:
            sock.close()


@pytest.mark.parametrize("where", ["route", "request handling"])
def test_an_error_inside_request_handling_is_a_status_500_and_one_error_line(tmp_path, monkeypatch, caplog, where):
    from kubelite.apiserver import objects

    def broken(*_a, **_k):
        raise RuntimeError("the server broke\n  File \"x.py\", line 1")

    monkeypatch.setattr(objects if where == "route" else auth, "version" if where == "route" else "authorized",
                        broken)
    caplog.set_level("DEBUG", logger="kubelite.api")
    with bare_api(tmp_path) as api:
        code, headers, body = get_from(api, "/version?x=1")
    status = json.loads(body)
    assert (code, status["kind"], status["reason"], status["code"]) == (500, "Status", "InternalError", 500), body
    assert b"Traceback" not in body and b"x.py" not in body and headers["server"] == "kubelite"
    errors = [r for r in caplog.records if r.levelname == "ERROR" and r.name == "kubelite.api"]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    line = errors[0].getMessage()
    assert '"GET /version?x=1 HTTP/1.1"' in line and "RuntimeError" in line and "\n" not in line, line
    assert errors[0].exc_info is None


def test_an_event_loop_that_cannot_serve_is_one_error_line_and_the_port_is_freed(tmp_path, monkeypatch, caplog):
    from kubelite import daemon
    from kubelite.apiserver import serving
    from tests.helpers import free_port

    async def broken(api):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(serving.Serving, "start", broken)
    port = free_port()
    options = fake_api_options(tmp_path, port, node_name="node1")
    assert daemon.start_api(options, daemon.LoopHealth(1.0)) is None
    assert "API not served: cannot listen on 127.0.0.1" in caplog.text and "Too many open files" in caplog.text
    assert auth.read_server(tmp_path / "state") is None
    again = socket.socket()
    try:
        again.bind(("127.0.0.1", port))
    finally:
        again.close()
