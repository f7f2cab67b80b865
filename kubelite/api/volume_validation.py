"""Kubernetes validation of a pod's volumes, volume mounts and environment sources.

Owns: the rules of `ValidateVolumes`, `ValidateVolumeMounts`, `ValidateEnv` and `ValidateEnvFrom`
(pkg/apis/core/validation) for the parts kubelite implements: emptyDir, hostPath, configMap,
secret, downwardAPI, projected and image volumes; `fsGroupChangePolicy`; readOnly, subPath and
subPathExpr mounts; env `valueFrom` and `envFrom`. Also which projected sources kubelite cannot
serve (no API server issues tokens or certificates here) and the one shape it runs without them:
the `kube-api-access-…` volume clusters inject into every pod (`volume_warnings`).
Purely computational; messages name fields and rules, never values that could be secret.
"""

from __future__ import annotations

import posixpath
import re

from kubelite.api import fieldsupport, names, quantity
from kubelite.api.fieldissues import PULL_POLICIES, FieldIssue, invalid, subdomain
from kubelite.api.models import (
    Container,
    DownwardAPIVolumeFile,
    KeyToPath,
    PodSpec,
    ProjectedVolumeSource,
    ResourceFieldSelector,
)

SUPPORTED_VOLUMES = fieldsupport.supported_volume_types()
FS_GROUP_CHANGE_POLICIES = ("OnRootMismatch", "Always")
#: Projected sources kubelite cannot serve, and why (each needs an API server that signs something).
UNSERVED_PROJECTIONS = {
    "serviceAccountToken": "kubelite runs without an API server, so no service account token can be issued "
                           "(only the kube-api-access volume that clusters inject is accepted, without its token)",
    "clusterTrustBundle": "kubelite runs without an API server, so there are no ClusterTrustBundles to project",
    "podCertificate": "kubelite runs without an API server, so no pod certificate can be signed",
}
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice",
                   "BlockDevice")
EMPTY_DIR_MEDIA = ("", "Memory")
#: fieldRef paths an env var may use (`validEnvDownwardAPIFieldPathExpressions`).
ENV_FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels",
                   "metadata.annotations", "spec.nodeName", "spec.serviceAccountName", "status.hostIP",
                   "status.hostIPs", "status.podIP", "status.podIPs")
#: fieldRef paths a downwardAPI volume file may use (`validVolumeDownwardAPIFieldPathExpressions`).
VOLUME_FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels",
                      "metadata.annotations")
RESOURCES = ("limits.cpu", "limits.memory", "limits.ephemeral-storage", "requests.cpu", "requests.memory",
             "requests.ephemeral-storage")
#: The strict `IsEnvVarName` (before RelaxedEnvironmentVariableValidation): what an envFrom key,
#: after its prefix, must be to become a variable.
ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_SUBSCRIPT = re.compile(r"metadata\.(labels|annotations)\['([^']*)'\]")
MAX_MODE = 0o777
MAX_ID = 2147483647


def _unsupported(path: str, allowed: tuple[str, ...]) -> FieldIssue:
    return FieldIssue(path, "Unsupported value: supported values: " + ", ".join(f'"{v}"' for v in allowed))


def is_env_var_name(name: str) -> bool:
    """The strict `IsEnvVarName`: what envFrom keys must be, after their prefix, to become variables."""
    return bool(ENV_VAR_NAME.fullmatch(name)) and name not in (".", "..") and not name.startswith("..")


def _relative_path(path: str, value: str) -> list[FieldIssue]:
    """A path inside a volume: relative, no '..' element (`validateLocalDescendingPath`)."""
    if not value:
        return [FieldIssue(path, "Required value")]
    if value.startswith("/"):
        return [FieldIssue(path, "Invalid value: must be a relative path")]
    if ".." in value.split("/"):
        return [FieldIssue(path, "Invalid value: must not contain '..'")]
    return []


def _mode(path: str, mode: int | None) -> list[FieldIssue]:
    if mode is not None and not 0 <= mode <= MAX_MODE:
        return [FieldIssue(path, "Invalid value: must be a number between 0 and 0777 (octal), both inclusive")]
    return []


def _file_path(path: str, value: str) -> list[FieldIssue]:
    """A file of a projected volume: a relative path that does not start with '..' (`..data` is kubelite's)."""
    errors = _relative_path(path, value)
    if not errors and value.split("/")[0].startswith(".."):
        errors.append(FieldIssue(path, "Invalid value: must not start with '..'"))
    return errors


def _items(path: str, items: list[KeyToPath]) -> list[FieldIssue]:
    errors: list[FieldIssue] = []
    for i, item in enumerate(items):
        where = f"{path}.items[{i}]"
        if not item.key:
            errors.append(FieldIssue(f"{where}.key", "Required value"))
        else:
            # stricter than Kubernetes (which only requires a key): no object can hold another key
            errors += invalid(f"{where}.key", names.is_config_map_key(item.key))
        errors += _file_path(f"{where}.path", item.path)
        errors += _mode(f"{where}.mode", item.mode)
    return errors


def field_path_issue(path: str, field_path: str, allowed: tuple[str, ...]) -> list[FieldIssue]:
    """A fieldRef's fieldPath: one of `allowed`, or a label/annotation subscript (`metadata.labels['k']`)."""
    if field_path in allowed:
        return []
    match = _SUBSCRIPT.fullmatch(field_path)
    if match and match.group(2) and not names.is_qualified_name(
            match.group(2) if match.group(1) == "labels" else names.go_lower(match.group(2))):
        return []
    return [_unsupported(path, allowed)]


def resource_field_issues(path: str, ref: ResourceFieldSelector, *, need_container: bool) -> list[FieldIssue]:
    errors: list[FieldIssue] = []
    if need_container and not ref.container_name:
        errors.append(FieldIssue(f"{path}.containerName", "Required value"))
    if ref.resource not in RESOURCES:
        errors.append(_unsupported(f"{path}.resource", RESOURCES))
    if ref.divisor is not None:
        try:
            divisor = quantity.parse(ref.divisor)
        except (ValueError, OverflowError):
            divisor = None
        if divisor is None or divisor <= 0:
            errors.append(FieldIssue(f"{path}.divisor", "Invalid value: must be a positive quantity"))
    return errors


def _downward_items(path: str, items: list[DownwardAPIVolumeFile], containers: set[str]) -> list[FieldIssue]:
    errors: list[FieldIssue] = []
    for i, item in enumerate(items):
        where = f"{path}.items[{i}]"
        errors += _file_path(f"{where}.path", item.path)
        errors += _mode(f"{where}.mode", item.mode)
        sources = [s for s in (item.field_ref, item.resource_field_ref) if s is not None]
        if len(sources) != 1:
            errors.append(FieldIssue(where, "Invalid value: fieldRef and resourceFieldRef can not be specified "
                                            "simultaneously" if sources else "Required value: must specify "
                                            "fieldRef or resourceFieldRef"))
        if item.field_ref is not None:
            errors += field_path_issue(f"{where}.fieldRef.fieldPath", item.field_ref.field_path,
                                       VOLUME_FIELD_PATHS)
        if item.resource_field_ref is not None:
            errors += resource_field_issues(f"{where}.resourceFieldRef", item.resource_field_ref,
                                            need_container=True)
            name = item.resource_field_ref.container_name
            if name and name not in containers:
                errors.append(FieldIssue(f"{where}.resourceFieldRef.containerName",
                                         "Not found: no container of this name"))
    return errors


def is_kube_api_access(source: ProjectedVolumeSource) -> bool:
    """The projected volume a cluster's admission injects into every pod (`kube-api-access-…`): a
    token for the API server's own audience, the ConfigMap `kube-root-ca.crt`'s `ca.crt`, and the
    pod's namespace — in any order, nothing else."""
    by_kind = {kinds[0]: s for s in source.sources if len(kinds := s.kinds()) == 1}
    if len(source.sources) != 3 or set(by_kind) != {"serviceAccountToken", "configMap", "downwardAPI"}:
        return False
    token, ca, namespace = (by_kind["serviceAccountToken"].service_account_token, by_kind["configMap"].config_map,
                            by_kind["downwardAPI"].downward_api)
    assert token is not None and ca is not None and namespace is not None
    return (not token.audience and token.path == "token" and ca.name == "kube-root-ca.crt"
            and [(i.key, i.path) for i in ca.items] == [("ca.crt", "ca.crt")]
            and [(f.path, f.field_ref.field_path if f.field_ref else None) for f in namespace.items]
            == [("namespace", "metadata.namespace")])


def _projected(path: str, source: ProjectedVolumeSource, containers: set[str]) -> list[FieldIssue]:
    """`validateProjectionSources`: one kind per source, valid items, no path claimed twice."""
    errors = _mode(f"{path}.defaultMode", source.default_mode)
    claimed: set[str] = set()
    injected = is_kube_api_access(source)

    def claim(file_path: str) -> None:
        if file_path and file_path in claimed:
            errors.append(FieldIssue(path, "Invalid value: conflicting duplicate paths"))
        claimed.add(file_path)

    for i, projection in enumerate(source.sources):
        where = f"{path}.sources[{i}]"
        kinds = projection.kinds()
        if len(kinds) > 1:
            errors.append(FieldIssue(where, "Forbidden: may not specify more than 1 volume type per source"))
            continue
        for field, ref in (("configMap", projection.config_map), ("secret", projection.secret)):
            if ref is None:
                continue
            errors += subdomain(f"{where}.{field}.name", ref.name)
            errors += _items(f"{where}.{field}", ref.items)
            for item in ref.items:
                claim(item.path)
        if projection.downward_api is not None:
            errors += _downward_items(f"{where}.downwardAPI", projection.downward_api.items, containers)
            for file in projection.downward_api.items:
                claim(file.path)
        token = projection.service_account_token
        if token is not None:
            if token.expiration_seconds < 600:
                errors.append(FieldIssue(f"{where}.serviceAccountToken.expirationSeconds",
                                         "Invalid value: may not specify a duration less than 10 minutes"))
            elif token.expiration_seconds > 1 << 32:
                errors.append(FieldIssue(f"{where}.serviceAccountToken.expirationSeconds",
                                         "Invalid value: may not specify a duration larger than 2^32 seconds"))
            if not token.path:
                errors.append(FieldIssue(f"{where}.serviceAccountToken.path", "Required value"))
            else:
                errors += _file_path(f"{where}.serviceAccountToken.path", token.path)
                claim(token.path)
        for kind in kinds:
            if kind in UNSERVED_PROJECTIONS and not injected:
                errors.append(FieldIssue(f"{where}.{kind}", f"Unsupported value: {UNSERVED_PROJECTIONS[kind]}"))
    return errors


def volume_warnings(spec: PodSpec) -> list[FieldIssue]:
    """What the pod's volumes ask for that kubelite accepts but does not do (warnings, not errors)."""
    found = []
    for i, volume in enumerate(spec.volumes):
        if volume.projected is not None and is_kube_api_access(volume.projected):
            index = next(j for j, s in enumerate(volume.projected.sources) if s.service_account_token is not None)
            found.append(FieldIssue(f"spec.volumes[{i}].projected.sources[{index}].serviceAccountToken",
                                    "no token is written: kubelite runs without an API server to issue one; "
                                    "the volume holds namespace, and ca.crt when a ConfigMap kube-root-ca.crt "
                                    "exists"))
    return found


def validate_volumes(spec: PodSpec) -> list[FieldIssue]:
    """Each volume has exactly one source kubelite supports, and that source is valid."""
    errors: list[FieldIssue] = []
    containers = {c.name for c in spec.all_containers()}
    psc = spec.security_context
    if psc is not None and psc.fs_group_change_policy is not None \
            and psc.fs_group_change_policy not in FS_GROUP_CHANGE_POLICIES:
        errors.append(_unsupported("spec.securityContext.fsGroupChangePolicy", FS_GROUP_CHANGE_POLICIES))
    if psc is not None and psc.fs_group is not None and not 0 <= psc.fs_group <= MAX_ID:   # IsValidGroupID
        errors.append(FieldIssue("spec.securityContext.fsGroup",
                                 f"Invalid value: must be between 0 and {MAX_ID}, inclusive"))
    for i, volume in enumerate(spec.volumes):
        path = f"spec.volumes[{i}]"
        sources = volume.sources()
        if not sources:
            errors.append(FieldIssue(path, "Required value: must specify a volume type (kubelite supports "
                                           f"{', '.join(SUPPORTED_VOLUMES)})"))
            continue
        if len(sources) > 1:
            errors.append(FieldIssue(f"{path}.{sources[1]}", "Forbidden: may not specify more than 1 volume type"))
            continue
        if volume.empty_dir is not None:
            if (volume.empty_dir.medium or "") not in EMPTY_DIR_MEDIA:
                errors.append(_unsupported(f"{path}.emptyDir.medium", EMPTY_DIR_MEDIA))
            if volume.empty_dir.size_limit is not None:
                try:
                    if quantity.parse(volume.empty_dir.size_limit) < 0:
                        raise ValueError
                except (ValueError, OverflowError):
                    errors.append(FieldIssue(f"{path}.emptyDir.sizeLimit",
                                             "Invalid value: must be a non-negative quantity such as 64Mi"))
        if volume.host_path is not None:
            if not volume.host_path.path:
                errors.append(FieldIssue(f"{path}.hostPath.path", "Required value"))
            elif ".." in volume.host_path.path.split("/"):
                errors.append(FieldIssue(f"{path}.hostPath.path", "Invalid value: must not contain '..'"))
            if (volume.host_path.type or "") not in HOST_PATH_TYPES:
                errors.append(_unsupported(f"{path}.hostPath.type", HOST_PATH_TYPES))
        for field, source, name in (("configMap", volume.config_map, "name"),
                                    ("secret", volume.secret, "secretName")):
            if source is None:
                continue
            ref = source.name if field == "configMap" else source.secret_name  # type: ignore[union-attr]
            if not ref:
                errors.append(FieldIssue(f"{path}.{field}.{name}", "Required value"))
            else:
                # stricter than Kubernetes (which only requires a name): no object can have another name
                errors += invalid(f"{path}.{field}.{name}", names.is_dns1123_subdomain(ref))
            errors += _items(f"{path}.{field}", source.items)
            errors += _mode(f"{path}.{field}.defaultMode", source.default_mode)
        if volume.persistent_volume_claim is not None:
            claim = volume.persistent_volume_claim.claim_name
            errors += subdomain(f"{path}.persistentVolumeClaim.claimName", claim)
        if volume.downward_api is not None:
            errors += _downward_items(f"{path}.downwardAPI", volume.downward_api.items, containers)
            errors += _mode(f"{path}.downwardAPI.defaultMode", volume.downward_api.default_mode)
        if volume.projected is not None:
            errors += _projected(f"{path}.projected", volume.projected, containers)
        if volume.image is not None:
            reference = volume.image.reference
            if not reference or not reference.strip():
                errors.append(FieldIssue(f"{path}.image.reference", "Required value"))
            elif reference != reference.strip():
                errors.append(FieldIssue(f"{path}.image.reference",
                                         "Invalid value: must not have leading or trailing whitespace"))
            if volume.image.pull_policy is not None and volume.image.pull_policy not in PULL_POLICIES:
                errors.append(_unsupported(f"{path}.image.pullPolicy", PULL_POLICIES))
    return errors


def validate_container_config(c: Container, path: str) -> list[FieldIssue]:
    """volumeMounts (mountPath, subPath) and env sources (valueFrom, envFrom) of one container."""
    errors: list[FieldIssue] = []
    mount_paths: set[str] = set()
    for i, mount in enumerate(c.volume_mounts):
        where = f"{path}.volumeMounts[{i}]"
        if mount.mount_path:
            normal = posixpath.normpath(mount.mount_path)
            if normal in mount_paths:
                errors.append(FieldIssue(f"{where}.mountPath", "Invalid value: must be unique"))
            mount_paths.add(normal)
            if not mount.mount_path.startswith("/"):
                errors.append(FieldIssue(f"{where}.mountPath", "Invalid value: must be an absolute path"))
        if mount.sub_path:
            errors += _relative_path(f"{where}.subPath", mount.sub_path)
        if mount.sub_path_expr:
            if mount.sub_path:
                errors.append(FieldIssue(f"{where}.subPathExpr",
                                         "Invalid value: subPathExpr and subPath are mutually exclusive"))
            errors += _relative_path(f"{where}.subPathExpr", mount.sub_path_expr)
    for i, env in enumerate(c.env):
        source = env.value_from
        if source is None:
            continue
        where = f"{path}.env[{i}].valueFrom"
        set_ = [name for name, value in (("fieldRef", source.field_ref),
                                         ("resourceFieldRef", source.resource_field_ref),
                                         ("configMapKeyRef", source.config_map_key_ref),
                                         ("secretKeyRef", source.secret_key_ref)) if value is not None]
        if len(set_) != 1:
            errors.append(FieldIssue(where, "Invalid value: may not have more than one field specified at a time"
                                            if set_ else "Required value: must specify one of: `fieldRef`, "
                                            "`resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
            continue
        if source.field_ref is not None:
            errors += field_path_issue(f"{where}.fieldRef.fieldPath", source.field_ref.field_path, ENV_FIELD_PATHS)
        if source.resource_field_ref is not None:
            errors += resource_field_issues(f"{where}.resourceFieldRef", source.resource_field_ref,
                                            need_container=False)
        for name, ref in (("configMapKeyRef", source.config_map_key_ref), ("secretKeyRef", source.secret_key_ref)):
            if ref is None:
                continue
            errors += subdomain(f"{where}.{name}.name", ref.name)
            if not ref.key:
                errors.append(FieldIssue(f"{where}.{name}.key", "Required value"))
            else:
                errors += invalid(f"{where}.{name}.key", names.is_config_map_key(ref.key))
    for i, env_from in enumerate(c.env_from):
        where = f"{path}.envFrom[{i}]"
        refs = [r for r in (env_from.config_map_ref, env_from.secret_ref) if r is not None]
        if len(refs) != 1:
            errors.append(FieldIssue(where, "Invalid value: may not have more than one field specified at a time"
                                            if refs else "Required value: must specify one of: `configMapRef` "
                                            "or `secretRef`"))
            continue
        field = "configMapRef" if env_from.config_map_ref is not None else "secretRef"
        if not refs[0].name:
            errors.append(FieldIssue(f"{where}.{field}.name", "Required value"))
        else:
            errors += invalid(f"{where}.{field}.name", names.is_dns1123_subdomain(refs[0].name))
        if env_from.prefix:
            errors += invalid(f"{where}.prefix", names.is_env_var_name(env_from.prefix))
    return errors
