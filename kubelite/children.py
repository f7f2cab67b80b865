"""Short-lived helper programs kubelite runs with bounds (a credential helper, `kubectl kustomize`).

Owns `run_bounded`: a program started in a session of its own, given its standard input, read on
both pipes until it ends — or killed, with everything it started, when it runs past its time or
prints more than its bound. Its stderr is kept only up to a size. Standard library only.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any

#: How much of a program's stderr is kept (its message, not a flood).
STDERR_KEEP = 64 * 1024


@dataclass(frozen=True)
class Finished:
    """How a bounded program ended: its exit status, stdout, the start of its stderr, and which bound
    it passed (`"time"` or `"output"`; None when it ended by itself)."""

    code: int
    out: bytes
    err: bytes
    exceeded: str | None = None


def run_bounded(argv: list[str], *, stdin: bytes = b"", timeout_s: float, max_output: int,
                stderr_keep: int = STDERR_KEEP, **popen: Any) -> Finished:
    """Run `argv` with `stdin` for at most `timeout_s` and `max_output` bytes of stdout. OSError when it
    cannot start; `popen` passes on (cwd, env, umask)."""
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True, **popen)
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    deadline = time.monotonic() + timeout_s
    out, err = bytearray(), bytearray()
    exceeded: str | None = None
    try:
        try:
            process.stdin.write(stdin)
            process.stdin.close()
        except BrokenPipeError:
            pass
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ, out)
            selector.register(process.stderr, selectors.EVENT_READ, err)
            while selector.get_map() and exceeded is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    exceeded = "time"
                    break
                for key, _ in selector.select(left):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                    elif key.data is err:
                        err.extend(chunk[:max(0, stderr_keep - len(err))])
                    else:
                        out.extend(chunk)
                        if len(out) > max_output:
                            exceeded = "output"
                            break
        if exceeded is None:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:   # its pipes closed, but it goes on
                exceeded = "time"
    finally:
        if process.poll() is None or exceeded is not None:
            try:
                os.killpg(process.pid, signal.SIGKILL)   # its session: whatever it started, too
            except (ProcessLookupError, PermissionError):
                process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            try:
                stream.close()
            except BrokenPipeError:
                pass
    return Finished(process.returncode, bytes(out), bytes(err), exceeded)
