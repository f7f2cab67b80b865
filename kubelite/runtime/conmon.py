"""conmon 2.1.6's command line and signal names: pure, as `ocispec` (which re-exports both).

Owns: `conmon_argv` (how a container or an exec is handed to conmon) and `signal_number` (a
signal's number from the names kubectl, a stop signal or `kubelite kill` give). No processes,
no files: `ValueError` for a caller's mistake (an unknown signal, inconsistent conmon options).
"""

from __future__ import annotations

import re
import signal as _signal

_NUMBER = re.compile(r"[0-9]+\Z")


def conmon_argv(*, conmon: str, runtime: str, runtime_root: str, container_id: str, name: str, bundle: str,
                pidfile: str, conmon_pidfile: str, exit_dir: str, persist_dir: str, log_path: str,
                log_size_max: int | None, socket_dir: str, exec_: bool = False,
                exec_process_spec: str | None = None, timeout: int | None = None, terminal: bool = False,
                stdin: bool = False, stdin_once: bool = False) -> list[str]:
    """conmon 2.1.6's command line, as verified in runtime-recipes.md (and as podman passes it).

    `terminal` (a container's `tty`): conmon makes the pseudo-terminal (runc's console socket) and
    logs what the container writes to it as stdout; the spec must say `process.terminal: true`.
    `stdin` (a container's `stdin`): conmon keeps a pipe open as the container's stdin (to be
    written through its attach socket) instead of /dev/null. conmon closes that stdin (or stops
    writing the terminal) when a client attached to it leaves, unless `--leave-stdin-open`: so
    that flag is given unless `stdin_once` (a container's `stdinOnce`: stdin closes after the first
    attach, as Kubernetes says).

    `--api-version` is a flag in conmon (the "1" after it is ignored, as with podman). For an exec
    (`exec_`), conmon writes the exit code to `exit_dir/<container_id>` and `persist_dir/exit`:
    give an exec its own exit and persist directories, or it overwrites the container's exit file.
    """
    if exec_ != (exec_process_spec is not None):
        raise ValueError("exec_ and exec_process_spec go together")
    argv = [conmon, "--api-version", "1", "-c", container_id, "-u", container_id, "-n", name,
            "-r", runtime, "-b", bundle, "-p", pidfile, "-P", conmon_pidfile,
            "--exit-dir", exit_dir, "--persist-dir", persist_dir, "-l", f"k8s-file:{log_path}",
            "--socket-dir-path", socket_dir, "--log-level", "info", "--runtime-arg", f"--root={runtime_root}"]
    if log_size_max is not None:
        argv += ["--log-size-max", str(log_size_max)]
    if terminal:
        argv.append("-t")
    if stdin:
        argv.append("-i")
        if not stdin_once:
            argv.append("--leave-stdin-open")
    if exec_process_spec is not None:
        argv += ["-e", "--exec-process-spec", exec_process_spec]
    if timeout is not None:
        argv += ["-T", str(timeout)]
    return argv


_RT = re.compile(r"SIGRT(MIN|MAX)([+-][0-9]+)?\Z")


def signal_number(name: str) -> int:
    """A signal's number from "TERM", "SIGTERM", "sigterm", "15", "RTMIN+3"; ValueError if unknown."""
    text = name.strip().upper()
    if _NUMBER.match(text):
        number = int(text)
        if 1 <= number <= _signal.SIGRTMAX:
            return number
        raise ValueError(f"invalid signal {name!r}")
    text = text if text.startswith("SIG") else "SIG" + text
    rt = _RT.match(text)
    if rt:
        number = (_signal.SIGRTMIN if rt.group(1) == "MIN" else _signal.SIGRTMAX) + int(rt.group(2) or 0)
        if _signal.SIGRTMIN <= number <= _signal.SIGRTMAX:
            return int(number)
        raise ValueError(f"invalid signal {name!r}")
    try:
        return int(_signal.Signals[text])
    except KeyError:
        raise ValueError(f"invalid signal {name!r}") from None
