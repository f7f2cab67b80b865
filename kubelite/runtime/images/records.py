"""What the image store's modules share: the records, the image config parser, this machine's platform.

Owns `Image` and `ImageConfig` (what the runtime reads), `PulledLayer` (what a pull hands over),
`LayerSource` and `ImagePlan` (what a load or pull is about to store, before anything is written),
and `parse_config`: an image config blob (its sha256 is the image id) read into the parts kubelite
uses. No files, no archives, no store: only data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from kubelite.runtime.reference import ImageError, hex_of

#: Bytes read or copied at once from an archive, a blob or a layer stream.
CHUNK = 1 << 20


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


@dataclass(frozen=True)
class PulledLayer:
    """One layer blob a pull downloaded and verified: `blob` is its file name in the downloads dir."""

    digest: str       # "sha256:<hex>" of the blob as the registry serves it (compressed or not)
    size: int
    blob: str


@dataclass
class LayerSource:
    """Where one layer's blob is (an archive member, a downloaded file) and the digests it must have."""

    diff_hex: str                 # the layer's diff_id (from the config), names its directory
    member: str                   # where its blob is inside the archive
    blob_hex: str | None = None   # the sha256 the blob itself must have, where the format names one
    blob_size: int | None = None


@dataclass
class ImagePlan:
    """One image to store: its config, its layers bottom first, the names to point at it."""

    image_id: str
    config_bytes: bytes
    layers: list[LayerSource]
    names: list[str] = field(default_factory=list)


@dataclass
class ParsedConfig:
    """An image config, parsed once (configs are immutable: cached by id)."""

    config: ImageConfig
    diff_hexes: tuple[str, ...]
    created: str | None


def parse_config(data: bytes, *, what: str) -> ParsedConfig:
    """The parts of an image config blob the store keeps; ImageError for one that is not an image config."""
    doc = json_object(data, what=what)
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers" or not isinstance(rootfs.get("diff_ids"), list):
        raise ImageError(f"{what} has no rootfs of type layers with diff_ids")
    diff_hexes = tuple(hex_of(d, what=f"diff_id in {what}") for d in rootfs["diff_ids"])
    cfg = doc.get("config") or {}
    if not isinstance(cfg, dict):
        raise ImageError(f"{what}: config is not an object")
    stop_signal = cfg.get("StopSignal")
    created = doc.get("created")
    return ParsedConfig(
        config=ImageConfig(entrypoint=_strings(cfg.get("Entrypoint"), what), cmd=_strings(cfg.get("Cmd"), what),
                           env=_strings(cfg.get("Env"), what), working_dir=_string(cfg.get("WorkingDir"), what),
                           user=_string(cfg.get("User"), what),
                           stop_signal=stop_signal if isinstance(stop_signal, str) and stop_signal else None),
        diff_hexes=diff_hexes, created=created if isinstance(created, str) else None)


def json_object(data: bytes, *, what: str, error: type[ImageError] = ImageError) -> dict[str, Any]:
    """A JSON object (a config, a manifest, an index); `error` (ImageError or a kind of it) naming
    `what` for anything else."""
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise error(f"{what} is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise error(f"{what} is not a JSON object")
    return doc


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


def host_architecture() -> str:
    """This machine's architecture as OCI names it (amd64, arm64, …)."""
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386",
            "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)
