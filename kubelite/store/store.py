"""The state store: SQLAlchemy 2 on SQLite (WAL) at `<root>/kubelite.db`.

Owns: the engine, every session and transaction, the schema upgrade on open, and the mapping
between rows and the engine's records (`ObservedContainer`, `ObservedSandbox`, `BackoffEntry`,
`StartError`). The agent's one reconcile thread is its only writer; it writes inside
`transaction()`. The CLI reads through `reader` (sqlite3, no SQLAlchemy) for speed.
"""

from __future__ import annotations

import errno
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Connection, Integer, create_engine, delete, event, func, inspect, select, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.dialects.sqlite import insert

from kubelite.core.types import (
    BackoffEntry, ContainerState, ObservedContainer, ObservedSandbox, StartError, StopReason,
)
import kubelite.statefiles as statefiles
from kubelite.errors import StoreError
from kubelite import layout
from kubelite.store import schema

DB_NAME = layout.DB_NAME
#: meta key of the node-wide resourceVersion counter: every pod write and delete takes the next value.
RESOURCE_VERSION_KEY = "resource_version"
#: meta keys `deleted/<uid>` hold the resourceVersion of a pod's deletion (what a watch reports).
TOMBSTONE_PREFIX = "deleted/"
#: Tombstones older than this many resourceVersions are dropped (a watch that far behind relists).
TOMBSTONE_SPAN = 10_000
log = logging.getLogger("kubelite.store")


def _upsert(table: Any, keys: list[str], **overrides: Any) -> Any:
    """INSERT … ON CONFLICT DO UPDATE, built once: executed with a parameter dict, so SQLAlchemy
    compiles it once (building a statement per write cost most of a 1,000-pod first pass)."""
    stmt = insert(table)
    updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys and not c.primary_key}
    updates.update({name: value(stmt) for name, value in overrides.items()})
    return stmt.on_conflict_do_update(index_elements=keys, set_=updates)


_PUT_META = _upsert(schema.meta, ["key"])
_PUT_POD = _upsert(schema.pods, ["uid"])
_PUT_SANDBOX = _upsert(schema.sandboxes, ["id"])
_PUT_CONTAINER = _upsert(schema.containers, ["id"])
_PUT_BACKOFF = _upsert(schema.backoff, ["key"])
_PUT_CONFIG_OBJECT = _upsert(schema.config_objects, ["kind", "namespace", "name"])
_PUT_PERSISTENT_VOLUME = _upsert(schema.persistent_volumes, ["name"])
_EVENT_KEY = ["uid", "kind", "name", "field_path", "type", "reason", "message"]
_RECORD_EVENT = _upsert(schema.events, _EVENT_KEY, count=lambda stmt: schema.events.c.count + 1,
                        first_timestamp=lambda stmt: schema.events.c.first_timestamp,
                        namespace=lambda stmt: schema.events.c.namespace)


def _ts(value: datetime | None) -> str | None:
    return value.isoformat(timespec="microseconds") if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass
class StoredState:
    """Everything the agent keeps, as loaded at start-up."""

    pods: list[dict[str, Any]] = field(default_factory=list)
    sandboxes: dict[str, tuple[str, ObservedSandbox]] = field(default_factory=dict)      # id → (uid, sb)
    containers: dict[str, tuple[str, ObservedContainer]] = field(default_factory=dict)   # id → (uid, c)
    backoff: dict[str, BackoffEntry] = field(default_factory=dict)
    start_errors: dict[tuple[str, str], StartError] = field(default_factory=dict)
    config_objects: list[dict[str, Any]] = field(default_factory=list)
    persistent_volumes: list[dict[str, Any]] = field(default_factory=list)


#: The tables of schema version 1 (`config_objects` came with version 2, `persistent_volumes` with 3).
_V1_TABLES = [t for name, t in schema.metadata.tables.items() if name not in ("config_objects", "persistent_volumes")]


def _migrate_0_to_1(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=_V1_TABLES)


def _migrate_1_to_2(conn: Connection) -> None:
    schema.config_objects.create(conn, checkfirst=True)


def _migrate_2_to_3(conn: Connection) -> None:
    schema.persistent_volumes.create(conn, checkfirst=True)


def _migrate_3_to_4(conn: Connection) -> None:
    """Events get resourceVersions (0 for those written before: older than any watch)."""
    columns = {row[1] for row in conn.exec_driver_sql("PRAGMA table_info(events)")}
    if "resource_version" not in columns:   # a database made at version 1 with today's tables has it
        conn.exec_driver_sql("ALTER TABLE events ADD COLUMN resource_version INTEGER NOT NULL DEFAULT 0")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_events_resource_version ON events (resource_version)")


#: MIGRATIONS[n] upgrades a database at schema version n to n + 1.
MIGRATIONS = {0: _migrate_0_to_1, 1: _migrate_1_to_2, 2: _migrate_2_to_3, 3: _migrate_3_to_4}


def _owner_only(path: Path) -> None:
    """The database holds Secrets: readable by its owner only (SQLite gives its -wal and -shm files
    the database file's mode). Made 0600 before SQLite first creates it; tightened if older."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)   # the real file: a symlink was refused by O_NOFOLLOW above
        finally:
            os.close(fd)
        for extra in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            statefiles.tighten(extra, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreError(f"{path} is a symlink: refused (kubelite never follows one in its state root)") from None
        log.debug("cannot restrict %s: %s", path, exc)   # a read-only or full file system: SQLite names it


class Store:
    """The one owner of the database. Not thread-safe by design: one writer thread."""

    def __init__(self, root: Path) -> None:
        statefiles.make_top(root)
        self.path = root / DB_NAME
        if self.path.exists() and self.path.stat().st_size == 0:
            log.warning("%s is empty (truncated?): rebuilding the state from the manifests and the running "
                        "containers", self.path)
        _owner_only(self.path)
        self.engine = create_engine(f"sqlite:///{self.path}", future=True)
        event.listen(self.engine, "connect", self._on_connect)
        self._conn: Connection | None = None
        try:
            self.upgrade()
            with self.engine.connect() as conn:
                verdict = conn.execute(text("PRAGMA quick_check")).scalar()
            if verdict != "ok":
                raise DatabaseError("PRAGMA quick_check", None, Exception(str(verdict).splitlines()[0]))
        except DatabaseError as exc:
            self.engine.dispose()
            raise self.damaged(exc) from None
        self.identity = self._identity()

    def damaged(self, exc: DatabaseError) -> StoreError:
        return StoreError(f"{self.path}: the state database is damaged ({exc.orig}); kubelite will not guess what "
                          "it held — move the file aside and kubelite rebuilds its state from the manifests and "
                          "the running containers")

    def _identity(self) -> tuple[int, int] | None:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        return info.st_dev, info.st_ino

    def replaced(self) -> bool:
        """True when the database file is no longer the one this store opened (deleted or moved)."""
        return self._identity() != self.identity

    def reopen(self) -> None:
        """Open the database file anew (a fresh one if it was deleted) at the current schema."""
        self.engine.dispose()
        _owner_only(self.path)
        self.upgrade()
        self.identity = self._identity()

    @staticmethod
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=5000")
        cur.close()

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ schema

    def schema_version(self, conn: Connection) -> int:
        if not inspect(conn).has_table("meta"):
            return 0
        value = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")).scalar()
        return int(value) if value is not None else 0

    def upgrade(self) -> None:
        """Bring the database to `SCHEMA_VERSION`; refuse one written by a newer kubelite."""
        with self.engine.begin() as conn:
            version = self.schema_version(conn)
            if version > schema.SCHEMA_VERSION:
                raise StoreError(f"{self.path}: database schema {version} is newer than this kubelite "
                                 f"understands ({schema.SCHEMA_VERSION}); upgrade kubelite")
            while version < schema.SCHEMA_VERSION:
                MIGRATIONS[version](conn)
                version += 1
                self._set_meta(conn, "schema_version", str(version))

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def transaction(self) -> Iterator["Store"]:
        """One write transaction; nested calls join the outer one."""
        if self._conn is not None:
            yield self
            return
        try:
            with self.engine.begin() as conn:
                self._conn = conn
                try:
                    yield self
                finally:
                    self._conn = None
        except DatabaseError as exc:  # disk full, file damaged: one line, not a SQL dump
            raise StoreError(f"{self.path}: cannot write the state database ({exc.orig})") from None

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise StoreError("store write outside a transaction")
        return self._conn

    # ------------------------------------------------------------------ meta

    @staticmethod
    def _set_meta(conn: Connection, key: str, value: str) -> None:
        conn.execute(_PUT_META, {"key": key, "value": value})

    def set_meta(self, key: str, value: str) -> None:
        self._set_meta(self.conn, key, value)

    def next_resource_version(self) -> int:
        """The next value of the node-wide resourceVersion counter, written in this transaction.

        Values only increase (as an API server's do), so a watch can resume after the last one it
        saw. The counter starts above every pod's stored version, so it also grows from a database
        written before it existed."""
        value = self._resource_version(self.conn) + 1
        self._set_meta(self.conn, RESOURCE_VERSION_KEY, str(value))
        return value

    def resource_version(self) -> int:
        """The counter's current value (outside a transaction: what the database holds now)."""
        if self._conn is not None:
            return self._resource_version(self._conn)
        with self.engine.connect() as conn:
            return self._resource_version(conn)

    @staticmethod
    def _resource_version(conn: Connection) -> int:
        current = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == RESOURCE_VERSION_KEY)).scalar()
        if current is None:
            current = conn.execute(select(func.max(schema.pods.c.resource_version))).scalar() or 0
        return int(current)

    def set_resource_version(self, value: int) -> None:
        """Move the counter to `value` (values handed out by the node state's write queue); never back."""
        if value > self._resource_version(self.conn):
            self._set_meta(self.conn, RESOURCE_VERSION_KEY, str(value))

    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == key)).scalar()

    # ------------------------------------------------------------------ load

    def load(self) -> StoredState:
        try:
            return self._load()
        except DatabaseError as exc:
            raise self.damaged(exc) from None

    def _load(self) -> StoredState:
        state = StoredState()
        with self.engine.connect() as conn:
            state.pods = [dict(r._mapping) for r in conn.execute(select(schema.pods))]
            for r in conn.execute(select(schema.sandboxes)):
                state.sandboxes[r.id] = (r.uid, ObservedSandbox(r.id, r.attempt, r.sandbox_hash, bool(r.ready),
                                                                _dt(r.created_at)))  # type: ignore[arg-type]
            for r in conn.execute(select(schema.containers)):
                state.containers[r.id] = (r.uid, ObservedContainer(
                    id=r.id, name=r.name, attempt=r.attempt, spec_hash=r.spec_hash, state=ContainerState(r.state),
                    created_at=_dt(r.created_at), sandbox_id=r.sandbox_id, image=r.image,  # type: ignore[arg-type]
                    started_at=_dt(r.started_at), finished_at=_dt(r.finished_at), exit_code=r.exit_code,
                    reason=r.reason, message=r.message,
                    stop_reason=StopReason(r.stop_reason) if r.stop_reason else None,
                    kill_deadline=_dt(r.kill_deadline)))
            for r in conn.execute(select(schema.backoff)):
                state.backoff[r.key] = BackoffEntry(r.key, r.backoff_s, _dt(r.last_update))  # type: ignore[arg-type]
            for r in conn.execute(select(schema.start_errors)):
                state.start_errors[(r.uid, r.name)] = StartError(r.reason, r.message)
            state.config_objects = [dict(r._mapping) for r in conn.execute(select(schema.config_objects))]
            state.persistent_volumes = [dict(r._mapping) for r in conn.execute(select(schema.persistent_volumes))]
        return state

    # ------------------------------------------------------------------ pods

    def put_pod(self, row: dict[str, Any]) -> None:
        """Insert or replace a pod row (all columns of `schema.pods`)."""
        self.conn.execute(_PUT_POD, row)

    def delete_pod(self, uid: str, *, version: int | None = None) -> None:
        """Forget a pod and everything observed about it; leave a tombstone for watches (at
        `version`, the next resourceVersion when not given)."""
        for table in (schema.containers, schema.sandboxes, schema.start_errors, schema.pods):
            self.conn.execute(delete(table).where(table.c.uid == uid))
        if version is None:
            version = self.next_resource_version()
        self.set_meta(TOMBSTONE_PREFIX + uid, str(version))
        meta = schema.meta
        self.conn.execute(delete(meta).where(meta.c.key.startswith(TOMBSTONE_PREFIX, autoescape=True),
                                             func.cast(meta.c.value, Integer) < version - TOMBSTONE_SPAN))

    # ------------------------------------------------------------------ ConfigMaps and Secrets

    def put_config_object(self, row: dict[str, Any]) -> None:
        """Insert or replace a ConfigMap or Secret row (all columns of `schema.config_objects`)."""
        self.conn.execute(_PUT_CONFIG_OBJECT, row)

    def delete_config_object(self, kind: str, namespace: str, name: str) -> None:
        table = schema.config_objects
        self.conn.execute(delete(table).where(table.c.kind == kind, table.c.namespace == namespace,
                                              table.c.name == name))

    # ------------------------------------------------------------------ PersistentVolumes

    def put_persistent_volume(self, row: dict[str, Any]) -> None:
        """Insert or replace a volume row (all columns of `schema.persistent_volumes`)."""
        self.conn.execute(_PUT_PERSISTENT_VOLUME, row)

    def delete_persistent_volume(self, name: str) -> None:
        table = schema.persistent_volumes
        self.conn.execute(delete(table).where(table.c.name == name))

    # ------------------------------------------------------------------ observed

    def put_sandbox(self, uid: str, sb: ObservedSandbox) -> None:
        row = {"id": sb.id, "uid": uid, "attempt": sb.attempt, "sandbox_hash": sb.sandbox_hash,
               "ready": sb.ready, "created_at": _ts(sb.created_at)}
        self.conn.execute(_PUT_SANDBOX, row)

    def delete_sandbox(self, sandbox_id: str) -> None:
        self.conn.execute(delete(schema.sandboxes).where(schema.sandboxes.c.id == sandbox_id))

    def put_container(self, uid: str, c: ObservedContainer) -> None:
        row = {"id": c.id, "uid": uid, "name": c.name, "attempt": c.attempt, "spec_hash": c.spec_hash,
               "state": c.state.value, "sandbox_id": c.sandbox_id, "image": c.image,
               "created_at": _ts(c.created_at), "started_at": _ts(c.started_at),
               "finished_at": _ts(c.finished_at), "exit_code": c.exit_code, "reason": c.reason,
               "message": c.message, "stop_reason": c.stop_reason.value if c.stop_reason else None,
               "kill_deadline": _ts(c.kill_deadline)}
        self.conn.execute(_PUT_CONTAINER, row)

    def delete_container(self, container_id: str) -> None:
        self.conn.execute(delete(schema.containers).where(schema.containers.c.id == container_id))

    # ------------------------------------------------------------------ backoff and errors

    def put_backoff(self, entry: BackoffEntry) -> None:
        row = {"key": entry.key, "backoff_s": entry.backoff_s, "last_update": _ts(entry.last_update)}
        self.conn.execute(_PUT_BACKOFF, row)

    def delete_backoff(self, key: str) -> None:
        self.conn.execute(delete(schema.backoff).where(schema.backoff.c.key == key))

    def put_start_error(self, uid: str, name: str, error: StartError | None) -> None:
        table = schema.start_errors
        self.conn.execute(delete(table).where(table.c.uid == uid, table.c.name == name))
        if error is not None:
            self.conn.execute(insert(table).values(uid=uid, name=name, reason=error.reason, message=error.message))

    # ------------------------------------------------------------------ events and problems

    def record_event(self, *, namespace: str, kind: str, name: str, uid: str, type_: str, reason: str,
                     message: str, now: datetime, field_path: str = "", version: int | None = None) -> None:
        """Add an event, or count one more of an identical event (as the event recorder does); either
        takes `version`, or the next node-wide resourceVersion."""
        ts = _ts(now)
        self.conn.execute(_RECORD_EVENT, {
            "namespace": namespace, "kind": kind, "name": name, "uid": uid, "field_path": field_path,
            "type": type_, "reason": reason, "message": message, "count": 1, "first_timestamp": ts,
            "last_timestamp": ts, "resource_version": version if version is not None else self.next_resource_version()})

    def prune_events(self, *, older_than: datetime) -> None:
        """Drop events last seen before `older_than` (the API server keeps events one hour)."""
        self.conn.execute(delete(schema.events).where(schema.events.c.last_timestamp < _ts(older_than)))

    def replace_problems(self, problems: list[dict[str, Any]]) -> None:
        self.conn.execute(delete(schema.problems))
        if problems:
            self.conn.execute(insert(schema.problems), problems)

    def problems(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(schema.problems).order_by(schema.problems.c.id))]

    def execute_sql(self, sql: str) -> list[Any]:
        """For tests and debugging only: run raw SQL and return the rows."""
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql)))
