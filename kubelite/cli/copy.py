"""`kubelite cp`: files into and out of a container, as `kubectl cp` copies them.

Owns the `[NAMESPACE/]POD:PATH` syntax and the copy itself: a tar stream made here (Python's
`tarfile`) into `tar -xmf - -C DIR` run in the container, or `tar cf - -C DIR NAME` run in the
container read back here, each member renamed from the container's name to the local one. What
comes out of a container is hostile until checked: it is extracted into a fresh directory beside
the destination with `tarfile`'s `data` filter (nothing outside it, no device files), hard links
and symlinks that would leave the copy are skipped with a warning (as kubectl skips them), and
only then moved into place — so no link the container sends is ever followed on the host. The
container tar's stderr is read while the copy runs (its last 64 KiB kept). The container's `tar`
runs through the runtime's exec (`runtime.view`), as
`kubelite exec` does. The container needs `tar`, as for kubectl.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

from kubelite.errors import UsageError
from kubelite.runtime.view import RuntimeView


def remote(spec: str, default_namespace: str | None) -> tuple[str, str, str] | None:
    """(namespace, pod, path) of `[NAMESPACE/]POD:PATH`; None for a local path."""
    head, colon, path = spec.partition(":")
    pieces = head.split("/")
    if not colon or len(pieces) > 2 or not all(pieces):   # no colon, or a path like ./a:b: local
        return None
    if not path:
        raise UsageError(f"{spec}: give POD:PATH with a path in the container")
    namespace, pod = pieces if len(pieces) == 2 else (default_namespace or "default", pieces[0])
    return namespace, pod, path


def run(args: argparse.Namespace, view: RuntimeView, running: Callable[[str, str], str]) -> int:
    source, dest = remote(args.source, args.namespace), remote(args.dest, args.namespace)
    if (source is None) == (dest is None):
        raise UsageError("one of SRC and DEST must be POD:PATH and the other a local path, "
                         "e.g. kubelite cp notes.txt web:/tmp/notes.txt")
    if dest is not None:
        namespace, pod, path = dest
        return _copy_in(view, running(namespace, pod), Path(args.source), path)
    assert source is not None
    namespace, pod, path = source
    return _copy_out(view, running(namespace, pod), path, Path(args.dest))


def _copy_in(view: RuntimeView, container_id: str, local: Path, path: str) -> int:
    if not local.exists():
        raise UsageError(f"{local}: no such file or directory")
    if path.endswith("/"):
        path += local.name
    directory, name = posixpath.split(path.rstrip("/") or "/")
    argv = view.exec_argv(container_id, ["tar", "-xmf", "-", "-C", directory or "/"])
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stderr is not None
    err = _drain(proc.stderr)
    try:
        with tarfile.open(fileobj=proc.stdin, mode="w|", format=tarfile.PAX_FORMAT) as archive:
            archive.add(str(local), arcname=name)
        proc.stdin.close()
    except BrokenPipeError:   # tar in the container gave up: its stderr says why
        pass
    code = proc.wait()
    if code != 0:
        print(err().strip() or f"tar in the container exited {code}", file=sys.stderr)
    return code


def _copy_out(view: RuntimeView, container_id: str, path: str, local: Path) -> int:
    directory, name = posixpath.split(path.rstrip("/") or "/")
    target = local / name if local.is_dir() else local
    if not target.parent.is_dir():
        raise UsageError(f"{target.parent}: no such directory")
    argv = view.exec_argv(container_id, ["tar", "cf", "-", "-C", directory or "/", name])
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    err = _drain(proc.stderr)
    staging = Path(tempfile.mkdtemp(prefix=".kubelite-cp-", dir=target.parent))
    try:
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
                archive.extractall(path=str(staging), filter="data",
                                   members=_contained(_renamed(archive, name, target.name)))
        except tarfile.ReadError:   # nothing came: tar in the container failed (its stderr says why)
            pass
        except tarfile.FilterError as exc:   # a member the data filter refuses: nothing is placed
            proc.kill()
            proc.wait()
            raise UsageError(f"refused what the container sent: {exc}") from None
        code = proc.wait()
        if code == 0:
            _place(staging / target.name, target)
    finally:
        proc.stdout.close()
        shutil.rmtree(staging, ignore_errors=True)
    if code != 0:
        print(err().strip() or f"tar in the container exited {code}", file=sys.stderr)
    return code


def _drain(stream: IO[bytes], keep: int = 64 * 1024) -> Callable[[], str]:
    """Read `stream` to its end in a thread (so a chatty tar never blocks the copy); the text of its
    last `keep` bytes, once read."""
    tail = bytearray()

    def read() -> None:
        while chunk := stream.read(8192):
            tail.extend(chunk)
            del tail[:-keep]

    thread = threading.Thread(target=read, daemon=True)
    thread.start()

    def text() -> str:
        thread.join()
        return tail.decode(errors="replace")
    return text


def _contained(members: Iterable[tarfile.TarInfo]) -> Iterator[tarfile.TarInfo]:
    """The members whose links stay inside the copy: hard links are skipped, and symlinks that are
    absolute or climb out of the copy, each with a warning (kubectl skips them the same way)."""
    for member in members:
        if member.islnk():
            print(f"warning: skipping hard link {member.name} -> {member.linkname}", file=sys.stderr)
            continue
        if member.issym():
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(member.name), member.linkname))
            top = member.name.split("/", 1)[0]
            if posixpath.isabs(member.linkname) or not (resolved == top or resolved.startswith(top + "/")):
                print(f"warning: skipping symlink {member.name} -> {member.linkname} (it leaves the copy)",
                      file=sys.stderr)
                continue
        yield member


def _place(copied: Path, target: Path) -> None:
    """Move what was extracted into place: a directory onto an existing directory is merged (its
    links copied as links, never followed), anything else replaces the target."""
    if not os.path.lexists(copied):
        return
    if target.is_dir() and not target.is_symlink():
        if not copied.is_dir() or copied.is_symlink():
            raise UsageError(f"{target}: is a directory; cannot replace it with a file")
        shutil.copytree(copied, target, symlinks=True, dirs_exist_ok=True)
        return
    os.replace(copied, target)


def _renamed(archive: tarfile.TarFile, name: str, local_name: str) -> Iterator[tarfile.TarInfo]:
    """The members under `name`, renamed to lie under `local_name`; anything else is skipped."""
    for member in archive:
        if member.name == name or member.name.startswith(name + "/"):
            member.name = local_name + member.name[len(name):]
            yield member
