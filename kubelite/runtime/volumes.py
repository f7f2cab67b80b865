"""Pod volumes on the host: what a container's volume mounts bind, set up before it starts.

Owns everything kubelite creates for volumes below `<root>/pods/<uid>/`, and nothing else:

    volumes/kubernetes.io~empty-dir/<name>/     emptyDir (a tmpfs for `medium: Memory`)
    volumes/kubernetes.io~configmap/<name>/     configMap files, written atomically
    volumes/kubernetes.io~secret/<name>/        secret files, on a tmpfs
    volumes/kubernetes.io~downward-api/<name>/  downwardAPI files, written atomically
    volume-subpaths/<volume>/<container>/<n>    a subPath, bind-mounted after a safe resolution

Projected files are written the way the kubelet's AtomicWriter does: a new timestamped directory
`..2026_11_28_06_00_00.123`, then the `..data` symlink swapped to it by rename, and one
user-visible symlink per top-level name (`key -> ..data/key`), so a container sees either the
old or the new set of files, never a mix, and an edit shows up in place without a restart.

A persistentVolumeClaim volume is a directory the agent's claims own (`<root>/volumes/pvc-<uid>/`):
it is only bound here, never created or removed with the pod.

hostPath volumes are checked (and created for the `…OrCreate` types) with the kubelet's
messages; they are bound by runc inside the container, never mounted on the host. Everything
mounted here is unmounted before its directory is removed (`tear_down`), also for pods that
went while kubelite was not running (`remove_orphans`).

With `host_changes=False` (the fake runtime's dry runs) nothing is mounted and nothing outside
the state root is created: the checks still run.
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

import kubelite.statefiles as statefiles
from kubelite.api import quantity
from kubelite.api.models import Container, Pod, Volume
from kubelite.errors import RuntimeError_
from kubelite.runtime import linux
from kubelite.runtime.protocol import Mount

log = logging.getLogger("kubelite.volumes")

#: A projected volume's content: relative path → (bytes, mode).
Payload = dict[str, tuple[bytes, int]]
DATA_LINK = "..data"
_PLUGIN_DIRS = {"emptyDir": "kubernetes.io~empty-dir", "configMap": "kubernetes.io~configmap",
                "secret": "kubernetes.io~secret", "downwardAPI": "kubernetes.io~downward-api"}


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

    def __init__(self, root: Path, *, host_changes: bool) -> None:
        self.root = root
        self.host_changes = host_changes
        self._written: dict[Path, str] = {}   # projected volume dir → hash of its last payload

    # ------------------------------------------------------------------ paths

    def pod_dir(self, uid: str) -> Path:
        if not uid or "/" in uid or uid in (".", ".."):
            raise RuntimeError_(f"refusing an unsafe pod uid for a path: {uid!r}")
        return self.root / "pods" / uid

    def volume_dir(self, uid: str, volume: Volume) -> Path:
        kind = volume.sources()[0]
        return self.pod_dir(uid) / "volumes" / _PLUGIN_DIRS[kind] / volume.name

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
        if volume.empty_dir is not None:
            if fresh:
                os.chmod(target, 0o777)  # as the kubelet: any user in the pod may write
            if volume.empty_dir.medium == "Memory" and self.host_changes and not linux.is_mountpoint(target):
                limit = volume.empty_dir.size_limit
                size = quantity.bytes_(limit) if limit is not None else memory_limit_bytes(pod)
                linux.mount_volume_tmpfs(target, size_bytes=size)
            return str(target)
        if volume.secret is not None and self.host_changes and not linux.is_mountpoint(target):
            linux.mount_volume_tmpfs(target, mode="0755")  # secrets never touch the disk
        self.write_projection(target, payload or {})
        return str(target)

    def write_projection(self, target: Path, payload: Payload) -> bool:
        """Write `payload` into the volume at `target` atomically; False when it was already there."""
        digest = _payload_hash(payload)
        if self._written.get(target) == digest:
            return False
        current = _read_link(target / DATA_LINK)
        if current is not None and _matches(target / current, payload):
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
            link_tmp = target / "..data_tmp"
            link_tmp.unlink(missing_ok=True)
            os.symlink(new_dir.name, link_tmp)
            os.rename(link_tmp, target / DATA_LINK)   # the swap: atomic
        except BaseException:
            shutil.rmtree(new_dir, ignore_errors=True)
            raise
        top = {rel.split("/")[0] for rel in payload}
        for name in top:
            link = target / name
            if not link.is_symlink():
                os.symlink(f"{DATA_LINK}/{name}", link)
        for entry in os.listdir(target):
            if not entry.startswith("..") and entry not in top and (target / entry).is_symlink():
                (target / entry).unlink()
        if current is not None and current != new_dir.name and current.startswith(".."):
            shutil.rmtree(target / current, ignore_errors=True)
        self._written[target] = digest
        return True

    def refresh(self, uid: str, volume: Volume, payload: Payload) -> bool:
        """Rewrite a projected volume whose content changed (it must be set up). True if it changed."""
        target = self.volume_dir(uid, volume)
        if not (target / DATA_LINK).is_symlink():
            return False
        return self.write_projection(target, payload)

    # ------------------------------------------------------------------ container mounts

    def container_mounts(self, uid: str, pod: Pod, container: Container, paths: dict[str, str]) -> tuple[Mount, ...]:
        """The container's mounts from its volumeMounts and the volumes' host paths. Raises SubPathError."""
        volumes = {v.name: v for v in pod.spec.volumes}
        mounts = []
        for index, vm in enumerate(container.volume_mounts):
            source = paths[vm.name]
            volume = volumes[vm.name]
            read_only = bool(vm.read_only) or (volume.config_map or volume.secret or volume.downward_api) is not None
            read_only = read_only or bool(volume.persistent_volume_claim and volume.persistent_volume_claim.read_only)
            if vm.sub_path:
                try:
                    source = self._sub_path(uid, container.name, vm.name, index, source, vm.sub_path)
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
            bind = self.pod_dir(uid) / "volume-subpaths" / volume / container / str(index)
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
        for part in ("volume-subpaths", "volumes"):
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
        try:
            pod_dir.rmdir()   # a pod without containers (deleted across a reboot): nothing of it is left
        except OSError:
            pass   # its container layers are still there: the runtime removes the directory with them

    def remove_orphans(self, known_uids: set[str]) -> None:
        """Tear down the volumes of pods kubelite no longer knows (removed while it was not running)."""
        pods = self.root / "pods"
        if not pods.is_dir():
            return
        for pod_dir in pods.iterdir():
            if pod_dir.name not in known_uids and ((pod_dir / "volumes").exists()
                                                   or (pod_dir / "volume-subpaths").exists()):
                log.info("removing the volumes of orphan pod %s", pod_dir.name)
                self.tear_down(pod_dir.name)


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


def _matches(directory: Path, payload: Payload) -> bool:
    """Whether `directory` holds exactly the files of `payload` with their modes."""
    found = {}
    for dirpath, _dirs, files in os.walk(directory):
        for name in files:
            full = Path(dirpath) / name
            found[str(full.relative_to(directory))] = full
    if set(found) != set(payload):
        return False
    for rel, (data, mode) in payload.items():
        info = found[rel].lstat()
        if stat.S_IMODE(info.st_mode) != mode or info.st_size != len(data) or found[rel].read_bytes() != data:
            return False
    return True
