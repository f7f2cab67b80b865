"""A streaming exec: a command running in a container for a client, with its pipes or its terminal.

Owns `ExecSession` — what a caller holds while the command runs: its stdin, stdout and stderr as
non-blocking file descriptors (or one terminal descriptor with `tty`), `resize`, a blocking
`wait` for the exit code, `kill`, `close` — and `RuncExec`, the session of `runc exec` in the
foreground: runc's exit code is the command's (128 + the signal when one killed it).

With a terminal, runc runs in the foreground with `--tty` on a pseudo-terminal made here (the
kubelet's CRI-O does the same): runc makes the container's own terminal, copies between the two, and
reads this terminal's size when it gets SIGWINCH. (`--console-socket` would hand the container's
terminal over directly, but runc takes it only with `--detach`, and a detached runc leaves the
exit code to a subreaper kubelite is not.)

`kill` ends what the command started: runc makes the command lead a session of its own (with or
without a terminal), so the session is killed — found from the PID runc wrote — and runc with it. Standard library only: the CLI, the OCI runtime and
the API server's exec share it. Errors: `errors.RuntimeError_`.
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import tempfile
import termios
from pathlib import Path

from kubelite.errors import RuntimeError_

#: How long `kill` waits for runc to go after its process group got SIGKILL.
KILL_WAIT_S = 5.0



def runc_exec_argv(runc_prefix: list[str], container_id: str, command: list[str], *, tty: bool = False,
                   pid_file: Path | None = None) -> list[str]:
    """`runc exec`'s command line (`runc_prefix`: runc and its `--root`): the one way every exec of
    kubelite (a probe's, a client's, the CLI's) is spelled."""
    return [*runc_prefix, "exec", *(["--pid-file", str(pid_file)] if pid_file is not None else []),
            *(["--tty"] if tty else []), container_id, *command]


class ExecSession:
    """A command running in a container. Descriptors are non-blocking and owned by the session
    (`close` closes them); `stdin` is None unless asked for, `stdout`/`stderr` None when not
    wanted; with `tty`, `stdout` is the terminal (read and written: `stdin` is the same descriptor
    when asked for) and `stderr` None."""

    stdin: int | None = None
    stdout: int | None = None
    stderr: int | None = None
    tty: bool = False

    def resize(self, width: int, height: int) -> None:
        """The terminal's size, in columns and rows (nothing without a terminal)."""

    def close_stdin(self) -> None:
        """The end of the client's input: the command reads EOF (a terminal has no EOF to give)."""
        if self.stdin is not None and not self.tty:
            os.close(self.stdin)
            self.stdin = None

    def wait(self) -> int:
        """Block until the command exits; its exit code (128 + N when signal N killed it)."""
        raise NotImplementedError

    def kill(self) -> None:
        """End the command and what it started, now (the client left)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the descriptors still open (after `wait` or `kill`)."""
        for name in ("stdin", "stdout", "stderr"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                if name == "stdin" and self.tty:
                    continue   # the terminal: closed once, as stdout
                try:
                    os.close(fd)
                except OSError:
                    pass


def kill_session(leader: int) -> None:
    """SIGKILL to the session `leader` leads (runc starts every exec'd command as one) and every
    process in it: its process group, and jobs a shell moved to groups of their own."""
    targets = {leader}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if len(fields) > 3 and fields[3] == str(leader).encode():   # state ppid pgrp session
            targets.add(int(entry.name))
    for pid in targets:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def set_window_size(fd: int, width: int, height: int) -> None:
    """TIOCSWINSZ on a terminal descriptor (rows, columns); sizes are clamped to the field's range."""
    rows, cols = max(0, min(height, 0xFFFF)), max(0, min(width, 0xFFFF))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def window_size(fd: int) -> tuple[int, int]:
    """(columns, rows) of a terminal descriptor."""
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return cols, rows


class RuncExec(ExecSession):
    """`runc exec` of `command` in container `container_id` under runc's `runc_prefix` (the binary
    and its `--root`); `work_dir` holds the PID file while it runs."""

    def __init__(self, runc_prefix: list[str], container_id: str, command: list[str], *, stdin: bool,
                 stdout: bool = True, stderr: bool = True, tty: bool = False, work_dir: Path | None = None,
                 size: tuple[int, int] | None = None) -> None:
        if not command:
            raise RuntimeError_("exec: no command given")
        self.tty = tty
        self._dir = tempfile.mkdtemp(prefix="exec-", dir=work_dir)
        self._pid_file = Path(self._dir) / "pid"
        argv = runc_exec_argv(runc_prefix, container_id, command, tty=tty, pid_file=self._pid_file)
        ours: list[int] = []      # this side's ends, closed on failure
        theirs: list[int] = []    # runc's ends, closed here once it has them
        try:
            if tty:
                master, slave = os.openpty()
                ours.append(master)
                theirs.append(slave)
                if size is not None:
                    set_window_size(master, *size)
                child = (slave, slave, slave)
                self.stdout = master
                self.stdin = master if stdin else None
            else:
                child_fds: list[int] = []
                for wanted, reading in ((stdin, True), (stdout, False), (stderr, False)):
                    if not wanted:
                        child_fds.append(subprocess.DEVNULL)
                        continue
                    r, w = os.pipe()
                    mine, its = (w, r) if reading else (r, w)
                    ours.append(mine)
                    theirs.append(its)
                    child_fds.append(its)
                child = tuple(child_fds)   # type: ignore[assignment]
                it = iter(ours)
                self.stdin = next(it) if stdin else None
                self.stdout = next(it) if stdout else None
                self.stderr = next(it) if stderr else None
            for fd in ours:
                os.set_blocking(fd, False)
            self._process = subprocess.Popen(argv, stdin=child[0], stdout=child[1], stderr=child[2],
                                             start_new_session=True, close_fds=True)
        except BaseException:
            for fd in ours:
                os.close(fd)
            self._cleanup_dir()
            raise
        finally:
            for fd in theirs:
                os.close(fd)

    @property
    def pid(self) -> int:
        return self._process.pid

    def resize(self, width: int, height: int) -> None:
        if not self.tty or self.stdout is None:
            return
        set_window_size(self.stdout, width, height)
        try:   # runc reads the new size from its terminal on SIGWINCH and applies it to the container's
            os.kill(self._process.pid, signal.SIGWINCH)
        except ProcessLookupError:
            pass

    def wait(self) -> int:
        code = self._process.wait()
        self._cleanup_dir()
        return 128 - code if code < 0 else code   # runc itself killed by a signal

    def kill(self) -> None:
        if self._process.poll() is not None:
            return
        try:
            pid = int(self._pid_file.read_text())
        except (OSError, ValueError):
            pid = 0
        if pid > 0 and self._process.poll() is None:   # runc still waits for it: the PID is still the command's
            kill_session(pid)
        try:   # runc itself (and what it started before the command: runc init)
            os.killpg(self._process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self._process.wait(KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            pass
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        try:
            self._pid_file.unlink(missing_ok=True)
            os.rmdir(self._dir)
        except OSError:
            pass
