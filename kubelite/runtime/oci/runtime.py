"""`OCIRuntime`: the `Runtime` protocol on runc + conmon + catatonit (see the package's docstring).

Owns: the runtime's directories and its records in memory (loaded at start, saved on each change),
runc under this instance's root, the image operations on the store, exit hints, the warm pool's
start and stop, and the removal of what a crash left behind (orphan bundles, sandboxes, unclaimed
warm sandboxes, network namespaces and layers).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from kubelite.clock import utcnow
import kubelite.statefiles as statefiles
from kubelite.errors import NotFoundError, RuntimeError_
from kubelite import layout
from kubelite.runtime import cni, linux, ocispec, seccomp
from kubelite.runtime.images import ImageError, ImageStore
from kubelite.runtime.oci.containers import Containers
from kubelite.runtime.oci.process import find_binaries, instance_name, run
from kubelite.runtime.oci.profiles import SecurityProfiles
from kubelite.runtime.oci.records import ContainerRecord, SandboxRecord, write_json
from kubelite.runtime.oci.sandboxes import TEARDOWN_RETRY_S, Sandboxes
from kubelite.runtime.oci.warm import WarmPool
from kubelite.runtime.protocol import PulledImage
from kubelite.runtime.registry import RegistryConfig

log = logging.getLogger("kubelite.runtime")
#: At `close()` with no container left: how long the last conmon may take to leave its cgroup.
CONMON_EXIT_WAIT_S = 2.0


class OCIRuntime(Sandboxes, Containers, SecurityProfiles):
    """The `Runtime` protocol on runc + conmon. One instance per kubelite state root."""

    name = "runc"
    simulated = False

    def __init__(self, *, root: Path, run_dir: Path, images: ImageStore,
                 clock: Callable[[], datetime] = utcnow, binaries: dict[str, str] | None = None,
                 network: cni.Network | None = None, registry: RegistryConfig | None = None,
                 default_seccomp_profile: Path = Path(seccomp.DEFAULT_PROFILE_PATH), warm_sandboxes: int = 0) -> None:
        self.root, self.run_dir, self.images, self.clock = root, run_dir, images, clock
        self.seccomp_root = layout.seccomp_root(root)     # the kubelet's --seccomp-profile-root
        self.default_seccomp_profile = default_seccomp_profile
        self._default_seccomp: dict[str, Any] | None = None
        self.machine, self.kernel = platform.machine(), linux.kernel_version()
        self.network = network   # None: `--network none`, loopback-only pods
        self.registry = registry or RegistryConfig()
        self.bin = binaries or find_binaries()
        self.instance = instance_name(root)
        # every conmon of this instance, outside kubelite's own cgroup (`_place_conmon`)
        self.conmon_cgroup = f"/{self.instance}/conmon"
        self._conmon_unplaced = False
        self.state_dir = layout.runc_root(run_dir)
        self.exit_dir = layout.exits_dir(run_dir)
        self.socket_dir = layout.sockets_dir(run_dir)
        self.sandbox_dir = layout.sandboxes_dir(run_dir)
        self.container_dir = layout.containers_dir(run_dir)
        statefiles.make_top(run_dir)
        for path in (self.state_dir, self.exit_dir, self.socket_dir, self.sandbox_dir, self.container_dir):
            statefiles.make_dirs(path, base=run_dir)
        self._lock = threading.RLock()
        self._host_ports_lock = threading.Lock()   # `run_sandbox` of pods with host ports, one at a time
        self._sandboxes: dict[str, SandboxRecord] = self._load(self.sandbox_dir, SandboxRecord)
        self._containers: dict[str, ContainerRecord] = self._load(self.container_dir, ContainerRecord)
        # what the last full list found (None: no full list yet, the next list is one): sandboxes
        # whose infra process is gone, containers with neither process nor exit file
        self._infra_gone: frozenset[str] | None = None
        self._lost: frozenset[str] | None = None
        unclaimed = [self._sandboxes.pop(r.id) for r in list(self._sandboxes.values()) if r.warm]
        self._warm_pool: WarmPool | None = None
        self._observer: Any = None
        self.pending_dir = layout.cni_pending_dir(run_dir)
        self._next_teardown_retry = time.monotonic() + TEARDOWN_RETRY_S
        self.nofile = min(os.sysconf("SC_OPEN_MAX"), 1 << 20)
        self.capabilities = ocispec.capability_mask(linux.bounding_capabilities())
        self.remove_orphan_containers()
        self.remove_orphan_layers()
        self.remove_unclaimed_warm_sandboxes(unclaimed)
        self.remove_orphan_sandboxes()
        self.remove_orphan_cgroups()
        self.place_adopted_conmons()
        if warm_sandboxes > 0:
            self._warm_pool = WarmPool(warm_sandboxes, make=self._make_warm_sandbox,
                                       destroy=self._destroy_warm_sandbox)
            self._warm_pool.start()

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

    def _save(self, record: SandboxRecord | ContainerRecord) -> None:
        base = self.sandbox_dir if isinstance(record, SandboxRecord) else self.container_dir
        write_json(layout.record_path(base / record.id), asdict(record))

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

    def _annotations(self, uid: str, name: str, attempt: int, spec_hash: str) -> dict[str, str]:
        return {"io.kubelite.pod.uid": uid, "io.kubelite.container.name": name,
                "io.kubelite.container.attempt": str(attempt), "io.kubelite.container.hash": spec_hash,
                "io.kubelite.instance": self.instance}

    # ------------------------------------------------------------------ images

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

    # ------------------------------------------------------------------ exit hints

    def set_exit_hint(self, hint: Callable[[], None]) -> None:
        """Wake the agent when conmon puts a container's exit file in place (inotify through
        watchdog): once per exit, at the rename of conmon's temporary file to the container's ID
        (or a file of that name made or written in place). conmon's temporary file, the
        directory's own changes and the removal of an exit file (kubelite's own, with the
        container) wake nothing: each woke the loop for a pass that found no exit, a relist of
        every container with the node state's lock held, which pods' syncs wait for."""
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        is_exit_file = self._is_exit_file

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if event.is_directory or event.event_type not in ("created", "closed", "moved"):
                    return
                if is_exit_file(event.dest_path if event.event_type == "moved" else event.src_path):
                    hint()

        self._stop_observer()
        self._observer = Observer()
        self._observer.schedule(_Handler(), str(self.exit_dir), recursive=False)
        self._observer.daemon = True
        self._observer.start()

    def _is_exit_file(self, path: str | bytes) -> bool:
        """True for `<exit dir>/<ID>` of a container this runtime knows (conmon's exit file)."""
        name = Path(os.fsdecode(path))
        if name.parent != self.exit_dir:
            return False
        with self._lock:
            return name.name in self._containers

    def _stop_observer(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def close(self) -> None:
        """kubelite stops: the exit watcher ends, the warm sandboxes no pod claimed are torn down
        completely, and the bridge is released (pods keep running, and their conmon with them). With
        no container left, conmon's cgroup and the instance's are removed (the last conmon may take a
        moment to exit after its exit file)."""
        self._stop_observer()
        if self._warm_pool is not None:
            for record in self._warm_pool.stop():
                self._destroy_warm_sandbox(record)
            self._warm_pool = None
        if self.network is not None:
            self.network.release()
        with self._lock:
            idle = not self._containers
        if idle:
            deadline = time.monotonic() + CONMON_EXIT_WAIT_S
            while linux.cgroup_processes(self.conmon_cgroup) and time.monotonic() < deadline:
                time.sleep(0.02)
            linux.remove_empty_cgroup(self.conmon_cgroup)
            linux.remove_empty_cgroup(f"/{self.instance}")

    def place_adopted_conmons(self) -> None:
        """At start: the conmon of a running container that is not in the conmon cgroup — started by
        an older kubelite, which left it in its own (the service's) cgroup — is moved there now, as
        a new conmon is, so the next stop of the service spares it too."""
        with self._lock:
            records = list(self._containers.values())
        for record in records:
            if record.conmon_pid and linux.alive(record.conmon_pid, record.conmon_start) \
                    and not linux.in_cgroup(record.conmon_pid, self.conmon_cgroup):
                log.info("moving the conmon of container %s into %s", record.id, self.conmon_cgroup)
                self._place_conmon(record.conmon_pid)

    def _place_conmon(self, pid: int) -> None:
        """Move a new conmon into this instance's conmon cgroup (`/kubelite-<instance>/conmon`, in
        every hierarchy) before it forks its monitor: stopping kubelite's service, which kills
        every process in the service's cgroup, then never reaches a pod. Where the kernel refuses
        (a read-only cgroup filesystem), conmon stays where kubelite runs, and one warning says so."""
        try:
            linux.place_process(self.conmon_cgroup, pid)
        except OSError as exc:
            if not self._conmon_unplaced:
                self._conmon_unplaced = True
                log.warning("conmon stays in kubelite's own cgroup (cannot move it to %s: %s): stopping "
                            "kubelite's service may stop its pods", self.conmon_cgroup, exc.strerror or exc)

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

    def warm_sandboxes(self) -> list[SandboxRecord]:
        """The warm sandboxes ready for a claim (none without a pool)."""
        return self._warm_pool.ready() if self._warm_pool is not None else []

    def remove_unclaimed_warm_sandboxes(self, records: list[SandboxRecord]) -> None:
        """At start: warm sandboxes of an earlier run that no pod claimed (kubelite was killed) are torn
        down, never taken for a pod's, as are the cgroups of warm sandboxes killed while being made
        (`warm<id>`) or claimed (`pod<uid>/<id>` of an unclaimed record)."""
        for record in records:
            log.info("removing the unclaimed warm pod sandbox %s", record.id)
            self._destroy_warm_sandbox(record)
        ids = {r.id for r in records}
        children = {child.name for base in linux.cgroup_dirs(f"/{self.instance}") for child in base.iterdir()
                    if child.is_dir()}
        for name in sorted(children):
            if name.startswith("warm"):
                linux.remove_cgroup(f"/{self.instance}/{name}")
            elif name.startswith("pod") and ids:
                for sandbox_id in ids:
                    linux.remove_cgroup(f"/{self.instance}/{name}/{sandbox_id}")
                linux.remove_empty_cgroup(f"/{self.instance}/{name}")   # the pod's, if that was all of it
        linux.remove_empty_cgroup(f"/{self.instance}")

    def remove_orphan_cgroups(self) -> None:
        """At start, before anything is made: the pod cgroups of the instance that no record names
        (a reboot's, or a pod's whose records went with the run directory) are removed where empty.
        Later, a pod's removal takes only its own cgroup and the instance's if empty: another pod's
        may be in the making then."""
        with self._lock:
            names = {self._pod_cgroup(r.uid).rsplit("/", 1)[1] for r in [*self._sandboxes.values(),
                                                                        *self._containers.values()]}
        children = {child.name for base in linux.cgroup_dirs(f"/{self.instance}") for child in base.iterdir()
                    if child.is_dir() and child.name.startswith("pod")}
        for name in sorted(children - names):
            linux.remove_cgroup(f"/{self.instance}/{name}")
        linux.remove_empty_cgroup(f"/{self.instance}")

    def remove_orphan_sandboxes(self) -> None:
        """Sandbox directories without a record (kubelite died while creating one): their network is
        torn down (CNI DEL from the attachment written before ADD), and they are removed, with the
        cgroup of a warm one (`warm<id>`: its infra process held it until now)."""
        with self._lock:
            known = set(self._sandboxes)
        for bundle in self.sandbox_dir.iterdir():
            if bundle.name in known or not bundle.is_dir() or not layout.is_safe_name(bundle.name):
                continue
            log.info("removing the remains of pod sandbox %s", bundle.name)
            self._runc("delete", "--force", bundle.name, check=False)
            linux.remove_cgroup(self._warm_cgroup(bundle.name))
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
