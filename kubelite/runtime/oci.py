"""The OCI runtime: runc runs the containers, conmon monitors each one, catatonit holds a pod's namespaces.

Owns: the runtime's files and processes below its two directories, and nothing else.

    <run-dir>/runc/                 runc's state (--root): this instance's containers only
    <run-dir>/exits/<id>            conmon's exit files (decimal exit code; 128+N for signal N)
    <run-dir>/sockets/              conmon's socket directory
    <run-dir>/sandboxes/<id>/       an infra container's bundle and record.json
    <run-dir>/containers/<id>/      a container's bundle, pid files, conmon's persist dir, record.json
    <run-dir>/cni/pending/<id>.json a removed sandbox's network record while its CNI DEL keeps failing
    <root>/pods/<uid>/containers/<id>/{upper,work,rootfs}   overlay: writable layer and mount point
    <root>/pods/<uid>/containers/<id>/termination-log       the container's terminationMessagePath
                                    (`<root>/pods/<uid>/volumes*` belong to the volume host)
    <root>/seccomp/                 Localhost seccomp profiles (read only; the kubelet's
                                    --seccomp-profile-root); RuntimeDefault is containers-common's

A sandbox is an infra container (catatonit as PID 1, bind-mounted into an empty read-only root)
that owns the pod's IPC and UTS namespaces, and its PID namespace when the pod shares one;
containers join those namespaces through `/proc/<infra pid>/ns/*` (decision 0006). With pod
networking (`cni.Network`) the network namespace is pinned at `<run-dir>/netns/<sandbox id>`,
set up by the CNI plugins before the infra container joins it, and torn down when the sandbox
stops (decision 0009); without it the infra container makes a loopback-only one.
Containers are created through conmon, which holds their stdio, writes CRI-format logs and the
exit file, and outlives kubelite; `runc start` runs the application as the container's PID 1.

Truth comes from the exit files and from /proc (a PID together with its start time), read on
every relist; inotify on the exit directory only wakes the agent. cgroups live below
`/kubelite-<instance>/pod<uid>/`, where the instance is derived from the state root, so two
kubelite instances never share a cgroup, a runc root or a directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import signal as signals
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from kubelite.clock import utcnow
from kubelite.core.types import ContainerState, SecurityProfile
import kubelite.statefiles as statefiles
from kubelite.errors import NotFoundError, RuntimeError_
from kubelite import layout
from kubelite.runtime import apparmor, cni, etcfiles, linux, ocispec, seccomp, termination, view, volumes
from kubelite.runtime.images import ImageError, ImageStore
from kubelite.runtime.protocol import (
    ContainerConfig, ContainerInfo, ExecResult, HostsConfig, Mount, PortMapping, PulledImage, SandboxConfig,
    SandboxInfo, SandboxState,
)
from kubelite.runtime.registry import RegistryConfig

log = logging.getLogger("kubelite.runtime")

#: Debian's packages, as the README's commands install them.
REQUIRED_BINARIES = {"runc": "runc", "conmon": "conmon", "catatonit": "catatonit"}
#: The kubelet's default `containerLogMaxSize`.
LOG_SIZE_MAX = 10 * 1024 * 1024
#: Each pod's /dev/shm (Docker's and containerd's default size).
SHM_SIZE = "64m"
#: How long conmon may take to report a created container.
CREATE_TIMEOUT_S = 30.0
#: A container whose PID 1 is gone gets this long for conmon's exit file to appear.
EXIT_FILE_GRACE_S = 0.5
#: A pod network whose CNI DEL failed is tried again at most this often (from the relist).
TEARDOWN_RETRY_S = 60.0


class MissingDependency(RuntimeError_):
    """A program the OCI runtime needs is not installed."""


def find_binaries() -> dict[str, str]:
    """Paths of runc, conmon and catatonit; MissingDependency naming the packages that are absent."""
    found, missing = {}, []
    for name, package in REQUIRED_BINARIES.items():
        path = view.which(name)
        if path is None:
            missing.append(package)
        else:
            found[name] = path
    if missing:
        raise MissingDependency(f"the OCI runtime needs {', '.join(missing)}: "
                                f"run 'apt-get install {' '.join(missing)}' (or scripts/run as root)")
    return found


def instance_name(root: Path) -> str:
    """This instance's name in cgroup paths and annotations: derived from its state root."""
    return "kubelite-" + hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]


def _write_json(path: Path, data: Any) -> None:
    statefiles.write_atomic(path, json.dumps(data, separators=(",", ":")), 0o600)


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def run(cmd: list[str], *, timeout: float, **popen: Any) -> subprocess.CompletedProcess[Any]:
    """`subprocess.run`, minus its polling: with a timeout, `subprocess.run` checks for the exit
    with sleeps that double up to 50 ms, which added up to 30 ms to every runc call. Here the wait
    blocks, and a timer kills the process if it runs too long (TimeoutExpired, as subprocess)."""
    proc = subprocess.Popen(cmd, **popen)
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        out, err = proc.communicate()
    finally:
        timer.cancel()
    if expired.is_set():
        raise subprocess.TimeoutExpired(cmd, timeout, out, err)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run_conmon(argv: list[str], *, bundle: Path, timeout: float = CREATE_TIMEOUT_S) -> int:
    """Run conmon (which runs `runc create`) and return the container's PID 1 from its sync pipe.

    conmon speaks over two socket pairs named in its environment: it waits for one byte on the
    start pipe, then reports `{"data": PID}` (or a negative value and a message) on the sync pipe.
    Its first process exits at once; the monitor lives on, detached, and outlives kubelite.
    """
    sync_parent, sync_child = socket.socketpair()
    start_parent, start_child = socket.socketpair()
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "_OCI_SYNCPIPE": str(sync_child.fileno()), "_OCI_STARTPIPE": str(start_child.fileno())}
    timer: threading.Timer | None = None
    try:
        proc = subprocess.Popen(argv, cwd=bundle, env=env, pass_fds=(sync_child.fileno(), start_child.fileno()),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        timer = threading.Timer(timeout, proc.kill)  # a blocking wait, bounded (see `run`)
        timer.start()
        sync_child.close()
        start_child.close()
        try:
            start_parent.sendall(b"0")
        except OSError:  # conmon already gave up: its stderr says why
            pass
        sync_parent.settimeout(timeout)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sync_parent.recv(65536)
            if not chunk:
                break
            data += chunk
        _, stderr = proc.communicate()
    finally:
        if timer is not None:
            timer.cancel()
        for sock in (sync_parent, sync_child, start_parent, start_child):
            sock.close()
    try:
        reply = json.loads(data.decode() or "{}")
    except ValueError:
        reply = {}
    pid = reply.get("data", -1)
    if not isinstance(pid, int) or pid <= 0:
        detail = reply.get("message") or stderr.decode(errors="replace").strip() or "conmon gave no reply"
        raise RuntimeError_(f"creating container: {detail}")
    return pid


@dataclass
class _Sandbox:
    id: str
    uid: str
    name: str
    namespace: str
    attempt: int
    sandbox_hash: str
    created_at: str
    host_network: bool
    share_pid: bool
    cgroup_parent: str
    pid: int = 0
    pid_start: int = 0
    stopped: bool = False
    netns: str = ""             # the pinned network namespace (pod networking), else ""
    ip: str | None = None
    host_ports: list[list[Any]] = field(default_factory=list)   # [hostPort, protocol, hostIP] held


@dataclass
class _Container:
    id: str
    sandbox_id: str
    uid: str
    name: str
    pod_name: str
    namespace: str
    attempt: int
    spec_hash: str
    image: str
    created_at: str
    log_path: str
    pid: int = 0
    pid_start: int = 0
    conmon_pid: int = 0
    conmon_start: int = 0
    started_at: str | None = None
    exit_code: int | None = None
    finished_at: str | None = None
    reason: str | None = None
    message: str | None = None
    termination_log: str = ""      # the host file bound at terminationMessagePath ("" without one)
    message_policy: str = "File"   # terminationMessagePolicy
    tty: bool = False
    stdin: bool = False


class OCIRuntime:
    """The `Runtime` protocol on runc + conmon. One instance per kubelite state root."""

    name = "runc"
    simulated = False

    def __init__(self, *, root: Path, run_dir: Path, images: ImageStore,
                 clock: Callable[[], datetime] = utcnow, binaries: dict[str, str] | None = None,
                 network: cni.Network | None = None, registry: RegistryConfig | None = None,
                 default_seccomp_profile: Path = Path(seccomp.DEFAULT_PROFILE_PATH)) -> None:
        self.root, self.run_dir, self.images, self.clock = root, run_dir, images, clock
        self.seccomp_root = layout.seccomp_root(root)     # the kubelet's --seccomp-profile-root
        self.default_seccomp_profile = default_seccomp_profile
        self._default_seccomp: dict[str, Any] | None = None
        self.machine, self.kernel = platform.machine(), linux.kernel_version()
        self.network = network   # None: `--network none`, loopback-only pods
        self.registry = registry or RegistryConfig()
        self.bin = binaries or find_binaries()
        self.instance = instance_name(root)
        self.state_dir = layout.runc_root(run_dir)
        self.exit_dir = layout.exits_dir(run_dir)
        self.socket_dir = layout.sockets_dir(run_dir)
        self.sandbox_dir = layout.sandboxes_dir(run_dir)
        self.container_dir = layout.containers_dir(run_dir)
        statefiles.make_top(run_dir)
        for path in (self.state_dir, self.exit_dir, self.socket_dir, self.sandbox_dir, self.container_dir):
            statefiles.make_dirs(path, base=run_dir)
        self._lock = threading.RLock()
        self._sandboxes: dict[str, _Sandbox] = self._load(self.sandbox_dir, _Sandbox)
        self._containers: dict[str, _Container] = self._load(self.container_dir, _Container)
        self._observer: Any = None
        self.pending_dir = layout.cni_pending_dir(run_dir)
        self._next_teardown_retry = time.monotonic() + TEARDOWN_RETRY_S
        self.nofile = min(os.sysconf("SC_OPEN_MAX"), 1 << 20)
        self.capabilities = ocispec.capability_mask(linux.bounding_capabilities())
        self.remove_orphan_containers()
        self.remove_orphan_layers()
        self.remove_orphan_sandboxes()

    # ------------------------------------------------------------------ records

    @staticmethod
    def _load(directory: Path, kind: type) -> dict[str, Any]:
        records = {}
        for record in directory.glob(f"*/{layout.RECORD_NAME}"):
            try:
                data = json.loads(record.read_text())
                records[data["id"]] = kind(**data)
            except (OSError, ValueError, TypeError, KeyError) as exc:
                log.warning("ignoring unreadable runtime record %s: %s", record, exc)
        return records

    def _save(self, record: _Sandbox | _Container) -> None:
        base = self.sandbox_dir if isinstance(record, _Sandbox) else self.container_dir
        _write_json(layout.record_path(base / record.id), asdict(record))

    def _runc(self, *args: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run runc under this instance's root. Its stderr goes to a file, not a pipe: a container
        created by `runc create` inherits runc's stdio, and would hold a pipe open for its lifetime."""
        cmd = [self.bin["runc"], "--root", str(self.state_dir), *args]
        with tempfile.TemporaryFile(mode="w+") as err:
            result = run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, text=True,
                         timeout=timeout)
            err.seek(0)
            result.stderr = err.read()
        if check and result.returncode != 0:
            message = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1].strip()
            if "does not exist" in message or "not exist" in message:
                raise NotFoundError(f"runc {args[0]}: {message}")
            raise RuntimeError_(f"runc {args[0]}: {message}")
        return result

    def _pod_cgroup(self, uid: str) -> str:
        return f"/{self.instance}/pod{layout.safe_name(uid)}"

    # ------------------------------------------------------------------ sandboxes

    def run_sandbox(self, config: SandboxConfig) -> str:
        mappings = () if config.host_network else config.port_mappings
        with self._lock:
            earlier = [r for r in self._sandboxes.values() if r.uid == config.uid and not r.stopped]
        for old in earlier:   # the pod's sandbox died: its address and host ports are released now
            if not linux.alive(old.pid, old.pid_start):
                self.stop_sandbox(old.id)
        self._check_host_ports(config.uid, mappings)
        sandbox_id = uuid.uuid4().hex
        bundle = layout.sandbox_bundle(self.run_dir, sandbox_id)
        rootfs = bundle / "rootfs"
        bundle.mkdir(mode=0o700)
        rootfs.mkdir()
        os.chmod(rootfs, 0o755)   # the infra process's `/`: its own (maybe non-root) user traverses it
        (rootfs / "catatonit").touch()
        self._write_etc_files(bundle, config)
        (bundle / "shm").mkdir()
        linux.mount_tmpfs(bundle / "shm", size=SHM_SIZE)  # the pod's /dev/shm, shared by its containers
        record = _Sandbox(sandbox_id, config.uid, config.name, config.namespace, config.attempt, config.sandbox_hash,
                          self.clock().isoformat(), config.host_network, config.share_process_namespace,
                          self._pod_cgroup(config.uid),
                          host_ports=[[m.host_port, m.protocol.upper(), m.host_ip] for m in mappings])
        try:
            if self.network is not None and not config.host_network:
                attachment = self.network.setup(layout.network_record_path(bundle), sandbox_id=sandbox_id,
                                                port_mappings=mappings)
                record.netns, record.ip = attachment.netns, attachment.ip
                self._write_etc_files(bundle, config, ip=attachment.ip)
            spec = ocispec.build_sandbox_spec(
                config=config, rootfs=str(rootfs), cgroups_path=f"{record.cgroup_parent}/{sandbox_id}",
                annotations=self._annotations(config.uid, "POD", config.attempt, config.sandbox_hash),
                catatonit_host_path=self.bin["catatonit"], net_path=record.netns or None,
                seccomp_profile=self._seccomp_profile(config.seccomp), machine=self.machine, kernel=self.kernel)
            _write_json(layout.bundle_config_path(bundle), spec)
            # one runc call instead of create + start: the infra process needs no monitor
            self._runc("run", "--detach", "--bundle", str(bundle), "--pid-file", str(bundle / "pid"), sandbox_id)
            pid = int((bundle / "pid").read_text())
            limits = ocispec.pod_cgroup_resources(config.resources)
            if limits:   # runc made the pod's cgroup (the sandbox's parent): the pod-level limits go there
                linux.set_cgroup_limits(record.cgroup_parent, limits)
        except (RuntimeError_, OSError, ValueError) as exc:
            self._runc("delete", "--force", sandbox_id, check=False)
            self._release_network(sandbox_id)
            linux.unmount(bundle / "shm")
            shutil.rmtree(bundle, ignore_errors=True)
            if isinstance(exc, cni.NetworkError):
                raise
            raise RuntimeError_(f"creating the pod sandbox failed: {exc}") from None
        record.pid, record.pid_start = pid, linux.process_start(pid) or 0
        with self._lock:
            self._sandboxes[sandbox_id] = record
            self._save(record)
        return sandbox_id

    def _write_etc_files(self, bundle: Path, config: SandboxConfig, *, ip: str | None = None) -> None:
        """The pod's /etc/hostname, /etc/hosts and resolv.conf, as a Kubernetes node writes them (`etcfiles`)."""
        # 0644: bind-mounted into every container of the pod, read by its own (any) user; the bundle
        # directory above them is root's alone
        statefiles.write_atomic(bundle / "hostname", config.hostname + "\n", 0o644)
        hosts = config.hosts or HostsConfig(hostname=config.hostname)
        # without a pod IP (`--network none`) the name is on 127.0.1.1, as Debian maps a host's own name
        statefiles.write_atomic(bundle / "hosts", etcfiles.hosts_file(hosts, [ip or "127.0.1.1"]), 0o644)
        resolv = etcfiles.resolv_conf(config.dns).encode() if config.dns is not None else b""
        if not resolv:   # nothing decided: the host's file, as containerd copies it
            try:
                resolv = Path("/etc/resolv.conf").read_bytes()
            except OSError:
                resolv = b""
        statefiles.write_atomic(bundle / "resolv.conf", resolv, 0o644)

    def _annotations(self, uid: str, name: str, attempt: int, spec_hash: str) -> dict[str, str]:
        return {"io.kubelite.pod.uid": uid, "io.kubelite.container.name": name,
                "io.kubelite.container.attempt": str(attempt), "io.kubelite.container.hash": spec_hash,
                "io.kubelite.instance": self.instance}

    def stop_sandbox(self, sandbox_id: str) -> None:
        with self._lock:
            record = self._sandboxes.get(sandbox_id)
        if record is None or record.stopped:
            return
        if linux.alive(record.pid, record.pid_start):
            self._runc("kill", sandbox_id, "KILL", check=False)
        self._runc("delete", "--force", sandbox_id, check=False)
        linux.unmount(self.sandbox_dir / sandbox_id / "shm")
        self._teardown_network(sandbox_id)   # the pod's IP, host ports and rules go with it
        with self._lock:
            record.stopped = True
            self._save(record)

    def _teardown_network(self, sandbox_id: str) -> bool:
        """CNI DEL of the sandbox's network, if it has one; False (logged, retried later) on failure."""
        try:
            cni.teardown(layout.network_record_path(layout.sandbox_bundle(self.run_dir, sandbox_id)))
        except cni.NetworkError as exc:
            log.warning("pod sandbox %s: removing its network: %s", sandbox_id, exc)
            return False
        return True

    def _release_network(self, sandbox_id: str) -> None:
        """Before a sandbox directory goes: CNI DEL; when that fails, its attachment moves to
        `<run-dir>/cni/pending/`, from where DEL is retried (`retry_network_teardowns`) until it works,
        so that the pod's address lease and host port rules are not forgotten."""
        if self._teardown_network(sandbox_id):
            return
        record = layout.network_record_path(layout.sandbox_bundle(self.run_dir, sandbox_id))
        if record.exists():
            statefiles.make_dirs(self.pending_dir, base=self.run_dir)
            os.replace(record, self.pending_dir / f"{sandbox_id}.json")

    def retry_network_teardowns(self) -> None:
        """CNI DEL again for every attachment whose teardown failed: those kept in `pending/`, and
        those of stopped sandboxes not removed yet. Run at start and, from the relist, every
        `TEARDOWN_RETRY_S`."""
        self._next_teardown_retry = time.monotonic() + TEARDOWN_RETRY_S
        if self.pending_dir.is_dir():
            for record in sorted(self.pending_dir.glob("*.json")):
                try:
                    cni.teardown(record)
                except cni.NetworkError as exc:
                    log.warning("pod sandbox %s: removing its network (retried): %s", record.stem, exc)
                else:
                    log.info("pod sandbox %s: its network is removed", record.stem)
        with self._lock:
            stopped = [r.id for r in self._sandboxes.values() if r.stopped]
        for sandbox_id in stopped:
            if (layout.network_record_path(layout.sandbox_bundle(self.run_dir, sandbox_id))).exists():
                self._teardown_network(sandbox_id)

    def _check_host_ports(self, uid: str, mappings: tuple[PortMapping, ...]) -> None:
        """HostPortInUse when a host port is held by another pod's sandbox or by a socket on this machine."""
        if not mappings:
            return
        if self.network is None:
            raise cni.NetworkError("hostPort needs pod networking, and kubelite runs with --network none")
        with self._lock:
            records = list(self._sandboxes.values())
        for other in records:
            if other.stopped or not other.host_ports:
                continue
            if not linux.alive(other.pid, other.pid_start):   # a dead sandbox's ports are free again
                self.stop_sandbox(other.id)
                continue
            for m in mappings:
                for port, protocol, host_ip in other.host_ports:
                    if (port, protocol) == (m.host_port, m.protocol.upper()) and \
                            (not host_ip or not m.host_ip or host_ip == m.host_ip):
                        who = "an earlier sandbox of this pod" if other.uid == uid \
                            else f"pod {other.namespace}/{other.name}"
                        raise cni.HostPortInUse(f"host port {cni.describe_port(m)} is already allocated to {who}")
        for m in mappings:
            cni.check_host_port_free(m)
    def remove_sandbox(self, sandbox_id: str) -> None:
        self.stop_sandbox(sandbox_id)
        with self._lock:
            record = self._sandboxes.pop(sandbox_id, None)
            for cid in [c.id for c in self._containers.values() if c.sandbox_id == sandbox_id]:
                self._remove_container_files(self._containers.pop(cid))
        self._release_network(sandbox_id)   # a retry, when stopping could not remove it; else kept pending
        shutil.rmtree(self.sandbox_dir / sandbox_id, ignore_errors=True)
        if record is not None and not any(s.uid == record.uid for s in self._sandboxes.values()):
            linux.remove_cgroup(record.cgroup_parent)
            linux.remove_cgroup(f"/{self.instance}")  # only if empty: other pods keep it
            volumes.remove_pod_dir(self.root, record.uid)   # its volumes' owner removes the pod directory

    def list_sandboxes(self) -> list[SandboxInfo]:
        if time.monotonic() >= self._next_teardown_retry:
            self.retry_network_teardowns()
        with self._lock:
            records = list(self._sandboxes.values())
        return [SandboxInfo(r.id, r.uid, r.attempt, r.sandbox_hash,
                            SandboxState.READY if not r.stopped and linux.alive(r.pid, r.pid_start)
                            else SandboxState.NOTREADY, datetime.fromisoformat(r.created_at), ip=r.ip)
                for r in records]

    def sandbox_ip(self, sandbox_id: str) -> str | None:
        with self._lock:
            record = self._sandboxes.get(sandbox_id)
        return record.ip if record is not None else None

    def _netns_path(self, record: _Sandbox) -> str | None:
        """The pod's network namespace as a path for setns(2): the pinned one with pod networking,
        the infra process's otherwise; None for hostNetwork."""
        if record.host_network:
            return None
        return record.netns or f"/proc/{record.pid}/ns/net"

    def _sandbox_namespaces(self, record: _Sandbox) -> ocispec.SandboxNamespaces:
        if not linux.alive(record.pid, record.pid_start):
            raise RuntimeError_(f"pod sandbox {record.id} is not running")
        ns = f"/proc/{record.pid}/ns"
        bundle = self.sandbox_dir / record.id
        return ocispec.SandboxNamespaces(
            net=self._netns_path(record), ipc=f"{ns}/ipc", uts=f"{ns}/uts",
            pid=f"{ns}/pid" if record.share_pid else None, shm_path=str(bundle / "shm"),
            etc_hostname=str(bundle / "hostname"),
            etc_hosts=str(bundle / "hosts"), resolv_conf=str(bundle / "resolv.conf"))

    def sandbox_netns(self, sandbox_id: str) -> str | None:
        """The pod's network namespace: the pinned one with pod networking (while the sandbox is not
        stopped), else `/proc/<infra pid>/ns/net` of a running sandbox (its PID checked by start
        time); None on the host's network. NotFoundError when the sandbox is unknown or gone."""
        with self._lock:
            record = self._sandboxes.get(sandbox_id)
        if record is None or record.stopped:
            raise NotFoundError(f"pod sandbox {sandbox_id} is not running")
        if record.host_network:
            return None
        if record.netns and os.path.exists(record.netns):
            return record.netns
        if not linux.alive(record.pid, record.pid_start):
            raise NotFoundError(f"pod sandbox {sandbox_id} is not running")
        return f"/proc/{record.pid}/ns/net"

    # ------------------------------------------------------------------ containers

    def image_present(self, image: str) -> bool:
        try:
            return self.images.get(image) is not None
        except ImageError:  # an unparsable reference is simply not present
            return False

    def pull_image(self, image: str) -> PulledImage:
        from kubelite.runtime import registry

        try:
            result = registry.pull(self.images, image, config=self.registry)
        except ImageError as exc:
            raise RuntimeError_(str(exc)) from None
        return PulledImage(id=result.image.id, size=result.image.size, digest=result.digest)

    def image_layers(self, image: str) -> list[str]:
        try:
            found = self.images.get(image)
            if found is None:
                raise RuntimeError_(f'image "{image}" is not present')
            self.images.touch(found.id)
            return [str(p) for p in self.images.layer_dirs(found)]
        except ImageError as exc:
            raise RuntimeError_(f'image "{image}": {exc}') from None

    def remove_unused_images(self, in_use: set[str], *, high_percent: int, low_percent: int) -> list[str]:
        ids = set()
        for ref in in_use:
            try:
                if (image := self.images.get(ref)) is not None:
                    ids.add(image.id)
            except ImageError:
                continue
        try:
            self.images.prune_downloads(older_than_s=24 * 3600)   # partial blobs of pulls given up on
            removed = self.images.collect_garbage(in_use=ids, high_percent=high_percent, low_percent=low_percent)
        except (ImageError, OSError) as exc:
            raise RuntimeError_(f"image garbage collection failed: {exc}") from None
        return [image.id for image in removed]

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
        record = _Container(container_id, sandbox_id, config.uid, config.container.name, config.pod_name,
                            config.namespace, config.attempt, config.spec_hash, config.container.image or "",
                            self.clock().isoformat(), config.log_path,
                            message_policy=config.container.termination_message_policy,
                            tty=bool(config.container.tty), stdin=bool(config.container.stdin))
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
            _write_json(layout.bundle_config_path(bundle), spec)
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

    def _seccomp_profile(self, profile: SecurityProfile | None) -> dict[str, Any] | None:
        """The profile file's JSON for the container's seccomp choice; None for Unconfined.

        RuntimeDefault is containers-common's `seccomp.json` (read once); Localhost a file below
        `<root>/seccomp`. A profile that cannot be read is a RuntimeError_ (CreateContainerError).
        """
        if profile is None or profile.type == "Unconfined":
            return None
        if profile.type == "RuntimeDefault":
            if self._default_seccomp is None:
                self._default_seccomp = self._read_profile(
                    self.default_seccomp_profile,
                    hint=" (RuntimeDefault is the profile of Debian's golang-github-containers-common: "
                         "apt-get install golang-github-containers-common)")
            return self._default_seccomp
        ref = profile.localhost_ref or ""
        path = self.seccomp_root / ref
        if not ref or os.path.isabs(ref) or ".." in Path(ref).parts:
            raise RuntimeError_(f'failed to generate seccomp spec opts: localhost profile "{ref}" is not a '
                                f"path below {self.seccomp_root}")
        return self._read_profile(path)

    @staticmethod
    def _read_profile(path: Path, hint: str = "") -> dict[str, Any]:
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise RuntimeError_(f'failed to generate seccomp spec opts: cannot load seccomp profile "{path}": '
                                f"open {path}: {(exc.strerror or str(exc)).lower()}{hint}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RuntimeError_(f'failed to generate seccomp spec opts: decoding seccomp profile "{path}" '
                                f"failed: {exc}") from None
        if not isinstance(data, dict):
            raise RuntimeError_(f'failed to generate seccomp spec opts: seccomp profile "{path}" is not a JSON object')
        return data

    def _apparmor_profile(self, profile: SecurityProfile | None) -> str | None:
        """The AppArmor profile name for runc: kubelite's default (loaded on first use) or a Localhost
        profile, which must be loaded already (as the kubelet checks)."""
        if profile is None or profile.type == "Unconfined":
            return None
        if profile.type == "RuntimeDefault":
            if not linux.apparmor_loaded(apparmor.DEFAULT_PROFILE):
                parser = shutil.which("apparmor_parser", path="/usr/sbin:/usr/bin:/sbin:/bin") or "apparmor_parser"
                try:
                    result = subprocess.run([parser, "-Kr"], input=apparmor.default_profile().encode(), timeout=30,
                                            capture_output=True, check=False)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    raise RuntimeError_(f"loading the AppArmor profile {apparmor.DEFAULT_PROFILE}: {exc}") from None
                if result.returncode != 0:
                    detail = result.stderr.decode(errors="replace").strip()
                    raise RuntimeError_(f"loading the AppArmor profile {apparmor.DEFAULT_PROFILE}: {detail}")
            return apparmor.DEFAULT_PROFILE
        name = profile.localhost_ref or ""
        if not linux.apparmor_loaded(name):
            raise RuntimeError_(f"apparmor profile not found {name}")
        return name

    def _hostname(self, sandbox: _Sandbox) -> str:
        try:
            return (self.sandbox_dir / sandbox.id / "hostname").read_text().strip()
        except OSError:
            return sandbox.name

    def _conmon_create(self, record: _Container, bundle: Path) -> int:
        """Start conmon, which runs `runc create`; return the container's PID 1 (not started yet)."""
        argv = ocispec.conmon_argv(
            conmon=self.bin["conmon"], runtime=self.bin["runc"], runtime_root=str(self.state_dir),
            container_id=record.id, name=f"{record.namespace}_{record.pod_name}_{record.name}_{record.attempt}",
            bundle=str(bundle), pidfile=str(bundle / "pidfile"), conmon_pidfile=str(bundle / "conmon.pid"),
            exit_dir=str(self.exit_dir), persist_dir=str(bundle / "persist"), log_path=record.log_path or "/dev/null",
            log_size_max=LOG_SIZE_MAX, socket_dir=str(self.socket_dir), terminal=record.tty, stdin=record.stdin)
        return run_conmon(argv, bundle=bundle)

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
        number = ocispec.signal_number(signal)
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

    def _remove_container_files(self, record: _Container) -> None:
        if linux.alive(record.pid, record.pid_start):
            os.kill(record.pid, signals.SIGKILL)
        self._runc("delete", "--force", record.id, check=False)
        (self.socket_dir / record.id).unlink(missing_ok=True)  # conmon's attach socket link
        layer = layout.container_layer_dir(self.root, record.uid, record.id)
        linux.unmount(layer / "rootfs")
        shutil.rmtree(layer, ignore_errors=True)
        shutil.rmtree(self.container_dir / record.id, ignore_errors=True)
        (self.exit_dir / record.id).unlink(missing_ok=True)

    def _get(self, container_id: str) -> _Container:
        with self._lock:
            record = self._containers.get(container_id)
        if record is None:
            raise NotFoundError(f"container {container_id} not found")
        return record

    def list_containers(self) -> list[ContainerInfo]:
        with self._lock:
            records = list(self._containers.values())
        return [self._info(r) for r in records]

    def _info(self, r: _Container) -> ContainerInfo:
        state, exit_code, finished_at, reason = self._observe(r)
        return ContainerInfo(id=r.id, sandbox_id=r.sandbox_id, uid=r.uid, name=r.name, attempt=r.attempt,
                             spec_hash=r.spec_hash, image=r.image, state=state,
                             created_at=datetime.fromisoformat(r.created_at), started_at=_dt(r.started_at),
                             finished_at=finished_at, exit_code=exit_code, reason=reason, message=r.message)

    def _observe(self, r: _Container) -> tuple[ContainerState, int | None, datetime | None, str | None]:
        """A container's state from conmon's exit file and /proc — the truth, every time."""
        if r.exit_code is not None:  # recorded before (a start error, or an exit already read)
            return ContainerState.EXITED, r.exit_code, _dt(r.finished_at), r.reason
        exit_file = self.exit_dir / r.id
        try:
            text = exit_file.read_text().strip()
            stat = exit_file.stat()
        except FileNotFoundError:
            if linux.alive(r.pid, r.pid_start) or linux.alive(r.conmon_pid, r.conmon_start):
                # running — or just exited, and conmon is about to write the exit file: not yet an exit
                return (ContainerState.RUNNING if r.started_at else ContainerState.CREATED), None, None, None
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

    def exec_sync(self, container_id: str, command: list[str], timeout_s: float) -> ExecResult:
        """Run `command` in the container (`runc exec`); on timeout the process inside is killed too."""
        self._get(container_id)
        with tempfile.TemporaryDirectory(dir=self.run_dir) as tmp:
            pid_file = Path(tmp) / "pid"
            cmd = [self.bin["runc"], "--root", str(self.state_dir), "exec", "--pid-file", str(pid_file), container_id,
                   *command]
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

    # ------------------------------------------------------------------ exit hints

    def set_exit_hint(self, hint: Callable[[], None]) -> None:
        """Wake the agent when conmon writes an exit file (inotify through watchdog)."""
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if event.event_type in ("created", "modified", "closed", "moved"):
                    hint()

        self._stop_observer()
        self._observer = Observer()
        self._observer.schedule(_Handler(), str(self.exit_dir), recursive=False)
        self._observer.daemon = True
        self._observer.start()

    def _stop_observer(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def close(self) -> None:
        """kubelite stops: the exit watcher ends and the bridge is released (pods keep running)."""
        self._stop_observer()
        if self.network is not None:
            self.network.release()

    def next_event_time(self) -> datetime | None:
        return None

    # ------------------------------------------------------------------ housekeeping

    def remove_orphan_containers(self) -> None:
        """Container bundles without a record (kubelite died between `runc create` and writing the
        record): the runc container, if it was made, is deleted with its cgroup, then the bundle."""
        with self._lock:
            known = set(self._containers)
        for bundle in self.container_dir.iterdir():
            if bundle.name in known or not bundle.is_dir() or not layout.is_safe_name(bundle.name):
                continue
            log.info("removing the remains of container %s", bundle.name)
            self._runc("delete", "--force", bundle.name, check=False)
            (self.exit_dir / bundle.name).unlink(missing_ok=True)
            shutil.rmtree(bundle, ignore_errors=True)

    def remove_orphan_sandboxes(self) -> None:
        """Sandbox directories without a record (kubelite died while creating one): their network is
        torn down (CNI DEL from the attachment written before ADD), and they are removed."""
        with self._lock:
            known = set(self._sandboxes)
        for bundle in self.sandbox_dir.iterdir():
            if bundle.name in known or not bundle.is_dir() or not layout.is_safe_name(bundle.name):
                continue
            log.info("removing the remains of pod sandbox %s", bundle.name)
            self._runc("delete", "--force", bundle.name, check=False)
            self._release_network(bundle.name)
            linux.unmount(bundle / "shm")
            shutil.rmtree(bundle, ignore_errors=True)
        netns_dir = layout.netns_dir(self.run_dir)
        if netns_dir.is_dir():   # pinned before its attachment was recorded
            with self._lock:
                used = {r.netns for r in self._sandboxes.values()}
            for path in netns_dir.iterdir():
                if str(path) not in used:
                    linux.unmount(path)
                    path.unlink(missing_ok=True)
        self.retry_network_teardowns()

    def remove_orphan_layers(self) -> None:
        """Writable layers of containers this runtime has no record of (after a reboot) are removed.

        Only layers: a pod's volumes (`volumes/`, `volume-subpaths/`) belong to the volume host,
        which keeps them for pods that are still wanted (an emptyDir survives a reboot, as the
        kubelet keeps it) and removes them for pods deleted meanwhile. A pod directory goes only
        when nothing but empty layer directories is left in it.
        """
        pods = layout.pods_dir(self.root)
        if not pods.is_dir():
            return
        with self._lock:
            live = set(self._containers)
            uids = {s.uid for s in self._sandboxes.values()} | {c.uid for c in self._containers.values()}
        for layer in pods.glob(f"*/{layout.LAYERS_NAME}/*"):
            if layer.name in live or not layer.is_dir() or layer.is_symlink():
                continue
            linux.unmount(layer / "rootfs")
            if linux.mounts_below(layer):   # never remove through a mount
                log.warning("container layer %s is still mounted; not removed", layer)
                continue
            shutil.rmtree(layer, ignore_errors=True)
        for pod in pods.iterdir():
            if pod.name in uids or not pod.is_dir() or pod.is_symlink():
                continue
            for empty in (pod / layout.LAYERS_NAME, pod):
                try:
                    empty.rmdir()   # only if empty: volumes stay for the volume host
                except OSError:
                    pass
