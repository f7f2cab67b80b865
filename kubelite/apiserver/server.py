"""The API server of one node: its address, certificate and token, its event loop, and its reads.

Owns: `ApiServer`, which the daemon makes beside the agent: the two tokens and the certificates (`auth`,
`tls`), the listening socket on a loopback address (or the one `--api-address` names), one aiohttp
server on an asyncio event loop in a thread of its own (`serving`), and the reads the routes make of
the state database, each through a read-only connection of its own; nothing here writes the store.
It also holds the readings of the containers' usage that the metrics API's rates need
(`runtime.stats.Sampler`, read on demand).
What a client may hold is in `limits`; connections and their deadlines in `connections`; what each
path answers in `routes`; a pod's exec in `podexec` and attach in `attach`, through the runtime the daemon
hands over.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from kubelite.apiserver import auth, feed, limits, metrics, objects, tls
from kubelite.apiserver import node as nodes
from kubelite.apiserver.connections import loop_error
from kubelite.apiserver.limits import Limits
from kubelite.apiserver.serving import LISTEN_BACKLOG, Serving
from kubelite.clock import utcnow
from kubelite.runtime import stats, view
from kubelite.store.reader import Reader, one_per_name

log = logging.getLogger("kubelite.api")


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Health:
    ready: bool
    message: str


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server bound to host:port; a wildcard address
    (0.0.0.0, ::) is reached, and covered by the certificate, as the loopback address."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


class ApiServer:
    """The API of one node; `start()` it beside the agent, `notify()` it after each pass."""

    def __init__(self, *, root: Path, node_name: str, runtime: str, host: str, port: int,
                 health: Callable[[], Health], node_ip: str | None = None, limits: Limits = Limits(),
                 run_dir: Path | None = None, containers: Any = None) -> None:
        self.root, self.node_name, self.health, self.limits = root, node_name, health, limits
        #: The runtime's run directory: where port-forward finds a pod's network namespace (None: the
        #: simulated runtime's node, whose pods have none).
        self.run_dir = run_dir
        #: The runtime whose `exec_stream` runs a client's exec and whose `attach_container` serves an
        #: attach (the agent's, as the daemon wires it); None: both answer that this API reaches no
        #: containers.
        self.containers = containers
        self.token = auth.ensure_token(root)
        self.admin_token = auth.ensure_token(root, admin=True)
        directory = auth.api_dir(root)
        names = ["127.0.0.1", "::1", "localhost", node_name, socket.gethostname(), node_ip or nodes.internal_ip()]
        if host not in ("", "0.0.0.0", "::"):
            names.append(host)
        tls.ensure_certificates(directory, names)
        created = datetime.fromtimestamp((auth.api_dir(root) / auth.TOKEN_FILE).stat().st_mtime, timezone.utc)
        self.facts = nodes.host_facts(name=node_name, created=_rfc3339(created), root=str(root), runtime=runtime,
                                      node_ip=node_ip)
        self.started = _rfc3339(utcnow())
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # OSError: cannot listen
        self.socket = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
        try:
            self.socket.setblocking(False)
            self.context = tls.server_context(directory)
            self.feed = feed.PodFeed(self.reader)
            self.instance = view.instance_name(root)   # the runtime's cgroups: the metrics API's figures
            self.sampler = stats.Sampler()
            self.registry = metrics.node_registry(self.reader, lambda: self.feed.watchers, instance=self.instance)
        except BaseException:
            self.socket.close()
            if hasattr(self, "feed"):
                self.feed.stop()
            raise
        self.closing = threading.Event()
        bound_host, bound_port = self.socket.getsockname()[:2]
        self.url = client_url(str(bound_host), bound_port)
        self.address = self.url.removeprefix("https://")
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serving: Serving | None = None

    def reader(self) -> Reader:
        return Reader(self.root)

    def start(self) -> str:
        descriptors = limits.raise_descriptor_limit()
        log.debug("API: open-files limit %d: at most %d connections", descriptors, self.limits.cap())
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(loop_error)

        failure: list[BaseException] = []

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._serving = self._loop.run_until_complete(Serving.start(self))
            except BaseException as exc:  # noqa: BLE001 — told to the starting thread, which raises it
                failure.append(exc)
                return
            finally:
                ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="kubelite-api", daemon=True)
        self._thread.start()
        ready.wait(30)
        if self._serving is None:
            self.close()
            raise failure[0] if failure else RuntimeError("the API's event loop did not start within 30 s")
        auth.record_server(self.root, self.url)
        log.info("API serving on %s (kubectl: kubelite kubeconfig > ~/.kube/config)", self.url)
        return self.url

    def notify(self) -> None:
        self.feed.notify()

    def close(self) -> None:
        self.closing.set()
        self.feed.stop()
        loop, serving = self._loop, self._serving
        if loop is not None and serving is not None and self._thread is not None and self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(serving.stop(), loop).result(timeout=10)
            except Exception:  # noqa: BLE001 — stopping goes on: the loop ends below either way
                log.debug("API: stopping the server failed", exc_info=True)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                loop.close()
        elif loop is not None and not loop.is_running() and not loop.is_closed():
            loop.close()   # it never served
        self.socket.close()

    # ------------------------------------------------------------------ reads

    def node(self) -> dict[str, Any]:
        health = self.health()
        return nodes.node(self.facts, ready=health.ready, ready_message=health.message,
                            heartbeat=_rfc3339(utcnow()), since=self.started)

    def items(self, resource: str, namespace: str | None, name: str | None = None) -> tuple[list[dict], int]:
        """The objects of a resource and the resourceVersion they were read at."""
        reader = self.reader()
        try:
            with reader.snapshot():
                rv = reader.resource_version()
                if resource == "pods":
                    found = one_per_name(reader.pods(namespace, name))
                elif resource == "events":
                    found = [objects.api_event(e, self.node_name) for e in reader.events(namespace)]
                    if name is not None:
                        found = [e for e in found if e["metadata"]["name"] == name]
                elif resource in ("configmaps", "secrets"):
                    kind = "ConfigMap" if resource == "configmaps" else "Secret"
                    found = [{"apiVersion": "v1", "kind": kind, **o} for o in
                             reader.config_objects(kind, namespace, name)]
                elif resource == "persistentvolumeclaims":
                    found = reader.config_objects("PersistentVolumeClaim", namespace, name)
                elif resource == "persistentvolumes":
                    found = reader.persistent_volumes(name)
                elif resource == "storageclasses":
                    found = reader.storage_classes(name)
                elif resource == "nodes":
                    found = [self.node()] if name in (None, self.node_name) else []
                else:
                    found = self._namespaces(reader)
                    if name is not None:
                        found = [n for n in found if n["metadata"]["name"] == name]
        finally:
            reader.close()
        return found, rv

    def _namespaces(self, reader: Reader) -> list[dict[str, Any]]:
        seen: dict[str, str] = {"default": self.facts.created}
        for pod in reader.pods():
            meta = pod["metadata"]
            created = meta.get("creationTimestamp") or self.facts.created
            seen[meta["namespace"]] = min(seen.get(meta["namespace"], created), created)
        for kind in ("ConfigMap", "Secret", "PersistentVolumeClaim"):
            for obj in reader.config_objects(kind):
                seen.setdefault(obj["metadata"].get("namespace", "default"), self.facts.created)
        return [objects.namespace(ns, created) for ns, created in sorted(seen.items())]

