"""Which pod and container a verb reaches (`runtime.targets`), and the words when none: one table
for the API's exec, attach and port-forward and the CLI's exec, attach, cp, kill, logs and
port-forward."""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.runtime import targets
from kubelite.runtime.targets import TargetError

RUNNING = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
EXITED = {"terminated": {"exitCode": 0}}
WAITING = {"waiting": {"reason": "ContainerCreating"}}


def status(name: str, state: dict, cid: str | None = "runc://abc") -> dict[str, Any]:
    return {"name": name, "state": state, "restartCount": 0, **({"containerID": cid} if cid else {})}


def make_pod(containers=("app",), init=(), ephemeral=(), statuses=(), init_statuses=(), annotation=None,
             deleting=False, phase="Running") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web", "namespace": "default", "uid": "u1"}
    if annotation is not None:
        meta["annotations"] = {targets.DEFAULT_CONTAINER_ANNOTATION: annotation}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta,
            "spec": {"containers": [{"name": n} for n in containers], "initContainers": [{"name": n} for n in init],
                     "ephemeralContainers": [{"name": n} for n in ephemeral]},
            "status": {"phase": phase, "containerStatuses": list(statuses),
                       "initContainerStatuses": list(init_statuses)}}


@pytest.mark.parametrize("pod, asked, name, notice", [
    (make_pod(), None, "app", None),                                          # the only one: no notice
    (make_pod(("a", "b")), None, "a", 'Defaulted container "a" out of: a, b'),
    (make_pod(("a", "b")), "b", "b", None),                                   # named: no notice
    (make_pod(("a",), init=("setup",)), None, "a", 'Defaulted container "a" out of: a, setup (init)'),
    (make_pod(("a", "b"), init=("i",), ephemeral=("dbg",)), None, "a",
     'Defaulted container "a" out of: a, b, dbg (ephem), i (init)'),       # kubectl's order
    (make_pod(("a", "b"), annotation="b"), None, "b", None),                  # the annotation's, quietly
    (make_pod(("a", "b"), annotation="nope"), None, "a", 'Defaulted container "a" out of: a, b'),
    (make_pod(("a",), init=("setup",), annotation="setup"), None, "setup", None),
    (make_pod(("a",), init=("setup",)), "setup", "setup", None),              # an init container by name
    (make_pod(("a",), ephemeral=("dbg",)), "dbg", "dbg", None),
])
def test_the_container_chosen(pod, asked, name, notice):
    target = targets.choose(pod, asked)
    assert (target.name, target.notice) == (name, notice)


@pytest.mark.parametrize("pod, asked, message, code, server", [
    (make_pod(("a", "b")), "c", "container c is not valid for pod web", 400, True),
    (make_pod(containers=()), None, "pod web does not have any containers", 400, True),
    (make_pod(statuses=[status("app", WAITING, None)]), None,
     'unable to upgrade connection: container not found ("app")', 400, False),
    (make_pod(statuses=[status("app", EXITED)]), None,
     'unable to upgrade connection: container not found ("app")', 400, False),
    (make_pod(statuses=[]), None, 'unable to upgrade connection: container not found ("app")', 400, False),
    (make_pod(statuses=[status("app", RUNNING, "")]), None,      # running but no runtime ID yet
     'unable to upgrade connection: container not found ("app")', 400, False),
    (make_pod(("a",), init=("setup",), statuses=[status("a", RUNNING)], init_statuses=[status("setup", EXITED)]),
     "setup", 'unable to upgrade connection: container not found ("setup")', 400, False),
    (make_pod(("a", "b"), statuses=[status("a", EXITED), status("b", RUNNING)]), "a",
     'unable to upgrade connection: container not found ("a")', 400, False),
    (make_pod(statuses=[status("app", EXITED)], deleting=True), None,
     "unable to upgrade connection: pod does not exist", 404, False),
])
def test_what_cannot_be_reached_is_told_in_kubectls_words(pod, asked, message, code, server):
    with pytest.raises(TargetError) as caught:
        targets.running(pod, asked)
    assert (caught.value.message, caught.value.code, caught.value.server) == (message, code, server)
    prefix = f"Error from server ({caught.value.reason}): " if server else "error: "
    assert caught.value.kubectl_line == prefix + message


@pytest.mark.parametrize("pod, asked, name", [
    (make_pod(statuses=[status("app", RUNNING)]), None, "app"),
    (make_pod(("a",), init=("setup",), init_statuses=[status("setup", RUNNING)]), "setup", "setup"),
    (make_pod(statuses=[status("app", RUNNING)], deleting=True), None, "app"),   # during its grace period
])
def test_a_running_container_is_reached(pod, asked, name):
    target = targets.running(pod, asked)
    assert (target.name, target.container_id) == (name, "runc://abc")


def test_the_pod_record_not_being_deleted_comes_first():
    old, new = make_pod(deleting=True), make_pod()
    new["metadata"]["uid"] = "u2"
    assert targets.pick_pod([old, new], "web")["metadata"]["uid"] == "u2"
    assert targets.pick_pod([old], "web")["metadata"]["uid"] == "u1"
    with pytest.raises(TargetError) as caught:
        targets.pick_pod([], "web")
    assert caught.value.kubectl_line == 'Error from server (NotFound): pods "web" not found'
    assert caught.value.code == 404


@pytest.mark.parametrize("phase, verb, message", [
    ("Succeeded", "exec", "cannot exec into a container in a completed pod; current phase is Succeeded"),
    ("Failed", "cp", "cannot exec into a container in a completed pod; current phase is Failed"),
    ("Succeeded", "attach", "cannot attach a container in a completed pod; current phase is Succeeded"),
    ("Pending", "port-forward", "unable to forward port because pod is not running. Current status=Pending"),
    ("Succeeded", "port-forward", "unable to forward port because pod is not running. Current status=Succeeded"),
    ("Running", "exec", None), ("Pending", "exec", None), ("Running", "port-forward", None),
])
def test_kubectls_own_refusal_by_phase(phase, verb, message):
    pod = make_pod(phase=phase)
    if message is None:
        targets.refuse_phase(pod, verb)
        return
    with pytest.raises(TargetError) as caught:
        targets.refuse_phase(pod, verb)
    assert caught.value.kubectl_line == f"error: {message}"


def test_a_port_forward_without_a_sandbox():
    assert targets.no_sandbox(make_pod()).message == \
        'unable to upgrade connection: pod "web" is not running: it has no sandbox to forward to'
    gone = targets.no_sandbox(make_pod(deleting=True))
    assert (gone.message, gone.code) == ("unable to upgrade connection: pod does not exist", 404)
