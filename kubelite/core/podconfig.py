"""What a container's configuration resolves to: its environment, and the files of projected volumes.

Owns the kubelet's rules (`makeEnvironmentVariables`, `podFieldSelectorRuntimeValue`,
`ExtractContainerResourceValue`, the configMap/secret/downwardAPI volume `MakePayload`/`CollectData`)
and its messages:

* `container_env` — `envFrom` first (keys that are not valid variable names skipped, reported as an
  `InvalidEnvironmentVariableNames` warning), then `env` in order with `$(VAR)` expansion from what
  came before; `valueFrom` from ConfigMap/Secret keys, pod fields and container resources. A missing
  object or key that is not `optional` is a `ConfigError` with the kubelet's message
  (`configmap "x" not found`, `couldn't find key k in ConfigMap default/x`): the container then
  waits with CreateContainerConfigError.
* `volume_payload` — the files (path → bytes and mode) a configMap, secret, downwardAPI or
  projected volume holds; a missing object or item key that is not optional is a `ConfigError`;
* `sub_path_from_expr` — a volumeMount's `subPathExpr` expanded from the container's env
  (`ExpandContainerVolumeMounts`): a variable that is missing or empty is an error, and so is a
  result that is absolute or climbs out with `..`.

Purely computational: no clock, no files. ConfigMaps and Secrets arrive as a mapping, the pod's
IPs and the node's allocatable resources as arguments. Messages never hold a value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Mapping, Optional

from kubelite.api import quantity
from kubelite.api.expansion import expand
from kubelite.api.configobjects import ConfigObject
from kubelite.api.models import (
    Container,
    DownwardAPIVolumeFile,
    KeyToPath,
    ObjectFieldSelector,
    Pod,
    ResourceFieldSelector,
    Volume,
)
from kubelite.api.volume_validation import is_env_var_name, is_kube_api_access
from kubelite.errors import ConfigError

#: ConfigMaps and Secrets by (kind, namespace, name).
Configs = Mapping[tuple[str, str, str], ConfigObject]
DEFAULT_MODE = 0o644
_SUBSCRIPT = re.compile(r"metadata\.(labels|annotations)\['([^']*)'\]\Z")


@dataclass(frozen=True)
class NodeAllocatable:
    """What a container without a limit sees as its limit (the kubelet uses the node's allocatable)."""

    cpu_millis: int
    memory_bytes: int
    ephemeral_storage_bytes: int = 0


@dataclass(frozen=True)
class PodFacts:
    """What the environment and the downward API may read besides the spec."""

    uid: str
    node_name: str
    pod_ip: str = ""
    host_ip: str = ""
    node: NodeAllocatable = NodeAllocatable(cpu_millis=1000, memory_bytes=1 << 30)


@dataclass
class ResolvedEnv:
    env: dict[str, str] = field(default_factory=dict)
    warnings: list[tuple[str, str]] = field(default_factory=list)   # (event reason, message)


@dataclass(frozen=True)
class FileProjection:
    data: bytes
    mode: int


# ------------------------------------------------------------------------------ lookups


def _lookup(configs: Configs, kind: str, namespace: str, name: str, *, optional: bool) -> ConfigObject | None:
    found = configs.get((kind, namespace, name))
    if found is None and not optional:
        raise ConfigError(f'{kind.lower()} "{name}" not found', missing=(kind, namespace, name))
    return found


def _string_value(obj: ConfigObject, key: str) -> str | None:
    """A ConfigMap's `data` key (not binaryData, as the kubelet) or a Secret's key, as text."""
    if obj.kind == "ConfigMap":
        value = obj.object.get("data", {}).get(key)
        return value if isinstance(value, str) else None
    raw = obj.values.get(key)
    return raw.decode("utf-8", "replace") if raw is not None else None


# ------------------------------------------------------------------------------ the downward API


def format_map(values: Mapping[str, str]) -> str:
    """Labels or annotations as the downward API writes them: `key="value"` lines, sorted."""
    lines = []
    for key in sorted(values):
        escaped = values[key].replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines)


def field_value(ref: ObjectFieldSelector, pod: Pod, facts: PodFacts) -> str:
    """A pod field, as `fieldRef` reads it (the validation has limited the paths)."""
    meta, path = pod.metadata, ref.field_path
    match = _SUBSCRIPT.match(path)
    if match:
        source = meta.labels if match.group(1) == "labels" else meta.annotations
        return source.get(match.group(2), "")
    simple = {
        "metadata.name": meta.name or "", "metadata.namespace": meta.namespace, "metadata.uid": facts.uid,
        "spec.nodeName": facts.node_name, "spec.serviceAccountName": pod.spec.service_account_name or "",
        "status.podIP": facts.pod_ip, "status.podIPs": facts.pod_ip, "status.hostIP": facts.host_ip,
        "status.hostIPs": facts.host_ip,
    }
    if path in simple:
        return simple[path]
    if path == "metadata.labels":
        return format_map(meta.labels)
    if path == "metadata.annotations":
        return format_map(meta.annotations)
    raise ConfigError(f"unsupported fieldPath: {path}")


def _ceil(value: Fraction) -> int:
    return math.ceil(value)


def resource_value(ref: ResourceFieldSelector, container: Container, node: NodeAllocatable) -> str:
    """`ExtractContainerResourceValue`: a request or limit divided by `divisor`, rounded up.

    A limit that is not set is the node's allocatable amount; a request that is not set is the
    limit when there is one (API defaulting), else 0.
    """
    kind, _, name = ref.resource.partition(".")
    limits, requests = container.resources.limits, container.resources.requests
    divisor = quantity.parse(ref.divisor) if ref.divisor is not None else Fraction(1)
    node_amount = {"cpu": Fraction(node.cpu_millis, 1000), "memory": Fraction(node.memory_bytes),
                   "ephemeral-storage": Fraction(node.ephemeral_storage_bytes)}[name]
    raw = (limits if kind == "limits" else requests).get(name)
    if raw is None and kind == "requests":
        raw = limits.get(name)
    amount = quantity.parse(raw) if raw is not None else (node_amount if kind == "limits" else Fraction(0))
    if name == "cpu":  # MilliValue() / divisor.MilliValue(), rounded up
        millis = _ceil(amount * 1000)
        divisor_millis = max(1, _ceil(divisor * 1000))
        return str(_ceil(Fraction(millis, divisor_millis)))
    return str(_ceil(Fraction(_ceil(amount)) / max(Fraction(1), Fraction(_ceil(divisor)))))


# ------------------------------------------------------------------------------ environment


def sub_path_from_expr(expr: str, env: Mapping[str, str]) -> str:
    """A `subPathExpr` expanded from the container's variables; ConfigError with the kubelet's
    messages when a variable is missing or empty, or the result is not a path inside the volume."""
    missing: set[str] = set()
    expanded = expand(expr, env, missing)
    if missing:
        raise ConfigError(f"missing value for {', '.join(sorted(missing))}")
    if expanded.startswith("/"):
        raise ConfigError(f"error SubPath `{expanded}` must not be an absolute path")
    if ".." in expanded.split("/"):
        raise ConfigError(f"unable to provision SubPath `{expanded}`: must not contain '..'")
    return expanded


def _referenced(configs: Configs, namespace: str, secret_ref: Any,
                config_map_ref: Any) -> tuple[ConfigObject | None, Any, str]:
    """The Secret or the ConfigMap a source names (whichever reference is set), the reference and
    the kind; None for the object when an optional one is absent (ConfigError when a required one is)."""
    secret = secret_ref is not None
    ref = secret_ref if secret else config_map_ref
    assert ref is not None  # validated
    kind = "Secret" if secret else "ConfigMap"
    return _lookup(configs, kind, namespace, ref.name or "", optional=bool(ref.optional)), ref, kind


def container_env(pod: Pod, container: Container, *, configs: Configs, facts: PodFacts) -> ResolvedEnv:
    """The container's variables from `envFrom` and `env` (image defaults are the runtime's)."""
    namespace = pod.metadata.namespace
    result = ResolvedEnv()
    for source in container.env_from:
        obj, ref, kind = _referenced(configs, namespace, source.secret_ref, source.config_map_ref)
        if obj is None:
            continue
        secret = kind == "Secret"
        keys = obj.values if secret else obj.object.get("data", {})
        invalid = []
        for key in keys:
            name = (source.prefix or "") + key
            if not is_env_var_name(name):
                invalid.append(name)
                continue
            result.env[name] = _string_value(obj, key) or ""
        if invalid:
            result.warnings.append(("InvalidEnvironmentVariableNames",
                                    f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom {kind.lower()} "
                                    f"{namespace}/{ref.name} were skipped since they are considered invalid "
                                    "environment variable names."))
    for var in container.env:
        value: Optional[str] = var.value or ""
        source = var.value_from
        if var.value:
            value = expand(var.value, result.env)
        elif source is not None:
            if source.field_ref is not None:
                value = field_value(source.field_ref, pod, facts)
            elif source.resource_field_ref is not None:
                value = resource_value(source.resource_field_ref, container, facts.node)
            else:
                obj, ref, kind = _referenced(configs, namespace, source.secret_key_ref, source.config_map_key_ref)
                if obj is None:
                    continue
                value = _string_value(obj, ref.key)
                if value is None:
                    if ref.optional:
                        continue
                    raise ConfigError(f"couldn't find key {ref.key} in {kind} {namespace}/{ref.name}")
        result.env[var.name] = value or ""
    return result


#: How a pod takes a ConfigMap or Secret (`uses`): the files of a volume (kept current in place), a
#: file of such a volume mounted with subPath (bound once, never updated), or its environment (read
#: when a container is created).
USE_VOLUME, USE_SUBPATH, USE_ENV = "volume", "subPath", "env"


def references(pod: Pod) -> set[tuple[str, str, str]]:
    """Every ConfigMap and Secret the pod refers to, by (kind, namespace, name)."""
    return set(uses(pod))


def uses(pod: Pod) -> dict[tuple[str, str, str], set[str]]:
    """Every ConfigMap and Secret the pod refers to, by (kind, namespace, name), with how it takes
    it (`USE_VOLUME`, `USE_SUBPATH`, `USE_ENV`)."""
    found: dict[tuple[str, str, str], set[str]] = {}
    ns = pod.metadata.namespace
    containers = pod.spec.all_containers()
    for volume in pod.spec.volumes:
        keys = []
        if volume.config_map is not None and volume.config_map.name:
            keys.append(("ConfigMap", ns, volume.config_map.name))
        if volume.secret is not None and volume.secret.secret_name:
            keys.append(("Secret", ns, volume.secret.secret_name))
        for projection in volume.projected.sources if volume.projected is not None else ():
            if projection.config_map is not None and projection.config_map.name:
                keys.append(("ConfigMap", ns, projection.config_map.name))
            if projection.secret is not None and projection.secret.name:
                keys.append(("Secret", ns, projection.secret.name))
        mounts = [m for c in containers for m in c.volume_mounts if m.name == volume.name]
        how = {USE_SUBPATH if m.sub_path or m.sub_path_expr else USE_VOLUME for m in mounts} or {USE_VOLUME}
        for key in keys:
            found.setdefault(key, set()).update(how)
    for c in containers:
        for source in c.env_from:
            if source.config_map_ref is not None:
                found.setdefault(("ConfigMap", ns, source.config_map_ref.name or ""), set()).add(USE_ENV)
            if source.secret_ref is not None:
                found.setdefault(("Secret", ns, source.secret_ref.name or ""), set()).add(USE_ENV)
        for var in c.env:
            if var.value_from is not None:
                if var.value_from.config_map_key_ref is not None:
                    found.setdefault(("ConfigMap", ns, var.value_from.config_map_key_ref.name or ""),
                                     set()).add(USE_ENV)
                if var.value_from.secret_key_ref is not None:
                    found.setdefault(("Secret", ns, var.value_from.secret_key_ref.name or ""), set()).add(USE_ENV)
    return found


# ------------------------------------------------------------------------------ projected volumes


def _key_files(values: Mapping[str, bytes], items: list[KeyToPath], default_mode: int, *, optional: bool,
               secret: bool) -> dict[str, FileProjection]:
    """A ConfigMap's or Secret's keys as files: all of them, or only `items` (`MakePayload`)."""
    if not items:
        return {key: FileProjection(data, default_mode) for key, data in values.items()}
    payload = {}
    for item in items:
        if item.key not in values:
            if optional:
                continue
            what = "secret references non-existent secret key" if secret else \
                "configmap references non-existent config key"
            raise ConfigError(f"{what}: {item.key}")
        payload[item.path] = FileProjection(values[item.key], item.mode if item.mode is not None else default_mode)
    return payload


def _downward_files(pod: Pod, items: list[DownwardAPIVolumeFile], default_mode: int,
                    facts: PodFacts) -> dict[str, FileProjection]:
    containers = {c.name: c for c in pod.spec.all_containers()}
    payload = {}
    for file in items:
        if file.field_ref is not None:
            text = field_value(file.field_ref, pod, facts)
        else:
            ref = file.resource_field_ref
            assert ref is not None
            text = resource_value(ref, containers[ref.container_name or ""], facts.node)
        payload[file.path] = FileProjection(text.encode("utf-8"), file.mode if file.mode is not None else default_mode)
    return payload


def volume_payload(pod: Pod, volume: Volume, *, configs: Configs, facts: PodFacts) -> dict[str, FileProjection]:
    """The files of a configMap, secret, downwardAPI or projected volume: relative path → content and mode."""
    namespace = pod.metadata.namespace
    if volume.config_map is not None or volume.secret is not None:
        secret = volume.secret is not None
        source = volume.secret if secret else volume.config_map
        assert source is not None
        name = volume.secret.secret_name if volume.secret is not None else volume.config_map.name  # type: ignore
        kind = "Secret" if secret else "ConfigMap"
        default_mode = source.default_mode if source.default_mode is not None else DEFAULT_MODE
        obj = _lookup(configs, kind, namespace, name or "", optional=bool(source.optional))
        return _key_files(obj.values if obj is not None else {}, source.items, default_mode,
                          optional=bool(source.optional), secret=secret)
    if volume.downward_api is not None:
        source_d = volume.downward_api
        default_mode = source_d.default_mode if source_d.default_mode is not None else DEFAULT_MODE
        return _downward_files(pod, source_d.items, default_mode, facts)
    if volume.projected is not None:
        # the kubelet's projected `collectData`: each source in order, a later file replacing an earlier one
        default_mode = volume.projected.default_mode if volume.projected.default_mode is not None else DEFAULT_MODE
        injected = is_kube_api_access(volume.projected)   # its CA is there when a ConfigMap holds it
        payload: dict[str, FileProjection] = {}
        for projection in volume.projected.sources:
            if projection.config_map is not None or projection.secret is not None:
                ref = projection.secret or projection.config_map
                assert ref is not None
                secret = projection.secret is not None
                kind = "Secret" if secret else "ConfigMap"
                optional = bool(ref.optional) or injected
                obj = _lookup(configs, kind, namespace, ref.name or "", optional=optional)
                payload.update(_key_files(obj.values if obj is not None else {}, ref.items, default_mode,
                                          optional=optional, secret=secret))
            elif projection.downward_api is not None:
                payload.update(_downward_files(pod, projection.downward_api.items, default_mode, facts))
            # serviceAccountToken (only in the injected shape, validated): no API server, no token file
        return payload
    raise ValueError(f"volume {volume.name} is not a projected volume")


def is_projected(volume: Volume) -> bool:
    """configMap, secret, downwardAPI and projected volumes: their files are written by kubelite and kept current."""
    return (volume.config_map is not None or volume.secret is not None or volume.downward_api is not None
            or volume.projected is not None)

