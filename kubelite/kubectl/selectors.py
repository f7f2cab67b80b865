"""`labelSelector` and `fieldSelector` as the API server parses and applies them.

Owns: parsing both selectors into requirements (a parse error is a one-line message: the API
server turns it into a 400 BadRequest, the CLI's `get -l/--field-selector` into an error line),
the field labels each resource supports (as the API server's field label conversion funcs list
them), and matching a v1 object. Shared by the API server and the CLI. Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple

#: Field labels per resource: kubectl uses these; anything else is refused as the API server does.
FIELDS: dict[str, frozenset[str]] = {
    "pods": frozenset({"metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
                       "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                       "status.podIP", "status.podIPs", "status.nominatedNodeName"}),
    "events": frozenset({"metadata.name", "metadata.namespace", "involvedObject.kind",
                         "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                         "involvedObject.apiVersion", "involvedObject.resourceVersion",
                         "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"}),
    "configmaps": frozenset({"metadata.name", "metadata.namespace"}),
    "secrets": frozenset({"metadata.name", "metadata.namespace", "type"}),
    "persistentvolumeclaims": frozenset({"metadata.name", "metadata.namespace"}),
    "persistentvolumes": frozenset({"metadata.name"}),
    "storageclasses": frozenset({"metadata.name"}),
    "nodes": frozenset({"metadata.name", "spec.unschedulable"}),
}


class SelectorError(ValueError):
    """A selector that cannot be parsed or names an unsupported field."""


class Requirement(NamedTuple):
    key: str
    op: str            # = != in notin exists !exists
    values: tuple[str, ...]


_KEY = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")


def _split_top(text: str) -> list[str]:
    """Split at commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_labels(text: str | None) -> list[Requirement]:
    out: list[Requirement] = []
    for part in _split_top(text or ""):
        match = re.match(r"(\S+)\s+(in|notin)\s*\((.*)\)\Z", part, re.ASCII)
        if match:
            key, op, values = match.group(1), match.group(2), match.group(3)
            out.append(Requirement(_key(key), op, tuple(v.strip() for v in values.split(",") if v.strip())))
            continue
        if part.startswith("!"):
            out.append(Requirement(_key(part[1:].strip()), "!exists", ()))
            continue
        for op in ("!=", "==", "="):
            if op in part:
                key, _, value = part.partition(op)
                out.append(Requirement(_key(key.strip()), "!=" if op == "!=" else "=", (value.strip(),)))
                break
        else:
            out.append(Requirement(_key(part), "exists", ()))
    return out


def _key(key: str) -> str:
    if not _KEY.match(key):
        raise SelectorError(f"unable to parse requirement: invalid label key {key!r}")
    return key


def parse_fields(text: str | None, resource: str) -> list[Requirement]:
    out: list[Requirement] = []
    for part in _split_escaped(text or ""):
        key, op, value = _field_term(part)
        if key not in FIELDS.get(resource, frozenset()):
            raise SelectorError(f'field label not supported: {key}')
        out.append(Requirement(key, op, (value,)))
    return out


def _split_escaped(text: str) -> list[str]:
    parts, current, escaped = [], "", False
    for ch in text:
        if escaped:
            current += "\\" + ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


def _field_term(part: str) -> tuple[str, str, str]:
    for op in ("!=", "==", "="):
        index = part.find(op)
        if index > 0:
            value = re.sub(r"\\(.)", r"\1", part[index + len(op):])
            return part[:index].strip(), "!=" if op == "!=" else "=", value
    raise SelectorError(f"invalid selector: '{part}'; can't understand '{part}'")


def labels_match(requirements: list[Requirement], labels: dict[str, str]) -> bool:
    for req in requirements:
        present, value = req.key in labels, labels.get(req.key)
        if req.op == "exists" and not present:
            return False
        if req.op == "!exists" and present:
            return False
        if req.op == "=" and value != req.values[0]:
            return False
        if req.op == "!=" and value == req.values[0]:
            return False
        if req.op == "in" and value not in req.values:
            return False
        if req.op == "notin" and present and value in req.values:
            return False
    return True


def field_value(obj: dict[str, Any], path: str) -> str:
    """A field as the API server compares it: text; booleans as `true`/`false`; missing as ''."""
    if path == "source":
        value: Any = (obj.get("source") or {}).get("component", "")
    elif path == "status.podIPs":
        value = ",".join(ip.get("ip", "") for ip in (obj.get("status") or {}).get("podIPs") or [])
    else:
        value = obj
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def fields_match(requirements: list[Requirement], obj: dict[str, Any]) -> bool:
    for req in requirements:
        equal = field_value(obj, req.key) == req.values[0]
        if equal != (req.op == "="):
            return False
    return True


def matcher(label_selector: str | None, field_selector: str | None,
            resource: str) -> Callable[[dict[str, Any]], bool]:
    """One predicate for both selectors (raises SelectorError on bad input)."""
    labels, fields = parse_labels(label_selector), parse_fields(field_selector, resource)

    def match(obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return labels_match(labels, meta.get("labels") or {}) and fields_match(fields, obj)

    return match
