"""Safe state on disk: the one place that writes a file atomically with a given mode without
following symlinks (`write_atomic`), points a symlink elsewhere in one rename (`replace_symlink`),
makes directories below a trusted one (owner-only for state, a volume's own modes for a subPath)
one component at a time without following a symlink, checks at start that the state root and run
directory (and the way to them from `/`) can be changed by no one but root, and tightens the modes
of an installation made by an older kubelite (only the entries kubelite makes).

Standard library only (and `layout`, the pure home of the names it tightens), so every layer
may use it (like `kubelite.errors`).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from kubelite.errors import UsageError
from kubelite import layout

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


def fsync_dir(path: Path | str) -> None:
    """Make the renames and creations in directory `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_symlink(link: Path | str, target: str, *, temporary: str, group: int | None = None,
                    fsync: bool = False) -> None:
    """Point the symlink `link` at `target` in one rename, so readers follow the old target or the new
    one, never none: the new link is made at the name `temporary` beside it (whatever is there is
    removed), given the group `group` when asked, then renamed over `link`. With `fsync`, the rename
    is made durable where the filesystem allows it."""
    link = Path(link)
    staged = link.parent / temporary
    if os.path.lexists(staged):
        os.unlink(staged)
    os.symlink(target, staged)
    try:
        if group is not None:
            os.lchown(staged, -1, group)
        os.replace(staged, link)
    except BaseException:
        try:
            os.unlink(staged)
        except OSError:
            pass
        raise
    if fsync:
        try:
            fsync_dir(link.parent)
        except OSError:
            pass   # durability is best effort here: the link is in place


def no_follow(path: str, flags: int) -> int:
    """An `opener` for `open()`: creates owner-only (0600) and refuses a symlink at the name (ELOOP)."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)


#: How every directory below a trusted one is entered: never through a symlink (ENOTDIR/ELOOP instead).
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def make_dirs(path: Path | str, mode: int = DIR_MODE, *, base: Path | str, tighten_last: bool = True) -> Path:
    """`mkdir -p` of `path` (made absolute and normalized: `..` is taken lexically, never through a
    link) below the trusted directory `base` (the state root or the run directory,
    vetted by `check_owned` at start; or a volume's resolved directory). `base` is opened as it is (made
    by `make_top` when missing); every component below it is made with mkdirat(`mode`) and entered with
    O_NOFOLLOW from its parent's descriptor, as the kubelet's doSafeMakeDir does, so a symlink planted or
    swapped in at any depth is never followed: OSError (ELOOP or ENOTDIR) instead, and nothing is made
    through it. `path` itself, when below `base`, is tightened to `mode` if it is looser (never
    loosened) unless `tighten_last` is False."""
    path, base = Path(os.path.abspath(path)), Path(os.path.abspath(base))
    try:
        names = path.relative_to(base).parts
    except ValueError:
        raise OSError(errno.EINVAL, f"{path} is not below {base}") from None
    fd = _descend(_open_dir(base, mode), base, names, mode)
    try:
        if names and tighten_last:
            info = os.fstat(fd)
            wanted = _narrowed(stat.S_IMODE(info.st_mode), mode)
            if wanted != stat.S_IMODE(info.st_mode):
                os.chmod(f"/proc/self/fd/{fd}", wanted)   # the directory opened, not a name someone could swap
    finally:
        os.close(fd)
    return path


def make_top(path: Path | str, mode: int = DIR_MODE) -> Path:
    """Make the state root or run directory `path` (with its missing parents, `mode`) from its nearest
    existing ancestor, which is used as it is (`check_owned` vetted it); what is made is entered without
    following a symlink, and an existing directory there must be root's or the running user's. An
    existing `path` must not be a symlink; its mode is left to `tighten_layout`."""
    path = Path(os.path.abspath(path))
    info = _lstat(path)
    if info is not None and not stat.S_ISDIR(info.st_mode):
        raise OSError(errno.ELOOP if stat.S_ISLNK(info.st_mode) else errno.ENOTDIR,
                      f"{path}: not a directory (a symlink is never followed here)")
    os.close(_open_dir(path, mode, owners=trusted_owners()))
    return path


def _open_dir(path: Path, mode: int, *, owners: set[int] | None = None) -> int:
    """An O_PATH descriptor of the directory `path`, making it and its missing parents first: the
    nearest existing ancestor is opened as it is (with `owners`, it must belong to one of them), the
    rest made and entered by `_descend`."""
    missing: list[str] = []
    current = path
    while not os.path.lexists(current):   # a dangling symlink is there: `_descend` refuses it
        if current.parent == current:
            break
        missing.append(current.name)
        current = current.parent
    fd = os.open(current, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    owner = os.fstat(fd).st_uid
    if owners is not None and owner not in owners:   # made by someone else since `check_owned` looked
        os.close(fd)
        raise OSError(errno.EPERM, f"{current} is owned by uid {owner}, not root: refused")
    return _descend(fd, current, tuple(reversed(missing)), mode, owners=owners)


def _descend(fd: int, at: Path, names: tuple[str, ...], mode: int, *, owners: set[int] | None = None) -> int:
    """From the directory open at `fd` (`at`), make and enter each of `names` in turn, never through a
    symlink; with `owners`, a directory that was there already must belong to one of them. Returns the
    last one's descriptor; `fd` is consumed either way."""
    try:
        for name in names:
            at = at / name
            try:
                os.mkdir(name, mode, dir_fd=fd)
                made = True
            except FileExistsError:
                made = False
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise OSError(exc.errno, f"{at}: not a directory (a symlink is never followed here)") from None
                raise
            os.close(fd)
            fd = child
            info = os.fstat(fd)
            if not stat.S_ISDIR(info.st_mode):   # O_PATH|O_NOFOLLOW may open a symlink itself
                raise OSError(errno.ELOOP, f"{at}: not a directory (a symlink is never followed here)")
            if owners is not None and not made and info.st_uid not in owners:
                raise OSError(errno.EPERM, f"{at} is owned by uid {info.st_uid}, not root: refused")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lstat(path: Path | str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _narrowed(current: int, mode: int) -> int:
    """`current` without the group and other bits `mode` does not grant: the owner's own bits (an
    executable stays executable for root) and setuid/setgid/sticky are kept."""
    return current & (mode | 0o7700)


def tighten(path: Path | str, mode: int) -> bool:
    """Remove the group and other permission bits of `path` that `mode` does not grant (never adds any,
    never removes the owner's, never follows a symlink). True when something changed."""
    info = _lstat(path)
    if info is None or stat.S_ISLNK(info.st_mode):
        return False
    current = stat.S_IMODE(info.st_mode)
    wanted = _narrowed(current, mode)
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
    could change or redirect: `path` a symlink, not a directory, owned by another user or writable by
    group/others; or, on the way to it from `/` (walked one component at a time with lstat, as the
    kernel resolves it), a directory owned by another user or writable by others — a sticky directory
    like /tmp is fine, since only an entry's owner may replace it and every entry on the way must be
    root's or ours — or a symlink owned by another user (its owner could point it elsewhere at any
    time). A symlink that is root's (or ours) is followed, and the walk goes on from its target."""
    path = Path(os.path.abspath(path))
    owners = trusted_owners()
    try:
        info = _lstat(path)
    except OSError as exc:   # a symlink loop or a file on the way: the walk below names it
        info, unreachable = None, exc
    else:
        unreachable = None
    if info is not None:
        if stat.S_ISLNK(info.st_mode):
            raise UsageError(f"{what} {path} is a symlink: refused (give its real path)")
        if not stat.S_ISDIR(info.st_mode):
            raise UsageError(f"{what} {path} is not a directory: refused")
        if info.st_uid not in owners:
            raise UsageError(f"{what} {path} is owned by uid {info.st_uid}, not root: refused")
        if info.st_mode & 0o022:
            raise UsageError(f"{what} {path} is writable by other users: refused; run chmod go-w {path}")
    current = Path("/")
    _check_parent(current, os.lstat(current), path, what, owners)
    pending = [part for part in path.parent.parts[1:]]
    links = 0
    while pending:
        name = pending.pop(0)
        if name in ("", "."):
            continue
        if name == "..":   # `current` holds no symlink: its parent is the real one
            current = current.parent
            continue
        entry = current / name
        try:
            entry_info = _lstat(entry)
        except OSError as exc:
            raise UsageError(f"{what} {path}: cannot check {entry}: {exc.strerror}") from None
        if entry_info is None:
            return   # kubelite makes the rest, inside `current`, which passed
        if stat.S_ISLNK(entry_info.st_mode):
            if entry_info.st_uid not in owners:
                raise UsageError(f"{what} {path}: {entry} is a symlink owned by uid {entry_info.st_uid}, not root: "
                                 "refused (its owner can point it elsewhere); give a path without it")
            links += 1
            if links > _MAX_LINKS:
                raise UsageError(f"{what} {path}: too many levels of symlinks: refused")
            target = Path(os.readlink(entry))
            if target.is_absolute():
                current = Path("/")
            pending[:0] = [part for part in target.parts if part != "/"]
            continue
        if not stat.S_ISDIR(entry_info.st_mode):
            raise UsageError(f"{what} {path}: {entry} is not a directory: refused")
        _check_parent(entry, entry_info, path, what, owners)
        current = entry
    if unreachable is not None:
        raise UsageError(f"{what} {path}: {unreachable.strerror}: refused")


#: Symlinks followed on the way to a state directory, at most (the kernel's own bound).
_MAX_LINKS = 40


def _check_parent(parent: Path, info: os.stat_result, path: Path, what: str, owners: set[int]) -> None:
    if info.st_uid not in owners:
        raise UsageError(f"{what} {path}: parent {parent} is owned by uid {info.st_uid}, not root: refused")
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        raise UsageError(f"{what} {path}: parent {parent} is writable by other users: refused; "
                         f"run chmod go-w {parent} or choose another directory")


def _tighten_children(directory: Path, depth: int, changed: list[str], *, names: frozenset[str] | None = None,
                      skip: frozenset[str] = frozenset()) -> None:
    """Directories 0700 and files 0600 down to `depth` levels below `directory` (not further: below a
    pod's or a layer's directory the modes are the container's own); only the entries in `names` when
    given (kubelite's own, in a directory that may hold others'); the contents of the entries named in
    `skip` are left as they are (runc's state, 0711 by runc's choice below our 0700 directory)."""
    if depth <= 0:
        return
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if names is not None and entry.name not in names:
            continue
        if entry.is_symlink() or os.path.ismount(entry.path):   # a pinned netns, a volume's tmpfs: not ours to chmod
            continue
        if entry.is_dir(follow_symlinks=False):
            if tighten(entry.path, DIR_MODE):
                changed.append(entry.path)
            if entry.name not in skip:
                _tighten_children(Path(entry.path), depth - 1, changed)
        elif entry.is_file(follow_symlinks=False) and tighten(entry.path, FILE_MODE):
            changed.append(entry.path)


#: What kubelite makes directly in the state root and in the run directory (`layout` names
#: them): the only entries there whose modes it ever changes.
ROOT_NAMES = layout.ROOT_NAMES
RUN_NAMES = layout.RUN_NAMES


def tighten_layout(root: Path, run_dir: Path) -> list[str]:
    """Bring an installation made by an older kubelite (0755 directories, 0644 files) to today's modes:
    kubelite's own entries of the root and run directory (`ROOT_NAMES`, `RUN_NAMES`; anything else there
    is left as it is) owner-only; the API's files, logs and git checkouts entirely; pods and images to
    the depth kubelite owns (the contents of a layer or a volume keep their modes — unreachable now for
    anyone but root). The root and run directory themselves are made 0700 only when they hold nothing
    but kubelite's entries (a directory shared with others, such as `--run-dir /run`, keeps its mode:
    kubelite's entries in it are owner-only). Never loosens anything."""
    changed: list[str] = []
    for top, names in ((root, ROOT_NAMES), (run_dir, RUN_NAMES)):
        try:
            own = set(os.listdir(top)) <= names
        except (FileNotFoundError, NotADirectoryError):
            own = False
        if own and tighten(top, DIR_MODE):
            changed.append(str(top))
    _tighten_children(root, 1, changed, names=ROOT_NAMES)
    for name in (layout.API_DIR, layout.LOGS_DIR, layout.GIT_DIR):
        changed += tighten_tree(root / name)
    _tighten_children(layout.pods_dir(root), 1, changed)
    _tighten_children(layout.images_dir(root), 2, changed)
    _tighten_children(run_dir, 2, changed, names=RUN_NAMES, skip=frozenset({layout.RUNC_DIR}))
    _tighten_children(run_dir / layout.CNI_RUN_DIR, 3, changed)
    return sorted(set(changed))


def prepare_top(path: Path, what: str) -> None:
    """Refuse a state root or run directory another user could change (UsageError, one line), and make
    it (owner-only) when it is missing. Every command that makes state under the root goes through it."""
    check_owned(path, what)
    try:
        make_top(path)
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror or exc}") from None
    check_owned(path, what)   # made just now: ours, and no one slipped a symlink in


def prepare_state_dirs(root: Path, run_dir: Path) -> list[str]:
    """At start: `prepare_top` for the root and run directory, and tighten an older installation.
    Returns the paths whose modes were tightened."""
    prepare_top(root, "state root")
    prepare_top(run_dir, "run directory")
    return tighten_layout(root, run_dir)
