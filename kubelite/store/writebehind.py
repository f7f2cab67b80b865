"""The node state's writes, queued in memory and written to the database by the one writer thread.

Owns: the queue of store writes that the node state's methods make on any thread (the reconcile
loop and the pod workers), and the node-wide resourceVersion counter in memory: a write takes its
version at once (a pod's object carries it before it is written), and `flush()`, called by the
writer thread only, writes the queue in one transaction in the order the writes were made, then
the counter. So the database has one writing thread however many pods are synced at once, and a
flush that fails leaves nothing half-written: the transaction rolls back and the node state
reloads what the database holds (`reset`).

Reads and housekeeping (`load`, `replaced`, `close`, the path) go straight to the store.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from kubelite.core.types import BackoffEntry, ObservedContainer, ObservedSandbox, StartError
from kubelite.store.store import Store

#: One queued write: the store's method and its arguments.
Write = tuple[str, tuple[Any, ...], dict[str, Any]]


class WriteBehind:
    """The store's writing methods, queued; everything else is the store's."""

    def __init__(self, store: Store) -> None:
        self.db = store
        self._lock = threading.Lock()
        self._queue: list[Write] = []
        self._version: int | None = None   # the last resourceVersion handed out (None: read it first)
        self._written_version: int | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)

    def _add(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            self._queue.append((method, args, kwargs))

    # ------------------------------------------------------------------ the writer's side

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def flush(self) -> None:
        """Write what is queued (the writer thread only): `write(take())`."""
        self.write(self.take())

    def take(self) -> tuple[list[Write], int | None]:
        """The queued writes and the counter's value, for `write`; the queue starts empty again."""
        with self._lock:
            queue, self._queue = self._queue, []
            return queue, self._version

    def write(self, taken: tuple[list[Write], int | None]) -> None:
        """Write taken writes in one transaction, in order, then the counter (the writer thread
        only). A StoreError leaves the database as it was and the writes back at the head of the
        queue; the node state then reloads what the database holds (`reset`)."""
        queue, version = taken
        if not queue and version == self._written_version:
            return
        try:
            with self.db.transaction() as db:
                for name, args, kwargs in queue:
                    getattr(db, name)(*args, **kwargs)
                if version is not None and version != self._written_version:
                    db.set_resource_version(version)
        except BaseException:
            with self._lock:   # nothing is lost: written by the next flush, or dropped by `reset`
                self._queue[:0] = queue
            raise
        self._written_version = version

    def reset(self) -> None:
        """Forget what is queued and read the counter again (the writer thread, when memory is
        loaded from the database: at start and after a failed write)."""
        with self._lock:
            self._queue, self._version, self._written_version = [], None, None
        version = self.db.resource_version()
        with self._lock:
            if self._version is None:
                self._version = self._written_version = version

    # ------------------------------------------------------------------ the counter

    def next_resource_version(self) -> int:
        with self._lock:
            if self._version is None:   # not loaded (`reset`): only the writer thread gets here
                self._version = self._written_version = self.db.resource_version()
            self._version += 1
            return self._version

    # ------------------------------------------------------------------ the store's writes

    def set_meta(self, key: str, value: str) -> None:
        self._add("set_meta", key, value)

    def put_pod(self, row: dict[str, Any]) -> None:
        self._add("put_pod", row)

    def delete_pod(self, uid: str) -> None:
        self._add("delete_pod", uid, version=self.next_resource_version())

    def put_config_object(self, row: dict[str, Any]) -> None:
        self._add("put_config_object", row)

    def delete_config_object(self, kind: str, namespace: str, name: str) -> None:
        self._add("delete_config_object", kind, namespace, name)

    def put_persistent_volume(self, row: dict[str, Any]) -> None:
        self._add("put_persistent_volume", row)

    def delete_persistent_volume(self, name: str) -> None:
        self._add("delete_persistent_volume", name)

    def put_sandbox(self, uid: str, sb: ObservedSandbox) -> None:
        self._add("put_sandbox", uid, sb)

    def delete_sandbox(self, sandbox_id: str) -> None:
        self._add("delete_sandbox", sandbox_id)

    def put_container(self, uid: str, c: ObservedContainer) -> None:
        self._add("put_container", uid, c)

    def delete_container(self, container_id: str) -> None:
        self._add("delete_container", container_id)

    def put_backoff(self, entry: BackoffEntry) -> None:
        self._add("put_backoff", entry)

    def delete_backoff(self, key: str) -> None:
        self._add("delete_backoff", key)

    def put_start_error(self, uid: str, name: str, error: StartError | None) -> None:
        self._add("put_start_error", uid, name, error)

    def record_event(self, *, namespace: str, kind: str, name: str, uid: str, type_: str, reason: str,
                     message: str, now: datetime, field_path: str = "") -> None:
        self._add("record_event", namespace=namespace, kind=kind, name=name, uid=uid, type_=type_, reason=reason,
                  message=message, now=now, field_path=field_path, version=self.next_resource_version())

    def prune_events(self, *, older_than: datetime) -> None:
        self._add("prune_events", older_than=older_than)

    def replace_problems(self, problems: list[dict[str, Any]]) -> None:
        self._add("replace_problems", list(problems))
