"""`kubectl get nodes`: the cells of one Node row, as kubectl's printNode.

Owns: STATUS from the Ready condition (`Ready`, `NotReady`, else `Unknown`), ROLES, AGE, VERSION
and the `-o wide` cells (addresses, OS image, kernel, container runtime). Pure; standard library only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubelite.kubectl.common import age


def node_cells(node: dict[str, Any], now: datetime) -> list[Any]:
    """NAME, STATUS, ROLES, AGE, VERSION, INTERNAL-IP, EXTERNAL-IP, OS-IMAGE, KERNEL-VERSION and
    CONTAINER-RUNTIME of a Node that kubelite made (every field present)."""
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    ready = {"True": "Ready", "False": "NotReady"}.get(conditions.get("Ready", ""), "Unknown")
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    info = node["status"]["nodeInfo"]
    return [node["metadata"]["name"], ready, "<none>", age(node["metadata"]["creationTimestamp"], now),
            info["kubeletVersion"], addresses.get("InternalIP", "<none>"), addresses.get("ExternalIP", "<none>"),
            info["osImage"], info["kernelVersion"], info["containerRuntimeVersion"]]
