"""A pod's QoS class as kubectl computes it when the status has none (k8s.io/kubectl pkg/util/qos).

Owns: nothing of its own — `_quantity` (an exact numerator and denominator) and `_pod_qos`
(status.qosClass when set, else kubelite's one QoS rule) read through `kubelite.api.qos`, loaded
only when `describe` needs them (`get pods` loads no quantities). Pure; standard library only
until called.
"""

from __future__ import annotations

from typing import Any, Mapping

from kubelite.kubectl.common import _dict, _list, _present, _str


def _quantity(value: Any) -> tuple[int, int] | None:
    """A resource quantity as an exact (numerator, denominator) pair; None if invalid."""
    from kubelite.api import qos   # lazily: `get pods` needs no quantities

    amount = qos.amount(value)
    return None if amount is None else (amount.numerator, amount.denominator)


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _requirements(resources: Any) -> Any:
    from kubelite.api import qos

    resources = _dict(resources)
    return qos.Requirements(_dict(resources.get("requests")), _dict(resources.get("limits")))


def _pod_qos(pod: Mapping[str, Any]) -> str:
    """qos.GetPodQOS: status.qosClass when set, else computed by kubelite's one QoS rule."""
    from kubelite.api import qos

    spec, status = _dict(pod.get("spec")), _dict(pod.get("status"))
    if _str(status.get("qosClass")):
        return _str(status.get("qosClass"))
    init = [qos.InitContainer(_requirements(_dict(c).get("resources")), _dict(c).get("restartPolicy") == "Always")
            for c in _list(spec.get("initContainers"))]
    app = [_requirements(_dict(c).get("resources")) for c in _list(spec.get("containers"))]
    return qos.qos_class(app, init, _requirements(spec["resources"]) if _present(spec.get("resources")) else None)
