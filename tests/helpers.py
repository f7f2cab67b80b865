"""Builders shared by the tests: desired pods and observed containers in one line each."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from kubelite.api.decode import DesiredPod, decode_document
from kubelite.core.types import ContainerState, ObservedContainer, ObservedPod, ObservedSandbox, StopReason

T0 = datetime(2026, 11, 28, 6, 0, 0, tzinfo=timezone.utc)


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
