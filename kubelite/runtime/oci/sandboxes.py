"""Pod sandboxes: the infra container that holds a pod's namespaces, its /etc files and /dev/shm,
its network (CNI ADD and DEL, retried DELs) and the host ports it holds; making, claiming and
tearing down warm sandboxes (the pool itself is `oci.warm`'s).

Owns: `<run-dir>/sandboxes/<id>/` and `<run-dir>/cni/pending/`; a part of `OCIRuntime` (`oci.runtime`).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from kubelite import layout
import kubelite.statefiles as statefiles
from kubelite.core.types import SecurityProfile
from kubelite.errors import NotFoundError, RuntimeError_
from kubelite.runtime import cni, etcfiles, linux, ocispec, volumes
from kubelite.runtime.oci import warm
from kubelite.runtime.oci.records import ContainerRecord, SandboxRecord, write_json
from kubelite.runtime.protocol import HostsConfig, PortMapping, SandboxConfig, SandboxInfo, SandboxState

log = logging.getLogger("kubelite.runtime")

#: Each pod's /dev/shm (Docker's and containerd's default size).
SHM_SIZE = "64m"
#: A pod network whose CNI DEL failed is tried again at most this often (from the relist).
TEARDOWN_RETRY_S = 60.0


class Sandboxes:
    """`OCIRuntime`'s sandbox operations (the `Runtime` protocol's sandbox half)."""

    root: Path
    run_dir: Path
    clock: Callable[[], datetime]
    network: cni.Network | None
    bin: dict[str, str]
    instance: str
    sandbox_dir: Path
    pending_dir: Path
    machine: str
    kernel: tuple[int, ...]
    _lock: threading.RLock
    _host_ports_lock: threading.Lock
    _sandboxes: dict[str, SandboxRecord]
    _containers: dict[str, ContainerRecord]
    _next_teardown_retry: float
    _infra_gone: frozenset[str] | None
    _runc: Callable[..., Any]
    _save: Callable[[Any], None]
    _pod_cgroup: Callable[[str], str]
    _annotations: Callable[..., dict[str, str]]
    _seccomp_profile: Callable[..., dict[str, Any] | None]
    _remove_container_files: Callable[[ContainerRecord], None]
    _warm_pool: warm.WarmPool | None

    def run_sandbox(self, config: SandboxConfig) -> str:
        mappings = () if config.host_network else config.port_mappings
        if not mappings:
            return self._run_sandbox(config, mappings)
        # from the check that its host ports are free until the sandbox holding them is recorded:
        # two pods asking for one port at once (pod workers) cannot both get it
        with self._host_ports_lock:
            return self._run_sandbox(config, mappings)

    def _run_sandbox(self, config: SandboxConfig, mappings: tuple[PortMapping, ...]) -> str:
        with self._lock:
            earlier = [r for r in self._sandboxes.values() if r.uid == config.uid and not r.stopped]
        for old in earlier:   # the pod's sandbox died: its address and host ports are released now
            if not linux.alive(old.pid, old.pid_start):
                self.stop_sandbox(old.id)
        self._check_host_ports(config.uid, mappings)
        claimed = self._claim_warm_sandbox(config)
        if claimed is not None:
            return claimed
        sandbox_id = uuid.uuid4().hex
        record = SandboxRecord(sandbox_id, config.uid, config.name, config.namespace, config.attempt,
                               config.sandbox_hash, self.clock().isoformat(), config.host_network,
                               config.share_process_namespace, self._pod_cgroup(config.uid),
                               host_ports=[[m.host_port, m.protocol.upper(), m.host_ip] for m in mappings])
        self._make_sandbox(record, config, mappings)
        with self._lock:
            self._sandboxes[sandbox_id] = record
            self._save(record)
        return sandbox_id

    def _make_sandbox(self, record: SandboxRecord, config: SandboxConfig, mappings: tuple[PortMapping, ...],
                      seccomp_profile: dict[str, Any] | None = None) -> None:
        """Bundle, /etc files, /dev/shm, the network (CNI ADD) and `runc run` of the infra container
        for `record` (its pid and start time filled in); everything undone when a step fails.
        `seccomp_profile`: the resolved profile, when the caller resolved it already."""
        sandbox_id = record.id
        bundle = layout.sandbox_bundle(self.run_dir, sandbox_id)
        rootfs = bundle / "rootfs"
        bundle.mkdir(mode=0o700)
        rootfs.mkdir()
        os.chmod(rootfs, 0o755)   # the infra process's `/`: its own (maybe non-root) user traverses it
        (rootfs / "catatonit").touch()
        self._write_etc_files(bundle, config)
        (bundle / "shm").mkdir()
        linux.mount_tmpfs(bundle / "shm", size=SHM_SIZE)  # the pod's /dev/shm, shared by its containers
        try:
            if self.network is not None and not config.host_network:
                attachment = self.network.setup(layout.network_record_path(bundle), sandbox_id=sandbox_id,
                                                port_mappings=mappings)
                record.netns, record.ip = attachment.netns, attachment.ip
                self._write_etc_files(bundle, config, ip=attachment.ip)
            if seccomp_profile is None:
                seccomp_profile = self._seccomp_profile(config.seccomp)
            spec = ocispec.build_sandbox_spec(
                config=config, rootfs=str(rootfs), cgroups_path=f"{record.cgroup_parent}/{sandbox_id}",
                annotations=self._annotations(config.uid, "POD", config.attempt, config.sandbox_hash),
                catatonit_host_path=self.bin["catatonit"], net_path=record.netns or None,
                seccomp_profile=seccomp_profile, machine=self.machine, kernel=self.kernel)
            write_json(layout.bundle_config_path(bundle), spec)
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

    # ------------------------------------------------------------------ warm sandboxes (decision 0020)

    def _warm_cgroup(self, sandbox_id: str) -> str:
        """A warm sandbox's cgroup until a pod claims it (then it is renamed to the pod's)."""
        return f"/{self.instance}/warm{layout.safe_name(sandbox_id)}"

    def _make_warm_sandbox(self, seccomp: SecurityProfile | None) -> warm.WarmSandbox:
        """A sandbox made for no pod yet (the pool's thread): hostname `warm-<id>`, no host ports, no
        sysctls, no pod-level limits, under its own cgroup; recorded with `warm` set."""
        sandbox_id = uuid.uuid4().hex
        profile = self._seccomp_profile(seccomp)
        config = SandboxConfig(uid="", name="", namespace="", attempt=0, sandbox_hash="",
                               hostname=f"warm-{sandbox_id[:12]}", seccomp=seccomp)
        record = SandboxRecord(sandbox_id, "", "", "", 0, "", self.clock().isoformat(), False, False,
                               self._warm_cgroup(sandbox_id), warm=True)
        self._make_sandbox(record, config, (), seccomp_profile=profile)
        try:
            self._save(record)
        except OSError:
            self._destroy_warm_sandbox(record)
            raise
        return warm.WarmSandbox(record, seccomp, profile)

    def _claim_warm_sandbox(self, config: SandboxConfig) -> str | None:
        """Give a ready warm sandbox this pod's identity; its id, or None for the normal path.

        In order: the cgroup renamed to the pod's (`/<instance>/pod<uid>`; in a cgroup v2 hierarchy
        the process is moved right after, on a thread of its own), the hostname set in the infra's UTS
        namespace, /etc/hostname, hosts (with the pod's IP) and resolv.conf written in the bundle,
        pod-level limits, then the record with the pod's identity, written atomically: until then,
        a kubelite killed half-way finds a warm record at start and tears it down."""
        pool = self._warm_pool
        if pool is None or not warm.eligible(config):
            return None
        pod_cgroup = self._pod_cgroup(config.uid)
        if linux.cgroup_dirs(pod_cgroup):
            return None   # the pod's cgroup is there (an earlier sandbox's): no rename onto it
        try:
            profile = self._seccomp_profile(config.seccomp)
        except RuntimeError_:
            return None   # the normal path reports it
        taken = pool.take(config.seccomp, profile)
        if taken is None:
            return None
        record = taken.record
        bundle = layout.sandbox_bundle(self.run_dir, record.id)
        try:
            if not linux.alive(record.pid, record.pid_start):
                raise RuntimeError_("its infra process is gone")
            warm_cgroup, record.cgroup_parent = record.cgroup_parent, pod_cgroup
            if linux.move_cgroup(warm_cgroup, pod_cgroup, leaf=record.id):   # cgroup v2: the process follows
                pool.defer(functools.partial(linux.move_process, warm_cgroup, pod_cgroup, leaf=record.id,
                                             pid=record.pid, start=record.pid_start))
            linux.set_hostname(record.pid, record.pid_start, config.hostname)
            self._write_etc_files(bundle, config, ip=record.ip)
            limits = ocispec.pod_cgroup_resources(config.resources)
            if limits:
                linux.set_cgroup_limits(pod_cgroup, limits)
            record.uid, record.name, record.namespace = config.uid, config.name, config.namespace
            record.attempt, record.sandbox_hash = config.attempt, config.sandbox_hash
            record.created_at, record.share_pid = self.clock().isoformat(), config.share_process_namespace
            record.warm = False
            with self._lock:
                self._save(record)
                self._sandboxes[record.id] = record
        except (RuntimeError_, OSError, ValueError) as exc:
            log.warning("pod %s/%s: claiming warm sandbox %s failed (%s); making one for it",
                        config.namespace, config.name, record.id, exc)
            record.warm = True
            pool.discard(record)
            return None
        return record.id

    def _destroy_warm_sandbox(self, record: SandboxRecord) -> None:
        """Tear an unclaimed warm sandbox down completely: the infra container, CNI DEL (its lease
        and rules; kept pending when DEL fails), the namespace, /dev/shm, the bundle, its cgroup."""
        self._runc("delete", "--force", record.id, check=False)
        linux.unmount(self.sandbox_dir / record.id / "shm")
        self._release_network(record.id)
        shutil.rmtree(self.sandbox_dir / record.id, ignore_errors=True)
        for cgroup in {self._warm_cgroup(record.id), record.cgroup_parent}:
            linux.remove_cgroup(cgroup)
        # only if empty, and nothing below it: this runs beside pods being made (the pool's thread)
        linux.remove_empty_cgroup(f"/{self.instance}")

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
            # another worker may have removed it meanwhile (a host port check stops another pod's
            # dead sandbox while that pod's own worker removes it): its directory is gone then
            if self._sandboxes.get(sandbox_id) is record:
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
            try:
                os.replace(record, self.pending_dir / f"{sandbox_id}.json")
            except FileNotFoundError:
                pass   # a retried DEL (`retry_network_teardowns`) removed it meanwhile

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
        linux.remove_cgroup(self._warm_cgroup(sandbox_id))   # a claimed warm sandbox's, not moved yet (v2)
        with self._lock:   # other workers add and remove sandboxes meanwhile
            others = record is not None and any(s.uid == record.uid for s in self._sandboxes.values())
        if record is not None and not others:
            linux.remove_cgroup(record.cgroup_parent)
            # only the instance's own directory, if empty: another pod's cgroups may be in the making below it
            linux.remove_empty_cgroup(f"/{self.instance}")
            volumes.remove_pod_dir(self.root, record.uid)   # its volumes' owner removes the pod directory

    def list_sandboxes(self, *, full: bool = True) -> list[SandboxInfo]:
        """Every sandbox; a full list looks at each infra process in /proc, one between full ones
        (`full=False`) takes the infra processes the last full list found gone as still gone and the
        others as running (an infra process leaves no exit file: its death shows at the next full list)."""
        if time.monotonic() >= self._next_teardown_retry:
            self.retry_network_teardowns()
        with self._lock:
            records = list(self._sandboxes.values())
        if full or self._infra_gone is None:
            self._infra_gone = frozenset(r.id for r in records if not r.stopped and not linux.alive(r.pid, r.pid_start))
        gone = self._infra_gone
        return [SandboxInfo(r.id, r.uid, r.attempt, r.sandbox_hash,
                            SandboxState.NOTREADY if r.stopped or r.id in gone else SandboxState.READY,
                            datetime.fromisoformat(r.created_at), ip=r.ip)
                for r in records]

    def sandbox_ip(self, sandbox_id: str) -> str | None:
        with self._lock:
            record = self._sandboxes.get(sandbox_id)
        return record.ip if record is not None else None

    def _netns_path(self, record: SandboxRecord) -> str | None:
        """The pod's network namespace as a path for setns(2): the pinned one with pod networking,
        the infra process's otherwise; None for hostNetwork."""
        if record.host_network:
            return None
        return record.netns or f"/proc/{record.pid}/ns/net"

    def _sandbox_namespaces(self, record: SandboxRecord) -> ocispec.SandboxNamespaces:
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
