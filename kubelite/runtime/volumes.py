"""Pod volumes on the host: what a container's volume mounts bind, set up before it starts.

Owns everything kubelite creates for volumes below `<root>/pods/<uid>/`, and nothing else:

    volumes/kubernetes.io~empty-dir/<name>/     emptyDir (a tmpfs for `medium: Memory`)
    volumes/kubernetes.io~configmap/<name>/     configMap files, written atomically
    volumes/kubernetes.io~secret/<name>/        secret files, on a tmpfs
    volumes/kubernetes.io~downward-api/<name>/  downwardAPI files, written atomically, on a tmpfs
    volumes/kubernetes.io~projected/<name>/     projected files (configMap, secret, downwardAPI), on a tmpfs
    volumes/kubernetes.io~image/<name>/         an image's layers, a read-only overlay
    volume-subpaths/<volume>/<container>/<n>    a subPath, bind-mounted after a safe resolution

Projected files are written the way the kubelet's AtomicWriter does: a new timestamped directory
`..2026_11_28_06_00_00.123`, then the `..data` symlink swapped to it by rename, and one
user-visible symlink per top-level name (`key -> ..data/key`), so a container sees either the
old or the new set of files, never a mix, and an edit shows up in place without a restart.

With the pod's `fsGroup`, the volumes the kubelet gives to that group (emptyDir, configMap,
secret, downwardAPI, projected; and any persistent volume that calls `set_volume_ownership`)
are chgrp'd to it, with group read (and write, for writable volumes) and setgid directories, as
the kubelet's `SetVolumeOwnership`; projected files get theirs before the `..data` swap.
A persistentVolumeClaim volume is a directory the agent's claims own (`<root>/volumes/pvc-<uid>/`):
it is only bound here, never created or removed with the pod.

hostPath volumes are checked (and created for the `…OrCreate` types) with the kubelet's
messages; they are bound by runc inside the container, never mounted on the host. Everything
mounted here is unmounted before its directory is removed (`tear_down`), also for pods that
went while kubelite was not running (`remove_orphans`). The pod directory itself (its path is
`layout.pod_dir`) is removed here too, by `remove_pod_dir`, which the runtime calls once the pod's
last sandbox is gone: the runtime owns only the containers' layers inside it.

With `host_changes=False` (the fake runtime's dry runs) nothing is mounted, nothing outside
the state root is created and no group is changed: the checks still run.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Callable

import kubelite.statefiles as statefiles
from kubelite.api import quantity
from kubelite.api.models import Container, Pod, PodSecurityContext, Volume
from kubelite.errors import RuntimeError_
from kubelite import layout
from kubelite.runtime import linux
from kubelite.runtime.protocol import Mount

log = logging.getLogger("kubelite.volumes")

#: A projected volume's content: relative path → (bytes, mode).
Payload = dict[str, tuple[bytes, int]]
DATA_LINK = "..data"
_PLUGIN_DIRS = {"emptyDir": "kubernetes.io~empty-dir", "configMap": "kubernetes.io~configmap",
                "secret": "kubernetes.io~secret", "downwardAPI": "kubernetes.io~downward-api",
                "projected": "kubernetes.io~projected", "image": "kubernetes.io~image"}
#: The kubelet's `SetVolumeOwnership` masks: group read-write (read-only volumes: read), and on
#: directories group search and setgid, so that new files keep the group.
RW_MASK, RO_MASK, EXEC_MASK = 0o660, 0o440, 0o110


class VolumeError(RuntimeError_):
    """A volume could not be set up (the pod waits; event FailedMount)."""

    def __init__(self, volume: str, message: str) -> None:
        super().__init__(f'MountVolume.SetUp failed for volume "{volume}" : {message}')
        self.volume = volume


class SubPathError(RuntimeError_):
    """A subPath could not be prepared (the container waits with CreateContainerConfigError)."""


def memory_limit_bytes(pod: Pod) -> int | None:
    """The sum of the containers' memory limits, when every app container has one (the kubelet's
    size for a memory emptyDir without sizeLimit); None otherwise."""
    total = 0
    for c in pod.spec.containers:
        limit = c.resources.limits.get("memory")
        if limit is None:
            return None
        total += quantity.bytes_(limit)
    return total or None


class VolumeHost:
    """Sets up, refreshes and tears down the volumes of the pods of one state root."""

    def __init__(self, root: Path, *, host_changes: bool,
                 image_layers: Callable[[str], list[str]] | None = None) -> None:
        self.root = root
        self.host_changes = host_changes
        self.image_layers = image_layers   # an image reference → its layer directories, bottom first
        self._written: dict[Path, str] = {}   # projected volume dir → hash of its last payload
        self._claims_owned: set[tuple[str, str]] = set()   # (pod uid, volume): fsGroup applied

    # ------------------------------------------------------------------ paths

    def pod_dir(self, uid: str) -> Path:
        return layout.pod_dir(self.root, uid)

    def volume_dir(self, uid: str, volume: Volume) -> Path:
        kind = volume.sources()[0]
        return layout.pod_volumes_dir(self.root, uid) / _PLUGIN_DIRS[kind] / volume.name

    # ------------------------------------------------------------------ set up

    def set_up(self, uid: str, pod: Pod, payloads: dict[str, Payload], *,
               claims: dict[str, str] | None = None) -> dict[str, str]:
        """Make every volume of the pod ready; returns volume name → host path. Raises VolumeError.

        `payloads` holds the files of the configMap, secret and downwardAPI volumes; `claims` the
        directories of the persistentVolumeClaim volumes (bound by the agent). Idempotent: a volume
        already set up is only refreshed.
        """
        paths = {}
        for volume in pod.spec.volumes:
            if volume.persistent_volume_claim is not None:   # a directory of its own, outside the pod's
                paths[volume.name] = (claims or {})[volume.name]
                if (uid, volume.name) not in self._claims_owned:   # once per pod, as the kubelet mounts it
                    try:
                        self.own_persistent(Path(paths[volume.name]), pod,
                                            read_only=bool(volume.persistent_volume_claim.read_only))
                    except OSError as exc:
                        raise VolumeError(volume.name, exc.strerror or str(exc)) from None
                    self._claims_owned.add((uid, volume.name))
                continue
            try:
                paths[volume.name] = self._set_up_one(uid, pod, volume, payloads.get(volume.name))
            except OSError as exc:
                raise VolumeError(volume.name, exc.strerror or str(exc)) from None
        return paths

    def _set_up_one(self, uid: str, pod: Pod, volume: Volume, payload: Payload | None) -> str:
        if volume.host_path is not None:
            return check_host_path(volume.host_path.path, volume.host_path.type or "", create=self.host_changes,
                                   volume=volume.name)
        target = self.volume_dir(uid, volume)
        fresh = not target.exists()
        statefiles.make_dirs(target.parent, base=self.root)   # pods/<uid>/volumes/<kind>: 0700
        target.mkdir(mode=0o755, exist_ok=True)   # a container's own user lists it; pods/<uid> is 0700
        fs_group = fs_group_of(pod) if self.host_changes else None   # a dry run may not own the group
        if volume.empty_dir is not None:
            if fresh:
                os.chmod(target, 0o777)  # as the kubelet: any user in the pod may write
            if volume.empty_dir.medium == "Memory" and self.host_changes and not linux.is_mountpoint(target):
                limit = volume.empty_dir.size_limit
                size = quantity.bytes_(limit) if limit is not None else memory_limit_bytes(pod)
                linux.mount_volume_tmpfs(target, size_bytes=size)
                fresh = True   # a new, empty tmpfs
            if fresh and fs_group is not None:   # as the kubelet: once, when the emptyDir is set up
                set_volume_ownership(target, fs_group, read_only=False, policy=change_policy_of(pod))
            return str(target)
        if volume.image is not None:
            return str(target)   # mounted when a container that uses it is created (`image_volume`)
        if (volume.secret or volume.projected or volume.downward_api) is not None and self.host_changes \
                and not linux.is_mountpoint(target) and (fresh or not any(target.iterdir())):
            # secrets never touch the disk; projected and downwardAPI volumes are a tmpfs too, as the kubelet's.
            # Only on a new, empty directory: a volume that already holds files (set up by an earlier kubelite,
            # on the disk) may be bound into running containers, which would not see a tmpfs mounted over it.
            linux.mount_volume_tmpfs(target, mode="0755")
        self.write_projection(target, payload or {}, fs_group=fs_group)
        return str(target)

    def write_projection(self, target: Path, payload: Payload, *, fs_group: int | None = None) -> bool:
        """Write `payload` into the volume at `target` atomically; False when it was already there.

        With `fs_group`, the new files get the group and group read (setgid directories) before
        the swap, so a container of the pod never sees them without."""
        digest = _payload_hash(payload) + f"/{fs_group}"
        if self._written.get(target) == digest:
            return False
        current = _read_link(target / DATA_LINK)
        if current is not None and _matches(target / current, payload, fs_group):
            self._written[target] = digest
            return False
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
        new_dir = Path(tempfile.mkdtemp(prefix=stamp, dir=target))
        try:
            os.chmod(new_dir, 0o755)
            for rel, (data, mode) in sorted(payload.items()):
                path = new_dir / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.chmod(path, mode)
            for sub in {p for rel in payload for p in Path(rel).parents if str(p) != "."}:
                os.chmod(new_dir / sub, 0o755)   # whatever the umask
            if fs_group is not None:
                set_volume_ownership(new_dir, fs_group, read_only=True)
                set_volume_ownership(target, fs_group, read_only=True, recursive=False)
            # the swap: atomic (the kubelet's AtomicWriter names the new link `..data_tmp` too)
            statefiles.replace_symlink(target / DATA_LINK, new_dir.name, temporary="..data_tmp", group=fs_group)
        except BaseException:
            shutil.rmtree(new_dir, ignore_errors=True)
            raise
        top = {rel.split("/")[0] for rel in payload}
        for name in top:
            link = target / name
            if not link.is_symlink():
                os.symlink(f"{DATA_LINK}/{name}", link)
                if fs_group is not None:
                    os.lchown(link, -1, fs_group)
        for entry in os.listdir(target):
            if not entry.startswith("..") and entry not in top and (target / entry).is_symlink():
                (target / entry).unlink()
        if current is not None and current != new_dir.name and current.startswith(".."):
            shutil.rmtree(target / current, ignore_errors=True)
        self._written[target] = digest
        return True

    def refresh(self, uid: str, volume: Volume, payload: Payload, *, fs_group: int | None = None) -> bool:
        """Rewrite a projected volume whose content changed (it must be set up). True if it changed."""
        target = self.volume_dir(uid, volume)
        if not (target / DATA_LINK).is_symlink():
            return False
        return self.write_projection(target, payload, fs_group=fs_group if self.host_changes else None)

    def own_persistent(self, target: Path, pod: Pod, *, read_only: bool) -> bool:
        """The pod's fsGroup on a volume whose content outlives the pod (a claim's directory), with its
        `fsGroupChangePolicy`, at each set-up as the kubelet does; False when there is nothing to do or
        OnRootMismatch found the root right already. Dry runs change nothing."""
        fs_group = fs_group_of(pod)
        if fs_group is None or not self.host_changes:
            return False
        return set_volume_ownership(target, fs_group, read_only=read_only, policy=change_policy_of(pod))

    def image_volume(self, uid: str, volume: Volume) -> str:
        """The image volume's overlay (the image's layers, read-only), mounted once for the pod; the
        image must be in the store (the agent pulled it by the volume's pullPolicy)."""
        assert volume.image is not None
        target = self.volume_dir(uid, volume)
        if not self.host_changes or linux.is_mountpoint(target):
            return str(target)
        if self.image_layers is None:
            raise SubPathError(f'image volume "{volume.name}": this runtime has no image store')
        try:
            lower = [Path(p) for p in reversed(self.image_layers(volume.image.reference or ""))]
        except RuntimeError_ as exc:
            raise SubPathError(f'failed to mount image volume "{volume.name}": {exc}') from None
        if len(lower) < 2:   # overlayfs needs two lower layers when it has no upper one
            empty = target.parent / ".empty"
            empty.mkdir(mode=0o755, exist_ok=True)
            lower.append(empty)
        linux.mount_read_only_overlay(lower=lower, target=target)
        return str(target)

    # ------------------------------------------------------------------ container mounts

    def container_mounts(self, uid: str, pod: Pod, container: Container, paths: dict[str, str],
                         sub_paths: dict[int, str] | None = None) -> tuple[Mount, ...]:
        """The container's mounts from its volumeMounts and the volumes' host paths; `sub_paths`: the
        expanded `subPathExpr` of a mount, by index. Raises SubPathError."""
        volumes = {v.name: v for v in pod.spec.volumes}
        mounts = []
        for index, vm in enumerate(container.volume_mounts):
            volume = volumes[vm.name]
            try:
                source = self.image_volume(uid, volume) if volume.image is not None else paths[vm.name]
            except OSError as exc:
                raise SubPathError(f'failed to mount image volume "{vm.name}": {exc.strerror or exc}') from None
            read_only = bool(vm.read_only) or (volume.config_map or volume.secret or volume.downward_api
                                               or volume.projected or volume.image) is not None
            read_only = read_only or bool(volume.persistent_volume_claim and volume.persistent_volume_claim.read_only)
            sub_path = vm.sub_path or (sub_paths or {}).get(index)
            if sub_path and volume.image is not None and self.host_changes \
                    and not os.path.lexists(os.path.join(source, sub_path)):
                raise SubPathError(f'failed to prepare subPath for volumeMount "{vm.name}" of container '
                                   f'"{container.name}": subPath "{sub_path}" does not exist in the image')
            if sub_path:
                try:
                    source = self._sub_path(uid, container.name, vm.name, index, source, sub_path)
                except OSError as exc:
                    raise SubPathError(f'failed to prepare subPath for volumeMount "{vm.name}" of container '
                                       f'"{container.name}": {exc.strerror or exc}') from None
            mounts.append(Mount(container_path=vm.mount_path, host_path=source, read_only=read_only))
        return tuple(mounts)

    def _sub_path(self, uid: str, container: str, volume: str, index: int, base: str, sub_path: str) -> str:
        """`sub_path` inside the volume at `base`, resolved safely, bound at a path of its own.

        Symlinks are followed only while they stay inside the volume; the result is opened
        without following a final link and checked again through the descriptor, and that
        descriptor is what gets bound, so a link swapped in between cannot lead out.
        """
        root = os.path.realpath(base)
        target = os.path.realpath(os.path.join(root, sub_path))
        if not _inside(target, root):
            raise SubPathError(f'failed to prepare subPath for volumeMount "{volume}" of container "{container}": '
                               f'subPath "{sub_path}" resolves outside the volume')
        if not os.path.lexists(target):   # the kubelet creates a missing subPath as a directory (doSafeMakeDir)
            statefiles.make_dirs(target, 0o755, base=root, tighten_last=False)
        fd = os.open(target, os.O_PATH | os.O_NOFOLLOW)
        try:
            actual = os.readlink(f"/proc/self/fd/{fd}")
            if not _inside(actual, root):
                raise SubPathError(f'failed to prepare subPath for volumeMount "{volume}" of container '
                                   f'"{container}": subPath "{sub_path}" resolves outside the volume')
            if not self.host_changes:
                return actual
            is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
            bind = layout.pod_volume_subpaths_dir(self.root, uid) / volume / container / str(index)
            statefiles.make_dirs(bind.parent, base=self.root)
            if linux.is_mountpoint(bind):
                linux.unmount(bind)
            if is_dir:
                bind.mkdir(exist_ok=True)
            elif not bind.exists():
                bind.touch()
            linux.bind_mount(f"/proc/self/fd/{fd}", bind)
            return str(bind)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ tear down

    def tear_down(self, uid: str) -> None:
        """Unmount and remove everything of the pod's volumes (hostPath targets are never touched)."""
        pod_dir = self.pod_dir(uid)
        for part in (layout.VOLUME_SUBPATHS_NAME, layout.VOLUMES_NAME):
            base = pod_dir / part
            if not base.exists():
                continue
            linux.unmount_below(base)
            leftover = linux.mounts_below(base)
            if leftover:   # never remove a tree through a mount
                log.warning("pod %s: %s still mounted; not removed", uid, leftover[0])
                continue
            shutil.rmtree(base, ignore_errors=True)
        for path in [p for p in self._written if _inside(str(p), str(pod_dir))]:
            del self._written[path]
        self._claims_owned = {key for key in self._claims_owned if key[0] != uid}
        try:
            pod_dir.rmdir()   # a pod without containers (deleted across a reboot): nothing of it is left
        except OSError:
            pass   # its container layers are still there: the runtime removes the directory with them

    def remove_orphans(self, known_uids: set[str]) -> None:
        """Tear down the volumes of pods kubelite no longer knows (removed while it was not running)."""
        pods = layout.pods_dir(self.root)
        if not pods.is_dir():
            return
        for pod_dir in pods.iterdir():
            if pod_dir.name not in known_uids and ((pod_dir / layout.VOLUMES_NAME).exists()
                                                   or (pod_dir / layout.VOLUME_SUBPATHS_NAME).exists()):
                log.info("removing the volumes of orphan pod %s", pod_dir.name)
                try:
                    self.tear_down(pod_dir.name)
                except RuntimeError_ as exc:   # a name kubelite never makes: not a path to follow
                    log.warning("not removing %s: %s", pod_dir, exc)


def remove_pod_dir(root: Path, uid: str) -> None:
    """Remove `<root>/pods/<uid>` with whatever is left in it, once the pod's last sandbox is gone (the
    runtime asks this when it removes it): the one place that removes a whole pod directory. Every
    mount below is unmounted first, and nothing is removed through one that stays."""
    pod_dir = layout.pod_dir(root, uid)
    linux.unmount_below(pod_dir)
    leftover = linux.mounts_below(pod_dir)
    if leftover:
        log.warning("pod %s: %s still mounted; its directory is not removed", uid, leftover[0])
        return
    shutil.rmtree(pod_dir, ignore_errors=True)


# ---------------------------------------------------------------------- ownership


def fs_group_of(pod: Pod) -> int | None:
    psc: PodSecurityContext | None = pod.spec.security_context
    return psc.fs_group if psc is not None else None


def change_policy_of(pod: Pod) -> str:
    psc = pod.spec.security_context
    return (psc.fs_group_change_policy if psc is not None else None) or "Always"


def needs_ownership_change(root: Path, fs_group: int, *, read_only: bool) -> bool:
    """`requiresPermissionChange`: the root's group is not `fs_group`, or it lacks the group's bits."""
    try:
        info = os.stat(root)
    except OSError:
        return True
    wanted = RO_MASK if read_only else RW_MASK
    if stat.S_ISDIR(info.st_mode):
        wanted |= stat.S_ISGID | EXEC_MASK
    return info.st_gid != fs_group or info.st_mode & wanted != wanted


#: A recursive fsGroup change that takes this long is logged as a warning (it runs on the agent's
#: loop, which waits for it meanwhile).
SLOW_OWNERSHIP_S = 1.0


def set_volume_ownership(root: Path, fs_group: int, *, read_only: bool, policy: str = "Always",
                         recursive: bool = True) -> bool:
    """The kubelet's `SetVolumeOwnership`: every file and directory below `root` (and `root`) gets
    group `fs_group` and the group bits (read-write, or read for a read-only volume; directories
    also search and setgid); a symlink only its group. With `policy` "OnRootMismatch", nothing is
    done when `root` already looks right. Returns False when skipped.

    Walks with directory descriptors and changes each entry through an `O_PATH|O_NOFOLLOW`
    descriptor: a symlink a container swaps in meanwhile is never followed out of the volume, and
    no other file system below `root` is entered."""
    if policy == "OnRootMismatch" and not needs_ownership_change(root, fs_group, read_only=read_only):
        return False
    mask = RO_MASK if read_only else RW_MASK
    root_dev = os.stat(root).st_dev
    _own(os.open(root, os.O_PATH | os.O_DIRECTORY), fs_group, mask, root_dev)
    if not recursive:
        return True
    started, entries = time.monotonic(), 0
    for _dirpath, dirnames, filenames, dirfd in os.fwalk(root, follow_symlinks=False):
        for name in [*dirnames, *filenames]:
            try:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW, dir_fd=dirfd)
            except FileNotFoundError:
                continue   # removed meanwhile
            _own(fd, fs_group, mask, root_dev, name=name, dirfd=dirfd)
            entries += 1
    took = time.monotonic() - started
    if took >= SLOW_OWNERSHIP_S:   # the kubelet warns the same way (after 30 s); the walk holds the loop
        log.warning("Setting volume ownership for %s and fsGroup set took %.1f s (%d files and directories). If "
                    "the volume has a lot of files then setting volume ownership could be slow: consider "
                    "fsGroupChangePolicy: OnRootMismatch", root, took, entries)
    return True


def _own(fd: int, fs_group: int, mask: int, dev: int, *, name: str = "", dirfd: int | None = None) -> None:
    """chgrp and chmod one entry through its O_PATH descriptor (closed here)."""
    try:
        info = os.fstat(fd)
        if info.st_dev != dev:
            return   # another file system mounted inside: not the volume's
        if stat.S_ISLNK(info.st_mode):
            os.chown(name, -1, fs_group, dir_fd=dirfd, follow_symlinks=False)
            return
        proc = f"/proc/self/fd/{fd}"   # the inode the descriptor holds, never a path looked up again
        os.chown(proc, -1, fs_group)
        extra = stat.S_ISGID | EXEC_MASK if stat.S_ISDIR(info.st_mode) else 0
        os.chmod(proc, stat.S_IMODE(info.st_mode) | mask | extra)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- hostPath


def check_host_path(path: str, type_: str, *, create: bool, volume: str) -> str:
    """The kubelet's hostPath type check (`checkType`); creates for the …OrCreate types. Returns `path`."""
    def fail(what: str) -> VolumeError:
        return VolumeError(volume, f"hostPath type check failed: {path} is not {what}")

    try:
        info: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise VolumeError(volume, f"hostPath type check failed: {path}: {exc.strerror}") from None
    mode = info.st_mode if info is not None else 0
    if type_ == "":
        if info is None and create:
            os.makedirs(path, mode=0o755, exist_ok=True)   # as containerd does for a missing bind source
        return path
    if type_ == "DirectoryOrCreate" and info is None:
        if create:
            try:
                os.makedirs(path, mode=0o755, exist_ok=True)
            except OSError as exc:
                raise VolumeError(volume, f"mkdir {path}: {exc.strerror}") from None
        return path
    if type_ == "FileOrCreate" and info is None:
        if create:
            try:
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o644))
            except OSError as exc:
                raise VolumeError(volume, f"open {path}: {exc.strerror}") from None
        return path
    checks = {"DirectoryOrCreate": (stat.S_ISDIR, "a directory"), "Directory": (stat.S_ISDIR, "a directory"),
              "FileOrCreate": (stat.S_ISREG, "a file"), "File": (stat.S_ISREG, "a file"),
              "Socket": (stat.S_ISSOCK, "a socket file"), "CharDevice": (stat.S_ISCHR, "a character device"),
              "BlockDevice": (stat.S_ISBLK, "a block device")}
    if type_ not in checks:
        raise VolumeError(volume, f"{type_} is an invalid volume type")
    test, what = checks[type_]
    if info is None or not test(mode):
        raise fail(what)
    return path


# ---------------------------------------------------------------------- helpers


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _payload_hash(payload: Payload) -> str:
    digest = hashlib.sha256()
    for rel, (data, mode) in sorted(payload.items()):
        digest.update(f"{rel}\0{mode}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def _read_link(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EINVAL):
            return None
        raise


def _matches(directory: Path, payload: Payload, fs_group: int | None = None) -> bool:
    """Whether `directory` holds exactly the files of `payload` with their modes (and group)."""
    found = {}
    for dirpath, _dirs, files in os.walk(directory):
        for name in files:
            full = Path(dirpath) / name
            found[str(full.relative_to(directory))] = full
    if set(found) != set(payload):
        return False
    for rel, (data, mode) in payload.items():
        info = found[rel].lstat()
        if fs_group is not None:
            if info.st_gid != fs_group:
                return False
            mode |= RO_MASK
        if stat.S_IMODE(info.st_mode) != mode or info.st_size != len(data) or found[rel].read_bytes() != data:
            return False
    return True
