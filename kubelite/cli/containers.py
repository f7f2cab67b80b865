"""`logs`, `exec`, `kill`, `cp`: commands that reach into a pod's containers.

Owns: finding a container from a pod name (kubectl's rules: `-c`, else the first container, with
a note when there are several), reading CRI-format log files the way `kubectl logs` prints them
(`--previous`, `--tail`, `--timestamps`, `--since`, `--since-time`, `-f`; every container with
`--all-containers`, followed together; each line after `[pod/NAME/CONTAINER]` with `--prefix`),
and handing `exec` and `kill` to the container. It reaches containers only through the runtime's
view (`runtime.view`: log paths, exec, signals) and reads the state through `store.reader`; it
never writes it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from kubelite.cli import config
from kubelite.clock import utcnow
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


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_since(text: str) -> float:
    """`--since`: a Go duration as kubectl takes it (`30s`, `5m`, `1h`, `1h30m`) → seconds (> 0)."""
    parts = _DURATION_PART.findall(text)
    if not text or "".join(number + unit for number, unit in parts) != text:
        raise UsageError(f"invalid argument {text!r} for --since: a duration such as 30s, 5m, 1h or 1h30m")
    seconds = sum(float(number) * _UNIT_S[unit] for number, unit in parts)
    if seconds <= 0:
        raise UsageError("--since must be greater than 0")
    return seconds


class _Source:
    """One container's log as `logs` prints it: its file and what goes before each line."""

    def __init__(self, args: argparse.Namespace, pod: dict[str, Any], status: dict[str, Any], prefix: str) -> None:
        self.status, self.prefix = status, prefix
        attempt = status.get("restartCount", 0) - (1 if args.previous else 0)
        self.path = _log_path(args, pod, status["name"], attempt)

    def render(self, lines: list[Any], timestamps: bool) -> str:
        from kubelite.runtime import crilog

        if not self.prefix:
            return crilog.render(lines, timestamps=timestamps)
        return "".join(self.prefix + crilog.render([line], timestamps=timestamps) for line in lines)


def _filter(args: argparse.Namespace, lines: list[Any]) -> list[Any]:
    """--since / --since-time, then --tail, as the kubelet applies them."""
    from kubelite.runtime import crilog

    if args.since is not None:
        lines = crilog.since(lines, parse_since(args.since), utcnow())
    if args.since_time is not None:
        cutoff = crilog.time_ns(args.since_time)
        lines = [line for line in lines if (crilog.time_ns(line.time) or 0) >= (cutoff or 0)]
    return crilog.tail(lines, args.tail)


def logs(args: argparse.Namespace) -> int:
    from kubelite.runtime import crilog

    if args.since is not None and args.since_time is not None:
        raise UsageError("at most one of --since and --since-time may be given")
    if args.since is not None:
        parse_since(args.since)
    if args.since_time is not None and crilog.time_ns(args.since_time) is None:
        raise UsageError(f"--since-time {args.since_time!r}: not an RFC 3339 time such as 2026-01-02T15:04:05Z")
    pod = _pod(args)
    if args.all_containers:
        if args.container is not None:
            raise UsageError("--container cannot be given with --all-containers")
        spec = pod.get("spec", {})
        names = [c["name"] for key in ("initContainers", "containers") for c in spec.get(key, [])]
        statuses = [pod_printers.container_status(pod, name) for name in names]
    else:
        statuses = [_container_status(pod, args.container)]
    meta = pod["metadata"]
    found = []
    for status in statuses:
        source = _Source(args, pod, status, f"[pod/{meta['name']}/{status['name']}] " if args.prefix else "")
        if source.path.exists():
            found.append(source)
        elif not args.all_containers:
            if args.previous:
                raise UsageError(f'previous terminated container "{status["name"]}" in pod '
                                 f'"{meta["name"]}" not found')
            if "waiting" in status.get("state", {}) and not status.get("containerID"):
                raise UsageError(f'container "{status["name"]}" in pod "{meta["name"]}" is waiting to '
                                 f'start: {status["state"]["waiting"].get("reason", "")}')
    handles = []
    try:
        for source in found:
            handle = open(source.path, encoding="utf-8", errors="replace")
            handles.append(handle)
            sys.stdout.write(source.render(_filter(args, crilog.read_lines(handle.read())), args.timestamps))
            sys.stdout.flush()
        if args.follow and not args.previous and found:
            _follow(list(zip(handles, found)), args, pod)
    finally:
        for handle in handles:
            handle.close()
    return 0


def _follow(followed: list[tuple[Any, _Source]], args: argparse.Namespace, pod: dict[str, Any]) -> None:
    """Print new lines of every followed log as they are written, until each container attempt is over."""
    from kubelite.runtime import crilog

    pending = {id(source): "" for _, source in followed}
    while followed:
        quiet = True
        for handle, source in list(followed):
            chunk = handle.read()
            if chunk:
                quiet = False
                complete, _, pending[id(source)] = (pending[id(source)] + chunk).rpartition("\n")
                if complete:
                    sys.stdout.write(source.render(crilog.read_lines(complete + "\n"), args.timestamps))
                    sys.stdout.flush()
            elif source.path.stat().st_size < handle.tell():  # conmon truncated the file at its size limit
                handle.seek(0)
                quiet = False
            elif not _still_running(args, pod, source.status):
                followed.remove((handle, source))
        if quiet:
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
