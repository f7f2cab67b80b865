"""`kubelite exec -it`: a command in a container on this terminal.

Owns the local side of a terminal session (`runtime.streaming`): this terminal put in raw mode and
restored whatever happens, its size given at start and again on each SIGWINCH, the bytes copied both
ways until the command ends, and the command killed when this process is told to stop (SIGHUP,
SIGTERM). The loop blocks in `select`: this is a command line, nothing else runs beside it.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import termios
import tty as ttys
from typing import Any

from kubelite.runtime.streaming import ExecSession, window_size

CHUNK = 32 * 1024


def local_size(fd: int) -> tuple[int, int] | None:
    try:
        return window_size(fd)
    except OSError:
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])


def _stopped(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def run(session: ExecSession, *, stdin: int = 0, stdout: int = 1) -> int:
    """Copy between this terminal and the session's until the command exits; its exit code."""
    terminal = session.stdout
    assert terminal is not None
    saved = termios.tcgetattr(stdin)
    handlers = {}

    def resized(_signum: int, _frame: Any) -> None:
        size = local_size(stdin)
        if size is not None:
            session.resize(*size)

    try:
        handlers = {sig: signal.signal(sig, handler) for sig, handler in
                    ((signal.SIGWINCH, resized), (signal.SIGHUP, _stopped), (signal.SIGTERM, _stopped))}
        ttys.setraw(stdin, termios.TCSANOW)
        watched = [terminal, stdin]
        while True:
            ready, _, _ = select.select(watched, [], [])
            if terminal in ready:
                try:
                    data = os.read(terminal, CHUNK)
                except BlockingIOError:
                    data = None
                except OSError:   # EIO: the command and everything on its terminal are gone
                    data = b""
                if data == b"":
                    break
                if data:
                    _write_all(stdout, data)
            if stdin in ready:
                data = os.read(stdin, CHUNK)
                if not data:   # this terminal closed: nothing more to give the command
                    watched = [terminal]
                elif session.stdin is not None:
                    _write_all(session.stdin, data)
        return session.wait()
    except BaseException:
        session.kill()
        raise
    finally:
        termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        session.close()
        sys.stdout.flush()
