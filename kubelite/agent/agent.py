"""The agent: one reconcile pass over manifests, runtime and pods — `run_once()`.

Owns: the in-memory mirror of the store (write-through, one transaction per pass), applying a
manifest scan to the desired pods, the runtime relist (adopting what runs, recording exits that
happened while kubelite was away), `sync_pod` (store → `core.plan` → execute → persist), events,
and garbage collection of old container attempts. It runs on one thread; other threads only
call `hint_*`, which set flags and wake the loop (see `daemon`), or queue results (lifecycle
hooks: `hooks`, git syncs, probe runs: `probing`).

`sync_pod` carries out `PodActions` in this order:
  1. stop containers (preStop, then SIGTERM with a deadline, or SIGKILL once it has passed);
  2. record a pod-level failure (activeDeadlineSeconds);
  3. stop the sandbox when the pod is to be killed and nothing runs any more;
  4. create a new sandbox;
  5. create and start containers (image check, Created, Started, the postStart hook on a helper
     thread; errors become waiting reasons);
  6. store backoff entries and raise BackOff events for new holds;
  7. compute the status, make a terminal phase sticky, persist the v1 Pod;
  8. remove a terminating pod that has fully stopped.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from kubelite.agent import dns, metrics, probing
from kubelite.agent.claims import claim_refs
from kubelite.agent.configs import Configs, VolumeError, VolumeHost
from kubelite.agent.hooks import POST_START_BOUND_S, HookRunner, Netns, NoNetwork
from kubelite.agent.pulls import ImagePulls
from kubelite.api import claims as claim_objects
from kubelite.api import names
from kubelite.api.decode import DesiredPod
from kubelite.api.models import Container, ImageVolumeSource, Pod
from kubelite.clock import utcnow
from kubelite.core import backoff as backoffs
from kubelite.core import hooks as hook_rules
from kubelite.core import podconfig
from kubelite.core import security
from kubelite.core import status as statuses
from kubelite.core.plan import plan
from kubelite.core.types import (
    BackoffEntry, BackoffHold, BackoffPolicy, ContainerState, ObservedContainer, ObservedPod, ObservedSandbox,
    PodActions, PodRecord, PostStart, StartError, StopReason,
)
from kubelite.errors import NotFoundError, RuntimeError_, StoreError
from kubelite.prober import Prober
from kubelite import layout
from kubelite.runtime.protocol import (
    ContainerConfig, ContainerInfo, PortMapping, Runtime, SandboxConfig, SandboxState,
)
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
#: The waiting reason of a pod's containers while its sandbox cannot be made (the kubelet's sync error name).
SANDBOX_ERROR = "CreatePodSandboxError"
#: While a pull runs, its pod waits for the pull's end rather than a time (a bound, not a timeout).
PULL_WAIT = timedelta(hours=1)
#: Container attempts kept per container name: the current one and the previous one (lastState).
KEEP_ATTEMPTS = 2
EVENT_TTL = timedelta(hours=1)


@dataclass(frozen=True)
class AgentConfig:
    manifests: Path
    root: Path
    node_name: str = "localhost"
    relist_period_s: float = 20.0
    backoff: BackoffPolicy = BackoffPolicy()
    node_ip: str | None = None          # status.hostIP, and podIP of hostNetwork pods
    image_pull_workers: int = 3           # pulls at once, beside the loop; 0: on the loop (simulated tests)
    image_gc_high_percent: int = 85       # the kubelet's --image-gc-high-threshold
    image_gc_low_percent: int = 80        # the kubelet's --image-gc-low-threshold
    image_gc_period_s: float = 300.0      # the kubelet's ImageGCPeriod
    resolv_conf: str = dns.DEFAULT_RESOLV_CONF   # the kubelet's --resolv-conf: what dnsPolicy Default reads
    seccomp_default: bool = False         # the kubelet's --seccomp-default: RuntimeDefault when nothing is set
    allowed_unsafe_sysctls: tuple[str, ...] = ()   # the kubelet's --allowed-unsafe-sysctls (names, `prefix*`)
    apparmor_enabled: bool | None = None  # None: as this host's kernel says
    kernel: tuple[int, ...] | None = None  # None: this host's (`uname -r`), for the safe sysctls


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
                 clock: Callable[[], datetime] = utcnow, prober: Prober | None = None) -> None:
        self.store, self.runtime, self.config, self.clock = store, runtime, config, clock
        # a simulated runtime's dry runs mount nothing and create nothing outside the state root
        self.configs = Configs(store, VolumeHost(config.root, host_changes=not runtime.simulated,
                                                 image_layers=runtime.image_layers), config.node_name)
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
        self.wake = probing.LoopWake()
        self.probing = probing.ProbeManager(prober or probing.default_prober(runtime, self.wake))
        self.meta_written = False
        self.hooks = HookRunner(runtime, wake=self.wake.set, user_agent=_user_agent(hook_rules.USER_AGENT_PRODUCT),
                                inline=runtime.simulated)
        self.post_start: dict[str, PostStart] = {}   # container id → its postStart hook, until it returned
        self.sync_results: queue.SimpleQueue[Any] = queue.SimpleQueue()   # from `serve --sync-repo`
        self.pulls = ImagePulls(runtime, workers=config.image_pull_workers, wake=self.wake.set)
        self.pull_waiters: dict[str, set[tuple[str, str]]] = {}   # image → (uid, container) waiting for its pull
        self.fresh_pulls: set[tuple[str, str, str]] = set()      # (uid, container, image) pulled for its next start
        self.next_image_gc: datetime | None = None
        from kubelite.runtime import linux

        self.apparmor_enabled = linux.apparmor_enabled() if config.apparmor_enabled is None \
            else config.apparmor_enabled
        self.sysctl_policy = security.SysctlPolicy(
            kernel=config.kernel if config.kernel is not None else linux.kernel_version(),
            allowed_unsafe=tuple(security.check_allowed_unsafe(config.allowed_unsafe_sysctls)))
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
        self.configs.load(state.config_objects)
        self.configs.claims.load(state.persistent_volumes)
        set_up = sorted((e for e in self.pods.values() if e.uid in self.pod_sandboxes or e.uid in self.by_pod),
                        key=lambda e: e.created_at)
        self.configs.restore_claim_holders([(e.uid, e.pod) for e in set_up])

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
            self.configs.write_all()

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
            self.record_hooks(now)
            self.record_sync_results(now)
            self.record_probe_outcomes(now)
            self.record_pulls(now)
            wake: datetime | None = _earliest(self.next_manifest_scan, self.probing.prober.next_due())
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
        resolution = sources.resolve(snapshot, previous, self.configs.previous())
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
        changed = self.configs.apply(resolution, now)
        changed |= self.sync_claims(now)
        for entry in self.pods.values():
            if changed and (podconfig.references(entry.pod) | self._claim_keys(entry.pod)) & changed:
                entry.retry_at = None   # a pod waiting for a ConfigMap, Secret or claim starts as soon as it appears
        self.record_problems(resolution, now)

    @staticmethod
    def _claim_keys(pod: Pod) -> set[tuple[str, str, str]]:
        return {(claim_objects.CLAIM, pod.metadata.namespace, name) for name in claim_refs(pod).values()}

    def sync_claims(self, now: datetime) -> set[tuple[str, str, str]]:
        """Bind the claims and reclaim the volumes of claims gone that no pod refers to any longer."""
        users: dict[tuple[str, str, str], set[str]] = {}
        for entry in self.pods.values():
            for key in self._claim_keys(entry.pod):
                users.setdefault(key, set()).add(entry.uid)

        def event(namespace: str, kind: str, name: str, uid: str, type_: str, reason: str, message: str) -> None:
            (log.warning if type_ == "Warning" else log.info)("%s %s/%s: %s: %s", kind, namespace, name, reason,
                                                              message)
            self.store.record_event(namespace=namespace, kind=kind, name=name, uid=uid, type_=type_, reason=reason,
                                    message=message, now=now)

        return self.configs.sync_claims(users, now, event)

    def record_problems(self, resolution: sources.Resolution, now: datetime) -> None:
        rows, seen = [], set()
        by_source: dict[str, list[PodEntry]] = {}
        for e in self.pods.values():
            if e.deleted_at is None:
                by_source.setdefault(e.source, []).append(e)
        for kind, problems in (("Error", resolution.problems), ("Warning", resolution.warnings)):
            for problem in problems:
                text = str(problem)
                path = str(self.config.manifests / problem.file) if not Path(problem.file).is_absolute() \
                    else problem.file
                owners = by_source.get(path, [])
                severity = kind
                if kind == "Error" and path in resolution.accepted and path not in resolution.kept:
                    severity = "Conflict"   # the file is valid; one of its definitions lost to another file's
                rows.append({"file": path, "severity": severity, "text": text,
                             "pod_key": owners[0].key if len(owners) == 1 else None})
                seen.add(text)
                if text in self.problems:
                    continue
                if kind == "Error":
                    log.error("manifest: %s", text)
                else:
                    log.warning("manifest: %s", text)
                for owner in owners:
                    self.event(owner, "Warning", "InvalidManifest" if kind == "Error" else "ManifestWarning",
                               text, now)
                if not owners:   # a file without pods (only a Service, say): the event names the file
                    self.store.record_event(namespace="default", kind="Manifest", name=problem.file, uid="",
                                            type_="Warning",
                                            reason="InvalidManifest" if kind == "Error" else "ManifestWarning",
                                            message=text, now=now)
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
                sb = ObservedSandbox(info.id, info.attempt, info.sandbox_hash, ready, info.created_at, ip=info.ip)
            elif known[1].ready != ready or known[1].ip != info.ip:
                sb = replace(known[1], ready=ready, ip=info.ip)
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
        self.configs.remove_orphan_volumes(set(self.pods))   # at the first relist: pods gone while kubelite was down

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
        before = self.observed(uid)
        self.forget_post_start(before)
        self.probing.prepare(uid, entry.pod, self.probed(before))
        rejection = security.admission(entry.pod, sysctls=self.sysctl_policy, apparmor_enabled=self.apparmor_enabled)
        actions = plan(entry.desired, before, record=entry.record, backoff=self.backoff, now=now,
                       policy=self.config.backoff, probes=self.probing.results, post_start=self.post_start,
                       rejection=rejection)
        if entry.retry_at is not None and now < entry.retry_at:
            # the last start failed: like the kubelet's pod worker, retry after a pause
            actions.to_start.clear()
            actions.backoff_updates.clear()
            actions.create_sandbox = False
            actions.wake_at(entry.retry_at)
        self.execute(entry, actions, now)
        self.refresh_volumes(entry, now)
        observed = self.observed(uid)
        if entry.deleted_at is not None and not any(c.running for c in observed.containers):
            self.remove_pod(entry, observed)
            return None
        self.probing.prepare(uid, entry.pod, self.probed(observed))  # containers started just now: initial results
        status = statuses.pod_status(
            entry.desired, observed, record=entry.record, now=now, holds=entry.holds,
            start_errors={name: err for (u, name), err in self.start_errors.items() if u == uid},
            probes=self.probing.results, previous_conditions=entry.status.get("conditions", ()),
            runtime=self.runtime.name, host_ip=self.config.node_ip, post_start=self.post_start)
        self.probing.sync_targets(uid, entry.pod, self.probed(observed), self.runtime, status.get("podIP") or None)
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

    def probed(self, observed: ObservedPod) -> ObservedPod:
        """The containers whose probes run: not one whose postStart hook has not returned (the kubelet
        probes a container once its status says Running)."""
        if not any(c.id in self.post_start for c in observed.containers):
            return observed
        return replace(observed, containers=tuple(c for c in observed.containers if c.id not in self.post_start))

    def forget_post_start(self, observed: ObservedPod) -> None:
        for c in observed.containers:
            if not c.running:
                self.post_start.pop(c.id, None)

    def execute(self, entry: PodEntry, actions: PodActions, now: datetime) -> None:
        uid = entry.uid
        for kill in actions.to_kill:
            self.kill_container(entry, kill.container_id, kill.signal, kill.grace_s, kill.stop_reason, kill.message,
                                now)
        if actions.fail_pod is not None:
            reason, message = actions.fail_pod
            entry.record = replace(entry.record, failed_reason=reason, terminal_phase=actions.terminal_phase,
                                   failed_message=security.REJECTED_PREFIX + message if actions.fail_warning
                                   else message)
            self.event(entry, "Warning" if actions.fail_warning else "Normal", reason, message, now)
            self.persist(entry)
        if actions.stop_sandbox:
            for sb in list(self.pod_sandboxes.get(uid, {}).values()):
                if sb.ready:
                    self.stop_sandbox(uid, sb)
        if (actions.create_sandbox or actions.to_start) and not self.set_up_volumes(entry, now):
            return
        if actions.create_sandbox:
            if not self.create_sandbox(entry, actions.sandbox_attempt, now):
                return
        sandbox = self.observed(uid).sandbox
        for start in actions.to_start:
            if sandbox is None or not sandbox.ready:
                break
            self.start_container(entry, sandbox.id, start.name, start.attempt, now)
        waiting = self._waiting_for_pull(entry)   # their restart has not happened yet: no backoff step for it
        for update in actions.backoff_updates:
            if update.key in waiting:
                continue
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
        resolver, hosts, dns_events = dns.sandbox_dns(pod, entry.uid, resolv_conf=self.config.resolv_conf)
        for type_, reason, message in dns_events:
            self.event(entry, type_, reason, message, now)
        config = SandboxConfig(uid=entry.uid, name=pod.metadata.name or "", namespace=pod.metadata.namespace,
                               attempt=attempt, sandbox_hash=entry.desired.sandbox_hash,
                               hostname=pod.spec.hostname or names.pod_hostname(pod.metadata.name or ""),
                               host_network=bool(pod.spec.host_network),
                               share_process_namespace=bool(pod.spec.share_process_namespace),
                               log_directory=str(self.log_directory(entry)), port_mappings=_port_mappings(pod),
                               dns=resolver, hosts=hosts,
                               sysctls=tuple(security.pod_sysctls(pod).items()),
                               resources=security.pod_cgroup_requirements(pod),
                               seccomp=security.sandbox_seccomp_profile(pod,
                                                                        seccomp_default=self.config.seccomp_default))
        try:
            sandbox_id = self.runtime.run_sandbox(config)
        except RuntimeError_ as exc:
            self.event(entry, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {exc}", now)
            entry.retry_at = now + timedelta(seconds=SYNC_ERROR_RETRY_S)
            self._sandbox_error(entry, StartError(SANDBOX_ERROR, f"Failed to create pod sandbox: {exc}"))
            return False
        self._sandbox_error(entry, None)
        # its IP now, not at the next relist: the first containers' env (status.podIP) and probes need it
        sb = ObservedSandbox(sandbox_id, attempt, entry.desired.sandbox_hash, True, now,
                             ip=self.runtime.sandbox_ip(sandbox_id))
        self._save_sandbox(entry.uid, sb)
        return True

    def _sandbox_error(self, entry: PodEntry, error: StartError | None) -> None:
        """Show why the sandbox could not be made (a host port in use, a CNI failure) as every
        container's waiting reason, until a sandbox is made; the event alone is easy to miss."""
        for c in entry.pod.spec.all_containers():
            key = (entry.uid, c.name)
            if error is not None:
                self.start_errors[key] = error
                self.store.put_start_error(entry.uid, c.name, error)
            elif key in self.start_errors and self.start_errors[key].reason == SANDBOX_ERROR:
                del self.start_errors[key]
                self.store.put_start_error(entry.uid, c.name, None)

    def stop_sandbox(self, uid: str, sb: ObservedSandbox) -> None:
        try:
            self.runtime.stop_sandbox(sb.id)
        except NotFoundError:
            pass
        self._save_sandbox(uid, replace(sb, ready=False))

    def log_directory(self, entry: PodEntry) -> Path:
        meta = entry.pod.metadata
        return layout.pod_log_dir(self.config.root, meta.namespace, meta.name or "", entry.uid)

    def start_container(self, entry: PodEntry, sandbox_id: str, name: str, attempt: int, now: datetime) -> None:
        container = _container(entry.pod, name)
        assert container is not None, f"plan() started {name}, which is not in the spec"
        image = container.image or ""
        # the image, then those of its image volumes (as the kubelet, pulled by their own pullPolicy)
        images = [(image, container.image_pull_policy or "IfNotPresent"),
                  *[(v.reference or "", v.pull_policy or "IfNotPresent") for v in _image_volumes(entry.pod, container)]]
        for reference, policy in images:
            if not self.ensure_image(entry, name, reference, policy, now):
                return
        self.fresh_pulls -= {(entry.uid, name, reference) for reference, _ in images}
        config = ContainerConfig(uid=entry.uid, pod_name=entry.pod.metadata.name or "",
                                 namespace=entry.pod.metadata.namespace, container=container, attempt=attempt,
                                 spec_hash=entry.desired.container_hashes[name],
                                 log_path=str(layout.container_log_path(self.config.root, entry.pod.metadata.namespace,
                                                                       entry.pod.metadata.name or "", entry.uid, name,
                                                                       attempt)),
                                 annotations=dict(entry.pod.metadata.annotations),
                                 pod_security=entry.pod.spec.security_context,
                                 init=any(c.name == name and not c.is_sidecar for c in entry.pod.spec.init_containers),
                                 seccomp=security.seccomp_profile(entry.pod, container,
                                                                  seccomp_default=self.config.seccomp_default),
                                 apparmor=security.apparmor_profile(entry.pod, container,
                                                                    apparmor_enabled=self.apparmor_enabled),
                                 pod_resources=entry.pod.spec.resources)
        configured = self.configure_container(entry, container, config, now)
        if configured is None:
            return
        config = configured
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
        action = hook_rules.hook_action(container, hook_rules.POST_START, container_id=container_id,
                                        pod_ip=self._pod_ip(entry, sandbox_id), timeout_s=POST_START_BOUND_S,
                                        now=now)
        if action is not None:   # Running once it returns; the containers after it wait (core.plan)
            self.post_start[container_id] = PostStart.RUNNING
            self.hooks.post_start(uid=entry.uid, container_id=container_id, name=name, pod=self._pod_ref(entry),
                                  action=action, netns=self._netns(sandbox_id))

    def ensure_image(self, entry: PodEntry, name: str, image: str, policy: str, now: datetime) -> bool:
        """True when the container's image is there to create it from now, by its imagePullPolicy (the
        kubelet's `EnsureImageExists`); otherwise a pull has started, or the image is backing off."""
        fresh = (entry.uid, name, image) in self.fresh_pulls   # used up by the start (`start_container`)
        present = self.runtime.image_present(image)
        if present and (fresh or policy in ("IfNotPresent", "Never")):
            if not fresh:
                self.event(entry, "Normal", "Pulled", f'Container image "{image}" already present on machine', now,
                           container=name)
            return True
        if policy == "Never":
            self.start_failed(entry, name, "ErrImageNeverPull",
                              f'Container image "{image}" is not present with pull policy of Never', now,
                              event=f'Container image "{image}" is not present with pull policy of Never')
            return False
        previous = self.image_backoff.get(f"{entry.uid}_{image}")
        until = backoffs.held_until(previous, finished_at=previous.last_update, now=now, policy=IMAGE_BACKOFF) \
            if previous is not None else None
        if until is not None:
            self.event(entry, "Normal", "BackOff", f'Back-off pulling image "{image}"', now, container=name)
            self.start_failed(entry, name, "ImagePullBackOff", f'Back-off pulling image "{image}"', now,
                              retry_at=until, event="Error: ImagePullBackOff")
            return False
        waiters = self.pull_waiters.setdefault(image, set())
        if (entry.uid, name) not in waiters:
            waiters.add((entry.uid, name))
            self.event(entry, "Normal", "Pulling", f'Pulling image "{image}"', now, container=name)
        self.pulls.start(image)
        entry.retry_at = now + PULL_WAIT   # the pod is synced again when the pull ends (`record_pulls`)
        return False

    def _waiting_for_pull(self, entry: PodEntry) -> set[str]:
        """The CrashLoopBackOff keys of this pod's containers whose start waits for a pull."""
        meta = entry.pod.metadata
        return {backoffs.stable_key(pod_name=meta.name or "", namespace=meta.namespace, uid=entry.uid, container=name,
                                    spec_hash=entry.desired.container_hashes.get(name, ""))
                for waiters in self.pull_waiters.values() for uid, name in waiters if uid == entry.uid}

    def record_pulls(self, now: datetime) -> None:
        """The pulls that ended: Pulled (with the duration) or Failed and ErrImagePull with the image backoff."""
        for outcome in self.pulls.finished():
            image = outcome.image
            waiters = self.pull_waiters.pop(image, set())
            for uid, name in sorted(waiters):
                entry = self.pods.get(uid)
                if entry is None:
                    continue
                entry.retry_at = None
                key = f"{uid}_{image}"
                if outcome.pulled is not None:
                    self.fresh_pulls.add((uid, name, image))
                    self.image_backoff.pop(key, None)
                    self.event(entry, "Normal", "Pulled", f'Successfully pulled image "{image}" in '
                               f"{_seconds(outcome.seconds)} ({_seconds(outcome.total_s)} including waiting). "
                               f"Image size: {outcome.pulled.size} bytes.", now,
                               container=name)
                    continue
                message = f'Failed to pull image "{image}": {outcome.error}'
                self.event(entry, "Warning", "Failed", message, now, container=name)
                previous = self.image_backoff.get(key)
                self.image_backoff[key] = backoffs.next_entry(previous, key=key, finished_at=now, now=now,
                                                              policy=IMAGE_BACKOFF)
                # look again in a second: the status then turns to ImagePullBackOff until the backoff is over
                self.start_failed(entry, name, "ErrImagePull", message, now, retry_at=now + timedelta(seconds=1),
                                  event="Error: ErrImagePull")
        if self.pull_waiters:   # waiters whose pod is gone
            for image in list(self.pull_waiters):
                self.pull_waiters[image] = {(u, n) for u, n in self.pull_waiters[image] if u in self.pods}
        if self.fresh_pulls:
            self.fresh_pulls = {k for k in self.fresh_pulls if k[0] in self.pods}

    def start_failed(self, entry: PodEntry, name: str, reason: str, message: str, now: datetime, *,
                     retry_at: datetime | None = None, event: str | None = None) -> None:
        error = StartError(reason, message)
        self.start_errors[(entry.uid, name)] = error
        self.store.put_start_error(entry.uid, name, error)
        self.event(entry, "Warning", "Failed", event or f"Error: {message}", now, container=name)
        entry.retry_at = retry_at or now + timedelta(seconds=SYNC_ERROR_RETRY_S)

    def kill_container(self, entry: PodEntry, container_id: str, signal: str, grace_s: int, stop_reason: StopReason,
                       message: str, now: datetime) -> None:
        uid, c = self.containers[container_id]
        deadline = c.kill_deadline
        if signal == "TERM":
            self.event(entry, "Normal", "Killing", message, now, container=c.name)
            deadline = now + timedelta(seconds=grace_s)
            spec = _container(entry.pod, c.name)   # a container gone from the spec has no hook
            action = hook_rules.hook_action(spec, hook_rules.PRE_STOP, container_id=c.id,
                                            pod_ip=self._pod_ip(entry, c.sandbox_id), timeout_s=grace_s,
                                            now=now) if spec is not None else None
            if action is not None:
                # The hook runs beside the loop (it may take the whole grace period); SIGTERM follows
                # it, and SIGKILL is due 2 s after it at the earliest (`record_hooks`).
                deadline = hook_rules.pre_stop_deadline(now, grace_s)
                self.hooks.pre_stop(uid=uid, container_id=c.id, name=c.name, pod=self._pod_ref(entry),
                                    action=action, netns=self._netns(c.sandbox_id), grace_s=float(grace_s),
                                    then=lambda: self._signal(container_id, "TERM"))
                self._observe(uid, replace(c, stop_reason=stop_reason, kill_deadline=deadline))
                return
        self._signal(container_id, signal)
        self._observe(uid, replace(c, stop_reason=stop_reason, kill_deadline=deadline))

    def _signal(self, container_id: str, signal: str) -> None:
        try:
            self.runtime.signal_container(container_id, signal)
        except NotFoundError:
            pass

    def _pod_ip(self, entry: PodEntry, sandbox_id: str) -> str | None:
        """The pod's IP for an httpGet hook without a host: the node's with hostNetwork."""
        if entry.pod.spec.host_network:
            return self.config.node_ip
        sandbox = self.sandboxes.get(sandbox_id)
        return sandbox[1].ip if sandbox is not None else None

    def _netns(self, sandbox_id: str) -> Netns:
        try:
            return self.runtime.sandbox_netns(sandbox_id)
        except RuntimeError_ as exc:   # never the host's namespace instead (hooks.NoNetwork)
            return NoNetwork(str(exc))

    @staticmethod
    def _pod_ref(entry: PodEntry) -> str:
        meta = entry.pod.metadata
        return hook_rules.pod_ref(meta.name or "", meta.namespace, entry.uid)

    def configure_container(self, entry: PodEntry, container: Container, config: ContainerConfig,
                            now: datetime) -> ContainerConfig | None:
        """`config` with the container's resolved env and volume mounts; None (and the container waits
        with CreateContainerConfigError) when a ConfigMap, Secret, key or subPath is not usable."""
        sandbox = self.observed(entry.uid).sandbox
        try:   # the sandbox's IP (where the runtime reports one) and the node's IP, for fieldRefs
            resolved, mounts = self.configs.container_settings(
                entry.uid, entry.pod, container, entry.status, pod_ip=sandbox.ip if sandbox is not None else None,
                host_ip=self.config.node_ip)
        except podconfig.ConfigError as exc:
            self.start_failed(entry, container.name, "CreateContainerConfigError", str(exc), now)
            return None
        for reason, message in resolved.warnings:
            self.event(entry, "Warning", reason, message, now, container=container.name)
        return replace(config, env=resolved.env, mounts=mounts)

    def set_up_volumes(self, entry: PodEntry, now: datetime) -> bool:
        """The pod's volumes, ready before its containers start. On failure: FailedMount, and the
        containers not created yet wait in ContainerCreating with the reason as their message."""
        try:
            self.configs.set_up_volumes(entry.uid, entry.pod, entry.status)
        except (VolumeError, OSError) as exc:
            message = str(exc)
            self.event(entry, "Warning", "FailedMount", message, now)
            created = {c.name for c in self.by_pod.get(entry.uid, {}).values()}
            for c in entry.pod.spec.all_containers():
                if c.name not in created:
                    self.start_errors[(entry.uid, c.name)] = StartError("ContainerCreating", message)
                    self.store.put_start_error(entry.uid, c.name, self.start_errors[(entry.uid, c.name)])
            entry.retry_at = now + timedelta(seconds=SYNC_ERROR_RETRY_S)
            return False
        for key in [k for k, e in self.start_errors.items() if k[0] == entry.uid and e.reason == "ContainerCreating"]:
            del self.start_errors[key]
            self.store.put_start_error(key[0], key[1], None)
        return True

    def refresh_volumes(self, entry: PodEntry, now: datetime) -> None:
        """Keep a running pod's configMap, secret and downwardAPI files current (in place, no restart)."""
        if entry.deleted_at is not None or not any(c.running for c in self.by_pod.get(entry.uid, {}).values()):
            return
        for message in self.configs.refresh_projections(entry.uid, entry.pod, entry.status):
            self.event(entry, "Warning", "FailedMount", message, now)

    def record_sync_results(self, now: datetime) -> None:
        """Write what the git sync thread reported: its status, and an event per outcome."""
        while not self.sync_results.empty():
            result = self.sync_results.get()
            self.store.set_meta(gitsync.SYNC_META_KEY, result.status.to_json())
            if result.outcome in gitsync.SYNC_EVENTS:
                type_, reason = gitsync.SYNC_EVENTS[result.outcome]
                self.store.record_event(namespace="default", kind="Sync", name="sync", uid="", type_=type_,
                                        reason=reason, message=result.message[:1000], now=now)

    def record_probe_outcomes(self, now: datetime) -> bool:
        """Apply the prober's runs (thresholds in `core.probes`) and write their events; True if a
        result changed, so that the pods must be synced."""
        events, changed = self.probing.apply(self.probing.prober.drain(now), self.pods)
        self._write_probe_events(events, now)
        return changed

    def absorb_probe_outcomes(self) -> bool:
        """Between passes, on the reconcile thread: apply probe runs that change no result (writing
        their events); True when a full pass is needed now (a result changed, or anything else
        woke the loop)."""
        if self.wake.take():
            return True
        now = self.clock()
        events, changed = self.probing.apply(self.probing.prober.drain(now), self.pods)
        if events:
            with self.store.transaction():
                self._write_probe_events(events, now)
        return changed

    def _write_probe_events(self, events: list[probing.ProbeEvent], now: datetime) -> None:
        for uid, name, type_, reason, message in events:
            entry = self.pods.get(uid)
            if entry is not None:
                self.event(entry, type_, reason, message[:1024], now, container=name)

    def record_hooks(self, now: datetime) -> None:
        """The hooks that ended: a returned postStart hook lets its container be Running; a failed one
        raises FailedPostStartHook and has the container killed (`core.plan`) with PostStartHookError
        as its waiting reason; a failed preStop hook raises FailedPreStopHook (the stop goes on)."""
        for outcome in self.hooks.finished():
            entry = self.pods.get(outcome.uid)
            known = self.containers.get(outcome.container_id)
            for type_, reason, message in outcome.events:
                if entry is not None:
                    self.event(entry, type_, reason, message, now, container=outcome.name)
            if outcome.kind == hook_rules.PRE_STOP and known is not None and known[1].kill_deadline is not None:
                self._observe(known[0], replace(known[1], kill_deadline=hook_rules.deadline_after_pre_stop(
                    known[1].kill_deadline, now)))
            if outcome.kind == hook_rules.POST_START:
                if not outcome.failure:
                    self.post_start.pop(outcome.container_id, None)
                    continue
                if known is not None and known[1].running:
                    self.post_start[outcome.container_id] = PostStart.FAILED
                else:
                    self.post_start.pop(outcome.container_id, None)
                reason, message = hook_rules.FAILED_POST_START
                newest = self.observed(outcome.uid).instances(outcome.name)
                if entry is not None and newest and newest[0].id == outcome.container_id:
                    # the waiting reason of this attempt (not of a newer one started meanwhile)
                    error = StartError(statuses.POST_START_HOOK_ERROR, outcome.failure)
                    self.start_errors[(entry.uid, outcome.name)] = error
                    self.store.put_start_error(entry.uid, outcome.name, error)
            elif outcome.failure:
                reason, message = hook_rules.FAILED_PRE_STOP
            else:
                continue
            if entry is not None:
                log.warning("pod %s: %s", entry.key, outcome.failure)
                self.event(entry, "Warning", reason, message, now, container=outcome.name)

    def remove_pod(self, entry: PodEntry, observed: ObservedPod) -> None:
        for c in observed.containers:
            try:
                self.runtime.remove_container(c.id)
            except RuntimeError_:
                pass
            self._drop_container(c.id)
            self.post_start.pop(c.id, None)
        try:
            self.configs.tear_down(entry.uid)
        except (OSError, RuntimeError_) as exc:
            log.warning("pod %s: removing its volumes: %s", entry.key, exc)
        for sb in observed.sandboxes:
            try:
                self.runtime.remove_sandbox(sb.id)
            except RuntimeError_:
                pass
            self.sandboxes.pop(sb.id, None)
        self.pod_sandboxes.pop(entry.uid, None)
        self.probing.forget(entry.uid)
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
        self.collect_images(now)

    def collect_images(self, now: datetime) -> None:
        """Image GC, every `image_gc_period_s`: never an image a pod names or a pull is fetching."""
        if self.next_image_gc is not None and now < self.next_image_gc:
            return
        self.next_image_gc = now + timedelta(seconds=self.config.image_gc_period_s)
        in_use = {c.image or "" for e in self.pods.values() for c in e.pod.spec.all_containers()}
        in_use |= {v.image.reference or "" for e in self.pods.values() for v in e.pod.spec.volumes if v.image}
        in_use |= {c.image for _, c in self.containers.values() if c.image} | self.pulls.busy()
        try:
            removed = self.runtime.remove_unused_images(in_use, high_percent=self.config.image_gc_high_percent,
                                                        low_percent=self.config.image_gc_low_percent)
        except RuntimeError_ as exc:
            log.warning("image garbage collection: %s", exc)
            return
        for image_id in removed:
            log.info("image garbage collection: removed unused image %s", image_id)

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


def _port_mappings(pod: Pod) -> tuple[PortMapping, ...]:
    """The pod's hostPorts (app containers and sidecars), once each, as the kubelet's MakePortMappings."""
    found: dict[tuple[int, str, str], PortMapping] = {}
    for c in [*pod.spec.sidecars, *pod.spec.containers]:
        for p in c.ports:
            if p.host_port:
                mapping = PortMapping(p.host_port, p.container_port, (p.protocol or "TCP").upper(), p.host_ip or "")
                found.setdefault((mapping.host_port, mapping.protocol, mapping.host_ip), mapping)
    return tuple(found.values())


def _user_agent(product: str) -> str:
    """`<product>/<major>.<minor>` of this kubelite, as the kubelet names its probes and hooks."""
    from kubelite import __version__

    major, minor = (__version__.split(".") + ["0"])[:2]
    return f"{product}/{major}.{minor}"


def _meta_and_spec(d: DesiredPod) -> tuple[Any, ...]:
    meta = d.pod.metadata
    return d.pod_hash, meta.labels, meta.annotations


def _from_info(info: ContainerInfo) -> ObservedContainer:
    return ObservedContainer(id=info.id, name=info.name, attempt=info.attempt, spec_hash=info.spec_hash,
                             state=info.state, created_at=info.created_at, sandbox_id=info.sandbox_id,
                             image=info.image, started_at=info.started_at, finished_at=info.finished_at,
                             exit_code=info.exit_code, reason=info.reason, message=info.message)


def _seconds(value: float) -> str:
    """A duration as the kubelet's Pulled event prints it: Go's time.Duration truncated to the millisecond
    (500ms, 1.234s, 1m15.5s, 1h0m5s)."""
    ms = max(0, int(value * 1000))
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    text = f"{rest // 1000}.{rest % 1000:03d}".rstrip("0").rstrip(".") + "s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    return f"{hours}h{text}" if hours else text


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


def _image_volumes(pod: Pod, container: Container) -> list[ImageVolumeSource]:
    """The image volumes `container` mounts, once each, in the order of its volumeMounts."""
    sources = {v.name: v.image for v in pod.spec.volumes if v.image is not None}
    found: dict[str, ImageVolumeSource] = {}
    for mount in container.volume_mounts:
        if mount.name in sources and mount.name not in found:
            found[mount.name] = sources[mount.name]
    return list(found.values())
