"""The one QoS rule (`api.qos`): Kubernetes' `ComputePodQOS`, where only cpu and memory count.

The same table is asserted three ways: the rule itself, the stored `status.qosClass` that
`core.status` computes, and `kubectl describe pod` for a pod without `status.qosClass`.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from typing import Any

import pytest

from kubelite.api import qos
from kubelite.api.decode import decode_document
from kubelite.kubectl.describe import describe_pod
from kubelite.core.status import pod_status, qos_class
from kubelite.core.types import PodRecord
from tests.helpers import T0, observed, pod_doc
from tests.simulated import simulated_node

GI = {"cpu": "1", "memory": "1Gi"}

# (pod-level resources or None, app containers' resources, init containers as (resources, sidecar), class)
CASES: list[tuple[str, dict | None, list[dict], list[tuple[dict, bool]], str]] = [
    ("nothing set", None, [{}], [], "BestEffort"),
    ("only ephemeral-storage requested", None, [{"requests": {"ephemeral-storage": "1Gi"}}], [], "BestEffort"),
    ("only ephemeral-storage limited", None, [{"limits": {"ephemeral-storage": "1Gi"}}], [], "BestEffort"),
    ("a zero request counts as unset", None, [{"requests": {"cpu": "0"}}], [], "BestEffort"),
    ("a cpu request", None, [{"requests": {"cpu": "100m"}}], [], "Burstable"),
    ("limits only: requests default to them", None, [{"limits": GI}], [], "Guaranteed"),
    ("equal requests written differently", None,
     [{"limits": GI, "requests": {"cpu": "1000m", "memory": "1024Mi"}}], [], "Guaranteed"),
    ("guaranteed plus ephemeral-storage", None,
     [{"limits": {**GI, "ephemeral-storage": "1Gi"}, "requests": {"ephemeral-storage": "10Mi"}}], [], "Guaranteed"),
    ("a smaller request", None, [{"limits": GI, "requests": {"cpu": "500m"}}], [], "Burstable"),
    ("only a cpu limit", None, [{"limits": {"cpu": "1"}}], [], "Burstable"),
    ("one container without limits", None, [{"limits": GI}, {}], [], "Burstable"),
    ("an init container without limits", None, [{"limits": GI}], [({}, False)], "Burstable"),
    ("init and app guaranteed", None, [{"limits": GI}], [({"limits": GI}, False)], "Guaranteed"),
    ("a burstable init container", None, [{}], [({"requests": {"memory": "1Mi"}}, False)], "Burstable"),
    ("pod level: limits, requests default to them", {"limits": GI}, [{}], [], "Guaranteed"),
    ("pod level: requests equal limits", {"requests": GI, "limits": GI}, [{}], [], "Guaranteed"),
    ("pod level: only memory", {"limits": {"memory": "1Gi"}}, [{}], [], "Burstable"),
    ("pod level: a smaller request", {"requests": {"cpu": "500m"}, "limits": GI}, [{}], [], "Burstable"),
    ("pod level: request derived from a container's", {"limits": GI}, [{"requests": {"cpu": "100m"}}], [],
     "Burstable"),
    ("pod level: request derived from a sidecar's", {"limits": GI}, [{}], [({"requests": {"memory": "1Mi"}}, True)],
     "Burstable"),
    ("pod level decides over containers", {"requests": {"cpu": "1"}}, [{"limits": GI}], [], "Burstable"),
    ("pod level without cpu or memory: container rules", None, [{"limits": GI}], [], "Guaranteed"),
]
IDS = [case[0] for case in CASES]


def _doc(pod_level: dict | None, app: list[dict], init: list[tuple[dict, bool]]) -> dict[str, Any]:
    doc = pod_doc(containers=[f"app{i}" for i in range(len(app))])
    for container, resources in zip(doc["spec"]["containers"], app):
        container["resources"] = copy.deepcopy(resources)
    doc["spec"]["initContainers"] = [
        {"name": f"init{i}", "image": "busybox:1.36", "resources": copy.deepcopy(resources),
         **({"restartPolicy": "Always"} if sidecar else {})}
        for i, (resources, sidecar) in enumerate(init)]
    if pod_level is not None:
        doc["spec"]["resources"] = copy.deepcopy(pod_level)
    return doc


def _requirements(resources: dict) -> qos.Requirements:
    return qos.Requirements(resources.get("requests", {}), resources.get("limits", {}))


@pytest.mark.parametrize("name, pod_level, app, init, expected", CASES, ids=IDS)
def test_the_rule(name, pod_level, app, init, expected):
    pod = _requirements(pod_level) if pod_level is not None else None
    inits = [qos.InitContainer(_requirements(r), sidecar) for r, sidecar in init]
    assert qos.qos_class([_requirements(r) for r in app], inits, pod) == expected


@pytest.mark.parametrize("name, pod_level, app, init, expected", CASES, ids=IDS)
def test_the_stored_status_and_the_printer_agree_with_the_rule(name, pod_level, app, init, expected):
    doc = _doc(pod_level, app, init)
    decoded = decode_document(doc, source="/manifests/web.yaml")
    assert decoded.desired is not None, decoded.errors
    d = decoded.desired
    assert qos_class(d.pod) == expected
    status = pod_status(d, observed(d, sb=None), record=PodRecord(), now=T0)
    assert status["qosClass"] == expected
    printed = [line.split() for line in describe_pod(doc, [], T0).splitlines() if line.startswith("QoS")]
    assert printed == [["QoS", "Class:", expected]]


def test_a_stored_class_is_printed_as_stored():
    doc = _doc(None, [{"requests": {"ephemeral-storage": "1Gi"}}], [])
    doc["status"] = {"qosClass": "Burstable"}
    printed = [line.split() for line in describe_pod(doc, [], T0).splitlines() if line.startswith("QoS")]
    assert printed == [["QoS", "Class:", "Burstable"]]


@pytest.mark.parametrize("value, expected", [("500m", qos.Fraction(1, 2)), (2, 2), ("1Ki", 1024),
                                             ("bad", None), (None, None), (True, None)])
def test_an_amount_is_the_one_quantity_parser(value, expected):
    assert qos.amount(value) == expected


def test_a_stored_class_of_an_older_kubelite_is_corrected_on_the_next_pass(tmp_path):
    with simulated_node(tmp_path) as node:
        doc = pod_doc("scratch")
        doc["spec"]["containers"][0]["resources"] = {"requests": {"ephemeral-storage": "1Gi"}}
        node.write("scratch.yaml", doc)
        node.settle()
        assert node.pod("scratch")["status"]["qosClass"] == "BestEffort"
        node.store.close()
        with sqlite3.connect(node.root / "kubelite.db") as db:   # what the earlier rule stored
            (text,) = db.execute("SELECT object FROM pods WHERE name = 'scratch'").fetchone()
            stored = json.loads(text)
            stored["status"]["qosClass"] = "Burstable"
            db.execute("UPDATE pods SET object = ? WHERE name = 'scratch'", (json.dumps(stored),))
        db.close()   # the context manager only commits
        node.restart_agent()
        assert node.pod("scratch")["status"]["qosClass"] == "Burstable"
        node.settle()
        assert node.pod("scratch")["status"]["qosClass"] == "BestEffort"
