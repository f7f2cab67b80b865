"""A node that serves its Kubernetes API, for tests that read it with kubectl, the Python client and
a Prometheus parser: `kubelite serve` (the daemon's `serve()`) on a thread with the simulated
runtime and the API on a free loopback port, plus helpers to run kubectl against it; and an
`ApiServer` alone over an empty store (`bare_api`), with the clients tests use to reach it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from kubelite.agent.agent import AgentConfig
from kubelite.daemon import ApiOptions, ServeOptions, serve
from kubelite.apiserver import auth
from kubelite.apiserver.limits import Limits
from kubelite.core.types import BackoffPolicy
from tests.real import wait_for

REPO = Path(__file__).resolve().parent.parent
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


def require_kubectl() -> None:
    """kubectl must be there in CI (scripts/bootstrap test installs Debian's kubernetes-client)."""
    if shutil.which("kubectl") is None:
        import pytest

        if os.environ.get("CI"):
            pytest.fail("kubectl is not installed — CI must run the API tests (scripts/bootstrap test installs it)")
        pytest.skip("kubectl is not installed (scripts/bootstrap test installs it)")


@dataclass
class ApiNode:
    base: Path
    manifests: Path = field(init=False)
    root: Path = field(init=False)
    kubeconfig: Path = field(init=False)
    admin_kubeconfig: Path = field(init=False)
    url: str = ""
    token: str = ""
    admin_token: str = ""
    limits: Limits | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.manifests, self.root = self.base / "manifests", self.base / "state"
        self.kubeconfig = self.base / "kubeconfig"
        self.admin_kubeconfig = self.base / "kubeconfig-admin"
        self.manifests.mkdir(parents=True, exist_ok=True)

    def start(self, *, relist_period_s: float = 1.0) -> "ApiNode":
        agent = AgentConfig(manifests=self.manifests, root=self.root, node_name="node1",
                            relist_period_s=relist_period_s, backoff=BackoffPolicy(initial_s=1, max_s=2))
        options = ServeOptions(agent=agent, run_dir=self.base / "run", runtime="fake",
                               api=ApiOptions(host="127.0.0.1", port=0, limits=self.limits))
        self.thread = threading.Thread(target=serve, args=(options,), kwargs={"stop": self.stop}, daemon=True)
        self.thread.start()
        self.url = wait_for(lambda: auth.read_server(self.root), what="the API to listen")
        self.token = auth.read_token(self.root) or ""
        self.admin_token = auth.read_token(self.root, admin=True) or ""
        for path, admin in ((self.kubeconfig, ()), (self.admin_kubeconfig, ("--admin",))):
            out = self.kubelite("kubeconfig", *admin)
            assert out.returncode == 0, out.stderr
            path.write_text(out.stdout)
        return self

    def close(self) -> None:
        """Stop the daemon (within a relist period: the loop sees `stop` when it wakes)."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=20)

    # ------------------------------------------------------------------ manifests

    def write(self, doc: dict[str, Any]) -> Path:
        path = self.manifests / f"{doc['metadata'].get('namespace', 'default')}-{doc['metadata']['name']}.yaml"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(doc))
        tmp.rename(path)
        return path

    # ------------------------------------------------------------------ clients

    def env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(kubeconfig or self.kubeconfig), "KUBELITE_ROOT": str(self.root),
                "KUBELITE_MANIFESTS": str(self.manifests), "PYTHONPATH": str(REPO), "HOME": str(self.base)}

    def kubectl(self, *args: str, kubeconfig: Path | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([KUBECTL, *args], env=self.env(kubeconfig), capture_output=True, text=True,
                              timeout=timeout)

    def kubectl_stream(self, *args: str) -> "Stream":
        return Stream(subprocess.Popen([KUBECTL, *args], env=self.env(), stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True))

    def kubelite(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kubelite.cli.main", *args], env=self.env(), cwd=REPO,
                              capture_output=True, text=True, timeout=30)

    @property
    def host(self) -> str:
        return self.url.removeprefix("https://").rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(auth.api_dir(self.root) / "ca.crt"))

    def request(self, path: str, *, token: str | None = "", method: str = "GET", accept: str | None = None,
                timeout: float = 10) -> tuple[int, bytes]:
        """One HTTPS request; token "" means this node's token, None means none."""
        code, _, body = get_from(self, path, token=token, method=method, timeout=timeout,
                                 headers={"Accept": accept} if accept else None)
        return code, body

    def json(self, path: str, **kw: Any) -> Any:
        code, body = self.request(path, **kw)
        assert code == 200, (code, body)
        return json.loads(body)


class Stream:
    """A running kubectl whose output lines are collected by a thread."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process, self.lines = process, queue.SimpleQueue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, predicate: Callable[[str], bool], *, timeout: float = 30, what: str = "a line") -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if line is None:
                raise AssertionError(f"kubectl ended before {what}; saw {self.seen}; "
                                     f"stderr {self.process.stderr.read() if self.process.stderr else ''}")
            if line:
                self.seen.append(line)
                if predicate(line):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; saw {self.seen}")

    def rest(self, timeout: float = 30) -> list[str]:
        """Every line until kubectl exits by itself."""
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                continue
            if line is None:
                return out
            out.append(line)
        raise AssertionError(f"kubectl did not exit; printed {out}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=10)


# ---------------------------------------------------------------------- an ApiServer alone


def fake_api_options(base: Path, port: int, *, node_name: str = "node1") -> ServeOptions:
    """`serve` options for a dry run under `base` (its `state/` made) whose API listens on loopback `port`."""
    (base / "state").mkdir(exist_ok=True)
    return ServeOptions(agent=AgentConfig(manifests=base / "m", root=base / "state", node_name=node_name),
                        run_dir=base / "run", runtime="fake", api=ApiOptions(host="127.0.0.1", port=port))


@contextlib.contextmanager
def bare_api(base: Path, *, limits: Limits = Limits(), host: str = "127.0.0.1",
             health: Callable[[], Any] | None = None) -> Iterator[Any]:
    """An ApiServer on a free port of `host` over an empty store under `base`, with `limits`;
    closed at the end. `api.host`, `api.port` and `api.client_context` are what clients need."""
    from kubelite.apiserver import server
    from kubelite.store.store import Store

    Store(base / "state").close()
    api = server.ApiServer(root=base / "state", node_name="node1", runtime="fake", host=host, port=0,
                           health=health or (lambda: server.Health(True, "ok")), limits=limits)
    api.start()
    try:
        address, port = api.url.removeprefix("https://").rsplit(":", 1)
        api.host, api.port = address.strip("[]"), int(port)
        api.client_context = ssl.create_default_context(cafile=str(auth.api_dir(api.root) / "ca.crt"))
        yield api
    finally:
        api.close()


def tls_to(api: Any, timeout: float = 10) -> ssl.SSLSocket:
    """A TLS connection to a bare_api, handshake done, nothing sent."""
    return api.client_context.wrap_socket(socket.create_connection((api.host, api.port), timeout=timeout),
                                          server_hostname=api.host)


def get_from(api: Any, path: str, *, token: str | None = "", method: str = "GET", body: bytes | None = None,
             headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """One request on a connection of its own to anything with `host`, `port`, `client_context` and
    `token`; token "" means that token, None means none."""
    conn = http.client.HTTPSConnection(api.host, api.port, context=api.client_context, timeout=timeout)
    try:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token or api.token}"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def upgrade_answer(node: ApiNode, path: str, protocol: str, *, key: bool = True) -> tuple[int, dict[str, Any]]:
    """The status and JSON body an admin's WebSocket upgrade of `path` is refused with (a streaming
    subresource's answer before its upgrade); `key=False` leaves out Sec-WebSocket-Key."""
    headers = {"Authorization": f"Bearer {node.admin_token}", "Connection": "Upgrade", "Upgrade": "websocket",
               "Sec-WebSocket-Version": "13", "Sec-WebSocket-Protocol": protocol}
    if key:
        headers["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
    conn = http.client.HTTPSConnection(node.host, node.port, context=node.client_context, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()
