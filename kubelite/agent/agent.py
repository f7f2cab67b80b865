"""The agent: one reconcile pass over manifests, runtime and pods — `run_once()`.

Owns: the in-memory mirror of the store (write-through, one transaction per pass), applying a
manifest scan to the desired pods, the runtime relist (adopting what runs, recording exits that
happened while kubelite was away), `sync_pod` (store → `core.plan` → execute → persist), events,
and garbage collection of old container attempts. It runs on one thread; other threads only
call `hint_*`, which set flags and wake the loop (see `daemon`).

`sync_pod` carries out `PodActions` in this order:
  1. stop containers (preStop, then SIGTERM with a deadline, or SIGKILL once it has passed);
  2. record a pod-level failure (activeDeadlineSeconds);
  3. stop the sandbox when the pod is to be killed and nothing runs any more;
  4. create a new sandbox;
  5. create and start containers (image check, Created, Started; errors become waiting reasons);
  6. store backoff entries and raise BackOff events for new holds;
  7. compute the status, make a terminal phase sticky, persist the v1 Pod;
  8. remove a terminating pod that has fully stopped.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from kubelite.agent import metrics
from kubelite.api.decode import DesiredPod
from kubelite.api.models import Container, Pod
from kubelite.core import backoff as backoffs
from kubelite.core import status as statuses
from kubelite.core.plan import plan
from kubelite.core.types import (
    BackoffEntry, BackoffHold, BackoffPolicy, ContainerState, ObservedContainer, ObservedPod, ObservedSandbox,
    PodActions, PodRecord, StartError, StopReason,
)
from kubelite.errors import NotFoundError, RuntimeError_, StoreError
from kubelite.runtime.protocol import ContainerConfig, ContainerInfo, Runtime, SandboxConfig, SandboxState
from kubelite.sources import gitsync
from kubelite.sources import manifests as sources
from kubelite.store.store import Store, dumps

log = logging.getLogger("kubelite.agent")

#: The kubelet retries a pod whose sync failed after this long (pod worker `backOffPeriod`).
SYNC_ERROR_RETRY_S = 10.0
#: The git commit a pod's manifest came from, when kubelite follows a repository.
COMMIT_ANNOTATION = "kubelite.io/commit"
#: The kubelet's image pull backoff: `imageBackOffPeriod` 10 s to `MaxImageBackOff` 300 s.
IMAGE_BACKOFF = BackoffPolicy(initial_s=10.0, max_s=300.0)
#: Container attempts kept per container name: the current one and the previous one (lastState).
KEEP_ATTEMPTS = 2
EVENT_TTL = timedelta(hours=1)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class AgentConfig:
    manifests: Path
    root: Path
    node_name: str = "localhost"
    relist_period_s: float = 20.0
    backoff: BackoffPolicy = BackoffPolicy()


@dataclass
class PodEntry:
    """One pod as the agent holds it: desired spec, memory, last status."""

    desired: DesiredPod
    source: str
    created_at: datetime
    record: PodRecord = PodRecord()
    deleted_at: datetime | None = None
    status: dict[str, Any] = field(default_factory=dict)
    resource_version: int = 0
    holds: list[BackoffHold] = field(default_factory=list)
    retry_at: datetime | None = None
    commit: str | None = None          # the git commit whose manifest defined this version

    @property
    def uid(self) -> str:
        return self.desired.uid

    @property
    def key(self) -> str:
        return self.desired.key

    @property
    def pod(self) -> Pod:
        return self.desired.pod


class Agent:
    """Reconciles the manifests directory with the runtime, one pass at a time."""

    def __init__(self, *, store: Store, runtime: Runtime, config: AgentConfig,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store, self.runtime, self.config, self.clock = store, runtime, config, clock
        self.pods: dict[str, PodEntry] = {}
        self.sandboxes: dict[str, tuple[str, ObservedSandbox]] = {}
        self.pod_sandboxes: dict[str, dict[str, ObservedSandbox]] = {}   # uid → id → sandbox
        self.containers: dict[str, tuple[str, ObservedContainer]] = {}
        self.by_pod: dict[str, dict[str, ObservedContainer]] = {}   # uid → id → container
        self.terminating_keys: set[str] = set()
        self.backoff: dict[str, BackoffEntry] = {}
        self.start_errors: dict[tuple[str, str], StartError] = {}
        self.image_backoff: dict[str, BackoffEntry] = {}   # "<uid>_<image>": the kubelet's image backoff
        self.problems: set[str] = set()
        self.snapshot: sources.ManifestSnapshot | None = None   # the last scan: unchanged files are not re-parsed
        self.manifests_dirty = True
        self.next_manifest_scan: datetime | None = None
        self.wake = threading.Event()
        self.meta_written = False
        self.hook_failures: queue.SimpleQueue[tuple[str, str, str]] = queue.SimpleQueue()
        self.sync_results: queue.SimpleQueue[Any] = queue.SimpleQueue()   # from `serve --sync-repo`
        self._load()

    # ------------------------------------------------------------------ hints (any thread)

    def hint_manifests(self) -> None:
        self.manifests_dirty = True
        self.wake.set()

    def hint_runtime(self) -> None:
        self.wake.set()

    # ------------------------------------------------------------------ start-up

    def _load(self) -> None:
        """Fill the in-memory mirror from the store (at start, and after a failed write)."""
        self.pods, self.sandboxes, self.pod_sandboxes, self.containers, self.by_pod = {}, {}, {}, {}, {}
        self.snapshot, self.manifests_dirty, self.problems = None, True, set()
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
            self.pods[entry.uid] = entry
        for uid, sb in state.sandboxes.values():
            self._put_sandbox(uid, sb)
        for uid, c in state.containers.values():
            self._put_container(uid, c)
        self.backoff, self.start_errors = state.backoff, state.start_errors

    def _write_all(self) -> None:
        """Write everything the agent holds (into a database that was deleted under it)."""
        with self.store.transaction():
            self._write_meta()
            for entry in self.pods.values():
                self.persist(entry)
            for sid, (uid, sb) in self.sandboxes.items():
                self.store.put_sandbox(uid, sb)
            for cid, (uid, c) in self.containers.items():
                self.store.put_container(uid, c)
            for entry in self.backoff.values():
                self.store.put_backoff(entry)
            for (uid, name), error in self.start_errors.items():
                self.store.put_start_error(uid, name, error)

    def _write_meta(self) -> None:
        self.store.set_meta("manifests", str(self.config.manifests))
        self.store.set_meta("node_name", self.config.node_name)

    # ------------------------------------------------------------------ the pass

    def run_once(self) -> datetime | None:
        """One reconcile pass; returns when the next pass is due at the latest.

        A pass is one transaction. If it cannot be written (a full disk), the in-memory mirror is
        reloaded from the store, so that the next pass derives and writes everything again rather
        than run ahead of what the database holds.
        """
        self.wake.clear()
        if self.store.replaced():
            log.warning("%s was deleted or replaced while kubelite ran: writing the state again", self.store.path)
            self.store.reopen()
            self._write_all()
        try:
            return self._pass()
        except StoreError:
            self._load()
            raise

    def _pass(self) -> datetime | None:
        now = self.clock()
        with self.store.transaction():
            if not self.meta_written:
                self._write_meta()
                self.meta_written = True
            if self.manifests_dirty or self.next_manifest_scan is None or now >= self.next_manifest_scan:
                self.sync_manifests(now)
            with metrics.timed(metrics.RELIST):
                self.relist(now)
            self.record_hook_failures(now)
            self.record_sync_results(now)
            wake: datetime | None = self.next_manifest_scan
            self.terminating_keys = {e.key for e in self.pods.values() if e.deleted_at is not None}
            for uid in list(self.pods):
                with metrics.timed(metrics.POD_SYNC):
                    wake = _earliest(wake, self.sync_pod(uid, now))
            self.collect_garbage(now)
        wake = _earliest(wake, self.runtime.next_event_time())
        if self.manifests_dirty:
            wake = now
        return wake

    # ------------------------------------------------------------------ manifests

    def sync_manifests(self, now: datetime) -> None:
        """Scan the directory and make the desired pods match it (invalid files keep their last version)."""
        self.manifests_dirty = False
        self.next_manifest_scan = now + timedelta(seconds=self.config.relist_period_s)
        snapshot = sources.scan(self.config.manifests, previous=self.snapshot)
        self.snapshot = snapshot
        if snapshot.problems and self.config.manifests.exists():
            # the directory exists but cannot be listed (EACCES, EIO): keep every pod as it is
            # rather than stop them all; a directory that is gone empties the node, as with the kubelet
            self.record_problems(sources.Resolution(problems=list(snapshot.problems)), now)
            return
        previous: dict[str, list[DesiredPod]] = {}
        for e in self.pods.values():
            if e.deleted_at is None:
                previous.setdefault(e.source, []).append(e.desired)
        resolution = sources.resolve(snapshot, previous)
        commit = gitsync.commit_of(self.config.manifests, self.config.root)
        wanted = set()
        for key, desired in resolution.pods.items():
            source = resolution.sources[key]
            wanted.add(desired.uid)
            entry = self.pods.get(desired.uid)
            if entry is None:
                entry = PodEntry(desired, source, now, commit=commit)
                self.pods[desired.uid] = entry
                self.event(entry, "Normal", "Scheduled",
                           f"Successfully assigned {key} to {self.config.node_name}", now)
                self.persist(entry)
            elif entry.deleted_at is None and (_meta_and_spec(entry.desired) != _meta_and_spec(desired)
                                               or entry.source != source):
                log.info("pod %s: manifest changed (%s)", key, source)
                entry.desired, entry.source, entry.commit = desired, source, commit
                self.persist(entry)
        for entry in self.pods.values():
            if entry.deleted_at is None and entry.uid not in wanted:
                log.info("pod %s: manifest gone; terminating", entry.key)
                entry.deleted_at = now
                entry.record = replace(entry.record, terminating=True)
                self.persist(entry)
        self.record_problems(resolution, now)

    def record_problems(self, resolution: sources.Resolution, now: datetime) -> None:
        rows, seen = [], set()
        by_source: dict[str, list[PodEntry]] = {}
        for e in self.pods.values():
            if e.deleted_at is None:
                by_source.setdefault(e.source, []).append(e)
        for severity, problems in (("Error", resolution.problems), ("Warning", resolution.warnings)):
            for problem in problems:
                text = str(problem)
                path = str(self.config.manifests / problem.file) if not Path(problem.file).is_absolute() \
                    else problem.file
                owners = by_source.get(path, [])
                rows.append({"file": path, "severity": severity, "text": text,
                             "pod_key": owners[0].key if len(owners) == 1 else None})
                seen.add(text)
                if text in self.problems:
                    continue
                if severity == "Error":
                    log.error("manifest: %s", text)
                else:
                    log.warning("manifest: %s", text)
                for owner in owners:
                    self.event(owner, "Warning" if severity == "Error" else "Normal",
                               "InvalidManifest" if severity == "Error" else "ManifestWarning", text, now)
                if not owners and severity == "Error":
                    self.store.record_event(namespace="default", kind="Manifest", name=problem.file, uid="",
                                            type_="Warning", reason="InvalidManifest", message=text, now=now)
        self.problems = seen
        self.store.replace_problems(rows)

    # ------------------------------------------------------------------ runtime relist

    def relist(self, now: datetime) -> None:
        """Make the observed records match the runtime: the runtime is the truth."""
        seen_sandboxes = set()
        for info in self.runtime.list_sandboxes():
            seen_sandboxes.add(info.id)
            known = self.sandboxes.get(info.id)
            ready = info.state is SandboxState.READY
            if known is None:
                if info.uid not in self.pods:
                    self._remove_orphan_sandbox(info.id)
                    continue
                sb = ObservedSandbox(info.id, info.attempt, info.sandbox_hash, ready, info.created_at)
            elif known[1].ready != ready:
                sb = replace(known[1], ready=ready)
            else:
                continue
            self._save_sandbox(info.uid, sb)
        for sid, (uid, sb) in list(self.sandboxes.items()):
            if sid not in seen_sandboxes and sb.ready:  # gone with a reboot
                self._save_sandbox(uid, replace(sb, ready=False))
        seen = set()
        for info in self.runtime.list_containers():
            seen.add(info.id)
            known = self.containers.get(info.id)
            if known is None:
                if info.uid not in self.pods:
                    self._remove_orphan_container(info.id)
                    continue
                self._observe(info.uid, _from_info(info))
                continue
            uid, c = known
            if (c.state, c.exit_code, c.started_at, c.finished_at) != (info.state, info.exit_code, info.started_at,
                                                                       info.finished_at):
                self._observe(uid, replace(c, state=info.state, started_at=info.started_at,
                                           finished_at=info.finished_at, exit_code=info.exit_code,
                                           reason=info.reason, message=info.message))
        for cid, (uid, c) in list(self.containers.items()):
            if cid not in seen and c.state in (ContainerState.RUNNING, ContainerState.CREATED):
                self._observe(uid, replace(
                    c, state=ContainerState.EXITED, finished_at=now, exit_code=137, reason="ContainerStatusUnknown",
                    message="The container could not be located when the pod was terminated"))

    def _observe(self, uid: str, c: ObservedContainer) -> None:
        old = self.containers.get(c.id)
        if old is not None and old[1].running and c.state is ContainerState.EXITED:
            entry = self.pods.get(uid)
            log.info("pod %s: container %s exited with code %s (%s)", entry.key if entry else uid, c.name,
                     c.exit_code, c.reason)
        self._put_container(uid, c)
        self.store.put_container(uid, c)

    def _save_sandbox(self, uid: str, sb: ObservedSandbox) -> None:
        self._put_sandbox(uid, sb)
        self.store.put_sandbox(uid, sb)

    def _put_sandbox(self, uid: str, sb: ObservedSandbox) -> None:
        self.sandboxes[sb.id] = (uid, sb)
        self.pod_sandboxes.setdefault(uid, {})[sb.id] = sb

    def _put_container(self, uid: str, c: ObservedContainer) -> None:
        self.containers[c.id] = (uid, c)
        self.by_pod.setdefault(uid, {})[c.id] = c

    def _drop_container(self, container_id: str) -> None:
        uid, _ = self.containers.pop(container_id)
        pod = self.by_pod.get(uid, {})
        pod.pop(container_id, None)
        if not pod:
            self.by_pod.pop(uid, None)

    def _remove_orphan_container(self, container_id: str) -> None:
        log.info("removing orphan container %s", container_id)
        try:
            self.runtime.signal_container(container_id, "KILL")
            self.runtime.remove_container(container_id)
        except RuntimeError_ as exc:
            log.warning("orphan container %s: %s", container_id, exc)

    def _remove_orphan_sandbox(self, sandbox_id: str) -> None:
        log.info("removing orphan sandbox %s", sandbox_id)
        try:
            self.runtime.remove_sandbox(sandbox_id)
        except RuntimeError_ as exc:
            log.warning("orphan sandbox %s: %s", sandbox_id, exc)

    # ------------------------------------------------------------------ one pod

    def observed(self, uid: str) -> ObservedPod:
        sandboxes = sorted(self.pod_sandboxes.get(uid, {}).values(),
                           key=lambda sb: (sb.attempt, sb.created_at), reverse=True)
        return ObservedPod(uid, tuple(sandboxes), tuple(self.by_pod.get(uid, {}).values()))

    def sync_pod(self, uid: str, now: datetime) -> datetime | None:
        """Plan and carry out what one pod needs; returns when it must be looked at again."""
        entry = self.pods[uid]
        if entry.deleted_at is None and entry.key in self.terminating_keys:
            return None  # a replacement starts once the pod it replaces has stopped
        if entry.record.start_time is None and entry.deleted_at is None:
            entry.record = replace(entry.record, start_time=now)
        actions = plan(entry.desired, self.observed(uid), record=entry.record, backoff=self.backoff, now=now,
                       policy=self.config.backoff)
        if entry.retry_at is not None and now < entry.retry_at:
            # the last start failed: like the kubelet's pod worker, retry after a pause
            actions.to_start.clear()
            actions.backoff_updates.clear()
            actions.create_sandbox = False
            actions.wake_at(entry.retry_at)
        self.execute(entry, actions, now)
        observed = self.observed(uid)
        if entry.deleted_at is not None and not any(c.running for c in observed.containers):
            self.remove_pod(entry, observed)
            return None
        status = statuses.pod_status(
            entry.desired, observed, record=entry.record, now=now, holds=entry.holds,
            start_errors={name: err for (u, name), err in self.start_errors.items() if u == uid},
            previous_conditions=entry.status.get("conditions", ()), runtime=self.runtime.name)
        if status["phase"] in ("Succeeded", "Failed") and entry.record.terminal_phase is None:
            entry.record = replace(entry.record, terminal_phase=status["phase"])
            log.info("pod %s: %s", entry.key, status["phase"])
        if status != entry.status:
            metrics.pod_status_changed(entry.key, entry.created_at, entry.status, status, now)
            entry.status = status
            self.persist(entry)
        if not actions.idle:
            return now  # look again at once: the actions changed what plan() will see
        return actions.next_wakeup

    def execute(self, entry: PodEntry, actions: PodActions, now: datetime) -> None:
        uid = entry.uid
        for kill in actions.to_kill:
            self.kill_container(entry, kill.container_id, kill.signal, kill.grace_s, kill.stop_reason, kill.message,
                                now)
        if actions.fail_pod is not None:
            reason, message = actions.fail_pod
            entry.record = replace(entry.record, failed_reason=reason, failed_message=message,
                                   terminal_phase=actions.terminal_phase)
            self.event(entry, "Normal", reason, message, now)
            self.persist(entry)
        if actions.stop_sandbox:
            for sb in list(self.pod_sandboxes.get(uid, {}).values()):
                if sb.ready:
                    self.stop_sandbox(uid, sb)
        if actions.create_sandbox:
            if not self.create_sandbox(entry, actions.sandbox_attempt, now):
                return
        sandbox = self.observed(uid).sandbox
        for start in actions.to_start:
            if sandbox is None or not sandbox.ready:
                break
            self.start_container(entry, sandbox.id, start.name, start.attempt, now)
        for update in actions.backoff_updates:
            self.backoff[update.key] = update
            self.store.put_backoff(update)
        held_before = {h.name: h.until for h in entry.holds}
        for hold in actions.backoff_holds:
            if held_before.get(hold.name) != hold.until:
                meta = entry.pod.metadata
                self.event(entry, "Warning", "BackOff", f"Back-off restarting failed container {hold.name} in pod "
                           f"{meta.name}_{meta.namespace}({uid})", now, container=hold.name)
        entry.holds = list(actions.backoff_holds)

    # ------------------------------------------------------------------ runtime operations

    def create_sandbox(self, entry: PodEntry, attempt: int, now: datetime) -> bool:
        pod = entry.pod
        if attempt > 0:
            self.event(entry, "Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.",
                       now)
        config = SandboxConfig(uid=entry.uid, name=pod.metadata.name or "", namespace=pod.metadata.namespace,
                               attempt=attempt, sandbox_hash=entry.desired.sandbox_hash,
                               hostname=pod.spec.hostname or pod.metadata.name or "",
                               host_network=bool(pod.spec.host_network),
                               share_process_namespace=bool(pod.spec.share_process_namespace),
                               log_directory=str(self.log_directory(entry)))
        try:
            sandbox_id = self.runtime.run_sandbox(config)
        except RuntimeError_ as exc:
            self.event(entry, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {exc}", now)
            entry.retry_at = now + timedelta(seconds=SYNC_ERROR_RETRY_S)
            return False
        sb = ObservedSandbox(sandbox_id, attempt, entry.desired.sandbox_hash, True, now)
        self._save_sandbox(entry.uid, sb)
        return True

    def stop_sandbox(self, uid: str, sb: ObservedSandbox) -> None:
        try:
            self.runtime.stop_sandbox(sb.id)
        except NotFoundError:
            pass
        self._save_sandbox(uid, replace(sb, ready=False))

    def log_directory(self, entry: PodEntry) -> Path:
        meta = entry.pod.metadata
        return self.config.root / "logs" / f"{meta.namespace}_{meta.name}_{entry.uid}"

    def start_container(self, entry: PodEntry, sandbox_id: str, name: str, attempt: int, now: datetime) -> None:
        container = _container(entry.pod, name)
        assert container is not None, f"plan() started {name}, which is not in the spec"
        image = container.image or ""
        if not self.runtime.image_present(image):
            self.image_missing(entry, name, image, container.image_pull_policy == "Never", now)
            return
        self.event(entry, "Normal", "Pulled", f'Container image "{image}" already present on machine', now,
                   container=name)
        config = ContainerConfig(uid=entry.uid, pod_name=entry.pod.metadata.name or "",
                                 namespace=entry.pod.metadata.namespace, container=container, attempt=attempt,
                                 spec_hash=entry.desired.container_hashes[name],
                                 log_path=str(self.log_directory(entry) / name / f"{attempt}.log"),
                                 annotations=dict(entry.pod.metadata.annotations),
                                 pod_security=entry.pod.spec.security_context)
        try:
            container_id = self.runtime.create_container(sandbox_id, config)
        except RuntimeError_ as exc:
            self.start_failed(entry, name, "CreateContainerError", str(exc), now)
            return
        self.event(entry, "Normal", "Created", f"Created container: {name}", now, container=name)
        observed = ObservedContainer(id=container_id, name=name, attempt=attempt, spec_hash=config.spec_hash,
                                     state=ContainerState.CREATED, created_at=now, sandbox_id=sandbox_id, image=image)
        try:
            self.runtime.start_container(container_id)
        except RuntimeError_ as exc:
            self._observe(entry.uid, replace(observed, state=ContainerState.EXITED, finished_at=now, exit_code=128,
                                             reason="StartError", message=str(exc)))
            self.start_failed(entry, name, "RunContainerError", str(exc), now)
            return
        self._observe(entry.uid, replace(observed, state=ContainerState.RUNNING, started_at=now))
        if (entry.uid, name) in self.start_errors:
            del self.start_errors[(entry.uid, name)]
            self.store.put_start_error(entry.uid, name, None)
        self.event(entry, "Normal", "Started", f"Started container {name}", now, container=name)

    def image_missing(self, entry: PodEntry, name: str, image: str, never: bool, now: datetime) -> None:
        """ErrImageNeverPull; or ErrImagePull, then ImagePullBackOff for 10 s doubling to 300 s (the kubelet's)."""
        if never:
            self.start_failed(entry, name, "ErrImageNeverPull",
                              f'Container image "{image}" is not present with pull policy of Never', now)
            return
        key = f"{entry.uid}_{image}"
        previous = self.image_backoff.get(key)
        until = backoffs.held_until(previous, finished_at=previous.last_update, now=now, policy=IMAGE_BACKOFF) \
            if previous is not None else None
        if until is not None:
            self.event(entry, "Normal", "BackOff", f'Back-off pulling image "{image}"', now, container=name)
            self.start_failed(entry, name, "ImagePullBackOff", f'Back-off pulling image "{image}"', now, retry_at=until)
            return
        attempt = backoffs.next_entry(previous, key=key, finished_at=now, now=now, policy=IMAGE_BACKOFF)
        self.image_backoff[key] = attempt
        # look again in a second: the status then turns to ImagePullBackOff until the backoff is over
        self.start_failed(entry, name, "ErrImagePull", f'Failed to pull image "{image}": pulling from registries '
                          "is not supported yet; load the image with 'kubelite image load'", now,
                          retry_at=now + timedelta(seconds=1))

    def start_failed(self, entry: PodEntry, name: str, reason: str, message: str, now: datetime, *,
                     retry_at: datetime | None = None) -> None:
        error = StartError(reason, message)
        self.start_errors[(entry.uid, name)] = error
        self.store.put_start_error(entry.uid, name, error)
        self.event(entry, "Warning", "Failed", f"Error: {message}" if reason != "ErrImageNeverPull" else message,
                   now, container=name)
        entry.retry_at = retry_at or now + timedelta(seconds=SYNC_ERROR_RETRY_S)

    def kill_container(self, entry: PodEntry, container_id: str, signal: str, grace_s: int, stop_reason: StopReason,
                       message: str, now: datetime) -> None:
        uid, c = self.containers[container_id]
        deadline = c.kill_deadline
        if signal == "TERM":
            self.event(entry, "Normal", "Killing", message, now, container=c.name)
            deadline = now + timedelta(seconds=grace_s)
            hook = _pre_stop_command(entry.pod, c.name)
            if hook is not None:
                # The hook runs beside the loop (it may take the whole grace period); SIGTERM follows
                # it, and SIGKILL stays due at the deadline whatever the hook does.
                threading.Thread(target=self._pre_stop_then_term, args=(uid, c.id, c.name, hook, grace_s),
                                 name=f"prestop-{c.id[:12]}", daemon=True).start()
                self._observe(uid, replace(c, stop_reason=stop_reason, kill_deadline=deadline))
                return
        self._signal(container_id, signal)
        self._observe(uid, replace(c, stop_reason=stop_reason, kill_deadline=deadline))

    def _signal(self, container_id: str, signal: str) -> None:
        try:
            self.runtime.signal_container(container_id, signal)
        except NotFoundError:
            pass

    def _pre_stop_then_term(self, uid: str, container_id: str, name: str, command: list[str], grace_s: int) -> None:
        """On a helper thread: the preStop exec hook, then SIGTERM. Writes nothing: failures go to the loop."""
        try:
            result = self.runtime.exec_sync(container_id, command, float(grace_s))
            failure = "timed out" if result.timed_out else (
                f"exit code {result.exit_code}" if result.exit_code != 0 else None)
        except RuntimeError_ as exc:
            failure = str(exc)
        if failure is not None:
            self.hook_failures.put((uid, name, failure))
        self._signal(container_id, "TERM")
        self.wake.set()

    def record_sync_results(self, now: datetime) -> None:
        """Write what the git sync thread reported: its status, and an event per outcome."""
        while not self.sync_results.empty():
            result = self.sync_results.get()
            self.store.set_meta(gitsync.SYNC_META_KEY, result.status.to_json())
            if result.outcome in gitsync.SYNC_EVENTS:
                type_, reason = gitsync.SYNC_EVENTS[result.outcome]
                self.store.record_event(namespace="default", kind="Sync", name="sync", uid="", type_=type_,
                                        reason=reason, message=result.message[:1000], now=now)

    def record_hook_failures(self, now: datetime) -> None:
        while not self.hook_failures.empty():
            uid, name, failure = self.hook_failures.get()
            entry = self.pods.get(uid)
            if entry is not None:
                self.event(entry, "Warning", "FailedPreStopHook", f"PreStopHook failed: {failure}", now,
                           container=name)

    def remove_pod(self, entry: PodEntry, observed: ObservedPod) -> None:
        for c in observed.containers:
            try:
                self.runtime.remove_container(c.id)
            except RuntimeError_:
                pass
            self._drop_container(c.id)
        for sb in observed.sandboxes:
            try:
                self.runtime.remove_sandbox(sb.id)
            except RuntimeError_:
                pass
            self.sandboxes.pop(sb.id, None)
        self.pod_sandboxes.pop(entry.uid, None)
        for key in [k for k in self.start_errors if k[0] == entry.uid]:
            del self.start_errors[key]
        shutil.rmtree(self.log_directory(entry), ignore_errors=True)  # as the kubelet drops a deleted pod's logs
        self.store.delete_pod(entry.uid)
        del self.pods[entry.uid]
        log.info("pod %s: removed", entry.key)
        self.manifests_dirty = True  # a replacement of the same name may be waiting

    # ------------------------------------------------------------------ housekeeping

    def collect_garbage(self, now: datetime) -> None:
        """Keep the two newest attempts per container; drop stale backoff entries and old events."""
        by_name: dict[tuple[str, str], list[ObservedContainer]] = {}
        for uid, c in self.containers.values():
            by_name.setdefault((uid, c.name), []).append(c)
        for attempts in by_name.values():
            if len(attempts) <= KEEP_ATTEMPTS:
                continue
            attempts.sort(key=lambda c: (c.attempt, c.created_at), reverse=True)
            for old in attempts[KEEP_ATTEMPTS:]:
                if old.running:
                    continue
                try:
                    self.runtime.remove_container(old.id)
                except RuntimeError_:
                    pass
                self._drop_container(old.id)
                self.store.delete_container(old.id)
        stale = now - timedelta(seconds=2 * self.config.backoff.max_s)
        for key in [k for k, e in self.backoff.items() if e.last_update < stale]:
            del self.backoff[key]  # as client-go's Backoff.GC: unused for twice the maximum delay
            self.store.delete_backoff(key)
        self.store.prune_events(older_than=now - EVENT_TTL)

    # ------------------------------------------------------------------ persistence

    def event(self, entry: PodEntry, type_: str, reason: str, message: str, now: datetime, *,
              container: str | None = None) -> None:
        """Record an event on the pod and write the lifecycle log line for it."""
        field_path = ""
        if container is not None:
            kind = "initContainers" if any(c.name == container for c in entry.pod.spec.init_containers) \
                else "containers"
            field_path = f"spec.{kind}{{{container}}}"
        (log.warning if type_ == "Warning" else log.info)("pod %s: %s: %s", entry.key, reason, message)
        self.store.record_event(namespace=entry.pod.metadata.namespace, kind="Pod",
                                name=entry.pod.metadata.name or "", uid=entry.uid, type_=type_, reason=reason,
                                message=message, now=now, field_path=field_path)

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
        obj["spec"]["nodeName"] = self.config.node_name
        obj["status"] = entry.status
        return obj

    def persist(self, entry: PodEntry) -> None:
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


# ---------------------------------------------------------------------- helpers


def _container(pod: Pod, name: str) -> Container | None:
    """The spec of container `name`; None for a container that has left the spec."""
    for c in pod.spec.all_containers():
        if c.name == name:
            return c
    return None


def _pre_stop_command(pod: Pod, name: str) -> list[str] | None:
    """The container's preStop exec command, if it has one (a container gone from the spec has none)."""
    container = _container(pod, name)
    hook = container.lifecycle.pre_stop if container is not None and container.lifecycle else None
    return list(hook.exec_.command) if hook is not None and hook.exec_ is not None else None


def _meta_and_spec(d: DesiredPod) -> tuple[Any, ...]:
    meta = d.pod.metadata
    return d.pod_hash, meta.labels, meta.annotations


def _from_info(info: ContainerInfo) -> ObservedContainer:
    return ObservedContainer(id=info.id, name=info.name, attempt=info.attempt, spec_hash=info.spec_hash,
                             state=info.state, created_at=info.created_at, sandbox_id=info.sandbox_id,
                             image=info.image, started_at=info.started_at, finished_at=info.finished_at,
                             exit_code=info.exit_code, reason=info.reason, message=info.message)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None

