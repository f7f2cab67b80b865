"""Warm pod sandboxes: a small pool of infra containers made before any pod asks for one.

Owns: the pool — its ready sandboxes, the background thread that fills and refills it, its backoff
after failures, and which pod configurations a warm sandbox can serve (`eligible`). A warm sandbox
is a whole sandbox made in advance (the infra container running, with pod networking its pinned
namespace with the CNI ADD done and the address leased) under a cgroup of its own and a record
marked `warm`; claiming one, giving it the pod's identity, is `oci.sandboxes`'s business
(`Sandboxes._claim_warm_sandbox`), as are making and tearing one down: the pool is handed those
two steps as functions and never runs a process itself (decision 0020).

The pool is filled by its own thread, never on a claim's path: a claim takes a ready sandbox or
nothing (the pod then takes the normal path). The thread refills after a quiet moment
(`REFILL_QUIET_S` after the last claim, so that a refill does not compete with the containers of
the pod that just claimed), makes one sandbox at a time, backs off after a failure (doubling from
`BACKOFF_INITIAL_S` to `BACKOFF_MAX_S`) and logs one line per kind of failure. The slow step of a claim that the pod need
not wait for (moving the infra process in a cgroup v2 hierarchy) runs at once beside the pod, on a
short-lived thread of its own (`defer`). Sandboxes that
failed a claim, or whose seccomp profile is no longer the one pods ask for, are torn down by the
same thread. `stop()` ends the thread and hands back every unclaimed sandbox to be torn down.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from kubelite.core.types import SecurityProfile
from kubelite.runtime.oci.records import SandboxRecord
from kubelite.runtime.protocol import SandboxConfig

log = logging.getLogger("kubelite.runtime")

DEFAULT_SIZE = 2
#: The pool refills this long after the last claim (a burst of pods is not slowed by refills).
REFILL_QUIET_S = 0.5
BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 60.0
STOP_TIMEOUT_S = 60.0   # a sandbox being made when kubelite stops: runc's and CNI's own timeouts are shorter


def eligible(config: SandboxConfig) -> bool:
    """Whether a warm sandbox can serve this pod: its infra container's spec must not depend on the
    pod beyond what a claim sets (hostname, /etc files, pod-level limits, the cgroup's name).
    hostNetwork (the host's network and UTS namespaces), host ports (portmap rules are made at ADD)
    and sysctls (written by runc as it makes the namespaces) need a sandbox made for the pod. The
    seccomp profile is matched when a sandbox is taken (`WarmPool.take`)."""
    return not config.host_network and not config.port_mappings and not config.sysctls


@dataclass
class WarmSandbox:
    """A ready warm sandbox: its record, and the seccomp profile its infra process runs under
    (as the pod asked for it, and as resolved to the filter's JSON then)."""

    record: SandboxRecord
    seccomp: SecurityProfile | None
    profile: dict[str, Any] | None


def _failure_kind(exc: BaseException) -> str:
    """A failure's kind for logging once: its type and message without ids and numbers."""
    return f"{type(exc).__name__}: " + re.sub(r"[0-9a-f]{12,}|[0-9]+", "#", str(exc))[:200]


class WarmPool:
    """Up to `size` ready warm sandboxes, filled by a thread of its own.

    `make(seccomp)` makes one warm sandbox (raising on failure, having undone its own steps);
    `destroy(record)` tears one down completely. Both are called on the pool's thread only (and
    `destroy` by whoever tears down what `stop()` returns)."""

    def __init__(self, size: int, *, make: Callable[[SecurityProfile | None], WarmSandbox],
                 destroy: Callable[[SandboxRecord], None]) -> None:
        if size < 1:
            raise ValueError("a warm pool holds at least one sandbox")
        self.size = size
        self._make, self._destroy = make, destroy
        self._cond = threading.Condition()
        self._ready: list[WarmSandbox] = []
        self._discarded: list[SandboxRecord] = []
        self._steps: set[threading.Thread] = set()   # deferred steps still running
        self._want: SecurityProfile | None = None    # the profile pods asked for last
        self._want_profile: dict[str, Any] | None = None   # and its filter (None: unconfined)
        self._stopping = False
        self._quiet_until = 0.0
        self._retry_at = 0.0
        self._backoff = BACKOFF_INITIAL_S
        self._logged: set[str] = set()
        self._filled = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="warm-sandboxes", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ claims' side (cheap, never waits)

    def take(self, seccomp: SecurityProfile | None, profile: dict[str, Any] | None) -> WarmSandbox | None:
        """A ready sandbox whose infra runs under the same seccomp filter (`profile`, resolved from the
        pod's choice `seccomp`; None and Unconfined alike are None), or None. Either way the pool now
        makes sandboxes for this profile, after a quiet moment."""
        with self._cond:
            self._want, self._want_profile = seccomp, profile
            self._quiet_until = time.monotonic() + REFILL_QUIET_S
            found = None
            for i, warm in enumerate(self._ready):
                if warm.profile == profile:
                    found = self._ready.pop(i)
                    break
            self._cond.notify_all()
            return found

    def defer(self, step: Callable[[], None]) -> None:
        """A slow step of a claim that the pod need not wait for: run at once on a short-lived thread
        of its own (the pool's thread may be making a sandbox); `stop()` waits for it."""
        def run() -> None:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 — the pod runs on; its cgroup is tidied at removal
                self._failed("finishing a claim", exc)
            finally:
                with self._cond:
                    self._steps.discard(thread)

        thread = threading.Thread(target=run, name="warm-claim", daemon=True)
        with self._cond:
            self._steps.add(thread)
        thread.start()

    def discard(self, record: SandboxRecord) -> None:
        """A sandbox that could not be claimed: torn down by the pool's thread."""
        with self._cond:
            self._discarded.append(record)
            self._cond.notify_all()

    def ready(self) -> list[SandboxRecord]:
        """The records of the ready sandboxes (what the pool holds now)."""
        with self._cond:
            return [w.record for w in self._ready]

    def ready_sandboxes(self) -> list[WarmSandbox]:
        with self._cond:
            return list(self._ready)

    def wait_full(self, timeout: float) -> bool:
        """Wait until `size` sandboxes are ready (tests and benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._ready) < self.size:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def stop(self) -> list[SandboxRecord]:
        """End the thread (after the sandbox it is making, if any); every sandbox not claimed, to be
        torn down by the caller."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        with self._cond:
            steps = list(self._steps)
        for step in steps:
            step.join(timeout=STOP_TIMEOUT_S)
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S)
            if self._thread.is_alive():
                log.warning("warm sandboxes: the pool's thread did not end within %.0fs", STOP_TIMEOUT_S)
        with self._cond:
            left = [w.record for w in self._ready] + self._discarded
            self._ready, self._discarded = [], []
            return left

    # ------------------------------------------------------------------ the pool's thread

    def _next_step(self) -> tuple[str, Any]:
        """Wait for work: ("stop", None), ("destroy", record) or ("make", seccomp profile)."""
        with self._cond:
            while True:
                if self._stopping:
                    return "stop", None
                if self._discarded:
                    return "destroy", self._discarded.pop(0)
                stale = next((w for w in self._ready if w.profile != self._want_profile), None)
                if stale is not None:
                    self._ready.remove(stale)
                    return "destroy", stale.record
                now = time.monotonic()
                wait = None
                if len(self._ready) < self.size:
                    wait = max(self._quiet_until, self._retry_at) - now
                    if wait <= 0:
                        return "make", self._want
                self._cond.wait(wait)

    def _run(self) -> None:
        while True:
            step, arg = self._next_step()
            if step == "stop":
                return
            if step == "destroy":
                try:
                    self._destroy(arg)
                except Exception as exc:  # noqa: BLE001 — the pool outlives one teardown; the log says why
                    self._failed("tearing down a warm sandbox", exc)
                continue
            try:
                warm = self._make(arg)
            except Exception as exc:  # noqa: BLE001 — a failing make backs off; pods take the normal path
                with self._cond:
                    self._retry_at = time.monotonic() + self._backoff
                    self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
                self._failed("making a warm sandbox", exc)
                continue
            with self._cond:
                self._ready.append(warm)
                self._backoff, self._retry_at = BACKOFF_INITIAL_S, 0.0
                self._cond.notify_all()
                full = len(self._ready) == self.size
                failures, self._logged = (self._logged, set()) if full else (set(), self._logged)
            if full and not self._filled:   # the pool's cost, once: what it holds
                self._filled = True
                ips = [w.record.ip for w in self.ready_sandboxes() if w.record.ip]
                log.info("warm sandboxes: %d ready%s", self.size,
                         f", holding the addresses {', '.join(ips)}" if ips else "")
            elif failures:
                log.info("warm sandboxes: the pool is full again (%d ready)", self.size)

    def _failed(self, what: str, exc: BaseException) -> None:
        """Log a failure once per kind (until the pool is full again), later ones at debug level."""
        kind = f"{what}: {_failure_kind(exc)}"
        with self._cond:   # the pool's thread and claims' steps both report here
            first = kind not in self._logged
            self._logged.add(kind)
        if first:
            log.warning("warm sandboxes: %s failed: %s%s", what, exc,
                        " (retrying in the background)" if what.startswith("making") else "")
        else:
            log.debug("warm sandboxes: %s failed again: %s", what, exc)
