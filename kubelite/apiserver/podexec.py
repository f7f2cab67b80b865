"""`pods/{name}/exec`: a command run in a pod's container for the admin credential, over channels.

Owns the refusal of an exec without a command (the rest of what it asks and the answers before
the upgrade are `sessions`'), the audit of each session opened or refused, and the session itself: the runtime's streaming exec bridged to the WebSocket
(`channels`). The serving loop counts sessions and calls `serve` only for an admin's upgrade.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import TYPE_CHECKING

from aiohttp import web

from kubelite.apiserver import audit, channels, objects, sessions
from kubelite.apiserver.auth import Access
from kubelite.apiserver.connections import SERVER, status_response
from kubelite.errors import KubeliteError

if TYPE_CHECKING:
    from kubelite.apiserver.server import ApiServer

async def serve(api: ApiServer, request: web.BaseRequest, access: Access, namespace: str, pod: str,
                raw_query: str, threads: Executor, live: set) -> web.StreamResponse:
    """One exec, from the admin's upgrade request to the end of its WebSocket."""
    loop = asyncio.get_running_loop()
    try:
        req = sessions.parse(namespace, pod, raw_query)
        if not req.command:
            raise sessions.bad_request("you must specify at least one command for the container", "no command")
        sessions.require_streams(req)
        name, container_id = await loop.run_in_executor(threads, sessions.container_id, api, req)
        ws = sessions.websocket(request, "exec")
        runtime = sessions.runtime_of(api)
        session = await loop.run_in_executor(threads, lambda: runtime.exec_stream(
            container_id, list(req.command), stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, tty=req.tty))
    except sessions.Refused as exc:
        audit.refused(access, "exec", namespace, pod, exc.reason)
        return status_response(exc.code, exc.body)
    except KubeliteError as exc:   # the runtime could not start it (the container stopped meanwhile)
        audit.refused(access, "exec", namespace, pod, str(exc))
        return status_response(500, objects.status(500, "InternalError", f"error executing command: {exc}"))
    audit.opened(access, "exec", namespace, pod, name, command=req.command)
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
