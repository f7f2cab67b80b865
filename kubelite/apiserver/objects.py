"""The v1 objects the API serves that the store does not hold as such: the Node, Namespaces,
API discovery, Status errors, list envelopes, and the `meta.k8s.io/v1` Table form of each list.

Owns: their exact shape. The cells of a Table come from `kubelite.kubectl` (`pods.pod_row` is the
function `kubelite get pods` prints with), so kubectl and kubelite show the same cells. Pure apart
from `host_facts()`, which reads this machine's identity once when the server starts.
"""

from __future__ import annotations

import platform
import uuid
from datetime import datetime
from typing import Any, Callable

from kubelite import __version__
from kubelite.apiserver.auth import Access
from kubelite.kubectl.common import age
from kubelite.kubectl.events import event_cells
from kubelite.kubectl.nodes import node_cells
from kubelite.kubectl.pods import pod_row
from kubelite.kubectl.storage import claim_cells, class_cells, volume_cells

#: The Kubernetes API version whose shapes this server follows (kubectl's version-skew check reads it).
KUBE_MINOR = "32"

RESOURCES: list[dict[str, Any]] = [
    {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "shortNames": ["po"],
     "categories": ["all"], "verbs": ["get", "list", "watch"]},
    {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
    {"name": "pods/status", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
    {"name": "events", "singularName": "event", "namespaced": True, "kind": "Event", "shortNames": ["ev"],
     "verbs": ["get", "list", "watch"]},
    {"name": "configmaps", "singularName": "configmap", "namespaced": True, "kind": "ConfigMap",
     "shortNames": ["cm"], "verbs": ["get", "list"]},
    {"name": "secrets", "singularName": "secret", "namespaced": True, "kind": "Secret", "verbs": ["get", "list"]},
    {"name": "persistentvolumeclaims", "singularName": "persistentvolumeclaim", "namespaced": True,
     "kind": "PersistentVolumeClaim", "shortNames": ["pvc"], "verbs": ["get", "list"]},
    {"name": "persistentvolumes", "singularName": "persistentvolume", "namespaced": False,
     "kind": "PersistentVolume", "shortNames": ["pv"], "verbs": ["get", "list"]},
    {"name": "nodes", "singularName": "node", "namespaced": False, "kind": "Node", "shortNames": ["no"],
     "verbs": ["get", "list"]},
    {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
     "shortNames": ["ns"], "verbs": ["get", "list"]},
]


#: What the admin credential may do beyond the read-only one (verbs by resource/subresource).
ADMIN_VERBS: dict[str, list[str]] = {f"pods/{sub}": ["create", "get"] for sub in ("exec", "attach", "portforward")}


# ---------------------------------------------------------------------------- discovery

def arch() -> str:
    """This machine's architecture as Kubernetes names it (amd64, arm64)."""
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def version() -> dict[str, Any]:
    machine = arch()
    return {"major": "1", "minor": KUBE_MINOR, "gitVersion": f"v1.{KUBE_MINOR}.0-kubelite.{__version__}",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "", "goVersion": "",
            "compiler": "kubelite", "platform": f"linux/{machine}"}


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


AUTHORIZATION = "authorization.k8s.io"
STORAGE = "storage.k8s.io"
STORAGE_RESOURCES: list[dict[str, Any]] = [
    {"name": "storageclasses", "singularName": "storageclass", "namespaced": False, "kind": "StorageClass",
     "shortNames": ["sc"], "verbs": ["get", "list"]},
]


def api_group(name: str) -> dict[str, Any]:
    version = {"groupVersion": f"{name}/v1", "version": "v1"}
    return {"name": name, "versions": [version], "preferredVersion": version}


def api_groups() -> dict[str, Any]:
    """The authorization group, so that tools can ask what they may read (`kubectl auth can-i`), the
    storage group, for the StorageClasses that claims name, and the resource metrics (`kubectl top`)."""
    groups = [api_group(AUTHORIZATION), api_group(STORAGE)]
    groups.append(metrics_api_group())   # metrics.k8s.io: kubectl top
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


METRICS = "metrics.k8s.io"
METRICS_RESOURCES: list[dict[str, Any]] = [
    {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
    {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]},
]


def metrics_api_group() -> dict[str, Any]:
    version = {"groupVersion": f"{METRICS}/v1beta1", "version": "v1beta1"}
    return {"name": METRICS, "versions": [version], "preferredVersion": version}


def storage_resources() -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{STORAGE}/v1",
            "resources": STORAGE_RESOURCES}


def authorization_resources() -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{AUTHORIZATION}/v1",
            "resources": [{"name": "selfsubjectaccessreviews", "singularName": "selfsubjectaccessreview",
                           "namespaced": False, "kind": "SelfSubjectAccessReview", "verbs": ["create"]}]}


def access_review(review: dict[str, Any], access: Access = Access.READ) -> dict[str, Any]:
    """The answer to a SelfSubjectAccessReview: both credentials may get, list and watch what is
    served; the admin credential may also create (and get, as kubectl's WebSocket upgrade does)
    pods/exec, pods/attach and pods/portforward; nothing else."""
    spec = review.get("spec") or {}
    attributes = spec.get("resourceAttributes")
    if attributes is not None:
        resource = attributes.get("resource", "")
        if attributes.get("subresource"):
            resource += "/" + attributes["subresource"]
        elif resource == "pods" and f"pods/{attributes.get('name')}" in ADMIN_VERBS:
            # `kubectl auth can-i create pods/exec` sends the pod name "exec": read, as its users mean
            # it, as the subresource (no pod is ever created through this API, whatever its name)
            resource = f"pods/{attributes['name']}"
        served = RESOURCES if attributes.get("group", "") in ("", None) else \
            STORAGE_RESOURCES if attributes.get("group") == STORAGE else \
            METRICS_RESOURCES if attributes.get("group") == METRICS else []
        verbs = {r["name"]: r["verbs"] for r in served}.get(resource, [])
        if access >= Access.ADMIN and attributes.get("group", "") in ("", None):
            verbs = ADMIN_VERBS.get(resource, verbs)
        allowed = attributes.get("verb") in verbs
    else:
        path = (spec.get("nonResourceAttributes") or {}).get("path", "")
        allowed = (spec.get("nonResourceAttributes") or {}).get("verb") == "get" and \
            path in ("/healthz", "/readyz", "/livez", "/version", "/metrics", "/api", "/apis")
    status: dict[str, Any] = {"allowed": bool(allowed)}
    if not allowed:
        status["reason"] = ("kubelite's admin credential may get, list and watch, and create pods/exec, pods/attach "
                            "and pods/portforward" if access >= Access.ADMIN else
                            "the read-only credential may get, list and watch only")
    return {"kind": "SelfSubjectAccessReview", "apiVersion": f"{AUTHORIZATION}/v1", "metadata": {},
            "spec": spec, "status": status}


def api_resources() -> dict[str, Any]:
    return {"kind": "APIResourceList", "groupVersion": "v1", "resources": RESOURCES}


# ---------------------------------------------------------------------------- errors and lists

def status(code: int, reason: str, message: str, *, kind: str | None = None, name: str | None = None,
           retry_after: int | None = None) -> dict:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason, "code": code}
    if kind or name:
        body["details"] = {k: v for k, v in (("name", name), ("kind", kind)) if v}
    if retry_after is not None:
        body.setdefault("details", {})["retryAfterSeconds"] = retry_after
    return body


def internal_error(exc: BaseException) -> dict[str, Any]:
    """The Status of an error of the server's own, as the API server's InternalError: the error's
    type and the first line of its message, never a traceback."""
    text = first_line(str(exc))
    message = f"Internal error occurred: {type(exc).__name__}" + (f": {text}" if text else "")
    return status(500, "InternalError", message)


def first_line(text: str) -> str:
    """The first non-blank line of a message, at most 200 characters."""
    return next((line.strip()[:200] for line in text.splitlines() if line.strip()), "")


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
    return [_row(node, node_cells(node, now)) for node in nodes]


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


CLAIM_COLUMNS = [_column("Name", "Name must be unique within a namespace.", format_="name"),
                 _column("Status", "The phase of the claim."),
                 _column("Volume", "The binding reference to the PersistentVolume backing this claim."),
                 _column("Capacity", "The actual resources of the underlying volume."),
                 _column("Access Modes", "The access modes the volume has."),
                 _column("StorageClass", "The name of the StorageClass required by the claim."),
                 _column("VolumeAttributesClass", "The name of the VolumeAttributesClass the claim uses."),
                 _column("Age", "CreationTimestamp of the object."),
                 _column("VolumeMode", "What type of volume is required by the claim.", priority=1)]
VOLUME_COLUMNS = [_column("Name", "Name must be unique.", format_="name"),
                  _column("Capacity", "The volume's capacity."),
                  _column("Access Modes", "The ways the volume can be mounted."),
                  _column("Reclaim Policy", "What happens to the volume when its claim is released."),
                  _column("Status", "The phase of the volume."),
                  _column("Claim", "The claim the volume is bound to."),
                  _column("StorageClass", "The name of the StorageClass the volume belongs to."),
                  _column("VolumeAttributesClass", "The name of the VolumeAttributesClass the volume uses."),
                  _column("Reason", "Why the volume is in its phase."),
                  _column("Age", "CreationTimestamp of the object."),
                  _column("VolumeMode", "The volume's mode.", priority=1)]


CLASS_COLUMNS = [_column("Name", "Name must be unique.", format_="name"),
                 _column("Provisioner", "Indicates the type of the provisioner."),
                 _column("ReclaimPolicy", "Indicates the type of the reclaim policy."),
                 _column("VolumeBindingMode", "Indicates when volume binding and dynamic provisioning should occur."),
                 _column("AllowVolumeExpansion", "Indicates whether the storage class allows volume expand."),
                 _column("Age", "CreationTimestamp of the object.")]


def class_rows(items: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    return [_row(o, class_cells(o, now)) for o in items]


def claim_rows(items: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    return [_row(o, claim_cells(o, now) + [o.get("spec", {}).get("volumeMode", "")]) for o in items]


def volume_rows(items: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    return [_row(o, volume_cells(o, now) + [o.get("spec", {}).get("volumeMode", "")]) for o in items]


def namespace_rows(items: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    return [_row(o, [o["metadata"]["name"], "Active", age(o["metadata"].get("creationTimestamp"), now)])
            for o in items]


TABLES: dict[str, tuple[list[dict[str, Any]], Callable[[list[dict[str, Any]], datetime], list[dict[str, Any]]]]] = {
    "pods": (POD_COLUMNS, pod_rows),
    "events": (EVENT_COLUMNS, event_rows),
    "nodes": (NODE_COLUMNS, node_rows),
    "configmaps": (CONFIGMAP_COLUMNS, configmap_rows),
    "secrets": (SECRET_COLUMNS, secret_rows),
    "persistentvolumeclaims": (CLAIM_COLUMNS, claim_rows),
    "persistentvolumes": (VOLUME_COLUMNS, volume_rows),
    "storageclasses": (CLASS_COLUMNS, class_rows),
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
