"""Unpacking one layer blob into a directory, verified against its digests and held to its bounds.

Owns the layer stream: the blob (plain tar, gzip or zstd, told apart by their magic bytes) is read
once, hashed as it is read — the blob's own digest where the format names one, and the diff_id of
the uncompressed tar, trailing padding included — and fed to `layerwriter.LayerWriter` entry by
entry. A pull's layer is held to its `limits.Budget` as it streams. Any digest that does not match,
any damaged stream and any bound passed is an ImageError naming the layer; the caller unpacks
into a fresh directory below `tmp/` and deletes it on failure, so nothing of a refused layer stays.
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Protocol

from kubelite.runtime.images import tarsplit
from kubelite.runtime.images.layerwriter import LayerWriter
from kubelite.runtime.images.limits import BoundedTarInfo, Budget, Exceeded
from kubelite.runtime.images.records import CHUNK, LayerSource
from kubelite.runtime.reference import ImageError, quoted


class _Tap:
    """A read-once stream wrapper: hashes and counts every byte read, can peek, knows if all were zero."""

    def __init__(self, f: IO[bytes] | _Tap | gzip.GzipFile, counted: Callable[[int], None] | None = None,
                 sink: Callable[[bytes], None] | None = None) -> None:
        self._f = f
        self._counted = counted   # told the bytes read so far, after each read (may raise to stop)
        self._sink = sink         # given every byte read, in order (the layer's tar record)
        self._ahead = b""
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.nonzero = False

    def _pull(self, n: int) -> bytes:
        data = self._f.read(n)
        self.sha256.update(data)
        self.size += len(data)
        if self._sink is not None:
            self._sink(data)
        if self._counted is not None:
            self._counted(self.size)
        if not self.nonzero and data.strip(b"\0"):
            self.nonzero = True
        return data

    def peek(self, n: int) -> bytes:
        while len(self._ahead) < n and (data := self._pull(n - len(self._ahead))):
            self._ahead += data
        return self._ahead[:n]

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            data, self._ahead = self._ahead + b"".join(iter(lambda: self._pull(CHUNK), b"")), b""
            return data
        if self._ahead:
            data, self._ahead = self._ahead[:n], self._ahead[n:]
            return data
        return self._pull(n)

    def drain(self) -> None:
        self._ahead = b""
        while self._pull(CHUNK):
            pass


class BlobSource(Protocol):
    """Where layer blobs are read from: an archive's members, or blobs a pull downloaded."""

    @property
    def path(self) -> Path: ...

    def open_member(self, name: str) -> IO[bytes]: ...


@dataclass(frozen=True)
class Downloads:
    """Blobs a pull downloaded and verified, one file each, named by `PulledLayer.blob`."""

    path: Path

    def open_member(self, name: str) -> IO[bytes]:
        return open(self.path / name, "rb")


def unpack_layer(archive: BlobSource, layer: LayerSource, dest: Path, *, label: str | None = None,
                 budget: Budget | None = None, record: Path | None = None) -> int:
    """Unpack one layer blob into `dest` (a fresh directory) and verify its digests; returns its size.
    With `record`, the tar stream's metadata is kept there (`tarsplit`), for `image save`."""
    if label is None:
        label = f"layer {quoted(layer.member)} of {archive.path.name}"
    try:
        return _unpack_verified(archive, layer, dest, label, budget, record)
    except Exceeded as e:
        raise ImageError(f"{label} {e}") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ImageError(f"{label} is damaged or truncated: {e or type(e).__name__}") from None
    except _zstd_errors() as e:
        raise ImageError(f"{label} is damaged or truncated: {e or type(e).__name__}") from None
    except OSError as e:
        if e.errno is None:   # the gzip module's complaints about the data
            raise ImageError(f"{label} is damaged or truncated: {e}") from None
        raise


def _unpack_verified(archive: BlobSource, layer: LayerSource, dest: Path, label: str,
                     budget: Budget | None, record: Path | None) -> int:
    recorder = tarsplit.Recorder(record, budget.file if budget is not None else None) if record is not None else None
    try:
        size = _unpack_recorded(archive, layer, dest, label, budget, recorder)
    finally:
        if recorder is not None:
            recorder.close()
    return size


def _unpack_recorded(archive: BlobSource, layer: LayerSource, dest: Path, label: str,
                     budget: Budget | None, recorder: tarsplit.Recorder | None) -> int:
    sink = recorder.feed if recorder is not None else None
    with archive.open_member(layer.member) as raw:
        blob = _Tap(raw)
        magic = blob.peek(4)
        counted = budget.stream if budget is not None else None
        if magic == _ZSTD_MAGIC:
            tar_stream = _Tap(_zstd_reader(blob), counted, sink)
        else:
            tar_stream = _Tap(gzip.GzipFile(fileobj=blob, mode="rb") if magic[:2] == b"\x1f\x8b" else blob, counted,
                              sink)
        with LayerWriter(dest, label, budget) as writer:
            try:
                with tarfile.open(fileobj=tar_stream, mode="r|", bufsize=CHUNK,  # type: ignore[call-overload]
                                  tarinfo=BoundedTarInfo) as tf:
                    for member in tf:
                        if recorder is not None:
                            recorder.member(member)
                        writer.add(member, tf)
            except tarfile.ReadError:
                if tar_stream.nonzero:
                    raise
                # nothing but zeros, or nothing at all: an empty layer
            tar_stream.drain()   # the padding after the end-of-archive blocks counts in the digest too
            blob.drain()
            writer.finish()
            if recorder is not None:
                recorder.finish()
    if layer.blob_hex is not None and blob.sha256.hexdigest() != layer.blob_hex:
        raise ImageError(f"{label} has digest sha256:{blob.sha256.hexdigest()}, "
                         f"not sha256:{layer.blob_hex} as named: refusing to load")
    if layer.blob_size is not None and blob.size != layer.blob_size:
        raise ImageError(f"{label} is {blob.size} bytes, not {layer.blob_size} as its descriptor says")
    if tar_stream.sha256.hexdigest() != layer.diff_hex:
        raise ImageError(f"{label} unpacks to content with digest sha256:{tar_stream.sha256.hexdigest()}, "
                         f"not the diff_id sha256:{layer.diff_hex} of its image config: refusing to load")
    return writer.size


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _zstd_errors() -> tuple[type[BaseException], ...]:
    try:
        import zstandard
    except ImportError:
        return ()
    return (zstandard.ZstdError,)


def _zstd_reader(blob: _Tap) -> IO[bytes]:
    """A zstd-compressed layer, decompressed as it is read (every frame, as `zstd -d` does)."""
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(blob, read_across_frames=True)  # type: ignore[arg-type]
