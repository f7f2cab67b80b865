"""`kubelite image load|ls|rm`: the local image store from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from kubelite.cli import config


def _human_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.1f}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1000
    return f"{size:.1f}GB"


def run(args: argparse.Namespace) -> int:
    from kubelite.runtime.images import ImageStore

    store = ImageStore(config.root(args.root))
    if args.image_command == "load":
        for image in store.load(Path(args.input)):
            print(f"Loaded image: {', '.join(image.names) or image.id}")
        return 0
    if args.image_command == "rm":
        for ref in args.refs:
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
