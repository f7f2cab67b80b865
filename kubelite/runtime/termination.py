"""Termination messages: the file a container may write at its `terminationMessagePath`, read at exit.

Owns, as the kubelet's `makeMounts` and `getTerminationMessage` /
`readLastStringFromContainerLogs` do it:

* one empty host file per container attempt (`<root>/pods/<uid>/containers/<id>/termination-log`,
  created here, bind-mounted by the OCI runtime at the container's `terminationMessagePath`), mode
  0666 so that the container's own user, root or not, can write it — the directories above it are
  root's alone (0700), so no other user of the machine reaches it;
* the message once the container exited: the last 4 KiB of that file; with
  `terminationMessagePolicy: FallbackToLogsOnError`, when the file is empty or absent and the
  container failed (exit code not 0), the tail of its log instead — the last 80 lines, of which the
  last 2 KiB.

The pod-wide budget (12 KiB shared by its containers) is applied where the status is made
(`core.status`). Reads never follow a symlink a container may have planted.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kubelite.runtime import crilog

FILE_NAME = "termination-log"
#: `MaxContainerTerminationMessageLength`: the last this many bytes of the file are the message.
MAX_MESSAGE_BYTES = 4 * 1024
#: `MaxContainerTerminationMessageLogLines` and `MaxContainerTerminationMessageLogLength`.
LOG_LINES = 80
LOG_BYTES = 2 * 1024
#: How much of the end of a log is read to find its last lines: a little first, and more only when
#: that held fewer than 80 lines and less than 2 KiB of text (many tiny records, or a few huge ones).
LOG_READ_BYTES = (64 * 1024, 1024 * 1024)
FALLBACK_TO_LOGS = "FallbackToLogsOnError"


def create_file(path: Path) -> None:
    """The empty, world-writable message file of one container attempt (its directory exists)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o666)   # the kubelet's mode: the container's user may be anyone
    finally:
        os.close(fd)


def _tail(path: Path, limit: int) -> bytes | None:
    """The last `limit` bytes of a regular file; None when it is absent (or not a regular file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except (FileNotFoundError, OSError):
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > limit:
            f.seek(st.st_size - limit)
        return f.read(limit)


def log_tail(log_path: Path) -> str:
    """The last 80 lines of a CRI log as the container wrote them, at most their last 2 KiB."""
    text = b""
    for limit in LOG_READ_BYTES:
        data = _tail(log_path, limit)
        if data is None:
            return ""
        # a record cut short at the start of what was read has lost its time: read_lines skips it
        lines = crilog.tail(crilog.read_lines(data.decode("utf-8", errors="replace")), LOG_LINES)
        text = "".join(line.text + ("" if line.partial else "\n") for line in lines).encode("utf-8")
        if len(data) < limit or len(lines) >= LOG_LINES or len(text) >= LOG_BYTES:
            break
    return text[-LOG_BYTES:].decode("utf-8", errors="replace")


def read_message(path: Path | None, *, policy: str, exit_code: int, log_path: Path | None) -> str:
    """The termination message of a container that exited with `exit_code` ("" for none)."""
    data = _tail(path, MAX_MESSAGE_BYTES) if path is not None else None
    if data:
        return data.decode("utf-8", errors="replace")
    if policy == FALLBACK_TO_LOGS and exit_code != 0 and log_path is not None:
        return log_tail(log_path)
    return ""
