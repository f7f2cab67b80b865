"""The image garbage collector's rules: when to collect, which images go first, stale downloads.

Owns the kubelet's image GC policy: nothing happens below `--image-gc-high-threshold`; above it,
images no container uses are deleted least recently used first until usage would be at
`--image-gc-low-threshold` (`collect`, which the store calls with its own way of deleting one
image); and the pruning of pull downloads nobody has touched for a day. Deleting an image and the
layers no other image uses is the store's business, never done here.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Callable, Iterable

from kubelite.runtime.images.records import Image


def over_threshold(*, used: int, total: int, high_percent: int) -> bool:
    """True when the image filesystem is `high_percent` full or more (the GC runs)."""
    return total > 0 and used * 100 >= high_percent * total


def bytes_to_free(*, used: int, total: int, low_percent: int) -> int:
    """How many bytes must go for usage to be at `low_percent` (zero or less: none)."""
    return used - total * low_percent // 100


def victims(images: Iterable[Image], *, in_use: set[str], last_used: Callable[[Image], float]) -> list[Image]:
    """The images the GC may delete, in the order it deletes them: unused ones, least recently used first."""
    return sorted((i for i in images if i.id not in in_use), key=last_used)


def collect(images: Iterable[Image], *, in_use: set[str], last_used: Callable[[Image], float], to_free: int,
            remove: Callable[[str], int | None]) -> list[Image]:
    """Delete victims until `to_free` bytes are freed. `remove(image_id)` deletes one image and returns the
    bytes it freed, or None when it is gone or in use by now. Returns the images deleted."""
    removed: list[Image] = []
    for image in victims(images, in_use=in_use, last_used=last_used):
        if to_free <= 0:
            break
        freed = remove(image.id)
        if freed is None:
            continue
        removed.append(image)
        to_free -= freed
    return removed


def prune_downloads(downloads: Path, *, older_than_s: float, now: float | None = None) -> list[str]:
    """Delete downloads no pull has touched for `older_than_s` (a pull that was given up on); a
    download a pull is writing (its flock held) is left alone. Returns the names deleted."""
    if not downloads.is_dir():
        return []
    now = time.time() if now is None else now
    deleted = []
    for path in downloads.iterdir():
        try:
            if now - path.stat().st_mtime < older_than_s:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink()
            deleted.append(path.name)
        except OSError:
            continue   # being written by a pull right now
        finally:
            os.close(fd)
    return deleted
