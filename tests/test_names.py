"""Names, keys and label values are checked exactly as Kubernetes checks them.

One table for every kind of name a manifest holds (pod, namespace, uid, container, volume, port,
env var, ConfigMap/Secret name and key, label key and value, annotation key): valid at the exact
length limit, refused one character over it, and refused with a trailing newline, surrounding
whitespace, NUL and other control characters, Unicode lookalikes of ASCII letters and digits,
upper case where Kubernetes wants lower case, and when empty, each unless Kubernetes accepts it.
Every case goes through the manifest source (`read_file` of a JSON file), so the file, document
and field of the message are checked too, and every message must be one line of text.

Then the same through the agent on the fake runtime: a manifest with a trailing newline in a
name is reported once, in one line, and nothing of it reaches the store or the disk.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from kubelite.api import names, quantity
from kubelite.sources.gitsync import GitSync, SyncError
from kubelite.sources.manifests import read_file
from kubelite.store.reader import Reader
from tests.simulated import simulated_node

# ------------------------------------------------------------------------------ documents

Doc = dict[str, Any]


def pod(**meta: Any) -> Doc:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", **meta},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]}}


def with_container(**fields: Any) -> Doc:
    doc = pod()
    doc["spec"]["containers"][0].update(fields)
    return doc


def config(kind: str, *, name: str = "cfg", key: str = "k", **meta: Any) -> Doc:
    field = "data" if kind == "ConfigMap" else "stringData"
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, **meta}, field: {key: "v"}}


def plain(key: str) -> bool:
    """Whether a key shows as itself in a field path (else it is quoted as JSON)."""
    return bool(key) and all(" " <= c <= "~" for c in key) and not set(key) & set('[]"\\') and key.strip() == key


def subscript(key: str) -> str:
    """A key as a field path shows it: shortened past 40 characters, quoted unless plain."""
    key = key[:40] + "..." if len(key) > 40 else key
    return key if plain(key) else json.dumps(key)


@dataclass(frozen=True)
class Kind:
    """One kind of name: where it goes in a document, and which of the variants Kubernetes accepts."""

    name: str
    base: str                         # a valid value
    place: Callable[[str], Doc]       # a document with the value in its place
    path: Callable[[str], str]        # the field an error about the value names
    limit: int | None                 # the longest valid value (in ASCII characters)
    upper_ok: bool = False            # upper-case letters allowed
    space_ok: bool = False            # leading/trailing spaces allowed (env var names)
    empty_ok: bool = False            # "" accepted (an unnamed port, the default namespace, no uid, label value)
    kelvin_ok: bool = False           # annotation keys are lower-cased first: the Kelvin sign becomes 'k'
    long: Callable[[int], str] = lambda n: "a" * n


KINDS = [
    Kind("pod name", "web", lambda v: pod(name=v), lambda v: "metadata.name", 253),
    Kind("namespace", "prod", lambda v: pod(namespace=v), lambda v: "metadata.namespace", 63, empty_ok=True),
    Kind("uid", "abc-123", lambda v: pod(uid=v), lambda v: "metadata.uid", 128, upper_ok=True, empty_ok=True),
    Kind("container name", "app", lambda v: with_container(name=v), lambda v: "spec.containers[0].name", 63),
    Kind("volume name", "data",
         lambda v: {**pod(), "spec": {"containers": [{"name": "app", "image": "busybox"}],
                                      "volumes": [{"name": v, "emptyDir": {}}]}},
         lambda v: "spec.volumes[0].name", 63),
    Kind("port name", "http", lambda v: with_container(ports=[{"containerPort": 80, "name": v}]),
         lambda v: "spec.containers[0].ports[0].name", 15, empty_ok=True),
    Kind("env var name", "WEB_PORT", lambda v: with_container(env=[{"name": v, "value": "1"}]),
         lambda v: "spec.containers[0].env[0].name", None, upper_ok=True, space_ok=True),
    Kind("configMapKeyRef key", "key", lambda v: with_container(env=[{"name": "X", "valueFrom": {
        "configMapKeyRef": {"name": "cfg", "key": v}}}]),
         lambda v: "spec.containers[0].env[0].valueFrom.configMapKeyRef.key", 253, upper_ok=True),
    Kind("ConfigMap name", "app-config", lambda v: config("ConfigMap", name=v), lambda v: "metadata.name", 253),
    Kind("Secret name", "db", lambda v: config("Secret", name=v), lambda v: "metadata.name", 253),
    Kind("ConfigMap key", "app.conf", lambda v: config("ConfigMap", key=v), lambda v: f"data[{subscript(v)}]", 253,
         upper_ok=True),
    Kind("Secret key", "password", lambda v: config("Secret", key=v), lambda v: f"stringData[{subscript(v)}]", 253,
         upper_ok=True),
    Kind("label key", "app", lambda v: pod(labels={v: "x"}), lambda v: f"metadata.labels[{subscript(v)}]", 63,
         upper_ok=True),
    Kind("prefixed label key", "example.com/app", lambda v: pod(labels={v: "x"}),
         lambda v: f"metadata.labels[{subscript(v)}]", 253 + 1 + 63,
         upper_ok=False, long=lambda n: "p" * (n - 64) + "/" + "a" * 63),
    Kind("label value", "web", lambda v: pod(labels={"app": v}), lambda v: "metadata.labels[app]", 63,
         upper_ok=True, empty_ok=True),
    Kind("annotation key", "note", lambda v: pod(annotations={v: "x"}),
         lambda v: f"metadata.annotations[{subscript(v)}]", 63, upper_ok=True,
         kelvin_ok=True),
]

#: Characters that must never pass in a name: (label, text put at the end of the valid value).
CONTROL = [("NUL", "\x00"), ("tab", "\t"), ("carriage return", "\r"), ("DEL", "\x7f"), ("NEL", "\u0085"),
           ("line separator", "\u2028"), ("escape", "\x1b")]
LOOKALIKES = [
    ("Cyrillic a", lambda v: v.replace("a", "\u0430", 1) if "a" in v else "\u0430" + v),
    ("fullwidth digit", lambda v: v + "\uff11"),
    ("Arabic-Indic digit", lambda v: v + "\u0661"),
    ("titlecase dz", lambda v: "\u01c5" + v),
    ("dotless i", lambda v: "\u0131" + v),
    ("superscript two", lambda v: v + "\u00b2"),
]


def variants(kind: Kind) -> list[tuple[str, str, bool]]:
    """(case, value, accepted by Kubernetes) for one kind of name."""
    out = [("valid", kind.base, True),
           ("trailing newline", kind.base + "\n", False),
           ("leading newline", "\n" + kind.base, False),
           ("leading space", " " + kind.base, kind.space_ok),
           ("trailing space", kind.base + " ", kind.space_ok),
           ("empty", "", kind.empty_ok),
           ("upper case", kind.base.upper(), kind.upper_ok)]
    out += [(label, kind.base + text, False) for label, text in CONTROL]
    out += [(label, change(kind.base), False) for label, change in LOOKALIKES]
    # the Kelvin sign lower-cases to ASCII 'k': only where Kubernetes lower-cases first is it a 'k'
    out.append(("Kelvin sign", "\u212a" + kind.base, kind.kelvin_ok))
    if kind.limit is not None:
        out += [("at the length limit", kind.long(kind.limit), True),
                ("one over the length limit", kind.long(kind.limit + 1), False)]
    return out


CASES = [pytest.param(kind, value, ok, id=f"{kind.name}: {case}") for kind in KINDS for case, value, ok in
         variants(kind)]


def read(tmp_path: Path, doc: Doc):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc, ensure_ascii=True))  # JSON escapes carry every character through
    return read_file(path, root=tmp_path)


@pytest.mark.parametrize("kind, value, ok", CASES)
def test_every_kind_of_name_is_checked_as_kubernetes_does(tmp_path: Path, kind: Kind, value: str, ok: bool) -> None:
    result = read(tmp_path, kind.place(value))
    for problem in result.errors + result.warnings:
        text = str(problem)
        assert text.isprintable() and text.isascii(), f"not one line of plain text: {text!r}"
        assert problem.file == "m.json" and problem.document == 1
    if ok:
        assert result.ok, [str(p) for p in result.errors]
        assert len(result.pods) + len(result.configs) == 1
        return
    assert not result.ok and not result.pods and not result.configs
    expected = kind.path(value)
    mine = [p for p in result.errors if p.field == expected]
    assert mine, f"no error at {expected!r}: {[str(p) for p in result.errors]}"
    assert all(p.message.startswith(("Invalid value: ", "Required value")) for p in mine), [str(p) for p in mine]


# ------------------------------------------------------------------------------ rules beyond the table


@pytest.mark.parametrize("doc, field, message", [
    (pod(name="web.example"), None, None),
    (pod(namespace="web.example"), "metadata.namespace", "Invalid value: must not contain dots"),
    (pod(name="-web"), "metadata.name", "Invalid value: a lowercase RFC 1123 subdomain must consist of lower case "
                                        "alphanumeric characters, '-' or '.', and must start and end with an "
                                        "alphanumeric character (e.g. 'example.com', regex used for validation is "
                                        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
    (with_container(name="a" * 64), "spec.containers[0].name", "Invalid value: must be no more than 63 characters"),
    (with_container(ports=[{"containerPort": 80, "name": "1234"}]), "spec.containers[0].ports[0].name",
     "Invalid value: must contain at least one letter (a-z)"),
    (with_container(ports=[{"containerPort": 80, "name": "a--b"}]), "spec.containers[0].ports[0].name",
     "Invalid value: must not contain consecutive hyphens"),
    (with_container(ports=[{"containerPort": 80, "name": "-ab"}]), "spec.containers[0].ports[0].name",
     "Invalid value: must not begin or end with a hyphen"),
    (with_container(env=[{"name": "A=B", "value": "1"}]), "spec.containers[0].env[0].name",
     "Invalid value: a valid environment variable name must consist only of printable ASCII characters other "
     "than '='"),
    (with_container(env=[{"name": "1 odd-but.valid NAME", "value": "1"}]), None, None),   # relaxed since 1.34
    (pod(labels={"a/b/c": "x"}), "metadata.labels[a/b/c]", "Invalid value: a valid label key must consist of"),
    (pod(labels={"/app": "x"}), "metadata.labels[/app]", "Invalid value: prefix part must be non-empty"),
    (pod(labels={"example.com/": "x"}), "metadata.labels[example.com/]", "Invalid value: name part must be "
                                                                         "non-empty"),
    (pod(labels={"Example.com/app": "x"}), "metadata.labels[Example.com/app]", "Invalid value: prefix part a "
                                                                               "lowercase RFC 1123 subdomain"),
    (pod(annotations={"Example.COM/App": "x"}), None, None),   # annotation keys are lower-cased first
    (pod(annotations={"\u0130nfo": "x"}), None, None),         # Go lower-cases 'İ' to 'i' (Python would not)
    (pod(labels={"app": "-web"}), "metadata.labels[app]", "Invalid value: a valid label must be an empty string"),
    (pod(annotations={"a": "x" * (256 * 1024 - 1)}), None, None),
    (pod(annotations={"a": "x" * (256 * 1024)}), "metadata.annotations",
     "Too long: may not be more than 262144 bytes"),
    (pod(annotations={"a": "é" * (128 * 1024)}), "metadata.annotations", "Too long"),   # bytes, not characters
    (pod(uid="a..b"), "metadata.uid", "Invalid value: must be at most 128 characters"),
    (config("ConfigMap", key=".."), "data[..]", "Invalid value: must not be '..'"),
    (config("ConfigMap", key="..data"), "data[..data]", "Invalid value: must not start with '..'"),
    (with_container(envFrom=[{"prefix": "X=", "configMapRef": {"name": "cfg"}}]),
     "spec.containers[0].envFrom[0].prefix", "Invalid value: a valid environment variable name"),
    (with_container(envFrom=[{"configMapRef": {"name": "Cfg"}}]), "spec.containers[0].envFrom[0].configMapRef.name",
     "Invalid value: a lowercase RFC 1123 subdomain"),
    (with_container(env=[{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['a b']"}}}]),
     "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath", "Unsupported value"),
    (with_container(env=[{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']\n"}}}]),
     "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath", "Unsupported value"),
    (with_container(env=[{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['A']"}}}]),
     None, None),
])
def test_kubernetes_rules_and_messages(tmp_path: Path, doc: Doc, field: str | None, message: str | None) -> None:
    result = read(tmp_path, doc)
    if field is None:
        assert result.ok, [str(p) for p in result.errors]
        return
    assert any(p.field == field and p.message.startswith(message) for p in result.errors), \
        [str(p) for p in result.errors]


def test_an_empty_namespace_is_the_default_one_as_for_a_static_pod(tmp_path: Path) -> None:
    result = read(tmp_path, pod(namespace=""))
    assert result.ok and result.pods[0].pod.metadata.namespace == "default"


def test_an_empty_uid_is_no_uid(tmp_path: Path) -> None:
    result = read(tmp_path, pod(uid=""))
    assert result.ok and len(result.pods[0].uid) == 36


# ------------------------------------------------------------------------------ quantities


@pytest.mark.parametrize("text, value", [
    ("1E", 10**18), ("1e3", 1000), ("1E3", 1000), ("1e+3", 1000), ("1e-3", quantity.Fraction(1, 1000)),
    (".5", quantity.Fraction(1, 2)), ("+1", 1), ("-1", -1), ("1.", 1), ("1.G", 10**9), ("+.5Ki", 512),
    ("5n", quantity.Fraction(5, 10**9)), ("2u", quantity.Fraction(2, 10**6)), ("0.5Mi", 2**19),
    ("100m", quantity.Fraction(1, 10)),
])
def test_every_quantity_form_of_apimachinery_is_accepted(text: str, value: Any) -> None:
    assert quantity.parse(text) == value


@pytest.mark.parametrize("text", [
    "\u0661\u0662Mi", "\uff11", "1\u0660", "\u00b2", "1\n", "\n1", " 1", "1 ", "1\x00", "1K", "1mi", "1ee3", "1e",
    "1e1.5", "0x10", "1.5.5", "1Ki5", "", "+", ".", "Mi", "e3", "1\u212a", "\u0661e3",
])
def test_what_is_not_a_quantity_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        quantity.parse(text)


def test_a_quantity_with_unicode_digits_is_refused_in_a_pod(tmp_path: Path) -> None:
    result = read(tmp_path, with_container(resources={"limits": {"memory": "\u0661\u0662Mi"}}))
    assert [p.field for p in result.errors] == ["spec.containers[0].resources.limits.memory"]


# ------------------------------------------------------------------------------ end to end


TRAILING_NEWLINES = {
    "pod name": (pod(name="web\n"), "metadata.name"),
    "namespace": (pod(namespace="default\n"), "metadata.namespace"),
    "uid": (pod(uid="abc\n"), "metadata.uid"),
    "container name": (with_container(name="app\n"), "spec.containers[0].name"),
    "volume name": ({**pod(), "spec": {"containers": [{"name": "app", "image": "busybox", "volumeMounts": [
        {"name": "data\n", "mountPath": "/data"}]}], "volumes": [{"name": "data\n", "emptyDir": {}}]}},
        "spec.volumes[0].name"),
    "ConfigMap key": (config("ConfigMap", key="app.conf\n"), 'data["app.conf\\n"]'),
}


@pytest.mark.parametrize("case", list(TRAILING_NEWLINES))
def test_a_trailing_newline_in_a_name_is_one_reported_line_and_reaches_neither_store_nor_disk(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str) -> None:
    doc, field = TRAILING_NEWLINES[case]
    caplog.set_level(logging.INFO)
    with simulated_node(tmp_path) as node:
        node.write("good.yaml", pod(name="good"))
        node.write("bad.yaml", doc)
        node.settle()
        assert [p["metadata"]["name"] for p in node.pods()] == ["good"]   # the store holds the good pod only
        store = Reader(node.root)
        try:
            assert store.config_objects("ConfigMap") == []
        finally:
            store.close()
        created = [str(p) for p in tmp_path.rglob("*") if "\n" in p.name]
        assert created == []
        events = [e["message"] for e in node.events("InvalidManifest")]
        assert events and all("\n" not in m and m.isprintable() for m in events)
        assert any(m.startswith("bad.yaml: document 1, line ") and f": {field}: " in m for m in events), events
        logged = [r.getMessage() for r in caplog.records if "bad.yaml" in r.getMessage()]
        assert logged and all("\n" not in m and "\r" not in m for m in logged), logged


@pytest.mark.parametrize("name, hostname", [
    ("web", "web"), ("a" * 63, "a" * 63), ("a" * 253, "a" * 63),
    ("a" * 61 + ".-b" + "c" * 100, "a" * 61), ("a" * 62 + "-" + "b", "a" * 62),
])
def test_a_long_pod_name_gives_a_hostname_of_at_most_63_characters_as_the_kubelet_cuts_it(name: str,
                                                                                             hostname: str) -> None:
    assert names.pod_hostname(name) == hostname


def test_a_manifest_file_name_with_a_newline_is_reported_in_one_line(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with simulated_node(tmp_path) as node:
        node.write("bad\n.yaml", pod(name="Web"))
        node.settle()
        assert node.pods() == []
        events = [e["message"] for e in node.events("InvalidManifest")]
        assert events and all(m.isprintable() for m in events), events
        assert events[0].startswith('"bad\\n.yaml": document 1, line ')
        assert all("\n" not in r.getMessage() for r in caplog.records if "bad" in r.getMessage())


@pytest.mark.parametrize("url, ref", [
    ("https://example.com/r.git", "main\n"), ("https://example.com/r.git", "ma\x00in"),
    ("https://example.com/r.git", "ma\x7fin"), ("https://example.com/r.git\n", "main"),
    ("https://exa\x00mple.com/r.git", "main"),
])
def test_git_sync_refuses_a_ref_or_url_with_control_characters(tmp_path: Path, url: str, ref: str) -> None:
    with pytest.raises(SyncError):
        GitSync(url, ref=ref, root=tmp_path / "state", link=tmp_path / "manifests")
