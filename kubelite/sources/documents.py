"""The documents of a manifest file: its text parsed as JSON or YAML the way Kubernetes reads YAML
(as JSON: no timestamps, keys that are numbers become strings, no binary, sets or NaN), bounded
against alias bombs and deep nesting, with the line of any field for messages.

Owns: `Unusable` (a file or document that cannot be used, and where), `parse_documents`,
`as_json`, `refuse_alias_bombs` and `LineFinder`. Reads no files: `manifests` hands it the text.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import yaml

from kubelite.errors import ManifestError

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """The safe loader, except that timestamps stay strings: Kubernetes reads YAML as JSON, where
    `2001-01-01` is text, and a date object has no place in a Pod."""


YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}

#: Deeper documents are refused; real Kubernetes objects stay far below, a self-referencing alias does not.
MAX_NESTING = 100
#: Values a file may have beyond one per character of text before its aliases count as a bomb.
SPARE_VALUES = 1000

_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE  # the characters YAML refuses, as PyYAML defines them
_QUOTED_NAME = re.compile(r"""\b(tag|alias|anchor|character) (?:'[^']*'|"[^"]*")""")  # PyYAML quoting the file
_PATH_STEP = re.compile(r"\[([0-9]+)\]|([^.\[\]]+)")


class Unusable(ManifestError):
    """A file (or one of its documents) that cannot be used, and where."""

    def __init__(self, message: str, *, document: int | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.document = document
        self.line = line


def decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise Unusable(f"not UTF-8 text (byte {exc.start + 1})", line=data.count(b"\n", 0, exc.start) + 1) from None


def parse_documents(text: str, *, json_file: bool) -> list[Any]:
    """Every document of the file, `None` for an empty one (kept so documents keep their numbers)."""
    return _json_documents(text) if json_file else _yaml_documents(text)


def _json_documents(text: str) -> list[Any]:
    if not text.strip():
        return []
    try:
        return [json.loads(text)]
    except json.JSONDecodeError as exc:
        raise Unusable(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", line=exc.lineno) from None
    except RecursionError:
        raise Unusable("invalid JSON: nested too deeply") from None
    except ValueError:  # e.g. an integer of more than 4,300 digits
        raise Unusable("invalid JSON: a number too large to read") from None


def _yaml_documents(text: str) -> list[Any]:
    bad = _NON_PRINTABLE.search(text)
    if bad:
        line, column = _line_column(text, bad.start())
        raise Unusable(f"invalid YAML: control characters are not allowed (line {line}, column {column})", line=line)
    try:
        documents = list(yaml.load_all(text, Loader=YamlLoader))
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc) from None
    except yaml.YAMLError:
        raise Unusable("invalid YAML") from None
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
        # a tagged scalar that is not what its tag says (!!int abc, !!bool maybe, a 5,000-digit int)
        raise Unusable("invalid YAML: a value does not match its type") from None
    return documents


def as_json(value: Any, document: int, where: str = "") -> Any:
    """The document as JSON data, as Kubernetes reads YAML: mapping keys that are numbers or
    booleans become strings; what JSON cannot hold (binary, sets, NaN, infinity) is refused."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Unusable(f"{where or 'the document'}: text that is not valid Unicode (a lone surrogate)",
                            document=document) from None
        return value
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise Unusable(f"{where or 'the document'}: a number that JSON cannot hold (NaN or infinity)",
                            document=document)
        return value
    if isinstance(value, list):
        return [as_json(item, document, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, bool):
                key = "true" if key else "false"
            elif isinstance(key, (int, float)) or key is None:
                key = "null" if key is None else str(key)
            elif not isinstance(key, str):
                raise Unusable(f"{where or 'the document'}: a mapping key that is not text", document=document)
            out[key] = as_json(item, document, f"{where}.{key}" if where else key)
        return out
    raise Unusable(f"{where or 'the document'}: a {type(value).__name__} value (binary data or a set) has no "
                    "place in a Kubernetes object", document=document)


def _yaml_error(exc: yaml.MarkedYAMLError) -> Unusable:
    """PyYAML's own message quotes the offending line; this one names the rule and the place only."""
    what = ": ".join(_QUOTED_NAME.sub(r"\1", part) for part in (exc.context, exc.problem) if part) or "syntax error"
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return Unusable(f"invalid YAML: {what}")
    return Unusable(f"invalid YAML: {what} (line {mark.line + 1}, column {mark.column + 1})", line=mark.line + 1)


def _line_column(text: str, index: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


def refuse_alias_bombs(documents: list[Any], text_length: int) -> None:
    """Refuse documents that YAML aliases blow up, or make refer to themselves.

    Without aliases a file has fewer values than characters, so a walk that meets more values than
    that (plus a margin) has met an alias bomb; a self-reference nests without end and is stopped
    by the depth limit. Either would hang or crash the decoding.
    """
    budget = text_length + SPARE_VALUES
    for index, document in enumerate(documents, 1):
        stack: list[tuple[Any, int]] = [(document, 1)]
        while stack:
            value, depth = stack.pop()
            budget -= 1
            if budget < 0:
                raise Unusable("YAML aliases expand to more values than the file has characters; refused",
                                document=index)
            if depth > MAX_NESTING:
                raise Unusable(f"nested more than {MAX_NESTING} levels deep (or an alias refers to itself); "
                                "refused", document=index)
            children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
            stack.extend((child, depth + 1) for child in children)


class LineFinder:
    """Lines of fields, from the documents' node trees; the file is composed only when first asked."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._documents: list[yaml.Node] | None = None

    def line(self, document: int, path: str) -> int | None:
        if self._documents is None:
            try:  # JSON is YAML, so this locates fields of .json files too
                self._documents = list(yaml.compose_all(self._text, Loader=YamlLoader))
            except yaml.YAMLError:
                self._documents = []
        if document > len(self._documents):
            return None
        return _field_line(self._documents[document - 1], path)


def _field_line(node: yaml.Node, path: str) -> int:
    """1-based line of the field at `path` (`spec.containers[1].name`), or of its nearest existing parent."""
    line = node.start_mark.line
    steps: list[str | int] = [int(index) if index else key for index, key in _PATH_STEP.findall(path)]
    while steps:
        found = _step_down(node, steps)
        if found is None:
            break
        node, line, used = found
        steps = steps[used:]
    return line + 1


def _step_down(node: yaml.Node, steps: list[str | int]) -> tuple[yaml.Node, int, int] | None:
    """The node the first of `steps` leads to, the line naming it, and how many steps that took."""
    step = steps[0]
    if isinstance(step, int):
        if isinstance(node, yaml.SequenceNode) and step < len(node.value):
            item = node.value[step]
            return item, item.start_mark.line, 1
        return None
    if not isinstance(node, yaml.MappingNode):
        return None
    keys = list(itertools.takewhile(lambda s: isinstance(s, str), steps))
    for used in range(1, len(keys) + 1):  # a key may itself hold dots: labels["app.kubernetes.io/name"]
        wanted = ".".join(str(key) for key in keys[:used])
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == wanted:
                return value, key.start_mark.line, used
    return None
