"""The bounds on what one layer may take while it is unpacked (the image store's hardening).

Owns `UnpackLimits` (`--image-max-layer-size`, and the image GC high threshold as a ceiling on the
image filesystem's fill), `Budget`, which counts a layer's bytes against them as it is unpacked,
and `BoundedTarInfo`, which refuses a tar header record (pax, GNU long name) larger than 1 MiB
before tarfile reads it into memory whole, as Go's archive/tar does. A bound passed raises
`Exceeded`; the unpacker turns it into an ImageError naming the layer. Reads the filesystem's usage
only through the callable it is given.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from typing import Callable

#: The default `--image-max-layer-size`: far beyond any real layer (the largest, of CUDA and model
#: images, are tens of GiB uncompressed), still short of filling a node's disk by accident.
DEFAULT_MAX_LAYER_BYTES = 64 << 30
#: tar header records (pax headers, GNU long names) larger than this are refused (Go's archive/tar bound).
_TAR_RECORD_MAX = 1 << 20
#: Unpacked bytes between two looks at the image filesystem's usage (every file of 1 MiB or more is looked at).
_SPACE_STEP = 8 << 20


@dataclass(frozen=True)
class UnpackLimits:
    """What one pulled layer may take: bytes once uncompressed, and the image filesystem's fill."""

    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES   # its tar, and the files it writes (sparse ones in full)
    gc_high_percent: int | None = None               # no file may take the filesystem past this (None: no check)


def format_size(n: int) -> str:
    """A size as a Kubernetes quantity, as the flag takes it: 64Gi, 512Mi, 1000."""
    for suffix, shift in (("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{suffix}"
    return str(n)


class Exceeded(Exception):
    """A layer went past a bound while unpacking (the message says which); becomes an ImageError with its label."""


class Budget:
    """Counts what a layer unpacks against its `UnpackLimits`; raises Exceeded at the first byte too many."""

    def __init__(self, limits: UnpackLimits, usage: Callable[[], tuple[int, int]]) -> None:
        self.limits, self.usage = limits, usage
        self.written = 0
        self.unchecked = 0
        self.looked = False

    def too_large(self) -> Exceeded:
        return Exceeded(f"unpacks to more than {format_size(self.limits.max_layer_bytes)} "
                        "(--image-max-layer-size): refusing it")

    def stream(self, size: int) -> None:
        """The uncompressed tar has reached `size` bytes."""
        if size > self.limits.max_layer_bytes:
            raise self.too_large()

    def file(self, size: int) -> None:
        """A file of `size` bytes is about to be written."""
        self.written += size
        if self.written > self.limits.max_layer_bytes:
            raise self.too_large()
        high = self.limits.gc_high_percent
        if high is None:
            return
        self.unchecked += size
        if self.looked and size < 1 << 20 and self.unchecked < _SPACE_STEP:
            return
        self.looked, self.unchecked = True, 0
        used, total = self.usage()
        if total > 0 and (used + size) * 100 > high * total:
            raise Exceeded(f"would fill the image filesystem past {high}% (--image-gc-high-threshold): "
                           f"{(used + size) * 100 // total}% with this layer; free space or raise the threshold")


class BoundedTarInfo(tarfile.TarInfo):
    """tarfile's TarInfo, refusing a header record (pax, GNU long name) that would be read into memory whole
    when it is larger than `_TAR_RECORD_MAX`."""

    _RECORDS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                tarfile.GNUTYPE_LONGLINK)

    def _proc_member(self, tf: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        if self.type in self._RECORDS and self.size > _TAR_RECORD_MAX:
            raise Exceeded(f"has a tar header record of {self.size} bytes, more than {_TAR_RECORD_MAX}: refusing it")
        return super()._proc_member(tf)  # type: ignore[misc]
