"""Shared pieces of the tests that run real containers (root, runc, conmon, catatonit, busybox).

Those tests must run in CI: when a requirement is missing they fail under CI=true (and skip,
saying why, on a developer's machine without root). Each test gets its own state root and run
dir, so its pods, cgroups and runc state are its own, and `Node.close()` checks that nothing
was left behind: no mounts, no cgroups, no conmon, no runc containers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from tests.helpers import TEST_POD_WORKERS

REPO = Path(__file__).resolve().parent.parent
SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin", "/bin"])


def require_real_runtime() -> None:
    missing = [] if os.geteuid() == 0 else ["root"]
    missing += [b for b in ("runc", "conmon", "catatonit", "busybox") if shutil.which(b, path=SEARCH) is None]
    if missing:
        message = "real-container tests need " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + " — CI must run them (scripts/test installs the packages as root)")
        pytest.skip(message)


def build_busybox(out: Path) -> Path:
    subprocess.run([str(REPO / "scripts" / "build-busybox-image"), str(out), "busybox:latest"], check=True,
                   stdout=subprocess.DEVNULL)
    return out


def pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"containers": list(containers), "terminationGracePeriodSeconds": 2}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": body}


def container(name: str, script: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox:latest", "imagePullPolicy": "Never",
            "command": ["sh", "-c", script], **fields}


def wait_for(predicate: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition",
             step: Callable[[], Any] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if step is not None:
            step()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def events(node: "Node", reason: str) -> list[str]:
    """The messages of the node's events with `reason`, oldest first."""
    from kubelite.store.reader import Reader

    reader = Reader(node.root)
    try:
        return [e["message"] for e in reader.events(None) if e["reason"] == reason]
    finally:
        reader.close()


def assert_pod_limits(node: "Node", pod_name: str, *, memory: int, cpu_quota: int) -> None:
    """The pod's cgroup (`<instance>/pod<uid>`) holds these pod-level limits (cgroup v2 or v1)."""
    uid = next(e.uid for e in node.agent.pods.values() if e.pod.metadata.name == pod_name)
    relative = f"{node.runtime.instance}/pod{uid}"
    cgroup = Path("/sys/fs/cgroup")
    if (cgroup / "cgroup.controllers").exists():
        assert (cgroup / relative / "memory.max").read_text().strip() == str(memory)
        assert (cgroup / relative / "cpu.max").read_text().split() == [str(cpu_quota), "100000"]
    else:
        assert (cgroup / "memory" / relative / "memory.limit_in_bytes").read_text().strip() == str(memory)
        assert (cgroup / "cpu" / relative / "cpu.cfs_quota_us").read_text().strip() == str(cpu_quota)


def leftovers(root: Path, run_dir: Path, instance: str) -> list[str]:
    """Everything of this kubelite instance still on the machine."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4]
        if mount_point.startswith(str(root)) or mount_point.startswith(str(run_dir)):
            found.append(f"mount {mount_point}")
    from kubelite.runtime import linux

    for base in linux.cgroup_dirs(f"/{instance}"):   # v1 controllers and v2; the deepest left say what leaked
        found += [f"cgroup {d}" for d, subdirs, _ in os.walk(base) if not subdirs]
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    found += [f"process {line.strip()}" for line in ps.splitlines()
              if "conmon" in line and str(run_dir) in line]
    runc = shutil.which("runc", path=SEARCH)
    if runc and (run_dir / "runc").exists():
        listed = subprocess.run([runc, "--root", str(run_dir / "runc"), "list", "-q"], capture_output=True,
                                text=True).stdout.split()
        found += [f"runc container {c}" for c in listed]
    return found


@dataclass
class Node:
    """An in-process agent on the real runtime, driven by polling `run_once()` in real time."""

    manifests: Path
    root: Path
    run_dir: Path
    busybox: Path
    agent: Any = None
    runtime: Any = None
    store: Any = None
    closed: bool = field(default=False)
    network: Any = None     # a `cni.Network` for pod networking; None: loopback-only pods
    node_ip: str | None = None
    options: dict[str, Any] = field(default_factory=dict)   # more AgentConfig fields (serve's flags)
    warm_sandboxes: int = 0   # the runtime's pool of warm sandboxes (serve's --warm-sandboxes); none by default

    def start(self) -> "Node":
        from kubelite.agent.agent import Agent, AgentConfig
        from kubelite.runtime.images import ImageStore
        from kubelite.runtime.oci import OCIRuntime
        from kubelite.store.store import Store

        self.manifests.mkdir(parents=True, exist_ok=True)
        images = ImageStore(self.root)
        if images.get("busybox:latest") is None:
            images.load(self.busybox)
        self.runtime = OCIRuntime(root=self.root, run_dir=self.run_dir, images=images, network=self.network,
                                  warm_sandboxes=self.warm_sandboxes)
        self.store = Store(self.root)
        self.agent = Agent(store=self.store, runtime=self.runtime,
                           config=AgentConfig(manifests=self.manifests, root=self.root, node_name="test",
                                              node_ip=self.node_ip,
                                              **{"pod_workers": TEST_POD_WORKERS, **self.options}))
        return self

    def write(self, doc: dict[str, Any], name: str | None = None) -> Path:
        path = self.manifests / f"{name or doc['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        self.agent.hint_manifests()
        return path

    def step(self) -> None:
        self.agent.run_once()

    def until(self, predicate: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition") -> Any:
        return wait_for(predicate, timeout=timeout, what=what, step=self.step)

    def status(self, pod_name: str) -> dict[str, Any]:
        for entry in self.agent.pods.values():
            if entry.pod.metadata.name == pod_name and entry.deleted_at is None:
                return entry.status
        return {}

    def container(self, pod_name: str, name: str) -> dict[str, Any]:
        status = self.status(pod_name)
        for s in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
            if s["name"] == name:
                return s
        return {}

    def running(self, pod_name: str, name: str, restarts: int = 0) -> bool:
        s = self.container(pod_name, name)
        return "running" in s.get("state", {}) and s.get("restartCount") == restarts

    def container_id(self, pod_name: str, name: str) -> str:
        return self.container(pod_name, name)["containerID"].partition("://")[2]

    def exec(self, pod_name: str, name: str, *command: str) -> tuple[int, str]:
        result = self.runtime.exec_sync(self.container_id(pod_name, name), list(command), 10.0)
        return result.exit_code, result.stdout.decode()

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBELITE_ROOT": str(self.root), "KUBELITE_RUN_DIR": str(self.run_dir),
                "KUBELITE_MANIFESTS": str(self.manifests), "PYTHONPATH": str(REPO)}

    def cli(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubelite.cli.main", *args], env=self.env(),
                              capture_output=True, text=True, timeout=timeout, cwd=REPO)

    def close(self) -> list[str]:
        """Delete every manifest, let the agent stop and remove the pods, report anything left behind."""
        if self.closed:
            return []
        self.closed = True
        for path in self.manifests.glob("*.yaml"):
            path.unlink()
        self.agent.hint_manifests()
        try:
            wait_for(lambda: not self.agent.pods, timeout=30, what="every pod to be removed", step=self.step)
        finally:
            self.agent.close()
            self.agent.probing.prober.close()
            self.runtime.close()
            self.store.close()
        return leftovers(self.root, self.run_dir, self.runtime.instance)


class Daemon:
    """`kubelite serve --runtime runc` as a process, on a state root, run dir and manifests
    directory of its own (`serve_args`: e.g. the network to use), driven through the CLI."""

    def __init__(self, tmp: Path, busybox: Path, *, root: Path | None = None, run_dir: Path | None = None,
                 serve_args: tuple[str, ...] = ("--network", "none")) -> None:
        self.manifests, self.root, self.run_dir = tmp / "manifests", root or tmp / "state", run_dir or tmp / "run"
        self.manifests.mkdir()
        self.serve_args = serve_args
        self.env = {**os.environ, "KUBELITE_ROOT": str(self.root), "KUBELITE_RUN_DIR": str(self.run_dir),
                    "KUBELITE_MANIFESTS": str(self.manifests), "PYTHONPATH": str(REPO)}
        self.log = open(tmp / "serve.log", "a")
        self.proc: subprocess.Popen[bytes] | None = None
        assert self.cli("image", "load", "-i", str(busybox)).returncode == 0

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubelite.cli.main", *args], env=self.env, capture_output=True,
                              text=True, timeout=30, cwd=REPO)

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "serve", "--runtime", "runc",
                                      *self.serve_args],
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)
        self.proc = None

    def pods(self) -> dict[str, dict]:
        out = self.cli("get", "pods", "-o", "json")
        return {p["metadata"]["name"]: p for p in json.loads(out.stdout)["items"]} if out.returncode == 0 else {}
