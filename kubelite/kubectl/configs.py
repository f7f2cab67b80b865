"""kubectl-identical text for ConfigMaps and Secrets: `get configmaps|secrets` and `describe`.

Owns: pure formatting of v1 ConfigMap and Secret dicts, translated from kubectl's printers
(`printConfigMap`, `printSecret`) and describers (`ConfigMapDescriber`, `SecretDescriber`).
A Secret is shown by key names and sizes only, never its values (kubectl shows a
service-account token; kubelite does not). Standard library only, like every `kubectl` module.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from kubelite.kubectl.common import _dict, _str, _table, age, label_text
from kubelite.kubectl.describe import _annotation_lines, _event_lines, _PrefixWriter, _sorted_map_lines


def _secret_sizes(secret: dict[str, Any]) -> dict[str, int]:
    sizes = {}
    for key, value in _dict(secret.get("data")).items():
        try:
            sizes[key] = len(base64.b64decode(_str(value), validate=True))
        except (binascii.Error, ValueError):
            sizes[key] = 0
    return sizes


def format_table(kind: str, objects: list[dict], now: datetime, *, all_namespaces: bool = False,
                 no_headers: bool = False, show_labels: bool = False) -> str:
    """`kubectl get configmaps` (NAME DATA AGE) or `get secrets` (NAME TYPE DATA AGE); LABELS last
    with `show_labels`."""
    headers = ["NAME", "DATA", "AGE"] if kind == "ConfigMap" else ["NAME", "TYPE", "DATA", "AGE"]
    if show_labels:
        headers.append("LABELS")
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    rows = []
    for obj in objects:
        meta = _dict(obj.get("metadata"))
        created = age(meta.get("creationTimestamp"), now)
        if kind == "ConfigMap":
            count = len(_dict(obj.get("data"))) + len(_dict(obj.get("binaryData")))
            cells = [_str(meta.get("name")), str(count), created]
        else:
            cells = [_str(meta.get("name")), _str(obj.get("type")), str(len(_dict(obj.get("data")))), created]
        if show_labels:
            cells.append(label_text(obj))
        if all_namespaces:
            cells.insert(0, _str(meta.get("namespace")))
        rows.append(cells)
    return _table(headers, rows, no_headers=no_headers)


def describe(kind: str, obj: dict, events: list[dict], now: datetime) -> str:
    """`kubectl describe configmap` (data shown, binaryData as sizes) or `describe secret` (sizes only)."""
    meta = _dict(obj.get("metadata"))
    w = _PrefixWriter()
    w.write(0, f"Name:\t{_str(meta.get('name'))}\n")
    w.write(0, f"Namespace:\t{_str(meta.get('namespace'))}\n")
    _sorted_map_lines(w, "Labels", meta.get("labels"))
    _annotation_lines(w, meta.get("annotations"))
    if kind == "Secret":
        w.write(0, f"\nType:\t{_str(obj.get('type'))}\n")
        w.write(0, "\nData\n====\n")
        for key, size in sorted(_secret_sizes(obj).items()):
            w.write(0, f"{key}:\t{size} bytes\n")
        return w.render()
    w.write(0, "\nData\n====\n")
    for key, value in sorted(_dict(obj.get("data")).items()):
        w.write(0, f"{key}:\n----\n")
        w.write(0, f"{_str(value)}\n")
        w.write(0, "\n")
    w.write(0, "\nBinaryData\n====\n")
    for key, value in sorted(_dict(obj.get("binaryData")).items()):
        try:
            size = len(base64.b64decode(_str(value), validate=True))
        except (binascii.Error, ValueError):
            size = 0
        w.write(0, f"{key}: {size} bytes\n")
    w.write(0, "\n")
    _event_lines(w, events, now)
    return w.render()
