"""The fake runtime: in-memory, deterministic, driven by an injected clock.

Owns: simulated sandboxes and containers that behave as scripted — run forever, exit after N
seconds with code X, fail to create or start, ignore SIGTERM, get OOM-killed. Used by the tests
(under freezegun) and by `kubelite serve --runtime fake` to dry-run manifests without root.

Time is read only from `clock()`; an exit scheduled for `started_at + N s` is recorded with
exactly that `finished_at`, whenever it is noticed, so tests are exact.

A pod can also script its containers from its manifest, for dry runs: the annotation
`fake.kubelite.io/<container>: "exit=1 after=5"` (keys: exit, after, oom-after, fail-start,
ignore-term, exec-exit: the exit code of every command exec'd in it, lifecycle hooks included)
applies to every attempt of that container. Attaching to a running container gives a process that
echoes its stdin to stdout (`cat`), until the container stops. Probe outcomes are scripted the same way:
`liveness=fail-after:10` (succeeds for 10 s after the container started, then fails),
`readiness=ok-after:5`, `startup=fail`, `readiness=ok` (the default for every probe).
A regular init container completes as soon as it has started (exit 0, or its `exit=` code) unless
its annotation gives `after=` or `oom-after=`. Image references are checked by the image store's
parser, so a reference the real runtime cannot pull fails here too, with the same message.
A streaming exec (`exec_stream`, a client's `kubectl exec`) runs no command: it echoes its stdin to
its stdout (as `cat` would), or writes the command line when it has no stdin, and exits with the
container's `exec-exit` code; `kill` ends it at once.
"""

from __future__ import annotations

import ipaddress
import hashlib
import itertools
import os
import socket
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Callable

from kubelite.clock import utcnow
from kubelite.core.types import ContainerState
from kubelite.errors import NotFoundError, RuntimeError_
from kubelite.runtime import reference as references
from kubelite.runtime.attach import PACKET_MAX, STDOUT, ConmonAttach
from kubelite.runtime.protocol import (
    ContainerConfig, ContainerInfo, ExecResult, PortMapping, PulledImage, SandboxConfig, SandboxInfo,
    SandboxState,
)
from kubelite.runtime.reference import ImageError
from kubelite.runtime.streaming import ExecSession

ANNOTATION_PREFIX = "fake.kubelite.io/"


@dataclass(frozen=True)
class Behavior:
    """How one attempt of a container behaves."""

    exit_after_s: float | None = None   # exits on its own this long after it started
    exit_code: int = 0
    oom_after_s: float | None = None    # OOM-killed (exit 137, OOMKilled) this long after start
    fail_create: str | None = None      # create_container raises with this message
    fail_start: str | None = None       # start_container raises with this message
    ignore_sigterm: bool = False        # only SIGKILL stops it
    term_exit_code: int = 143           # exit code when SIGTERM stops it
    exec_exit_code: int = 0             # what every exec in it (an exec hook) exits with
    probes: tuple[tuple[str, str], ...] = ()   # (liveness|readiness|startup, script), see `probe_succeeds`

    @classmethod
    def parse(cls, text: str) -> "Behavior":
        """`exit=1 after=5 oom-after=3 fail-start=msg ignore-term` (the dry-run annotation)."""
        fields: dict[str, object] = {}
        for word in text.split():
            key, _, value = word.partition("=")
            if key == "exit":
                fields["exit_code"] = int(value)
            elif key == "after":
                fields["exit_after_s"] = _seconds(value)
            elif key == "oom-after":
                fields["oom_after_s"] = _seconds(value)
            elif key == "fail-start":
                fields["fail_start"] = value or "simulated start failure"
            elif key == "fail-create":
                fields["fail_create"] = value or "simulated create failure"
            elif key == "ignore-term":
                fields["ignore_sigterm"] = True
            elif key == "exec-exit":
                fields["exec_exit_code"] = int(value)
            elif key in PROBE_KINDS:
                _probe_script(value)  # checked now, so a typo fails the container's creation
                fields["probes"] = tuple(fields.get("probes", ())) + ((key, value),)  # type: ignore[arg-type]
            else:
                raise ValueError(f"unknown fake behaviour {key!r}")
        return cls(**fields)  # type: ignore[arg-type]


PROBE_KINDS = ("liveness", "readiness", "startup")


def _probe_script(text: str) -> tuple[bool, float]:
    """`ok`, `fail`, `fail-after:N`, `ok-after:N` → (succeeds at first, seconds until it flips)."""
    word, _, after = text.partition(":")
    if word in ("ok", "fail") and not after:
        return word == "ok", float("inf")
    if word in ("ok-after", "fail-after") and after:
        return word == "fail-after", _seconds(after)
    raise ValueError(f"probe script {text!r}: use ok, fail, ok-after:SECONDS or fail-after:SECONDS")


def _seconds(text: str) -> float:
    """A delay from an annotation: a finite number of seconds, at most about 30 years."""
    value = float(text)
    if not 0 <= value <= 1e9:  # also false for NaN
        raise ValueError(f"{text!r} is not a number of seconds between 0 and 1e9")
    return value


@dataclass
class _Sandbox:
    info: SandboxInfo
    ports: frozenset[PortMapping] = frozenset()   # host ports held while ready
    pod: str = ""                                 # namespace/name, for the host port message


@dataclass
class _Container:
    info: ContainerInfo
    behavior: Behavior
    term_at: datetime | None = None
    stdin: bool = False
    tty: bool = False
    attached: list["_EchoAttach"] = field(default_factory=list)


class _EchoAttach(ConmonAttach):
    """An attach to a simulated container: its process echoes its stdin to stdout, as `cat` would,
    in conmon's packets; the session ends when the container stops."""

    def __init__(self, *, tty: bool, stdin: bool) -> None:
        ours, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        super().__init__(ours, control=None, tty=tty, stdin=stdin)
        self.peer.setblocking(False)

    def write(self, data: bytes) -> int:
        if self._stdin_closed or not data:
            return len(data)
        chunk = data[:PACKET_MAX - 1]
        try:
            self.peer.send(bytes([STDOUT]) + chunk)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            return len(data)
        return len(chunk)

    def close_stdin(self) -> None:
        self._stdin_closed = True

    def end(self) -> None:
        """The container stopped: the session reads its end."""
        self.peer.close()

    def close(self) -> None:
        super().close()
        self.peer.close()


def _valid_reference(image: str) -> bool:
    try:
        references.normalize_reference(image)
    except ImageError:
        return False
    return True


class FakeRuntime:
    """A deterministic `Runtime`. Thread-safe: the agent thread and test code may both call it."""

    name = "fake"
    simulated = True

    def __init__(self, clock: Callable[[], datetime] = utcnow, *, pod_cidr: str | None = "10.217.0.0/24") -> None:
        self.clock = clock
        #: Pod IPs are handed out in order from this subnet (None: no pod network, as `--network none`).
        self.pod_cidr = ipaddress.ip_network(pod_cidr) if pod_cidr else None
        self._ips = itertools.count()
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._sandboxes: dict[str, _Sandbox] = {}
        self._containers: dict[str, _Container] = {}
        self._scripts: dict[tuple[str, str], list[Behavior]] = {}
        self._hint: Callable[[], None] | None = None
        self.missing_images: set[str] = set()
        self.registry: set[str] = set()              # missing images a pull finds
        self.pull_errors: dict[str, str] = {}        # image → the error its pull fails with
        self.pull_gate: threading.Event | None = None
        self.calls: list[tuple[str, str]] = []   # (operation, id): for tests that count work
        self.configs: dict[str, ContainerConfig] = {}   # container id → what it was created with

    # ------------------------------------------------------------------ scripting

    def script(self, pod: str, container: str, *behaviors: Behavior) -> None:
        """Behaviours for successive attempts of `pod`/`container`; the last one repeats."""
        self._scripts[(pod, container)] = list(behaviors)

    def _behavior(self, config: ContainerConfig) -> Behavior:
        script = self._scripts.get((config.pod_name, config.container.name))
        if script:
            return script[min(config.attempt, len(script) - 1)]
        text = config.annotations.get(ANNOTATION_PREFIX + config.container.name)
        try:
            behavior = Behavior.parse(text) if text is not None else Behavior()
        except ValueError as exc:
            raise RuntimeError_(f"annotation {ANNOTATION_PREFIX}{config.container.name}: {exc}") from None
        if config.init and behavior.exit_after_s is None and behavior.oom_after_s is None:
            # a dry run's init container completes at once (with its `exit=` code, 0 unless annotated)
            behavior = replace(behavior, exit_after_s=0.0)
        return behavior

    def exit_container(self, container_id: str, code: int, *, reason: str | None = None) -> None:
        """Make a running container exit now (a crash injected by a test)."""
        with self._lock:
            c = self._get(container_id)
            if c.info.state is ContainerState.RUNNING:
                self._finish(c, self.clock(), code, reason)
        self._notify()

    def set_exit_hint(self, hint: Callable[[], None]) -> None:
        self._hint = hint

    def _notify(self) -> None:
        if self._hint is not None:
            self._hint()

    # ------------------------------------------------------------------ time

    def _due(self, c: _Container) -> tuple[datetime, int, str | None] | None:
        """The scripted exit of a running container: (when, exit code, reason), if any."""
        if c.info.state is not ContainerState.RUNNING or c.info.started_at is None:
            return None
        candidates: list[tuple[datetime, int, str | None]] = []
        b = c.behavior
        if b.exit_after_s is not None:
            candidates.append((c.info.started_at + timedelta(seconds=b.exit_after_s), b.exit_code, None))
        if b.oom_after_s is not None:
            candidates.append((c.info.started_at + timedelta(seconds=b.oom_after_s), 137, "OOMKilled"))
        return min(candidates, key=lambda x: x[0]) if candidates else None

    def _advance(self) -> None:
        now = self.clock()
        for c in self._containers.values():
            due = self._due(c)
            if due is not None and due[0] <= now:
                self._finish(c, due[0], due[1], due[2])

    def next_event_time(self) -> datetime | None:
        with self._lock:
            times = [due[0] for c in self._containers.values() if (due := self._due(c)) is not None]
        return min(times) if times else None

    def _finish(self, c: _Container, when: datetime, code: int, reason: str | None) -> None:
        c.info = replace(c.info, state=ContainerState.EXITED, finished_at=when, exit_code=code,
                         reason=reason or ("Completed" if code == 0 else "Error"))
        for session in c.attached:
            session.end()
        c.attached = []

    # ------------------------------------------------------------------ protocol

    def _get(self, container_id: str) -> _Container:
        try:
            return self._containers[container_id]
        except KeyError:
            raise NotFoundError(f"container {container_id} not found") from None

    def run_sandbox(self, config: SandboxConfig) -> str:
        with self._lock:
            mappings = () if config.host_network else config.port_mappings
            self._check_host_ports(config.uid, mappings)
            ip = None
            if self.pod_cidr is not None and not config.host_network:
                # .2, .3, ... (.0 is the network, .1 the gateway, the last the broadcast address)
                ip = str(self.pod_cidr[2 + next(self._ips) % (self.pod_cidr.num_addresses - 3)])
            sandbox_id = f"sb{next(self._ids):06d}"
            self._sandboxes[sandbox_id] = _Sandbox(SandboxInfo(
                sandbox_id, config.uid, config.attempt, config.sandbox_hash, SandboxState.READY, self.clock(), ip=ip),
                ports=frozenset(mappings), pod=f"{config.namespace}/{config.name}")
            self.calls.append(("run_sandbox", sandbox_id))
            return sandbox_id

    def _check_host_ports(self, uid: str, mappings: tuple[PortMapping, ...]) -> None:
        """A host port held by another ready sandbox is refused, in the OCI runtime's words."""
        if mappings and self.pod_cidr is None:
            raise RuntimeError_("hostPort needs pod networking, and kubelite runs with --network none")
        for sandbox in self._sandboxes.values():
            if sandbox.info.state is not SandboxState.READY:
                continue
            for m in mappings:
                for held in sandbox.ports:
                    if (held.host_port, held.protocol.upper()) == (m.host_port, m.protocol.upper()) and \
                            (not held.host_ip or not m.host_ip or held.host_ip == m.host_ip):
                        who = "an earlier sandbox of this pod" if sandbox.info.uid == uid else f"pod {sandbox.pod}"
                        where = f"{m.host_ip}:" if m.host_ip else ""
                        raise RuntimeError_(f"host port {where}{m.host_port}/{m.protocol.upper()} is already "
                                            f"allocated to {who}")

    def stop_sandbox(self, sandbox_id: str) -> None:
        with self._lock:
            sandbox = self._sandboxes.get(sandbox_id)
            if sandbox is None:
                return
            for c in self._containers.values():
                if c.info.sandbox_id == sandbox_id and c.info.state is ContainerState.RUNNING:
                    self._finish(c, self.clock(), 137, None)
            sandbox.info = replace(sandbox.info, state=SandboxState.NOTREADY)
            self.calls.append(("stop_sandbox", sandbox_id))

    def remove_sandbox(self, sandbox_id: str) -> None:
        with self._lock:
            self.stop_sandbox(sandbox_id)
            self._sandboxes.pop(sandbox_id, None)
            for cid in [cid for cid, c in self._containers.items() if c.info.sandbox_id == sandbox_id]:
                del self._containers[cid]

    def create_container(self, sandbox_id: str, config: ContainerConfig) -> str:
        with self._lock:
            sandbox = self._sandboxes.get(sandbox_id)
            if sandbox is None or sandbox.info.state is not SandboxState.READY:
                raise RuntimeError_(f"sandbox {sandbox_id} is not ready")
            behavior = self._behavior(config)
            if behavior.fail_create:
                raise RuntimeError_(behavior.fail_create)
            container_id = f"c{next(self._ids):06d}"
            self._containers[container_id] = _Container(ContainerInfo(
                container_id, sandbox_id, config.uid, config.container.name, config.attempt, config.spec_hash,
                config.container.image or "", ContainerState.CREATED, self.clock()), behavior,
                stdin=bool(config.container.stdin), tty=bool(config.container.tty))
            self.calls.append(("create_container", container_id))
            self.configs[container_id] = config
            return container_id

    def start_container(self, container_id: str) -> None:
        with self._lock:
            c = self._get(container_id)
            if c.behavior.fail_start:
                now = self.clock()
                c.info = replace(c.info, state=ContainerState.EXITED, started_at=None, finished_at=now,
                                 exit_code=128, reason="StartError", message=c.behavior.fail_start)
                raise RuntimeError_(c.behavior.fail_start)
            c.info = replace(c.info, state=ContainerState.RUNNING, started_at=self.clock())
            self.calls.append(("start_container", container_id))

    def signal_container(self, container_id: str, signal: str) -> None:
        with self._lock:
            c = self._get(container_id)
            if c.info.state is not ContainerState.RUNNING:
                return
            self.calls.append((f"signal_{signal}", container_id))
            if signal == "KILL":
                self._finish(c, self.clock(), 137, None)
            elif signal == "TERM" and not c.behavior.ignore_sigterm:
                self._finish(c, self.clock(), c.behavior.term_exit_code, None)
        self._notify()

    def remove_container(self, container_id: str) -> None:
        with self._lock:
            c = self._containers.get(container_id)
            if c is not None and c.info.state is ContainerState.RUNNING:
                raise RuntimeError_(f"container {container_id} is running")
            self._containers.pop(container_id, None)

    def list_sandboxes(self, *, full: bool = True) -> list[SandboxInfo]:
        with self._lock:   # in memory: every list is a full one
            return [s.info for s in self._sandboxes.values()]

    def sandbox_ip(self, sandbox_id: str) -> str | None:
        with self._lock:
            sandbox = self._sandboxes.get(sandbox_id)
            return sandbox.info.ip if sandbox is not None else None

    def list_containers(self, *, full: bool = True) -> list[ContainerInfo]:
        with self._lock:   # in memory: every list is a full one
            self._advance()
            return [c.info for c in self._containers.values()]

    def exec_sync(self, container_id: str, command: list[str], timeout_s: float) -> ExecResult:
        with self._lock:
            c = self._get(container_id)
            if c.info.state is not ContainerState.RUNNING:
                raise RuntimeError_(f"container {container_id} is not running")
            self.calls.append(("exec", container_id))
            code = c.behavior.exec_exit_code
            return ExecResult(code, stderr=f"simulated exit {code}\n".encode() if code else b"")

    def exec_stream(self, container_id: str, command: list[str], *, stdin: bool, stdout: bool = True,
                    stderr: bool = True, tty: bool = False) -> ExecSession:
        with self._lock:
            c = self._get(container_id)
            if c.info.state is not ContainerState.RUNNING:
                raise RuntimeError_(f"container {container_id} is not running")
            self.calls.append(("exec-stream", container_id))
            return FakeExec(command, code=c.behavior.exec_exit_code, stdin=stdin, stdout=stdout, tty=tty)

    def attach_container(self, container_id: str, *, stdin: bool) -> ConmonAttach:
        """A simulated process to attach to: it echoes what the session writes (see `_EchoAttach`)."""
        with self._lock:
            self._advance()
            c = self._get(container_id)
            if c.info.state is not ContainerState.RUNNING:
                raise RuntimeError_(f"container {container_id} is not running")
            self.calls.append(("attach", container_id))
            session = _EchoAttach(tty=c.tty, stdin=stdin and c.stdin)
            c.attached = [a for a in c.attached if a.peer.fileno() >= 0] + [session]
            return session

    def image_present(self, image: str) -> bool:
        if not _valid_reference(image):   # as the image store: an unparsable reference is never present
            return False
        return image not in self.missing_images

    def probe_succeeds(self, container_id: str, kind: str, at: datetime) -> bool | None:
        """The scripted outcome of probe `kind` run at `at`; None when the container is not running."""
        with self._lock:
            c = self._containers.get(container_id)
            if c is None or c.info.state is not ContainerState.RUNNING or c.info.started_at is None:
                return None
            script = dict(c.behavior.probes).get(kind, "ok")
            first, flip_after = _probe_script(script)
            elapsed = (at - c.info.started_at).total_seconds()
            return first if elapsed < flip_after else not first

    def sandbox_netns(self, sandbox_id: str) -> str | None:
        """Simulated pods have no network namespace: the scripted prober needs none."""
        return None

    def pull_image(self, image: str) -> PulledImage:
        """A simulated registry: every image can be pulled except a missing one not in `registry`;
        `pull_errors` fail with their message; `pull_gate`, when set, holds each pull until it opens."""
        if self.pull_gate is not None and not self.pull_gate.wait(30):
            raise RuntimeError_(f'pulling "{image}": timed out')
        with self._lock:
            self.calls.append(("pull", image))
            try:
                references.normalize_reference(image)   # the real pull's first step, with its message
            except ImageError as exc:
                raise RuntimeError_(str(exc)) from None
            if image in self.pull_errors:
                raise RuntimeError_(self.pull_errors[image])
            if image in self.missing_images and image not in self.registry:
                raise RuntimeError_(f"{image}: not found (MANIFEST_UNKNOWN: manifest unknown)")
            self.missing_images.discard(image)
        return PulledImage(id="sha256:" + hashlib.sha256(image.encode()).hexdigest(), size=1024)

    def image_layers(self, image: str) -> list[str]:
        return []   # nothing is mounted in a dry run

    def remove_unused_images(self, in_use: set[str], *, high_percent: int, low_percent: int) -> list[str]:
        return []

    # ------------------------------------------------------------------ a machine restart

    def reboot(self) -> None:
        """Forget everything, as a machine restart does to runc's state in /run."""
        with self._lock:
            self._sandboxes.clear()
            self._containers.clear()


class FakeExec(ExecSession):
    """A simulated command: stdin echoed to stdout (or the command line written when there is no
    stdin), then the scripted exit code; a thread stands for the process."""

    def __init__(self, command: list[str], *, code: int, stdin: bool, stdout: bool, tty: bool) -> None:
        self.tty, self.code = tty, code
        self._killed = threading.Event()
        self._in = self._out = None
        if stdin:
            self._in, self.stdin = os.pipe()
        if stdout:
            self.stdout, self._out = os.pipe()
        for fd in (self.stdin, self.stdout):
            if fd is not None:
                os.set_blocking(fd, False)
        self.resizes: list[tuple[int, int]] = []
        self._thread = threading.Thread(target=self._run, args=(" ".join(command),), daemon=True,
                                        name="fake-exec")
        self._thread.start()

    def _run(self, line: str) -> None:
        try:
            if self._in is None:
                if self._out is not None:
                    os.write(self._out, (line + "\n").encode())
                return
            while not self._killed.is_set():
                data = os.read(self._in, 65536)
                if not data:
                    break
                if self._out is not None:
                    os.write(self._out, data)
        except OSError:
            pass
        finally:
            for fd in (self._in, self._out):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass

    def resize(self, width: int, height: int) -> None:
        self.resizes.append((width, height))

    def close_stdin(self) -> None:
        if self.stdin is not None:
            os.close(self.stdin)
            self.stdin = None

    def wait(self) -> int:
        self._thread.join()
        return 137 if self._killed.is_set() else self.code

    def kill(self) -> None:
        self._killed.set()
        self.close()   # the "process" sees EOF on its stdin and EPIPE on its stdout

    def close(self) -> None:   # two pipes even with a terminal: each closed
        for fd in (self.stdin, self.stdout):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.stdin = self.stdout = None
