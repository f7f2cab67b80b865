"""The agent's side of probing: probe states, what each pod's prober runs, and the loop's wake-up.

Owns (on the reconcile thread only): the state of every probe of every running container (the
kubelet's results manager; in memory, as the kubelet's: after a restart of kubelite, probes start
again from their initial results), applying the prober's runs to them through `core.probes`
(thresholds, holds) and the events those runs raise, and telling the prober which probes each pod
runs now (re-sent only when that changes). Results feed `core.plan` (liveness and startup
failures stop the container) and `core.status` (started, ready, the Ready conditions).

`LoopWake` lets the daemon tell a wake-up that only the prober caused from any other: probe runs
that change no result are absorbed between passes (`Agent.absorb_probe_outcomes`), so hundreds of
healthy probes never cost a full reconcile pass each.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any, Mapping

from kubelite.api import expansion
from kubelite.api.models import Container, Pod
from kubelite.core import probes as rules
from kubelite.core.types import ObservedPod, ProbeOutcome, ProbeResult, ProbeTarget
from kubelite.errors import RuntimeError_
from kubelite.prober import Prober
from kubelite.runtime.protocol import Runtime

#: (uid, container name, type, reason, message) of an event a probe run raised.
ProbeEvent = tuple[str, str, str, str, str]


class LoopWake(threading.Event):
    """The reconcile loop's wake-up. `set()` asks for a full pass; `set_for_probes()` only says that
    probe runs wait, `set_between_passes()` that git sync results wait (both are handled without a
    pass); `take()` clears it and tells whether a full pass was asked for meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self._guard = threading.Lock()
        self._full = False

    def set(self) -> None:
        with self._guard:
            self._full = True
            super().set()

    def set_for_probes(self) -> None:
        super().set()

    def set_between_passes(self) -> None:
        super().set()

    def clear(self) -> None:
        with self._guard:
            self._full = False
            super().clear()

    def take(self) -> bool:
        with self._guard:
            full, self._full = self._full, False
            super().clear()
        return full


class ProbeManager:
    def __init__(self, prober: Prober) -> None:
        self.prober = prober
        self.states: dict[tuple[str, str], rules.ProbeState] = {}
        self.results: dict[tuple[str, str], ProbeResult] = {}
        self.owner: dict[str, tuple[str, str]] = {}     # container id → (uid, container name)
        self.sent: dict[str, tuple[str | None, tuple[ProbeTarget, ...]]] = {}

    # ------------------------------------------------------------------ states

    def prepare(self, uid: str, pod: Pod, observed: ObservedPod) -> None:
        """Initial states for the probes of running containers; forget those of stopped ones."""
        specs = {c.name: c for c in pod.spec.all_containers()}
        running = set()
        for c in observed.containers:
            container = specs.get(c.name)
            if not c.running or container is None:
                continue
            running.add(c.id)
            for kind in rules.KINDS:
                if (c.id, kind) not in self.states and rules.probe_spec(container, kind) is not None:
                    self._put(c.id, kind, rules.initial_state(kind))
                    self.owner[c.id] = (uid, c.name)
        for cid in [cid for cid, (u, _) in self.owner.items() if u == uid and cid not in running]:
            self._drop(cid)

    def _put(self, cid: str, kind: str, state: rules.ProbeState) -> None:
        self.states[(cid, kind)] = state
        self.results[(cid, kind)] = state.result

    def _states_of(self, cid: str) -> dict[str, rules.ProbeState]:
        return {kind: s for kind in rules.KINDS if (s := self.states.get((cid, kind))) is not None}

    def _drop(self, cid: str) -> None:
        self.owner.pop(cid, None)
        for kind in rules.KINDS:
            self.states.pop((cid, kind), None)
            self.results.pop((cid, kind), None)

    def apply(self, outcomes: list[ProbeOutcome], pods: Mapping[str, Any]) -> tuple[list[ProbeEvent], set[str]]:
        """Apply runs to the states: the events they raise, and the pods (uids) of which a result
        changed. `pods` maps a uid to anything with a `.pod` (the agent's entries)."""
        events: list[ProbeEvent] = []
        changed: set[str] = set()
        for outcome in outcomes:
            key = (outcome.container_id, outcome.kind)
            state = self.states.get(key)
            owner = self.owner.get(outcome.container_id)
            entry = pods.get(owner[0]) if owner else None
            container = container_named(entry.pod, owner[1]) if entry is not None and owner else None
            probe = rules.probe_spec(container, outcome.kind) if container is not None else None
            if state is None or state.on_hold or container is None or probe is None or owner is None:
                continue  # a run that finished after its container stopped or its probe ended
            if not rules.counts(container, outcome.kind, self._states_of(outcome.container_id)):
                continue  # queued behind a result that closed the gate on it (startup succeeded)
            new = rules.observe(state, outcome.kind, probe, outcome.result)
            self._put(*key, new)
            if new.result is not state.result:
                changed.add(owner[0])
            event = rules.event(outcome)
            if event is not None:
                events.append((owner[0], owner[1], *event))
        return events, changed

    # ------------------------------------------------------------------ the prober's work

    def sync_targets(self, uid: str, pod: Pod, observed: ObservedPod, runtime: Runtime, pod_ip: str | None) -> None:
        """Tell the prober what this pod probes now, if that changed (after `prepare`)."""
        specs = {c.name: c for c in pod.spec.all_containers()}
        targets: list[ProbeTarget] = []
        for c in observed.containers:
            container = specs.get(c.name)
            if container is None or not c.running:
                continue
            for t in rules.targets(container, c, self._states_of(c.id), pod_ip=pod_ip):
                if t.action == "exec":  # $(VAR) from the container's own env, as the kubelet expands them
                    env = expansion.expanded_env(container)
                    t = replace(t, command=tuple(expansion.expand(arg, env) for arg in t.command))
                targets.append(t)
        sandbox = observed.sandbox
        previous = self.sent.get(uid)
        if previous is not None and previous[1] == tuple(targets):
            return
        if not targets or sandbox is None or not sandbox.ready:
            if previous is not None:
                del self.sent[uid]
                self.prober.forget(uid)
            return
        try:
            netns = runtime.sandbox_netns(sandbox.id)
        except RuntimeError_:
            return  # the sandbox is going: the next relist says so
        self.sent[uid] = (netns, tuple(targets))
        self.prober.set_targets(uid, netns, targets)

    def forget(self, uid: str) -> None:
        """The pod is gone: its probes stop and their states are dropped."""
        if self.sent.pop(uid, None) is not None:
            self.prober.forget(uid)
        for cid in [cid for cid, (u, _) in self.owner.items() if u == uid]:
            self._drop(cid)


def container_named(pod: Pod, name: str) -> Container | None:
    """The spec of container `name` (init, sidecar or app); None for one that has left the spec."""
    for c in pod.spec.all_containers():
        if c.name == name:
            return c
    return None


def user_agent(product: str) -> str:
    """`<product>/<major>.<minor>` of this kubelite, as the kubelet names its probes and hooks."""
    from kubelite import __version__

    major, minor = (__version__.split(".") + ["0"])[:2]
    return f"{product}/{major}.{minor}"


def default_prober(runtime: Runtime, wake: LoopWake) -> Prober:
    from kubelite.prober import for_runtime

    return for_runtime(runtime, hint=wake.set_for_probes, user_agent=user_agent("kube-probe"))

