"""change_effect(): what an edited manifest does to its pod, one row per kind of change — and plan()
acting on the same change does exactly that (the containers it stops, or the whole pod)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from kubelite.api.decode import DesiredPod, decode_document
from kubelite.core.change import Effect, change_effect, changed_fields, config_effects
from kubelite.core.plan import plan
from kubelite.core.types import ObservedPod, PodRecord, StopReason
from tests.helpers import at, exited, pod_doc, running, sandbox

SOURCE = "/manifests/web.yaml"


def decoded(doc: dict[str, Any], source: str = SOURCE) -> DesiredPod:
    result = decode_document(copy.deepcopy(doc), source=source)
    assert result.desired is not None, result.errors
    return result.desired


def base() -> dict[str, Any]:
    doc = pod_doc("web", containers=["app", "log"], init=["setup"])
    doc["spec"]["containers"][0]["env"] = [{"name": "MODE", "value": "fast"}]
    doc["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    doc["metadata"]["labels"] = {"app": "web"}
    return doc


def edit(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    doc = base()
    change(doc)
    return doc


def app(doc: dict[str, Any], i: int = 0) -> dict[str, Any]:
    return doc["spec"]["containers"][i]


# (what changed, the edit, effect, the containers and their action, a word every reason line holds)
ROWS: list[tuple[str, Callable[[dict[str, Any]], Any], Effect, list[tuple[str, str]], str]] = [
    ("nothing", lambda d: None, Effect.UNCHANGED, [], ""),
    ("image of one container", lambda d: app(d).update(image="busybox:1.37"), Effect.RESTART,
     [("app", "restart")], ""),
    ("env of one container", lambda d: app(d)["env"][0].update(value="slow"), Effect.RESTART, [("app", "restart")], ""),
    ("command of the second", lambda d: app(d, 1).update(command=["sh"]), Effect.RESTART, [("log", "restart")], ""),
    ("both containers", lambda d: [app(d, i).update(image="busybox:1.37") for i in (0, 1)], Effect.RESTART,
     [("app", "restart"), ("log", "restart")], ""),
    ("a container added", lambda d: d["spec"]["containers"].append({"name": "extra", "image": "busybox:1.36"}),
     Effect.RESTART, [("extra", "start")], ""),
    ("a container removed", lambda d: d["spec"]["containers"].pop(1), Effect.RESTART, [("log", "stop")], ""),
    ("labels", lambda d: d["metadata"]["labels"].update(tier="front"), Effect.UPDATE, [], "metadata.labels"),
    ("annotations", lambda d: d["metadata"].update(annotations={"a": "b"}), Effect.UPDATE, [], "metadata.annotations"),
    ("restartPolicy", lambda d: d["spec"].update(restartPolicy="OnFailure"), Effect.UPDATE, [], "spec.restartPolicy"),
    ("grace period", lambda d: d["spec"].update(terminationGracePeriodSeconds=5), Effect.UPDATE, [],
     "spec.terminationGracePeriodSeconds"),
    ("containers reordered", lambda d: d["spec"]["containers"].reverse(), Effect.UPDATE, [], "reordered"),
    ("volumes", lambda d: d["spec"]["volumes"].append({"name": "more", "emptyDir": {}}), Effect.REPLACE, [],
     "spec.volumes[more]"),
    ("init container image", lambda d: d["spec"]["initContainers"][0].update(image="busybox:1.37"), Effect.REPLACE,
     [], "spec.initContainers[setup].image"),
    ("hostNetwork", lambda d: d["spec"].update(hostNetwork=True), Effect.REPLACE, [], "spec.hostNetwork"),
    ("a host port", lambda d: app(d).update(ports=[{"containerPort": 80, "hostPort": 8080}]), Effect.REPLACE, [],
     "hostPort"),
]


@pytest.mark.parametrize("what, change, effect, containers, word", ROWS, ids=[r[0] for r in ROWS])
def test_each_kind_of_change_has_its_effect(what, change, effect, containers, word):
    old, new = decoded(base()), decoded(edit(change))
    result = change_effect(old, new, old_source=SOURCE, new_source=SOURCE)
    assert result.effect is effect, result
    assert [(c.name, c.action) for c in result.containers] == containers
    assert result.new_uid is (effect is Effect.REPLACE)
    if word:
        assert any(word in reason for reason in result.reasons), result.reasons
    assert result.changed is (effect is not Effect.UNCHANGED)


@pytest.mark.parametrize("what, change, effect, containers, word", [r for r in ROWS if r[2] is Effect.RESTART],
                         ids=[r[0] for r in ROWS if r[2] is Effect.RESTART])
def test_plan_stops_exactly_the_containers_the_change_restarts(what, change, effect, containers, word):
    """The agent's plan() over the old pod's running containers and the new manifest stops the
    restarted and removed ones (nothing else) and starts the added ones."""
    old, new = decoded(base()), decoded(edit(change))
    assert new.uid == old.uid
    # the init container ran to completion, the app containers run: the pod as the old manifest made it
    live = ObservedPod(old.uid, (sandbox(old),), (exited(old, "setup", 0),
                                                  *(running(old, c.name) for c in old.pod.spec.containers)))
    actions = plan(new, live, record=PodRecord(start_time=at(0)), backoff={}, now=at(10))
    result = change_effect(old, new, old_source=SOURCE, new_source=SOURCE)
    stopped = {k.name for k in actions.to_kill}
    assert stopped == {c.name for c in result.containers if c.action in ("restart", "stop")}
    assert {k.stop_reason for k in actions.to_kill if k.name in {c.name for c in result.containers
                                                                  if c.action == "restart"}} <= \
        {StopReason.DEFINITION_CHANGED}
    assert {s.name for s in actions.to_start} == {c.name for c in result.containers if c.action == "start"}
    assert not actions.kill_pod and not actions.create_sandbox


def test_a_pod_level_change_under_a_fixed_uid_makes_the_sandbox_again_and_plan_kills_the_pod():
    doc = base()
    doc["metadata"]["uid"] = "0f1e2d3c-0000-4000-8000-000000000001"
    old = decoded(doc)
    doc["spec"]["volumes"].append({"name": "more", "emptyDir": {}})
    new = decoded(doc)
    result = change_effect(old, new, old_source=SOURCE, new_source=SOURCE)
    assert result.effect is Effect.REPLACE and not result.new_uid
    assert any("same UID" in r for r in result.reasons)
    live = ObservedPod(old.uid, (sandbox(old),), tuple(running(old, n) for n in ("app", "log")))
    actions = plan(new, live, record=PodRecord(start_time=at(0)), backoff={}, now=at(10))
    assert actions.kill_pod and {k.name for k in actions.to_kill} == {"app", "log"}


def test_a_pod_moved_to_another_file_is_replaced_unless_it_sets_its_uid():
    old, new = decoded(base()), decoded(base(), source="/manifests/other.yaml")
    result = change_effect(old, new, old_source=SOURCE, new_source="/manifests/other.yaml")
    assert result.effect is Effect.REPLACE and result.new_uid
    assert "moved from /manifests/web.yaml to /manifests/other.yaml" in result.reasons[0]
    doc = base()
    doc["metadata"]["uid"] = "0f1e2d3c-0000-4000-8000-000000000002"
    old, new = decoded(doc), decoded(doc, source="/manifests/other.yaml")
    result = change_effect(old, new, old_source=SOURCE, new_source="/manifests/other.yaml")
    assert result.effect is Effect.UPDATE and result.reasons == ("now defined in /manifests/other.yaml",)


def test_create_delete_and_the_summary_lines():
    old, new = decoded(base()), decoded(edit(lambda d: app(d).update(image="busybox:1.37")))
    assert change_effect(None, new).effect is Effect.CREATE
    assert change_effect(old, None).effect is Effect.DELETE
    assert change_effect(old, new).summary() == "restart container app (image changed)"
    both = decoded(edit(lambda d: (app(d).update(image="x:1"), d["spec"]["containers"].pop(1))))
    assert change_effect(old, both).summary() == "restart container app (image changed); stop container log (removed)"
    replaced = change_effect(old, decoded(edit(lambda d: d["spec"].update(hostname="h"))))
    assert replaced.summary().startswith("replace pod (field spec.hostname changed: the pod's sandbox must be made "
                                         "again; a new UID")
    with pytest.raises(ValueError):
        change_effect(None, None)


def test_what_runs_refines_the_effect():
    old, new = decoded(base()), decoded(edit(lambda d: app(d).update(image="busybox:1.37")))
    stopped = change_effect(old, new, running={"log"})
    assert stopped.effect is Effect.UPDATE and [(c.name, c.action) for c in stopped.containers] == [("app", "kept")]
    assert stopped.reasons == ("container app (image changed): exited, not run again by its restart policy",)
    finished = change_effect(old, new, running=set(), finished=True)
    assert finished.effect is Effect.UPDATE and "finished" in finished.reasons[0]
    volumes = decoded(edit(lambda d: d["spec"]["volumes"].append({"name": "more", "emptyDir": {}})))
    assert change_effect(old, volumes, finished=True).effect is Effect.REPLACE, "a new UID runs again"
    gone = decoded(edit(lambda d: d["spec"]["containers"].pop(1)))
    assert change_effect(old, gone, running={"app"}).effect is Effect.UPDATE, "a removed exited container stops nothing"


def test_changed_fields_names_list_items_by_name_and_keeps_order():
    a = {"spec": {"containers": [{"name": "x", "image": "1", "env": [{"name": "A", "value": "1"}]}], "n": 1}}
    b = {"spec": {"containers": [{"name": "x", "image": "2", "env": [{"name": "A", "value": "2"}]},
                                 {"name": "y"}], "m": 2}}
    assert changed_fields(a, b) == ["spec.containers[x].image", "spec.containers[x].env[A].value",
                                    "spec.containers[y]", "spec.n", "spec.m"]
    assert changed_fields(a, b, depth=2) == ["spec.containers", "spec.n", "spec.m"]
    assert changed_fields([1, 2], [2, 1], "args") == ["args"]
    assert changed_fields(a, a) == []


def test_config_effects_follow_how_the_pod_takes_the_object():
    doc = pod_doc("web", containers=["app", "side"])
    doc["spec"]["volumes"] = [{"name": "conf", "configMap": {"name": "cfg"}},
                              {"name": "one", "secret": {"secretName": "db"}}]
    doc["spec"]["containers"][0]["volumeMounts"] = [{"name": "conf", "mountPath": "/etc/conf"}]
    doc["spec"]["containers"][1]["volumeMounts"] = [{"name": "one", "mountPath": "/p", "subPath": "password"}]
    doc["spec"]["containers"][1]["envFrom"] = [{"configMapRef": {"name": "env"}}]
    pod = decoded(doc).pod
    assert config_effects(pod, ("ConfigMap", "default", "cfg")) == ["volume files change in place"]
    assert config_effects(pod, ("Secret", "default", "db")) == ["files mounted with subPath keep their content"]
    assert config_effects(pod, ("ConfigMap", "default", "env")) == \
        ["env changes only when a container is created again"]
    assert config_effects(pod, ("ConfigMap", "default", "env"), change="delete") == \
        ["containers created again from now on wait for it (unless optional)"]
    assert config_effects(pod, ("ConfigMap", "default", "cfg"), change="create") == \
        ["a container waiting for it starts"]
    assert config_effects(pod, ("ConfigMap", "other", "cfg")) == []
