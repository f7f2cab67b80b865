"""A pod's QoS class as kubectl computes it when the status has none (k8s.io/kubectl pkg/util/qos).

Owns: resource quantities read exactly (`_quantity`, numerator and denominator) and
`_pod_qos` (status.qosClass when set; else pod-level resources, then every container's).
Pure; standard library only.
"""

from __future__ import annotations

from typing import Any, Mapping

from kubelite.kubectl.common import _dict, _list, _str

# ---------------------------------------------------------------------------- quantities

_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def _quantity(value: Any) -> tuple[int, int] | None:
    """A resource quantity as an exact (numerator, denominator) pair; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value, 1
    if isinstance(value, float):
        return value.as_integer_ratio()
    if not isinstance(value, str):
        return None
    text = value.strip()
    end = 1 if text[:1] in ("+", "-") else 0
    while end < len(text) and (text[end] in "0123456789."):
        end += 1
    number, suffix = text[:end], text[end:]
    digits = number.lstrip("+-")
    whole, _, fraction = digits.partition(".")
    if not (whole or fraction) or not (whole + fraction).isdigit() or not (whole + fraction).isascii():
        return None
    numerator = int(whole + fraction) * (-1 if number.startswith("-") else 1)
    denominator = 10 ** len(fraction)
    if suffix in _BINARY_SUFFIXES:
        return numerator * 2 ** _BINARY_SUFFIXES[suffix], denominator
    if suffix in _DECIMAL_SUFFIXES:
        exponent = _DECIMAL_SUFFIXES[suffix]
    elif suffix[:1] in ("e", "E") and suffix[1:].lstrip("+-").isdigit() and suffix[1:].isascii():
        exponent = int(suffix[1:])
    else:
        return None
    if exponent >= 0:
        return numerator * 10**exponent, denominator
    return numerator, denominator * 10**-exponent


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


# ----------------------------------------------------------------------------------- QoS

_QOS_RESOURCES = ("cpu", "memory")


def _requirements_qos(resources: Mapping[str, Any]) -> str:
    """qos.requirementsQOS, with the API server's default of requests to limits."""
    limits, requests = _dict(resources.get("limits")), _dict(resources.get("requests"))
    if not limits and not requests:
        return "BestEffort"
    classes = set()
    for name in _QOS_RESOURCES:
        limit = _quantity(limits.get(name)) if name in limits else None
        request = _quantity(requests.get(name)) if name in requests else limit
        request, limit = request or (0, 1), limit or (0, 1)
        if request[0] * limit[1] != limit[0] * request[1]:
            return "Burstable"
        classes.add("BestEffort" if request[0] == 0 else "Guaranteed")
    return classes.pop() if len(classes) == 1 else "Burstable"


def _pod_qos(pod: Mapping[str, Any]) -> str:
    """qos.GetPodQOS: status.qosClass when set, else computed from the containers."""
    spec, status = _dict(pod.get("spec")), _dict(pod.get("status"))
    if _str(status.get("qosClass")):
        return _str(status.get("qosClass"))
    pod_resources = _dict(spec.get("resources"))
    pod_level = (_dict(pod_resources.get("limits")), _dict(pod_resources.get("requests")))
    if any(name in values for values in pod_level for name in _QOS_RESOURCES):
        return _requirements_qos(pod_resources)
    pod_class = ""
    for container in [*_list(spec.get("initContainers")), *_list(spec.get("containers"))]:
        container_class = _requirements_qos(_dict(_dict(container).get("resources")))
        if container_class == "Burstable":
            return container_class
        if not pod_class:
            pod_class = container_class
        elif pod_class != container_class:
            return "Burstable"
    return pod_class or "BestEffort"
