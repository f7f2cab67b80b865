"""Attaching to a container's main process: conmon's attach socket, as CRI's `Attach` uses it.

Owns: `AttachSession` (what a caller holds while attached: the process's output by stream, its
stdin, its terminal's size, detaching) and `ConmonAttach`, the session over conmon 2.1.6's attach
socket. The socket's and the FIFO's names inside a container's bundle are conmon's:

* `<bundle>/attach` — a SOCK_SEQPACKET unix socket (conmon also links `<socket dir>/<id>` to the
  bundle). Each packet conmon sends is one read of the container's output, prefixed by one byte
  naming its pipe: 2 stdout, 3 stderr (a terminal's output is all stdout). What a client sends
  is written, unprefixed, to the container's stdin (the pipe conmon holds with `-i`, or the
  terminal). When a client's side ends (EOF or gone), conmon closes the container's stdin unless
  it runs with `--leave-stdin-open`: that is `stdinOnce` (`conmon.conmon_argv`).
* `<bundle>/winsz` — conmon's window-size FIFO: the line `<rows> <cols>\\n` resizes the terminal
  (what its control FIFO `ctl` turns the message `1 <rows> <cols>` into). conmon 2.1.6 acts on
  the first line of each read it makes of the FIFO, twice when the read held two lines: a size is
  written only when conmon has read the one before (`FIONREAD` is 0), else it waits
  (`flush_resize`), the newest size winning. kubectl sends two sizes at once.

conmon writes the output to an attached client with blocking writes: a client that stops reading
stalls the container's output. A session is therefore read promptly: the API's bridge drops a
client rather than stop reading (`apiserver.attach`); `kubelite attach` reads as fast as its own
output is taken.

Standard library only: the runtimes return a session (`attach_container`, for the API), and the
CLI gets one through `runtime.view`. Nothing here
blocks unless the caller asks to (`read(timeout=...)`); `fileno()` is for `select` or asyncio's
`add_reader`. Errors: `errors.RuntimeError_`, one line.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import struct
import termios
import time
from pathlib import Path
from typing import Protocol

from kubelite.errors import RuntimeError_

#: conmon's pipe numbers, the first byte of every packet it sends.
STDOUT, STDERR = 2, 3
#: conmon reads a pipe 8 KiB at a time: a packet is at most that plus its pipe byte.
PACKET_MAX = 8192 + 1
#: What conmon reads of a client at once (its CONN_SOCK_BUF_SIZE): a larger write is cut to this.
STDIN_CHUNK = 32768
#: A size conmon cannot take yet (it has not read the one before) is offered again this often, at
#: most RESIZE_TRIES times: by `resize_waiting` here, by the API's event loop there.
RESIZE_RETRY_S, RESIZE_TRIES = 0.005, 100
#: Names inside a container's bundle (conmon's).
SOCKET_NAME, WINSZ_NAME = "attach", "winsz"


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

    def resize(self, rows: int, cols: int) -> bool:
        """Give the terminal this size; False when it must wait for the size before it to be
        taken (call `flush_resize` a little later; the newest size wins)."""
        ...

    def flush_resize(self) -> bool:
        """Give a size that had to wait; True when none waits any more."""
        ...

    def close(self) -> None:
        """Detach: the container runs on."""
        ...


class ConmonAttach:
    """A session over conmon's attach socket in `bundle` (see the module's docstring)."""

    def __init__(self, sock: socket.socket, *, control: Path | None, tty: bool, stdin: bool) -> None:
        self.sock, self.control, self.tty, self.stdin = sock, control, tty, stdin
        self.sock.setblocking(False)
        self._stdin_closed = not stdin
        self._size: tuple[int, int] | None = None    # a size waiting for conmon to read the one before
        self._control_fd: int | None = None

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
        return cls(sock, control=bundle / WINSZ_NAME if tty else None, tty=tty, stdin=stdin)

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

    def resize(self, rows: int, cols: int) -> bool:
        if self.control is None or rows <= 0 or cols <= 0:
            return True
        self._size = (min(rows, 65535), min(cols, 65535))
        return self.flush_resize()

    def resize_waiting(self, rows: int, cols: int) -> None:
        """`resize`, waiting (blocking) until conmon takes the size or RESIZE_TRIES pass."""
        taken = self.resize(rows, cols)
        for _ in range(RESIZE_TRIES):
            if taken:
                return
            time.sleep(RESIZE_RETRY_S)
            taken = self.flush_resize()

    def flush_resize(self) -> bool:
        if self._size is None or self.control is None:
            return True
        if self._control_fd is None:
            try:   # O_NONBLOCK: a FIFO nobody reads (conmon gone) fails at once instead of blocking
                self._control_fd = os.open(self.control, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                self._size = None
                return True
        try:
            unread = struct.unpack("i", fcntl.ioctl(self._control_fd, termios.FIONREAD, b"\0\0\0\0"))[0]
            if unread:
                return False
            rows, cols = self._size
            os.write(self._control_fd, f"{rows} {cols}\n".encode())
        except OSError:
            pass
        self._size = None
        return True

    def close(self) -> None:
        self.sock.close()
        if self._control_fd is not None:
            os.close(self._control_fd)
            self._control_fd = None
