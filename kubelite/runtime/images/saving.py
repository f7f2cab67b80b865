"""`image save`: images of the store written as one `docker save` archive (docker-archive).

Owns the archive's form, the one `docker load`, `podman load`, `skopeo` and kubelite's own `image load`
read: `manifest.json` (a list: `Config`, `RepoTags`, `Layers` per image), each image config as
`<hex>.json` (its sha256 is the image id), each layer once, uncompressed, as `<diff hex>.tar`, and a
`repositories` file for the older readers (repository → tag → top layer). Layers come from
`tarsplit.LayerStream`, checked against their diff_ids as they are written; names in `RepoTags` are
written in full (`docker.io/library/busybox:latest`), as `podman save` does: docker shows them short,
and podman keeps their registry (a short name would become `localhost/busybox` there). The archive is written in
one pass, so it may go to a pipe.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import IO, Callable

from kubelite.runtime.images.records import Image
from kubelite.runtime.images.tarsplit import LayerStream
from kubelite.runtime.reference import hex_of

@dataclass
class SavedImage:
    """One image to save: its record, its config blob byte for byte, and the names to write for it."""

    image: Image
    config: bytes
    names: list[str] = field(default_factory=list)   # normalized references (tags)


def _split_tag(name: str) -> tuple[str, str]:
    repository, _, tag = name.rpartition(":")
    return repository, tag


def write_docker_archive(images: list[SavedImage], layer: Callable[[str], LayerStream], out: IO[bytes]) -> None:
    """Write `images` to `out` as a docker-archive; `layer(diff_id)` opens a layer's exact tar."""
    manifest, repositories, written = [], {}, set()   # type: ignore[var-annotated]
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for saved in images:
            config_name = f"{hex_of(saved.image.id, what='image id')}.json"
            if config_name not in written:
                _add_bytes(tf, config_name, saved.config)
                written.add(config_name)
            layer_names = []
            for diff_id in saved.image.layers:
                name = f"{hex_of(diff_id, what='layer digest')}.tar"
                layer_names.append(name)
                if name in written:
                    continue
                with layer(diff_id) as stream:
                    info = tarfile.TarInfo(name)
                    info.size, info.mode = stream.size, 0o644
                    tf.addfile(info, stream)   # type: ignore[arg-type]  # reads exactly `size` bytes
                    stream.check()
                written.add(name)
            tags = list(saved.names)
            manifest.append({"Config": config_name, "RepoTags": tags or None, "Layers": layer_names})
            for tag in tags:
                repository, version = _split_tag(tag)
                if layer_names:
                    repositories.setdefault(repository, {})[version] = layer_names[-1].removesuffix(".tar")
        _add_bytes(tf, "manifest.json", json.dumps(manifest, separators=(",", ":")).encode() + b"\n")
        if repositories:
            _add_bytes(tf, "repositories", json.dumps(repositories, separators=(",", ":")).encode() + b"\n")


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tf.addfile(info, io.BytesIO(data))
