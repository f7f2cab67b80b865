"""ConfigMaps and Secrets: the static configuration objects a manifest directory may hold.

Owns: their models (v1 wire names), Kubernetes validation (`ValidateConfigMap`, `ValidateSecret`:
key names, the 1 MiB size limit, keys in both `data` and `binaryData`, the required keys of the
typed Secrets), Secret `stringData` folded into base64 `data` as the API server stores it, and
`ConfigObject`: an accepted object with its keys decoded to bytes, as pods look them up.

Pure: no files, no clock. Messages name fields and key names, never values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from pydantic import Field

from kubelite.api import names
from kubelite.api.fieldissues import FieldIssue, invalid, validate_object_meta
from kubelite.api.models import Bool, K8sModel, ObjectMeta, Str

#: `corev1.MaxSecretSize`, also the limit the API server applies to a ConfigMap's data.
MAX_SIZE = 1024 * 1024
#: Keys each typed Secret must carry (`ValidateSecret`).
REQUIRED_SECRET_KEYS = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}
KINDS = ("ConfigMap", "Secret")


class ConfigMap(K8sModel):
    api_version: Optional[Str] = None
    kind: Optional[Str] = None
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    data: dict[Str, Str] = Field(default_factory=dict)
    binary_data: dict[Str, Str] = Field(default_factory=dict)   # base64 on the wire
    immutable: Optional[Bool] = None


class Secret(K8sModel):
    api_version: Optional[Str] = None
    kind: Optional[Str] = None
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    data: dict[Str, Str] = Field(default_factory=dict)          # base64 on the wire
    string_data: dict[Str, Str] = Field(default_factory=dict)   # write-only: folded into data
    type: Str = "Opaque"
    immutable: Optional[Bool] = None


@dataclass(frozen=True)
class ConfigObject:
    """An accepted ConfigMap or Secret: its v1 object (as the API serves it) and its keys as bytes."""

    kind: str                 # ConfigMap | Secret
    namespace: str
    name: str
    uid: str
    object: dict[str, Any]    # v1 JSON; a Secret's data base64, no stringData
    values: dict[str, bytes] = field(default_factory=dict, compare=False)
    hash: str = ""            # of `object`: equal hashes mean "unchanged"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    @property
    def ref(self) -> str:
        """`default/app-config`, as the kubelet names it in messages."""
        return f"{self.namespace}/{self.name}"


def object_uid(kind: str, namespace: str, name: str, source: str) -> str:
    """A stable UID for an object without `metadata.uid`: kept across edits, as on a cluster."""
    digest = hashlib.sha256(f"{kind}\0{namespace}\0{name}\0{source}".encode("utf-8", "surrogateescape")).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def object_hash(obj: dict[str, Any]) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _b64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _key_issues(path: str, key: str) -> list[FieldIssue]:
    return invalid(f"{path}[{names.shown(key, limit=40)}]", names.is_config_map_key(key))


def _size_issue(values: dict[str, bytes], path: str, *, count_keys: bool) -> list[FieldIssue]:
    total = sum((len(k) if count_keys else 0) + len(v) for k, v in values.items())
    if total > MAX_SIZE:
        return [FieldIssue(path, f"Too long: must have at most {MAX_SIZE} bytes")]
    return []


def validate_config_map(cm: ConfigMap) -> tuple[list[FieldIssue], dict[str, bytes]]:
    """Errors (empty when valid) and the ConfigMap's keys as bytes (`data` as UTF-8, `binaryData` decoded)."""
    errors = validate_object_meta(cm.metadata)
    values: dict[str, bytes] = {}
    for key, value in cm.data.items():
        errors += _key_issues("data", key)
        values[key] = value.encode("utf-8")
    for key, value in cm.binary_data.items():
        errors += _key_issues("binaryData", key)
        if key in cm.data:
            errors.append(FieldIssue(f"binaryData[{names.shown(key, limit=40)}]",
                                     "Invalid value: duplicate of key present in data"))
        decoded = _b64(value)
        if decoded is None:
            errors.append(FieldIssue(f"binaryData[{names.shown(key, limit=40)}]", "Invalid value: must be base64 data"))
            continue
        values[key] = decoded
    errors += _size_issue(values, "data", count_keys=True)  # ValidateConfigMap counts keys and values
    return errors, values


def validate_secret(secret: Secret) -> tuple[list[FieldIssue], dict[str, bytes]]:
    """Errors (empty when valid) and the Secret's keys as bytes (`stringData` wins over `data`)."""
    errors = validate_object_meta(secret.metadata)
    values: dict[str, bytes] = {}
    for key, value in secret.data.items():
        errors += _key_issues("data", key)
        decoded = _b64(value)
        if decoded is None:
            errors.append(FieldIssue(f"data[{names.shown(key, limit=40)}]", "Invalid value: must be base64 data"))
            continue
        values[key] = decoded
    for key, value in secret.string_data.items():
        errors += _key_issues("stringData", key)
        values[key] = value.encode("utf-8")
    if not secret.type:
        errors.append(FieldIssue("type", "Required value"))
    for key in REQUIRED_SECRET_KEYS.get(secret.type, ()):
        if key not in values:
            errors.append(FieldIssue(f"data[{key}]", "Required value"))
    if secret.type == "kubernetes.io/basic-auth" and "username" not in values and "password" not in values:
        errors.append(FieldIssue("data", "Required value: username or password is required"))
    if secret.type == "kubernetes.io/service-account-token" and \
            "kubernetes.io/service-account.name" not in secret.metadata.annotations:
        errors.append(FieldIssue("metadata.annotations[kubernetes.io/service-account.name]", "Required value"))
    errors += _size_issue(values, "data", count_keys=False)  # ValidateSecret counts values only
    return errors, values


def accept(model: Union[ConfigMap, Secret], values: dict[str, bytes], *, source: str) -> ConfigObject:
    """The accepted object: v1 JSON as the API server would serve it, with its UID and content hash."""
    kind = "Secret" if isinstance(model, Secret) else "ConfigMap"
    meta = model.metadata
    uid = meta.uid or object_uid(kind, meta.namespace, meta.name or "", source)
    obj = model.to_dict()
    obj["apiVersion"], obj["kind"] = "v1", kind
    obj.setdefault("metadata", {})["uid"] = uid
    obj["metadata"]["namespace"] = meta.namespace
    for empty in ("labels", "annotations"):   # omitted when empty, as the API serves them
        if not obj["metadata"].get(empty):
            obj["metadata"].pop(empty, None)
    if isinstance(model, Secret):
        obj.pop("stringData", None)
        if values:
            obj["data"] = {k: base64.b64encode(v).decode("ascii") for k, v in sorted(values.items())}
        else:
            obj.pop("data", None)
    for empty in ("data", "binaryData"):
        if empty in obj and not obj[empty]:
            del obj[empty]
    return ConfigObject(kind=kind, namespace=meta.namespace, name=meta.name or "", uid=uid, object=obj,
                        values=values, hash=object_hash(obj))


def from_object(obj: dict[str, Any]) -> ConfigObject:
    """A `ConfigObject` again from its stored v1 object (as `accept` made it)."""
    kind = obj["kind"]
    meta = obj.get("metadata", {})
    values: dict[str, bytes] = {}
    if kind == "Secret":
        values = {k: base64.b64decode(v) for k, v in obj.get("data", {}).items()}
    else:
        values = {k: v.encode("utf-8") for k, v in obj.get("data", {}).items()}
        values.update({k: base64.b64decode(v) for k, v in obj.get("binaryData", {}).items()})
    clean = {k: v for k, v in obj.items() if k != "status"}   # a claim's status is the agent's to write
    clean["metadata"] = {k: v for k, v in meta.items() if k not in ("creationTimestamp", "resourceVersion",
                                                                   "finalizers")}
    if kind == "PersistentVolumeClaim":   # bound by the agent, not part of the claim as accepted
        clean["spec"] = {k: v for k, v in clean.get("spec", {}).items() if k != "volumeName"}
    namespace = meta.get("namespace", "" if kind == "StorageClass" else "default")   # a class has none
    return ConfigObject(kind=kind, namespace=namespace, name=meta.get("name", ""),
                        uid=meta.get("uid", ""), object=clean, values=values, hash=object_hash(clean))
