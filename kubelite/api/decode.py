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

Null is absent, as the API server reads a JSON null: a field whose value is null is dropped at every
depth before the document is decoded (in a map of strings — labels, annotations, data — a null
value is the empty string, as Go decodes it). Kinds: `RUN_KINDS` lists the kinds kubelite runs;
any other kind is not an error but a document that is ignored with a warning. What each Pod field
gets (implemented, a warning, a refusal) is `fieldsupport`'s table.

Pure: no files, no clock. Field values are never echoed in messages.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import ValidationError

from kubelite.api import claims, configobjects, fieldsupport, models, names, volume_validation
from kubelite.api.validation import FieldIssue, validate_pod

#: Pod spec fields that change how the pod is run, not what the sandbox is.
POLICY_FIELDS = frozenset({"containers", "restartPolicy", "terminationGracePeriodSeconds", "activeDeadlineSeconds"})
#: Kinds a manifest directory may hold besides Pods: configuration that its pods may reference.
CONFIG_KINDS = frozenset((*configobjects.KINDS, claims.CLAIM, claims.STORAGE_CLASS))
#: Maps whose values are strings: there a null value is "" (Go's zero string), not an absent key.
STRING_MAPS = frozenset({"labels", "annotations", "data", "binaryData", "stringData", "nodeSelector", "parameters"})
#: The apiVersion each kind is read from (all others: v1).
API_VERSIONS = {claims.STORAGE_CLASS: claims.STORAGE_API_VERSION}


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
    ignored: bool = False   # a kind kubelite does not run: its one warning says so
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
    decoder = RUN_KINDS.get(kind)
    if decoder is None:
        decoded.ignored = True
        decoded.warnings.append(FieldIssue("", f"kind {names.shown(kind, limit=64)} is not run by kubelite; ignored"))
        return decoded
    api_version = API_VERSIONS.get(kind, "v1")
    if doc.get("apiVersion") != api_version:
        decoded.errors.append(FieldIssue("apiVersion", f'Unsupported value: supported values: "{api_version}"'))
        return decoded

    body = without_nulls({k: v for k, v in doc.items() if k != "status"})  # status is the agent's to write
    where = _not_json(body)
    if where is not None:
        decoded.errors.append(FieldIssue(where, "Invalid value: not JSON data (binary, a set, NaN, infinity, "
                                                "a non-text key or text that is not valid Unicode)"))
        return decoded
    return decoder(body, kind, decoded, source=source)


def without_nulls(value: Any, *, string_map: bool = False) -> Any:
    """`value` with every null field left out, at every depth, as the API server reads JSON null.

    In a map of strings (`string_map`: labels, annotations, a ConfigMap's data) a null value is the
    empty string, as Go decodes it. Items of lists are kept as they are (a null item stays invalid).
    """
    if isinstance(value, dict):
        if string_map:
            return {k: "" if v is None else v for k, v in value.items()}
        return {k: without_nulls(v, string_map=k in STRING_MAPS) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def _decode_pod(body: dict[str, Any], kind: str, decoded: Decoded, *, source: str) -> Decoded:
    """A Pod document: defaulted, checked against the field table, validated and hashed."""
    try:
        # by_name=False: `image_pull_policy` is not `imagePullPolicy` on a cluster, so not here either
        pod = models.Pod.model_validate(body, by_alias=True, by_name=False)
    except ValidationError as exc:
        decoded.errors.extend(_pydantic_issues(exc))
        return decoded
    refused: list[FieldIssue] = []
    _field_issues(pod, "", decoded.warnings, refused)
    decoded.warnings.extend(_meaningful_values(pod))
    decoded.warnings.extend(volume_validation.volume_warnings(pod.spec))
    _drop_extras(pod)
    pod.metadata.namespace = pod.metadata.namespace or "default"   # the kubelet's applyDefaults
    decoded.errors.extend(refused)
    # a volume whose only source was refused has no source left: it is already reported
    refused_volumes = {issue.path.rsplit(".", 1)[0] for issue in refused if issue.path.startswith("spec.volumes[")}
    decoded.errors.extend(issue for issue in validate_pod(pod) if issue.path not in refused_volumes)
    if decoded.errors:
        return decoded
    decoded.desired = desired_pod(pod, source=source)
    return decoded


_CONFIG_MODELS = {"ConfigMap": configobjects.ConfigMap, "Secret": configobjects.Secret,
                  claims.CLAIM: claims.PersistentVolumeClaim, claims.STORAGE_CLASS: claims.StorageClass}


def _decode_config(body: dict[str, Any], kind: str, decoded: Decoded, *, source: str) -> Decoded:
    """A ConfigMap, Secret, PersistentVolumeClaim or StorageClass document: validated, and accepted
    as a `ConfigObject` when valid."""
    try:
        obj = _CONFIG_MODELS[kind].model_validate(body, by_alias=True, by_name=False)
    except ValidationError as exc:
        decoded.errors.extend(_pydantic_issues(exc))
        return decoded
    decoded.warnings.extend(_unknown_fields(obj, ""))
    _drop_extras(obj)
    if isinstance(obj, claims.StorageClass):   # a class has no namespace
        decoded.errors.extend(claims.validate_storage_class(obj))
        if not decoded.errors:
            decoded.config = claims.accept_storage_class(obj)
        return decoded
    obj.metadata.namespace = obj.metadata.namespace or "default"   # as for pods
    if isinstance(obj, claims.PersistentVolumeClaim):
        errors, warnings = claims.validate_claim(obj)
        decoded.warnings.extend(warnings)
        decoded.errors.extend(errors)
        if not errors:
            decoded.config = claims.accept_claim(obj)
        return decoded
    if isinstance(obj, configobjects.Secret):
        errors, values = configobjects.validate_secret(obj)
    else:
        errors, values = configobjects.validate_config_map(obj)
    decoded.errors.extend(errors)
    if not errors:
        decoded.config = configobjects.accept(obj, values, source=source)
    return decoded


def sandbox_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The part of a pod's spec (wire form) that its sandbox embodies: all but the app containers and
    the policy fields, plus the app containers' host ports. Its hash is the sandbox hash."""
    found = {k: v for k, v in spec.items() if k not in POLICY_FIELDS}
    host_ports = [p for c in spec.get("containers", []) for p in c.get("ports", []) if p.get("hostPort")]
    if host_ports:   # published by the sandbox: a change re-creates it (absent, hashes stay as they were)
        found["hostPorts"] = host_ports
    return found


def desired_pod(pod: models.Pod, *, source: str) -> DesiredPod:
    """Hash a valid pod and give it its UID (the manifest's `metadata.uid` if it sets one)."""
    spec = pod.spec.to_dict()
    containers = {c["name"]: spec_hash(c) for c in spec.get("containers", [])}
    for c in spec.get("initContainers", []):
        containers[c["name"]] = spec_hash(c)
    sandbox_hash = spec_hash(sandbox_spec(spec))
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


def _asks(value: Any) -> bool:
    """Whether a field's value asks for anything: absent, null, false, empty text, list or map do not."""
    return value is not None and value is not False and value not in ("", [], {})


def _field_issues(model: models.K8sModel, path: str, warnings: list[FieldIssue], errors: list[FieldIssue]) -> None:
    """Warnings and refusals for the fields of `model` (and of the models inside it), by the field table.

    A field the model does not carry is reported by its table entry, or as unknown (a typo, or a
    field of another kind); a field it carries is reported when its entry is not `implemented`
    and the manifest sets it to something that asks for anything.
    """
    type_name = type(model).__name__
    for key, value in (model.model_extra or {}).items():
        where = f"{path}.{key}" if path else key
        entry = fieldsupport.lookup(type_name, key)
        if entry is None:
            warnings.append(FieldIssue(where, "unknown field; ignored"))
        elif entry.status == fieldsupport.REFUSED:
            errors.append(FieldIssue(where, fieldsupport.refusal(entry)))
        elif _asks(value):
            warnings.append(FieldIssue(where, entry.note if entry.status == fieldsupport.WARNED
                                       else "not implemented yet; ignored"))
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        wire = info.alias or name
        where = f"{path}.{wire}" if path else wire
        entry = fieldsupport.lookup(type_name, wire)
        if entry is not None and entry.status != fieldsupport.IMPLEMENTED and name in model.model_fields_set \
                and _asks(value):
            if entry.status == fieldsupport.REFUSED:
                errors.append(FieldIssue(where, fieldsupport.refusal(entry)))
            else:
                warnings.append(FieldIssue(where, entry.note))
        if isinstance(value, models.K8sModel) and not isinstance(value, models.PodStatus):
            _field_issues(value, where, warnings, errors)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, models.K8sModel):
                    _field_issues(item, f"{where}[{i}]", warnings, errors)


def _meaningful_values(pod: models.Pod) -> list[FieldIssue]:
    """Warnings for values with a meaning to the kubelet that kubelite does not act on: its
    annotations (AppArmor, seccomp) and resources other than cpu and memory."""
    found: list[FieldIssue] = []
    for key in pod.metadata.annotations:
        support = fieldsupport.annotation_support(key)
        if support is not None and support[0] != fieldsupport.IMPLEMENTED:
            found.append(FieldIssue(f"metadata.annotations[{names.shown(key, limit=64)}]", support[1]))
    for group, containers in (("initContainers", pod.spec.init_containers), ("containers", pod.spec.containers)):
        for i, c in enumerate(containers):
            for kind, values in (("limits", c.resources.limits), ("requests", c.resources.requests)):
                for name in values:
                    note = fieldsupport.resource_note(name, kind)
                    if note is not None:
                        found.append(FieldIssue(f"spec.{group}[{i}].resources.{kind}[{names.shown(name, limit=64)}]",
                                                note))
    return found


def _unknown_fields(model: models.K8sModel, path: str) -> list[FieldIssue]:
    """Warnings for the fields of a ConfigMap or Secret (outside the Pod field table)."""
    warnings: list[FieldIssue] = []
    _field_issues(model, path, warnings, [])
    return warnings


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


#: The kinds kubelite runs, each with its decoder: add a line to run another kind. A document of
#: any other kind is ignored with a warning that names it.
RUN_KINDS: dict[str, Callable[..., Decoded]] = {
    "Pod": _decode_pod,
    "ConfigMap": _decode_config,
    "Secret": _decode_config,
    claims.CLAIM: _decode_config,
    claims.STORAGE_CLASS: _decode_config,
}
