"""Small Linux primitives the OCI runtime needs: overlay mounts, process identity, cgroups, hostnames.

Owns: the mount(2)/umount2(2) calls (through libc, no `mount` process per container), reading a
process's start time from /proc (a PID is trusted only together with its start time: PIDs are
reused), removing the empty cgroup directories kubelite created and renaming a warm sandbox's
cgroup to its pod's, placing a process (conmon) in a cgroup of kubelite's in every hierarchy, and setting the hostname inside a sandbox's UTS namespace (setns(2) and
sethostname(2) on a short-lived thread of its own). It never touches a mount, a process or a
cgroup it was not handed by the caller.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import re
import threading
from pathlib import Path
from typing import IO

import kubelite.statefiles as statefiles

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.sethostname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
CLONE_NEWUTS = 0x04000000
MNT_DETACH = 2
CGROUP_ROOT = Path("/sys/fs/cgroup")


def mount_overlay(*, lower: list[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount an overlay at `target`: `lower` top-most first, `upper` writable, `work` its work dir."""
    options = f"lowerdir={':'.join(str(p) for p in lower)},upperdir={upper},workdir={work}"
    if _libc.mount(b"overlay", str(target).encode(), b"overlay", 0, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount overlay at {target}: {os.strerror(err)}")


def mount_read_only_overlay(*, lower: list[Path], target: Path) -> None:
    """Mount a read-only overlay of `lower` (top-most first, at least two) at `target`: an image volume."""
    options = f"lowerdir={':'.join(str(p) for p in lower)}"
    flags = 0x1 | 0x2 | 0x4  # MS_RDONLY | MS_NOSUID | MS_NODEV
    if _libc.mount(b"overlay", str(target).encode(), b"overlay", flags, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount overlay at {target}: {os.strerror(err)}")


def mount_tmpfs(target: Path, *, size: str, mode: str = "1777") -> None:
    """Mount a tmpfs at `target` (a pod's shared /dev/shm)."""
    options = f"size={size},mode={mode}"
    flags = 0x2 | 0x4 | 0x8  # MS_NOSUID | MS_NODEV | MS_NOEXEC
    if _libc.mount(b"shm", str(target).encode(), b"tmpfs", flags, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs at {target}: {os.strerror(err)}")


def mount_volume_tmpfs(target: Path, *, size_bytes: int | None = None, mode: str = "0777") -> None:
    """Mount a tmpfs for a pod volume at `target` (memory emptyDir, secret volumes): nosuid, nodev."""
    options = f"mode={mode}" + (f",size={size_bytes}" if size_bytes else "")
    flags = 0x2 | 0x4  # MS_NOSUID | MS_NODEV
    if _libc.mount(b"tmpfs", str(target).encode(), b"tmpfs", flags, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs at {target}: {os.strerror(err)}")


def bind_mount(source: str, target: Path) -> None:
    """Bind `source` (a path, or /proc/self/fd/N of an O_PATH descriptor) onto `target`."""
    MS_BIND = 0x1000
    if _libc.mount(source.encode(), str(target).encode(), None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bind mount at {target}: {os.strerror(err)}")


def mount_points() -> list[Path]:
    """Every mount point in this mount namespace (`/proc/self/mountinfo`, its octal escapes decoded)."""
    return [Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]))
            for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def mounts_below(path: Path) -> list[Path]:
    """Mount points at or below `path` in this mount namespace, deepest first."""
    prefix = str(path).rstrip("/")
    found = [point for point in mount_points() if str(point) == prefix or str(point).startswith(prefix + "/")]
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount_below(path: Path) -> None:
    """Detach every mount at or below `path`, deepest first (before a directory tree is removed)."""
    for point in mounts_below(path):
        unmount(point)


def bounding_capabilities() -> str:
    """This process's capability bounding set, as the hex mask in /proc/self/status (CapBnd)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return line.split()[1]
    return "0"


def read_regular_file(root: Path, relative: str, *, limit: int = 1 << 20) -> str | None:
    """A small text file inside a container root, refusing symlinks on the way (they could point
    out of the root, to the host's files). None when it is absent or not a plain file."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        parts = [p for p in relative.split("/") if p]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | (0 if last else os.O_DIRECTORY)
            try:
                nxt = os.open(part, flags, dir_fd=fd)
            except OSError:
                return None
            os.close(fd)
            fd = nxt
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(limit).decode(errors="replace")
    finally:
        os.close(fd)


def unmount(target: Path) -> None:
    """Detach the mount at `target`; nothing mounted there is fine."""
    if _libc.umount2(str(target).encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"unmount {target}: {os.strerror(err)}")


def is_mountpoint(path: Path) -> bool:
    try:
        return os.path.ismount(path)
    except OSError:
        return False


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22); None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    if fields[0] == b"Z":  # a zombie has exited
        return None
    return int(fields[19])


def process_comm(pid: int) -> str | None:
    """The process's name (/proc/PID/comm); None if it is gone."""
    try:
        with open(f"/proc/{pid}/comm", "rb") as handle:
            return handle.read().decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def alive(pid: int, start: int) -> bool:
    """True if `pid` is still the process that started at `start` (not a reused PID)."""
    return pid > 0 and process_start(pid) == start


def cgroup_dirs(relative: str) -> list[Path]:
    """Every existing directory of cgroup `relative` ("/kubelite-x/pod1"), v1 controllers and v2 alike."""
    rel = relative.strip("/")
    found = []
    if (CGROUP_ROOT / "cgroup.controllers").exists():  # pure cgroup v2
        path = CGROUP_ROOT / rel
        return [path] if path.is_dir() else []
    for controller in sorted(CGROUP_ROOT.iterdir()):
        path = controller / rel
        if path.is_dir() and not controller.is_symlink():
            found.append(path)
    return found


def cgroup_hierarchies() -> list[Path]:
    """The root of every cgroup hierarchy this host mounts below /sys/fs/cgroup: the one of a pure
    cgroup v2 host, or each v1 controller's, the named ones (`name=systemd`) and a hybrid host's
    `unified` (v2) alike; a symlink to a co-mounted controller (`cpu` → `cpu,cpuacct`) counts once."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]
    try:
        entries = sorted(CGROUP_ROOT.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.is_dir() and not p.is_symlink() and os.path.ismount(p)]


def _make_cgroup(hierarchy: Path, relative: str) -> Path:
    """Make the cgroup `relative` in one hierarchy, each missing level in turn. A v1 cpuset level
    without CPUs or memory nodes (a new one has none, and takes no process) gets its parent's,
    whoever made it: another thread may have made it a moment ago and not have written them yet."""
    path = hierarchy
    for part in Path(relative).parts:
        parent, path = path, path / part
        try:
            path.mkdir()
        except FileExistsError:
            pass
        for name in ("cpuset.cpus", "cpuset.mems"):   # v2: empty means the parent's, and stays so
            if (path / name).exists() and not (path / name).read_text().strip():
                inherited = (parent / name).read_text().strip() if (parent / name).exists() else ""
                if inherited:
                    _write_cgroup(path / name, inherited)
    return path


def place_process(relative: str, pid: int) -> None:
    """Move process `pid` into the cgroup `relative` ("/kubelite-x/conmon") in every hierarchy
    (`cgroup_hierarchies`), making it where it is missing or unready: the process then belongs to
    no cgroup of its parent's, so whoever kills the parent's cgroup (systemd stopping a service)
    leaves it alive. One write per hierarchy when the cgroup is ready; a cgroup removed meanwhile
    as empty (a pod's removal tidies the instance's) is made again. OSError when the kernel
    refuses a move."""
    rel = relative.strip("/")
    for hierarchy in cgroup_hierarchies():
        try:
            _write_cgroup(hierarchy / rel / "cgroup.procs", str(pid))
            continue
        except OSError as exc:   # missing (ENOENT), or a cpuset level without CPUs yet (ENOSPC)
            if exc.errno not in (errno.ENOENT, errno.ENOSPC):
                raise
        for attempt in range(3):
            try:
                _write_cgroup(_make_cgroup(hierarchy, rel) / "cgroup.procs", str(pid))
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise


def in_cgroup(pid: int, relative: str) -> bool:
    """True when process `pid` is in the cgroup `relative` in every hierarchy (/proc/PID/cgroup)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    return bool(lines) and all(line.split(":", 2)[2] == "/" + relative.strip("/") for line in lines)


def cgroup_processes(relative: str) -> set[int]:
    """The processes in the cgroup `relative` (not its children), over every hierarchy."""
    found: set[int] = set()
    for base in cgroup_dirs(relative):
        try:
            found.update(int(line) for line in (base / "cgroup.procs").read_text().split())
        except OSError:
            pass
    return found


def _write_cgroup(path: Path, value: str) -> None:
    with open(path, "w", opener=statefiles.no_follow) as handle:
        handle.write(value)


def set_cgroup_limits(relative: str, values: dict[str, int]) -> None:
    """Write a pod cgroup's limits (`ocispec.pod_cgroup_resources`) below an existing cgroup
    `relative`: memory.max/cpu.max/cpu.weight on cgroup v2, memory.limit_in_bytes and
    cpu.cfs_quota_us/cpu.cfs_period_us/cpu.shares on v1. OSError when a file cannot be written."""
    rel = relative.strip("/")
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        base = CGROUP_ROOT / rel
        if "memory_limit" in values:
            _write_cgroup(base / "memory.max", str(values["memory_limit"]))
        if "cpu_quota" in values:
            _write_cgroup(base / "cpu.max", f"{values['cpu_quota']} {values['cpu_period']}")
        if "cpu_shares" in values:   # the kubelet's CPUSharesToCPUWeight
            _write_cgroup(base / "cpu.weight", str(1 + ((values["cpu_shares"] - 2) * 9999) // 262142))
        return
    if "memory_limit" in values:
        _write_cgroup(CGROUP_ROOT / "memory" / rel / "memory.limit_in_bytes", str(values["memory_limit"]))
    cpu = CGROUP_ROOT / "cpu" / rel
    if "cpu_quota" in values:
        _write_cgroup(cpu / "cpu.cfs_period_us", str(values["cpu_period"]))
        _write_cgroup(cpu / "cpu.cfs_quota_us", str(values["cpu_quota"]))
    if "cpu_shares" in values:
        _write_cgroup(cpu / "cpu.shares", str(values["cpu_shares"]))


def kernel_version(release: str | None = None) -> tuple[int, ...]:
    """(major, minor, patch) of the running kernel, from `uname -r` ("6.1.0-13-amd64" → (6, 1, 0))."""
    parts = []
    for piece in (release or os.uname().release).split("-")[0].split("."):
        digits = re.match(r"[0-9]+", piece)
        if digits is None:
            break
        parts.append(int(digits.group(0)))
    return tuple(parts)


def apparmor_enabled() -> bool:
    """True when the kernel has AppArmor enabled and `apparmor_parser` can load profiles (the
    kubelet's `validateHost`)."""
    try:
        enabled = Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y"
    except OSError:
        return False
    import shutil

    return enabled and shutil.which("apparmor_parser", path="/usr/sbin:/usr/bin:/sbin:/bin") is not None


def apparmor_loaded(name: str) -> bool:
    """True when an AppArmor profile of this name is loaded in the kernel."""
    try:
        text = Path("/sys/kernel/security/apparmor/profiles").read_text()
    except OSError:
        return False
    return any(line.rsplit(" (", 1)[0] == name for line in text.splitlines())


def remove_cgroup(relative: str) -> None:
    """Remove the cgroup `relative` and its empty sub-cgroups, deepest first; busy ones stay."""
    for base in cgroup_dirs(relative):
        for dirpath, _dirs, _files in os.walk(base, topdown=False):  # deepest first
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def move_cgroup(old: str, new: str, *, leaf: str) -> bool:
    """Make the cgroup `old` (the parent of the cgroup `old/leaf` that holds one process) the cgroup
    `new`, a sibling of `old`. True when the process must still be moved (`move_process`).

    In a cgroup v1 hierarchy the directory is renamed (the kernel allows a rename within one
    parent): the process, its charges and every setting stay as they are, at once; `new` must not
    exist there yet (OSError). A cgroup v2 hierarchy (the only one, or `unified` beside v1
    controllers) has no rename: `new/leaf` is made here, and the process is moved by
    `move_process` — a write to `cgroup.procs` that waits for an RCU grace period (about 14 ms
    measured), which is why it is a step of its own, run off the caller's path."""
    old_rel, new_rel = old.strip("/"), new.strip("/")
    if os.path.dirname(old_rel) != os.path.dirname(new_rel):
        raise ValueError(f"cgroup {new} is not a sibling of {old}")
    pending = False
    for base in cgroup_dirs(old):
        hierarchy = base.parents[len(Path(old_rel).parts) - 1]
        if (hierarchy / "cgroup.controllers").exists():
            (hierarchy / new_rel / leaf).mkdir(parents=True, exist_ok=True)
            pending = True
        else:
            os.rename(base, base.parent / os.path.basename(new_rel))
    return pending


def move_process(old: str, new: str, *, leaf: str, pid: int, start: int) -> None:
    """The second step of `move_cgroup` in cgroup v2 hierarchies: `pid` (checked by its start time)
    moves from `old/leaf` to `new/leaf`, and the emptied `old` is removed. A process that is gone
    meanwhile is no error."""
    old_rel, new_rel = old.strip("/"), new.strip("/")
    for base in cgroup_dirs(old):
        hierarchy = base.parents[len(Path(old_rel).parts) - 1]
        if not (hierarchy / "cgroup.controllers").exists():
            continue
        if alive(pid, start):
            try:
                (hierarchy / new_rel / leaf).mkdir(parents=True, exist_ok=True)   # removed meanwhile as empty
                _write_cgroup(hierarchy / new_rel / leaf / "cgroup.procs", str(pid))
            except OSError as exc:
                if exc.errno not in (errno.ESRCH, errno.ENOENT) or alive(pid, start):
                    raise
        for empty in (base / leaf, base):
            try:
                os.rmdir(empty)
            except FileNotFoundError:
                pass


def set_hostname(pid: int, start: int, hostname: str) -> None:
    """Set `hostname` in the UTS namespace of process `pid` (checked against its start time).

    Python 3.11 has no os.setns: a thread of its own joins the namespace through libc's setns(2),
    calls sethostname(2) there and ends, so no other thread of kubelite ever changes namespace."""
    fd = os.open(f"/proc/{pid}/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if not alive(pid, start):   # the namespace file is the process's: its PID was not reused
            raise ProcessLookupError(errno.ESRCH, f"process {pid} is gone")
        failed: list[OSError] = []

        def join_and_set() -> None:
            name = hostname.encode()
            if _libc.setns(fd, CLONE_NEWUTS) != 0 or _libc.sethostname(name, len(name)) != 0:
                err = ctypes.get_errno()
                failed.append(OSError(err, f"setting the hostname of process {pid}: {os.strerror(err)}"))

        thread = threading.Thread(target=join_and_set, name="sethostname", daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if failed:
        raise failed[0]


def remove_empty_cgroup(relative: str) -> None:
    """Remove the cgroup `relative` only where it is empty, leaving everything below it alone (its
    children may be in the making by another thread)."""
    for base in cgroup_dirs(relative):
        try:
            os.rmdir(base)
        except OSError:
            pass


def try_lock(path: Path, owner: str) -> tuple[IO[str] | None, str]:
    """Take the exclusive flock of `path` without waiting and write `owner` into the file. Returns
    the open file (the lock lasts while it is open), or None and what the current holder wrote."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)   # may be the system's /run/lock: left as it is
    handle = open(path, "a+", opener=statefiles.no_follow)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        return None, holder
    handle.seek(0)
    handle.truncate()
    handle.write(owner + "\n")
    handle.flush()
    return handle, ""
