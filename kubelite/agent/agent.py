"""The agent: one reconcile pass over manifests, runtime and pods — `run_once()`.

Owns: the pass (one transaction), applying a manifest scan to the desired pods, the runtime
relist's place in it (`relist`: adopting what runs, recording exits), the
outcomes that arrive from beside the loop (lifecycle hooks: `hooks`, git syncs, probe runs:
`probing`, image pulls: `pulls`), and garbage collection of old container attempts and images.
What the node knows lives in the node state (`nodestate`), its only in-memory copy and the only
writer of the store; each pod's sync is the executor's (`executor`, `starting`): `plan()`
decides, the executor carries the plan out.

It runs on one thread, the node state's writer; other threads only call `hint_*`, which set
flags and wake the loop (see `daemon`), or queue results. With pod workers (`agent.workers`,
`AgentConfig.pod_workers`), the pass hands each pod's sync to a worker instead of running it
itself; the loop and the workers take turns on the node state by its lock (`agent.statelock`).
"""

from __future__ import annotations

import logging
import queue
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from kubelite.agent import metrics, probing, relist
from kubelite.agent.claims import claim_refs
from kubelite.agent.config import AgentConfig
from kubelite.agent.configs import Configs, VolumeHost
from kubelite.agent.executor import SANDBOX_ERROR, PodExecutor
from kubelite.agent.hooks import HookRunner
from kubelite.agent.nodestate import COMMIT_ANNOTATION, NodeState, PodEntry, log_fields
from kubelite.agent.pulls import ImagePulls
from kubelite.agent.starting import IMAGE_BACKOFF, PULL_WAIT, SYNC_ERROR_RETRY_S
from kubelite.agent.statelock import UnlockedRuntime
from kubelite.agent.workers import PodWorkers
from kubelite.api import claims as claim_objects
from kubelite.api.decode import DesiredPod
from kubelite.api.models import Pod
from kubelite.clock import utcnow
from kubelite.core import hooks as hook_rules
from kubelite.core.change import change_effect
from kubelite.core.plan import active_containers
from kubelite.core import podconfig
from kubelite.core import security
from kubelite.core import status as statuses
from kubelite.core.types import (
    ObservedContainer, ObservedPod, PostStart, StartError,
)
from kubelite.errors import RuntimeError_, StoreError
from kubelite.prober import Prober
from kubelite.runtime.protocol import Runtime
from kubelite.sources import gitsync
from kubelite.sources import manifests as sources
from kubelite.store.store import Store

log = logging.getLogger("kubelite.agent")

__all__ = ["Agent", "AgentConfig", "PodEntry", "COMMIT_ANNOTATION", "IMAGE_BACKOFF", "PULL_WAIT", "SANDBOX_ERROR",
           "SYNC_ERROR_RETRY_S"]

#: Container attempts kept per container name: the current one and the previous one (lastState).
KEEP_ATTEMPTS = 2
EVENT_TTL = timedelta(hours=1)
#: With pod workers, every pod is synced at least this often, changed or not: the kubelet's
#: `--sync-frequency` (1 minute), or the relist period when that is longer.
RESYNC_PERIOD_S = 60.0




class Agent:
    """Reconciles the manifests directory with the runtime, one pass at a time."""

    def __init__(self, *, store: Store, runtime: Runtime, config: AgentConfig,
                 clock: Callable[[], datetime] = utcnow, prober: Prober | None = None) -> None:
        self.store, self.runtime, self.config, self.clock = store, runtime, config, clock
        self.state = NodeState(store, config)
        # a simulated runtime's dry runs mount nothing and create nothing outside the state root
        self.configs = Configs(self.state, VolumeHost(config.root, host_changes=not runtime.simulated,
                                                      image_layers=runtime.image_layers), config.node_name)
        self.terminating_keys: frozenset[str] = frozenset()
        self.snapshot: sources.ManifestSnapshot | None = None   # the last scan: unchanged files are not re-parsed
        self.manifests_dirty = True
        self.next_manifest_scan: datetime | None = None
        self.wake = probing.LoopWake()
        self.probing = probing.ProbeManager(prober or probing.default_prober(runtime, self.wake))
        self.meta_written = False
        self.hooks = HookRunner(runtime, wake=self.wake.set, user_agent=probing.user_agent(hook_rules.USER_AGENT_PRODUCT),
                                inline=runtime.simulated)
        self.sync_results: queue.SimpleQueue[Any] = queue.SimpleQueue()   # from `serve --sync-repo`
        self.pulls = ImagePulls(runtime, workers=config.image_pull_workers, wake=self.wake.set)
        self.next_image_gc: datetime | None = None
        from kubelite.runtime import linux

        self.apparmor_enabled = linux.apparmor_enabled() if config.apparmor_enabled is None \
            else config.apparmor_enabled
        self.sysctl_policy = security.SysctlPolicy(
            kernel=config.kernel if config.kernel is not None else linux.kernel_version(),
            allowed_unsafe=tuple(security.check_allowed_unsafe(config.allowed_unsafe_sysctls)))
        # a pod's sync lets the node state's lock go while the runtime works: other pods' syncs go on
        self.executor = PodExecutor(state=self.state, runtime=UnlockedRuntime(runtime, self.state.lock),
                                    config=config, configs=self.configs, probing=self.probing, hooks=self.hooks,
                                    pulls=self.pulls, sysctl_policy=self.sysctl_policy,
                                    apparmor_enabled=self.apparmor_enabled)
        self.workers = PodWorkers(config.pod_workers, lock=self.state.lock, ended=self._sync_ended) \
            if config.pod_workers else None
        self.in_pass = False
        self.planned_wake: datetime | None = None   # when the loop wakes at the latest after its last pass
        self.next_sync: dict[str, datetime | None] = {}   # uid → when its last sync asked to be looked at again
        self.deferred: set[str] = set()   # pods on a worker whose manifest changed: applied when their sync ends
        self.next_full_sync: datetime | None = None   # with workers: every pod is synced once per RESYNC_PERIOD_S
        self.next_full_relist: datetime | None = None   # the runtime's processes all looked at once per relist period
        self.last_replacing: frozenset[str] = frozenset()
        self.draining = False   # `kubelite reset`: every pod terminates, none is started again
        self._load()

    def close(self) -> None:
        """Wait for the syncs under way, then write what they changed."""
        if self.workers is not None:
            self.workers.close()
        self.state.flush()

    # ------------------------------------------------------------------ hints (any thread)

    def drain(self) -> None:
        """`kubelite reset`: from the next pass on, every pod terminates as if its manifest were gone (its
        grace period, preStop hooks, then its sandbox), and the manifests are no longer read."""
        self.draining = True
        self.hint_manifests()

    def hint_manifests(self) -> None:
        self.manifests_dirty = True
        self.wake.set()

    def hint_runtime(self) -> None:
        self.wake.set()

    def hint_sync_status(self) -> None:
        """A git sync result that changed no file waits in `sync_results`: written between passes."""
        self.wake.set_between_passes()

    # ------------------------------------------------------------------ start-up
    def _load(self) -> None:
        """Fill the node state from the store (at start, and after a failed write)."""
        self.snapshot, self.manifests_dirty = None, True
        self.next_full_sync = None   # every pod is synced at the next pass
        self.next_full_relist = None   # and the runtime relisted in full
        self.next_sync.clear()
        stored = self.state.load()
        self.configs.load(stored.config_objects)
        self.configs.claims.load(stored.persistent_volumes)
        set_up = sorted((e for e in self.state.pods.values()
                         if e.uid in self.state.pod_sandboxes or e.uid in self.state.by_pod), key=lambda e: e.created_at)
        self.configs.restore_claim_holders([(e.uid, e.pod) for e in set_up])

    def _write_all(self) -> None:
        """Write everything the node holds (into a database that was deleted under it)."""
        with self.state.transaction():
            self.state.write_all()
            self.configs.write_all()

    @property
    def config(self) -> AgentConfig:
        return self._config

    @config.setter
    def config(self, value: AgentConfig) -> None:
        """New settings (tests change them between passes): the node state and the executor work with the same."""
        self._config = value
        if hasattr(self, "executor"):
            self.executor.config = value
            self.state.config = value

    # ------------------------------------------------------------------ what the node state holds

    @property
    def pods(self) -> dict[str, PodEntry]:
        return self.state.pods

    @property
    def problems(self) -> set[str]:
        return self.state.problems

    @property
    def pull_waiters(self) -> dict[str, set[tuple[str, str]]]:
        """image → (uid, container) waiting for its pull."""
        waiters: dict[str, set[tuple[str, str]]] = {}
        for entry in self.state.pods.values():
            for image, names in entry.pulling.items():
                waiters.setdefault(image, set()).update((entry.uid, name) for name in names)
        return waiters

    def observed(self, uid: str) -> ObservedPod:
        return self.state.observed(uid)

    # ------------------------------------------------------------------ the pass

    def run_once(self, *, wait: bool = True) -> datetime | None:
        """One reconcile pass; returns when the next pass is due at the latest. With pod workers,
        `wait` waits for the syncs the pass handed to them (tests, one-shot runs); the daemon's
        loop does not wait, and a sync that ends wakes it when a pass is needed (`_sync_ended`).

        A pass is one transaction. If it cannot be written (a full disk), the in-memory mirror is
        reloaded from the store, so that the next pass derives and writes everything again rather
        than run ahead of what the database holds.
        """
        self.wake.clear()
        try:
            if self.store.replaced():
                log.warning("%s was deleted or replaced while kubelite ran: writing the state again",
                            self.store.path)
                self.store.reopen()
                with self.state.lock:   # the resourceVersion counter goes on from memory: watches see no step back
                    self._write_all()
            return self._pass(wait)
        except StoreError:
            with self.state.lock:
                self._load()
            raise

    def _pass(self, wait: bool) -> datetime | None:
        with self.state.transaction(), self.state.lock:   # written when the lock is let go (`flush`)
            self.in_pass = True
            try:
                return self._pass_steps(wait)
            finally:
                self.in_pass = False

    def _pass_steps(self, wait: bool) -> datetime | None:
        """The pass, with the state lock held; also sets when the loop means to wake next (`planned_wake`)."""
        now = self.clock()
        if not self.meta_written:
            self.state.write_meta()
            self.meta_written = True
        if self.manifests_dirty or self.next_manifest_scan is None or now >= self.next_manifest_scan \
                or (self.deferred and not self.deferred & self._busy()):
            self.sync_manifests(now)
        full = self.next_full_relist is None or now >= self.next_full_relist
        if full:
            self.next_full_relist = now + timedelta(seconds=self.config.relist_period_s)
        with metrics.timed(metrics.RELIST):
            self.relist(now, full=full)
        self.record_hooks(now)
        self.record_sync_results(now)
        self.record_probe_outcomes(now)
        self.executor.record_pulls(now)
        wake: datetime | None = _earliest(self.next_manifest_scan, self.probing.prober.next_due())
        self.terminating_keys = frozenset(e.key for e in self.state.pods.values() if e.deleted_at is not None)
        wake = _earliest(wake, self.sync_pods(now, wait))
        self.collect_garbage(now)
        wake = _earliest(wake, self.runtime.next_event_time())
        if self.manifests_dirty:
            wake = now
        self.planned_wake = _earliest(wake, now + timedelta(seconds=self.config.relist_period_s))
        return wake

    def _sync_ended(self, uid: str, wake: datetime | None, failed: bool) -> None:
        """A pod worker's sync ended: wake the loop for a pass only when one is needed — the sync
        wrote something (the pass writes it), removed its pod, failed, its pod changed meanwhile
        (touched, or a manifest change waits for the sync's end), or it wants its pod looked at
        before the loop means to wake anyway. An idle pod's resync needs none: 500 of them must
        not cost 500 relists."""
        with self.state.lock:   # the pass that runs now, if one does, has set `planned_wake` when it ends
            needed = failed or self.in_pass or uid not in self.state.pods or self.state.store.pending() > 0 \
                or uid in self.state.touched or uid in self.deferred \
                or (wake is not None and (self.planned_wake is None or wake <= self.planned_wake))
        if needed:
            self.wake.set()

    def _busy(self) -> frozenset[str]:
        return self.workers.busy() if self.workers is not None else frozenset()

    def sync_pods(self, now: datetime, wait: bool) -> datetime | None:
        """The pods' syncs: every pod's on the loop, or on the pod workers those of the pods that
        are due — changed by anything but their own sync (`NodeState.touch`), at the time their last
        sync asked for, new, or all of them once a minute (`RESYNC_PERIOD_S`), as the kubelet's resync. A pod
        on a worker already is looked at again when its sync ends."""
        touched = self.state.take_touched()
        replacing = self.terminating_keys
        if replacing != self.last_replacing:   # a pod that waited for the one it replaces may go on now
            touched |= {e.uid for e in self.state.pods.values() if e.key in replacing ^ self.last_replacing}
            self.last_replacing = replacing
        if self.workers is None:
            wake: datetime | None = None
            for uid in list(self.state.pods):
                wake = _earliest(wake, self._sync_pod(uid, now, replacing))
            return wake
        full = self.next_full_sync is None or now >= self.next_full_sync
        if full:
            self.next_full_sync = now + timedelta(seconds=max(RESYNC_PERIOD_S, self.config.relist_period_s))
        busy = self.workers.busy()
        for uid in list(self.state.pods):
            due = self.next_sync.get(uid, now)
            if not (full or uid in touched or (due is not None and due <= now)):
                continue
            if uid in busy or not self.workers.dispatch(
                    uid, lambda uid=uid: self._sync_pod(uid, self.clock(), replacing)):
                self.state.touch(uid)   # due again when its sync ends (`_sync_ended` sees it touched)
        if wait:
            with self.state.lock.released():
                self.workers.wait_idle()
        wake = self.workers.take()
        busy = self.workers.busy()
        for uid, due in self.next_sync.items():
            if uid not in busy:
                wake = _earliest(wake, due)
        return _earliest(wake, self.next_full_sync)

    def _sync_pod(self, uid: str, now: datetime, replacing: frozenset[str]) -> datetime | None:
        if uid not in self.state.pods:
            self.next_sync.pop(uid, None)
            return None   # removed by the loop's reload meanwhile
        try:
            with metrics.timed(metrics.POD_SYNC), self.state.syncing(uid):
                wake = self.executor.sync_pod(uid, now, replacing=replacing)
        except Exception:
            self.next_sync[uid] = now + timedelta(seconds=SYNC_ERROR_RETRY_S)   # as the kubelet's pod worker
            raise
        if uid not in self.state.pods:
            self.next_sync.pop(uid, None)
            self.manifests_dirty = True  # removed: a replacement of the same name may be waiting
            self.wake.set()
        else:
            self.next_sync[uid] = wake
        return wake

    # ------------------------------------------------------------------ manifests

    def sync_manifests(self, now: datetime) -> None:
        """Scan the directory and make the desired pods match it (invalid files keep their last version)."""
        self.manifests_dirty = False
        self.next_manifest_scan = now + timedelta(seconds=self.config.relist_period_s)
        if self.draining:
            self._terminate_all(now)
            return
        snapshot = sources.scan(self.config.manifests, previous=self.snapshot)
        self.snapshot = snapshot
        if snapshot.problems and self.config.manifests.exists():
            # the directory exists but cannot be listed (EACCES, EIO): keep every pod as it is
            # rather than stop them all; a directory that is gone empties the node, as with the kubelet
            self.record_problems(sources.Resolution(problems=list(snapshot.problems)), now)
            return
        previous: dict[str, list[DesiredPod]] = {}
        for e in self.state.pods.values():
            if e.deleted_at is None:
                previous.setdefault(e.source, []).append(e.desired)
        resolution = sources.resolve(snapshot, previous, self.configs.previous())
        commit = gitsync.commit_of(self.config.manifests, self.config.root)
        wanted = set()
        # a pod on a worker keeps the version its sync planned with: its change waits for the sync's
        # end (the worker wakes the loop then), as a kubelet pod worker takes the next update after
        # the one it works on
        busy, self.deferred = self._busy(), set()
        for key, desired in resolution.pods.items():
            source = resolution.sources[key]
            wanted.add(desired.uid)
            entry = self.state.pods.get(desired.uid)
            if entry is None:
                entry = PodEntry(desired, source, now, commit=commit)
                self.state.event(entry, "Normal", "Scheduled",
                                 f"Successfully assigned {key} to {self.config.node_name}", now)
                self.state.add_pod(entry)
            elif entry.deleted_at is None and change_effect(entry.desired, desired, old_source=entry.source,
                                                            new_source=source).changed:
                if entry.uid in busy:
                    self.deferred.add(entry.uid)
                    continue
                change = change_effect(entry.desired, desired, old_source=entry.source, new_source=source,
                                       running=self._active(entry), finished=entry.record.terminal_phase is not None)
                log.info("pod %s: manifest changed (%s): %s", key, source, change.summary(),
                         extra=log_fields(key, reason="ManifestChanged"))
                self.state.set_desired(entry, desired, source, commit)
        for entry in self.state.pods.values():
            if entry.deleted_at is None and entry.uid not in wanted:
                if entry.uid in busy:
                    self.deferred.add(entry.uid)
                    continue
                log.info("pod %s: manifest gone; terminating", entry.key,
                         extra=log_fields(entry.key, reason="ManifestGone"))
                self.state.mark_deleted(entry, now)
        changed = self.configs.apply(resolution, now)
        changed |= self.sync_claims(now)
        for entry in self.state.pods.values():
            if changed and (podconfig.references(entry.pod) | self._claim_keys(entry.pod)) & changed:
                self.state.set_wait(entry, None)   # a pod waiting for a ConfigMap, Secret or claim starts when it appears
        self.record_problems(resolution, now)

    def _active(self, entry: PodEntry) -> set[str]:
        """The containers of a pod that run, or will start again by its restart policy."""
        return active_containers(entry.desired, self.state.by_pod.get(entry.uid, {}).values())

    def _terminate_all(self, now: datetime) -> None:
        """Draining: every pod not yet terminating starts to (one on a worker when its sync ends)."""
        busy, self.deferred = self._busy(), set()
        for entry in self.state.pods.values():
            if entry.deleted_at is None:
                if entry.uid in busy:
                    self.deferred.add(entry.uid)
                    continue
                log.info("pod %s: kubelite reset; terminating", entry.key)
                self.state.mark_deleted(entry, now)

    @staticmethod
    def _claim_keys(pod: Pod) -> set[tuple[str, str, str]]:
        return {(claim_objects.CLAIM, pod.metadata.namespace, name) for name in claim_refs(pod).values()}

    def sync_claims(self, now: datetime) -> set[tuple[str, str, str]]:
        """Bind the claims and reclaim the volumes of claims gone that no pod refers to any longer."""
        users: dict[tuple[str, str, str], set[str]] = {}
        for entry in self.state.pods.values():
            for key in self._claim_keys(entry.pod):
                users.setdefault(key, set()).add(entry.uid)

        def event(namespace: str, kind: str, name: str, uid: str, type_: str, reason: str, message: str) -> None:
            (log.warning if type_ == "Warning" else log.info)("%s %s/%s: %s: %s", kind, namespace, name, reason,
                                                              message)
            self.state.record_event(namespace=namespace, kind=kind, name=name, uid=uid, type_=type_,
                                    reason=reason, message=message, now=now)

        return self.configs.sync_claims(users, now, event)

    def record_problems(self, resolution: sources.Resolution, now: datetime) -> None:
        rows, seen = [], set()
        by_source: dict[str, list[PodEntry]] = {}
        for e in self.state.pods.values():
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
                    self.state.event(owner, "Warning", "InvalidManifest" if kind == "Error" else "ManifestWarning",
                                     text, now)
                if not owners:   # a file without pods (only a Service, say): the event names the file
                    self.state.record_event(namespace="default", kind="Manifest", name=problem.file, uid="",
                                            type_="Warning",
                                            reason="InvalidManifest" if kind == "Error" else "ManifestWarning",
                                            message=text, now=now)
        self.state.replace_problems(rows, seen)

    # ------------------------------------------------------------------ runtime relist

    def relist(self, now: datetime, *, full: bool = True) -> None:
        """Make the observed records match the runtime (`relist`), then remove the volumes of pods
        gone while kubelite was down (at the first relist)."""
        relist.relist(self.state, self.runtime, now, full=full)
        self.configs.remove_orphan_volumes(set(self.state.pods))

    # ------------------------------------------------------------------ one pod

    def record_sync_results(self, now: datetime) -> None:
        """Write what the git sync thread reported: its status, and an event per outcome."""
        while not self.sync_results.empty():
            self.state.record_sync_result(self.sync_results.get(), now)

    def absorb_sync_results(self) -> None:
        """Between passes, on the reconcile thread: write the git sync's results (its status, and an
        event for a rejected or failed pass) without a pass: none of them changed the manifests."""
        if not self.sync_results.empty():
            with self.state.transaction(), self.state.lock:
                self.record_sync_results(self.clock())

    def record_probe_outcomes(self, now: datetime) -> bool:
        """Apply the prober's runs (thresholds in `core.probes`) and write their events; True if a
        result changed, so that the pods must be synced."""
        events, changed = self.probing.apply(self.probing.prober.drain(now), self.state.pods)
        self._write_probe_events(events, now)
        for uid in changed:
            self.state.touch(uid)
        return bool(changed)

    def absorb_probe_outcomes(self) -> bool:
        """Between passes, on the reconcile thread: apply probe runs that change no result (writing
        their events); True when a full pass is needed now (a result changed, or anything else
        woke the loop)."""
        if self.wake.take():
            return True
        with self.state.transaction(), self.state.lock:
            now = self.clock()
            events, changed = self.probing.apply(self.probing.prober.drain(now), self.state.pods)
            self._write_probe_events(events, now)
            for uid in changed:
                self.state.touch(uid)
        return bool(changed)

    def _write_probe_events(self, events: list[probing.ProbeEvent], now: datetime) -> None:
        for uid, name, type_, reason, message in events:
            entry = self.state.pods.get(uid)
            if entry is not None:
                self.state.event(entry, type_, reason, message[:1024], now, container=name)

    def record_hooks(self, now: datetime) -> None:
        """The hooks that ended: a returned postStart hook lets its container be Running; a failed one
        raises FailedPostStartHook and has the container killed (`core.plan`) with PostStartHookError
        as its waiting reason; a failed preStop hook raises FailedPreStopHook (the stop goes on)."""
        for outcome in self.hooks.finished():
            entry = self.state.pods.get(outcome.uid)
            known = self.state.containers.get(outcome.container_id)
            for type_, reason, message in outcome.events:
                if entry is not None:
                    self.state.event(entry, type_, reason, message, now, container=outcome.name)
            if outcome.kind == hook_rules.PRE_STOP and known is not None and known[1].kill_deadline is not None:
                self.state.observe(known[0], replace(known[1], kill_deadline=hook_rules.deadline_after_pre_stop(
                    known[1].kill_deadline, now)))
            if outcome.kind == hook_rules.POST_START:
                if not outcome.failure:
                    self.state.set_post_start(outcome.container_id, None)
                    continue
                self.state.set_post_start(outcome.container_id,
                                          PostStart.FAILED if known is not None and known[1].running else None)
                reason, message = hook_rules.FAILED_POST_START
                newest = self.state.observed(outcome.uid).instances(outcome.name)
                if entry is not None and newest and newest[0].id == outcome.container_id:
                    # the waiting reason of this attempt (not of a newer one started meanwhile)
                    error = StartError(statuses.POST_START_HOOK_ERROR, outcome.failure)
                    self.state.set_start_error(entry.uid, outcome.name, error)
            elif outcome.failure:
                reason, message = hook_rules.FAILED_PRE_STOP
            else:
                continue
            if entry is not None:
                log.warning("pod %s: %s", entry.key, outcome.failure,
                            extra=log_fields(entry.key, outcome.name, reason))
                self.state.event(entry, "Warning", reason, message, now, container=outcome.name)

    # ------------------------------------------------------------------ housekeeping

    def collect_garbage(self, now: datetime) -> None:
        """Keep the two newest attempts per container; drop stale backoff entries and old events."""
        by_name: dict[tuple[str, str], list[ObservedContainer]] = {}
        busy = self.workers.busy() if self.workers is not None else frozenset()
        for uid, c in self.state.containers.values():
            if uid not in busy:   # a pod on a worker is its worker's
                by_name.setdefault((uid, c.name), []).append(c)
        for attempts in by_name.values():
            if len(attempts) <= KEEP_ATTEMPTS:
                continue
            attempts.sort(key=lambda c: (c.attempt, c.created_at), reverse=True)
            for old in attempts[KEEP_ATTEMPTS:]:
                if old.running:
                    continue
                try:   # with the state lock let go: the pods on workers are left out above
                    self.executor.runtime.remove_container(old.id)
                except RuntimeError_:
                    pass
                self.state.forget_container(old.id, delete=True)
        stale = now - timedelta(seconds=2 * self.config.backoff.max_s)
        self.state.collect_backoff(stale)   # as client-go's Backoff.GC: unused for twice the maximum delay
        self.state.prune_events(now - EVENT_TTL)
        self.collect_images(now)

    def collect_images(self, now: datetime) -> None:
        """Image GC, every `image_gc_period_s`: never an image a pod names or a pull is fetching."""
        if self.next_image_gc is not None and now < self.next_image_gc:
            return
        self.next_image_gc = now + timedelta(seconds=self.config.image_gc_period_s)
        in_use = {c.image or "" for e in self.state.pods.values() for c in e.pod.spec.all_containers()}
        in_use |= {v.image.reference or "" for e in self.state.pods.values() for v in e.pod.spec.volumes if v.image}
        in_use |= {c.image for _, c in self.state.containers.values() if c.image} | self.pulls.busy()
        try:
            removed = self.executor.runtime.remove_unused_images(in_use, high_percent=self.config.image_gc_high_percent,
                                                        low_percent=self.config.image_gc_low_percent)
        except RuntimeError_ as exc:
            log.warning("image garbage collection: %s", exc)
            return
        for image_id in removed:
            log.info("image garbage collection: removed unused image %s", image_id)

def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


