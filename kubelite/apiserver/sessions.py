"""What a streaming session (exec, attach) asks of a pod, and the answers before its upgrade.

Owns the query of `pods/{name}/exec` and `pods/{name}/attach` (`container`, defaulted by
`runtime.targets`' rules: the annotation's, else the pod's first; `command`, repeated, for an exec;
`stdin`, `stdout`, `stderr`, `tty`, defaulting as the API server's: stdout and stderr on unless
given false, stdin and tty off, no stderr with a tty), the running container it is for, read from
the store and chosen by `runtime.targets` (the one home of those rules and their words), and the
refusals the API server gives before an upgrade: 404 for a pod that is not there, 400 for a
container that is not valid or not running, for no stream, and for a client that asks no
WebSocket or speaks no channel subprotocol served. `podexec` and `attach` each carry their
session out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import web

from kubelite.apiserver import channels, objects
from kubelite.runtime import targets

if TYPE_CHECKING:
    from kubelite.apiserver.server import ApiServer

TRUE = ("true", "1")


@dataclass(frozen=True)
class SessionRequest:
    namespace: str
    pod: str
    container: str | None
    #: An exec's command; empty for an attach.
    command: tuple[str, ...]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


class Refused(Exception):
    """A session answered before the upgrade: its code, its `Status`, and the audit's reason."""

    def __init__(self, code: int, body: dict[str, Any], reason: str) -> None:
        super().__init__(body["message"])
        self.code, self.body, self.reason = code, body, reason


def bad_request(message: str, reason: str) -> Refused:
    return Refused(400, objects.status(400, "BadRequest", message), reason)


def parse(namespace: str, pod: str, raw_query: str) -> SessionRequest:
    """The session's query: `command` may repeat; the streams default as the API server's."""
    values: dict[str, str] = {}
    command: list[str] = []
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        if key == "command":
            command.append(value)
        else:
            values[key] = value

    def flag(name: str, default: bool) -> bool:
        return values[name].lower() in TRUE if name in values else default

    tty = flag("tty", False)
    return SessionRequest(namespace=namespace, pod=pod, container=values.get("container") or None,
                          command=tuple(command), stdin=flag("stdin", False), stdout=flag("stdout", True),
                          stderr=flag("stderr", True) and not tty, tty=tty)


def require_streams(req: SessionRequest) -> None:
    if not (req.stdin or req.stdout or req.stderr):
        raise bad_request("you must specify at least 1 of stdin, stdout, stderr", "no stream")


def refusal(exc: targets.TargetError, pod: str) -> Refused:
    """The answer before the upgrade for a pod or container a session cannot reach."""
    body = objects.not_found("pods", pod) if exc.code == 404 and exc.server else \
        objects.status(exc.code, exc.reason, exc.message)
    return Refused(exc.code, body, exc.message)


def container_id(api: ApiServer, req: SessionRequest) -> tuple[str, str]:
    """(container name, runtime ID) of the running container the session is for (`runtime.targets`'
    rules); `Refused` otherwise. Reads the store: call it in a thread."""
    pods, _ = api.items("pods", req.namespace, req.pod)
    try:
        target = targets.running(targets.pick_pod(pods, req.pod), req.container)
    except targets.TargetError as exc:
        raise refusal(exc, req.pod) from None
    return target.name, target.container_id.partition("://")[2]


def websocket(request: web.BaseRequest, verb: str, *, heartbeat: float | None = None) -> web.WebSocketResponse:
    """The WebSocket that will answer an upgrade request, checked before anything runs: `Refused`
    when the client asks no WebSocket, offers no channel subprotocol served, or sends a handshake
    aiohttp would refuse (no key, a wrong version)."""
    if "websocket" not in request.headers.get("Upgrade", "").lower():
        raise bad_request(f"unable to upgrade connection: kubelite serves {verb} over WebSocket only",
                          "not a WebSocket upgrade")
    protocol = channels.choose(request.headers.get("Sec-WebSocket-Protocol"))
    if protocol is None:
        raise bad_request("unable to upgrade connection: the client offers none of the subprotocols "
                          f"{', '.join(channels.PROTOCOLS)}", "no channel subprotocol")
    ws = channels.websocket(protocol, heartbeat=heartbeat)
    try:
        ready = ws.can_prepare(request).ok   # type: ignore[arg-type]
    except web.HTTPException:
        ready = False
    if not ready:
        raise bad_request("unable to upgrade connection: not a valid WebSocket handshake", "bad handshake")
    return ws


def runtime_of(api: ApiServer) -> Any:
    """The runtime the daemon handed the API; `Refused` when it reaches no containers."""
    if api.containers is None:
        raise bad_request("this node's API reaches no containers", "no runtime")
    return api.containers
