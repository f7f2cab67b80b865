"""`kubelite image load|save|ls|rm|pull`: the local image store from the command line.

`pull` shows its progress on one line that it rewrites (bytes and layers) when stdout is a
terminal, and plain lines — one per layer and one at the end — when it is not.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

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
    """An image a pod names (for a container or an image volume) stays: its layers may be mounted."""
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
        references = [c.get("image") for c in spec.get("initContainers", []) + spec.get("containers", [])]
        references += [(v.get("image") or {}).get("reference") for v in spec.get("volumes", [])]
        for reference in references:
            try:
                used = store.get(reference or "") if isinstance(reference, str) else None
            except ImageError:  # an unparsable name uses no image
                continue
            if used is not None and used.id == image.id:
                raise UsageError(f"image {ref} is in use by pod {pod['metadata']['namespace']}/"
                                 f"{pod['metadata']['name']}; delete the pod first")


def run(args: argparse.Namespace) -> int:
    from kubelite.runtime.images import ImageStore

    store = ImageStore(config.state_root(args.root, create=args.image_command in ("load", "pull", "rm")))
    if args.image_command == "load":
        for image in load(args, store):
            print(f"Loaded image: {', '.join(image.names) or image.id}")
        return 0
    if args.image_command == "save":
        return save(args, store)
    if args.image_command == "pull":
        return pull(args, store)
    if args.image_command == "rm":
        for ref in args.refs:
            _refuse_if_in_use(store, ref, args)
            image = store.remove(ref)
            print(f"Untagged: {ref} ({image.id[:19]})")
        return 0
    rows = [("IMAGE", "IMAGE ID", "SIZE")]
    for image in sorted(store.list(), key=lambda i: i.names):
        tags = [n for n in image.names if "@" not in n]
        for name in tags or image.names or ("<none>",):   # digest references only when there is no tag
            rows.append((name, image.id.removeprefix("sha256:")[:12], _human_size(image.size)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return 0


def load(args: argparse.Namespace, store: "ImageStore") -> list[Any]:
    """`image load FILE`, `-i FILE`, or the archive on stdin (`-`, or nothing given and stdin not a terminal)."""
    from kubelite.errors import UsageError

    if args.file is not None and args.input is not None and args.file != args.input:
        raise UsageError("image load: give the archive once, as FILE or as -i FILE")
    source = args.input if args.input is not None else args.file
    if source is not None and source != "-":
        return store.load(Path(source))
    if sys.stdin.isatty():
        raise UsageError("image load: give an archive (FILE or -i FILE), or pipe one into stdin "
                         "(stdin is a terminal)")
    return store.load_stream(sys.stdin.buffer)


def save(args: argparse.Namespace, store: "ImageStore") -> int:
    """`image save IMAGE… -o FILE` (written beside FILE, renamed into place when complete), or to stdout."""
    import os
    import tempfile

    from kubelite.errors import UsageError

    if args.output is None or args.output == "-":
        if sys.stdout.isatty():
            raise UsageError("image save: refusing to write an archive to a terminal; give -o FILE or redirect "
                             "stdout")
        sys.stdout.flush()
        store.save(args.refs, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return 0
    target = Path(args.output)
    fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent or Path("."))
    try:
        with os.fdopen(fd, "wb") as out:
            store.save(args.refs, out)
            out.flush()
            os.fsync(out.fileno())   # whole on disk before it takes the name
        os.chmod(partial, 0o644 & ~_umask())
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return 0


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def registry_config(args: argparse.Namespace) -> Any:
    """The `RegistryConfig` the registry flags (and their environment variables) describe."""
    from kubelite.errors import UsageError
    from kubelite.runtime.registry import RegistryConfig

    if not 0 <= getattr(args, "image_gc_high_threshold", 85) <= 100:
        raise UsageError("--image-gc-high-threshold: give a percentage from 0 to 100")
    return RegistryConfig(auth_file=config.auth_file(getattr(args, "authfile", None)),
                          certs_dir=config.certs_dir(getattr(args, "certs_dir", None)),
                          insecure=config.insecure_registries(getattr(args, "insecure_registry", None)),
                          max_layer_bytes=max_layer_size(getattr(args, "image_max_layer_size", None)),
                          gc_high_percent=getattr(args, "image_gc_high_threshold", 85))


def layer_size_bytes(value: str) -> int:
    """A layer's size bound: a Kubernetes quantity of bytes (64Gi, 500Mi, 1e9), at least 1Mi; ValueError
    otherwise (the flag and the configuration file's `imageMaxLayerSize` both take it)."""
    from kubelite.api import quantity

    try:
        size = quantity.bytes_(value)
    except ValueError:
        size = -1
    if size < 1 << 20:
        raise ValueError("give a size of at least 1Mi, such as 64Gi or 500Mi")
    return size


def max_layer_size(value: str | None) -> int:
    """`--image-max-layer-size` (None: the default bound)."""
    from kubelite.errors import UsageError
    from kubelite.runtime.images import DEFAULT_MAX_LAYER_BYTES

    if value is None:
        return DEFAULT_MAX_LAYER_BYTES
    try:
        return layer_size_bytes(value)
    except ValueError as exc:
        raise UsageError(f"--image-max-layer-size {value}: {exc}") from None


def pull(args: argparse.Namespace, store: "ImageStore") -> int:
    from kubelite.runtime import registry

    display = PullDisplay(sys.stdout, tty=sys.stdout.isatty(), quiet=args.quiet)
    result = registry.pull(store, args.ref, config=registry_config(args), progress=display.update)
    display.finish()
    if args.quiet:
        print(result.image.id)
    else:
        print(f"Pulled {args.ref}: {result.image.id} ({_human_size(result.downloaded)} fetched in "
              f"{result.seconds:.1f}s, digest {result.digest})")
    return 0


class PullDisplay:
    """Pull progress: one rewritten line on a terminal, plain lines otherwise."""

    def __init__(self, out: TextIO, *, tty: bool, quiet: bool = False) -> None:
        self.out, self.tty, self.quiet = out, tty, quiet
        self.layers = 0
        self.total = 0
        self.blobs: dict[str, tuple[int, int]] = {}   # digest → (done, size)
        self.finished = 0
        self.existing = 0
        self.shown_at = 0.0

    def update(self, p: Any) -> None:
        if self.quiet:
            return
        if p.kind == "resolved":
            self.layers, self.total = p.layers, p.total
            if not self.tty:
                self._line(f"Resolved: {p.layers} layers, {_human_size(p.total)} to fetch")
        elif p.kind == "exists":
            self.existing += 1
            if not self.tty:
                self._line(f"Layer {p.digest[7:19]}: already present")
        elif p.kind == "bytes":
            self.blobs[p.digest] = (p.done, p.total)
        elif p.kind == "downloaded":
            self.blobs[p.digest] = (p.total, p.total)
            self.finished += 1
            if not self.tty:
                self._line(f"Layer {p.digest[7:19]}: fetched {_human_size(p.total)}")
        elif p.kind == "unpacking" and not self.tty:
            self._line("Unpacking and verifying layers")
        if self.tty and (p.kind != "bytes" or time.monotonic() - self.shown_at > 0.1):
            self.shown_at = time.monotonic()
            done = sum(d for d, _ in self.blobs.values())
            state = "unpacking" if p.kind in ("unpacking", "done") else "fetching"
            self.out.write(f"\r\x1b[K{state}: layers {self.finished + self.existing}/{self.layers}, "
                           f"{_human_size(done)} / {_human_size(self.total)}")
            self.out.flush()

    def finish(self) -> None:
        if self.tty and not self.quiet:
            self.out.write("\r\x1b[K")
            self.out.flush()

    def _line(self, text: str) -> None:
        print(text, file=self.out, flush=True)
