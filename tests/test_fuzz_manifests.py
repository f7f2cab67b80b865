"""Bad input, fuzzed (hypothesis): the manifest parser, the validator, and the agent that reads them.

Part 3 of the fault suite. The properties:

* `decode_document` never raises, for any JSON-shaped value and for near-valid Pods mutated at every
  level (wrong types, missing keys, huge and negative numbers, unicode, unknown keys). A document is
  valid (`desired`, no errors), rejected (errors, each with a message and a path made of field
  names, indices and the document's own keys), or a kind reported as not implemented; never two of
  these. Values are never echoed: a marker value of 12+ letters appears in no error or warning.
* `read_file` never raises, for arbitrary bytes and for YAML-ish text (fragments, anchors, aliases,
  tags, deep nesting, tabs, BOMs), near-valid pod text and JSON, in `*.yaml` and `*.json` files.
  A file is ok or has errors with messages; no message echoes a marker put in the file.
* The agent (fake runtime, real store) never fails a pass because of a fuzzed `fuzz.yaml` (or
  `fuzz.json`, or an invalid edit of `good.yaml`): the running pod of `good.yaml` keeps its container.

Regressions. Every bug this suite found has a deterministic test at the end of this file, named
after what must hold now (YAML constructor errors, huge numbers, non-JSON values, infinite and
huge quantities, huge grace periods, lone surrogates, fake-runtime annotations, duplicate uids,
non-UTF-8 file names, snake_case field names).

Environment: `KUBELITE_SLOW_TESTS=1` runs ten times as many examples.
"""

from __future__ import annotations

import json
import os
import re
import string
import tempfile
import time
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from kubelite.agent.agent import Agent, AgentConfig
from kubelite.api import models, names, support
from kubelite.api.decode import Decoded, decode_document
from kubelite.core.types import ContainerState
from kubelite.runtime.fake import FakeRuntime
from kubelite.sources.manifests import FileResult, read_file, scan
from kubelite.store.store import Store

SLOW = os.environ.get("KUBELITE_SLOW_TESTS") == "1"
T = TypeVar("T")


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples * (10 if SLOW else 1), deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.large_base_example])


# ------------------------------------------------------------------------------ value strategies

LETTERS = string.ascii_letters
#: One marker per example (shared by every draw of it): at least 12 letters, with an upper-case
#: first letter so that it is never a valid name (a pod's name may be shown; a value may not).
MARKER = st.shared(st.text(LETTERS, min_size=11, max_size=20).map(lambda s: "Q" + s), key="marker")
#: One example in three is "calm": no value of the wrong type, no missing key; so that valid pods
#: (and the validator's deeper rules) are reached, not only the type checks.
CALM = st.shared(st.integers(0, 2).map(lambda i: i == 0), key="calm")

ODD_TEXT = st.sampled_from([
    "", " ", "\t", "\n", "\x00", "\x7f", "\u0085", "\u2028", "\u202e", "\ufeff", "é", "😀", "ß", "İ",
    "a" * 64, "a" * 254, "A", "-a", "a-", "a..b", ".", "a/b", "${HOME}", "{{x}}", "'", '"', "\\", "%",
    "80", "-1", "1e3", "500m", "true", "null", "~", "Pod", "v1", "busybox ", " busybox", "Always",
])
SURROGATES = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2)  # JSON's "\ud800" gives these
FREE_TEXT = st.one_of(st.text(max_size=16), MARKER)  # any text is valid here: commands, env values
TEXT = st.one_of(FREE_TEXT, ODD_TEXT, SURROGATES)
INTS = st.one_of(
    st.integers(-5, 70000),
    st.sampled_from([0, 1, -1, 65535, 65536, 2**31 - 1, 2**31, -2**31, 2**63 - 1, 2**63, -2**63, 2**64,
                     10**20, 10**400]),
    st.integers(),
)
BOOLS = st.booleans()
SCALAR = st.one_of(st.none(), BOOLS, INTS, st.floats(), TEXT)
JSON_LIKE = st.recursive(
    st.one_of(st.none(), BOOLS, st.integers(), st.floats(), st.text()),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
WRONG = st.one_of(SCALAR, JSON_LIKE, st.lists(TEXT, max_size=3),
                  st.dictionaries(st.text(max_size=8), SCALAR, max_size=3),
                  MARKER.map(lambda m: [m]), MARKER.map(lambda m: {"x": m}))
UNKNOWN_KEY = st.one_of(st.text(min_size=1, max_size=10), st.sampled_from([
    "imagePullPolciy", "image_pull_policy", "init_containers", "exec_", "termination_grace_period_seconds",
    "nodeSelector", "tolerations", "status", "resizePolicy", "seccompProfile", "ownerReferences",
    "x-kubernetes-foo", " ", "apiVersion", "kind", "Name", "IMAGE",
]))


@st.composite
def m(draw: st.DrawFn, strategy: st.SearchStrategy[Any], odd: st.SearchStrategy[Any] | None = None) -> Any:
    """`strategy` most of the time; sometimes (never in a calm example) a value of the wrong type, or
    an `odd` value of the right type (out of range, malformed)."""
    if draw(CALM) or draw(st.integers(0, 6)) != 0:
        return draw(strategy)
    return draw(WRONG if odd is None else st.one_of(WRONG, odd, odd))


@st.composite
def obj(draw: st.DrawFn, required: dict[str, st.SearchStrategy[Any]],
        optional: dict[str, st.SearchStrategy[Any]] | None = None) -> dict[str, Any]:
    """A mapping with the `required` keys (one sometimes missing), some `optional` keys, and
    sometimes unknown keys (warnings only); every value sometimes of the wrong type."""
    calm = draw(CALM)
    out: dict[str, Any] = {}
    for key, strategy in required.items():
        if calm or draw(st.integers(0, 15)) != 0:
            out[key] = draw(m(strategy))
    optional = optional or {}
    if optional:
        for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=min(3, len(optional)))):
            out[key] = draw(m(optional[key]))
    if draw(st.integers(0, 7)) == 0:
        extra = draw(st.dictionaries(UNKNOWN_KEY, WRONG, min_size=1, max_size=2))
        out.update({k: v for k, v in extra.items() if not calm or k not in out})
    return out


def one_handler(**handlers: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Exactly one handler (valid), or in wild examples any number of them."""
    exactly_one = st.one_of(*(s.map(lambda v, k=k: {k: v}) for k, s in handlers.items()))
    return m(exactly_one, odd=obj({}, handlers))


NAME = st.one_of(st.sampled_from(["app", "web", "side", "init", "a", "db"]),
                 st.from_regex(r"[a-z]([-a-z0-9]{0,12}[a-z0-9])?", fullmatch=True))
ODD_NAME = st.one_of(ODD_TEXT, st.sampled_from(["App", "a_b", "a" * 64, "-a", "a.b"]))
IMAGE = st.one_of(st.sampled_from(["busybox", "busybox:1.36", "busybox:latest", "app:v1",
                                   "registry.local:5000/app@sha256:" + "a" * 64]), MARKER)
QUANTITY = st.one_of(st.sampled_from(["500m", "1", "2", "64Mi", "1Gi", "1.5Gi", "1e3", "0", "0.5", "100k"]),
                     st.integers(0, 10**12), st.floats(0, 1e6))
ODD_QUANTITY = st.one_of(
    st.sampled_from(["-1", "+1", ".5", "1.", "1Ki ", "abc", "1e-3", "10E2", "1e999", "1e-999", "0.000000001", "Mi",
                     "", "1 Gi", "1Ki1", "0x10", "1_000", "١"]),
    st.integers(), st.floats(), MARKER,
)
RESOURCE_NAME = st.one_of(st.sampled_from(["cpu", "memory", "ephemeral-storage", "nvidia.com/gpu"]),
                          st.text(max_size=8))
RESOURCES = obj({}, {"limits": st.dictionaries(RESOURCE_NAME, m(QUANTITY, ODD_QUANTITY), max_size=3),
                     "requests": st.dictionaries(RESOURCE_NAME, m(QUANTITY, ODD_QUANTITY), max_size=3)})
PORT_NUMBER = st.integers(1, 65535)
ODD_PORT = st.one_of(INTS, st.sampled_from([0, -1, 65536]))
PORT = obj({"containerPort": m(PORT_NUMBER, ODD_PORT)}, {
    "name": m(st.sampled_from(["http", "metrics", "grpc", "a1"]), st.sampled_from(["HTTP", "1234", "a--b", "x" * 16])),
    "protocol": m(st.sampled_from(["TCP", "UDP", "SCTP"]), st.sampled_from(["tcp", "HTTP", ""])),
    "hostPort": m(PORT_NUMBER, ODD_PORT), "hostIP": TEXT,
})
ENV = obj({"name": m(st.sampled_from(["A", "PATH", "LONG_NAME_1"]), st.sampled_from(["X=Y", "", "="]))}, {
    "value": FREE_TEXT,
    "valueFrom": obj({}, {"fieldRef": st.fixed_dictionaries({"fieldPath": FREE_TEXT}),
                          "secretKeyRef": st.fixed_dictionaries({"name": FREE_TEXT, "key": FREE_TEXT}),
                          "configMapKeyRef": st.fixed_dictionaries({"name": FREE_TEXT, "key": FREE_TEXT}),
                          "resourceFieldRef": st.fixed_dictionaries({"resource": FREE_TEXT})}),
})
ENV_FROM = st.dictionaries(st.sampled_from(["configMapRef", "secretRef", "prefix"]),
                           m(st.fixed_dictionaries({"name": FREE_TEXT})), max_size=2)
EXEC = obj({}, {"command": st.lists(FREE_TEXT, max_size=3)})
HTTP_GET = obj({"port": m(PORT_NUMBER, st.one_of(ODD_PORT, NAME))}, {
    "path": FREE_TEXT, "host": FREE_TEXT, "scheme": m(st.sampled_from(["HTTP", "HTTPS"]), st.just("FTP")),
    "httpHeaders": st.lists(obj({"name": FREE_TEXT, "value": FREE_TEXT}), max_size=2),
})
TCP_SOCKET = obj({"port": m(PORT_NUMBER, st.one_of(ODD_PORT, NAME))}, {"host": FREE_TEXT})
GRPC = obj({"port": m(PORT_NUMBER, ODD_PORT)}, {"service": FREE_TEXT})
SMALL = m(st.one_of(st.integers(1, 100), st.integers(1, 2**31 - 1)), INTS)
PROBE = st.builds(lambda handler, rest: {**handler, **rest} if isinstance(handler, dict) else handler,
                  one_handler(exec=EXEC, httpGet=HTTP_GET, tcpSocket=TCP_SOCKET, grpc=GRPC),
                  obj({}, {"initialDelaySeconds": SMALL, "timeoutSeconds": SMALL, "periodSeconds": SMALL,
                           "successThreshold": m(st.just(1), INTS), "failureThreshold": SMALL,
                           "terminationGracePeriodSeconds": SMALL}))
HANDLER = one_handler(exec=EXEC, httpGet=HTTP_GET, tcpSocket=TCP_SOCKET, sleep=obj({"seconds": SMALL}))
LIFECYCLE = obj({}, {"postStart": HANDLER, "preStop": HANDLER,
                     "stopSignal": m(st.sampled_from(["SIGTERM", "SIGUSR1"]), TEXT)})
IDS = m(st.integers(0, 2**31 - 1), INTS)
SECURITY = obj({}, {
    "runAsUser": IDS, "runAsGroup": IDS, "runAsNonRoot": BOOLS, "readOnlyRootFilesystem": BOOLS,
    "allowPrivilegeEscalation": BOOLS, "privileged": BOOLS,
    "capabilities": obj({}, {"add": st.lists(FREE_TEXT, max_size=3), "drop": st.lists(FREE_TEXT, max_size=3)}),
    "seccompProfile": st.fixed_dictionaries({"type": FREE_TEXT}), "procMount": FREE_TEXT,
})
POD_SECURITY = obj({}, {
    "runAsUser": IDS, "runAsGroup": IDS, "runAsNonRoot": BOOLS, "fsGroup": IDS,
    "supplementalGroups": st.lists(IDS, max_size=3),
    "sysctls": st.lists(st.fixed_dictionaries({"name": FREE_TEXT, "value": FREE_TEXT}), max_size=2),
    "seLinuxOptions": JSON_LIKE,
})
MOUNT = obj({"name": st.sampled_from(["data", "cache", "nope"]), "mountPath": m(FREE_TEXT, st.just(""))},
            {"readOnly": BOOLS, "subPath": FREE_TEXT})
_CONTAINER_FIELDS = {
    "command": st.lists(FREE_TEXT, max_size=3), "args": st.lists(FREE_TEXT, max_size=3), "workingDir": FREE_TEXT,
    "env": st.lists(ENV, max_size=3), "envFrom": st.lists(ENV_FROM, max_size=2),
    "ports": st.lists(PORT, max_size=3), "resources": RESOURCES, "volumeMounts": st.lists(MOUNT, max_size=2),
    "livenessProbe": PROBE, "readinessProbe": PROBE, "startupProbe": PROBE, "lifecycle": LIFECYCLE,
    "securityContext": SECURITY,
    "imagePullPolicy": m(st.sampled_from(["Always", "IfNotPresent", "Never"]), st.just("Sometimes")),
    "terminationMessagePath": FREE_TEXT,
    "terminationMessagePolicy": m(st.sampled_from(["File", "FallbackToLogsOnError"]), st.just("Other")),
    "stdin": BOOLS, "tty": BOOLS, "resizePolicy": JSON_LIKE,
}
_RESTART = m(st.just("Always"), st.sampled_from(["Never", "OnFailure", "always"]))
CONTAINER = st.builds(  # restartPolicy is for init containers only: an app container has one only when wild
    lambda c, restart: c if restart is None or not isinstance(c, dict) else {**c, "restartPolicy": restart},
    obj({"name": m(NAME, ODD_NAME), "image": m(IMAGE, st.sampled_from(["", " ", " busybox"]))}, _CONTAINER_FIELDS),
    m(st.none(), _RESTART))
INIT_CONTAINER = obj({"name": m(NAME, ODD_NAME), "image": IMAGE}, {**_CONTAINER_FIELDS, "restartPolicy": _RESTART})
VOLUME = obj({"name": m(st.sampled_from(["data", "cache"]), ODD_NAME)}, {
    "emptyDir": st.fixed_dictionaries({}, optional={"sizeLimit": QUANTITY, "medium": FREE_TEXT}),
    "hostPath": st.fixed_dictionaries({"path": FREE_TEXT}), "configMap": JSON_LIKE, "secret": JSON_LIKE,
})
LABEL_TEXT = st.one_of(st.sampled_from(["app", "example.com/tier", "A_b.c-1"]), MARKER)  # valid keys and values
ANNOTATION_KEY = st.one_of(st.sampled_from(["fake.kubelite.io/app", "kubernetes.io/x", "a"]), st.text(max_size=10))
ANNOTATION_VALUE = st.one_of(FREE_TEXT, st.sampled_from(["exit=1 after=3", "fail-start", "fail-create=x",
                                                         "ignore-term", "oom-after=1", "bogus", "exit=x", "after=-1"]))
METADATA = obj({"name": m(NAME, ODD_NAME)}, {
    "namespace": m(st.sampled_from(["default", "kube-system", "a"]), ODD_NAME),
    "labels": st.dictionaries(st.one_of(LABEL_TEXT, st.text(max_size=10)),
                              m(st.one_of(LABEL_TEXT, FREE_TEXT), SURROGATES), max_size=3),
    "annotations": st.dictionaries(ANNOTATION_KEY, m(ANNOTATION_VALUE, SURROGATES), max_size=3),
    "uid": m(st.uuids().map(str), TEXT), "generateName": FREE_TEXT, "ownerReferences": JSON_LIKE,
    "creationTimestamp": FREE_TEXT, "resourceVersion": FREE_TEXT,
})
SPEC = obj({"containers": st.lists(CONTAINER, min_size=1, max_size=3)}, {
    "initContainers": st.lists(INIT_CONTAINER, max_size=2),
    "restartPolicy": m(st.sampled_from(["Always", "OnFailure", "Never"]), st.just("always")),
    "terminationGracePeriodSeconds": m(st.one_of(st.integers(0, 600), st.integers(0, 2**63 - 1)), INTS),
    "activeDeadlineSeconds": m(st.integers(1, 2**31 - 1), INTS),
    "hostname": m(NAME, ODD_NAME), "hostNetwork": BOOLS, "shareProcessNamespace": BOOLS,
    "securityContext": POD_SECURITY, "volumes": st.lists(VOLUME, max_size=2), "nodeName": FREE_TEXT,
    "nodeSelector": st.dictionaries(st.text(max_size=8), FREE_TEXT, max_size=2), "tolerations": JSON_LIKE,
    "dnsPolicy": FREE_TEXT,
})
KIND = m(st.just("Pod"), st.sampled_from(["ConfigMap", "Secret", "Deployment", "pod", "PodList"]))
API_VERSION = m(st.just("v1"), st.sampled_from(["apps/v1", "v2", "V1"]))
POD = obj({"apiVersion": API_VERSION, "kind": KIND, "metadata": METADATA, "spec": SPEC}, {"status": JSON_LIKE})


# ------------------------------------------------------------------------------ checks

def _wire_names() -> frozenset[str]:
    names: set[str] = set()
    for value in vars(models).values():
        if isinstance(value, type) and issubclass(value, models.K8sModel):
            for name, info in value.model_fields.items():
                names.update({name, info.alias or name})
    for known in support.KNOWN_UNMODELLED.values():
        names.update(known)
    return frozenset(names)


WIRE_NAMES = _wire_names()
_INDEX = re.compile(r"\[(?:\d+|key)\]")


def keys_of(value: Any) -> set[str]:
    """Every mapping key anywhere in `value`, as text, and as a field path shows it (escaped, shortened)."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.update(str(k) for k in item)
            found.update(names.shown(str(k)) for k in item)
            found.update(names.shown(str(k), limit=40) for k in item)
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return found


def path_is_known(path: str, words: set[str]) -> bool:
    """Whether `path` is made only of '.', `[n]`, `[key]`, the given words (field names, keys) and
    `[word]`."""
    reachable = [False] * (len(path) + 1)
    reachable[0] = True
    for i in range(len(path)):
        if not reachable[i]:
            continue
        if path[i] == ".":
            reachable[i + 1] = True
        index = _INDEX.match(path, i)
        if index:
            reachable[index.end()] = True
        for word in words:
            if word and path.startswith(word, i):
                reachable[i + len(word)] = True
            if word and path.startswith(f"[{word}]", i):  # a document's key as a subscript: labels[app]
                reachable[i + len(word) + 2] = True
    return reachable[len(path)]


def check_decoded(decoded: Decoded, doc: Any, marker: str | None = None) -> None:
    accepted = decoded.desired is not None or decoded.config is not None
    assert not (accepted and decoded.errors), "valid and rejected at once"
    assert accepted or decoded.errors or decoded.ignored, "neither valid nor rejected nor a kind not run"
    if decoded.ignored:
        assert decoded.kind and not decoded.errors and len(decoded.warnings) == 1
    words = WIRE_NAMES | keys_of(doc)
    for issue in decoded.errors + decoded.warnings:
        assert isinstance(issue.message, str) and issue.message.strip(), f"empty message at {issue.path!r}"
        assert path_is_known(issue.path, words), f"path of unknown characters: {issue.path!r}"
        if isinstance(doc, dict) and issue in decoded.errors:
            assert issue.path, f"an error that names no field: {issue.message!r}"
    if marker is not None:
        marker_is_a_key = any(marker in key for key in keys_of(doc))
        for issue in decoded.errors + decoded.warnings:
            if decoded.ignored and marker in (decoded.kind or ""):
                continue   # a document not run is named by its kind, on purpose
            assert marker not in issue.message, f"value echoed: {issue}"
            assert marker_is_a_key or marker not in issue.path, f"value echoed: {issue}"
    if decoded.desired is not None:
        d = decoded.desired
        assert d.pod.spec.containers and d.uid and len(d.pod_hash) == 16 and len(d.sandbox_hash) == 16
        assert set(d.container_hashes) == {c.name for c in d.pod.spec.all_containers()}


def check_file_result(result: FileResult, name: str, marker: str | None = None, text: str = "") -> None:
    assert result.ok == (not result.errors)
    # a field's name may be named (kubectl names unknown fields too); a value never
    marker_in_a_key = marker is not None and re.search(re.escape(marker) + r'[^\n:"]*"?[ \t]*:', text) is not None
    for problem in result.errors + result.warnings:
        assert isinstance(problem.message, str) and problem.message.strip(), f"empty message: {problem}"
        assert problem.file == name
        assert problem.document is None or problem.document >= 1
        assert problem.line is None or problem.line >= 1
        if marker is not None and not marker_in_a_key and problem.object is None:   # `object`: named on purpose
            assert marker not in problem.message, f"content echoed: {problem}"
    if result.ok:
        assert result.digest
        for pod in result.pods:
            assert pod.pod.spec.containers


def decode(doc: Any) -> Decoded:
    before = repr(doc)
    decoded = decode_document(doc, source="/etc/kubelite/manifests/fuzz.yaml")
    assert repr(doc) == before, "decode_document changed its input"
    return decoded


# ------------------------------------------------------------------------------ 1. decode_document

@fuzz_settings(200)
@given(doc=st.one_of(JSON_LIKE, st.dictionaries(st.sampled_from(["apiVersion", "kind", "metadata", "spec"]),
                                                JSON_LIKE, max_size=4).map(lambda d: {**d, "kind": "Pod",
                                                                                      "apiVersion": "v1"})))
def test_decode_never_raises_on_json_like_values(doc: Any) -> None:
    check_decoded(decode(doc), doc)


@fuzz_settings(200)
@given(doc=POD, marker=MARKER)
def test_decode_near_valid_pods(doc: dict[str, Any], marker: str) -> None:
    decoded = decode(doc)
    event("valid" if decoded.desired else "rejected" if decoded.errors else "ignored kind")
    check_decoded(decoded, doc, marker)


# ------------------------------------------------------------------------------ 2. read_file

YAML_SCALAR = st.one_of(
    st.sampled_from([
        "1", "-1", "0", "0x1F", "0o17", "1_000", "1e3", "1.5", "-.inf", ".inf", ".nan", "~", "null", "true", "yes",
        "off", "Y", "2001-01-01", "2001-12-14t21:59:43.10-05:00", "9999-12-31T23:59:59Z", "'single'", '"double"',
        '"\\x00"', '"\\u2028"', '"\\ud800"', '"\\U0001F600"', '"\\q"', "|", ">-", "|+", "[]", "{}", "[a, b]",
        "{a: 1}", "!!str 1", "!!int 1", "!!null ''", "!!binary aGVsbG8=", "!!binary ???", "!!set {a, b}",
        "!!omap [a: 1]", "!!pairs [a: 1]", "!!python/object:os.system x", "!!python/name:os.system ''",
        "!!python/object/apply:os.system [ls]", "!foo bar", "!<tag:x,2000:y> z", "&a 1", "*a", "&a [*a]",
        "&b {x: *b}", "<<", "*", "&", "!", "@x", "`x", "%x", "? x", "-", ":", "#",
    ]),
    # rarer: these hit the known "yaml-constructor" bug
    st.sampled_from(["2001-13-45", "2001-02-30", "!!int abc", "!!float x", "!!bool maybe", "!!timestamp never",
                     "1" * 4400]),
    MARKER, st.text(max_size=12), INTS.map(str), st.floats().map(repr),
)
YAML_KEY = st.one_of(st.sampled_from(["apiVersion", "kind", "metadata", "name", "spec", "containers", "image", "a",
                                      "<<", "'q'", '"q"', "1", "null", "x y", "-", "? x"]),
                     st.text(LETTERS, min_size=1, max_size=6))
INDENT = st.sampled_from(["", "", " ", "  ", "    ", "\t", "      "])
NESTING = st.one_of(
    st.integers(1, 1500).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 1200).map(lambda n: "{a: " * n + "1" + "}" * n),
    st.integers(1, 250).map(lambda n: "\n".join(" " * i + "a:" for i in range(n)) + " 1"),
    st.integers(1, 250).map(lambda n: "\n".join("  " * i + "-" for i in range(n)) + " 1"),
    st.integers(1, 12).map(lambda n: "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "\n".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, n))),
)
STRUCTURAL = st.sampled_from([
    "---", "--- !!map", "--- |", "...", "%YAML 1.1", "%YAML 2.0", "%TAG !e! tag:example.com,2000:", "# comment",
    "{", "}", "[", "]", ",", ":", "- ", "-", "?", "\t", "\ufeff", "\x00", "\x85", "\u2028", "\r", "\x1b[31m",
    "{a: 1, b: [1, 2]}", "'unterminated", '"unterminated', "key: 'a\n  b'", "a: b: c", "- - - x",
])
POD_LINES = """apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  restartPolicy: Always
  containers:
  - name: app
    image: busybox:1.36
    command: ["sleep", "3600"]
    env:
    - name: A
      value: x
    ports:
    - containerPort: 80
    resources:
      limits:
        cpu: 500m
        memory: 64Mi""".splitlines()
YAML_LINE = st.one_of(
    st.builds("{}{}: {}".format, INDENT, YAML_KEY, YAML_SCALAR),
    st.builds("{}- {}".format, INDENT, YAML_SCALAR),
    st.builds("{}{}:".format, INDENT, YAML_KEY),
    st.builds("{}- {}: {}".format, INDENT, YAML_KEY, YAML_SCALAR),
    STRUCTURAL, st.sampled_from(POD_LINES), NESTING,
)
NEWLINE = st.sampled_from(["\n", "\n", "\r\n", "\r"])
YAML_TEXT = st.builds(lambda bom, lines, nl: bom + nl.join(lines), st.sampled_from(["", "", "\ufeff"]),
                      st.lists(YAML_LINE, max_size=25), NEWLINE)


@st.composite
def mutated_pod_text(draw: st.DrawFn, name: str | None = None) -> str:
    """The text of a valid pod (or several), with a few lines inserted, deleted or replaced."""
    lines = list(POD_LINES)
    if name is not None:
        lines[3] = f"  name: {name}"
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["insert", "delete", "replace", "another-document", "indent"]))
        i = draw(st.integers(0, len(lines)))
        if action == "insert":
            lines.insert(i, draw(YAML_LINE))
        elif action == "delete" and i < len(lines):
            del lines[i]
        elif action == "replace" and i < len(lines):
            lines[i] = draw(YAML_LINE)
        elif action == "another-document":
            lines += ["---", *POD_LINES]
        elif action == "indent" and i < len(lines):
            lines[i] = draw(INDENT) + lines[i]
    return draw(NEWLINE).join(lines) + draw(st.sampled_from(["", "\n"]))


def dump_json(doc: Any) -> str:
    return json.dumps(doc)  # allow_nan: NaN and Infinity, as json.loads accepts them


def dump_yaml(doc: Any) -> str:
    try:
        return yaml.safe_dump_all([doc], allow_unicode=True)
    except (yaml.YAMLError, UnicodeError):
        return dump_json(doc)  # JSON is YAML


@st.composite
def cut_json(draw: st.DrawFn) -> str:
    """A near-valid pod as JSON, sometimes cut short or with a fragment spliced in."""
    text = dump_json(draw(POD))
    cut = draw(st.integers(0, len(text)))
    how = draw(st.sampled_from(["whole", "whole", "truncate", "splice"]))
    if how == "truncate":
        return text[:cut]
    if how == "splice":
        return text[:cut] + draw(st.one_of(YAML_SCALAR, STRUCTURAL)) + text[cut:]
    return text


JSON_TEXT = st.one_of(
    cut_json(),
    st.sampled_from(["", " ", "{}", "[]", "null", "1", '"x"', "NaN", "Infinity", '{"a": NaN}', '{"a": "\\ud800"}',
                     '{"a": "\\udc80\\ud800"}', "[" * 5000, '{"a":1,"a":2}', "\ufeff{}", "{}{}", "{} x", "1" * 4400,
                     '{"apiVersion": "v1", "kind": "Pod"}', "[{}, {}]", '{"kind": "Pod", "apiVersion": "v1", '
                     '"metadata": {"name": "x"}, "spec": {"containers": [{"name": "a", "image": "b", '
                     '"resources": {"limits": {"cpu": 1e999}}}]}}']),
)
TEXT_CONTENT = st.one_of(YAML_TEXT, mutated_pod_text(), JSON_TEXT, POD.map(dump_yaml),
                         st.lists(POD, min_size=2, max_size=3).map(
                             lambda docs: "---\n".join(dump_yaml(d) for d in docs)))


@st.composite
def binary_with_marker(draw: st.DrawFn) -> bytes:
    return draw(st.binary(max_size=200)) + draw(MARKER).encode() + draw(st.binary(max_size=200))


def _read(content: bytes, suffix: str) -> tuple[FileResult, str]:
    with tempfile.TemporaryDirectory() as directory:
        name = f"fuzz{suffix}"
        path = Path(directory) / name
        path.write_bytes(content)
        return read_file(path, root=Path(directory)), name


@fuzz_settings(200)
@given(content=st.one_of(st.binary(max_size=400), binary_with_marker()), suffix=st.sampled_from([".yaml", ".json"]),
       marker=MARKER)
def test_read_file_never_raises_on_bytes(content: bytes, suffix: str, marker: str) -> None:
    result, name = _read(content, suffix)
    check_file_result(result, name, marker)


@fuzz_settings(200)
@given(text=TEXT_CONTENT, suffix=st.sampled_from([".yaml", ".json"]), marker=MARKER)
def test_read_file_never_raises_on_yamlish_text(text: str, suffix: str, marker: str) -> None:
    note(f"text: {text!r}")
    result, name = _read(text.encode("utf-8", "surrogatepass"), suffix)
    event("ok" if result.ok else "errors")
    check_file_result(result, name, marker, text)


# ------------------------------------------------------------------------------ 3. the agent

GOOD = "\n".join(POD_LINES).replace("name: web", "name: good") + "\n"
GOOD_KEY = "default/good"


def _settle(agent: Agent) -> None:
    for _ in range(10):
        wake = agent.run_once()
        if wake is None or wake > agent.clock():
            return


def _running(runtime: FakeRuntime, uid: str) -> set[str]:
    return {c.id for c in runtime.list_containers() if c.uid == uid and c.state is ContainerState.RUNNING}


@st.composite
def renamed_pod(draw: st.DrawFn) -> str:
    """A near-valid pod called `good` (container `app`): valid ones replace the good pod."""
    doc = draw(POD)
    if isinstance(doc.get("metadata"), dict):
        doc["metadata"]["name"] = "good"
        for key in ("namespace", "uid"):  # the same pod, so that its containers may be changed in place
            doc["metadata"].pop(key, None)
    spec = doc.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("containers"), list) and spec["containers"] \
            and isinstance(spec["containers"][0], dict):
        spec["containers"][0]["name"] = "app"
    return draw(st.sampled_from([dump_yaml, dump_json]))(doc)


AGENT_CONTENT = st.one_of(st.binary(max_size=200), YAML_TEXT, mutated_pod_text(), mutated_pod_text(name="good"),
                          POD.map(dump_yaml), renamed_pod(), JSON_TEXT)
#: What is written where: anything to fuzz.yaml or fuzz.json; to good.yaml, mostly edits of the good pod.
AGENT_WRITE = st.one_of(
    st.tuples(st.sampled_from(["fuzz.yaml", "fuzz.json"]), AGENT_CONTENT),
    st.tuples(st.just("good.yaml"), st.one_of(renamed_pod(), mutated_pod_text(name="good"), AGENT_CONTENT)),
)


@fuzz_settings(60)
@given(write=AGENT_WRITE)
def test_agent_keeps_the_running_pod(write: tuple[str, str | bytes]) -> None:
    target, content = write
    data = content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")
    with tempfile.TemporaryDirectory() as directory:
        manifests, root = Path(directory) / "manifests", Path(directory) / "state"
        manifests.mkdir()
        (manifests / "good.yaml").write_text(GOOD)
        runtime, store = FakeRuntime(), Store(root)
        try:
            agent = Agent(store=store, runtime=runtime,
                          config=AgentConfig(manifests=manifests, root=root, node_name="node1"))
            _settle(agent)
            [uid] = [u for u, e in agent.pods.items() if e.key == GOOD_KEY]
            [container_id] = _running(runtime, uid)

            path = manifests / target
            path.write_bytes(data)
            result = read_file(path, root=manifests)
            if target == "good.yaml":
                survives = not result.ok  # an invalid edit keeps the last valid version running
            else:  # fuzz.* sorts before good.yaml: a valid pod called `good` there takes the name over
                survives = not (result.ok and any(p.key == GOOD_KEY for p in result.pods))
            event(f"{target}: {'invalid' if not result.ok else 'valid'}")
            agent.hint_manifests()
            agent.run_once()
            agent.run_once()

            if not result.ok:  # every rejection is reported, under the file's name
                assert any(text.startswith(target) for text in agent.problems), sorted(agent.problems)
            if survives:
                entry = agent.pods.get(uid)
                assert entry is not None and entry.key == GOOD_KEY and entry.deleted_at is None, "the pod was lost"
                assert _running(runtime, uid) == {container_id}, "the pod's container was restarted or stopped"
                assert not any(target_id == container_id for op, target_id in runtime.calls
                               if op.startswith("signal_")), "the pod's container was signalled"
        finally:
            store.close()


# ------------------------------------------------------------------------------ known bugs, pinned

def _pod(name: str = "web", **container: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36", **container}]}}


def _read_text(tmp_path: Path, name: str, text: str) -> FileResult:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    return read_file(path, root=tmp_path)


_POD_YAML = "\n".join(POD_LINES[:11]) + "\n"


@pytest.mark.parametrize("value", ["2001-13-45", "!!int abc", "!!float abc", "!!bool maybe", "!!timestamp never",
                                   "1" * 4301], ids=["bad-date", "int", "float", "bool", "timestamp", "4301-digits"])
def test_regression_yaml_constructor_errors_escape_read_file(tmp_path: Path, value: str) -> None:
    result = _read_text(tmp_path, "web.yaml", _POD_YAML + f"    workingDir: {value}\n")
    assert result.ok or all(e.message for e in result.errors)  # Kubernetes reads `2001-13-45` as a string


def test_regression_json_integer_of_too_many_digits_escapes_read_file(tmp_path: Path) -> None:
    result = _read_text(tmp_path, "web.json", '{"x": ' + "1" * 4301 + "}")
    assert not result.ok and all(e.message for e in result.errors)


@pytest.mark.parametrize(("name", "text"), [
    ("date.yaml", _POD_YAML + "    envFrom:\n    - configMapRef: {name: 2001-01-01}\n"),
    ("binary.yaml", _POD_YAML + "    envFrom:\n    - configMapRef: {name: !!binary aGk=}\n"),
    ("set.yaml", _POD_YAML + "    env:\n    - name: A\n      valueFrom:\n        fieldRef: {fieldPath: !!set {a}}\n"),
    ("keys.yaml", _POD_YAML + "    envFrom:\n    - configMapRef: {1: a, b: c}\n"),
    ("surrogate.json", json.dumps(_pod(image="busybox\ud800"))),
])
def test_regression_unencodable_values_crash_spec_hash(tmp_path: Path, name: str, text: str) -> None:
    result = _read_text(tmp_path, name, text)
    assert result.ok or all(e.message for e in result.errors)


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_regression_infinite_quantity_crashes_validation(value: float) -> None:
    decoded = decode_document(_pod(resources={"limits": {"cpu": value}}), source="web.yaml")
    assert decoded.errors and decoded.errors[0].path == "spec.containers[0].resources.limits.cpu"


def test_regression_a_quantity_with_a_huge_exponent_is_refused_at_once() -> None:
    from kubelite.api import quantity

    started = time.monotonic()
    with pytest.raises(ValueError):
        quantity.parse("1e999999999")  # computing 10**999999999 exactly would take hours
    decoded = decode_document(_pod(resources={"limits": {"cpu": "1e999999999"}}), source="web.yaml")
    assert [e.path for e in decoded.errors] == ["spec.containers[0].resources.limits.cpu"]
    assert time.monotonic() - started < 1


def _agent_env(directory: str) -> tuple[Path, FakeRuntime, Store, Agent]:
    manifests, root = Path(directory) / "manifests", Path(directory) / "state"
    manifests.mkdir()
    runtime, store = FakeRuntime(), Store(root)
    agent = Agent(store=store, runtime=runtime, config=AgentConfig(manifests=manifests, root=root, node_name="n"))
    return manifests, runtime, store, agent


def test_regression_huge_grace_period_crashes_the_pass_that_stops_the_pod() -> None:
    with tempfile.TemporaryDirectory() as directory:
        manifests, runtime, store, agent = _agent_env(directory)
        try:
            doc = _pod("good")
            doc["spec"]["terminationGracePeriodSeconds"] = 10**12  # valid: Kubernetes takes any int64 >= 0
            (manifests / "good.yaml").write_text(json.dumps(doc))
            _settle(agent)
            (manifests / "good.yaml").unlink()  # stopping it
            agent.hint_manifests()
            agent.run_once()
        finally:
            store.close()


@pytest.mark.parametrize("where", ["labels", "annotations", "uid"])
def test_regression_a_lone_surrogate_in_metadata_is_refused_not_a_crash(where: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        manifests, runtime, store, agent = _agent_env(directory)
        try:
            doc = _pod("web")
            doc["metadata"][where] = "\ud800" if where == "uid" else {"a": "\ud800"}
            (manifests / "web.json").write_text(json.dumps(doc))  # "\ud800" escape: valid JSON, not Unicode
            result = read_file(manifests / "web.json", root=manifests)
            assert not result.ok and "not valid Unicode" in str(result.errors[0])
            _settle(agent)
            assert any("web.json" in text for text in agent.problems)
        finally:
            store.close()


@pytest.mark.parametrize("value", ["after=nan", "after=1e300", "oom-after=inf"])
def test_regression_fake_runtime_annotation_crashes_the_pass(value: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        manifests, runtime, store, agent = _agent_env(directory)
        try:
            doc = _pod("web")
            doc["metadata"]["annotations"] = {"fake.kubelite.io/app": value}
            (manifests / "web.yaml").write_text(json.dumps(doc))
            _settle(agent)
        finally:
            store.close()


def test_regression_a_second_pod_with_the_same_uid_replaces_the_running_one() -> None:
    with tempfile.TemporaryDirectory() as directory:
        manifests, runtime, store, agent = _agent_env(directory)
        try:
            good = _pod("good")
            good["metadata"]["uid"] = "1234"
            (manifests / "good.yaml").write_text(json.dumps(good))
            _settle(agent)
            [container_id] = _running(runtime, "1234")
            other = _pod("other", image="busybox:1.37")
            other["metadata"]["uid"] = "1234"  # copied along with the rest of the manifest
            (manifests / "other.yaml").write_text(json.dumps(other))
            agent.hint_manifests()
            _settle(agent)
            assert agent.pods["1234"].key == GOOD_KEY, "the good pod was replaced by another one"
            assert _running(runtime, "1234") == {container_id}, "the good pod's container was stopped"
            assert any("other.yaml" in text for text in agent.problems), "the conflict is not reported"
        finally:
            store.close()


@pytest.mark.parametrize("content", [b"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n"
                                     b"  - {name: a, image: b}\n", b"kind: Nope\n"], ids=["valid-pod", "invalid"])
def test_regression_file_name_not_utf8_crashes_the_pass(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        manifests, runtime, store, agent = _agent_env(directory)
        try:
            with open(os.path.join(os.fsencode(manifests), b"\xff.yaml"), "wb") as file:
                file.write(content)
            scan(manifests)
            _settle(agent)
        finally:
            store.close()


def test_regression_snake_case_field_names_are_applied_not_reported() -> None:
    doc = _pod("web", image_pull_policy="Never")
    doc["spec"]["init_containers"] = [{"name": "init", "image": "busybox:1.36"}]
    decoded = decode_document(doc, source="web.yaml")
    assert decoded.desired is not None
    assert {w.path for w in decoded.warnings} >= {"spec.init_containers", "spec.containers[0].image_pull_policy"}
    assert decoded.desired.pod.spec.init_containers == []  # Kubernetes drops unknown fields
