"""Routing: what each request path answers, computed off the event loop.

Owns: the bearer-token check (`/healthz`, `/readyz`, `/livez` and `/version` are public, as the API
server's `system:public-info-viewer` makes them), GET-only access (any other method on a resource is
405 MethodNotAllowed; exec, attach and port-forward are 403 Forbidden to the read-only credential,
and only a WebSocket upgrade of the admin credential reaches them; proxy and the other write
subresources are 403 to both; the one POST answered is a SelfSubjectAccessReview, which creates
nothing), `Status` errors, the Table form when the client
asks for `as=Table`, `limit`/`continue`, and the chunks of watches and followed logs. A `Call` runs in
a thread (it reads the state database through read-only connections of its own) and returns a
`Reply`, or a `Stream` whose chunks the event loop sends as they come; it never raises: an error
inside a route is a `Status` 500 and one error line in the log. Writes nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Generator
from urllib.parse import unquote

from kubelite.apiserver import audit, eventwatch, feed, logs, metrics, metricsapi, objects, params, protobuf
from kubelite.apiserver.auth import Access
from kubelite.clock import utcnow
from kubelite.errors import KubeliteError
from kubelite.kubectl import selectors

if TYPE_CHECKING:
    from kubelite.apiserver.server import ApiServer

log = logging.getLogger("kubelite.api")

PUBLIC = {"/healthz", "/readyz", "/livez", "/version"}
FORBIDDEN_SUBRESOURCES = {"exec", "attach", "portforward", "proxy", "eviction", "binding", "ephemeralcontainers"}
#: The subresources the admin credential may open (as a WebSocket upgrade; never through a `Call`).
STREAMING_SUBRESOURCES = {"exec", "attach", "portforward"}
NAMESPACED = {"pods", "events", "configmaps", "secrets", "persistentvolumeclaims"}
CLUSTER = {"nodes", "namespaces", "persistentvolumes"}
#: A watch without timeoutSeconds ends after this long, as the API server's --min-request-timeout.
WATCH_TIMEOUT_S = 1800
#: What /readyz answers when not ready: public, so the reason stays in the Node's Ready condition.
NOT_READY = "not ready"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
END = object()


class ApiError(Exception):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body["message"])
        self.body = body


def bad_request(message: str) -> ApiError:
    return ApiError(objects.status(400, "BadRequest", message))


@dataclass
class Reply:
    code: int
    content_type: str
    body: bytes
    close: bool = False


@dataclass
class Stream:
    content_type: str
    chunks: Generator[str, None, None]
    gone: threading.Event = field(default_factory=threading.Event)
    #: What else to close when the stream ends (a log file's reader, begun before the stream).
    also: Generator[str, None, None] | None = None

    def close(self) -> None:
        for generator in (self.chunks, self.also):
            if generator is None:
                continue
            try:
                generator.close()
            except (ValueError, RuntimeError):   # still running in another thread: it ends at its next tick
                pass




def path_parts(path: str) -> list[str]:
    """A request path's segments, each unquoted (`/api/v1/namespaces/a%2Fb` → `api`, `v1`, …, `a/b`)."""
    return [unquote(p) for p in path.split("/") if p]


class Call:
    """One request's answer, computed in a thread (it reads the store): a `Reply`, or a `Stream`
    whose chunks the loop sends as they come. `request_line` names the request in the log."""

    def __init__(self, api: ApiServer, method: str, path: str, query: dict[str, str], headers: Any,
                 body: bytes, access: Access, request_line: str = "") -> None:
        self.api, self.method, self.path, self.query = api, method, path, query
        self.headers, self.body, self.access = headers, body, access
        self.request_line = request_line or f'"{method} {path}"'
        #: The path's segments, unquoted: read once, for the subresource check and the routing.
        self.parts = path_parts(path)

    def answer(self) -> "Reply | Stream":
        try:
            return self._answer()
        except Exception as exc:  # noqa: BLE001 — one failing request answers 500; the server goes on
            if isinstance(exc, ApiError):
                body = exc.body
            elif isinstance(exc, (selectors.SelectorError, params.InvalidParameter)):
                body = objects.status(400, "BadRequest", str(exc))
            elif isinstance(exc, KubeliteError):
                body = objects.status(500, "InternalError", str(exc))
            else:   # one line naming the request; the traceback only at debug level
                body = objects.internal_error(exc)
                log.error("API: %s failed: %s", self.request_line, repr(body["message"])[1:-1])
                log.debug("API: %s failed", self.request_line, exc_info=exc)
            return Reply(body["code"], "application/json", _dumps(body), close=body["code"] >= 500)

    def _answer(self) -> "Reply | Stream":
        path, method = self.path, self.method
        if path not in PUBLIC and not self.access:
            raise ApiError(objects.status(401, "Unauthorized", "Unauthorized"))
        if method == "POST" and path == ACCESS_REVIEWS:
            return _json(201, objects.access_review(self._review(), self.access))
        parts = self.parts
        if len(parts) >= 6 and parts[:2] == ["api", "v1"] and parts[-1] in FORBIDDEN_SUBRESOURCES:
            raise self._forbidden(parts)
        if method not in ("GET", "HEAD"):
            raise ApiError(objects.status(405, "MethodNotAllowed",
                                          "the server does not allow this method on the requested resource"))
        return self._route(path, parts, self.query)

    def _forbidden(self, parts: list[str]) -> ApiError:
        """A write subresource asked for through a plain request: 403 to a credential that may not
        use it (kubectl's RBAC wording), and to the admin 400 as the API server answers a streaming
        verb without its upgrade."""
        resource, name, subresource = parts[-3], parts[-2], parts[-1]
        namespace = parts[3] if parts[2] == "namespaces" else "default"
        if subresource in STREAMING_SUBRESOURCES and self.access >= Access.ADMIN:
            return bad_request("Upgrade request required")
        if subresource in STREAMING_SUBRESOURCES:
            audit.refused(self.access, subresource, namespace, name, "the read-only credential")
        why = ("kubelite serves proxy and the other write subresources to no one" if subresource not in
               STREAMING_SUBRESOURCES else "the read-only credential may get, list and watch only "
               "(kubelite kubeconfig --admin gives the one that may)")
        return ApiError(objects.status(
            403, "Forbidden", f'{resource} "{name}" is forbidden: User "{self.access.user}" cannot create resource '
            f'"{resource}/{subresource}" in API group "" in the namespace "{namespace}": {why}',
            kind=resource, name=name))

    def _review(self) -> dict[str, Any]:
        content_type = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if content_type not in ("application/json", "application/vnd.kubernetes.protobuf"):
            raise ApiError(objects.status(415, "UnsupportedMediaType",
                                          f"the body of the request was in an unknown format - accepted media "
                                          f"types include: application/json (got {content_type})"))
        try:
            data = self.body
            body = protobuf.access_review(data) if content_type != "application/json" else json.loads(data or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise bad_request("the request body cannot be decoded") from None
        if not isinstance(body, dict):
            raise bad_request("the request body is not a JSON object")
        return body

    # ------------------------------------------------------------------ routing

    def _route(self, path: str, parts: list[str], query: dict[str, str]) -> "Reply | Stream":
        api = self.api
        if path in ("/healthz", "/livez"):
            return _text(200, "ok")
        if path == "/readyz":
            health = api.health()
            return _text(200 if health.ready else 500, "ok" if health.ready else NOT_READY)
        if path == "/version":
            return _json(200, objects.version())
        if path == "/api":
            return _json(200, objects.api_versions(api.address))
        if path == "/apis":
            return _json(200, objects.api_groups())
        if path == "/api/v1":
            return _json(200, objects.api_resources())
        if path == f"/apis/{objects.AUTHORIZATION}":
            return _json(200, objects.api_group(objects.AUTHORIZATION) | {"kind": "APIGroup", "apiVersion": "v1"})
        if path == f"/apis/{objects.STORAGE}":
            return _json(200, objects.api_group(objects.STORAGE) | {"kind": "APIGroup", "apiVersion": "v1"})
        if path == f"/apis/{objects.STORAGE}/v1":
            return _json(200, objects.storage_resources())
        if path == f"/apis/{objects.AUTHORIZATION}/v1":
            return _json(200, objects.authorization_resources())
        if path == "/metrics":
            return Reply(200, metrics.CONTENT_TYPE, metrics.exposition(api.registry))
        if parts[:2] == ["apis", metricsapi.GROUP]:   # kubectl top
            return self._metrics_api(parts, query)
        if parts[:4] == ["apis", objects.STORAGE, "v1", "storageclasses"] and len(parts) <= 5:
            return self._list("storageclasses", None, query) if len(parts) == 4 else \
                self._get("storageclasses", None, parts[4])
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
        raise self._no_resource()

    def _metrics_api(self, parts: list[str], query: dict[str, str]) -> Reply:
        if query.get("watch") in ("true", "1"):
            raise ApiError(objects.status(405, "MethodNotAllowed", "watch is not supported on resource metrics"))
        try:
            return _json(200, metricsapi.answer(self.api, parts, query))
        except metricsapi.NotFound as exc:
            raise ApiError(objects.status(404, "NotFound", str(exc), kind=exc.kind, name=exc.name)) from None

    @staticmethod
    def _no_resource() -> ApiError:
        return ApiError(objects.status(404, "NotFound", "the server could not find the requested resource"))

    def _wants_table(self) -> bool:
        return "as=Table" in (self.headers.get("Accept") or "")

    def _get(self, resource: str, namespace: str | None, name: str) -> Reply:
        found, rv = self.api.items(resource, namespace, name)
        if not found:
            raise ApiError(objects.not_found(f"{resource}.{objects.STORAGE}" if resource == "storageclasses"
                                             else resource, name))
        if self._wants_table():
            columns, rows = objects.TABLES[resource]
            return _json(200, objects.table(columns, rows(found, utcnow()), rv))
        return _json(200, found[0])

    def _list(self, resource: str, namespace: str | None, query: dict[str, str]) -> "Reply | Stream":
        match = selectors.matcher(query.get("labelSelector"), query.get("fieldSelector"), resource)
        limit = params.integer(query.get("limit") or None, name="limit")
        start = params.continue_offset(query.get("continue"))
        if query.get("watch") in ("true", "1"):
            return self._watch(resource, namespace, query, match)
        found, rv = self.api.items(resource, namespace)
        items = [o for o in found if match(o)]
        meta_extra: dict[str, Any] = {}
        items = items[start:]
        if limit and len(items) > limit:
            meta_extra = {"continue": params.continue_token(rv, start + limit),
                          "remainingItemCount": len(items) - limit}
            items = items[:limit]
        if self._wants_table():
            columns, rows = objects.TABLES[resource]
            body = objects.table(columns, rows(items, utcnow()), rv)
        else:
            kind = {"pods": "Pod", "events": "Event", "configmaps": "ConfigMap", "secrets": "Secret",
                    "persistentvolumeclaims": "PersistentVolumeClaim", "persistentvolumes": "PersistentVolume",
                    "storageclasses": "StorageClass", "nodes": "Node", "namespaces": "Namespace"}[resource]
            body = objects.object_list(kind, items, rv)
            if resource == "storageclasses":
                body["apiVersion"] = f"{objects.STORAGE}/v1"
        body["metadata"].update(meta_extra)
        return _json(200, body)

    # ------------------------------------------------------------------ watch

    def _watch(self, resource: str, namespace: str | None, query: dict[str, str],
               match: Callable[[dict[str, Any]], bool]) -> Stream:
        if resource not in ("pods", "events"):
            raise ApiError(objects.status(405, "MethodNotAllowed", f"watch is not supported on {resource} by kubelite"))
        api = self.api
        since_text = query.get("resourceVersion") or ""
        since = None if since_text in ("", "0") else params.integer(since_text, name="resourceVersion")
        timeout = params.integer(query.get("timeoutSeconds") or None, name="timeoutSeconds") or WATCH_TIMEOUT_S
        bookmarks = query.get("allowWatchBookmarks") == "true"
        table = self._wants_table()
        if since is not None:
            try:
                api.feed.check(since)
            except feed.TooLarge as exc:
                raise ApiError(objects.status(504, "Timeout", str(exc), retry_after=1)) from None
        if resource == "events":   # node-wide resourceVersions too: each event write takes the next one
            return Stream("application/json", eventwatch.lines(api, namespace, since, match, timeout_s=timeout,
                                                               bookmarks=bookmarks, table=table))
        return Stream("application/json", self._watch_chunks(namespace, since, timeout, match, bookmarks, table))

    def _watch_chunks(self, namespace: str | None, since: int | None, timeout: int,
                      match: Callable[[dict[str, Any]], bool], bookmarks: bool,
                      table: bool) -> Generator[str, None, None]:
        api = self.api

        def in_namespace(obj: dict[str, Any]) -> bool:
            return namespace is None or obj["metadata"].get("namespace") == namespace

        events = api.feed.watch(since, in_namespace, tick_s=min(feed.TICK_S, max(0.2, timeout / 10)))
        deadline = _monotonic() + timeout
        try:
            try:
                yield from self._watch_lines(events, match, deadline, bookmarks, table)
            except (feed.Expired, feed.TooLarge) as exc:
                code, reason = (410, "Expired") if isinstance(exc, feed.Expired) else (504, "Timeout")
                yield json.dumps({"type": "ERROR", "object": objects.status(code, reason, str(exc))}) + "\n"
            except Exception as exc:  # noqa: BLE001 — the stream began: the error goes in it, as a watch ERROR event
                log.exception("API: watch of pods failed")
                yield json.dumps({"type": "ERROR", "object": objects.status(
                    500, "InternalError", f"{type(exc).__name__}: {exc}")}) + "\n"
        finally:
            events.close()

    def _watch_lines(self, events: Any, match: Callable[[dict[str, Any]], bool], deadline: float,
                     bookmarks: bool, table: bool) -> Generator[str, None, None]:
        api = self.api
        event: Any = next(events, END)
        while event is not END:
            if event is None:
                if api.closing.is_set() or _monotonic() > deadline:
                    break
                if bookmarks:
                    yield json.dumps({"type": "BOOKMARK", "object": {
                        "kind": "Pod", "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(api.feed.resource_version)}}}) + "\n"
                else:
                    yield ""   # a tick: the loop looks whether the client is still there
            elif (kind := seen_as(event, match)) is not None:
                obj = event.object
                if table:
                    columns, rows = objects.TABLES["pods"]
                    obj = objects.table(columns, rows([obj], utcnow()), event.resource_version)
                yield json.dumps({"type": kind, "object": obj}) + "\n"
                if _monotonic() > deadline:
                    break
            event = next(events, END)

    # ------------------------------------------------------------------ logs

    def _log(self, namespace: str, name: str, query: dict[str, str]) -> "Reply | Stream":
        api = self.api
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

        gone = threading.Event()
        try:
            _, chunks = logs.stream(api.root, pod, query, current_pod=current_pod,
                                    closed=lambda: gone.is_set() or api.closing.is_set())
            first = next(chunks, "")
        except logs.LogRequestError as exc:
            raise bad_request(str(exc)) from None
        if query.get("follow") != "true" or query.get("previous") == "true":
            return Reply(200, "text/plain", (first + "".join(chunks)).encode())

        def followed() -> Generator[str, None, None]:
            yield first
            yield from chunks

        return Stream("text/plain", followed(), gone, also=chunks)   # type: ignore[arg-type]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _json(code: int, obj: Any) -> Reply:
    return Reply(code, "application/json", _dumps(obj))


def _text(code: int, text: str) -> Reply:
    return Reply(code, "text/plain; charset=utf-8", text.encode())


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
