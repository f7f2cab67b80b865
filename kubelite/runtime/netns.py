"""Sockets inside a pod's network namespace: setns(2) in, socket(), setns(2) back.

Owns: the one place where a thread changes network namespace — the prober's event-loop thread for
probes and hooks, a worker thread of the API or of `kubelite port-forward` for a forwarded
connection. A socket belongs to the namespace it was created in, so once created it can be
connected and used from any thread in the caller's own namespace. Python 3.11 has no `os.setns`, so
libc's is called through ctypes. Only the calling thread changes namespace, and only between the
two calls. And `connect`: a TCP connection to localhost:port in a pod, as asyncio streams
(port-forward's dial).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
from concurrent.futures import Executor
from typing import Callable

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class Namespaces:
    """Created on the thread that will use it: remembers that thread's own network namespace."""

    def __init__(self) -> None:
        self.own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def socket(self, family: int, netns_fd: int | None) -> socket.socket:
        """A non-blocking TCP socket in the namespace `netns_fd` (None: this thread's own)."""
        if netns_fd is None:
            sock = socket.socket(family, socket.SOCK_STREAM)
        else:
            setns(netns_fd)
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            finally:
                setns(self.own)  # if this failed the thread would stay in the pod: let it raise
        sock.setblocking(False)
        return sock

    def close(self) -> None:
        os.close(self.own)


def socket_in(netns_fd: int | None, family: int = socket.AF_INET) -> socket.socket:
    """A non-blocking TCP socket in the namespace `netns_fd`, made on (and for) the calling thread,
    which is back in its own namespace when this returns. For worker threads; a thread that makes
    many keeps one `Namespaces`."""
    if netns_fd is None:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock
    namespaces = Namespaces()
    try:
        return namespaces.socket(family, netns_fd)
    finally:
        namespaces.close()


def socket_at(netns_path: str | None, family: int = socket.AF_INET) -> socket.socket:
    """`socket_in` the namespace at `netns_path` (a pinned namespace or `/proc/<pid>/ns/net`; None:
    the caller's own), opened for the call only."""
    if netns_path is None:
        return socket_in(None, family)
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return socket_in(fd, family)
    finally:
        os.close(fd)


#: What a forwarded connection dials in the pod: localhost, as the kubelet's runtimes do (IPv4's
#: loopback first, then IPv6's).
LOOPBACKS = ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"))
DIAL_TIMEOUT_S = 10.0


async def connect(open_socket: Callable[[int], socket.socket], port: int, *, executor: Executor | None = None,
                  timeout_s: float = DIAL_TIMEOUT_S, limit: int = 64 * 1024,
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to localhost:`port` in a pod, as asyncio streams: `open_socket(family)`
    makes the socket in the pod's namespace (it runs on `executor`, a thread that may change
    namespace; what it raises, e.g. a pod gone, goes to the caller), the connect runs on the loop.
    OSError naming each address tried when neither loopback answers within `timeout_s`."""
    loop = asyncio.get_running_loop()
    failures = []
    for family, host in LOOPBACKS:
        try:
            sock = await loop.run_in_executor(executor, open_socket, family)
        except OSError as exc:   # e.g. IPv6 disabled in the pod
            failures.append(f"{host}: {exc.strerror or exc}")
            continue
        try:
            async with asyncio.timeout(timeout_s):
                await loop.sock_connect(sock, (host, port))
            return await asyncio.open_connection(sock=sock, limit=limit)
        except (OSError, TimeoutError) as exc:
            sock.close()
            reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
            failures.append(f"{host}: {reason}")
        except BaseException:
            sock.close()
            raise
    raise ConnectionRefusedError(f"dial localhost:{port} in the pod: " + "; ".join(failures))
