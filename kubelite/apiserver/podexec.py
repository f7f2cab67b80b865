"""`pods/{name}/exec`: a command run in a pod's container for the admin credential, over channels.

Owns what an exec asks (`command`, repeated; `container`, default the pod's first, as kubectl;
`stdin`, `stdout`, `stderr`, `tty`) and the answers before the upgrade, as the API server gives
them (404 for a pod that is not there, 400 for a container that is not or does not run, for no
command, or for a client that speaks no channel subprotocol served), the audit of each session
opened or refused, and the session itself: the runtime's streaming exec bridged to the WebSocket
(`channels`). The serving loop counts sessions and calls `serve` only for an admin's upgrade.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import web

from kubelite.apiserver import audit, channels, objects
from kubelite.apiserver.auth import Access
from kubelite.apiserver.connections import SERVER, status_response
from kubelite.errors import KubeliteError

if TYPE_CHECKING:
    from kubelite.apiserver.server import ApiServer

TRUE = ("true", "1")


@dataclass(frozen=True)
class ExecRequest:
    namespace: str
    pod: str
    container: str | None
    command: tuple[str, ...]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


class Refused(Exception):
    """An exec answered before the upgrade: its code and `Status`."""

    def __init__(self, code: int, body: dict[str, Any], reason: str) -> None:
        super().__init__(body["message"])
        self.code, self.body, self.reason = code, body, reason


def parse(namespace: str, pod: str, raw_query: str) -> ExecRequest:
    """The exec's query: `command` may repeat; the streams default as the API server's (stdout and
    stderr on unless given false; stdin and tty off)."""
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    values: dict[str, str] = {}
    command: list[str] = []
    for key, value in pairs:
        if key == "command":
            command.append(value)
        else:
            values[key] = value

    def flag(name: str, default: bool) -> bool:
        return values[name].lower() in TRUE if name in values else default

    tty = flag("tty", False)
    return ExecRequest(namespace=namespace, pod=pod, container=values.get("container") or None,
                       command=tuple(command), stdin=flag("stdin", False), stdout=flag("stdout", True),
                       stderr=flag("stderr", True) and not tty, tty=tty)


def _container_id(api: ApiServer, req: ExecRequest) -> tuple[str, str]:
    """(container name, runtime ID) of the running container the exec is for; `Refused` otherwise.
    Reads the store: call it in a thread."""
    pods, _ = api.items("pods", req.namespace, req.pod)
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")] or pods
    if not live:
        raise Refused(404, objects.not_found("pods", req.pod), "pod not found")
    pod = live[0]
    names = [c["name"] for c in pod.get("spec", {}).get("containers", [])]
    every = names + [c["name"] for c in pod.get("spec", {}).get("initContainers", [])]
    name = req.container or (names[0] if names else "")
    if name not in every:
        raise Refused(400, objects.status(400, "BadRequest", f'container {name} is not valid for pod {req.pod}'),
                      f"container {name} not found")
    status = pod.get("status", {})
    statuses = status.get("containerStatuses", []) + status.get("initContainerStatuses", [])
    found = next((s for s in statuses if s.get("name") == name), {})
    container_id = (found.get("containerID") or "").partition("://")[2]
    if "running" not in found.get("state", {}) or not container_id:
        raise Refused(400, objects.status(400, "BadRequest",
                                          f"unable to upgrade connection: container not found (\"{name}\")"),
                      f"container {name} not running")
    return name, container_id


async def serve(api: ApiServer, request: web.BaseRequest, access: Access, namespace: str, pod: str,
                raw_query: str, threads: Executor, live: set) -> web.StreamResponse:
    """One exec, from the admin's upgrade request to the end of its WebSocket."""
    loop = asyncio.get_running_loop()
    req = parse(namespace, pod, raw_query)
    protocol = channels.choose(request.headers.get("Sec-WebSocket-Protocol"))
    try:
        if not req.command:
            raise Refused(400, objects.status(400, "BadRequest", "you must specify at least one command for the "
                                              "container"), "no command")
        if not (req.stdin or req.stdout or req.stderr):
            raise Refused(400, objects.status(400, "BadRequest", "you must specify at least 1 of stdin, stdout, "
                                              "stderr"), "no stream")
        name, container_id = await loop.run_in_executor(threads, _container_id, api, req)
        if "websocket" not in request.headers.get("Upgrade", "").lower():
            raise Refused(400, objects.status(400, "BadRequest", "unable to upgrade connection: kubelite serves "
                                              "exec over WebSocket only"), "not a WebSocket upgrade")
        if protocol is None:
            raise Refused(400, objects.status(400, "BadRequest", "unable to upgrade connection: the client offers "
                                              f"none of the subprotocols {', '.join(channels.PROTOCOLS)}"),
                          "no channel subprotocol")
        runtime = api.containers
        if runtime is None:
            raise Refused(400, objects.status(400, "BadRequest", "this node's API reaches no containers"),
                          "no runtime")
        session = await loop.run_in_executor(threads, lambda: runtime.exec_stream(
            container_id, list(req.command), stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, tty=req.tty))
    except Refused as exc:
        audit.refused(access, "exec", namespace, pod, exc.reason)
        return status_response(exc.code, exc.body)
    except KubeliteError as exc:   # the runtime could not start it (the container stopped meanwhile)
        audit.refused(access, "exec", namespace, pod, str(exc))
        return status_response(500, objects.status(500, "InternalError", f"error executing command: {exc}"))
    audit.opened(access, "exec", namespace, pod, name, command=req.command)
    ws = channels.websocket(protocol)
    ws.headers["Server"] = SERVER
    try:
        await ws.prepare(request)
    except BaseException:
        await loop.run_in_executor(threads, session.kill)
        session.close()
        raise
    link = channels.Channels(ws, request.transport)
    live.add(session)
    try:
        await channels.bridge(link, session, threads, req.command)
    finally:
        live.discard(session)
        await link.close()
    return ws
