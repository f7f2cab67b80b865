"""Starting one container of a pod: its images, its configuration, create, start, postStart.

Owns: the image step (the kubelet's `EnsureImageExists`: imagePullPolicy, a pull on the pull
workers, the image pull backoff), the outcome of pulls that ended, the container's resolved
configuration (env, mounts, security profiles, log path), create and start, the Created and
Started events, the postStart hook's dispatch, and what a failed start leaves behind: the
container's waiting reason and the pod's `PodWait`, which the next `plan()` obeys.

Part of the executor (`agent.executor`): a start touches only its own pod's entry, its own
containers and the node state.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from kubelite import layout
from kubelite.agent.config import AgentConfig
from kubelite.agent.configs import Configs
from kubelite.agent.hooks import POST_START_BOUND_S, HookRunner
from kubelite.agent.nodestate import NodeState, PodEntry
from kubelite.agent.probing import ProbeManager, container_named
from kubelite.agent.pulls import ImagePulls
from kubelite.api.models import Container, ImageVolumeSource, Pod
from kubelite.core import backoff as backoffs
from kubelite.core import hooks as hook_rules
from kubelite.core import podconfig
from kubelite.core import security
from kubelite.core.types import (
    BackoffPolicy, ContainerState, ObservedContainer, PodWait, PostStart, StartError, WaitReason,
)
from kubelite.errors import RuntimeError_
from kubelite.runtime.protocol import ContainerConfig, Runtime

log = logging.getLogger("kubelite.agent")

#: The kubelet retries a pod whose sync failed after this long (pod worker `backOffPeriod`).
SYNC_ERROR_RETRY_S = 10.0
#: The kubelet's image pull backoff: `imageBackOffPeriod` 10 s to `MaxImageBackOff` 300 s.
IMAGE_BACKOFF = BackoffPolicy(initial_s=10.0, max_s=300.0)
#: While a pull runs, its pod waits for the pull's end rather than a time (a bound, not a timeout).
PULL_WAIT = timedelta(hours=1)
#: A failed start's waiting reason → what its pod's starts wait for.
WAIT_REASONS = {"CreateContainerConfigError": WaitReason.CONFIG, "ImagePullBackOff": WaitReason.IMAGE_PULL_BACKOFF,
                "ErrImagePull": WaitReason.ERR_IMAGE_PULL}


class ContainerStarter:
    """The container-start steps of the executor (`agent.executor.PodExecutor` is one), with what
    every step of a pod's sync works with."""

    def __init__(self, *, state: NodeState, runtime: Runtime, config: AgentConfig, configs: Configs,
                 probing: ProbeManager, hooks: HookRunner, pulls: ImagePulls, sysctl_policy: security.SysctlPolicy,
                 apparmor_enabled: bool) -> None:
        self.state, self.runtime, self.config, self.configs = state, runtime, config, configs
        self.probing, self.hooks, self.pulls = probing, hooks, pulls
        self.sysctl_policy, self.apparmor_enabled = sysctl_policy, apparmor_enabled

    def start_container(self, entry: PodEntry, sandbox_id: str, name: str, attempt: int, now: datetime, *,
                        created_id: str | None = None) -> None:
        container = container_named(entry.pod, name)
        assert container is not None, f"plan() started {name}, which is not in the spec"
        if created_id is not None:   # created before kubelite stopped, never started: only `runc start` is left
            known = self.state.containers.get(created_id)
            if known is not None:   # else removed meanwhile: the next plan decides again
                self.run_created(entry, container, known[1], sandbox_id, now)
            return
        image = container.image or ""
        # the image, then those of its image volumes (as the kubelet, pulled by their own pullPolicy)
        images = [(image, container.image_pull_policy or "IfNotPresent"),
                  *[(v.reference or "", v.pull_policy or "IfNotPresent") for v in _image_volumes(entry.pod, container)]]
        for reference, policy in images:
            if not self.ensure_image(entry, name, reference, policy, now):
                return
        self.state.use_fresh_pulls(entry, name, [reference for reference, _ in images])
        config = self.container_config(entry, container, attempt)
        configured = self.configure_container(entry, container, config, now)
        if configured is None:
            return
        config = configured
        try:
            container_id, start_error = self.create_and_start(entry, sandbox_id, config)
        except RuntimeError_ as exc:
            self.start_failed(entry, name, "CreateContainerError", str(exc), now)
            return
        self.state.event(entry, "Normal", "Created", _created(name), now, container=name, logged=True)
        observed = ObservedContainer(id=container_id, name=name, attempt=attempt, spec_hash=config.spec_hash,
                                     state=ContainerState.CREATED, created_at=now, sandbox_id=sandbox_id, image=image)
        self.record_start(entry, container, observed, sandbox_id, now, start_error)

    def create_and_start(self, entry: PodEntry, sandbox_id: str,
                         config: ContainerConfig) -> tuple[str, RuntimeError_ | None]:
        """`runc create`, then `runc start` at once, the node state's lock let go for both: the
        container's Created and Started are recorded after its start, so no pass or other pod's
        sync that takes the lock in between holds the start up (a crashed container's restart is
        these two calls); Created's log line is written when the container is created. The
        runtime records the container before it starts it, so a kubelite killed in between finds
        it created and starts it as it is. Raises what creating raised; returns the container's
        ID and what starting raised."""
        with self.state.lock.released():
            container_id = self.runtime.create_container(sandbox_id, config)
            self.state.log_event(entry, "Normal", "Created", _created(config.container.name))
            try:
                self.runtime.start_container(container_id)
            except RuntimeError_ as exc:
                return container_id, exc
        return container_id, None

    def run_created(self, entry: PodEntry, container: Container, observed: ObservedContainer, sandbox_id: str,
                    now: datetime) -> None:
        """Start a container created before kubelite stopped: Started, or a StartError; then its postStart hook."""
        error: RuntimeError_ | None = None
        try:
            self.runtime.start_container(observed.id)
        except RuntimeError_ as exc:
            error = exc
        self.record_start(entry, container, observed, sandbox_id, now, error)

    def record_start(self, entry: PodEntry, container: Container, observed: ObservedContainer, sandbox_id: str,
                     now: datetime, error: RuntimeError_ | None) -> None:
        """What a start left: the container running (Started, then its postStart hook), or exited
        with StartError (RunContainerError as its waiting reason, and the pod's wait)."""
        name = container.name
        if error is not None:
            self.state.observe(entry.uid, replace(observed, state=ContainerState.EXITED, finished_at=now,
                                                  exit_code=128, reason="StartError", message=str(error)))
            self.start_failed(entry, name, "RunContainerError", str(error), now)
            return
        self.state.observe(entry.uid, replace(observed, state=ContainerState.RUNNING, started_at=now))
        self.state.set_start_error(entry.uid, name, None)
        self.state.event(entry, "Normal", "Started", f"Started container {name}", now, container=name)
        self.run_post_start(entry, container, observed.id, sandbox_id, now)

    def container_config(self, entry: PodEntry, container: Container, attempt: int) -> ContainerConfig:
        """What the runtime needs to create the container, before its env and mounts are resolved."""
        pod, name = entry.pod, container.name
        return ContainerConfig(uid=entry.uid, pod_name=pod.metadata.name or "", namespace=pod.metadata.namespace,
                               container=container, attempt=attempt, spec_hash=entry.desired.container_hashes[name],
                               log_path=str(layout.container_log_path(self.config.root, pod.metadata.namespace,
                                                                  pod.metadata.name or "", entry.uid, name, attempt)),
                               annotations=dict(pod.metadata.annotations), pod_security=pod.spec.security_context,
                               init=any(c.name == name and not c.is_sidecar for c in pod.spec.init_containers),
                               seccomp=security.seccomp_profile(pod, container,
                                                                seccomp_default=self.config.seccomp_default),
                               apparmor=security.apparmor_profile(pod, container,
                                                                  apparmor_enabled=self.apparmor_enabled),
                               pod_resources=pod.spec.resources)

    def run_post_start(self, entry: PodEntry, container: Container, container_id: str, sandbox_id: str,
                       now: datetime) -> None:
        """Dispatch the container's postStart hook, if it has one: Running once it returns; the
        containers after it wait (`core.plan`)."""
        action = hook_rules.hook_action(container, hook_rules.POST_START, container_id=container_id,
                                        pod_ip=self._pod_ip(entry, sandbox_id), timeout_s=POST_START_BOUND_S,
                                        now=now)
        if action is not None:
            self.state.set_post_start(container_id, PostStart.RUNNING)
            self.hooks.post_start(uid=entry.uid, container_id=container_id, name=container.name,
                                  pod=self._pod_ref(entry), action=action, netns=self._netns(sandbox_id))

    def ensure_image(self, entry: PodEntry, name: str, image: str, policy: str, now: datetime) -> bool:
        """True when the container's image is there to create it from now, by its imagePullPolicy (the
        kubelet's `EnsureImageExists`); otherwise a pull has started, or the image is backing off."""
        fresh = (name, image) in entry.fresh_pulls   # used up by the start (`start_container`)
        present = self.runtime.image_present(image)
        if present and (fresh or policy in ("IfNotPresent", "Never")):
            if not fresh:
                self.state.event(entry, "Normal", "Pulled", f'Container image "{image}" already present on machine',
                                 now, container=name)
            return True
        if policy == "Never":
            self.start_failed(entry, name, "ErrImageNeverPull",
                              f'Container image "{image}" is not present with pull policy of Never', now,
                              event=f'Container image "{image}" is not present with pull policy of Never')
            return False
        previous = self.state.image_backoff.get(f"{entry.uid}_{image}")
        until = backoffs.held_until(previous, finished_at=previous.last_update, now=now, policy=IMAGE_BACKOFF) \
            if previous is not None else None
        if until is not None:
            self.state.event(entry, "Normal", "BackOff", f'Back-off pulling image "{image}"', now, container=name)
            self.start_failed(entry, name, "ImagePullBackOff", f'Back-off pulling image "{image}"', now,
                              retry_at=until, event="Error: ImagePullBackOff")
            return False
        if self.state.add_pull_waiter(entry, image, name):
            self.state.event(entry, "Normal", "Pulling", f'Pulling image "{image}"', now, container=name)
        self.pulls.start(image)
        self.wait_for_pull(entry, now)
        return False

    def wait_for_pull(self, entry: PodEntry, now: datetime) -> None:
        """The pod's starts wait for the pull's end, which syncs it again (`record_pulls`)."""
        self.state.set_wait(entry, PodWait(WaitReason.PULLING, now + PULL_WAIT))

    def record_pulls(self, now: datetime) -> None:
        """The pulls that ended: Pulled (with the duration) or Failed and ErrImagePull with the image backoff."""
        for outcome in self.pulls.finished():
            for entry, name in self.state.end_pull(outcome.image):
                self.pull_ended(entry, name, outcome, now)

    def pull_ended(self, entry: PodEntry, name: str, outcome: Any, now: datetime) -> None:
        image, key = outcome.image, f"{entry.uid}_{outcome.image}"
        if outcome.pulled is not None:
            self.state.add_fresh_pull(entry, name, image)
            self.state.set_image_backoff(key, None)
            self.state.event(entry, "Normal", "Pulled", f'Successfully pulled image "{image}" in '
                             f"{_seconds(outcome.seconds)} ({_seconds(outcome.total_s)} including waiting). "
                             f"Image size: {outcome.pulled.size} bytes.", now, container=name)
            return
        message = f'Failed to pull image "{image}": {outcome.error}'
        self.state.event(entry, "Warning", "Failed", message, now, container=name)
        previous = self.state.image_backoff.get(key)
        self.state.set_image_backoff(key, backoffs.next_entry(previous, key=key, finished_at=now, now=now,
                                                              policy=IMAGE_BACKOFF))
        # look again in a second: the status then turns to ImagePullBackOff until the backoff is over
        self.start_failed(entry, name, "ErrImagePull", message, now, retry_at=now + timedelta(seconds=1),
                          event="Error: ErrImagePull")

    def start_failed(self, entry: PodEntry, name: str, reason: str, message: str, now: datetime, *,
                     retry_at: datetime | None = None, event: str | None = None) -> None:
        """The container's waiting reason and event; the pod's starts wait (`core.plan`) until `retry_at`,
        by default the pod worker's retry pause."""
        self.state.set_start_error(entry.uid, name, StartError(reason, message))
        self.state.event(entry, "Warning", "Failed", event or f"Error: {message}", now, container=name)
        self.state.set_wait(entry, PodWait(WAIT_REASONS.get(reason, WaitReason.SYNC_ERROR),
                                           retry_at or now + timedelta(seconds=SYNC_ERROR_RETRY_S)))

    def configure_container(self, entry: PodEntry, container: Container, config: ContainerConfig,
                            now: datetime) -> ContainerConfig | None:
        """`config` with the container's resolved env and volume mounts; None (and the container waits
        with CreateContainerConfigError) when a ConfigMap, Secret, key or subPath is not usable."""
        sandbox = self.state.observed(entry.uid).sandbox
        try:   # the sandbox's IP (where the runtime reports one) and the node's IP, for fieldRefs
            resolved, mounts = self.configs.container_settings(
                entry.uid, entry.pod, container, entry.status, pod_ip=sandbox.ip if sandbox is not None else None,
                host_ip=self.config.node_ip)
        except podconfig.ConfigError as exc:
            self.start_failed(entry, container.name, "CreateContainerConfigError", str(exc), now)
            return None
        for reason, message in resolved.warnings:
            self.state.event(entry, "Warning", reason, message, now, container=container.name)
        return replace(config, env=resolved.env, mounts=mounts)


def _created(name: str) -> str:
    """The Created event's message (the kubelet's)."""
    return f"Created container: {name}"


def _image_volumes(pod: Pod, container: Container) -> list[ImageVolumeSource]:
    """The image volumes `container` mounts, once each, in the order of its volumeMounts."""
    sources = {v.name: v.image for v in pod.spec.volumes if v.image is not None}
    found: dict[str, ImageVolumeSource] = {}
    for mount in container.volume_mounts:
        if mount.name in sources and mount.name not in found:
            found[mount.name] = sources[mount.name]
    return list(found.values())


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
