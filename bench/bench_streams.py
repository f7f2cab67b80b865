"""Streams benchmark: the round trip of an exec into a running container, by every way in.

Measures (figures are printed, never asserted), on one busybox pod (`sleep 3600`) of `kubelite
serve --runtime runc --network none` with its API on a free loopback port:

1. `kubectl exec web -- true` with the admin kubeconfig (`kubelite kubeconfig --admin`): kubectl's
   start, the pod GET, the WebSocket upgrade (v5.channel.k8s.io), `runc exec`, the exit Status.
2. `kubelite exec web -- true`: the CLI's start, the store read, then `runc exec` (execv).
3. `runc --root … exec CONTAINER true`: the floor, what every way in pays.
4. `kubectl version --client`: kubectl's own start, the floor of any kubectl command.
5. `podman exec NAME true` on a busybox container podman runs on a store and configuration of the run's own
   (`bench/podman.py`), when podman is installed.

Rounds are interleaved (one of each per round) after untimed warm-ups; wall clock around the
subprocess, stdio on /dev/null, waited for with a blocking waitpid.
Run: `bench/run streams`, or `.venv/bin/python -m bench.bench_streams` from the repository root (root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_runtime import CONTAINER, IMAGE, Node, orderly_cleanup, run_blocking, wait_for
from bench.common import REPO, Row, duration, print_table, record_summary, summarize
from bench.podman import Podman

RUNS = 30
WARMUPS = 3
POD = "web"


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    code = run_blocking_env(argv, env)
    elapsed = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}: exit {code}")
    return elapsed


def run_blocking_env(argv: list[str], env: dict[str, str] | None) -> int:
    if env is None:
        return run_blocking(argv, check=False)
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9


def podman_container(podman: Podman, archive: Path) -> str | None:
    """A busybox container podman runs (`sleep 3600`) on the run's own store: its name, or None
    (the reason in `podman.failure`)."""
    name = f"kubelite-bench-streams-{os.getpid()}"
    try:
        podman.load(archive)
        podman.run("run", "-d", "--name", name, "--network", "none", podman.image, "sleep", "3600")
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        podman.run("rm", "-f", "-t", "0", name, check=False)
        podman.failure = f"podman could not run the image: {str(exc)[-160:]}"
        return None
    return name


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_streams needs root (runc, conmon, cgroups, overlay mounts)")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        sys.exit("bench_streams needs kubectl (scripts/bootstrap test installs it)")
    base = Path(tempfile.mkdtemp(prefix="kubelite-bench-streams-", dir="/tmp"))
    node = Node(base / "node", base / "busybox.tar",
                serve_args=("--network", "none", "--warm-sandboxes", "0", "--api-address", "127.0.0.1:0"))
    samples: dict[str, list[float]] = {}
    podman = Podman.open(base / "podman")
    podman_made: str | None = None
    podman_note = "podman not installed"
    try:
        subprocess.run([str(REPO / "scripts" / "build-busybox-image"), str(node.busybox_tar), IMAGE], check=True,
                       stdout=subprocess.DEVNULL)
        node.load_image()
        node.start()
        node.write(POD, ["sleep", "3600"])
        record = wait_for(lambda: node.running_of(POD).get(CONTAINER), timeout=60, what="the pod to run")
        container_id = record["id"]
        kubeconfig = base / "kubeconfig-admin"
        out = node.cli("kubeconfig", "--admin")
        if out.returncode != 0:
            raise RuntimeError(f"kubelite kubeconfig --admin: {out.stderr.strip()}")
        kubeconfig.write_text(out.stdout)
        kube_env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(base)}
        runc = shutil.which("runc") or "runc"
        ways: dict[str, tuple[list[str], dict[str, str] | None]] = {
            "kubectl exec web -- true (API, WebSocket)": ([kubectl, "exec", POD, "--", "true"], kube_env),
            "kubelite exec web -- true (no API)": ([sys.executable, "-m", "kubelite.cli.main", "exec", POD, "--",
                                                    "true"], node.env),
            "runc exec CONTAINER true (the floor)": ([runc, "--root", str(node.run_dir / "runc"), "exec",
                                                     container_id, "true"], None),
            "kubectl version --client (kubectl's start)": ([kubectl, "version", "--client"], kube_env),
        }
        if podman is not None:
            podman_made = podman_container(podman, node.busybox_tar)
            if podman_made is not None:
                ways["podman exec NAME true"] = (podman.argv("exec", podman_made, "true"), podman.env)
                version = podman.run("--version", check=False).stdout.split()
                podman_note = f"podman {version[-1] if version else '?'} (a store and configuration of the run's own)"
            else:
                podman_note = podman.failure
        for _ in range(WARMUPS):
            for argv, env in ways.values():
                timed(argv, env)
        samples = {name: [] for name in ways}
        for _ in range(RUNS):
            for name, (argv, env) in ways.items():
                samples[name].append(timed(argv, env))
    finally:
        if podman is not None:
            if podman_made is not None:
                podman.run("rm", "-f", "-t", "0", podman_made, check=False)
            left = podman.close()
            if left:
                print(f"bench_streams: podman left {', '.join(left)}", file=sys.stderr)
        try:
            orderly_cleanup(node)
        finally:
            node.stop()
        shutil.rmtree(base, ignore_errors=True)
    rows = [Row.of(name, summarize(values)) for name, values in samples.items()]
    floor = summarize(samples["runc exec CONTAINER true (the floor)"]).median_s
    kubectl_start = summarize(samples["kubectl version --client (kubectl's start)"]).median_s
    api = summarize(samples["kubectl exec web -- true (API, WebSocket)"]).median_s
    notes = [f"{RUNS} interleaved rounds after {WARMUPS} warm-ups; {podman_note}",
             f"kubectl exec over its start and the floor: {duration(api - kubectl_start - floor)} "
             "(the pod GET, the WebSocket upgrade over TLS, the Status)"]
    print_table("exec round trip", rows, notes)
    record_summary("streams", rows[:3])


if __name__ == "__main__":
    main()
