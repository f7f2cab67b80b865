"""Port-forward benchmark: a 64 MiB download through `kubectl port-forward` (SPDY/3.1 in a WebSocket,
through the node's API) and through `kubelite port-forward`, beside the same download straight
from the pod's IP.

One in-process agent on the real runtime with pod networking on a bridge and a /24 of its own
(never `kubelite0`, never a subnet the host routes), its API on loopback with the admin credential,
one busybox pod serving 64 MiB of random bytes with `httpd`. Each run fetches the whole file once
(urllib, read in 1 MiB pieces, its SHA-256 compared with the pod's); the three ways alternate,
after one warm-up each. Also the time from a new local connection to the first byte of the answer
(a small file) through each forward, which is what one request through a forward costs. Figures
are printed, never asserted. Needs root, runc, conmon, busybox, Debian's containernetworking-plugins
and kubectl. About a minute. Run: `bench/run portforward`, or `.venv/bin/python -m
bench.bench_portforward` from the repository root.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from bench.common import REPO, Row, duration, print_table, record_summary, stop_process, summarize
from kubelite.apiserver import auth
from kubelite.apiserver.server import ApiServer, Health
from kubelite.runtime import cni
from tests.helpers import free_subnet
from tests.real import Node, build_busybox, container, pod, wait_for

RUNS = 8
SIZE_MIB = 64
SMALL_RUNS = 30
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


def fetch(url: str) -> tuple[float, str]:
    """(seconds, SHA-256) of one whole download."""
    digest = hashlib.sha256()
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as answer:
        while piece := answer.read(1024 * 1024):
            digest.update(piece)
    return time.perf_counter() - began, digest.hexdigest()


def first_byte(url: str) -> float:
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as answer:
        answer.read(1)
        took = time.perf_counter() - began
        answer.read()
    return took


def forwarded_port(proc: subprocess.Popen, what: str) -> int:
    """The local port of a port-forward, from its first 'Forwarding from 127.0.0.1:L' line."""
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{what} ended: {proc.stderr.read() if proc.stderr else ''}")
        if m := re.match(r"Forwarding from 127\.0\.0\.1:(\d+)", line):
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()   # keep draining
            return int(m.group(1))
    raise RuntimeError(f"{what} did not start listening")


def main() -> int:
    if os.geteuid() != 0:
        print("bench_portforward: needs root", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="kubelite-bench-pf-"))
    bridge = "klp" + uuid.uuid4().hex[:8]
    node: Node | None = None
    api: ApiServer | None = None
    procs: list[subprocess.Popen] = []
    stop = threading.Event()
    stepper: threading.Thread | None = None
    try:
        tar = build_busybox(base / "busybox.tar")
        network = cni.Network(root=base / "state", run_dir=base / "run", bridge=bridge,
                              pod_cidr=free_subnet("10.219.0.0/16"))
        node = Node(base / "manifests", base / "state", base / "run", tar, network=network,
                    node_ip=cni.host_ip()).start()
        api = ApiServer(root=node.root, node_name="bench", runtime="runc", host="127.0.0.1", port=0,
                        health=lambda: Health(True, "ok"), run_dir=node.run_dir)
        api.start()
        config = base / "admin-kubeconfig"
        config.write_text(auth.kubeconfig(server=api.url, token=api.admin_token, node="bench", admin=True,
                                          ca_pem=(auth.api_dir(node.root) / "ca.crt").read_bytes()))

        def step() -> None:
            while not stop.is_set():
                node.step()
                api.notify()
                stop.wait(0.2)
        stepper = threading.Thread(target=step, daemon=True)
        stepper.start()

        script = (f"mkdir -p /www && head -c {SIZE_MIB * 1024 * 1024} /dev/urandom > /www/big && echo hi > /www/small"
                  " && sha256sum /www/big > /www/sum && exec httpd -f -p 80 -h /www")
        node.write(pod("web", container("web", script, ports=[{"containerPort": 80}])))
        wait_for(lambda: node.running("web", "web"), timeout=60, what="web running")
        pod_ip = wait_for(lambda: node.status("web").get("podIP"), timeout=30, what="the pod IP")
        wait_for(lambda: node.exec("web", "web", "pidof", "httpd")[0] == 0, timeout=60, what="httpd")
        expected = node.exec("web", "web", "cat", "/www/sum")[1].split()[0]

        env = {**os.environ, "KUBECONFIG": str(config), "HOME": str(base)}
        kubectl = subprocess.Popen([KUBECTL, "port-forward", "pod/web", ":80"], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        procs.append(kubectl)
        kubelite = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "port-forward", "web", ":80"],
                                    env={**node.env(), "PYTHONPATH": str(REPO)}, cwd=REPO, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        procs.append(kubelite)
        ways = {"direct to the pod IP": f"http://{pod_ip}",
                "kubectl port-forward (API)": f"http://127.0.0.1:{forwarded_port(kubectl, 'kubectl')}",
                "kubelite port-forward": f"http://127.0.0.1:{forwarded_port(kubelite, 'kubelite')}"}
        times: dict[str, list[float]] = {w: [] for w in ways}
        firsts: dict[str, list[float]] = {w: [] for w in ways}
        for way, url in ways.items():   # warm-up
            took, digest = fetch(url + "/big")
            assert digest == expected, f"{way}: the download differs from the pod's file"
        for _ in range(RUNS):
            for way, url in ways.items():
                took, digest = fetch(url + "/big")
                assert digest == expected, f"{way}: the download differs from the pod's file"
                times[way].append(took)
        for _ in range(SMALL_RUNS):
            for way, url in ways.items():
                firsts[way].append(first_byte(url + "/small"))

        def rate(samples: list[float]) -> str:
            return f"{SIZE_MIB / summarize(samples).median_s:.0f} MiB/s"
        direct = summarize(times["direct to the pod IP"]).median_s
        rows = []
        for way in ways:
            summary = summarize(times[way])
            rows.append(Row(f"{SIZE_MIB} MiB download, {way}", duration(summary.median_s), duration(summary.p95_s),
                            "-", f"{rate(times[way])}, {summary.median_s / direct:.1f}x direct"))
        for way in ways:
            rows.append(Row.of(f"new connection -> first byte, {way}", summarize(firsts[way])))
        print_table("port-forward: a download through kubectl's and kubelite's forwards", rows, notes=[
            f"{RUNS} runs of each (after one warm-up), alternating; the SHA-256 of every download checked",
            "the client is Python's urllib reading 1 MiB pieces and hashing them: the direct figure is this "
            "client's ceiling here as much as the pod's",
            "kubectl: SPDY/3.1 frames in a WebSocket over TLS to the API, one TCP connection dialled in the "
            "pod's namespace per local connection",
            "kubelite port-forward: a local listener, the same dial, no API"])
        record_summary("portforward", rows[:3])
        return 0
    finally:
        stop.set()
        if stepper is not None:
            stepper.join(timeout=30)
        for proc in procs:
            stop_process(proc)
        if api is not None:
            api.close()
        left = node.close() if node is not None else []
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        if left:
            print(f"bench_portforward: left behind: {left}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
