"""One pull: a reference resolved, the config and the missing layers fetched and verified, and
the image handed to `ImageStore.add_pulled`, which unpacks and commits it all or nothing.

Owns: `pull()`, the order of a pull's steps and what it reports.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

import kubelite.statefiles as statefiles
from kubelite import layout
from kubelite.runtime import reference as references
from kubelite.runtime.images import Image, ImageError, ImageStore, PulledLayer, UnpackLimits
from kubelite.runtime.registry import blobs, manifests
from kubelite.runtime.registry.blobs import Progress, ProgressFn
from kubelite.runtime.registry.client import Client
from kubelite.runtime.registry.config import PullError, RegistryConfig
from kubelite.runtime.registry.manifests import descriptor

#: Image configs larger than this are refused (and none is read past its descriptor's size).
CONFIG_MAX = 16 << 20


@dataclass(frozen=True)
class PullResult:
    image: Image
    digest: str          # the manifest's digest, as the registry names it (Docker's RepoDigest)
    downloaded: int      # bytes fetched from the registry for blobs
    seconds: float


def pull(store: ImageStore, ref: str, *, config: RegistryConfig = RegistryConfig(),
         progress: ProgressFn | None = None) -> PullResult:
    """Pull `ref` into `store`; returns the image as stored. PullError (one line) on any failure,
    with the store as it was."""
    started = time.monotonic()
    parsed = references.parse(ref)
    report = progress or (lambda _p: None)
    with Client(parsed, config) as registry:
        manifest, digest = manifests.resolve(registry)
        config_desc = descriptor(manifest.get("config"), "config")
        layer_descs = manifest.get("layers")
        if not isinstance(layer_descs, list):
            raise PullError(f"{parsed.name}: the manifest has no layers")
        layers = [descriptor(d, "layer") for d in layer_descs]
        names = [parsed.name, parsed.with_digest(digest)] if not parsed.digest else [parsed.name]
        config_bytes = blobs.small_blob(registry, config_desc, CONFIG_MAX)
        image_id = config_desc["digest"]
        diff_ids = _diff_ids(config_bytes, parsed.name)
        if len(diff_ids) != len(layers):
            raise PullError(f"{parsed.name}: the manifest lists {len(layers)} layers but its config has "
                            f"{len(diff_ids)} diff_ids")
        needed = [(d, diff) for d, diff in zip(layers, diff_ids) if not store.has_layer(diff)]
        report(Progress("resolved", layers=len(layers),
                        total=sum(d["size"] for d in {d["digest"]: d for d, _ in needed}.values())))
        for d, diff in zip(layers, diff_ids):
            if store.has_layer(diff):
                report(Progress("exists", digest=d["digest"], total=d["size"]))
        if not needed and store.has_config(image_id) and any(i.id == image_id for i in store.list()):
            image = store.tag(image_id, names)
            report(Progress("done"))
            return PullResult(image, digest, 0, time.monotonic() - started)
        downloads = store.downloads_dir
        fetched = 0
        files: dict[str, str] = {}
        try:
            statefiles.make_dirs(downloads, base=store.root)   # owner-only, never through a planted symlink
            for d, diff in needed:
                if d["digest"] in files:
                    continue
                files[d["digest"]], got = blobs.blob_to_file(registry, d, downloads, report,
                                                             done=lambda diff=diff: store.has_layer(diff))
                fetched += got
        except OSError as e:
            raise PullError(f"{parsed.name}: cannot write the download to {downloads}: {e.strerror or e}") from None
        pulled = [PulledLayer(digest=d["digest"], size=d["size"], blob=files.get(d["digest"], ""))
                  for d in layers]
        report(Progress("unpacking"))
        try:
            image = store.add_pulled(config_bytes=config_bytes, layers=pulled, names=names, downloads=downloads,
                                     limits=UnpackLimits(max_layer_bytes=config.max_layer_bytes,
                                                         gc_high_percent=config.gc_high_percent))
        except ImageError as e:
            raise PullError(str(e)) from None
        except OSError as e:
            raise PullError(f"{parsed.name}: cannot store the image in {layout.images_dir(store.root)}: "
                            f"{e.strerror or e}") from None
        finally:
            for name in files.values():
                (downloads / name).unlink(missing_ok=True)
        report(Progress("done"))
        return PullResult(image, digest, fetched, time.monotonic() - started)


def _diff_ids(config_bytes: bytes, name: str) -> list[str]:
    try:
        doc = json.loads(config_bytes)
        diff_ids = doc["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError):
        raise PullError(f"{name}: the image config has no rootfs.diff_ids") from None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) and re.fullmatch(r"sha256:[a-f0-9]{64}", d)
                                                 for d in diff_ids):
        raise PullError(f"{name}: the image config's rootfs.diff_ids are not sha256 digests")
    return diff_ids
