"""The runtime relist: the observed records made to match the runtime, which is the truth.

Owns: comparing the runtime's lists of sandboxes and containers with the node state's observed
records — adopting what runs for a known pod, recording exits (also those that happened while
kubelite was away), marking lost a container the runtime no longer has — and removing what runs
for no pod (orphans). The agent's pass calls it with the state lock held.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from kubelite.agent.nodestate import NodeState
from kubelite.core.types import ContainerState, ObservedContainer, ObservedSandbox
from kubelite.errors import RuntimeError_
from kubelite.runtime.protocol import ContainerInfo, Runtime, SandboxState

log = logging.getLogger("kubelite.agent")


def relist(state: NodeState, runtime: Runtime, now: datetime, *, full: bool = True) -> None:
    """Make the observed records match the runtime: the runtime is the truth.

    A full relist (the first pass, then once per relist period) has the runtime look at every
    container's and sandbox's processes; the passes between ask it only for what gave a sign of
    change (an exit file), so a pass costs little however many pods run, and an exit is seen at
    the pass its hint wakes. A death without a sign (a container's process and its conmon both
    killed, a sandbox's infra process) is seen at the next full relist.

    The state lock stays held from the runtime's lists to the last comparison: a pod worker
    that recorded a sandbox or container after the lists were taken would otherwise be found
    missing from them (and its container marked lost)."""
    seen_sandboxes = set()
    for info in runtime.list_sandboxes(full=full):
        seen_sandboxes.add(info.id)
        known = state.sandboxes.get(info.id)
        ready = info.state is SandboxState.READY
        if known is None:
            if info.uid not in state.pods:
                _remove_orphan_sandbox(runtime, info.id)
                continue
            sb = ObservedSandbox(info.id, info.attempt, info.sandbox_hash, ready, info.created_at, ip=info.ip)
        elif known[1].ready != ready or known[1].ip != info.ip:
            sb = replace(known[1], ready=ready, ip=info.ip)
        else:
            continue
        state.save_sandbox(info.uid, sb)
    for sid, (uid, sb) in list(state.sandboxes.items()):
        if sid not in seen_sandboxes and sb.ready:  # gone with a reboot
            state.save_sandbox(uid, replace(sb, ready=False))
    seen = set()
    for info in runtime.list_containers(full=full):
        seen.add(info.id)
        known = state.containers.get(info.id)
        if known is None:
            if info.uid not in state.pods:
                _remove_orphan_container(runtime, info.id)
                continue
            state.observe(info.uid, _from_info(info))
            continue
        uid, c = known
        if (c.state, c.exit_code, c.started_at, c.finished_at) != (info.state, info.exit_code, info.started_at,
                                                                   info.finished_at):
            state.observe(uid, replace(c, state=info.state, started_at=info.started_at,
                                       finished_at=info.finished_at, exit_code=info.exit_code,
                                       reason=info.reason, message=info.message))
    for cid, (uid, c) in list(state.containers.items()):
        if cid not in seen and c.state in (ContainerState.RUNNING, ContainerState.CREATED):
            state.observe(uid, replace(
                c, state=ContainerState.EXITED, finished_at=now, exit_code=137, reason="ContainerStatusUnknown",
                message="The container could not be located when the pod was terminated"))


def _remove_orphan_container(runtime: Runtime, container_id: str) -> None:
    log.info("removing orphan container %s", container_id)
    try:
        runtime.signal_container(container_id, "KILL")
        runtime.remove_container(container_id)
    except RuntimeError_ as exc:
        log.warning("orphan container %s: %s", container_id, exc)


def _remove_orphan_sandbox(runtime: Runtime, sandbox_id: str) -> None:
    log.info("removing orphan sandbox %s", sandbox_id)
    try:
        runtime.remove_sandbox(sandbox_id)
    except RuntimeError_ as exc:
        log.warning("orphan sandbox %s: %s", sandbox_id, exc)


def _from_info(info: ContainerInfo) -> ObservedContainer:
    return ObservedContainer(id=info.id, name=info.name, attempt=info.attempt, spec_hash=info.spec_hash,
                             state=info.state, created_at=info.created_at, sandbox_id=info.sandbox_id,
                             image=info.image, started_at=info.started_at, finished_at=info.finished_at,
                             exit_code=info.exit_code, reason=info.reason, message=info.message)
