"""`logs`, `exec`, `kill`, `cp`: commands that reach into a pod's containers.

Owns: finding a container from a pod name (kubectl's rules: `-c`, else the first container, with
a note when there are several), reading CRI-format log files the way `kubectl logs` prints them
(`--previous`, `--tail`, `--timestamps`, `-f`), and handing `exec` and `kill` to the container.
It reaches containers only through the runtime's view (`runtime.view`: log paths, exec, signals)
and reads the state through `store.reader`; it never writes it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from kubelite.cli import config
from kubelite.errors import UsageError
from kubelite.kubectl import pods as pod_printers
from kubelite.runtime.view import RuntimeView
from kubelite.store.reader import Reader

FOLLOW_POLL_S = 0.2


def _pod(args: argparse.Namespace) -> dict[str, Any]:
    reader = Reader(config.root(args.root))
    try:
        pods = reader.pods(args.namespace or "default", args.pod)
    finally:
        reader.close()
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")] or pods
    if not live:
        raise UsageError(f'pods "{args.pod}" not found')
    return live[0]


def _container_status(pod: dict[str, Any], name: str | None) -> dict[str, Any]:
    """The status of container `name`, or of the pod's first container (kubectl's default)."""
    spec = pod.get("spec", {})
    names = [c["name"] for c in spec.get("containers", [])]
    all_names = [c["name"] for c in spec.get("initContainers", [])] + names
    if name is None:
        name = names[0]
        if len(names) > 1:
            print(f'Defaulted container "{name}" out of: {", ".join(names)}', file=sys.stderr)
    elif name not in all_names:
        raise UsageError(f'container {name} is not valid for pod {pod["metadata"]["name"]}')
    return pod_printers.container_status(pod, name)


def _view(args: argparse.Namespace) -> RuntimeView:
    return RuntimeView(root=config.root(args.root), run_dir=config.run_dir(args.run_dir))


def _log_path(args: argparse.Namespace, pod: dict[str, Any], container: str, attempt: int) -> Path:
    meta = pod["metadata"]
    return _view(args).log_path(namespace=meta["namespace"], pod=meta["name"], uid=meta["uid"], container=container,
                                attempt=attempt)


def logs(args: argparse.Namespace) -> int:
    from kubelite.runtime import crilog

    pod = _pod(args)
    status = _container_status(pod, args.container)
    attempt = status.get("restartCount", 0) - (1 if args.previous else 0)
    path = _log_path(args, pod, status["name"], attempt)
    if not path.exists():
        if args.previous:
            raise UsageError(f'previous terminated container "{status["name"]}" in pod '
                             f'"{pod["metadata"]["name"]}" not found')
        if "waiting" in status.get("state", {}) and not status.get("containerID"):
            raise UsageError(f'container "{status["name"]}" in pod "{pod["metadata"]["name"]}" is waiting to '
                             f'start: {status["state"]["waiting"].get("reason", "")}')
        return 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = crilog.read_lines(handle.read())
        sys.stdout.write(crilog.render(crilog.tail(lines, args.tail), timestamps=args.timestamps))
        sys.stdout.flush()
        if args.follow and not args.previous:
            _follow(handle, path, args, pod, status)
    return 0


def _follow(handle: Any, path: Path, args: argparse.Namespace, pod: dict[str, Any], status: dict[str, Any]) -> None:
    """Print new lines as they are written, until the container attempt is over."""
    from kubelite.runtime import crilog

    pending = ""
    while True:
        chunk = handle.read()
        if chunk:
            pending += chunk
            complete, _, pending = pending.rpartition("\n")
            if complete:
                sys.stdout.write(crilog.render(crilog.read_lines(complete + "\n"), timestamps=args.timestamps))
                sys.stdout.flush()
            continue
        if path.stat().st_size < handle.tell():  # conmon truncated the file at its size limit
            handle.seek(0)
            continue
        if not _still_running(args, pod, status):
            return
        time.sleep(FOLLOW_POLL_S)


def _still_running(args: argparse.Namespace, pod: dict[str, Any], status: dict[str, Any]) -> bool:
    reader = Reader(config.root(args.root))
    try:
        current = [p for p in reader.pods(pod["metadata"]["namespace"], pod["metadata"]["name"])
                   if p["metadata"]["uid"] == pod["metadata"]["uid"]]
    finally:
        reader.close()
    if not current:
        return False
    now = _container_status(current[0], status["name"])
    return now.get("restartCount") == status.get("restartCount") and "running" in now.get("state", {})


def running(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod `args` name and the status of its container (`-c`, else the first); UsageError
    unless that container runs."""
    pod = _pod(args)
    status = _container_status(pod, args.container)
    container_id = status.get("containerID") or ""
    if "running" not in status.get("state", {}) or not container_id.partition("://")[2]:
        raise UsageError(f'container "{status["name"]}" in pod "{pod["metadata"]["name"]}" is not running')
    return pod, status


def _running_container(args: argparse.Namespace) -> str:
    """The ID (`<runtime>://<id>`) of the container `args` name; UsageError unless it runs."""
    return running(args)[1]["containerID"]


def exec_(args: argparse.Namespace) -> int:
    """Run a command in the container. Without a terminal the runtime's exec replaces this process,
    so its exit code is ours; with `-t` on a terminal, a session copies between this terminal and
    the container's (`cli.terminal`)."""
    if not args.command_args:
        raise UsageError("give a command after --, e.g. kubelite exec web -- sh -c 'echo hi'")
    container_id = _running_container(args)
    view = _view(args)
    tty = args.tty
    if tty and not os.isatty(0):
        print("Unable to use a TTY - input is not a terminal or the right kind of file", file=sys.stderr)
        tty = False
    if tty:
        from kubelite.cli import terminal

        session = view.exec_session(container_id, args.command_args, stdin=True, tty=True,
                                    size=terminal.local_size(0))
        return terminal.run(session)
    argv = view.exec_argv(container_id, args.command_args)
    sys.stdout.flush()
    os.execv(argv[0], argv)
    return 127  # not reached


def kill(args: argparse.Namespace) -> int:
    """Send a signal to the container's PID 1: the supported way to inject a crash."""
    _view(args).signal(_running_container(args), args.signal)
    print(f'container "{_container_status(_pod(args), args.container)["name"]}" signalled {args.signal.upper()}')
    return 0


def run(args: argparse.Namespace) -> int:
    if args.command == "cp":
        from kubelite.cli import copy

        return copy.run(args, _view(args), lambda namespace, pod: _running_container(
            argparse.Namespace(**{**vars(args), "namespace": namespace, "pod": pod})))
    return {"logs": logs, "exec": exec_, "kill": kill}[args.command](args)
