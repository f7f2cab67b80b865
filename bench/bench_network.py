"""Pod networking benchmark: what CNI adds to a pod's start and removal, against `--network none`.

Measures, in one run, on the real runtime in-process (figures are printed, never asserted):

1. Pod start, from `OCIRuntime.run_sandbox()` to `start_container()` returning for one busybox
   `sleep 3600` container: the sandbox (infra container; with CNI also the pinned namespace and
   the ADD of bridge, loopback, portmap, firewall), then the container (overlay, conmon, runc).
   With `--network none` (loopback-only, the infra container makes its namespace), with CNI and
   no hostPort, and with CNI and one hostPort (portmap then writes rules); two runtimes with state
   roots of their own, the three kinds of pod alternating, after two warm-ups each.
2. Pod removal: container killed and removed, then `remove_sandbox()` (with CNI: DEL in reverse,
   the namespace unpinned).
3. References, measured in the same run: `Network.setup()` alone (pin + ADD, no infra
   container) and its teardown (DEL + unpin), and `unshare --net=FILE true` (pinning a namespace).

The CNI runtime uses a bridge and a /24 of its own (never `kubelite0`, never a subnet the host
routes); the bridge is removed at the end. Everything lives below one temporary directory. Needs root and Debian's
containernetworking-plugins. About 30 s. Run: `bench/run network`, or `.venv/bin/python -m
bench.bench_network` from the repository root.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import REPO, Row, duration, print_table, record_summary, summarize
from kubelite.api.models import Container
from kubelite.errors import RuntimeError_
from kubelite.runtime import cni
from kubelite.runtime.images import ImageStore
from kubelite.runtime.oci import OCIRuntime
from kubelite.runtime.protocol import ContainerConfig, PortMapping, SandboxConfig
from tests.helpers import free_port, free_subnet

RUNS = 12
WARMUPS = 2
IMAGE = "busybox:latest"


def start_pod(runtime: OCIRuntime, n: int, host_port: int | None) -> tuple[float, float, str, str]:
    """(sandbox s, whole start s, sandbox id, container id) for one pod."""
    uid = f"bench-{uuid.uuid4().hex[:12]}"
    mappings = (PortMapping(host_port, 80),) if host_port else ()
    config = SandboxConfig(uid=uid, name=f"p{n}", namespace="default", attempt=0, sandbox_hash="h", hostname=f"p{n}",
                           port_mappings=mappings)
    container = Container.model_validate({"name": "c", "image": IMAGE, "command": ["sleep", "3600"]})
    began = time.perf_counter()
    sandbox_id = runtime.run_sandbox(config)
    sandboxed = time.perf_counter()
    container_id = runtime.create_container(sandbox_id, ContainerConfig(
        uid=uid, pod_name=f"p{n}", namespace="default", container=container, attempt=0, spec_hash="h"))
    runtime.start_container(container_id)
    done = time.perf_counter()
    return sandboxed - began, done - began, sandbox_id, container_id


def remove_pod(runtime: OCIRuntime, sandbox_id: str, container_id: str) -> float:
    began = time.perf_counter()
    runtime.signal_container(container_id, "KILL")
    deadline = time.monotonic() + 10
    while True:
        try:
            runtime.remove_container(container_id)   # refused while its PID 1 still runs
            break
        except RuntimeError_:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)
    runtime.remove_sandbox(sandbox_id)
    return time.perf_counter() - began


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_network needs root (runc, conmon, network namespaces, iptables)")
    cni.find_plugin_dir(cni.PLUGIN_DIRS)
    base = Path(tempfile.mkdtemp(prefix="kubelite-bench-network-", dir="/tmp"))
    bridge = "klb" + uuid.uuid4().hex[:8]
    runtimes: dict[str, OCIRuntime] = {}
    modes = {"none": ("none", False), "cni": ("cni", False), "cni+hostPort": ("cni", True)}
    samples: dict[str, dict[str, list[float]]] = {m: {"sandbox": [], "start": [], "remove": []} for m in modes}
    refs: dict[str, list[float]] = {"setup": [], "teardown": [], "unshare": []}
    try:
        tar = base / "busybox.tar"
        subprocess.run([str(REPO / "scripts" / "build-busybox-image"), str(tar), IMAGE], check=True,
                       stdout=subprocess.DEVNULL)
        subnet = free_subnet("10.219.0.0/16")
        for mode in ("none", "cni"):
            root, run_dir = base / mode / "state", base / mode / "run"
            images = ImageStore(root)
            images.load(tar)
            network = cni.Network(root=root, run_dir=run_dir, bridge=bridge, pod_cidr=subnet) if mode == "cni" else None
            runtimes[mode] = OCIRuntime(root=root, run_dir=run_dir, images=images, network=network)
        for i in range(WARMUPS + RUNS):
            for mode, (kind, host_port) in modes.items():
                runtime = runtimes[kind]
                sandbox_s, start_s, sid, cid = start_pod(runtime, i, free_port() if host_port else None)
                remove_s = remove_pod(runtime, sid, cid)
                if i >= WARMUPS:
                    samples[mode]["sandbox"].append(sandbox_s)
                    samples[mode]["start"].append(start_s)
                    samples[mode]["remove"].append(remove_s)
        network = runtimes["cni"].network
        assert network is not None
        for i in range(WARMUPS + RUNS):
            record = base / f"ref-{i}.json"
            began = time.perf_counter()
            network.setup(record, sandbox_id=f"ref{i:04d}{uuid.uuid4().hex[:8]}",
                          port_mappings=(PortMapping(free_port(), 80),))
            set_up = time.perf_counter()
            cni.teardown(record)
            torn = time.perf_counter()
            pin = base / f"ns-{i}"
            pin.touch()
            began_pin = time.perf_counter()
            subprocess.run(["unshare", f"--net={pin}", "true"], check=True)
            pinned = time.perf_counter()
            subprocess.run(["umount", str(pin)], check=True)
            if i >= WARMUPS:
                refs["setup"].append(set_up - began)
                refs["teardown"].append(torn - set_up)
                refs["unshare"].append(pinned - began_pin)
    finally:
        for runtime in runtimes.values():
            runtime.close()
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)

    none, plain, with_cni = ({k: summarize(v) for k, v in samples[m].items()} for m in modes)
    setup, teardown, unshare = (summarize(refs[k]) for k in ("setup", "teardown", "unshare"))
    added = with_cni["start"].median_s - none["start"].median_s
    rows = [
        Row("1. pod start (sandbox + one container started)", "", ""),
        Row.of("--network none", none["start"]),
        Row.of("--network cni, no hostPort", plain["start"], "-",
               f"+{duration(plain['start'].median_s - none['start'].median_s)} over none"),
        Row.of("--network cni, one hostPort", with_cni["start"], "-",
               f"+{duration(added)} over none ({with_cni['start'].median_s / none['start'].median_s:.1f}x)"),
        Row.of("  of which the sandbox, none", none["sandbox"]),
        Row.of("  of which the sandbox, cni, no hostPort", plain["sandbox"]),
        Row.of("  of which the sandbox, cni, one hostPort", with_cni["sandbox"]),
        Row.of("ref: CNI setup alone, one hostPort (pin netns + ADD of 4 plugins)", setup),
        Row.of("ref: unshare --net=FILE true (pin a netns)", unshare),
        Row("2. pod removal (container killed and removed, sandbox removed)", "", ""),
        Row.of("--network none", none["remove"]),
        Row.of("--network cni, no hostPort", plain["remove"]),
        Row.of("--network cni, one hostPort", with_cni["remove"]),
        Row.of("ref: CNI teardown alone, one hostPort (DEL of 4 plugins + unpin)", teardown),
    ]
    print_table("network: pod start and removal with CNI vs --network none", rows,
                [f"{RUNS} runs per figure after {WARMUPS} warm-ups; the three kinds of pod alternate, one pod at a time.",
                 "iptables here is the nf_tables variant: portmap's and bridge's rule changes dominate the CNI time."])
    record_summary("network", [Row("8. pod start, --network cni (one hostPort) vs none",
                                   duration(with_cni["start"].median_s), duration(with_cni["start"].p95_s), "-",
                                   f"none: {duration(none['start'].median_s)}; +{duration(added)}")])


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    main()
