"""Volumes and configuration on real containers: emptyDir, hostPath, configMap, secret, subPath.

Root, runc, conmon and the busybox image. Every test checks afterwards (through `Node.close()`)
that no mount, cgroup, conmon or runc container is left behind; one kills the daemon with
SIGKILL while its pod holds mounts, removes the pod, and checks that a restarted kubelite
leaves nothing behind either.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from kubelite.runtime import linux
from kubelite.store.reader import Reader
from tests.real import Node, container, events, pod, wait_for

pytestmark = pytest.mark.real


def write(node: Node, name: str, *docs: dict[str, Any]) -> None:
    import yaml

    (node.manifests / f"{name}.yaml").write_text(yaml.safe_dump_all(docs))
    node.agent.hint_manifests()


def env_of(node: Node, pod_name: str, name: str, variable: str) -> str | None:
    """A variable of the container's PID 1 (what the container was created with)."""
    code, out = node.exec(pod_name, name, "cat", "/proc/1/environ")
    assert code == 0
    for entry in out.split("\0"):
        key, _, value = entry.partition("=")
        if key == variable:
            return value
    return None


def mounts_under(path: Path) -> list[Path]:
    return linux.mounts_below(path)


def test_two_containers_share_an_empty_dir_that_outlives_a_container_restart(node):
    node.write(pod("share",
                   container("writer", "echo hello >> /data/greeting; [ -f /data/once ] && exec sleep 3600; "
                                       "touch /data/once; sleep 1; exit 1",
                             volumeMounts=[{"name": "data", "mountPath": "/data"}]),
                   container("reader", "exec sleep 3600", volumeMounts=[{"name": "data", "mountPath": "/shared"}]),
                   volumes=[{"name": "data", "emptyDir": {}}]))
    node.until(lambda: node.running("share", "reader"), what="the reader running")
    node.exec("share", "reader", "sh", "-c", "echo kept > /shared/note")
    node.until(lambda: node.running("share", "writer", restarts=1), timeout=30, what="the writer restarted")
    assert node.exec("share", "reader", "cat", "/shared/greeting") == (0, "hello\nhello\n")
    assert node.exec("share", "writer", "cat", "/data/note") == (0, "kept\n")


def test_a_configmap_edit_shows_up_in_the_mounted_file_without_a_restart(node):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"},
          "data": {"mode": "fast", "app.conf": "level=1\n"}}
    write(node, "config", cm)
    node.write(pod("app", container("app", "exec sleep 3600", env=[
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "mode"}}}],
        volumeMounts=[{"name": "conf", "mountPath": "/etc/app"},
                      {"name": "conf", "mountPath": "/etc/app.conf", "subPath": "app.conf"}]),
        volumes=[{"name": "conf", "configMap": {"name": "app-config"}}]))
    node.until(lambda: node.running("app", "app"), what="running")
    first_id = node.container_id("app", "app")
    assert node.exec("app", "app", "cat", "/etc/app/mode") == (0, "fast")
    assert node.exec("app", "app", "cat", "/etc/app.conf") == (0, "level=1\n")
    assert env_of(node, "app", "app", "MODE") == "fast"
    code, _ = node.exec("app", "app", "sh", "-c", "echo x > /etc/app/mode")
    assert code != 0, "a configMap volume is read-only"
    write(node, "config", {**cm, "data": {"mode": "slow", "app.conf": "level=2\n"}})
    node.until(lambda: node.exec("app", "app", "cat", "/etc/app/mode") == (0, "slow"), what="the file to change")
    assert node.container_id("app", "app") == first_id and node.running("app", "app", restarts=0)
    assert env_of(node, "app", "app", "MODE") == "fast", "env changes only with a new container"
    assert node.exec("app", "app", "cat", "/etc/app.conf") == (0, "level=1\n"), "a subPath is not updated (as k8s)"


def test_env_and_files_from_a_secret_on_a_tmpfs(node):
    write(node, "secret", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                           "stringData": {"password": "s3cret", "user": "admin"}})
    node.write(pod("db", container("app", "exec sleep 3600",
                                   envFrom=[{"secretRef": {"name": "db"}, "prefix": "DB_"}],
                                   env=[{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db",
                                                                                       "key": "password"}}}],
                                   volumeMounts=[{"name": "creds", "mountPath": "/creds"}]),
                   volumes=[{"name": "creds", "secret": {"secretName": "db", "defaultMode": 0o400}}]))
    node.until(lambda: node.running("db", "app"), what="running")
    assert env_of(node, "db", "app", "PW") == "s3cret"
    assert env_of(node, "db", "app", "DB_user") == "admin"
    assert node.exec("db", "app", "cat", "/creds/password") == (0, "s3cret")
    assert node.exec("db", "app", "stat", "-L", "-c", "%a", "/creds/user") == (0, "400\n")
    uid = node.status("db") and next(e.uid for e in node.agent.pods.values())
    secret_dir = node.root / "pods" / uid / "volumes" / "kubernetes.io~secret" / "creds"
    assert secret_dir in mounts_under(secret_dir), "secret files live on a tmpfs, not on disk"
    logs = node.cli("logs", "db").stdout + node.cli("describe", "pod", "db").stdout
    assert "s3cret" not in logs and "s3cret" not in str(Reader(node.root).events(None))


def test_hostpath_types_are_checked_with_the_kubelets_messages(node, tmp_path):
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    (host_dir / "hello").write_text("from the host\n")
    created = tmp_path / "created" / "here"
    node.write(pod("good", container("app", "exec sleep 3600", volumeMounts=[
        {"name": "ro", "mountPath": "/host", "readOnly": True}, {"name": "new", "mountPath": "/new"}]),
        volumes=[{"name": "ro", "hostPath": {"path": str(host_dir), "type": "Directory"}},
                 {"name": "new", "hostPath": {"path": str(created), "type": "DirectoryOrCreate"}}]))
    node.write(pod("bad", container("app", "exec sleep 3600", volumeMounts=[{"name": "f", "mountPath": "/f"}]),
                   volumes=[{"name": "f", "hostPath": {"path": str(host_dir), "type": "File"}}]))
    node.until(lambda: node.running("good", "app"), what="the good pod running")
    assert node.exec("good", "app", "cat", "/host/hello") == (0, "from the host\n")
    assert node.exec("good", "app", "sh", "-c", "echo x > /host/new")[0] != 0, "readOnly"
    assert created.is_dir()
    message = f'MountVolume.SetUp failed for volume "f" : hostPath type check failed: {host_dir} is not a file'
    node.until(lambda: node.container("bad", "app").get("state", {}).get("waiting", {}).get("message") == message,
               what="the bad pod waiting with the reason")
    assert node.container("bad", "app")["state"]["waiting"]["reason"] == "ContainerCreating"
    assert message in events(node, "FailedMount")
    assert node.running("good", "app"), "the other pod is not disturbed"
    assert (host_dir / "hello").read_text() == "from the host\n"


def test_a_sub_path_that_escapes_the_volume_through_a_symlink_is_refused(node):
    node.write(pod("escape", container("app", "exec sleep 3600", volumeMounts=[
        {"name": "data", "mountPath": "/etc-from-host", "subPath": "link"}]),
        initContainers=[container("prepare", "mkdir -p /data/inside && echo ok > /data/inside/f && "
                                             "ln -s /etc /data/link && ln -s inside /data/good",
                                  volumeMounts=[{"name": "data", "mountPath": "/data"}])],
        volumes=[{"name": "data", "emptyDir": {}}]))
    node.write(pod("inside", container("app", "exec sleep 3600", volumeMounts=[
        {"name": "data", "mountPath": "/sub", "subPath": "good"}]),
        initContainers=[container("prepare", "mkdir -p /data/inside && echo ok > /data/inside/f && "
                                             "ln -s inside /data/good",
                                  volumeMounts=[{"name": "data", "mountPath": "/data"}])],
        volumes=[{"name": "data", "emptyDir": {}}]))
    waiting = node.until(lambda: (w := node.container("escape", "app").get("state", {}).get("waiting", {}))
                         .get("reason") == "CreateContainerConfigError" and w, what="the escape refused")
    assert waiting["message"] == ('failed to prepare subPath for volumeMount "data" of container "app": '
                                  'subPath "link" resolves outside the volume')
    node.until(lambda: node.running("inside", "app"), what="a subPath link inside the volume works")
    assert node.exec("inside", "app", "cat", "/sub/f") == (0, "ok\n")


def test_a_memory_empty_dir_is_a_tmpfs_of_its_size_limit(node):
    node.write(pod("mem", container("app", "exec sleep 3600", volumeMounts=[{"name": "m", "mountPath": "/m"}]),
                   volumes=[{"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]))
    node.until(lambda: node.running("mem", "app"), what="running")
    code, out = node.exec("mem", "app", "sh", "-c", "grep ' /m ' /proc/mounts")
    assert code == 0 and out.split()[2] == "tmpfs" and "size=1024k" in out
    code, _ = node.exec("mem", "app", "dd", "if=/dev/zero", "of=/m/big", "bs=1024", "count=2048")
    assert code != 0, "writing past sizeLimit fails"
    assert node.exec("mem", "app", "sh", "-c", "rm /m/big && echo fits > /m/small && cat /m/small") == (0, "fits\n")


def test_mounts_are_removed_after_kill_9_and_a_restart(tmp_path, busybox):
    from tests.test_recovery_real import Daemon

    daemon = Daemon(tmp_path, busybox)
    try:
        (daemon.manifests / "objects.yaml").write_text(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: pw}\n")
        import yaml

        (daemon.manifests / "vols.yaml").write_text(yaml.safe_dump(pod("vols", container(
            "app", "mkdir -p /scratch/sub; exec sleep 3600", volumeMounts=[
                {"name": "mem", "mountPath": "/mem"}, {"name": "creds", "mountPath": "/creds"},
                {"name": "scratch", "mountPath": "/scratch"}]),
            container("second", "exec sleep 3600", volumeMounts=[
                {"name": "scratch", "mountPath": "/sub", "subPath": "sub"}]),
            volumes=[{"name": "mem", "emptyDir": {"medium": "Memory"}}, {"name": "scratch", "emptyDir": {}},
                     {"name": "creds", "secret": {"secretName": "db"}}])))
        daemon.start()
        wait_for(lambda: daemon.pods().get("vols", {}).get("status", {}).get("phase") == "Running", timeout=30,
                 what="the pod running")
        held = mounts_under(daemon.root / "pods")
        assert len([m for m in held if "volume" in str(m)]) >= 3, held   # memory, secret, subPath
        daemon.stop(signal.SIGKILL)
        (daemon.manifests / "vols.yaml").unlink()   # the pod goes while kubelite is down
        daemon.start()
        wait_for(lambda: "vols" not in daemon.pods(), timeout=30, what="the pod removed")
        assert mounts_under(daemon.root / "pods") == []
    finally:
        left = daemon.cleanup()
    assert left == [], f"left behind: {left}"
    pods = daemon.root / "pods"
    assert not pods.exists() or list(pods.iterdir()) == [], "the pod's directory is gone"


def _volume_dir(node: Node, pod_name: str, kind: str, volume: str) -> Path:
    uid = next(e.uid for e in node.agent.pods.values() if e.pod.metadata.name == pod_name)
    return node.root / "pods" / uid / "volumes" / kind / volume


def test_a_projected_volume_of_configmap_secret_and_downward_api_is_updated_in_place(node):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config"},
          "data": {"site.conf": "port=80\n", "unused": "x"}}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web-tls"},
              "stringData": {"tls.key": "KEY-1"}}
    write(node, "objects", cm, secret)
    doc = pod("web", container("app", "exec sleep 3600", volumeMounts=[{"name": "all", "mountPath": "/etc/web"}]),
              volumes=[{"name": "all", "projected": {"defaultMode": 0o440, "sources": [
                  {"configMap": {"name": "web-config", "items": [{"key": "site.conf", "path": "conf/site.conf"}]}},
                  {"secret": {"name": "web-tls", "items": [{"key": "tls.key", "path": "tls/key", "mode": 0o400}]}},
                  {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                                             {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}}])
    doc["metadata"]["labels"] = {"tier": "front"}
    node.write(doc)
    node.until(lambda: node.running("web", "app"), what="running")
    first_id = node.container_id("web", "app")
    code, out = node.exec("web", "app", "sh", "-c", "cat /etc/web/conf/site.conf /etc/web/tls/key; echo; "
                                                    "cat /etc/web/labels /etc/web/name; ls /etc/web")
    assert code == 0 and out == 'port=80\nKEY-1\ntier="front"webconf\nlabels\nname\ntls\n', out
    assert node.exec("web", "app", "stat", "-L", "-c", "%a", "/etc/web/tls/key", "/etc/web/name") == (0, "400\n440\n")
    assert node.exec("web", "app", "sh", "-c", "echo x > /etc/web/new")[0] != 0, "a projected volume is read-only"
    target = _volume_dir(node, "web", "kubernetes.io~projected", "all")
    assert target in mounts_under(target), "a projected volume is a tmpfs: its secret never reaches the disk"
    write(node, "objects", {**cm, "data": {"site.conf": "port=8080\n"}}, {**secret, "stringData": {"tls.key": "KEY-2"}})
    node.until(lambda: node.exec("web", "app", "sh", "-c", "cat /etc/web/conf/site.conf /etc/web/tls/key")
               == (0, "port=8080\nKEY-2"), what="the edited objects in the files")
    doc["metadata"]["labels"] = {"tier": "back"}
    node.write(doc)
    node.until(lambda: node.exec("web", "app", "cat", "/etc/web/labels") == (0, 'tier="back"'),
               what="the edited label in the file")
    assert node.container_id("web", "app") == first_id and node.running("web", "app", restarts=0)


def test_sub_path_expr_gives_each_pod_its_own_directory_by_pod_name(node, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for name in ("api-1", "api-2"):
        node.write(pod(name, container("app", "echo started > /var/log/app/out; exec sleep 3600", env=[
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            volumeMounts=[{"name": "logs", "mountPath": "/var/log/app", "subPathExpr": "pods/$(POD_NAME)"}]),
            volumes=[{"name": "logs", "hostPath": {"path": str(logs), "type": "Directory"}}]))
    node.write(pod("unset", container("app", "exec sleep 3600", volumeMounts=[
        {"name": "logs", "mountPath": "/l", "subPathExpr": "$(NOT_SET)"}]),
        volumes=[{"name": "logs", "emptyDir": {}}]))
    node.until(lambda: node.running("api-1", "app") and node.running("api-2", "app"), what="both running")
    node.until(lambda: (logs / "pods" / "api-2" / "out").exists(), what="the second pod's file")
    assert sorted(p.name for p in (logs / "pods").iterdir()) == ["api-1", "api-2"]
    assert (logs / "pods" / "api-1" / "out").read_text() == "started\n"
    waiting = node.until(lambda: node.container("unset", "app").get("state", {}).get("waiting", {})
                         .get("reason") == "CreateContainerConfigError"
                         and node.container("unset", "app")["state"]["waiting"], what="the unset variable refused")
    assert waiting["message"] == "missing value for NOT_SET"


def test_fs_group_owns_empty_dir_and_configmap_volumes_seen_from_inside(node):
    write(node, "config", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "private"},
                           "data": {"token.txt": "only-the-group\n"}})
    node.write(pod("owned", container("app", "exec sleep 3600", volumeMounts=[
        {"name": "data", "mountPath": "/data"}, {"name": "conf", "mountPath": "/conf"}]),
        securityContext={"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000},
        volumes=[{"name": "data", "emptyDir": {}},
                 {"name": "conf", "configMap": {"name": "private", "defaultMode": 0o400}}]))
    node.until(lambda: node.running("owned", "app"), what="running")
    assert node.exec("owned", "app", "stat", "-c", "%g %a", "/data") == (0, "2000 2777\n")
    assert node.exec("owned", "app", "id", "-G") == (0, "3000 2000\n"), "fsGroup stays a supplementary group"
    code, out = node.exec("owned", "app", "sh", "-c", "echo mine > /data/new && ls -ln /data/new")
    assert code == 0 and out.split()[2:4] == ["1000", "2000"], out   # the setgid directory gives its group
    code, out = node.exec("owned", "app", "ls", "-lnL", "/conf/token.txt")
    assert code == 0 and out.split()[0] == "-r--r-----" and out.split()[3] == "2000", out
    assert node.exec("owned", "app", "cat", "/conf/token.txt") == (0, "only-the-group\n"), "read through the group"


def test_fs_group_ownership_is_set_once_and_a_restarted_container_keeps_its_changes(node):
    script = ("if [ -f /data/moved ]; then exec sleep 3600; fi; echo x > /data/moved; chgrp 0 /data/moved; "
              "touch /data/moved; exit 1")
    node.write(pod("once", container("app", script, volumeMounts=[{"name": "data", "mountPath": "/data"}]),
                   securityContext={"fsGroup": 2000, "fsGroupChangePolicy": "OnRootMismatch"},
                   volumes=[{"name": "data", "emptyDir": {}}]))
    node.until(lambda: node.running("once", "app", restarts=1), timeout=30, what="the container restarted")
    assert node.exec("once", "app", "stat", "-c", "%g", "/data", "/data/moved") == (0, "2000\n0\n")


def _models_image(tmp_path: Path) -> Path:
    """A two-layer image of files only (no shell): the second layer adds a file and deletes one."""
    from tests.test_images import Img, d, docker_save, entry, tar

    bottom = tar(d("models"), entry("models/base.txt", b"alpha\n"), entry("models/old.txt", b"gone\n"))
    top = tar(d("models"), entry("models/extra.txt", b"beta\n"), entry("models/.wh.old.txt"))
    return docker_save(tmp_path / "models.tar", Img([bottom, top], tags=["models.example/weights:v1"]))


def test_an_image_volume_is_read_only_with_the_images_files(node, tmp_path):
    node.runtime.images.load(_models_image(tmp_path))
    volume = {"name": "weights", "image": {"reference": "models.example/weights:v1", "pullPolicy": "Never"}}
    node.write(pod("infer", container("app", "exec sleep 3600", volumeMounts=[
        {"name": "weights", "mountPath": "/weights"},
        {"name": "weights", "mountPath": "/just-models", "subPath": "models"}]), volumes=[volume]))
    node.write(pod("absent", container("app", "exec sleep 3600", volumeMounts=[
        {"name": "w", "mountPath": "/w"}]),
        volumes=[{"name": "w", "image": {"reference": "models.example/absent:v1", "pullPolicy": "Never"}}]))
    node.until(lambda: node.running("infer", "app"), what="running")
    assert node.exec("infer", "app", "ls", "/weights/models") == (0, "base.txt\nextra.txt\n")
    assert node.exec("infer", "app", "cat", "/just-models/base.txt", "/just-models/extra.txt") == (0, "alpha\nbeta\n")
    code, _ = node.exec("infer", "app", "sh", "-c", "echo x > /weights/models/new")
    assert code != 0, "an image volume is read-only"
    code, out = node.exec("infer", "app", "sh", "-c", "grep ' /weights ' /proc/mounts")
    assert code == 0 and " ro," in out, out
    target = _volume_dir(node, "infer", "kubernetes.io~image", "weights")
    assert target in mounts_under(target)
    refused = node.cli("image", "rm", "models.example/weights:v1")
    assert refused.returncode == 1 and "in use by pod default/infer" in refused.stderr, refused.stderr
    waiting = node.until(lambda: node.container("absent", "app").get("state", {}).get("waiting", {})
                         .get("reason") == "ErrImageNeverPull" and node.container("absent", "app"),
                         what="the absent image refused")
    assert "models.example/absent:v1" in waiting["state"]["waiting"]["message"]


EXPORTED_POD = """\
# what `kubectl get pod -o yaml` shows of a pod on a cluster, status left out
apiVersion: v1
kind: Pod
metadata:
  name: exported
  namespace: default
  labels: {app: exported}
spec:
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "exec sleep 3600"]
    terminationMessagePath: /dev/termination-log
    terminationMessagePolicy: File
    volumeMounts:
    - mountPath: /var/run/secrets/kubernetes.io/serviceaccount
      name: kube-api-access-7hx2q
      readOnly: true
  restartPolicy: Always
  serviceAccountName: default
  terminationGracePeriodSeconds: 2
  volumes:
  - name: kube-api-access-7hx2q
    projected:
      defaultMode: 420
      sources:
      - serviceAccountToken:
          expirationSeconds: 3607
          path: token
      - configMap:
          items:
          - key: ca.crt
            path: ca.crt
          name: kube-root-ca.crt
      - downwardAPI:
          items:
          - fieldRef:
              apiVersion: v1
              fieldPath: metadata.namespace
            path: namespace
"""


def test_a_pod_exported_from_a_cluster_runs_with_its_injected_api_access_volume(node):
    path = node.manifests / "exported.yaml"
    path.write_text(EXPORTED_POD)
    validated = node.cli("validate", str(path))
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "serviceAccountToken: no token is written" in validated.stdout + validated.stderr
    node.agent.hint_manifests()
    node.until(lambda: node.running("exported", "app"), what="running")
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert node.exec("exported", "app", "cat", f"{sa}/namespace") == (0, "default")
    assert node.exec("exported", "app", "ls", sa) == (0, "namespace\n"), "no token, no CA without its ConfigMap"
    write(node, "ca", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"},
                       "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"}})
    node.until(lambda: node.exec("exported", "app", "ls", sa) == (0, "ca.crt\nnamespace\n"),
               what="the CA once its ConfigMap exists")


def test_a_downward_api_volume_is_a_tmpfs_as_the_kubelet_makes_it(node):
    node.write(pod("info", container("app", "exec sleep 3600", volumeMounts=[{"name": "info", "mountPath": "/info"}]),
                   volumes=[{"name": "info", "downwardAPI": {"items": [
                       {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}]))
    node.until(lambda: node.running("info", "app"), what="running")
    assert node.exec("info", "app", "cat", "/info/name") == (0, "info")
    target = _volume_dir(node, "info", "kubernetes.io~downward-api", "info")
    assert target in mounts_under(target)
