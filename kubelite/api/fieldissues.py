"""What every validator builds on: `FieldIssue`, `Invalid value` issues, `ValidateObjectMeta`.

Owns: the shape of one problem about one field (`FieldIssue`, printed as kubectl prints it), the
issues of a DNS label or subdomain, `validate_object_meta` (name, namespace, labels, annotations and
uid of a Pod, ConfigMap, Secret or claim) and the value sets more than one validator checks. Purely
computational. It imports no validator, so `validation`, `volume_validation`,
`security_validation`, `configobjects` and `claims` all sit above it without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubelite.api import names
from kubelite.api.models import ObjectMeta

PULL_POLICIES = ("Always", "IfNotPresent", "Never")


@dataclass(frozen=True)
class FieldIssue:
    """One problem (or warning) about one field: `spec.containers[0].name: Required value`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def invalid(path: str, messages: list[str]) -> list[FieldIssue]:
    """One `Invalid value` per broken rule, as the API server reports them."""
    return [FieldIssue(path, "Invalid value: " + m) for m in messages]


def label(path: str, value: str | None, *, required: bool = True) -> list[FieldIssue]:
    """The issues of a DNS-1123 label (`Required value` when empty and required)."""
    if not value:
        return [FieldIssue(path, "Required value")] if required else []
    return invalid(path, names.is_dns1123_label(value))


def subdomain(path: str, value: str | None) -> list[FieldIssue]:
    """The issues of a DNS-1123 subdomain (`Required value` when empty)."""
    if not value:
        return [FieldIssue(path, "Required value")]
    return invalid(path, names.is_dns1123_subdomain(value))


def validate_object_meta(meta: ObjectMeta) -> list[FieldIssue]:
    """`ValidateObjectMeta` for a namespaced object whose name is a DNS subdomain (Pod, ConfigMap,
    Secret): name, namespace, labels and annotations; and the uid, which names directories here."""
    errors: list[FieldIssue] = []
    if not meta.name and meta.generate_name:
        errors.append(FieldIssue("metadata.generateName", "Forbidden: a manifest must set metadata.name"))
    errors += subdomain("metadata.name", meta.name)
    errors += label("metadata.namespace", meta.namespace)
    for key, value in meta.labels.items():
        path = f"metadata.labels[{names.shown(key, limit=40)}]"
        errors += invalid(path, names.is_qualified_name(key))
        errors += invalid(path, names.is_label_value(value))
    for key in meta.annotations:
        errors += invalid(f"metadata.annotations[{names.shown(key, limit=40)}]", names.is_annotation_key(key))
    if names.annotations_size(meta.annotations) > names.TOTAL_ANNOTATION_SIZE:
        errors.append(FieldIssue("metadata.annotations",
                                 f"Too long: may not be more than {names.TOTAL_ANNOTATION_SIZE} bytes"))
    if meta.uid:   # an empty uid is no uid: the kubelet makes one
        errors += invalid("metadata.uid", names.is_uid(meta.uid))
    return errors
