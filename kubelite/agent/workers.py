"""Pod workers: each pod's sync on a thread of a bounded pool, one pod never on two at once.

Owns: the pool (the kubelet's pod workers, bounded: `--pod-workers`, from the cores by default),
which pods are on a worker now, the earliest time a finished sync asked to be looked at again,
and the first error a sync raised, which the loop raises as it would have raised it itself.
When a sync ends, the pool tells the agent (`ended`), which wakes the loop if a pass is needed.

A worker holds the node state's lock for its pod's sync and lets it go while the runtime works
(`agent.statelock`); the writes it makes are queued, and the loop's next pass writes them (the
one writer). When a sync ends the agent wakes the loop if a pass is needed, whose next pass
hands the pod to a worker again if it is due. The loop never waits for a worker (`run_once(wait=False)`), so a
removal that takes a CNI DEL's time never delays another pod's start; tests and `--once` runs
wait for the pass's syncs (`wait_idle`).
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Callable

from kubelite.agent.statelock import StateLock

log = logging.getLogger("kubelite.agent")

#: Upper bound of the default pool: a pod's sync mostly waits for runc, conmon and CNI plugins.
MAX_DEFAULT_WORKERS = 8


def default_size() -> int:
    """Two workers per core, at least two and at most `MAX_DEFAULT_WORKERS`."""
    return max(2, min(MAX_DEFAULT_WORKERS, 2 * (os.cpu_count() or 1)))


class PodWorkers:
    """A bounded pool that syncs pods, one sync per pod at a time."""

    def __init__(self, size: int, *, lock: StateLock, ended: Callable[[str, datetime | None, bool], None]) -> None:
        if size < 1:
            raise ValueError("a pool of pod workers needs at least one worker")
        self.size = size
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="kubelite-pod")
        self._lock, self._ended = lock, ended
        self._cond = threading.Condition()
        self._busy: set[str] = set()
        self._next: datetime | None = None      # the earliest look-again of the syncs that ended
        self._error: BaseException | None = None
        self._closed = False

    def dispatch(self, uid: str, sync: Callable[[], datetime | None]) -> bool:
        """Run `sync` (the pod's sync, which expects the state lock held) on a worker; False when
        the pod is on one already (it is looked at again when that sync ends)."""
        with self._cond:
            if uid in self._busy or self._closed:
                return False
            self._busy.add(uid)
        self._pool.submit(self._run, uid, sync)
        return True

    def _run(self, uid: str, sync: Callable[[], datetime | None]) -> None:
        wake: datetime | None = None
        error: BaseException | None = None
        try:
            with self._lock:
                wake = sync()
        except BaseException as exc:  # noqa: BLE001 — handed to the loop, which reports it
            error = exc
        with self._cond:
            self._busy.discard(uid)
            if wake is not None and (self._next is None or wake < self._next):
                self._next = wake
            if error is not None and self._error is None:
                self._error = error   # the loop raises it (and logs it with its traceback)
            elif error is not None:
                log.error("pod %s: sync failed: %s: %s", uid, type(error).__name__, error)
            self._cond.notify_all()
        self._ended(uid, wake, error is not None)   # the loop decides whether the sync's end needs a pass

    def busy(self) -> frozenset[str]:
        """The pods on a worker now."""
        with self._cond:
            return frozenset(self._busy)

    def take(self) -> datetime | None:
        """The earliest look-again of the syncs that ended since the last call; raises the first
        error one of them raised."""
        with self._cond:
            wake, error, self._next, self._error = self._next, self._error, None, None
        if error is not None:
            raise error
        return wake

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no pod is on a worker (the caller must not hold the state lock); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy, timeout)

    def close(self) -> None:
        """Take no more syncs, drop those not started, and wait for those under way."""
        with self._cond:
            self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._cond:   # what is left was never started
            self._busy.clear()
            self._cond.notify_all()
