"""Running probes: exec, httpGet and tcpSocket, for the agent — never deciding what a result means.

Owns: carrying out the probes `core.probes` resolved (`ProbeTarget`), on schedule, and reporting
each run (`ProbeOutcome`) to the agent's reconcile thread, which applies thresholds and acts.
Two implementations of one small interface (`Prober`):

* `network.NetworkProber` (the OCI runtime): one thread with one asyncio event loop runs every
  probe of every pod. http and tcp probes open their socket inside the pod's network namespace
  (setns(2) in and out around `socket()`) and then talk from the event loop, bounded by
  timeoutSeconds; exec probes go through the runtime's `exec_sync` on a small bounded pool.
* `scripted.ScriptedProber` (a simulated runtime, `runtime.simulated`): outcomes the runtime scripts, run from
  the reconcile thread at the simulated times, for fast and exact tests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable, Protocol, Sequence

from kubelite.core.types import ProbeOutcome, ProbeTarget
from kubelite.runtime.protocol import Runtime


class Prober(Protocol):
    """What the agent needs from a prober. `set_targets` replaces a pod's probes: an unchanged
    target keeps its schedule; a target no longer listed stops."""

    def set_targets(self, uid: str, netns: str | None, targets: Sequence[ProbeTarget]) -> None: ...
    def forget(self, uid: str) -> None: ...
    def drain(self, now: datetime) -> list[ProbeOutcome]:
        """The runs reported since the last call (the scripted prober makes those due by `now`)."""
    def next_due(self) -> datetime | None:
        """When the agent must look again for a run to be due (None: the prober wakes it itself)."""
    def close(self) -> None: ...


def for_runtime(runtime: Runtime, *, hint: Callable[[], None], user_agent: str) -> Prober:
    """The prober that fits `runtime`: scripted for a simulated runtime, real network probes otherwise."""
    if runtime.simulated:
        from kubelite.prober.scripted import ScriptedProber

        return ScriptedProber(runtime)  # type: ignore[arg-type]  # it scripts its probes (`probe_succeeds`)
    from kubelite.prober.network import NetworkProber

    return NetworkProber(runtime, hint=hint, user_agent=user_agent)
