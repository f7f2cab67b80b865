"""Pod watches: one change feed shared by every `watch=true` client (the events' watch waits on
its resourceVersion too: `changes`).

Owns: turning the store's changes into ADDED / MODIFIED / DELETED events with the node-wide
resourceVersions the store assigns (every pod write and delete takes the next value, a deletion
leaves a tombstone with its value), a bounded history so a client can resume from the version of
the list it read, and waking the clients. One thread reads the database for all clients, only
when the agent has finished a pass (`notify()`), with a slow poll as the safety net while anyone
watches; an idle watch costs nothing but a sleeping thread. Read-only: it opens its own
read-only connections and never writes.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from kubelite.store.reader import Reader

#: How often the feed looks at the database on its own while clients watch (a missed notify).
POLL_S = 5.0
#: How long a client waits for news before its handler may check the connection (or send a bookmark).
TICK_S = 5.0
HISTORY = 2000


@dataclass(frozen=True)
class WatchEvent:
    type: str                 # ADDED, MODIFIED, DELETED
    resource_version: int
    object: dict[str, Any]
    #: The object as the previous event left it (None for ADDED): a filtered watch decides from both
    #: whether the object entered, stayed in or left its selectors, as the API server's cacher does.
    previous: dict[str, Any] | None = None


class Expired(Exception):
    """The requested resourceVersion is older than the history the feed keeps (HTTP 410 Gone)."""


class TooLarge(Exception):
    """The requested resourceVersion is newer than any the node has given out (HTTP 504, as the API
    server's "Too large resource version")."""


class PodFeed:
    """The shared source of pod watch events."""

    def __init__(self, open_reader: Callable[[], Reader]) -> None:
        self._open_reader = open_reader
        self._cond = threading.Condition()
        self._poll_lock = threading.Lock()
        self._hint = threading.Event()
        self._stopped = False
        self._objects: dict[str, tuple[int, dict[str, Any]]] = {}
        self._events: deque[WatchEvent] = deque()
        self._rv = -1
        self.watchers = 0
        self._floor = -1
        self.poll(seed=True)       # what exists now is state, not history
        self._floor = self._rv     # every change after this version is in the history
        self._thread = threading.Thread(target=self._run, name="kubelite-api-watch", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the feed's thread

    def notify(self) -> None:
        """The agent finished a pass: there may be news (called from the daemon's loop)."""
        self._hint.set()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._hint.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped:
            self._hint.wait(POLL_S if self.watchers else None)
            self._hint.clear()
            if self.watchers and not self._stopped:
                try:
                    self.poll()
                except Exception:  # noqa: BLE001 — a damaged database must not end the feed; the next poll retries
                    pass

    def poll(self, *, seed: bool = False) -> None:
        """Read what changed since the last poll and publish it as events (`seed`: only take in the
        current objects; the history starts after them)."""
        with self._poll_lock:
            reader = self._open_reader()
            try:
                with reader.snapshot():
                    rv = reader.resource_version()
                    if rv == self._rv:
                        return
                    versions = reader.resource_versions()
                    changed = [uid for uid, v in versions.items() if self._objects.get(uid, (None,))[0] != v]
                    objects = reader.pods_by_uid(changed)
                    tombstones = reader.tombstones()
            finally:
                reader.close()
            events = []
            for obj in objects:
                uid = obj["metadata"]["uid"]
                before = self._objects.get(uid)
                events.append(WatchEvent("MODIFIED" if before else "ADDED", versions[uid], obj,
                                         before[1] if before else None))
            for uid in set(self._objects) - set(versions):
                deleted_at = tombstones.get(uid, rv)
                last = self._objects[uid][1]
                obj = {**last, "metadata": {**last["metadata"], "resourceVersion": str(deleted_at)}}
                events.append(WatchEvent("DELETED", deleted_at, obj, last))
            events.sort(key=lambda e: e.resource_version)
            with self._cond:
                for event in events:
                    uid = event.object["metadata"]["uid"]
                    if event.type == "DELETED":
                        self._objects.pop(uid, None)
                    else:
                        self._objects[uid] = (event.resource_version, event.object)
                    if not seed:
                        self._events.append(event)
                while len(self._events) > HISTORY:
                    self._floor = max(self._floor, self._events.popleft().resource_version)
                self._rv = rv
                self._cond.notify_all()

    # ------------------------------------------------------------------ one client

    def watch(self, since: int | None, match: Callable[[dict[str, Any]], bool], *,
              tick_s: float | None = None) -> Iterator[WatchEvent | None]:
        """Events for one client: the current objects as ADDED when `since` is None, else every change
        after `since`; then changes as they come. Yields None every `tick_s` (TICK_S) without news.
        Raises Expired when `since` (or, later, the client's place) is older than the kept history,
        TooLarge when `since` is newer than the node's resourceVersion."""
        tick = TICK_S if tick_s is None else tick_s
        self.poll()
        with self._cond:
            self.watchers += 1
            if since is None:
                pending = [WatchEvent("ADDED", rv, obj) for rv, obj in
                           sorted(self._objects.values(), key=lambda o: (o[1]["metadata"].get("namespace", ""),
                                                                         o[1]["metadata"]["name"]))]
                cursor = self._rv
            elif since < self._floor:
                self.watchers -= 1
                raise Expired(f"too old resource version: {since} ({self._floor})")
            elif since > self._rv:
                self.watchers -= 1
                raise TooLarge(f"Too large resource version: {since}, current: {self._rv}")
            else:
                pending = [e for e in self._events if e.resource_version > since]
                cursor = max([since] + [e.resource_version for e in pending])
        self._hint.set()   # the feed's thread now polls while this client watches
        try:
            while True:
                for event in pending:
                    if match(event.object):
                        yield event
                with self._cond:
                    if cursor < self._floor:   # this client fell behind: events it never saw were dropped
                        raise Expired(f"too old resource version: {cursor} ({self._floor})")
                    pending = [e for e in self._events if e.resource_version > cursor]
                    if not pending and not self._stopped:
                        self._cond.wait(tick)
                        pending = [e for e in self._events if e.resource_version > cursor]
                    if self._stopped:
                        return
                if pending:
                    cursor = pending[-1].resource_version
                else:
                    yield None
        finally:
            with self._cond:
                self.watchers -= 1

    def changes(self, after: int, *, tick_s: float | None = None) -> Iterator[int | None]:
        """The node-wide resourceVersion each time it moves past `after` (any write: a pod's or an
        event's), None every `tick_s` (TICK_S) without news; the feed polls while this runs, as it
        does for a pod watch. The events' watch waits on this."""
        tick = TICK_S if tick_s is None else tick_s
        self.poll()
        with self._cond:
            self.watchers += 1
        self._hint.set()
        seen = after
        try:
            while True:
                with self._cond:
                    if self._rv <= seen and not self._stopped:
                        self._cond.wait(tick)
                    if self._stopped:
                        return
                    current = self._rv
                if current > seen:
                    seen = current
                    yield current
                else:
                    yield None
        finally:
            with self._cond:
                self.watchers -= 1

    def check(self, since: int) -> None:
        """Raise TooLarge when `since` is newer than any version given out (after a fresh look)."""
        self.poll()
        with self._cond:
            if since > self._rv:
                raise TooLarge(f"Too large resource version: {since}, current: {self._rv}")

    @property
    def resource_version(self) -> int:
        return self._rv
