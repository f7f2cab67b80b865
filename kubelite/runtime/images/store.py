"""The image store below `<root>/images`: the index, loads and pulls committed all or nothing, removal.

Owns `<root>/images/` (every metadata write is atomic, 0600, by `statefiles.write_atomic`: a temp
file beside it, fsync, rename, fsync of the dir):

    <root>/images/
        index.json          {"version": 1,
                             "references": {"docker.io/library/busybox:latest": "sha256:<id>", …},
                             "images": {"sha256:<id>": {"size": <bytes>}, …},   # tagged or not
                             "layers": {"<hex>": <bytes>, …}}
        configs/<hex>.json  the image config blob, byte for byte; its sha256 is the image id
        layers/<hex>/       one unpacked layer tree per diff_id (sha256 of the uncompressed tar),
                            shared by every image that has it; whiteouts in overlayfs form
        tarsplit/<hex>.gz   the layer's tar stream without its files' contents (`tarsplit`): with
                            the unpacked layer, the exact tar again, for `image save`
        tmp/                layers being unpacked, layers being deleted
        downloads/          blobs of pulls in progress (`registry`), pruned when given up on
        .lock               flock taken by load, pull, tag and remove (readers never lock)

A load (`archives` plans it) or a pull (`registry` downloads the blobs) unpacks and verifies every
new layer below `tmp/` first (`unpacking`); only when all of them are complete and verified are
they renamed into `layers/`, then the configs are written and, last, the index. A load that fails,
or a crash at any point, leaves the index as it was; whatever is in `tmp/` when a load or remove
starts is left over from a crash and deleted, and so are layers and configs that no image in the
index uses. It does not mount anything: `layer_dirs()` gives the runtime the directories for
overlayfs `lowerdir`. Which images the image GC deletes is `garbage`'s rule; deleting them is here.
"""

from __future__ import annotations

import builtins
import ctypes
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import uuid
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import kubelite.statefiles as statefiles
from kubelite import layout
from kubelite.runtime.images import archives, garbage, saving, tarsplit, unpacking
from kubelite.runtime.images.limits import Budget, UnpackLimits
from kubelite.runtime.images.records import (
    CHUNK, Image, ImagePlan, LayerSource, ParsedConfig, PulledLayer, parse_config,
)
from kubelite.runtime.reference import HEX_RE, ImageError, hex_of, normalize_reference

_ID_PREFIX_RE = re.compile(r"(sha256:)?([a-f0-9]{12,64})")
_INDEX_VERSION = 1


@dataclass
class _Index:
    """index.json: every name, every image and every layer the store holds, with their sizes."""

    references: dict[str, str] = field(default_factory=dict)    # normalized reference → image id
    images: dict[str, int] = field(default_factory=dict)        # image id → size
    layers: dict[str, int] = field(default_factory=dict)        # layer hex → size

    def to_json(self) -> dict[str, Any]:
        return {"version": _INDEX_VERSION, "references": self.references,
                "images": {i: {"size": s} for i, s in self.images.items()}, "layers": self.layers}


class ImageStore:
    """The image store below `<root>/images`. Loads and removes are serialized by a file lock."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._dir = layout.images_dir(self.root)
        self._parsed: dict[str, ParsedConfig] = {}

    # ---------------------------------------------------------------------- paths

    @property
    def _layers_dir(self) -> Path:
        return self._dir / "layers"

    @property
    def _configs_dir(self) -> Path:
        return self._dir / "configs"

    @property
    def _tarsplit_dir(self) -> Path:
        return self._dir / "tarsplit"

    def _tarsplit_path(self, diff_hex: str) -> Path:
        return self._tarsplit_dir / f"{diff_hex}.gz"

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
            path = self._layers_dir / hex_of(digest, what="layer digest")
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
            return self._load_locked(archive)

    def load_stream(self, source: IO[bytes], name: str = "stdin") -> builtins.list[Image]:
        """`load` of an archive read from a stream (a pipe): it is copied first (an archive is read by
        member, out of order) into a file without a name in the store's directory (`O_TMPFILE`: gone when
        closed, even after a crash) — before the store's lock, so a slow pipe holds up no pull, removal
        or garbage collection meanwhile."""
        statefiles.make_dirs(self._dir, base=self.root)
        fd = os.open(self._dir, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w+b") as out:
            shutil.copyfileobj(source, out, CHUNK)
            out.flush()
            spool = Path(f"/proc/self/fd/{out.fileno()}")
            with self._locked():
                try:
                    return self._load_locked(spool, shown=name)
                except ImageError as e:   # name the stream, not the copy's path
                    raise ImageError(str(e).replace(str(spool), name)) from None

    def _load_locked(self, archive: Path, *, shown: str | None = None) -> builtins.list[Image]:
        index = self._read_index()
        self._delete_unused(index)   # left by a load that crashed before writing the index
        try:
            with self._staged() as unpacked:
                with archives.Archive.open(archive) as source:
                    plans = archives.plan(source)
                    for layer in (layer for plan in plans for layer in plan.layers):
                        if self._needs(layer, unpacked):
                            dest = self._stage(layer, unpacked)
                            size = unpacking.unpack_layer(source, layer, dest, record=_record_of(dest))
                            unpacked[layer.diff_hex] = (dest, size)
                self._commit(plans, unpacked, index)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise ImageError(f"cannot load {shown or archive}: {archives.describe(e)}") from e
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
            image, by_name = self._one(ref, index)
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

    def _one(self, ref: str, index: _Index) -> tuple[Image, str | None]:
        """The one image `ref` names (a name or an id's start) and the name it matched (None for an id)."""
        ids, by_name = self._match(ref, index)
        if not ids:
            raise ImageError(f"no such image: {ref}")
        if len(ids) > 1:
            raise ImageError(f"{ref} matches {len(ids)} images: give more of the id")
        image = self._image(ids[0], index)
        if image is None:
            raise ImageError(f"image {ids[0]} has no config in the store: the store is damaged")
        return image, by_name

    def save(self, refs: builtins.list[str], out: IO[bytes]) -> builtins.list[Image]:
        """Write the images `refs` name as one `docker save` archive (docker-archive) to `out`, each layer
        the exact tar it was loaded or pulled as (so the image ids stay). A name saves that name, an id the
        image without names, as `docker save` does. Readers never lock: a layer removed meanwhile fails
        the save."""
        index = self._read_index()
        entries: builtins.list[saving.SavedImage] = []
        for ref in refs:
            image, by_name = self._one(ref, index)
            names = [by_name] if by_name and "@" not in by_name else []
            same = next((e for e in entries if e.image.id == image.id), None)
            if same is not None:   # one image under two names: one entry with both, as `docker save` writes it
                same.names += [n for n in names if n not in same.names]
                continue
            config = (self._configs_dir / f"{hex_of(image.id, what='image id')}.json").read_bytes()
            entries.append(saving.SavedImage(image=image, config=config, names=names))

        def layer(diff_id: str) -> tarsplit.LayerStream:
            diff_hex = hex_of(diff_id, what="layer digest")
            return tarsplit.LayerStream(self._tarsplit_path(diff_hex), self._layers_dir / diff_hex, diff_hex)

        saving.write_docker_archive(entries, layer, out)
        return [e.image for e in entries]

    # ---------------------------------------------------------------------- pulls

    @property
    def downloads_dir(self) -> Path:
        """Where pulls keep blobs while they download (`<hex>.partial`) and once verified (`<hex>`)."""
        return self._dir / "downloads"

    def has_layer(self, diff_id: str) -> bool:
        """True when the layer with this diff_id is unpacked (so a pull need not fetch its blob)."""
        return (self._layers_dir / hex_of(diff_id, what="layer digest")).is_dir()

    def has_config(self, image_id: str) -> bool:
        return (self._configs_dir / f"{hex_of(image_id, what='image id')}.json").is_file()

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
        parsed = parse_config(config_bytes, what=f"config of image {image_id}")
        if len(layers) != len(parsed.diff_hexes):
            raise ImageError(f"image {image_id}: the manifest lists {len(layers)} layers "
                             f"but the config has {len(parsed.diff_hexes)} diff_ids")
        # each blob was hashed and checked against its digest as it was downloaded (into a directory of
        # ours); unpacking checks what it unpacks against the diff_ids of the (verified) config
        sources = [LayerSource(diff_hex=diff_hex, member=layer.blob)
                   for diff_hex, layer in zip(parsed.diff_hexes, layers)]
        plan = ImagePlan(image_id=image_id, config_bytes=config_bytes, layers=sources,
                         names=[normalize_reference(n) for n in names])
        with self._locked():
            index = self._read_index()
            self._delete_unused(index)
            with self._staged() as unpacked:
                for layer in sources:
                    if not self._needs(layer, unpacked):
                        continue
                    if not layer.member:
                        raise ImageError(f"layer sha256:{layer.diff_hex} was removed from the store during the pull "
                                         "(image garbage collection?): pull again")
                    dest = self._stage(layer, unpacked)
                    label = f"layer sha256:{layer.diff_hex} of {plan.names[0] if plan.names else image_id}"
                    size = unpacking.unpack_layer(unpacking.Downloads(downloads), layer, dest, label=label,
                                                  budget=Budget(limits, self.disk_usage), record=_record_of(dest))
                    unpacked[layer.diff_hex] = (dest, size)
                self._commit([plan], unpacked, index)
            self.touch(image_id)
            image = self._image(image_id, index)
        assert image is not None
        return image

    # ---------------------------------------------------------------------- garbage collection

    def touch(self, image_id: str) -> None:
        """Record that the image was used now (its config file's mtime: the image GC removes the least
        recently used first)."""
        try:
            os.utime(self._configs_dir / f"{hex_of(image_id, what='image id')}.json")
        except FileNotFoundError:
            pass

    def last_used(self, image: Image) -> float:
        try:
            return (self._configs_dir / f"{hex_of(image.id, what='image id')}.json").stat().st_mtime
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
        used, total = (usage or self.disk_usage)()
        if not garbage.over_threshold(used=used, total=total, high_percent=high_percent):
            return []
        return garbage.collect(self.list(), in_use=in_use, last_used=self.last_used,
                               to_free=garbage.bytes_to_free(used=used, total=total, low_percent=low_percent),
                               remove=lambda image_id: self._remove_image(image_id, in_use=in_use))

    def prune_downloads(self, *, older_than_s: float, now: float | None = None) -> builtins.list[str]:
        """Delete downloads no pull has touched for `older_than_s` (a pull that was given up on); a
        download a pull is writing (its flock held) is left alone. Returns the names deleted."""
        return garbage.prune_downloads(self.downloads_dir, older_than_s=older_than_s, now=now)

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

    def _parse_config(self, image_id: str) -> ParsedConfig | None:
        if image_id not in self._parsed:
            try:
                data = (self._configs_dir / f"{hex_of(image_id, what='image id')}.json").read_bytes()
            except FileNotFoundError:
                return None   # removed since the index was read
            self._parsed[image_id] = parse_config(data, what=f"config of image {image_id}")
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
            hex_of(image_id, what=f"image id in {self._index_path}")
        for h in index.layers:
            if not HEX_RE.fullmatch(h):
                raise ImageError(f"the image index {self._index_path} is damaged: layer {h!r}")
        return index

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # tmp/ holds half-unpacked layers: nobody's business
        for d in (self._layers_dir, self._configs_dir, self._tarsplit_dir, self._tmp_dir):
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

    @contextmanager
    def _staged(self) -> Iterator[dict[str, tuple[Path, int]]]:
        """The layers one load or pull unpacks below tmp/ (diff hex → directory, size); whatever is still
        there at the end (all of it, when the load failed before its commit) is deleted."""
        unpacked: dict[str, tuple[Path, int]] = {}
        try:
            yield unpacked
        finally:
            for dest, _ in unpacked.values():
                if dest.exists():
                    shutil.rmtree(dest, ignore_errors=True)
                _record_of(dest).unlink(missing_ok=True)

    def _needs(self, layer: LayerSource, unpacked: dict[str, tuple[Path, int]]) -> bool:
        """True when the layer is neither in the store nor already unpacked by this load."""
        return layer.diff_hex not in unpacked and not (self._layers_dir / layer.diff_hex).is_dir()

    def _stage(self, layer: LayerSource, unpacked: dict[str, tuple[Path, int]]) -> Path:
        """A fresh directory below tmp/ to unpack one layer into, staged at once (so that it is deleted at
        the end should the unpacking fail halfway)."""
        dest = self._new_tmp(f"layer-{layer.diff_hex[:12]}-")
        unpacked[layer.diff_hex] = (dest, 0)
        return dest

    def _commit(self, plans: builtins.list[ImagePlan], unpacked: dict[str, tuple[Path, int]],
                index: _Index) -> None:
        """Make a verified load visible: layers, then configs, then (last) the index."""
        if unpacked:
            _syncfs(self._tmp_dir)
        for diff_hex, (dest, size) in unpacked.items():
            os.rename(_record_of(dest), self._tarsplit_path(diff_hex))   # before its layer: never a layer without it
            os.rename(dest, self._layers_dir / diff_hex)
            index.layers[diff_hex] = size
        statefiles.fsync_dir(self._tarsplit_dir)
        statefiles.fsync_dir(self._layers_dir)
        for plan in plans:
            config_path = self._configs_dir / f"{hex_of(plan.image_id, what='image id')}.json"
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
        configs = {f"{hex_of(i, what='image id')}.json" for i in index.images}
        for path in self._layers_dir.iterdir():
            if path.name not in used:
                self._discard(path)
        for path in self._configs_dir.iterdir():
            if path.name not in configs:
                self._discard(path)
        if self._tarsplit_dir.is_dir():
            for path in self._tarsplit_dir.iterdir():
                if path.name.removesuffix(".gz") not in used:
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


def _record_of(layer_dir: Path) -> Path:
    """Where the tar record of a layer being unpacked into `layer_dir` (below tmp/) is written."""
    return layer_dir.with_name(layer_dir.name + ".tarsplit")


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
