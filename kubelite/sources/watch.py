"""Change hints for the manifest directory, from inotify (watchdog), filtered and debounced.

Owns: which filesystem events matter (manifest names, and the manifest path itself appearing,
vanishing or being swapped as a symlink, git-sync style), keeping the watches on the directory the
path currently leads to, and turning each burst of events into one call of `on_change`.

A hint carries nothing: the agent rescans the directory on each one and relists periodically
anyway, so a lost event costs latency, never correctness. The watcher never reads a manifest.

Threads: watchdog's observer thread delivers every event and is, once started, the only one that
moves the watches; a debounce thread calls `on_change`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    EVENT_TYPE_ATTRIB,
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from kubelite.sources.manifests import is_manifest_name

log = logging.getLogger(__name__)

#: A complete change hinted at once must come this long after the previous hint: a burst of
#: writes (a `git checkout`, a script) still coalesces, a second edit a moment later does not wait.
URGENT_GAP_S = 0.05
#: A continuous stream of events still gives a hint at least this often.
MAX_HINT_DELAY_S = 1.0
#: Events that may change what a manifest says (opening or reading a file does not).
CONTENT_EVENTS = frozenset({EVENT_TYPE_CREATED, EVENT_TYPE_DELETED, EVENT_TYPE_MODIFIED, EVENT_TYPE_MOVED,
                            EVENT_TYPE_ATTRIB, EVENT_TYPE_CLOSED})
#: Events after which a file is complete (renamed into place, closed after writing, or gone): the
#: hint goes out at once instead of after a quiet period — a new pod starts ~0.2 s sooner. A
#: burst that follows still ends with one more hint.
FINAL_EVENTS = frozenset({EVENT_TYPE_MOVED, EVENT_TYPE_CLOSED, EVENT_TYPE_DELETED})
#: Events that make the manifest path lead somewhere else (or nowhere).
PATH_EVENTS = frozenset({EVENT_TYPE_CREATED, EVENT_TYPE_DELETED, EVENT_TYPE_MOVED})


@dataclass(frozen=True)
class _Watched:
    """A directory under watch, identified by inode so that a re-created directory is noticed."""

    path: str
    inode: tuple[int, int]
    watch: ObservedWatch


class _Handler(FileSystemEventHandler):
    def __init__(self, on_event: Callable[[FileSystemEvent], None]) -> None:
        self._on_event = on_event

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._on_event(event)


class _Debouncer:
    """Calls `fire` once per burst of pokes: after `quiet_s` without one, at most `max_delay_s` after
    the first. A burst that starts with a complete change (`now=True`) fires at once as well."""

    def __init__(self, fire: Callable[[], None], *, quiet_s: float, max_delay_s: float) -> None:
        self._fire = fire
        self._quiet_s = quiet_s
        self._max_delay_s = max_delay_s
        self._cond = threading.Condition()
        self._first: float | None = None  # when the pending burst began; None when nothing is pending
        self._last = 0.0
        self._stopping = False
        self._urgent = False
        self._fired = float("-inf")  # when the last hint went out
        self._thread = threading.Thread(target=self._run, name="kubelite-manifest-hints", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()

    def poke(self, *, now: bool = False) -> None:
        """Note a change; `now` asks for the hint without waiting for the burst to end."""
        with self._cond:
            self._last = time.monotonic()
            if self._first is None:
                self._first = self._last
            if now and self._last - self._fired >= min(self._quiet_s, URGENT_GAP_S):  # not mid-burst
                self._urgent = True
            self._cond.notify()

    def _run(self) -> None:
        while self._burst_ended():
            try:
                self._fire()
            except Exception:
                log.exception("manifest change handler failed; watching on")

    def _burst_ended(self) -> bool:
        """Wait until the pending burst is over (True) or the debouncer stops (False)."""
        with self._cond:
            while not self._stopping:
                if self._first is None:
                    self._cond.wait()
                    continue
                due = min(self._last + self._quiet_s, self._first + self._max_delay_s)
                remaining = 0.0 if self._urgent else due - time.monotonic()
                if remaining <= 0:
                    self._first = None
                    self._urgent = False
                    self._fired = time.monotonic()
                    return True
                self._cond.wait(remaining)
            return False


class ManifestWatcher:
    """Calls `on_change()` (a hint, from a watcher thread) after changes to the manifests at `path`.

    Watches the directory `path` leads to (following a symlink), non-recursively, and the parent
    of `path` (or its nearest existing ancestor) for `path` itself being created, deleted, renamed
    or swapped; then the directory watch moves to wherever `path` now leads, and a hint follows.
    `path` may also be a single manifest file. `on_change` must be cheap; an exception from it is
    logged and watching goes on.
    """

    def __init__(self, path: Path, on_change: Callable[[], None], *, debounce_s: float = 0.2) -> None:
        self._path = os.path.abspath(path)
        self._on_change = on_change
        self._debounce_s = debounce_s
        self._handler = _Handler(self._on_event)
        self._observer: BaseObserver | None = None
        self._debouncer: _Debouncer | None = None
        self._ancestor: _Watched | None = None  # where `path` (or its first missing part) would appear
        self._directory: _Watched | None = None  # the manifest directory `path` leads to

    def start(self) -> None:
        """Start watching (no-op when already started). OSError if inotify is unavailable."""
        if self._observer is not None:
            return
        self._observer = Observer()
        self._debouncer = _Debouncer(self._on_change, quiet_s=self._debounce_s, max_delay_s=MAX_HINT_DELAY_S)
        self._debouncer.start()
        self._rewatch()  # before the observer thread runs: from then on only that thread moves watches
        self._observer.start()

    def stop(self) -> None:
        """Stop watching and join every thread the watcher started. Idempotent."""
        if self._observer is None or self._debouncer is None:
            return
        self._observer.stop()  # an event being handled finishes first; no event is handled after
        self._observer.join()
        self._debouncer.stop()
        self._observer = self._debouncer = None
        self._ancestor = self._directory = None

    # -------------------------------------------------------------------- events (observer thread)

    def _on_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in CONTENT_EVENTS or self._debouncer is None:
            return
        paths = [os.fsdecode(event.src_path)]
        if event.event_type == EVENT_TYPE_MOVED and event.dest_path:
            paths.append(os.fsdecode(event.dest_path))
        if event.event_type in PATH_EVENTS and any(self._leads_to_directory(p) for p in paths):
            self._rewatch()
            self._debouncer.poke()
        elif any(self._is_manifest(p) for p in paths) or (self._path in paths and not event.is_directory):
            # a manifest in the directory, or `path` itself when it is a single file
            self._debouncer.poke(now=event.event_type in FINAL_EVENTS)

    def _leads_to_directory(self, path: str) -> bool:
        """Whether `path` is on the way to the manifests: a watched directory, or the next part of `path`."""
        watched = [w.path for w in (self._directory, self._ancestor) if w is not None]
        if self._ancestor is not None:
            watched.append(os.path.join(self._ancestor.path, self._next_part()))
        return path in watched

    def _is_manifest(self, path: str) -> bool:
        directory, name = os.path.split(path)
        return self._directory is not None and directory == self._directory.path and is_manifest_name(name)

    def _next_part(self) -> str:
        assert self._ancestor is not None
        return os.path.relpath(self._path, self._ancestor.path).split(os.sep)[0]

    # ------------------------------------------------------------------------------ watches

    def _rewatch(self) -> None:
        """Point the watches at what the filesystem holds now; unchanged watches stay."""
        for _ in self._path.split(os.sep):  # look again after each new watch: a part may have appeared meanwhile
            ancestor = self._retarget(self._ancestor, _nearest_existing(os.path.dirname(self._path)), resolve=False)
            moved, self._ancestor = ancestor is not self._ancestor, ancestor
            if not moved:
                break
        self._directory = self._retarget(self._directory, self._path if os.path.isdir(self._path) else None,
                                         resolve=True)

    def _retarget(self, current: _Watched | None, path: str | None, *, resolve: bool) -> _Watched | None:
        wanted = _identify(path, resolve=resolve) if path is not None else None
        if current is not None and wanted == (current.path, current.inode):
            return current
        if current is not None:
            self._unschedule(current.watch)
        if wanted is None:
            return None
        assert self._observer is not None
        try:
            watch = self._observer.schedule(self._handler, wanted[0], recursive=False)
        except OSError as exc:
            log.warning("cannot watch %s (%s); relying on periodic relists", wanted[0], exc.strerror)
            return None
        log.debug("watching %s", wanted[0])
        return _Watched(wanted[0], wanted[1], watch)

    def _unschedule(self, watch: ObservedWatch) -> None:
        assert self._observer is not None
        with contextlib.suppress(KeyError):  # already gone with the observer
            self._observer.unschedule(watch)


def _identify(path: str, *, resolve: bool) -> tuple[str, tuple[int, int]] | None:
    """`path` (resolved through symlinks if asked) and its inode, or None if it is no directory now."""
    where = os.path.realpath(path) if resolve else path
    try:
        info = os.stat(where)
    except OSError:
        return None
    return (where, (info.st_dev, info.st_ino)) if stat.S_ISDIR(info.st_mode) else None


def _nearest_existing(path: str) -> str:
    """`path` if it is a directory, else its nearest ancestor that is."""
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path
