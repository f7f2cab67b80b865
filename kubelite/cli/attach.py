"""`kubelite attach POD [-c C] [-i] [-t]`: this terminal joined to a container's main process.

Owns: the local side of an attach — the container chosen by kubectl's rules (`cli.containers`),
kubectl's warnings when the container has no terminal or no stdin, the local terminal in raw mode
while `-t` (restored however the session ends) with its size passed on at start and on SIGWINCH,
and the loop that moves bytes between this process's stdin/stdout/stderr and the session
(`runtime.view` → conmon's attach socket). One thread, `select` over two descriptors.

Leaving: the session ends when the container's process ends. With `-t -i` every key goes to the
container (Ctrl-C too); Ctrl-P Ctrl-Q detaches, as with docker and podman. Otherwise Ctrl-C
detaches, as it ends `kubectl attach`. Detaching never stops the container; with `stdinOnce`
its stdin closes when the first attach ends (Kubernetes' rule). This process's stdin at EOF ends
the input only: the output goes on until the container's process ends or Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
from typing import Any

from kubelite.cli import containers

#: Ctrl-P Ctrl-Q: the detach keys of a `-t -i` session.
DETACH_KEYS = b"\x10\x11"
#: At most this much output or input is read at once.
READ_BYTES = 32768


def _spec(pod: dict[str, Any], name: str) -> dict[str, Any]:
    for c in pod.get("spec", {}).get("containers", []) + pod.get("spec", {}).get("initContainers", []):
        if c.get("name") == name:
            return c
    return {}


def run(args: argparse.Namespace) -> int:
    pod, status = containers.running(args, "attach")
    name, container_id = status["name"], status["containerID"]
    spec = _spec(pod, name)
    tty, stdin = bool(args.tty), bool(args.stdin)
    if tty and not spec.get("tty"):   # kubectl's words and behaviour
        print(f"error: Unable to use a TTY - container {name} did not allocate one", file=sys.stderr)
        tty = False
    elif not tty and spec.get("tty"):
        tty = True    # the container's output is a terminal's: shown as it is
    if stdin and not spec.get("stdin"):
        print(f"warning: container {name} does not take stdin (stdin: false): input is not passed",
              file=sys.stderr)
        stdin = False
    raw = tty and stdin and os.isatty(0)
    session = containers._view(args).attach(container_id, tty=bool(spec.get("tty")), stdin=stdin)
    try:
        if raw:
            print("If you don't see a command prompt, try pressing enter.", file=sys.stderr)
        return _pump(session, stdin=stdin, raw=raw)
    finally:
        session.close()


def _pump(session: Any, *, stdin: bool, raw: bool) -> int:
    """Move bytes until the session ends (0) or the user detaches (0)."""
    import termios
    import tty as ttys

    saved = termios.tcgetattr(0) if raw else None
    resize = (lambda *_: _resize(session)) if raw else None
    previous = signal.signal(signal.SIGWINCH, resize) if resize else None
    try:
        if saved is not None:
            ttys.setraw(0)
            _resize(session)
        reading_stdin = stdin
        pending = held = b""
        while True:
            wanted = [session] + ([0] if reading_stdin and not pending else [])
            try:
                ready, writable, _ = select.select(wanted, [session] if pending else [], [])
            except InterruptedError:
                continue
            if session in ready:
                piece = session.read()
                if piece is None:
                    return 0
                stream, data = piece
                if data:
                    os.write(2 if stream == 3 else 1, data)
            if 0 in ready:
                data = os.read(0, READ_BYTES)
                if not data:
                    pending, held = pending + held, b""
                    reading_stdin = False
                else:
                    data = held + data
                    if raw and DETACH_KEYS in data:
                        session.write(data[:data.index(DETACH_KEYS)])
                        return 0
                    held = b""
                    if raw and data.endswith(DETACH_KEYS[:1]):   # maybe the start of the detach keys
                        data, held = data[:-1], data[-1:]
                    pending = data
            if pending:
                pending = pending[session.write(pending):]
            if not pending and not reading_stdin and stdin:
                session.close_stdin()
                stdin = False
    except KeyboardInterrupt:   # Ctrl-C outside raw mode: detach, as kubectl attach ends
        return 0
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        if resize is not None:
            signal.signal(signal.SIGWINCH, previous)


def _resize(session: Any) -> None:
    try:
        size = os.get_terminal_size(0)
    except OSError:
        return
    session.resize_waiting(size.lines, size.columns)   # conmon takes one size at a time (`runtime.attach`)
