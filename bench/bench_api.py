"""API benchmark: `kubectl get pods` against kubelite's API, and what watch clients cost it.

Measures (figures are printed, never asserted):

1. `kubectl get pods` at 100 pods through the API (`kubelite serve --runtime fake`, its API on a
   free loopback port, a kubeconfig from `kubelite kubeconfig`), interleaved round by round with
   `kubelite get pods` on the same state root (the store read directly) and `kubectl version
   --client` (kubectl's own start, the floor of any kubectl command). Wall clock around the
   subprocess, output through a pipe; kubectl's discovery cache is warmed by untimed runs first.
2. The daemon's idle CPU (all threads, from /proc schedstat) over IDLE_S seconds (20 s, or 60 s with
   --long: whole multiples of its 20 s relist) with no client,
   then with 10 `kubectl get pods -w` clients connected, the same daemon, the same pods.
3. With the 10 watches open, one new pod: the time until every watch printed its row.
4. Connections that hold a slot and send nothing: SILENT TCP connections that never start TLS, as
   many that finished the handshake and sent nothing, as many that sent half a request head. With
   them open, `/healthz` (anonymous, a new connection each time) and `kubectl get pods`; the
   daemon's resident memory before, with them open, and once they are closed.

The fake runtime keeps the containers simulated: this measures the API, not runc.
Run: `bench/run api`, or `.venv/bin/python -m bench.bench_api` from the repository root.
"""

from __future__ import annotations

import http.client
import os
import queue
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from bench.common import REPO, Row, cpu_ns, duration, print_table, record_summary, stop_process, summarize

PODS = 100
RUNS = 20
WARMUPS = 3
WATCHERS = 10
#: Whole multiples of the daemon's 20 s relist, so both windows hold the same number of relists.
IDLE_S = 60.0 if os.environ.get("KUBELITE_BENCH_LONG") else 20.0
#: Connections of each silent kind in stage 4.
SILENT = 200
KUBELITE = REPO / ".venv" / "bin" / "kubelite"


def manifest(i: int) -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-{i:04d}\n  labels:\n    app: bench\nspec:\n"
            f"  containers:\n  - name: app\n    image: busybox:latest\n    imagePullPolicy: Never\n")


def run(argv: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} {' '.join(argv[1:3])}: exit {result.returncode}: {result.stderr[:300]}")
    return result.stdout


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def running_pods(root: Path) -> int:
    from kubelite.store.reader import Reader

    reader = Reader(root)
    try:
        return sum(1 for p in reader.pods() if p.get("status", {}).get("phase") == "Running")
    finally:
        reader.close()


class Watcher:
    """One `kubectl get pods -w`; a thread notes when each row arrives."""

    def __init__(self, env: dict[str, str], kubectl: str) -> None:
        self.process = subprocess.Popen([kubectl, "get", "pods", "-w"], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        self.rows: queue.SimpleQueue[tuple[float, str]] = queue.SimpleQueue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.rows.put((time.perf_counter(), line))

    def wait_for(self, text: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            at, line = self.rows.get(timeout=max(0.01, deadline - time.monotonic()))
            if line.startswith(text):
                return at

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def silent_connections(root: Path) -> tuple[list[socket.socket], Callable[[], float]]:
    """SILENT connections of each kind (no TLS, TLS and nothing, half a head), and a function that
    times one anonymous /healthz on a new connection."""
    from kubelite.apiserver import auth

    host, port = (auth.read_server(root) or "").removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(auth.api_dir(root) / "ca.crt"))
    held: list[socket.socket] = [socket.create_connection((host, int(port)), timeout=30) for _ in range(SILENT)]
    for half in (False, True):
        for _ in range(SILENT):
            sock = context.wrap_socket(socket.create_connection((host, int(port)), timeout=30), server_hostname=host)
            if half:
                sock.sendall(b"GET /api/v1/pods HTTP/1.1\r\nHost: x\r\n")
            held.append(sock)

    def healthz() -> float:
        start = time.perf_counter()
        conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            if (response.status, response.read()) != (200, b"ok"):
                raise RuntimeError("/healthz did not answer ok")
        finally:
            conn.close()
        return time.perf_counter() - start

    return held, healthz


def idle_cpu(pid: int) -> float:
    """The daemon's CPU share over IDLE_S seconds (1.0 = one core busy)."""
    start, wall = cpu_ns(pid), time.monotonic()
    time.sleep(IDLE_S)
    return (cpu_ns(pid) - start) / 1e9 / (time.monotonic() - wall)


def main() -> int:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        print("bench_api: kubectl is not installed (scripts/bootstrap test installs it)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="kubelite-bench-api-"))
    manifests, root = work / "manifests", work / "state"
    manifests.mkdir()
    for i in range(PODS):
        (manifests / f"pod-{i:04d}.yaml").write_text(manifest(i))
    env = {**os.environ, "KUBELITE_ROOT": str(root), "KUBELITE_RUN_DIR": str(work / "run"),
           "KUBELITE_MANIFESTS": str(manifests), "HOME": str(work)}
    log = open(work / "serve.log", "w")
    daemon = subprocess.Popen([str(KUBELITE), "serve", "--runtime", "fake", "--node-name", "bench",
                               "--api-address", "127.0.0.1:0"], env=env, stdout=log, stderr=subprocess.STDOUT)
    watchers: list[Watcher] = []
    try:
        wait(lambda: running_pods(root) == PODS, 120, f"{PODS} pods running")
        (work / "kubeconfig").write_text(run([str(KUBELITE), "kubeconfig"], env))
        kenv = {**env, "KUBECONFIG": str(work / "kubeconfig")}
        commands = {
            "kubectl get pods (API)": [kubectl, "get", "pods"],
            "kubelite get pods (store)": [str(KUBELITE), "get", "pods"],
            "kubectl version --client": [kubectl, "version", "--client"],
        }
        for argv in commands.values():
            for _ in range(WARMUPS):
                run(argv, kenv)
        api_rows = run(commands["kubectl get pods (API)"], kenv).splitlines()
        store_rows = run(commands["kubelite get pods (store)"], kenv).splitlines()
        if len(api_rows) != PODS + 1 or [r.split()[:4] for r in api_rows] != [r.split()[:4] for r in store_rows]:
            raise RuntimeError("kubectl and kubelite printed different rows")
        samples: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(RUNS):
            for label, argv in commands.items():
                start = time.perf_counter()
                run(argv, kenv)
                samples[label].append(time.perf_counter() - start)

        quiet = idle_cpu(daemon.pid)
        watchers = [Watcher(kenv, kubectl) for _ in range(WATCHERS)]
        for w in watchers:
            w.wait_for("pod-0099", 30)   # each has listed and is watching
        watched = idle_cpu(daemon.pid)
        written = time.perf_counter()
        (manifests / "pod-new.yaml").write_text(manifest(PODS).replace(f"pod-{PODS:04d}", "pod-new"))
        seen = [w.wait_for("pod-new", 30) - written for w in watchers]
        for w in watchers:
            w.close()
        watchers = []

        rss_before = rss_mib(daemon.pid)
        opened = time.monotonic()
        held, healthz = silent_connections(root)
        try:
            healthz_s = [healthz() for _ in range(RUNS)]
            get_s = []
            for _ in range(5):
                start = time.perf_counter()
                run(commands["kubectl get pods (API)"], kenv)
                get_s.append(time.perf_counter() - start)
            rss_open = rss_mib(daemon.pid)
            if time.monotonic() - opened > 9:
                raise RuntimeError("stage 4 outlasted the header deadline: its figures would be of fewer connections")
        finally:
            for sock in held:
                sock.close()
        time.sleep(1)
        rss_closed = rss_mib(daemon.pid)
    finally:
        for w in watchers:
            w.close()
        stop_process(daemon)
        log.close()
    shutil.rmtree(work, ignore_errors=True)

    stats = {label: summarize(s) for label, s in samples.items()}
    rows = [
        Row.of(f"kubectl get pods, {PODS} pods (API)", stats["kubectl get pods (API)"], "-",
               f"kubelite get pods: {duration(stats['kubelite get pods (store)'].median_s)}"),
        Row.of(f"kubelite get pods, {PODS} pods (store)", stats["kubelite get pods (store)"]),
        Row.of("kubectl version --client", stats["kubectl version --client"], "-", "kubectl's own start"),
        Row(f"daemon idle CPU, {PODS} pods, no watch", f"{quiet * 100:.2f} %", "-"),
        Row(f"daemon idle CPU, {PODS} pods, {WATCHERS} watches", f"{watched * 100:.2f} %", "-", "-",
            f"without: {quiet * 100:.2f} %"),
        Row.of(f"new pod -> row in all {WATCHERS} watches", summarize(seen), "-",
               "the manifest written to every kubectl -w printing it"),
    ]
    print_table(f"bench_api: kubectl against kubelite's API (kubelite serve --runtime fake, {PODS} pods)", rows,
                [f"{RUNS} interleaved rounds after {WARMUPS} warm-ups; idle CPU over {IDLE_S:g} s each "
                 "(all the daemon's threads, schedstat)",
                 "the new-pod figure includes noticing the file (inotify) and one reconcile pass"])
    silent = 3 * SILENT
    rows += [
        Row.of(f"/healthz with {silent} silent connections open", summarize(healthz_s), "-",
               "anonymous, a new TLS connection each"),
        Row.of(f"kubectl get pods with {silent} silent connections", summarize(get_s), "-",
               f"without: {duration(stats['kubectl get pods (API)'].median_s)}"),
        Row(f"daemon RSS with {silent} silent connections", f"{rss_open:.1f} MiB", "-", "-",
            f"before: {rss_before:.1f} MiB; closed: {rss_closed:.1f} MiB"),
    ]
    print_table(f"bench_api: connections that send nothing ({SILENT} plain TCP, {SILENT} after the TLS handshake, "
                f"{SILENT} with half a head)", rows[6:],
                ["all opened within a second; every figure is taken before the 10 s header deadline closes them",
                 "RSS from /proc/PID/status"])
    rows = rows[:6]
    record_summary("api", [rows[0], rows[4]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
