"""Containers: created through conmon in a sandbox's namespaces on an overlay of the image's
layers, started, signalled, observed from conmon's exit file and /proc, exec'd into, removed.

Owns: `<run-dir>/containers/<id>/`, conmon's exit files and sockets, and the containers' writable
layers `<root>/pods/<uid>/containers/<id>/`; a part of `OCIRuntime` (`oci.runtime`).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal as signals
import subprocess
import tempfile
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from kubelite import layout
import kubelite.statefiles as statefiles
from kubelite.core.types import ContainerState
from kubelite.errors import NotFoundError, RuntimeError_
from kubelite.runtime import conmon, linux, ocispec, termination
from kubelite.runtime.attach import ConmonAttach
from kubelite.runtime.images import ImageError, ImageStore
from kubelite.runtime.oci.process import run, run_conmon
from kubelite.runtime.oci.records import ContainerRecord, SandboxRecord, parse_time, write_json
from kubelite.runtime.protocol import ContainerConfig, ContainerInfo, ExecResult, Mount
from kubelite.runtime.streaming import ExecSession, RuncExec, runc_exec_argv

#: The kubelet's default `containerLogMaxSize`.
LOG_SIZE_MAX = 10 * 1024 * 1024
#: The name runc gives its init process (`runc:[2:INIT]`) until `runc start` makes it the container's command.
RUNC_INIT_PREFIX = "runc:["
log = logging.getLogger("kubelite.runtime")


class Containers:
    """`OCIRuntime`'s container operations (the `Runtime` protocol's container half)."""

    root: Path
    run_dir: Path
    images: ImageStore
    clock: Callable[[], datetime]
    bin: dict[str, str]
    state_dir: Path
    exit_dir: Path
    socket_dir: Path
    sandbox_dir: Path
    container_dir: Path
    nofile: int
    capabilities: Any
    machine: str
    kernel: tuple[int, ...]
    _lock: threading.RLock
    _sandboxes: dict[str, SandboxRecord]
    _containers: dict[str, ContainerRecord]
    _lost: frozenset[str] | None
    _runc: Callable[..., Any]
    _place_conmon: Callable[[int], None]
    _save: Callable[[Any], None]
    _annotations: Callable[..., dict[str, str]]
    _seccomp_profile: Callable[..., dict[str, Any] | None]
    _apparmor_profile: Callable[..., str | None]
    _sandbox_namespaces: Callable[[SandboxRecord], ocispec.SandboxNamespaces]

    def create_container(self, sandbox_id: str, config: ContainerConfig) -> str:
        with self._lock:
            sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is None:
            raise NotFoundError(f"pod sandbox {sandbox_id} not found")
        try:
            image = self.images.get(config.container.image or "")
        except ImageError as exc:
            raise RuntimeError_(f'image "{config.container.image}": {exc}') from None
        if image is None:
            raise RuntimeError_(f'image "{config.container.image}" is not present')
        self.images.touch(image.id)   # the image GC removes the least recently used first
        container_id = uuid.uuid4().hex
        bundle = layout.container_bundle(self.run_dir, container_id)
        layer = layout.container_layer_dir(self.root, config.uid, container_id)
        rootfs = layer / "rootfs"
        for path in (bundle / "persist", layer / "work", rootfs):
            statefiles.make_dirs(path, base=self.root if path.is_relative_to(self.root) else self.run_dir)
        (layer / "upper").mkdir(exist_ok=True)
        os.chmod(layer / "upper", 0o755)   # the overlay's `/` takes this mode: the container's own user enters it
        record = ContainerRecord(container_id, sandbox_id, config.uid, config.container.name, config.pod_name,
                                 config.namespace, config.attempt, config.spec_hash, config.container.image or "",
                                 self.clock().isoformat(), config.log_path,
                                 message_policy=config.container.termination_message_policy,
                                 tty=bool(config.container.tty), stdin=bool(config.container.stdin),
                                 stdin_once=bool(config.container.stdin_once))
        mounts = config.mounts
        message_path = config.container.termination_message_path
        if message_path.startswith("/") and not any(m.container_path == message_path for m in mounts):
            termination.create_file(layer / termination.FILE_NAME)
            record.termination_log = str(layer / termination.FILE_NAME)
            mounts = (*mounts, Mount(message_path, record.termination_log))
        try:
            linux.mount_overlay(lower=list(reversed(self.images.layer_dirs(image))), upper=layer / "upper",
                                work=layer / "work", target=rootfs)
            spec = ocispec.build_container_spec(
                config=config, image=image.config, rootfs=str(rootfs),
                namespaces=self._sandbox_namespaces(sandbox), cgroups_path=f"{sandbox.cgroup_parent}/{container_id}",
                hostname=self._hostname(sandbox), nofile=self.nofile, host_capabilities=self.capabilities,
                pod_security=config.pod_security, etc_passwd=linux.read_regular_file(rootfs, "etc/passwd"),
                etc_group=linux.read_regular_file(rootfs, "etc/group"),
                extra_mounts=ocispec.volume_mounts(mounts),
                seccomp_profile=self._seccomp_profile(config.seccomp), machine=self.machine, kernel=self.kernel,
                apparmor_profile=self._apparmor_profile(config.apparmor), pod_resources=config.pod_resources,
                annotations=self._annotations(config.uid, config.container.name, config.attempt, config.spec_hash))
            write_json(layout.bundle_config_path(bundle), spec)
            if config.log_path:
                log_dir = Path(config.log_path).parent
                statefiles.make_dirs(log_dir, base=self.root if log_dir.is_relative_to(self.root) else log_dir.parent)
            record.pid = self._conmon_create(record, bundle)
            record.pid_start = linux.process_start(record.pid) or 0
            record.conmon_pid = int((bundle / "conmon.pid").read_text().strip() or 0)
            record.conmon_start = linux.process_start(record.conmon_pid) or 0
        except Exception as exc:
            self._remove_container_files(record)
            if isinstance(exc, RuntimeError_):
                raise
            raise RuntimeError_(str(exc)) from None
        with self._lock:
            self._containers[container_id] = record
            self._save(record)
        return container_id

    def _hostname(self, sandbox: SandboxRecord) -> str:
        try:
            return (self.sandbox_dir / sandbox.id / "hostname").read_text().strip()
        except OSError:
            return sandbox.name

    def _conmon_create(self, record: ContainerRecord, bundle: Path) -> int:
        """Start conmon, which runs `runc create`; return the container's PID 1 (not started yet)."""
        argv = conmon.conmon_argv(
            conmon=self.bin["conmon"], runtime=self.bin["runc"], runtime_root=str(self.state_dir),
            container_id=record.id, name=f"{record.namespace}_{record.pod_name}_{record.name}_{record.attempt}",
            bundle=str(bundle), pidfile=str(bundle / "pidfile"), conmon_pidfile=str(bundle / "conmon.pid"),
            exit_dir=str(self.exit_dir), persist_dir=str(bundle / "persist"), log_path=record.log_path or "/dev/null",
            log_size_max=LOG_SIZE_MAX, socket_dir=str(self.socket_dir), terminal=record.tty, stdin=record.stdin,
            stdin_once=record.stdin_once)
        return run_conmon(argv, bundle=bundle, place=self._place_conmon)

    def start_container(self, container_id: str) -> None:
        record = self._get(container_id)
        try:
            self._runc("start", container_id)
        except RuntimeError_ as exc:
            with self._lock:
                record.exit_code, record.reason, record.message = 128, "StartError", str(exc)
                record.finished_at = self.clock().isoformat()
                self._save(record)
            raise
        with self._lock:
            record.started_at = self.clock().isoformat()
            self._save(record)

    def signal_container(self, container_id: str, signal: str) -> None:
        record = self._get(container_id)
        if not linux.alive(record.pid, record.pid_start):
            return
        number = conmon.signal_number(signal)
        try:
            os.kill(record.pid, number)  # the PID is verified by its start time just above
        except ProcessLookupError:
            pass

    def remove_container(self, container_id: str) -> None:
        with self._lock:
            record = self._containers.get(container_id)
            if record is None:
                return
            if linux.alive(record.pid, record.pid_start) and record.started_at is not None \
                    and record.exit_code is None and not (self.exit_dir / container_id).exists():
                raise RuntimeError_(f"container {container_id} is running")
            del self._containers[container_id]
        self._remove_container_files(record)
        if record.log_path:
            Path(record.log_path).unlink(missing_ok=True)

    def _remove_container_files(self, record: ContainerRecord) -> None:
        if linux.alive(record.pid, record.pid_start):
            os.kill(record.pid, signals.SIGKILL)
        self._runc("delete", "--force", record.id, check=False)
        (self.socket_dir / record.id).unlink(missing_ok=True)  # conmon's attach socket link
        layer = layout.container_layer_dir(self.root, record.uid, record.id)
        linux.unmount(layer / "rootfs")
        shutil.rmtree(layer, ignore_errors=True)
        shutil.rmtree(self.container_dir / record.id, ignore_errors=True)
        (self.exit_dir / record.id).unlink(missing_ok=True)

    def _get(self, container_id: str) -> ContainerRecord:
        with self._lock:
            record = self._containers.get(container_id)
        if record is None:
            raise NotFoundError(f"container {container_id} not found")
        return record

    def list_containers(self, *, full: bool = True) -> list[ContainerInfo]:
        """Every container. A full list looks at each one's exit file and processes; one between
        full ones (`full=False`) lists the exit directory once and looks only at the containers
        with an exit file there (conmon writes it when the container exits): the others are as the
        last look found them — running, created, or with neither process nor exit file (lost)."""
        with self._lock:
            records = list(self._containers.values())
        if full or self._lost is None:
            infos = [self._info(r) for r in records]
            self._lost = frozenset(i.id for i in infos if i.state is ContainerState.UNKNOWN)
            return infos
        try:
            exits = frozenset(os.listdir(self.exit_dir))
        except OSError:   # cannot tell which exited: look at every one
            return self.list_containers(full=True)
        return [self._info(r, exits) for r in records]

    def _info(self, r: ContainerRecord, exits: frozenset[str] | None = None) -> ContainerInfo:
        if exits is None or r.exit_code is not None or r.id in exits:
            state, exit_code, finished_at, reason = self._observe(r)
        else:   # no sign of an exit since the last look
            state = ContainerState.UNKNOWN if r.id in (self._lost or ()) else \
                ContainerState.RUNNING if r.started_at else ContainerState.CREATED
            exit_code, finished_at, reason = None, None, None
        return ContainerInfo(id=r.id, sandbox_id=r.sandbox_id, uid=r.uid, name=r.name, attempt=r.attempt,
                             spec_hash=r.spec_hash, image=r.image, state=state,
                             created_at=datetime.fromisoformat(r.created_at), started_at=parse_time(r.started_at),
                             finished_at=finished_at, exit_code=exit_code, reason=reason, message=r.message)

    def _started_unrecorded(self, r: ContainerRecord) -> bool:
        """True (and the start recorded now) when the container's process runs its command although
        no start was recorded: kubelite stopped between `runc start` and writing the record. A
        container that was only created is still runc's init process, waiting to be started."""
        comm = linux.process_comm(r.pid) if linux.alive(r.pid, r.pid_start) else None
        if comm is None or comm.startswith(RUNC_INIT_PREFIX):
            return False
        with self._lock:
            if not r.started_at:
                r.started_at = self.clock().isoformat()
                self._save(r)
                log.debug("container %s (%s of pod %s/%s) runs, its start not recorded yet", r.id, r.name,
                          r.namespace, r.pod_name)
        return True

    def _observe(self, r: ContainerRecord) -> tuple[ContainerState, int | None, datetime | None, str | None]:
        """A container's state from conmon's exit file and /proc — the truth, every time."""
        if r.exit_code is not None:  # recorded before (a start error, or an exit already read)
            return ContainerState.EXITED, r.exit_code, parse_time(r.finished_at), r.reason
        exit_file = self.exit_dir / r.id
        try:
            text = exit_file.read_text().strip()
            stat = exit_file.stat()
        except FileNotFoundError:
            if linux.alive(r.pid, r.pid_start) or linux.alive(r.conmon_pid, r.conmon_start):
                # running — or just exited, and conmon is about to write the exit file: not yet an exit
                if not r.started_at and self._started_unrecorded(r):
                    return ContainerState.RUNNING, None, None, None
                return (ContainerState.RUNNING if r.started_at else ContainerState.CREATED), None, None, None
            try:   # conmon writes the exit file before it exits: it may have done both since the first look
                text = exit_file.read_text().strip()
                stat = exit_file.stat()
            except FileNotFoundError:
                return ContainerState.UNKNOWN, None, None, None
        code = int(text) if text.lstrip("-").isdigit() and text.isascii() else 255
        finished = datetime.fromtimestamp(stat.st_mtime, timezone.utc)
        oom = (self.container_dir / r.id / "persist" / "oom").exists() or \
            (self.container_dir / r.id / "oom").exists()
        reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
        message = termination.read_message(Path(r.termination_log) if r.termination_log else None,
                                           policy=r.message_policy, exit_code=code,
                                           log_path=Path(r.log_path) if r.log_path else None)
        with self._lock:
            r.exit_code, r.finished_at, r.reason = code, finished.isoformat(), reason
            if message:   # after the runtime's own message, as the kubelet appends it
                r.message = f"{r.message}: {message}" if r.message else message
            self._save(r)
        return ContainerState.EXITED, code, finished, reason

    def attach_container(self, container_id: str, *, stdin: bool) -> ConmonAttach:
        """Attach to the running container's main process through conmon's attach socket; `stdin`
        asks to write its stdin (granted only when the container has `stdin: true`)."""
        record = self._running(container_id)
        return ConmonAttach.connect(self.container_dir / record.id, tty=record.tty, stdin=stdin and record.stdin)

    def _running(self, container_id: str) -> ContainerRecord:
        """The record of a container whose process runs, looked at without recording anything (the
        agent's relist records exits; a client's attach or exec from the API's thread only reads);
        `RuntimeError_` otherwise."""
        record = self._get(container_id)
        if record.exit_code is not None or not record.started_at or not linux.alive(record.pid, record.pid_start):
            raise RuntimeError_(f"container {container_id} is not running")
        return record

    def exec_sync(self, container_id: str, command: list[str], timeout_s: float) -> ExecResult:
        """Run `command` in the container (`runc exec`); on timeout the process inside is killed too."""
        self._get(container_id)
        with tempfile.TemporaryDirectory(dir=self.run_dir) as tmp:
            pid_file = Path(tmp) / "pid"
            cmd = runc_exec_argv([self.bin["runc"], "--root", str(self.state_dir)], container_id, command,
                                 pid_file=pid_file)
            try:
                result = run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             timeout=timeout_s)
            except subprocess.TimeoutExpired as exc:
                try:  # killing runc exec leaves the process it started running: kill that one
                    os.kill(int(pid_file.read_text()), signals.SIGKILL)
                except (OSError, ValueError):
                    pass
                return ExecResult(-1, exc.stdout or b"", exc.stderr or b"", timed_out=True)
        return ExecResult(result.returncode, result.stdout, result.stderr)

    def exec_stream(self, container_id: str, command: list[str], *, stdin: bool, stdout: bool = True,
                    stderr: bool = True, tty: bool = False) -> ExecSession:
        """`runc exec` of `command` in the running container for a client (see `streaming.RuncExec`)."""
        self._running(container_id)
        return RuncExec([self.bin["runc"], "--root", str(self.state_dir)], container_id, command, stdin=stdin,
                        stdout=stdout, stderr=stderr, tty=tty, work_dir=self.run_dir)
