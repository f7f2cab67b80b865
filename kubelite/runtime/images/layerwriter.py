"""Writing one layer's tar entries into a directory, safely: the security-critical half of unpacking.

Never trusts the layer: no entry may leave the layer directory (absolute names, `..`, entries
below a symlink, hard links to anything but a file of the same layer are refused and the whole
load with them), no symlink is ever followed (every file is created relative to a directory fd
opened with O_NOFOLLOW), device nodes are skipped, modes (setuid and setgid included) and numeric
owners are kept exactly as the tar says. Whiteouts become what overlayfs expects from a lower
layer: `.wh.NAME` → a 0/0 character device NAME, `.wh..wh..opq` → the xattr
`trusted.overlay.opaque=y` on its directory. Of the tar's xattrs only `user.*` and
`security.capability` are applied (never `trusted.*`, nor `user.overlay.*`, which a layer could
use to steer overlayfs). Each file's size is counted against the layer's `Budget` before it is
written. It reads no stream and checks no digest: `unpacking` does.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
from pathlib import Path

from kubelite.runtime.images.limits import Budget
from kubelite.runtime.images.records import CHUNK
from kubelite.runtime.images.tarsplit import entry_parts
from kubelite.runtime.reference import ImageError, quoted

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_WHITEOUT_META = ".wh..wh."           # AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): ignored
_OVERLAY_OPAQUE = "trusted.overlay.opaque"
_PAX_XATTR = "SCHILY.xattr."
_MAX_CACHED_DIRS = 1024

Parts = tuple[str, ...]


class LayerWriter:
    """Writes one layer's tar entries below a directory, relative to directory fds, never following a symlink.

    Each directory on an entry's path is opened with O_NOFOLLOW from its parent's fd (a symlink or a
    non-directory there refuses the load); the entry itself is created with *at() calls on its
    parent's fd after removing whatever that name held before (later tar entries win, as with tar).
    Directory attributes are applied at the end, so that a read-only directory can still be filled.
    """

    def __init__(self, root: Path, label: str, budget: Budget | None = None) -> None:
        self._label = label
        self._budget = budget
        self._root_fd = os.open(root, _OPEN_DIR)
        os.fchmod(self._root_fd, 0o755)
        self._dirs: dict[Parts, int] = {(): self._root_fd}
        self._dir_entries: dict[Parts, tarfile.TarInfo] = {}
        self._files: set[Parts] = set()       # non-directories this layer wrote: possible hard link targets
        self._whiteouts: set[Parts] = set()   # whiteouts this layer wrote
        self._as_root = os.geteuid() == 0
        self.size = 0

    def __enter__(self) -> LayerWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    # ---------------------------------------------------------------- entries

    def add(self, member: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        if len(self._dirs) > _MAX_CACHED_DIRS:
            self._forget(())
        parts = self._parts(member.name, member.name)
        if not parts:
            if not member.isdir():
                raise self._refuse(member.name, "is the layer's root but not a directory")
            self._dir_entries[()] = member
            return
        if parts[-1].startswith(_WHITEOUT):
            self._add_whiteout(member, parts)
        elif member.isdir():
            self._add_dir(member, parts)
        elif member.issym():
            self._add_symlink(member, parts)
        elif member.islnk():
            self._add_hardlink(member, parts)
        elif member.isreg():
            self._add_file(member, parts, tf)
        elif member.isfifo():
            self._add_fifo(member, parts)
        # block and character devices (and unknown types) are skipped: a container gets its /dev from the runtime

    def _add_whiteout(self, member: tarfile.TarInfo, parts: Parts) -> None:
        parent = self._dir_fd(parts[:-1], member.name)
        base = parts[-1]
        if base == _OPAQUE:
            self._set_opaque(parent, member.name)
            return
        if base.startswith(_WHITEOUT_META):
            return
        target = base[len(_WHITEOUT):]
        if target in ("", ".", ".."):
            raise self._refuse(member.name, "is a whiteout of nothing")
        hidden = parts[:-1] + (target,)
        self._make_room(parent, hidden)
        try:
            os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)
        except PermissionError:
            raise ImageError(f"cannot unpack {self._label}: the whiteout {quoted(member.name)} becomes a character "
                             "device, which needs root (CAP_MKNOD)") from None
        self._whiteouts.add(hidden)

    def _add_dir(self, member: tarfile.TarInfo, parts: Parts) -> None:
        parent = self._dir_fd(parts[:-1], member.name)
        was_whiteout = parts in self._whiteouts
        if not self._make_room(parent, parts, keep_dir=True):
            os.mkdir(parts[-1], 0o700, dir_fd=parent)
            if was_whiteout:   # a directory re-created over its own whiteout hides what lies below
                self._set_opaque(self._dir_fd(parts, member.name), member.name)
        self._dir_entries[parts] = member

    def _add_file(self, member: tarfile.TarInfo, parts: Parts, tf: tarfile.TarFile) -> None:
        if self._budget is not None:
            self._budget.file(member.size)   # before a byte is written: a sparse file counts in full
        parent = self._dir_fd(parts[:-1], member.name)
        self._make_room(parent, parts)
        fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=parent)
        try:
            source = tf.extractfile(member)
            if source is not None:
                with source, open(fd, "wb", closefd=False) as out:
                    shutil.copyfileobj(source, out, CHUNK)
            self._own(fd, member)
            os.fchmod(fd, stat.S_IMODE(member.mode))
            self._set_xattrs(fd, member)
            self._set_mtime(fd, member)
        finally:
            os.close(fd)
        self._files.add(parts)
        self.size += member.size

    def _add_symlink(self, member: tarfile.TarInfo, parts: Parts) -> None:
        if not member.linkname or "\0" in member.linkname:
            raise self._refuse(member.name, "is a symlink without a valid target")
        parent = self._dir_fd(parts[:-1], member.name)
        self._make_room(parent, parts)
        os.symlink(member.linkname, parts[-1], dir_fd=parent)   # may point anywhere: it is never followed here
        self._own(parts[-1], member, dir_fd=parent)
        self._set_mtime(parts[-1], member, dir_fd=parent)
        self._files.add(parts)

    def _add_hardlink(self, member: tarfile.TarInfo, parts: Parts) -> None:
        link = member.linkname
        if link.startswith("/") or ".." in link.split("/"):
            raise self._refuse(member.name, f"is a hard link to {quoted(link)}, outside the layer")
        target = self._parts(link, member.name)
        if target == parts:
            return
        if target not in self._files:
            raise self._refuse(member.name, f"is a hard link to {quoted(link)}, which is not a file of this layer")
        parent = self._dir_fd(parts[:-1], member.name)
        self._make_room(parent, parts)
        target_parent = self._dir_fd(target[:-1], member.name, create=False)
        try:
            st = os.stat(target[-1], dir_fd=target_parent, follow_symlinks=False)
        except FileNotFoundError:
            raise self._refuse(member.name, f"is a hard link to {quoted(link)}, which is not in the layer") from None
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
            raise self._refuse(member.name, f"is a hard link to {quoted(link)}, which is not a file")
        os.link(target[-1], parts[-1], src_dir_fd=target_parent, dst_dir_fd=parent, follow_symlinks=False)
        self._files.add(parts)

    def _add_fifo(self, member: tarfile.TarInfo, parts: Parts) -> None:
        parent = self._dir_fd(parts[:-1], member.name)
        self._make_room(parent, parts)
        os.mkfifo(parts[-1], 0o600, dir_fd=parent)
        self._own(parts[-1], member, dir_fd=parent)
        # chmod follows symlinks, but this name was just created as a fifo in a directory only we write to
        os.chmod(parts[-1], stat.S_IMODE(member.mode), dir_fd=parent)
        self._set_mtime(parts[-1], member, dir_fd=parent)
        self._files.add(parts)

    def finish(self) -> None:
        """Apply the directories' owners, modes, xattrs and times, deepest first."""
        for parts in sorted(self._dir_entries, key=len, reverse=True):
            member = self._dir_entries[parts]
            try:
                fd = self._dir_fd(parts, member.name, create=False)
            except ImageError:
                continue   # replaced by a non-directory later in the layer
            self._own(fd, member)
            os.fchmod(fd, stat.S_IMODE(member.mode))
            self._set_xattrs(fd, member)
            self._set_mtime(fd, member)

    # ---------------------------------------------------------------- paths

    def _parts(self, name: str, entry: str) -> Parts:
        if "\0" in name:
            raise self._refuse(entry, "has a NUL byte in its name")
        if name.startswith("/"):
            raise self._refuse(entry, f"has the absolute path {quoted(name)}")
        parts = entry_parts(name)
        if ".." in parts:
            raise self._refuse(entry, f"has a '..' component in {quoted(name)}")
        return parts

    def _dir_fd(self, parts: Parts, entry: str, *, create: bool = True) -> int:
        """An fd of the directory `parts`, opened one component at a time without following symlinks."""
        fd = self._root_fd
        for i, name in enumerate(parts):
            key = parts[:i + 1]
            if (cached := self._dirs.get(key)) is not None:
                fd = cached
                continue
            try:
                child = os.open(name, _OPEN_DIR, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise self._refuse(entry, f"needs {quoted('/'.join(key))}, which is not in the layer") from None
                os.mkdir(name, 0o755, dir_fd=fd)   # a parent the tar does not list: root-owned 0755, as Docker does
                child = os.open(name, _OPEN_DIR, dir_fd=fd)
                os.fchmod(child, 0o755)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                if stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise self._refuse(entry, f"lies under the symlink {quoted('/'.join(key))}") from None
                raise self._refuse(entry, f"lies under {quoted('/'.join(key))}, which is not a directory") from None
            self._dirs[key] = child
            fd = child
        return fd

    def _make_room(self, parent: int, parts: Parts, *, keep_dir: bool = False) -> bool:
        """Remove what the name holds (never following it); True when it is a directory kept as is."""
        try:
            st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            self._forget(parts)
            shutil.rmtree(parts[-1], dir_fd=parent)
        else:
            os.unlink(parts[-1], dir_fd=parent)
        self._files.discard(parts)
        self._whiteouts.discard(parts)
        return False

    def _forget(self, parts: Parts) -> None:
        """Close the cached fds of `parts` and everything below it (the root's is kept)."""
        for key in [k for k in self._dirs if k and k[:len(parts)] == parts]:
            os.close(self._dirs.pop(key))

    # ---------------------------------------------------------------- attributes

    def _own(self, target: int | str, member: tarfile.TarInfo, *, dir_fd: int | None = None) -> None:
        """Numeric owner as the tar says (a load by a non-root user keeps its own); `target` is an fd,
        or a name in `dir_fd` that is not followed if it is a symlink."""
        if not self._as_root:
            return
        if isinstance(target, int):
            os.chown(target, member.uid, member.gid)
        else:
            os.chown(target, member.uid, member.gid, dir_fd=dir_fd, follow_symlinks=False)

    def _set_mtime(self, target: int | str, member: tarfile.TarInfo, *, dir_fd: int | None = None) -> None:
        try:
            ns = int(member.mtime * 1_000_000_000)
            if isinstance(target, int):
                os.utime(target, ns=(ns, ns))
            else:
                os.utime(target, ns=(ns, ns), dir_fd=dir_fd, follow_symlinks=False)
        except (OverflowError, OSError, ValueError):
            pass   # a time the filesystem cannot hold is not worth refusing an image for

    def _set_xattrs(self, fd: int, member: tarfile.TarInfo) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith(_PAX_XATTR):
                continue
            attr = key[len(_PAX_XATTR):]
            # user.overlay.* would steer overlayfs mounted with userxattr, as trusted.overlay.* does without
            if (attr.startswith("user.") and not attr.startswith("user.overlay.")) or attr == "security.capability":
                try:
                    os.setxattr(fd, attr, value.encode("utf-8", "surrogateescape"))
                except OSError:
                    pass   # the filesystem does not support it: the file still works without

    def _set_opaque(self, fd: int, entry: str) -> None:
        try:
            os.setxattr(fd, _OVERLAY_OPAQUE, b"y")
        except OSError as e:
            raise ImageError(f"cannot unpack {self._label}: marking the directory of {quoted(entry)} opaque "
                             f"(xattr {_OVERLAY_OPAQUE}) failed: {e.strerror} — this needs root "
                             "(CAP_SYS_ADMIN) and a filesystem with trusted xattrs") from None

    def _refuse(self, entry: str, why: str) -> ImageError:
        return ImageError(f"refusing to load {self._label}: entry {quoted(entry)} {why}")

