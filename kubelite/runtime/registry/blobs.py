"""Blobs: an image config read into memory (bounded by its descriptor), a layer streamed to
`<root>/images/downloads/<hex>.partial` while it is hashed, resumed with a Range request, shared
between pulls through an flock, and renamed to `<hex>` once verified.

Owns: the downloads directory's files while a pull runs; `Progress`, what a pull reports.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import httpx

from kubelite.runtime.registry.bodies import network_error, read_body
from kubelite.runtime.registry.client import Client
from kubelite.runtime.registry.config import PullError

CHUNK = 1 << 20


@dataclass(frozen=True)
class Progress:
    """What a pull is doing, for a display.

    kinds: "resolved" (layers = how many, total = bytes to fetch), "exists" (a layer already
    here), "bytes" (done/total of one blob), "downloaded" (one blob verified), "unpacking", "done".
    """

    kind: str
    digest: str = ""
    done: int = 0
    total: int = 0
    layers: int = 0


ProgressFn = Callable[[Progress], None]


def small_blob(client: Client, desc: dict[str, Any], limit: int) -> bytes:
    """A config blob, in memory (bounded), verified against its descriptor."""
    if desc["size"] > limit:
        raise PullError(f"{client.ref.name}: the config blob is {desc['size']} bytes, more than {limit}")
    response = client.get(f"/v2/{client.ref.repository}/blobs/{desc['digest']}")
    if response.status_code != 200:
        raise client.fail(response, f"{client.ref.name}: blob {desc['digest']}")
    data = read_body(response, desc["size"], f"{client.ref.name}: the image config {desc['digest']}",
                     limit_text=f"its descriptor's {desc['size']} bytes")
    _verify("sha256:" + hashlib.sha256(data).hexdigest(), len(data), desc, client.ref.name)
    return data


def blob_to_file(client: Client, desc: dict[str, Any], downloads: Path, report: ProgressFn, *,
                 done: Callable[[], bool]) -> tuple[str, int]:
    """Download one blob to `downloads/<hex>` (resuming a partial download), verified.

    Returns the file's name and the bytes fetched now. `done()` says the layer arrived in the
    store meanwhile (another pull unpacked it): then nothing is fetched.
    """
    digest, size = desc["digest"], desc["size"]
    hex_ = digest.split(":", 1)[1]
    final, partial = downloads / hex_, downloads / f"{hex_}.partial"
    with _blob_lock(partial) as fd:
        if final.exists() or done():
            report(Progress("downloaded", digest=digest, done=size, total=size))
            _unlink_if_empty(partial)
            return hex_, 0
        sha, have = hashlib.sha256(), 0
        with open(fd, "rb", closefd=False) as existing:
            while chunk := existing.read(CHUNK):
                sha.update(chunk)
                have += len(chunk)
        if have > size:
            os.ftruncate(fd, 0)
            sha, have = hashlib.sha256(), 0
        fetched = 0
        if have < size:
            # the blob's bytes as stored (a layer is compressed already): counted against its size as they come
            headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
            response = client.get(f"/v2/{client.ref.repository}/blobs/{digest}", headers=headers)
            try:
                if response.status_code == 200 and have:   # the registry ignored the range: start over
                    os.ftruncate(fd, 0)
                    sha, have = hashlib.sha256(), 0
                elif response.status_code not in (200, 206):
                    raise client.fail(response, f"{client.ref.name}: blob {digest}")
                os.lseek(fd, have, os.SEEK_SET)
                report(Progress("bytes", digest=digest, done=have, total=size))
                length = response.headers.get("content-length", "")
                if length.isdigit() and have + int(length) > size:
                    raise _too_long(client, fd, partial, digest, size)
                for chunk in response.iter_raw():
                    if have + len(chunk) > size:
                        raise _too_long(client, fd, partial, digest, size)
                    _write_all(fd, chunk)
                    sha.update(chunk)
                    have += len(chunk)
                    fetched += len(chunk)
                    report(Progress("bytes", digest=digest, done=have, total=size))
            except httpx.HTTPError as e:
                os.fsync(fd)
                raise PullError(f"{client.ref.name}: the download of blob {digest} broke off after "
                                f"{have} of {size} bytes ({network_error(e)}); the next pull resumes it") from None
            finally:
                response.close()
        os.fsync(fd)
        if have < size:
            raise PullError(f"{client.ref.name}: the registry sent {have} of the {size} bytes of blob {digest}; "
                            "the next pull resumes it")
        got = "sha256:" + sha.hexdigest()
        if got != digest:
            os.ftruncate(fd, 0)
            _unlink_if_empty(partial)
            raise PullError(f"{client.ref.name}: blob {digest} has digest {got}: refusing it")
        os.rename(partial, final)
        report(Progress("downloaded", digest=digest, done=size, total=size))
        return hex_, fetched


def _too_long(client: Client, fd: int, partial: Path, digest: str, size: int) -> PullError:
    """A blob the registry sends more of than its descriptor declares: nothing of it is kept."""
    os.ftruncate(fd, 0)
    _unlink_if_empty(partial)   # under the blob's lock: a waiting pull opens the name again
    return PullError(f"{client.ref.name}: blob {digest} is longer than the {size} bytes its descriptor says: "
                     "refusing it")


def _verify(digest: str, size: int, desc: dict[str, Any], name: str) -> None:
    if digest != desc["digest"]:
        raise PullError(f"{name}: blob {desc['digest']} has digest {digest}: refusing it")
    if size != desc["size"]:
        raise PullError(f"{name}: blob {desc['digest']} is {size} bytes, not {desc['size']}: refusing it")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _blob_lock:
    """Open (creating) a blob's partial file and hold an exclusive flock on it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                named = os.stat(self.path, follow_symlinks=False)
            except FileNotFoundError:
                named = None
            held = os.fstat(fd)
            if named is not None and (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino):
                self.fd = fd
                return fd
            os.close(fd)   # the pull that held it renamed or removed that file: open the name again

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _unlink_if_empty(path: Path) -> None:
    try:
        if path.stat().st_size == 0:
            path.unlink()
    except FileNotFoundError:
        pass
