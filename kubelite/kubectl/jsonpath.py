"""kubectl's JSONPath templates (`-o jsonpath=…`, the cells of `-o custom-columns`).

Owns: parsing and running the dialect of client-go's `util/jsonpath`, the one kubectl users type:
text outside braces printed as it is; inside braces `.field`, `['field']`, `\\.` in a field name,
`$` and `@`, `[*]` and `.*`, `[i]`, `[-1]`, `[a:b:step]`, `[i,j]` and `['a','b']`, `..field`
(recursive descent), filters `[?(@.x=="y")]` (`==`, `!=`, `<`, `<=`, `>`, `>=`, or `[?(@.x)]`
for presence), string literals `{"\\n"}`, and `{range …}…{end}`. A missing key prints nothing
(kubectl runs templates with missing keys allowed); several results of one expression are
joined by a space; strings print as they are, maps and lists as compact JSON. The JSONPath
libraries on PyPI implement the RFC/Goessner syntax, not these templates, hence this module.
Pure; standard library only.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple, Union


class JSONPathError(ValueError):
    """A template that cannot be parsed."""


class Text(NamedTuple):
    text: str


class Path(NamedTuple):
    steps: tuple[tuple[Any, ...], ...]


class Range(NamedTuple):
    path: Path
    body: tuple["Node", ...]


Node = Union[Text, Path, Range]
_MISSING = object()
_FIELD_END = set(".[]{}()@$ \t\n=!<>,'\"|&")
_OPERATORS = ("==", "!=", "<=", ">=", "<", ">")


def parse(template: str) -> tuple[Node, ...]:
    """The template's nodes; JSONPathError names what is wrong and where."""
    tokens = _actions(template)
    nodes, rest = _block(tokens, 0, template, top=True)
    assert rest == len(tokens)
    return nodes


def render(template: str | tuple[Node, ...], data: Any) -> str:
    """The template run on `data` (a v1 object or list, as JSON decodes it)."""
    nodes = parse(template) if isinstance(template, str) else template
    return "".join(_run(nodes, data, data))


def find(nodes: tuple[Node, ...], data: Any) -> list[Any]:
    """The values of a template's expressions (custom-columns' cells), literal text left out."""
    found: list[Any] = []
    for node in nodes:
        if isinstance(node, Path):
            found.extend(_walk(node, [data], data))
        elif isinstance(node, Range):
            for item in _walk(node.path, [data], data):
                found.extend(find(node.body, item))
    return found


def format_value(value: Any) -> str:
    """One result as client-go prints it: text as it is, maps and lists as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


# ----------------------------------------------------------------------------- parsing


def _actions(template: str) -> list[tuple[str, str, int]]:
    """("text", …) and ("action", …) pieces with their offsets; braces in quotes do not count."""
    pieces: list[tuple[str, str, int]] = []
    i = 0
    while i < len(template):
        start = template.find("{", i)
        if start < 0:
            pieces.append(("text", template[i:], i))
            break
        if start > i:
            pieces.append(("text", template[i:start], i))
        j, quote, depth = start + 1, "", 0
        while j < len(template):
            ch = template[j]
            if quote:
                if ch == "\\":
                    j += 1
                elif ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch == "[":
                depth += 1
            elif ch == "]":
                depth -= 1
            elif ch == "}" and depth <= 0:
                break
            j += 1
        else:
            raise JSONPathError(f"unclosed action at column {start + 1}: {template[start:]!r}")
        pieces.append(("action", template[start + 1:j].strip(), start))
        i = j + 1
    return pieces


def _block(tokens: list[tuple[str, str, int]], i: int, template: str, *, top: bool) -> tuple[tuple[Node, ...], int]:
    nodes: list[Node] = []
    while i < len(tokens):
        kind, text, offset = tokens[i]
        i += 1
        if kind == "text":
            nodes.append(Text(text))
        elif text == "end":
            if top:
                raise JSONPathError(f"{{end}} without {{range}} at column {offset + 1}")
            return tuple(nodes), i
        elif text.startswith("range ") or text.startswith("range\t"):
            path = _path(text[6:].strip(), offset)
            body, i = _block(tokens, i, template, top=False)
            nodes.append(Range(path, body))
        elif text[:1] in "\"'":
            nodes.append(Text(_unquote(text, offset)))
        elif text:
            nodes.append(_path(text, offset))
    if not top:
        raise JSONPathError("{range} without {end}")
    return tuple(nodes), i


def _unquote(text: str, offset: int) -> str:
    if len(text) < 2 or text[-1] != text[0]:
        raise JSONPathError(f"unterminated string at column {offset + 1}: {text}")
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)), body)


def _path(text: str, offset: int) -> Path:
    steps: list[tuple[Any, ...]] = []
    i = 0
    if text[:1] in ("$", "@"):
        steps.append(("root",) if text[0] == "$" else ("current",))
        i = 1
    while i < len(text):
        ch = text[i]
        if ch in " \t":
            i += 1
        elif text.startswith("..", i):
            steps.append(("descend",))
            i += 1          # the next '.' reads the field
            if i + 1 < len(text) and text[i + 1] == "[":
                i += 1
        elif ch == ".":
            name, i = _field(text, i + 1)
            if name == "*":
                steps.append(("wild",))
            elif name:
                steps.append(("field", name))
        elif ch == "[":
            close = _closing_bracket(text, i, offset)
            steps.append(_bracket(text[i + 1:close].strip(), offset + i))
            i = close + 1
        else:
            name, i = _field(text, i)
            if not name:
                raise JSONPathError(f"unrecognized character in action at column {offset + i + 2}: {ch!r}")
            steps.append(("wild",) if name == "*" else ("field", name))
    return Path(tuple(steps))


def _field(text: str, i: int) -> tuple[str, int]:
    name = ""
    while i < len(text) and text[i] not in _FIELD_END:
        if text[i] == "\\" and i + 1 < len(text):
            name += text[i + 1]
            i += 2
            continue
        name += text[i]
        i += 1
    return name, i


def _closing_bracket(text: str, i: int, offset: int) -> int:
    quote, depth = "", 0
    for j in range(i, len(text)):
        ch = text[j]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return j
    raise JSONPathError(f"unterminated array at column {offset + i + 2}")


_SLICE = re.compile(r"(-?\d*)\s*:\s*(-?\d*)\s*(?::\s*(-?\d*))?\Z")


def _bracket(inner: str, offset: int) -> tuple[Any, ...]:
    if inner == "*":
        return ("wild",)
    if inner.startswith("?"):
        body = inner[1:].strip()
        if not (body.startswith("(") and body.endswith(")")):
            raise JSONPathError(f"invalid filter at column {offset + 2}: [{inner}]")
        return _filter(body[1:-1].strip(), offset)
    parts = _split_commas(inner)
    if all(p[:1] in "\"'" for p in parts):
        return ("fields", tuple(_unquote(p, offset) for p in parts))
    match = _SLICE.match(inner)
    if match:
        start, stop, step = (int(g) if g not in (None, "") else None for g in match.groups())
        if step == 0:
            raise JSONPathError(f"step of a slice cannot be 0 at column {offset + 2}")
        return ("slice", start, stop, step)
    try:
        return ("indices", tuple(int(p) for p in parts))
    except ValueError:
        raise JSONPathError(f"invalid array index at column {offset + 2}: [{inner}]") from None


def _split_commas(text: str) -> list[str]:
    parts, current, quote = [], "", ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == ",":
            parts.append(current.strip())
            current = ""
            continue
        current += ch
    parts.append(current.strip())
    return parts


def _filter(expression: str, offset: int) -> tuple[Any, ...]:
    quote = ""
    for i, ch in enumerate(expression):
        if quote:
            if ch == quote:
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
            continue
        for op in _OPERATORS:
            if expression.startswith(op, i):
                left, right = expression[:i].strip(), expression[i + len(op):].strip()
                return ("filter", _path(left, offset), op, _operand(right, offset))
    return ("filter", _path(expression, offset), "exists", None)


def _operand(text: str, offset: int) -> tuple[str, Any]:
    if text[:1] in "\"'":
        return ("literal", _unquote(text, offset))
    if text[:1] in "@$":
        return ("path", _path(text, offset))
    for kind in (int, float):
        try:
            return ("literal", kind(text))
        except ValueError:
            pass
    if text in ("true", "false"):
        return ("literal", text == "true")
    raise JSONPathError(f"invalid filter operand at column {offset + 2}: {text}")


# ----------------------------------------------------------------------------- running


def _run(nodes: tuple[Node, ...], data: Any, root: Any) -> list[str]:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, Text):
            out.append(node.text)
        elif isinstance(node, Range):
            for item in _walk(node.path, [data], root):
                out.extend(_run(node.body, item, root))
        else:
            out.append(" ".join(format_value(v) for v in _walk(node, [data], root)))
    return out


def _walk(path: Path, values: list[Any], root: Any) -> list[Any]:
    for step in path.steps:
        values = [found for value in values for found in _step(step, value, root)]
    return values


def _step(step: tuple[Any, ...], value: Any, root: Any) -> list[Any]:
    kind = step[0]
    if kind == "root":
        return [root]
    if kind == "current":
        return [value]
    if kind == "field":
        return [value[step[1]]] if isinstance(value, dict) and step[1] in value else []
    if kind == "fields":
        return [value[k] for k in step[1] if isinstance(value, dict) and k in value]
    if kind == "wild":
        if isinstance(value, dict):
            return [value[k] for k in sorted(value)]
        return list(value) if isinstance(value, list) else []
    if kind == "descend":
        return _descendants(value)
    if kind == "indices":
        if not isinstance(value, list):
            return []
        return [value[i] for i in step[1] if -len(value) <= i < len(value)]
    if kind == "slice":
        return value[slice(*step[1:])] if isinstance(value, list) else []
    if kind == "filter":
        items = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
        return [item for item in items if _keeps(step, item, root)]
    raise AssertionError(kind)


def _descendants(value: Any) -> list[Any]:
    out = [value]
    children = [value[k] for k in sorted(value)] if isinstance(value, dict) else \
        value if isinstance(value, list) else []
    for child in children:
        out.extend(_descendants(child))
    return out


def _keeps(step: tuple[Any, ...], item: Any, root: Any) -> bool:
    _, left_path, op, operand = step
    lefts = _walk(left_path, [item], root)
    if op == "exists":
        return bool(lefts)
    kind, right = operand
    rights = _walk(right, [item], root) if kind == "path" else [right]
    return any(_compare(left, op, r) for left in lefts for r in rights)


def _compare(left: Any, op: str, right: Any) -> bool:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right))
    if op in ("==", "!="):
        equal = left == right if numbers or type(left) is type(right) else format_value(left) == format_value(right)
        return equal if op == "==" else not equal
    if not numbers:
        return False
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
