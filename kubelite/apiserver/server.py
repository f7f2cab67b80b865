"""The HTTP server: routing, authentication, content negotiation and streaming.

Owns: one `ThreadingHTTPServer` on a loopback address (a thread per connection, at most
MAX_CONNECTIONS of them, with an overall deadline on each handshake and request head; a watch or a
followed log holds its thread while it streams), the bearer-token check (`/healthz`, `/readyz`,
`/livez` and `/version` are public, as the API server's `system:public-info-viewer` makes them),
GET-only access (any other method on a resource is 405 MethodNotAllowed; exec, attach,
port-forward and proxy are 403 Forbidden; the one POST answered is a SelfSubjectAccessReview,
which creates nothing), `Status` errors, the Table form when the client asks
for `as=Table`, `limit`/`continue`, and chunked streams for watches and followed logs.

Every request reads the state database through its own read-only connection; nothing here writes.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from kubelite.apiserver import auth, feed, logs, metrics, objects, protobuf, selectors, tls
from kubelite.apiserver import node as nodes
from kubelite.errors import KubeliteError
from kubelite.store.reader import Reader, one_per_name

log = logging.getLogger("kubelite.api")

PUBLIC = {"/healthz", "/readyz", "/livez", "/version"}
FORBIDDEN_SUBRESOURCES = {"exec", "attach", "portforward", "proxy", "eviction", "binding", "ephemeralcontainers"}
NAMESPACED = {"pods", "events", "configmaps", "secrets"}
CLUSTER = {"nodes", "namespaces"}
#: A watch without timeoutSeconds ends after this long, as the API server's --min-request-timeout.
WATCH_TIMEOUT_S = 1800
#: A connection's TLS handshake and each request's line and headers must arrive within this long.
HEADERS_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 300.0
#: Connections served at once (a thread and a descriptor each, in the agent's own process); more are closed.
MAX_CONNECTIONS = 128
#: What /readyz answers when not ready: public, so the reason stays in the Node's Ready condition.
NOT_READY = "not ready"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
_END = object()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Health:
    ready: bool
    message: str


class ApiError(Exception):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body["message"])
        self.body = body


def _bad_request(message: str) -> ApiError:
    return ApiError(objects.status(400, "BadRequest", message))


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server bound to host:port; a wildcard address
    (0.0.0.0, ::) is reached, and covered by the certificate, as the loopback address."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


class ApiServer:
    """The API of one node; `start()` it beside the agent, `notify()` it after each pass."""

    def __init__(self, *, root: Path, node_name: str, runtime: str, host: str, port: int,
                 health: Callable[[], Health], node_ip: str | None = None) -> None:
        self.root, self.node_name, self.health = root, node_name, health
        self.token = auth.ensure_token(root)
        directory = auth.api_dir(root)
        names = ["127.0.0.1", "::1", "localhost", node_name, socket.gethostname(), node_ip or nodes.internal_ip()]
        if host not in ("", "0.0.0.0", "::"):
            names.append(host)
        tls.ensure_certificates(directory, names)
        created = datetime.fromtimestamp((auth.api_dir(root) / auth.TOKEN_FILE).stat().st_mtime, timezone.utc)
        self.facts = nodes.host_facts(name=node_name, created=_rfc3339(created), root=str(root), runtime=runtime,
                                      node_ip=node_ip)
        self.started = _rfc3339(_now())
        self.httpd = (_Server6 if ":" in host else _Server)((host, port), _Handler)   # OSError: cannot listen
        try:
            self.httpd.api = self
            self.feed = feed.PodFeed(self.reader)
            self.registry = metrics.node_registry(self.reader, lambda: self.feed.watchers)
            # handshakes happen on the connection's own thread (in `_Handler.setup`), never in the accept loop
            self.httpd.socket = tls.server_context(directory).wrap_socket(self.httpd.socket, server_side=True,
                                                                          do_handshake_on_connect=False)
        except BaseException:
            self.httpd.server_close()
            if hasattr(self, "feed"):
                self.feed.stop()
            raise
        self.closing = threading.Event()
        bound_host, bound_port = self.httpd.server_address[:2]
        self.url = client_url(str(bound_host), bound_port)
        self.address = self.url.removeprefix("https://")
        self._thread: threading.Thread | None = None

    def reader(self) -> Reader:
        return Reader(self.root)

    def start(self) -> str:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="kubelite-api", daemon=True)
        self._thread.start()
        auth.record_server(self.root, self.url)
        log.info("API serving on %s (kubectl: kubelite kubeconfig > ~/.kube/config)", self.url)
        return self.url

    def notify(self) -> None:
        self.feed.notify()

    def close(self) -> None:
        self.closing.set()
        self.feed.stop()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.httpd.deadlines.stop()

    # ------------------------------------------------------------------ reads

    def node(self) -> dict[str, Any]:
        health = self.health()
        return nodes.node(self.facts, ready=health.ready, ready_message=health.message,
                            heartbeat=_rfc3339(_now()), since=self.started)

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
        for kind in ("ConfigMap", "Secret"):
            for obj in reader.config_objects(kind):
                seen.setdefault(obj["metadata"].get("namespace", "default"), self.facts.created)
        return [objects.namespace(ns, created) for ns, created in sorted(seen.items())]


class _Deadlines:
    """Cuts connections whose handshake or request headers take too long, as a whole (a per-read
    timeout alone lets a client send a byte at a time forever): one thread for all connections."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: dict[int, tuple[float, socket.socket]] = {}
        self._next = 0
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self, connection: socket.socket, seconds: float) -> int:
        with self._lock:
            self._next += 1
            self._due[self._next] = (time.monotonic() + seconds, connection)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kubelite-api-deadlines", daemon=True)
                self._thread.start()
            return self._next

    def disarm(self, token: int) -> None:
        with self._lock:
            self._due.pop(token, None)

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(min(0.5, HEADERS_TIMEOUT_S / 4)):
            now = time.monotonic()
            with self._lock:
                overdue = [t for t, (due, _) in self._due.items() if due < now]
                connections = [self._due.pop(t)[1] for t in overdue]
            for connection in connections:
                try:   # the plain socket's shutdown: wakes the thread blocked reading it (TLS state untouched)
                    socket.socket.shutdown(connection, socket.SHUT_RDWR)
                except OSError:
                    pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: ApiServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.deadlines = _Deadlines()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            log.debug("API: %s refused: %d connections open", client_address[0], MAX_CONNECTIONS)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A failed handshake (a plain-HTTP client, a port scan) or a dropped connection: not worth a
        traceback on the agent's stderr."""
        log.debug("API: connection from %s failed", client_address[0], exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self._streaming = False
        self._headers_deadline: int | None = None
        self.connection.settimeout(HEADERS_TIMEOUT_S)
        token = self.server.deadlines.arm(self.connection, HEADERS_TIMEOUT_S)
        try:
            self.connection.do_handshake()
        finally:
            self.server.deadlines.disarm(token)
        self.connection.settimeout(IDLE_TIMEOUT_S)   # a kept-alive connection that sends nothing is closed

    def handle_one_request(self) -> None:
        """Wait (up to IDLE_TIMEOUT_S) for a request to begin; from its first byte, its line and
        headers must all arrive within HEADERS_TIMEOUT_S."""
        try:
            if not self.rfile.peek(1):   # type: ignore[attr-defined]
                self.close_connection = True
                return
        except TimeoutError:
            self.close_connection = True
            return
        self._headers_deadline = self.server.deadlines.arm(self.connection, HEADERS_TIMEOUT_S)
        try:
            super().handle_one_request()
        finally:
            self._disarm()

    def parse_request(self) -> bool:
        try:
            return super().parse_request()
        finally:
            self._disarm()

    def _disarm(self) -> None:
        if self._headers_deadline is not None:
            self.server.deadlines.disarm(self._headers_deadline)
            self._headers_deadline = None

    def handle(self) -> None:
        try:
            super().handle()
        except (OSError, ssl.SSLError):   # a client that went away or spoke no TLS
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — the base class's name
        log.debug("%s " + format, self.client_address[0], *args)

    # ------------------------------------------------------------------ methods

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("HEAD")

    def _write_method(self) -> None:
        self._handle(self.command)

    do_POST = do_PUT = do_PATCH = do_DELETE = _write_method

    def _handle(self, method: str) -> None:
        api = self.server.api
        try:
            split = urlsplit(self.path)
        except ValueError as exc:
            self.close_connection = True
            return self._json(400, objects.status(400, "BadRequest", f"invalid request target: {exc}"))
        path = split.path.rstrip("/") or "/"
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        try:
            if path not in PUBLIC and not auth.authorized(self.headers.get("Authorization"), api.token):
                raise ApiError(objects.status(401, "Unauthorized", "Unauthorized"))
            if method == "POST" and path == ACCESS_REVIEWS:
                return self._json(201, objects.access_review(self._body()))
            if method not in ("GET", "HEAD"):
                self._drain()
                parts = [unquote(p) for p in path.split("/") if p]
                if len(parts) >= 6 and parts[-1] in FORBIDDEN_SUBRESOURCES:
                    raise ApiError(objects.status(403, "Forbidden", f'{parts[-3]} "{parts[-2]}" is forbidden: '
                                                  f"kubelite serves a read-only API ({parts[-1]}: use kubelite on "
                                                  "the node)", kind=parts[-3], name=parts[-2]))
                raise ApiError(objects.status(405, "MethodNotAllowed",
                                              "the server does not allow this method on the requested resource"))
            self._route(path, query)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 — one failing request must not take the connection's thread down silently
            if isinstance(exc, ApiError):
                body = exc.body
            elif isinstance(exc, selectors.SelectorError):
                body = objects.status(400, "BadRequest", str(exc))
            elif isinstance(exc, KubeliteError):
                body = objects.status(500, "InternalError", str(exc))
            else:
                log.exception("API: %s %s failed", method, split.path)
                self.close_connection = True
                body = objects.status(500, "InternalError", f"{type(exc).__name__}: {exc}")
            if self._streaming:   # the response began: a second one would corrupt the stream; just end it
                self.close_connection = True
                return
            try:
                self._json(body["code"], body)
            except OSError:
                self.close_connection = True

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        content_type = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if content_type not in ("application/json", "application/vnd.kubernetes.protobuf"):
            self._drain()
            raise ApiError(objects.status(415, "UnsupportedMediaType",
                                          f"the body of the request was in an unknown format - accepted media "
                                          f"types include: application/json (got {content_type})"))
        if length > 1 << 20:
            raise _bad_request("request body too large")
        try:
            data = self.rfile.read(length)
            body = protobuf.access_review(data) if content_type != "application/json" else json.loads(data or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise _bad_request("the request body cannot be decoded") from None
        if not isinstance(body, dict):
            raise _bad_request("the request body is not a JSON object")
        return body

    def _drain(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))

    # ------------------------------------------------------------------ routing

    def _route(self, path: str, query: dict[str, str]) -> None:
        api = self.server.api
        if path in ("/healthz", "/livez"):
            return self._text(200, "ok")
        if path == "/readyz":
            health = api.health()
            return self._text(200 if health.ready else 500, "ok" if health.ready else NOT_READY)
        if path == "/version":
            return self._json(200, objects.version())
        if path == "/api":
            return self._json(200, objects.api_versions(api.address))
        if path == "/apis":
            return self._json(200, objects.api_groups())
        if path == "/api/v1":
            return self._json(200, objects.api_resources())
        if path == f"/apis/{objects.AUTHORIZATION}":
            return self._json(200, objects.api_groups()["groups"][0] | {"kind": "APIGroup", "apiVersion": "v1"})
        if path == f"/apis/{objects.AUTHORIZATION}/v1":
            return self._json(200, objects.authorization_resources())
        if path == "/metrics":
            body = metrics.exposition(api.registry)
            return self._send(200, metrics.CONTENT_TYPE, body)
        parts = [unquote(p) for p in path.split("/") if p]
        if parts[:2] != ["api", "v1"] or len(parts) < 3:
            raise ApiError(objects.status(404, "NotFound", "the server could not find the requested resource"))
        rest = parts[2:]
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
            if rest[0] not in NAMESPACED:
                raise self._no_resource()
        elif rest[0] not in NAMESPACED | CLUSTER:
            raise self._no_resource()
        resource = rest[0]
        if len(rest) == 1:
            return self._list(resource, namespace, query)
        name = rest[1]
        if resource in NAMESPACED and namespace is None:
            raise self._no_resource()
        if len(rest) == 2 or (len(rest) == 3 and rest[2] == "status" and resource == "pods"):
            return self._get(resource, namespace, name)
        if len(rest) == 3 and resource == "pods" and rest[2] == "log":
            return self._log(namespace or "default", name, query)
        if len(rest) == 3 and resource == "pods" and rest[2] in FORBIDDEN_SUBRESOURCES:
            raise ApiError(objects.status(403, "Forbidden", f'pods "{name}" is forbidden: kubelite serves a read-only '
                                          f"API ({rest[2]}: use kubelite on the node)", kind="pods", name=name))
        raise self._no_resource()

    @staticmethod
    def _no_resource() -> ApiError:
        return ApiError(objects.status(404, "NotFound", "the server could not find the requested resource"))

    def _wants_table(self) -> bool:
        return "as=Table" in (self.headers.get("Accept") or "")

    def _get(self, resource: str, namespace: str | None, name: str) -> None:
        found, rv = self.server.api.items(resource, namespace, name)
        if not found:
            raise ApiError(objects.not_found(resource, name))
        if self._wants_table():
            columns, rows = objects.TABLES[resource]
            return self._json(200, objects.table(columns, rows(found, _now()), rv))
        self._json(200, found[0])

    def _list(self, resource: str, namespace: str | None, query: dict[str, str]) -> None:
        match = selectors.matcher(query.get("labelSelector"), query.get("fieldSelector"), resource)
        if query.get("watch") in ("true", "1"):
            return self._watch(resource, namespace, query, match)
        found, rv = self.server.api.items(resource, namespace)
        items = [o for o in found if match(o)]
        meta_extra: dict[str, Any] = {}
        start = _continue_offset(query.get("continue"))
        limit = _positive_int(query.get("limit"), "limit")
        items = items[start:]
        if limit and len(items) > limit:
            meta_extra = {"continue": _continue_token(rv, start + limit), "remainingItemCount": len(items) - limit}
            items = items[:limit]
        if self._wants_table():
            columns, rows = objects.TABLES[resource]
            body = objects.table(columns, rows(items, _now()), rv)
        else:
            kind = {"pods": "Pod", "events": "Event", "configmaps": "ConfigMap", "secrets": "Secret",
                    "nodes": "Node", "namespaces": "Namespace"}[resource]
            body = objects.object_list(kind, items, rv)
        body["metadata"].update(meta_extra)
        self._json(200, body)

    # ------------------------------------------------------------------ watch

    def _watch(self, resource: str, namespace: str | None, query: dict[str, str],
               match: Callable[[dict[str, Any]], bool]) -> None:
        if resource != "pods":
            raise ApiError(objects.status(405, "MethodNotAllowed", f"watch is not supported on {resource} by kubelite"))
        api = self.server.api
        since_text = query.get("resourceVersion") or ""
        since = None if since_text in ("", "0") else _positive_int(since_text, "resourceVersion")
        timeout = _positive_int(query.get("timeoutSeconds"), "timeoutSeconds") or WATCH_TIMEOUT_S
        bookmarks = query.get("allowWatchBookmarks") == "true"
        table = self._wants_table()

        def in_namespace(obj: dict[str, Any]) -> bool:
            return namespace is None or obj["metadata"].get("namespace") == namespace

        if since is not None:
            try:
                api.feed.check(since)
            except feed.TooLarge as exc:
                raise ApiError(objects.status(504, "Timeout", str(exc), retry_after=1)) from None
        self._start_stream("application/json")   # at once: a client waits for the headers
        events = api.feed.watch(since, in_namespace, tick_s=min(feed.TICK_S, max(0.2, timeout / 10)))
        deadline = _monotonic() + timeout
        try:
            try:
                self._stream_watch(events, match, deadline, bookmarks, table)
            except (feed.Expired, feed.TooLarge) as exc:
                code, reason = (410, "Expired") if isinstance(exc, feed.Expired) else (504, "Timeout")
                self._chunk(json.dumps({"type": "ERROR", "object": objects.status(code, reason, str(exc))}) + "\n")
            except (BrokenPipeError, ConnectionResetError, OSError):
                raise
            except Exception as exc:  # noqa: BLE001 — the stream began: the error goes in it, as a watch ERROR event
                log.exception("API: watch of pods failed")
                self._chunk(json.dumps({"type": "ERROR", "object": objects.status(
                    500, "InternalError", f"{type(exc).__name__}: {exc}")}) + "\n")
            self._end_stream()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            events.close()

    def _stream_watch(self, events: Any, match: Callable[[dict[str, Any]], bool], deadline: float,
                      bookmarks: bool, table: bool) -> None:
        api = self.server.api
        event: Any = next(events, _END)
        while event is not _END:
            if event is None:
                if self._client_gone() or api.closing.is_set() or _monotonic() > deadline:
                    break
                if bookmarks:
                    self._chunk(json.dumps({"type": "BOOKMARK", "object": {
                        "kind": "Pod", "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(api.feed.resource_version)}}}) + "\n")
            elif (kind := seen_as(event, match)) is not None:
                obj = event.object
                if table:
                    columns, rows = objects.TABLES["pods"]
                    obj = objects.table(columns, rows([obj], _now()), event.resource_version)
                self._chunk(json.dumps({"type": kind, "object": obj}) + "\n")
                if _monotonic() > deadline:
                    break
            event = next(events, _END)

    def _client_gone(self) -> bool:
        """Whether the client closed its side. While a response streams, a client sends nothing, so a
        readable connection means a TLS close_notify or a FIN."""
        try:
            poller = select.poll()   # not select(): it fails for descriptors from 1024 on
            poller.register(self.connection, select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    # ------------------------------------------------------------------ logs

    def _log(self, namespace: str, name: str, query: dict[str, str]) -> None:
        api = self.server.api
        pods, _ = api.items("pods", namespace, name)
        if not pods:
            raise ApiError(objects.not_found("pods", name))
        reader = api.reader()
        try:
            live = [p for p in reader.pods(namespace, name) if not p["metadata"].get("deletionTimestamp")]
        finally:
            reader.close()
        pod = live[0] if live else pods[0]
        uid = pod["metadata"]["uid"]

        def current_pod() -> dict[str, Any] | None:
            reader = api.reader()
            try:
                found = [p for p in reader.pods(namespace, name) if p["metadata"]["uid"] == uid]
            finally:
                reader.close()
            return found[0] if found else None

        try:
            _, chunks = logs.stream(api.root, pod, query, current_pod=current_pod,
                                    closed=lambda: self._client_gone() or api.closing.is_set())
            first = next(chunks, "")
        except logs.LogRequestError as exc:
            raise _bad_request(str(exc)) from None
        if query.get("follow") != "true" or query.get("previous") == "true":
            body = (first + "".join(chunks)).encode()
            return self._send(200, "text/plain", body)
        self._start_stream("text/plain")
        try:
            if first:
                self._chunk(first)
            for text in chunks:
                if text:
                    self._chunk(text)
            self._end_stream()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    # ------------------------------------------------------------------ writing

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, "application/json", json.dumps(obj, separators=(",", ":")).encode())

    def _text(self, code: int, text: str) -> None:
        self._send(code, "text/plain; charset=utf-8", text.encode())

    def _start_stream(self, content_type: str) -> None:
        self._streaming = True
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()

    def _chunk(self, text: str) -> None:
        data = text.encode()
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def seen_as(event: feed.WatchEvent, match: Callable[[dict[str, Any]], bool]) -> str | None:
    """The event type a filtered watch sees, from the object before and after, as the API server's
    cacher decides it: matched before and not now is DELETED, not before and now is ADDED, both is
    MODIFIED; None: not for this client."""
    now = event.type != "DELETED" and match(event.object)
    before = event.previous is not None and match(event.previous)
    if event.type == "DELETED":
        return "DELETED" if before or match(event.object) else None
    if before and now:
        return "MODIFIED"
    if now:
        return "ADDED"
    return "DELETED" if before else None


def _monotonic() -> float:
    return time.monotonic()


def _positive_int(text: str | None, name: str) -> int:
    if not text:
        return 0
    try:
        value = int(text)
    except ValueError:
        raise _bad_request(f"{name}: invalid value {text!r}: must be an integer") from None
    if value < 0:
        raise _bad_request(f"{name}: invalid value {text!r}: must not be negative")
    return value


def _continue_token(rv: int, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"rv": rv, "start": offset}).encode()).decode()


def _continue_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["start"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise _bad_request("continue: invalid token") from None
