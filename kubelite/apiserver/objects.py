"""The v1 objects the API serves that the store does not hold as such: the Node, Namespaces,
API discovery, Status errors, list envelopes, and the `meta.k8s.io/v1` Table form of each list.

Owns: their exact shape. The pod rows of a Table come from `kubelite.cli.pod_row`, the
function `kubelite get pods` prints with, so kubectl and kubelite show the same cells. Pure apart
from `host_facts()`, which reads this machine's identity once when the server starts.
"""

from __future__ import annotations

import fcntl
import os
import platform
import shutil
import socket
import struct
import subprocess
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from kubelite import __version__
from kubelite.cli.printers import age, event_cells, pod_row

#: The Kubernetes API version whose shapes this server follows (kubectl's version-skew check reads it).
KUBE_MINOR = "32"
#: The kubelet's default `maxPods`.
MAX_PODS = "110"

RESOURCES: list[dict[str, Any]] = [
    {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "shortNames": ["po"],
     "categories": ["all"], "verbs": ["get", "list", "watch"]},
    {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
    {"name": "pods/status", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
    {"name": "events", "singularName": "event", "namespaced": True, "kind": "Event", "shortNames": ["ev"],
     "verbs": ["get", "list"]},
    {"name": "configmaps", "singularName": "configmap", "namespaced": True, "kind": "ConfigMap",
     "shortNames": ["cm"], "verbs": ["get", "list"]},
    {"name": "secrets", "singularName": "secret", "namespaced": True, "kind": "Secret", "verbs": ["get", "list"]},
    {"name": "nodes", "singularName": "node", "namespaced": False, "kind": "Node", "shortNames": ["no"],
     "verbs": ["get", "list"]},
    {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
     "shortNames": ["ns"], "verbs": ["get", "list"]},
]


# ---------------------------------------------------------------------------- discovery

def version() -> dict[str, Any]:
    machine = _arch()
    return {"major": "1", "minor": KUBE_MINOR, "gitVersion": f"v1.{KUBE_MINOR}.0-kubelite.{__version__}",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "", "goVersion": "",
            "compiler": "kubelite", "platform": f"linux/{machine}"}


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


AUTHORIZATION = "authorization.k8s.io"


def api_groups() -> dict[str, Any]:
    """Only the authorization group, so that tools can ask what they may read (`kubectl auth can-i`)."""
    version = {"groupVersion": f"{AUTHORIZATION}/v1", "version": "v1"}
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [{"name": AUTHORIZATION, "versions": [version], "preferredVersion": version}]}


def authorization_resources() -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{AUTHORIZATION}/v1",
            "resources": [{"name": "selfsubjectaccessreviews", "singularName": "selfsubjectaccessreview",
                           "namespaced": False, "kind": "SelfSubjectAccessReview", "verbs": ["create"]}]}


def access_review(review: dict[str, Any]) -> dict[str, Any]:
    """The answer to a SelfSubjectAccessReview: the token may get, list and watch what is served, nothing else."""
    spec = review.get("spec") or {}
    attributes = spec.get("resourceAttributes")
    if attributes is not None:
        resource = attributes.get("resource", "")
        if attributes.get("subresource"):
            resource += "/" + attributes["subresource"]
        verbs = {r["name"]: r["verbs"] for r in RESOURCES}.get(resource, [])
        allowed = attributes.get("group", "") in ("", None) and attributes.get("verb") in verbs
    else:
        path = (spec.get("nonResourceAttributes") or {}).get("path", "")
        allowed = (spec.get("nonResourceAttributes") or {}).get("verb") == "get" and \
            path in ("/healthz", "/readyz", "/livez", "/version", "/metrics", "/api", "/apis")
    status: dict[str, Any] = {"allowed": bool(allowed)}
    if not allowed:
        status["reason"] = "kubelite serves a read-only API: get, list and watch only"
    return {"kind": "SelfSubjectAccessReview", "apiVersion": f"{AUTHORIZATION}/v1", "metadata": {},
            "spec": spec, "status": status}


def api_resources() -> dict[str, Any]:
    return {"kind": "APIResourceList", "groupVersion": "v1", "resources": RESOURCES}


# ---------------------------------------------------------------------------- errors and lists

def status(code: int, reason: str, message: str, *, kind: str | None = None, name: str | None = None) -> dict:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason, "code": code}
    if kind or name:
        body["details"] = {k: v for k, v in (("name", name), ("kind", kind)) if v}
    return body


def not_found(resource: str, name: str) -> dict[str, Any]:
    return status(404, "NotFound", f'{resource} "{name}" not found', kind=resource, name=name)


def object_list(kind: str, items: list[dict[str, Any]], resource_version: int) -> dict[str, Any]:
    return {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {"resourceVersion": str(resource_version)},
            "items": items}


# ---------------------------------------------------------------------------- tables

def _column(name: str, description: str, *, priority: int = 0, format_: str = "", type_: str = "string") -> dict:
    return {"name": name, "type": type_, "format": format_, "description": description, "priority": priority}


def _row(obj: dict[str, Any], cells: list[Any]) -> dict[str, Any]:
    """A row with the object's metadata, as the API server sends it by default (includeObject=Metadata);
    kubectl reads the namespace column (-A) and labels (--show-labels) from it."""
    return {"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                       "metadata": obj.get("metadata", {})}}


def table(columns: list[dict[str, Any]], rows: list[dict[str, Any]], resource_version: int) -> dict[str, Any]:
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(resource_version)}, "columnDefinitions": columns, "rows": rows}


POD_COLUMNS = [
    _column("Name", "Name must be unique within a namespace.", format_="name"),
    _column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _column("Status", "The aggregate status of the containers in this pod."),
    _column("Restarts", "The number of times the containers in this pod have been restarted and when the "
                        "last container in this pod has restarted."),
    _column("Age", "CreationTimestamp is a timestamp representing the server time when this object was created."),
    _column("IP", "podIP is the IP address allocated to the pod.", priority=1),
    _column("Node", "nodeName is the name of the node this pod runs on.", priority=1),
    _column("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods.", priority=1),
    _column("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.",
            priority=1),
]


def pod_rows(pods: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    rows = []
    for pod in pods:
        r = pod_row(pod, now)
        rows.append(_row(pod, [r.name, r.ready, r.status, r.restarts, r.age, r.ip, r.node, r.nominated_node,
                               r.readiness_gates]))
    return rows


EVENT_COLUMNS = [
    _column("Last Seen", "The time the event was last seen."),
    _column("Type", "Type of this event (Normal, Warning)."),
    _column("Reason", "Why the action was taken."),
    _column("Object", "The object this Event is about."),
    _column("Subobject", "The subobject of the involved object.", priority=1),
    _column("Source", "The component reporting this event.", priority=1),
    _column("Message", "A human-readable description of the status of this operation."),
    _column("First Seen", "The time the event was first seen.", priority=1),
    _column("Count", "The number of times this event has occurred.", priority=1, type_="integer"),
    _column("Name", "Name of the event.", priority=1, format_="name"),
]


def event_rows(events: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    rows = []
    for event in events:
        last_seen, type_, reason, obj, message = event_cells(event, now)
        source = event.get("source") or {}
        rows.append(_row(event, [last_seen, type_, reason, obj, (event.get("involvedObject") or {}).get(
            "fieldPath", ""), ", ".join(v for v in (source.get("component"), source.get("host")) if v), message,
            age(event.get("firstTimestamp"), now), event.get("count", 1), event["metadata"]["name"]]))
    return rows


NODE_COLUMNS = [
    _column("Name", "Name must be unique.", format_="name"),
    _column("Status", "The status of the node."),
    _column("Roles", "The roles of the node."),
    _column("Age", "CreationTimestamp is a timestamp representing the server time when this object was created."),
    _column("Version", "Kubelet Version reported by the node."),
    _column("Internal-IP", "List of addresses reachable to the node.", priority=1),
    _column("External-IP", "List of addresses reachable to the node.", priority=1),
    _column("OS-Image", "OS Image reported by the node from /etc/os-release.", priority=1),
    _column("Kernel-Version", "Kernel Version reported by the node.", priority=1),
    _column("Container-Runtime", "Container Runtime Version reported by the node.", priority=1),
]


def node_rows(nodes: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    rows = []
    for node in nodes:
        conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        ready = {"True": "Ready", "False": "NotReady"}.get(conditions.get("Ready", ""), "Unknown")
        addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
        info = node["status"]["nodeInfo"]
        rows.append(_row(node, [node["metadata"]["name"], ready, "<none>",
                                age(node["metadata"]["creationTimestamp"], now), info["kubeletVersion"],
                                addresses.get("InternalIP", "<none>"), addresses.get("ExternalIP", "<none>"),
                                info["osImage"], info["kernelVersion"], info["containerRuntimeVersion"]]))
    return rows


CONFIGMAP_COLUMNS = [_column("Name", "Name must be unique within a namespace.", format_="name"),
                     _column("Data", "Number of keys.", type_="integer"),
                     _column("Age", "CreationTimestamp of the object.")]
SECRET_COLUMNS = [_column("Name", "Name must be unique within a namespace.", format_="name"),
                  _column("Type", "The type of the secret."),
                  _column("Data", "Number of keys.", type_="integer"),
                  _column("Age", "CreationTimestamp of the object.")]
NAMESPACE_COLUMNS = [_column("Name", "Name must be unique.", format_="name"),
                     _column("Status", "The status of the namespace."),
                     _column("Age", "CreationTimestamp of the object.")]


def configmap_rows(items: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    return [_row(o, [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                     age(o["metadata"].get("creationTimestamp"), now)]) for o in items]


def secret_rows(items: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    return [_row(o, [o["metadata"]["name"], o.get("type", "Opaque"), len(o.get("data") or {}),
                     age(o["metadata"].get("creationTimestamp"), now)]) for o in items]


def namespace_rows(items: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    return [_row(o, [o["metadata"]["name"], "Active", age(o["metadata"].get("creationTimestamp"), now)])
            for o in items]


TABLES: dict[str, tuple[list[dict[str, Any]], Callable[[list[dict[str, Any]], datetime], list[dict[str, Any]]]]] = {
    "pods": (POD_COLUMNS, pod_rows),
    "events": (EVENT_COLUMNS, event_rows),
    "nodes": (NODE_COLUMNS, node_rows),
    "configmaps": (CONFIGMAP_COLUMNS, configmap_rows),
    "secrets": (SECRET_COLUMNS, secret_rows),
    "namespaces": (NAMESPACE_COLUMNS, namespace_rows),
}


# ---------------------------------------------------------------------------- events

def api_event(event: dict[str, Any], node: str) -> dict[str, Any]:
    """A stored event with the metadata the API server would give it."""
    meta = event["metadata"]
    meta.setdefault("uid", str(uuid.uuid5(uuid.NAMESPACE_URL, f"kubelite-event/{meta['namespace']}/{meta['name']}")))
    meta.setdefault("creationTimestamp", event.get("firstTimestamp"))
    event["source"] = {"component": "kubelite", "host": node}
    event["reportingComponent"] = "kubelite"
    event["reportingInstance"] = node
    return event


# ---------------------------------------------------------------------------- namespaces

def namespace(name: str, created: str) -> dict[str, Any]:
    return {"kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": name, "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"kubelite-namespace/{name}")),
                         "creationTimestamp": created, "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


# ---------------------------------------------------------------------------- the node

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


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


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


def _runtime_version(runtime: str) -> str:
    if runtime != "runc":
        return f"{runtime}://{__version__}"
    runc = shutil.which("runc", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"]))
    if runc is None:
        return "runc://unknown"
    try:
        first = subprocess.run([runc, "--version"], capture_output=True, text=True, timeout=5).stdout.split("\n")[0]
    except (OSError, subprocess.TimeoutExpired):
        return "runc://unknown"
    return "runc://" + (first.split()[-1] if first.split() else "unknown")


def host_facts(*, name: str, created: str, root: str, runtime: str) -> HostFacts:
    try:
        stat = os.statvfs(root)
        storage_ki = stat.f_blocks * stat.f_frsize // 1024
    except OSError:
        storage_ki = 0
    return HostFacts(name=name, created=created, cpus=os.cpu_count() or 1, memory_ki=_memory_ki(),
                     storage_ki=storage_ki, internal_ip=internal_ip(), hostname=socket.gethostname(),
                     machine_id=_read("/etc/machine-id"), boot_id=_read("/proc/sys/kernel/random/boot_id"),
                     system_uuid=_read("/sys/class/dmi/id/product_uuid") or _read("/etc/machine-id"),
                     kernel=platform.release(), os_image=_os_image(), arch=_arch(),
                     runtime_version=_runtime_version(runtime))


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
