"""The CLI's read path: the state database read with the standard library only.

Owns: read-only queries for pods, events, manifest problems and meta, returning v1-shaped dicts.
`kubelite get pods` must answer in well under 100 ms, and importing SQLAlchemy alone costs more
than that, so this module uses `sqlite3` and `json` and nothing else. It opens the database
read-only and never creates it; it reads the tables that `schema` defines.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from kubelite.errors import StoreError
from kubelite import layout

DB_NAME = layout.DB_NAME
SCHEMA_VERSION = 4   # kept equal to schema.SCHEMA_VERSION by a test
RESOURCE_VERSION_KEY = "resource_version"   # kept equal to the store's by a test
TOMBSTONE_PREFIX = "deleted/"
#: Where the git sync's status lives in the `meta` table (written by the node state, read by `get sync`).
SYNC_META_KEY = "sync"
#: The `local-path` class every kubelite has; kept equal to `api.claims.builtin_class()` by a test.
BUILTIN_STORAGE_CLASS: dict[str, Any] = {
    "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
    "metadata": {"name": "local-path", "uid": "37a84793-b969-96a3-8e76-dabc3e6a959e",
                 "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": "kubelite.io/local-path", "reclaimPolicy": "Retain", "volumeBindingMode": "Immediate"}
LOCK_NAME = layout.LOCK_NAME   # held by the serving daemon (daemon.lock_root)


class Reader:
    """Read-only access to `<root>/kubelite.db`; an absent database reads as empty."""

    def __init__(self, root: Path) -> None:
        self.path = root / DB_NAME
        self._db: sqlite3.Connection | None = None
        self._has_event_versions = False
        if self.path.exists():
            try:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
                version = self.meta("schema_version")
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: cannot read the state database: {exc}") from None
            if version is not None and int(version) > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: database schema {version} is newer than this kubelite "
                                 f"understands ({SCHEMA_VERSION}); upgrade kubelite")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self._db is None:
            return []
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise StoreError(f"{self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: the state database is damaged ({exc})") from None

    @contextmanager
    def snapshot(self) -> Iterator["Reader"]:
        """Read several queries from one consistent state (one read transaction)."""
        if self._db is None:
            yield self
            return
        self._db.execute("BEGIN")
        try:
            yield self
        finally:
            self._db.execute("COMMIT")

    def resource_version(self) -> int:
        """The node-wide resourceVersion: the newest value any pod write or delete took."""
        value = self.meta(RESOURCE_VERSION_KEY)
        if value is None:
            rows = self._rows("SELECT max(resource_version) FROM pods")
            return int(rows[0][0] or 0) if rows else 0
        return int(value)

    def tombstones(self) -> dict[str, int]:
        """uid → the resourceVersion at which the pod was deleted (recent deletions only)."""
        rows = self._rows("SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?",
                          (len(TOMBSTONE_PREFIX), TOMBSTONE_PREFIX))
        return {key[len(TOMBSTONE_PREFIX):]: int(value) for key, value in rows}

    def config_objects(self, kind: str, namespace: str | None = None,
                       name: str | None = None) -> list[dict[str, Any]]:
        """ConfigMaps or Secrets from the manifests directory, as v1 objects; none when the table is absent."""
        sql = "SELECT object, uid, created_at, resource_version FROM config_objects WHERE kind = ?"
        args: list[Any] = [kind]
        for column, value in (("namespace", namespace), ("name", name)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        out = []
        for obj, uid, created, rv in self._rows(sql + " ORDER BY namespace, name", tuple(args)):
            item = json.loads(obj)
            meta = item.setdefault("metadata", {})
            meta.setdefault("uid", uid)
            meta.setdefault("creationTimestamp", created)
            meta.setdefault("resourceVersion", str(rv))
            out.append(item)
        return out

    def storage_classes(self, name: str | None = None) -> list[dict[str, Any]]:
        """The classes a claim may name, sorted: the StorageClass documents and the built-in
        `local-path` (unless a document redefines it)."""
        found = {o["metadata"]["name"]: o for o in self.config_objects("StorageClass")}
        found.setdefault(BUILTIN_STORAGE_CLASS["metadata"]["name"], json.loads(json.dumps(BUILTIN_STORAGE_CLASS)))
        return [found[n] for n in sorted(found) if name in (None, n)]

    def persistent_volumes(self, name: str | None = None) -> list[dict[str, Any]]:
        """The volumes provisioned for claims, as v1 PersistentVolumes; none when the table is absent."""
        sql = "SELECT object, created_at, resource_version FROM persistent_volumes"
        args: tuple[Any, ...] = ()
        if name is not None:
            sql, args = sql + " WHERE name = ?", (name,)
        out = []
        for obj, created, rv in self._rows(sql + " ORDER BY name", args):
            item = json.loads(obj)
            meta = item.setdefault("metadata", {})
            meta.setdefault("creationTimestamp", created)
            meta.setdefault("resourceVersion", str(rv))
            out.append(item)
        return out

    def meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def pods(self, namespace: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """v1 Pods with status, sorted by namespace and name (as kubectl sorts them)."""
        sql = "SELECT object FROM pods"
        clauses, args = [], []
        if namespace is not None:
            clauses.append("namespace = ?")
            args.append(namespace)
        if name is not None:
            clauses.append("name = ?")
            args.append(name)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY namespace, name, deleted_at IS NULL"
        return [json.loads(row[0]) for row in self._rows(sql, tuple(args))]

    def accepted_pods(self) -> list[dict[str, Any]]:
        """The pods as accepted from their manifests, not terminating: uid, namespace, name, source,
        manifest (the desired Pod's JSON), its hashes, and the v1 object with status (`kubelite diff`)."""
        columns = ("uid", "namespace", "name", "source", "manifest", "pod_hash", "sandbox_hash", "container_hashes",
                   "object")
        rows = self._rows(f"SELECT {', '.join(columns)} FROM pods WHERE deleted_at IS NULL ORDER BY namespace, name")
        return [dict(zip(columns, row)) for row in rows]

    def containers(self) -> list[dict[str, Any]]:
        """Every container the runtime was last seen to have, as stored: uid, id, name, attempt,
        spec_hash, state, created_at, exit_code, stop_reason (`kubelite diff`: which still run)."""
        columns = ("uid", "id", "name", "attempt", "spec_hash", "state", "created_at", "exit_code", "stop_reason")
        return [dict(zip(columns, row)) for row in self._rows(f"SELECT {', '.join(columns)} FROM containers")]

    def accepted_configs(self) -> list[tuple[dict[str, Any], str]]:
        """Every configuration object (ConfigMap, Secret, claim, class) as stored, with its manifest file."""
        return [(json.loads(obj), source) for obj, source in
                self._rows("SELECT object, source FROM config_objects ORDER BY kind, namespace, name")]

    def resource_versions(self) -> dict[str, int]:
        """uid → resource version: what `get pods -w` polls to see changes cheaply."""
        return {uid: rv for uid, rv in self._rows("SELECT uid, resource_version FROM pods")}

    def events(self, namespace: str | None = None, *, uid: str | None = None,
               name: str | None = None, since: int | None = None) -> list[dict[str, Any]]:
        """v1 Events, oldest last-seen first; `since`: only those written after that resourceVersion,
        in the order they were written."""
        versions = self._event_versions()
        sql = ("SELECT id, namespace, kind, name, uid, field_path, type, reason, message, count, "
               f"first_timestamp, last_timestamp, {'resource_version' if versions else '0'} FROM events")
        clauses, args = [], []
        for column, value in (("namespace", namespace), ("uid", uid), ("name", name)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if since is not None and versions:
            clauses.append("resource_version > ?")
            args.append(since)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY resource_version, id" if since is not None and versions else " ORDER BY last_timestamp, id"
        out = []
        for (id_, ns, kind, obj, obj_uid, field_path, type_, reason, message, count, first, last, rv) in \
                self._rows(sql, tuple(args)):
            involved = {"kind": kind, "namespace": ns, "name": obj, "uid": obj_uid}
            if field_path:
                involved["fieldPath"] = field_path
            out.append({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": f"{obj}.{id_:x}", "namespace": ns, "resourceVersion": str(rv)},
                "involvedObject": involved, "reason": reason, "message": message, "type": type_,
                "count": count, "firstTimestamp": _api_time(first), "lastTimestamp": _api_time(last),
                "source": {"component": "kubelite"},
            })
        return out

    def _event_versions(self) -> bool:
        """Whether the events carry resourceVersions (schema 4; a database not upgraded yet has none)."""
        if not self._has_event_versions:   # looked at again until found: the daemon may upgrade it meanwhile
            self._has_event_versions = any(row[1] == "resource_version"
                                           for row in self._rows("PRAGMA table_info(events)"))
        return self._has_event_versions

    def pods_by_uid(self, uids: list[str]) -> list[dict[str, Any]]:
        if not uids:
            return []
        marks = ",".join("?" * len(uids))
        return [json.loads(row[0]) for row in self._rows(f"SELECT object FROM pods WHERE uid IN ({marks})",
                                                         tuple(uids))]

    def problems(self) -> list[dict[str, Any]]:
        rows = self._rows("SELECT file, severity, text, pod_key FROM problems ORDER BY id")
        return [{"file": f, "severity": s, "text": t, "pod_key": k} for f, s, t, k in rows]


def _api_time(stored: str) -> str:
    """A stored ISO timestamp (`…+00:00`, microseconds) as the API prints it (`…Z`, seconds)."""
    return stored[:19] + "Z"


def daemon_serving(root: Path) -> bool:
    """Whether a kubelite daemon holds this state root's lock now. Looked up in /proc/locks, so the
    check never takes the lock itself (which could refuse a daemon starting at that moment)."""
    try:
        st = (root / LOCK_NAME).stat()
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            table = handle.read()
    except OSError:
        return False
    for line in table.splitlines():
        fields = line.split()
        if "FLOCK" in fields and len(fields) >= 6:
            device = fields[fields.index("FLOCK") + 4] if fields.index("FLOCK") + 4 < len(fields) else ""
            major, _, rest = device.partition(":")
            minor, _, inode = rest.partition(":")
            try:
                if (int(major, 16), int(minor, 16), int(inode)) == (os.major(st.st_dev), os.minor(st.st_dev),
                                                                    st.st_ino):
                    return True
            except ValueError:
                continue
    return False


def one_per_name(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One pod per namespace/name: a pod being replaced shows its terminating predecessor until it
    is gone (as `get pods` shows it). `pods` must be sorted as `Reader.pods` sorts them."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for pod in pods:
        meta = pod["metadata"]
        seen.setdefault((meta.get("namespace", ""), meta["name"]), pod)
    return list(seen.values())
