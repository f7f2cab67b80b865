"""The scripted prober, for the fake runtime: probe outcomes as the fake runtime scripts them.

Owns: a schedule per target (first run at `first_at`, then every `period_s`) kept against the
agent's clock, and running what is due when the agent asks (`drain(now)`, on the reconcile
thread): no thread, no sockets, so tests under frozen time are exact. `next_due()` tells the
agent when to look again. Failures read like the real prober's (status 500 for http, connection
refused for tcp).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Sequence

from kubelite.core.types import ProbeOutcome, ProbeResult, ProbeTarget
from kubelite.runtime.fake import FakeRuntime


def _failure(target: ProbeTarget) -> str:
    if target.action == "http":
        return "HTTP probe failed with statuscode: 500"
    if target.action == "tcp":
        return f"dial tcp {target.host}:{target.port}: connect: connection refused"
    return "simulated failure"


class ScriptedProber:
    def __init__(self, runtime: FakeRuntime) -> None:
        self.runtime = runtime
        self._targets: dict[str, dict[tuple[str, str], tuple[ProbeTarget, datetime]]] = {}

    def set_targets(self, uid: str, netns: str | None, targets: Sequence[ProbeTarget]) -> None:
        old = self._targets.get(uid, {})
        new = {}
        for t in targets:
            key = (t.container_id, t.kind)
            kept = old.get(key)
            new[key] = kept if kept is not None and kept[0] == t else (t, max(t.first_at, self.runtime.clock()))
        if new:
            self._targets[uid] = new
        else:
            self._targets.pop(uid, None)

    def forget(self, uid: str) -> None:
        self._targets.pop(uid, None)

    def drain(self, now: datetime) -> list[ProbeOutcome]:
        """Every run due by `now`, in time order, each with its scripted outcome at its own time."""
        runs: list[tuple[datetime, ProbeOutcome]] = []
        for targets in self._targets.values():
            for key, (t, due) in list(targets.items()):
                while due <= now:
                    ok = self.runtime.probe_succeeds(t.container_id, t.kind, due)
                    if ok is not None:
                        runs.append((due, ProbeOutcome(t.container_id, t.kind,
                                                       ProbeResult.SUCCESS if ok else ProbeResult.FAILURE,
                                                       "" if ok else _failure(t))))
                    due += timedelta(seconds=t.period_s)
                targets[key] = (t, due)
        runs.sort(key=lambda r: r[0])
        return [outcome for _, outcome in runs]

    def next_due(self) -> datetime | None:
        times = [due for targets in self._targets.values() for _, due in targets.values()]
        return min(times) if times else None

    def close(self) -> None:
        self._targets.clear()
