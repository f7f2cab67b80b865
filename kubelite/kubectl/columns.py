"""kubectl's `-o custom-columns=HEADER:PATH,…`.

Owns: parsing the column spec (each path a relaxed JSONPath expression, as kubectl takes it:
`.metadata.name`, `metadata.name` or `{.metadata.name}`) and printing one row per object with
kubectl's rules: several values of one cell joined by commas, none shown as `<none>`, the columns
aligned as kubectl's tables. Pure; standard library only.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from kubelite.kubectl import jsonpath
from kubelite.kubectl.common import _table


class Column(NamedTuple):
    header: str
    nodes: tuple[jsonpath.Node, ...]


def relaxed(expression: str) -> str:
    """kubectl's RelaxedJSONPathExpression: `{.a.b}` from `.a.b`, `a.b` or `{.a.b}`."""
    text = expression.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if not text:
        raise jsonpath.JSONPathError("an empty column path")
    if text[0] not in ".[$@":
        text = "." + text
    return "{" + text + "}"


def parse_spec(spec: str) -> list[Column]:
    """`NAME:.metadata.name,PHASE:.status.phase` → columns; JSONPathError for a bad spec."""
    if not spec.strip():
        raise jsonpath.JSONPathError("custom-columns format specified but no custom columns given")
    columns = []
    for part in spec.split(","):
        header, sep, path = part.partition(":")
        if not sep or not header or not path:
            raise jsonpath.JSONPathError(f"unexpected custom-columns spec: {part}, expected <header>:<json-path-expr>")
        columns.append(Column(header, jsonpath.parse(relaxed(path))))
    return columns


def cell(column: Column, obj: dict[str, Any]) -> str:
    values = [v for v in jsonpath.find(column.nodes, obj) if v is not None]
    if not values:
        return "<none>"
    return ",".join(jsonpath.format_value(v) for v in values)


def format_table(columns: list[Column], objects: list[dict[str, Any]], *, no_headers: bool = False) -> str:
    rows = [[cell(column, obj) for column in columns] for obj in objects]
    return _table([c.header for c in columns], rows, no_headers=no_headers)
