"""Which Kubernetes Pod fields kubelite knows but does not carry in its models.

Owns: `KNOWN_UNMODELLED`, derived from the field table (`fieldsupport`): for each model class,
the wire names of the fields of its Kubernetes type that the class does not carry. They are
accepted (or refused) and dropped by `decode`, which tells them apart from unknown fields (a
typo, or a field from another kind). Edit the table, not this module.
"""

from __future__ import annotations

from kubelite.api import fieldsupport, models

#: Model classes by the type name the field table uses.
MODEL_TYPES: dict[str, type[models.K8sModel]] = {
    name: cls for name, cls in vars(models).items()
    if isinstance(cls, type) and issubclass(cls, models.K8sModel) and name in fieldsupport.PATHS
}


def _wire_names(cls: type[models.K8sModel]) -> set[str]:
    return {info.alias or name for name, info in cls.model_fields.items()}


#: Wire names of Kubernetes fields that the model class does not carry, by model class.
KNOWN_UNMODELLED: dict[type, frozenset[str]] = {
    cls: frozenset(f.field for f in fieldsupport.FIELDS.values() if f.type == name) - _wire_names(cls)
    for name, cls in MODEL_TYPES.items()
}
