"""The audit of streaming sessions: who opened an exec, attach or port-forward, into what.

Owns: one log line at info level for each session the admin credential opens (`kubelite.audit`:
the user, the verb, the pod, the container, and the command or the ports) and for each one refused,
and the counter `kubelite_api_stream_sessions_total{verb, user, outcome}` in `/metrics`. The
streaming routes call `opened` / `refused`; nothing else here.
"""

from __future__ import annotations

import logging
import shlex
from typing import Sequence

from prometheus_client import Counter

from kubelite.apiserver.auth import Access

log = logging.getLogger("kubelite.audit")

SESSIONS = Counter("kubelite_api_stream_sessions",
                   "Streaming sessions (exec, attach, portforward) asked of the API, by user and outcome.",
                   ["verb", "user", "outcome"])

#: A logged command is cut here, so one line stays one line of bounded length.
MAX_COMMAND_CHARS = 512


def _clean(text: str | None) -> str:
    """A field of the line as data: no newline or control character (a name from a URL could
    otherwise write a line of its own), bounded."""
    text = (text or "-").encode("unicode_escape").decode("ascii")
    return text if len(text) <= MAX_COMMAND_CHARS else text[:MAX_COMMAND_CHARS] + "…"


def _what(command: Sequence[str] | None, ports: Sequence[int] | None) -> str:
    if ports is not None:
        return "ports " + ",".join(str(p) for p in ports)
    if command is None:
        return "-"
    text = shlex.join(command)
    text = text.encode("unicode_escape").decode("ascii")   # no newline or control character reaches the log
    return text if len(text) <= MAX_COMMAND_CHARS else text[:MAX_COMMAND_CHARS] + "…"


def opened(access: Access, verb: str, namespace: str, pod: str, container: str | None,
           command: Sequence[str] | None = None, ports: Sequence[int] | None = None) -> None:
    """A session the credential may open, as it begins."""
    SESSIONS.labels(verb, access.user, "opened").inc()
    log.info("audit: %s %s pod %s/%s container %s: %s", access.user, verb, _clean(namespace), _clean(pod),
             _clean(container), _what(command, ports))


def refused(access: Access, verb: str, namespace: str, pod: str, reason: str) -> None:
    """A session refused (the credential may not, or the pod or container is not there)."""
    SESSIONS.labels(verb, access.user, "refused").inc()
    log.info("audit: %s %s pod %s/%s refused: %s", access.user, verb, _clean(namespace), _clean(pod), _clean(reason))
