"""The daemon's signals, taken off the main thread.

Owns the signal handlers `kubelite serve` installs and what turns a signal into a request. A Python
signal handler runs on the main thread between two of its bytecodes — maybe while that thread holds
a lock (an `Event`'s condition inside `wait()`, the loop's wake-up inside `clear()`): a handler that
takes such a lock waits for itself forever. So the handlers here take none and do nothing: Python's
own C-level handler writes the signal's number to a non-blocking pipe (`signal.set_wakeup_fd`), and
a small thread of the relay reads it and calls `act(signum)` there, where a lock is only a wait.

`blocked(signals)` holds signals back while the daemon takes its lock and installs the relay: one
that arrives meanwhile is delivered, to the relay, when the block ends, instead of killing the
process with its default action. Standard library only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Callable, Iterable, Iterator

log = logging.getLogger("kubelite")

#: The byte that ends the relay's thread (no signal has number 0).
_END = 0
#: How long `restore()` waits for the relay's thread to end.
JOIN_TIMEOUT_S = 5.0


def _nothing(_signum: int, _frame: object) -> None:
    """The handler of every relayed signal: the wakeup fd carries it; no lock, no work here."""


class SignalRelay:
    """Handlers for `signals` that only let Python write to a wakeup pipe, and a daemon thread that
    turns each signal read from it into `act(signum)`. `install()` and `restore()` on the main thread."""

    def __init__(self, signals: Iterable[signal.Signals], act: Callable[[int], None]) -> None:
        self.signals = tuple(signals)
        self.act = act
        self._read, self._write = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self._write, False)   # set_wakeup_fd requires it: a signal never waits on the pipe
        self._previous: dict[int, object] = {}
        self._previous_fd = -1
        self._thread = threading.Thread(target=self._relay, name="kubelite-signals", daemon=True)

    def install(self) -> "SignalRelay":
        self._thread.start()
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, _nothing)
        return self

    def restore(self) -> None:
        """The handlers and wakeup fd that were there before; the thread ends once it relayed what it read."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()
        signal.set_wakeup_fd(self._previous_fd)
        try:
            os.write(self._write, bytes([_END]))
        except BlockingIOError:   # a full pipe: the thread is behind, and is told below by closing it
            pass
        self._thread.join(JOIN_TIMEOUT_S)
        os.close(self._write)
        if not self._thread.is_alive():
            os.close(self._read)

    def _relay(self) -> None:
        while True:
            try:
                data = os.read(self._read, 64)
            except OSError:
                return
            for signum in data:
                if signum == _END:
                    return
                try:
                    self.act(signum)
                except Exception:  # noqa: BLE001 — the next signal must still be heard
                    log.exception("handling signal %d", signum)
            if not data:
                return


@contextlib.contextmanager
def blocked(signals: Iterable[signal.Signals]) -> Iterator[None]:
    """`signals` held pending on this thread for the block (threads started inside keep them blocked)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, set(signals))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def discard_pending(signals: Iterable[signal.Signals]) -> list[int]:
    """Take the pending (blocked) `signals` of this thread or process without acting on them; their numbers."""
    wanted = set(signals)
    taken = []
    while wanted & signal.sigpending():
        info = signal.sigtimedwait(wanted, 0)
        if info is None:
            break
        taken.append(info.si_signo)
    return taken
