"""`logs`, `exec`, `kill`, `cp`: commands that reach into a pod's containers.

Owns: finding a container from a pod name (kubectl's rules and words, from `runtime.targets`:
`-c`, else the `kubectl.kubernetes.io/default-container` annotation's, else the first, with
kubectl's "Defaulted container" notice when there are others; a refusal printed as kubectl prints
it), reading CRI-format log files the way `kubectl logs` prints them (`--previous`, `--tail`,
`--timestamps`, `--since`, `--since-time`, `-f`; every container with `--all-containers`, followed
together; each line after `[pod/NAME/CONTAINER]` with `--prefix`), and handing `exec` and `kill` to
the container. It reaches containers only through the runtime's view (`runtime.view`: log paths,
exec, signals) and reads the state through `store.reader`; it never writes it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from kubelite.cli import config
from kubelite.clock import utcnow
from kubelite.errors import UsageError
from kubelite.kubectl import pods as pod_printers
from kubelite.runtime import targets
from kubelite.runtime.targets import TargetError
from kubelite.runtime.view import RuntimeView
from kubelite.store.reader import Reader

FOLLOW_POLL_S = 0.2


def refuse(exc: TargetError) -> NoReturn:
    """kubectl's line for a pod or container a command cannot reach, and its exit code."""
    print(exc.kubectl_line, file=sys.stderr)
    raise SystemExit(1)


def find_pod(args: argparse.Namespace) -> dict[str, Any]:
    """The record of the pod `args` name (`runtime.targets.pick_pod`: one not being deleted first)."""
    name = args.pod.removeprefix("pod/").removeprefix("pods/")
    reader = Reader(config.root(args.root))
    try:
        pods = reader.pods(args.namespace or "default", name)
    finally:
        reader.close()
    try:
        return dict(targets.pick_pod(pods, name))
    except TargetError as exc:
        refuse(exc)


def _container_status(pod: dict[str, Any], name: str | None) -> dict[str, Any]:
    """The status of container `name`, or of kubectl's default (`runtime.targets.choose`: the
    annotation's, else the first, with kubectl's notice when there are others)."""
    try:
        target = targets.choose(pod, name)
    except TargetError as exc:
        refuse(exc)
    if target.notice:
        print(target.notice, file=sys.stderr)
    return dict(target.status) or pod_printers.container_status(pod, target.name)


def _view(args: argparse.Namespace) -> RuntimeView:
    return RuntimeView(root=config.root(args.root), run_dir=config.run_dir(args.run_dir))


def _log_path(args: argparse.Namespace, pod: dict[str, Any], container: str, attempt: int) -> Path:
    meta = pod["metadata"]
    return _view(args).log_path(namespace=meta["namespace"], pod=meta["name"], uid=meta["uid"], container=container,
                                attempt=attempt)


def parse_since(text: str) -> float:
    """`--since`: a Go duration as kubectl takes it (`30s`, `5m`, `1h`, `1h30m`; a unit required, as
    kubectl's `time.ParseDuration`) → seconds (> 0), by the one duration parser (`api.duration`)."""
    from kubelite.api import duration

    try:
        if not text[-1:].isalpha():   # a plain number: kubectl's "missing unit in duration"
            raise ValueError
        seconds = duration.parse(text)
    except ValueError:
        raise UsageError(f"invalid argument {text!r} for --since: a duration such as 30s, 5m, 1h or 1h30m") from None
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
    pod = find_pod(args)
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


def running(args: argparse.Namespace, verb: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod `args` name and the status of its container (`-c`, else kubectl's default) for
    `verb` (`exec`, `attach`, `cp`: kubectl's refusal of a completed pod first); exits with
    kubectl's line (`runtime.targets`) unless that container runs."""
    pod = find_pod(args)
    try:
        if verb is not None:
            targets.refuse_phase(pod, verb)
        target = targets.choose(pod, args.container)
        if target.notice:
            print(target.notice, file=sys.stderr)
        target = targets.running(pod, target.name)
    except TargetError as exc:
        refuse(exc)
    return pod, dict(target.status)


def _running_container(args: argparse.Namespace, verb: str | None = None) -> str:
    """The ID (`<runtime>://<id>`) of the container `args` name; exits unless it runs."""
    return running(args, verb)[1]["containerID"]


def exec_(args: argparse.Namespace) -> int:
    """Run a command in the container. Without a terminal the runtime's exec replaces this process,
    so its exit code is ours; with `-t` on a terminal, a session copies between this terminal and
    the container's (`cli.terminal`)."""
    if not args.command_args:
        raise UsageError("give a command after --, e.g. kubelite exec web -- sh -c 'echo hi'")
    container_id = _running_container(args, "exec")
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
    _, status = running(args)
    _view(args).signal(status["containerID"], args.signal)
    print(f'container "{status["name"]}" signalled {args.signal.upper()}')
    return 0


def run(args: argparse.Namespace) -> int:
    if args.command == "cp":
        from kubelite.cli import copy

        return copy.run(args, _view(args), lambda namespace, pod: _running_container(
            argparse.Namespace(**{**vars(args), "namespace": namespace, "pod": pod}), "cp"))
    return {"logs": logs, "exec": exec_, "kill": kill}[args.command](args)
