"""Streams benchmark: the round trip of an exec into a running container, by every way in.

Measures (figures are printed, never asserted), on one busybox pod (`sleep 3600`) of `kubelite
serve --runtime runc --network none` with its API on a free loopback port:

1. `kubectl exec web -- true` with the admin kubeconfig (`kubelite kubeconfig --admin`): kubectl's
   start, the pod GET, the WebSocket upgrade (v5.channel.k8s.io), `runc exec`, the exit Status.
2. `kubelite exec web -- true`: the CLI's start, the store read, then `runc exec` (execv).
3. `runc --root … exec CONTAINER true`: the floor, what every way in pays.
4. `kubectl version --client`: kubectl's own start, the floor of any kubectl command.
5. `podman exec NAME true` on a busybox container podman runs, when podman is installed.

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

from bench.bench_runtime import (CONTAINER, IMAGE, Node, orderly_cleanup, retag, run_blocking, run_quiet,
                                 wait_for)
from bench.common import REPO, Row, duration, print_table, record_summary, summarize

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


def podman_container(podman: str, archive: Path, work: Path) -> tuple[str, str] | str:
    """A busybox container podman runs (`sleep 3600`): (name, image), or why podman could not."""
    image = f"localhost/kubelite-bench-streams-{os.getpid()}:latest"
    name = f"kubelite-bench-streams-{os.getpid()}"
    tagged = work / "podman-busybox.tar"
    retag(archive, tagged, [image])
    if run_quiet([podman, "load", "-i", str(tagged)], timeout=120).returncode != 0:
        return "podman load failed"
    started = subprocess.run([podman, "run", "-d", "--name", name, "--network", "none", image, "sleep", "3600"],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        run_quiet([podman, "rm", "-f", "-t", "0", name], timeout=120)
        run_quiet([podman, "rmi", image], timeout=120)
        return "podman run failed: " + (started.stderr.strip().splitlines() or ["?"])[-1][-160:]
    return name, image


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_streams needs root (runc, conmon, cgroups, overlay mounts)")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        sys.exit("bench_streams needs kubectl (scripts/bootstrap test installs it)")
    podman = shutil.which("podman")
    base = Path(tempfile.mkdtemp(prefix="kubelite-bench-streams-", dir="/tmp"))
    node = Node(base / "node", base / "busybox.tar",
                serve_args=("--network", "none", "--warm-sandboxes", "0", "--api-address", "127.0.0.1:0"))
    samples: dict[str, list[float]] = {}
    podman_made: tuple[str, str] | None = None
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
            made = podman_container(podman, node.busybox_tar, base)
            if isinstance(made, tuple):
                podman_made = made
                ways["podman exec NAME true"] = ([podman, "exec", made[0], "true"], None)
                version = subprocess.run([podman, "--version"], capture_output=True, text=True).stdout.split()
                podman_note = f"podman {version[-1] if version else '?'}"
            else:
                podman_note = made
        for _ in range(WARMUPS):
            for argv, env in ways.values():
                timed(argv, env)
        samples = {name: [] for name in ways}
        for _ in range(RUNS):
            for name, (argv, env) in ways.items():
                samples[name].append(timed(argv, env))
    finally:
        if podman is not None and podman_made is not None:
            run_quiet([podman, "rm", "-f", "-t", "0", podman_made[0]], timeout=120)
            run_quiet([podman, "rmi", podman_made[1]], timeout=120)
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
