"""The resource metrics API's discovery and paths, and the events' watch, on an `ApiServer` over a
store written here (no containers: the node's own figures come from /proc); `kubelite get events
-w` and `--watch-only` over the same kind of store.
"""

from __future__ import annotations

import http.client
import json
import threading
import time

from kubelite.store.store import Store
from tests.apinode import bare_api, get_from
from tests.helpers import at


def _json(api, path: str):
    code, _, body = get_from(api, path)
    return code, json.loads(body)


def test_discovery_lists_metrics_k8s_io_and_its_resources(tmp_path):
    with bare_api(tmp_path) as api:
        code, groups = _json(api, "/apis")
        assert code == 200
        metrics = [g for g in groups["groups"] if g["name"] == "metrics.k8s.io"]
        assert metrics == [{"name": "metrics.k8s.io", "versions": [{"groupVersion": "metrics.k8s.io/v1beta1",
                                                                     "version": "v1beta1"}],
                            "preferredVersion": {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}}]
        code, group = _json(api, "/apis/metrics.k8s.io")
        assert code == 200 and group["kind"] == "APIGroup"
        code, resources = _json(api, "/apis/metrics.k8s.io/v1beta1")
        assert code == 200 and resources["groupVersion"] == "metrics.k8s.io/v1beta1"
        assert {r["name"]: (r["kind"], r["namespaced"]) for r in resources["resources"]} == {
            "nodes": ("NodeMetrics", False), "pods": ("PodMetrics", True)}
        code, core = _json(api, "/api/v1")
        assert "watch" in next(r for r in core["resources"] if r["name"] == "events")["verbs"]


def test_node_metrics_come_from_the_host_and_pods_without_containers_have_none(tmp_path):
    with bare_api(tmp_path) as api:
        code, nodes = _json(api, "/apis/metrics.k8s.io/v1beta1/nodes")
        assert code == 200 and nodes["kind"] == "NodeMetricsList"
        [node] = nodes["items"]
        assert node["metadata"]["name"] == "node1" and node["window"].endswith("s")
        assert node["usage"]["cpu"].endswith("n") and int(node["usage"]["cpu"][:-1]) >= 0
        assert node["usage"]["memory"].endswith("Ki") or node["usage"]["memory"].isdigit()
        code, one = _json(api, "/apis/metrics.k8s.io/v1beta1/nodes/node1")
        assert code == 200 and one["kind"] == "NodeMetrics"
        assert _json(api, "/apis/metrics.k8s.io/v1beta1/nodes/other")[0] == 404
        code, pods = _json(api, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods")
        assert code == 200 and pods == {"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1",
                                        "metadata": {}, "items": []}
        assert _json(api, "/apis/metrics.k8s.io/v1beta1/pods")[1]["items"] == []
        code, missing = _json(api, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web")
        assert code == 404 and missing["reason"] == "NotFound"
        assert _json(api, "/apis/metrics.k8s.io/v1beta1/pods/web")[0] == 404     # a pod needs its namespace
        assert _json(api, "/apis/metrics.k8s.io/v1beta2/pods")[0] == 404
        assert _json(api, "/apis/metrics.k8s.io/v1beta1/pods?watch=true")[0] == 405
        assert _json(api, "/apis/metrics.k8s.io/v1beta1/pods?labelSelector=a%20in%20(b")[0] == 400
        assert get_from(api, "/apis/metrics.k8s.io/v1beta1/nodes", token=None)[0] == 401


def _event(store: Store, reason: str, second: float, namespace: str = "default") -> None:
    with store.transaction():
        store.record_event(namespace=namespace, kind="Pod", name="web", uid="u1", type_="Normal", reason=reason,
                           message=f"{reason} it", now=at(second))


def test_a_watch_of_events_sends_the_list_then_each_write_resuming_from_a_resource_version(tmp_path):
    with bare_api(tmp_path) as api:
        store = Store(api.root)
        try:
            _event(store, "Pulled", 0)
            code, listed = _json(api, "/api/v1/namespaces/default/events")
            rv = listed["metadata"]["resourceVersion"]
            assert code == 200 and [e["reason"] for e in listed["items"]] == ["Pulled"]
            _event(store, "Created", 1)
            _event(store, "Created", 2)        # counted again: MODIFIED
            _event(store, "Elsewhere", 3, namespace="other")
            conn = http.client.HTTPSConnection(api.host, api.port, context=api.client_context, timeout=10)
            conn.request("GET", f"/api/v1/namespaces/default/events?watch=true&resourceVersion={rv}",
                         headers={"Authorization": f"Bearer {api.token}"})
            response = conn.getresponse()
            assert response.status == 200
            first = json.loads(response.readline())
            assert (first["type"], first["object"]["reason"], first["object"]["count"]) == ("MODIFIED", "Created", 2)
            later = threading.Timer(0.3, lambda: (_event(store, "Started", 4), api.notify()))
            later.start()
            started = time.monotonic()
            second = json.loads(response.readline())
            assert (second["type"], second["object"]["reason"]) == ("ADDED", "Started")
            assert time.monotonic() - started < 5      # woken by the feed, not its slow poll
            assert int(second["object"]["metadata"]["resourceVersion"]) > int(rv)
            later.join()
            conn.close()
            # without a resourceVersion: what exists first, as ADDED; the table form kubectl asks for
            code, headers, body = get_from(api, "/api/v1/namespaces/default/events?watch=true&timeoutSeconds=1",
                                           headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            assert [line["type"] for line in lines] == ["ADDED"] * 3
            assert lines[0]["object"]["kind"] == "Table"
            assert [line["object"]["rows"][0]["cells"][2] for line in lines] == ["Pulled", "Created", "Started"]
            assert get_from(api, "/api/v1/configmaps?watch=true")[0] == 405
        finally:
            store.close()


def test_can_i_answers_get_and_list_on_the_resource_metrics_for_the_read_only_credential(tmp_path):
    from kubelite.apiserver import objects

    def review(verb: str, resource: str) -> bool:
        body = {"spec": {"resourceAttributes": {"group": "metrics.k8s.io", "resource": resource, "verb": verb}}}
        return objects.access_review(body)["status"]["allowed"]

    assert review("list", "pods") and review("get", "nodes")
    assert not review("watch", "pods") and not review("delete", "pods") and not review("list", "deployments")


def test_kubelite_get_events_watch_only_prints_new_events_with_one_header(tmp_path):
    import subprocess
    import sys
    import time

    from kubelite.store.store import Store
    from tests.apinode import Stream
    from tests.helpers import at
    from tests.real import REPO

    store = Store(tmp_path)
    with store.transaction():
        store.record_event(namespace="default", kind="Pod", name="old", uid="u0", type_="Normal", reason="Started",
                           message="before the watch", now=at(0))
    env = {**__import__("os").environ, "KUBELITE_ROOT": str(tmp_path), "PYTHONPATH": str(REPO)}
    streams = [Stream(subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "get", "events", *flags], env=env,
                                       cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
               for flags in (["--watch-only"], ["-w"])]
    try:
        streams[1].until(lambda line: "pod/old" in line, what="the list")
        time.sleep(0.5)   # the watch-only one has read its place

        def write(*events: tuple[int, str]) -> None:
            with store.transaction():
                for second, reason in events:
                    store.record_event(namespace="default", kind="Pod", name="web", uid="u1", type_="Warning",
                                       reason=reason, message="it", now=at(second))
            for stream in streams:
                stream.until(lambda line: "BackOff" in line, what=f"the BackOff of {events}")

        write((1, "Killing"), (2, "BackOff"))
        write((3, "BackOff"))        # counted again: printed again
    finally:
        for stream in streams:
            stream.close()
        store.close()
    only, listed = streams[0].seen, streams[1].seen
    assert only[0].split()[:3] == ["LAST", "SEEN", "TYPE"] and "pod/old" not in "".join(only)
    assert [line.split()[2] for line in only[1:]] == ["Killing", "BackOff", "BackOff"]
    assert [line.split()[:2] for line in listed].count(["LAST", "SEEN"]) == 1     # one header, then rows only
    assert [line.split()[2] for line in listed[1:]] == ["Started", "Killing", "BackOff", "BackOff"]
