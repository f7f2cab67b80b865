"""The node state: everything the node knows, held once in memory and written through to the store.

Owns: the pods (`PodEntry`: desired spec, record, last status, waits, pulls in flight, which a
reload after a failed write carries over), the observed sandboxes
and containers (a cache of the runtime's records, which stay the truth about containers: the
relist refreshes it, it never competes), CrashLoopBackOff and image pull backoff entries, the
last start error per container, postStart hooks that have not returned, the manifest problems,
events, and the v1 Pod object as it is stored. It is the only writer of the database for all of
these: every change goes through one of its methods, which updates memory at once and queues the
row (`store.writebehind`); the writer thread writes the queue in one transaction when its
`transaction()` ends (`flush`). The CLI's `sync --once` writes its result through
`write_sync_result`, the same code path as the agent's.

A pod's sync touches only its own `PodEntry` and the rows of its own containers, sandboxes and
backoff keys, so that pod workers run side by side (`agent.workers`); whoever changes or reads
the node state holds its `lock` (a pod worker lets it go while the runtime works). Its settings
(the manifests directory, the node name) are read from the agent's `AgentConfig`, their one home.
"""

from __future__ import annotations

import json
import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Protocol

from kubelite.agent.config import AgentConfig
from kubelite.agent.statelock import StateLock
from kubelite.api.decode import DesiredPod
from kubelite.api.models import Pod
from kubelite.core import status as statuses
from kubelite.core.types import (
    BackoffEntry, BackoffHold, ContainerState, ObservedContainer, ObservedPod, ObservedSandbox, PodRecord, PodWait,
    PostStart, StartError,
)
from kubelite.sources import gitsync
from kubelite.store.reader import SYNC_META_KEY
from kubelite.store.serial import dumps
from kubelite.store.store import Store, StoredState
from kubelite.store.writebehind import WriteBehind

log = logging.getLogger("kubelite.agent")


def log_fields(pod: str, container: str | None = None, reason: str | None = None) -> dict[str, str]:
    """The `extra=` of a log line about a pod (`pod`: namespace/name): the fields a JSON log line
    carries (`serve --log-format json`); a text line shows the message alone."""
    return {name: value for name, value in (("pod", pod), ("container", container), ("reason", reason))
            if value is not None}

#: The git commit a pod's manifest came from, when kubelite follows a repository.
COMMIT_ANNOTATION = "kubelite.io/commit"


@dataclass
class PodEntry:
    """One pod as the node holds it: desired spec, memory, last status, and what its starts wait for."""

    desired: DesiredPod
    source: str
    created_at: datetime
    record: PodRecord = PodRecord()
    deleted_at: datetime | None = None
    status: dict[str, Any] = field(default_factory=dict)
    resource_version: int = 0
    holds: tuple[BackoffHold, ...] = ()
    waiting: PodWait | None = None     # the pause of its starts (`core.plan`): sync error, config, image
    commit: str | None = None          # the git commit whose manifest defined this version
    pulling: dict[str, set[str]] = field(default_factory=dict)   # image → containers waiting for its pull
    fresh_pulls: set[tuple[str, str]] = field(default_factory=set)   # (container, image) pulled for its start

    @property
    def uid(self) -> str:
        return self.desired.uid

    @property
    def key(self) -> str:
        return self.desired.key

    @property
    def pod(self) -> Pod:
        return self.desired.pod

    @property
    def retry_at(self) -> datetime | None:
        """When the pod's starts may go on again (None: they are not held)."""
        return self.waiting.until if self.waiting is not None else None

    def containers_pulling(self) -> frozenset[str]:
        return frozenset(name for names in self.pulling.values() for name in names)


def write_sync_result(store: Store, result: Any, now: datetime) -> None:
    """A git sync's result: its status into meta "sync", and an event for anything but "unchanged"
    (inside the caller's transaction; the agent's and the CLI's one way to write it)."""
    store.set_meta(SYNC_META_KEY, result.status.to_json())
    if result.outcome in gitsync.SYNC_EVENTS:
        type_, reason = gitsync.SYNC_EVENTS[result.outcome]
        store.record_event(namespace="default", kind="Sync", name="sync", uid="", type_=type_,
                           reason=reason, message=result.message[:1000], now=now)


class ObjectWriter(Protocol):
    """What the configuration objects and claims' volumes (`configs`, `claims`) write: their rows,
    through the node state. They keep their own in-memory copies; only the node state writes."""

    def next_resource_version(self) -> int: ...
    def put_config_object(self, row: dict[str, Any]) -> None: ...
    def delete_config_object(self, kind: str, namespace: str, name: str) -> None: ...
    def put_persistent_volume(self, row: dict[str, Any]) -> None: ...
    def delete_persistent_volume(self, name: str) -> None: ...


class NodeState:
    """The node's one in-memory copy of its state, and the one writer of the store."""

    def __init__(self, store: Store, config: AgentConfig) -> None:
        self.store = WriteBehind(store)   # every write queued, written by `flush` on the writer thread
        self.lock = StateLock()
        self._depth = 0   # nested `transaction()`s of the writer thread
        self.config = config   # the agent's settings, the one home of the manifests directory and node name
        self.pods: dict[str, PodEntry] = {}
        self.sandboxes: dict[str, tuple[str, ObservedSandbox]] = {}
        self.pod_sandboxes: dict[str, dict[str, ObservedSandbox]] = {}   # uid → id → sandbox
        self.containers: dict[str, tuple[str, ObservedContainer]] = {}
        self.by_pod: dict[str, dict[str, ObservedContainer]] = {}   # uid → id → container
        self.backoff: dict[str, BackoffEntry] = {}
        self.start_errors: dict[tuple[str, str], StartError] = {}
        self.image_backoff: dict[str, BackoffEntry] = {}   # "<uid>_<image>": the kubelet's image backoff
        self.post_start: dict[str, PostStart] = {}   # container id → its postStart hook, until it returned
        self.problems: set[str] = set()
        self.touched: set[str] = set()   # pods changed by anyone but their own sync (`take_touched`)
        self._syncing = threading.local()

    @property
    def manifests(self) -> Path:
        return self.config.manifests

    @property
    def node_name(self) -> str:
        return self.config.node_name

    # ------------------------------------------------------------------ loading and writing all

    def load(self) -> StoredState:
        """Fill memory from the store (at start, and after a failed write); returns what was read,
        for the configuration objects' own load."""
        previous = self.pods   # pulls in flight live only here: carried over by uid
        self.store.reset()
        self.pods, self.sandboxes, self.pod_sandboxes, self.containers, self.by_pod = {}, {}, {}, {}, {}
        self.problems = set()
        state = self.store.load()
        for row in state.pods:
            pod = Pod.model_validate_json(row["manifest"])
            desired = DesiredPod(pod=pod, uid=row["uid"], pod_hash=row["pod_hash"],
                                 sandbox_hash=row["sandbox_hash"],
                                 container_hashes=json.loads(row["container_hashes"]))
            obj = json.loads(row["object"])
            entry = PodEntry(desired, row["source"], datetime.fromisoformat(row["created_at"]),
                             record=PodRecord(start_time=_dt(row["start_time"]), terminating=bool(row["deleted_at"]),
                                              failed_reason=row["failed_reason"], failed_message=row["failed_message"],
                                              terminal_phase=row["terminal_phase"]),
                             deleted_at=_dt(row["deleted_at"]), status=obj.get("status", {}),
                             resource_version=row["resource_version"],
                             commit=obj["metadata"].get("annotations", {}).get(COMMIT_ANNOTATION))
            if entry.uid in previous:
                entry.pulling, entry.fresh_pulls = previous[entry.uid].pulling, previous[entry.uid].fresh_pulls
            self.pods[entry.uid] = entry
        for uid, sb in state.sandboxes.values():
            self._put_sandbox(uid, sb)
        for uid, c in state.containers.values():
            self._put_container(uid, c)
        self.backoff, self.start_errors = state.backoff, state.start_errors
        return state

    def write_all(self) -> None:
        """Write everything held (into a database that was deleted under it), in the caller's transaction."""
        self.write_meta()
        for entry in self.pods.values():
            self.persist(entry)
        for uid, sb in self.sandboxes.values():
            self.store.put_sandbox(uid, sb)
        for uid, c in self.containers.values():
            self.store.put_container(uid, c)
        for entry in self.backoff.values():
            self.store.put_backoff(entry)
        for (uid, name), error in self.start_errors.items():
            self.store.put_start_error(uid, name, error)

    def write_meta(self) -> None:
        self.store.set_meta("manifests", str(self.manifests))
        self.store.set_meta("node_name", self.node_name)

    @contextmanager
    def transaction(self) -> Iterator[NodeState]:
        """The writer thread's unit of work: what it (and any pod worker meanwhile) changed is written
        in one database transaction when the outermost `transaction()` ends without an error."""
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
        if self._depth == 0:
            self.flush()

    def flush(self) -> None:
        """Write the queued rows (the writer thread only; a StoreError leaves the database unchanged).
        The queue is taken under the lock, so that no change is split between two transactions;
        the database is written with the lock let go, and pod workers go on meanwhile."""
        if self.lock.held():
            taken = self.store.take()
        else:
            with self.lock:
                taken = self.store.take()
        self.store.write(taken)

    # ------------------------------------------------------------------ which pods changed

    def touch(self, uid: str) -> None:
        """The pod changed: it is due for a sync, unless the change is its own sync's."""
        if getattr(self._syncing, "uid", None) != uid:
            self.touched.add(uid)

    @contextmanager
    def syncing(self, uid: str) -> Iterator[None]:
        """The calling thread runs the pod's sync: what it changes does not make the pod due again."""
        self._syncing.uid = uid
        try:
            yield
        finally:
            self._syncing.uid = None

    def take_touched(self) -> set[str]:
        touched, self.touched = self.touched, set()
        return touched

    # ------------------------------------------------------------------ pods

    def add_pod(self, entry: PodEntry) -> None:
        self.pods[entry.uid] = entry
        self.touch(entry.uid)
        self.persist(entry)

    def remove_pod(self, uid: str) -> None:
        """Forget a pod that has fully stopped, with its start errors and image pull backoff."""
        for key in [k for k in self.start_errors if k[0] == uid]:
            del self.start_errors[key]
        for key in [k for k in self.image_backoff if k.startswith(f"{uid}_")]:
            del self.image_backoff[key]
        # anything of the pod the relist saw again while its removal ran is forgotten too: what the
        # runtime still holds of it is then an orphan, which the relist removes
        for cid in list(self.by_pod.pop(uid, {})):
            self.containers.pop(cid, None)
            self.post_start.pop(cid, None)
        for sid in list(self.pod_sandboxes.pop(uid, {})):
            self.sandboxes.pop(sid, None)
        self.store.delete_pod(uid)
        del self.pods[uid]

    def pod_object(self, entry: PodEntry) -> dict[str, Any]:
        """The v1 Pod as `get pods -o json` shows it."""
        obj = entry.pod.to_dict()
        obj.pop("status", None)
        obj["apiVersion"], obj["kind"] = "v1", "Pod"
        meta = obj.setdefault("metadata", {})
        meta["uid"] = entry.uid
        meta["creationTimestamp"] = statuses.rfc3339(entry.created_at)
        meta["resourceVersion"] = str(entry.resource_version)
        if entry.deleted_at is not None:
            meta["deletionTimestamp"] = statuses.rfc3339(entry.deleted_at)
            meta["deletionGracePeriodSeconds"] = entry.pod.spec.termination_grace_period_seconds
        annotations = meta.setdefault("annotations", {})
        annotations.update({"kubernetes.io/config.source": "file", "kubernetes.io/config.hash": entry.uid,
                            "kubelite.io/source": entry.source})
        if entry.commit:
            annotations[COMMIT_ANNOTATION] = entry.commit
        obj["spec"]["nodeName"] = self.node_name
        obj["status"] = entry.status
        return obj

    def persist(self, entry: PodEntry) -> None:
        """Write the pod (a new resourceVersion)."""
        entry.resource_version = self.store.next_resource_version()
        pod = entry.pod
        self.store.put_pod({
            "uid": entry.uid, "namespace": pod.metadata.namespace, "name": pod.metadata.name,
            "source": entry.source, "manifest": pod.model_dump_json(by_alias=True, exclude_none=True),
            "pod_hash": entry.desired.pod_hash, "sandbox_hash": entry.desired.sandbox_hash,
            "container_hashes": dumps(entry.desired.container_hashes),
            "created_at": entry.created_at.isoformat(), "deleted_at": _iso(entry.deleted_at),
            "start_time": _iso(entry.record.start_time), "terminal_phase": entry.record.terminal_phase,
            "failed_reason": entry.record.failed_reason, "failed_message": entry.record.failed_message,
            "object": dumps(self.pod_object(entry)), "resource_version": entry.resource_version,
        })

    # ------------------------------------------------------------------ a pod's memory (only the node holds it)

    def set_desired(self, entry: PodEntry, desired: DesiredPod, source: str, commit: str | None) -> None:
        """A new version of the pod's manifest (same UID)."""
        self.touch(entry.uid)
        entry.desired, entry.source, entry.commit = desired, source, commit
        self.persist(entry)

    def mark_deleted(self, entry: PodEntry, now: datetime) -> None:
        """The pod's manifest is gone: it terminates."""
        self.touch(entry.uid)
        entry.deleted_at = now
        entry.record = replace(entry.record, terminating=True)
        self.persist(entry)

    def set_record(self, entry: PodEntry, record: PodRecord, *, persist: bool = False) -> None:
        self.touch(entry.uid)
        entry.record = record
        if persist:
            self.persist(entry)

    def set_status(self, entry: PodEntry, status: dict[str, Any]) -> None:
        self.touch(entry.uid)
        entry.status = status
        self.persist(entry)

    def set_holds(self, entry: PodEntry, holds: tuple[BackoffHold, ...]) -> None:
        self.touch(entry.uid)
        entry.holds = holds

    def set_wait(self, entry: PodEntry, waiting: PodWait | None) -> None:
        """What the pod's starts wait for (`core.plan`); None: they go on at the next pass."""
        self.touch(entry.uid)
        entry.waiting = waiting

    # ------------------------------------------------------------------ image pulls and their backoff

    def add_pull_waiter(self, entry: PodEntry, image: str, name: str) -> bool:
        """Container `name` of the pod waits for `image`'s pull; True if it was not waiting yet."""
        self.touch(entry.uid)
        waiters = entry.pulling.setdefault(image, set())
        if name in waiters:
            return False
        waiters.add(name)
        return True

    def end_pull(self, image: str) -> list[tuple[PodEntry, str]]:
        """The containers that waited for `image`'s pull, which has ended; their pods' waits end."""
        waiters = sorted((entry.uid, name) for entry in self.pods.values()
                         for name in entry.pulling.pop(image, ()))
        for uid, _ in waiters:
            self.pods[uid].waiting = None
            self.touch(uid)
        return [(self.pods[uid], name) for uid, name in waiters]

    def add_fresh_pull(self, entry: PodEntry, name: str, image: str) -> None:
        self.touch(entry.uid)
        entry.fresh_pulls.add((name, image))

    def use_fresh_pulls(self, entry: PodEntry, name: str, images: list[str]) -> None:
        """Container `name` was configured from these images: their fresh pulls are used up."""
        self.touch(entry.uid)
        entry.fresh_pulls -= {(name, image) for image in images}

    def set_image_backoff(self, key: str, backoff: BackoffEntry | None) -> None:
        """The image pull backoff of "<uid>_<image>" (None: the image was pulled)."""
        if backoff is None:
            self.image_backoff.pop(key, None)
        else:
            self.image_backoff[key] = backoff

    # ------------------------------------------------------------------ postStart hooks that have not returned

    def set_post_start(self, container_id: str, hook: PostStart | None) -> None:
        """The state of a container's postStart hook; None: it returned (or the container stopped)."""
        known = self.containers.get(container_id)
        if known is not None:
            self.touch(known[0])
        if hook is None:
            self.post_start.pop(container_id, None)
        else:
            self.post_start[container_id] = hook

    # ------------------------------------------------------------------ runtime observations (a cache)

    def observed(self, uid: str) -> ObservedPod:
        sandboxes = sorted(self.pod_sandboxes.get(uid, {}).values(),
                           key=lambda sb: (sb.attempt, sb.created_at), reverse=True)
        return ObservedPod(uid, tuple(sandboxes), tuple(self.by_pod.get(uid, {}).values()))

    def observe(self, uid: str, c: ObservedContainer) -> None:
        """Remember a container as the runtime (or an action on it just now) reports it."""
        self.touch(uid)
        old = self.containers.get(c.id)
        if old is not None and old[1].running and c.state is ContainerState.EXITED:
            entry = self.pods.get(uid)
            key = entry.key if entry else uid
            log.info("pod %s: container %s exited with code %s (%s)", key, c.name, c.exit_code, c.reason,
                     extra=log_fields(key, c.name, c.reason or None))
        self._put_container(uid, c)
        self.store.put_container(uid, c)

    def forget_container(self, container_id: str, *, delete: bool = False) -> None:
        """Drop a removed container from memory (and its row with `delete`; a removed pod's rows go with it)."""
        known = self.containers.pop(container_id, None)
        if known is None:
            return   # forgotten already (the garbage collection and a pod's removal both let go of it)
        uid = known[0]
        self.touch(uid)
        pod = self.by_pod.get(uid, {})
        pod.pop(container_id, None)
        if not pod:
            self.by_pod.pop(uid, None)
        self.post_start.pop(container_id, None)
        if delete:
            self.store.delete_container(container_id)

    def save_sandbox(self, uid: str, sb: ObservedSandbox) -> None:
        self.touch(uid)
        self._put_sandbox(uid, sb)
        self.store.put_sandbox(uid, sb)

    def forget_sandbox(self, sandbox_id: str) -> None:
        self.sandboxes.pop(sandbox_id, None)

    def _put_sandbox(self, uid: str, sb: ObservedSandbox) -> None:
        self.sandboxes[sb.id] = (uid, sb)
        self.pod_sandboxes.setdefault(uid, {})[sb.id] = sb

    def _put_container(self, uid: str, c: ObservedContainer) -> None:
        self.containers[c.id] = (uid, c)
        self.by_pod.setdefault(uid, {})[c.id] = c

    # ------------------------------------------------------------------ what the node remembers per container

    def set_start_error(self, uid: str, name: str, error: StartError | None) -> None:
        """The waiting reason of a container that could not be created or started (None: cleared)."""
        if error is None:
            if self.start_errors.pop((uid, name), None) is None:
                return
        else:
            self.start_errors[(uid, name)] = error
        self.touch(uid)
        self.store.put_start_error(uid, name, error)

    def start_errors_of(self, uid: str) -> dict[str, StartError]:
        return {name: err for (u, name), err in self.start_errors.items() if u == uid}

    def put_backoff(self, entry: BackoffEntry) -> None:
        self.backoff[entry.key] = entry
        self.store.put_backoff(entry)

    def collect_backoff(self, older_than: datetime) -> None:
        """As client-go's Backoff.GC: drop the entries unused since `older_than`."""
        for key in [k for k, e in self.backoff.items() if e.last_update < older_than]:
            del self.backoff[key]
            self.store.delete_backoff(key)

    # ------------------------------------------------------------------ events, problems, node-level rows

    def event(self, entry: PodEntry, type_: str, reason: str, message: str, now: datetime, *,
              container: str | None = None, logged: bool = False) -> None:
        """Record an event on the pod and write the lifecycle log line for it (`logged`: written
        already, by `log_event` when it happened)."""
        self.touch(entry.uid)
        field_path = ""
        if container is not None:
            kind = "initContainers" if any(c.name == container for c in entry.pod.spec.init_containers) \
                else "containers"
            field_path = f"spec.{kind}{{{container}}}"
        if not logged:
            self.log_event(entry, type_, reason, message, container=container)
        self.store.record_event(namespace=entry.pod.metadata.namespace, kind="Pod",
                                name=entry.pod.metadata.name or "", uid=entry.uid, type_=type_, reason=reason,
                                message=message, now=now, field_path=field_path)

    @staticmethod
    def log_event(entry: PodEntry, type_: str, reason: str, message: str, *, container: str | None = None) -> None:
        """An event's lifecycle log line alone: changes nothing, so any thread writes it, the state
        lock held or not (the event itself is recorded later by `event(..., logged=True)`). The
        line carries the pod, the container and the reason as fields (`--log-format json`)."""
        (log.warning if type_ == "Warning" else log.info)("pod %s: %s: %s", entry.key, reason, message,
                                                          extra=log_fields(entry.key, container, reason))

    def record_event(self, *, namespace: str, kind: str, name: str, uid: str, type_: str, reason: str,
                     message: str, now: datetime) -> None:
        """An event on something other than a pod (a manifest file, a claim, the sync)."""
        self.store.record_event(namespace=namespace, kind=kind, name=name, uid=uid, type_=type_, reason=reason,
                                message=message, now=now)

    def prune_events(self, older_than: datetime) -> None:
        self.store.prune_events(older_than=older_than)

    def replace_problems(self, rows: list[dict[str, Any]], seen: set[str]) -> None:
        self.problems = seen
        self.store.replace_problems(rows)

    def record_sync_result(self, result: Any, now: datetime) -> None:
        write_sync_result(self.store, result, now)

    # ------------------------------------------------------------------ rows of configs and claims (ObjectWriter)

    def next_resource_version(self) -> int:
        return self.store.next_resource_version()

    def put_config_object(self, row: dict[str, Any]) -> None:
        self.store.put_config_object(row)

    def delete_config_object(self, kind: str, namespace: str, name: str) -> None:
        self.store.delete_config_object(kind, namespace, name)

    def put_persistent_volume(self, row: dict[str, Any]) -> None:
        self.store.put_persistent_volume(row)

    def delete_persistent_volume(self, name: str) -> None:
        self.store.delete_persistent_volume(name)


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
