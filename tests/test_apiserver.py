"""The Kubernetes read API of `kubelite serve`, read by the real kubectl, the Python `kubernetes`
client and a Prometheus text parser, against a daemon on the simulated runtime.

The daemon runs in-process (`serve()` on a thread) with its API on a free loopback port; kubectl
runs as a process with a kubeconfig that `kubelite kubeconfig` printed.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kubelite.apiserver import auth
from kubelite.apiserver.limits import Limits
from tests.apinode import ApiNode, bare_api, fake_api_options, get_from, require_kubectl, tls_to, wait_for
from tests.helpers import pod_doc
from tests.simulated import simulated_node



@pytest.fixture(autouse=True)
def _kubectl_present():
    require_kubectl()


def labelled(name: str, namespace: str = "default", labels: dict | None = None, **kw) -> dict:
    doc = pod_doc(name, namespace=namespace, **kw)
    doc["metadata"]["labels"] = labels or {"app": name}
    for c in doc["spec"]["containers"] + doc["spec"].get("initContainers", []):
        c["image"], c["imagePullPolicy"] = "busybox:latest", "Never"
    return doc


def crashing(name: str, after: int = 1) -> dict:
    doc = labelled(name)
    doc["metadata"]["annotations"] = {"fake.kubelite.io/app": f"exit=1 after={after}"}
    return doc


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = ApiNode(tmp_path_factory.mktemp("api")).start()
    n.write(labelled("web", labels={"app": "web", "tier": "front"}))
    n.write(labelled("duo", containers=["a", "b"]))
    n.write(labelled("db", namespace="other", labels={"app": "db", "tier": "back"}))
    done = labelled("done", restartPolicy="Never")
    done["metadata"]["annotations"] = {"fake.kubelite.io/app": "exit=0 after=0"}
    n.write(done)

    def settled():
        pods = n.json("/api/v1/pods")["items"]
        phases = {p["metadata"]["name"]: p.get("status", {}).get("phase") for p in pods}
        return phases == {"web": "Running", "duo": "Running", "db": "Running", "done": "Succeeded"}

    wait_for(settled, what="the pods to run")
    yield n
    n.close()


@pytest.fixture
def fresh(tmp_path):
    n = ApiNode(tmp_path).start()
    yield n
    n.close()


def same_output(node: ApiNode, *args: str) -> tuple[str, str]:
    """kubectl's and kubelite's output of the same `get`; retried when AGE ticks over between the two."""
    for _ in range(3):
        theirs = node.kubectl("get", *args)
        ours = node.kubelite("get", *args)
        assert theirs.returncode == 0, theirs.stderr
        if theirs.stdout == ours.stdout:
            break
    return theirs.stdout, ours.stdout


# ------------------------------------------------------------------ kubectl get


def test_kubectl_get_pods_prints_the_same_rows_as_kubelite_get_pods(node):
    theirs, ours = same_output(node, "pods")
    assert theirs == ours
    assert theirs.splitlines()[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    rows = {line.split()[0]: line.split()[1:4] for line in theirs.splitlines()[1:]}
    assert rows == {"done": ["0/1", "Completed", "0"], "duo": ["2/2", "Running", "0"], "web": ["1/1", "Running", "0"]}


@pytest.mark.parametrize("args", [("pods", "-o", "wide"), ("pods", "-A"), ("pods", "-A", "-o", "wide"),
                                  ("pods", "-n", "other")])
def test_kubectl_wide_and_all_namespaces_match_kubelite(node, args):
    theirs, ours = same_output(node, *args)
    assert theirs == ours
    if "wide" in args:
        assert "NOMINATED NODE" in theirs and "node1" in theirs


def test_kubectl_get_pods_json_and_jsonpath(node):
    out = node.kubectl("get", "pods", "-o", "json")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert listed["kind"] == "List" or listed["kind"] == "PodList"
    assert sorted(p["metadata"]["name"] for p in listed["items"]) == ["done", "duo", "web"]
    web = next(p for p in listed["items"] if p["metadata"]["name"] == "web")
    assert web["status"]["phase"] == "Running" and web["spec"]["nodeName"] == "node1"
    out = node.kubectl("get", "pod", "web", "-o", "jsonpath={.status.phase} {.status.containerStatuses[0].ready}")
    assert out.stdout == "Running true"
    out = node.kubectl("get", "pods", "-A", "-o", "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} "
                       "{end}")
    assert out.stdout.split() == ["default/done", "default/duo", "default/web", "other/db"]


def test_label_and_field_selectors(node):
    def names(*args):
        out = node.kubectl("get", "pods", "-A", "-o", "name", *args)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert names("-l", "app=web") == ["pod/web"]
    assert names("-l", "tier") == ["pod/web", "pod/db"]
    assert names("-l", "tier in (back)") == ["pod/db"]
    assert names("-l", "tier!=back") == ["pod/done", "pod/duo", "pod/web"]
    assert names("--field-selector", "status.phase=Succeeded") == ["pod/done"]
    assert names("--field-selector", "status.phase!=Succeeded,metadata.namespace=other") == ["pod/db"]
    assert names("--field-selector", "spec.nodeName=node1", "-l", "app=duo") == ["pod/duo"]
    assert names("--field-selector", "metadata.name=web") == ["pod/web"]
    bad = node.kubectl("get", "pods", "--field-selector", "spec.image=x")
    assert bad.returncode != 0 and "field label not supported: spec.image" in bad.stderr


def test_a_missing_pod_is_notfound_as_kubernetes_says_it(node):
    out = node.kubectl("get", "pod", "nope")
    assert out.returncode == 1
    assert out.stderr.strip() == 'Error from server (NotFound): pods "nope" not found'
    code, body = node.request("/api/v1/namespaces/default/pods/nope")
    status = json.loads(body)
    assert code == 404 and (status["kind"], status["reason"], status["code"]) == ("Status", "NotFound", 404)


def test_describe_pod_shows_the_pod_and_its_events(node):
    out = node.kubectl("describe", "pod", "web")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in text.splitlines()
              if ":" in line and not line.startswith(" ")}
    assert fields["Name"] == "web" and fields["Namespace"] == "default" and fields["Status"] == "Running"
    assert fields["Node"].startswith("node1") and "app=web" in fields["Labels"]
    events = text.split("Events:")[1]
    for reason in ("Scheduled", "Pulled", "Created", "Started"):
        assert reason in events, text
    assert "Successfully assigned default/web to node1" in events


def test_get_events_with_field_selectors(node):
    out = node.kubectl("get", "events", "--field-selector", "involvedObject.name=web,reason=Scheduled")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert len(lines) == 2 and "pod/web" in lines[1] and "Scheduled" in lines[1]


def test_get_nodes_shows_this_machine_ready_with_capacity(node):
    out = node.kubectl("get", "nodes")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].split()[:3] == ["node1", "Ready", "<none>"]
    obj = json.loads(node.kubectl("get", "node", "node1", "-o", "json").stdout)
    assert obj["status"]["capacity"]["cpu"] == str(os.cpu_count())
    assert obj["status"]["allocatable"]["pods"] == "110"
    assert obj["status"]["capacity"]["memory"].endswith("Ki")
    assert obj["status"]["nodeInfo"]["operatingSystem"] == "linux"
    assert {a["type"] for a in obj["status"]["addresses"]} == {"InternalIP", "Hostname"}
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
    described = node.kubectl("describe", "node", "node1")
    assert described.returncode == 0, described.stderr
    assert "Non-terminated Pods:          (3 in total)" in described.stdout   # web, duo, db; not done
    assert "KubeletReady" in described.stdout


def test_namespaces_are_those_in_use(node):
    out = node.kubectl("get", "namespaces", "-o", "name")
    assert out.stdout.split() == ["namespace/default", "namespace/other"]


# ------------------------------------------------------------------ refusals


def test_writes_are_refused_as_method_not_allowed_and_change_nothing(node):
    out = node.kubectl("delete", "pod", "web", "--wait=false")
    assert out.returncode != 0
    assert "MethodNotAllowed" in out.stderr
    out = node.kubectl("label", "pod", "web", "x=y")
    assert out.returncode != 0 and "MethodNotAllowed" in out.stderr
    assert node.kubectl("get", "pod", "web", "-o", "name").stdout.strip() == "pod/web"
    code, body = node.request("/api/v1/namespaces/default/pods/web", method="DELETE")
    assert code == 405 and json.loads(body)["reason"] == "MethodNotAllowed"
    code, body = node.request("/api/v1/namespaces/default/pods/web/exec?command=true", method="POST")
    assert code == 403 and json.loads(body)["reason"] == "Forbidden"


@pytest.mark.parametrize("subresource", ["exec", "attach", "portforward"])
def test_the_streaming_verbs_are_forbidden_to_the_read_only_credential_and_logged(node, caplog, subresource):
    caplog.set_level("INFO", logger="kubelite.audit")
    for method in ("POST", "GET"):
        code, body = node.request(f"/api/v1/namespaces/default/pods/web/{subresource}?command=true&container=app",
                                  method=method)
        status = json.loads(body)
        assert (code, status["reason"]) == (403, "Forbidden"), body
        assert f'User "kubelite:viewer" cannot create resource "pods/{subresource}"' in status["message"]
    lines = [r.getMessage() for r in caplog.records if r.name == "kubelite.audit"]
    assert sum(f"kubelite:viewer {subresource} pod default/web refused" in line for line in lines) == 2, lines
    metrics = node.request("/metrics")[1].decode()
    assert f'kubelite_api_stream_sessions_total{{outcome="refused",user="kubelite:viewer",verb="{subresource}"}}' \
        in metrics


def test_the_admin_credential_reaches_the_streaming_verbs_only_by_an_upgrade(node):
    code, body = node.request("/api/v1/namespaces/default/pods/web/exec?command=true", method="POST",
                              token=node.admin_token)
    assert (code, json.loads(body)["message"]) == (400, "Upgrade request required"), body
    code, body = node.request("/api/v1/namespaces/default/pods/web/proxy", method="POST", token=node.admin_token)
    assert code == 403 and 'User "kubelite:admin" cannot create resource "pods/proxy"' in json.loads(body)["message"]
    code, body = node.request("/api/v1/namespaces/default/pods/web", method="DELETE", token=node.admin_token)
    assert code == 405   # the admin credential writes nothing either
    assert node.request("/api/v1/namespaces/default/pods/web", token=node.admin_token)[0] == 200


def test_kubeconfig_admin_prints_the_admin_credential_as_a_context_of_its_own(node):
    assert node.admin_token and node.admin_token != node.token
    path = auth.api_dir(node.root) / auth.ADMIN_TOKEN_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    config = yaml.safe_load(node.admin_kubeconfig.read_text())
    assert config["current-context"] == "node1-admin"
    assert config["users"] == [{"name": "node1-admin", "user": {"token": node.admin_token}}]
    assert config["contexts"][0]["context"] == {"cluster": "node1", "user": "node1-admin", "namespace": "default"}
    # merged with the read-only one: two contexts, one cluster
    merged = node.kubectl("config", "view", "--flatten", "-o", "json",
                          kubeconfig=Path(f"{node.kubeconfig}:{node.admin_kubeconfig}"))
    names = sorted(c["name"] for c in json.loads(merged.stdout)["contexts"])
    assert names == ["node1", "node1-admin"]


def test_kubectl_auth_can_i_answers_by_credential(node):
    def can_i(*args, kubeconfig=None):
        return node.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig).stdout.strip()

    for verb in ("exec", "attach", "portforward"):
        assert can_i("create", f"pods/{verb}").startswith("no")
        assert can_i("create", f"pods/{verb}", kubeconfig=node.admin_kubeconfig) == "yes"
        assert can_i("create", "pods", f"--subresource={verb}", kubeconfig=node.admin_kubeconfig) == "yes"
    assert can_i("get", "pods", kubeconfig=node.admin_kubeconfig) == "yes"
    assert can_i("delete", "pods", kubeconfig=node.admin_kubeconfig).startswith("no")
    assert can_i("create", "pods/proxy", kubeconfig=node.admin_kubeconfig).startswith("no")
    assert can_i("create", "pods", kubeconfig=node.admin_kubeconfig).startswith("no")


def test_kubectl_auth_can_i_answers_what_the_token_may_read(node):
    # kubectl sends this review as protobuf, and kubelite reads that encoding for it
    def can_i(*args):
        return node.kubectl("auth", "can-i", *args).stdout.strip()

    assert can_i("get", "pods") == "yes"
    assert can_i("watch", "pods", "-A") == "yes"
    assert can_i("get", "pods", "--subresource=log") == "yes"
    assert can_i("list", "secrets", "-n", "other") == "yes"
    assert can_i("delete", "pods").startswith("no - the read-only credential may get, list and watch only")
    assert can_i("create", "pods", "--subresource=exec").startswith("no")
    assert can_i("get", "/metrics") == "yes"
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": {"verb": "list", "resource": "nodes"}}}
    import http.client
    import ssl

    context = ssl.create_default_context(cafile=str(auth.api_dir(node.root) / "ca.crt"))
    host, port = node.url.removeprefix("https://").rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    conn.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=json.dumps(review),
                 headers={"Authorization": f"Bearer {node.token}", "Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 201 and json.loads(response.read())["status"]["allowed"] is True
    conn.close()


def test_without_the_token_there_is_no_answer(node, tmp_path):
    anonymous = tmp_path / "anonymous"
    anonymous.write_text("".join(line for line in node.kubeconfig.read_text().splitlines(keepends=True)
                                 if "token:" not in line))
    out = node.kubectl("get", "pods", kubeconfig=anonymous)   # kubectl asks for a user name, and gets none
    assert out.returncode != 0 and "web" not in out.stdout
    wrong = tmp_path / "wrong"
    wrong.write_text(node.kubeconfig.read_text().replace(node.token, "not-the-token"))
    out = node.kubectl("get", "pods", kubeconfig=wrong)
    assert out.returncode != 0 and "web" not in out.stdout
    assert "You must be logged in to the server" in out.stderr
    for path in ("/api/v1/pods", "/api/v1/namespaces/default/pods/web/log", "/metrics", "/api/v1/nodes"):
        code, body = node.request(path, token=None)
        assert code == 401 and json.loads(body)["reason"] == "Unauthorized" and b"web" not in body
    assert node.request("/healthz", token=None) == (200, b"ok")
    assert node.request("/readyz", token=None) == (200, b"ok")


def test_the_token_and_keys_are_readable_by_their_owner_only(node):
    directory = auth.api_dir(node.root)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("token", "ca.key", "server.key"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    config = node.kubeconfig.read_text()
    assert "current-context: \"node1\"" in config and node.token in config and node.url in config


# ------------------------------------------------------------------ logs


def write_log(node: ApiNode, pod: str, container: str, attempt: int, lines: list[tuple[str, str]]) -> None:
    uid = node.json(f"/api/v1/namespaces/default/pods/{pod}")["metadata"]["uid"]
    directory = node.root / "logs" / f"default_{pod}_{uid}" / container
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{attempt}.log").write_text("".join(f"{t} stdout F {text}\n" for t, text in lines))


def test_logs_tail_timestamps_and_container_choice(node):
    write_log(node, "web", "app", 0, [("2026-11-28T06:00:00.000000001Z", "one"),
                                      ("2026-11-28T06:00:01.5Z", "two"), ("2026-11-28T06:00:02Z", "three")])
    assert node.kubectl("logs", "web").stdout == "one\ntwo\nthree\n"
    assert node.kubectl("logs", "web", "--tail=2").stdout == "two\nthree\n"
    assert node.kubectl("logs", "web", "--tail=1", "--timestamps").stdout == \
        "2026-11-28T06:00:02.000000000Z three\n"
    assert node.kubectl("logs", "web", "--since=1h").stdout == ""   # written long ago
    from datetime import datetime, timezone

    recent = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    write_log(node, "web", "app", 0, [("2026-11-28T06:00:00Z", "old"), (recent, "recent")])
    assert node.kubectl("logs", "web", "--since=1h").stdout == "recent\n"
    previous = node.kubectl("logs", "web", "--previous")
    assert previous.returncode != 0 and 'previous terminated container "app" in pod "web" not found' in previous.stderr
    wrong = node.kubectl("logs", "web", "-c", "nope")
    assert wrong.returncode != 0 and "container nope is not valid for pod web" in wrong.stderr
    write_log(node, "duo", "b", 0, [("2026-11-28T06:00:00Z", "from b")])
    assert node.kubectl("logs", "duo", "-c", "b").stdout == "from b\n"


# ------------------------------------------------------------------ ConfigMaps and Secrets


def test_configmaps_and_secrets_come_from_the_config_objects_table(node):
    assert node.kubectl("get", "configmaps").stderr.strip() == "No resources found in default namespace."
    db = sqlite3.connect(node.root / "kubelite.db")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS config_objects (kind TEXT, namespace TEXT, name TEXT, uid TEXT, "
                   "source TEXT, object TEXT, created_at TEXT, resource_version INTEGER, "
                   "PRIMARY KEY (kind, namespace, name))")
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "default"},
              "data": {"a": "1", "b": "2"}}
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "default"},
                  "type": "Opaque", "data": {"password": base64.b64encode(b"hunter2").decode()}}
        for kind, obj in (("ConfigMap", cm), ("Secret", secret)):
            db.execute("INSERT OR REPLACE INTO config_objects VALUES (?, 'default', ?, ?, '/m/x.yaml', ?, ?, 7)",
                       (kind, obj["metadata"]["name"], f"uid-{kind}", json.dumps(obj), "2026-11-28T06:00:00Z"))
        db.commit()
    finally:
        db.close()
    out = node.kubectl("get", "configmaps")
    assert out.stdout.splitlines()[0].split() == ["NAME", "DATA", "AGE"]
    assert out.stdout.splitlines()[1].split()[:2] == ["settings", "2"]
    assert node.kubectl("get", "cm", "settings", "-o", "jsonpath={.data.b}").stdout == "2"
    out = node.kubectl("get", "secrets")
    assert out.stdout.splitlines()[1].split()[:3] == ["creds", "Opaque", "1"]
    encoded = node.kubectl("get", "secret", "creds", "-o", "jsonpath={.data.password}").stdout
    assert base64.b64decode(encoded) == b"hunter2"
    meta = node.json("/api/v1/namespaces/default/secrets/creds")["metadata"]
    assert (meta["uid"], meta["resourceVersion"]) == ("uid-Secret", "7")
    assert node.request("/api/v1/namespaces/other/configmaps/settings")[0] == 404


# ------------------------------------------------------------------ PersistentVolumeClaims and volumes


def test_kubectl_lists_claims_and_their_volumes(fresh):
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "store"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}
    fresh.write(claim)
    listed = wait_for(lambda: (listing := fresh.json("/api/v1/persistentvolumeclaims"))["items"] and listing, what="the claim")
    assert listed["kind"] == "PersistentVolumeClaimList"
    [item] = listed["items"]
    assert item["status"]["phase"] == "Bound" and item["metadata"]["namespace"] == "store"
    volume = item["spec"]["volumeName"]
    out = fresh.kubectl("get", "pvc", "-n", "store")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS", "MODES", "STORAGECLASS",
                                "VOLUMEATTRIBUTESCLASS", "AGE"]
    assert lines[1].split()[:7] == ["data", "Bound", volume, "5Gi", "RWO", "local-path", "<unset>"]
    out = fresh.kubectl("get", "pv")
    assert out.stdout.splitlines()[1].split()[:7] == [volume, "5Gi", "RWO", "Retain", "Bound", "store/data",
                                                       "local-path"], out.stdout
    assert fresh.json(f"/api/v1/persistentvolumes/{volume}")["spec"]["claimRef"]["name"] == "data"
    assert fresh.json("/api/v1/namespaces/store/persistentvolumeclaims/data")["spec"]["volumeName"] == volume
    assert fresh.request("/api/v1/namespaces/default/persistentvolumeclaims/data")[0] == 404
    assert "store" in fresh.kubectl("get", "namespaces").stdout
    described = fresh.kubectl("describe", "pvc", "data", "-n", "store")
    assert described.returncode == 0, described.stderr
    lines = [" ".join(line.split()) for line in described.stdout.splitlines()]
    assert "Status: Bound" in lines and f"Volume: {volume}" in lines and "Access Modes: RWO" in lines
    assert any("ProvisioningSucceeded" in line for line in lines), described.stdout
    out = fresh.kubectl("get", "storageclass")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].split()[:6] == ["local-path", "(default)", "kubelite.io/local-path", "Retain",
                                                      "Immediate", "false"]
    assert fresh.kubectl("get", "sc", "local-path", "-o", "jsonpath={.reclaimPolicy}").stdout == "Retain"
    missing = fresh.kubectl("get", "sc", "fast")
    assert missing.returncode != 0 and 'storageclasses.storage.k8s.io "fast" not found' in missing.stderr
    assert fresh.kubectl("auth", "can-i", "list", "storageclasses").stdout.strip() == "yes"


# ------------------------------------------------------------------ the Python client


PYTHON_CLIENT = """
import json, sys
from kubernetes import client, config

api_client = config.new_client_from_config(config_file=sys.argv[1])
core = client.CoreV1Api(api_client)
pods = core.list_namespaced_pod("default")
status = core.read_namespaced_pod_status("web", "default").status
print(json.dumps({
    "names": sorted(p.metadata.name for p in pods.items),
    "phase": status.phase, "ready": status.container_statuses[0].ready,
    "db_namespace": core.list_pod_for_all_namespaces(label_selector="app=db").items[0].metadata.namespace,
    "node": core.list_node().items[0].metadata.name,
}))
api_client.close()
"""


def test_the_python_kubernetes_client_lists_pods_and_reads_a_status(node):
    # in its own process: importing the client's lazily built models under another test's frozen clock fails
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", PYTHON_CLIENT, str(node.kubeconfig)], capture_output=True,
                         text=True, timeout=60, env=node.env())
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"names": ["done", "duo", "web"], "phase": "Running", "ready": True,
                                      "db_namespace": "other", "node": "node1"}


# ------------------------------------------------------------------ watch and metrics (their own node)


def test_kubectl_get_pods_watch_sees_a_crash_and_a_restart(fresh):
    fresh.write(labelled("steady"))
    wait_for(lambda: fresh.kubectl("get", "pod", "steady").returncode == 0, what="steady")
    watch = fresh.kubectl_stream("get", "pods", "-w")
    try:
        watch.until(lambda line: line.startswith("steady"), what="the listed pod")
        fresh.write(crashing("crashy", after=1))
        watch.until(lambda line: line.startswith("crashy") and "Running" in line, what="crashy running")
        watch.until(lambda line: line.startswith("crashy") and ("Error" in line or "CrashLoopBackOff" in line),
                    what="the crash")
        restarted = watch.until(lambda line: line.startswith("crashy") and line.split()[1:3] == ["1/1", "Running"]
                                and int(line.split()[3]) >= 1, what="the restart")
        assert "ago)" in restarted
    finally:
        watch.close()
    headers = [line for line in watch.seen if line.startswith("NAME")]
    assert len(headers) == 1, watch.seen


def test_watch_resource_versions_only_increase_and_a_watch_resumes(fresh):
    fresh.write(crashing("crashy", after=1))
    listed = wait_for(lambda: (listing := fresh.json("/api/v1/namespaces/default/pods"))["items"] and listing, what="a pod")
    since = int(listed["metadata"]["resourceVersion"])
    code, body = fresh.request(f"/api/v1/namespaces/default/pods?watch=true&resourceVersion={since}"
                               "&timeoutSeconds=3", timeout=20)
    assert code == 200
    events = [json.loads(line) for line in body.decode().splitlines()]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert len(events) >= 2, events   # the crash and the restart within 3 s
    assert versions == sorted(versions) and len(set(versions)) == len(versions) and versions[0] > since
    assert {e["type"] for e in events} == {"MODIFIED"}
    # resume from the middle: exactly the later events come again
    middle = versions[len(versions) // 2 - 1]
    code, body = fresh.request(f"/api/v1/namespaces/default/pods?watch=true&resourceVersion={middle}"
                               "&timeoutSeconds=1", timeout=20)
    again = [int(json.loads(line)["object"]["metadata"]["resourceVersion"]) for line in body.decode().splitlines()]
    assert again[:len(versions) - len(versions) // 2] == versions[len(versions) // 2:]
    # deleting the manifest ends with DELETED, at a newer version than everything before
    last = int(fresh.json("/api/v1/namespaces/default/pods")["metadata"]["resourceVersion"])
    (fresh.manifests / "default-crashy.yaml").unlink()
    code, body = fresh.request(f"/api/v1/namespaces/default/pods?watch=true&resourceVersion={last}"
                               "&timeoutSeconds=4", timeout=20)
    tail = [json.loads(line) for line in body.decode().splitlines()]
    assert tail and tail[-1]["type"] == "DELETED", tail
    tail_versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in tail]
    assert tail_versions == sorted(tail_versions) and tail_versions[0] > last


def test_a_filtered_watch_sees_pods_enter_and_leave_its_selector(fresh):
    import http.client
    import ssl

    job = labelled("job", restartPolicy="Never")
    job["metadata"]["annotations"] = {"fake.kubelite.io/app": "exit=0 after=2"}
    context = ssl.create_default_context(cafile=str(auth.api_dir(fresh.root) / "ca.crt"))
    host, port = fresh.url.removeprefix("https://").rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
    try:
        conn.request("GET", "/api/v1/namespaces/default/pods?watch=true&fieldSelector=status.phase%3DRunning"
                     "&timeoutSeconds=30", headers={"Authorization": f"Bearer {fresh.token}"})
        response = conn.getresponse()
        assert response.status == 200
        fresh.write(job)
        events = []
        while not events or events[-1][0] != "DELETED":
            event = json.loads(response.readline())
            events.append((event["type"], event["object"]["status"]["phase"]))
    finally:
        conn.close()
    assert events == [("ADDED", "Running"), ("DELETED", "Succeeded")], events


def metric(families: list, name: str, **labels: str) -> float | None:
    for family in families:
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def scrape(node: ApiNode) -> list:
    code, body = node.request("/metrics")
    assert code == 200
    return list(text_string_to_metric_families(body.decode()))


def test_metrics_parse_and_the_restart_counter_moves_with_a_restart(fresh):
    fresh.write(labelled("steady"))
    wait_for(lambda: metric(scrape(fresh), "kubelite_pods", phase="Running") == 1, what="a running pod")
    families = scrape(fresh)
    assert metric(families, "kubelite_pods", phase="Pending") == 0
    assert metric(families, "kubelite_running_containers") == 1
    assert metric(families, "kubelite_pod_start_duration_seconds_count") >= 1
    assert metric(families, "kubelite_pod_sync_duration_seconds_count") >= 1
    assert metric(families, "kubelite_relist_duration_seconds_count") >= 1
    assert metric(families, "process_cpu_seconds_total") is not None
    assert metric(families, "process_resident_memory_bytes") > 0
    assert metric(families, "kubelite_container_restarts_total", pod="counted") is None   # a name no other test uses
    fresh.write(crashing("counted", after=1))
    wait_for(lambda: (metric(scrape(fresh), "kubelite_container_restarts_total", namespace="default", pod="counted",
                             container="app") or 0) >= 1, what="the restart counter", timeout=20)
    before = metric(scrape(fresh), "kubelite_container_restarts_total", pod="counted")
    wait_for(lambda: metric(scrape(fresh), "kubelite_container_restarts_total", pod="counted") > before,
             what="the next restart", timeout=20)


def test_readiness_follows_the_reconcile_passes(monkeypatch):
    from kubelite import daemon

    clock = [100.0]
    monkeypatch.setattr(daemon.time, "monotonic", lambda: clock[0])
    health = daemon.LoopHealth(relist_period_s=20)
    assert health().ready is False and "has not completed" in health().message
    health.passed()
    assert health().ready is True
    health.failed("disk full")
    clock[0] += 71
    assert health().ready is False and "disk full" in health().message
    health.passed()
    assert health().ready is True


# ------------------------------------------------------------------ the daemon and the CLI around it


def test_the_cli_reads_the_store_and_says_when_no_daemon_serves_it(tmp_path):
    n = ApiNode(tmp_path).start()
    try:
        n.write(labelled("web"))
        wait_for(lambda: "Running" in n.kubelite("get", "pods").stdout, what="web running")
        live = n.kubelite("get", "pods")
        assert "not running" not in live.stderr
    finally:
        n.close()
    stale = n.kubelite("get", "pods")
    assert stale.returncode == 0 and "web" in stale.stdout
    assert stale.stderr.startswith("Warning: kubelite is not running for ") and "may be stale" in stale.stderr
    described = n.kubelite("describe", "pod", "web")
    assert described.returncode == 0 and "may be stale" in described.stderr


def _serve(tmp_path, *flags):
    import subprocess
    import sys

    from tests.apinode import REPO

    manifests = tmp_path / "m"
    manifests.mkdir(exist_ok=True)
    env = {**os.environ, "KUBELITE_ROOT": str(tmp_path / "state"), "KUBELITE_RUN_DIR": str(tmp_path / "run"),
           "KUBELITE_MANIFESTS": str(manifests), "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    log = open(tmp_path / "serve.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "serve", "--runtime", "fake",
                                "--node-name", "edge", *flags], env=env, stdout=log, stderr=subprocess.STDOUT,
                               cwd=REPO)
    return process, env, log


def _stop(process, log):
    import signal

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    log.close()


def test_kubelite_serve_serves_the_api_and_kubeconfig_points_kubectl_at_it(tmp_path):
    import subprocess
    import sys

    from tests.apinode import KUBECTL, REPO

    process, env, log = _serve(tmp_path, "--api-address", "127.0.0.1:0")
    try:
        wait_for(lambda: auth.read_server(tmp_path / "state"), what="the API")
        (tmp_path / "m" / "web.yaml").write_text(json.dumps(labelled("web")))
        config = subprocess.run([sys.executable, "-m", "kubelite.cli.main", "kubeconfig"], env=env, cwd=REPO,
                                capture_output=True, text=True, timeout=30)
        assert config.returncode == 0, config.stderr
        (tmp_path / "config").write_text(config.stdout)
        kubectl_env = {**env, "KUBECONFIG": str(tmp_path / "config")}

        def get():
            return subprocess.run([KUBECTL, "get", "pods"], env=kubectl_env, capture_output=True, text=True,
                                  timeout=30).stdout

        wait_for(lambda: "Running" in get(), what="kubectl to see web running")
        contexts = subprocess.run([KUBECTL, "config", "get-contexts", "-o", "name"], env=kubectl_env,
                                  capture_output=True, text=True).stdout.split()
        assert contexts == ["edge"]
    finally:
        _stop(process, log)
    assert "API serving on https://127.0.0.1:" in (tmp_path / "serve.log").read_text()


def test_an_api_port_in_use_is_one_error_line_and_the_pods_still_run(tmp_path):
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        process, env, log = _serve(tmp_path, "--api-address", f"127.0.0.1:{port}")
        try:
            (tmp_path / "m" / "web.yaml").write_text(json.dumps(labelled("web")))
            from kubelite.store.reader import Reader

            def running():
                reader = Reader(tmp_path / "state")
                try:
                    return [p for p in reader.pods() if p.get("status", {}).get("phase") == "Running"]
                finally:
                    reader.close()

            wait_for(running, what="web running without the API")
        finally:
            _stop(process, log)
    finally:
        holder.close()
    text = (tmp_path / "serve.log").read_text()
    assert f"API not served: cannot listen on 127.0.0.1:{port}: Address already in use" in text
    assert auth.read_server(tmp_path / "state") is None


@pytest.mark.parametrize("address", ["nowhere:80", "127.0.0.1", "127.0.0.1:99999", "[::1]:x"])
def test_a_bad_api_address_is_refused_in_one_line(address, capsys):
    from kubelite.cli.main import main

    assert main(["serve", "--runtime", "fake", "--api-address", address]) == 1
    assert capsys.readouterr().err == (f"error: --api-address {address}: give an IP address and a port, such as "
                                       "127.0.0.1:10280 (port 0 picks a free one)\n")


def test_kubeconfig_without_a_served_api_says_what_to_do(tmp_path, capsys, monkeypatch):
    from kubelite.cli.main import main

    monkeypatch.setenv("KUBELITE_ROOT", str(tmp_path / "state"))
    assert main(["kubeconfig"]) == 1
    assert "start `kubelite serve` once" in capsys.readouterr().err


# ------------------------------------------------------------------ pure parts


@pytest.mark.parametrize("selector, labels, match", [
    ("app=web", {"app": "web"}, True),
    ("app==web", {"app": "db"}, False),
    ("app!=web", {}, True),
    ("tier", {"tier": "x"}, True),
    ("!tier", {"tier": "x"}, False),
    ("tier in (a, b),app", {"tier": "b", "app": "1"}, True),
    ("tier notin (a,b)", {"tier": "c"}, True),
    ("tier notin (a,b)", {}, True),
    ("example.com/role=x", {"example.com/role": "x"}, True),
])
def test_label_selectors_as_the_api_server_reads_them(selector, labels, match):
    from kubelite.kubectl import selectors

    assert selectors.labels_match(selectors.parse_labels(selector), labels) is match


def test_field_selectors_refuse_unknown_fields_and_unescape_values():
    from kubelite.kubectl import selectors

    with pytest.raises(selectors.SelectorError, match="field label not supported: spec.containers"):
        selectors.parse_fields("spec.containers=x", "pods")
    with pytest.raises(selectors.SelectorError, match="invalid selector"):
        selectors.parse_fields("nonsense", "pods")
    reqs = selectors.parse_fields(r"involvedObject.name=a\,b,type!=Normal", "events")
    assert selectors.fields_match(reqs, {"involvedObject": {"name": "a,b"}, "type": "Warning"})
    assert not selectors.fields_match(reqs, {"involvedObject": {"name": "a,b"}, "type": "Normal"})
    assert selectors.fields_match(selectors.parse_fields("spec.hostNetwork=false", "pods"), {"spec": {}}) is False
    assert selectors.fields_match(selectors.parse_fields("spec.hostNetwork=true", "pods"),
                                  {"spec": {"hostNetwork": True}})


def test_a_watch_from_before_the_kept_history_is_expired(tmp_path, monkeypatch):
    from kubelite.apiserver import feed
    from kubelite.store.reader import Reader
    monkeypatch.setattr(feed, "HISTORY", 2)
    monkeypatch.setattr(feed, "TICK_S", 0.05)
    with simulated_node(tmp_path) as sim:
        sim.write("web.yaml", pod_doc("web"))
        sim.settle()
        pods = feed.PodFeed(lambda: Reader(sim.root))
        try:
            start = pods.resource_version
            first = next(pods.watch(None, lambda o: True))
            assert first.type == "ADDED" and first.resource_version == start
            for name in ("a", "b", "c"):
                sim.write(f"{name}.yaml", pod_doc(name))
            sim.settle()
            pods.poll()
            with pytest.raises(feed.Expired, match=f"too old resource version: {start}"):
                next(pods.watch(start, lambda o: True))
            (sim.manifests / "c.yaml").unlink()
            sim.agent.hint_manifests()
            sim.advance(35)   # past the grace period: the pod is removed
            before = pods.resource_version
            events = pods.watch(before, lambda o: True)
            deleted = next(e for e in events if e is not None and e.type == "DELETED")
            events.close()
            assert deleted.object["metadata"]["name"] == "c" and deleted.resource_version > before
            assert deleted.object["metadata"]["resourceVersion"] == str(deleted.resource_version)
        finally:
            pods.stop()


def test_the_history_starts_after_the_objects_the_feed_found(tmp_path, monkeypatch):
    """A feed that starts (a restarted daemon) takes the existing pods as state, not history: a
    version from before it started is expired, never a partial replay without the DELETED of a pod
    removed meanwhile."""
    from kubelite.apiserver import feed
    from kubelite.store.reader import Reader
    monkeypatch.setattr(feed, "HISTORY", 1)
    with simulated_node(tmp_path) as sim:
        sim.write("web.yaml", pod_doc("web"))
        sim.write("gone.yaml", pod_doc("gone"))
        sim.settle()
        reader = Reader(sim.root)
        try:
            web_version = int(next(p for p in reader.pods() if p["metadata"]["name"] == "web")
                              ["metadata"]["resourceVersion"])
        finally:
            reader.close()
        (sim.manifests / "gone.yaml").unlink()
        sim.agent.hint_manifests()
        sim.advance(35)   # gone is removed: its tombstone is the newest version
        pods = feed.PodFeed(lambda: Reader(sim.root))
        try:
            start = pods.resource_version
            assert start > web_version
            sim.write("b.yaml", pod_doc("b"))
            sim.settle()
            pods.poll()
            with pytest.raises(feed.Expired):
                next(pods.watch(web_version, lambda o: True))
            events = pods.watch(start, lambda o: True, tick_s=0.05)
            assert next(events).object["metadata"]["name"] == "b"
            events.close()
        finally:
            pods.stop()


def test_a_watcher_that_falls_behind_the_history_is_expired(tmp_path, monkeypatch):
    from kubelite.apiserver import feed
    from kubelite.store.reader import Reader
    monkeypatch.setattr(feed, "HISTORY", 1)
    with simulated_node(tmp_path) as sim:
        sim.write("web.yaml", pod_doc("web"))
        sim.settle()
        pods = feed.PodFeed(lambda: Reader(sim.root))
        try:
            events = pods.watch(pods.resource_version, lambda o: True, tick_s=0.05)
            assert next(events) is None
            sim.write("c.yaml", pod_doc("c"))
            sim.write("d.yaml", pod_doc("d"))
            sim.settle()
            pods.poll()
            with pytest.raises(feed.Expired, match="too old resource version"):
                next(events)
        finally:
            pods.stop()


def _event(kind: str, phase: str, previous: str | None):
    from kubelite.apiserver import feed

    def pod(p):
        return {"metadata": {"uid": "u", "name": "job", "namespace": "default"}, "spec": {}, "status": {"phase": p}}
    return feed.WatchEvent(kind, 7, pod(phase), pod(previous) if previous else None)


@pytest.mark.parametrize("kind, phase, previous, seen", [
    ("MODIFIED", "Succeeded", "Running", "DELETED"),   # left the selector
    ("MODIFIED", "Running", "Pending", "ADDED"),       # entered it
    ("MODIFIED", "Running", "Running", "MODIFIED"),
    ("MODIFIED", "Succeeded", "Pending", None),
    ("ADDED", "Running", None, "ADDED"),
    ("ADDED", "Pending", None, None),
    ("DELETED", "Running", "Running", "DELETED"),
    ("DELETED", "Failed", "Failed", None),
])
def test_a_filtered_watch_decides_from_the_object_before_and_after(kind, phase, previous, seen):
    from kubelite.apiserver import routes
    from kubelite.kubectl import selectors

    running = selectors.matcher(None, "status.phase=Running", "pods")
    assert routes.seen_as(_event(kind, phase, previous), running) == seen


def test_a_filtered_watch_resumed_from_a_list_sees_a_pod_leave_its_selector(fresh):
    import http.client
    import ssl

    job = labelled("job", restartPolicy="Never")
    job["metadata"]["annotations"] = {"fake.kubelite.io/app": "exit=0 after=2"}
    fresh.write(job)
    selector = "fieldSelector=status.phase%3DRunning"
    listed = wait_for(lambda: (listing := fresh.json(f"/api/v1/namespaces/default/pods?{selector}"))["items"] and listing,
                      what="the job running")
    since = listed["metadata"]["resourceVersion"]
    context = ssl.create_default_context(cafile=str(auth.api_dir(fresh.root) / "ca.crt"))
    host, port = fresh.url.removeprefix("https://").rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
    try:
        conn.request("GET", f"/api/v1/namespaces/default/pods?watch=true&{selector}&resourceVersion={since}"
                     "&timeoutSeconds=20", headers={"Authorization": f"Bearer {fresh.token}"})
        response = conn.getresponse()
        assert response.status == 200
        events = []
        while not events or events[-1][0] != "DELETED":
            line = response.readline()
            assert line, events
            event = json.loads(line)
            events.append((event["type"], event["object"]["status"]["phase"]))
    finally:
        conn.close()
    assert events[-1] == ("DELETED", "Succeeded") and all(e == ("MODIFIED", "Running") for e in events[:-1]), events


# ------------------------------------------------------------------ the server's edges (an ApiServer on an empty store)


@pytest.fixture
def bare(tmp_path):
    """An ApiServer alone on a loopback port over an empty store, with a 0.5 s header deadline;
    `bare.state["health"]` sets /readyz."""
    from kubelite.apiserver import server

    state = {"health": server.Health(True, "ok")}
    with bare_api(tmp_path, limits=Limits(headers_timeout_s=0.5),
                  health=lambda: state["health"]) as api:
        api.state = state
        yield api


def _tls(api, timeout: float = 10):
    return tls_to(api, timeout)


def _closed(sock) -> bool:
    """Whether the peer closed the connection (EOF or a reset) before the socket's timeout."""
    import ssl

    try:
        return sock.recv(1) == b""
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True


def _get(api, path: str, token: str | None = None) -> tuple[int, bytes]:
    code, _, body = get_from(api, path, token=token or "")
    return code, body


def test_request_headers_must_arrive_within_the_deadline(bare):
    import time

    sock = _tls(bare)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        sock.settimeout(0.2)
        for _ in range(40):   # a header line every 0.2 s: each read is quick, the whole is not
            try:
                if _closed(sock):
                    break
            except TimeoutError:
                pass
            try:
                sock.sendall(b"X-Slow: y\r\n")
            except OSError:
                break
        assert time.monotonic() - started < 4, "the connection outlived its header deadline"
    finally:
        sock.close()


def test_a_plain_http_client_gets_no_traceback_on_stderr(bare, capfd):
    import socket

    plain = socket.create_connection((bare.host, bare.port), timeout=5)
    try:
        plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        while plain.recv(4096):
            pass
    except OSError:
        pass
    finally:
        plain.close()
    assert _get(bare, "/healthz")[0] == 200
    assert "Traceback" not in capfd.readouterr().err


def test_a_malformed_request_target_is_a_bad_request(bare):
    sock = _tls(bare)
    try:
        sock.sendall(b"GET http://[abc/api HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = sock.recv(4096)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer


def test_a_resource_version_from_the_future_is_too_large(bare):
    code, body = _get(bare, "/api/v1/pods?watch=true&resourceVersion=999999&timeoutSeconds=1")
    status = json.loads(body)
    assert code == 504 and status["reason"] == "Timeout", body
    assert status["message"].startswith("Too large resource version: 999999, current: ")
    assert status["details"]["retryAfterSeconds"] == 1


def test_an_error_inside_a_watch_ends_the_stream_with_an_error_event(bare):
    from kubelite.apiserver import feed

    def failing(since, match, *, tick_s=None):
        yield feed.WatchEvent("ADDED", 1, {"metadata": {"uid": "u", "name": "p", "namespace": "default"},
                                            "spec": {}, "status": {}})
        raise RuntimeError("the store went away")

    bare.feed.watch = failing
    code, body = _get(bare, "/api/v1/pods?watch=true&timeoutSeconds=5")
    assert code == 200
    events = [json.loads(line) for line in body.decode().splitlines()]
    assert [e["type"] for e in events] == ["ADDED", "ERROR"], events
    assert events[1]["object"]["code"] == 500 and "the store went away" in events[1]["object"]["message"]


def test_readyz_says_not_ready_without_the_reason(bare):
    from kubelite.apiserver import server

    bare.state["health"] = server.Health(False, "no reconcile pass succeeded for 99s: disk I/O error")
    code, body = _get(bare, "/readyz", token="wrong")
    assert (code, body) == (500, b"not ready")
    node = json.loads(_get(bare, "/api/v1/nodes/node1")[1])
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert "disk I/O error" in ready["message"]


def test_an_api_that_fails_to_start_leaves_the_agent_running_and_the_port_free(tmp_path, monkeypatch, caplog):
    import socket

    from kubelite import daemon
    from kubelite.apiserver import feed
    from kubelite.errors import StoreError

    def broken(*_a, **_k):
        raise StoreError("state database is damaged")

    monkeypatch.setattr(feed, "PodFeed", broken)
    from tests.helpers import free_port

    port = free_port()
    options = fake_api_options(tmp_path, port, node_name="nodé")
    assert daemon.start_api(options, daemon.LoopHealth(1.0)) is None
    assert "API not served: StoreError: state database is damaged" in caplog.text
    again = socket.socket()
    try:
        again.bind(("127.0.0.1", port))   # the listening socket was closed
    finally:
        again.close()


def test_the_certificate_leaves_out_names_that_are_not_dns_names(tmp_path):
    from cryptography import x509

    from kubelite.apiserver import tls

    tls.ensure_certificates(tmp_path, ["127.0.0.1", "::1", "nodé", "bad_name", "-x", "edge-1.example", "localhost"])
    cert = x509.load_pem_x509_certificate((tmp_path / tls.SERVER_CERT).read_bytes())
    assert tls._names_of(cert) == {"127.0.0.1", "::1", "edge-1.example", "localhost"}


@pytest.mark.parametrize("host, url", [("0.0.0.0", "https://127.0.0.1:10280"), ("::", "https://[::1]:10280"),
                                       ("192.0.2.7", "https://192.0.2.7:10280"), ("::1", "https://[::1]:10280")])
def test_a_wildcard_address_is_recorded_as_the_loopback_address(host, url):
    from kubelite.apiserver import server

    assert server.client_url(host, 10280) == url


def test_the_server_listens_on_ipv6_loopback_and_answers_head_without_a_body(tmp_path):
    import http.client

    with bare_api(tmp_path, host="::1") as api:
        assert api.url.startswith("https://[::1]:")
        conn = http.client.HTTPSConnection(api.host, api.port, context=api.client_context, timeout=10)
        try:
            headers = {"Authorization": f"Bearer {api.token}"}
            conn.request("GET", "/api/v1/pods", headers=headers)
            got = conn.getresponse()
            body = got.read()
            assert got.status == 200 and json.loads(body)["kind"] == "PodList"
            conn.request("HEAD", "/api/v1/pods", headers=headers)   # the same kept-alive connection
            head = conn.getresponse()
            assert head.status == 200 and head.read() == b""
            assert int(head.getheader("Content-Length")) == len(body)
        finally:
            conn.close()


def test_a_header_that_is_not_utf8_is_not_the_token():
    from kubelite.apiserver import auth
    assert auth.authorized("Bearer \udcff\udcfe", "secret") is False   # surrogate escapes, as the parser keeps them
    assert auth.authorized("Bearer secret", "secret") is True
