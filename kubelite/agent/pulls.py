"""Image pulls beside the reconcile loop: a small pool of workers, one pull per image at a time.

Owns: running `Runtime.pull_image` off the loop's thread (a download may take minutes; the loop
must keep stopping, restarting and reporting other pods meanwhile), folding concurrent requests
for the same image into one pull, and handing the outcomes back through a queue that the loop
drains (`finished()`), as it does with preStop hook failures. It decides nothing and writes
nothing: events, statuses and the image backoff are the agent's.

With `workers=0` a pull runs on the calling thread at once (what the simulated tests use: no
threads under frozen time); its outcome is still delivered by the next `finished()`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

from kubelite.errors import KubeliteError
from kubelite.runtime.protocol import PulledImage, Runtime

log = logging.getLogger("kubelite.agent")


@dataclass(frozen=True)
class PullOutcome:
    image: str
    seconds: float                      # wall time of the pull itself
    total_s: float = 0.0                # the same, plus the wait for a free worker
    pulled: PulledImage | None = None   # None when it failed
    error: str = ""


class ImagePulls:
    """The pulls in flight, keyed by image reference as the manifest writes it."""

    def __init__(self, runtime: Runtime, *, workers: int, wake: Callable[[], None]) -> None:
        self._runtime, self._wake = runtime, wake
        # daemon threads, at most `workers` pulling at once: a download never holds up kubelite's exit
        self._slots = threading.BoundedSemaphore(workers) if workers else None
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._done: queue.SimpleQueue[PullOutcome] = queue.SimpleQueue()

    def start(self, image: str) -> bool:
        """Start pulling `image` unless it is being pulled already; True when this call started it."""
        with self._lock:
            if image in self._in_flight:
                return False
            self._in_flight.add(image)
        queued = time.monotonic()
        if self._slots is None:
            self._pull(image, queued)
        else:
            threading.Thread(target=self._pull_in_slot, args=(image, queued), name="kubelite-pull",
                             daemon=True).start()
        return True

    def _pull_in_slot(self, image: str, queued: float) -> None:
        assert self._slots is not None
        with self._slots:
            self._pull(image, queued)

    def in_flight(self, image: str) -> bool:
        with self._lock:
            return image in self._in_flight

    def busy(self) -> set[str]:
        with self._lock:
            return set(self._in_flight)

    def finished(self) -> list[PullOutcome]:
        """The pulls that ended since the last call (the loop's thread only)."""
        found = []
        while not self._done.empty():
            found.append(self._done.get())
        return found

    def _pull(self, image: str, queued: float) -> None:
        started = time.monotonic()
        try:
            outcome = PullOutcome(image, 0.0, pulled=self._runtime.pull_image(image))
        except KubeliteError as exc:
            outcome = PullOutcome(image, 0.0, error=str(exc))
        except Exception as exc:  # noqa: BLE001 — a bug in a pull must not leave the pod waiting forever
            log.exception("pulling %s failed unexpectedly", image)
            outcome = PullOutcome(image, 0.0, error=f"{type(exc).__name__}: {exc}")
        end = time.monotonic()
        outcome = PullOutcome(outcome.image, end - started, end - queued, outcome.pulled, outcome.error)
        with self._lock:
            self._in_flight.discard(image)
            self._done.put(outcome)
        self._wake()
