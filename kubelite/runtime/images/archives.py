"""Image archives for `image load`: `docker save` tars and OCI image layouts, read into load plans.

Owns reading an archive (a tar, plain or compressed with gzip, bzip2 or xz) by member name,
following the links inside it; the `docker save` format (the classic form and Docker 25's form
with an OCI layout inside) and the OCI image-layout format, through image indexes to the manifest
for this machine; and verifying every small blob (index, manifest, config) against its digest.
`plan` turns an archive into `ImagePlan`s — what to store — without writing anything; the layer
blobs are unpacked (and verified) by `unpacking`, the store commits.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import tarfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from kubelite.runtime.images.records import ImagePlan, LayerSource, host_architecture, json_object, parse_config
from kubelite.runtime.reference import ImageError, hex_of, normalize_reference, quoted

_JSON_MAX = 16 << 20                 # manifests and configs larger than this are refused

_MEDIA_INDEX = {"application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json"}
_MEDIA_MANIFEST = {"application/vnd.oci.image.manifest.v1+json",
                   "application/vnd.docker.distribution.manifest.v2+json"}
_ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
_ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"


class Archive:
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
    def open(cls, path: Path) -> Iterator[Archive]:
        try:
            tf = tarfile.open(path, "r:*")
        except FileNotFoundError:
            raise ImageError(f"cannot load {path}: no such file") from None
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise ImageError(f"cannot load {path}: not a tar archive (plain, gzip, bzip2 or xz): {describe(e)}") \
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
            raise ImageError(f"{self.path.name}: {quoted(name)} is {member.size} bytes, too large for metadata")
        with self.open_member(name) as f:
            data = f.read()
        if len(data) != member.size:
            raise ImageError(f"{self.path.name}: {quoted(name)} is truncated")
        return data

    def read_json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except ValueError as e:
            raise ImageError(f"{self.path.name}: {quoted(name)} is not valid JSON ({e})") from None

    def _resolve(self, name: str) -> tarfile.TarInfo:
        key = _archive_key(name)
        for _ in range(16):
            member = self._members.get(key)
            if member is None:
                raise ImageError(f"{self.path.name} has no {quoted(name)}")
            if member.isreg():
                return member
            if member.issym():
                key = _archive_key(posixpath.join(posixpath.dirname(key), member.linkname))
            elif member.islnk():
                key = _archive_key(member.linkname)
            else:
                raise ImageError(f"{self.path.name}: {quoted(name)} is not a file")
        raise ImageError(f"{self.path.name}: {quoted(name)} is a chain of too many links")


def _archive_key(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def plan(archive: Archive) -> list[ImagePlan]:
    """What the archive holds: one plan per image (images named twice are merged)."""
    if archive.has("manifest.json"):
        plans = _plan_docker_save(archive)
    elif archive.has("index.json") and archive.has("oci-layout"):
        plans = _plan_oci_layout(archive)
    else:
        raise ImageError(f"{archive.path}: neither a `docker save` archive (manifest.json) "
                         "nor an OCI image layout (oci-layout, index.json)")
    merged: dict[str, ImagePlan] = {}
    for plan in plans:
        if plan.image_id in merged:
            merged[plan.image_id].names.extend(n for n in plan.names if n not in merged[plan.image_id].names)
        else:
            merged[plan.image_id] = plan
    if not merged:
        raise ImageError(f"{archive.path} holds no image")
    return list(merged.values())


def _plan_docker_save(archive: Archive) -> list[ImagePlan]:
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
            raise ImageError(f"{archive.path.name}: config {quoted(config_name)} has digest sha256:{image_hex}: "
                             "it does not match its name, refusing to load")
        parsed = parse_config(config_bytes, what=f"config {config_name}")
        layer_names = entry["Layers"]
        if len(layer_names) != len(parsed.diff_hexes) or not all(isinstance(n, str) for n in layer_names):
            raise ImageError(f"{archive.path.name}: image {config_name} lists {len(layer_names)} layers "
                             f"but its config has {len(parsed.diff_hexes)} diff_ids")
        layers = [LayerSource(diff_hex=d, member=n, blob_hex=_hex_in_name(n))
                  for n, d in zip(layer_names, parsed.diff_hexes)]
        names = [normalize_reference(t) for t in entry.get("RepoTags") or []]
        plans.append(ImagePlan(image_id=f"sha256:{image_hex}", config_bytes=config_bytes, layers=layers,
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


def _plan_oci_layout(archive: Archive) -> list[ImagePlan]:
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


def _select_manifest(archive: Archive, desc: Any, *, depth: int) -> dict[str, Any] | None:
    """The image manifest a descriptor leads to (through image indexes: the one for this machine)."""
    doc = json_object(_read_blob(archive, desc), what=f"{archive.path.name}: blob {desc.get('digest')}")
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


def _plan_oci_manifest(archive: Archive, manifest: dict[str, Any], names: list[str]) -> ImagePlan:
    config_desc, layer_descs = manifest.get("config"), manifest.get("layers")
    if not isinstance(config_desc, dict) or not isinstance(layer_descs, list):
        raise ImageError(f"{archive.path.name}: an image manifest without config and layers")
    config_bytes = _read_blob(archive, config_desc)
    parsed = parse_config(config_bytes, what=f"config {config_desc.get('digest')}")
    if len(layer_descs) != len(parsed.diff_hexes):
        raise ImageError(f"{archive.path.name}: manifest lists {len(layer_descs)} layers "
                         f"but its config has {len(parsed.diff_hexes)} diff_ids")
    layers = []
    for desc, diff_hex in zip(layer_descs, parsed.diff_hexes):
        blob_hex = hex_of(desc.get("digest") if isinstance(desc, dict) else None, what="layer digest")
        size = desc.get("size")
        layers.append(LayerSource(diff_hex=diff_hex, member=f"blobs/sha256/{blob_hex}", blob_hex=blob_hex,
                                   blob_size=size if isinstance(size, int) else None))
    return ImagePlan(image_id=f"sha256:{hashlib.sha256(config_bytes).hexdigest()}", config_bytes=config_bytes,
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


def _read_blob(archive: Archive, desc: Any) -> bytes:
    """A small blob (manifest, index, config), verified against its descriptor."""
    if not isinstance(desc, dict):
        raise ImageError(f"{archive.path.name}: a descriptor that is not a JSON object")
    blob_hex = hex_of(desc.get("digest"), what="blob digest")
    data = archive.read(f"blobs/sha256/{blob_hex}")
    got = hashlib.sha256(data).hexdigest()
    if got != blob_hex:
        raise ImageError(f"{archive.path.name}: blob sha256:{blob_hex} has digest sha256:{got}, refusing to load")
    if isinstance(desc.get("size"), int) and desc["size"] != len(data):
        raise ImageError(f"{archive.path.name}: blob sha256:{blob_hex} is {len(data)} bytes, "
                         f"its descriptor says {desc['size']}")
    return data



def describe(e: BaseException) -> str:
    """What went wrong reading an archive, in words: a truncated archive says so."""
    if isinstance(e, (EOFError, tarfile.ReadError)) or "unexpected end of data" in str(e):
        return f"the archive is truncated or damaged ({e or type(e).__name__})"
    return str(e) or type(e).__name__
