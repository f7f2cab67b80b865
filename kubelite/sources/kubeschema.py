"""Manifests checked against the official Kubernetes OpenAPI schema of one version.

Owns: which Kubernetes versions can be checked (the schemas the `kubernetes-validate` package
carries, one per minor version), picking one from what the user wrote (`1.32`, `v1.32.4`), and
turning every schema violation of a document into a `ManifestProblem` located like kubelite's
own ones: file, document (and the object, `Pod/web`), line, field path and the rule, as the API
server names it (`Required value`, `unknown field`, `Invalid value`). The strict schemas are used:
a field the API server does not know is an error, as with `kubectl apply`'s default
`--validate=strict`.

`kubernetes-validate` (and jsonschema under it) is imported by `KubernetesSchema` itself, never at
the import of this module: only `kubelite validate --kubernetes` pays for it. Reads the files it
is given; messages never echo a value of the manifest (it may hold secrets), only its type.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubelite.errors import UsageError
from kubelite.sources.documents import LineFinder, Unusable, as_json, decode_text, parse_documents, refuse_alias_bombs
from kubelite.sources.manifests import MAX_MANIFEST_BYTES, ManifestProblem

#: The version checked when none is given: the kubectl this project is tested with.
DEFAULT_VERSION = "1.32"

_VERSION = re.compile(r"v?([0-9]+)\.([0-9]+)(?:\.[0-9]+)?\Z")
_KIND = re.compile(r"[A-Za-z][A-Za-z0-9]*\Z")
_API_VERSION = re.compile(r"(?:([a-z0-9][a-z0-9.-]*)/)?(v[0-9]+(?:(?:alpha|beta)[0-9]+)?)\Z")
_JSON_TYPES = {"string": "text", "integer": "an integer", "number": "a number", "boolean": "true or false",
               "object": "a mapping", "array": "a list", "null": "null"}


def available_versions() -> list[str]:
    """The minor versions whose schemas are installed, oldest first (`1.25`, …)."""
    from kubernetes_validate import utils

    minors = {".".join(version.split(".")[:2]) for version in utils.all_versions()}
    return sorted(minors, key=lambda v: tuple(int(part) for part in v.split(".")))


def pick_version(text: str | None) -> str:
    """The minor version to check against, from `--kubernetes[=VERSION]`; a UsageError naming the
    versions there are when `text` is not one of them."""
    if not text:
        text = DEFAULT_VERSION
    match = _VERSION.match(text.strip())
    versions = available_versions()
    shown = ", ".join(versions)
    if not match:
        raise UsageError(f"--kubernetes={text}: not a Kubernetes version (such as {DEFAULT_VERSION}); "
                         f"schemas available: {shown}")
    minor = f"{int(match.group(1))}.{int(match.group(2))}"
    if minor not in versions:
        raise UsageError(f"--kubernetes={text}: no schema for Kubernetes {minor} here; schemas available: {shown}")
    return minor


@dataclass(frozen=True)
class _Found:
    validator: Any | None      # a jsonschema validator, or None when the kind has no schema
    why: str = ""
    error: bool = False        # no schema, in a group of Kubernetes' own: the kind does not exist


class KubernetesSchema:
    """The strict schemas of one Kubernetes minor version, each kind's validator built once."""

    def __init__(self, version: str) -> None:
        import jsonschema
        from kubernetes_validate import utils
        from referencing import Registry, Resource

        self.version = version
        full = next(v for v in utils.all_versions() if ".".join(v.split(".")[:2]) == version)
        self._directory = f"kubernetes-json-schema/v{full}-local-strict"
        self._utils = utils
        self._jsonschema = jsonschema
        self._resource = Resource
        definitions = utils.schema_contents(f"{self._directory}/_definitions.json", version)
        self._registry = Resource.from_contents(definitions) @ Registry()
        self._validators: dict[tuple[str, str], _Found] = {}

    def _validator(self, kind: str, api_version: str) -> _Found:
        key = (kind, api_version)
        if key not in self._validators:
            self._validators[key] = self._load(kind, api_version)
        return self._validators[key]

    def _load(self, kind: str, api_version: str) -> _Found:
        match = _API_VERSION.match(api_version)
        if not _KIND.match(kind) or not match:
            return _Found(None, f"no schema for kind {kind!r} of apiVersion {api_version!r}", error=True)
        group, version = match.group(1) or "", match.group(2)
        short_group = group.split(".")[0]
        name = f"{kind.lower()}-{short_group + '-' if short_group else ''}{version}.json"
        try:
            schema = self._utils.schema_contents(f"{self._directory}/{name}", self.version)
        except (FileNotFoundError, self._utils.VersionNotSupportedError):
            schema = None
        gvk = {"group": group, "kind": kind, "version": version}
        if not isinstance(schema, dict) or gvk not in schema.get("x-kubernetes-group-version-kind", []):
            if _built_in(group):   # the API server would answer: no matches for kind … in version …
                return _Found(None, f"Kubernetes {self.version} has no kind {kind} in apiVersion {api_version}",
                              error=True)
            return _Found(None, f"{kind} of apiVersion {api_version} is not a kind of Kubernetes {self.version} "
                                "(a custom resource's schema is its cluster's)")
        registry = self._resource.from_contents(schema) @ self._registry
        return _Found(self._jsonschema.validators.Draft202012Validator(schema, registry=registry))

    def check_object(self, data: Any) -> tuple[list[tuple[str, str]], str | None]:
        """The problems of one object as (field path, message), and a reason when it could not be
        checked at all (a kind the version does not have): that is the caller's warning."""
        if not isinstance(data, dict):
            return [("", "a Kubernetes object must be a mapping")], None
        kind, api_version = data.get("kind"), data.get("apiVersion")
        missing = [(field, "Required value") for field, value in (("apiVersion", api_version), ("kind", kind))
                   if not isinstance(value, str) or not value]
        if missing:
            return missing, None
        found = self._validator(kind, api_version)
        if found.validator is None:
            return ([("kind", found.why)], None) if found.error else ([], found.why)
        problems = []
        for error in found.validator.iter_errors(data):
            problems.extend(_describe(error))
        return sorted(set(problems), key=_path_order), None


def _built_in(group: str) -> bool:
    """Whether an API group is Kubernetes' own (`""`, `apps`, `storage.k8s.io`), not a custom resource's."""
    return "." not in group or group.endswith(".k8s.io")


def _path_order(problem: tuple[str, str]) -> tuple[list[tuple[int, Any]], str]:
    steps = [(0, int(index)) if index else (1, key) for index, key in re.findall(r"\[([0-9]+)\]|([^.\[\]]+)",
                                                                                 problem[0])]
    return steps, problem[1]


def field_path(steps: Any) -> str:
    """`spec.containers[0].name` from jsonschema's path (`['spec', 'containers', 0, 'name']`)."""
    out = ""
    for step in steps:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def _describe(error: Any) -> list[tuple[str, str]]:
    """An API-server-like message for one jsonschema error, never quoting the manifest's value."""
    path = field_path(error.absolute_path)
    rule = error.validator
    if rule == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed) if isinstance(error.instance, dict) else []
        if extra:
            return [(field_path([*error.absolute_path, key]), "unknown field") for key in extra]
    if rule == "required":
        missing = error.validator_value
        names = [name for name in missing if isinstance(error.instance, dict) and name not in error.instance]
        return [(field_path([*error.absolute_path, name]), "Required value") for name in names]
    if rule == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        wanted = [w for w in wanted if w != "null"] or wanted
        return [(path, f"Invalid value: must be {' or '.join(_JSON_TYPES.get(w, w) for w in wanted)}, "
                       f"not {_json_type(error.instance)}")]
    if rule == "enum":
        values = ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in error.validator_value if v is not None)
        return [(path, f"Unsupported value: supported values: {values}")]
    if rule in ("oneOf", "anyOf") and error.context:
        kinds = sorted({w for sub in error.context if sub.validator == "type"
                        for w in (sub.validator_value if isinstance(sub.validator_value, list)
                                  else [sub.validator_value]) if w != "null"})
        if kinds:
            return [(path, f"Invalid value: must be {' or '.join(_JSON_TYPES.get(w, w) for w in kinds)}, "
                           f"not {_json_type(error.instance)}")]
    if rule in ("format", "pattern"):
        return [(path, f"Invalid value: does not match the {rule} {error.validator_value!r}")]
    if rule in ("minimum", "maximum", "minItems", "maxItems", "minLength", "maxLength"):
        return [(path, f"Invalid value: {rule} {error.validator_value}")]
    return [(path, f"Invalid value: fails the schema's {rule!r} rule")]


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "null"


def check_file(path: Path, name: str, schema: KubernetesSchema) -> tuple[list[ManifestProblem], list[ManifestProblem],
                                                                          int]:
    """(errors, warnings, objects checked) for every object of one manifest file against `schema`.

    A file kubelite cannot read or parse yields nothing here: its own validation reports that. The
    items of a `List` document are checked one by one, located under `items[N]`, as kubectl reads them.
    """
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            return [], [], 0
        text = decode_text(data)
        documents = parse_documents(text, json_file=os.fspath(path).endswith(".json"))
        refuse_alias_bombs(documents, len(text))
        documents = [as_json(doc, i + 1) for i, doc in enumerate(documents)]
    except (OSError, Unusable):
        return [], [], 0
    lines = LineFinder(text)
    errors: list[ManifestProblem] = []
    warnings: list[ManifestProblem] = []
    checked = 0
    for index, document in enumerate(documents, 1):
        if document is None:
            continue
        kind = document.get("kind") if isinstance(document, dict) else None
        items = document.get("items") if isinstance(kind, str) and kind.endswith("List") else None
        objects = [(f"items[{i}]", item) for i, item in enumerate(items)] if isinstance(items, list) else \
            [("", document)]
        for prefix, obj in objects:
            checked += 1
            shown = _object_name(obj)
            problems, unchecked = schema.check_object(obj)
            if unchecked:
                warnings.append(ManifestProblem(name, index, lines.line(index, prefix) if prefix else None,
                                                prefix or None, f"not checked: {unchecked}", object=shown))
            for path, message in problems:
                where = f"{prefix}.{path}" if prefix and path else prefix or path
                errors.append(ManifestProblem(name, index, lines.line(index, where), where or None,
                                              f"{message} (Kubernetes {schema.version} schema)", object=shown))
    return errors, warnings, checked


def _object_name(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    kind = obj.get("kind")
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    parts = [part for part in (kind, name) if isinstance(part, str) and part and part.isprintable()]
    return "/".join(part[:64] for part in parts) or None


__all__ = ["DEFAULT_VERSION", "KubernetesSchema", "available_versions", "check_file", "field_path", "pick_version"]
