"""What a client of the API may hold: deadlines, sizes, the connection cap, the stream and session caps.

Owns: `Limits`, the bounds one `ApiServer` enforces (the defaults are the server's; tests pass
smaller ones), the connection cap that the process's descriptor limit allows, and raising the soft
descriptor limit to the hard one when the server starts. Reads and sets RLIMIT_NOFILE; nothing else.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

#: A connection's TLS handshake and first request head, and each later request head from its first
#: byte, must arrive within this long; else the connection is closed and nothing is routed.
HEADERS_TIMEOUT_S = 10.0
#: A kept-alive connection with no request for this long is closed (Go's clients keep idle
#: connections 90 s and retry on a fresh one).
IDLE_TIMEOUT_S = 60.0
#: Connections open at once (a descriptor and some kilobytes each).
MAX_CONNECTIONS = 2048
#: Descriptors left to the agent (database, logs, inotify, runtimes) when the limit lowers the cap.
RESERVED_DESCRIPTORS = 256
#: The fewest connections the cap allows, however low the descriptor limit.
MIN_CONNECTIONS = 16
#: Watches and followed logs open at once (a thread each while they wait for news); more are 429.
MAX_STREAMS = 100
#: Streaming sessions (exec, attach, port-forward) open at once — a process in a container, its
#: descriptors and a waiting thread each; more are 429.
MAX_SESSIONS = 32
#: The largest request body read, as the API server's own bound (3 MiB); larger is 413.
MAX_BODY_BYTES = 3 * 1024 * 1024
#: The longest request line and header line; longer is 400.
MAX_LINE_BYTES = 8190
#: The largest request head (line and headers; kubectl sends about 1 KiB); a connection whose head
#: grows past it is dropped. Go's default is 1 MiB; this bounds what a silent client can make the
#: server hold to the cap times 64 KiB.
MAX_HEAD_BYTES = 64 * 1024
#: A connection closed without the token's keep-alive (an anonymous answer, a refusal, a body left
#: unread) has this long for its answer to reach the client and for the TLS goodbye; then the socket
#: is dropped and nothing more is read meanwhile.
CLOSE_GRACE_S = 1.0


@dataclass(frozen=True)
class Limits:
    """The bounds one server enforces; see the module's constants for what each means."""

    headers_timeout_s: float = HEADERS_TIMEOUT_S
    idle_timeout_s: float = IDLE_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS
    max_streams: int = MAX_STREAMS
    max_sessions: int = MAX_SESSIONS
    max_body_bytes: int = MAX_BODY_BYTES
    max_line_bytes: int = MAX_LINE_BYTES
    max_head_bytes: int = MAX_HEAD_BYTES
    close_grace_s: float = CLOSE_GRACE_S

    def cap(self) -> int:
        """The connections open at once, as the descriptor limit allows now."""
        return connection_cap(self.max_connections)


def connection_cap(maximum: int = MAX_CONNECTIONS) -> int:
    """`maximum`, or fewer when the process's descriptor limit would not hold them beside the
    agent's own files (RESERVED_DESCRIPTORS), but never fewer than MIN_CONNECTIONS."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return maximum
    return min(maximum, max(MIN_CONNECTIONS, soft - RESERVED_DESCRIPTORS))


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (the usual soft 1024 would cap connections at
    768); the soft limit in force afterwards. A limit that cannot be raised stays as it was."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard
