"""PersistentVolumeClaims and StorageClasses: the storage objects a manifest directory may hold.

Owns: their models (v1 wire names), the Kubernetes validation of a claim
(`ValidatePersistentVolumeClaim`: access modes, `resources.requests.storage`, `volumeMode`) with
kubelite's own refusals said plainly (a raw block device, static binding to a named volume, a
selector, a data source: nothing here could honour them), a StorageClass's validation (only the
local-path provisioner), the built-in `local-path` class, and the accepted objects as
`ConfigObject`s, so that they travel the path ConfigMaps and Secrets take (resolution, store, API).

A claim's UID depends on its namespace and name only (not on the file that holds it): the
volume it is bound to, `pvc-<uid>`, stays the same when the document moves to another file or
the state database is rebuilt.

Pure: no files, no clock. Messages name fields, never values.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field

from kubelite.api import configobjects, names, quantity
from kubelite.api.fieldissues import FieldIssue, invalid, subdomain, validate_object_meta
from kubelite.api.models import K8sModel, ObjectMeta, Quantity, Str

CLAIM = "PersistentVolumeClaim"
STORAGE_CLASS = "StorageClass"
STORAGE_API_VERSION = "storage.k8s.io/v1"
ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
#: kubectl's short forms (`GetAccessModesAsString`), in its order.
ACCESS_MODE_SHORT = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}
#: The class a claim without `storageClassName` gets (as the DefaultStorageClass admission plugin sets it).
DEFAULT_CLASS = "local-path"
#: Provisioners whose classes kubelite serves: directories under the state root. k3s's class names
#: `rancher.io/local-path`, so a manifest written for it runs unchanged.
PROVISIONERS = ("kubelite.io/local-path", "rancher.io/local-path")
RECLAIM_POLICIES = ("Delete", "Retain")
BINDING_MODES = ("Immediate", "WaitForFirstConsumer")


class VolumeResources(K8sModel):
    limits: dict[Str, Quantity] = Field(default_factory=dict)
    requests: dict[Str, Quantity] = Field(default_factory=dict)


class PersistentVolumeClaimSpec(K8sModel):
    access_modes: list[Str] = Field(default_factory=list)
    resources: VolumeResources = Field(default_factory=VolumeResources)
    storage_class_name: Optional[Str] = None
    volume_mode: Optional[Str] = None
    volume_name: Optional[Str] = None
    selector: Optional[dict[str, Any]] = None
    data_source: Optional[dict[str, Any]] = None
    data_source_ref: Optional[dict[str, Any]] = None
    volume_attributes_class_name: Optional[Str] = None


class PersistentVolumeClaim(K8sModel):
    api_version: Optional[Str] = None
    kind: Optional[Str] = None
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PersistentVolumeClaimSpec = Field(default_factory=PersistentVolumeClaimSpec)


class StorageClass(K8sModel):
    api_version: Optional[Str] = None
    kind: Optional[Str] = None
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    provisioner: Optional[Str] = None
    reclaim_policy: Optional[Str] = None
    volume_binding_mode: Optional[Str] = None
    parameters: dict[Str, Str] = Field(default_factory=dict)
    mount_options: list[Str] = Field(default_factory=list)
    allow_volume_expansion: Optional[bool] = None


def builtin_class() -> dict[str, Any]:
    """The `local-path` class every kubelite has (Retain: a claim's data outlives the claim)."""
    return {"apiVersion": STORAGE_API_VERSION, "kind": STORAGE_CLASS,
            "metadata": {"name": DEFAULT_CLASS, "uid": configobjects.object_uid(STORAGE_CLASS, "", DEFAULT_CLASS, ""),
                         "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": PROVISIONERS[0], "reclaimPolicy": "Retain", "volumeBindingMode": "Immediate"}


def _storage_request(spec: PersistentVolumeClaimSpec) -> list[FieldIssue]:
    value = spec.resources.requests.get("storage")
    if value is None:
        return [FieldIssue("spec.resources[storage]", "Required value")]
    try:
        if quantity.parse(value) <= 0:
            return [FieldIssue("spec.resources[storage]", "Invalid value: must be greater than zero")]
    except (ValueError, OverflowError):
        return [FieldIssue("spec.resources[storage]", "Invalid value: must be a quantity such as 1Gi")]
    return []


def validate_claim(claim: PersistentVolumeClaim) -> tuple[list[FieldIssue], list[FieldIssue]]:
    """Errors and warnings of a claim (`ValidatePersistentVolumeClaim`, and what kubelite cannot honour)."""
    errors = validate_object_meta(claim.metadata)
    warnings: list[FieldIssue] = []
    spec = claim.spec
    if not spec.access_modes:
        errors.append(FieldIssue("spec.accessModes", "Required value: at least 1 access mode is required"))
    for mode in spec.access_modes:
        if mode not in ACCESS_MODES:
            errors.append(FieldIssue("spec.accessModes", "Unsupported value: supported values: "
                                     + ", ".join(f'"{m}"' for m in ACCESS_MODES)))
    if "ReadWriteOncePod" in spec.access_modes and len(spec.access_modes) > 1:
        errors.append(FieldIssue("spec.accessModes", "Forbidden: may not use ReadWriteOncePod with other access modes"))
    errors += _storage_request(spec)
    if spec.volume_mode not in (None, "Filesystem"):
        if spec.volume_mode == "Block":
            errors.append(FieldIssue("spec.volumeMode", 'Unsupported value: "Block": kubelite provides a claim as a '
                                                        'directory on this machine, never a raw block device; use '
                                                        '"Filesystem"'))
        else:
            errors.append(FieldIssue("spec.volumeMode", 'Unsupported value: supported values: "Block", "Filesystem"'))
    if spec.storage_class_name == "":
        errors.append(FieldIssue("spec.storageClassName", 'Invalid value: "" asks for a pre-created volume without a '
                                                          'class; kubelite provisions every claim: omit the field or '
                                                          f'name a class ("{DEFAULT_CLASS}")'))
    elif spec.storage_class_name is not None:
        errors += invalid("spec.storageClassName", names.is_dns1123_subdomain(spec.storage_class_name))
    if spec.volume_name:
        errors.append(FieldIssue("spec.volumeName", "Forbidden: binding to a pre-created PersistentVolume is not "
                                                    "supported: kubelite provisions each claim a volume of its own"))
    if spec.selector:
        errors.append(FieldIssue("spec.selector", "Forbidden: a selector picks among pre-created volumes; kubelite "
                                                  "provisions each claim a volume of its own"))
    for field, value in (("dataSource", spec.data_source), ("dataSourceRef", spec.data_source_ref)):
        if value:
            errors.append(FieldIssue(f"spec.{field}", "Forbidden: kubelite cannot fill a new volume from a snapshot, "
                                                      "another claim or a populator"))
    if spec.volume_attributes_class_name:
        warnings.append(FieldIssue("spec.volumeAttributesClassName", "not implemented; ignored"))
    return errors, warnings


def validate_storage_class(sc: StorageClass) -> list[FieldIssue]:
    """A StorageClass kubelite can serve: a valid name and the local-path provisioner."""
    errors: list[FieldIssue] = []
    meta = sc.metadata
    errors += subdomain("metadata.name", meta.name)
    if not sc.provisioner:
        errors.append(FieldIssue("provisioner", "Required value"))
    elif sc.provisioner not in PROVISIONERS:
        errors.append(FieldIssue("provisioner", "Unsupported value: kubelite provisions directories on this machine "
                                                "only; supported values: "
                                                + ", ".join(f'"{p}"' for p in PROVISIONERS)))
    if sc.reclaim_policy is not None and sc.reclaim_policy not in RECLAIM_POLICIES:
        errors.append(FieldIssue("reclaimPolicy", "Unsupported value: supported values: "
                                                  + ", ".join(f'"{p}"' for p in RECLAIM_POLICIES)))
    if sc.volume_binding_mode is not None and sc.volume_binding_mode not in BINDING_MODES:
        errors.append(FieldIssue("volumeBindingMode", "Unsupported value: supported values: "
                                                      + ", ".join(f'"{m}"' for m in BINDING_MODES)))
    return errors


def accept_claim(claim: PersistentVolumeClaim) -> configobjects.ConfigObject:
    """The accepted claim, defaulted as the API server stores it (class, volumeMode); no status yet."""
    meta = claim.metadata
    uid = meta.uid or configobjects.object_uid(CLAIM, meta.namespace, meta.name or "", "")
    obj = claim.to_dict()
    obj["apiVersion"], obj["kind"] = "v1", CLAIM
    obj["metadata"] = {**obj.get("metadata", {}), "uid": uid, "namespace": meta.namespace}
    for empty in ("labels", "annotations"):
        if not obj["metadata"].get(empty):
            obj["metadata"].pop(empty, None)
    spec = obj.setdefault("spec", {})
    spec.setdefault("storageClassName", DEFAULT_CLASS)
    spec.setdefault("volumeMode", "Filesystem")
    if not spec.get("resources", {}).get("limits"):
        spec.get("resources", {}).pop("limits", None)
    return configobjects.ConfigObject(kind=CLAIM, namespace=meta.namespace, name=meta.name or "", uid=uid,
                                      object=obj, hash=configobjects.object_hash(obj))


def accept_storage_class(sc: StorageClass) -> configobjects.ConfigObject:
    """The accepted class (cluster-scoped: namespace ''), defaulted as the API server does (Delete, Immediate)."""
    name = sc.metadata.name or ""
    obj = sc.to_dict()
    obj["apiVersion"], obj["kind"] = STORAGE_API_VERSION, STORAGE_CLASS
    uid = sc.metadata.uid or configobjects.object_uid(STORAGE_CLASS, "", name, "")
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "namespace" and v not in ({}, None)}
    obj["metadata"] = {**meta, "uid": uid}
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")
    for empty in ("parameters", "mountOptions"):
        if not obj.get(empty):
            obj.pop(empty, None)
    return configobjects.ConfigObject(kind=STORAGE_CLASS, namespace="", name=name, uid=uid, object=obj,
                                      hash=configobjects.object_hash(obj))


def claim_capacity(obj: dict[str, Any]) -> str:
    """The storage a claim requests, as written (`1Gi`): what its volume reports as capacity."""
    value = obj.get("spec", {}).get("resources", {}).get("requests", {}).get("storage", "")
    return str(value)


def access_modes_short(modes: list[str]) -> str:
    """`RWO,ROX`, as kubectl prints access modes."""
    return ",".join(ACCESS_MODE_SHORT[m] for m in ACCESS_MODE_SHORT if m in modes)
