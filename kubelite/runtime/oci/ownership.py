"""Which kubelite instance a run directory belongs to: its marker, `<run-dir>/instance`.

Owns the tie between a run directory and the state root it serves. Nothing else ties them: the
runtime's start, its warm sandboxes and `kubelite reset`'s sweep act on whatever a run directory
holds, so a run directory given with the wrong state root (or a directory of another program's)
must be refused before any of them runs. `serve` writes the marker (the instance, derived from the
state root, and the root itself, for the messages) once it holds the root's lock; a run directory
whose marker names another instance is refused. One without a marker (made by a kubelite older than
the marker) is this instance's only where its records prove it: every sandbox's cgroup inside the
instance's tree, every container's log inside the state root. Directories every program shares
(`/run`, `/tmp`, `/`…) are refused as a state root or run directory at all.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from kubelite import layout, statefiles
from kubelite.errors import UsageError
from kubelite.runtime.view import instance_name

#: Directories other programs use too: never a kubelite's state root or run directory.
SHARED_DIRS = frozenset({"/", "/run", "/var/run", "/run/user", "/run/lock", "/tmp", "/var/tmp", "/var", "/var/lib",
                         "/var/cache", "/var/log", "/dev", "/dev/shm", "/etc", "/usr", "/opt", "/srv", "/home",
                         "/root", "/mnt", "/media", "/proc", "/sys", "/boot"})


def check_not_shared(path: Path, what: str) -> None:
    """Refuse (UsageError) a directory every program shares as a state root or run directory."""
    for candidate in {os.path.abspath(path), os.path.realpath(path)}:
        if candidate in SHARED_DIRS or (os.path.dirname(candidate) == "/run/user" and candidate != "/run/user"):
            raise UsageError(f"{what} {path} is a directory other programs use too: refused (give a directory "
                             f"of kubelite's own, such as {candidate.rstrip('/')}/kubelite)")


@dataclass(frozen=True)
class Owner:
    """What a run directory says about its owner: `ours`, or whose it is (`root` may be unknown)."""

    ours: bool
    marked: bool               # by a marker (else by its records, or by nothing at all)
    instance: str = ""
    root: str = ""

    def describe(self) -> str:
        return f"the kubelite of state root {self.root}" if self.root else f"kubelite instance {self.instance}"


def owner(root: Path, run_dir: Path) -> Owner | None:
    """Whose `run_dir` is, seen from the instance of `root`: None when nothing tells (no marker, no
    record: an empty or foreign directory, nothing in it proven kubelite's)."""
    instance = instance_name(root)
    marker = layout.instance_marker_path(run_dir)
    try:
        data = json.loads(marker.read_text())
        marked = str(data["instance"])
    except FileNotFoundError:
        return _by_records(root, run_dir, instance)
    except (OSError, ValueError, KeyError, TypeError):
        return Owner(False, True, instance="(unreadable marker)", root=f"unknown ({marker} is unreadable)")
    return Owner(marked == instance, True, instance=marked, root=str(data.get("root", "")))


def _by_records(root: Path, run_dir: Path, instance: str) -> Owner | None:
    """An unmarked run directory's owner from its records: ours only if each one names this instance."""
    found = False
    for record in sorted(layout.sandboxes_dir(run_dir).glob(f"*/{layout.RECORD_NAME}")):
        cgroup = _field(record, "cgroup_parent")
        found = True
        if cgroup is None or not (cgroup == f"/{instance}" or cgroup.startswith(f"/{instance}/")):
            return Owner(False, False, instance=(cgroup or "?").strip("/").split("/")[0])
    logs = os.path.abspath(layout.logs_dir(root))
    for record in sorted(layout.containers_dir(run_dir).glob(f"*/{layout.RECORD_NAME}")):
        log_path = _field(record, "log_path")
        found = True
        if log_path is None or not os.path.abspath(log_path).startswith(logs + "/"):
            return Owner(False, False, instance="?", root=os.path.dirname(os.path.dirname(log_path or "?")))
    return Owner(True, False, instance=instance, root=str(root)) if found else None


def _field(record: Path, name: str) -> str | None:
    try:
        value = json.loads(record.read_text()).get(name)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def claim(root: Path, run_dir: Path) -> None:
    """`serve`, holding the root's lock: refuse a run directory another instance's marker or records
    name, else mark it this instance's."""
    found = owner(root, run_dir)
    if found is not None and not found.ours:
        raise refusal(run_dir, found)
    if found is None or not found.marked:
        statefiles.write_atomic(layout.instance_marker_path(run_dir),
                                json.dumps({"instance": instance_name(root), "root": str(Path(root).resolve())}) + "\n")


def refusal(run_dir: Path, found: Owner) -> UsageError:
    hint = (f"; once that kubelite is gone for good, `kubelite reset --root {found.root} --run-dir {run_dir}` "
            "clears it" if found.marked and found.root and not found.root.startswith("unknown") else "")
    return UsageError(f"run directory {run_dir} belongs to {found.describe()}: refused (give each state root a "
                      f"run directory of its own with --run-dir){hint}")
