"""Where the runtime's files are, below the state root and the run directory — pure, no I/O.

Owns the paths that more than one module needs: a container attempt's log
(`<root>/logs/<namespace>_<pod>_<uid>/<container>/<attempt>.log`, as the kubelet lays out
`/var/log/pods`) and runc's state directory for this instance (`<run-dir>/runc`). Standard library
only: the CLI and the API server use it without loading the runtime.
"""

from __future__ import annotations

from pathlib import Path


def pod_log_dir(root: Path, namespace: str, pod: str, uid: str) -> Path:
    """The directory of a pod's container logs: `<root>/logs/<namespace>_<pod>_<uid>`."""
    return root / "logs" / f"{namespace}_{pod}_{uid}"


def container_log_path(root: Path, namespace: str, pod: str, uid: str, container: str, attempt: int) -> Path:
    """The CRI-format log of one attempt of a container (its restart count)."""
    return pod_log_dir(root, namespace, pod, uid) / container / f"{attempt}.log"


def runc_root(run_dir: Path) -> Path:
    """runc's `--root` for this instance: its containers' state, apart from any other runc user's."""
    return run_dir / "runc"
