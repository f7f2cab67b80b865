"""From one parsed manifest document (a dict) to a defaulted, validated Pod, with spec hashes.

Owns: kind/apiVersion dispatch, turning pydantic errors into Kubernetes-style field errors,
unknown/unimplemented field warnings, the pod UID, and the spec hashes that drive updates:

* `container_hashes[name]` — hash of one container's spec: a change restarts that container only.
* `sandbox_hash` — hash of the pod-level spec that a running sandbox embodies (everything but the
  app containers and the policy fields below, plus the app containers' host ports): a change
  replaces the whole pod.
* `pod_hash` — hash of the whole spec: equal hashes mean "nothing to do".

Labels, annotations and the policy fields (`restartPolicy`, `terminationGracePeriodSeconds`,
`activeDeadlineSeconds`) take effect without restarting anything.

Pure: no files, no clock. Field values are never echoed in messages.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from kubelite.api import configobjects, models, security_validation, support
from kubelite.api.validation import FieldIssue, validate_pod

#: Pod spec fields that change how the pod is run, not what the sandbox is.
POLICY_FIELDS = frozenset({"containers", "restartPolicy", "terminationGracePeriodSeconds", "activeDeadlineSeconds"})
#: Kinds a manifest directory may hold besides Pods: configuration that its pods may reference.
CONFIG_KINDS = frozenset(configobjects.KINDS)


@dataclass(frozen=True)
class DesiredPod:
    """A valid pod as desired by its manifest, with the hashes the engine compares."""

    pod: models.Pod
    uid: str
    pod_hash: str
    sandbox_hash: str
    container_hashes: dict[str, str]

    @property
    def key(self) -> str:
        return self.pod.key


@dataclass
class Decoded:
    """What one document turned out to be. `desired` is set only when `errors` is empty."""

    kind: str | None
    name: str | None
    desired: DesiredPod | None = None
    config: configobjects.ConfigObject | None = None   # a valid ConfigMap or Secret
    errors: list[FieldIssue] = field(default_factory=list)
    warnings: list[FieldIssue] = field(default_factory=list)


def spec_hash(data: Any) -> str:
    """A short, stable hash of JSON-shaped data (key order does not matter)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pod_uid(namespace: str, name: str, source: str, sandbox_hash: str) -> str:
    """A UID for a pod without `metadata.uid`: stable while the pod-level spec is unchanged.

    Like the kubelet's (a hash over the pod, the host and the file), but over the pod-level spec
    only, so that an edit confined to containers keeps the pod and restarts just those containers.
    """
    key = f"{namespace}\0{name}\0{source}\0{sandbox_hash}"
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def decode_document(doc: Any, *, source: str) -> Decoded:
    """Decode, default and validate one manifest document read from the file `source`."""
    if not isinstance(doc, dict):
        return Decoded(None, None, errors=[FieldIssue("", "not a Kubernetes object (expected a mapping)")])
    kind = doc.get("kind")
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) and isinstance(meta.get("name"), str) else None
    decoded = Decoded(kind if isinstance(kind, str) else None, name)
    if not kind:
        decoded.errors.append(FieldIssue("kind", "Required value"))
        return decoded
    if not isinstance(kind, str):
        decoded.errors.append(FieldIssue("kind", "Invalid value: must be a string"))
        return decoded
    if kind != "Pod" and kind not in CONFIG_KINDS:
        decoded.errors.append(FieldIssue("kind", 'Unsupported value: supported values: "Pod", "ConfigMap", '
                                                 '"Secret"'))
        return decoded
    if doc.get("apiVersion") != "v1":
        decoded.errors.append(FieldIssue("apiVersion", 'Unsupported value: supported values: "v1"'))
        return decoded

    body = {k: v for k, v in doc.items() if k != "status"}  # status is the agent's to write
    where = _not_json(body)
    if where is not None:
        decoded.errors.append(FieldIssue(where, "Invalid value: not JSON data (binary, a set, NaN, infinity, "
                                                "a non-text key or text that is not valid Unicode)"))
        return decoded
    if kind in CONFIG_KINDS:
        return _decode_config(body, kind, decoded, source=source)
    try:
        # by_name=False: `image_pull_policy` is not `imagePullPolicy` on a cluster, so not here either
        pod = models.Pod.model_validate(body, by_alias=True, by_name=False)
    except ValidationError as exc:
        decoded.errors.extend(_pydantic_issues(exc))
        return decoded
    decoded.warnings.extend(_unknown_fields(pod, ""))
    decoded.warnings.extend(support.unimplemented_fields(pod))
    decoded.warnings.extend(security_validation.deprecated_annotations(pod))
    _drop_extras(pod)
    pod.metadata.namespace = pod.metadata.namespace or "default"   # the kubelet's applyDefaults
    decoded.errors.extend(validate_pod(pod))
    if decoded.errors:
        return decoded
    decoded.desired = desired_pod(pod, source=source)
    return decoded


def _decode_config(body: dict[str, Any], kind: str, decoded: Decoded, *, source: str) -> Decoded:
    """A ConfigMap or Secret document: validated, and accepted as a `ConfigObject` when valid."""
    model_class = configobjects.Secret if kind == "Secret" else configobjects.ConfigMap
    try:
        obj = model_class.model_validate(body, by_alias=True, by_name=False)
    except ValidationError as exc:
        decoded.errors.extend(_pydantic_issues(exc))
        return decoded
    decoded.warnings.extend(_unknown_fields(obj, ""))
    _drop_extras(obj)
    obj.metadata.namespace = obj.metadata.namespace or "default"   # as for pods
    if isinstance(obj, configobjects.Secret):
        errors, values = configobjects.validate_secret(obj)
    else:
        errors, values = configobjects.validate_config_map(obj)
    decoded.errors.extend(errors)
    if not errors:
        decoded.config = configobjects.accept(obj, values, source=source)
    return decoded


def desired_pod(pod: models.Pod, *, source: str) -> DesiredPod:
    """Hash a valid pod and give it its UID (the manifest's `metadata.uid` if it sets one)."""
    spec = pod.spec.to_dict()
    containers = {c["name"]: spec_hash(c) for c in spec.get("containers", [])}
    for c in spec.get("initContainers", []):
        containers[c["name"]] = spec_hash(c)
    sandbox_spec = {k: v for k, v in spec.items() if k not in POLICY_FIELDS}
    host_ports = [p for c in spec.get("containers", []) for p in c.get("ports", []) if p.get("hostPort")]
    if host_ports:   # published by the sandbox: a change re-creates it (absent, hashes stay as they were)
        sandbox_spec["hostPorts"] = host_ports
    sandbox_hash = spec_hash(sandbox_spec)
    uid = pod.metadata.uid or pod_uid(pod.metadata.namespace, pod.metadata.name or "", source, sandbox_hash)
    pod.metadata.uid = uid
    return DesiredPod(pod=pod, uid=uid, pod_hash=spec_hash(spec), sandbox_hash=sandbox_hash,
                      container_hashes=containers)


def _not_json(value: Any, where: str = "") -> str | None:
    """The path of the first part of `value` that is not JSON data (what a Kubernetes object is made
    of), or None. Keeps hashing and storage from meeting a date, bytes, NaN or a lone surrogate."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "(document)"
        return None
    if value is None or isinstance(value, (bool, int)):
        return None
    if isinstance(value, float):
        return None if value == value and abs(value) != float("inf") else (where or "(document)")
    if isinstance(value, list):
        for i, item in enumerate(value):
            if (found := _not_json(item, f"{where}[{i}]")) is not None:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or _not_json(key) is not None:
                return where or "(document)"
            if (found := _not_json(item, f"{where}.{key}" if where else key)) is not None:
                return found
        return None
    return where or "(document)"


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("int", "str", "float", "function-after[_default_image_pull_policy(), Container]"):
            continue  # union branch labels and validator names are not fields
        else:
            out += ("." if out else "") + str(part)
    return out


_PYDANTIC_MESSAGES = {
    "missing": "Required value",
    "int_type": "Invalid value: must be an integer",
    "int_parsing": "Invalid value: must be an integer",
    "string_type": "Invalid value: must be a string",
    "bool_type": "Invalid value: must be a boolean (true or false)",
    "list_type": "Invalid value: must be a list",
    "dict_type": "Invalid value: must be a mapping",
    "model_type": "Invalid value: must be a mapping",
    "model_attributes_type": "Invalid value: must be a mapping",
    "float_type": "Invalid value: must be a number",
    "literal_error": "Unsupported value",
}


def _pydantic_issues(exc: ValidationError) -> list[FieldIssue]:
    issues: dict[str, FieldIssue] = {}
    for err in exc.errors(include_input=False, include_url=False):
        path = _path(err["loc"])
        if path in issues:  # a union reports each branch; one line per field is enough
            continue
        message = _PYDANTIC_MESSAGES.get(err["type"], "Invalid value")
        if err["type"] in ("int_type", "string_type", "float_type") and err["loc"][-1:] in (("int",), ("str",)):
            message = "Invalid value: must be an integer or a string"
        issues[path] = FieldIssue(path, message)
    return list(issues.values())


def _unknown_fields(model: models.K8sModel, path: str) -> list[FieldIssue]:
    found: list[FieldIssue] = []
    known = support.KNOWN_UNMODELLED.get(type(model), frozenset())
    for key in model.model_extra or {}:
        where = f"{path}.{key}" if path else key
        found.append(FieldIssue(where, "not implemented yet; ignored" if key in known else "unknown field; ignored"))
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        wire = info.alias or name
        where = f"{path}.{wire}" if path else wire
        if isinstance(value, models.K8sModel):
            found.extend(_unknown_fields(value, where))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, models.K8sModel):
                    found.extend(_unknown_fields(item, f"{where}[{i}]"))
    return found


def _drop_extras(model: models.K8sModel) -> None:
    if model.__pydantic_extra__:
        model.__pydantic_extra__.clear()
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, models.K8sModel):
            _drop_extras(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, models.K8sModel):
                    _drop_extras(item)
