"""Safe state on disk: the one place that writes a file atomically with a given mode without
following symlinks, makes state directories owner-only, checks at start that the state root and run
directory (and every parent) can be changed by no one but their owner, and tightens the modes of an
installation made by an older kubelite.

Standard library only, so every layer may use it (like `kubelite.errors`).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from kubelite.errors import UsageError

DIR_MODE = 0o700
FILE_MODE = 0o600


def write_atomic(path: Path | str, data: bytes | str, mode: int = FILE_MODE, *, fsync: bool = False) -> None:
    """Replace `path` with `data`, readers seeing the old file or the new one, never half of one. The
    temporary file is created with O_EXCL|O_NOFOLLOW relative to the opened parent directory and
    renamed over the target, so a symlink planted at either name is replaced, never followed."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    tmp = f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"   # two threads never share one
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        try:
            os.fchmod(fd, mode)   # not narrowed by the umask, not wider than asked
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        if fsync:
            os.fsync(dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise
    finally:
        os.close(dir_fd)


def no_follow(path: str, flags: int) -> int:
    """An `opener` for `open()`: creates owner-only (0600) and refuses a symlink at the name (ELOOP)."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)


def make_dirs(path: Path | str, mode: int = DIR_MODE, *, base: Path | str | None = None) -> Path:
    """`mkdir -p` giving `mode` to every directory it creates (intermediate ones too); refuses a symlink at
    `path` and at every component below `base` (the state root or run directory) instead of following
    it, and tightens an existing `path` that is looser than `mode` (never loosens it)."""
    path = Path(path)
    base_parts = len(Path(base).parts) if base is not None else len(path.parts) - 1
    current = Path(path.parts[0])
    for index, part in enumerate(path.parts[1:], start=2):
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            try:
                os.mkdir(current, mode)
            except FileExistsError:
                pass
            info = os.lstat(current)
        if index > base_parts and not stat.S_ISDIR(info.st_mode):
            raise OSError(errno.ELOOP, f"{current}: not a directory (a symlink is never followed here)")
    tighten(path, mode)
    return path


def tighten(path: Path | str, mode: int) -> bool:
    """Remove the permission bits of `path` that `mode` does not grant (never adds any, never follows a
    symlink). True when something changed."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode):
        return False
    current = stat.S_IMODE(info.st_mode)
    wanted = current & (mode | 0o7000)
    if wanted == current:
        return False
    try:
        os.chmod(path, wanted)
    except OSError:   # a mount kubelite pinned there (a network namespace), a read-only file system
        return False
    return True


def tighten_tree(top: Path | str, dir_mode: int = DIR_MODE, file_mode: int = FILE_MODE) -> list[str]:
    """Tighten `top` and everything below it (symlinks never followed). Returns what changed."""
    changed = []
    top = Path(top)
    if tighten(top, dir_mode):
        changed.append(str(top))
    if not top.is_dir() or top.is_symlink():
        return changed
    for parent, dirs, files in os.walk(top):
        for name in dirs:
            if tighten(os.path.join(parent, name), dir_mode):
                changed.append(os.path.join(parent, name))
        for name in files:
            if tighten(os.path.join(parent, name), file_mode):
                changed.append(os.path.join(parent, name))
    return changed


def trusted_owners() -> set[int]:
    """Root, and the user running kubelite (for the non-root dry run)."""
    return {0, os.geteuid()}


def check_owned(path: Path | str, what: str) -> None:
    """Refuse (UsageError, one line) a state directory that someone other than root or the running user
    could change: `path` a symlink or owned by another user, or any existing parent writable by another
    user — except a sticky directory like /tmp when the next component belongs to root/us."""
    path = Path(os.path.abspath(path))
    owners = trusted_owners()
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    if info is not None:
        if stat.S_ISLNK(info.st_mode):
            raise UsageError(f"{what} {path} is a symlink: refused (give its real path)")
        if not stat.S_ISDIR(info.st_mode):
            raise UsageError(f"{what} {path} is not a directory: refused")
        if info.st_uid not in owners:
            raise UsageError(f"{what} {path} is owned by uid {info.st_uid}, not root: refused")
        if info.st_mode & 0o022:
            raise UsageError(f"{what} {path} is writable by other users: refused; run chmod go-w {path}")
    child_owner = info.st_uid if info is not None else None
    for parent in path.parents:
        try:
            pinfo = os.stat(parent)
        except FileNotFoundError:
            continue
        others_write = pinfo.st_mode & 0o022
        if pinfo.st_uid not in owners:
            raise UsageError(f"{what} {path}: parent {parent} is owned by uid {pinfo.st_uid}, not root: refused")
        if others_write:
            if not (pinfo.st_mode & stat.S_ISVTX and (child_owner is None or child_owner in owners)):
                raise UsageError(f"{what} {path}: parent {parent} is writable by other users: refused; "
                                 f"run chmod go-w {parent} or choose another directory")
        child_owner = pinfo.st_uid
    # a symlink among the parents: the real path must pass the same checks
    real = Path(os.path.realpath(path.parent))
    if real != path.parent:
        check_owned(real, what)


def _tighten_children(directory: Path, depth: int, changed: list[str], *, skip: frozenset[str] = frozenset()) -> None:
    """Directories 0700 and files 0600 down to `depth` levels below `directory` (not further: below a
    pod's or a layer's directory the modes are the container's own); the contents of the entries named
    in `skip` are left as they are (runc's state, 0711 by runc's choice below our 0700 directory)."""
    if depth <= 0:
        return
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.is_symlink() or os.path.ismount(entry.path):   # a pinned netns, a volume's tmpfs: not ours to chmod
            continue
        if entry.is_dir(follow_symlinks=False):
            if tighten(entry.path, DIR_MODE):
                changed.append(entry.path)
            if entry.name not in skip:
                _tighten_children(Path(entry.path), depth - 1, changed)
        elif entry.is_file(follow_symlinks=False) and tighten(entry.path, FILE_MODE):
            changed.append(entry.path)


def tighten_layout(root: Path, run_dir: Path) -> list[str]:
    """Bring an installation made by an older kubelite (0755 directories, 0644 files) to today's modes:
    the root and run directory and their own files and directories owner-only; the API's files, logs
    and git checkouts entirely; pods and images to the depth kubelite owns (the contents of a layer or
    a volume keep their modes — unreachable now for anyone but root). Never loosens anything."""
    changed: list[str] = []
    for top in (root, run_dir):
        if tighten(top, DIR_MODE):
            changed.append(str(top))
    _tighten_children(root, 1, changed)
    for name in ("api", "logs", "git"):
        changed += tighten_tree(root / name)
    _tighten_children(root / "pods", 1, changed)
    _tighten_children(root / "images", 2, changed)
    _tighten_children(run_dir, 2, changed, skip=frozenset({"runc"}))
    _tighten_children(run_dir / "cni", 3, changed)
    return sorted(set(changed))


def prepare_state_dirs(root: Path, run_dir: Path) -> list[str]:
    """At start: refuse a root or run directory another user could change (UsageError, one line), create
    them owner-only, and tighten an older installation. Returns the paths whose modes were tightened."""
    for path, what in ((root, "state root"), (run_dir, "run directory")):
        check_owned(path, what)
        make_dirs(path)
        check_owned(path, what)   # created just now: ours, and no one slipped a symlink in
    return tighten_layout(root, run_dir)
