"""Attaching to a container's main process: conmon's attach socket, as CRI's `Attach` uses it.

Owns: `AttachSession` (what a caller holds while attached: the process's output by stream, its
stdin, its terminal's size, detaching) and `ConmonAttach`, the session over conmon 2.1.6's attach
socket. The socket's and the control FIFO's names inside a container's bundle are conmon's:

* `<bundle>/attach` — a SOCK_SEQPACKET unix socket (conmon also links `<socket dir>/<id>` to the
  bundle). Each packet conmon sends is one read of the container's output, prefixed by one byte
  naming its pipe: 2 stdout, 3 stderr (a terminal's output is all stdout). What a client sends
  is written, unprefixed, to the container's stdin (the pipe conmon holds with `-i`, or the
  terminal). When a client's side ends (EOF or gone), conmon closes the container's stdin unless
  it runs with `--leave-stdin-open`: that is `stdinOnce` (`conmon.conmon_argv`).
* `<bundle>/ctl` — conmon's control FIFO: the line `1 <rows> <cols>\\n` resizes the terminal.

conmon writes the output to an attached client with blocking writes: a client that stops reading
stalls the container's output. A session is therefore read promptly, and its reader drops a
client rather than stop reading (`apiserver.attach`, `cli.attach`).

Standard library only: the CLI and the API server use it through `runtime.view`. Nothing here
blocks unless the caller asks to (`read(timeout=...)`); `fileno()` is for `select` or asyncio's
`add_reader`. Errors: `errors.RuntimeError_`, one line.
"""

from __future__ import annotations

import errno
import os
import select
import socket
from pathlib import Path
from typing import Protocol

from kubelite.errors import RuntimeError_

#: conmon's pipe numbers, the first byte of every packet it sends.
STDOUT, STDERR = 2, 3
#: conmon reads a pipe 8 KiB at a time: a packet is at most that plus its pipe byte.
PACKET_MAX = 8192 + 1
#: What conmon reads of a client at once (its CONN_SOCK_BUF_SIZE): a larger write is cut to this.
STDIN_CHUNK = 32768
#: conmon's control message that resizes the terminal.
RESIZE_EVENT = 1
#: Names inside a container's bundle (conmon's).
SOCKET_NAME, CONTROL_NAME = "attach", "ctl"


class AttachSession(Protocol):
    """A caller attached to a container's main process. `read` and `write` never block unless a
    timeout is given; `fileno()` becomes readable when output (or the end) is there."""

    tty: bool       # the container has a terminal: its output is one stream, resize applies
    stdin: bool     # this session writes the container's stdin

    def fileno(self) -> int: ...

    def read(self, timeout: float | None = 0.0) -> tuple[int, bytes] | None:
        """One piece of output as (STDOUT or STDERR, bytes); (0, b"") when none is there yet;
        None when the session is over (the container's process ended, or conmon went away)."""
        ...

    def write(self, data: bytes) -> int:
        """Write to the container's stdin; how much was taken (0 when it must wait for `writable`)."""
        ...

    def close_stdin(self) -> None:
        """No more input from this session; with `stdinOnce` the container's stdin closes."""
        ...

    def resize(self, rows: int, cols: int) -> None: ...

    def close(self) -> None:
        """Detach: the container runs on."""
        ...


class ConmonAttach:
    """A session over conmon's attach socket in `bundle` (see the module's docstring)."""

    def __init__(self, sock: socket.socket, *, control: Path | None, tty: bool, stdin: bool) -> None:
        self.sock, self.control, self.tty, self.stdin = sock, control, tty, stdin
        self.sock.setblocking(False)
        self._stdin_closed = not stdin

    @classmethod
    def connect(cls, bundle: Path, *, tty: bool, stdin: bool) -> "ConmonAttach":
        """Connect to the attach socket of the container whose bundle is `bundle`. The socket's path
        may be longer than a unix socket address allows: it is reached through the directory's fd."""
        try:
            directory = os.open(bundle, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise RuntimeError_(f"attach: the container's bundle is gone ({exc.strerror})") from None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            sock.connect(f"/proc/self/fd/{directory}/{SOCKET_NAME}")
        except OSError as exc:
            sock.close()
            raise RuntimeError_(f"attach: cannot reach conmon's attach socket ({exc.strerror})") from None
        finally:
            os.close(directory)
        return cls(sock, control=bundle / CONTROL_NAME if tty else None, tty=tty, stdin=stdin)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, timeout: float | None = 0.0) -> tuple[int, bytes] | None:
        if timeout != 0.0:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return 0, b""
        try:
            packet = self.sock.recv(PACKET_MAX)
        except (BlockingIOError, InterruptedError):
            return 0, b""
        except OSError:
            return None
        if not packet:
            return None
        pipe = packet[0]
        return (STDERR if pipe == STDERR else STDOUT), packet[1:]

    def write(self, data: bytes) -> int:
        if self._stdin_closed or not data:
            return len(data)   # input the container does not take is dropped, as the kubelet drops it
        try:
            return self.sock.send(data[:STDIN_CHUNK])
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                self._stdin_closed = True
                return len(data)
            raise RuntimeError_(f"attach: writing stdin: {exc.strerror}") from None

    def writable(self, timeout: float | None = None) -> bool:
        _, ready, _ = select.select([], [self.sock], [], timeout)
        return bool(ready)

    def close_stdin(self) -> None:
        if self._stdin_closed:
            return
        self._stdin_closed = True
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def resize(self, rows: int, cols: int) -> None:
        if self.control is None or rows <= 0 or cols <= 0:
            return
        try:   # O_NONBLOCK: a FIFO nobody reads (conmon gone) fails at once instead of blocking
            fd = os.open(self.control, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return
        try:
            os.write(fd, f"{RESIZE_EVENT} {min(rows, 65535)} {min(cols, 65535)}\n".encode())
        except OSError:
            pass
        finally:
            os.close(fd)

    def close(self) -> None:
        self.sock.close()
