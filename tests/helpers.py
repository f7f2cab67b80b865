"""Builders shared by the tests (and benchmarks): desired pods and observed containers in one line
each; a free port and a free pod subnet on this machine."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta, timezone
from typing import Any

from kubelite.api.decode import DesiredPod, decode_document
from kubelite.core.types import ContainerState, ObservedContainer, ObservedPod, ObservedSandbox, StopReason

T0 = datetime(2026, 11, 28, 6, 0, 0, tzinfo=timezone.utc)
#: Pod workers of the agents the tests make (`AgentConfig.pod_workers`): 0, syncs on the loop, unless
#: KUBELITE_TEST_POD_WORKERS says otherwise (the whole suite can run with workers that way).
TEST_POD_WORKERS = int(os.environ.get("KUBELITE_TEST_POD_WORKERS", "0"))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def pod_doc(name: str = "web", *, containers: list[str] | None = None, init: list[str] | None = None,
            sidecars: list[str] | None = None, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    """A valid Pod document: app containers `containers`, then regular init, then sidecar init containers."""
    inits = [{"name": n, "image": "busybox:1.36"} for n in init or []]
    inits += [{"name": n, "image": "busybox:1.36", "restartPolicy": "Always"} for n in sidecars or []]
    body: dict[str, Any] = {"containers": [{"name": n, "image": "busybox:1.36"} for n in containers or ["app"]]}
    if inits:
        body["initContainers"] = inits
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": body}


def desired(name: str = "web", **kwargs: Any) -> DesiredPod:
    decoded = decode_document(pod_doc(name, **kwargs), source=f"/manifests/{name}.yaml")
    assert decoded.desired is not None, decoded.errors
    return decoded.desired


def running(d: DesiredPod, name: str, *, attempt: int = 0, started: float = 0, cid: str | None = None,
            **kw: Any) -> ObservedContainer:
    return ObservedContainer(id=cid or f"{name}-{attempt}", name=name, attempt=attempt,
                             spec_hash=kw.pop("spec_hash", None) or d.container_hashes[name],
                             state=ContainerState.RUNNING, created_at=at(started), started_at=at(started),
                             sandbox_id="sb", **kw)


def exited(d: DesiredPod, name: str, code: int, *, attempt: int = 0, started: float = 0, finished: float = 1,
           reason: str | None = None, stop_reason: StopReason | None = None, **kw: Any) -> ObservedContainer:
    return ObservedContainer(id=kw.pop("cid", f"{name}-{attempt}"), name=name, attempt=attempt,
                             spec_hash=kw.pop("spec_hash", None) or d.container_hashes[name], state=ContainerState.EXITED,
                             created_at=at(started), started_at=at(started), finished_at=at(finished),
                             exit_code=code, reason=reason or ("Completed" if code == 0 else "Error"),
                             sandbox_id="sb", stop_reason=stop_reason, **kw)


def sandbox(d: DesiredPod, *, ready: bool = True, attempt: int = 0, sandbox_hash: str | None = None) -> ObservedSandbox:
    return ObservedSandbox("sb", attempt, sandbox_hash or d.sandbox_hash, ready, T0)


def observed(d: DesiredPod, *containers: ObservedContainer, sb: ObservedSandbox | None | bool = True) -> ObservedPod:
    sandboxes = () if sb is None or sb is False else ((sandbox(d),) if sb is True else (sb,))
    return ObservedPod(d.uid, sandboxes, tuple(containers))


def free_port() -> int:
    """A TCP port nothing listens on, on any address of this machine (for a moment)."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def free_subnet(within: str) -> str:
    """A /24 of the /16 `within` (e.g. "10.218.0.0/16") that no host route touches."""
    import ipaddress

    from kubelite.runtime import cni

    routes = cni.host_routes()
    base = ipaddress.ip_network(within)
    for third in range(1 + os.getpid() % 200, 256):
        candidate = ipaddress.ip_network(f"{base.network_address + third * 256}/24")
        if cni.route_clash(candidate, routes, bridge="") is None:
            return str(candidate)
    raise RuntimeError(f"no free /24 in {within}")
