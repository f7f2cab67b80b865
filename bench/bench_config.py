"""ConfigMap benchmark: an edit reaching a running container's files, and a waiting pod starting.

Measures, under `kubelite serve --runtime runc` (root; figures printed, never asserted):

1. ConfigMap edited -> file changed in the running container's volume. The pod mounts the
   ConfigMap at /etc/app. Each round rewrites the ConfigMap's manifest with a new value (a
   temporary file renamed into place, as editors and `kubelite apply` do); the clock stops when
   `<root>/pods/<uid>/volumes/kubernetes.io~configmap/conf/value` — the directory bound into the
   container — holds the new value, read every 2 ms. Reference, same rounds: until the state
   database shows the ConfigMap's new resourceVersion (the agent has taken the edit in; the file
   is written in the same pass, the database committed at its end).
2. ConfigMap created -> a pod whose env waits for it (CreateContainerConfigError) Running. Reference,
   same run: a pod that needs no ConfigMap, from its manifest to Running.
3. PersistentVolumeClaim created -> a pod that waits for it (ContainerCreating, FailedMount) Running:
   the claim bound to its directory and the volume mounted.

The kubelet refreshes such volumes at its pod sync (every minute) through a ConfigMap cache with
a TTL: it is not run here, so no figure of it is printed.

Everything lives below one temporary directory, removed at the end; the daemon gets SIGTERM and
its pods are removed first. About 40 s. Run: `.venv/bin/python -m bench.bench_config` from the
repository root, as root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from kubelite.store.reader import Reader

from bench.common import REPO, Row, print_table, record_summary, stop_process, summarize

ROUNDS = 15
POLL_S = 0.002
TIMEOUT_S = 30.0


def wait(predicate: Callable[[], Any], *, what: str, poll: float = POLL_S) -> float:
    """Seconds until `predicate()` holds (from now)."""
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > TIMEOUT_S:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(poll)
    return time.perf_counter() - start


def write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def configmap(name: str, value: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n"


def claim(name: str) -> str:
    return (f"apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\nspec:\n"
            f"  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 1Gi}}}}\n")


def claim_pod(name: str, claim_name: str) -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n"
            f"  containers:\n  - name: app\n    image: busybox:latest\n    imagePullPolicy: Never\n"
            f"    command: [sleep, '3600']\n    volumeMounts:\n    - {{name: data, mountPath: /data}}\n"
            f"  volumes:\n  - name: data\n    persistentVolumeClaim: {{claimName: {claim_name}}}\n")


def pod(name: str, *, config: str | None = None, mount: bool = True) -> str:
    text = (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n"
            f"  containers:\n  - name: app\n    image: busybox:latest\n    imagePullPolicy: Never\n"
            f"    command: [sleep, '3600']\n")
    if config is not None:
        text += (f"    env:\n    - name: VALUE\n      valueFrom:\n"
                 f"        configMapKeyRef: {{name: {config}, key: value}}\n")
    if config is not None and mount:
        text += (f"    volumeMounts:\n    - {{name: conf, mountPath: /etc/app}}\n"
                 f"  volumes:\n  - name: conf\n    configMap: {{name: {config}}}\n")
    return text


class Daemon:
    def __init__(self, base: Path) -> None:
        self.manifests, self.root, self.run_dir = base / "manifests", base / "state", base / "run"
        self.manifests.mkdir()
        self.env = {**os.environ, "KUBELITE_ROOT": str(self.root), "KUBELITE_RUN_DIR": str(self.run_dir),
                    "KUBELITE_MANIFESTS": str(self.manifests), "PYTHONPATH": str(REPO)}
        image = base / "busybox.tar"
        subprocess.run([str(REPO / "scripts" / "build-busybox-image"), str(image), "busybox:latest"], check=True,
                       stdout=subprocess.DEVNULL)
        self.cli("image", "load", "-i", str(image))
        self.log = open(base / "serve.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "serve", "--runtime", "runc",
                                      "--network", "none"],
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)

    def cli(self, *args: str) -> str:
        return subprocess.run([sys.executable, "-m", "kubelite.cli.main", *args], env=self.env, check=True,
                              capture_output=True, text=True, timeout=60, cwd=REPO).stdout

    def pod(self, name: str) -> dict[str, Any]:
        reader = Reader(self.root)
        try:
            found = reader.pods("default", name)
            return found[0] if found else {}
        finally:
            reader.close()

    def running(self, name: str) -> bool:
        statuses = self.pod(name).get("status", {}).get("containerStatuses", [])
        return bool(statuses) and "running" in statuses[0].get("state", {})

    def config_version(self, name: str) -> int:
        reader = Reader(self.root)
        try:
            found = reader.config_objects("ConfigMap", "default", name)
            return int(found[0]["metadata"]["resourceVersion"]) if found else 0
        finally:
            reader.close()

    def gone(self) -> bool:
        reader = Reader(self.root)
        try:
            return not reader.pods()
        finally:
            reader.close()

    def stop(self) -> None:
        for path in self.manifests.glob("*.yaml"):
            path.unlink()
        try:
            wait(self.gone, what="every pod removed", poll=0.1)
        finally:
            stop_process(self.proc)
            self.log.close()


def measure_claims(daemon: Daemon) -> list[float]:
    """Claim created -> the pod waiting for it (ContainerCreating) Running."""
    times = []
    for i in range(5):
        write(daemon.manifests / f"claimant-{i}.yaml", claim_pod(f"claimant-{i}", f"data-{i}"))
        wait(lambda: daemon.pod(f"claimant-{i}").get("status", {}).get("containerStatuses", [{}])[0].get(
            "state", {}).get("waiting", {}).get("message", "").endswith("not found"), what="waiting", poll=0.02)
        time.sleep(0.3)   # past the watcher's burst window: a file written right after another is debounced
        start = time.perf_counter()
        write(daemon.manifests / f"data-{i}.yaml", claim(f"data-{i}"))
        wait(lambda: daemon.running(f"claimant-{i}"), what="the waiting pod running", poll=0.005)
        times.append(time.perf_counter() - start)
    return times


def measure(daemon: Daemon) -> tuple[list[float], list[float], list[float], list[float]]:
    write(daemon.manifests / "cfg.yaml", configmap("cfg", "v0"))
    write(daemon.manifests / "app.yaml", pod("app", config="cfg"))
    wait(lambda: daemon.running("app"), what="the pod running", poll=0.02)
    uid = daemon.pod("app")["metadata"]["uid"]
    value = daemon.root / "pods" / uid / "volumes" / "kubernetes.io~configmap" / "conf" / "value"
    to_file, to_store = [], []
    for i in range(1, ROUNDS + 1):
        version = daemon.config_version("cfg")
        start = time.perf_counter()
        write(daemon.manifests / "cfg.yaml", configmap("cfg", f"v{i}"))
        wait(lambda: value.exists() and value.read_text() == f"v{i}", what="the file")
        to_file.append(time.perf_counter() - start)
        wait(lambda: daemon.config_version("cfg") > version, what="the stored ConfigMap")
        to_store.append(time.perf_counter() - start)
        time.sleep(0.2)
    waiting_start, plain_start = [], []
    for i in range(5):
        write(daemon.manifests / f"waits-{i}.yaml", pod(f"waits-{i}", config=f"later-{i}", mount=False))
        wait(lambda: daemon.pod(f"waits-{i}").get("status", {}).get("containerStatuses", [{}])[0].get(
            "state", {}).get("waiting", {}).get("reason") == "CreateContainerConfigError", what="waiting", poll=0.02)
        start = time.perf_counter()
        write(daemon.manifests / f"later-{i}.yaml", configmap(f"later-{i}", "x"))
        wait(lambda: daemon.running(f"waits-{i}"), what="the waiting pod running", poll=0.005)
        waiting_start.append(time.perf_counter() - start)
        start = time.perf_counter()
        write(daemon.manifests / f"plain-{i}.yaml", pod(f"plain-{i}"))
        wait(lambda: daemon.running(f"plain-{i}"), what="the plain pod running", poll=0.005)
        plain_start.append(time.perf_counter() - start)
    return to_file, to_store, waiting_start, plain_start


def main() -> int:
    if os.geteuid() != 0:
        print("bench_config: needs root (real containers)", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="kubelite-bench-config."))
    os.chmod(base, 0o755)
    try:
        daemon = Daemon(base)
        try:
            to_file, to_store, waiting_start, plain_start = measure(daemon)
            claimed = measure_claims(daemon)
        finally:
            daemon.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    file_s, store_s = summarize(to_file), summarize(to_store)
    waiting_s, plain_s, claimed_s = summarize(waiting_start), summarize(plain_start), summarize(claimed)
    rows = [
        Row.of(f"ConfigMap edit -> file in the running container's volume (n={file_s.n})", file_s,
               reference=f"stored resourceVersion: {store_s.median_s * 1000:.0f} ms median"),
        Row.of(f"ConfigMap created -> waiting pod Running (n={waiting_s.n})", waiting_s,
               reference=f"a plain pod, manifest -> Running: {plain_s.median_s * 1000:.0f} ms median"),
        Row.of(f"PersistentVolumeClaim created -> waiting pod Running (n={claimed_s.n})", claimed_s,
               reference=f"a plain pod, manifest -> Running: {plain_s.median_s * 1000:.0f} ms median"),
    ]
    print_table("ConfigMaps and volumes (kubelite serve --runtime runc)", rows, notes=[
        "no container restarts during the edits; the file is the one bound into the container",
        "the waiting pod's sandbox already runs; the plain pod's time includes creating its sandbox",
    ])
    record_summary("config", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
