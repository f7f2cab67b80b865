"""`pods/{name}/log`: a container's CRI log file as the kubelet streams it to `kubectl logs`.

Owns: the container a request means (`container`, or the only one), the attempt (`previous`),
`tailLines`, `sinceSeconds`, `sinceTime`, `timestamps`, `limitBytes`, and following a running
attempt until it ends (`follow`). Reads the log files kubelite's conmon writes and the pod's
status from the store; writes nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator

from kubelite.clock import utcnow
import kubelite.runtime.crilog as crilog
from kubelite.apiserver import params
from kubelite import layout
from kubelite.kubectl import pods

FOLLOW_POLL_S = 0.2
#: While following, the pod's status is read at most this often (to notice the attempt's end).
STATUS_EVERY_S = 1.0


class LogRequestError(Exception):
    """A request the kubelet answers with 400 BadRequest (no such container, nothing to show yet)."""


def container_status(pod: dict[str, Any], name: str | None) -> dict[str, Any]:
    spec = pod.get("spec", {})
    names = [c["name"] for c in spec.get("containers", [])]
    all_names = [c["name"] for c in spec.get("initContainers", [])] + names
    pod_name = pod["metadata"]["name"]
    if not name:
        if len(names) != 1:
            raise LogRequestError(f"a container name must be specified for pod {pod_name}, choose one of: "
                                  f"[{' '.join(names)}]")
        name = names[0]
    elif name not in all_names:
        raise LogRequestError(f"container {name} is not valid for pod {pod_name}")
    return pods.container_status(pod, name)


def log_path(root: Path, pod: dict[str, Any], container: str, attempt: int) -> Path:
    meta = pod["metadata"]
    return layout.container_log_path(root, meta["namespace"], meta["name"], meta["uid"], container, attempt)


def stream(root: Path, pod: dict[str, Any], query: dict[str, str], *, current_pod: Callable[[], dict | None],
           closed: Callable[[], bool]) -> tuple[Path | None, Iterator[str]]:
    """The log file and the text to send; raises LogRequestError for what the kubelet refuses, and
    params.InvalidParameter for an integer option out of range."""
    for key in _MINIMUM:   # options out of range are refused even when there is nothing to show
        _int(query, key)
    status = container_status(pod, query.get("container"))
    previous = query.get("previous") == "true"
    attempt = int(status.get("restartCount", 0)) - (1 if previous else 0)
    path = log_path(root, pod, status["name"], attempt)
    pod_name = pod["metadata"]["name"]
    if not path.exists():
        if previous:
            raise LogRequestError(f'previous terminated container "{status["name"]}" in pod "{pod_name}" not found')
        waiting = status.get("state", {}).get("waiting")
        if waiting is not None and not status.get("containerID"):
            raise LogRequestError(f'container "{status["name"]}" in pod "{pod_name}" is waiting to start: '
                                  f'{waiting.get("reason", "")}')
        return None, iter(())
    return path, _lines(path, status, query, follow=query.get("follow") == "true" and not previous,
                        current_pod=current_pod, closed=closed)


#: The smallest value each integer option may have, as the API server validates PodLogOptions.
_MINIMUM = {"tailLines": 0, "sinceSeconds": 1, "limitBytes": 1}
#: sinceSeconds beyond this (about 31 years) means every line; a datetime cannot go back 2**63 s.
_SINCE_MAX_S = 10**9


def _int(query: dict[str, str], key: str) -> int | None:
    """An integer option, bounded as the API server validates PodLogOptions (params.InvalidParameter
    beyond)."""
    return params.integer(query.get(key), name=key, minimum=_MINIMUM[key])


def _lines(path: Path, status: dict[str, Any], query: dict[str, str], *, follow: bool,
           current_pod: Callable[[], dict | None], closed: Callable[[], bool]) -> Iterator[str]:
    timestamps = query.get("timestamps") == "true"
    tail, since_s, limit = _int(query, "tailLines"), _int(query, "sinceSeconds"), _int(query, "limitBytes")
    since_time = query.get("sinceTime")
    sent = 0

    def budget(text: str) -> str:
        nonlocal sent
        if limit is not None:
            text = text[:max(0, limit - sent)]
        sent += len(text)
        return text

    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = crilog.read_lines(handle.read())
        if since_s is not None:
            lines = crilog.since(lines, min(since_s, _SINCE_MAX_S), utcnow())
        if since_time:
            cutoff = crilog.time_ns(since_time) or 0
            lines = [line for line in lines if (crilog.time_ns(line.time) or 0) >= cutoff]
        yield budget(crilog.render(crilog.tail(lines, tail), timestamps=timestamps))
        if not follow:
            return
        pending, checked = "", time.monotonic()
        while limit is None or sent < limit:
            chunk = handle.read()
            if chunk:
                pending += chunk
                complete, _, pending = pending.rpartition("\n")
                if complete:
                    yield budget(crilog.render(crilog.read_lines(complete + "\n"), timestamps=timestamps))
                continue
            if path.stat().st_size < handle.tell():   # conmon truncated the file at its size limit
                handle.seek(0)
                continue
            if closed():
                return
            if time.monotonic() - checked >= STATUS_EVERY_S:
                checked = time.monotonic()
                if not _still_running(current_pod(), status):
                    rest = handle.read()
                    if rest:
                        yield budget(crilog.render(crilog.read_lines(pending + rest), timestamps=timestamps))
                    return
            yield ""   # lets the server notice a client that went away
            time.sleep(FOLLOW_POLL_S)


def _still_running(pod: dict | None, status: dict[str, Any]) -> bool:
    if pod is None:
        return False
    try:
        now = container_status(pod, status["name"])
    except LogRequestError:
        return False
    return now.get("restartCount") == status.get("restartCount") and "running" in now.get("state", {})
