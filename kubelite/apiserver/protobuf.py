"""Just enough of the Kubernetes protobuf encoding to read one request body: a SelfSubjectAccessReview.

kubectl sends `kubectl auth can-i` as `application/vnd.kubernetes.protobuf` and does not retry
as JSON. The body is the 4-byte magic `k8s\\0` and a `runtime.Unknown` message (field 2: the
object's bytes); the review's spec holds `resourceAttributes` (namespace 1, verb 2, group 3,
version 4, resource 5, subresource 6, name 7) or `nonResourceAttributes` (path 1, verb 2).
Pure: bytes in, a JSON-shaped dict out; anything malformed raises ValueError.
"""

from __future__ import annotations

from typing import Any

MAGIC = b"k8s\x00"
_RESOURCE_FIELDS = {1: "namespace", 2: "verb", 3: "group", 4: "version", 5: "resource", 6: "subresource", 7: "name"}
_NON_RESOURCE_FIELDS = {1: "path", 2: "verb"}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def fields(data: bytes) -> dict[int, bytes]:
    """The length-delimited fields of a message (the last one wins); other wire types are skipped."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            out[number] = data[pos:pos + length]
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def access_review(body: bytes) -> dict[str, Any]:
    """A protobuf SelfSubjectAccessReview as the JSON object it stands for."""
    if not body.startswith(MAGIC):
        raise ValueError("not a Kubernetes protobuf message")
    raw = fields(body[len(MAGIC):]).get(2, b"")
    spec_fields = fields(fields(raw).get(2, b""))
    spec: dict[str, Any] = {}
    if 1 in spec_fields:
        spec["resourceAttributes"] = {name: fields(spec_fields[1]).get(n, b"").decode()
                                      for n, name in _RESOURCE_FIELDS.items()}
    if 2 in spec_fields:
        spec["nonResourceAttributes"] = {name: fields(spec_fields[2]).get(n, b"").decode()
                                         for n, name in _NON_RESOURCE_FIELDS.items()}
    return {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1", "spec": spec}
