"""Sockets inside a pod's network namespace: setns(2) in, socket(), setns(2) back.

Owns: the one place where the prober's thread changes network namespace. A socket belongs to the
namespace it was created in, so once created it can be connected and used from the event loop
in the prober's own namespace. Python 3.11 has no `os.setns`, so libc's is called through ctypes.
Only the calling thread changes namespace (the prober's event-loop thread).
"""

from __future__ import annotations

import ctypes
import os
import socket

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
