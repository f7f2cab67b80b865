"""Where everything lives below the state root and the run directory: the one home of those paths.

Owns: the name of every entry kubelite makes directly in the state root (`ROOT_NAMES`) and the run
directory (`RUN_NAMES`), and the functions that build every path below them — container logs, the
runc root, sandbox and container bundles with their `config.json` and `record.json`, pod directories
`<root>/pods/<uid>` with their container layers, volumes and subPath binds, claims' volumes, the
image store, CNI's files, git sync's checkouts and lock, the database, the daemon's lock and the
API's directory. docs/architecture.md and docs/runtime.md draw the same tree.

Does not own: making, re-moding or removing anything (`kubelite.statefiles` makes directories and
tightens modes; the runtime, the volume host and the image store own what is in their parts). Pure:
it builds paths and checks names, never touches the disk; standard library and `kubelite.errors`
only, so every layer, and `statefiles`, may use it.

    <root>/                               <run-dir>/
      kubelite.db (-wal -shm -journal)      runc/                 runc's own state (--root)
      kubelite.lock  sync.lock              exits/  sockets/      conmon's exit files, attach sockets
      api/                                  sandboxes/<id>/       a sandbox's bundle and record
      logs/<ns>_<pod>_<uid>/<c>/<n>.log     containers/<id>/      a container's bundle and record
      images/  cni/  seccomp/               netns/                pinned network namespaces
      pods/<uid>/containers/<id>/           cni/networks/         host-local's addresses
      pods/<uid>/volumes/<kind>/<name>/     cni/pending/          attachments whose DEL failed
      pods/<uid>/volume-subpaths/…
      volumes/pvc-<claim uid>/
      git/repo.git/  git/worktrees/<sha>/
"""

from __future__ import annotations

import re
from pathlib import Path

from kubelite.errors import RuntimeError_

# ------------------------------------------------------------------------------ the state root

DB_NAME = "kubelite.db"
DB_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal")
LOCK_NAME = "kubelite.lock"        # held by the serving daemon: one daemon per state root
SYNC_LOCK_NAME = "sync.lock"       # held by a git sync
API_DIR = "api"                    # the API's token, certificates and URL
LOGS_DIR = "logs"
IMAGES_DIR = "images"
PODS_DIR = "pods"
GIT_DIR = "git"
CNI_DIR = "cni"
CLAIM_VOLUMES_DIR = "volumes"      # the volumes of PersistentVolumeClaims: they outlive their pods
SECCOMP_DIR = "seccomp"            # the kubelet's --seccomp-profile-root: profiles of type Localhost

#: What kubelite makes directly in the state root whose modes it tightens (statefiles.tighten_layout).
ROOT_NAMES = frozenset({*DB_FILES, LOCK_NAME, SYNC_LOCK_NAME, API_DIR, LOGS_DIR, IMAGES_DIR, PODS_DIR, GIT_DIR,
                        CNI_DIR, CLAIM_VOLUMES_DIR, SECCOMP_DIR})

# ---------------------------------------------------------------------------- the run directory

RUNC_DIR = "runc"
EXITS_DIR = "exits"
SOCKETS_DIR = "sockets"
SANDBOXES_DIR = "sandboxes"
CONTAINERS_DIR = "containers"
NETNS_DIR = "netns"
CNI_RUN_DIR = "cni"
INSTANCE_MARKER = "instance"       # the instance whose run directory this is (`runtime.oci.ownership`)

#: What kubelite makes directly in the run directory (statefiles.tighten_layout).
RUN_NAMES = frozenset({RUNC_DIR, EXITS_DIR, SOCKETS_DIR, SANDBOXES_DIR, CONTAINERS_DIR, NETNS_DIR, CNI_RUN_DIR,
                       INSTANCE_MARKER})

# ------------------------------------------------------------------------- inside a directory

RECORD_NAME = "record.json"          # a sandbox's or container's record, beside its bundle
BUNDLE_CONFIG_NAME = "config.json"   # the OCI runtime configuration of a bundle
VOLUMES_NAME = "volumes"             # in a pod directory: the pod's volumes, by plugin
VOLUME_SUBPATHS_NAME = "volume-subpaths"
LAYERS_NAME = "containers"           # in a pod directory: the containers' writable layers
GIT_REPO_NAME = "repo.git"           # in git sync's directory: the bare clone
GIT_WORKTREES_NAME = "worktrees"     # in git sync's directory: one checkout per commit
GIT_RENDERED_NAME = "rendered"       # in git sync's directory: kustomize's output, one per checkout
GIT_RENDERED_FILE = "kustomized.yaml"   # the one manifest file of a rendered directory

_SAFE_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?\Z")


def is_safe_name(name: str) -> bool:
    """Whether `name` can be one path component that leads nowhere else (a pod uid, a container id)."""
    return bool(_SAFE_NAME.match(name)) and ".." not in name


def safe_name(name: str) -> str:
    """A pod uid or container id used as one path component: refused if it could lead elsewhere."""
    if not is_safe_name(name):
        raise RuntimeError_(f"refusing an unsafe name for a path on this machine: {name!r}")
    return name


# ------------------------------------------------------------------------------ below the root


def db_path(root: Path) -> Path:
    return Path(root) / DB_NAME


def lock_path(root: Path) -> Path:
    return Path(root) / LOCK_NAME


def sync_lock_path(root: Path) -> Path:
    return Path(root) / SYNC_LOCK_NAME


def api_dir(root: Path) -> Path:
    return Path(root) / API_DIR


def git_dir(root: Path) -> Path:
    """Git sync's clone and worktrees."""
    return Path(root) / GIT_DIR


def git_repo_dir(root: Path) -> Path:
    """Git sync's bare clone."""
    return git_dir(root) / GIT_REPO_NAME


def git_worktrees_dir(root: Path) -> Path:
    return git_dir(root) / GIT_WORKTREES_NAME


def git_rendered_dir(root: Path) -> Path:
    """Where the kustomize output of each checkout is written (`<rendered>/<worktree name>/`)."""
    return git_dir(root) / GIT_RENDERED_NAME


def images_dir(root: Path) -> Path:
    return Path(root) / IMAGES_DIR


def seccomp_root(root: Path) -> Path:
    return Path(root) / SECCOMP_DIR


def cni_conflist_path(root: Path, bridge: str) -> Path:
    return Path(root) / CNI_DIR / f"kubelite-{bridge}.conflist"


def claim_volumes_dir(root: Path) -> Path:
    return Path(root) / CLAIM_VOLUMES_DIR


def logs_dir(root: Path) -> Path:
    return Path(root) / LOGS_DIR


def pod_log_dir(root: Path, namespace: str, name: str, uid: str) -> Path:
    """`<root>/logs/<namespace>_<pod>_<uid>`: the logs of one pod (the kubelet's `/var/log/pods` naming)."""
    return Path(root) / LOGS_DIR / f"{namespace}_{name}_{uid}"


def container_log_path(root: Path, namespace: str, name: str, uid: str, container: str, attempt: int) -> Path:
    """The CRI log of one attempt of a container: `<pod log dir>/<container>/<restartCount>.log`."""
    return pod_log_dir(root, namespace, name, uid) / container / f"{attempt}.log"


def pods_dir(root: Path) -> Path:
    return Path(root) / PODS_DIR


def pod_dir(root: Path, uid: str) -> Path:
    """`<root>/pods/<uid>`: the uid is checked, so that no path leads out of the root."""
    return pods_dir(root) / safe_name(uid)


def container_layer_dir(root: Path, uid: str, container_id: str) -> Path:
    """A container's writable layer (`upper/`, `work/`) and the overlay mounted from it (`rootfs/`)."""
    return pod_dir(root, uid) / LAYERS_NAME / safe_name(container_id)


def pod_volumes_dir(root: Path, uid: str) -> Path:
    return pod_dir(root, uid) / VOLUMES_NAME


def pod_volume_subpaths_dir(root: Path, uid: str) -> Path:
    return pod_dir(root, uid) / VOLUME_SUBPATHS_NAME


# ---------------------------------------------------------------------- below the run directory


def runc_root(run_dir: Path) -> Path:
    """runc's `--root`: its state of this instance's containers."""
    return Path(run_dir) / RUNC_DIR


def exits_dir(run_dir: Path) -> Path:
    return Path(run_dir) / EXITS_DIR


def sockets_dir(run_dir: Path) -> Path:
    return Path(run_dir) / SOCKETS_DIR


def sandboxes_dir(run_dir: Path) -> Path:
    return Path(run_dir) / SANDBOXES_DIR


def containers_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CONTAINERS_DIR


def netns_dir(run_dir: Path) -> Path:
    return Path(run_dir) / NETNS_DIR


def instance_marker_path(run_dir: Path) -> Path:
    """`<run-dir>/instance`: the instance (and state root) this run directory belongs to."""
    return Path(run_dir) / INSTANCE_MARKER


def cni_networks_dir(run_dir: Path) -> Path:
    """host-local's address allocations."""
    return Path(run_dir) / CNI_RUN_DIR / "networks"


def cni_pending_dir(run_dir: Path) -> Path:
    """Where the attachments of removed sandboxes wait while their DEL keeps failing."""
    return Path(run_dir) / CNI_RUN_DIR / "pending"


def record_path(bundle: Path) -> Path:
    """The record of the sandbox or container whose bundle is `bundle`."""
    return Path(bundle) / RECORD_NAME


def bundle_config_path(bundle: Path) -> Path:
    return Path(bundle) / BUNDLE_CONFIG_NAME


def sandbox_bundle(run_dir: Path, sandbox_id: str) -> Path:
    """A sandbox's bundle: its record, `config.json`, `rootfs/`, `shm/`, etc files, `network.json`."""
    return sandboxes_dir(run_dir) / sandbox_id


def container_bundle(run_dir: Path, container_id: str) -> Path:
    """A container's bundle: its record, `config.json`, conmon's `persist/` directory."""
    return containers_dir(run_dir) / container_id


def network_record_path(bundle: Path) -> Path:
    """A sandbox's CNI attachment, kept for the DEL that removes it."""
    return Path(bundle) / "network.json"
