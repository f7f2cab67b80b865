"""The local image store: images loaded from archives, each layer unpacked once, ready for overlayfs.

Owns `<root>/images/`: reading `docker save` archives (the classic form and Docker 25's form with an
OCI layout inside) and OCI image-layout archives, plain or compressed; verifying every blob against
its digest; unpacking layers safely; the reference → image index; removing images together with the
layers no other image uses. Images arrive as archives (`kubelite image load`;
`scripts/build-busybox-image` makes one from Debian's busybox-static) or from a registry
(`registry` fetches the blobs and hands them to `add_pulled`). It does not mount anything:
`layer_dirs()` gives the runtime the directories for overlayfs `lowerdir`.

On disk (every metadata write is atomic, 0600, by `statefiles.write_atomic`: a temp file beside it,
fsync, rename, fsync of the dir):

    <root>/images/
        index.json          {"version": 1,
                             "references": {"docker.io/library/busybox:latest": "sha256:<id>", …},
                             "images": {"sha256:<id>": {"size": <bytes>}, …},   # tagged or not
                             "layers": {"<hex>": <bytes>, …}}
        configs/<hex>.json  the image config blob, byte for byte; its sha256 is the image id
        layers/<hex>/       one unpacked layer tree per diff_id (sha256 of the uncompressed tar),
                            shared by every image that has it; whiteouts in overlayfs form
        tmp/                layers being unpacked, layers being deleted
        .lock               flock taken by load and remove (readers never lock)

A load unpacks and verifies every new layer below `tmp/` first; only when all of them are complete
and verified are they renamed into `layers/`, then the configs are written and, last, the index.
A load that fails, or a crash at any point, leaves the index as it was; whatever is in `tmp/` when
a load or remove starts is left over from a crash and deleted, and so are layers and configs that
no image in the index uses.

Unpacking never trusts the layer: no entry may leave the layer directory (absolute names, `..`,
entries below a symlink, hard links to anything but a file of the same layer are refused and the
whole load with them), no symlink is ever followed (every file is created relative to a directory
fd opened with O_NOFOLLOW), device nodes are skipped, modes and numeric owners are kept exactly as
the tar says. Whiteouts become what overlayfs expects from a lower layer: `.wh.NAME` → a 0/0
character device NAME, `.wh..wh..opq` → the xattr `trusted.overlay.opaque=y` on its directory.
Of the tar's xattrs only `user.*` and `security.capability` are applied (never `trusted.*`, nor
`user.overlay.*`, which a layer could use to steer overlayfs). A tar header record (pax, GNU long
name) larger than 1 MiB is refused before it is read, as Go's archive/tar does: tarfile would
hold it in memory whole.

A pulled layer is bounded (`UnpackLimits`): its uncompressed tar and the files it writes may not
exceed `max_layer_bytes` (`--image-max-layer-size`), and no file of it may take the image
filesystem past the image GC high threshold; either fails the pull while unpacking, below `tmp/`,
so nothing of it stays.
"""

from __future__ import annotations

import builtins
import ctypes
import errno
import fcntl
import gzip
import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
import time
import uuid
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Protocol

import kubelite.statefiles as statefiles
from kubelite.errors import ImageError
from kubelite.runtime.reference import DIGEST_RE as _DIGEST_RE
from kubelite.runtime.reference import HEX_RE as _HEX_RE
from kubelite.runtime.reference import normalize_reference
from kubelite.runtime.reference import shown as _show

# ---------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ImageConfig:
    """What an image asks of the container that runs it (the "config" object of the image config)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()          # "KEY=value" strings
    working_dir: str = ""
    user: str = ""
    stop_signal: str | None = None


@dataclass(frozen=True)
class Image:
    """One image in the store."""

    id: str                      # "sha256:<hex>" of the config blob
    names: tuple[str, ...]       # normalized references, sorted
    config: ImageConfig
    layers: tuple[str, ...]      # diff_ids ("sha256:<hex>" of each uncompressed layer tar), bottom first
    size: int                    # bytes of the unpacked layers (each distinct layer counted once)
    created: str | None          # from the config, if present


# ------------------------------------------------------------------------------------- references

#: The store's own id forms; references are normalized by `reference` (pure).
_ID_PREFIX_RE = re.compile(r"(sha256:)?([a-f0-9]{12,64})")


# ------------------------------------------------------------------------------------------ store

_INDEX_VERSION = 1
#: The default `--image-max-layer-size`: far beyond any real layer (the largest, of CUDA and model
#: images, are tens of GiB uncompressed), still short of filling a node's disk by accident.
DEFAULT_MAX_LAYER_BYTES = 64 << 30
#: tar header records (pax headers, GNU long names) larger than this are refused (Go's archive/tar bound).
_TAR_RECORD_MAX = 1 << 20
#: Unpacked bytes between two looks at the image filesystem's usage (every file of 1 MiB or more is looked at).
_SPACE_STEP = 8 << 20
_JSON_MAX = 16 << 20                 # manifests and configs larger than this are refused
_CHUNK = 1 << 20

_MEDIA_INDEX = {"application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json"}
_MEDIA_MANIFEST = {"application/vnd.oci.image.manifest.v1+json",
                   "application/vnd.docker.distribution.manifest.v2+json"}
_ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
_ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass
class _Index:
    references: dict[str, str] = field(default_factory=dict)    # normalized reference → image id
    images: dict[str, int] = field(default_factory=dict)        # image id → size
    layers: dict[str, int] = field(default_factory=dict)        # layer hex → size

    def to_json(self) -> dict[str, Any]:
        return {"version": _INDEX_VERSION, "references": self.references,
                "images": {i: {"size": s} for i, s in self.images.items()}, "layers": self.layers}


@dataclass(frozen=True)
class PulledLayer:
    """One layer blob a pull downloaded and verified: `blob` is its file name in the downloads dir."""

    digest: str       # "sha256:<hex>" of the blob as the registry serves it (compressed or not)
    size: int
    blob: str


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


class _Exceeded(Exception):
    """A layer went past a bound while unpacking (the message says which); becomes an ImageError with its label."""


class _Budget:
    """Counts what a layer unpacks against its `UnpackLimits`; raises _Exceeded at the first byte too many."""

    def __init__(self, limits: UnpackLimits, usage: Callable[[], tuple[int, int]]) -> None:
        self.limits, self.usage = limits, usage
        self.written = 0
        self.unchecked = 0
        self.looked = False

    def too_large(self) -> _Exceeded:
        return _Exceeded(f"unpacks to more than {format_size(self.limits.max_layer_bytes)} "
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
            raise _Exceeded(f"would fill the image filesystem past {high}% (--image-gc-high-threshold): "
                            f"{(used + size) * 100 // total}% with this layer; free space or raise the threshold")


class _TarInfo(tarfile.TarInfo):
    """tarfile's TarInfo, refusing a header record (pax, GNU long name) that would be read into memory whole
    when it is larger than `_TAR_RECORD_MAX`."""

    _RECORDS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                tarfile.GNUTYPE_LONGLINK)

    def _proc_member(self, tf: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        if self.type in self._RECORDS and self.size > _TAR_RECORD_MAX:
            raise _Exceeded(f"has a tar header record of {self.size} bytes, more than {_TAR_RECORD_MAX}: refusing it")
        return super()._proc_member(tf)  # type: ignore[misc]


@dataclass
class _LayerSource:
    diff_hex: str                 # the layer's diff_id (from the config), names its directory
    member: str                   # where its blob is inside the archive
    blob_hex: str | None = None   # the sha256 the blob itself must have, where the format names one
    blob_size: int | None = None


@dataclass
class _ImagePlan:
    image_id: str
    config_bytes: bytes
    layers: list[_LayerSource]
    names: list[str] = field(default_factory=list)


@dataclass
class _Parsed:
    """An image config, parsed once (configs are immutable: cached by id)."""

    config: ImageConfig
    diff_hexes: tuple[str, ...]
    created: str | None


class ImageStore:
    """The image store below `<root>/images`. Loads and removes are serialized by a file lock."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._dir = self.root / "images"
        self._parsed: dict[str, _Parsed] = {}

    # ---------------------------------------------------------------------- paths

    @property
    def _layers_dir(self) -> Path:
        return self._dir / "layers"

    @property
    def _configs_dir(self) -> Path:
        return self._dir / "configs"

    @property
    def _tmp_dir(self) -> Path:
        return self._dir / "tmp"

    @property
    def _index_path(self) -> Path:
        return self._dir / "index.json"

    # ---------------------------------------------------------------------- reading

    def list(self) -> builtins.list[Image]:
        """Every image, tagged ones first (by name), then untagged ones (by id)."""
        index = self._read_index()
        images = [image for image_id in index.images if (image := self._image(image_id, index)) is not None]
        return sorted(images, key=lambda i: (not i.names, i.names, i.id))

    def get(self, ref: str) -> Image | None:
        """The image a reference names, or an id ("sha256:<hex>", hex) or a unique id prefix of ≥ 12 hex.

        None when nothing (or more than one image, for a prefix) matches; ImageError when `ref`
        is neither a valid reference nor an id.
        """
        index = self._read_index()
        ids, _ = self._match(ref, index)
        return self._image(ids[0], index) if len(ids) == 1 else None

    def layer_dirs(self, image: Image) -> builtins.list[Path]:
        """The unpacked layer directories of `image`, bottom first (reverse them for overlayfs lowerdir)."""
        dirs = []
        for digest in image.layers:
            path = self._layers_dir / _hex_of(digest, what="layer digest")
            if not path.is_dir():
                raise ImageError(f"layer {digest} of image {image.id} is not in the image store")
            dirs.append(path)
        return dirs

    # ---------------------------------------------------------------------- writing

    def load(self, archive: Path) -> builtins.list[Image]:
        """Load every image of a `docker save` or OCI image-layout archive; returns them as now stored.

        All or nothing: any unreadable, unverifiable or unsafe part refuses the whole archive and
        leaves the store as it was. Names already pointing at another image move to the new one
        (the old image stays, untagged). Loading an archive again changes nothing.
        """
        archive = Path(archive)
        if not archive.is_file():
            raise ImageError(f"cannot load {archive}: no such file")
        with self._locked():
            index = self._read_index()
            self._delete_unused(index)   # left by a load that crashed before writing the index
            unpacked: dict[str, tuple[Path, int]] = {}
            try:
                with _Archive.open(archive) as source:
                    plans = _plan(source)
                    for plan in plans:
                        for layer in plan.layers:
                            if layer.diff_hex in unpacked or (self._layers_dir / layer.diff_hex).is_dir():
                                continue
                            dest = self._new_tmp(f"layer-{layer.diff_hex[:12]}-")
                            unpacked[layer.diff_hex] = (dest, 0)
                            unpacked[layer.diff_hex] = (dest, _unpack_layer(source, layer, dest))
                self._commit(plans, unpacked, index)
            except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
                raise ImageError(f"cannot load {archive}: {_describe(e)}") from e
            finally:
                for dest, _ in unpacked.values():
                    if dest.exists():
                        shutil.rmtree(dest, ignore_errors=True)
            loaded = list(dict.fromkeys(plan.image_id for plan in plans))
            return [image for i in loaded if (image := self._image(i, index)) is not None]

    def remove(self, ref: str) -> Image:
        """Untag `ref`; an image left with no tag (only digest references, or named by its id) is deleted,
        and with it every layer no other image uses. Returns the image as it was. ImageError when absent or
        ambiguous."""
        if not self._dir.is_dir():
            raise ImageError(f"no such image: {ref}")
        with self._locked():
            index = self._read_index()
            ids, by_name = self._match(ref, index)
            if not ids:
                raise ImageError(f"no such image: {ref}")
            if len(ids) > 1:
                raise ImageError(f"{ref} matches {len(ids)} images: give more of the id")
            image = self._image(ids[0], index)
            if image is None:
                raise ImageError(f"image {ids[0]} has no config in the store: the store is damaged")
            if by_name is not None:
                del index.references[by_name]
            tags_left = [r for r, i in index.references.items() if i == image.id and "@" not in r]
            if by_name is None or not tags_left:   # digest references alone (a pull's) do not keep an image
                index.references = {r: i for r, i in index.references.items() if i != image.id}
                del index.images[image.id]
            self._prune(index)
            self._write_index(index)   # first the index, then the files: a crash leaves only garbage
            self._delete_unused(index)
            return image

    # ---------------------------------------------------------------------- pulls

    @property
    def downloads_dir(self) -> Path:
        """Where pulls keep blobs while they download (`<hex>.partial`) and once verified (`<hex>`)."""
        return self._dir / "downloads"

    def has_layer(self, diff_id: str) -> bool:
        """True when the layer with this diff_id is unpacked (so a pull need not fetch its blob)."""
        return (self._layers_dir / _hex_of(diff_id, what="layer digest")).is_dir()

    def has_config(self, image_id: str) -> bool:
        return (self._configs_dir / f"{_hex_of(image_id, what='image id')}.json").is_file()

    def tag(self, image_id: str, names: builtins.list[str]) -> Image:
        """Point `names` at an image already in the store (a pull that found nothing new to fetch)."""
        with self._locked():
            index = self._read_index()
            if image_id not in index.images:
                raise ImageError(f"image {image_id} is not in the store")
            for name in names:
                index.references[normalize_reference(name)] = image_id
            self._write_index(index)
            self.touch(image_id)
            image = self._image(image_id, index)
        assert image is not None
        return image

    def add_pulled(self, *, config_bytes: bytes, layers: builtins.list[PulledLayer], names: builtins.list[str],
                   downloads: Path, limits: UnpackLimits | None = None) -> Image:
        """Store an image whose blobs a pull downloaded into `downloads`, all or nothing, as `load` does.

        Every layer not yet in the store is unpacked below `tmp/` and verified (its blob digest and
        its diff_id) before any of them is renamed into view; then the config, then the index. A
        layer that goes past `limits` fails the whole image, as a damaged one does.
        """
        limits = limits or UnpackLimits()
        image_id = f"sha256:{hashlib.sha256(config_bytes).hexdigest()}"
        parsed = _parse_config(config_bytes, what=f"config of image {image_id}")
        if len(layers) != len(parsed.diff_hexes):
            raise ImageError(f"image {image_id}: the manifest lists {len(layers)} layers "
                             f"but the config has {len(parsed.diff_hexes)} diff_ids")
        # each blob was hashed and checked against its digest as it was downloaded (into a directory of
        # ours); unpacking checks what it unpacks against the diff_ids of the (verified) config
        sources = [_LayerSource(diff_hex=diff_hex, member=layer.blob)
                   for diff_hex, layer in zip(parsed.diff_hexes, layers)]
        plan = _ImagePlan(image_id=image_id, config_bytes=config_bytes, layers=sources,
                          names=[normalize_reference(n) for n in names])
        with self._locked():
            index = self._read_index()
            self._delete_unused(index)
            unpacked: dict[str, tuple[Path, int]] = {}
            try:
                for layer in sources:
                    if layer.diff_hex in unpacked or (self._layers_dir / layer.diff_hex).is_dir():
                        continue
                    if not layer.member:
                        raise ImageError(f"layer sha256:{layer.diff_hex} was removed from the store during the pull "
                                         "(image garbage collection?): pull again")
                    dest = self._new_tmp(f"layer-{layer.diff_hex[:12]}-")
                    unpacked[layer.diff_hex] = (dest, 0)
                    label = f"layer sha256:{layer.diff_hex} of {plan.names[0] if plan.names else image_id}"
                    size = _unpack_layer(_Downloads(downloads), layer, dest, label=label,
                                         budget=_Budget(limits, self.disk_usage))
                    unpacked[layer.diff_hex] = (dest, size)
                self._commit([plan], unpacked, index)
            finally:
                for dest, _ in unpacked.values():
                    if dest.exists():
                        shutil.rmtree(dest, ignore_errors=True)
            self.touch(image_id)
            image = self._image(image_id, index)
        assert image is not None
        return image

    # ---------------------------------------------------------------------- garbage collection

    def touch(self, image_id: str) -> None:
        """Record that the image was used now (its config file's mtime: the image GC removes the least
        recently used first)."""
        try:
            os.utime(self._configs_dir / f"{_hex_of(image_id, what='image id')}.json")
        except FileNotFoundError:
            pass

    def last_used(self, image: Image) -> float:
        try:
            return (self._configs_dir / f"{_hex_of(image.id, what='image id')}.json").stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def disk_usage(self) -> tuple[int, int]:
        """(bytes used, bytes total) of the filesystem that holds the image store."""
        statefiles.make_dirs(self._dir, base=self.root)
        st = os.statvfs(self._dir)
        total = st.f_blocks * st.f_frsize
        return total - st.f_bfree * st.f_frsize, total

    def collect_garbage(self, *, in_use: set[str], high_percent: int, low_percent: int,
                        usage: Callable[[], tuple[int, int]] | None = None) -> builtins.list[Image]:
        """The kubelet's image GC: when the filesystem is more than `high_percent` full, delete images
        no container uses (`in_use`: image ids), least recently used first, until usage would be at
        `low_percent`. Returns the images deleted.
        """
        usage = usage or self.disk_usage
        used, total = usage()
        if total <= 0 or used * 100 < high_percent * total:
            return []
        to_free = used - total * low_percent // 100
        victims = sorted((i for i in self.list() if i.id not in in_use), key=self.last_used)
        removed: builtins.list[Image] = []
        for image in victims:
            if to_free <= 0:
                break
            freed = self._remove_image(image.id, in_use=in_use)
            if freed is None:
                continue
            removed.append(image)
            to_free -= freed
        return removed

    def prune_downloads(self, *, older_than_s: float, now: float | None = None) -> builtins.list[str]:
        """Delete downloads no pull has touched for `older_than_s` (a pull that was given up on); a
        download a pull is writing (its flock held) is left alone. Returns the names deleted."""
        if not self.downloads_dir.is_dir():
            return []
        now = time.time() if now is None else now
        deleted = []
        for path in self.downloads_dir.iterdir():
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

    def _remove_image(self, image_id: str, *, in_use: set[str]) -> int | None:
        """Delete one image and its names, and the layers no other image uses; the bytes freed."""
        with self._locked():
            index = self._read_index()
            if image_id not in index.images or image_id in in_use:
                return None
            before = dict(index.layers)
            index.references = {r: i for r, i in index.references.items() if i != image_id}
            del index.images[image_id]
            self._prune(index)
            self._write_index(index)
            self._delete_unused(index)
            return sum(size for h, size in before.items() if h not in index.layers)

    # ---------------------------------------------------------------------- internals

    def _match(self, ref: str, index: _Index) -> tuple[builtins.list[str], str | None]:
        """The image ids `ref` may mean, and the reference it matched by name (None: matched by id)."""
        id_form = _ID_PREFIX_RE.fullmatch(ref)
        by_id = [i for i in index.images if id_form and i[7:].startswith(id_form.group(2))]
        if id_form and (id_form.group(1) or len(id_form.group(2)) == 64):
            return by_id, None
        try:
            name = normalize_reference(ref)
        except ImageError:
            if id_form:
                return by_id, None
            raise
        if name in index.references:
            return [index.references[name]], name
        return by_id, None

    def _image(self, image_id: str, index: _Index) -> Image | None:
        parsed = self._parse_config(image_id)
        if parsed is None:
            return None
        names = tuple(sorted(r for r, i in index.references.items() if i == image_id))
        return Image(id=image_id, names=names, config=parsed.config,
                     layers=tuple(f"sha256:{h}" for h in parsed.diff_hexes),
                     size=index.images.get(image_id, 0), created=parsed.created)

    def _parse_config(self, image_id: str) -> _Parsed | None:
        if image_id not in self._parsed:
            try:
                data = (self._configs_dir / f"{_hex_of(image_id, what='image id')}.json").read_bytes()
            except FileNotFoundError:
                return None   # removed since the index was read
            self._parsed[image_id] = _parse_config(data, what=f"config of image {image_id}")
        return self._parsed[image_id]

    def _read_index(self) -> _Index:
        try:
            raw = json.loads(self._index_path.read_bytes())
        except FileNotFoundError:
            return _Index()
        except ValueError as e:
            raise ImageError(f"the image index {self._index_path} is damaged: {e}") from e
        try:
            if raw.get("version") != _INDEX_VERSION:
                raise ImageError(f"the image index {self._index_path} has unknown version {raw.get('version')!r}")
            index = _Index(references={str(r): str(i) for r, i in raw["references"].items()},
                           images={str(i): int(v["size"]) for i, v in raw["images"].items()},
                           layers={str(h): int(s) for h, s in raw["layers"].items()})
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise ImageError(f"the image index {self._index_path} is damaged: {e!r}") from e
        for image_id in [*index.images, *index.references.values()]:
            _hex_of(image_id, what=f"image id in {self._index_path}")
        for h in index.layers:
            if not _HEX_RE.fullmatch(h):
                raise ImageError(f"the image index {self._index_path} is damaged: layer {h!r}")
        return index

    @contextmanager
    def _locked(self) -> Iterator[None]:
        for d in (self._layers_dir, self._configs_dir, self._tmp_dir):   # half-unpacked layers: nobody's business
            statefiles.make_dirs(d, base=self.root)
        fd = os.open(self._dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            for stale in self._tmp_dir.iterdir():   # nobody else holds the lock: left by a crash
                _delete(stale)
            yield
        finally:
            os.close(fd)

    def _new_tmp(self, prefix: str) -> Path:
        path = self._tmp_dir / f"{prefix}{uuid.uuid4().hex[:12]}"
        path.mkdir(mode=0o700)
        return path

    def _commit(self, plans: builtins.list[_ImagePlan], unpacked: dict[str, tuple[Path, int]],
                index: _Index) -> None:
        """Make a verified load visible: layers, then configs, then (last) the index."""
        if unpacked:
            _syncfs(self._tmp_dir)
        for diff_hex, (dest, size) in unpacked.items():
            os.rename(dest, self._layers_dir / diff_hex)
            index.layers[diff_hex] = size
        _fsync_dir(self._layers_dir)
        for plan in plans:
            config_path = self._configs_dir / f"{_hex_of(plan.image_id, what='image id')}.json"
            if not config_path.exists():
                statefiles.write_atomic(config_path, plan.config_bytes, fsync=True)
            for diff_hex in {layer.diff_hex for layer in plan.layers}:
                if diff_hex not in index.layers:
                    index.layers[diff_hex] = _measure(self._layers_dir / diff_hex)
            index.images[plan.image_id] = sum(index.layers[h] for h in {layer.diff_hex for layer in plan.layers})
            for name in plan.names:
                index.references[name] = plan.image_id
        self._write_index(index)

    def _prune(self, index: _Index) -> set[str]:
        """Drop from the index the layer sizes of layers no image uses; returns the layers in use."""
        used: set[str] = set()
        for image_id in index.images:
            parsed = self._parse_config(image_id)
            if parsed is None:
                raise ImageError(f"image {image_id} has no config in {self._configs_dir}: the store is damaged")
            used.update(parsed.diff_hexes)
        index.layers = {h: s for h, s in index.layers.items() if h in used}
        return used

    def _delete_unused(self, index: _Index) -> None:
        """Delete the layer directories and configs that no image of `index` (as on disk) uses."""
        used = self._prune(index)
        configs = {f"{_hex_of(i, what='image id')}.json" for i in index.images}
        for path in self._layers_dir.iterdir():
            if path.name not in used:
                self._discard(path)
        for path in self._configs_dir.iterdir():
            if path.name not in configs:
                self._discard(path)

    def _discard(self, path: Path) -> None:
        """Delete a file or tree: renamed into tmp/ first, so it disappears at once and a crash
        halfway through the deletion leaves nothing half-deleted in view."""
        doomed = self._tmp_dir / f"gc-{uuid.uuid4().hex[:12]}"
        os.rename(path, doomed)
        _delete(doomed)

    def _write_index(self, index: _Index) -> None:
        data = json.dumps(index.to_json(), indent=2, sort_keys=True).encode() + b"\n"
        statefiles.write_atomic(self._index_path, data, fsync=True)


# ----------------------------------------------------------------------------------- archives


class _Archive:
    """An image archive (a tar, maybe compressed), read by member name; links inside it followed."""

    def __init__(self, path: Path, tf: tarfile.TarFile) -> None:
        self.path = path
        self._tf = tf
        self._members: dict[str, tarfile.TarInfo] = {}
        for member in tf:
            if key := _archive_key(member.name):
                self._members[key] = member

    @classmethod
    @contextmanager
    def open(cls, path: Path) -> Iterator[_Archive]:
        try:
            tf = tarfile.open(path, "r:*")
        except FileNotFoundError:
            raise ImageError(f"cannot load {path}: no such file") from None
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise ImageError(f"cannot load {path}: not a tar archive (plain, gzip, bzip2 or xz): {_describe(e)}") \
                from None
        with tf:
            yield cls(path, tf)

    def has(self, name: str) -> bool:
        return _archive_key(name) in self._members

    def open_member(self, name: str) -> IO[bytes]:
        member = self._resolve(name)
        f = self._tf.extractfile(member)
        assert f is not None  # a regular member always has a file object
        return f

    def read(self, name: str) -> bytes:
        member = self._resolve(name)
        if member.size > _JSON_MAX:
            raise ImageError(f"{self.path.name}: {_show(name)} is {member.size} bytes, too large for metadata")
        with self.open_member(name) as f:
            data = f.read()
        if len(data) != member.size:
            raise ImageError(f"{self.path.name}: {_show(name)} is truncated")
        return data

    def read_json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except ValueError as e:
            raise ImageError(f"{self.path.name}: {_show(name)} is not valid JSON ({e})") from None

    def _resolve(self, name: str) -> tarfile.TarInfo:
        key = _archive_key(name)
        for _ in range(16):
            member = self._members.get(key)
            if member is None:
                raise ImageError(f"{self.path.name} has no {_show(name)}")
            if member.isreg():
                return member
            if member.issym():
                key = _archive_key(posixpath.join(posixpath.dirname(key), member.linkname))
            elif member.islnk():
                key = _archive_key(member.linkname)
            else:
                raise ImageError(f"{self.path.name}: {_show(name)} is not a file")
        raise ImageError(f"{self.path.name}: {_show(name)} is a chain of too many links")


def _archive_key(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def _plan(archive: _Archive) -> list[_ImagePlan]:
    """What the archive holds: one plan per image (images named twice are merged)."""
    if archive.has("manifest.json"):
        plans = _plan_docker_save(archive)
    elif archive.has("index.json") and archive.has("oci-layout"):
        plans = _plan_oci_layout(archive)
    else:
        raise ImageError(f"{archive.path}: neither a `docker save` archive (manifest.json) "
                         "nor an OCI image layout (oci-layout, index.json)")
    merged: dict[str, _ImagePlan] = {}
    for plan in plans:
        if plan.image_id in merged:
            merged[plan.image_id].names.extend(n for n in plan.names if n not in merged[plan.image_id].names)
        else:
            merged[plan.image_id] = plan
    if not merged:
        raise ImageError(f"{archive.path} holds no image")
    return list(merged.values())


def _plan_docker_save(archive: _Archive) -> list[_ImagePlan]:
    manifest = archive.read_json("manifest.json")
    if not isinstance(manifest, list):
        raise ImageError(f"{archive.path.name}: manifest.json is not a list")
    plans = []
    for entry in manifest:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list):
            raise ImageError(f"{archive.path.name}: manifest.json entry without Config and Layers")
        config_name: str = entry["Config"]
        config_bytes = archive.read(config_name)
        image_hex = hashlib.sha256(config_bytes).hexdigest()
        named = _hex_in_name(config_name)
        if named is not None and named != image_hex:
            raise ImageError(f"{archive.path.name}: config {_show(config_name)} has digest sha256:{image_hex}: "
                             "it does not match its name, refusing to load")
        parsed = _parse_config(config_bytes, what=f"config {config_name}")
        layer_names = entry["Layers"]
        if len(layer_names) != len(parsed.diff_hexes) or not all(isinstance(n, str) for n in layer_names):
            raise ImageError(f"{archive.path.name}: image {config_name} lists {len(layer_names)} layers "
                             f"but its config has {len(parsed.diff_hexes)} diff_ids")
        layers = [_LayerSource(diff_hex=d, member=n, blob_hex=_hex_in_name(n))
                  for n, d in zip(layer_names, parsed.diff_hexes)]
        names = [normalize_reference(t) for t in entry.get("RepoTags") or []]
        plans.append(_ImagePlan(image_id=f"sha256:{image_hex}", config_bytes=config_bytes, layers=layers,
                                names=names))
    return plans


def _hex_in_name(name: str) -> str | None:
    """The digest a docker-save member name carries: "<hex>.json" or "blobs/sha256/<hex>"."""
    key = _archive_key(name)
    if m := re.fullmatch(r"blobs/sha256/([a-f0-9]{64})", key):
        return m.group(1)
    if m := re.fullmatch(r"([a-f0-9]{64})\.json", key):
        return m.group(1)
    return None


def _plan_oci_layout(archive: _Archive) -> list[_ImagePlan]:
    layout = archive.read_json("oci-layout")
    if not isinstance(layout, dict) or "imageLayoutVersion" not in layout:
        raise ImageError(f"{archive.path.name}: oci-layout has no imageLayoutVersion")
    index = archive.read_json("index.json")
    descriptors = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(descriptors, list):
        raise ImageError(f"{archive.path.name}: index.json has no manifests")
    arch = host_architecture()

    def for_this_machine(desc: Any) -> bool:
        platform = desc.get("platform") if isinstance(desc, dict) else None
        return not isinstance(platform, dict) or (platform.get("os") in (None, "linux")
                                                  and platform.get("architecture") in (None, arch))

    if any(for_this_machine(desc) for desc in descriptors):   # one name, several architectures: ours only
        descriptors = [desc for desc in descriptors if for_this_machine(desc)]
    plans = []
    for desc in descriptors:
        manifest = _select_manifest(archive, desc, depth=0)
        if manifest is None:
            continue
        names = _names_from_annotations(desc.get("annotations"))
        plans.append(_plan_oci_manifest(archive, manifest, names))
    return plans


def _select_manifest(archive: _Archive, desc: Any, *, depth: int) -> dict[str, Any] | None:
    """The image manifest a descriptor leads to (through image indexes: the one for this machine)."""
    data = _read_blob(archive, desc)
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise ImageError(f"{archive.path.name}: blob {desc.get('digest')} is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ImageError(f"{archive.path.name}: blob {desc.get('digest')} is not a JSON object")
    media = desc.get("mediaType") or doc.get("mediaType")
    if media in _MEDIA_MANIFEST or (media is None and "layers" in doc):
        return doc
    if not (media in _MEDIA_INDEX or (media is None and "manifests" in doc)):
        return None   # not an image (an attestation, a signature…)
    if depth > 4:
        raise ImageError(f"{archive.path.name}: image indexes nested too deep")
    arch = host_architecture()
    children = [d for d in doc.get("manifests") or [] if isinstance(d, dict)]
    platforms = [(d.get("platform") or {}) for d in children]
    wanted = [d for d, p in zip(children, platforms) if p.get("os") == "linux" and p.get("architecture") == arch]
    if not wanted and all(not p for p in platforms):
        wanted = children
    for child in wanted:
        found = _select_manifest(archive, child, depth=depth + 1)
        if found is not None:
            return found
    offered = sorted({f"{p.get('os')}/{p.get('architecture')}" for p in platforms if p})
    raise ImageError(f"{archive.path.name}: image index {desc.get('digest')} has no image for linux/{arch} "
                     f"(it has {', '.join(offered) or 'none'})")


def _plan_oci_manifest(archive: _Archive, manifest: dict[str, Any], names: list[str]) -> _ImagePlan:
    config_desc, layer_descs = manifest.get("config"), manifest.get("layers")
    if not isinstance(config_desc, dict) or not isinstance(layer_descs, list):
        raise ImageError(f"{archive.path.name}: an image manifest without config and layers")
    config_bytes = _read_blob(archive, config_desc)
    parsed = _parse_config(config_bytes, what=f"config {config_desc.get('digest')}")
    if len(layer_descs) != len(parsed.diff_hexes):
        raise ImageError(f"{archive.path.name}: manifest lists {len(layer_descs)} layers "
                         f"but its config has {len(parsed.diff_hexes)} diff_ids")
    layers = []
    for desc, diff_hex in zip(layer_descs, parsed.diff_hexes):
        blob_hex = _hex_of(desc.get("digest") if isinstance(desc, dict) else None, what="layer digest")
        size = desc.get("size")
        layers.append(_LayerSource(diff_hex=diff_hex, member=f"blobs/sha256/{blob_hex}", blob_hex=blob_hex,
                                   blob_size=size if isinstance(size, int) else None))
    return _ImagePlan(image_id=f"sha256:{hashlib.sha256(config_bytes).hexdigest()}", config_bytes=config_bytes,
                      layers=layers, names=names)


def _names_from_annotations(annotations: Any) -> list[str]:
    """A descriptor's image name: io.containerd.image.name, else a full org.opencontainers.image.ref.name
    (a bare tag such as "latest" names no repository, so it names nothing)."""
    if not isinstance(annotations, dict):
        return []
    for key in (_ANNOTATION_CONTAINERD_NAME, _ANNOTATION_REF_NAME):
        value = annotations.get(key)
        if isinstance(value, str) and value:
            if key == _ANNOTATION_REF_NAME and not any(c in value for c in "/:@"):
                continue
            return [normalize_reference(value)]
    return []


def _read_blob(archive: _Archive, desc: Any) -> bytes:
    """A small blob (manifest, index, config), verified against its descriptor."""
    if not isinstance(desc, dict):
        raise ImageError(f"{archive.path.name}: a descriptor that is not a JSON object")
    blob_hex = _hex_of(desc.get("digest"), what="blob digest")
    data = archive.read(f"blobs/sha256/{blob_hex}")
    got = hashlib.sha256(data).hexdigest()
    if got != blob_hex:
        raise ImageError(f"{archive.path.name}: blob sha256:{blob_hex} has digest sha256:{got}, refusing to load")
    if isinstance(desc.get("size"), int) and desc["size"] != len(data):
        raise ImageError(f"{archive.path.name}: blob sha256:{blob_hex} is {len(data)} bytes, "
                         f"its descriptor says {desc['size']}")
    return data


def _parse_config(data: bytes, *, what: str) -> _Parsed:
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise ImageError(f"{what} is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ImageError(f"{what} is not a JSON object")
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers" or not isinstance(rootfs.get("diff_ids"), list):
        raise ImageError(f"{what} has no rootfs of type layers with diff_ids")
    diff_hexes = tuple(_hex_of(d, what=f"diff_id in {what}") for d in rootfs["diff_ids"])
    cfg = doc.get("config") or {}
    if not isinstance(cfg, dict):
        raise ImageError(f"{what}: config is not an object")
    stop_signal = cfg.get("StopSignal")
    created = doc.get("created")
    return _Parsed(
        config=ImageConfig(entrypoint=_strings(cfg.get("Entrypoint"), what), cmd=_strings(cfg.get("Cmd"), what),
                           env=_strings(cfg.get("Env"), what), working_dir=_string(cfg.get("WorkingDir"), what),
                           user=_string(cfg.get("User"), what),
                           stop_signal=stop_signal if isinstance(stop_signal, str) and stop_signal else None),
        diff_hexes=diff_hexes, created=created if isinstance(created, str) else None)


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):   # Docker accepts a single string where a list is expected
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ImageError(f"{what}: expected a list of strings, got {type(value).__name__}")


def _string(value: Any, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    raise ImageError(f"{what}: expected a string, got {type(value).__name__}")


def _hex_of(digest: Any, *, what: str) -> str:
    """The hex of a "sha256:<64 hex>" digest; anything else (another algorithm, a path) is refused."""
    m = _DIGEST_RE.fullmatch(digest) if isinstance(digest, str) else None
    if m is None:
        raise ImageError(f"unsupported or invalid {what} {_show(str(digest))}: expected sha256:<64 hex digits>")
    return m.group(1)


def host_architecture() -> str:
    """This machine's architecture as OCI names it (amd64, arm64, …)."""
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386",
            "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)


# ------------------------------------------------------------------------------------- layers


class _Tap:
    """A read-once stream wrapper: hashes and counts every byte read, can peek, knows if all were zero."""

    def __init__(self, f: IO[bytes] | _Tap | gzip.GzipFile, counted: Callable[[int], None] | None = None) -> None:
        self._f = f
        self._counted = counted   # told the bytes read so far, after each read (may raise to stop)
        self._ahead = b""
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.nonzero = False

    def _pull(self, n: int) -> bytes:
        data = self._f.read(n)
        self.sha256.update(data)
        self.size += len(data)
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
            data, self._ahead = self._ahead + b"".join(iter(lambda: self._pull(_CHUNK), b"")), b""
            return data
        if self._ahead:
            data, self._ahead = self._ahead[:n], self._ahead[n:]
            return data
        return self._pull(n)

    def drain(self) -> None:
        self._ahead = b""
        while self._pull(_CHUNK):
            pass


class _BlobSource(Protocol):
    """Where layer blobs are read from: an archive's members, or blobs a pull downloaded."""

    def open_member(self, name: str) -> IO[bytes]: ...


@dataclass(frozen=True)
class _Downloads:
    """Blobs a pull downloaded and verified, one file each, named by `PulledLayer.blob`."""

    path: Path

    def open_member(self, name: str) -> IO[bytes]:
        return open(self.path / name, "rb")


def _unpack_layer(archive: _BlobSource, layer: _LayerSource, dest: Path, *, label: str | None = None,
                  budget: _Budget | None = None) -> int:
    """Unpack one layer blob into `dest` (a fresh directory) and verify its digests; returns its size."""
    if label is None:
        assert isinstance(archive, _Archive)
        label = f"layer {_show(layer.member)} of {archive.path.name}"
    try:
        return _unpack_verified(archive, layer, dest, label, budget)
    except _Exceeded as e:
        raise ImageError(f"{label} {e}") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ImageError(f"{label} is damaged or truncated: {e or type(e).__name__}") from None
    except _zstd_errors() as e:
        raise ImageError(f"{label} is damaged or truncated: {e or type(e).__name__}") from None
    except OSError as e:
        if e.errno is None:   # the gzip module's complaints about the data
            raise ImageError(f"{label} is damaged or truncated: {e}") from None
        raise


def _unpack_verified(archive: _BlobSource, layer: _LayerSource, dest: Path, label: str,
                     budget: _Budget | None) -> int:
    with archive.open_member(layer.member) as raw:
        blob = _Tap(raw)
        magic = blob.peek(4)
        counted = budget.stream if budget is not None else None
        if magic == _ZSTD_MAGIC:
            tar_stream = _Tap(_zstd_reader(blob), counted)
        else:
            tar_stream = _Tap(gzip.GzipFile(fileobj=blob, mode="rb") if magic[:2] == b"\x1f\x8b" else blob, counted)
        with _LayerWriter(dest, label, budget) as writer:
            try:
                with tarfile.open(fileobj=tar_stream, mode="r|", bufsize=_CHUNK,  # type: ignore[call-overload]
                                  tarinfo=_TarInfo) as tf:
                    for member in tf:
                        writer.add(member, tf)
            except tarfile.ReadError:
                if tar_stream.nonzero:
                    raise
                # nothing but zeros, or nothing at all: an empty layer
            tar_stream.drain()   # the padding after the end-of-archive blocks counts in the digest too
            blob.drain()
            writer.finish()
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


_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_WHITEOUT_META = ".wh..wh."           # AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): ignored
_OVERLAY_OPAQUE = "trusted.overlay.opaque"
_PAX_XATTR = "SCHILY.xattr."
_MAX_CACHED_DIRS = 1024

Parts = tuple[str, ...]


class _LayerWriter:
    """Writes one layer's tar entries below a directory, relative to directory fds, never following a symlink.

    Each directory on an entry's path is opened with O_NOFOLLOW from its parent's fd (a symlink or a
    non-directory there refuses the load); the entry itself is created with *at() calls on its
    parent's fd after removing whatever that name held before (later tar entries win, as with tar).
    Directory attributes are applied at the end, so that a read-only directory can still be filled.
    """

    def __init__(self, root: Path, label: str, budget: _Budget | None = None) -> None:
        self._label = label
        self._budget = budget
        self._root_fd = os.open(root, _OPEN_DIR)
        os.fchmod(self._root_fd, 0o755)
        self._dirs: dict[Parts, int] = {(): self._root_fd}
        self._dir_entries: dict[Parts, tarfile.TarInfo] = {}
        self._files: set[Parts] = set()       # non-directories this layer wrote: possible hard link targets
        self._whiteouts: set[Parts] = set()   # whiteouts this layer wrote
        self._as_root = os.geteuid() == 0
        self.size = 0

    def __enter__(self) -> _LayerWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    # ---------------------------------------------------------------- entries

    def add(self, member: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        if len(self._dirs) > _MAX_CACHED_DIRS:
            self._forget(())
        parts = self._parts(member.name, member.name)
        if not parts:
            if not member.isdir():
                raise self._refuse(member.name, "is the layer's root but not a directory")
            self._dir_entries[()] = member
            return
        if parts[-1].startswith(_WHITEOUT):
            self._add_whiteout(member, parts)
        elif member.isdir():
            self._add_dir(member, parts)
        elif member.issym():
            self._add_symlink(member, parts)
        elif member.islnk():
            self._add_hardlink(member, parts)
        elif member.isreg():
            self._add_file(member, parts, tf)
        elif member.isfifo():
            self._add_fifo(member, parts)
        # block and character devices (and unknown types) are skipped: a container gets its /dev from the runtime

    def _add_whiteout(self, member: tarfile.TarInfo, parts: Parts) -> None:
        parent = self._dir_fd(parts[:-1], member.name)
        base = parts[-1]
        if base == _OPAQUE:
            self._set_opaque(parent, member.name)
            return
        if base.startswith(_WHITEOUT_META):
            return
        target = base[len(_WHITEOUT):]
        if target in ("", ".", ".."):
            raise self._refuse(member.name, "is a whiteout of nothing")
        hidden = parts[:-1] + (target,)
        self._make_room(parent, hidden)
        try:
            os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)
        except PermissionError:
            raise ImageError(f"cannot unpack {self._label}: the whiteout {_show(member.name)} becomes a character "
                             "device, which needs root (CAP_MKNOD)") from None
        self._whiteouts.add(hidden)

    def _add_dir(self, member: tarfile.TarInfo, parts: Parts) -> None:
        parent = self._dir_fd(parts[:-1], member.name)
        was_whiteout = parts in self._whiteouts
        if not self._make_room(parent, parts, keep_dir=True):
            os.mkdir(parts[-1], 0o700, dir_fd=parent)
            if was_whiteout:   # a directory re-created over its own whiteout hides what lies below
                self._set_opaque(self._dir_fd(parts, member.name), member.name)
        self._dir_entries[parts] = member

    def _add_file(self, member: tarfile.TarInfo, parts: Parts, tf: tarfile.TarFile) -> None:
        if self._budget is not None:
            self._budget.file(member.size)   # before a byte is written: a sparse file counts in full
        parent = self._dir_fd(parts[:-1], member.name)
        self._make_room(parent, parts)
        fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=parent)
        try:
            source = tf.extractfile(member)
            if source is not None:
                with source, open(fd, "wb", closefd=False) as out:
                    shutil.copyfileobj(source, out, _CHUNK)
            self._own(fd, member)
            os.fchmod(fd, stat.S_IMODE(member.mode))
            self._set_xattrs(fd, member)
            self._set_mtime(fd, member)
        finally:
            os.close(fd)
        self._files.add(parts)
        self.size += member.size

    def _add_symlink(self, member: tarfile.TarInfo, parts: Parts) -> None:
        if not member.linkname or "\0" in member.linkname:
            raise self._refuse(member.name, "is a symlink without a valid target")
        parent = self._dir_fd(parts[:-1], member.name)
        self._make_room(parent, parts)
        os.symlink(member.linkname, parts[-1], dir_fd=parent)   # may point anywhere: it is never followed here
        self._own(parts[-1], member, dir_fd=parent)
        self._set_mtime(parts[-1], member, dir_fd=parent)
        self._files.add(parts)

    def _add_hardlink(self, member: tarfile.TarInfo, parts: Parts) -> None:
        link = member.linkname
        if link.startswith("/") or ".." in link.split("/"):
            raise self._refuse(member.name, f"is a hard link to {_show(link)}, outside the layer")
        target = self._parts(link, member.name)
        if target == parts:
            return
        if target not in self._files:
            raise self._refuse(member.name, f"is a hard link to {_show(link)}, which is not a file of this layer")
        parent = self._dir_fd(parts[:-1], member.name)
        self._make_room(parent, parts)
        target_parent = self._dir_fd(target[:-1], member.name, create=False)
        try:
            st = os.stat(target[-1], dir_fd=target_parent, follow_symlinks=False)
        except FileNotFoundError:
            raise self._refuse(member.name, f"is a hard link to {_show(link)}, which is not in the layer") from None
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
            raise self._refuse(member.name, f"is a hard link to {_show(link)}, which is not a file")
        os.link(target[-1], parts[-1], src_dir_fd=target_parent, dst_dir_fd=parent, follow_symlinks=False)
        self._files.add(parts)

    def _add_fifo(self, member: tarfile.TarInfo, parts: Parts) -> None:
        parent = self._dir_fd(parts[:-1], member.name)
        self._make_room(parent, parts)
        os.mkfifo(parts[-1], 0o600, dir_fd=parent)
        self._own(parts[-1], member, dir_fd=parent)
        # chmod follows symlinks, but this name was just created as a fifo in a directory only we write to
        os.chmod(parts[-1], stat.S_IMODE(member.mode), dir_fd=parent)
        self._set_mtime(parts[-1], member, dir_fd=parent)
        self._files.add(parts)

    def finish(self) -> None:
        """Apply the directories' owners, modes, xattrs and times, deepest first."""
        for parts in sorted(self._dir_entries, key=len, reverse=True):
            member = self._dir_entries[parts]
            try:
                fd = self._dir_fd(parts, member.name, create=False)
            except ImageError:
                continue   # replaced by a non-directory later in the layer
            self._own(fd, member)
            os.fchmod(fd, stat.S_IMODE(member.mode))
            self._set_xattrs(fd, member)
            self._set_mtime(fd, member)

    # ---------------------------------------------------------------- paths

    def _parts(self, name: str, entry: str) -> Parts:
        if "\0" in name:
            raise self._refuse(entry, "has a NUL byte in its name")
        if name.startswith("/"):
            raise self._refuse(entry, f"has the absolute path {_show(name)}")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if ".." in parts:
            raise self._refuse(entry, f"has a '..' component in {_show(name)}")
        return parts

    def _dir_fd(self, parts: Parts, entry: str, *, create: bool = True) -> int:
        """An fd of the directory `parts`, opened one component at a time without following symlinks."""
        fd = self._root_fd
        for i, name in enumerate(parts):
            key = parts[:i + 1]
            if (cached := self._dirs.get(key)) is not None:
                fd = cached
                continue
            try:
                child = os.open(name, _OPEN_DIR, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise self._refuse(entry, f"needs {_show('/'.join(key))}, which is not in the layer") from None
                os.mkdir(name, 0o755, dir_fd=fd)   # a parent the tar does not list: root-owned 0755, as Docker does
                child = os.open(name, _OPEN_DIR, dir_fd=fd)
                os.fchmod(child, 0o755)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                if stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise self._refuse(entry, f"lies under the symlink {_show('/'.join(key))}") from None
                raise self._refuse(entry, f"lies under {_show('/'.join(key))}, which is not a directory") from None
            self._dirs[key] = child
            fd = child
        return fd

    def _make_room(self, parent: int, parts: Parts, *, keep_dir: bool = False) -> bool:
        """Remove what the name holds (never following it); True when it is a directory kept as is."""
        try:
            st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            self._forget(parts)
            shutil.rmtree(parts[-1], dir_fd=parent)
        else:
            os.unlink(parts[-1], dir_fd=parent)
        self._files.discard(parts)
        self._whiteouts.discard(parts)
        return False

    def _forget(self, parts: Parts) -> None:
        """Close the cached fds of `parts` and everything below it (the root's is kept)."""
        for key in [k for k in self._dirs if k and k[:len(parts)] == parts]:
            os.close(self._dirs.pop(key))

    # ---------------------------------------------------------------- attributes

    def _own(self, target: int | str, member: tarfile.TarInfo, *, dir_fd: int | None = None) -> None:
        """Numeric owner as the tar says (a load by a non-root user keeps its own); `target` is an fd,
        or a name in `dir_fd` that is not followed if it is a symlink."""
        if not self._as_root:
            return
        if isinstance(target, int):
            os.chown(target, member.uid, member.gid)
        else:
            os.chown(target, member.uid, member.gid, dir_fd=dir_fd, follow_symlinks=False)

    def _set_mtime(self, target: int | str, member: tarfile.TarInfo, *, dir_fd: int | None = None) -> None:
        try:
            ns = int(member.mtime * 1_000_000_000)
            if isinstance(target, int):
                os.utime(target, ns=(ns, ns))
            else:
                os.utime(target, ns=(ns, ns), dir_fd=dir_fd, follow_symlinks=False)
        except (OverflowError, OSError, ValueError):
            pass   # a time the filesystem cannot hold is not worth refusing an image for

    def _set_xattrs(self, fd: int, member: tarfile.TarInfo) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith(_PAX_XATTR):
                continue
            attr = key[len(_PAX_XATTR):]
            # user.overlay.* would steer overlayfs mounted with userxattr, as trusted.overlay.* does without
            if (attr.startswith("user.") and not attr.startswith("user.overlay.")) or attr == "security.capability":
                try:
                    os.setxattr(fd, attr, value.encode("utf-8", "surrogateescape"))
                except OSError:
                    pass   # the filesystem does not support it: the file still works without

    def _set_opaque(self, fd: int, entry: str) -> None:
        try:
            os.setxattr(fd, _OVERLAY_OPAQUE, b"y")
        except OSError as e:
            raise ImageError(f"cannot unpack {self._label}: marking the directory of {_show(entry)} opaque "
                             f"(xattr {_OVERLAY_OPAQUE}) failed: {e.strerror} — this needs root "
                             "(CAP_SYS_ADMIN) and a filesystem with trusted xattrs") from None

    def _refuse(self, entry: str, why: str) -> ImageError:
        return ImageError(f"refusing to load {self._label}: entry {_show(entry)} {why}")


# ---------------------------------------------------------------------------------- filesystem


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _measure(path: Path) -> int:
    """Bytes of the regular files below `path` (for a layer unpacked before its size was recorded)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(path: Path) -> None:
    """Flush the filesystem holding `path` (unpacked layers) before they are renamed into view."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) == 0:
            return
    except (OSError, AttributeError):
        pass
    finally:
        os.close(fd)
    os.sync()


def _describe(e: BaseException) -> str:
    if isinstance(e, (EOFError, tarfile.ReadError)) or "unexpected end of data" in str(e):
        return f"the archive is truncated or damaged ({e or type(e).__name__})"
    return str(e) or type(e).__name__
