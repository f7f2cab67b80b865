"""CrashLoopBackOff, exactly as the kubelet computes it (pure; `now` is an argument).

Owns: the stable key, the "is this restart held back?" test and the next entry. The kubelet's
`doBackOff` (pkg/kubelet/kuberuntime/kuberuntime_manager.go) over client-go's flowcontrol.Backoff:
first restart immediate; then the delay starts at `initial` and doubles up to `max`; an entry
expires when the container finished more than `reset` seconds after the entry's last update
(it ran for ten minutes), and the next restart is immediate again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from kubelite.core.types import BackoffEntry, BackoffPolicy


def stable_key(*, pod_name: str, namespace: str, uid: str, container: str, spec_hash: str) -> str:
    """`GetStableKey`: a spec edit (new hash) or a new pod (new uid) starts a fresh backoff."""
    return f"{pod_name}_{namespace}_{uid}_{container}_{spec_hash}"


def expired(entry: BackoffEntry, finished_at: datetime, policy: BackoffPolicy) -> bool:
    return (finished_at - entry.last_update).total_seconds() > policy.reset_s


def held_until(entry: BackoffEntry | None, *, finished_at: datetime, now: datetime,
               policy: BackoffPolicy) -> datetime | None:
    """When a restart of a container that finished at `finished_at` may happen; None if now."""
    if entry is None or expired(entry, finished_at, policy):
        return None
    until = finished_at + timedelta(seconds=entry.backoff_s)
    return until if now < until else None


def next_entry(entry: BackoffEntry | None, *, key: str, finished_at: datetime, now: datetime,
               policy: BackoffPolicy) -> BackoffEntry:
    """The entry to store when a restart proceeds now (`Backoff.Next`)."""
    if entry is None or expired(entry, finished_at, policy):
        return BackoffEntry(key, policy.initial_s, now)
    return BackoffEntry(key, min(entry.backoff_s * 2, policy.max_s), now)


def go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration.String prints whole seconds: 10s, 1m20s, 5m0s, 1h0m0s."""
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s"
