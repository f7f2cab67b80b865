"""The runtime as another process sees it: a container's log, exec, attach and signals, without the daemon.

Owns what the CLI's `logs`, `exec`, `attach` and `kill` need from the containers of this instance: where an
attempt's log is (`layout`), the command line that runs a command in a running container (or a
session of it with its pipes or a terminal, `streaming`), and
sending a signal to its PID 1 — both through runc under this instance's runc root, found from the
container's ID (`runc://<id>`) — and attaching to its main process through conmon's attach socket
in its bundle (`runtime.attach`). A container of the simulated runtime has no process to reach.
Also the runtime's version as a Node reports it (`runtime_version`), for the API server, the
instance's name in cgroup paths (`instance_name`), and a pod's network namespace from its
sandbox's record (`pod_netns`, for port-forward).

Standard library only, and it loads nothing of the runtime itself (`linux`'s PID check only when
a pod's namespace is asked for): the CLI's commands stay fast.
Errors: `errors.RuntimeError_`, one line each.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from typing import TYPE_CHECKING

from kubelite.errors import RuntimeError_
from kubelite import layout
from kubelite.runtime.attach import ConmonAttach

if TYPE_CHECKING:
    from kubelite.runtime.streaming import ExecSession

#: The runtime whose containers have processes this view can reach (the scheme of their IDs).
RUNC = "runc"


def which(name: str) -> str | None:
    """A runtime binary by name: on PATH, else in the system directories root's PATH may leave out."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin",
                                                    "/bin"]))


def runtime_version(name: str) -> str:
    """`<runtime>://<version>`, the Node's containerRuntimeVersion (CRI's `Version`): runc's own
    version for runc, kubelite's for the simulated runtime."""
    if name != RUNC:
        from kubelite import __version__

        return f"{name}://{__version__}"
    import subprocess

    runc = which("runc")
    if runc is None:
        return "runc://unknown"
    try:
        first = subprocess.run([runc, "--version"], capture_output=True, text=True, timeout=5).stdout.split("\n")[0]
    except (OSError, subprocess.TimeoutExpired):
        return "runc://unknown"
    return "runc://" + (first.split()[-1] if first.split() else "unknown")


def instance_name(root: Path) -> str:
    """This instance's name in cgroup paths and annotations: derived from its state root."""
    import hashlib

    return "kubelite-" + hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]


class RuntimeView:
    """The containers of the instance with state root `root` and run directory `run_dir`."""

    def __init__(self, *, root: Path, run_dir: Path) -> None:
        self.root, self.run_dir = root, run_dir

    def log_path(self, *, namespace: str, pod: str, uid: str, container: str, attempt: int) -> Path:
        """The CRI-format log of one attempt of a container (it may not exist)."""
        return layout.container_log_path(self.root, namespace, pod, uid, container, attempt)

    def exec_argv(self, container_id: str, command: list[str], *, tty: bool = False) -> list[str]:
        """The argv that runs `command` in the running container `container_id` (`<runtime>://<id>`),
        for the caller to exec: its exit code is the command's."""
        from kubelite.runtime.streaming import runc_exec_argv

        prefix, bare = self._runc(container_id)
        return runc_exec_argv(prefix, bare, command, tty=tty)

    def exec_session(self, container_id: str, command: list[str], *, stdin: bool = True, tty: bool = False,
                     size: tuple[int, int] | None = None) -> "ExecSession":
        """`command` running in the container as a session of this process (`streaming.RuncExec`):
        its pipes, or with `tty` a terminal of `size` (columns, rows)."""
        from kubelite.runtime.streaming import RuncExec

        prefix, bare = self._runc(container_id)
        return RuncExec(prefix, bare, command, stdin=stdin, tty=tty, size=size)
    def attach(self, container_id: str, *, tty: bool, stdin: bool) -> ConmonAttach:
        """Attach to the running container `container_id`'s main process; `tty` and `stdin` are the
        container's (its spec's `tty`, and `stdin` when the caller also asks for input)."""
        _, bare = self._runc(container_id)
        if not layout.is_safe_name(bare):
            raise RuntimeError_(f"invalid container ID {container_id!r}")
        return ConmonAttach.connect(layout.container_bundle(self.run_dir, bare), tty=tty, stdin=stdin)

    def signal(self, container_id: str, signal: str) -> None:
        """Send `signal` (`TERM`, `SIGKILL`, `9`) to the container's PID 1."""
        import subprocess   # here: `logs` and `exec` start without it

        prefix, bare = self._runc(container_id)
        result = subprocess.run([*prefix, "kill", bare, signal.upper().removeprefix("SIG")],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError_(f"kill: {result.stderr.strip() or 'runc kill failed'}")

    def pod_netns(self, uid: str) -> str | None:
        """The network namespace of pod `uid`'s running sandbox, as a path for setns(2): the pinned
        one with pod networking, else its infra process's (the PID checked by its start time); None
        when the pod is on the host's network. RuntimeError_ when the pod has no running sandbox."""
        import json

        from kubelite.runtime import linux   # here: `logs` and `exec` start without it

        found: list[dict] = []
        directory = layout.sandboxes_dir(self.run_dir)
        for path in directory.glob(f"*/{layout.RECORD_NAME}") if directory.is_dir() else ():
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and record.get("uid") == uid and not record.get("stopped") \
                    and not record.get("warm"):
                found.append(record)
        for record in sorted(found, key=lambda r: r.get("attempt", 0), reverse=True):
            if record.get("host_network"):
                return None
            netns = record.get("netns") or ""
            if netns and os.path.exists(netns):
                return netns
            pid, start = int(record.get("pid") or 0), int(record.get("pid_start") or 0)
            if linux.alive(pid, start):
                return f"/proc/{pid}/ns/net"
        raise RuntimeError_("the pod has no running sandbox")

    def _runc(self, container_id: str) -> tuple[list[str], str]:
        scheme, _, bare = container_id.partition("://")
        if scheme != RUNC:
            raise RuntimeError_("this pod runs on the simulated runtime: there is no process to reach")
        runc = which("runc")
        if runc is None:
            raise RuntimeError_("runc is not installed")
        return [runc, "--root", str(layout.runc_root(self.run_dir))], bare
