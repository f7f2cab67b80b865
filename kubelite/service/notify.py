"""systemd's readiness protocol (sd_notify(3)): one datagram per state change to `$NOTIFY_SOCKET`.

Owns: reading and then removing `NOTIFY_SOCKET` from the environment (runc, started by kubelite,
would otherwise see it and hold every `runc run` until the container itself sends READY=1), the
socket's address (a path, or `@name` for an abstract one) and the messages kubelite sends:
`READY=1` once the first reconcile pass has run, `STATUS=…` with what `systemctl status` shows,
`STOPPING=1` when it stops. Without a service manager (no variable) every call does nothing.
"""

from __future__ import annotations

import os
import socket
from typing import MutableMapping

VARIABLE = "NOTIFY_SOCKET"


class Notifier:
    """The service manager's notification socket, or nothing when kubelite runs without one."""

    def __init__(self, address: str | None) -> None:
        self.address = address

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] = os.environ) -> "Notifier":
        """Take `NOTIFY_SOCKET` out of the environment (child processes must not inherit it)."""
        return cls(environ.pop(VARIABLE, None) or None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send `fields` ("READY=1", "STATUS=…") as one datagram; False when there is no socket or
        the send failed (a notification is never worth stopping kubelite for)."""
        if self.address is None:
            return False
        address = self.address
        if address.startswith("@"):          # an abstract socket: a NUL byte instead of the @
            address = "\0" + address[1:]
        elif not address.startswith("/"):    # vsock or anything else this client does not speak
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.sendall("\n".join(fields).encode())
        except OSError:
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def stopping(self, status: str) -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")
