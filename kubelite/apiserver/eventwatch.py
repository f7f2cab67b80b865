"""The events' watch: `watch=true` on events, as `kubectl get events -w` and `--watch-only` use it.

Owns: the lines of one client's watch of events. Every event write (a new event, or one more of an
identical one) takes the next node-wide resourceVersion in the store, so a watch resumes from the
resourceVersion of the list it read, as for pods. The pods' feed (`feed.PodFeed.changes`) says
when the node's resourceVersion moved; this then reads the events written since its place, in
the order they were written: ADDED for a new event, MODIFIED for one counted again. Events the
node drops after their hour are not announced (no DELETED), as an API server's TTL does not.
Read-only.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Generator

from kubelite.apiserver import feed, objects
from kubelite.clock import utcnow

if TYPE_CHECKING:
    from kubelite.apiserver.server import ApiServer

log = logging.getLogger("kubelite.api")


def lines(api: ApiServer, namespace: str | None, since: int | None, match: Callable[[dict[str, Any]], bool], *,
          timeout_s: float, bookmarks: bool, table: bool) -> Generator[str, None, None]:
    """The watch's lines: with `since` None the current events as ADDED first; then each change
    after the place reached; "" (or a BOOKMARK) every tick without news, so the server can look
    whether the client is still there. Ends at `timeout_s` or when the server closes."""
    try:
        yield from _lines(api, namespace, since, match, timeout_s=timeout_s, bookmarks=bookmarks, table=table)
    except Exception as exc:  # noqa: BLE001 — the stream began: the error goes in it, as a watch ERROR event
        log.exception("API: watch of events failed")
        yield json.dumps({"type": "ERROR", "object": objects.status(
            500, "InternalError", f"{type(exc).__name__}: {exc}")}) + "\n"


def _lines(api: ApiServer, namespace: str | None, since: int | None, match: Callable[[dict[str, Any]], bool], *,
           timeout_s: float, bookmarks: bool, table: bool) -> Generator[str, None, None]:
    deadline = time.monotonic() + timeout_s
    reader = api.reader()
    try:
        with reader.snapshot():
            cursor = reader.resource_version()
            first = reader.events(namespace, since=since)
    finally:
        reader.close()
    if since is not None:
        cursor = max([since] + [int(e["metadata"]["resourceVersion"]) for e in first])
    yield from _events(api, first, match, table, initial=since is None)
    changes = api.feed.changes(cursor, tick_s=min(feed.TICK_S, max(0.2, timeout_s / 10)))
    try:
        for current in changes:
            if api.closing.is_set() or time.monotonic() > deadline:
                break
            if current is None:
                if bookmarks:
                    yield json.dumps({"type": "BOOKMARK", "object": {
                        "kind": "Event", "apiVersion": "v1", "metadata": {"resourceVersion": str(cursor)}}}) + "\n"
                else:
                    yield ""
                continue
            reader = api.reader()
            try:
                found = reader.events(namespace, since=cursor)
            finally:
                reader.close()
            cursor = max([current] + [int(e["metadata"]["resourceVersion"]) for e in found])
            yield from _events(api, found, match, table, initial=False)
    finally:
        changes.close()


def _events(api: ApiServer, found: list[dict[str, Any]], match: Callable[[dict[str, Any]], bool], table: bool,
            *, initial: bool) -> Generator[str, None, None]:
    for event in found:
        obj = objects.api_event(event, api.node_name)
        if not match(obj):
            continue
        kind = "ADDED" if initial or obj.get("count", 1) <= 1 else "MODIFIED"
        if table:
            columns, rows = objects.TABLES["events"]
            obj = objects.table(columns, rows([obj], utcnow()), int(obj["metadata"]["resourceVersion"]))
        yield json.dumps({"type": kind, "object": obj}) + "\n"
