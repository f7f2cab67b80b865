"""runc and conmon as programs: finding them, running them with a bounded blocking wait, and
conmon's create protocol (its sync and start pipes).

Owns: the argv-level calls; the OCI runtime (`oci.runtime`) decides what to run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable

from kubelite.errors import RuntimeError_
from kubelite.runtime import view

#: Debian's packages, as the README's commands install them.
REQUIRED_BINARIES = {"runc": "runc", "conmon": "conmon", "catatonit": "catatonit"}
#: How long conmon may take to report a created container.
CREATE_TIMEOUT_S = 30.0


class MissingDependency(RuntimeError_):
    """A program the OCI runtime needs is not installed."""


def find_binaries() -> dict[str, str]:
    """Paths of runc, conmon and catatonit; MissingDependency naming the packages that are absent."""
    found, missing = {}, []
    for name, package in REQUIRED_BINARIES.items():
        path = view.which(name)
        if path is None:
            missing.append(package)
        else:
            found[name] = path
    if missing:
        raise MissingDependency(f"the OCI runtime needs {', '.join(missing)}: "
                                f"run 'apt-get install {' '.join(missing)}' (or scripts/run as root)")
    return found


#: This instance's name in cgroup paths and annotations (`view.instance_name`).
instance_name = view.instance_name


def run(cmd: list[str], *, timeout: float, **popen: Any) -> subprocess.CompletedProcess[Any]:
    """`subprocess.run`, minus its polling: with a timeout, `subprocess.run` checks for the exit
    with sleeps that double up to 50 ms, which added up to 30 ms to every runc call. Here the wait
    blocks, and a timer kills the process if it runs too long (TimeoutExpired, as subprocess)."""
    proc = subprocess.Popen(cmd, **popen)
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        out, err = proc.communicate()
    finally:
        timer.cancel()
    if expired.is_set():
        raise subprocess.TimeoutExpired(cmd, timeout, out, err)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run_conmon(argv: list[str], *, bundle: Path, place: Callable[[int], None] | None = None,
               timeout: float = CREATE_TIMEOUT_S) -> int:
    """Run conmon (which runs `runc create`) and return the container's PID 1 from its sync pipe.

    conmon speaks over two socket pairs named in its environment: it waits for one byte on the
    start pipe, then reports `{"data": PID}` (or a negative value and a message) on the sync pipe.
    Its first process exits at once; the monitor lives on, detached, and outlives kubelite.
    `place(pid)` runs before that byte is sent, while conmon has forked nothing yet (the wait is
    there for it, as podman uses it): it moves conmon into a cgroup of its own, so the monitor and
    what it starts never belong to kubelite's cgroup.
    """
    sync_parent, sync_child = socket.socketpair()
    start_parent, start_child = socket.socketpair()
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "_OCI_SYNCPIPE": str(sync_child.fileno()), "_OCI_STARTPIPE": str(start_child.fileno())}
    timer: threading.Timer | None = None
    try:
        proc = subprocess.Popen(argv, cwd=bundle, env=env, pass_fds=(sync_child.fileno(), start_child.fileno()),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        timer = threading.Timer(timeout, proc.kill)  # a blocking wait, bounded (see `run`)
        timer.start()
        sync_child.close()
        start_child.close()
        if place is not None:
            try:
                place(proc.pid)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        try:
            start_parent.sendall(b"0")
        except OSError:  # conmon already gave up: its stderr says why
            pass
        sync_parent.settimeout(timeout)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sync_parent.recv(65536)
            if not chunk:
                break
            data += chunk
        _, stderr = proc.communicate()
    finally:
        if timer is not None:
            timer.cancel()
        for sock in (sync_parent, sync_child, start_parent, start_child):
            sock.close()
    try:
        reply = json.loads(data.decode() or "{}")
    except ValueError:
        reply = {}
    pid = reply.get("data", -1)
    if not isinstance(pid, int) or pid <= 0:
        detail = reply.get("message") or stderr.decode(errors="replace").strip() or "conmon gave no reply"
        raise RuntimeError_(f"creating container: {detail}")
    return pid
