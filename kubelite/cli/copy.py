"""`kubelite cp`: files into and out of a container, as `kubectl cp` copies them.

Owns the `[NAMESPACE/]POD:PATH` syntax and the copy itself: a tar stream made here (Python's
`tarfile`) into `tar -xmf - -C DIR` run in the container, or `tar cf - -C DIR NAME` run in the
container read back here, each member renamed from the container's name to the local one and
extracted with `tarfile`'s `data` filter (nothing outside the destination, no device files, no
links that leave it). The container's `tar` runs through the runtime's exec (`runtime.view`), as
`kubelite exec` does. The container needs `tar`, as for kubectl.
"""

from __future__ import annotations

import argparse
import posixpath
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Callable, Iterator

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
    try:
        with tarfile.open(fileobj=proc.stdin, mode="w|", format=tarfile.PAX_FORMAT) as archive:
            archive.add(str(local), arcname=name)
        proc.stdin.close()
    except BrokenPipeError:   # tar in the container gave up: its stderr says why
        pass
    err = proc.stderr.read().decode(errors="replace")
    code = proc.wait()
    if code != 0:
        print(err.strip() or f"tar in the container exited {code}", file=sys.stderr)
    return code


def _copy_out(view: RuntimeView, container_id: str, path: str, local: Path) -> int:
    directory, name = posixpath.split(path.rstrip("/") or "/")
    argv = view.exec_argv(container_id, ["tar", "cf", "-", "-C", directory or "/", name])
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    target = local
    if local.is_dir():
        target = local / name
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
            archive.extractall(path=str(target.parent), members=_renamed(archive, name, target.name),
                               filter="data")
    except tarfile.ReadError:   # nothing came: tar in the container failed (its stderr says why)
        pass
    err = proc.stderr.read().decode(errors="replace")
    code = proc.wait()
    if code != 0:
        print(err.strip() or f"tar in the container exited {code}", file=sys.stderr)
    return code


def _renamed(archive: tarfile.TarFile, name: str, local_name: str) -> Iterator[tarfile.TarInfo]:
    """The members under `name`, renamed to lie under `local_name`; anything else is skipped."""
    for member in archive:
        if member.name == name or member.name.startswith(name + "/"):
            member.name = local_name + member.name[len(name):]
            yield member
