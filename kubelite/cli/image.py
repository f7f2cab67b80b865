"""`kubelite image load|ls|rm`: the local image store from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from typing import TYPE_CHECKING

from kubelite.cli import config

if TYPE_CHECKING:
    from kubelite.runtime.images import ImageStore


def _human_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.1f}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1000
    return f"{size:.1f}GB"


def _refuse_if_in_use(store: "ImageStore", ref: str, args: argparse.Namespace) -> None:
    """An image a pod names stays: its layers may be mounted under a running container."""
    from kubelite.errors import UsageError
    from kubelite.runtime.images import ImageError
    from kubelite.store.reader import Reader

    image = store.get(ref)
    if image is None:
        return
    reader = Reader(config.root(args.root))
    try:
        pods = reader.pods(None)
    finally:
        reader.close()
    for pod in pods:
        spec = pod.get("spec", {})
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            try:
                used = store.get(c.get("image", ""))
            except ImageError:  # an unparsable name uses no image
                continue
            if used is not None and used.id == image.id:
                raise UsageError(f"image {ref} is in use by pod {pod['metadata']['namespace']}/"
                                 f"{pod['metadata']['name']}; delete the pod first")


def run(args: argparse.Namespace) -> int:
    from kubelite.runtime.images import ImageStore

    store = ImageStore(config.root(args.root))
    if args.image_command == "load":
        for image in store.load(Path(args.input)):
            print(f"Loaded image: {', '.join(image.names) or image.id}")
        return 0
    if args.image_command == "rm":
        for ref in args.refs:
            _refuse_if_in_use(store, ref, args)
            image = store.remove(ref)
            print(f"Untagged: {ref} ({image.id[:19]})")
        return 0
    rows = [("IMAGE", "IMAGE ID", "SIZE")]
    for image in sorted(store.list(), key=lambda i: i.names):
        for name in image.names or ("<none>",):
            rows.append((name, image.id.removeprefix("sha256:")[:12], _human_size(image.size)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return 0
