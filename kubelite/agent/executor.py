"""The executor: one pod's sync — `plan()` decides, `execute()` carries the plan out as it is.

Owns: `sync_pod` (the node state → `core.plan` → execute → status → node state) and the runtime
operations on one pod's objects: its sandbox, its containers' stops (preStop, SIGTERM, SIGKILL),
its volumes, and its removal. Starting a container is `agent.starting`.

`execute` carries out `PodActions` in numbered steps and never changes them:
  1. stop containers (preStop, then SIGTERM with a deadline, or SIGKILL once it has passed);
  2. record a pod-level failure (activeDeadlineSeconds, a pod the node refused);
  3. stop the sandbox when the pod is to be killed and nothing runs any more;
  4. set up the volumes and create a new sandbox (a failure makes the pod wait: `PodWait`);
  5. keep the pod's pull wait while a container waits for its pull (`pull_held`), create and
     start containers (image, Created, Started, the postStart hook on a helper thread; errors
     become waiting reasons and the pod's `PodWait`), and record the
     CrashLoopBackOff step of each restart that is under way (not of one waiting for its pull);
  6. raise BackOff events for new CrashLoopBackOff holds.
Then `sync_pod` computes the status, makes a terminal phase sticky, writes the v1 Pod, and
removes a terminating pod that has fully stopped.

Shaped as the kubelet's pod workers: a pod's sync reads its own `PodEntry`, acts on its own
sandboxes and containers in the runtime, and hands every change to the node state's methods
(`agent.nodestate`), so that each pod could run on a worker of its own. The one other shared
memory it writes is the ReadWriteOncePod claim holders of `configs` (in `set_up_volumes` and
`tear_down`), which parallel workers must serialise.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import AbstractSet

from kubelite import layout
from kubelite.agent import dns, metrics
from kubelite.agent.configs import VolumeError
from kubelite.agent.hooks import Netns, NoNetwork
from kubelite.agent.nodestate import PodEntry, log_fields
from kubelite.agent.probing import container_named
from kubelite.agent.starting import SYNC_ERROR_RETRY_S, ContainerStarter
from kubelite.api import names
from kubelite.api.models import Pod
from kubelite.core import hooks as hook_rules
from kubelite.core import security
from kubelite.core import status as statuses
from kubelite.core.plan import plan
from kubelite.core.types import (
    ObservedPod, ObservedSandbox, PodActions, PodWait, StartError, StopReason, WaitReason,
)
from kubelite.errors import NotFoundError, RuntimeError_
from kubelite.runtime.protocol import PortMapping, SandboxConfig

log = logging.getLogger("kubelite.agent")

#: The waiting reason of a pod's containers while its sandbox cannot be made (the kubelet's sync error name).
SANDBOX_ERROR = "CreatePodSandboxError"


class PodExecutor(ContainerStarter):
    """One pod's sync and the runtime operations on its objects."""

    def sync_pod(self, uid: str, now: datetime, *, replacing: AbstractSet[str] = frozenset()) -> datetime | None:
        """Plan and carry out what one pod needs; returns when it must be looked at again.
        `replacing`: the keys of pods being stopped, whose replacements wait."""
        entry = self.state.pods[uid]
        if entry.deleted_at is None and entry.key in replacing:
            return None  # a replacement starts once the pod it replaces has stopped
        if entry.record.start_time is None and entry.deleted_at is None:
            self.state.set_record(entry, replace(entry.record, start_time=now))
        before = self.state.observed(uid)
        self.forget_post_start(before)
        self.probing.prepare(uid, entry.pod, self.probed(before))
        rejection = security.admission(entry.pod, sysctls=self.sysctl_policy, apparmor_enabled=self.apparmor_enabled)
        actions = plan(entry.desired, before, record=entry.record, backoff=self.state.backoff, now=now,
                       policy=self.config.backoff, probes=self.probing.results, post_start=self.state.post_start,
                       rejection=rejection, waiting=entry.waiting, pulling=entry.containers_pulling())
        self.execute(entry, actions, now)
        self.refresh_volumes(entry, now)
        observed = self.state.observed(uid)
        if entry.deleted_at is not None and not any(c.running for c in observed.containers):
            self.remove_pod(entry, observed)
            return None
        self.update_status(entry, observed, now)
        if not actions.idle:
            return now  # look again at once: the actions changed what plan() will see
        return actions.next_wakeup

    def update_status(self, entry: PodEntry, observed: ObservedPod, now: datetime) -> None:
        """The pod's status from what it runs now; written when it changed (a terminal phase sticks)."""
        uid = entry.uid
        self.probing.prepare(uid, entry.pod, self.probed(observed))  # containers started just now: initial results
        status = statuses.pod_status(
            entry.desired, observed, record=entry.record, now=now, holds=list(entry.holds),
            start_errors=self.state.start_errors_of(uid), probes=self.probing.results,
            previous_conditions=entry.status.get("conditions", ()), runtime=self.runtime.name,
            host_ip=self.config.node_ip, post_start=self.state.post_start)
        self.probing.sync_targets(uid, entry.pod, self.probed(observed), self.runtime, status.get("podIP") or None)
        if status["phase"] in ("Succeeded", "Failed") and entry.record.terminal_phase is None:
            self.state.set_record(entry, replace(entry.record, terminal_phase=status["phase"]))
            log.info("pod %s: %s", entry.key, status["phase"], extra=log_fields(entry.key, reason=status["phase"]))
        if status != entry.status:
            metrics.pod_status_changed(entry.key, entry.created_at, entry.status, status, now)
            self.state.set_status(entry, status)

    def probed(self, observed: ObservedPod) -> ObservedPod:
        """The containers whose probes run: not one whose postStart hook has not returned (the kubelet
        probes a container once its status says Running)."""
        post_start = self.state.post_start
        if not any(c.id in post_start for c in observed.containers):
            return observed
        return replace(observed, containers=tuple(c for c in observed.containers if c.id not in post_start))

    def forget_post_start(self, observed: ObservedPod) -> None:
        for c in observed.containers:
            if not c.running:
                self.state.set_post_start(c.id, None)

    def execute(self, entry: PodEntry, actions: PodActions, now: datetime) -> None:
        """Carry out `actions` in the steps of the module's docstring."""
        for kill in actions.to_kill:                                                     # 1
            self.kill_container(entry, kill.container_id, kill.signal, kill.grace_s, kill.stop_reason, kill.message,
                                now)
        if actions.fail_pod is not None:                                                 # 2
            self.fail_pod(entry, actions, now)
        if actions.stop_sandbox:                                                         # 3
            for sb in list(self.state.pod_sandboxes.get(entry.uid, {}).values()):
                if sb.ready:
                    self.stop_sandbox(entry.uid, sb)
        if actions.create_sandbox or actions.to_start or (actions.pull_held and actions.waiting is None):
            if not self.set_up_volumes(entry, now):                                     # 4
                return
            if actions.create_sandbox and not self.create_sandbox(entry, actions.sandbox_attempt, now):
                return
            self.start_containers(entry, actions, now)                                   # 5
        self.raise_backoff_events(entry, actions, now)                                   # 6

    def fail_pod(self, entry: PodEntry, actions: PodActions, now: datetime) -> None:
        assert actions.fail_pod is not None
        reason, message = actions.fail_pod
        self.state.set_record(entry, replace(entry.record, failed_reason=reason, terminal_phase=actions.terminal_phase,
                                             failed_message=security.REJECTED_PREFIX + message if actions.fail_warning
                                             else message))
        self.state.event(entry, "Warning" if actions.fail_warning else "Normal", reason, message, now)
        self.state.persist(entry)

    def start_containers(self, entry: PodEntry, actions: PodActions, now: datetime) -> None:
        """Step 5: the pod's pull wait again while a container waits for its pull (`pull_held`), the
        starts in plan order while the sandbox is ready (a failed one sets its own wait), then their
        backoff steps."""
        sandbox = self.state.observed(entry.uid).sandbox
        # read now, not from the plan: a pull may have ended while the sandbox was made (lock let go)
        held = set(actions.pull_held) & entry.containers_pulling()
        if held and entry.waiting is None and sandbox is not None and sandbox.ready:
            self.wait_for_pull(entry, now)
        attempted = []
        for start in actions.to_start:
            if sandbox is None or not sandbox.ready:
                break
            self.start_container(entry, sandbox.id, start.name, start.attempt, now, created_id=start.created_id)
            if start.name not in entry.containers_pulling():   # read at once: a pull may end during a later start
                attempted.append(start)
        for start in attempted:   # the restarts under way (as the kubelet's doBackOff, before the image step)
            if start.backoff_update is not None:
                self.state.put_backoff(start.backoff_update)

    def raise_backoff_events(self, entry: PodEntry, actions: PodActions, now: datetime) -> None:
        """Step 6: a BackOff event per CrashLoopBackOff hold that is new (or held until a new time)."""
        held_before = {h.name: h.until for h in entry.holds}
        for hold in actions.backoff_holds:
            if held_before.get(hold.name) != hold.until:
                meta = entry.pod.metadata
                self.state.event(entry, "Warning", "BackOff", f"Back-off restarting failed container {hold.name} in "
                                 f"pod {meta.name}_{meta.namespace}({entry.uid})", now, container=hold.name)
        self.state.set_holds(entry, actions.backoff_holds)

    # ------------------------------------------------------------------ the sandbox

    def create_sandbox(self, entry: PodEntry, attempt: int, now: datetime) -> bool:
        pod = entry.pod
        if attempt > 0:
            self.state.event(entry, "Normal", "SandboxChanged",
                             "Pod sandbox changed, it will be killed and re-created.", now)
        resolver, hosts, dns_events = dns.sandbox_dns(pod, entry.uid, resolv_conf=self.config.resolv_conf)
        for type_, reason, message in dns_events:
            self.state.event(entry, type_, reason, message, now)
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
            self.state.event(entry, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {exc}", now)
            self.state.set_wait(entry, PodWait(WaitReason.SYNC_ERROR, now + timedelta(seconds=SYNC_ERROR_RETRY_S)))
            self._sandbox_error(entry, StartError(SANDBOX_ERROR, f"Failed to create pod sandbox: {exc}"))
            return False
        self._sandbox_error(entry, None)
        # its IP now, not at the next relist: the first containers' env (status.podIP) and probes need it
        sb = ObservedSandbox(sandbox_id, attempt, entry.desired.sandbox_hash, True, now,
                             ip=self.runtime.sandbox_ip(sandbox_id))
        self.state.save_sandbox(entry.uid, sb)
        return True

    def _sandbox_error(self, entry: PodEntry, error: StartError | None) -> None:
        """Show why the sandbox could not be made (a host port in use, a CNI failure) as every
        container's waiting reason, until a sandbox is made; the event alone is easy to miss."""
        for c in entry.pod.spec.all_containers():
            if error is not None:
                self.state.set_start_error(entry.uid, c.name, error)
            else:
                known = self.state.start_errors.get((entry.uid, c.name))
                if known is not None and known.reason == SANDBOX_ERROR:
                    self.state.set_start_error(entry.uid, c.name, None)

    def stop_sandbox(self, uid: str, sb: ObservedSandbox) -> None:
        try:
            self.runtime.stop_sandbox(sb.id)
        except NotFoundError:
            pass
        self.state.save_sandbox(uid, replace(sb, ready=False))

    def log_directory(self, entry: PodEntry) -> Path:
        meta = entry.pod.metadata
        return layout.pod_log_dir(self.config.root, meta.namespace, meta.name or "", entry.uid)

    # ------------------------------------------------------------------ volumes

    def set_up_volumes(self, entry: PodEntry, now: datetime) -> bool:
        """The pod's volumes, ready before its containers start. On failure: FailedMount, and the
        containers not created yet wait in ContainerCreating with the reason as their message."""
        try:
            self.configs.set_up_volumes(entry.uid, entry.pod, entry.status)
        except (VolumeError, OSError) as exc:
            message = str(exc)
            self.state.event(entry, "Warning", "FailedMount", message, now)
            created = {c.name for c in self.state.by_pod.get(entry.uid, {}).values()}
            for c in entry.pod.spec.all_containers():
                if c.name not in created:
                    self.state.set_start_error(entry.uid, c.name, StartError("ContainerCreating", message))
            self.state.set_wait(entry, PodWait(WaitReason.CONFIG, now + timedelta(seconds=SYNC_ERROR_RETRY_S)))
            return False
        for name, error in self.state.start_errors_of(entry.uid).items():
            if error.reason == "ContainerCreating":
                self.state.set_start_error(entry.uid, name, None)
        return True

    def refresh_volumes(self, entry: PodEntry, now: datetime) -> None:
        """Keep a running pod's configMap, secret and downwardAPI files current (in place, no restart)."""
        if entry.deleted_at is not None or not any(c.running for c in self.state.by_pod.get(entry.uid, {}).values()):
            return
        for message in self.configs.refresh_projections(entry.uid, entry.pod, entry.status):
            self.state.event(entry, "Warning", "FailedMount", message, now)

    # ------------------------------------------------------------------ stopping and removing

    def kill_container(self, entry: PodEntry, container_id: str, signal: str, grace_s: int, stop_reason: StopReason,
                       message: str, now: datetime) -> None:
        uid, c = self.state.containers[container_id]
        deadline = c.kill_deadline
        if signal == "TERM":
            self.state.event(entry, "Normal", "Killing", message, now, container=c.name)
            deadline = now + timedelta(seconds=grace_s)
            spec = container_named(entry.pod, c.name)   # a container gone from the spec has no hook
            action = hook_rules.hook_action(spec, hook_rules.PRE_STOP, container_id=c.id,
                                            pod_ip=self._pod_ip(entry, c.sandbox_id), timeout_s=grace_s,
                                            now=now) if spec is not None else None
            if action is not None:
                # The hook runs beside the loop (it may take the whole grace period); SIGTERM follows
                # it, and SIGKILL is due 2 s after it at the earliest (`Agent.record_hooks`).
                deadline = hook_rules.pre_stop_deadline(now, grace_s)
                self.hooks.pre_stop(uid=uid, container_id=c.id, name=c.name, pod=self._pod_ref(entry),
                                    action=action, netns=self._netns(c.sandbox_id), grace_s=float(grace_s),
                                    then=lambda: self._signal(container_id, "TERM"))
                self.state.observe(uid, replace(c, stop_reason=stop_reason, kill_deadline=deadline))
                return
        self._signal(container_id, signal)
        self.state.observe(uid, replace(c, stop_reason=stop_reason, kill_deadline=deadline))

    def _signal(self, container_id: str, signal: str) -> None:
        try:
            self.runtime.signal_container(container_id, signal)
        except NotFoundError:
            pass

    def remove_pod(self, entry: PodEntry, observed: ObservedPod) -> None:
        for c in observed.containers:
            try:
                self.runtime.remove_container(c.id)
            except RuntimeError_:
                pass
            self.state.forget_container(c.id)
        try:
            self.configs.tear_down(entry.uid)
        except (OSError, RuntimeError_) as exc:
            log.warning("pod %s: removing its volumes: %s", entry.key, exc)
        for sb in observed.sandboxes:
            try:
                self.runtime.remove_sandbox(sb.id)
            except RuntimeError_:
                pass
            self.state.forget_sandbox(sb.id)
        self.probing.forget(entry.uid)
        with self.state.lock.released():   # a pod worker lets the others go on meanwhile
            shutil.rmtree(self.log_directory(entry), ignore_errors=True)  # as the kubelet drops a deleted pod's logs
        self.state.remove_pod(entry.uid)
        log.info("pod %s: removed", entry.key, extra=log_fields(entry.key))

    # ------------------------------------------------------------------ what hooks need

    def _pod_ip(self, entry: PodEntry, sandbox_id: str) -> str | None:
        """The pod's IP for an httpGet hook without a host: the node's with hostNetwork."""
        if entry.pod.spec.host_network:
            return self.config.node_ip
        sandbox = self.state.sandboxes.get(sandbox_id)
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


def _port_mappings(pod: Pod) -> tuple[PortMapping, ...]:
    """The pod's hostPorts (app containers and sidecars), once each, as the kubelet's MakePortMappings."""
    found: dict[tuple[int, str, str], PortMapping] = {}
    for c in [*pod.spec.sidecars, *pod.spec.containers]:
        for p in c.ports:
            if p.host_port:
                mapping = PortMapping(p.host_port, p.container_port, (p.protocol or "TCP").upper(), p.host_ip or "")
                found.setdefault((mapping.host_port, mapping.protocol, mapping.host_ip), mapping)
    return tuple(found.values())
