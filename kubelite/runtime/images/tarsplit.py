"""A layer's tar stream kept as its metadata, so that `image save` gives back the exact tar it was unpacked from.

Owns the `tarsplit/<diff hex>.gz` file of each layer (the idea of containers/storage's tar-split): while a
layer is unpacked (`unpacking`), `Recorder` sees every byte of its uncompressed tar stream and keeps
all but the contents of regular files — headers (pax and GNU long names included), padding, the
end-of-archive blocks and whatever follows them — together with the place and size of each file's
content and the file's path in the unpacked layer. `LayerStream` reads that back, taking each file's
content from the unpacked layer, and so reproduces the stream byte for byte: its sha256 is the
layer's diff_id again, and the image config (hence the image id) stays the same. A file whose content
cannot be taken from the layer (a sparse file, a whiteout with content) keeps its bytes in the record.

The record is a gzip stream of frames: `M` + 8-byte length + bytes (metadata), `F` + 8-byte size +
4-byte name length + name (a file's content, read from the layer), `E` (the end).

`LayerStream` opens every path one directory at a time without following a symlink, checks each
file's size and hashes what it gives: a layer changed since it was unpacked, or a layer whose tar
named one file twice, fails `check()` instead of giving a tar with another digest.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import struct
import tarfile
from pathlib import Path
from typing import IO, Callable

from kubelite.runtime.reference import ImageError

_META = b"M"
_FILE = b"F"
_END = b"E"
_WHITEOUT = ".wh."                   # becomes a device or an xattr in the layer: its content is not there
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Metadata held before it is written out: past FLUSH_BYTES (a whiteout's or an unknown entry's
#: content, bytes after the end-of-archive blocks), all but the last KEEP_BYTES go to the record.
#: KEEP_BYTES stays above the tar reader's read-ahead (one `records.CHUNK`), so the next entry's
#: content never starts in what was written out already.
FLUSH_BYTES = 8 << 20
KEEP_BYTES = 2 << 20


def entry_parts(name: str) -> tuple[str, ...]:
    """The path components of a tar entry's name in the unpacked layer (as `layerwriter` places it)."""
    return tuple(p for p in name.split("/") if p not in ("", "."))


class Recorder:
    """Keeps a tar stream's metadata as it is read (`feed`), told of each entry as the tar reader finds it
    (`member`, before the entry's content is read)."""

    def __init__(self, path: Path, charge: Callable[[int], None] | None = None) -> None:
        self._out: IO[bytes] = gzip.open(path, "wb", compresslevel=6)
        self._charge = charge      # the layer's disk budget: metadata kept in the record counts too
        self._pos = 0              # the stream offset of _buf[0]
        self._buf = bytearray()    # bytes read but not yet written out or skipped
        self._skip_until = 0       # the end of the last file content taken from the layer

    def feed(self, data: bytes) -> None:
        self._buf += data
        self._drop()
        if self._pos >= self._skip_until and len(self._buf) > FLUSH_BYTES:
            self._meta(len(self._buf) - KEEP_BYTES)

    def member(self, member: tarfile.TarInfo) -> None:
        parts = entry_parts(member.name)
        if not (member.isreg() and member.size > 0 and parts and member.sparse is None
                and not parts[-1].startswith(_WHITEOUT)):
            return   # no content, or content the record keeps itself (a sparse file's, a whiteout's)
        self._meta(member.offset_data - self._pos)
        name = os.fsencode("/".join(parts))
        self._out.write(_FILE + struct.pack(">QI", member.size, len(name)) + name)
        self._skip_until = member.offset_data + member.size
        self._drop()

    def finish(self) -> None:
        """The stream was read to its end (padding included): write the rest and close the record."""
        self._meta(len(self._buf))
        self._out.write(_END)
        self._out.close()

    def close(self) -> None:
        self._out.close()

    def _drop(self) -> None:
        n = min(len(self._buf), self._skip_until - self._pos)
        if n > 0:
            del self._buf[:n]
            self._pos += n

    def _meta(self, n: int) -> None:
        if n <= 0:
            return
        if n > len(self._buf):
            raise ImageError("a layer's tar stream was not read in order")
        if self._charge is not None:
            self._charge(n)
        self._out.write(_META + struct.pack(">Q", n))
        with memoryview(self._buf) as view, view[:n] as part:
            self._out.write(part)
        del self._buf[:n]
        self._pos += n


def _frames(record: IO[bytes]) -> "list[tuple[bytes, int, bytes]]":
    """(kind, length, metadata bytes or file name) of every frame, metadata kept in memory only when
    asked; used to measure a layer before it is streamed."""
    frames = []
    while True:
        kind = record.read(1)
        if kind == _END:
            return frames
        if kind == _META:
            (n,) = struct.unpack(">Q", _exact(record, 8))
            record.seek(n, os.SEEK_CUR)
            frames.append((kind, n, b""))
        elif kind == _FILE:
            size, length = struct.unpack(">QI", _exact(record, 12))
            frames.append((kind, size, _exact(record, length)))
        else:
            raise ImageError("a layer's tar record is damaged")


def _exact(f: IO[bytes], n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ImageError("a layer's tar record is truncated")
    return data


class LayerStream:
    """The exact tar stream of an unpacked layer, from its record: a readable binary stream of `size` bytes."""

    def __init__(self, record: Path, layer_dir: Path, diff_hex: str) -> None:
        self.diff_hex = diff_hex
        self._layer_dir = layer_dir
        try:
            self._record: IO[bytes] = gzip.open(record, "rb")
        except FileNotFoundError:
            raise ImageError(f"layer sha256:{diff_hex} has no tar record (it was stored by an older kubelite): "
                             "load or pull the image again to save it") from None
        try:
            frames = _frames(self._record)
        except (OSError, EOFError) as e:
            self._record.close()
            raise ImageError(f"the tar record of layer sha256:{diff_hex} is damaged: {e}") from None
        self.size = sum(n for _, n, _ in frames)
        self._record.seek(0)
        self._sha256 = hashlib.sha256()
        self._pending = b""
        self._file: IO[bytes] | None = None
        self._left = 0            # bytes still to give of the current frame
        self._kind = b""
        self._done = False

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while (n < 0 or len(out) < n) and not self._done:
            if self._left == 0:
                self._next_frame()
                continue
            want = self._left if n < 0 else min(self._left, n - len(out), 1 << 20)
            source = self._record if self._kind == _META else self._file
            assert source is not None
            data = source.read(want)
            if not data:
                raise ImageError(f"layer sha256:{self.diff_hex}: a file of the layer is shorter than its tar entry")
            self._left -= len(data)
            out += data
            if self._left == 0 and self._file is not None:
                self._file.close()
                self._file = None
        self._sha256.update(out)
        return bytes(out)

    def _next_frame(self) -> None:
        kind = self._record.read(1)
        if kind == _END:
            self._done = True
        elif kind == _META:
            (self._left,) = struct.unpack(">Q", _exact(self._record, 8))
            self._kind = kind
        elif kind == _FILE:
            size, length = struct.unpack(">QI", _exact(self._record, 12))
            name = _exact(self._record, length)
            self._file = self._open(name, size)
            self._left, self._kind = size, kind
        else:
            raise ImageError(f"the tar record of layer sha256:{self.diff_hex} is damaged")

    def _open(self, name: bytes, size: int) -> IO[bytes]:
        parts = os.fsdecode(name).split("/")
        fd = os.open(self._layer_dir, _OPEN_DIR)
        try:
            for part in parts[:-1]:
                child = os.open(part, _OPEN_DIR, dir_fd=fd)
                os.close(fd)
                fd = child
            # O_NONBLOCK: a FIFO where the tar had a file (named twice) opens at once, and is refused below
            file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
        except OSError as e:
            raise ImageError(f"layer sha256:{self.diff_hex}: {os.fsdecode(name)} cannot be read from the unpacked "
                             f"layer ({e.strerror})") from None
        finally:
            os.close(fd)
        st = os.fstat(file_fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            os.close(file_fd)
            raise ImageError(f"layer sha256:{self.diff_hex}: {os.fsdecode(name)} is not the file the layer's tar "
                             "held (the tar named it twice, or the layer changed)")
        return open(file_fd, "rb")

    def check(self) -> None:
        """After the whole stream was read: ImageError unless it has the layer's diff_id."""
        got = self._sha256.hexdigest()
        if got != self.diff_hex:
            raise ImageError(f"layer sha256:{self.diff_hex} could not be reproduced (its tar came out as sha256:{got})")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._record.close()

    def __enter__(self) -> LayerStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
