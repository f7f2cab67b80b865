"""kubectl-identical text for PersistentVolumeClaims, PersistentVolumes and StorageClasses.

Owns: pure formatting of their v1 dicts, translated from kubectl's printers
(`printPersistentVolumeClaim`, `printPersistentVolume`, `printStorageClass`) and describer
(`PersistentVolumeClaimDescriber`). Standard library only, like every `kubectl` module.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubelite.kubectl.common import _dict, _list, _str, _table, age
from kubelite.kubectl.describe import _annotation_lines, _event_lines, _PrefixWriter, _sorted_map_lines

#: kubectl's short forms of access modes, in its order (`GetAccessModesAsString`).
_MODES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP"))
CLAIM_HEADERS = ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "VOLUMEATTRIBUTESCLASS",
                 "AGE"]
VOLUME_HEADERS = ["NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM", "STORAGECLASS",
                  "VOLUMEATTRIBUTESCLASS", "REASON", "AGE"]
CLASS_HEADERS = ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE"]


def access_modes(modes: Any) -> str:
    present = {_str(m) for m in _list(modes)}
    return ",".join(short for mode, short in _MODES if mode in present)


def claim_cells(obj: dict[str, Any], now: datetime) -> list[str]:
    """One `get pvc` row: capacity and access modes only once bound, as kubectl shows them."""
    meta, spec, status = _dict(obj.get("metadata")), _dict(obj.get("spec")), _dict(obj.get("status"))
    phase = "Terminating" if meta.get("deletionTimestamp") else _str(status.get("phase"))
    capacity = modes = ""
    if spec.get("volumeName"):
        modes = access_modes(status.get("accessModes"))
        capacity = _str(_dict(status.get("capacity")).get("storage"))
    return [_str(meta.get("name")), phase, _str(spec.get("volumeName")), capacity, modes,
            _str(spec.get("storageClassName")) or "<unset>", _str(spec.get("volumeAttributesClassName")) or "<unset>",
            age(meta.get("creationTimestamp"), now)]


def volume_cells(obj: dict[str, Any], now: datetime) -> list[str]:
    meta, spec, status = _dict(obj.get("metadata")), _dict(obj.get("spec")), _dict(obj.get("status"))
    ref = _dict(spec.get("claimRef"))
    claim = f"{_str(ref.get('namespace'))}/{_str(ref.get('name'))}" if ref else ""
    return [_str(meta.get("name")), _str(_dict(spec.get("capacity")).get("storage")),
            access_modes(spec.get("accessModes")), _str(spec.get("persistentVolumeReclaimPolicy")),
            _str(status.get("phase")), claim, _str(spec.get("storageClassName")),
            _str(spec.get("volumeAttributesClassName")) or "<unset>", _str(status.get("reason")),
            age(meta.get("creationTimestamp"), now)]


def class_cells(obj: dict[str, Any], now: datetime) -> list[str]:
    meta = _dict(obj.get("metadata"))
    name = _str(meta.get("name"))
    if _dict(meta.get("annotations")).get("storageclass.kubernetes.io/is-default-class") == "true":
        name += " (default)"
    expansion = "true" if obj.get("allowVolumeExpansion") is True else "false"
    return [name, _str(obj.get("provisioner")), _str(obj.get("reclaimPolicy")) or "Delete",
            _str(obj.get("volumeBindingMode")) or "Immediate", expansion, age(meta.get("creationTimestamp"), now)]


def format_claims(objects: list[dict[str, Any]], now: datetime, *, all_namespaces: bool = False,
                  no_headers: bool = False) -> str:
    """`kubectl get pvc`."""
    headers = (["NAMESPACE"] if all_namespaces else []) + CLAIM_HEADERS
    rows = [([_str(_dict(o.get("metadata")).get("namespace"))] if all_namespaces else []) + claim_cells(o, now)
            for o in objects]
    return _table(headers, rows, no_headers=no_headers)


def format_volumes(objects: list[dict[str, Any]], now: datetime, *, no_headers: bool = False) -> str:
    """`kubectl get pv`."""
    return _table(VOLUME_HEADERS, [volume_cells(o, now) for o in objects], no_headers=no_headers)


def format_classes(objects: list[dict[str, Any]], now: datetime, *, no_headers: bool = False) -> str:
    """`kubectl get storageclass`."""
    return _table(CLASS_HEADERS, [class_cells(o, now) for o in objects], no_headers=no_headers)


def describe_claim(obj: dict[str, Any], used_by: list[str], events: list[dict], now: datetime) -> str:
    """`kubectl describe pvc`: `Used By` names the pods that mount it."""
    meta, spec, status = _dict(obj.get("metadata")), _dict(obj.get("spec")), _dict(obj.get("status"))
    w = _PrefixWriter()
    w.write(0, f"Name:\t{_str(meta.get('name'))}\n")
    w.write(0, f"Namespace:\t{_str(meta.get('namespace'))}\n")
    w.write(0, f"StorageClass:\t{_str(spec.get('storageClassName'))}\n")
    w.write(0, f"Status:\t{_str(status.get('phase'))}\n")
    w.write(0, f"Volume:\t{_str(spec.get('volumeName'))}\n")
    _sorted_map_lines(w, "Labels", meta.get("labels"))
    _annotation_lines(w, meta.get("annotations"))
    w.write(0, f"Finalizers:\t[{' '.join(_str(f) for f in _list(meta.get('finalizers')))}]\n")
    capacity = modes = ""
    if spec.get("volumeName"):
        modes = access_modes(status.get("accessModes"))
        capacity = _str(_dict(status.get("capacity")).get("storage"))
    w.write(0, f"Capacity:\t{capacity}\n")
    w.write(0, f"Access Modes:\t{modes}\n")
    if spec.get("volumeMode"):
        w.write(0, f"VolumeMode:\t{_str(spec.get('volumeMode'))}\n")
    w.write(0, "Used By:\t")
    if not used_by:
        w.write(0, "<none>\n")
    for i, name in enumerate(sorted(used_by)):
        w.write(0, ("\t" if i else "") + f"{name}\n")
    _event_lines(w, events, now)
    return w.render()
