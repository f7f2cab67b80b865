"""The node state's lock, and the runtime as pod workers call it: with the lock let go.

Owns: `StateLock`, held by whoever reads or changes the node state (the reconcile loop for its
pass, a pod worker for its pod's sync), and `UnlockedRuntime`, the runtime's methods called with
that lock released when the calling thread holds it. A pod's sync is mostly waiting for the
runtime (runc, conmon, CNI plugins, mounts); with the lock let go meanwhile, the syncs of other
pods, and the loop's pass, go on. Everything between two runtime calls runs with the lock held,
so the node state's memory is only ever changed by one thread at a time, and nothing in it needs
a lock of its own. What a sync read before a runtime call may have changed when it returns only
where other threads act on other pods (a pod is never on two workers; `agent.workers`).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

from kubelite.runtime.protocol import Runtime


class StateLock:
    """A lock that knows its holder, so that a runtime call lets it go only if this thread holds it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None

    def __enter__(self) -> StateLock:
        self._lock.acquire()
        self._owner = threading.get_ident()
        return self

    def __exit__(self, *exc: object) -> None:
        self._owner = None
        self._lock.release()

    def held(self) -> bool:
        """True when the calling thread holds the lock."""
        return self._owner == threading.get_ident()

    @contextmanager
    def released(self) -> Iterator[None]:
        """Let the lock go for the block if this thread holds it; take it again after."""
        if not self.held():
            yield
            return
        self.__exit__()
        try:
            yield
        finally:
            self.__enter__()


#: The runtime's calls that wait for other processes or the disk (runc, conmon, CNI plugins, mounts,
#: removals); the others answer from memory and keep the lock (letting it go costs a hand-over).
WAITING_CALLS = frozenset({"run_sandbox", "stop_sandbox", "remove_sandbox", "create_container", "start_container",
                           "remove_container", "remove_unused_images", "exec_sync", "pull_image"})


class UnlockedRuntime:
    """`runtime`, whose waiting methods (`WAITING_CALLS`) run with `lock` let go; everything else
    is the runtime's own."""

    def __init__(self, runtime: Runtime, lock: StateLock) -> None:
        self._runtime, self._lock = runtime, lock

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._runtime, name)
        if name not in WAITING_CALLS:
            return attribute
        lock = self._lock

        def unlocked(*args: Any, **kwargs: Any) -> Any:
            with lock.released():
                return attribute(*args, **kwargs)
        return unlocked
