"""Running lifecycle hooks beside the reconcile loop: postStart after a start, preStop before a stop.

Owns: carrying out the hooks `core.hooks` resolved, each on a helper thread of its own (a hook
may take as long as it likes: the loop goes on stopping, restarting and reporting meanwhile):
exec hooks through the runtime's `exec_sync` (`runc exec`, as exec probes), httpGet hooks with
the prober's HTTP client from inside the pod's network namespace (from the host's only for a
hostNetwork pod: when the pod's namespace cannot be found the hook fails), sleep hooks; and handing the
outcomes back through a queue that the loop drains (`finished()`), as image pulls do. For a
preStop hook it then sends the stop signal (the `then` callback), hook or no hook, failure or
not. It decides nothing and writes nothing: events, states and kills are the agent's.

With a simulated runtime (`inline`) a hook runs on the calling thread at once, and a sleep does not
sleep: the simulated tests run under frozen time, and a dry run reaches no pod network (an
httpGet hook succeeds there without a request).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

from kubelite.core import hooks as rules
from kubelite.errors import KubeliteError
from kubelite.prober import checks
from kubelite.runtime.netns import Namespaces
from kubelite.runtime.protocol import Runtime

log = logging.getLogger("kubelite.agent")

#: postStart has no timeout, as with the kubelet; this bound only keeps a hook that never returns
#: from holding its thread (and its container in ContainerCreating) for ever.
POST_START_BOUND_S = 24 * 3600.0
#: At most this much of an exec hook's output goes into its failure message (as exec probes).
MAX_OUTPUT = 10 * 1024

Event = tuple[str, str, str]   # type, reason, message


@dataclass(frozen=True)
class NoNetwork:
    """In place of a network namespace: the pod's could not be found (its sandbox is not running).
    An httpGet hook then fails with `reason`; it is never sent from the host's namespace instead."""

    reason: str


#: Where an httpGet hook is sent from: a namespace path, None for a hostNetwork pod, or NoNetwork.
Netns = str | None | NoNetwork


@dataclass(frozen=True)
class HookOutcome:
    uid: str
    container_id: str
    name: str
    kind: str            # postStart | preStop
    failure: str = ""    # the kubelet's message for a failed hook; "" when it succeeded
    events: tuple[Event, ...] = ()   # besides the outcome (LifecycleHTTPFallback)


class HookRunner:
    """The hooks in flight. `start_*` from the loop's thread; outcomes through `finished()`."""

    def __init__(self, runtime: Runtime, *, wake: Callable[[], None], user_agent: str, inline: bool = False) -> None:
        self._runtime, self._wake, self._user_agent, self._inline = runtime, wake, user_agent, inline
        self._done: queue.SimpleQueue[HookOutcome] = queue.SimpleQueue()

    def post_start(self, *, uid: str, container_id: str, name: str, pod: str, action: rules.HookAction,
                   netns: Netns) -> None:
        """Run the postStart hook of a container that has just started."""
        self._spawn(self._run_post_start, uid, container_id, name, pod, action, netns)

    def pre_stop(self, *, uid: str, container_id: str, name: str, pod: str, action: rules.HookAction | None,
                 netns: Netns, grace_s: float, then: Callable[[], None]) -> None:
        """Run the preStop hook (at most `grace_s`), then `then()` (the stop signal)."""
        self._spawn(self._run_pre_stop, uid, container_id, name, pod, action, netns, grace_s, then)

    def finished(self) -> list[HookOutcome]:
        """The hooks that ended since the last call (the loop's thread only)."""
        found = []
        while not self._done.empty():
            found.append(self._done.get())
        return found

    # ------------------------------------------------------------------ helper threads

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        if self._inline:
            target(*args)
            return
        threading.Thread(target=target, args=args, name=f"hook-{str(args[1])[:12]}", daemon=True).start()

    def _run_post_start(self, uid: str, container_id: str, name: str, pod: str, action: rules.HookAction,
                        netns: Netns) -> None:
        events: list[Event] = []
        failure = self._run(action, container_id, name, pod, netns, POST_START_BOUND_S, events)
        self._done.put(HookOutcome(uid, container_id, name, rules.POST_START, failure, tuple(events)))
        self._wake()

    def _run_pre_stop(self, uid: str, container_id: str, name: str, pod: str, action: rules.HookAction | None,
                      netns: Netns, grace_s: float, then: Callable[[], None]) -> None:
        try:
            if action is not None:
                events: list[Event] = []
                failure = self._run(action, container_id, name, pod, netns, grace_s, events)
                # always reported: its end sets the SIGKILL deadline (rules.deadline_after_pre_stop)
                self._done.put(HookOutcome(uid, container_id, name, rules.PRE_STOP, failure, tuple(events)))
        finally:
            then()
            self._wake()

    def _run(self, action: rules.HookAction, container_id: str, name: str, pod: str, netns: Netns,
             timeout_s: float, events: list[Event]) -> str:
        """Carry out one hook; "" on success, else the kubelet's message. Events it raises besides
        are added to `events`."""
        try:
            if action.action == "exec":
                return self._exec(action, container_id, name, pod, timeout_s)
            if action.action == "http":
                return self._http(action, name, pod, netns, events)
            if action.action == "sleep":
                if not self._inline:
                    time.sleep(min(float(action.seconds), timeout_s))
                return ""
            return rules.failure_message(action, container=name, pod=pod, error=action.error)
        except Exception as exc:  # noqa: BLE001 — a hook's own failure, never the loop's
            if not isinstance(exc, KubeliteError):
                log.exception("pod %s: the %s hook of %s failed unexpectedly", pod, action.kind, name)
            return rules.failure_message(action, container=name, pod=pod, error=str(exc))

    def _exec(self, action: rules.HookAction, container_id: str, name: str, pod: str, timeout_s: float) -> str:
        result = self._runtime.exec_sync(container_id, list(action.command), timeout_s)
        output = (result.stdout + result.stderr)[:MAX_OUTPUT].decode("utf-8", errors="replace")
        if result.timed_out:
            error = f"command '{' '.join(action.command)}' timed out after {timeout_s:g}s"
        elif result.exit_code != 0:
            error = rules.exec_error(action.command, result.exit_code, result.stderr.decode("utf-8", "replace"))
        else:
            return ""
        return rules.failure_message(action, container=name, pod=pod, error=error, output=output)

    def _http(self, action: rules.HookAction, name: str, pod: str, netns: Netns, events: list[Event]) -> str:
        """The GET; any answer will do (the kubelet does not look at a hook's status code). An HTTPS
        hook answered in plain HTTP is sent again over HTTP, without its Authorization header, and
        raises LifecycleHTTPFallback, as the kubelet's `runHTTPHandler` does."""
        if self._inline:
            return ""   # the dry run has no pod network to send the request into
        target = action.target
        assert target is not None
        if isinstance(netns, NoNetwork):
            return rules.failure_message(action, container=name, pod=pod,
                                         error=f"the pod's network namespace is not available: {netns.reason}")
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC) if netns else None
        ns = Namespaces()
        try:
            response, error = asyncio.run(checks.fetch(ns, fd, target, user_agent=self._user_agent))
            if response is None and target.scheme == "https" and "remote error: tls:" in error:
                plain = replace(target, scheme="http",
                                headers=tuple((k, v) for k, v in target.headers if k.lower() != "authorization"))
                retried, _ = asyncio.run(checks.fetch(ns, fd, plain, user_agent=self._user_agent))
                if retried is not None:
                    host = checks.join_host_port(target.host, target.port)
                    events.append(("Warning", "LifecycleHTTPFallback", f"request to HTTPS lifecycle hook {host} "
                                                                       "got HTTP response, retry with HTTP succeeded"))
                    response = retried
        finally:
            ns.close()
            if fd is not None:
                os.close(fd)
        if response is not None:
            return ""
        return rules.failure_message(action, container=name, pod=pod, error=error)
