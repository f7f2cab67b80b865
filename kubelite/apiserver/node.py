"""This machine as a v1 Node: what `kubectl get nodes` and `describe node` show.

Owns: reading the machine's identity and size once when the server starts (`host_facts()`: CPUs,
memory, the state root's filesystem, machine and boot IDs, kernel, OS image, the first non-loopback
IPv4 address, the container runtime's version from `runtime.view`) and the Node object built from it (`node()`), with
the Ready condition the daemon's reconcile passes decide.
"""

from __future__ import annotations

import fcntl
import os
import platform
import socket
import struct
import uuid
from dataclasses import dataclass
from typing import Any

from kubelite import __version__
from kubelite.apiserver.objects import KUBE_MINOR, arch
from kubelite.runtime import view

#: The kubelet's default `maxPods`.
MAX_PODS = "110"


@dataclass(frozen=True)
class HostFacts:
    """What the Node object says about this machine, read once at start."""

    name: str
    created: str                  # RFC 3339: when kubelite first served on this state root
    cpus: int
    memory_ki: int
    storage_ki: int
    internal_ip: str
    hostname: str
    machine_id: str
    boot_id: str
    system_uuid: str
    kernel: str
    os_image: str
    arch: str
    runtime_version: str


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip().strip('"')
    return "Linux"


def _memory_ki() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def internal_ip() -> str:
    """The IPv4 address of the first interface other than loopback that has one."""
    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            if name == "lo":
                continue
            try:
                packed = fcntl.ioctl(sock.fileno(), siocgifaddr, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue
            return socket.inet_ntoa(packed[20:24])
    return "127.0.0.1"


def host_facts(*, name: str, created: str, root: str, runtime: str, node_ip: str | None = None) -> HostFacts:
    """`node_ip`: the address the agent reports as `status.hostIP` (`--node-ip`), when known."""
    try:
        stat = os.statvfs(root)
        storage_ki = stat.f_blocks * stat.f_frsize // 1024
    except OSError:
        storage_ki = 0
    return HostFacts(name=name, created=created, cpus=os.cpu_count() or 1, memory_ki=_memory_ki(),
                     storage_ki=storage_ki, internal_ip=node_ip or internal_ip(), hostname=socket.gethostname(),
                     machine_id=_read("/etc/machine-id"), boot_id=_read("/proc/sys/kernel/random/boot_id"),
                     system_uuid=_read("/sys/class/dmi/id/product_uuid") or _read("/etc/machine-id"),
                     kernel=platform.release(), os_image=_os_image(), arch=arch(),
                     runtime_version=view.runtime_version(runtime))


def node(facts: HostFacts, *, ready: bool, ready_message: str, heartbeat: str, since: str) -> dict[str, Any]:
    """This machine as a v1 Node: Ready while the agent's loop is passing, capacity = allocatable."""
    capacity = {"cpu": str(facts.cpus), "memory": f"{facts.memory_ki}Ki", "pods": MAX_PODS,
                "ephemeral-storage": f"{facts.storage_ki}Ki"}

    def condition(type_: str, status_: str, reason: str, message: str) -> dict[str, str]:
        return {"type": type_, "status": status_, "reason": reason, "message": message,
                "lastHeartbeatTime": heartbeat, "lastTransitionTime": since}

    return {
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": facts.name, "uid": str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                                f"kubelite-node/{facts.machine_id}/{facts.name}")),
                     "creationTimestamp": facts.created, "resourceVersion": "1",
                     "labels": {"kubernetes.io/hostname": facts.name, "kubernetes.io/os": "linux",
                                "kubernetes.io/arch": facts.arch, "beta.kubernetes.io/os": "linux",
                                "beta.kubernetes.io/arch": facts.arch},
                     "annotations": {"kubelite.io/static-pods-only": "true"}},
        "spec": {},
        "status": {
            "capacity": capacity, "allocatable": dict(capacity),
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                          "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True" if ready else "False", "KubeletReady" if ready else "KubeletNotReady",
                          ready_message),
            ],
            "addresses": [{"type": "InternalIP", "address": facts.internal_ip},
                          {"type": "Hostname", "address": facts.hostname}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {"machineID": facts.machine_id, "systemUUID": facts.system_uuid, "bootID": facts.boot_id,
                         "kernelVersion": facts.kernel, "osImage": facts.os_image,
                         "containerRuntimeVersion": facts.runtime_version,
                         "kubeletVersion": f"v1.{KUBE_MINOR}.0-kubelite.{__version__}",
                         "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": facts.arch},
        },
    }
